//! One JSON object a line. Flushed per finding, per status, hook and loss record, and at the end
//! (then synced when it is a file), so a dashboard tailing the file sees findings live; raw events
//! are buffered between those. Each line goes to its [`Destination`] whole, so a rotated or
//! reopened file never splits one.
use super::output_file::Destination;

use crate::{
    pipeline::Sink,
    vocab::{
        event::Event,
        finding::Finding,
        record::{HookChange, Lost, Record, RunSummary, Status},
    },
};

/// Which records an NDJSON output carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdjsonRecords {
    /// Everything a run writes: status, hooks, events (when `events`), findings, losses, summary.
    All { events: bool },
    /// Finding records only (what `replay` prints on stdout).
    Findings,
}

pub struct NdjsonSink<W: Destination> {
    out: W,
    name: String,
    records: NdjsonRecords,
    /// The line being written, reused.
    line: Vec<u8>,
}

impl<W: Destination> NdjsonSink<W> {
    /// `name` says where the records go, for error messages ("stdout", a path).
    pub fn new(out: W, name: &str, records: NdjsonRecords) -> Self {
        Self { out, name: name.to_string(), records, line: Vec::with_capacity(1024) }
    }

    fn all(&self) -> bool {
        matches!(self.records, NdjsonRecords::All { .. })
    }

    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record)?;
        self.line.push(b'\n');
        self.out.write_record(&self.line)
    }

    fn write_flushed(&mut self, record: &Record) -> std::io::Result<()> {
        self.write(record)?;
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Destination> Sink for NdjsonSink<W> {
    fn name(&self) -> String {
        format!("NDJSON output {}", self.name)
    }

    fn status(&mut self, status: &Status) -> std::io::Result<()> {
        if self.all() { self.write_flushed(&Record::Status(status.clone())) } else { Ok(()) }
    }

    fn hook_changed(&mut self, change: &HookChange) -> std::io::Result<()> {
        if self.all() { self.write_flushed(&Record::Hook(change.clone())) } else { Ok(()) }
    }

    fn event(&mut self, event: &Event) -> std::io::Result<()> {
        if self.records == (NdjsonRecords::All { events: true }) { self.write(&Record::Event(event.clone())) } else { Ok(()) }
    }

    fn finding(&mut self, finding: &Finding) -> std::io::Result<()> {
        self.write_flushed(&Record::Finding(finding.clone()))
    }

    fn lost(&mut self, lost: &Lost) -> std::io::Result<()> {
        if self.all() { self.write_flushed(&Record::Lost(lost.clone())) } else { Ok(()) }
    }

    fn finish(&mut self, summary: &RunSummary) -> std::io::Result<()> {
        if self.all() {
            self.write(&Record::Summary(summary.clone()))?;
        }
        self.out.sync()
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        self.out.reopen()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::correlate::{
        Correlator,
        synthetic::{Proc, Stream},
    };

    /// Counts flushes; fails every write once `full` is set.
    #[derive(Default)]
    struct Disk {
        bytes: Vec<u8>,
        flushes: usize,
        full: bool,
    }

    impl Destination for &mut Disk {}

    impl Write for &mut Disk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.full {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    #[test]
    fn findings_are_flushed_as_they_are_made_events_wait_and_errors_surface() {
        let p = Proc::new(1);
        let mut s = Stream::default();
        s.pfn_map(&p).frames_get(&p, 0x1000, true, 1);
        let mut disk = Disk::default();
        let mut sink = NdjsonSink::new(&mut disk, "run.ndjson", NdjsonRecords::All { events: true });
        let mut c = Correlator::new(&crate::policy::Policy::default());
        sink.event(&s.events[0]).unwrap();
        assert_eq!(sink.out.flushes, 0, "events are buffered");
        let found = c.handle(&s.events[1]);
        sink.finding(&found[0]).unwrap();
        assert_eq!(sink.out.flushes, 1, "a finding is flushed at once");
        sink.out.full = true;
        let err = sink.finding(&found[0]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(sink.name(), "NDJSON output run.ndjson");
    }
}
