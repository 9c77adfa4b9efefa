//! `pfn-auditor`: finds kernel code that keeps raw PFNs after their mapping was revoked.
//! The CLI only wires the library's stages together; exit codes are in docs/exit-codes.md.
use std::{
    io::{BufReader, BufWriter, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use auditor::{
    cli_docs,
    correlate::Options,
    doctor,
    gate_outcome::{code, exit_code},
    live::{LiveOptions, run_live},
    metrics::Metrics,
    pipeline::{OutputError, Pipeline, Sink},
    policy::Policy,
    probes::floor::ProgramSet,
    replay::{ReplayError, Replayed, replay_into},
    sink::{
        human::HumanSink,
        junit::JunitSink,
        metrics::MetricsSink,
        ndjson::{NdjsonRecords, NdjsonSink},
        output_file::{OutputFile, Rotation},
        sarif::SarifSink,
    },
    vocab::finding::Severity,
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
    /// Serve Prometheus metrics: PORT listens on loopback only (127.0.0.1:PORT); another address
    /// only when given explicitly as ADDRESS:PORT (e.g. 0.0.0.0:9477; no authentication)
    #[arg(long, value_name = "[ADDRESS:]PORT", value_parser = metrics_address)]
    metrics: Option<SocketAddr>,
    /// Directory with drivers' unstripped .ko files (searched for <module>.ko), for file:line of
    /// module frames; looked in before /usr/lib/debug/lib/modules/RELEASE and
    /// /lib/modules/RELEASE/modules.dep (repeatable)
    #[arg(long, value_name = "DIR")]
    module_debug_dir: Vec<PathBuf>,
    #[command(flatten)]
    limits: Limits,
}

/// Bounds on the correlator's state (README "Bounded state"). Past one, the oldest pin or PFN map
/// is evicted and counted in the summary: a loss, like lost events (`gate` exits 3).
#[derive(Args)]
struct Limits {
    /// Pins tracked at most (each is one or more page runs of one lookup or frame vector)
    #[arg(long, default_value_t = Options::default().max_pins as u64, value_parser = clap::value_parser!(u64).range(1..))]
    max_pins: u64,
    /// PFN maps tracked at most (their vmas name the file of a later lookup that carries only the mm)
    #[arg(long, default_value_t = Options::default().max_pfnmaps as u64, value_parser = clap::value_parser!(u64).range(1..))]
    max_pfnmaps: u64,
}

impl Limits {
    fn options(&self) -> Options {
        let bound = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Options { max_pins: bound(self.max_pins), max_pfnmaps: bound(self.max_pfnmaps) }
    }
}

/// The largest `--output-max-mib` whose size in bytes fits 64 bits (2^44 - 1 MiB); more is a usage
/// error (exit 2), not a size that wraps around.
const MAX_OUTPUT_MIB: u64 = u64::MAX >> 20;

/// Size rotation of the NDJSON `--output` file (a regular file; SIGHUP reopens it in any case).
#[derive(Args)]
struct OutputRotation {
    /// Rotate the --output file before a record would take it past this many MiB: it becomes
    /// PATH.1 (PATH.1 becomes PATH.2, ...) and a new PATH is opened; no record is ever split. A
    /// non-empty PATH left by an earlier run is rotated the same way at the start (not emptied)
    #[arg(long, value_name = "MiB", value_parser = clap::value_parser!(u64).range(1..=MAX_OUTPUT_MIB))]
    output_max_mib: Option<u64>,
    /// Rotated files kept with --output-max-mib (PATH.1 ... PATH.N); the oldest beyond is replaced
    #[arg(long, value_name = "N", default_value_t = 5, requires = "output_max_mib", value_parser = clap::value_parser!(u32).range(1..))]
    output_keep: u32,
}

/// The reports `gate` and `replay` write at the end of a run.
#[derive(Args)]
struct Reports {
    /// JUnit XML report file (not "-": stdout is --output's)
    #[arg(long, value_name = "FILE", value_parser = report_path)]
    junit: Option<PathBuf>,
    /// SARIF 2.1.0 report file (not "-": stdout is --output's)
    #[arg(long, value_name = "FILE", value_parser = report_path)]
    sarif: Option<PathBuf>,
    /// Directory the driver's sources are under (a CI job's checkout): the SARIF report gives
    /// source files under it relative to %SRCROOT% (its originalUriBaseIds), as code-scanning
    /// views want them; files elsewhere keep absolute file:// URIs [default: the current directory]
    #[arg(long, value_name = "DIR", requires = "sarif")]
    source_root: Option<PathBuf>,
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
        /// Benchmark aid, audits nothing: attach empty eBPF programs wherever the auditing ones
        /// would go, by the same mechanism, to measure what the probes alone cost (the floor
        /// column of `cargo xtask bench`)
        #[arg(long)]
        probe_floor: bool,
        #[command(flatten)]
        rotation: OutputRotation,
        #[command(flatten)]
        common: Common,
    },
    /// Attach, run CMD, and exit non-zero when it left pins behind revocations (CI gate)
    Gate {
        /// NDJSON records of the run (with raw events, so it can be replayed)
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        rotation: OutputRotation,
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
        /// The recording: NDJSON records with `event` lines (`run --events`, `gate --output`)
        file: PathBuf,
        /// NDJSON records of the replayed run (status, events, findings, losses, summary) instead
        /// of the finding records on stdout ("-" = all of them on stdout)
        #[arg(long)]
        output: Option<PathBuf>,
        /// Also print findings for humans on stderr (as `run` and `gate` do)
        #[arg(long)]
        human: bool,
        #[command(flatten)]
        rotation: OutputRotation,
        #[command(flatten)]
        reports: Reports,
        /// Policy file: holders' release functions, suppressions (docs/policy.md); the recorded
        /// run's policy is not applied unless given here
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Do not apply the built-in holder catalog under the policy
        #[arg(long)]
        no_catalog: bool,
        #[command(flatten)]
        limits: Limits,
    },
    /// Check kernel, BTF, privileges and which hook carries which role on this kernel
    Doctor {
        /// Policy file: its release functions get hook rows, its rules are listed with the
        /// catalog's (docs/policy.md)
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Do not apply the built-in holder catalog under the policy
        #[arg(long)]
        no_catalog: bool,
        /// Print the diagnosis as JSON
        #[arg(long)]
        json: bool,
        /// Keep the hooks attached this long and report what they cost meanwhile (runs and ns
        /// per hook, from the kernel's BPF run-time statistics); 0 skips it
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        sample_ms: u64,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // `generate-docs DIR` (man pages and completions for the package) is not part of `Cli`, so
    // they do not mention it.
    let matches = Cli::command().subcommand(cli_docs::subcommand()).get_matches();
    if let Some((cli_docs::SUBCOMMAND, m)) = matches.subcommand() {
        return ExitCode::from(cli_docs::run(Cli::command(), m));
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A closed or full stderr leaves only the exit code to say it (no panic: exit 101).
            let _ = writeln!(std::io::stderr(), "pfn-auditor: {e:#}");
            ExitCode::from(if e.downcast_ref::<OutputError>().is_some() { code::OUTPUT } else { code::SETUP })
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Doctor { policy, no_catalog, json, sample_ms } => {
            let policy = Policy::load(policy.as_deref(), !no_catalog)?;
            let d = doctor::diagnose(&policy, std::time::Duration::from_millis(sample_ms))?;
            let text = if json { serde_json::to_string_pretty(&d)? + "\n" } else { d.render() };
            // A closed pipe (`doctor | head -3`) is an output error (exit 5), not a panic.
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|source| OutputError { output: "doctor output on stdout".into(), error: source })?;
            Ok(if d.ready() { code::CLEAN } else { code::SETUP })
        }
        Command::Replay { file, output, human, rotation, reports, policy, no_catalog, limits } => {
            let policy_path = policy;
            let policy = Policy::load(policy_path.as_deref(), !no_catalog)?;
            refuse_shared_paths(&[("recording", Some(&file)), ("policy file", policy_path.as_deref())], output.as_deref(), &reports)?;
            let name = file.display().to_string();
            let reader = BufReader::new(std::fs::File::open(&file).with_context(|| format!("cannot open {name}"))?);
            // `--output -` is every record on stdout; no --output, the finding records only.
            let records = if output.is_some() { NdjsonRecords::All { events: true } } else { NdjsonRecords::Findings };
            let output = NdjsonOutput::new(output.as_deref(), &rotation)?;
            let ndjson = output.sink(records)?;
            let sinks = pick_sinks(Some(ndjson), HumanSink { findings: human }, &reports, &policy.fail_on, None)?;
            let mut pipeline = Pipeline::with_options(&policy, limits.options(), sinks);
            if let Some(flag) = output.reopen {
                pipeline = pipeline.reopen_on(flag);
            }
            match replay_into(reader, &name, pipeline) {
                Ok(Replayed { truncated_after: None, .. }) => Ok(code::CLEAN),
                Ok(Replayed { truncated_after: Some(lines), .. }) => {
                    say(&format!(
                        "pfn-auditor: {name}: truncated: no summary record in its {lines} line(s) (the run was killed, the file cut, or it is one piece of a rotated output); replayed what is there"
                    ))?;
                    Ok(code::EVENTS_LOST)
                }
                Err(ReplayError::Output(e)) => Err(e.into()),
                Err(e) => Err(e.into()),
            }
        }
        Command::Run { output, events, duration, quiet, probe_floor, rotation, common } => {
            let mut signals = StopSignals::install()?;
            let policy = Policy::load(common.policy.as_deref(), !common.no_catalog)?;
            refuse_shared_paths(&[("policy file", common.policy.as_deref())], Some(&output), &Reports::none())?;
            let output = NdjsonOutput::new(Some(&output), &rotation)?;
            let ndjson = output.sink(NdjsonRecords::All { events })?;
            let mut opts = live_options(&common, policy, events, output.reopen);
            if probe_floor {
                say("pfn-auditor: --probe-floor: empty programs attached, nothing is audited (a benchmark aid)")?;
                opts.programs = ProgramSet::Floor;
            }
            let sinks =
                pick_sinks(Some(ndjson), HumanSink { findings: !quiet }, &Reports::none(), &opts.policy.fail_on, live_metrics(&opts))?;
            run_live(opts, sinks, || Ok(async move { signals.or_duration(duration).await })).await?;
            Ok(code::CLEAN)
        }
        Command::Gate { output, rotation, reports, common, cmd } => {
            let mut signals = StopSignals::install()?;
            let policy = Policy::load(common.policy.as_deref(), !common.no_catalog)?;
            let fail_on = policy.fail_on.clone();
            refuse_shared_paths(&[("policy file", common.policy.as_deref())], output.as_deref(), &reports)?;
            let recorded = output.is_some();
            let output = NdjsonOutput::new(output.as_deref(), &rotation)?;
            let ndjson = if recorded { Some(output.sink(NdjsonRecords::All { events: true })?) } else { None };
            let opts = live_options(&common, policy, recorded, output.reopen);
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
            say(&format!(
                "pfn-auditor gate: {} finding(s) {:?}, {} event(s), {} lost, command {} → exit {exit}",
                s.findings.len(),
                s.counts,
                s.events,
                s.lost_total,
                if command_ok { "succeeded" } else { "failed" },
            ))?;
            Ok(exit)
        }
    }
}

/// One line for humans on stderr, as the human output writes them: a stderr that cannot be
/// written is that output's error (exit code 5), not a panic.
fn say(line: &str) -> Result<(), OutputError> {
    writeln!(std::io::stderr(), "{line}").map_err(|error| OutputError { output: HumanSink::NAME.into(), error })
}

impl Reports {
    fn none() -> Self {
        Self { junit: None, sarif: None, source_root: None, allow_loss: false }
    }
}

/// Before any output is opened: no two on one file, none on an input (the replayed recording,
/// the policy file): one line, exit 5, nothing opened or truncated.
fn refuse_shared_paths(inputs: &[(&str, Option<&Path>)], ndjson: Option<&Path>, reports: &Reports) -> Result<(), OutputError> {
    fn named<'a>(what: &str, path: Option<&'a Path>) -> Option<(String, &'a Path)> {
        path.map(|p| (format!("{what} {}", p.display()), p))
    }
    let inputs: Vec<(String, &Path)> = inputs.iter().filter_map(|(what, path)| named(what, *path)).collect();
    let ndjson = named("NDJSON output", ndjson.filter(|p| p.as_os_str() != "-"));
    let outputs: Vec<(String, &Path)> = ndjson
        .into_iter()
        .chain(named("JUnit report", reports.junit.as_deref()))
        .chain(named("SARIF report", reports.sarif.as_deref()))
        .collect();
    auditor::sink::refuse_shared_paths(&inputs, &outputs)
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
    // A report opened already says why the run never started, instead of staying empty.
    let refused = |sinks: Vec<Box<dyn Sink>>, e: OutputError| {
        Pipeline::new(&Policy::default(), sinks).abandon(&e.to_string());
        e
    };
    if let Some(path) = &reports.junit {
        match JunitSink::create(path, fail_on, reports.allow_loss) {
            Ok(sink) => sinks.push(Box::new(sink)),
            Err(e) => return Err(refused(sinks, e)),
        }
    }
    if let Some(path) = &reports.sarif {
        match SarifSink::create(path, reports.source_root.as_deref().unwrap_or(Path::new("."))) {
            Ok(sink) => sinks.push(Box::new(sink)),
            Err(e) => return Err(refused(sinks, e)),
        }
    }
    Ok(sinks)
}

fn live_options(common: &Common, policy: Policy, events: bool, reopen: Option<Arc<AtomicBool>>) -> LiveOptions {
    LiveOptions {
        reopen,
        policy,
        policy_path: common.policy.clone(),
        events,
        ring_buffer_bytes: common.ring_buffer_mib.max(1).next_power_of_two() << 20,
        module_debug_dirs: common.module_debug_dir.clone(),
        programs: ProgramSet::Auditing,
        metrics_addr: common.metrics,
        metrics: Arc::new(Metrics::default()),
        limits: common.limits.options(),
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

/// `--metrics`: `PORT` is loopback's port (the endpoint has no authentication: any other address
/// must be given explicitly), `ADDRESS:PORT` listens there.
/// Port 0 (a port the kernel picks, which nobody could scrape) is refused, as is an address no
/// scraper can reach (`0.0.0.0` is all addresses; multicast and broadcast are not).
fn metrics_address(text: &str) -> Result<SocketAddr, String> {
    let addr = match text.parse::<u16>() {
        Ok(port) => SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
        Err(_) => text.parse().map_err(|_| format!("`{text}` is neither a PORT (listens on 127.0.0.1) nor an ADDRESS:PORT"))?,
    };
    if addr.port() == 0 {
        return Err(format!("`{text}`: port 0 would listen on a port nobody knows; give a port from 1 to 65535"));
    }
    let unreachable = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.is_multicast() || ip.is_broadcast(),
        std::net::IpAddr::V6(ip) => ip.is_multicast(),
    };
    if unreachable {
        return Err(format!("`{text}`: {} is not an address of this machine to listen on", addr.ip()));
    }
    Ok(addr)
}

/// A report's file: any path but "-", which `--output` takes for stdout (a report written there
/// would interleave with the records); "-" is a usage error (exit 2) rather than a file named `-`.
fn report_path(text: &str) -> Result<PathBuf, String> {
    if text == "-" {
        return Err("a report is written to a file; \"-\" (stdout) is only for --output".into());
    }
    Ok(PathBuf::from(text))
}

/// Where NDJSON records go: a file (`path`), or stdout (`path` None, or "-").
struct NdjsonOutput {
    path: Option<PathBuf>,
    rotation: Option<Rotation>,
    /// Set by SIGHUP when the output is a file: the pipeline then reopens it.
    reopen: Option<Arc<AtomicBool>>,
}

impl NdjsonOutput {
    /// Refuses rotation without a file (setup error, exit 2) and, for a file, makes SIGHUP reopen
    /// it (logrotate's convention) instead of ending the process.
    fn new(path: Option<&Path>, rotation: &OutputRotation) -> anyhow::Result<Self> {
        let path = path.filter(|p| p.as_os_str() != "-").map(Path::to_path_buf);
        let rotation = match (rotation.output_max_mib, &path) {
            (None, _) => None,
            (Some(_), None) => anyhow::bail!("--output-max-mib needs --output FILE (stdout cannot be rotated)"),
            (Some(mib), Some(_)) => Some(Rotation { max_bytes: mib << 20, keep: rotation.output_keep }),
        };
        let reopen = match path {
            Some(_) => {
                let flag = Arc::new(AtomicBool::new(false));
                signal_hook::flag::register(signal_hook::consts::SIGHUP, flag.clone()).context("cannot handle SIGHUP")?;
                Some(flag)
            }
            None => None,
        };
        Ok(Self { path, rotation, reopen })
    }

    /// The sink, its file opened now by `sink::open_output`: a file that cannot be created or is
    /// refused is an output error (exit 5).
    fn sink(&self, records: NdjsonRecords) -> Result<Box<dyn Sink>, OutputError> {
        let Some(path) = &self.path else {
            return Ok(Box::new(NdjsonSink::new(BufWriter::new(std::io::stdout()), "stdout", records)));
        };
        let name = path.display().to_string();
        let file = OutputFile::create(path, self.rotation)
            .map_err(|source| OutputError { output: format!("NDJSON output {name}"), error: source })?;
        Ok(Box::new(NdjsonSink::new(file, &name, records)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The man pages (`generate-docs`) and `--help` say what each option is for.
    #[test]
    fn every_argument_of_every_subcommand_has_help() {
        let cli = Cli::command();
        let undocumented: Vec<String> = cli
            .get_subcommands()
            .flat_map(|sub| {
                sub.get_arguments().filter(|a| a.get_help().is_none()).map(move |a| format!("{} {}", sub.get_name(), a.get_id()))
            })
            .collect();
        assert!(undocumented.is_empty(), "without help: {undocumented:?}");
    }

    #[test]
    fn a_metrics_port_alone_is_loopback_and_an_address_is_taken_as_given() {
        assert_eq!(metrics_address("9477").unwrap(), "127.0.0.1:9477".parse().unwrap());
        assert_eq!(metrics_address("0.0.0.0:9477").unwrap(), "0.0.0.0:9477".parse().unwrap());
        assert_eq!(metrics_address("[::1]:9477").unwrap(), "[::1]:9477".parse().unwrap());
        assert!(metrics_address("9477x").is_err());
        assert_eq!(metrics_address("0").unwrap_err(), "`0`: port 0 would listen on a port nobody knows; give a port from 1 to 65535");
        assert!(metrics_address("0.0.0.0:0").is_err());
        assert_eq!(
            metrics_address("224.0.0.1:9477").unwrap_err(),
            "`224.0.0.1:9477`: 224.0.0.1 is not an address of this machine to listen on"
        );
        assert!(metrics_address("255.255.255.255:9477").is_err());
    }
}
