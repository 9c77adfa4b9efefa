//! Findings as a driver developer reads them on a terminal.
use std::fmt::Write as _;

use crate::{correlate::Finding, event::Frame};

/// How many stack frames a human report shows.
const STACK_LINES: usize = 8;

pub fn render(f: &Finding) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}[{}] {}", f.severity.name().to_uppercase(), f.kind.name(), f.message);
    let p = &f.pin;
    let _ = writeln!(out, "  holder    {} in {}[{}]", p.holder, p.task.comm, p.task.tgid);
    if let Some(v) = &p.vma {
        let _ = writeln!(
            out,
            "  mapping   {} {:#x}-{:#x} flags {:#x} pgoff {:#x} ({} ino {})",
            v.path.as_deref().unwrap_or("?"),
            v.start.0,
            v.end.0,
            v.flags.0,
            v.pgoff,
            v.dev,
            v.ino
        );
    }
    let pfns: Vec<String> = p.pfns.iter().map(|r| if r.count == 1 { format!("{:#x}", r.first) } else { format!("{:#x}+{}", r.first, r.count) }).collect();
    let _ = writeln!(out, "  pin       {} via {}: {} page(s) at {:#x}, pfn {}", source(f), p.hook, p.pages, p.start.0, pfns.join(", "));
    let _ = writeln!(out, "  release   {}", p.release);
    if let Some(r) = &f.revocation {
        let caller = r.caller.as_ref().map(Frame::to_string).unwrap_or_else(|| "?".into());
        let _ = writeln!(out, "  revoked   {} from {} in {}[{}], {:.3} ms after the pin", r.hook, caller, r.task.comm, r.task.tgid, f.age_ns as f64 / 1e6);
    }
    let _ = writeln!(out, "  pinned at");
    for frame in p.stack.iter().take(STACK_LINES) {
        let _ = writeln!(out, "    {frame}");
    }
    let _ = writeln!(out, "  fingerprint {}", f.fingerprint);
    out
}

fn source(f: &Finding) -> &'static str {
    match f.pin.source {
        crate::correlate::PinSource::RawLookup => "raw lookup",
        crate::correlate::PinSource::FrameVector => "frame vector",
    }
}
