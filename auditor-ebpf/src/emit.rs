//! Writing records into the ring buffer, counting hits, emissions and losses per hook.
use auditor_common::{EventKind, Header, HookCounters, KernelLayout, KernelStack};
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_smp_processor_id, bpf_get_stack, bpf_ktime_get_ns},
    programs::ProbeContext,
};

use crate::{
    kernel::current_task,
    maps::{COUNTERS, CallFrame, EVENTS, STACK_IDS},
};

/// No record wakes the daemon: it drains the ring on its own timer (`daemon.rs`, every 50 ms, so
/// a finding is out within 100 ms), and a busy holder or a storm of revocations costs no context
/// switch per record. Only past this much unread data is it woken, so the ring never fills while
/// it sleeps.
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
const WAKE_BACKLOG_BYTES: u64 = 256 * 1024;

#[inline(always)]
fn wakeup_flag() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) > WAKE_BACKLOG_BYTES { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP }
}

#[inline(always)]
fn counters(hook: u32) -> Option<&'static mut HookCounters> {
    COUNTERS.get_ptr_mut(hook).map(|p| unsafe { &mut *p })
}

#[inline(always)]
pub fn count_hit(hook: u32) {
    if let Some(c) = counters(hook) {
        c.hits += 1;
    }
}

/// Writes the kernel stack of the probed call into `out` (taken at function entry, where the
/// hooked function is frame 0 and its caller frame 1; innermost frames first, the outermost cut
/// past `STACK_DEPTH`).
#[inline(always)]
pub fn take_stack(ctx: &ProbeContext, out: &mut KernelStack) {
    let size = core::mem::size_of_val(&out.ips) as u32;
    let got = unsafe { bpf_get_stack(ctx.as_ptr(), out.ips.as_mut_ptr().cast(), size, 0) };
    out.depth = if got > 0 { (got as u64 / 8) as u32 } else { 0 };
}

/// The stack a record carries.
pub enum Stack<'a> {
    /// None: a record no call stack explains (vma freed, task exit, file name).
    None,
    /// The probed call's, taken into the record now (entry probes that emit).
    Here(&'a ProbeContext),
    /// Taken at function entry and saved for the return probe that emits (depth 0: none).
    Saved(&'a KernelStack),
}

/// Reserves a zeroed `T` (which starts with a [`Header`]), fills the header and its stack, lets
/// `fill` write the rest in place (records are too big for the 512-byte eBPF stack) and submits
/// it. False when the ring buffer was full (the record is counted as dropped).
#[inline(always)]
pub fn emit<T: 'static>(l: &KernelLayout, kind: EventKind, hook: u32, stack: Stack, ts_ns: u64, fill: impl FnOnce(&mut T)) -> bool {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        if let Some(c) = counters(hook) {
            c.dropped += 1;
        }
        return false;
    };
    let record = entry.as_mut_ptr();
    unsafe {
        core::ptr::write_bytes(record, 0, 1);
        let header = &mut *(record as *mut Header);
        header.kind = kind as u32;
        header.hook = hook;
        header.ts_ns = if ts_ns == 0 { bpf_ktime_get_ns() } else { ts_ns };
        header.task = current_task(l);
        match stack {
            Stack::None => {}
            Stack::Here(ctx) => take_stack(ctx, &mut header.stack),
            // An empty saved stack (a lookup sharing an earlier record's) is not copied: the
            // record is zeroed.
            Stack::Saved(saved) => {
                if saved.depth != 0 {
                    header.stack = *saved;
                }
            }
        }
        fill(&mut *record);
    }
    entry.submit(wakeup_flag());
    if let Some(c) = counters(hook) {
        c.emitted += 1;
    }
    true
}

/// Writes the return address into the caller of the probed function (frame 1, as the full stack
/// has it: the unwinder sees through a return probe's trampoline) and the stack pointer at entry
/// into `out`; `caller` 0 when the kernel could not unwind. Two frames cost one unwinding step,
/// not a whole stack.
#[inline(always)]
pub fn take_call_frame(ctx: &ProbeContext, out: &mut CallFrame) {
    let mut ips = [0u64; 2];
    let got = unsafe { bpf_get_stack(ctx.as_ptr(), ips.as_mut_ptr().cast(), 16, 0) };
    out.caller = if got >= 16 { ips[1] } else { 0 };
    out.sp = unsafe { core::ptr::read_volatile(&(*ctx.regs).rsp) };
}

/// A new stack id (`RawLookupEvent::stack_id`): this CPU's count in the high bits, the CPU in the
/// low 16 (Debian's kernels allow 8192 CPUs), so ids are unique for the run without an atomic
/// operation, and never 0. 0 only if the per-CPU map cannot be read.
#[inline(always)]
pub fn new_stack_id() -> u64 {
    let Some(n) = STACK_IDS.get_ptr_mut(0) else { return 0 };
    unsafe {
        *n += 1;
        (*n << 16) | (bpf_get_smp_processor_id() as u64 & 0xffff)
    }
}
