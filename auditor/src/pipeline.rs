//! The one run loop: a source (a live [`crate::daemon::Session`] through `live.rs`, or a recording
//! through `replay.rs`) feeds records to a [`Pipeline`], which drives the correlator and hands every
//! record to each [`Sink`] in order. Sinks never see the source; the source never sees a sink.
//!
//! An output that cannot be written stops the run: the first [`OutputError`] is kept, later records
//! are not delivered, and the source stops at its next check of [`Pipeline::failed`].
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::{
    correlate::{Correlator, Options},
    policy::Policy,
    vocab::{
        event::{Event, HookRef},
        finding::Finding,
        record::{HookChange, Levels, LossReason, Lost, RunSummary, Status},
    },
};

/// One output of a run: NDJSON, human text, JUnit, SARIF, metrics. Every method has a no-op
/// default, so a sink implements only what it shows. An `Err` stops the run (exit code 5).
pub trait Sink {
    /// Names the output in error messages ("NDJSON output run.ndjson", "JUnit report junit.xml").
    fn name(&self) -> String;
    /// The run starts, just before its first record (a live run: attached; a replay: its first
    /// record read). A file output kept whole until now is emptied here (`sink::begin_file`), so
    /// a run that fails to start leaves the previous run's file as it was.
    fn begin(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// First record of a run: what is attached where (for a replay: as recorded).
    fn status(&mut self, _status: &Status) -> std::io::Result<()> {
        Ok(())
    }
    /// A hook in a module attached or detached after `status`.
    fn hook_changed(&mut self, _change: &HookChange) -> std::io::Result<()> {
        Ok(())
    }
    /// One decoded kernel event, before the correlator sees it.
    fn event(&mut self, _event: &Event) -> std::io::Result<()> {
        Ok(())
    }
    /// A finding, the moment it is made (end-of-run leaks come just before `finish`).
    fn finding(&mut self, _finding: &Finding) -> std::io::Result<()> {
        Ok(())
    }
    /// Records of a hook the kernel could not hand over, or that could not be decoded.
    fn lost(&mut self, _lost: &Lost) -> std::io::Result<()> {
        Ok(())
    }
    /// Last call: the run's summary. Reports written at the end are written (and synced) here.
    fn finish(&mut self, _summary: &RunSummary) -> std::io::Result<()> {
        Ok(())
    }
    /// The run stopped because another output failed (`why`: that output's error, one line):
    /// reports written at the end are written anyway, saying why the run is incomplete, so a CI
    /// page shows the failure instead of an empty file. `summary` holds what was known when it
    /// stopped. Only the sinks after and before the failed one get it, never the failed one.
    fn stopped(&mut self, _summary: &RunSummary, _why: &str) -> std::io::Result<()> {
        Ok(())
    }
    /// SIGHUP: reopen the output at its path (logrotate moved the file away), between two records.
    fn reopen(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// The correlator's current state, at every poll of a live run (every 100 ms) and at the end.
    fn levels(&mut self, _levels: &Levels) -> std::io::Result<()> {
        Ok(())
    }
}

/// An output could not be written (`write`, `flush` or `fsync` failed). The I/O error is part of
/// the message, not a source: the one line says it once.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the {output}: {error}")]
pub struct OutputError {
    pub output: String,
    pub error: std::io::Error,
}

/// What the source knows at the end of a run and the pipeline does not.
#[derive(Clone, Debug, Default)]
pub struct RunEnd {
    /// Kernel counters per hook (for a replay: the recorded summary's).
    pub hooks: Vec<crate::vocab::record::HookTotals>,
    pub duration_ms: u64,
}

/// Correlator plus sinks: the part of a run that live and replayed runs share.
pub struct Pipeline {
    correlator: Correlator,
    sinks: Vec<Box<dyn Sink>>,
    /// Findings already handed to the sinks (the summary's first `reported` entries).
    reported: usize,
    events: u64,
    /// Records lost (ring buffer full, or undecodable), from the `lost` records.
    lost_total: u64,
    /// Of those, the records the daemon could not decode, per hook (`None`: unknown).
    undecodable: BTreeMap<Option<HookRef>, u64>,
    error: Option<OutputError>,
    /// Which sink failed (an index into `sinks`), or `None` for a failure outside the sinks.
    failed_sink: Option<usize>,
    /// Set by the SIGHUP handler: reopen the outputs before the next record.
    reopen: Option<Arc<AtomicBool>>,
    /// `Sink::begin` was called (before the first record).
    begun: bool,
}

impl Pipeline {
    /// A pipeline whose correlator has the default bounds ([`Options::default`]).
    pub fn new(policy: &Policy, sinks: Vec<Box<dyn Sink>>) -> Self {
        Self::with_options(policy, Options::default(), sinks)
    }

    /// A pipeline whose correlator keeps its state within `options` (`--max-pins`, `--max-pfnmaps`).
    pub fn with_options(policy: &Policy, options: Options, sinks: Vec<Box<dyn Sink>>) -> Self {
        Self {
            correlator: Correlator::with_options(policy, options),
            sinks,
            reported: 0,
            events: 0,
            lost_total: 0,
            undecodable: BTreeMap::new(),
            error: None,
            failed_sink: None,
            reopen: None,
            begun: false,
        }
    }

    /// Reopens every output (`Sink::reopen`) before the next record once `flag` is set (and clears
    /// it): what `signal_hook::flag::register(SIGHUP, flag)` sets.
    pub fn reopen_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.reopen = Some(flag);
        self
    }

    /// Between records (a live run's 100 ms tick): reopens the outputs when asked, so a rotated
    /// file is let go even when nothing is recorded, and hands the sinks the current levels.
    pub(crate) fn poll(&mut self) {
        let levels = self.levels();
        self.each(|s| s.levels(&levels));
    }

    fn levels(&self) -> Levels {
        Levels { pins_held: self.correlator.pins_held() as u64, pfnmaps: self.correlator.pfnmaps_tracked() as u64 }
    }

    /// Whether an output failed: the source should stop feeding records.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Hands one record to every sink, keeping the first error.
    fn each(&mut self, mut deliver: impl FnMut(&mut dyn Sink) -> std::io::Result<()>) {
        if self.error.is_some() {
            return;
        }
        if !self.begun {
            self.begun = true;
            for sink in &mut self.sinks {
                if let Err(source) = sink.begin() {
                    self.error = Some(OutputError { output: sink.name(), error: source });
                    return;
                }
            }
        }
        if let Some(flag) = &self.reopen
            && flag.swap(false, Ordering::Relaxed)
        {
            for (i, sink) in self.sinks.iter_mut().enumerate() {
                if let Err(source) = sink.reopen() {
                    self.error = Some(OutputError { output: sink.name(), error: source });
                    self.failed_sink = Some(i);
                    return;
                }
            }
        }
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            if let Err(source) = deliver(sink.as_mut()) {
                self.error = Some(OutputError { output: sink.name(), error: source });
                self.failed_sink = Some(i);
                return;
            }
        }
    }

    pub fn status(&mut self, status: &Status) {
        self.each(|s| s.status(status));
    }

    pub(crate) fn hook_changed(&mut self, change: &HookChange) {
        self.each(|s| s.hook_changed(change));
    }

    pub fn event(&mut self, event: &Event) {
        self.events += 1;
        self.each(|s| s.event(event));
        let found = self.correlator.handle(event);
        self.reported += found.len();
        for f in &found {
            self.each(|s| s.finding(f));
        }
    }

    pub fn lost(&mut self, lost: &Lost) {
        self.lost_total += lost.count;
        if lost.reason == Some(LossReason::Undecodable) {
            *self.undecodable.entry(lost.hook.clone()).or_default() += lost.count;
        }
        self.each(|s| s.lost(lost));
    }

    /// Ends a run that could not go on for a reason outside the outputs (a setup error after the
    /// outputs were opened: no hook attached, the command could not be started): every sink is
    /// told `why` ([`Sink::stopped`]) with what was known so far, so no report is left empty.
    pub fn abandon(mut self, why: &str) {
        let result = self.correlator.finish();
        let summary = self.summary(result, RunEnd::default());
        self.tell_stopped(&summary, why);
    }

    /// The sinks but the failed one learn why the run stopped. A report that cannot be written
    /// either is a warning: the run's one error line names the first output that failed.
    fn tell_stopped(&mut self, summary: &RunSummary, why: &str) {
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            if Some(i) == self.failed_sink {
                continue;
            }
            if let Err(e) = sink.stopped(summary, why) {
                log::warn!("{}", OutputError { output: sink.name(), error: e });
            }
        }
    }

    /// The run's summary record: the correlator's `result` and what the pipeline counted.
    fn summary(&mut self, result: crate::correlate::Summary, end: RunEnd) -> RunSummary {
        RunSummary {
            findings: result.findings,
            counts: result.counts,
            suppressed: result.suppressed,
            suppressed_by: result.suppressed_by,
            pins_held: result.pins_held,
            pins_without_vma: result.pins_without_vma,
            evicted_pins: result.evicted_pins,
            evicted_pfnmaps: result.evicted_pfnmaps,
            events: self.events,
            lost_total: self.lost_total,
            undecodable: std::mem::take(&mut self.undecodable),
            hooks: end.hooks,
            duration_ms: end.duration_ms,
        }
    }

    /// Ends the run: end-of-run findings (leaks), then the summary to every sink. The summary
    /// is returned even when an output failed (the caller reports the error); the other sinks
    /// are then told why the run stopped ([`Sink::stopped`]).
    pub fn finish(mut self, end: RunEnd) -> (RunSummary, Option<OutputError>) {
        self.poll();
        let result = self.correlator.finish();
        for f in &result.findings[self.reported..] {
            self.each(|s| s.finding(f));
        }
        let summary = self.summary(result, end);
        self.each(|s| s.finish(&summary));
        if let Some(error) = &self.error {
            let why = error.to_string();
            self.tell_stopped(&summary, &why);
        }
        (summary, self.error)
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, rc::Rc};

    use super::*;
    use crate::correlate::synthetic::{Proc, Stream};

    /// Records what it was given, and fails on the nth call when told to.
    #[derive(Default)]
    struct Probe {
        calls: Rc<RefCell<Vec<String>>>,
        fail_at: Option<usize>,
    }

    impl Probe {
        fn note(&mut self, what: &str) -> std::io::Result<()> {
            let mut calls = self.calls.borrow_mut();
            calls.push(what.to_string());
            if Some(calls.len()) == self.fail_at {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            Ok(())
        }
    }

    impl Sink for Probe {
        fn name(&self) -> String {
            "probe output".into()
        }
        fn event(&mut self, _: &Event) -> std::io::Result<()> {
            self.note("event")
        }
        fn finding(&mut self, f: &Finding) -> std::io::Result<()> {
            self.note(f.kind.name())
        }
        fn lost(&mut self, l: &Lost) -> std::io::Result<()> {
            self.note(&format!("lost {} {}", l.hook_name(), l.count))
        }
        fn finish(&mut self, s: &RunSummary) -> std::io::Result<()> {
            self.note(&format!("finish lost_total={}", s.lost_total))
        }
        fn stopped(&mut self, s: &RunSummary, why: &str) -> std::io::Result<()> {
            self.note(&format!("stopped with {} finding(s): {why}", s.findings.len()))
        }
    }

    fn leak_stream() -> Stream {
        let p = Proc::new(1);
        let mut s = Stream::default();
        s.pfn_map(&p).frames_get(&p, 0x1000, true, 1);
        s
    }

    #[test]
    fn sinks_see_events_live_findings_end_findings_then_the_summary() {
        let calls = Rc::new(RefCell::new(Vec::new()));
        let mut p = Pipeline::new(&Policy::default(), vec![Box::new(Probe { calls: calls.clone(), fail_at: None })]);
        for e in &leak_stream().events {
            p.event(e);
        }
        p.lost(&Lost::ring_full(HookRef::from_name("follow_pfn"), 2, 9));
        p.lost(&Lost::undecodable(Some(HookRef::from_name("zap_vma_ptes")), 1, 10));
        p.lost(&Lost::undecodable(None, 4, 11));
        let (summary, error) = p.finish(RunEnd::default());
        assert!(error.is_none());
        assert_eq!(summary.lost_total, 7, "undecodable records count as lost");
        assert_eq!(summary.undecodable, BTreeMap::from([(None, 4), (Some(HookRef::from_name("zap_vma_ptes")), 1)]));
        assert_eq!(
            *calls.borrow(),
            [
                "event",
                "event",
                "pfnmap-frame-vector",
                "lost follow_pfn 2",
                "lost zap_vma_ptes 1",
                "lost unknown 4",
                "pin-leaked",
                "finish lost_total=7"
            ]
        );
    }

    #[test]
    fn the_first_output_error_stops_delivery_and_names_the_output() {
        let calls = Rc::new(RefCell::new(Vec::new()));
        let mut p = Pipeline::new(&Policy::default(), vec![Box::new(Probe { calls: calls.clone(), fail_at: Some(2) })]);
        for e in &leak_stream().events {
            p.event(e);
        }
        assert!(p.failed());
        let (_, error) = p.finish(RunEnd::default());
        let error = error.expect("the write error");
        assert_eq!(calls.borrow().len(), 2, "nothing delivered after the failure: {:?}", calls.borrow());
        assert!(error.to_string().starts_with("cannot write the probe output: "), "{error}");
    }

    #[test]
    fn after_an_output_error_the_other_sinks_are_told_why_the_run_stopped() {
        let (failing, other) = (Rc::new(RefCell::new(Vec::new())), Rc::new(RefCell::new(Vec::new())));
        let sinks: Vec<Box<dyn Sink>> =
            vec![Box::new(Probe { calls: failing.clone(), fail_at: Some(1) }), Box::new(Probe { calls: other.clone(), fail_at: None })];
        let mut p = Pipeline::new(&Policy::default(), sinks);
        for e in &leak_stream().events {
            p.event(e);
        }
        let (_, error) = p.finish(RunEnd::default());
        assert!(error.is_some());
        assert_eq!(*failing.borrow(), ["event"], "the failed output is not written again");
        assert_eq!(
            other.borrow().last().map(String::as_str),
            Some("stopped with 2 finding(s): cannot write the probe output: No space left on device (os error 28)")
        );
    }

    #[test]
    fn an_abandoned_run_tells_every_sink_why() {
        let calls = Rc::new(RefCell::new(Vec::new()));
        let p = Pipeline::new(&Policy::default(), vec![Box::new(Probe { calls: calls.clone(), fail_at: None })]);
        p.abandon("no raw PFN lookup hook could be attached");
        assert_eq!(*calls.borrow(), ["stopped with 0 finding(s): no raw PFN lookup hook could be attached"]);
    }
}
