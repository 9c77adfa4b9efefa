//! `pfn-auditor`: finds kernel code that keeps raw PFNs after their mapping was revoked.
//! The CLI only wires the library's stages together; exit codes are in docs/exit-codes.md.
use std::{
    io::{BufReader, BufWriter, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use auditor::{
    correlate::Severity,
    doctor,
    gate_outcome::{code, exit_code},
    live::{LiveOptions, run_live},
    metrics::Metrics,
    pipeline::{OutputError, Sink},
    policy::Policy,
    replay::{ReplayError, replay},
    sink::{
        human::HumanSink,
        junit::JunitSink,
        metrics::MetricsSink,
        ndjson::{NdjsonRecords, NdjsonSink},
        sarif::SarifSink,
    },
};

#[derive(Parser)]
#[command(name = "pfn-auditor", version, about = "Reports kernel code that keeps raw PFNs after their mapping was revoked")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// Policy file: holders' release functions, suppressions, gate severities (docs/policy.md)
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Do not apply the built-in holder catalog (vfio, KVM, kernel-internal lookups) under the policy
    #[arg(long)]
    no_catalog: bool,
    /// Ring buffer size in MiB (power of two)
    #[arg(long, default_value_t = 4)]
    ring_buffer_mib: u32,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9477)
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

/// The reports `gate` and `replay` write at the end of a run.
#[derive(Args)]
struct Reports {
    /// JUnit XML report
    #[arg(long)]
    junit: Option<PathBuf>,
    /// SARIF 2.1.0 report
    #[arg(long)]
    sarif: Option<PathBuf>,
    /// Do not fail when events were lost (`gate`: exit code 3 otherwise; both: no failing
    /// `events-lost` JUnit case)
    #[arg(long)]
    allow_loss: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Attach and report findings as NDJSON until SIGINT/SIGTERM (or --duration); findings are
    /// also printed for humans on stderr
    Run {
        /// Where NDJSON records go ("-" = stdout)
        #[arg(long, default_value = "-")]
        output: PathBuf,
        /// Also write every raw event (needed for `replay`)
        #[arg(long)]
        events: bool,
        /// Stop after this many seconds
        #[arg(long)]
        duration: Option<u64>,
        /// Do not print findings on stderr
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Attach, run CMD, and exit non-zero when it left pins behind revocations (CI gate)
    Gate {
        /// NDJSON records of the run (with raw events, so it can be replayed)
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        reports: Reports,
        #[command(flatten)]
        common: Common,
        /// The command to run under audit
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Re-correlate a recorded run (`run --events` / `gate --output`): its finding records on
    /// stdout, or the whole run's records in --output, and the same reports `gate` writes
    Replay {
        file: PathBuf,
        /// NDJSON records of the replayed run (status, events, findings, losses, summary) instead
        /// of the finding records on stdout ("-" = all of them on stdout)
        #[arg(long)]
        output: Option<PathBuf>,
        /// Also print findings for humans on stderr (as `run` and `gate` do)
        #[arg(long)]
        human: bool,
        #[command(flatten)]
        reports: Reports,
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Do not apply the built-in holder catalog under the policy
        #[arg(long)]
        no_catalog: bool,
    },
    /// Check kernel, BTF, privileges and which hook carries which role on this kernel
    Doctor {
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Do not apply the built-in holder catalog under the policy
        #[arg(long)]
        no_catalog: bool,
        /// Print the diagnosis as JSON
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("pfn-auditor: {e:#}");
            ExitCode::from(if e.downcast_ref::<OutputError>().is_some() { code::OUTPUT } else { code::SETUP })
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Doctor { policy, no_catalog, json } => {
            let policy = Policy::load(policy.as_deref(), !no_catalog)?;
            let d = doctor::diagnose(&policy)?;
            let text = if json { serde_json::to_string_pretty(&d)? + "\n" } else { d.render() };
            // A closed pipe (`doctor | head -3`) is an output error (exit 5), not a panic.
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|source| OutputError { output: "doctor output on stdout".into(), error: source })?;
            Ok(if d.ready() { code::CLEAN } else { code::SETUP })
        }
        Command::Replay { file, output, human, reports, policy, no_catalog } => {
            let policy = Policy::load(policy.as_deref(), !no_catalog)?;
            refuse_shared_paths(Some(&file), output.as_deref(), &reports)?;
            let name = file.display().to_string();
            let reader = BufReader::new(std::fs::File::open(&file).with_context(|| format!("cannot open {name}"))?);
            let ndjson = match &output {
                Some(path) => ndjson_sink(path, NdjsonRecords::All { events: true })?,
                None => ndjson_sink(Path::new("-"), NdjsonRecords::Findings)?,
            };
            let sinks = pick_sinks(Some(ndjson), HumanSink { findings: human }, &reports, &policy.fail_on, None)?;
            match replay(reader, &name, &policy, sinks) {
                Ok(_) => Ok(code::CLEAN),
                Err(ReplayError::Output(e)) => Err(e.into()),
                Err(e) => Err(e.into()),
            }
        }
        Command::Run { output, events, duration, quiet, common } => {
            let mut signals = StopSignals::install()?;
            let policy = Policy::load(common.policy.as_deref(), !common.no_catalog)?;
            let ndjson = ndjson_sink(&output, NdjsonRecords::All { events })?;
            let opts = live_options(&common, policy, events);
            let sinks =
                pick_sinks(Some(ndjson), HumanSink { findings: !quiet }, &Reports::none(), &opts.policy.fail_on, live_metrics(&opts))?;
            run_live(opts, sinks, || Ok(async move { signals.or_duration(duration).await })).await?;
            Ok(code::CLEAN)
        }
        Command::Gate { output, reports, common, cmd } => {
            let mut signals = StopSignals::install()?;
            let policy = Policy::load(common.policy.as_deref(), !common.no_catalog)?;
            let fail_on = policy.fail_on.clone();
            refuse_shared_paths(None, output.as_deref(), &reports)?;
            let ndjson = output.as_ref().map(|p| ndjson_sink(p, NdjsonRecords::All { events: true })).transpose()?;
            let opts = live_options(&common, policy, output.is_some());
            let sinks = pick_sinks(ndjson, HumanSink { findings: true }, &reports, &fail_on, live_metrics(&opts))?;
            let (status_tx, status_rx) = tokio::sync::oneshot::channel();
            let s = run_live(opts, sinks, || {
                let mut child = tokio::process::Command::new(&cmd[0])
                    .args(&cmd[1..])
                    // An output that fails ends the run: the command does not outlive it.
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("cannot start {:?}", cmd[0]))?;
                Ok(async move {
                    let status = tokio::select! {
                        status = child.wait() => status,
                        signal = signals.recv() => {
                            // Passed on to the command once; the run ends when it has exited.
                            if let Some(pid) = child.id() {
                                // SAFETY: plain kill(2) of our own child, which has not been reaped.
                                unsafe { libc::kill(pid as i32, signal) };
                            }
                            child.wait().await
                        }
                    };
                    let _ = status_tx.send(status.map(|s| s.success()).unwrap_or(false));
                })
            })
            .await?;
            let command_ok = status_rx.await.unwrap_or(false);
            let exit = exit_code(&s.findings, &fail_on, s.losses(), reports.allow_loss, command_ok);
            eprintln!(
                "pfn-auditor gate: {} finding(s) {:?}, {} event(s), {} lost, command {} → exit {exit}",
                s.findings.len(),
                s.counts,
                s.events,
                s.lost_total,
                if command_ok { "succeeded" } else { "failed" },
            );
            Ok(exit)
        }
    }
}

impl Reports {
    fn none() -> Self {
        Self { junit: None, sarif: None, allow_loss: false }
    }
}

/// Before any output is opened: no two on one file, none on the replayed recording (one line,
/// exit 5, nothing opened or truncated).
fn refuse_shared_paths(input: Option<&Path>, ndjson: Option<&Path>, reports: &Reports) -> Result<(), OutputError> {
    fn named<'a>(what: &str, path: &'a Option<PathBuf>) -> Option<(String, &'a Path)> {
        path.as_deref().map(|p| (format!("{what} {}", p.display()), p))
    }
    let ndjson = ndjson.filter(|p| p.as_os_str() != "-").map(|p| (format!("NDJSON output {}", p.display()), p));
    let outputs: Vec<(String, &Path)> =
        ndjson.into_iter().chain(named("JUnit report", &reports.junit)).chain(named("SARIF report", &reports.sarif)).collect();
    auditor::sink::refuse_shared_paths(input, &outputs)
}

/// The outputs of a run, in the order they see each record. A new output is one line here. Report
/// files are opened now (`sink::open_output`), so a refused path stops the run before it starts.
fn pick_sinks(
    ndjson: Option<Box<dyn Sink>>,
    human: HumanSink,
    reports: &Reports,
    fail_on: &[Severity],
    metrics: Option<Arc<Metrics>>,
) -> Result<Vec<Box<dyn Sink>>, OutputError> {
    let mut sinks: Vec<Box<dyn Sink>> = ndjson.into_iter().collect();
    sinks.push(Box::new(human));
    if let Some(metrics) = metrics {
        sinks.push(Box::new(MetricsSink(metrics)));
    }
    if let Some(path) = &reports.junit {
        sinks.push(Box::new(JunitSink::create(path, fail_on, reports.allow_loss)?));
    }
    if let Some(path) = &reports.sarif {
        sinks.push(Box::new(SarifSink::create(path)?));
    }
    Ok(sinks)
}

fn live_options(common: &Common, policy: Policy, events: bool) -> LiveOptions {
    LiveOptions {
        policy,
        policy_path: common.policy.clone(),
        events,
        ring_buffer_bytes: common.ring_buffer_mib.max(1).next_power_of_two() << 20,
        metrics_addr: common.metrics,
        metrics: Arc::new(Metrics::default()),
    }
}

/// The registry `--metrics` serves, when it is asked for.
fn live_metrics(opts: &LiveOptions) -> Option<Arc<Metrics>> {
    opts.metrics_addr.map(|_| opts.metrics.clone())
}

/// SIGINT and SIGTERM, caught from the start of `run` and `gate`: a signal that comes while the
/// probes are being attached (seconds on a slow machine) is kept, and the run stops as soon as
/// it is attached — status and summary written, exit code as usual — instead of dying half
/// attached. Once caught, later signals are caught too: the final drain is not cut short.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
        })
    }

    /// The next SIGINT or SIGTERM (also one caught before this call); returns its number.
    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => libc::SIGINT,
            _ = self.terminate.recv() => libc::SIGTERM,
        }
    }

    /// A signal or `duration` seconds, whichever comes first.
    async fn or_duration(&mut self, duration: Option<u64>) {
        let timeout = async {
            match duration {
                Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.recv() => {}
            _ = timeout => {}
        }
    }
}

/// NDJSON to a file ("-" = stdout), opened by `sink::open_output`. A file that cannot be created
/// or is refused is an output error.
fn ndjson_sink(path: &Path, records: NdjsonRecords) -> Result<Box<dyn Sink>, OutputError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(NdjsonSink::new(BufWriter::new(std::io::stdout()), "stdout", records)));
    }
    let name = path.display().to_string();
    let file = auditor::sink::open_output(path).map_err(|source| OutputError { output: format!("NDJSON output {name}"), error: source })?;
    let sink = NdjsonSink::new(
        BufWriter::new(file.try_clone().map_err(|source| OutputError { output: format!("NDJSON output {name}"), error: source })?),
        &name,
        records,
    );
    // Only a regular file can be synced (fsync of a pipe or /dev/full is EINVAL).
    let regular = file.metadata().is_ok_and(|m| m.file_type().is_file());
    Ok(Box::new(if regular { sink.sync_at_end(file) } else { sink }))
}
