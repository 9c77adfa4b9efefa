//! Hooks on functions that may live in kernel modules: the table's module rows (videobuf2-common's
//! frame-vector functions on 5.12+) and the policy's release functions (usually in the driver under
//! test). A driver's test script typically loads its module *after* `pfn-auditor gate` started and
//! uses it at once, and a kprobe on a module function dies with the module.
//!
//! Where the module is known (the table's, the function's in kallsyms, or its policy holder's), the
//! hook is a tracefs kprobe on `module:function` (`attach/tracefs_kprobe.rs`): the kernel arms it when the
//! module loads, before any of its code runs, and again after a reload. Otherwise, or without
//! tracefs, it is a perf kprobe attached when the daemon sees the function in kallsyms and
//! re-attached when its address changes; calls in between are missed.
use std::path::Path;

use auditor_common::{FrameVectorLayout, Hook};
use aya::{Ebpf, maps::Array, programs::kprobe::KProbeLinkId};

use super::{
    attach::{TracefsKprobe, attach_kprobe, detach_kprobe, failure_reason, loaded_kprobe},
    kernel_version::KernelVersion,
    layout::{KernelBtf, frame_vector_layout},
    table::{Attach, ProbeRow},
};
use crate::{
    symbols::KernelSymbols,
    vocab::hook_status::{HookState, HookStatus, ReleaseFunction},
};

/// Modules whose BTF holds types some hooks need (`struct frame_vector` on 5.12+).
pub(crate) const BTF_MODULES: &[&str] = &["videobuf2_common"];

#[derive(Clone, Debug)]
enum Target {
    /// A table row, with what it attaches in this run's program set.
    Row(&'static ProbeRow, Attach),
    /// Policy release function `function`, served by kprobe `program` (`release_{slot}`, or the
    /// floor's empty one); `module` is its holder's.
    Release { program: String, function: String, module: Option<String> },
}

/// A hook armed through tracefs on `module:function`.
struct Armed {
    module: String,
    /// Removed from tracefs when dropped.
    _probes: Vec<TracefsKprobe>,
    /// The status last reported for it.
    reported: HookStatus,
}

/// One hook that follows its function's module.
pub(crate) struct ModuleHook {
    target: Target,
    /// Index of its row in `Attached::hooks`.
    status: usize,
    /// The function's address when it was attached; `None` while not attached.
    attached_at: Option<u64>,
    links: Vec<(String, KProbeLinkId)>,
    /// Set when armed through tracefs: the kernel follows the module from then on.
    armed: Option<Armed>,
    /// Attaching failed for a reason a module load does not change: not retried.
    failed: bool,
}

impl ModuleHook {
    pub fn row(row: &'static ProbeRow, attach: Attach, status: usize) -> Self {
        Self::new(Target::Row(row, attach), status)
    }

    pub fn release(program: String, release: &ReleaseFunction, status: usize) -> Self {
        Self::new(Target::Release { program, function: release.name.clone(), module: release.module.clone() }, status)
    }

    fn new(target: Target, status: usize) -> Self {
        Self { target, status, attached_at: None, links: Vec::new(), armed: None, failed: false }
    }

    fn symbol(&self) -> &str {
        match &self.target {
            Target::Row(row, _) => row.symbol,
            Target::Release { function, .. } => function,
        }
    }

    /// The hook of its status row: the table row's, or `Release0` for every release function.
    fn hook(&self) -> Hook {
        match &self.target {
            Target::Row(row, _) => row.hook,
            Target::Release { .. } => Hook::Release0,
        }
    }

    /// The module the function is in (kallsyms) or expected in (table, policy); `None` for
    /// vmlinux, or when nothing says.
    fn module(&self, symbols: &KernelSymbols) -> Option<String> {
        match symbols.module_of(self.symbol()) {
            Some(in_kallsyms) => in_kallsyms.map(str::to_string),
            None => match &self.target {
                Target::Row(row, _) => row.module.map(str::to_string),
                Target::Release { module, .. } => module.clone(),
            },
        }
    }

    /// First attach, at start: through tracefs when the module is known, so the kernel arms the
    /// hook whenever the module is (re)loaded; else as `follow` does.
    pub(crate) fn arm(&mut self, ebpf: &mut Ebpf, symbols: &KernelSymbols, version: KernelVersion, tracefs: Option<&Path>) -> HookStatus {
        if let (Some(tracefs), Some(module)) = (tracefs, self.module(symbols)) {
            match self.arm_tracefs(ebpf, tracefs, &module) {
                Ok(probes) => {
                    let status = self.armed_status(&module, symbols);
                    self.armed = Some(Armed { module, _probes: probes, reported: status.clone() });
                    return status;
                }
                Err(e) => log::debug!("tracefs kprobe on {module}:{} failed, using a perf kprobe: {e:#}", self.symbol()),
            }
        }
        self.follow(ebpf, symbols, version).unwrap_or_else(|| self.not_loaded_status(symbols, version))
    }

    /// On error, the probes armed so far are dropped, which removes them.
    fn arm_tracefs(&self, ebpf: &mut Ebpf, tracefs: &Path, module: &str) -> anyhow::Result<Vec<TracefsKprobe>> {
        self.programs()?
            .into_iter()
            .map(|(program, is_return)| {
                let prog = loaded_kprobe(ebpf, &program)?;
                TracefsKprobe::attach(tracefs, prog, &program, module, self.symbol(), is_return)
            })
            .collect()
    }

    /// Brings the hook in line with `symbols` (freshly read). A perf-kprobe hook is detached when its
    /// function is gone or moved and attached when the function is there; one armed through tracefs
    /// is the kernel's to follow, only its status changes. Returns the new status when it changed.
    pub(crate) fn follow(&mut self, ebpf: &mut Ebpf, symbols: &KernelSymbols, version: KernelVersion) -> Option<HookStatus> {
        if let Some(armed) = &self.armed {
            let now = self.armed_status(&armed.module, symbols);
            if now == armed.reported {
                return None;
            }
            if let Some(armed) = &mut self.armed {
                armed.reported = now.clone();
            }
            return Some(now);
        }
        let now_at = symbols.address_of(self.symbol());
        let mut changed = None;
        if let Some(was_at) = self.attached_at
            && now_at != Some(was_at)
        {
            self.detach(ebpf);
            changed = Some(self.not_loaded_status(symbols, version));
        }
        if self.attached_at.is_none() && !self.failed && now_at.is_some() {
            changed = Some(match self.attach(ebpf) {
                Ok(()) => {
                    self.attached_at = now_at;
                    self.status(HookState::Attached, None)
                }
                Err(e) => {
                    self.failed = true;
                    self.status(HookState::Failed, Some(failure_reason(&e)))
                }
            });
        }
        changed
    }

    /// What an armed hook is: waiting for its module, attached, or armed on a function the loaded
    /// module does not have (a typo in the policy, or an inlined function).
    fn armed_status(&self, module: &str, symbols: &KernelSymbols) -> HookStatus {
        let symbol = self.symbol();
        if !symbols.has_module(module) {
            self.status(HookState::Attached, Some(armed_until_loaded(module, symbol)))
        } else if symbols.module_of(symbol) != Some(Some(module)) {
            self.status(HookState::Failed, Some(format!("{module} is loaded but has no function {symbol} in /proc/kallsyms")))
        } else {
            self.status(HookState::Attached, None)
        }
    }

    /// The status while the function is not in kallsyms.
    pub(crate) fn not_loaded_status(&self, symbols: &KernelSymbols, version: KernelVersion) -> HookStatus {
        match &self.target {
            Target::Row(row, _) => match row.module {
                Some(module) if !symbols.has_module(module) => {
                    self.status(HookState::ModuleNotLoaded, Some(module_not_loaded(self.symbol(), module, version)))
                }
                _ => self.status(HookState::Absent, Some(not_in_kallsyms(self.symbol()))),
            },
            Target::Release { function, .. } => self.status(HookState::Absent, Some(release_not_loaded(function))),
        }
    }

    fn status(&self, state: HookState, reason: Option<String>) -> HookStatus {
        HookStatus { hook: self.hook(), symbol: self.symbol().into(), state, reason }
    }

    pub(crate) fn status_index(&self) -> usize {
        self.status
    }

    /// The programs to attach, each with whether it is a return probe: the return probe first, as
    /// an entry without its return would leave per-thread state behind.
    fn programs(&self) -> anyhow::Result<Vec<(String, bool)>> {
        match &self.target {
            Target::Row(row, attach) => {
                let Attach::Function { entry, ret, .. } = *attach else {
                    anyhow::bail!("{} is a tracepoint, not a module function", row.symbol)
                };
                Ok(ret.map(|r| (r.to_string(), true)).into_iter().chain([(entry.to_string(), false)]).collect())
            }
            Target::Release { program, .. } => Ok(vec![(program.clone(), false)]),
        }
    }

    fn attach(&mut self, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        let symbol = self.symbol().to_string();
        for (program, _) in self.programs()? {
            match attach_kprobe(ebpf, &program, &symbol) {
                Ok(link) => self.links.push((program, link)),
                Err(e) => {
                    self.detach(ebpf);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn detach(&mut self, ebpf: &mut Ebpf) {
        for (program, link) in self.links.drain(..) {
            detach_kprobe(ebpf, &program, link);
        }
        self.attached_at = None;
    }
}

pub(crate) fn armed_until_loaded(module: &str, symbol: &str) -> String {
    format!("armed on {module}:{symbol}, which the kernel enables when {module} is loaded")
}

pub(crate) fn module_not_loaded(symbol: &str, module: &str, version: KernelVersion) -> String {
    format!("{symbol} lives in module {module} on {version}, not loaded: attached when it is")
}

pub(crate) fn not_in_kallsyms(symbol: &str) -> String {
    format!("{symbol} is not in /proc/kallsyms (not built into this kernel, or inlined)")
}

pub(crate) fn release_not_loaded(function: &str) -> String {
    format!("release hook {function} is not in /proc/kallsyms: attached when its module is loaded")
}

/// Hands `struct frame_vector` to the programs (see `layout::frame_vector_layout`).
pub(crate) fn write_frame_vector_layout(ebpf: &mut Ebpf, btf: &KernelBtf, version: KernelVersion) -> anyhow::Result<()> {
    let layout = frame_vector_layout(btf, version);
    let map = ebpf.map_mut("FRAME_VECTOR_LAYOUT").ok_or_else(|| anyhow::anyhow!("eBPF object has no FRAME_VECTOR_LAYOUT map"))?;
    let mut array: Array<_, FrameVectorLayout> = Array::try_from(map)?;
    array.set(0, layout, 0)?;
    Ok(())
}
