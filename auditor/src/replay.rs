//! `pfn-auditor replay FILE`: re-correlates the `event` records of a recorded run
//! (`run --events`). Same correlator, same policy → the same finding records, byte for byte.
use std::io::BufRead;

use crate::{
    correlate::{Correlator, Finding, Summary},
    policy::Policy,
    record::Record,
};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{file}:{line}: not a pfn-auditor record: {reason}")]
    Corrupt { file: String, line: usize, reason: String },
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: was not recorded with events (record the run with `pfn-auditor run --events`)")]
    NoEvents { file: String },
}

/// Findings as they were emitted live (in order), and the end-of-run summary.
pub fn replay(reader: impl BufRead, file: &str, policy: &Policy) -> Result<(Vec<Finding>, Summary), ReplayError> {
    let mut correlator = Correlator::new(policy);
    let mut live = Vec::new();
    let mut events = 0usize;
    // A run recorded with --events may have seen no event at all; one recorded without can't be replayed.
    let mut recorded_events = false;
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| ReplayError::Io { file: file.to_string(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = crate::replay_parse::record(&line)
            .map_err(|e| ReplayError::Corrupt { file: file.to_string(), line: index + 1, reason: e.to_string() })?;
        match record {
            Record::Event(event) => {
                events += 1;
                live.extend(correlator.handle(&event));
            }
            Record::Status(status) => recorded_events |= status.events,
            _ => {}
        }
    }
    if events == 0 && !recorded_events {
        return Err(ReplayError::NoEvents { file: file.to_string() });
    }
    Ok((live, correlator.finish()))
}
