//! The live source (`run`, `gate`): a [`Session`] whose callbacks become records for the
//! [`Pipeline`] — findings the moment a revocation covers a pin, then a summary at the end.
use std::{future::Future, path::PathBuf, time::Instant};

use crate::{
    daemon::{Observer, Session, SessionOptions},
    pipeline::{OutputError, Pipeline, RunEnd, Sink},
    policy::Policy,
    probes::{Attached, floor::ProgramSet},
    vocab::{
        event::Event,
        hook_status::HookStatus,
        record::{HookChange, Lost, RunSummary, SCHEMA_VERSION, Status},
    },
};

pub struct LiveOptions {
    pub policy: Policy,
    pub policy_path: Option<PathBuf>,
    /// Whether the NDJSON output carries raw `event` records (for `replay`): said in `status`.
    pub events: bool,
    pub ring_buffer_bytes: u32,
    /// `--module-debug-dir`: where modules' `.ko` files with debug info are looked for first.
    pub module_debug_dirs: Vec<PathBuf>,
    /// The auditing programs, or the benchmark's empty ones (`run --probe-floor`).
    pub programs: ProgramSet,
    /// `--metrics`: where to serve `metrics` (which a `MetricsSink` among the sinks also feeds).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Gets the kernel's per-hook counters at every poll.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Bounds on the correlator's state (`--max-pins`, `--max-pfnmaps`).
    pub limits: crate::correlate::Options,
    /// Set by SIGHUP: the outputs are reopened (`Pipeline::reopen_on`).
    pub reopen: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Session callbacks → records → pipeline.
struct LiveSource {
    pipeline: Pipeline,
    events: bool,
    policy_path: Option<String>,
    rules: Vec<crate::vocab::record::RuleStatus>,
}

impl LiveSource {
    /// The run cannot go on (`error`, a setup error): the reports say so; `error` is returned.
    fn abandon(self, error: anyhow::Error) -> anyhow::Error {
        self.pipeline.abandon(&format!("{error:#}"));
        error
    }
}

impl Observer for LiveSource {
    fn attached(&mut self, attached: &Attached) {
        let (started_unix_ns, boot_id) = Status::run_identity();
        self.pipeline.status(&Status {
            schema: SCHEMA_VERSION,
            version: env!("CARGO_PKG_VERSION").into(),
            kernel: attached.kernel_release.clone(),
            policy: self.policy_path.clone(),
            events: self.events,
            hooks: attached.hooks.clone(),
            rules: self.rules.clone(),
            started_unix_ns,
            boot_id,
        });
    }

    fn event(&mut self, event: &Event) {
        self.pipeline.event(event);
    }

    fn lost(&mut self, lost: &Lost) {
        self.pipeline.lost(lost);
    }

    fn hook_changed(&mut self, status: &HookStatus, ts_ns: u64) {
        self.pipeline.hook_changed(&HookChange { status: status.clone(), ts_ns });
    }

    fn failed(&self) -> bool {
        self.pipeline.failed()
    }

    fn poll(&mut self) {
        self.pipeline.poll();
    }
}

/// Attaches, runs until `stop` resolves (after calling `started` once attached), and hands the
/// summary to the sinks. Errors before attaching are setup errors; an output that cannot be
/// written ends the run with an [`OutputError`] (exit code 5).
pub async fn run_live<S, F>(opts: LiveOptions, sinks: Vec<Box<dyn Sink>>, started: S) -> anyhow::Result<RunSummary>
where
    S: FnOnce() -> anyhow::Result<F>,
    F: Future<Output = ()>,
{
    let mut pipeline = Pipeline::with_options(&opts.policy, opts.limits, sinks);
    if let Some(flag) = &opts.reopen {
        pipeline = pipeline.reopen_on(flag.clone());
    }
    let mut source = LiveSource {
        pipeline,
        events: opts.events,
        policy_path: opts.policy_path.as_ref().map(|p| p.display().to_string()),
        rules: opts.policy.rules(),
    };
    let session_opts = SessionOptions {
        release_functions: opts.policy.release_functions(),
        ring_buffer_bytes: opts.ring_buffer_bytes,
        module_debug_dirs: opts.module_debug_dirs.clone(),
        programs: opts.programs,
    };
    // A setup error once the outputs are open still ends in reports that say why. The metrics
    // address is bound first: before anything is attached.
    let listener = match opts.metrics_addr {
        Some(addr) => match crate::metrics::listen(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => return Err(source.abandon(e)),
        },
        None => None,
    };
    let session = match Session::start(&session_opts, opts.metrics.clone(), &mut source) {
        Ok(session) => session,
        Err(e) => return Err(source.abandon(e)),
    };
    if let Some(listener) = listener {
        crate::metrics::serve(listener, opts.metrics);
    }
    let began = Instant::now();
    let end = if source.failed() {
        crate::daemon::SessionEnd { hooks: Vec::new() }
    } else {
        let ran = match started() {
            Ok(stop) => session.run(stop, &mut source).await,
            Err(e) => Err(e),
        };
        match ran {
            Ok(end) => end,
            Err(e) => return Err(source.abandon(e)),
        }
    };
    let (summary, error) = source.pipeline.finish(RunEnd { hooks: end.hooks, duration_ms: began.elapsed().as_millis() as u64 });
    match error {
        Some(e) => Err(anyhow::Error::new::<OutputError>(e)),
        None => Ok(summary),
    }
}
