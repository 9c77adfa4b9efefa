//! After a scenario passes, `pfn-auditor replay` of its recording (made with `run --events`) must
//! print exactly the finding records the live run printed: MODEL.md's "bit-for-bit the same
//! findings", checked on real kernel recordings.

use std::path::Path;
use std::process::Command;

/// The `finding` lines of an NDJSON stream, in order.
fn finding_lines(ndjson: &str) -> Vec<&str> {
    ndjson.lines().filter(|l| l.starts_with("{\"type\":\"finding\"")).collect()
}

/// Ok(number of findings compared) when replay agrees with the live run.
pub fn check(auditor: &Path, recording: &Path, policy: &Path) -> Result<usize, String> {
    let live = std::fs::read_to_string(recording).map_err(|e| format!("cannot read {}: {e}", recording.display()))?;
    let out = Command::new(auditor)
        .arg("replay")
        .arg(recording)
        .arg("--policy")
        .arg(policy)
        .output()
        .map_err(|e| format!("cannot run {} replay: {e}", auditor.display()))?;
    if !out.status.success() {
        return Err(format!("replay failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    let replayed = String::from_utf8_lossy(&out.stdout);
    let (live, replayed) = (finding_lines(&live), finding_lines(&replayed));
    if live != replayed {
        return Err(format!("replay printed {} finding(s) that differ from the live run's {}", replayed.len(), live.len()));
    }
    Ok(live.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_finding_records_are_compared() {
        let stream = "{\"type\":\"status\"}\n{\"type\":\"finding\",\"kind\":\"a\"}\n{\"type\":\"summary\",\"findings\":[]}\n";
        assert_eq!(super::finding_lines(stream), vec!["{\"type\":\"finding\",\"kind\":\"a\"}"]);
    }
}
