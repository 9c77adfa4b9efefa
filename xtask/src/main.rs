//! Project automation: `cargo xtask <command>`. See `cargo xtask --help`.

mod debian;
mod kernels;
mod modules;
mod setup;
mod sh;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build pfn-auditor and test it on Debian kernels under QEMU")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install missing tools (apt, rustup, bpf-linker) and build the static pfn-auditor
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Download the test kernels and build the test module for each; prints their paths
    Kernels {
        /// Kernel series (5.10, 6.1, 6.12); all when omitted
        #[arg(long = "kernel")]
        kernels: Vec<String>,
    },
}

fn main() {
    if let Err(err) = run(Cli::parse()) {
        eprintln!("xtask: error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Build { release } => setup::build(release).map(drop),
        Cmd::Kernels { kernels: labels } => {
            let apt = debian::PrivateApt::open()?;
            for series in selected(&labels)? {
                let k = kernels::fetch(&apt, series)?;
                let mods = modules::prepare(&k)?;
                println!("{} {} {}", k.label, k.release, k.vmlinuz.display());
                for m in mods {
                    println!("  {} {}", m.name, m.file.display());
                }
            }
            Ok(())
        }
    }
}

fn selected(labels: &[String]) -> Result<Vec<kernels::Series>> {
    if labels.is_empty() {
        return Ok(kernels::SERIES.to_vec());
    }
    labels.iter().map(|l| kernels::series(l)).collect()
}
