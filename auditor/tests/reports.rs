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
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (std::fs::read_to_string(junit).unwrap(), std::fs::read_to_string(sarif).unwrap())
}

fn assert_valid(what: &str, junit: &str, sarif: &str) {
    let junit_problems = validate::junit_problems(junit).unwrap();
    assert!(junit_problems.is_empty(), "{what}: {junit_problems:#?}\n{junit}");
    let sarif_problems = validate::sarif_problems(sarif);
    assert!(sarif_problems.is_empty(), "{what}: {sarif_problems:#?}\n{sarif}");
}

/// A recording made of the gate fixture's `status` record and `extra` lines.
fn recording_with(extra: &str) -> tempfile::NamedTempFile {
    let gate = std::fs::read_to_string(fixture("gate/gate-catches-revoke.ndjson")).unwrap();
    let status = gate.lines().next().unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{status}\n{extra}")).unwrap();
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

/// `replay RECORDING --junit --sarif ARGS` in `dir`: (exit code, stderr, JUnit, SARIF).
fn replay_in(dir: &Path, recording: &Path, args: &[&str]) -> (Option<i32>, String, String, String) {
    let (junit, sarif) = (dir.join("r.junit"), dir.join("r.sarif"));
    let out = Command::new(env!("CARGO_BIN_EXE_pfn-auditor"))
        .current_dir(dir)
        .arg("replay")
        .arg(recording)
        .arg("--policy")
        .arg(fixture("gate/policy.toml"))
        .arg("--junit")
        .arg(&junit)
        .arg("--sarif")
        .arg(&sarif)
        .args(args)
        .output()
        .unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), read(&junit), read(&sarif))
}

/// The SARIF run's one invocation: (executionSuccessful, its first notification's text).
fn invocation(sarif: &str) -> (bool, String) {
    let doc: serde_json::Value = serde_json::from_str(sarif).unwrap_or_default();
    let invocation = &doc["runs"][0]["invocations"][0];
    let why = invocation["toolExecutionNotifications"][0]["message"]["text"].as_str().unwrap_or_default().to_owned();
    (invocation["executionSuccessful"].as_bool().unwrap_or(true), why)
}

#[test]
fn reports_of_a_run_stopped_by_an_unwritable_output_say_why_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr, junit, sarif) = replay_in(dir.path(), &fixture("gate/gate-catches-revoke.ndjson"), &["--output", "/dev/full"]);
    assert_eq!(code, Some(5), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let why = "cannot write the NDJSON output /dev/full: No space left on device";
    assert!(junit.contains("type=\"run-stopped\"") && junit.contains(why), "{junit}");
    let (successful, said) = invocation(&sarif);
    assert!(!successful && said.starts_with(why), "{sarif}");
    assert_valid("a run stopped by a full disk", &junit, &sarif);
}

#[test]
fn reports_of_a_run_that_never_got_going_say_why() {
    let dir = tempfile::tempdir().unwrap();
    // The recording is corrupt at its second line: exit 2, the reports say where.
    let corrupt = recording_with("not a record\n");
    let (code, stderr, junit, sarif) = replay_in(dir.path(), corrupt.path(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(junit.contains("type=\"run-stopped\"") && junit.contains(":2: not a pfn-auditor record"), "{junit}");
    assert!(invocation(&sarif).1.contains(":2: not a pfn-auditor record"), "{sarif}");
    assert_valid("a corrupt recording", &junit, &sarif);
    // The SARIF report cannot be created: the JUnit report, opened first, says so.
    let out = Command::new(env!("CARGO_BIN_EXE_pfn-auditor"))
        .arg("replay")
        .arg(fixture("gate/gate-catches-revoke.ndjson"))
        .arg("--junit")
        .arg(dir.path().join("j.xml"))
        .arg("--sarif")
        .arg(dir.path().join("missing/r.sarif"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    let junit = std::fs::read_to_string(dir.path().join("j.xml")).unwrap();
    assert!(junit.contains("cannot write the SARIF report") && junit.contains("does not exist"), "{junit}");
}

#[test]
fn sarif_sources_under_the_source_root_are_relative_to_srcroot() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("drv/pfnaudit_test.c");
    let gate = std::fs::read_to_string(fixture("gate/gate-catches-revoke.ndjson")).unwrap();
    let located = format!("\"module\":\"pfnaudit_test\",\"file\":\"{}\",\"line\":42}}", source.display());
    let recording = dir.path().join("located.ndjson");
    std::fs::write(&recording, gate.replace("\"module\":\"pfnaudit_test\"}", &located)).unwrap();
    let artifact = |sarif: &str| {
        let doc: serde_json::Value = serde_json::from_str(sarif).unwrap();
        let location = &doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"];
        assert_eq!(location["region"]["startLine"], 42, "{sarif}");
        let base = doc["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"].as_str().unwrap_or_default().to_owned();
        (
            location["artifactLocation"]["uri"].as_str().unwrap_or_default().to_owned(),
            location["artifactLocation"]["uriBaseId"].clone(),
            base,
        )
    };
    // By default the directory it runs in (a CI job's checkout) is the source root.
    let (code, stderr, junit, sarif) = replay_in(dir.path(), &recording, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_valid("a holder with its source line", &junit, &sarif);
    let (uri, base_id, base) = artifact(&sarif);
    assert_eq!((uri.as_str(), base_id.as_str()), ("drv/pfnaudit_test.c", Some("%SRCROOT%")), "{sarif}");
    assert_eq!(base, format!("file://{}/", dir.path().display()));
    // --source-root names another; a file outside it keeps its absolute URI.
    let (_, _, _, sarif) = replay_in(dir.path(), &recording, &["--source-root", "drv"]);
    let (uri, _, base) = artifact(&sarif);
    assert_eq!((uri.as_str(), base), ("pfnaudit_test.c", format!("file://{}/drv/", dir.path().display())));
    let (_, _, _, sarif) = replay_in(dir.path(), &recording, &["--source-root", "/nonexistent"]);
    let (uri, base_id, _) = artifact(&sarif);
    assert_eq!((uri, base_id), (format!("file://{}", source.display()), serde_json::Value::Null), "{sarif}");
}
