//! The NDJSON contract: the checked-in JSON Schema is the one the code generates, every record a
//! run writes validates against it, and a recorded run replays to the same finding lines.
use std::path::PathBuf;

use auditor::{
    correlate::{
        Correlator,
        synthetic::{Proc, Stream},
    },
    policy::Policy,
    replay::{ReplayError, replay},
    vocab::event::Cause,
    vocab::{
        event::HookRef,
        hook_status::{HookState, HookStatus},
        record::{HookChange, HookTotals, Lost, Record, RunSummary, SCHEMA_VERSION, Status},
    },
};
use auditor_common::Hook;

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/schema/pfn-auditor.schema.json")
}

fn generated_schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(Record)).unwrap() + "\n"
}

const POLICY: &str =
    "[[holder]]\nmodule = \"pfnaudit_test\"\nfunction = \"pfnaudit_pin_tracked\"\nrelease = [\"pfnaudit_unpin_tracked\"]\n";

/// A run that produces every finding kind, written as a live run writes it.
fn recorded_run() -> (Vec<String>, Vec<String>) {
    let policy = Policy::parse(POLICY, "policy.toml").unwrap();
    let (a, b, c, d) = (Proc::new(1), Proc::new(2), Proc::new(3), Proc::new(4));
    let mut s = Stream::default();
    s.pfn_map(&a).lookups(&a, "pfnaudit_pin_tracked", "pfnaudit_test", 0..4).owner_revoke(&a, 0, None).release(
        &a,
        "pfnaudit_unpin_tracked",
        0,
    );
    s.pfn_map(&b).lookups(&b, "pfnaudit_pin_tracked", "pfnaudit_test", 0..1).vma_revoke(&b, Cause::Unmap, 0..4).exit(&b);
    s.pfn_map(&c).lookups(&c, "pfnaudit_lookup_untracked", "pfnaudit_test", 0..2).owner_revoke(&c, 0, None);
    s.pfn_map(&d).frames_get(&d, 0xffff_8880_1111_0000, true, 2).lookups(&d, "pfnaudit_pin_tracked", "pfnaudit_test", 0..1);

    let status = Status {
        schema: SCHEMA_VERSION,
        version: "0.1.0".into(),
        kernel: "6.1.0-50-amd64".into(),
        policy: Some("policy.toml".into()),
        events: true,
        hooks: vec![
            HookStatus { hook: Hook::FollowPfn, symbol: "follow_pfn".into(), state: HookState::Attached, reason: None },
            HookStatus {
                hook: Hook::FollowPfnmapStart,
                symbol: "follow_pfnmap_start".into(),
                state: HookState::Absent,
                reason: Some("appeared in 6.12".into()),
            },
        ],
        rules: policy.clone().over(&Policy::catalog()).unwrap().rules(),
        started_unix_ns: Some(1_795_000_000_123_456_789),
        boot_id: Some("0f6e2a4c-3d1b-4e5f-8a9b-1c2d3e4f5a6b".into()),
    };
    let mut lines = vec![serde_json::to_string(&Record::Status(status)).unwrap()];
    // The driver's module loaded after the start: its release hook attaches then.
    let release_attached =
        HookStatus { hook: Hook::Release0, symbol: "pfnaudit_unpin_tracked".into(), state: HookState::Attached, reason: None };
    lines.push(serde_json::to_string(&Record::Hook(HookChange { status: release_attached, ts_ns: 5 })).unwrap());
    let mut finding_lines = Vec::new();
    let mut correlator = Correlator::new(&policy);
    for e in &s.events {
        lines.push(serde_json::to_string(&Record::Event(e.clone())).unwrap());
        for f in correlator.handle(e) {
            let line = serde_json::to_string(&Record::Finding(f)).unwrap();
            finding_lines.push(line.clone());
            lines.push(line);
        }
    }
    lines.push(serde_json::to_string(&Record::Lost(Lost::ring_full(HookRef::from_name("follow_pfn"), 3, 99))).unwrap());
    lines.push(serde_json::to_string(&Record::Lost(Lost::undecodable(Some(HookRef::from_name("zap_vma_ptes")), 1, 100))).unwrap());
    let summary = correlator.finish();
    for f in &summary.findings[finding_lines.len()..] {
        let line = serde_json::to_string(&Record::Finding(f.clone())).unwrap();
        finding_lines.push(line.clone());
        lines.push(line);
    }
    let run_summary = RunSummary {
        findings: summary.findings,
        counts: summary.counts,
        suppressed: summary.suppressed,
        suppressed_by: summary.suppressed_by,
        pins_held: summary.pins_held,
        pins_without_vma: summary.pins_without_vma,
        evicted_pins: 1,
        evicted_pfnmaps: 0,
        events: s.events.len() as u64,
        lost_total: 4,
        undecodable: [(Some(HookRef::from_name("zap_vma_ptes")), 1)].into(),
        hooks: vec![HookTotals {
            hook: HookRef::from_name("follow_pfn"),
            hits: 9,
            emitted: 6,
            dropped: 3,
            bpf_runs: Some(18),
            bpf_run_ns: Some(52_000),
        }],
        duration_ms: 12,
    };
    lines.push(serde_json::to_string(&Record::Summary(run_summary)).unwrap());
    (lines, finding_lines)
}

/// A restarted run's file must not begin like the previous one's (log shippers recognise a file
/// by its first line or first KiB, docs/fleet.md): the status line carries the start time and
/// boot id (every_record_of_a_run_validates_against_the_schema checks them against the schema).
#[test]
fn two_runs_begin_with_different_status_lines() {
    let first = recorded_run().0.swap_remove(0);
    let mut status = match serde_json::from_str::<Record>(&first).unwrap() {
        Record::Status(status) => status,
        other => panic!("the first record is not the status: {other:?}"),
    };
    let restarted = |status: &mut auditor::vocab::record::Status| {
        (status.started_unix_ns, status.boot_id) = auditor::vocab::record::Status::run_identity();
        serde_json::to_string(&Record::Status(status.clone())).unwrap()
    };
    let one = restarted(&mut status);
    std::thread::sleep(std::time::Duration::from_millis(1));
    let two = restarted(&mut status);
    assert_ne!(one, two);
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    for line in [&one, &two] {
        assert!(line.contains(&format!("\"boot_id\":\"{}\"", boot_id.trim())), "{line}");
        assert!(line.contains("\"started_unix_ns\":"), "{line}");
    }
}

#[test]
fn checked_in_schema_is_the_generated_one() {
    let generated = generated_schema();
    if std::env::var_os("PFN_AUDITOR_BLESS").is_some() {
        std::fs::write(schema_path(), &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(schema_path())
        .expect("docs/schema/pfn-auditor.schema.json (regenerate: PFN_AUDITOR_BLESS=1 cargo test -p auditor --test records)");
    assert_eq!(on_disk, generated, "the records changed: bump SCHEMA_VERSION if incompatible, then regenerate with PFN_AUDITOR_BLESS=1");
}

#[test]
fn every_record_of_a_run_validates_against_the_schema() {
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(schema_path()).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let (lines, findings) = recorded_run();
    let mut types = std::collections::BTreeSet::new();
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| format!("{e} at {}", e.instance_path)).collect();
        assert!(errors.is_empty(), "{line}\n{errors:#?}");
        types.insert(value["type"].as_str().unwrap().to_string());
    }
    assert_eq!(types.into_iter().collect::<Vec<_>>(), ["event", "finding", "hook", "lost", "status", "summary"]);
    let kinds: std::collections::BTreeSet<String> =
        findings.iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds.len(), 6, "every finding kind is exercised: {kinds:?}");
}

#[test]
fn schema_rejects_a_record_with_a_missing_field() {
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(schema_path()).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let bad = serde_json::json!({"type": "lost", "hook": "follow_pfn"});
    assert!(!validator.is_valid(&bad));
    let bad_pointer = serde_json::json!({"type": "finding", "kind": "pin-leaked"});
    assert!(!validator.is_valid(&bad_pointer));
}

#[test]
fn replay_prints_the_same_findings_as_live() {
    let (lines, live_findings) = recorded_run();
    let text = lines.join("\n") + "\n";
    let policy = Policy::parse(POLICY, "policy.toml").unwrap();
    let summary = replay(text.as_bytes(), "run.ndjson", &policy, Vec::new()).unwrap().summary;
    // The summary lists the findings in the order they were made: live ones, then end-of-run ones.
    let replayed: Vec<String> = summary.findings.iter().map(|f| serde_json::to_string(&Record::Finding(f.clone())).unwrap()).collect();
    assert_eq!(replayed, live_findings);
}

#[test]
fn corrupt_replay_file_names_the_line() {
    let (mut lines, _) = recorded_run();
    lines.insert(3, "{\"type\": \"event\", \"kind\": \"raw-lookup\"".into());
    let err = replay(lines.join("\n").as_bytes(), "run.ndjson", &Policy::default(), Vec::new()).unwrap_err();
    assert!(matches!(err, ReplayError::Corrupt { line: 4, .. }), "{err}");
    assert!(err.to_string().starts_with("run.ndjson:4: not a pfn-auditor record"), "{err}");
}

#[test]
fn replay_of_a_run_recorded_without_events_says_how_to_record_one() {
    let (lines, _) = recorded_run();
    let without: Vec<String> =
        lines.iter().filter(|l| !l.contains("\"type\":\"event\"")).map(|l| l.replace("\"events\":true", "\"events\":false")).collect();
    let err = replay(without.join("\n").as_bytes(), "f.ndjson", &Policy::default(), Vec::new()).unwrap_err();
    assert!(err.to_string().contains("--events"), "{err}");
}

#[test]
fn replay_of_an_events_recording_that_saw_nothing_has_no_findings() {
    let (lines, _) = recorded_run();
    let quiet: Vec<&String> = lines.iter().filter(|l| l.contains("\"type\":\"status\"")).collect();
    let text = quiet.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n");
    let summary = replay(text.as_bytes(), "f.ndjson", &Policy::default(), Vec::new()).unwrap().summary;
    assert!(summary.findings.is_empty());
}
