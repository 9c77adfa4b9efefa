//! The JUnit and SARIF reports as CI systems read them: every report a replayed recording writes
//! validates against the vendored schemas (tests/schemas: OASIS SARIF 2.1.0, Jenkins junit-10.xsd).
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../tests/schemas/validate.rs"]
mod validate;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

/// `replay RECORDING --policy POLICY --junit --sarif`: (JUnit, SARIF) as written.
fn reports_of(recording: &Path, policy: &Path) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (junit, sarif) = (dir.path().join("r.junit"), dir.path().join("r.sarif"));
    let out = Command::new(env!("CARGO_BIN_EXE_pfn-auditor"))
        .arg("replay")
        .arg(recording)
        .arg("--policy")
        .arg(policy)
        .arg("--junit")
        .arg(&junit)
        .arg("--sarif")
        .arg(&sarif)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The repro recordings are excerpts without a summary record: replayed all the same, and said
    // to be truncated (exit 3).
    let truncated = out.status.code() == Some(3) && stderr.contains(": truncated: no summary record");
    assert!(out.status.success() || truncated, "{stderr}");
    (std::fs::read_to_string(junit).unwrap(), std::fs::read_to_string(sarif).unwrap())
}

fn assert_valid(what: &str, junit: &str, sarif: &str) {
    let junit_problems = validate::junit_problems(junit).unwrap();
    assert!(junit_problems.is_empty(), "{what}: {junit_problems:#?}\n{junit}");
    let sarif_problems = validate::sarif_problems(sarif);
    assert!(sarif_problems.is_empty(), "{what}: {sarif_problems:#?}\n{sarif}");
}

/// A recording made of the gate fixture's `status` record, `extra` lines and its `summary`.
fn recording_with(extra: &str) -> tempfile::NamedTempFile {
    let gate = std::fs::read_to_string(fixture("gate/gate-catches-revoke.ndjson")).unwrap();
    let (status, summary) = (gate.lines().next().unwrap(), gate.lines().last().unwrap());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{status}\n{extra}{summary}\n")).unwrap();
    file
}

#[test]
fn reports_with_findings_validate() {
    for (recording, policy) in [
        ("gate/gate-catches-revoke.ndjson", "gate/policy.toml"),
        ("repro/split.ndjson", "repro/policy.toml"),
        ("repro/constprop.ndjson", "repro/policy-fn.toml"),
    ] {
        let (junit, sarif) = reports_of(&fixture(recording), &fixture(policy));
        assert!(junit.contains("<failure") || junit.contains("<system-out>"), "{recording} has findings: {junit}");
        assert_valid(recording, &junit, &sarif);
    }
}

#[test]
fn reports_of_a_clean_run_validate() {
    let clean = recording_with("");
    let (junit, sarif) = reports_of(clean.path(), &fixture("gate/policy.toml"));
    assert!(junit.contains("no pin outlived a revocation"), "{junit}");
    assert_valid("a clean run", &junit, &sarif);
}

#[test]
fn reports_of_a_run_that_lost_records_validate() {
    let lossy = recording_with("{\"type\":\"lost\",\"hook\":\"follow_pfn\",\"count\":7,\"ts_ns\":1}\n");
    let (junit, sarif) = reports_of(lossy.path(), &fixture("gate/policy.toml"));
    assert!(junit.contains("type=\"events-lost\""), "{junit}");
    assert_valid("a run that lost records", &junit, &sarif);
}

/// The checks reject what CI systems reject, so a pass above means something.
#[test]
fn reports_that_break_the_schemas_are_rejected() {
    let junit = "<testsuites><testsuite name=\"s\" tests=\"0\" disabled=\"0\" errors=\"0\" failures=\"0\"/></testsuites>";
    let problems = validate::junit_problems(junit).unwrap();
    assert!(problems.iter().any(|p| p.contains("disabled")), "{problems:#?}");
    let problems = validate::junit_problems("").unwrap();
    assert!(!problems.is_empty());
    let sarif = r#"{"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]}"#;
    let problems = validate::sarif_problems(sarif);
    assert!(problems.iter().any(|p| p.contains("name")), "the driver needs a name: {problems:#?}");
    assert!(!validate::sarif_problems("{").is_empty());
}
