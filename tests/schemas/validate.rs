//! Validation of pfn-auditor's CI reports against the schemas vendored beside this file (see
//! README.md there): SARIF against the OASIS SARIF 2.1.0 JSON Schema (the `jsonschema` crate),
//! JUnit against Jenkins' `junit-10.xsd` (`xmllint --schema`, Debian's libxml2-utils).
//!
//! Shared by `auditor/tests/reports.rs` and `xtask/src/verdict.rs` through `#[path]`: one copy of
//! the rules for the host tests and the VM verdict. Each function returns the problems found, one
//! line each (empty: valid), or `Err` when the check itself could not run.

use std::io::Write as _;
use std::process::{Command, Stdio};

const SARIF_SCHEMA: &str = include_str!("sarif-schema-2.1.0.json");
const JUNIT_XSD: &str = include_str!("junit-10.xsd");

/// Each way `text` is not a SARIF 2.1.0 log: not JSON, or a schema violation (with its JSON
/// pointer).
pub fn sarif_problems(text: &str) -> Vec<String> {
    let schema: serde_json::Value = serde_json::from_str(SARIF_SCHEMA).expect("the vendored SARIF schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the vendored SARIF schema is a JSON Schema");
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(doc) => validator.iter_errors(&doc).map(|e| format!("SARIF {}: {e}", e.instance_path)).collect(),
        Err(e) => vec![format!("SARIF is not JSON: {e}")],
    }
}

/// Each way `text` is not a JUnit report Jenkins accepts (xmllint's messages, without the
/// summary line). `Err`: xmllint could not be run.
pub fn junit_problems(text: &str) -> Result<Vec<String>, String> {
    // xmllint reads the schema from a file, written for each call into a temporary file removed
    // when it drops (a static one would never drop: statics are not dropped at exit); the report
    // comes on stdin.
    let mut xsd = tempfile::Builder::new()
        .prefix("pfn-auditor-junit-10-")
        .suffix(".xsd")
        .tempfile()
        .map_err(|e| format!("cannot create a temporary file for the JUnit schema: {e}"))?;
    xsd.write_all(JUNIT_XSD.as_bytes()).map_err(|e| format!("cannot write {}: {e}", xsd.path().display()))?;
    let child = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(xsd.path())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child =
        child.map_err(|e| format!("cannot run xmllint (Debian package libxml2-utils; `cargo xtask build` installs it): {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let written = stdin.write_all(text.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| format!("xmllint: {e}"))?;
    written.map_err(|e| format!("cannot hand the report to xmllint: {e}"))?;
    if out.status.success() {
        return Ok(Vec::new());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<String> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.ends_with("fails to validate"))
        .map(|l| format!("JUnit {}", l.trim()))
        .collect();
    Ok(if problems.is_empty() { vec![format!("JUnit does not validate (xmllint exit {})", out.status)] } else { problems })
}
