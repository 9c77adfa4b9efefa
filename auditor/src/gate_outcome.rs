//! `gate`'s exit code: the one documented contract CI scripts rely on (docs/exit-codes.md).
use crate::vocab::finding::{Finding, Severity};

/// Exit codes of `pfn-auditor` (all subcommands use `SETUP`).
pub mod code {
    pub const CLEAN: u8 = 0;
    /// Findings at a severity the policy fails on.
    pub(crate) const FINDINGS: u8 = 1;
    /// Could not start: bad policy, no privileges, kernel without the needed hooks, bad input file.
    pub const SETUP: u8 = 2;
    /// Events were lost (ring buffer full): the run proves nothing. `--allow-loss` waives it.
    pub(crate) const EVENTS_LOST: u8 = 3;
    /// The command under test failed and there were no failing findings.
    pub(crate) const COMMAND_FAILED: u8 = 4;
    /// An output (NDJSON, JUnit, SARIF, human text) could not be created, written, flushed or
    /// synced: the run stopped, its records are incomplete.
    pub const OUTPUT: u8 = 5;
}

/// Precedence: failing findings, then lost events (fail closed), then the command's own failure.
pub fn exit_code(findings: &[Finding], fail_on: &[Severity], lost_total: u64, allow_loss: bool, command_succeeded: bool) -> u8 {
    if findings.iter().any(|f| fail_on.contains(&f.severity)) {
        code::FINDINGS
    } else if lost_total > 0 && !allow_loss {
        code::EVENTS_LOST
    } else if !command_succeeded {
        code::COMMAND_FAILED
    } else {
        code::CLEAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        correlate::{
            Correlator,
            synthetic::{Proc, Stream},
        },
        policy::Policy,
    };

    fn leak_warning() -> Vec<Finding> {
        let p = Proc::new(1);
        let mut s = Stream::default();
        s.pfn_map(&p).frames_get(&p, 0x1000, false, 1);
        let mut c = Correlator::new(&Policy::default());
        s.events.iter().for_each(|e| drop(c.handle(e)));
        c.finish().findings
    }

    #[test]
    fn warnings_fail_only_when_the_policy_says_so() {
        let warnings = leak_warning();
        assert_eq!(warnings[0].severity, Severity::Warning);
        assert_eq!(exit_code(&warnings, &[Severity::Error], 0, false, true), code::CLEAN);
        assert_eq!(exit_code(&warnings, &[Severity::Error, Severity::Warning], 0, false, true), code::FINDINGS);
    }

    #[test]
    fn lost_events_fail_closed_unless_allowed_and_rank_below_findings() {
        assert_eq!(exit_code(&[], &[Severity::Error], 3, false, true), code::EVENTS_LOST);
        assert_eq!(exit_code(&[], &[Severity::Error], 3, true, true), code::CLEAN);
        let warnings = leak_warning();
        assert_eq!(exit_code(&warnings, &[Severity::Warning], 3, false, false), code::FINDINGS);
    }

    #[test]
    fn a_failing_command_is_reported_when_nothing_else_is() {
        assert_eq!(exit_code(&[], &[Severity::Error], 0, false, false), code::COMMAND_FAILED);
        assert_eq!(exit_code(&[], &[Severity::Error], 1, false, false), code::EVENTS_LOST);
    }
}
