//! Project automation: `cargo xtask <command>`. See `cargo xtask --help`.

mod bench;
mod btf_trim;
mod check_verdict;
mod debian;
mod demo;
mod fuzz;
mod image;
mod initramfs;
mod kernels;
mod modules;
mod package;
mod plan;
mod prometheus;
mod qemu;
mod replay_check;
mod setup;
mod sh;
mod systemd_test;
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
    /// Measure the auditor's overhead on the scenario program's timing workloads in the guest:
    /// bare, under empty programs on the same hooks (the floor) and attached; one
    /// `bench <kernel> <workload> bare_ns= floor_ns= attached_ns= ratio=` line each, then each
    /// daemon's per-hook BPF run time (`bench <kernel> <workload> <way> hook= runs= bpf_run_ns=
    /// ns_per_run= share=`)
    Bench {
        /// Kernel series to measure (5.10, 6.1, 6.12); all when omitted
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        /// Measure only this workload (repeatable: bench-truncate, bench-mmap, bench-pin); all when
        /// omitted
        #[arg(long = "workload", value_name = "NAME")]
        workloads: Vec<String>,
        /// Iterations per workload
        #[arg(long, default_value_t = 2000)]
        iterations: u64,
        /// Guest clock: icount (deterministic instruction-count time) or tcg (host time)
        #[arg(long, value_enum, default_value_t = qemu::Clock::Icount)]
        clock: qemu::Clock,
    },
    /// Build the Debian package target/debian/pfn-auditor_<version>_amd64.deb (static binary,
    /// hardened systemd service, default policy, man pages, completions); checks the unit with
    /// `systemd-analyze verify`
    Package,
    /// Boot a Debian root with systemd (built once with debootstrap, cached in .vm-cache), install
    /// the package, run the service against the demo's misbehaving driver, check its findings in
    /// /var/log/pfn-auditor, then remove and purge it and check that nothing is left behind
    SystemdTest {
        /// Kernel series to boot (5.10, 6.1, 6.12)
        #[arg(long = "kernel", default_value = "6.1")]
        kernel: String,
    },
    /// Everything CI checks: `cargo test --workspace`, then `vm-test` on all kernels, then
    /// `systemd-test` on 6.1
    Test,
    /// Run every cargo-fuzz target in fuzz/ for N seconds each (installs cargo-fuzz; nightly);
    /// prints the executions each reached. See docs/fuzzing.md
    Fuzz {
        /// Seconds per target [default: 60 without --runs, no limit with it]
        #[arg(long)]
        seconds: Option<u64>,
        /// Stop each target after this many executions (with --seconds too: whichever comes first)
        #[arg(long)]
        runs: Option<u64>,
        /// Fuzz only this target (repeatable); all when omitted
        #[arg(long = "target")]
        targets: Vec<String>,
        /// `address` (AddressSanitizer, what CI runs) or `none` (3-5x the executions a second, for
        /// long campaigns: the parsers are safe Rust; panics, overflow checks and debug assertions
        /// still stop the run). See docs/fuzzing.md
        #[arg(long, value_enum, default_value_t = fuzz::Sanitizer::Address)]
        sanitizer: fuzz::Sanitizer,
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
        Cmd::Package => package::build().map(drop),
        Cmd::SystemdTest { kernel } => systemd_test::run(kernels::series(&kernel)?),
        Cmd::Bench { kernels, workloads, iterations, clock } => {
            bench::run(&selected(&kernels)?, &bench::selected_workloads(&workloads)?, clock, iterations)
        }
        Cmd::Fuzz { seconds, runs, targets, sanitizer } => fuzz::run(fuzz::Budget::new(seconds, runs), sanitizer, &targets).map(drop),
        Cmd::Test => {
            setup::install_tools()?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            // auditor-ebpf only builds for the BPF target (auditor's build script builds it).
            sh::run(Command::new(cargo).current_dir(sh::workspace_root()).args(["test", "--workspace", "--exclude", "auditor-ebpf"]))?;
            vm_test::run(&kernels::default_series(), true, &[])?;
            systemd_test::run(kernels::series("6.1")?)
        }
    }
}

fn selected(labels: &[String]) -> Result<Vec<kernels::Series>> {
    if labels.is_empty() {
        return Ok(kernels::default_series());
    }
    labels.iter().map(|l| kernels::series(l)).collect()
}
