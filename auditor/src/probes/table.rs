//! The one table that says, per kernel range, which symbol carries which role, where it lives and
//! which eBPF programs attach to it. Nothing else in the project branches on kernel versions
//! (argument layouts that moved are read from BTF, with the version only as a fallback; see
//! `layout.rs`). Ranges were checked against docs/kernel-facts.md.
use auditor_common::Hook;

use super::kernel_version::KernelVersion;

/// Where a probe attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// kprobe (and optionally kretprobe) on a kernel function.
    Function { symbol: &'static str, entry: &'static str, ret: Option<&'static str> },
    /// A tracepoint `category:name`.
    Tracepoint { category: &'static str, name: &'static str, program: &'static str },
}

impl Attach {
    pub fn symbol(&self) -> &'static str {
        match self {
            Attach::Function { symbol, .. } => symbol,
            Attach::Tracepoint { name, .. } => name,
        }
    }
}

/// One row: a hook carried by one symbol over a kernel range.
#[derive(Clone, Copy, Debug)]
pub struct ProbeRow {
    pub hook: Hook,
    pub attach: Attach,
    /// First kernel with this symbol in this role.
    pub since: KernelVersion,
    /// Last kernel with it (inclusive); `None` = still present.
    pub until: Option<KernelVersion>,
    /// Kernel module that exports it in this range (`None` = vmlinux).
    pub module: Option<&'static str>,
    /// Said by `doctor` when the running kernel is outside the range.
    pub outside: &'static str,
    /// Number of parameters the program reads the function with, checked against the kernel's
    /// BTF where it has the function: a symbol of that name with another prototype is not hooked.
    pub arity: Option<usize>,
}

const fn v(major: u32, minor: u32) -> KernelVersion {
    KernelVersion::new(major, minor)
}

const fn func(symbol: &'static str, entry: &'static str, ret: Option<&'static str>) -> Attach {
    Attach::Function { symbol, entry, ret }
}

const ALWAYS: KernelVersion = v(5, 10);

/// Roles of hooks, as the daemon (refuses to start without the essential ones), `doctor` (says
/// whether the machine can be audited) and the correlator (drops nested lookups) use them.
///
/// Raw PFN lookups: at least one must be attached, or no pin is ever seen.
pub const RAW_LOOKUP_HOOKS: &[Hook] = &[Hook::FollowPfn, Hook::FollowPte, Hook::FollowPfnmapStart];
/// Revocations: every one must be attached, or a revoked pin looks held-and-fine.
pub const REVOCATION_HOOKS: &[Hook] = &[Hook::UnmapMappingRange, Hook::ZapVmaPtes, Hook::UnmapPageRange, Hook::ExitMmap];
/// Hooked functions whose own raw lookups belong to them: `follow_pte()` inside `follow_pfn()`
/// (6.1) is the `follow_pfn` lookup, and `get_vaddr_frames()`'s lookups are the frame-vector pin
/// it reports. A lookup whose caller is one of these is not a pin of its own.
pub const NESTING_HOOKS: &[Hook] = &[Hook::FollowPfn, Hook::FollowPte, Hook::GetVaddrFrames];

/// An essential hook that is not attached (or attachable): auditing would report nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingEssential {
    /// None of [`RAW_LOOKUP_HOOKS`].
    RawLookup,
    /// This one of [`REVOCATION_HOOKS`].
    Revocation(Hook),
}

/// The first essential hook `usable` says no to.
pub fn missing_essential(usable: impl Fn(Hook) -> bool) -> Option<MissingEssential> {
    if !RAW_LOOKUP_HOOKS.iter().any(|h| usable(*h)) {
        return Some(MissingEssential::RawLookup);
    }
    REVOCATION_HOOKS.iter().find(|h| !usable(**h)).map(|h| MissingEssential::Revocation(*h))
}

pub const PROBES: &[ProbeRow] = &[
    ProbeRow {
        hook: Hook::RemapPfnRange,
        attach: func("remap_pfn_range", "remap_pfn_range_entry", Some("remap_pfn_range_return")),
        since: ALWAYS,
        until: None,
        module: None,
        // vm_iomap_memory() and io_remap_pfn_range() end in remap_pfn_range() on every kernel; on
        // 6.1+ remap_pfn_range() wraps remap_pfn_range_internal()/_notrack(), whose callers
        // outside remap_pfn_range() are kernel-internal.
        outside: "",
        arity: None,
    },
    // PFN maps made at fault time (mm/memory.c, mm/huge_memory.c): the first insertion into a
    // VM_PFNMAP vma is recorded. Optional rows: the huge variants were `vmf_insert_pfn_pmd_prot()`
    // / `_pud_prot()` (5.8+, with inline `vmf_insert_pfn_pmd()` wrappers) and later plain
    // exported `vmf_insert_pfn_pmd()` / `_pud()`; whichever name the kernel has is attached, the
    // other is reported absent. A vma is recorded once, so a kernel with both costs nothing more.
    ProbeRow {
        hook: Hook::InsertPfn,
        attach: func("vmf_insert_pfn_prot", "insert_pfn_entry", None),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::InsertPfn,
        attach: func("vmf_insert_pfn_pmd_prot", "insert_pfn_pmd_entry", None),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::InsertPfn,
        attach: func("vmf_insert_pfn_pmd", "insert_pfn_pmd_entry", None),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::InsertPfn,
        attach: func("vmf_insert_pfn_pud_prot", "insert_pfn_pud_entry", None),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::InsertPfn,
        attach: func("vmf_insert_pfn_pud", "insert_pfn_pud_entry", None),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::RemapPfnRange,
        // 7.x drivers that describe their mapping in `mmap_prepare` (/dev/mem) ask for a PFN remap
        // with mmap_action_remap(); the core performs it once the vma exists, in
        // remap_pfn_range_complete(vma, action) (checked in forky's 7.2.12 BTF), reading
        // action->remap.{start, start_pfn, size}. Absent before the mmap_prepare series.
        attach: func("remap_pfn_range_complete", "remap_pfn_range_complete_entry", Some("remap_pfn_range_return")),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: Some(2),
    },
    ProbeRow {
        hook: Hook::FollowPfn,
        attach: func("follow_pfn", "follow_pfn_entry", Some("follow_pfn_return")),
        since: ALWAYS,
        until: Some(v(6, 9)),
        module: None,
        outside: "follow_pfn was removed in 6.10; follow_pte (6.10-6.11) or follow_pfnmap_start (6.12+) is hooked instead",
        arity: None,
    },
    ProbeRow {
        hook: Hook::FollowPte,
        // Exported with this 4-argument prototype from 5.12, and in 5.10 stable (Debian 5.10.0-32
        // has it); older 5.10s have a static 6-argument helper: the loader checks the prototype
        // in BTF before attaching.
        attach: func("follow_pte", "follow_pte_entry", Some("follow_pte_return")),
        since: ALWAYS,
        until: Some(v(6, 11)),
        module: None,
        outside: "follow_pte was replaced by follow_pfnmap_start in 6.12, which is hooked instead",
        arity: Some(4),
    },
    ProbeRow {
        hook: Hook::FollowPfnmapStart,
        attach: func("follow_pfnmap_start", "follow_pfnmap_start_entry", Some("follow_pfnmap_start_return")),
        since: v(6, 12),
        until: None,
        module: None,
        outside: "follow_pfnmap_start appeared in 6.12; follow_pfn/follow_pte are hooked instead",
        arity: None,
    },
    ProbeRow {
        hook: Hook::GetVaddrFrames,
        attach: func("get_vaddr_frames", "get_vaddr_frames_entry", Some("get_vaddr_frames_return")),
        since: ALWAYS,
        until: Some(v(5, 11)),
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::GetVaddrFrames,
        attach: func("get_vaddr_frames", "get_vaddr_frames_entry", Some("get_vaddr_frames_return")),
        since: v(5, 12),
        until: None,
        module: Some("videobuf2_common"),
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::PutVaddrFrames,
        attach: func("put_vaddr_frames", "put_vaddr_frames_entry", None),
        since: ALWAYS,
        until: Some(v(5, 11)),
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::PutVaddrFrames,
        attach: func("put_vaddr_frames", "put_vaddr_frames_entry", None),
        since: v(5, 12),
        until: None,
        module: Some("videobuf2_common"),
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::UnmapMappingRange,
        attach: func("unmap_mapping_range", "unmap_mapping_range_entry", Some("unmap_mapping_range_return")),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::UnmapMappingPages,
        attach: func("unmap_mapping_pages", "unmap_mapping_pages_entry", Some("unmap_mapping_pages_return")),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::ZapVmaPtes,
        attach: func("zap_vma_ptes", "zap_vma_ptes_entry", Some("zap_vma_ptes_return")),
        since: ALWAYS,
        until: Some(v(7, 0)),
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::ZapVmaPtes,
        // 7.1 renamed zap_vma_ptes(vma, address, size) to this, same arguments.
        attach: func("zap_special_vma_range", "zap_vma_ptes_entry", Some("zap_vma_ptes_return")),
        since: v(7, 1),
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::UnmapPageRange,
        // Global (the OOM reaper calls it) and under every munmap/mremap/MAP_FIXED/exit teardown.
        attach: func("unmap_page_range", "unmap_page_range_entry", None),
        since: ALWAYS,
        until: Some(v(7, 0)),
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::UnmapPageRange,
        // 7.1 inlined unmap_page_range() into __zap_vma_range(tlb, vma, start, end, details) (the
        // former unmap_single_vma()), same arguments, under every teardown and revocation.
        attach: func("__zap_vma_range", "unmap_page_range_entry", None),
        since: v(7, 1),
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::ExitMmap,
        attach: func("exit_mmap", "exit_mmap_entry", Some("exit_mmap_return")),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::VmAreaFree,
        attach: func("vm_area_free", "vm_area_free_entry", None),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::TaskExit,
        attach: Attach::Tracepoint { category: "sched", name: "sched_process_exit", program: "sched_process_exit" },
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    // Kernel-internal PFN users: lookups nested in them are bookkeeping, not pins. Any of them
    // may be missing (no PAT, renamed); the rows are optional.
    ProbeRow {
        hook: Hook::KernelInternal,
        attach: func("untrack_pfn", "kernel_internal_entry", Some("kernel_internal_return")),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::KernelInternal,
        attach: func("track_pfn_copy", "kernel_internal_entry", Some("kernel_internal_return")),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::KernelInternal,
        attach: func("follow_phys", "kernel_internal_entry", Some("kernel_internal_return")),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
    ProbeRow {
        hook: Hook::KernelInternal,
        attach: func("generic_access_phys", "kernel_internal_entry", Some("kernel_internal_return")),
        since: ALWAYS,
        until: None,
        module: None,
        outside: "",
        arity: None,
    },
];

/// Why a hook has no row for this kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    pub hook: Hook,
    pub reason: &'static str,
}

/// The rows that apply to `kernel`, and the hooks that have none (with the table's reason).
pub fn select(kernel: KernelVersion) -> (Vec<&'static ProbeRow>, Vec<OutOfRange>) {
    select_in(PROBES, kernel)
}

/// [`select`] in `table`: [`PROBES`], or its twin with other programs (`floor.rs`).
pub fn select_in(table: &'static [ProbeRow], kernel: KernelVersion) -> (Vec<&'static ProbeRow>, Vec<OutOfRange>) {
    let in_range = |row: &ProbeRow| row.since <= kernel && row.until.is_none_or(|until| kernel <= until);
    let chosen: Vec<&ProbeRow> = table.iter().filter(|row| in_range(row)).collect();
    let mut missing: Vec<OutOfRange> = Vec::new();
    for row in table {
        let covered = chosen.iter().any(|c| c.hook == row.hook);
        if !covered && !missing.iter().any(|m| m.hook == row.hook) {
            missing.push(OutOfRange { hook: row.hook, reason: row.outside });
        }
    }
    (chosen, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(kernel: KernelVersion) -> Vec<(Hook, Option<&'static str>)> {
        select(kernel).0.iter().map(|r| (r.hook, r.module)).collect()
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
            let symbols: Vec<&str> = rows.iter().filter(|r| r.hook == Hook::InsertPfn).map(|r| r.attach.symbol()).collect();
            assert!(symbols.contains(&"vmf_insert_pfn_prot"), "{kernel}: {symbols:?}");
            assert!(symbols.iter().any(|s| s.starts_with("vmf_insert_pfn_pmd")), "{kernel}: {symbols:?}");
            let complete = rows.iter().find(|r| r.attach.symbol() == "remap_pfn_range_complete").expect("mmap_prepare row");
            assert_eq!((complete.hook, complete.arity), (Hook::RemapPfnRange, Some(2)));
        }
    }

    #[test]
    fn essential_hooks_are_one_raw_lookup_and_every_revocation() {
        assert_eq!(missing_essential(|_| true), None);
        assert_eq!(missing_essential(|h| h != Hook::ZapVmaPtes), Some(MissingEssential::Revocation(Hook::ZapVmaPtes)));
        assert_eq!(missing_essential(|h| !RAW_LOOKUP_HOOKS.contains(&h)), Some(MissingEssential::RawLookup));
        assert_eq!(missing_essential(|h| h != Hook::FollowPfn), None, "one raw lookup hook is enough");
    }

    #[test]
    fn kernel_7_1_renames_are_followed() {
        let symbol = |kernel, hook| select(kernel).0.iter().find(|r| r.hook == hook).map(|r| r.attach.symbol());
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
