//! `cargo xtask bench`: in-guest overhead of pfn-auditor on the scenario program's timing workloads
//! (each prints `elapsed_ns=N`). The guest runs each workload three times each way — bare, under
//! `pfn-auditor run --probe-floor` (empty programs on the same hooks by the same mechanism: what
//! the probes alone cost) and with the auditor attached — and the median run of each way counts.
//!
//! Prints one line per workload and kernel on stdout,
//! `bench <kernel> <workload> bare_ns=<n> floor_ns=<n> attached_ns=<n> ratio=<attached/bare>`,
//! and at the end the README's table on stderr.

use crate::kernels::Series;
use crate::qemu::{Clock, GuestFiles};
use crate::vm::Guest;
use anyhow::{Context, Result, bail};
use std::time::Duration;

const WORKLOADS: &[&str] = &["bench-truncate", "bench-mmap", "bench-pin"];

/// Runs per way in the guest (tests/vm/guest/init.sh, `run_bench`).
const RUNS: usize = 3;

pub fn run(kernels: &[Series], clock: Clock, iterations: u64) -> Result<()> {
    let guest = Guest::prepare(true)?;
    let plan: String = WORKLOADS.iter().map(|w| format!("{w} bench pfnaudit-scenario {w} {iterations}\n")).collect();
    // Per workload: nine runs and two auditor starts. Under icount the guest is several times
    // slower than plain TCG.
    let per_item = match clock {
        Clock::Tcg => Duration::from_secs(300),
        Clock::Icount => Duration::from_secs(900),
    };
    let mut table = vec![TABLE_HEADER.to_string()];
    let mut failed = 0;
    for &series in kernels {
        let (_, finished) = guest.boot_with(series, &plan, clock, per_item)?;
        for workload in WORKLOADS {
            match measure(&finished.files, workload) {
                Ok(m) => {
                    println!("{}", m.line(series.label, workload));
                    table.push(m.table_row(series.label, workload));
                }
                Err(e) => {
                    eprintln!("xtask: bench {} {workload}: {e:#}", series.label);
                    failed += 1;
                }
            }
        }
    }
    eprintln!("\n{} iterations, {clock:?} clock, median of {RUNS} runs each way:\n{}", iterations, table.join("\n"));
    if failed > 0 {
        bail!("{failed} workload(s) not measured (see above and target/vm-test/<kernel>/)");
    }
    Ok(())
}

/// Median elapsed time of each way, in guest nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Measured {
    bare_ns: u64,
    floor_ns: u64,
    attached_ns: u64,
    /// CPU time (user + system) of the attached daemon per run: its share of the one vCPU.
    daemon_ns: Option<u64>,
}

const TABLE_HEADER: &str = "| kernel | workload | bare | floor | attached | attached / bare | floor / bare | attached / floor | daemon CPU per attached run |\n\
                            | --- | --- | --- | --- | --- | --- | --- | --- | --- |";

/// The guest's USER_HZ (x86): /proc/PID/stat counts CPU time in these.
const NS_PER_TICK: u64 = 10_000_000;

impl Measured {
    /// The machine-readable line.
    fn line(&self, kernel: &str, workload: &str) -> String {
        format!(
            "bench {kernel} {workload} bare_ns={} floor_ns={} attached_ns={} ratio={:.3}",
            self.bare_ns,
            self.floor_ns,
            self.attached_ns,
            ratio(self.attached_ns, self.bare_ns)
        )
    }

    /// A row of the README's Markdown table (times in ms).
    fn table_row(&self, kernel: &str, workload: &str) -> String {
        let ms = |ns: u64| format!("{:.2} ms", ns as f64 / 1e6);
        format!(
            "| {kernel} | {workload} | {} | {} | {} | {:.3}× | {:.3}× | {:.3}× | {} |",
            ms(self.bare_ns),
            ms(self.floor_ns),
            ms(self.attached_ns),
            ratio(self.attached_ns, self.bare_ns),
            ratio(self.floor_ns, self.bare_ns),
            ratio(self.attached_ns, self.floor_ns),
            self.daemon_ns.map_or("?".into(), |ns| format!("{:.0} ms", ns as f64 / 1e6)),
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b.max(1) as f64
}

fn measure(files: &GuestFiles, workload: &str) -> Result<Measured> {
    let elapsed = |way: &str| -> Result<u64> {
        let sent = files.get(&(workload.to_owned(), way.to_owned())).with_context(|| {
            let stderr = files.get(&(workload.to_owned(), format!("{way}-stderr"))).map(|s| s.text.trim()).unwrap_or_default();
            format!("no {way} run (auditor: {stderr:?})")
        })?;
        median_elapsed_ns(&sent.text).with_context(|| format!("{way} runs did not all print elapsed_ns (exit {})", sent.status))
    };
    let daemon = files.get(&(workload.to_owned(), "attached-daemon".to_owned()));
    let daemon_ns = daemon.and_then(|sent| value_of(&sent.text, "cpu_ticks=")).map(|ticks| ticks * NS_PER_TICK / RUNS as u64);
    Ok(Measured { bare_ns: elapsed("bare")?, floor_ns: elapsed("floor")?, attached_ns: elapsed("attached")?, daemon_ns })
}

/// The first `key<number>` word of `text`.
fn value_of(text: &str, key: &str) -> Option<u64> {
    text.split_whitespace().find_map(|w| w.strip_prefix(key)?.parse().ok())
}

/// The median of the [`RUNS`] `elapsed_ns=` values in `output`; `None` unless all are there.
fn median_elapsed_ns(output: &str) -> Option<u64> {
    let mut runs: Vec<u64> = output.split_whitespace().filter_map(|w| w.strip_prefix("elapsed_ns=")?.parse().ok()).collect();
    if runs.len() != RUNS {
        return None;
    }
    runs.sort_unstable();
    Some(runs[RUNS / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Sent;

    #[test]
    fn the_median_of_the_three_runs_is_read_from_the_workload_output() {
        let out = "iterations=5\nelapsed_ns=12345\npfnaudit-scenario bench-pin: ok\nelapsed_ns=999\nelapsed_ns=5000\n";
        assert_eq!(median_elapsed_ns(out), Some(5000));
        assert_eq!(median_elapsed_ns("elapsed_ns=1\nelapsed_ns=2\n"), None, "a run that failed leaves no median");
        assert_eq!(median_elapsed_ns("failed: ENOTTY\n"), None);
    }

    #[test]
    fn one_machine_readable_line_and_one_table_row_per_workload() {
        let m = Measured { bare_ns: 2_000_000, floor_ns: 2_100_000, attached_ns: 2_520_000, daemon_ns: Some(40_000_000) };
        assert_eq!(m.line("6.1", "bench-pin"), "bench 6.1 bench-pin bare_ns=2000000 floor_ns=2100000 attached_ns=2520000 ratio=1.260");
        assert_eq!(m.table_row("6.1", "bench-pin"), "| 6.1 | bench-pin | 2.00 ms | 2.10 ms | 2.52 ms | 1.260× | 1.050× | 1.200× | 40 ms |");
        let without = Measured { daemon_ns: None, ..m };
        assert!(without.table_row("6.1", "bench-pin").ends_with("| 1.200× | ? |"));
    }

    #[test]
    fn a_missing_way_is_named_with_what_the_auditor_said() {
        let sent = |text: &str| Sent { status: "0".into(), text: text.into() };
        let runs = "elapsed_ns=10\nelapsed_ns=30\nelapsed_ns=20\n";
        let mut files = GuestFiles::new();
        files.insert(("bench-mmap".into(), "bare".into()), sent(runs));
        files.insert(("bench-mmap".into(), "floor".into()), sent(runs));
        files.insert(("bench-mmap".into(), "attached-stderr".into()), sent("pfn-auditor: no BTF\n"));
        let err = measure(&files, "bench-mmap").unwrap_err();
        assert_eq!(format!("{err:#}"), "no attached run (auditor: \"pfn-auditor: no BTF\")");
        files.insert(("bench-mmap".into(), "attached".into()), sent(runs));
        assert_eq!(measure(&files, "bench-mmap").unwrap(), Measured { bare_ns: 20, floor_ns: 20, attached_ns: 20, daemon_ns: None });
        files.insert(("bench-mmap".into(), "attached-daemon".into()), sent("cpu_ticks=6\n"));
        assert_eq!(measure(&files, "bench-mmap").unwrap().daemon_ns, Some(20_000_000), "6 ticks of 10 ms over 3 runs");
    }
}
