//! Judges one scenario's run against its expectations in scenarios.toml.

use crate::plan::{Expect, Scenario, function_base};
use crate::qemu::GuestFiles;
use serde_json::Value;
use std::collections::BTreeMap;

/// Kinds that mean a proven bug (severity error by default, see MODEL.md): they fail the gate.
pub const ERROR_KINDS: &[&str] = &["pin-outlived-revocation", "pin-outlived-unmap"];

/// What the auditor's NDJSON stream says, reduced to what the expectations talk about.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    pub findings: BTreeMap<String, usize>,
    /// The evidence of each finding, by kind.
    pub evidence: BTreeMap<String, Vec<Evidence>>,
    pub lost: u64,
    pub has_status: bool,
    /// The summary record's `suppressed` (None: no summary record).
    pub suppressed: Option<u64>,
    /// `raw-lookup` events whose vma the kernel side did not find (every pin must know its vma:
    /// mm-only lookups are resolved in the kernel).
    pub lookups_without_vma: usize,
}

/// What a finding names, as far as the expectations check it (`None`: the finding names none).
#[derive(Debug, Default, PartialEq)]
pub struct Evidence {
    /// `pin.vma.path`
    pub path: Option<String>,
    /// `pin.holder.module`
    pub holder_module: Option<String>,
    /// `revocation.hook`
    pub hook: Option<String>,
    /// `revocation.caller.function`
    pub caller: Option<String>,
}

impl Evidence {
    fn of(finding: &Value) -> Self {
        let text = |pointer: &str| finding.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        Evidence {
            path: text("/pin/vma/path"),
            holder_module: text("/pin/holder/module"),
            hook: text("/revocation/hook"),
            caller: text("/revocation/caller/function"),
        }
    }

    /// Each way this finding differs from what `expect` asks of every finding of its kind.
    fn mismatches(&self, expect: &Expect) -> Vec<String> {
        let checks = [
            ("mapping", &expect.path, &self.path, false),
            ("holder module", &expect.holder_module, &self.holder_module, false),
            ("revoking hook", &expect.hook, &self.hook, false),
            ("revocation caller", &expect.caller, &self.caller, true),
        ];
        let mut out = Vec::new();
        for (what, want, got, is_function) in checks {
            let Some(want) = want else { continue };
            let same = match got {
                Some(got) if is_function => function_base(got) == function_base(want),
                Some(got) => got == want,
                None => false,
            };
            if !same {
                out.push(format!("a {} finding names {what} {} instead of {want}", expect.kind, got.as_deref().unwrap_or("none")));
            }
        }
        out
    }
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
                tally.evidence.entry(kind.to_owned()).or_default().push(Evidence::of(&record));
            }
            Some("summary") => tally.suppressed = record.get("suppressed").and_then(Value::as_u64),
            Some("event") if record.get("kind").and_then(Value::as_str) == Some("raw-lookup") => {
                if record.pointer("/vma/vma").and_then(Value::as_str).is_none_or(|vma| vma == "0x0") {
                    tally.lookups_without_vma += 1;
                }
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
/// `kernel` is the series label (the scenario's expectations may differ per kernel).
pub fn judge(scenario: &Scenario, kernel: &str, files: &GuestFiles, with_auditor: bool) -> Result<String, String> {
    if let Some(check) = scenario.check {
        return crate::check_verdict::judge(check, scenario, kernel, files);
    }
    let get = |label: &str| files.get(&(scenario.name.clone(), label.to_owned()));
    let program = get("scenario").ok_or("the guest sent no result (did the VM stop early?)")?;
    // A background scenario is killed on purpose; it only fails by never getting ready.
    let program_failed = if scenario.background { program.status == "not-ready" } else { program.status != "0" };
    if program_failed {
        return Err(format!("{} exited {}: {}", scenario.binary(), program.status, last_line(&program.text)));
    }
    if !with_auditor {
        return Ok(format!("scenario ran (exit {}), auditor not attached", program.status));
    }
    let ndjson = get("ndjson").ok_or("the guest sent no NDJSON")?;
    let stderr = get("stderr").map(|s| last_line(&s.text)).unwrap_or_default();
    let expected_exit =
        if scenario.output_unwritable { "5".to_owned() } else { scenario.gate_exit.map_or("0".to_owned(), |code| code.to_string()) };
    if ndjson.status != expected_exit {
        return Err(format!("pfn-auditor exited {} (expected {expected_exit}): {stderr}", ndjson.status));
    }
    if scenario.output_unwritable {
        // Nothing could be recorded: the verdict is the exit code (above) and the one line naming
        // the output that failed.
        let all = get("stderr").map(|s| s.text.as_str()).unwrap_or_default();
        return match all.lines().find(|l| l.contains("cannot write the NDJSON output /dev/full")) {
            Some(line) => Ok(format!("stopped with exit 5: {}", line.trim())),
            None => Err(format!("stderr does not name the unwritable output: {stderr}")),
        };
    }
    let tally = tally(&ndjson.text)?;
    let mut problems = Vec::new();
    if scenario.gate_exit.is_some() {
        problems.extend(gate_reports(
            &tally,
            scenario.gate_exit == Some(3),
            get("junit").map(|s| s.text.as_str()),
            get("sarif").map(|s| s.text.as_str()),
        ));
        if let Some(leftover) = get("leftover").map(|s| s.text.trim()).filter(|t| !t.is_empty()) {
            problems.push(format!("tracefs kprobe events left after exit: {}", leftover.replace('\n', "; ")));
        }
    }
    problems.extend(expectations(scenario, kernel, &tally));
    if problems.is_empty() { Ok(found(&tally)) } else { Err(problems.join("; ")) }
}

/// What every daemon's NDJSON must show: a status record, a vma on every raw lookup, exactly the
/// expected findings with their evidence, the suppressed count, and the losses allowed.
pub(crate) fn expectations(scenario: &Scenario, kernel: &str, tally: &Tally) -> Vec<String> {
    let mut problems = Vec::new();
    if !tally.has_status {
        problems.push("no status record".to_owned());
    }
    if tally.lookups_without_vma > 0 {
        problems.push(format!("{} raw-lookup event(s) carry no vma", tally.lookups_without_vma));
    }
    let expected = scenario.expect_for(kernel);
    for expect in expected {
        let got = tally.findings.get(&expect.kind).copied().unwrap_or(0);
        if got != expect.count {
            problems.push(format!("expected {} {} finding(s), got {got}", expect.count, expect.kind));
        }
        for evidence in tally.evidence.get(&expect.kind).into_iter().flatten() {
            problems.extend(evidence.mismatches(expect));
        }
    }
    for (kind, got) in &tally.findings {
        if !expected.iter().any(|e| &e.kind == kind) {
            problems.push(format!("unexpected {got} {kind} finding(s)"));
        }
    }
    if let Some(min) = scenario.min_suppressed {
        match tally.suppressed {
            None => problems.push("no summary record (its suppressed count is expected)".to_owned()),
            Some(n) if n < min => problems.push(format!("summary.suppressed is {n}, expected at least {min}")),
            Some(_) => {}
        }
    }
    if scenario.expect_loss && tally.lost == 0 {
        problems.push("no events lost, though the scenario overflows the ring buffer".to_owned());
    }
    if !scenario.expect_loss && tally.lost > scenario.max_lost {
        problems.push(format!("{} events lost (allowed {})", tally.lost, scenario.max_lost));
    }
    problems
}

/// The outcome of a run: `found` kinds, or "no findings", and the suppressed count.
pub(crate) fn found(tally: &Tally) -> String {
    let mut found: Vec<String> = tally.findings.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let suppressed = match tally.suppressed {
        Some(n) if n > 0 => format!(" ({n} suppressed)"),
        _ => String::new(),
    };
    if found.is_empty() {
        found.push("no findings, as expected".into());
    }
    format!("{}{suppressed}", found.join(", "))
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

pub(crate) fn last_line(text: &str) -> String {
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
        assert_eq!(judge(&s, "6.1", &files(&stream, "0"), true), Ok("1 pin-outlived-revocation".into()));
    }

    #[test]
    fn missing_unexpected_lost_and_bad_exit_each_fail_with_a_reason() {
        let s = scenario("{ kind = \"pin-outlived-revocation\", count = 1 }");
        let stream = format!("{STATUS}{{\"type\":\"finding\",\"kind\":\"pin-leaked\"}}\n{{\"type\":\"lost\",\"count\":3}}\n");
        let why = judge(&s, "6.1", &files(&stream, "0"), true).unwrap_err();
        assert!(why.contains("expected 1 pin-outlived-revocation finding(s), got 0"), "{why}");
        assert!(why.contains("unexpected 1 pin-leaked"), "{why}");
        assert!(why.contains("3 events lost"), "{why}");
        assert!(judge(&s, "6.1", &files(STATUS, "1"), true).unwrap_err().contains("exited 1"));
        assert!(judge(&s, "6.1", &files("not json\n", "0"), true).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn an_unwritable_output_passes_only_with_its_exit_code_and_the_line_naming_it() {
        let toml = "[[scenario]]\nname = \"s\"\ngate_exit = 5\noutput_unwritable = true\n";
        let file: BTreeMap<String, Vec<Scenario>> = toml::from_str(toml).unwrap();
        let s = file["scenario"][0].clone();
        let with_stderr = |status: &str, text: &str| {
            let mut f = files("", status);
            f.insert(("s".into(), "stderr".into()), Sent { status: status.into(), text: text.into() });
            f
        };
        let named = "pfn-auditor: cannot write the NDJSON output /dev/full: No space left on device (os error 28)\n";
        assert!(judge(&s, "6.1", &with_stderr("5", named), true).is_ok());
        assert!(judge(&s, "6.1", &with_stderr("0", named), true).unwrap_err().contains("exited 0"));
        assert!(judge(&s, "6.1", &with_stderr("5", "pfn-auditor: something else\n"), true).unwrap_err().contains("does not name"));
    }

    #[test]
    fn a_raw_lookup_without_its_vma_fails_the_scenario() {
        let s = scenario("{ kind = \"pin-leaked\", count = 0 }");
        let lookup = |vma: &str| format!("{{\"type\":\"event\",\"kind\":\"raw-lookup\",\"vma\":{{\"vma\":\"{vma}\"}}}}\n");
        let resolved = format!("{STATUS}{}", lookup("0xffff8881000a0000"));
        assert!(judge(&s, "6.1", &files(&resolved, "0"), true).is_ok());
        let unresolved = format!("{STATUS}{}{}", lookup("0xffff8881000a0000"), lookup("0x0"));
        assert!(judge(&s, "6.1", &files(&unresolved, "0"), true).unwrap_err().contains("1 raw-lookup event(s) carry no vma"));
    }

    #[test]
    fn a_finding_without_the_expected_mapping_path_fails() {
        let s = scenario("{ kind = \"pin-leaked\", count = 1, path = \"/dev/pfnaudit\" }");
        let named =
            format!("{STATUS}{{\"type\":\"finding\",\"kind\":\"pin-leaked\",\"pin\":{{\"vma\":{{\"path\":\"/dev/pfnaudit\"}}}}}}\n");
        assert!(judge(&s, "6.1", &files(&named, "0"), true).is_ok());
        let unnamed = format!("{STATUS}{{\"type\":\"finding\",\"kind\":\"pin-leaked\",\"pin\":{{\"vma\":{{}}}}}}\n");
        let why = judge(&s, "6.1", &files(&unnamed, "0"), true).unwrap_err();
        assert!(why.contains("names mapping none instead of /dev/pfnaudit"), "{why}");
    }

    #[test]
    fn holder_module_hook_and_caller_are_checked_on_every_finding_ignoring_clone_suffixes() {
        let s = scenario(
            "{ kind = \"pin-outlived-revocation\", count = 1, holder_module = \"vfio_iommu_type1\", hook = \"zap_vma_ptes\", caller = \"vfio_pci_zap_and_vma_lock\" }",
        );
        let finding = |module: &str, hook: &str, caller: &str| {
            format!(
                "{STATUS}{{\"type\":\"finding\",\"kind\":\"pin-outlived-revocation\",\"pin\":{{\"holder\":{{\"function\":\"vfio_pin_pages_remote\",\"module\":\"{module}\"}}}},\
                 \"revocation\":{{\"hook\":\"{hook}\",\"caller\":{{\"function\":\"{caller}\"}}}}}}\n"
            )
        };
        let good = finding("vfio_iommu_type1", "zap_vma_ptes", "vfio_pci_zap_and_vma_lock.constprop.0");
        assert_eq!(judge(&s, "6.1", &files(&good, "0"), true), Ok("1 pin-outlived-revocation".into()));
        let bad = finding("kvm", "unmap_mapping_range", "revoke_iomem.isra.0");
        let why = judge(&s, "6.1", &files(&bad, "0"), true).unwrap_err();
        assert!(why.contains("names holder module kvm instead of vfio_iommu_type1"), "{why}");
        assert!(why.contains("names revoking hook unmap_mapping_range instead of zap_vma_ptes"), "{why}");
        assert!(why.contains("names revocation caller revoke_iomem.isra.0 instead of vfio_pci_zap_and_vma_lock"), "{why}");
    }

    #[test]
    fn per_kernel_expectations_and_the_suppressed_count_are_judged() {
        let toml = "[[scenario]]\nname = \"s\"\nexpect = [{ kind = \"pin-outlived-revocation\", count = 1 }]\n\
                    expect_on = { \"5.10\" = [] }\nmin_suppressed = 1\n";
        let file: BTreeMap<String, Vec<Scenario>> = toml::from_str(toml).unwrap();
        let s = &file["scenario"][0];
        let summary = |n: u64| format!("{STATUS}{{\"type\":\"summary\",\"findings\":[],\"suppressed\":{n}}}\n");
        assert_eq!(judge(s, "5.10", &files(&summary(2), "0"), true), Ok("no findings, as expected (2 suppressed)".into()));
        let why = judge(s, "5.10", &files(&summary(0), "0"), true).unwrap_err();
        assert!(why.contains("summary.suppressed is 0, expected at least 1"), "{why}");
        assert!(judge(s, "5.10", &files(STATUS, "0"), true).unwrap_err().contains("no summary record"));
        let why = judge(s, "6.1", &files(&summary(1), "0"), true).unwrap_err();
        assert!(why.contains("expected 1 pin-outlived-revocation finding(s), got 0"), "{why}");
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
        assert!(judge(&s, "6.1", &guest, true).is_ok(), "{:?}", judge(&s, "6.1", &guest, true));
        guest.insert(("s".into(), "leftover".into()), sent("p:pfnaudit/e91_0 pfnaudit_test:pfnaudit_unpin_tracked\n"));
        let why = judge(&s, "6.1", &guest, true).unwrap_err();
        assert!(why.contains("left after exit: p:pfnaudit/e91_0"), "{why}");
    }
}
