//! The one table that says, per kernel range, which symbol carries which role, where it lives and
//! which eBPF programs attach to it. Nothing else in the project branches on kernel versions
//! (argument layouts that moved are read from BTF, with the version only as a fallback; see
//! `layout.rs`). Ranges were checked against docs/kernel-facts.md.
use auditor_common::Hook;

use super::kernel_version::KernelVersion;
use crate::vocab::finding::{base_name, same_function};

/// Where a probe attaches: a row's symbol with its hook's programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// kprobe (and optionally kretprobe) on a kernel function.
    Function { symbol: &'static str, entry: &'static str, ret: Option<&'static str> },
    /// A tracepoint `category:name`.
    Tracepoint { category: &'static str, name: &'static str, program: &'static str },
}

impl Attach {
    /// The kernel symbol (function or tracepoint name) it attaches to.
    #[cfg(test)]
    pub fn symbol(&self) -> &'static str {
        match self {
            Attach::Function { symbol, .. } => symbol,
            Attach::Tracepoint { name, .. } => name,
        }
    }
}

/// The eBPF programs of a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Programs {
    /// Entry kprobe, and the kretprobe when the hook reads the return value.
    Kprobe { entry: &'static str, ret: Option<&'static str> },
    /// A tracepoint of this category; the row's symbol is the tracepoint's name.
    Tracepoint { category: &'static str, program: &'static str },
}

/// What a hook is for, as the daemon (refuses to start without the essential ones), `doctor`
/// (says whether the machine can be audited) and the correlator (drops lookups that are not pins)
/// use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A raw PFN lookup: at least one must be attached, or no pin is ever seen. `nests`: the
    /// hooked function's own raw lookups belong to it (`follow_pte()` inside `follow_pfn()` on
    /// 6.1 is the `follow_pfn` lookup): a lookup whose caller is it is not a pin of its own.
    RawLookup { nests: bool },
    /// A revocation: `essential` ones must all be attached, or a revoked pin looks held-and-fine.
    Revocation { essential: bool },
    /// The frame-vector pin: its raw lookups are the pin it reports (nesting, as above).
    FrameVector,
    /// A function that looks PFNs up for the kernel's own bookkeeping: a lookup it makes is not
    /// a pin (dropped in the kernel, and by the correlator for recordings that still have one).
    KernelInternal,
    /// Anything else the correlator needs (PFN maps, frame-vector puts, vma frees, exits).
    Other,
}

impl Role {
    /// The hooked function's own raw lookups belong to it.
    pub(crate) fn owns_its_lookups(self) -> bool {
        matches!(self, Role::RawLookup { nests: true } | Role::FrameVector | Role::KernelInternal)
    }
}

/// What holds for a hook on every kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HookFacts {
    pub hook: Hook,
    /// The programs its rows attach (a row may name another entry program).
    pub programs: Programs,
    pub role: Role,
    /// Said by `doctor` when the running kernel has no row for it.
    pub absent: &'static str,
    /// Functions that only wrap the attached symbols (exact names; compiler clones match too): the
    /// caller of an event is the first stack frame outside the attached symbol and these.
    pub wrappers: &'static [&'static str],
}

const fn facts(hook: Hook, entry: &'static str, ret: Option<&'static str>, role: Role) -> HookFacts {
    HookFacts { hook, programs: Programs::Kprobe { entry, ret }, role, absent: "", wrappers: &[] }
}

impl HookFacts {
    const fn absent(mut self, why: &'static str) -> Self {
        self.absent = why;
        self
    }

    const fn wrappers(mut self, functions: &'static [&'static str]) -> Self {
        self.wrappers = functions;
        self
    }
}

const RAW: Role = Role::RawLookup { nests: false };
const NESTING_RAW: Role = Role::RawLookup { nests: true };
const ESSENTIAL_REVOCATION: Role = Role::Revocation { essential: true };

/// Every fixed hook once, in id order (tested).
pub(crate) const HOOKS: &[HookFacts] = &[
    facts(Hook::RemapPfnRange, "remap_pfn_range_entry", Some("remap_pfn_range_return"), Role::Other),
    facts(Hook::FollowPfn, "follow_pfn_entry", Some("follow_pfn_return"), NESTING_RAW)
        .absent("follow_pfn was removed in 6.10; follow_pte (6.10-6.11) or follow_pfnmap_start (6.12+) is hooked instead"),
    facts(Hook::FollowPte, "follow_pte_entry", Some("follow_pte_return"), NESTING_RAW)
        .absent("follow_pte was replaced by follow_pfnmap_start in 6.12, which is hooked instead"),
    facts(Hook::FollowPfnmapStart, "follow_pfnmap_start_entry", Some("follow_pfnmap_start_return"), RAW)
        .absent("follow_pfnmap_start appeared in 6.12; follow_pfn/follow_pte are hooked instead"),
    facts(Hook::GetVaddrFrames, "get_vaddr_frames_entry", Some("get_vaddr_frames_return"), Role::FrameVector),
    facts(Hook::PutVaddrFrames, "put_vaddr_frames_entry", None, Role::Other),
    facts(Hook::UnmapMappingRange, "unmap_mapping_range_entry", Some("unmap_mapping_range_return"), ESSENTIAL_REVOCATION),
    facts(Hook::UnmapMappingPages, "unmap_mapping_pages_entry", Some("unmap_mapping_pages_return"), Role::Revocation { essential: false }),
    facts(Hook::ZapVmaPtes, "zap_vma_ptes_entry", Some("zap_vma_ptes_return"), ESSENTIAL_REVOCATION),
    facts(Hook::UnmapPageRange, "unmap_page_range_entry", None, ESSENTIAL_REVOCATION),
    facts(Hook::ExitMmap, "exit_mmap_entry", Some("exit_mmap_return"), ESSENTIAL_REVOCATION),
    facts(Hook::VmAreaFree, "vm_area_free_entry", None, Role::Other),
    HookFacts {
        hook: Hook::TaskExit,
        programs: Programs::Tracepoint { category: "sched", program: "sched_process_exit" },
        role: Role::Other,
        absent: "",
        wrappers: &[],
    },
    facts(Hook::KernelInternal, "kernel_internal_entry", Some("kernel_internal_return"), Role::KernelInternal),
    // vmf_insert_pfn() is vmf_insert_pfn_prot() with the vma's protection (mm/memory.c); the
    // huge variants' plain names wrap their `_prot` forms where both exist (see PROBES).
    facts(Hook::InsertPfn, "insert_pfn_entry", None, Role::Other).wrappers(&["vmf_insert_pfn", "vmf_insert_pfn_pmd", "vmf_insert_pfn_pud"]),
];

/// A hook's facts (every fixed hook has them; `Release0` has none).
pub(crate) fn facts_of(hook: Hook) -> Option<&'static HookFacts> {
    HOOKS.iter().find(|f| f.hook == hook)
}

/// The functions that only wrap `hook`'s attached symbols ([`HookFacts::wrappers`]; none for a
/// release slot).
pub(crate) fn wrappers_of(hook: Hook) -> &'static [&'static str] {
    facts_of(hook).map_or(&[], |f| f.wrappers)
}

/// One row: a hook carried by one symbol over a kernel range.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProbeRow {
    pub hook: Hook,
    /// Kernel function (or tracepoint name) attached.
    pub symbol: &'static str,
    /// First kernel with this symbol in this role.
    pub since: KernelVersion,
    /// Last kernel with it (inclusive); `None` = still present.
    pub until: Option<KernelVersion>,
    /// Kernel module that exports it in this range (`None` = vmlinux).
    pub module: Option<&'static str>,
    /// Number of parameters the program reads the function with, checked against the kernel's
    /// BTF where it has the function: a symbol of that name with another prototype is not hooked.
    pub arity: Option<usize>,
    /// An entry program other than the hook's (a variant of the function with other arguments).
    pub entry: Option<&'static str>,
}

const fn v(major: u32, minor: u32) -> KernelVersion {
    KernelVersion::new(major, minor)
}

const ALWAYS: KernelVersion = v(5, 10);

/// `hook` on `symbol`, on every kernel, in vmlinux, with the hook's programs.
const fn row(hook: Hook, symbol: &'static str) -> ProbeRow {
    ProbeRow { hook, symbol, since: ALWAYS, until: None, module: None, arity: None, entry: None }
}

impl ProbeRow {
    const fn since(mut self, major: u32, minor: u32) -> Self {
        self.since = v(major, minor);
        self
    }

    const fn until(mut self, major: u32, minor: u32) -> Self {
        self.until = Some(v(major, minor));
        self
    }

    const fn module(mut self, module: &'static str) -> Self {
        self.module = Some(module);
        self
    }

    const fn arity(mut self, arity: usize) -> Self {
        self.arity = Some(arity);
        self
    }

    const fn entry(mut self, program: &'static str) -> Self {
        self.entry = Some(program);
        self
    }

    pub fn facts(&self) -> &'static HookFacts {
        facts_of(self.hook).expect("every row's hook has facts (tested)")
    }

    /// The programs and the symbol, as attached.
    pub fn attach(&self) -> Attach {
        match self.facts().programs {
            Programs::Kprobe { entry, ret } => Attach::Function { symbol: self.symbol, entry: self.entry.unwrap_or(entry), ret },
            Programs::Tracepoint { category, program } => Attach::Tracepoint { category, name: self.symbol, program },
        }
    }
}

/// An essential hook that is not attached (or attachable): auditing would report nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MissingEssential {
    /// No [`Role::RawLookup`] hook.
    RawLookup,
    /// This essential [`Role::Revocation`] hook.
    Revocation(Hook),
}

/// The first essential hook `usable` says no to.
pub(crate) fn missing_essential(usable: impl Fn(Hook) -> bool) -> Option<MissingEssential> {
    if !HOOKS.iter().any(|f| matches!(f.role, Role::RawLookup { .. }) && usable(f.hook)) {
        return Some(MissingEssential::RawLookup);
    }
    HOOKS.iter().find(|f| f.role == ESSENTIAL_REVOCATION && !usable(f.hook)).map(|f| MissingEssential::Revocation(f.hook))
}

/// Whether a raw lookup made by kernel function `caller` belongs to a hooked function that owns
/// its lookups ([`Role::owns_its_lookups`]) on any kernel of the table: then it is not a pin.
/// `same` compares function names (compiler clones included).
pub(crate) fn owns_its_lookups(caller: &str, same: impl Fn(&str, &str) -> bool) -> bool {
    PROBES.iter().any(|r| r.facts().role.owns_its_lookups() && same(r.symbol, caller))
}

/// The hook `function` belongs to: a hook's own name (`zap_vma_ptes`), or a symbol some row
/// attaches on some kernel of the table (`zap_special_vma_range`, `__zap_vma_range` on 7.1+,
/// `untrack_pfn`…), compiler clones included (`unmap_page_range.constprop.0`, `.isra.0`, `.part.0`,
/// `.cold`). A policy release function that is one of them would be a hook of ours twice over,
/// its calls indistinguishable from the hook's own events: the policy refuses it.
pub(crate) fn hook_of_function(function: &str) -> Option<Hook> {
    Hook::from_name(base_name(function)).or_else(|| PROBES.iter().find(|r| same_function(r.symbol, function)).map(|r| r.hook))
}

/// One row per symbol and kernel range; the hook's programs unless the row names its own entry.
pub(crate) const PROBES: &[ProbeRow] = &[
    // vm_iomap_memory() and io_remap_pfn_range() end in remap_pfn_range() on every kernel; on
    // 6.1+ remap_pfn_range() wraps remap_pfn_range_internal()/_notrack(), whose callers outside
    // remap_pfn_range() are kernel-internal.
    row(Hook::RemapPfnRange, "remap_pfn_range"),
    // 7.x drivers that describe their mapping in `mmap_prepare` (/dev/mem) ask for a PFN remap
    // with mmap_action_remap(); the core performs it once the vma exists, in
    // remap_pfn_range_complete(vma, action) (checked in forky's 7.2.12 BTF), reading
    // action->remap.{start, start_pfn, size}. Absent before the mmap_prepare series.
    row(Hook::RemapPfnRange, "remap_pfn_range_complete").entry("remap_pfn_range_complete_entry").arity(2),
    // PFN maps made at fault time (mm/memory.c, mm/huge_memory.c): the first insertion into a
    // VM_PFNMAP vma is recorded. Optional rows: the huge variants were `vmf_insert_pfn_pmd_prot()`
    // / `_pud_prot()` (5.8+, with inline `vmf_insert_pfn_pmd()` wrappers) and later plain
    // exported `vmf_insert_pfn_pmd()` / `_pud()`; whichever name the kernel has is attached, the
    // other is reported absent. A vma is recorded once, so a kernel with both costs nothing more.
    row(Hook::InsertPfn, "vmf_insert_pfn_prot"),
    row(Hook::InsertPfn, "vmf_insert_pfn_pmd_prot").entry("insert_pfn_pmd_entry"),
    row(Hook::InsertPfn, "vmf_insert_pfn_pmd").entry("insert_pfn_pmd_entry"),
    row(Hook::InsertPfn, "vmf_insert_pfn_pud_prot").entry("insert_pfn_pud_entry"),
    row(Hook::InsertPfn, "vmf_insert_pfn_pud").entry("insert_pfn_pud_entry"),
    row(Hook::FollowPfn, "follow_pfn").until(6, 9),
    // Exported with this 4-argument prototype from 5.12, and in 5.10 stable (Debian 5.10.0-32
    // has it); older 5.10s have a static 6-argument helper: the loader checks the prototype in
    // BTF before attaching.
    row(Hook::FollowPte, "follow_pte").until(6, 11).arity(4),
    row(Hook::FollowPfnmapStart, "follow_pfnmap_start").since(6, 12),
    row(Hook::GetVaddrFrames, "get_vaddr_frames").until(5, 11),
    row(Hook::GetVaddrFrames, "get_vaddr_frames").since(5, 12).module("videobuf2_common"),
    row(Hook::PutVaddrFrames, "put_vaddr_frames").until(5, 11),
    row(Hook::PutVaddrFrames, "put_vaddr_frames").since(5, 12).module("videobuf2_common"),
    row(Hook::UnmapMappingRange, "unmap_mapping_range"),
    row(Hook::UnmapMappingPages, "unmap_mapping_pages"),
    row(Hook::ZapVmaPtes, "zap_vma_ptes").until(7, 0),
    // 7.1 renamed zap_vma_ptes(vma, address, size) to this, same arguments.
    row(Hook::ZapVmaPtes, "zap_special_vma_range").since(7, 1),
    // Global (the OOM reaper calls it) and under every munmap/mremap/MAP_FIXED/exit teardown.
    row(Hook::UnmapPageRange, "unmap_page_range").until(7, 0),
    // 7.1 inlined unmap_page_range() into __zap_vma_range(tlb, vma, start, end, details) (the
    // former unmap_single_vma()), same arguments, under every teardown and revocation.
    row(Hook::UnmapPageRange, "__zap_vma_range").since(7, 1),
    row(Hook::ExitMmap, "exit_mmap"),
    row(Hook::VmAreaFree, "vm_area_free"),
    row(Hook::TaskExit, "sched_process_exit"),
    // Kernel-internal PFN users (x86 PAT in arch/x86/mm/pat/memtype.c, ptrace's access to
    // /dev/mem-like maps in mm/memory.c): lookups nested in them are bookkeeping, not pins. Any
    // of them may be missing (no PAT, renamed); the rows are optional.
    row(Hook::KernelInternal, "untrack_pfn"),
    row(Hook::KernelInternal, "track_pfn_copy"),
    row(Hook::KernelInternal, "follow_phys"),
    row(Hook::KernelInternal, "generic_access_phys"),
];

/// Why a hook has no row for this kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutOfRange {
    pub hook: Hook,
    pub reason: &'static str,
}

/// The rows that apply to `kernel`, and the hooks that have none (with the table's reason).
pub fn select(kernel: KernelVersion) -> (Vec<&'static ProbeRow>, Vec<OutOfRange>) {
    let table = PROBES;
    let in_range = |row: &ProbeRow| row.since <= kernel && row.until.is_none_or(|until| kernel <= until);
    let chosen: Vec<&ProbeRow> = table.iter().filter(|row| in_range(row)).collect();
    let mut missing: Vec<OutOfRange> = Vec::new();
    for row in table {
        let covered = chosen.iter().any(|c| c.hook == row.hook);
        if !covered && !missing.iter().any(|m| m.hook == row.hook) {
            missing.push(OutOfRange { hook: row.hook, reason: row.facts().absent });
        }
    }
    (chosen, missing)
}

/// The first kernel on which two pfn-auditor instances can run at once. Before it, a kretprobe
/// replaces the probed function's return address on the stack with `kretprobe_trampoline`, and
/// x86's unwinder does not map it back (it does since "x86/unwind: Recover kretprobe trampoline
/// entry", v5.14-rc1): one instance's entry program then unwinds through the other's return
/// probes, sees the holder as `kretprobe_trampoline+0x0` and misses it (seen on Debian's 5.10 in
/// the VM scenario `daemon-second-instance-coexists`; docs/kernel-facts.md "Several instances").
pub const INSTANCES_COEXIST_SINCE: KernelVersion = v(5, 14);

/// Whether a second instance may attach beside a running one on `kernel` (else it is refused:
/// `instance_lock.rs`).
pub fn instances_coexist(kernel: KernelVersion) -> bool {
    kernel >= INSTANCES_COEXIST_SINCE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(kernel: KernelVersion) -> Vec<(Hook, Option<&'static str>)> {
        select(kernel).0.iter().map(|r| (r.hook, r.module)).collect()
    }

    #[test]
    fn two_instances_coexist_from_5_14_only() {
        assert!(!instances_coexist(v(5, 10)));
        assert!(!instances_coexist(v(5, 13)));
        assert!(instances_coexist(v(5, 14)));
        assert!(instances_coexist(v(6, 1)));
    }

    #[test]
    fn kernel_5_10_hooks_follow_pfn_and_builtin_frame_vectors() {
        let h = hooks(v(5, 10));
        assert!(h.contains(&(Hook::FollowPfn, None)));
        assert!(!h.iter().any(|(k, _)| *k == Hook::FollowPfnmapStart));
        assert!(h.contains(&(Hook::GetVaddrFrames, None)));
    }

    #[test]
    fn kernel_6_1_hooks_follow_pfn_and_follow_pte_and_vb2_frame_vectors() {
        let h = hooks(v(6, 1));
        assert!(h.contains(&(Hook::FollowPfn, None)));
        assert!(h.contains(&(Hook::FollowPte, None)));
        assert!(h.contains(&(Hook::GetVaddrFrames, Some("videobuf2_common"))));
        assert!(h.contains(&(Hook::PutVaddrFrames, Some("videobuf2_common"))));
    }

    #[test]
    fn kernel_6_12_hooks_follow_pfnmap_start_and_says_why_follow_pfn_is_absent() {
        let (rows, missing) = select(v(6, 12));
        assert!(rows.iter().any(|r| r.hook == Hook::FollowPfnmapStart));
        let follow_pfn = missing.iter().find(|m| m.hook == Hook::FollowPfn).expect("follow_pfn reported absent");
        assert!(follow_pfn.reason.contains("removed in 6.10"));
        assert!(missing.iter().any(|m| m.hook == Hook::FollowPte));
    }

    #[test]
    fn pfn_maps_made_at_fault_time_and_by_mmap_prepare_are_hooked_on_every_kernel() {
        for kernel in [v(5, 10), v(6, 1), v(6, 12), v(7, 2)] {
            let (rows, _) = select(kernel);
            let symbols: Vec<&str> = rows.iter().filter(|r| r.hook == Hook::InsertPfn).map(|r| r.symbol).collect();
            assert!(symbols.contains(&"vmf_insert_pfn_prot"), "{kernel}: {symbols:?}");
            assert!(symbols.iter().any(|s| s.starts_with("vmf_insert_pfn_pmd")), "{kernel}: {symbols:?}");
            let complete = rows.iter().find(|r| r.symbol == "remap_pfn_range_complete").expect("mmap_prepare row");
            assert_eq!((complete.hook, complete.arity), (Hook::RemapPfnRange, Some(2)));
        }
    }

    #[test]
    fn essential_hooks_are_one_raw_lookup_and_every_revocation() {
        assert_eq!(missing_essential(|_| true), None);
        assert_eq!(missing_essential(|h| h != Hook::ZapVmaPtes), Some(MissingEssential::Revocation(Hook::ZapVmaPtes)));
        let raw_lookup = [Hook::FollowPfn, Hook::FollowPte, Hook::FollowPfnmapStart];
        assert_eq!(missing_essential(|h| !raw_lookup.contains(&h)), Some(MissingEssential::RawLookup));
        assert_eq!(missing_essential(|h| h != Hook::UnmapMappingPages), None, "unmap_mapping_pages is not essential");
        assert_eq!(missing_essential(|h| h != Hook::FollowPfn), None, "one raw lookup hook is enough");
    }

    #[test]
    fn every_fixed_hook_has_its_facts_once_in_id_order() {
        assert_eq!(HOOKS.iter().map(|f| f.hook).collect::<Vec<_>>(), Hook::FIXED);
        assert!(facts_of(Hook::Release0).is_none());
    }

    /// The correlator's rule: lookups made by a hooked function that owns them are not pins,
    /// on every kernel and in compiler clones.
    #[test]
    fn nesting_and_kernel_internal_callers_own_their_lookups() {
        let same = |a: &str, b: &str| crate::vocab::finding::same_function(a, b);
        for caller in ["follow_pfn", "follow_pte", "get_vaddr_frames", "untrack_pfn", "generic_access_phys.isra.0", "track_pfn_copy"] {
            assert!(owns_its_lookups(caller, same), "{caller}");
        }
        for caller in ["follow_pfnmap_start", "vaddr_get_pfns", "hva_to_pfn_remapped", "zap_vma_ptes"] {
            assert!(!owns_its_lookups(caller, same), "{caller}");
        }
    }

    /// A release function must not be one of our hooks under any of its names on any kernel.
    #[test]
    fn functions_hooked_under_another_name_or_as_a_compiler_clone_are_our_hooks() {
        for (function, hook) in [
            ("zap_vma_ptes", Hook::ZapVmaPtes),
            ("zap_special_vma_range", Hook::ZapVmaPtes),
            ("__zap_vma_range", Hook::UnmapPageRange),
            ("unmap_page_range.constprop.0", Hook::UnmapPageRange),
            ("zap_vma_ptes.isra.0", Hook::ZapVmaPtes),
            ("follow_pfn.part.0", Hook::FollowPfn),
            ("unmap_mapping_range.cold", Hook::UnmapMappingRange),
            ("untrack_pfn", Hook::KernelInternal),
            ("kernel_internal_lookup", Hook::KernelInternal),
            ("vmf_insert_pfn_pud", Hook::InsertPfn),
            ("remap_pfn_range_complete", Hook::RemapPfnRange),
        ] {
            assert_eq!(hook_of_function(function), Some(hook), "{function}");
        }
        for function in ["vfio_unpin_pages_remote", "pfnaudit_unpin_tracked", "zap_page_range", "unmap_page", "release"] {
            assert_eq!(hook_of_function(function), None, "{function}");
        }
    }

    #[test]
    fn kernel_7_1_renames_are_followed() {
        let symbol = |kernel, hook| select(kernel).0.iter().find(|r| r.hook == hook).map(|r| r.symbol);
        assert_eq!(symbol(v(7, 0), Hook::ZapVmaPtes), Some("zap_vma_ptes"));
        assert_eq!(symbol(v(7, 1), Hook::ZapVmaPtes), Some("zap_special_vma_range"));
        assert_eq!(symbol(v(7, 0), Hook::UnmapPageRange), Some("unmap_page_range"));
        assert_eq!(symbol(v(7, 2), Hook::UnmapPageRange), Some("__zap_vma_range"));
    }

    #[test]
    fn every_kernel_has_exactly_one_row_per_present_hook_and_all_revocation_hooks() {
        for kernel in [v(5, 10), v(5, 15), v(6, 1), v(6, 6), v(6, 10), v(6, 12), v(6, 17), v(7, 0), v(7, 1), v(7, 2)] {
            let (rows, _) = select(kernel);
            let internal = rows.iter().filter(|r| r.hook == Hook::KernelInternal).count();
            assert!(internal >= 3, "kernel-internal markers on {kernel}");
            for hook in [Hook::UnmapMappingRange, Hook::ZapVmaPtes, Hook::UnmapPageRange, Hook::ExitMmap, Hook::VmAreaFree] {
                assert_eq!(rows.iter().filter(|r| r.hook == hook).count(), 1, "{hook:?} on {kernel}");
            }
            let lookups = rows.iter().filter(|r| matches!(r.hook, Hook::FollowPfn | Hook::FollowPte | Hook::FollowPfnmapStart)).count();
            assert!(lookups >= 1, "no raw lookup hook on {kernel}");
        }
    }
}
