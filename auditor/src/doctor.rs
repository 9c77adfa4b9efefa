//! `pfn-auditor doctor`: can this machine be audited, and which hook carries which role here?
//! First one row per prerequisite with what to do about it (`host_checks.rs`), then the hooks.
use std::{fmt::Write as _, time::Duration};

use auditor_common::Hook;

use crate::{
    drain::{KernelMaps, totals},
    host_checks::{self, Check, CheckState, Host},
    policy::Policy,
    probes::{
        self, KernelFacts,
        table::{Attach, PROBES},
    },
    vocab::{
        hook_status::{HookState, HookStatus},
        record::{HookTotals, RuleStatus},
    },
};

/// The reason of every kprobe hook row when the `kprobes` check says the kernel has none.
pub(crate) const NO_KPROBES: &str = "kprobes unavailable on this kernel (see above)";
/// The reason of a tracepoint row that failed when the `tracefs` check found none.
pub(crate) const NO_TRACEFS: &str = "tracefs not mounted (see above)";

/// Everything doctor found, printable as a table or JSON (`doctor --json`: the shape is
/// documented in docs/doctor.md and kept stable).
#[derive(Debug, serde::Serialize)]
pub struct Diagnosis {
    pub kernel_release: String,
    /// `major.minor` as the probe table compares it, or `?` when the release cannot be read.
    pub kernel_version: String,
    /// One per prerequisite, in order (kernel, btf, kprobes, kprobes-on, ringbuf, fentry, tracefs,
    /// modules, kallsyms, privileges), each with a fix unless it is ok.
    pub checks: Vec<Check>,
    /// The `btf` check's detail (the BTF file) when it is ok, else why not: in the JSON as that
    /// check.
    #[serde(skip)]
    pub btf: Result<String, String>,
    pub root: bool,
    /// Whether the hooks below were attached as a test, or only planned and why.
    pub hooks_attached: HooksTried,
    /// Why the hooks were not attached when that is neither "not root" nor "no BTF" (another
    /// instance holds the lock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks_note: Option<String>,
    pub hooks: Vec<HookRow>,
    /// Holder and suppression rules in force: policy file first, then the built-in catalog.
    pub rules: Vec<RuleStatus>,
    /// What the attached probes cost on this machine over a sample window (`None`: not
    /// attached for real, or no sample asked for).
    pub cost: Option<Cost>,
}

/// One row of doctor's hook table: a hook's status, or a step before any hook could be tried
/// that failed (in JSON a row of the same shape, named by the step).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum HookRow {
    Hook(HookStatus),
    Failed(FailedStep),
}

/// A step before the hooks that failed: `hooks` (the kernel's facts could not be read, nothing
/// was planned) or `load` (the eBPF object did not load, the hooks are only planned).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FailedStep {
    #[serde(rename = "hook")]
    pub step: &'static str,
    /// Always `-`: no kernel symbol.
    pub symbol: &'static str,
    /// Always `failed`.
    pub state: HookState,
    pub reason: String,
}

impl HookRow {
    /// The row of step `step` that failed for `reason`.
    fn failed(step: &'static str, reason: String) -> Self {
        HookRow::Failed(FailedStep { step, symbol: "-", state: HookState::Failed, reason })
    }

    fn status_mut(&mut self) -> Option<&mut HookStatus> {
        match self {
            HookRow::Hook(status) => Some(status),
            HookRow::Failed(_) => None,
        }
    }

    /// Hook (or step), symbol, state and reason, as the table prints them.
    fn cells(&self) -> (&str, &str, HookState, &str) {
        match self {
            HookRow::Hook(h) => (h.hook.name(), &h.symbol, h.state, h.reason.as_deref().unwrap_or("")),
            HookRow::Failed(f) => (f.step, f.symbol, f.state, &f.reason),
        }
    }
}

/// How doctor came to its hook rows (`hooks_attached` in `doctor --json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HooksTried {
    /// Loaded and attached as a test (as root, with BTF), and detached again before the report:
    /// each row's state is what attaching did (`attached`, `failed`, ...).
    Tried,
    /// Not attached: not root or no BTF; each row says what would be done (`available`, ...).
    Planned,
    /// Not attached: another pfn-auditor is running on a kernel where two cannot (before 5.14;
    /// `hooks_note` says which).
    OtherInstance,
}

/// The probes' cost on this machine's own workload over doctor's sample window (`--sample-ms`).
#[derive(Debug, serde::Serialize)]
pub struct Cost {
    pub sample_ms: u64,
    /// False when the kernel keeps no BPF run-time statistics (`bpf_runs`/`bpf_run_ns` absent).
    pub run_time_stats: bool,
    /// Each hook that ran in the window.
    pub hooks: Vec<HookTotals>,
}

impl Diagnosis {
    /// Ready to audit: no prerequisite missing (root, BTF, kprobes, kallsyms…), a raw-lookup hook
    /// and every revocation hook attached or attachable.
    pub fn ready(&self) -> bool {
        let ok = |hook: auditor_common::Hook| {
            self.hooks.iter().any(
                |row| matches!(row, HookRow::Hook(h) if h.hook == hook && matches!(h.state, HookState::Attached | HookState::Available)),
            )
        };
        self.root
            && self.btf.is_ok()
            && self.checks.iter().all(|c| c.state != CheckState::Missing)
            && crate::probes::table::missing_essential(ok).is_none()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(out, "checks");
        for c in &self.checks {
            let _ = writeln!(out, "  {:<11} {:<8} {}", c.name, c.state.name(), c.detail);
            if let Some(fix) = &c.fix {
                let _ = writeln!(out, "  {:<11} {:<8} fix: {fix}", "", "");
            }
        }
        let how = self.hooks_headline();
        let _ = writeln!(out, "hooks       {how}");
        let _ = writeln!(out, "  {:<22} {:<24} {:<18} reason", "hook", "symbol", "state");
        for row in &self.hooks {
            let (hook, symbol, state, reason) = row.cells();
            let _ = writeln!(out, "  {:<22} {:<24} {:<18} {}", hook, symbol, state.name(), reason);
        }
        let _ =
            writeln!(out, "rules       {}", if self.rules.is_empty() { "none (no policy, --no-catalog)" } else { "matched in this order" });
        let _ = writeln!(out, "  {:<8} {:<32} {:<26} {:<22} effect", "rule", "holder", "release", "source");
        for r in &self.rules {
            let _ = writeln!(out, "  {:<8} {:<32} {:<26} {:<22} {}", r.rule, r.holder, r.release.join(", "), r.source, r.effect);
        }
        if let Some(cost) = &self.cost {
            render_cost(&mut out, cost);
        }
        let _ = writeln!(out, "ready       {}", yes_no(self.ready()));
        out
    }

    /// What the `hooks` line says about the rows under it.
    fn hooks_headline(&self) -> String {
        match self.hooks_attached {
            HooksTried::Tried if self.hooks.iter().any(|row| matches!(row, HookRow::Hook(h) if h.state == HookState::Attached)) => {
                "attached as a test, detached again".into()
            }
            HooksTried::Tried => "none could be attached (each row says why)".into(),
            HooksTried::Planned if !self.root => "planned (run as root to attach for real)".into(),
            HooksTried::Planned => "planned (no BTF, nothing can be loaded: see above)".into(),
            HooksTried::OtherInstance => {
                format!("planned, not attached: {}", self.hooks_note.as_deref().unwrap_or("another instance runs"))
            }
        }
    }
}

fn render_cost(out: &mut String, cost: &Cost) {
    let stats = if cost.run_time_stats { "kernel BPF run-time statistics" } else { "no BPF run-time statistics on this kernel" };
    let _ = writeln!(out, "cost        over {} ms of this machine's own work ({stats})", cost.sample_ms);
    let _ = writeln!(out, "  {:<22} {:>10} {:>10} {:>12} {:>8}", "hook", "hits", "bpf runs", "bpf ns", "ns/run");
    for h in &cost.hooks {
        let (runs, ns) = (h.bpf_runs.unwrap_or(0), h.bpf_run_ns.unwrap_or(0));
        let per_run = ns.checked_div(runs).map_or("-".to_string(), |n| n.to_string());
        let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(out, "  {:<22} {:>10} {:>10} {:>12} {:>8}", h.hook.name(), h.hits, show(h.bpf_runs), show(h.bpf_run_ns), per_run);
    }
    if cost.hooks.is_empty() {
        let _ = writeln!(out, "  no hook ran");
    }
}

/// Every check and every hook row, whatever is missing: doctor never stops at the first gap.
/// When the hooks are attached for real they stay attached for `sample` (zero: not at all), and
/// what they cost meanwhile is the diagnosis' `cost`.
pub fn diagnose(policy: &Policy, sample: Duration) -> anyhow::Result<Diagnosis> {
    let host = Host::this().probe_features();
    let checks = host_checks::check_all(&host);
    let check = |name| checks.iter().find(|c| c.name == name).expect("every check is made");
    let btf = match check(host_checks::BTF) {
        c if c.state == CheckState::Ok => Ok(c.detail.clone()),
        c => Err(c.detail.clone()),
    };
    let root = probes::require_root().is_ok();
    let (kernel_release, kernel_version, mut hooks, (hooks_attached, hooks_note), cost) = match KernelFacts::read() {
        Ok(facts) => {
            let (hooks, tried, cost) = hook_rows(&facts, policy, root && btf.is_ok(), sample);
            (facts.release.clone(), facts.version.to_string(), hooks, tried, cost)
        }
        Err(e) => {
            let row = HookRow::failed("hooks", format!("cannot plan the hooks: {e:#} (see above)"));
            (host.release().unwrap_or_default(), "?".into(), vec![row], (HooksTried::Planned, None), None)
        }
    };
    if host_checks::kprobes_unavailable(&checks) {
        say_once_that_kprobes_are_unavailable(&mut hooks);
    }
    if host_checks::tracefs_mounted(&host).is_none() {
        say_once_that_tracefs_is_missing(&mut hooks);
    }
    Ok(Diagnosis { kernel_release, kernel_version, checks, btf, root, hooks_attached, hooks_note, hooks, rules: policy.rules(), cost })
}

/// Kprobe hook rows that failed, would be attached, or wait for a module say "no kprobes" instead
/// of repeating the attach error (or promising to attach later); rows absent by design, tracepoint
/// rows and failed steps keep theirs.
pub(crate) fn say_once_that_kprobes_are_unavailable(hooks: &mut [HookRow]) {
    for h in hooks.iter_mut().filter_map(HookRow::status_mut) {
        let waits = h.state == HookState::ModuleNotLoaded || (h.hook == Hook::Release0 && h.state == HookState::Absent);
        if (waits || matches!(h.state, HookState::Failed | HookState::Available)) && !is_tracepoint(&h.symbol) {
            h.state = HookState::Failed;
            h.reason = Some(NO_KPROBES.into());
        }
    }
}

/// Tracepoint rows that failed say "no tracefs" (their id is read from tracefs).
pub(crate) fn say_once_that_tracefs_is_missing(hooks: &mut [HookRow]) {
    for h in hooks.iter_mut().filter_map(HookRow::status_mut).filter(|h| h.state == HookState::Failed && is_tracepoint(&h.symbol)) {
        h.reason = Some(NO_TRACEFS.into());
    }
}

fn is_tracepoint(symbol: &str) -> bool {
    PROBES.iter().any(|r| matches!(r.attach(), Attach::Tracepoint { name, .. } if name == symbol))
}

/// Attached as a test when `attach` (root and BTF) and no other instance is in the way, else
/// planned; with the cost over `sample` when attached.
fn hook_rows(
    facts: &KernelFacts,
    policy: &Policy,
    attach: bool,
    sample: Duration,
) -> (Vec<HookRow>, (HooksTried, Option<String>), Option<Cost>) {
    let rows = |hooks: Vec<HookStatus>| hooks.into_iter().map(HookRow::Hook).collect::<Vec<_>>();
    let release_functions = &policy.release_functions();
    if !attach {
        return (rows(probes::plan(facts, release_functions)), (HooksTried::Planned, None), None);
    }
    // On kernels before 5.14 a running daemon would be harmed by doctor's test attach.
    let _instance = match crate::instance_lock::for_kernel(facts.version, &facts.release) {
        Ok(lock) => lock,
        Err(e) => return (rows(probes::plan(facts, release_functions)), (HooksTried::OtherInstance, Some(e.to_string())), None),
    };
    // Attach for real (and detach on drop): the only proof that the verifier accepts the
    // programs on this kernel.
    match probes::load_and_attach(facts, release_functions, 1 << 20, probes::floor::ProgramSet::Auditing) {
        Ok(mut attached) => {
            let cost = if sample.is_zero() { None } else { measure_cost(&mut attached, sample) };
            (rows(std::mem::take(&mut attached.hooks)), (HooksTried::Tried, None), cost)
        }
        Err(e) => {
            let mut planned = rows(probes::plan(facts, release_functions));
            planned.push(HookRow::failed("load", format!("{e:#}")));
            (planned, (HooksTried::Tried, None), None)
        }
    }
}

/// Leaves the probes attached for `sample` and reads what they did and cost meanwhile. The ring
/// buffer is not read: a busy machine may fill it (counted as dropped), which costs nothing more.
fn measure_cost(attached: &mut probes::Attached, sample: Duration) -> Option<Cost> {
    let maps = match KernelMaps::take(&mut attached.ebpf) {
        Ok(maps) => maps,
        Err(e) => {
            log::warn!("cannot measure the probes' cost: {e:#}");
            return None;
        }
    };
    std::thread::sleep(sample);
    let run_times = attached.run_times();
    Some(Cost {
        sample_ms: sample.as_millis() as u64,
        run_time_stats: run_times.is_some(),
        hooks: totals(&maps.read_counters(), &attached.counter_hooks, run_times.as_deref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_in_force_are_listed_with_their_source() {
        let user = Policy::parse("[[holder]]\nmodule = \"drv\"\nrelease = [\"drv_unpin\"]\n", "my.toml").unwrap();
        let d = Diagnosis {
            kernel_release: "6.1.0-50-amd64".into(),
            kernel_version: "6.1.0".into(),
            checks: Vec::new(),
            btf: Ok("/sys/kernel/btf/vmlinux".into()),
            root: false,
            hooks_attached: HooksTried::Planned,
            hooks_note: None,
            hooks: Vec::new(),
            rules: user.over(&crate::policy::Policy::catalog()).unwrap().rules(),
            cost: None,
        };
        let text = d.render();
        let rules: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("rules")).skip(2).take_while(|l| l.starts_with("  ")).collect();
        assert!(rules[0].contains("[drv]") && rules[0].contains("drv_unpin") && rules[0].contains("my.toml"), "{text}");
        assert!(
            rules[1].contains("[vfio_iommu_type1]") && rules[1].contains("vfio_unpin_pages_remote") && rules[1].contains("catalog.toml"),
            "{text}"
        );
        assert!(rules[1].contains("arg3 pages from the PFN in arg2"), "{text}");
        assert!(rules.iter().any(|r| r.starts_with("  suppress") && r.contains("kvm") && r.contains("MMU notifier")), "{text}");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["rules"][1]["source"], "catalog.toml");
    }

    fn row(hook: Hook, symbol: &str, state: HookState, reason: Option<&str>) -> HookRow {
        HookRow::Hook(HookStatus { hook, symbol: symbol.into(), state, reason: reason.map(str::to_string) })
    }

    #[test]
    fn without_kprobes_or_tracefs_each_row_says_which_once() {
        let raw = "attaching follow_pte_entry to follow_pte: `/sys/bus/event_source/devices/kprobe/type`: No such file or directory";
        let mut hooks = vec![
            row(Hook::FollowPte, "follow_pte", HookState::Failed, Some(raw)),
            row(Hook::Release0, "vfio_unpin_pages_remote", HookState::Available, Some("armed until vfio_iommu_type1 loads")),
            row(Hook::FollowPfn, "follow_pfn", HookState::Absent, Some("gone in 6.10")),
            row(Hook::TaskExit, "sched_process_exit", HookState::Failed, Some("attaching tracepoint: tracefs not found")),
            HookRow::failed("load", "loading the eBPF object failed".into()),
            row(Hook::GetVaddrFrames, "get_vaddr_frames", HookState::ModuleNotLoaded, Some("attached when it is")),
        ];
        say_once_that_kprobes_are_unavailable(&mut hooks);
        say_once_that_tracefs_is_missing(&mut hooks);
        assert_eq!(hooks[0], row(Hook::FollowPte, "follow_pte", HookState::Failed, Some(NO_KPROBES)));
        assert_eq!(hooks[1], row(Hook::Release0, "vfio_unpin_pages_remote", HookState::Failed, Some(NO_KPROBES)));
        assert_eq!(hooks[2].cells().2, HookState::Absent, "absent by design stays absent");
        assert_eq!(hooks[3], row(Hook::TaskExit, "sched_process_exit", HookState::Failed, Some(NO_TRACEFS)), "a tracepoint needs tracefs");
        assert_eq!(hooks[4].cells().3, "loading the eBPF object failed");
        let json = serde_json::to_value(&hooks[4]).unwrap();
        assert_eq!(json, serde_json::json!({"hook": "load", "symbol": "-", "state": "failed", "reason": "loading the eBPF object failed"}));
        assert_eq!(serde_json::to_value(&hooks[1]).unwrap()["hook"], "release", "a hook row names its hook as in the records");
        assert_eq!(
            hooks[5],
            row(Hook::GetVaddrFrames, "get_vaddr_frames", HookState::Failed, Some(NO_KPROBES)),
            "no promise to attach later"
        );
    }

    #[test]
    fn checks_come_first_each_with_its_fix_and_a_missing_one_means_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let checks = host_checks::check_all(&Host { root: dir.path().to_path_buf(), euid: 0, features: Default::default() });
        let d = Diagnosis {
            kernel_release: String::new(),
            kernel_version: "?".into(),
            checks,
            btf: Ok("/sys/kernel/btf/vmlinux".into()),
            root: true,
            hooks_attached: HooksTried::Planned,
            hooks_note: None,
            hooks: Vec::new(),
            rules: Vec::new(),
            cost: None,
        };
        let text = d.render();
        assert!(text.starts_with("checks\n  kernel      missing "), "{text}");
        assert!(text.contains("  tracefs     warning  not mounted"), "{text}");
        assert!(text.contains("fix: mount -t tracefs nodev /sys/kernel/tracing"), "{text}");
        assert!(text.find("  kprobes ").unwrap() < text.find("hooks ").unwrap(), "{text}");
        assert!(!d.ready());
        let json = serde_json::to_value(&d).unwrap();
        assert!(text.contains("  kprobes-on  ok       /sys/kernel/debug/kprobes/enabled not readable"), "{text}");
        assert_eq!(json["checks"][2]["name"], "kprobes");
        assert_eq!(json["checks"][2]["state"], "missing");
        assert!(json["checks"][2]["fix"].as_str().unwrap().contains("CONFIG_KPROBES=y"));
    }
}

#[cfg(test)]
mod headline_tests {
    use super::*;

    fn diagnosis(tried: HooksTried, root: bool, hooks: Vec<HookRow>) -> Diagnosis {
        Diagnosis {
            kernel_release: "5.10.0-32-amd64".into(),
            kernel_version: "5.10".into(),
            checks: Vec::new(),
            btf: Ok("/sys/kernel/btf/vmlinux".into()),
            root,
            hooks_attached: tried,
            hooks_note: (tried == HooksTried::OtherInstance).then(|| "another pfn-auditor (pid 7) is running".into()),
            hooks,
            rules: Vec::new(),
            cost: None,
        }
    }

    fn headline(d: &Diagnosis) -> String {
        d.render().lines().find(|l| l.starts_with("hooks ")).unwrap().to_string()
    }

    /// The hooks are detached by the time the report is printed, and a test attach that attached
    /// nothing says so (it used to say "attached now" in both cases).
    #[test]
    fn the_hooks_line_says_what_was_tried_and_what_came_of_it() {
        let row =
            |state| HookRow::Hook(HookStatus { hook: auditor_common::Hook::FollowPfn, symbol: "follow_pfn".into(), state, reason: None });
        let tried = diagnosis(HooksTried::Tried, true, vec![row(HookState::Attached)]);
        assert_eq!(headline(&tried), "hooks       attached as a test, detached again");
        let failed = diagnosis(HooksTried::Tried, true, vec![row(HookState::Failed)]);
        assert_eq!(headline(&failed), "hooks       none could be attached (each row says why)");
        assert_eq!(headline(&diagnosis(HooksTried::Planned, false, Vec::new())), "hooks       planned (run as root to attach for real)");
        let busy = diagnosis(HooksTried::OtherInstance, true, Vec::new());
        assert_eq!(headline(&busy), "hooks       planned, not attached: another pfn-auditor (pid 7) is running");
        let json = serde_json::to_value(&busy).unwrap();
        assert_eq!(
            (json["hooks_attached"].as_str(), json["hooks_note"].as_str()),
            (Some("other-instance"), Some("another pfn-auditor (pid 7) is running"))
        );
        assert!(json.get("btf").is_none(), "the btf check carries it: {json}");
        assert!(serde_json::to_value(&tried).unwrap().get("hooks_note").is_none());
    }
}

#[cfg(test)]
mod cost_tests {
    use super::*;
    use crate::vocab::event::HookRef;

    #[test]
    fn cost_rows_give_runs_time_and_time_per_run_of_each_hook() {
        let hook = |name: &str, hits, runs: Option<u64>, ns: Option<u64>| HookTotals {
            hook: HookRef::from_name(name),
            hits,
            emitted: 0,
            dropped: 0,
            bpf_runs: runs,
            bpf_run_ns: ns,
        };
        let cost = Cost {
            sample_ms: 1000,
            run_time_stats: true,
            hooks: vec![hook("unmap_page_range", 400, Some(400), Some(120_000)), hook("follow_pfn", 3, Some(6), Some(9_000))],
        };
        let mut out = String::new();
        render_cost(&mut out, &cost);
        let words = |l: String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(words(row_of(&out, "unmap_page_range")), ["unmap_page_range", "400", "400", "120000", "300"], "{out}");
        assert_eq!(words(row_of(&out, "follow_pfn")), ["follow_pfn", "3", "6", "9000", "1500"], "{out}");
        assert!(out.starts_with("cost        over 1000 ms"), "{out}");

        let without = Cost { sample_ms: 500, run_time_stats: false, hooks: vec![hook("zap_vma_ptes", 2, None, None)] };
        let mut out = String::new();
        render_cost(&mut out, &without);
        assert!(out.contains("no BPF run-time statistics"), "{out}");
        assert_eq!(words(row_of(&out, "zap_vma_ptes")), ["zap_vma_ptes", "2", "-", "-", "-"], "{out}");
    }

    fn row_of(out: &str, name: &str) -> String {
        out.lines().find(|l| l.trim_start().starts_with(name)).unwrap_or_else(|| panic!("{out}")).to_string()
    }
}
