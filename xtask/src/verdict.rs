//! Judges one scenario's run against its expectations in scenarios.toml.

use crate::plan::Scenario;
use crate::qemu::GuestFiles;
use serde_json::Value;
use std::collections::BTreeMap;

/// Kinds that mean a proven bug (severity error by default, see MODEL.md): they fail the gate.
pub const ERROR_KINDS: &[&str] = &["pin-outlived-revocation", "pin-outlived-unmap"];

/// What the auditor's NDJSON stream says, reduced to what the expectations talk about.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    pub findings: BTreeMap<String, usize>,
    /// The mapping path of each finding, by kind (`None`: the finding names none).
    pub paths: BTreeMap<String, Vec<Option<String>>>,
    pub lost: u64,
    pub has_status: bool,
}

/// Counts `finding` records by kind (not the summary) and adds up `lost` records' counts.
pub fn tally(ndjson: &str) -> Result<Tally, String> {
    let mut tally = Tally::default();
    for (n, line) in ndjson.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let record: Value = serde_json::from_str(line).map_err(|e| format!("NDJSON line {} is not JSON: {e}", n + 1))?;
        match record.get("type").and_then(Value::as_str) {
            Some("finding") => {
                let kind = record.get("kind").and_then(Value::as_str).unwrap_or("<no kind>");
                *tally.findings.entry(kind.to_owned()).or_default() += 1;
                let path = record.pointer("/pin/vma/path").and_then(Value::as_str).map(str::to_owned);
                tally.paths.entry(kind.to_owned()).or_default().push(path);
            }
            Some("lost") => tally.lost += record.get("count").and_then(Value::as_u64).unwrap_or(0),
            Some("status") => tally.has_status = true,
            Some(_) => {}
            None => return Err(format!("NDJSON line {} has no \"type\"", n + 1)),
        }
    }
    Ok(tally)
}

/// Ok(summary) on PASS, Err(reason) on FAIL. Without an auditor only the scenario program is judged.
pub fn judge(scenario: &Scenario, files: &GuestFiles, with_auditor: bool) -> Result<String, String> {
    let get = |label: &str| files.get(&(scenario.name.clone(), label.to_owned()));
    let program = get("scenario").ok_or("the guest sent no result (did the VM stop early?)")?;
    // A background scenario is killed on purpose; it only fails by never getting ready.
    let program_failed = if scenario.background { program.status == "not-ready" } else { program.status != "0" };
    if program_failed {
        return Err(format!("pfnaudit-scenario exited {}: {}", program.status, last_line(&program.text)));
    }
    if !with_auditor {
        return Ok(format!("scenario ran (exit {}), auditor not attached", program.status));
    }
    let ndjson = get("ndjson").ok_or("the guest sent no NDJSON")?;
    let stderr = get("stderr").map(|s| last_line(&s.text)).unwrap_or_default();
    let expected_exit = scenario.gate_exit.map_or("0".to_owned(), |code| code.to_string());
    if ndjson.status != expected_exit {
        return Err(format!("pfn-auditor exited {} (expected {expected_exit}): {stderr}", ndjson.status));
    }
    let tally = tally(&ndjson.text)?;
    let mut problems = Vec::new();
    if scenario.gate_exit.is_some() {
        problems.extend(gate_reports(&tally, scenario.gate_exit == Some(3), get("junit").map(|s| s.text.as_str()), get("sarif").map(|s| s.text.as_str())));
        if let Some(leftover) = get("leftover").map(|s| s.text.trim()).filter(|t| !t.is_empty()) {
            problems.push(format!("tracefs kprobe events left after exit: {}", leftover.replace('\n', "; ")));
        }
    }
    if !tally.has_status {
        problems.push("no status record".to_owned());
    }
    for expect in &scenario.expect {
        let got = tally.findings.get(&expect.kind).copied().unwrap_or(0);
        if got != expect.count {
            problems.push(format!("expected {} {} finding(s), got {got}", expect.count, expect.kind));
        }
        if let Some(want) = &expect.path {
            for path in tally.paths.get(&expect.kind).into_iter().flatten().filter(|p| p.as_ref() != Some(want)) {
                problems.push(format!("a {} finding names mapping {} instead of {want}", expect.kind, path.as_deref().unwrap_or("none")));
            }
        }
    }
    for (kind, got) in &tally.findings {
        if !scenario.expect.iter().any(|e| &e.kind == kind) {
            problems.push(format!("unexpected {got} {kind} finding(s)"));
        }
    }
    if scenario.expect_loss && tally.lost == 0 {
        problems.push("no events lost, though the scenario overflows the ring buffer".to_owned());
    }
    if !scenario.expect_loss && tally.lost > scenario.max_lost {
        problems.push(format!("{} events lost (allowed {})", tally.lost, scenario.max_lost));
    }
    if problems.is_empty() {
        let found: Vec<String> = tally.findings.iter().map(|(k, n)| format!("{n} {k}")).collect();
        Ok(if found.is_empty() { "no findings, as expected".into() } else { found.join(", ") })
    } else {
        Err(problems.join("; "))
    }
}

/// The reports a CI system reads: JUnit has one failing case per failing finding, and one for
/// the loss when the gate fails closed (or a passing one when clean), SARIF one result per finding.
fn gate_reports(tally: &Tally, fails_closed: bool, junit: Option<&str>, sarif: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let errors: usize = tally.findings.iter().filter(|(k, _)| ERROR_KINDS.contains(&k.as_str())).map(|(_, n)| n).sum();
    match junit {
        None => problems.push("gate wrote no JUnit report".to_owned()),
        Some(xml) => {
            let failures = xml.matches("<failure").count();
            let loss_cases = usize::from(fails_closed);
            if (errors > 0) != (failures > loss_cases) {
                problems.push(format!("JUnit has {failures} failing case(s) for {errors} error finding(s)"));
            }
            if fails_closed && !xml.contains("type=\"events-lost\"") {
                problems.push("JUnit has no failing events-lost case for a gate that failed closed".to_owned());
            }
        }
    }
    match sarif.map(serde_json::from_str::<Value>) {
        Some(Ok(doc)) => {
            let results = doc["runs"][0]["results"].as_array().map_or(0, Vec::len);
            let findings: usize = tally.findings.values().sum();
            if results != findings {
                problems.push(format!("SARIF has {results} result(s) for {findings} finding(s)"));
            }
        }
        Some(Err(e)) => problems.push(format!("SARIF is not JSON: {e}")),
        None => problems.push("gate wrote no SARIF report".to_owned()),
    }
    problems
}

fn last_line(text: &str) -> String {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Sent;

    fn scenario(expect: &str) -> Scenario {
        let toml = format!("[[scenario]]\nname = \"s\"\nexpect = [{expect}]\n");
        let file: BTreeMap<String, Vec<Scenario>> = toml::from_str(&toml).unwrap();
        file["scenario"][0].clone()
    }

    fn files(ndjson: &str, auditor_status: &str) -> GuestFiles {
        let sent = |status: &str, text: &str| Sent { status: status.into(), text: text.into() };
        GuestFiles::from([
            (("s".into(), "scenario".into()), sent("0", "ok\n")),
            (("s".into(), "ndjson".into()), sent(auditor_status, ndjson)),
        ])
    }

    const STATUS: &str = "{\"type\":\"status\",\"schema\":1}\n";

    #[test]
    fn expected_findings_pass_and_summary_records_are_not_counted() {
        let s = scenario("{ kind = \"pin-outlived-revocation\", count = 1 }");
        let stream = format!(
            "{STATUS}{{\"type\":\"finding\",\"kind\":\"pin-outlived-revocation\",\"severity\":\"error\"}}\n\
             {{\"type\":\"summary\",\"findings\":[{{\"kind\":\"pin-outlived-revocation\"}}]}}\n"
        );
        assert_eq!(judge(&s, &files(&stream, "0"), true), Ok("1 pin-outlived-revocation".into()));
    }

    #[test]
    fn missing_unexpected_lost_and_bad_exit_each_fail_with_a_reason() {
        let s = scenario("{ kind = \"pin-outlived-revocation\", count = 1 }");
        let stream = format!(
            "{STATUS}{{\"type\":\"finding\",\"kind\":\"pin-leaked\"}}\n{{\"type\":\"lost\",\"count\":3}}\n"
        );
        let why = judge(&s, &files(&stream, "0"), true).unwrap_err();
        assert!(why.contains("expected 1 pin-outlived-revocation finding(s), got 0"), "{why}");
        assert!(why.contains("unexpected 1 pin-leaked"), "{why}");
        assert!(why.contains("3 events lost"), "{why}");
        assert!(judge(&s, &files(STATUS, "1"), true).unwrap_err().contains("exited 1"));
        assert!(judge(&s, &files("not json\n", "0"), true).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn a_finding_without_the_expected_mapping_path_fails() {
        let s = scenario("{ kind = \"pin-leaked\", count = 1, path = \"/dev/pfnaudit\" }");
        let named = format!("{STATUS}{{\"type\":\"finding\",\"kind\":\"pin-leaked\",\"pin\":{{\"vma\":{{\"path\":\"/dev/pfnaudit\"}}}}}}\n");
        assert!(judge(&s, &files(&named, "0"), true).is_ok());
        let unnamed = format!("{STATUS}{{\"type\":\"finding\",\"kind\":\"pin-leaked\",\"pin\":{{\"vma\":{{}}}}}}\n");
        let why = judge(&s, &files(&unnamed, "0"), true).unwrap_err();
        assert!(why.contains("names mapping none instead of /dev/pfnaudit"), "{why}");
    }

    #[test]
    fn a_gate_that_leaves_tracefs_kprobes_behind_fails() {
        let mut s = scenario("");
        s.gate_exit = Some(0);
        let sent = |text: &str| Sent { status: "0".into(), text: text.into() };
        let mut guest = files(STATUS, "0");
        guest.insert(("s".into(), "junit".into()), sent("<testsuites><testcase name=\"clean\"/></testsuites>"));
        guest.insert(("s".into(), "sarif".into()), sent("{\"runs\":[{\"results\":[]}]}"));
        guest.insert(("s".into(), "leftover".into()), sent("\n"));
        assert!(judge(&s, &guest, true).is_ok(), "{:?}", judge(&s, &guest, true));
        guest.insert(("s".into(), "leftover".into()), sent("p:pfnaudit/e91_0 pfnaudit_test:pfnaudit_unpin_tracked\n"));
        let why = judge(&s, &guest, true).unwrap_err();
        assert!(why.contains("left after exit: p:pfnaudit/e91_0"), "{why}");
    }
}
