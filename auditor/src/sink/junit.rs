//! JUnit XML for CI: one test case per distinct finding (by fingerprint), failing when its
//! severity fails the gate; a passing case when nothing was found.
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::correlate::{Finding, Severity};

pub fn render(findings: &[Finding], fail_on: &[Severity]) -> String {
    let mut suite = TestSuite::new("pfn-auditor");
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
    if findings.is_empty() {
        suite.add_test_case(TestCase::new("no pin outlived a revocation", TestCaseStatus::success()));
    }
    let mut report = Report::new("pfn-auditor");
    report.add_test_suite(suite);
    report.to_string().expect("JUnit XML of in-memory strings")
}
