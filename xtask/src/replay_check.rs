//! After a scenario passes, `pfn-auditor replay` of its recording (made with `run --events`, or
//! the gate's `--output`) must print exactly the finding records the live run printed: MODEL.md's
//! "bit-for-bit the same findings", checked on real kernel recordings. For a gate scenario the
//! replay also writes `--junit` and `--sarif` with the gate's options (policy, source root), and
//! both reports must be the bytes the gate wrote: nothing in them depends on the run's time or
//! host (no timestamps, no durations; the tool version comes from the recorded `status`).

use std::path::Path;
use std::process::Command;

/// The `finding` lines of an NDJSON stream, in order.
fn finding_lines(ndjson: &str) -> Vec<&str> {
    ndjson.lines().filter(|l| l.starts_with("{\"type\":\"finding\"")).collect()
}

/// The JUnit and SARIF reports a gate scenario wrote, as the guest sent them.
pub struct GateReports<'a> {
    pub junit: &'a str,
    pub sarif: &'a str,
    /// The gate's `--source-root` (none: it had none).
    pub source_root: Option<&'a Path>,
}

/// A file as the guest sends it (`send` in tests/vm/guest/init.sh): its bytes and one newline.
fn as_sent(bytes: &str) -> String {
    format!("{bytes}\n")
}

/// Where `sent` (a report as the guest sent it) and `replayed` (as replay wrote it) first differ,
/// or `None` when the replayed bytes are the ones the gate wrote.
fn first_difference(sent: &str, replayed: &str) -> Option<String> {
    let replayed = as_sent(replayed);
    if sent == replayed {
        return None;
    }
    let (sent, replayed): (Vec<&str>, Vec<&str>) = (sent.split('\n').collect(), replayed.split('\n').collect());
    let at = sent.iter().zip(&replayed).position(|(a, b)| a != b).unwrap_or(sent.len().min(replayed.len()));
    let line = |lines: &[&str]| lines.get(at).map_or("(end)".to_string(), |l| format!("{l:?}"));
    Some(format!("line {}: gate {} vs replay {}", at + 1, line(&sent), line(&replayed)))
}

/// Ok(a one-line account of what was compared) when replay agrees with the live run. `gate`: the
/// reports of a gate scenario, replayed into `<recording>.replayed.junit` / `.replayed.sarif`.
pub fn check(auditor: &Path, recording: &Path, policy: &Path, gate: Option<&GateReports>) -> Result<String, String> {
    let live = std::fs::read_to_string(recording).map_err(|e| format!("cannot read {}: {e}", recording.display()))?;
    let mut replay = Command::new(auditor);
    replay.arg("replay").arg(recording).arg("--policy").arg(policy);
    let reports = gate.map(|g| (g, recording.with_extension("replayed.junit"), recording.with_extension("replayed.sarif")));
    if let Some((g, junit, sarif)) = &reports {
        replay.arg("--junit").arg(junit).arg("--sarif").arg(sarif);
        if let Some(root) = g.source_root {
            replay.arg("--source-root").arg(root);
        }
    }
    let out = replay.output().map_err(|e| format!("cannot run {} replay: {e}", auditor.display()))?;
    if !out.status.success() {
        return Err(format!("replay failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    let replayed = String::from_utf8_lossy(&out.stdout);
    let (live, replayed) = (finding_lines(&live), finding_lines(&replayed));
    if live != replayed {
        return Err(format!("replay printed {} finding(s) that differ from the live run's {}", replayed.len(), live.len()));
    }
    let Some((g, junit, sarif)) = reports else {
        return Ok(format!("replay reprints the {} finding(s) byte for byte", live.len()));
    };
    for (name, sent, path) in [("JUnit", g.junit, &junit), ("SARIF", g.sarif, &sarif)] {
        let written = std::fs::read_to_string(path).map_err(|e| format!("replay wrote no {name} report {}: {e}", path.display()))?;
        if let Some(difference) = first_difference(sent, &written) {
            return Err(format!("replay's {name} report {} differs from the gate's, {difference}", path.display()));
        }
    }
    Ok(format!("replay reprints the {} finding(s), the JUnit and the SARIF report byte for byte", live.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finding_records_are_compared() {
        let stream = "{\"type\":\"status\"}\n{\"type\":\"finding\",\"kind\":\"a\"}\n{\"type\":\"summary\",\"findings\":[]}\n";
        assert_eq!(finding_lines(stream), vec!["{\"type\":\"finding\",\"kind\":\"a\"}"]);
    }

    #[test]
    fn a_report_equals_the_gate_s_only_byte_for_byte_after_the_newline_the_guest_adds() {
        let report = "<testsuites>\n  <testsuite/>\n</testsuites>\n";
        assert_eq!(first_difference(&as_sent(report), report), None);
        assert_eq!(
            first_difference(report, report).as_deref(),
            Some("line 5: gate (end) vs replay \"\""),
            "the guest's newline is expected"
        );
        let other = report.replace("<testsuite/>", "<testsuite tests=\"1\"/>");
        assert_eq!(
            first_difference(&as_sent(report), &other).as_deref(),
            Some("line 2: gate \"  <testsuite/>\" vs replay \"  <testsuite tests=\\\"1\\\"/>\"")
        );
        assert_eq!(first_difference(&as_sent(report), "").as_deref(), Some("line 1: gate \"<testsuites>\" vs replay \"\""));
    }
}
