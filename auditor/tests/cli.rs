//! The binary as a user meets it: help, bad input, replay from a file.
use std::process::Command;

fn auditor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pfn-auditor"))
}

/// The summary record that ends a recorded run (without it a recording is truncated).
fn summary_line() -> String {
    serde_json::to_string(&auditor::vocab::record::Record::Summary(Default::default())).unwrap() + "\n"
}

/// The stderr of a run that must have exited with `code` (the assertion shows that stderr).
fn stderr_of(out: &std::process::Output, code: i32) -> String {
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    stderr
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pfn-auditor-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn help_lists_every_subcommand() {
    let out = auditor().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["run", "gate", "replay", "doctor"] {
        assert!(help.contains(cmd), "{cmd} missing from:\n{help}");
    }
}

#[test]
fn bad_policy_is_refused_with_file_line_and_exit_2() {
    let policy = temp_file("bad.toml", "[[holder]]\nmodule = \"m\"\nrelease_match = \"sometimes\"\n");
    let out = auditor().args(["replay", "/nonexistent.ndjson", "--policy"]).arg(&policy).output().unwrap();
    let stderr = stderr_of(&out, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("{}:3: release_match must be", policy.display())), "{stderr}");
}

#[test]
fn corrupt_replay_file_is_a_one_line_error_with_its_line() {
    let file = temp_file("corrupt.ndjson", "{\"type\":\"lost\",\"hook\":\"x\",\"count\":1,\"ts_ns\":1}\nnot json\n");
    let out = auditor().arg("replay").arg(&file).output().unwrap();
    let stderr = stderr_of(&out, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("{}:2: not a pfn-auditor record", file.display())), "{stderr}");
}

/// The reason used to be said twice (`stream did not contain valid
/// UTF-8: stream did not contain valid UTF-8`) and no line was named.
#[test]
fn a_non_utf8_recording_is_one_line_naming_the_line_once() {
    let file = temp_file("latin1.ndjson", "");
    std::fs::write(&file, b"{\"type\":\"lost\",\"hook\":\"x\",\"count\":1,\"ts_ns\":1}\n{\"type\":\"caf\xe9\"}\n").unwrap();
    let out = auditor().arg("replay").arg(&file).output().unwrap();
    let stderr = stderr_of(&out, 2);
    assert_eq!(stderr, format!("pfn-auditor: {}:2: not a pfn-auditor record: not UTF-8 text\n", file.display()));
}

/// A JSON string in a bad record may hold a newline; the message quoting it stays one line
/// (found by the replay fuzz target).
#[test]
fn a_bad_record_quoting_a_newline_is_still_one_line() {
    let file = temp_file("newline.ndjson", "{\"type\":\"ev\\nt\",\"seq\":1}\n");
    let out = auditor().arg("replay").arg(&file).output().unwrap();
    let stderr = stderr_of(&out, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unknown variant `ev\\nt`"), "{stderr}");
}

#[test]
fn replay_prints_finding_records_of_a_recording() {
    use auditor::{
        correlate::synthetic::{Proc, Stream},
        vocab::record::Record,
    };
    let p = Proc::new(5);
    let mut s = Stream::default();
    s.pfn_map(&p).frames_get(&p, 0xffff_8880_4242_0000, true, 1);
    let text: String = s.events.iter().map(|e| serde_json::to_string(&Record::Event(e.clone())).unwrap() + "\n").collect();
    let file = temp_file("rec.ndjson", &(text + &summary_line()));
    let out = auditor().arg("replay").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let kinds: Vec<String> =
        stdout.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["pfnmap-frame-vector", "pin-leaked"]);
}

#[test]
fn gate_needs_a_command() {
    let out = auditor().arg("gate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The recordings in tests/fixtures/repro (from ../shared/repro): vfio_iommu_type1 pinning a PCI
/// BAR, revoked when a driver claims the region.
fn repro(file: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repro").join(file)
}

/// The repro recordings are excerpts, events only: without a summary record replay says they are
/// truncated (exit 3, last line on stderr). Returns the rest of stderr.
fn truncated_excerpt(out: &std::process::Output) -> String {
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let (rest, note) = stderr.trim_end().rsplit_once('\n').unwrap_or(("", stderr.trim_end()));
    assert!(note.contains(": truncated: no summary record in its "), "{stderr}");
    if rest.is_empty() { String::new() } else { format!("{rest}\n") }
}

/// `pfn-auditor replay FILE --policy POLICY [EXTRA]`: the finding records on stdout, and stderr.
fn replay_findings(file: &str, policy: &str, extra: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = auditor().arg("replay").arg(repro(file)).arg("--policy").arg(repro(policy)).args(extra).output().unwrap();
    let stderr = truncated_excerpt(&out);
    let stdout = String::from_utf8(out.stdout).unwrap();
    (stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect(), stderr)
}

/// vfio gives the second of two coalesced pages back (vfio_unpin_pages_remote, pfn 0xfeb41, one
/// page); the owner revokes while the first is still in the IOMMU.
#[test]
fn repro_split_a_partial_release_leaves_the_first_page_pinned() {
    let (findings, _) = replay_findings("split.ndjson", "policy.toml", &[]);
    let kinds: Vec<&str> = findings.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    // One finding at the revocation; the page is still pinned when the recording ends: a leak.
    assert_eq!(kinds, ["pin-outlived-revocation", "pin-leaked"], "{findings:#?}");
    assert_eq!(findings[1]["pin"], findings[0]["pin"], "both about the first page");
    let f = &findings[0];
    assert_eq!(f["kind"], "pin-outlived-revocation");
    assert_eq!(f["pin"]["pfns"], serde_json::json!([{"first": 1043264, "count": 1}]));
    assert_eq!(f["pin"]["pages"], 1);
    assert_eq!(f["pin"]["start"], "0x7f0000000000");
    assert_eq!(f["pin"]["vma"]["path"], "/sys/devices/pci0000:00/0000:00:05.0/resource0");
    assert_eq!(f["revocation"]["hook"], "unmap_mapping_range");
}

/// The same with the built-in catalog alone: it knows vfio's release and its page count.
#[test]
fn repro_split_with_the_catalog_alone() {
    let (findings, _) = replay_findings("split.ndjson", "empty.toml", &[]);
    let kinds: Vec<&str> = findings.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["pin-outlived-revocation", "pin-leaked"]);
    assert_eq!(findings[0]["pin"]["pfns"], serde_json::json!([{"first": 1043264, "count": 1}]));
}

/// The caller is the compiler clone `vaddr_get_pfns.constprop.0` (Debian 5.10); the policy names
/// `vaddr_get_pfns`: its declared release applies.
#[test]
fn repro_constprop_a_clone_of_the_policy_function_is_its_holder() {
    let (findings, _) = replay_findings("constprop.ndjson", "policy-fn.toml", &[]);
    let kinds: Vec<&str> = findings.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["pin-outlived-revocation", "pin-leaked"], "revoked while held, then never released");
    assert_eq!(findings[0]["pin"]["holder"]["function"], "vaddr_get_pfns.constprop.0", "the evidence keeps the kernel's symbol");
    assert_eq!(findings[0]["pin"]["pages"], 2);
    // The fingerprint is the one of the unsuffixed function (the 6.1 build's symbol).
    let on_61 = std::fs::read_to_string(repro("constprop.ndjson")).unwrap().replace("vaddr_get_pfns.constprop.0", "vaddr_get_pfns");
    let file = temp_file("constprop-6.1.ndjson", &on_61);
    let out = auditor().arg("replay").arg(&file).arg("--policy").arg(repro("policy-fn.toml")).output().unwrap();
    let first: serde_json::Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["fingerprint"], findings[0]["fingerprint"]);
}

/// `--no-catalog` with no policy: vfio's lookups have no declared release.
#[test]
fn no_catalog_replays_without_the_built_in_holders() {
    let (findings, _) = replay_findings("split.ndjson", "empty.toml", &["--no-catalog"]);
    let kinds: Vec<&str> = findings.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["lookup-revoked"]);
}

/// A KVM lookup revoked: suppressed by the catalog, and the end of the replay says why.
#[test]
fn replay_counts_suppressed_findings_per_reason_on_stderr() {
    let kvm = std::fs::read_to_string(repro("constprop.ndjson")).unwrap().replace(
        "\"function\":\"vaddr_get_pfns.constprop.0\",\"offset\":221,\"module\":\"vfio_iommu_type1\"",
        "\"function\":\"hva_to_pfn_remapped\",\"offset\":90,\"module\":\"kvm\"",
    );
    let file = temp_file("kvm.ndjson", &kvm);
    let out = auditor().arg("replay").arg(&file).output().unwrap();
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let stderr = truncated_excerpt(&out);
    assert_eq!(stderr, "pfn-auditor: suppressed: KVM re-validates its PFNs through its MMU notifier: 1\n");
}

/// A real gate run (tests/fixtures/gate: `gate-catches-revoke` of the 6.1 VM scenarios, recorded
/// with `gate --output --junit --sarif` and tests/vm/policy.toml, copied from target/vm-test/6.1).
fn gate_fixture(file: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gate").join(file)
}

/// `pfn-auditor replay` of the recorded gate run, with the gate's policy.
fn replay_gate() -> Command {
    let mut cmd = auditor();
    cmd.arg("replay").arg(gate_fixture("gate-catches-revoke.ndjson")).arg("--policy").arg(gate_fixture("policy.toml"));
    cmd
}

#[test]
fn replay_of_a_recorded_gate_run_writes_the_junit_and_sarif_the_gate_wrote() {
    let dir = temp_file("unused", "").parent().unwrap().to_path_buf();
    let (junit, sarif) = (dir.join("replayed.junit"), dir.join("replayed.sarif"));
    let out = replay_gate().arg("--junit").arg(&junit).arg("--sarif").arg(&sarif).args(["--source-root", "/src/driver"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&junit).unwrap(), std::fs::read_to_string(gate_fixture("gate-catches-revoke.junit")).unwrap());
    assert_eq!(std::fs::read_to_string(&sarif).unwrap(), std::fs::read_to_string(gate_fixture("gate-catches-revoke.sarif")).unwrap());
    // And the finding lines on stdout are the gate's, byte for byte.
    let recorded = std::fs::read_to_string(gate_fixture("gate-catches-revoke.ndjson")).unwrap();
    let live: Vec<&str> = recorded.lines().filter(|l| l.starts_with("{\"type\":\"finding\"")).collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().collect::<Vec<_>>(), live);
}

#[test]
fn replay_with_human_output_prints_the_findings_the_gate_printed() {
    let out = replay_gate().arg("--human").output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let gate = std::fs::read_to_string(gate_fixture("gate-catches-revoke.stderr")).unwrap();
    // The gate's stderr minus its closing verdict line (replay gives no verdict).
    let gate: String = gate.lines().filter(|l| !l.starts_with("pfn-auditor gate:")).map(|l| format!("{l}\n")).collect();
    assert!(gate.contains("ERROR[pin-outlived-revocation]"), "{gate}");
    assert_eq!(stderr, gate);
}

/// `replay FILE ARGS` whose output cannot be written: exit code 5 and one line naming the output.
/// `--output -` is the whole replayed run on stdout, as `--output FILE` writes it, not the
/// finding records alone.
#[test]
fn replay_output_dash_prints_every_record_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.ndjson");
    let to_file = replay_gate().arg("--output").arg(&file).output().unwrap();
    assert!(to_file.status.success(), "{}", String::from_utf8_lossy(&to_file.stderr));
    let to_stdout = replay_gate().args(["--output", "-"]).output().unwrap();
    assert!(to_stdout.status.success(), "{}", String::from_utf8_lossy(&to_stdout.stderr));
    let stdout = String::from_utf8(to_stdout.stdout).unwrap();
    let types: std::collections::BTreeSet<String> =
        stdout.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].as_str().unwrap().to_string()).collect();
    assert!(["status", "event", "finding", "summary"].iter().all(|t| types.contains(*t)), "{types:?}");
    assert_eq!(stdout, std::fs::read_to_string(&file).unwrap());
}

fn replay_failing(args: &[&str], stdout: std::process::Stdio) -> String {
    let out = replay_gate().args(args).stdout(stdout).output().unwrap();
    let stderr = stderr_of(&out, 5);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn an_ndjson_output_on_a_full_disk_stops_replay_with_exit_5() {
    let stderr = replay_failing(&["--output", "/dev/full"], std::process::Stdio::null());
    assert!(stderr.starts_with("pfn-auditor: cannot write the NDJSON output /dev/full: No space left on device"), "{stderr}");
    assert_eq!(stderr.matches("No space left on device").count(), 1, "the reason is said once: {stderr}");
}

#[test]
fn junit_and_sarif_reports_on_a_full_disk_stop_replay_with_exit_5() {
    let stderr = replay_failing(&["--junit", "/dev/full"], std::process::Stdio::null());
    assert!(stderr.starts_with("pfn-auditor: cannot write the JUnit report /dev/full: "), "{stderr}");
    let stderr = replay_failing(&["--sarif", "/dev/full"], std::process::Stdio::null());
    assert!(stderr.starts_with("pfn-auditor: cannot write the SARIF report /dev/full: "), "{stderr}");
}

#[test]
fn a_closed_stdout_pipe_stops_replay_with_exit_5() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let stderr = replay_failing(&[], writer.into());
    assert!(stderr.starts_with("pfn-auditor: cannot write the NDJSON output stdout: Broken pipe"), "{stderr}");
}

#[test]
fn an_output_that_cannot_be_created_is_exit_5() {
    let stderr = replay_failing(&["--output", "/nonexistent-dir/run.ndjson"], std::process::Stdio::null());
    assert_eq!(
        stderr,
        "pfn-auditor: cannot write the NDJSON output /nonexistent-dir/run.ndjson: directory /nonexistent-dir does not exist\n"
    );
}

#[test]
fn two_outputs_on_one_file_are_refused_before_either_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    std::fs::write(&report, "last run's report").unwrap();
    let stderr = replay_failing(&["--junit", report.to_str().unwrap(), "--sarif", report.to_str().unwrap()], std::process::Stdio::null());
    let r = report.display();
    assert_eq!(stderr, format!("pfn-auditor: cannot write the SARIF report {r}: it is the same file as the JUnit report {r}\n"));
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "last run's report", "nothing was opened");
}

#[test]
fn replay_refuses_to_write_over_its_own_recording() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("run.ndjson");
    std::fs::copy(gate_fixture("gate-catches-revoke.ndjson"), &recording).unwrap();
    let before = std::fs::read(&recording).unwrap();
    let out = auditor().arg("replay").arg(&recording).arg("--output").arg(&recording).output().unwrap();
    let stderr = stderr_of(&out, 5);
    let r = recording.display();
    assert_eq!(stderr, format!("pfn-auditor: cannot write the NDJSON output {r}: it is the same file as the recording {r}\n"));
    assert_eq!(std::fs::read(&recording).unwrap(), before, "the recording is intact");
}

#[test]
fn replay_output_rewrites_the_recording_s_records() {
    let dir = temp_file("unused", "").parent().unwrap().to_path_buf();
    let path = dir.join("rewritten.ndjson");
    let out = replay_gate().arg("--output").arg(&path).output().unwrap();
    assert!(out.status.success() && out.stdout.is_empty());
    let recorded = std::fs::read_to_string(gate_fixture("gate-catches-revoke.ndjson")).unwrap();
    let rewritten = std::fs::read_to_string(&path).unwrap();
    // Status, events and findings are the recording's bytes; the summary is the replay's.
    let not_summary = |t: &str| t.lines().filter(|l| !l.starts_with("{\"type\":\"summary\"")).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(not_summary(&rewritten), not_summary(&recorded));
    assert!(rewritten.lines().last().unwrap().starts_with("{\"type\":\"summary\""));
}

#[test]
fn an_output_through_a_symlink_is_refused_with_exit_5_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me").unwrap();
    for flag in ["--output", "--junit", "--sarif"] {
        let link = dir.path().join(format!("link{flag}"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let stderr = replay_failing(&[flag, link.to_str().unwrap()], std::process::Stdio::null());
        assert!(stderr.contains(&format!("{}: refusing to write through a symbolic link", link.display())), "{stderr}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    }
}

#[test]
fn new_report_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (junit, sarif, ndjson) = (dir.path().join("r.junit"), dir.path().join("r.sarif"), dir.path().join("r.ndjson"));
    let out = replay_gate().arg("--junit").arg(&junit).arg("--sarif").arg(&sarif).arg("--output").arg(&ndjson).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for path in [junit, sarif, ndjson] {
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "{}", path.display());
    }
}

/// `--metrics` has no default: it listens only where it is told, on loopback unless an address is
/// given with the port.
#[test]
fn metrics_listen_on_loopback_unless_an_address_is_given() {
    let out = auditor().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let line = help.lines().skip_while(|l| !l.contains("--metrics")).take(3).collect::<String>();
    assert!(!line.contains("default"), "{line}");
    assert!(line.contains("PORT listens on loopback only (127.0.0.1:PORT)"), "{line}");
    let out = auditor().args(["run", "--metrics", "localhost"]).output().unwrap();
    let stderr = stderr_of(&out, 2);
    assert!(stderr.contains("`localhost` is neither a PORT (listens on 127.0.0.1) nor an ADDRESS:PORT"), "{stderr}");
}

/// `--junit -` / `--sarif -` once created a file named `-` (while `--output -` is stdout): now a
/// usage error, and no such file.
#[test]
fn a_report_on_dash_is_a_usage_error_not_a_file_named_dash() {
    let dir = temp_file("unused", "").parent().unwrap().join("dash-report");
    std::fs::create_dir_all(&dir).unwrap();
    for report in ["--junit", "--sarif"] {
        let out = replay_gate().arg(report).arg("-").current_dir(&dir).output().unwrap();
        let stderr = stderr_of(&out, 2);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.contains(&format!("invalid value '-' for '{report} <FILE>'")), "{stderr}");
        assert!(first.contains("\"-\" (stdout) is only for --output"), "{stderr}");
        assert!(!dir.join("-").exists(), "{report} - created a file named -");
    }
}

/// `run --probe-floor` audits nothing: its help must say so before anyone mistakes it for a mode.
#[test]
fn probe_floor_is_marked_as_a_benchmark_aid_that_audits_nothing() {
    let out = auditor().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let text = help.lines().skip_while(|l| !l.contains("--probe-floor")).take(4).collect::<Vec<_>>().join(" ");
    assert!(text.contains("Benchmark aid, audits nothing"), "{text}");
}

/// `doctor` on this machine: a row per prerequisite before the hooks. Where the kernel has no
/// kprobe PMU and no CONFIG_KPROBES (the development VM: 6.18 without kprobes) it says so once,
/// in the checks, and exits 2.
#[test]
fn doctor_on_this_host_checks_kprobes_before_the_hooks() {
    let out = auditor().arg("doctor").output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let kprobes = stdout.lines().find(|l| l.starts_with("  kprobes ")).unwrap_or_else(|| panic!("{stdout}"));
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        assert!(kprobes.contains(" ok "), "{stdout}");
        return;
    }
    assert!(kprobes.contains(" missing "), "{stdout}");
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("fix: boot a kernel with CONFIG_KPROBES=y"), "{stdout}");
    assert!(!stdout.contains("kprobe/type`: No such file"), "the raw attach error is not repeated per hook: {stdout}");
    let hooks: Vec<&str> = stdout.lines().skip_while(|l| !l.starts_with("hooks")).skip(2).take_while(|l| l.starts_with("  ")).collect();
    assert!(hooks.iter().any(|h| h.contains("kprobes unavailable on this kernel (see above)")), "{stdout}");
    let json = auditor().args(["doctor", "--json"]).output().unwrap();
    assert_eq!(json.status.code(), Some(2));
    let d: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let check = d["checks"].as_array().unwrap().iter().find(|c| c["name"] == "kprobes").unwrap().clone();
    assert_eq!(check["state"], "missing", "{check}");
    // Every check is printed, whatever the kprobes check found.
    let names: Vec<&str> = d["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["kernel", "btf", "kprobes", "kprobes-on", "ringbuf", "fentry", "tracefs", "modules", "kallsyms", "privileges"]);
}

#[test]
fn doctor_into_a_closed_pipe_is_exit_5_not_a_panic() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = auditor().arg("doctor").stdout(writer).output().unwrap();
    let stderr = stderr_of(&out, 5);
    assert!(stderr.starts_with("pfn-auditor: cannot write the doctor output on stdout: Broken pipe"), "{stderr}");
}

/// A fleet recording of `pins` pins (each on its own PFN map), its policy, and no revocation
/// noise: `pins` findings when every pinned file is revoked.
fn fleet_recording(name: &str, pins: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    use auditor::{
        correlate::synthetic::{FLEET_POLICY, Fleet},
        vocab::record::Record,
    };
    let fleet = Fleet::new(pins);
    let text: String = (0..).map_while(|n| fleet.event(n, 0)).map(|e| serde_json::to_string(&Record::Event(e)).unwrap() + "\n").collect();
    (temp_file(&format!("{name}.ndjson"), &(text + &summary_line())), temp_file(&format!("{name}.toml"), FLEET_POLICY))
}

/// The last record of an NDJSON file (a run's summary).
fn last_record(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(std::fs::read_to_string(path).unwrap().lines().last().unwrap()).unwrap()
}

#[test]
fn replay_with_max_pins_evicts_the_oldest_pins_and_reports_it_as_a_loss() {
    let (file, policy) = fleet_recording("bounded", 10);
    let (junit, records) = (file.with_extension("junit"), file.with_extension("out"));
    let out = auditor()
        .arg("replay")
        .arg(&file)
        .arg("--policy")
        .arg(&policy)
        .args(["--no-catalog", "--max-pins", "4", "--human", "--junit"])
        .arg(&junit)
        .arg("--output")
        .arg(&records)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = last_record(&records);
    assert_eq!((summary["type"].as_str(), summary["evicted_pins"].as_u64()), (Some("summary"), Some(6)), "{summary}");
    assert_eq!(summary["evicted_pfnmaps"].as_u64().unwrap_or(0), 0, "absent when 0");
    // The 4 pins kept (the newest) are reported when their files are revoked; the 6 evicted are not.
    assert_eq!(summary["counts"]["pin-outlived-revocation"], 4, "{summary}");
    assert!(String::from_utf8(out.stderr).unwrap().contains("6 pin(s) and 0 PFN map(s) evicted unreported"));
    assert!(std::fs::read_to_string(&junit).unwrap().contains("events-lost"));
}

#[test]
fn replay_with_max_pfnmaps_counts_the_pfn_maps_it_forgot() {
    let (file, policy) = fleet_recording("bounded-maps", 10);
    let records = file.with_extension("out");
    let out = auditor()
        .arg("replay")
        .arg(&file)
        .arg("--policy")
        .arg(&policy)
        .args(["--no-catalog", "--max-pfnmaps", "3", "--output"])
        .arg(&records)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = last_record(&records);
    assert_eq!(summary["evicted_pfnmaps"], 7, "{summary}");
}

#[test]
fn a_bound_of_zero_is_a_usage_error_with_exit_2() {
    for flag in ["--max-pins", "--max-pfnmaps"] {
        let out = auditor().args(["replay", "/nonexistent.ndjson", flag, "0"]).output().unwrap();
        let stderr = stderr_of(&out, 2);
        assert!(stderr.lines().next().unwrap().contains(&format!("invalid value '0' for '{flag} <MAX")), "{stderr}");
    }
    let help = String::from_utf8(auditor().args(["gate", "--help"]).output().unwrap().stdout).unwrap();
    assert!(help.contains("--max-pins") && help.contains("--max-pfnmaps"), "{help}");
}

/// Runs `cmd`, killing it after 20 s (a test that would hang fails instead).
fn output_within_20s(cmd: &mut Command) -> std::process::Output {
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            for _ in 0..200 {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
            }
            // SAFETY: kill(2) of our own child, not reaped until wait_with_output returns.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watchdog.join().unwrap();
    out
}

/// A FIFO cannot be rotated: refused at once (opening it for writing would wait for a reader).
#[test]
fn a_fifo_given_output_max_mib_is_refused_without_waiting_for_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let out = output_within_20s(replay_gate().arg("--output").arg(&fifo).args(["--output-max-mib", "1"]));
    let stderr = stderr_of(&out, 5);
    assert_eq!(
        stderr,
        format!(
            "pfn-auditor: cannot write the NDJSON output {}: only a regular file can be rotated (not a device or FIFO)\n",
            fifo.display()
        )
    );
}

/// The same new file named through `..` or through a symbolic link to its directory.
#[test]
fn two_outputs_on_one_new_file_through_dot_dot_or_a_linked_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::os::unix::fs::symlink(&d, dir.path().join("link")).unwrap();
    for other in [d.join("sub/../r.xml"), dir.path().join("link/r.xml")] {
        let out = replay_gate().arg("--junit").arg(d.join("r.xml")).arg("--sarif").arg(&other).output().unwrap();
        let stderr = stderr_of(&out, 5);
        assert_eq!(
            stderr,
            format!(
                "pfn-auditor: cannot write the SARIF report {}: it is the same file as the JUnit report {}\n",
                other.display(),
                d.join("r.xml").display()
            )
        );
        assert!(!d.join("r.xml").exists(), "nothing was opened");
    }
}

/// `--output` (or a report) on the policy file would overwrite it: refused before anything runs.
#[test]
fn an_output_on_the_policy_file_is_refused_and_the_policy_kept() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::copy(gate_fixture("policy.toml"), &policy).unwrap();
    let before = std::fs::read(&policy).unwrap();
    let p = policy.display();
    let replay = auditor()
        .arg("replay")
        .arg(gate_fixture("gate-catches-revoke.ndjson"))
        .arg("--policy")
        .arg(&policy)
        .arg("--junit")
        .arg(&policy)
        .output()
        .unwrap();
    let run =
        auditor().arg("run").arg("--policy").arg(&policy).arg("--output").arg(dir.path().join(".").join("policy.toml")).output().unwrap();
    for (out, output) in
        [(replay, format!("JUnit report {p}")), (run, format!("NDJSON output {}", dir.path().join("./policy.toml").display()))]
    {
        let stderr = stderr_of(&out, 5);
        assert_eq!(stderr, format!("pfn-auditor: cannot write the {output}: it is the same file as the policy file {p}\n"));
    }
    assert_eq!(std::fs::read(&policy).unwrap(), before);
}

/// A run that fails to start (here: `--metrics` on an address of no machine's, TEST-NET-1, which
/// fails after the outputs were opened; a recording bad from its first line) leaves the previous
/// run's NDJSON recording whole, and its JUnit and SARIF reports say why it stopped (a stale
/// report of an earlier run would tell CI a result this run never had).
#[test]
fn a_run_that_fails_to_start_keeps_the_previous_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<std::path::PathBuf> = ["o.ndjson", "j.xml", "s.sarif"].iter().map(|n| dir.path().join(n)).collect();
    for f in &files {
        std::fs::write(f, "last run's").unwrap();
    }
    let gate = auditor()
        .arg("gate")
        .arg("--output")
        .arg(&files[0])
        .arg("--junit")
        .arg(&files[1])
        .arg("--sarif")
        .arg(&files[2])
        .args(["--metrics", "192.0.2.1:9477", "--", "true"])
        .output()
        .unwrap();
    let corrupt = temp_file("corrupt-first-line.ndjson", "not json\n");
    let replay = auditor().arg("replay").arg(&corrupt).arg("--output").arg(&files[0]).arg("--junit").arg(&files[1]).output().unwrap();
    for out in [gate, replay] {
        let stderr = stderr_of(&out, 2);
        assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), "last run's", "{stderr}");
        let junit = std::fs::read_to_string(&files[1]).unwrap();
        assert!(junit.contains(r#"type="run-stopped""#), "{junit}");
    }
    let sarif = std::fs::read_to_string(&files[2]).unwrap();
    assert!(sarif.contains(r#""executionSuccessful": false"#) && sarif.contains("cannot listen"), "{sarif}");
}

/// A closed stderr or stdout is exit code 5 (docs/exit-codes.md), never a panic (exit 101).
#[test]
fn closed_stderr_or_stdout_is_exit_5_not_a_panic() {
    let closed = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    let human = replay_gate().arg("--human").stdout(std::process::Stdio::null()).stderr(closed()).status().unwrap();
    assert_eq!(human.code(), Some(5));
    // A setup error whose message cannot be written keeps its code.
    let setup = auditor().args(["replay", "/nonexistent.ndjson"]).stderr(closed()).status().unwrap();
    assert_eq!(setup.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let docs = auditor().arg("generate-docs").arg(dir.path()).stdout(closed()).output().unwrap();
    let stderr = String::from_utf8(docs.stderr).unwrap();
    assert_eq!(docs.status.code(), Some(5), "{stderr}");
    assert!(stderr.starts_with("pfn-auditor: cannot write the list of written files on stdout: Broken pipe"), "{stderr}");
    let both = auditor().arg("generate-docs").arg(dir.path()).stdout(closed()).stderr(closed()).status().unwrap();
    assert_eq!(both.code(), Some(5));
}

/// A recording without its summary record (a killed run, a cut file) is replayed and said to be
/// truncated, once, with exit code 3; two joined recordings are refused at the second's start.
#[test]
fn a_truncated_recording_is_exit_3_and_joined_recordings_are_refused_at_the_join() {
    let recorded = std::fs::read_to_string(gate_fixture("gate-catches-revoke.ndjson")).unwrap();
    let lines: Vec<&str> = recorded.lines().collect();
    let cut = temp_file("cut.ndjson", &(lines[..lines.len() - 1].join("\n") + "\n"));
    let out = auditor().arg("replay").arg(&cut).arg("--policy").arg(gate_fixture("policy.toml")).output().unwrap();
    let stderr = stderr_of(&out, 3);
    assert_eq!(
        stderr,
        format!(
            "pfn-auditor: {}: truncated: no summary record in its {} line(s) (the run was killed, the file cut, or it is one piece of a rotated output); replayed what is there\n",
            cut.display(),
            lines.len() - 1
        )
    );
    assert!(String::from_utf8(out.stdout).unwrap().contains("\"type\":\"finding\""), "the findings of what is there are printed");
    let joined = temp_file("joined.ndjson", &(recorded.clone() + &recorded));
    let out = auditor().arg("replay").arg(&joined).output().unwrap();
    let stderr = stderr_of(&out, 2);
    assert_eq!(
        stderr,
        format!(
            "pfn-auditor: {}:{}: not a pfn-auditor record: a second recording starts here, after the summary at line {} (replay one run at a time)\n",
            joined.display(),
            lines.len() + 1,
            lines.len()
        )
    );
}

#[test]
fn an_unreadable_policy_is_named_without_a_line() {
    let out = auditor().args(["replay", "/nonexistent.ndjson", "--policy", "/nonexistent.toml"]).output().unwrap();
    let stderr = stderr_of(&out, 2);
    assert_eq!(stderr, "pfn-auditor: /nonexistent.toml: cannot read policy: No such file or directory (os error 2)\n");
}

#[test]
fn metrics_on_port_0_is_refused() {
    let out = auditor().args(["run", "--metrics", "0"]).output().unwrap();
    let stderr = stderr_of(&out, 2);
    assert!(stderr.contains("`0`: port 0 would listen on a port nobody knows; give a port from 1 to 65535"), "{stderr}");
}

/// `doctor --json`'s shape is docs/doctor.md's: plain values, no Rust enum wrappers.
#[test]
fn doctor_json_has_the_documented_shape() {
    let out = auditor().args(["doctor", "--json", "--sample-ms", "0"]).output().unwrap();
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
    for key in ["kernel_release", "kernel_version", "checks", "root", "hooks_attached", "hooks", "rules", "cost"] {
        assert!(keys.contains(&key), "{key} missing: {keys:?}");
    }
    let text = d.to_string();
    assert!(!text.contains("\"Ok\"") && !text.contains("\"Err\""), "{text}");
    assert!(["tried", "planned", "other-instance"].contains(&d["hooks_attached"].as_str().unwrap()), "{}", d["hooks_attached"]);
    let human = String::from_utf8(auditor().args(["doctor", "--sample-ms", "0"]).output().unwrap().stdout).unwrap();
    assert!(!human.contains("attached now"), "{human}");
}
