//! Maps shared with userspace, and the per-thread state that links entry and return probes.
use auditor_common::{FrameVectorLayout, HOOK_COUNT, HookCounters, KernelStack};
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};

/// Records to userspace. Size is set by the loader (`--ring-buffer-mib`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

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
// else (every truncate of every file, every munmap) costs one hash lookup, and nothing at all
// while nothing is watched (`WATCHED_COUNT`).

/// `bpf_map_update_elem` flag: insert only a new key (fails when it exists), so each watch is
/// counted once in [`WATCHED_COUNT`].
pub const BPF_NOEXIST: u64 = 1;

/// Entries of `WATCHED_VMAS`, `WATCHED_MMS`, `WATCHED_TGIDS` and `WATCHED_VECS` together (each
/// counted when its insertion made a new key, uncounted when its removal found one). While it is
/// 0 the revocation, vma and exit hooks return after their hit counter: no hash lookup, no
/// per-thread state. One shared `u64`, changed with atomic adds (any CPU may watch or unwatch).
#[map]
pub static WATCHED_COUNT: Array<u64> = Array::with_max_entries(1, 0);

/// Is anything watched at all?
#[inline(always)]
pub fn watching() -> bool {
    WATCHED_COUNT.get_ptr(0).is_some_and(|n| unsafe { core::ptr::read_volatile(n) } != 0)
}

/// Counts a watch made (`1`) or dropped (`-1`).
#[inline(always)]
pub fn count_watch(delta: i64) {
    if let Some(n) = WATCHED_COUNT.get_ptr_mut(0) {
        // core has no atomic read-modify-write for BPF: the atomic add instruction itself
        // (BPF_XADD, no fetch: every supported kernel verifies it).
        #[cfg(target_arch = "bpf")]
        unsafe {
            core::arch::asm!("lock *(u64 *)({n} + 0) += {delta}", n = in(reg) n, delta = in(reg) delta);
        }
        #[cfg(not(target_arch = "bpf"))]
        unsafe {
            *n = (*n).wrapping_add(delta as u64)
        };
    }
}

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

/// Arguments and stack saved at entry for the return probe, which emits the record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EntryArgs {
    pub args: [u64; 4],
    pub ts_ns: u64,
    /// Raw lookups: the call frame the lookup was made from (`caller` 0: unknown; never shared).
    pub frame: CallFrame,
    /// Raw lookups: the id of the earlier record whose stack this lookup shares (its frame, vma and
    /// page continue that thread's last recorded lookup: [`LOOKUP_FRAMES`]); 0 when it has its own.
    pub shared_stack_id: u64,
    /// Taken only for calls whose record may be emitted (see the entry probes), and not for a
    /// lookup that shares an earlier record's stack.
    pub stack: KernelStack,
}

/// Where a raw lookup was called from: the return address into its caller (frame 1 of the entry
/// stack) and the stack pointer at entry. Both equal means the same caller frame.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct CallFrame {
    pub caller: u64,
    pub sp: u64,
}

/// A thread's last raw-lookup record that carried a stack of its own (and was handed over), and
/// where a lookup continuing it would be: the same call frame, the same vma, the next page.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LookupFrame {
    pub frame: CallFrame,
    pub vma: u64,
    /// The page (address & !4095) after the thread's last recorded lookup from this frame.
    pub next_page: u64,
    /// `RawLookupEvent::stack_id` of the record that carries the stack.
    pub stack_id: u64,
}

/// pid_tgid → its [`LookupFrame`]: a driver looking a range up page by page takes one kernel
/// stack per call, not per page. LRU: a thread's entry simply ages out (its next lookup then
/// takes a stack of its own).
#[map]
pub static LOOKUP_FRAMES: LruHashMap<u64, LookupFrame> = LruHashMap::with_max_entries(16384, 0);

/// Per CPU, the stacks given an id so far (`RawLookupEvent::stack_id`).
#[map]
pub static STACK_IDS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Saved only for calls that may be recorded (a lookup of a `VM_IO|VM_PFNMAP` vma, every PFN map
/// and frame-vector pin) and for the teardown of a watched mm; removed by the return probe.
#[map]
pub static ENTRIES: HashMap<EntryKey, EntryArgs> = HashMap::with_max_entries(16384, 0);

/// Where an [`EntryArgs`] is built before it is copied into `ENTRIES` (328 bytes do not fit the
/// 512-byte eBPF stack next to the rest of a program).
#[map]
pub static ENTRY_SCRATCH: PerCpuArray<EntryArgs> = PerCpuArray::with_max_entries(1, 0);

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
