//! Hooks on functions that may live in kernel modules: the table's module rows (videobuf2-common's
//! frame-vector functions on 5.12+) and the policy's release functions (usually in the driver under
//! test). A driver's test script typically loads its module *after* `pfn-auditor gate` started, and
//! a kprobe on a module function dies with the module: so these are attached when their function
//! appears in kallsyms, and detached and re-attached when its address changes (module reloaded).
use auditor_common::{FrameVectorLayout, Hook};
use aya::{
    Ebpf,
    maps::Array,
    programs::{KProbe, kprobe::KProbeLinkId},
};

use super::{
    HookState, HookStatus, attach_kprobe, failure_reason,
    kernel_version::KernelVersion,
    layout::{KernelBtf, frame_vector_layout},
    table::{Attach, ProbeRow},
};
use crate::symbols::KernelSymbols;

/// Modules whose BTF holds types some hooks need (`struct frame_vector` on 5.12+).
pub const BTF_MODULES: &[&str] = &["videobuf2_common"];

#[derive(Clone, Debug)]
enum Target {
    Row(&'static ProbeRow),
    /// Policy release function `function`, served by program `release_{slot}`.
    Release { slot: usize, function: String },
}

/// One hook that follows its function's module.
pub struct ModuleHook {
    target: Target,
    /// Index of its row in `Attached::hooks`.
    status: usize,
    /// The function's address when it was attached; `None` while not attached.
    attached_at: Option<u64>,
    links: Vec<(String, KProbeLinkId)>,
    /// Attaching failed for a reason a module load does not change: not retried.
    failed: bool,
}

impl ModuleHook {
    pub fn row(row: &'static ProbeRow, status: usize) -> Self {
        Self { target: Target::Row(row), status, attached_at: None, links: Vec::new(), failed: false }
    }

    pub fn release(slot: usize, function: String, status: usize) -> Self {
        Self { target: Target::Release { slot, function }, status, attached_at: None, links: Vec::new(), failed: false }
    }

    fn symbol(&self) -> &str {
        match &self.target {
            Target::Row(row) => row.attach.symbol(),
            Target::Release { function, .. } => function,
        }
    }

    fn hook_name(&self) -> &'static str {
        match &self.target {
            Target::Row(row) => row.hook.name(),
            Target::Release { .. } => "release",
        }
    }

    /// Brings the hook in line with `symbols` (freshly read): detaches it when its function is gone
    /// or moved, attaches it when the function is there. Returns the new status when it changed.
    pub fn follow(&mut self, ebpf: &mut Ebpf, symbols: &KernelSymbols, version: KernelVersion) -> Option<HookStatus> {
        let now_at = symbols.address_of(self.symbol());
        let mut changed = None;
        if let Some(was_at) = self.attached_at
            && now_at != Some(was_at)
        {
            self.detach(ebpf);
            changed = Some(self.not_loaded_status(symbols, version));
        }
        if self.attached_at.is_none() && !self.failed && now_at.is_some() {
            changed = Some(match self.attach(ebpf, version) {
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

    /// The status while the function is not in kallsyms.
    pub fn not_loaded_status(&self, symbols: &KernelSymbols, version: KernelVersion) -> HookStatus {
        match &self.target {
            Target::Row(row) => match row.module {
                Some(module) if !symbols.has_module(module) => {
                    self.status(HookState::ModuleNotLoaded, Some(module_not_loaded(self.symbol(), module, version)))
                }
                _ => self.status(HookState::Absent, Some(not_in_kallsyms(self.symbol()))),
            },
            Target::Release { function, .. } => self.status(HookState::Absent, Some(release_not_loaded(function))),
        }
    }

    fn status(&self, state: HookState, reason: Option<String>) -> HookStatus {
        HookStatus { hook: self.hook_name().into(), symbol: self.symbol().into(), state, reason }
    }

    pub fn status_index(&self) -> usize {
        self.status
    }

    fn attach(&mut self, ebpf: &mut Ebpf, version: KernelVersion) -> anyhow::Result<()> {
        let (programs, symbol): (Vec<String>, String) = match &self.target {
            Target::Row(row) => {
                let Attach::Function { symbol, entry, ret } = row.attach else {
                    anyhow::bail!("{} is a tracepoint, not a module function", row.attach.symbol())
                };
                if row.hook == Hook::GetVaddrFrames {
                    write_frame_vector_layout(ebpf, version)?;
                }
                // Return probe first: an entry without its return would leave per-thread state behind.
                (ret.into_iter().chain([entry]).map(String::from).collect(), symbol.to_string())
            }
            Target::Release { slot, function } => (vec![format!("release_{slot}")], function.clone()),
        };
        for program in programs {
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
            let prog: Option<&mut KProbe> = ebpf.program_mut(&program).and_then(|p| p.try_into().ok());
            if let Some(prog) = prog
                && let Err(e) = prog.detach(link)
            {
                // The kprobe of an unloaded module is already gone; closing it can only fail harmlessly.
                log::debug!("detaching {program}: {e}");
            }
        }
        self.attached_at = None;
    }
}

pub fn module_not_loaded(symbol: &str, module: &str, version: KernelVersion) -> String {
    format!("{symbol} lives in module {module} on {version}, not loaded: attached when it is")
}

pub fn not_in_kallsyms(symbol: &str) -> String {
    format!("{symbol} is not in /proc/kallsyms (not built into this kernel, or inlined)")
}

pub fn release_not_loaded(function: &str) -> String {
    format!("release hook {function} is not in /proc/kallsyms: attached when its module is loaded")
}

/// `struct frame_vector` comes from the BTF of the module that defines it (5.12+), which may have
/// been loaded just now: read it fresh, and hand it to the programs before they can run.
fn write_frame_vector_layout(ebpf: &mut Ebpf, version: KernelVersion) -> anyhow::Result<()> {
    let btf = KernelBtf::from_sys(BTF_MODULES)?;
    let layout: FrameVectorLayout = frame_vector_layout(&btf, version)
        .ok_or_else(|| anyhow::anyhow!("no struct frame_vector in the kernel's BTF (is videobuf2_common built with BTF?)"))?;
    let map = ebpf.map_mut("FRAME_VECTOR_LAYOUT").ok_or_else(|| anyhow::anyhow!("eBPF object has no FRAME_VECTOR_LAYOUT map"))?;
    let mut array: Array<_, FrameVectorLayout> = Array::try_from(map)?;
    array.set(0, layout, 0)?;
    Ok(())
}
