//! `pfn-auditor`: finds kernel code that keeps raw PFNs after their mapping was revoked.
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use auditor::{
    daemon::{Observer, Session, SessionOptions},
    doctor,
    event::Event,
    probes::Attached,
};

#[derive(Parser)]
#[command(name = "pfn-auditor", version, about = "Reports kernel code that keeps raw PFNs after their mapping was revoked")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach and report findings as NDJSON until SIGINT/SIGTERM (or --duration)
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
    },
    /// Check kernel, BTF, privileges and which hook carries which role on this kernel
    Doctor {
        /// Print the diagnosis as JSON
        #[arg(long)]
        json: bool,
    },
}

/// Exit code for a failure to set up (bad policy, no privileges, kernel without hooks).
const EXIT_SETUP: u8 = 2;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pfn-auditor: {e:#}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor { json } => {
            let d = doctor::diagnose(&[])?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", d.render());
            }
            Ok(if d.ready() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_SETUP) })
        }
        Command::Run { output, events, duration } => {
            let mut sink = RawSink { out: open_output(&output)?, events };
            let session = Session::start(&SessionOptions { release_functions: vec![], ring_buffer_bytes: 4 << 20 }, &mut sink)?;
            let stop = async move {
                match duration {
                    Some(secs) => tokio::time::sleep(std::time::Duration::from_secs(secs)).await,
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            };
            session.run(stop, &mut sink).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open_output(path: &PathBuf) -> anyhow::Result<Box<dyn std::io::Write>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    let f = std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    Ok(Box::new(f))
}

struct RawSink {
    out: Box<dyn std::io::Write>,
    events: bool,
}

impl Observer for RawSink {
    fn attached(&mut self, attached: &Attached) {
        let line = serde_json::json!({"type": "status", "schema": 1, "kernel": attached.kernel_release, "hooks": attached.hooks});
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
    fn event(&mut self, event: &Event) {
        if self.events {
            let mut v = serde_json::to_value(event).unwrap();
            v["type"] = "event".into();
            let _ = writeln!(self.out, "{v}");
            let _ = self.out.flush();
        }
    }
    fn lost(&mut self, hook: &str, count: u64, ts_ns: u64) {
        let _ = writeln!(self.out, "{}", serde_json::json!({"type": "lost", "hook": hook, "count": count, "ts_ns": ts_ns}));
    }
    fn undecodable(&mut self, error: &auditor::decode::DecodeError) {
        eprintln!("pfn-auditor: undecodable record: {error}");
    }
}
