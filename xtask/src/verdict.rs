//! Judges one scenario's run against its expectations in scenarios.toml.

use crate::plan::{Expect, Scenario, Unwritable, function_base};
#[path = "../../tests/schemas/validate.rs"]
mod schemas;
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
    /// Hooks of the summary whose BPF run-time statistics are missing or impossible (fewer
    /// program runs than probe hits, or runs that took no time), each with why.
    pub bad_run_stats: Vec<String>,
}

/// What a finding names, as far as the expectations check it (`None`: the finding names none).
#[derive(Debug, Default, PartialEq)]
pub struct Evidence {
    /// `pin.vma.path`
    pub path: Option<String>,
    /// `pin.holder.module`
    pub holder_module: Option<String>,
    /// `pin.holder.function`
    pub holder: Option<String>,
    /// `pin.pages`
    pub pages: Option<u64>,
    /// `revocation.hook`
    pub hook: Option<String>,
    /// `revocation.caller.function`
    pub caller: Option<String>,
    /// `pin.holder.file` and `pin.holder.line`
    pub holder_file: Option<String>,
    pub holder_line: Option<u64>,
}

/// The raw lookups the test driver makes: the line of a holder's call site calls one of them.
const RAW_LOOKUP_CALLS: &[&str] = &["follow_pfn(", "follow_pte(", "follow_pfnmap_start("];

impl Evidence {
    fn of(finding: &Value) -> Self {
        let text = |pointer: &str| finding.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        Evidence {
            path: text("/pin/vma/path"),
            holder_module: text("/pin/holder/module"),
            holder: text("/pin/holder/function"),
            pages: finding.pointer("/pin/pages").and_then(Value::as_u64),
            hook: text("/revocation/hook"),
            caller: text("/revocation/caller/function"),
            holder_file: text("/pin/holder/file"),
            holder_line: finding.pointer("/pin/holder/line").and_then(Value::as_u64),
        }
    }

    /// Each way this finding differs from what `expect` asks of every finding of its kind.
    fn mismatches(&self, expect: &Expect) -> Vec<String> {
        let checks = [
            ("mapping", &expect.path, &self.path, false),
            ("holder module", &expect.holder_module, &self.holder_module, false),
            ("holder", &expect.holder, &self.holder, true),
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
        if let Some(want) = expect.pages
            && self.pages != Some(want)
        {
            let got = self.pages.map_or("no".to_owned(), |n| n.to_string());
            out.push(format!("a {} finding's pin holds {got} page(s) instead of {want}", expect.kind));
        }
        if let Some(file) = &expect.holder_source {
            out.extend(self.holder_source_problem(file, &expect.kind));
        }
        out
    }

    /// The holder must be located at a line of the test driver's `file` that makes a raw lookup.
    fn holder_source_problem(&self, file: &str, kind: &str) -> Option<String> {
        let (Some(got), Some(line)) = (&self.holder_file, self.holder_line) else {
            return Some(format!("a {kind} finding has no holder file:line (expected one in {file})"));
        };
        if !got.ends_with(&format!("/{file}")) && got != file {
            return Some(format!("a {kind} finding locates its holder in {got}:{line} instead of {file}"));
        }
        let source = std::fs::read_to_string(crate::sh::vm_sources_dir().join("module").join(file)).unwrap_or_default();
        let text = source.lines().nth((line as usize).saturating_sub(1)).unwrap_or("");
        if !RAW_LOOKUP_CALLS.iter().any(|call| text.contains(call)) {
            return Some(format!("a {kind} finding locates its holder at {file}:{line}, which makes no raw lookup: {:?}", text.trim()));
        }
        None
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
            Some("summary") => {
                tally.suppressed = record.get("suppressed").and_then(Value::as_u64);
                let hooks = record.get("hooks").and_then(Value::as_array).into_iter().flatten();
                tally.bad_run_stats.extend(hooks.filter_map(bad_run_stats));
            }
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

/// Why a summary hook's run-time statistics cannot be right, if so: the kernel keeps them on every
/// tested kernel (5.8+), runs include each probe hit (a return probe runs too), and a run takes time.
fn bad_run_stats(hook: &Value) -> Option<String> {
    let name = hook.get("hook").and_then(Value::as_str).unwrap_or("?");
    let hits = hook.get("hits").and_then(Value::as_u64).unwrap_or(0);
    let (Some(runs), Some(ns)) = (hook.get("bpf_runs").and_then(Value::as_u64), hook.get("bpf_run_ns").and_then(Value::as_u64)) else {
        return Some(format!("{name} has no BPF run-time statistics"));
    };
    if runs < hits {
        return Some(format!("{name}: {runs} BPF runs for {hits} hits"));
    }
    (runs > 0 && ns == 0).then(|| format!("{name}: {runs} BPF runs took 0 ns"))
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
    let expected_exit = if scenario.output_unwritable.is_some() {
        "5".to_owned()
    } else {
        scenario.gate_exit.map_or("0".to_owned(), |code| code.to_string())
    };
    if ndjson.status != expected_exit {
        return Err(format!("pfn-auditor exited {} (expected {expected_exit}): {stderr}", ndjson.status));
    }
    if let Some(unwritable) = scenario.output_unwritable {
        // Nothing could be recorded: the verdict is the exit code (above), the one line naming
        // the output that failed and, for `gate`, reports that validate and say why.
        let all = get("stderr").map(|s| s.text.as_str()).unwrap_or_default();
        let Some(line) = all.lines().find(|l| l.contains(unwritable.error())) else {
            return Err(format!("stderr does not name the unwritable output ({}): {stderr}", unwritable.error()));
        };
        if scenario.gate_exit.is_some() {
            // The JUnit report on /dev/full is the output that failed: nothing of it to read.
            let junit = (unwritable != Unwritable::Junit).then(|| get("junit").map(|s| s.text.as_str()));
            let problems = stopped_reports(unwritable.error(), junit, get("sarif").map(|s| s.text.as_str()));
            if !problems.is_empty() {
                return Err(problems.join("; "));
            }
        }
        return Ok(format!("stopped with exit 5: {}", line.trim()));
    }
    let tally = tally(&ndjson.text)?;
    let mut problems = Vec::new();
    if scenario.gate_exit.is_some() {
        problems.extend(gate_reports(
            &tally,
            scenario.expect_for(kernel).iter().any(|e| e.holder_source.is_some()),
            scenario.gate_exit == Some(3),
            get("junit").map(|s| s.text.as_str()),
            get("sarif").map(|s| s.text.as_str()),
        ));
        if let Some(leftover) = get("leftover").map(|s| s.text.trim()).filter(|t| !t.is_empty()) {
            problems.push(format!("tracefs kprobe events left after exit: {}", leftover.replace('\n', "; ")));
        }
    }
    let mut scraped = None;
    if scenario.metrics {
        match get(crate::qemu::PROMETHEUS_LABEL) {
            Some(sent) if sent.status == "0" => scraped = Some(sent.text.trim().to_owned()),
            Some(sent) => problems.push(format!("Prometheus on the host: {}", sent.text.trim())),
            None => problems.push("the guest never said its metrics were ready (no scrape)".to_owned()),
        }
    }
    problems.extend(expectations(scenario, kernel, &tally));
    if problems.is_empty() {
        let scraped = scraped.map(|line| format!("; Prometheus on the host: {line}")).unwrap_or_default();
        Ok(format!("{}{scraped}", found(&tally)))
    } else {
        Err(problems.join("; "))
    }
}

/// What every daemon's NDJSON must show: a status record, run-time statistics in the summary, a
/// vma on every raw lookup, exactly the expected findings with their evidence, the suppressed
/// count, and the losses allowed.
pub(crate) fn expectations(scenario: &Scenario, kernel: &str, tally: &Tally) -> Vec<String> {
    let mut problems = Vec::new();
    if !tally.has_status {
        problems.push("no status record".to_owned());
    }
    if !tally.bad_run_stats.is_empty() {
        problems.push(format!("summary: {}", tally.bad_run_stats.join(", ")));
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

/// The reports a CI system reads: each validates against its schema (tests/schemas), JUnit has
/// one failing case per failing finding, and one for the loss when the gate fails closed (or a
/// passing one when clean), SARIF one result per finding.
/// With `sources`, each SARIF result is located at the file:line of a finding's holder.
fn gate_reports(tally: &Tally, sources: bool, fails_closed: bool, junit: Option<&str>, sarif: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let errors: usize = tally.findings.iter().filter(|(k, _)| ERROR_KINDS.contains(&k.as_str())).map(|(_, n)| n).sum();
    match junit {
        None => problems.push("gate wrote no JUnit report".to_owned()),
        Some(xml) => {
            match schemas::junit_problems(xml) {
                Ok(invalid) => problems.extend(invalid),
                Err(e) => problems.push(e),
            }
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
            problems.extend(schemas::sarif_problems(sarif.unwrap_or_default()));
            let results = doc["runs"][0]["results"].as_array().map_or(0, Vec::len);
            let findings: usize = tally.findings.values().sum();
            if results != findings {
                problems.push(format!("SARIF has {results} result(s) for {findings} finding(s)"));
            }
            if sources {
                problems.extend(sarif_source_problems(tally, &doc));
            }
        }
        Some(Err(e)) => problems.push(format!("SARIF is not JSON: {e}")),
        None => problems.push("gate wrote no SARIF report".to_owned()),
    }
    problems
}

/// The reports of a gate stopped by an unwritable output (`failed`, the start of the line naming
/// it): valid, and saying why (a JUnit `run-stopped` error case, a SARIF invocation that did not
/// succeed with the output's error). `junit`: `None` when the JUnit report is the output that failed.
fn stopped_reports(failed: &str, junit: Option<Option<&str>>, sarif: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    match junit.map(|xml| xml.filter(|x| !x.trim().is_empty())) {
        None => {}
        Some(None) => problems.push("gate left the JUnit report empty".to_owned()),
        Some(Some(xml)) => {
            match schemas::junit_problems(xml) {
                Ok(invalid) => problems.extend(invalid),
                Err(e) => problems.push(e),
            }
            if !(xml.contains("type=\"run-stopped\"") && xml.contains(failed)) {
                problems.push("JUnit has no run-stopped case naming the unwritable output".to_owned());
            }
        }
    }
    match sarif.filter(|x| !x.trim().is_empty()).map(|text| (text, serde_json::from_str::<Value>(text))) {
        None => problems.push("gate left the SARIF report empty".to_owned()),
        Some((_, Err(e))) => problems.push(format!("SARIF is not JSON: {e}")),
        Some((text, Ok(doc))) => {
            problems.extend(schemas::sarif_problems(text));
            let invocation = &doc["runs"][0]["invocations"][0];
            let why = invocation["toolExecutionNotifications"][0]["message"]["text"].as_str().unwrap_or("");
            if invocation["executionSuccessful"] != Value::Bool(false) || !why.contains(failed) {
                problems.push("SARIF's invocation does not say that the run failed on the unwritable output".to_owned());
            }
        }
    }
    problems
}

/// Each SARIF result whose physical location is not the file:line of a finding's holder, given
/// relative to `%SRCROOT%` (the guest passes the test module's build directory as
/// `--source-root`, a CI job's checkout in this setting).
fn sarif_source_problems(tally: &Tally, doc: &Value) -> Vec<String> {
    let holders: Vec<(&str, u64)> =
        tally.evidence.values().flatten().filter_map(|e| Some((e.holder_file.as_deref()?, e.holder_line?))).collect();
    let results = doc["runs"][0]["results"].as_array().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    for result in &results {
        let physical = &result["locations"][0]["physicalLocation"];
        let artifact = &physical["artifactLocation"];
        let (uri, line) = (artifact["uri"].as_str().unwrap_or(""), physical["region"]["startLine"].as_u64());
        if artifact["uriBaseId"] != "%SRCROOT%" || uri.starts_with('/') || uri.contains("://") {
            problems.push(format!("SARIF result located at {uri:?}, not relative to %SRCROOT%"));
            continue;
        }
        let base = doc["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"].as_str().unwrap_or("");
        let resolved = format!("{base}{uri}");
        if !holders.iter().any(|(file, l)| resolved == format!("file://{file}") && line == Some(*l)) {
            problems.push(format!("SARIF result located at {resolved:?} line {line:?}, not at a finding's holder {holders:?}"));
        }
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

    /// A scenario whose `output` cannot be written, of `gate` when `gated`.
    fn unwritable(output: &str, gated: bool) -> Scenario {
        let gate = if gated { "gate_exit = 5\n" } else { "" };
        let toml = format!("[[scenario]]\nname = \"s\"\n{gate}output_unwritable = \"{output}\"\n");
        let file: BTreeMap<String, Vec<Scenario>> = toml::from_str(&toml).unwrap();
        file["scenario"][0].clone()
    }

    /// The stderr line, the JUnit and the SARIF reports of a run stopped because `why`.
    fn stopped(why: &str) -> (String, String, String) {
        let junit = format!(
            "<testsuites name=\"pfn-auditor\" tests=\"1\" failures=\"0\" errors=\"1\">\
             <testsuite name=\"pfn-auditor\" tests=\"1\" failures=\"0\" errors=\"1\">\
             <testcase name=\"the run completed\"><error type=\"run-stopped\" message=\"{why}\"/></testcase>\
             </testsuite></testsuites>"
        );
        let sarif = CLEAN_SARIF.replace(
            "\"results\"",
            &format!(
                "\"invocations\":[{{\"executionSuccessful\":false,\"toolExecutionNotifications\":[{{\"level\":\"error\",\"message\":{{\"text\":\"{why}\"}}}}]}}],\"results\""
            ),
        );
        (format!("pfn-auditor: {why}\n"), junit, sarif)
    }

    /// What the guest sends of a run that exited `status` with `stderr`, and the gate's reports.
    fn sent_stopped(status: &str, stderr: &str, reports: (&str, &str)) -> GuestFiles {
        let mut f = files("", status);
        let sent = |text: &str| Sent { status: status.into(), text: text.into() };
        f.insert(("s".into(), "stderr".into()), sent(stderr));
        f.insert(("s".into(), "junit".into()), sent(reports.0));
        f.insert(("s".into(), "sarif".into()), sent(reports.1));
        f
    }

    #[test]
    fn an_unwritable_output_passes_only_with_its_exit_code_and_the_line_naming_it() {
        let s = unwritable("ndjson", true);
        let (named, junit, sarif) = stopped("cannot write the NDJSON output /dev/full: No space left on device (os error 28)");
        let reports = (junit.as_str(), sarif.as_str());
        assert_eq!(judge(&s, "6.1", &sent_stopped("5", &named, reports), true).map(|_| ()), Ok(()));
        assert!(judge(&s, "6.1", &sent_stopped("0", &named, reports), true).unwrap_err().contains("exited 0"));
        assert!(
            judge(&s, "6.1", &sent_stopped("5", "pfn-auditor: something else\n", reports), true).unwrap_err().contains("does not name")
        );
        let empty = judge(&s, "6.1", &sent_stopped("5", &named, ("", "")), true).unwrap_err();
        assert!(empty.contains("JUnit report empty") && empty.contains("SARIF report empty"), "{empty}");
        let silent = judge(&s, "6.1", &sent_stopped("5", &named, (CLEAN_JUNIT, CLEAN_SARIF)), true).unwrap_err();
        assert!(silent.contains("no run-stopped case") && silent.contains("does not say that the run failed"), "{silent}");
    }

    /// `gate --junit /dev/full`: the line and the SARIF report name the JUnit report; the JUnit
    /// report itself (the device) is not read.
    #[test]
    fn a_gate_whose_junit_report_cannot_be_written_names_it() {
        let (named, _, sarif) = stopped("cannot write the JUnit report /dev/full: No space left on device (os error 28)");
        let s = unwritable("junit", true);
        assert_eq!(judge(&s, "6.1", &sent_stopped("5", &named, ("", &sarif)), true).map(|_| ()), Ok(()));
        let ndjson_named = "pfn-auditor: cannot write the NDJSON output /dev/full: No space left on device (os error 28)\n";
        let other = judge(&s, "6.1", &sent_stopped("5", ndjson_named, ("", &sarif)), true).unwrap_err();
        assert!(other.contains("does not name the unwritable output (cannot write the JUnit report /dev/full)"), "{other}");
        let silent = judge(&s, "6.1", &sent_stopped("5", &named, ("", CLEAN_SARIF)), true).unwrap_err();
        assert!(silent.contains("does not say that the run failed") && !silent.contains("JUnit"), "{silent}");
    }

    /// `run --output -` into a pipe whose reader exited: exit 5 and the line naming stdout.
    #[test]
    fn a_run_writing_into_a_closed_pipe_stops_with_exit_5_naming_stdout() {
        let s = unwritable("closed-pipe", false);
        let named = "pfn-auditor: cannot write the NDJSON output stdout: Broken pipe (os error 32)\n";
        assert_eq!(judge(&s, "6.1", &sent_stopped("5", named, ("", "")), true).map(|_| ()), Ok(()), "run writes no reports");
        assert!(judge(&s, "6.1", &sent_stopped("0", "", ("", "")), true).unwrap_err().contains("exited 0 (expected 5)"));
        let full = "pfn-auditor: cannot write the NDJSON output /dev/full: No space left on device (os error 28)\n";
        assert!(judge(&s, "6.1", &sent_stopped("5", full, ("", "")), true).unwrap_err().contains("does not name"));
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
    fn summary_hooks_must_carry_plausible_bpf_run_time_statistics() {
        let s = scenario("{ kind = \"pin-leaked\", count = 0 }");
        let summary = |hook: &str| format!("{STATUS}{{\"type\":\"summary\",\"hooks\":[{hook}]}}\n");
        let good = summary("{\"hook\":\"follow_pte\",\"hits\":3,\"bpf_runs\":6,\"bpf_run_ns\":4000}");
        assert!(judge(&s, "6.1", &files(&good, "0"), true).is_ok());
        let missing = summary("{\"hook\":\"follow_pte\",\"hits\":3}");
        assert!(judge(&s, "6.1", &files(&missing, "0"), true).unwrap_err().contains("follow_pte has no BPF run-time statistics"));
        let fewer = summary("{\"hook\":\"zap_vma_ptes\",\"hits\":3,\"bpf_runs\":2,\"bpf_run_ns\":10}");
        assert!(judge(&s, "6.1", &files(&fewer, "0"), true).unwrap_err().contains("zap_vma_ptes: 2 BPF runs for 3 hits"));
        let free = summary("{\"hook\":\"zap_vma_ptes\",\"hits\":1,\"bpf_runs\":2,\"bpf_run_ns\":0}");
        assert!(judge(&s, "6.1", &files(&free, "0"), true).unwrap_err().contains("took 0 ns"));
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
    fn the_holder_read_from_the_pins_stack_and_its_pages_are_checked_on_every_finding() {
        let s = scenario("{ kind = \"pin-outlived-revocation\", count = 1, holder = \"pfnaudit_pin_tracked\", pages = 16 }");
        let finding = |holder: &str, pages: u64| {
            format!(
                "{STATUS}{{\"type\":\"finding\",\"kind\":\"pin-outlived-revocation\",\"pin\":{{\"holder\":{{\"function\":\"{holder}\"}},\"pages\":{pages}}}}}\n"
            )
        };
        assert!(judge(&s, "6.1", &files(&finding("pfnaudit_pin_tracked.isra.0", 16), "0"), true).is_ok());
        let why = judge(&s, "6.1", &files(&finding("pfnaudit_storm_a", 15), "0"), true).unwrap_err();
        assert!(why.contains("names holder pfnaudit_storm_a instead of pfnaudit_pin_tracked"), "{why}");
        assert!(why.contains("pin holds 15 page(s) instead of 16"), "{why}");
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

    const CLEAN_JUNIT: &str = "<testsuites name=\"pfn-auditor\" tests=\"1\" failures=\"0\" errors=\"0\">\
        <testsuite name=\"pfn-auditor\" tests=\"1\" errors=\"0\" failures=\"0\"><testcase name=\"no pin outlived a revocation\"/></testsuite>\
        </testsuites>";
    const CLEAN_SARIF: &str = "{\"version\":\"2.1.0\",\"runs\":[{\"tool\":{\"driver\":{\"name\":\"pfn-auditor\"}},\"results\":[]}]}";

    fn clean_gate() -> (Scenario, GuestFiles) {
        let mut s = scenario("");
        s.gate_exit = Some(0);
        let sent = |text: &str| Sent { status: "0".into(), text: text.into() };
        let mut guest = files(STATUS, "0");
        guest.insert(("s".into(), "junit".into()), sent(CLEAN_JUNIT));
        guest.insert(("s".into(), "sarif".into()), sent(CLEAN_SARIF));
        (s, guest)
    }

    #[test]
    fn gate_reports_that_break_their_schemas_fail() {
        let (s, mut guest) = clean_gate();
        assert!(judge(&s, "6.1", &guest, true).is_ok(), "{:?}", judge(&s, "6.1", &guest, true));
        let sent = |text: &str| Sent { status: "0".into(), text: text.into() };
        guest.insert(
            ("s".into(), "junit".into()),
            sent(&CLEAN_JUNIT.replace(" errors=\"0\" failures", " disabled=\"0\" errors=\"0\" failures")),
        );
        guest.insert(("s".into(), "sarif".into()), sent(&CLEAN_SARIF.replace("\"version\":\"2.1.0\",", "")));
        let why = judge(&s, "6.1", &guest, true).unwrap_err();
        assert!(why.contains("JUnit") && why.contains("disabled"), "{why}");
        assert!(why.contains("SARIF") && why.contains("version"), "{why}");
    }

    #[test]
    fn the_holder_must_be_located_at_a_driver_line_that_makes_a_raw_lookup_in_ndjson_and_sarif() {
        let (mut s, mut guest) = clean_gate();
        s.expect = vec![Expect {
            kind: "pin-leaked".into(),
            count: 1,
            path: None,
            holder_module: None,
            holder: None,
            pages: None,
            hook: None,
            caller: None,
            holder_source: Some("pfnaudit_test.c".into()),
        }];
        let source = std::fs::read_to_string(crate::sh::vm_sources_dir().join("module/pfnaudit_test.c")).unwrap();
        let lookup_line = source.lines().position(|l| l.contains("return follow_pfn(")).unwrap() + 1;
        let finding = |line: usize| {
            format!(
                "{STATUS}{{\"type\":\"finding\",\"kind\":\"pin-leaked\",\"pin\":{{\"holder\":{{\"file\":\"/build/pfnaudit_test.c\",\"line\":{line}}}}}}}\n"
            )
        };
        let sarif = |line: usize| {
            CLEAN_SARIF.replace(
                "\"results\":[]",
                &format!("\"originalUriBaseIds\":{{\"%SRCROOT%\":{{\"uri\":\"file:///build/\"}}}},\"results\":[{{\"message\":{{\"text\":\"m\"}},\"locations\":[{{\"physicalLocation\":{{\"artifactLocation\":{{\"uri\":\"pfnaudit_test.c\",\"uriBaseId\":\"%SRCROOT%\"}},\"region\":{{\"startLine\":{line}}}}}}}]}}]"),
            )
        };
        let sent = |text: &str| Sent { status: "0".into(), text: text.into() };
        guest.insert(("s".into(), "ndjson".into()), sent(&finding(lookup_line)));
        guest.insert(("s".into(), "sarif".into()), sent(&sarif(lookup_line)));
        assert!(judge(&s, "6.1", &guest, true).is_ok(), "{:?}", judge(&s, "6.1", &guest, true));
        guest.insert(("s".into(), "sarif".into()), sent(&sarif(1)));
        assert!(judge(&s, "6.1", &guest, true).unwrap_err().contains("SARIF result located at"));
        let absolute = sarif(lookup_line).replace("\"pfnaudit_test.c\",\"uriBaseId\":\"%SRCROOT%\"", "\"file:///build/pfnaudit_test.c\"");
        guest.insert(("s".into(), "sarif".into()), sent(&absolute));
        assert!(judge(&s, "6.1", &guest, true).unwrap_err().contains("not relative to %SRCROOT%"));
        guest.insert(("s".into(), "sarif".into()), sent(&sarif(lookup_line)));
        guest.insert(("s".into(), "ndjson".into()), sent(&finding(1)));
        assert!(judge(&s, "6.1", &guest, true).unwrap_err().contains("which makes no raw lookup"));
        guest.insert(("s".into(), "ndjson".into()), sent(&finding(lookup_line).replace(",\"line\"", ",\"no-line\"")));
        assert!(judge(&s, "6.1", &guest, true).unwrap_err().contains("has no holder file:line"));
    }

    #[test]
    fn a_gate_that_leaves_tracefs_kprobes_behind_fails() {
        let (s, mut guest) = clean_gate();
        let sent = |text: &str| Sent { status: "0".into(), text: text.into() };
        guest.insert(("s".into(), "leftover".into()), sent("\n"));
        assert!(judge(&s, "6.1", &guest, true).is_ok(), "{:?}", judge(&s, "6.1", &guest, true));
        guest.insert(("s".into(), "leftover".into()), sent("p:pfnaudit/e91_0 pfnaudit_test:pfnaudit_unpin_tracked\n"));
        let why = judge(&s, "6.1", &guest, true).unwrap_err();
        assert!(why.contains("left after exit: p:pfnaudit/e91_0"), "{why}");
    }
}
