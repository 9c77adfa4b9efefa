//! Judges the guest-side checks of the daemon itself (scenarios.toml `check`, init.sh
//! `check_<name>`): doctor with pieces removed, signals, two instances, kill -9 and restart, a
//! storm. Each check sends its daemons' NDJSON and stderr, and `facts` for what only the guest
//! can see (tracefs events, VmHWM, whether the signal came in time).

use crate::plan::{Check, Scenario};
use crate::qemu::GuestFiles;
use crate::verdict::{expectations, found, last_line, tally};
use serde_json::Value;
use std::collections::BTreeMap;

/// Ok(summary) on PASS, Err(every problem) on FAIL.
pub fn judge(check: Check, scenario: &Scenario, kernel: &str, files: &GuestFiles) -> Result<String, String> {
    let sent = Sent { scenario, files };
    match check {
        Check::Doctor => doctor(&sent),
        Check::SigtermAttach => sigterm_attach(&sent, kernel),
        Check::SigtermDrain => sigterm_drain(&sent, kernel),
        Check::SecondInstance => second_instance(&sent, kernel),
        Check::SecondInstanceRefused => second_instance_refused(&sent, kernel),
        Check::Kill9Restart => kill9_restart(&sent, kernel),
        Check::Storm => storm(&sent, kernel),
    }
}

/// What the guest sent for one check.
struct Sent<'a> {
    scenario: &'a Scenario,
    files: &'a GuestFiles,
}

impl Sent<'_> {
    fn get(&self, label: &str) -> Result<&crate::qemu::Sent, String> {
        self.files.get(&(self.scenario.name.clone(), label.to_owned())).ok_or_else(|| format!("the guest sent no {label}"))
    }

    /// `facts`: key=value lines.
    fn facts(&self) -> Result<BTreeMap<String, String>, String> {
        let text = &self.get("facts")?.text;
        Ok(text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect())
    }

    /// A fact as a number (a missing or empty one is a problem of its own).
    fn number(&self, facts: &BTreeMap<String, String>, key: &str) -> Result<u64, String> {
        facts.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| format!("fact {key} missing or not a number: {facts:?}"))
    }

    /// The workload program, when the check runs one: it must have succeeded.
    fn workload_ok(&self) -> Result<(), String> {
        let program = self.get("scenario")?;
        if program.status != "0" {
            return Err(format!("{} exited {}: {}", self.scenario.binary(), program.status, last_line(&program.text)));
        }
        Ok(())
    }

    /// The daemon of `ndjson`/`stderr` labels exited 0 with a status and a summary record and,
    /// with `Findings::Judged`, its records meet the scenario's expectations (findings, losses).
    /// Returns the tally's summary.
    fn daemon(&self, ndjson: &str, stderr: &str, kernel: &str, findings: Findings, problems: &mut Vec<String>) -> Result<String, String> {
        let out = self.get(ndjson)?;
        if out.status != "0" {
            let err = self.get(stderr).map(|s| last_line(&s.text)).unwrap_or_default();
            problems.push(format!("the daemon of {ndjson} exited {} (expected 0): {err}", out.status));
        }
        let t = tally(&out.text)?;
        if !t.has_status {
            problems.push(format!("{ndjson} has no status record"));
        }
        if t.suppressed.is_none() {
            problems.push(format!("{ndjson} has no summary record"));
        }
        if findings == Findings::Judged {
            problems.extend(expectations(self.scenario, kernel, &t).into_iter().map(|p| format!("{ndjson}: {p}")));
        }
        Ok(found(&t))
    }
}

/// Whether a daemon's findings are judged. Not where records are lost on purpose or the workload
/// is cut off by the signal: a lost release, or a pin still held when the run stops, makes a
/// finding that is right for what the daemon saw (the gate fails closed on such runs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Findings {
    Judged,
    NotJudged,
}

fn verdict(problems: Vec<String>, ok: String) -> Result<String, String> {
    if problems.is_empty() { Ok(ok) } else { Err(problems.join("; ")) }
}

fn expect_fact(facts: &BTreeMap<String, String>, key: &str, want: &str, problems: &mut Vec<String>) {
    let got = facts.get(key).map(String::as_str).unwrap_or("<none>");
    if got != want {
        problems.push(format!("{key} is {got}, expected {want}"));
    }
}

/// The named check of a `doctor --json` report.
fn doctor_check<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["checks"].as_array()?.iter().find(|c| c["name"] == name)
}

/// One `doctor --json` run: exit code, and each named check's state (and fix, where given).
fn doctor_run(
    sent: &Sent,
    label: &str,
    exit: &str,
    states: &[(&str, &str, Option<&str>)],
    problems: &mut Vec<String>,
) -> Result<Value, String> {
    let out = sent.get(label)?;
    let report: Value = serde_json::from_str(&out.text).map_err(|e| format!("{label} is not JSON: {e}"))?;
    if out.status != exit {
        problems.push(format!("{label}: doctor exited {} (expected {exit})", out.status));
    }
    let checks = report["checks"].as_array().map_or(0, Vec::len);
    if checks != 10 {
        problems.push(format!("{label}: {checks} checks (expected all 10 whatever is missing)"));
    }
    for c in report["checks"].as_array().into_iter().flatten() {
        if c["state"] != "ok" && c["fix"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{label}: check {} is {} without a fix", c["name"], c["state"]));
        }
    }
    for (name, state, fix) in states {
        match doctor_check(&report, name) {
            None => problems.push(format!("{label}: no {name} check")),
            Some(c) => {
                if c["state"] != *state {
                    problems.push(format!("{label}: {name} is {} ({}), expected {state}", c["state"], c["detail"]));
                }
                if let Some(fix) = fix
                    && c["fix"] != *fix
                {
                    problems.push(format!("{label}: {name} fix is {}, expected {fix}", c["fix"]));
                }
            }
        }
    }
    Ok(report)
}

fn doctor(sent: &Sent) -> Result<String, String> {
    let mut problems = Vec::new();
    let all_ok: Vec<(&str, &str, Option<&str>)> =
        ["kernel", "btf", "kprobes", "kprobes-on", "ringbuf", "fentry", "tracefs", "modules", "kallsyms", "privileges"]
            .into_iter()
            .map(|n| (n, "ok", None))
            .collect();
    doctor_run(sent, "doctor-full", "0", &all_ok, &mut problems)?;
    let nonroot = doctor_run(
        sent,
        "doctor-nonroot",
        "2",
        &[("privileges", "missing", Some("run it with sudo")), ("kallsyms", "missing", None)],
        &mut problems,
    )?;
    if let Some(p) = doctor_check(&nonroot, "privileges")
        && !p["detail"].as_str().unwrap_or("").starts_with("not root (euid 65534)")
    {
        problems.push(format!("doctor-nonroot: privileges says {}", p["detail"]));
    }
    let facts = sent.facts()?;
    expect_fact(&facts, "tracefs_mounts_while_removed", "0", &mut problems);
    let notracefs = doctor_run(
        sent,
        "doctor-notracefs",
        "0",
        &[("tracefs", "warning", Some("mount -t tracefs nodev /sys/kernel/tracing")), ("kprobes", "ok", None)],
        &mut problems,
    )?;
    let exit_row = notracefs["hooks"].as_array().into_iter().flatten().find(|h| h["symbol"] == "sched_process_exit");
    match exit_row {
        Some(h) if h["reason"] == "tracefs not mounted (see above)" => {}
        other => problems.push(format!("doctor-notracefs: the sched_process_exit row does not blame tracefs: {other:?}")),
    }
    expect_fact(&facts, "kprobes_enabled_while_off", "0", &mut problems);
    doctor_run(
        sent,
        "doctor-kprobesoff",
        "2",
        &[("kprobes", "ok", None), ("kprobes-on", "missing", Some("echo 1 > /sys/kernel/debug/kprobes/enabled"))],
        &mut problems,
    )?;
    let run = sent.get("run-kprobesoff")?;
    let lines: Vec<&str> = run.text.lines().filter(|l| !l.trim().is_empty()).collect();
    if run.status != "2" || lines.len() != 1 || !lines[0].starts_with("pfn-auditor: kprobes are disabled system-wide") {
        problems.push(format!("run with kprobes off exited {} saying {lines:?} (expected 2 and one line)", run.status));
    }
    verdict(
        problems,
        "doctor: all ok as root (exit 0); as nobody privileges and kallsyms missing (2); without tracefs a warning blamed on the exit tracepoint (0); kprobes off missing (2) and run refused (2)".into(),
    )
}

fn sigterm_attach(sent: &Sent, kernel: &str) -> Result<String, String> {
    let mut problems = Vec::new();
    let facts = sent.facts()?;
    expect_fact(&facts, "signal_during_attach", "yes", &mut problems);
    expect_fact(&facts, "leftover_events", "0", &mut problems);
    let found = sent.daemon("ndjson", "stderr", kernel, Findings::Judged, &mut problems)?;
    verdict(problems, format!("SIGTERM during the attach: exit 0 with status and summary, nothing left in tracefs; {found}"))
}

fn sigterm_drain(sent: &Sent, kernel: &str) -> Result<String, String> {
    let mut problems = Vec::new();
    let facts = sent.facts()?;
    expect_fact(&facts, "workload_running_at_signal", "yes", &mut problems);
    expect_fact(&facts, "leftover_events", "0", &mut problems);
    let found = sent.daemon("ndjson", "stderr", kernel, Findings::NotJudged, &mut problems)?;
    let events = summary(&sent.get("ndjson")?.text).and_then(|s| s["events"].as_u64()).unwrap_or(0);
    if events == 0 {
        problems.push("the summary counts no events: the daemon was not draining anything".into());
    }
    verdict(problems, format!("SIGTERM mid-storm: exit 0 with a summary of {events} event(s), nothing left in tracefs; {found}"))
}

fn second_instance(sent: &Sent, kernel: &str) -> Result<String, String> {
    sent.workload_ok()?;
    let mut problems = Vec::new();
    let first = sent.daemon("ndjson", "stderr", kernel, Findings::Judged, &mut problems)?;
    let second = sent.daemon("ndjson-second", "stderr-second", kernel, Findings::Judged, &mut problems)?;
    let facts = sent.facts()?;
    let (a, b) = (sent.number(&facts, "first_events")?, sent.number(&facts, "second_events")?);
    if a == 0 || b == 0 {
        problems.push(format!("each instance should have tracefs events while both run: {a} and {b}"));
    }
    expect_fact(&facts, "first_events_after_second_stopped", &a.to_string(), &mut problems);
    expect_fact(&facts, "leftover_events", "0", &mut problems);
    verdict(
        problems,
        format!(
            "two instances: first {first}, second {second}; the second's stop left the first's {a} tracefs event(s) and its release hook working"
        ),
    )
}

/// Kernels before 5.14: the second `run` exits 2 with one line naming the first, `doctor` as root
/// plans its hooks instead of attaching them, and the first daemon sees the workload.
fn second_instance_refused(sent: &Sent, kernel: &str) -> Result<String, String> {
    sent.workload_ok()?;
    let mut problems = Vec::new();
    let first = sent.daemon("ndjson", "stderr", kernel, Findings::Judged, &mut problems)?;
    let second = sent.get("stderr-second")?;
    let lines: Vec<&str> = second.text.lines().filter(|l| !l.trim().is_empty()).collect();
    if second.status != "2" || lines.len() != 1 || !lines[0].starts_with("pfn-auditor: another pfn-auditor (pid ") {
        problems.push(format!("the second run exited {} saying {lines:?} (expected 2 and one line naming the first)", second.status));
    }
    let doctor = sent.get("doctor")?;
    match serde_json::from_str::<Value>(&doctor.text) {
        Ok(d)
            if d["hooks_attached"] == "other-instance"
                && d["hooks_note"].as_str().is_some_and(|n| n.starts_with("another pfn-auditor")) => {}
        Ok(d) => problems.push(format!("doctor beside the first: hooks_attached {} ({})", d["hooks_attached"], d["hooks_note"])),
        Err(e) => problems.push(format!("doctor beside the first is not JSON: {e}")),
    }
    let facts = sent.facts()?;
    expect_fact(&facts, "leftover_events", "0", &mut problems);
    verdict(problems, format!("second instance refused (exit 2, one line), doctor did not attach beside the first; first {first}"))
}

fn kill9_restart(sent: &Sent, kernel: &str) -> Result<String, String> {
    sent.workload_ok()?;
    let mut problems = Vec::new();
    let facts = sent.facts()?;
    let before = sent.number(&facts, "killed_events_before")?;
    if before == 0 {
        problems.push("the killed run had no tracefs events: nothing to clean up, the check proves nothing".into());
    }
    expect_fact(&facts, "killed_events_after_kill", &before.to_string(), &mut problems);
    expect_fact(&facts, "killed_events_after_restart", "0", &mut problems);
    expect_fact(&facts, "leftover_events", "0", &mut problems);
    expect_fact(&facts, "pinned", "0", &mut problems);
    let found = sent.daemon("ndjson", "stderr", kernel, Findings::Judged, &mut problems)?;
    verdict(problems, format!("kill -9 left {before} tracefs event(s), the restart removed them; nothing pinned or left after it; {found}"))
}

/// The kernel's records in a storm must reach a million.
const STORM_RECORDS: u64 = 1_000_000;
/// How much the daemon's RSS may grow from attached to the storm's end: the correlator's state
/// is bounded and the storm's pins are released, so growth means a leak.
const STORM_RSS_GROWTH_MIB: u64 = 16;

fn storm(sent: &Sent, kernel: &str) -> Result<String, String> {
    sent.workload_ok()?;
    let mut problems = Vec::new();
    let found = sent.daemon("ndjson", "stderr", kernel, Findings::NotJudged, &mut problems)?;
    let ndjson = &sent.get("ndjson")?.text;
    let summary = summary(ndjson).ok_or("no summary record")?;
    // Per hook: the kernel's drops (summary counters) and the `lost` records the daemon wrote.
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    let mut records = 0;
    for h in summary["hooks"].as_array().into_iter().flatten() {
        let name = h["hook"].as_str().unwrap_or("?").to_owned();
        records += h["emitted"].as_u64().unwrap_or(0) + h["dropped"].as_u64().unwrap_or(0);
        *dropped.entry(name).or_default() += h["dropped"].as_u64().unwrap_or(0);
    }
    dropped.retain(|_, n| *n > 0);
    let mut lost: BTreeMap<String, u64> = BTreeMap::new();
    let mut stacks_unknown = 0;
    for line in ndjson.lines() {
        let Ok(r) = serde_json::from_str::<Value>(line) else { continue };
        if r["type"] == "lost" && r.get("reason").is_none() {
            *lost.entry(r["hook"].as_str().unwrap_or("?").to_owned()).or_default() += r["count"].as_u64().unwrap_or(0);
        }
        if r["type"] == "lost" && r["reason"] == "stack-unknown" {
            stacks_unknown += r["count"].as_u64().unwrap_or(0);
        }
    }
    // The storm's pages share their round's first stack; a record dropped mid-storm must never
    // be named by a later page (the kernel names only records it handed over).
    if stacks_unknown > 0 {
        problems.push(format!("{stacks_unknown} lookup record(s) named a shared stack the daemon never read"));
    }
    if records < STORM_RECORDS {
        problems.push(format!("the kernel made {records} record(s), fewer than the {STORM_RECORDS} of a storm"));
    }
    if dropped.is_empty() {
        problems.push("nothing dropped though the daemon was stopped mid-storm".into());
    }
    if lost != dropped {
        problems.push(format!("lost records per hook {lost:?} differ from the kernel's drops per hook {dropped:?}"));
    }
    let facts = sent.facts()?;
    let peak = sent.number(&facts, "hwm_peak_kib")?;
    let (attached, end) = (sent.number(&facts, "rss_attached_kib")?, sent.number(&facts, "rss_end_kib")?);
    let bound = sent.scenario.max_rss_mib.unwrap_or(0) * 1024;
    if peak > bound {
        problems.push(format!("peak RSS {} MiB over the bound of {} MiB", peak / 1024, bound / 1024));
    }
    if end > attached + STORM_RSS_GROWTH_MIB * 1024 {
        problems.push(format!(
            "RSS grew from {} to {} MiB in the storm (allowed: {STORM_RSS_GROWTH_MIB} MiB)",
            attached / 1024,
            end / 1024
        ));
    }
    expect_fact(&facts, "leftover_events", "0", &mut problems);
    let mib = |kib: u64| kib as f64 / 1024.0;
    verdict(
        problems,
        format!(
            "{records} kernel records, {} dropped and reported per hook; RSS {:.1} MiB attached, {:.1} MiB after the storm, peak {:.1} MiB (bound {} MiB); {found}",
            dropped.values().sum::<u64>(),
            mib(attached),
            mib(end),
            mib(peak),
            bound / 1024
        ),
    )
}

/// The `summary` record of an NDJSON stream.
fn summary(ndjson: &str) -> Option<Value> {
    ndjson.lines().rev().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|r| r["type"] == "summary")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Sent as File;

    fn scenario(toml: &str) -> Scenario {
        let file: BTreeMap<String, Vec<Scenario>> = toml::from_str(toml).unwrap();
        file["scenario"][0].clone()
    }

    fn files(items: &[(&str, &str, &str)]) -> GuestFiles {
        items
            .iter()
            .map(|(label, status, text)| (("s".into(), (*label).into()), File { status: (*status).into(), text: (*text).into() }))
            .collect()
    }

    const STATUS: &str = "{\"type\":\"status\"}\n";

    #[test]
    fn a_storm_passes_only_with_a_million_records_drops_accounted_per_hook_and_rss_in_bound() {
        let s = scenario("[[scenario]]\nname = \"s\"\ncheck = \"storm\"\nmax_rss_mib = 64\nexpect_loss = true\n");
        let summary = |emitted: u64, dropped: u64| {
            format!(
                "{{\"type\":\"summary\",\"suppressed\":0,\"events\":1,\"hooks\":[{{\"hook\":\"follow_pfn\",\"hits\":0,\"emitted\":{emitted},\"dropped\":{dropped}}}]}}\n"
            )
        };
        let lost = |n: u64| format!("{{\"type\":\"lost\",\"hook\":\"follow_pfn\",\"count\":{n}}}\n");
        let facts = |peak: u64| format!("rss_attached_kib=20000\nrss_end_kib=21000\nhwm_peak_kib={peak}\nleftover_events=0\n");
        let run = |ndjson: String, peak: u64| {
            judge(
                Check::Storm,
                &s,
                "6.1",
                &files(&[("scenario", "0", "ok"), ("ndjson", "0", &ndjson), ("stderr", "0", ""), ("facts", "0", &facts(peak))]),
            )
        };
        let good = format!("{STATUS}{}{}{}", lost(400), lost(600), summary(999_000, 1000));
        assert!(run(good.clone(), 30_000).is_ok(), "{:?}", run(good.clone(), 30_000));
        assert!(run(good, 70_000).unwrap_err().contains("peak RSS 68 MiB over the bound of 64 MiB"));
        let unaccounted = format!("{STATUS}{}{}", lost(400), summary(999_000, 1000));
        assert!(run(unaccounted, 30_000).unwrap_err().contains("differ from the kernel's drops"));
        let small = format!("{STATUS}{}{}", lost(10), summary(1000, 10));
        assert!(run(small, 30_000).unwrap_err().contains("fewer than the 1000000"));
        let unknown = "{\"type\":\"lost\",\"hook\":\"follow_pfn\",\"count\":3,\"reason\":\"stack-unknown\"}\n";
        let named_a_dropped_record = format!("{STATUS}{}{}{unknown}{}", lost(400), lost(600), summary(999_000, 1000));
        assert!(run(named_a_dropped_record, 30_000).unwrap_err().contains("3 lookup record(s) named a shared stack the daemon never read"));
    }

    #[test]
    fn a_second_instance_that_started_or_a_doctor_that_attached_fails_the_refusal_check() {
        let s = scenario("[[scenario]]\nname = \"s\"\ncheck = \"second-instance-refused\"\n");
        let ndjson = format!("{STATUS}{{\"type\":\"summary\",\"suppressed\":0}}\n");
        let refused = "pfn-auditor: another pfn-auditor (pid 90) is running, and on Linux 5.10.0-32-amd64 (before 5.14) ...\n";
        let doctor = "{\"hooks_attached\":\"other-instance\",\"hooks_note\":\"another pfn-auditor (pid 90) is running\"}";
        let run = |second_status: &str, second: &str, doctor: &str| {
            judge(
                Check::SecondInstanceRefused,
                &s,
                "5.10",
                &files(&[
                    ("scenario", "0", "ok"),
                    ("ndjson", "0", &ndjson),
                    ("stderr", "0", ""),
                    ("stderr-second", second_status, second),
                    ("doctor", "0", doctor),
                    ("facts", "0", "leftover_events=0\n"),
                ]),
            )
        };
        assert!(run("2", refused, doctor).is_ok(), "{:?}", run("2", refused, doctor));
        assert!(run("0", "", doctor).unwrap_err().contains("the second run exited 0"));
        let attached = run("2", refused, "{\"hooks_attached\":\"tried\"}").unwrap_err();
        assert!(attached.contains("hooks_attached \"tried\""), "{attached}");
    }

    #[test]
    fn kill9_restart_fails_when_the_killed_run_s_events_survive_the_restart() {
        let s = scenario("[[scenario]]\nname = \"s\"\ncheck = \"kill9-restart\"\n");
        let ndjson = format!("{STATUS}{{\"type\":\"summary\",\"suppressed\":0}}\n");
        let run = |facts: &str| {
            judge(
                Check::Kill9Restart,
                &s,
                "6.1",
                &files(&[("scenario", "0", "ok"), ("ndjson", "0", &ndjson), ("stderr", "0", ""), ("facts", "0", facts)]),
            )
        };
        let clean = "killed_events_before=2\nkilled_events_after_kill=2\nkilled_events_after_restart=0\nleftover_events=0\npinned=0\n";
        assert!(run(clean).is_ok(), "{:?}", run(clean));
        let why = run(&clean.replace("after_restart=0", "after_restart=2")).unwrap_err();
        assert!(why.contains("killed_events_after_restart is 2, expected 0"), "{why}");
        assert!(run(&clean.replace("before=2", "before=0")).unwrap_err().contains("proves nothing"));
    }

    #[test]
    fn a_signal_that_missed_the_attach_or_a_failed_exit_fails_sigterm_attach() {
        let s = scenario("[[scenario]]\nname = \"s\"\ncheck = \"sigterm-attach\"\n");
        let ndjson = format!("{STATUS}{{\"type\":\"summary\",\"suppressed\":0}}\n");
        let run = |facts: &str, exit: &str| {
            judge(
                Check::SigtermAttach,
                &s,
                "6.1",
                &files(&[("ndjson", exit, &ndjson), ("stderr", exit, "pfn-auditor: boom\n"), ("facts", "0", facts)]),
            )
        };
        assert!(run("signal_during_attach=yes\nleftover_events=0\n", "0").is_ok());
        assert!(run("signal_during_attach=no\nleftover_events=0\n", "0").unwrap_err().contains("signal_during_attach is no"));
        assert!(
            run("signal_during_attach=yes\nleftover_events=0\n", "143").unwrap_err().contains("exited 143 (expected 0): pfn-auditor: boom")
        );
    }
}
