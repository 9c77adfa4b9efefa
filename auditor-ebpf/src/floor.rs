//! Empty programs for `pfn-auditor run --probe-floor`, a benchmark aid (`cargo xtask bench`): the
//! loader attaches them wherever the probe table (or the policy) would attach a real program, by the
//! same mechanism, so a workload run under them costs the probes' traps and nothing of our work.
//! One program per program type; a kprobe or kretprobe program may be attached to any number of
//! functions. The loader's names for them are in auditor/src/probes/floor.rs.
//!
//! An fentry/fexit row will need its own empty `#[fentry]`/`#[fexit]` program per target function:
//! those programs are verified against one BTF function at load time and cannot be shared.

use aya_ebpf::{
    macros::{kprobe, kretprobe, tracepoint},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};

#[kprobe]
#[inline(always)]
pub fn floor_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[kretprobe]
#[inline(always)]
pub fn floor_kretprobe(_ctx: RetProbeContext) -> u32 {
    0
}

#[tracepoint]
#[inline(always)]
pub fn floor_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}
