//! The recording source (`pfn-auditor replay FILE`): the records of a recorded run
//! (`run --events`, `gate --output`) fed to the same [`Pipeline`] a live run uses. Same correlator,
//! same policy → the same finding records, byte for byte, and the same reports.
//!
//! Recorded `finding` and `summary` records are not replayed (findings are made again); the
//! summary's kernel counters and duration are carried over, so reports that show them match.
use std::io::BufRead;

use crate::{
    pipeline::{OutputError, Pipeline, RunEnd, Sink},
    policy::Policy,
    vocab::record::{Record, RunSummary},
};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{file}:{line}: not a pfn-auditor record: {reason}")]
    Corrupt { file: String, line: usize, reason: String },
    /// The I/O error is part of the message, not a source: the one line says it once.
    #[error("{file}: {error}")]
    Io { file: String, error: std::io::Error },
    #[error("{file}: was not recorded with events (record the run with `pfn-auditor run --events`)")]
    NoEvents { file: String },
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`): a parser's message quotes the
/// recording, whose JSON strings may hold any character, and a replay error is one line.
fn on_one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Replays a recording into `sinks` (the correlator's default bounds); returns the run's summary.
pub fn replay(reader: impl BufRead, file: &str, policy: &Policy, sinks: Vec<Box<dyn Sink>>) -> Result<RunSummary, ReplayError> {
    replay_into(reader, file, Pipeline::new(policy, sinks))
}

/// [`replay`] into a pipeline made by the caller (e.g. one that reopens its outputs on SIGHUP).
/// A recording that cannot be read to its end stops the run: the reports say why
/// ([`Pipeline::abandon`]).
pub fn replay_into(reader: impl BufRead, file: &str, mut pipeline: Pipeline) -> Result<RunSummary, ReplayError> {
    match feed(reader, file, &mut pipeline) {
        Ok(end) => match pipeline.finish(end) {
            (_, Some(error)) => Err(error.into()),
            (summary, None) => Ok(summary),
        },
        Err(e) => {
            pipeline.abandon(&e.to_string());
            Err(e)
        }
    }
}

/// Every record of the recording into `pipeline`, until its end or a failed output; the recorded
/// summary's kernel counters and duration.
fn feed(mut reader: impl BufRead, file: &str, pipeline: &mut Pipeline) -> Result<RunEnd, ReplayError> {
    let mut end = RunEnd::default();
    let mut events = 0usize;
    // A run recorded with --events may have seen no event at all; one recorded without can't be replayed.
    let mut recorded_events = false;
    // One line buffer for the whole file (`lines()` allocates a `String` per line).
    let mut buf = String::new();
    for index in 0.. {
        buf.clear();
        let read = reader.read_line(&mut buf).map_err(|error| match error.kind() {
            // "stream did not contain valid UTF-8": which line, in the words of the other corrupt lines.
            std::io::ErrorKind::InvalidData => {
                ReplayError::Corrupt { file: file.to_string(), line: index + 1, reason: "not UTF-8 text".into() }
            }
            _ => ReplayError::Io { file: file.to_string(), error },
        })?;
        if read == 0 {
            break;
        }
        let line = buf.strip_suffix('\n').map_or(buf.as_str(), |l| l.strip_suffix('\r').unwrap_or(l));
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = crate::replay_parse::record(line).map_err(|e| ReplayError::Corrupt {
            file: file.to_string(),
            line: index + 1,
            reason: on_one_line(&e.to_string()),
        })?;
        match record {
            Record::Status(status) => {
                recorded_events |= status.events;
                pipeline.status(&status);
            }
            Record::Hook(change) => pipeline.hook_changed(&change),
            Record::Event(event) => {
                events += 1;
                pipeline.event(&event);
            }
            Record::Lost(lost) => pipeline.lost(&lost),
            Record::Finding(_) => {}
            Record::Summary(summary) => end = RunEnd { hooks: summary.hooks, duration_ms: summary.duration_ms },
        }
        if pipeline.failed() {
            break;
        }
    }
    if events == 0 && !recorded_events && !pipeline.failed() {
        return Err(ReplayError::NoEvents { file: file.to_string() });
    }
    Ok(end)
}
