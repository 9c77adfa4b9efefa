//! `cargo xtask bench`: in-guest overhead of an attached pfn-auditor on the scenario program's timing
//! workloads (each prints `elapsed_ns=N`), as the ratio attached / bare, per workload per kernel.
//! The guest runs each workload three times each way; the fastest run of each way is compared.

use crate::kernels::Series;
use crate::qemu::GuestFiles;
use crate::vm::Guest;
use anyhow::{Context, Result};

const WORKLOADS: &[&str] = &["bench-truncate", "bench-mmap", "bench-pin"];

pub fn run(kernels: &[Series], iterations: u64) -> Result<()> {
    let guest = Guest::prepare(true)?;
    let plan: String = WORKLOADS.iter().map(|w| format!("{w} bench pfnaudit-scenario {w} {iterations}\n")).collect();
    println!("{:<6} {:<16} {:>14} {:>14} {:>7}", "kernel", "workload", "bare ns", "attached ns", "ratio");
    for &series in kernels {
        let (_, finished) = guest.boot(series, &plan)?;
        for workload in WORKLOADS {
            let row = measure(&finished.files, workload)
                .map(|(bare, attached)| format!("{bare:>14} {attached:>14} {:>7.2}", attached as f64 / bare.max(1) as f64));
            let row = row.unwrap_or_else(|e| format!("{e:#}"));
            println!("{:<6} {workload:<16} {row}", series.label);
        }
    }
    Ok(())
}

fn measure(files: &GuestFiles, workload: &str) -> Result<(u64, u64)> {
    let elapsed = |label: &str| -> Result<u64> {
        let sent = files.get(&(workload.to_owned(), label.to_owned())).with_context(|| format!("no {label} run"))?;
        elapsed_ns(&sent.text).with_context(|| format!("{label} run printed no elapsed_ns (exit {})", sent.status))
    };
    Ok((elapsed("bare")?, elapsed("attached")?))
}

/// The fastest of the repeated runs: TCG timing noise only ever adds time.
fn elapsed_ns(output: &str) -> Option<u64> {
    output.split_whitespace().filter_map(|w| w.strip_prefix("elapsed_ns=")?.parse().ok()).min()
}

#[cfg(test)]
mod tests {
    #[test]
    fn elapsed_is_read_from_the_workload_output() {
        assert_eq!(super::elapsed_ns("iterations=5\nelapsed_ns=12345\nelapsed_ns=999\n"), Some(999));
        assert_eq!(super::elapsed_ns("failed: ENOTTY\n"), None);
    }
}
