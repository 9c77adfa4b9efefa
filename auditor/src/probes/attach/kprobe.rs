//! Perf kprobes and kretprobes (aya's `KProbe`) on a function in kallsyms.
use anyhow::Context;
use aya::{
    Ebpf,
    programs::{KProbe, kprobe::KProbeLinkId},
};

use super::program_mut;

/// Attaches kprobe (or kretprobe) program `program` to `symbol`, loading it first if needed.
pub(in crate::probes) fn attach_kprobe(ebpf: &mut Ebpf, program: &str, symbol: &str) -> anyhow::Result<KProbeLinkId> {
    loaded_kprobe(ebpf, program)?.attach(symbol, 0).with_context(|| format!("attaching {program} to {symbol}"))
}

/// The kprobe program `program`, loaded into the kernel. One program may serve several symbols
/// (the kernel-internal markers, a hook re-attached after a module reload): it is loaded once.
pub(in crate::probes) fn loaded_kprobe<'a>(ebpf: &'a mut Ebpf, program: &str) -> anyhow::Result<&'a mut KProbe> {
    let prog: &mut KProbe = program_mut(ebpf, program)?.try_into()?;
    if prog.fd().is_err() {
        prog.load().with_context(|| format!("verifier rejected {program}"))?;
    }
    Ok(prog)
}

/// Detaches one link made by [`attach_kprobe`]. The kprobe of an unloaded module is already gone;
/// closing it can only fail harmlessly (logged at debug level).
pub(in crate::probes) fn detach_kprobe(ebpf: &mut Ebpf, program: &str, link: KProbeLinkId) {
    let prog: Option<&mut KProbe> = ebpf.program_mut(program).and_then(|p| p.try_into().ok());
    if let Some(prog) = prog
        && let Err(e) = prog.detach(link)
    {
        log::debug!("detaching {program}: {e}");
    }
}
