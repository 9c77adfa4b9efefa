//! Findings as a driver developer reads them on a terminal, plus one line per hook that waits for a
//! module or failed, per hook change, per loss, and the end-of-run notes. Without `findings` only the
//! notes (what `replay` prints by default).
use std::fmt::Write as _;
use std::io::Write as _;

use auditor_common::Hook;

use crate::{
    pipeline::Sink,
    vocab::{
        event::{Frame, HookRef},
        finding::Finding,
        hook_status::HookState,
        record::{HookChange, LossReason, Lost, RunSummary, Status},
    },
};

/// Human text on stderr.
pub struct HumanSink {
    /// Findings and hook lines too, not only notes and losses.
    pub findings: bool,
}

impl HumanSink {
    /// How errors name this output.
    pub const NAME: &str = "human output on stderr";

    fn line(&self, text: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(text.as_bytes())
    }
}

impl Sink for HumanSink {
    fn name(&self) -> String {
        Self::NAME.into()
    }

    fn status(&mut self, status: &Status) -> std::io::Result<()> {
        if !self.findings {
            return Ok(());
        }
        for h in &status.hooks {
            // Hooks absent by design on this kernel are in `status`; say which ones wait for a
            // module or failed (release hooks always wait for their driver's module).
            let fixable = matches!(h.state, HookState::ModuleNotLoaded | HookState::Failed)
                || (h.hook == Hook::Release0 && h.state == HookState::Absent);
            if fixable {
                self.line(&format!("pfn-auditor: {} ({}) not attached: {}\n", h.hook.name(), h.symbol, h.reason.as_deref().unwrap_or("")))?;
            }
            // Attached with a reason: armed for a module that is not loaded yet.
            if let (HookState::Attached, Some(reason)) = (h.state, &h.reason) {
                self.line(&format!("pfn-auditor: {} ({}) {reason}\n", h.hook.name(), h.symbol))?;
            }
        }
        Ok(())
    }

    fn hook_changed(&mut self, change: &HookChange) -> std::io::Result<()> {
        if !self.findings {
            return Ok(());
        }
        let s = &change.status;
        match &s.reason {
            Some(reason) => self.line(&format!("pfn-auditor: {} ({}) now {}: {reason}\n", s.hook.name(), s.symbol, s.state.name())),
            None => self.line(&format!("pfn-auditor: {} ({}) now {}\n", s.hook.name(), s.symbol, s.state.name())),
        }
    }

    fn finding(&mut self, finding: &Finding) -> std::io::Result<()> {
        if self.findings { self.line(&render(finding)) } else { Ok(()) }
    }

    fn lost(&mut self, lost: &Lost) -> std::io::Result<()> {
        if !self.findings {
            return Ok(());
        }
        let why = match lost.reason {
            None => "lost (ring buffer full)",
            Some(LossReason::Undecodable) => "undecodable (eBPF object and daemon disagree?)",
            Some(LossReason::StackUnknown) => "without their stack (the record whose stack they share was not read)",
        };
        self.line(&format!("pfn-auditor: {} record(s) of {} {why}\n", lost.count, lost.hook_name()))
    }

    fn finish(&mut self, summary: &RunSummary) -> std::io::Result<()> {
        for note in summary.notes() {
            self.line(&format!("pfn-auditor: {note}\n"))?;
        }
        Ok(())
    }
}

/// How many stack frames a human report shows.
const STACK_LINES: usize = 8;

pub fn render(f: &Finding) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}[{}] {}", f.severity.name().to_uppercase(), f.kind.name(), f.message);
    let p = &f.pin;
    let _ = writeln!(out, "  holder    {}{} in {}[{}]", p.holder, at(p.holder.source()), p.task.comm, p.task.tgid);
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
    let pfns: Vec<String> =
        p.pfns.iter().map(|r| if r.count == 1 { format!("{:#x}", r.first) } else { format!("{:#x}+{}", r.first, r.count) }).collect();
    let via = hook_label(&p.hook, p.symbol.as_deref());
    let _ = writeln!(out, "  pin       {} via {via}: {} page(s) at {:#x}, pfn {}", source(f), p.pages, p.start.0, pfns.join(", "));
    let _ = writeln!(out, "  release   {}", p.release);
    if let Some(r) = &f.revocation {
        let caller = r.caller.as_ref().map(Frame::to_string).unwrap_or_else(|| "?".into());
        let _ = writeln!(
            out,
            "  revoked   {} from {} in {}[{}], {:.3} ms after the pin",
            hook_label(&r.hook, r.symbol.as_deref()),
            caller,
            r.task.comm,
            r.task.tgid,
            f.age_ns as f64 / 1e6
        );
    }
    let _ = writeln!(out, "  pinned at");
    for frame in p.stack.iter().take(STACK_LINES) {
        let _ = writeln!(out, "    {frame}{}", at(frame.source()));
    }
    let _ = writeln!(out, "  fingerprint {}", f.fingerprint);
    out
}

/// ` at file:line` after a frame, when its source line is known.
fn at(source: Option<String>) -> String {
    source.map(|s| format!(" at {s}")).unwrap_or_default()
}

fn source(f: &Finding) -> &'static str {
    match f.pin.source {
        crate::vocab::finding::PinSource::RawLookup => "raw lookup",
        crate::vocab::finding::PinSource::FrameVector => "frame vector",
    }
}

/// A hook with the symbol it was attached to when that has another name:
/// `zap_vma_ptes (zap_special_vma_range)` on 7.1+.
fn hook_label(hook: &HookRef, symbol: Option<&str>) -> String {
    match symbol {
        Some(symbol) if symbol != hook.name() => format!("{hook} ({symbol})"),
        _ => hook.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_attached_to_a_renamed_function_names_both() {
        let zap = HookRef::Table(Hook::ZapVmaPtes);
        assert_eq!(hook_label(&zap, Some("zap_special_vma_range")), "zap_vma_ptes (zap_special_vma_range)");
        assert_eq!(hook_label(&zap, Some("zap_vma_ptes")), "zap_vma_ptes");
        assert_eq!(hook_label(&zap, None), "zap_vma_ptes", "a recording without symbols");
    }
}
