//! Project automation: `cargo xtask <command>`. See `cargo xtask --help`.

mod bench;
mod check_verdict;
mod debian;
mod demo;
mod image;
mod initramfs;
mod kernels;
mod modules;
mod plan;
mod qemu;
mod replay_check;
mod setup;
mod sh;
mod verdict;
mod vm;
mod vm_test;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::Command;

#[derive(Parser)]
#[command(about = "Build pfn-auditor and test it on Debian kernels under QEMU/TCG")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install missing tools (apt packages, rustup nightly + rust-src, musl target, bpf-linker) and
    /// build the static pfn-auditor for x86_64-unknown-linux-musl
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Download the test kernels (5.10, 6.1, 6.12) and build the test module for each; prints paths
    Kernels {
        /// Kernel series to fetch (5.10, 6.1, 6.12); all when omitted
        #[arg(long = "kernel")]
        kernels: Vec<String>,
    },
    /// Run tests/vm/scenarios.toml in QEMU on each kernel and check the auditor's findings
    VmTest {
        /// Kernel series to test (5.10, 6.1, 6.12); all when omitted
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        /// Test the rig only: load the module and run the scenarios without pfn-auditor
        #[arg(long)]
        no_auditor: bool,
        /// Run only the scenarios whose name starts with PREFIX (repeatable), e.g. `--only intree-`
        /// to iterate on the in-tree scenarios; all when omitted
        #[arg(long = "only", value_name = "PREFIX")]
        only: Vec<String>,
    },
    /// Boot 6.1, run the misbehaving-driver scenario and show what pfn-auditor reports
    Demo,
    /// Measure the auditor's overhead on the scenario program's timing workloads in the guest
    Bench {
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        /// Iterations per workload
        #[arg(long, default_value_t = 2000)]
        iterations: u64,
    },
    /// Everything CI checks: `cargo test --workspace`, then `vm-test` on all kernels
    Test,
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
                let kernel = kernels::fetch(&apt, series)?;
                println!("{} {} {}", kernel.label, kernel.release, kernel.vmlinuz.display());
                for module in modules::prepare(&kernel)? {
                    println!("  {} {}", module.name, module.file.display());
                }
            }
            Ok(())
        }
        Cmd::VmTest { kernels, no_auditor, only } => vm_test::run(&selected(&kernels)?, !no_auditor, &only),
        Cmd::Demo => demo::run(),
        Cmd::Bench { kernels, iterations } => bench::run(&selected(&kernels)?, iterations),
        Cmd::Test => {
            setup::install_tools()?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            // auditor-ebpf only builds for the BPF target (auditor's build script builds it).
            sh::run(Command::new(cargo).current_dir(sh::workspace_root()).args(["test", "--workspace", "--exclude", "auditor-ebpf"]))?;
            vm_test::run(&kernels::default_series(), true, &[])
        }
    }
}

fn selected(labels: &[String]) -> Result<Vec<kernels::Series>> {
    if labels.is_empty() {
        return Ok(kernels::default_series());
    }
    labels.iter().map(|l| kernels::series(l)).collect()
}
