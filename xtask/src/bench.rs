//! `cargo xtask bench`: in-guest overhead of pfn-auditor on the scenario program's timing workloads
//! (each prints `elapsed_ns=N`). The guest runs each workload three times each way — bare, under
//! `pfn-auditor run --probe-floor` (empty programs on the same hooks by the same mechanism: what
//! the probes alone cost) and with the auditor attached — and the median run of each way counts.
//!
//! Prints one line per workload and kernel on stdout,
//! `bench <kernel> <workload> bare_ns=<n> floor_ns=<n> attached_ns=<n> ratio=<attached/bare>`,
//! then one per hook that ran under each daemon (from its `summary`, the kernel's BPF run-time
//! statistics over the daemon's whole run: its three workload runs and what the guest did between
//! them), `bench <kernel> <workload> <floor|attached> hook=<name> runs=<n> bpf_run_ns=<n>
//! ns_per_run=<n> share=<bpf_run_ns per workload run / that way's median time>`, and at the end the
//! README's table and the per-hook table on stderr.

use crate::kernels::Series;
use crate::qemu::{Clock, GuestFiles};
use crate::vm::Guest;
use anyhow::{Context, Result, bail};
use std::time::Duration;

pub const WORKLOADS: &[&str] = &["bench-truncate", "bench-mmap", "bench-pin"];

/// Runs per way in the guest (tests/vm/guest/init.sh, `run_bench`).
const RUNS: usize = 3;

/// The workloads `--workload` names, in [`WORKLOADS`] order; all of them when none is named.
pub fn selected_workloads(names: &[String]) -> Result<Vec<&'static str>> {
    if let Some(unknown) = names.iter().find(|n| !WORKLOADS.contains(&n.as_str())) {
        bail!("unknown workload {unknown:?} (known: {})", WORKLOADS.join(", "));
    }
    Ok(WORKLOADS.iter().copied().filter(|w| names.is_empty() || names.iter().any(|n| n == w)).collect())
}

pub fn run(kernels: &[Series], workloads: &[&str], clock: Clock, iterations: u64) -> Result<()> {
    let guest = Guest::prepare(true)?;
    let plan: String = workloads.iter().map(|w| format!("{w} bench pfnaudit-scenario {w} {iterations}\n")).collect();
    // Per workload: nine runs and two auditor starts. Under icount the guest is several times
    // slower than plain TCG.
    let per_item = match clock {
        Clock::Tcg => Duration::from_secs(300),
        Clock::Icount => Duration::from_secs(900),
    };
    let mut table = vec![TABLE_HEADER.to_string()];
    let mut hook_table = vec![HOOK_TABLE_HEADER.to_string()];
    let mut failed = 0;
    for &series in kernels {
        let (_, finished) = guest.boot_with(series, &plan, clock, per_item)?;
        for workload in workloads {
            match measure(&finished.files, workload) {
                Ok(m) => {
                    println!("{}", m.line(series.label, workload));
                    for line in m.hook_lines(series.label, workload) {
                        println!("{line}");
                    }
                    table.push(m.table_row(series.label, workload));
                    hook_table.extend(m.hook_rows(series.label, workload));
                }
                Err(e) => {
                    eprintln!("xtask: bench {} {workload}: {e:#}", series.label);
                    failed += 1;
                }
            }
        }
    }
    eprintln!("\n{} iterations, {clock:?} clock, median of {RUNS} runs each way:\n{}", iterations, table.join("\n"));
    eprintln!(
        "\nPer hook, the kernel's BPF run-time statistics over each daemon's run ({RUNS} workload runs), per workload run:\n{}",
        hook_table.join("\n")
    );
    if failed > 0 {
        bail!("{failed} workload(s) not measured (see above and target/vm-test/<kernel>/)");
    }
    Ok(())
}

/// Median elapsed time of each way, in guest nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Measured {
    bare_ns: u64,
    floor_ns: u64,
    attached_ns: u64,
    /// CPU time (user + system) of the attached daemon per run: its share of the one vCPU.
    daemon_ns: Option<u64>,
    /// The floor daemon's per-hook totals (empty programs), from its summary; empty when it sent none.
    floor_hooks: Vec<HookCost>,
    /// The attached daemon's.
    attached_hooks: Vec<HookCost>,
}

/// One hook's programs as the kernel counted them over a daemon's run (the summary's
/// `hooks[]`: `bpf_runs`, `bpf_run_ns`; an entry and a return program each count a run).
#[derive(Clone, Debug, PartialEq, Eq)]
struct HookCost {
    hook: String,
    runs: u64,
    ns: u64,
}

impl HookCost {
    fn ns_per_run(&self) -> u64 {
        self.ns / self.runs.max(1)
    }
}

const HOOK_TABLE_HEADER: &str = "| kernel | workload | way | hook | runs | BPF time | ns per run | share of the way's time |\n\
                                 | --- | --- | --- | --- | --- | --- | --- | --- |";

const TABLE_HEADER: &str = "| kernel | workload | bare | floor | attached | attached / bare | floor / bare | attached / floor | daemon CPU per attached run |\n\
                            | --- | --- | --- | --- | --- | --- | --- | --- | --- |";

/// The guest's USER_HZ (x86): /proc/PID/stat counts CPU time in these.
const NS_PER_TICK: u64 = 10_000_000;

impl Measured {
    /// Each way that has per-hook totals, with its median time.
    fn ways(&self) -> [(&'static str, &[HookCost], u64); 2] {
        [("floor", &self.floor_hooks, self.floor_ns), ("attached", &self.attached_hooks, self.attached_ns)]
    }

    /// One machine-readable line per hook of each way; `share` is the hook's BPF time per workload
    /// run over the way's median time.
    fn hook_lines(&self, kernel: &str, workload: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for (way, hooks, way_ns) in self.ways() {
            for h in hooks {
                lines.push(format!(
                    "bench {kernel} {workload} {way} hook={} runs={} bpf_run_ns={} ns_per_run={} share={:.3}",
                    h.hook,
                    h.runs,
                    h.ns,
                    h.ns_per_run(),
                    ratio(h.ns / RUNS as u64, way_ns)
                ));
            }
        }
        lines
    }

    /// Rows of the per-hook Markdown table: runs and BPF time per workload run.
    fn hook_rows(&self, kernel: &str, workload: &str) -> Vec<String> {
        let mut rows = Vec::new();
        for (way, hooks, way_ns) in self.ways() {
            for h in hooks {
                let per_run = h.ns / RUNS as u64;
                rows.push(format!(
                    "| {kernel} | {workload} | {way} | {} | {} | {:.2} ms | {} | {:.1} % |",
                    h.hook,
                    h.runs / RUNS as u64,
                    per_run as f64 / 1e6,
                    h.ns_per_run(),
                    100.0 * ratio(per_run, way_ns)
                ));
            }
        }
        rows
    }

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
    let hooks = |way: &str| -> Result<Vec<HookCost>> {
        match files.get(&(workload.to_owned(), format!("{way}-hooks"))) {
            Some(sent) => hook_costs(&sent.text).with_context(|| format!("the {way} daemon's summary hooks")),
            None => Ok(Vec::new()),
        }
    };
    Ok(Measured {
        bare_ns: elapsed("bare")?,
        floor_ns: elapsed("floor")?,
        attached_ns: elapsed("attached")?,
        daemon_ns,
        floor_hooks: hooks("floor")?,
        attached_hooks: hooks("attached")?,
    })
}

/// The hooks of a summary's `hooks[]` (as the guest cut it out) that have run-time statistics,
/// dearest first; empty for an empty text (a daemon that wrote no summary).
fn hook_costs(text: &str) -> Result<Vec<HookCost>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(serde::Deserialize)]
    struct Row {
        hook: String,
        bpf_runs: Option<u64>,
        bpf_run_ns: Option<u64>,
    }
    let rows: Vec<Row> = serde_json::from_str(text)?;
    let mut costs: Vec<HookCost> = rows
        .into_iter()
        .filter_map(|r| Some(HookCost { hook: r.hook, runs: r.bpf_runs?, ns: r.bpf_run_ns? }))
        .filter(|c| c.runs > 0)
        .collect();
    costs.sort_by(|a, b| b.ns.cmp(&a.ns).then_with(|| a.hook.cmp(&b.hook)));
    Ok(costs)
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
        let m = Measured {
            bare_ns: 2_000_000,
            floor_ns: 2_100_000,
            attached_ns: 2_520_000,
            daemon_ns: Some(40_000_000),
            floor_hooks: Vec::new(),
            attached_hooks: Vec::new(),
        };
        assert_eq!(m.line("6.1", "bench-pin"), "bench 6.1 bench-pin bare_ns=2000000 floor_ns=2100000 attached_ns=2520000 ratio=1.260");
        assert_eq!(m.table_row("6.1", "bench-pin"), "| 6.1 | bench-pin | 2.00 ms | 2.10 ms | 2.52 ms | 1.260× | 1.050× | 1.200× | 40 ms |");
        let without = Measured { daemon_ns: None, ..m.clone() };
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
        let m = measure(&files, "bench-mmap").unwrap();
        assert_eq!((m.bare_ns, m.floor_ns, m.attached_ns, m.daemon_ns), (20, 20, 20, None));
        assert!(m.attached_hooks.is_empty() && m.floor_hooks.is_empty(), "no summary sent: no hooks, not an error");
        files.insert(("bench-mmap".into(), "attached-daemon".into()), sent("cpu_ticks=6\n"));
        assert_eq!(measure(&files, "bench-mmap").unwrap().daemon_ns, Some(20_000_000), "6 ticks of 10 ms over 3 runs");
    }

    #[test]
    fn each_hooks_bpf_time_is_read_from_the_daemons_summary_and_printed_per_workload_run() {
        let sent = |text: &str| Sent { status: "0".into(), text: text.into() };
        let runs = "elapsed_ns=3000000\nelapsed_ns=3000000\nelapsed_ns=3000000\n";
        let mut files = GuestFiles::new();
        for way in ["bare", "floor", "attached"] {
            files.insert(("bench-pin".into(), way.into()), sent(runs));
        }
        // What the guest cuts out of the summary line: hooks without statistics or runs are left out.
        let hooks = r#"[{"hook":"vm_area_free","hits":9,"emitted":0,"dropped":0,"bpf_runs":9,"bpf_run_ns":900},{"hook":"follow_pfn","hits":24,"emitted":24,"dropped":0,"bpf_runs":48,"bpf_run_ns":1800000},{"hook":"exit_mmap","hits":3,"emitted":0,"dropped":0},{"hook":"zap_vma_ptes","hits":0,"emitted":0,"dropped":0,"bpf_runs":0,"bpf_run_ns":0}]"#;
        files.insert(("bench-pin".into(), "attached-hooks".into()), sent(&format!("{hooks}\n")));
        files.insert(("bench-pin".into(), "floor-hooks".into()), sent("\n"));
        let m = measure(&files, "bench-pin").unwrap();
        assert!(m.floor_hooks.is_empty());
        assert_eq!(
            m.hook_lines("6.1", "bench-pin"),
            [
                "bench 6.1 bench-pin attached hook=follow_pfn runs=48 bpf_run_ns=1800000 ns_per_run=37500 share=0.200",
                "bench 6.1 bench-pin attached hook=vm_area_free runs=9 bpf_run_ns=900 ns_per_run=100 share=0.000",
            ],
            "dearest first; the share is the time per workload run (a third) over the median run"
        );
        assert_eq!(m.hook_rows("6.1", "bench-pin")[0], "| 6.1 | bench-pin | attached | follow_pfn | 16 | 0.60 ms | 37500 | 20.0 % |");
        files.insert(("bench-pin".into(), "attached-hooks".into()), sent("[{\"hook\":"));
        assert!(format!("{:#}", measure(&files, "bench-pin").unwrap_err()).starts_with("the attached daemon's summary hooks: "));
    }

    #[test]
    fn a_workload_filter_keeps_the_named_ones_and_refuses_unknown_names() {
        assert_eq!(selected_workloads(&[]).unwrap(), WORKLOADS);
        assert_eq!(selected_workloads(&["bench-pin".into()]).unwrap(), ["bench-pin"]);
        let err = selected_workloads(&["pin".into()]).unwrap_err().to_string();
        assert_eq!(err, "unknown workload \"pin\" (known: bench-truncate, bench-mmap, bench-pin)");
    }
}
