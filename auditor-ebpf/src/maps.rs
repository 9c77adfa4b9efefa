//! Maps shared with userspace, and the per-thread state that links entry and return probes.
use auditor_common::{FrameVectorLayout, HOOK_COUNT, HookCounters};
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf, StackTrace},
};

/// Records to userspace. Size is set by the loader (`--ring-buffer-mib`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Kernel stacks taken at function entry, referenced by `Header::stack_id`.
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(16384, 0);

/// hits / emitted / dropped per hook.
#[map]
pub static COUNTERS: PerCpuArray<HookCounters> = PerCpuArray::with_max_entries(HOOK_COUNT as u32, 0);

/// `struct frame_vector` of the running kernel: a map, not part of `LAYOUT`, because the module that
/// defines it (videobuf2-common, 5.12+) may be loaded after the programs.
#[map]
pub static FRAME_VECTOR_LAYOUT: Array<FrameVectorLayout> = Array::with_max_entries(1, 0);

/// The frame-vector layout once the loader has written it.
#[inline(always)]
pub fn frame_vector_layout() -> Option<FrameVectorLayout> {
    FRAME_VECTOR_LAYOUT.get(0).copied().filter(|l| l.valid != 0)
}

// What is watched. A revocation hook emits only when its object is in one of these; everything
// else (every truncate of every file, every munmap) costs one hash lookup.

/// vma pointer → its `address_space` (0 for anonymous). Inserted on PFN map / pin.
#[map]
pub static WATCHED_VMAS: HashMap<u64, u64> = HashMap::with_max_entries(65536, 0);

/// `address_space` pointer → number of watched vmas mapping it.
#[map]
pub static WATCHED_MAPPINGS: HashMap<u64, u64> = HashMap::with_max_entries(65536, 0);

/// mm pointer → 1. Inserted when a pin is taken in it; removed at `exit_mmap` return.
#[map]
pub static WATCHED_MMS: HashMap<u64, u64> = HashMap::with_max_entries(16384, 0);

/// tgid → 1 for processes that took pins; their exit is reported.
#[map]
pub static WATCHED_TGIDS: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

/// Frame vectors handed out by `get_vaddr_frames()`; only their `put_vaddr_frames()` is reported.
#[map]
pub static WATCHED_VECS: HashMap<u64, u64> = HashMap::with_max_entries(65536, 0);

/// Key of the entry-probe state: one slot per thread per hook, so nested hooked calls
/// (follow_pfn → follow_pte on 6.1) do not overwrite each other.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EntryKey {
    pub pid_tgid: u64,
    pub hook: u32,
    pub _pad: u32,
}

/// Arguments saved at entry for the return probe.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EntryArgs {
    pub args: [u64; 4],
    pub stack_id: i64,
    pub ts_ns: u64,
}

#[map]
pub static ENTRIES: HashMap<EntryKey, EntryArgs> = HashMap::with_max_entries(16384, 0);

/// "This thread is inside X since T". A kretprobe can be missed (its instance pool exhausted), and
/// a flag nobody clears would silence that thread for good: flags older than
/// [`FLAG_LIFETIME_NS`] are treated as gone. No teardown or bookkeeping call lasts that long.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ThreadFlag {
    /// The revocation hook, or the nesting depth of kernel-internal calls.
    pub what: u32,
    pub _pad: u32,
    pub since_ns: u64,
}

pub const FLAG_LIFETIME_NS: u64 = 1_000_000_000;

/// Threads inside a revocation hook. `unmap_page_range()` runs underneath every revocation; it
/// reports a munmap only when no other revocation hook is on the thread's stack.
#[map]
pub static IN_REVOCATION: HashMap<u64, ThreadFlag> = HashMap::with_max_entries(16384, 0);

/// Threads inside a kernel-internal PFN user (PAT bookkeeping, ptrace access), with the nesting
/// depth. Raw lookups made underneath are the kernel's own, not pins.
#[map]
pub static IN_INTERNAL: HashMap<u64, ThreadFlag> = HashMap::with_max_entries(16384, 0);

/// The live flag of `tid` in `map`, if any (stale ones count as absent).
#[inline(always)]
pub fn live_flag(map: &HashMap<u64, ThreadFlag>, tid: u64) -> Option<ThreadFlag> {
    let flag = unsafe { map.get(&tid) }.copied()?;
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    (now.wrapping_sub(flag.since_ns) < FLAG_LIFETIME_NS).then_some(flag)
}
