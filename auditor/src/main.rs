//! `pfn-auditor`: finds kernel code that keeps raw PFNs after their mapping was revoked.
//! The CLI only wires the library's stages together; exit codes are in docs/exit-codes.md.
use std::{
    io::{BufReader, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use auditor::{
    doctor,
    gate_outcome::{code, exit_code},
    live::{LiveOptions, run_live},
    policy::Policy,
    record::Record,
    replay::replay,
    sink::{junit, ndjson::NdjsonSink, sarif},
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
        /// JUnit XML report
        #[arg(long)]
        junit: Option<PathBuf>,
        /// SARIF 2.1.0 report
        #[arg(long)]
        sarif: Option<PathBuf>,
        /// Do not fail when events were lost (exit code 3 otherwise)
        #[arg(long)]
        allow_loss: bool,
        #[command(flatten)]
        common: Common,
        /// The command to run under audit
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Re-correlate a recorded run (`run --events` / `gate --output`) and print its findings
    Replay {
        file: PathBuf,
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
            ExitCode::from(code::SETUP)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Doctor { policy, no_catalog, json } => {
            let policy = Policy::load(policy.as_deref(), !no_catalog)?;
            let d = doctor::diagnose(&policy)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", d.render());
            }
            Ok(if d.ready() { code::CLEAN } else { code::SETUP })
        }
        Command::Replay { file, policy, no_catalog } => {
            let policy = Policy::load(policy.as_deref(), !no_catalog)?;
            let name = file.display().to_string();
            let reader = BufReader::new(std::fs::File::open(&file).with_context(|| format!("cannot open {name}"))?);
            let (live, summary) = replay(reader, &name, &policy)?;
            let mut out = NdjsonSink::new(std::io::stdout().lock());
            // The same records a live run writes for its findings: live ones, then end-of-run ones.
            for f in live.iter().chain(&summary.findings[live.len()..]) {
                out.write(&Record::Finding(f.clone()))?;
            }
            for note in summary.notes() {
                eprintln!("pfn-auditor: {note}");
            }
            Ok(code::CLEAN)
        }
        Command::Run { output, events, duration, quiet, common } => {
            let policy = Policy::load(common.policy.as_deref(), !common.no_catalog)?;
            let out = open_output(&output)?;
            let opts = live_options(&common, policy, events, !quiet);
            run_live(opts, Some(out), || Ok(stop_signal(duration))).await?;
            Ok(code::CLEAN)
        }
        Command::Gate { output, junit: junit_path, sarif: sarif_path, allow_loss, common, cmd } => {
            let policy = Policy::load(common.policy.as_deref(), !common.no_catalog)?;
            let fail_on = policy.fail_on.clone();
            let out = output.as_ref().map(|p| open_output(p)).transpose()?;
            let opts = live_options(&common, policy, out.is_some(), true);
            let (status_tx, status_rx) = tokio::sync::oneshot::channel();
            let outcome = run_live(opts, out, || {
                let mut child = tokio::process::Command::new(&cmd[0])
                    .args(&cmd[1..])
                    .spawn()
                    .with_context(|| format!("cannot start {:?}", cmd[0]))?;
                Ok(async move {
                    let status = child.wait().await;
                    let _ = status_tx.send(status.map(|s| s.success()).unwrap_or(false));
                })
            })
            .await?;
            let command_ok = status_rx.await.unwrap_or(false);
            let s = &outcome.summary;
            if let Some(path) = junit_path {
                let failing_loss = if allow_loss { 0 } else { s.lost_total };
                write_file(&path, &junit::render(&s.findings, &fail_on, failing_loss))?;
            }
            if let Some(path) = sarif_path {
                write_file(&path, &sarif::render(&s.findings))?;
            }
            let exit = exit_code(&s.findings, &fail_on, s.lost_total, allow_loss, command_ok);
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

fn live_options(common: &Common, policy: Policy, events: bool, human: bool) -> LiveOptions {
    LiveOptions {
        policy,
        policy_path: common.policy.clone(),
        events,
        human,
        ring_buffer_bytes: common.ring_buffer_mib.max(1).next_power_of_two() << 20,
        metrics: common.metrics,
    }
}

/// SIGINT, SIGTERM or the duration: whichever comes first.
async fn stop_signal(duration: Option<u64>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let timeout = async {
        match duration {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = timeout => {}
    }
}

fn open_output(path: &Path) -> anyhow::Result<Box<dyn Write>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    let f = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Box::new(std::io::LineWriter::new(f)))
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
