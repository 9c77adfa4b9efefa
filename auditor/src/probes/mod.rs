//! Orchestration: which hooks to arm on the running kernel (the probe table, `table.rs`), loading
//! the eBPF object with this kernel's layout, arming each selected row with the primitives of
//! `attach/`, following module loads (`module_hooks.rs`), and saying per hook what happened (for
//! the `status` record and `doctor`).
mod attach;
pub mod floor;
pub mod kernel_version;
pub mod layout;
mod module_hooks;
pub(crate) mod run_time;
pub(crate) mod table;

use anyhow::Context;
use auditor_common::{HOOK_COUNT, Hook, RELEASE_SLOTS};
use aya::{Ebpf, EbpfLoader};

use crate::{
    symbols::{KernelSymbols, LoadedModules},
    vocab::{
        event::HookRef,
        hook_status::{HookState, HookStatus, ReleaseFunction},
    },
};
use floor::ProgramSet;
use kernel_version::KernelVersion;
use layout::{KernelBtf, kernel_layout};
use module_hooks::{
    BTF_MODULES, ModuleHook, armed_until_loaded, module_not_loaded, not_in_kallsyms, release_not_loaded, write_frame_vector_layout,
};
use run_time::{RunTime, RunTimeStats};
use table::{Attach, ProbeRow};

/// What the daemon needs from a successful attach.
pub struct Attached {
    pub ebpf: Ebpf,
    pub hooks: Vec<HookStatus>,
    pub kernel_release: String,
    kernel_version: KernelVersion,
    /// The hook of each counter slot (`HOOK_COUNT` entries): the table's hooks, then the policy's
    /// release functions; `None` for a release slot the policy leaves unused.
    pub counter_hooks: Vec<Option<HookRef>>,
    /// Hooks that follow their module (see `module_hooks.rs`).
    module_hooks: Vec<ModuleHook>,
    /// Whether the modules with BTF the hooks need were loaded at the last look.
    btf_modules_loaded: bool,
    /// The kernel's run-time statistics, on for as long as this is held (`None`: refused).
    run_time_stats: Option<RunTimeStats>,
}

impl Attached {
    /// Per counter slot, the runs of its programs and the time spent in them since they were
    /// loaded; `None` when the kernel keeps no run-time statistics.
    pub(crate) fn run_times(&self) -> Option<Vec<RunTime>> {
        self.run_time_stats.as_ref().map(|_| run_time::read(&self.ebpf))
    }

    /// Per counter slot, the kernel symbols that slot's probes are attached to on this kernel
    /// (the decoder finds an event's caller outside them).
    pub(crate) fn symbols_by_slot(&self) -> Vec<Vec<String>> {
        let mut slots = vec![Vec::new(); HOOK_COUNT];
        for h in self.hooks.iter().filter(|h| h.state == HookState::Attached && h.hook != Hook::Release0) {
            slots[h.hook as usize].push(h.symbol.clone());
        }
        slots
    }

    /// After a module was loaded, unloaded or reloaded (`symbols` read since): re-reads the BTF of
    /// a module the layouts come from, and attaches, detaches and re-attaches the perf-kprobe
    /// hooks that live in modules. Returns the hooks whose state changed.
    pub(crate) fn follow_modules(&mut self, symbols: &KernelSymbols) -> Vec<HookStatus> {
        let btf_modules_loaded = BTF_MODULES.iter().all(|m| symbols.has_module(m));
        if btf_modules_loaded && !self.btf_modules_loaded {
            let written =
                KernelBtf::from_sys(BTF_MODULES).and_then(|btf| write_frame_vector_layout(&mut self.ebpf, &btf, self.kernel_version));
            if let Err(e) = written {
                log::warn!("struct frame_vector stays as known from the kernel history: {e:#}");
            }
        }
        self.btf_modules_loaded = btf_modules_loaded;
        let mut changed = Vec::new();
        for hook in &mut self.module_hooks {
            if let Some(status) = hook.follow(&mut self.ebpf, symbols, self.kernel_version) {
                self.hooks[hook.status_index()] = status.clone();
                changed.push(status);
            }
        }
        changed
    }
}

/// Rows in modules: the frame-vector functions from 5.12.
fn follows_its_module(row: &ProbeRow) -> bool {
    row.module.is_some()
}

/// The compiled eBPF object (auditor-ebpf, built by build.rs).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/auditor"));

/// Everything needed to decide what to attach, read without privileges where possible.
pub struct KernelFacts {
    pub release: String,
    pub version: KernelVersion,
    /// Read before `symbols`: a module loaded in between shows up as a change at the first poll.
    pub modules: LoadedModules,
    pub symbols: KernelSymbols,
}

impl KernelFacts {
    pub fn read() -> anyhow::Result<Self> {
        let (release, version) = KernelVersion::running()?;
        let modules = LoadedModules::read()?;
        let symbols = KernelSymbols::load()?;
        Ok(Self { release, version, modules, symbols })
    }
}

/// What attaching `row` would do on this kernel, before trying (absent symbol, module missing).
fn precheck(facts: &KernelFacts, row: &ProbeRow) -> Option<HookStatus> {
    let Attach::Function { symbol, .. } = row.attach() else { return None };
    let status = |state, reason: String| Some(HookStatus { hook: row.hook, symbol: symbol.into(), state, reason: Some(reason) });
    if let Some(module) = row.module
        && !facts.symbols.has_module(module)
    {
        return status(HookState::ModuleNotLoaded, module_not_loaded(symbol, module, facts.version));
    }
    if !facts.symbols.has_function(symbol) {
        return status(HookState::Absent, not_in_kallsyms(symbol));
    }
    None
}

/// A symbol whose prototype is not the one the eBPF program reads (the table's `arity`).
fn prototype_mismatch(btf: &KernelBtf, row: &ProbeRow) -> Option<HookStatus> {
    let reason = attach::prototype_mismatch(btf, row.symbol, row.arity?)?;
    Some(HookStatus { hook: row.hook, symbol: row.symbol.into(), state: HookState::Absent, reason: Some(reason) })
}

/// Rows for hooks the table says this kernel does not have.
fn out_of_range_rows(version: KernelVersion) -> (Vec<&'static ProbeRow>, Vec<HookStatus>) {
    let (rows, missing) = table::select(version);
    let absent = missing
        .into_iter()
        .map(|m| HookStatus { hook: m.hook, symbol: m.hook.name().into(), state: HookState::Absent, reason: Some(m.reason.into()) })
        .collect();
    (rows, absent)
}

/// `doctor` without privileges: what would be attached.
pub fn plan(facts: &KernelFacts, release_functions: &[ReleaseFunction]) -> Vec<HookStatus> {
    let (rows, mut statuses) = out_of_range_rows(facts.version);
    for row in rows {
        statuses.push(precheck(facts, row).unwrap_or(HookStatus {
            hook: row.hook,
            symbol: row.symbol.into(),
            state: HookState::Available,
            reason: None,
        }));
    }
    for release in release_functions {
        let func = &release.name;
        let (state, reason) = match (facts.symbols.has_function(func), &release.module) {
            (true, _) => (HookState::Available, None),
            (false, Some(module)) => (HookState::Available, Some(armed_until_loaded(module, func))),
            (false, None) => (HookState::Absent, Some(release_not_loaded(func))),
        };
        statuses.push(HookStatus { hook: Hook::Release0, symbol: func.clone(), state, reason });
    }
    statuses
}

/// Raises RLIMIT_MEMLOCK: kernels before 5.11 charge BPF maps against it.
fn raise_memlock() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid struct; failure only matters on old kernels and shows
    // up as a map creation error with its own message.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

pub(crate) fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("pfn-auditor must run as root (it loads eBPF programs and kprobes: CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)");
    }
    Ok(())
}

/// Loads the eBPF object with this kernel's layout and attaches every hook the table selects,
/// plus one kprobe per policy release function; `programs` says whether the auditing programs or
/// the benchmark's empty ones (`floor.rs`).
pub(crate) fn load_and_attach(
    facts: &KernelFacts,
    release_functions: &[ReleaseFunction],
    ring_buffer_bytes: u32,
    programs: ProgramSet,
) -> anyhow::Result<Attached> {
    require_root()?;
    if release_functions.len() > RELEASE_SLOTS {
        anyhow::bail!("the policy names {} release functions; at most {RELEASE_SLOTS} are supported", release_functions.len());
    }
    raise_memlock();
    let btf = KernelBtf::from_sys(BTF_MODULES)?;
    let layout = kernel_layout(&btf, facts.version, facts.symbols.vmemmap_base.unwrap_or(0))?;
    let mut ebpf = EbpfLoader::new()
        .override_global("LAYOUT", &layout, true)
        .map_max_entries("EVENTS", ring_buffer_bytes)
        .load(EBPF_OBJECT)
        .context("loading the eBPF object failed")?;
    write_frame_vector_layout(&mut ebpf, &btf, facts.version)?;
    // On before the first attach, so every run is counted.
    let run_time_stats = RunTimeStats::enable();
    let tracefs = attach::tracefs_root();
    if let Some(tracefs) = &tracefs {
        attach::remove_stale_events(tracefs);
    }

    let (rows, mut hooks) = out_of_range_rows(facts.version);
    let mut module_hooks = Vec::new();
    for row in rows {
        if let Some(status) = prototype_mismatch(&btf, row) {
            hooks.push(status);
        } else if follows_its_module(row) {
            let mut hook = ModuleHook::row(row, programs.attach(row), hooks.len());
            hooks.push(hook.arm(&mut ebpf, &facts.symbols, facts.version, tracefs.as_deref()));
            module_hooks.push(hook);
        } else if let Some(status) = precheck(facts, row) {
            hooks.push(status);
        } else {
            let (state, reason) = match attach::attach(&mut ebpf, programs.attach(row)) {
                Ok(()) => (HookState::Attached, None),
                Err(e) => (HookState::Failed, Some(attach::failure_reason(&e))),
            };
            hooks.push(HookStatus { hook: row.hook, symbol: row.symbol.into(), state, reason });
        }
    }
    for (slot, release) in release_functions.iter().enumerate() {
        let mut hook = ModuleHook::release(programs.release(slot), release, hooks.len());
        hooks.push(hook.arm(&mut ebpf, &facts.symbols, facts.version, tracefs.as_deref()));
        module_hooks.push(hook);
    }

    let mut counter_hooks: Vec<Option<HookRef>> = (0..HOOK_COUNT as u32).map(|i| Hook::from_u32(i).map(HookRef::Table)).collect();
    for (slot, release) in release_functions.iter().enumerate() {
        counter_hooks[Hook::Release0 as usize + slot] = Some(HookRef::Release(release.name.as_str().into()));
    }
    Ok(Attached {
        ebpf,
        hooks,
        kernel_release: facts.release.clone(),
        kernel_version: facts.version,
        counter_hooks,
        module_hooks,
        btf_modules_loaded: BTF_MODULES.iter().all(|m| facts.symbols.has_module(m)),
        run_time_stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row naming a program the object lacks would only fail at attach time, on some kernel.
    #[test]
    fn every_program_the_table_names_is_in_the_embedded_ebpf_object() {
        let object = aya_obj::Object::parse(EBPF_OBJECT).expect("the embedded eBPF object parses");
        let mut named: Vec<&str> = Vec::new();
        for row in table::PROBES {
            match row.attach() {
                Attach::Function { entry, ret, .. } => named.extend(std::iter::once(entry).chain(ret)),
                Attach::Tracepoint { program, .. } => named.push(program),
            }
        }
        let releases: Vec<String> = (0..RELEASE_SLOTS).map(|slot| format!("release_{slot}")).collect();
        named.extend(releases.iter().map(String::as_str));
        let missing: Vec<&&str> = named.iter().filter(|p| !object.programs.contains_key(**p)).collect();
        assert!(missing.is_empty(), "programs named by the probe table but not in the object: {missing:?}");
    }

    /// The floor's empty program must be of the type of the program it stands in for: a kprobe
    /// costs what a kprobe costs, a kretprobe more.
    #[test]
    fn each_floor_program_is_of_the_type_of_the_auditing_program_it_replaces() {
        let object = aya_obj::Object::parse(EBPF_OBJECT).expect("the embedded eBPF object parses");
        let section =
            |name: &str| object.programs.get(name).map(|p| format!("{:?}", p.section)).unwrap_or_else(|| format!("no program {name}"));
        let mut pairs: Vec<(String, String)> = Vec::new();
        for row in table::PROBES {
            let (real, empty) = (ProgramSet::Auditing.attach(row), ProgramSet::Floor.attach(row));
            match (real, empty) {
                (Attach::Function { entry, ret, .. }, Attach::Function { entry: e, ret: r, .. }) => {
                    pairs.push((entry.into(), e.into()));
                    pairs.extend(ret.zip(r).map(|(a, b)| (a.into(), b.into())));
                }
                (Attach::Tracepoint { program, .. }, Attach::Tracepoint { program: p, .. }) => pairs.push((program.into(), p.into())),
                _ => panic!("{}: the floor changed the attach mechanism", real.symbol()),
            }
        }
        pairs.extend((0..RELEASE_SLOTS).map(|slot| (ProgramSet::Auditing.release(slot), ProgramSet::Floor.release(slot))));
        for (real, empty) in pairs {
            assert_eq!(section(&empty), section(&real), "{empty} stands in for {real}");
        }
    }

    #[test]
    fn state_names_are_the_serialized_ones() {
        for state in [HookState::Attached, HookState::Absent, HookState::ModuleNotLoaded, HookState::Failed, HookState::Available] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.name());
        }
    }
}
