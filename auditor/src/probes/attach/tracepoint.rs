//! Tracepoint programs (`category:name`, e.g. `sched:sched_process_exit`).
use anyhow::Context;
use aya::{Ebpf, programs::TracePoint};

use super::program_mut;

/// Loads tracepoint program `program` if needed and attaches it to `category:name`.
pub(super) fn attach(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) -> anyhow::Result<()> {
    let prog: &mut TracePoint = program_mut(ebpf, program)?.try_into()?;
    if prog.fd().is_err() {
        prog.load().with_context(|| format!("verifier rejected {program}"))?;
    }
    prog.attach(category, name).with_context(|| format!("attaching tracepoint {category}:{name}"))?;
    Ok(())
}
