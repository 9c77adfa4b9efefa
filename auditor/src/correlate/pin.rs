//! A held pin and how it grows (per-page lookups coalesce into one range).
use crate::event::{Event, Hex, Task, Vma};

use super::{
    PAGE,
    finding::{FindingKind, Holder, PfnRange, PinEvidence, PinSource},
};

/// How a pin ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// `put_vaddr_frames(vec)`.
    FrameVector,
    /// A release hook of the policy's holder rule at this index.
    Policy(usize),
    /// No release declared: the pin lives as long as the holder process.
    HolderExit,
}

#[derive(Clone, Debug)]
pub struct Pin {
    pub id: u64,
    pub source: PinSource,
    pub hook: String,
    pub holder: Holder,
    pub task: Task,
    pub vma: Option<Vma>,
    pub mm: u64,
    /// User address range [start, end).
    pub start: u64,
    pub end: u64,
    pub pfns: Vec<PfnRange>,
    pub pages: u64,
    pub vec: Option<Hex>,
    pub release: Release,
    pub ts_ns: u64,
    pub stack: Vec<crate::event::Frame>,
    /// Kinds already reported for this pin (one finding per pin and kind).
    pub reported: Vec<FindingKind>,
}

impl Pin {
    #[allow(clippy::too_many_arguments)]
    pub fn raw(id: u64, ev: &Event, holder: Holder, vma: Option<Vma>, mm: u64, page: u64, pfn: u64, release: Release) -> Self {
        Pin {
            id,
            source: PinSource::RawLookup,
            hook: ev.hook.clone(),
            holder,
            task: ev.task.clone(),
            vma,
            mm,
            start: page,
            end: page + PAGE,
            pfns: vec![PfnRange { first: pfn, count: 1 }],
            pages: 1,
            vec: None,
            release,
            ts_ns: ev.ts_ns,
            stack: ev.stack.clone(),
            reported: Vec::new(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn frames(id: u64, ev: &Event, vec: Hex, start: u64, mm: u64, nr_frames: u32, pfns: &[u64], vma: Option<Vma>) -> Self {
        let mut ranges: Vec<PfnRange> = Vec::new();
        for &pfn in pfns {
            match ranges.last_mut() {
                Some(r) if r.first + r.count == pfn => r.count += 1,
                _ => ranges.push(PfnRange { first: pfn, count: 1 }),
            }
        }
        Pin {
            id,
            source: PinSource::FrameVector,
            hook: ev.hook.clone(),
            holder: Holder::from_frame(ev.caller.as_ref()),
            task: ev.task.clone(),
            vma,
            mm,
            start,
            end: start + nr_frames as u64 * PAGE,
            pfns: ranges,
            pages: nr_frames as u64,
            vec: Some(vec),
            release: Release::FrameVector,
            ts_ns: ev.ts_ns,
            stack: ev.stack.clone(),
            reported: Vec::new(),
        }
    }

    pub fn vma_ptr(&self) -> u64 {
        self.vma.as_ref().map(|v| v.vma.0).unwrap_or(0)
    }

    pub fn has_pfn(&self, pfn: u64) -> bool {
        self.pfns.iter().any(|r| r.first <= pfn && pfn < r.first + r.count)
    }

    /// Takes the page at `page` with `pfn` into this pin if it is already in it or continues it
    /// at either end. A pin that was already reported is not grown: the new lookup is a new pin.
    pub fn absorb(&mut self, page: u64, pfn: u64) -> bool {
        if self.start <= page && page < self.end && self.has_pfn(pfn) {
            return true;
        }
        if !self.reported.is_empty() {
            return false;
        }
        let last = self.pfns.last_mut().expect("a pin has PFNs");
        if page == self.end && pfn == last.first + last.count {
            last.count += 1;
            self.end += PAGE;
            self.pages += 1;
            return true;
        }
        let first = self.pfns.first_mut().expect("a pin has PFNs");
        if page + PAGE == self.start && pfn + 1 == first.first {
            first.first = pfn;
            first.count += 1;
            self.start = page;
            self.pages += 1;
            return true;
        }
        false
    }

    pub fn source_label(&self) -> &'static str {
        match self.source {
            PinSource::RawLookup => "raw PFN lookup",
            PinSource::FrameVector => "frame-vector pin",
        }
    }

    pub fn evidence(&self, release: String) -> PinEvidence {
        PinEvidence {
            id: self.id,
            source: self.source,
            hook: self.hook.clone(),
            holder: self.holder.clone(),
            task: self.task.clone(),
            vma: self.vma.clone(),
            start: Hex(self.start),
            end: Hex(self.end),
            pfns: self.pfns.clone(),
            pages: self.pages,
            vec: self.vec,
            release,
            ts_ns: self.ts_ns,
            stack: self.stack.clone(),
        }
    }
}
