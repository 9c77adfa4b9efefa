//! JUnit XML for CI: one test case per distinct finding (by fingerprint), failing when its
//! severity fails the gate; a failing case when records were lost and the gate fails closed (a
//! CI page must not show green for a run that proves nothing); an erroring case when the run
//! stopped before its end (an output that could not be written, a setup error), saying why; a
//! passing case when nothing else.
use std::{fs::File, path::Path};

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::{
    pipeline::{OutputError, Sink},
    vocab::{
        finding::{Finding, Severity},
        record::RunSummary,
    },
};

/// The JUnit report of a run, written at its end: a function of the findings, the policy's failing
/// severities and the records lost. The file is opened (and emptied) when the run starts.
pub struct JunitSink {
    name: String,
    file: File,
    fail_on: Vec<Severity>,
    /// `--allow-loss`: lost records do not fail the report.
    allow_loss: bool,
}

impl JunitSink {
    /// Opens `path` with [`super::open_output`]; a refusal is an output error naming the report.
    pub fn create(path: &Path, fail_on: &[Severity], allow_loss: bool) -> Result<Self, OutputError> {
        let name = format!("JUnit report {}", path.display());
        let file = super::open_output(path).map_err(|source| OutputError { output: name.clone(), error: source })?;
        Ok(Self { name, file, fail_on: fail_on.to_vec(), allow_loss })
    }
}

impl Sink for JunitSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn finish(&mut self, summary: &RunSummary) -> std::io::Result<()> {
        self.write(summary, None)
    }

    fn stopped(&mut self, summary: &RunSummary, why: &str) -> std::io::Result<()> {
        self.write(summary, Some(why))
    }
}

impl JunitSink {
    fn write(&mut self, summary: &RunSummary, stopped: Option<&str>) -> std::io::Result<()> {
        let (lost, evicted) = if self.allow_loss { (0, 0) } else { (summary.lost_total, summary.evicted_pins + summary.evicted_pfnmaps) };
        super::write_report(&mut self.file, &render(&summary.findings, &self.fail_on, Losses { lost, evicted }, stopped))
    }
}

/// What a run lost, when it fails the gate (zeros with `--allow-loss`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Losses {
    /// Kernel records lost (ring buffer full, or undecodable).
    pub lost: u64,
    /// Pins and PFN maps the correlator evicted to stay within its bounds.
    pub evicted: u64,
}

/// The JUnit XML of a run's `findings`; `stopped` is why the run did not complete (one line), which
/// makes an erroring case of type `run-stopped`.
pub fn render(findings: &[Finding], fail_on: &[Severity], losses: Losses, stopped: Option<&str>) -> String {
    let Losses { lost, evicted } = losses;
    let mut suite = TestSuite::new("pfn-auditor");
    if let Some(why) = stopped {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(format!("the run stopped before its end, its findings are incomplete: {why}"));
        status.set_type("run-stopped");
        suite.add_test_case(TestCase::new("the run completed", status));
    }
    if lost + evicted > 0 {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status.set_message(if evicted == 0 {
            format!(
                "{lost} kernel record(s) lost (ring buffer full): this run cannot show that no pin outlived a revocation; rerun with a larger --ring-buffer-mib"
            )
        } else {
            format!(
                "{lost} kernel record(s) lost and {evicted} pin(s) or PFN map(s) evicted from the correlator's bounded state: this run cannot show that no pin outlived a revocation; rerun with a larger --max-pins / --max-pfnmaps"
            )
        });
        status.set_type("events-lost");
        suite.add_test_case(TestCase::new("no kernel records lost", status));
    }
    let mut seen: Vec<&str> = Vec::new();
    for f in findings {
        if seen.contains(&f.fingerprint.as_str()) {
            continue;
        }
        seen.push(&f.fingerprint);
        let count = findings.iter().filter(|o| o.fingerprint == f.fingerprint).count();
        let status = if fail_on.contains(&f.severity) {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(f.message.clone()).set_type(f.kind.name()).set_description(super::human::render(f));
            s
        } else {
            TestCaseStatus::success()
        };
        let name = format!("{} {} ({}x) [{}]", f.kind.name(), f.pin.holder, count, f.fingerprint);
        let mut case = TestCase::new(name, status);
        case.set_classname(f.kind.name());
        if !fail_on.contains(&f.severity) {
            case.set_system_out(super::human::render(f));
        }
        suite.add_test_case(case);
    }
    if findings.is_empty() && lost + evicted == 0 && stopped.is_none() {
        suite.add_test_case(TestCase::new("no pin outlived a revocation", TestCaseStatus::success()));
    }
    let mut report = Report::new("pfn-auditor");
    report.add_test_suite(suite);
    let xml = report.to_string().expect("JUnit XML of in-memory strings");
    // quick-junit writes `disabled` on every <testsuite>, an attribute Jenkins' junit-10.xsd does
    // not allow (tests/schemas). The suite's tag is the first to carry it (<testsuites> does not,
    // and attribute values escape their quotes), and no case here is ever disabled.
    xml.replacen(" disabled=\"0\"", "", 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::synthetic::kept_past_munmap as error_finding;

    #[test]
    fn a_clean_run_is_one_passing_case() {
        let xml = render(&[], &[Severity::Error], Losses::default(), None);
        assert!(xml.contains("no pin outlived a revocation") && !xml.contains("<failure"), "{xml}");
    }

    #[test]
    fn evicted_state_fails_like_lost_records() {
        let xml = render(&[], &[Severity::Error], Losses { lost: 0, evicted: 2 }, None);
        assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
        assert!(xml.contains("2 pin(s) or PFN map(s) evicted") && xml.contains("events-lost"), "{xml}");
        assert!(!xml.contains("name=\"no pin outlived a revocation\""), "a run that evicted pins proves no absence: {xml}");
    }

    #[test]
    fn lost_records_fail_even_without_findings() {
        let xml = render(&[], &[Severity::Error], Losses { lost: 7, evicted: 0 }, None);
        assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
        assert!(xml.contains("7 kernel record(s) lost") && xml.contains("events-lost"), "{xml}");
        assert!(!xml.contains("name=\"no pin outlived a revocation\""), "a run that lost records proves no absence: {xml}");
    }

    #[test]
    fn error_findings_fail_by_kind() {
        let findings = error_finding();
        let xml = render(&findings, &[Severity::Error], Losses::default(), None);
        assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
        assert!(xml.contains("type=\"pin-outlived-unmap\""), "{xml}");
    }

    #[test]
    fn a_run_that_stopped_is_an_erroring_case_that_says_why() {
        let why = "cannot write the NDJSON output /dev/full: No space left on device (os error 28)";
        let xml = render(&[], &[Severity::Error], Losses::default(), Some(why));
        assert_eq!(xml.matches("<error").count(), 1, "{xml}");
        assert!(xml.contains("type=\"run-stopped\"") && xml.contains(why), "{xml}");
        assert!(!xml.contains("name=\"no pin outlived a revocation\""), "a run cut short proves no absence: {xml}");
    }
}
