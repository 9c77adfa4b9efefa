//! The binary as a user meets it: help, bad input, replay from a file.
use std::process::Command;

fn auditor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pfn-auditor"))
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
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("{}:3: release_match must be", policy.display())), "{stderr}");
}

#[test]
fn corrupt_replay_file_is_a_one_line_error_with_its_line() {
    let file = temp_file("corrupt.ndjson", "{\"type\":\"lost\",\"hook\":\"x\",\"count\":1,\"ts_ns\":1}\nnot json\n");
    let out = auditor().arg("replay").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("{}:2: not a pfn-auditor record", file.display())), "{stderr}");
}

#[test]
fn replay_prints_finding_records_of_a_recording() {
    use auditor::{
        correlate::synthetic::{Proc, Stream},
        record::Record,
    };
    let p = Proc::new(5);
    let mut s = Stream::default();
    s.pfn_map(&p).frames_get(&p, 0xffff_8880_4242_0000, true, 1);
    let text: String = s.events.iter().map(|e| serde_json::to_string(&Record::Event(e.clone())).unwrap() + "\n").collect();
    let file = temp_file("rec.ndjson", &text);
    let out = auditor().arg("replay").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let kinds: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["pfnmap-frame-vector", "pin-leaked"]);
}

#[test]
fn gate_needs_a_command() {
    let out = auditor().arg("gate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
