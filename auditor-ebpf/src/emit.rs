//! Writing records into the ring buffer, counting hits, emissions and losses per hook.
use auditor_common::{EventKind, Header, HookCounters, KernelLayout};
use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::tracing::StackIdContext};

use crate::{
    kernel::current_task,
    maps::{COUNTERS, EVENTS, STACKS},
};

/// Records that can complete a finding wake the daemon at once; the rest (lookups, maps, frees,
/// releases: the bulk under vfio-style per-page lookups) wait for its next periodic drain or the
/// next revocation, so a busy holder does not cost a context switch per page.
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;
/// Past this much unread data the daemon is woken whatever the record, so the ring never fills
/// while it sleeps.
const WAKE_BACKLOG_BYTES: u64 = 256 * 1024;

#[inline(always)]
fn wakeup_flag(kind: EventKind) -> u64 {
    let urgent = matches!(kind, EventKind::Revoke | EventKind::FramesGet | EventKind::TaskExit);
    if urgent || EVENTS.query(BPF_RB_AVAIL_DATA) > WAKE_BACKLOG_BYTES { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP }
}

/// Overwrite an old stack on a hash collision instead of failing: a fresh stack is worth more.
const BPF_F_REUSE_STACKID: u64 = 1 << 10;

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

/// Kernel stack of the probed call (taken at function entry, where the caller is frame 1).
#[inline(always)]
pub fn stack_id<C: StackIdContext>(ctx: &C) -> i64 {
    match ctx.get_stackid(&STACKS, BPF_F_REUSE_STACKID) {
        Ok(id) => id,
        Err(e) => e as i64,
    }
}

/// Reserves a zeroed `T` (which starts with a [`Header`]), fills the header, lets `fill` write the
/// rest in place (records are too big for the 512-byte eBPF stack) and submits it.
#[inline(always)]
pub fn emit<T: 'static>(l: &KernelLayout, kind: EventKind, hook: u32, stack_id: i64, ts_ns: u64, fill: impl FnOnce(&mut T)) {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        if let Some(c) = counters(hook) {
            c.dropped += 1;
        }
        return;
    };
    let record = entry.as_mut_ptr();
    unsafe {
        core::ptr::write_bytes(record, 0, 1);
        let header = &mut *(record as *mut Header);
        header.kind = kind as u32;
        header.hook = hook;
        header.ts_ns = if ts_ns == 0 { bpf_ktime_get_ns() } else { ts_ns };
        header.task = current_task(l);
        header.stack_id = stack_id;
        fill(&mut *record);
    }
    entry.submit(wakeup_flag(kind));
    if let Some(c) = counters(hook) {
        c.emitted += 1;
    }
}
