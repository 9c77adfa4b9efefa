//! Attach primitives: one program of the loaded eBPF object on one kernel symbol, by one
//! mechanism — perf kprobe / kretprobe (`kprobe.rs`), tracepoint (`tracepoint.rs`), tracefs kprobe
//! on a module function that may not be loaded yet (`tracefs_kprobe.rs`) — and the BTF check that a
//! symbol has the prototype a program reads. Nothing here knows which hooks a kernel has, retries
//! or reports a hook's status: that is the orchestration in `probes/mod.rs` and `module_hooks.rs`.
mod kprobe;
mod tracefs_kprobe;
mod tracepoint;

use anyhow::anyhow;
use aya::Ebpf;
pub(super) use kprobe::{attach_kprobe, detach_kprobe, loaded_kprobe};
pub(super) use tracefs_kprobe::{TracefsKprobe, remove_stale_events, tracefs_root};

use super::{layout::KernelBtf, table::Attach};

/// Attaches what `attach` names: the return probe before the entry probe (an entry without its
/// return would leave per-thread state behind), or the tracepoint program. Errors carry the
/// program and symbol (and the verifier's log, see [`failure_reason`]).
pub(super) fn attach(ebpf: &mut Ebpf, attach: Attach) -> anyhow::Result<()> {
    match attach {
        Attach::Function { symbol, entry, ret } => {
            if let Some(ret) = ret {
                attach_kprobe(ebpf, ret, symbol)?;
            }
            attach_kprobe(ebpf, entry, symbol).map(drop)
        }
        Attach::Tracepoint { category, name, program } => tracepoint::attach(ebpf, program, category, name),
    }
}

/// One line for a hook's status row; the full error (with the verifier log) goes to the debug log.
pub(super) fn failure_reason(e: &anyhow::Error) -> String {
    let full = format!("{e:#}");
    log::debug!("{full}");
    match full.split_once('\n') {
        Some((first, _)) => format!("{first} (full verifier log with RUST_LOG=debug)"),
        None => full,
    }
}

/// Why `symbol` cannot be read by a program that reads `arity` parameters: the running kernel's
/// BTF gives the function another number of them (e.g. old 5.10s have a static 6-argument
/// `follow_pte` helper, not the 4-argument exported lookup). `None` when the counts agree or BTF
/// does not have the function.
pub(super) fn prototype_mismatch(btf: &KernelBtf, symbol: &str, arity: usize) -> Option<String> {
    let params = btf.func_params(symbol)?;
    (params.len() != arity).then(|| format!("{symbol} here takes {} arguments, not the {arity} the probe reads; not hooked", params.len()))
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name).ok_or_else(|| anyhow!("eBPF object has no program {name}"))
}
