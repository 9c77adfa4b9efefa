//! Live runs (`run`, `gate`): a [`Session`] feeding the correlator, with records written as they
//! happen — findings the moment a revocation covers a pin, then a summary at the end.
use std::{future::Future, io::Write, path::PathBuf, time::Instant};

use crate::{
    correlate::{Correlator, Finding},
    daemon::{Observer, Session, SessionOptions},
    decode::DecodeError,
    event::Event,
    policy::Policy,
    probes::{Attached, HookState, HookStatus},
    record::{HookChange, Lost, Record, RunSummary, SCHEMA_VERSION, Status},
    sink::{human, ndjson::NdjsonSink},
};

pub struct LiveOptions {
    pub policy: Policy,
    pub policy_path: Option<PathBuf>,
    /// Write raw `event` records too (for `replay`).
    pub events: bool,
    /// Print findings for humans on stderr.
    pub human: bool,
    pub ring_buffer_bytes: u32,
    pub metrics: Option<std::net::SocketAddr>,
}

/// Turns session callbacks into records.
struct Reporter {
    sink: Option<NdjsonSink<Box<dyn Write>>>,
    correlator: Correlator,
    events: bool,
    human: bool,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    policy_path: Option<String>,
    rules: Vec<crate::policy::RuleStatus>,
    write_error: Option<std::io::Error>,
    undecodable: u64,
    /// Findings already reported live (the summary's first `reported` entries).
    reported: usize,
}

impl Reporter {
    fn write(&mut self, record: &Record) {
        if let Some(sink) = &mut self.sink
            && let Err(e) = sink.write(record)
            && self.write_error.is_none()
        {
            eprintln!("pfn-auditor: cannot write the NDJSON output: {e}");
            self.write_error = Some(e);
        }
    }

    fn report(&mut self, findings: Vec<Finding>) {
        for f in findings {
            if self.human {
                eprint!("{}", human::render(&f));
            }
            if let Some(m) = &self.metrics {
                m.finding(f.kind.name(), f.severity.name());
            }
            self.write(&Record::Finding(f));
        }
    }
}

impl Observer for Reporter {
    fn attached(&mut self, attached: &Attached) {
        let status = Status {
            schema: SCHEMA_VERSION,
            version: env!("CARGO_PKG_VERSION").into(),
            kernel: attached.kernel_release.clone(),
            policy: self.policy_path.clone(),
            events: self.events,
            hooks: attached.hooks.clone(),
            rules: self.rules.clone(),
        };
        for h in &attached.hooks {
            // Hooks absent by design on this kernel are in `status`; say which ones wait for a
            // module or failed (release hooks always wait for their driver's module).
            let fixable = matches!(h.state, HookState::ModuleNotLoaded | HookState::Failed) || (h.hook == "release" && h.state == HookState::Absent);
            if fixable && self.human {
                eprintln!("pfn-auditor: {} ({}) not attached: {}", h.hook, h.symbol, h.reason.as_deref().unwrap_or(""));
            }
            // Attached with a reason: armed for a module that is not loaded yet.
            if let (HookState::Attached, Some(reason), true) = (h.state, &h.reason, self.human) {
                eprintln!("pfn-auditor: {} ({}) {reason}", h.hook, h.symbol);
            }
        }
        self.write(&Record::Status(status));
    }

    fn event(&mut self, event: &Event) {
        if self.events {
            self.write(&Record::Event(event.clone()));
        }
        let found = self.correlator.handle(event);
        self.reported += found.len();
        self.report(found);
    }

    fn lost(&mut self, hook: &str, count: u64, ts_ns: u64) {
        if self.human {
            eprintln!("pfn-auditor: {count} record(s) of {hook} lost (ring buffer full)");
        }
        self.write(&Record::Lost(Lost { hook: hook.into(), count, ts_ns }));
    }

    fn hook_changed(&mut self, status: &HookStatus, ts_ns: u64) {
        if self.human {
            match &status.reason {
                Some(reason) => eprintln!("pfn-auditor: {} ({}) now {}: {reason}", status.hook, status.symbol, status.state.name()),
                None => eprintln!("pfn-auditor: {} ({}) now {}", status.hook, status.symbol, status.state.name()),
            }
        }
        self.write(&Record::Hook(HookChange { status: status.clone(), ts_ns }));
    }

    fn undecodable(&mut self, error: &DecodeError) {
        self.undecodable += 1;
        if self.undecodable == 1 {
            eprintln!("pfn-auditor: undecodable record (eBPF object and daemon disagree?): {error}");
        }
    }
}

/// What a finished live run saw.
pub struct LiveOutcome {
    pub summary: RunSummary,
}

/// Attaches, runs until `stop` resolves (after calling `started` once attached), and writes the
/// summary. Errors before attaching are setup errors.
pub async fn run_live<S, F>(opts: LiveOptions, output: Option<Box<dyn Write>>, started: S) -> anyhow::Result<LiveOutcome>
where
    S: FnOnce() -> anyhow::Result<F>,
    F: Future<Output = ()>,
{
    let mut reporter = Reporter {
        sink: output.map(NdjsonSink::new),
        correlator: Correlator::new(&opts.policy),
        events: opts.events,
        human: opts.human,
        metrics: None,
        policy_path: opts.policy_path.as_ref().map(|p| p.display().to_string()),
        rules: opts.policy.rules(),
        write_error: None,
        undecodable: 0,
        reported: 0,
    };
    let session_opts = SessionOptions { release_functions: opts.policy.release_functions(), ring_buffer_bytes: opts.ring_buffer_bytes };
    let session = Session::start(&session_opts, &mut reporter)?;
    if let Some(addr) = opts.metrics {
        crate::metrics::serve(addr, session.metrics.clone()).await?;
    }
    reporter.metrics = Some(session.metrics.clone());
    let began = Instant::now();
    let stop = started()?;
    let end = session.run(stop, &mut reporter).await?;
    let result = reporter.correlator.finish();
    // Findings made at the end (leaks) are reported like live ones, then the summary repeats all.
    let late: Vec<Finding> = result.findings[reporter.reported..].to_vec();
    reporter.report(late);
    if reporter.human {
        for note in result.notes() {
            eprintln!("pfn-auditor: {note}");
        }
    }
    let summary = RunSummary {
        findings: result.findings,
        counts: result.counts,
        suppressed: result.suppressed,
        suppressed_by: result.suppressed_by,
        pins_held: result.pins_held,
        pins_without_vma: result.pins_without_vma,
        events: end.events,
        lost_total: end.lost_total,
        hooks: end.hooks,
        duration_ms: began.elapsed().as_millis() as u64,
    };
    reporter.write(&Record::Summary(summary.clone()));
    Ok(LiveOutcome { summary })
}
