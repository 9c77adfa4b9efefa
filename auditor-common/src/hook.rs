//! Identity of every probe. The value indexes the per-hook counter array and tags each record.

/// One hooked kernel function (or tracepoint) in one role.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    RemapPfnRange = 0,
    FollowPfn = 1,
    FollowPte = 2,
    FollowPfnmapStart = 3,
    GetVaddrFrames = 4,
    PutVaddrFrames = 5,
    UnmapMappingRange = 6,
    UnmapMappingPages = 7,
    ZapVmaPtes = 8,
    UnmapPageRange = 9,
    ExitMmap = 10,
    VmAreaFree = 11,
    TaskExit = 12,
    /// Functions that look PFNs up for the kernel's own bookkeeping (x86 PAT `untrack_pfn`,
    /// `track_pfn_copy`, `follow_phys`, ptrace's `generic_access_phys`): lookups nested in them
    /// are not pins and are never recorded.
    KernelInternal = 13,
    /// A PFN inserted into a vma at fault time (`vmf_insert_pfn_prot()`, the huge-fault
    /// `vmf_insert_pfn_pmd/pud*()`): a PFN map that `remap_pfn_range()` never sees (vfio-pci
    /// BARs on 6.12+, DRM TTM VRAM). Reported once per vma.
    InsertPfn = 14,
    /// Policy release hooks occupy `Release0 .. Release0 + RELEASE_SLOTS`.
    Release0 = 15,
}

/// Size of the counter array: fixed hooks plus release slots.
pub const HOOK_COUNT: usize = Hook::Release0 as usize + crate::RELEASE_SLOTS;

impl Hook {
    /// Every fixed hook (release slots excluded), in id order.
    pub const FIXED: [Hook; 15] = [
        Hook::RemapPfnRange,
        Hook::FollowPfn,
        Hook::FollowPte,
        Hook::FollowPfnmapStart,
        Hook::GetVaddrFrames,
        Hook::PutVaddrFrames,
        Hook::UnmapMappingRange,
        Hook::UnmapMappingPages,
        Hook::ZapVmaPtes,
        Hook::UnmapPageRange,
        Hook::ExitMmap,
        Hook::VmAreaFree,
        Hook::TaskExit,
        Hook::KernelInternal,
        Hook::InsertPfn,
    ];

    pub fn from_u32(v: u32) -> Option<Self> {
        Self::FIXED.iter().copied().find(|h| *h as u32 == v)
    }

    /// The fixed hook of this [`Hook::name`] (release slots have no fixed name: `None`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::FIXED.iter().copied().find(|h| h.name() == name)
    }

    /// Stable name used in NDJSON, metrics and `doctor` (release slots are named by the policy).
    pub fn name(self) -> &'static str {
        match self {
            Hook::RemapPfnRange => "remap_pfn_range",
            Hook::FollowPfn => "follow_pfn",
            Hook::FollowPte => "follow_pte",
            Hook::FollowPfnmapStart => "follow_pfnmap_start",
            Hook::GetVaddrFrames => "get_vaddr_frames",
            Hook::PutVaddrFrames => "put_vaddr_frames",
            Hook::UnmapMappingRange => "unmap_mapping_range",
            Hook::UnmapMappingPages => "unmap_mapping_pages",
            Hook::ZapVmaPtes => "zap_vma_ptes",
            Hook::UnmapPageRange => "unmap_page_range",
            Hook::ExitMmap => "exit_mmap",
            Hook::VmAreaFree => "vm_area_free",
            Hook::TaskExit => "sched_process_exit",
            Hook::KernelInternal => "kernel_internal_lookup",
            Hook::InsertPfn => "vmf_insert_pfn",
            Hook::Release0 => "release",
        }
    }
}
