//! A held pin: a set of page runs. Per-page lookups coalesce into runs; a release by PFN or
//! address takes exactly the pages it gives back out of them, so a pin can shrink or split.
use std::{hash::BuildHasher, sync::Arc};

use smallvec::{SmallVec, smallvec};

use super::{PAGE, intern::Interned};
use crate::{
    policy::ArgMeaning,
    vocab::{
        event::{Event, Frame, Hex, HookRef, Task, Vma},
        finding::{FindingKind, Holder, PfnRange, PinEvidence, PinSource},
    },
};

/// How a pin ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// `put_vaddr_frames(vec)`.
    FrameVector,
    /// A release hook of the policy's holder rule at this index (`u32`: a `Release` is 8 bytes).
    Policy(u32),
    /// No release declared: the pin lives as long as the holder process.
    HolderExit,
}

/// `pages` pages from user address `start`; for raw lookups their PFNs run from [`Run::pfn`] (a
/// frame vector's PFNs are not contiguous and only partly known: `None`). 24 bytes: the PFN is
/// kept without `Option`'s 8 bytes, `u64::MAX` (above any PFN a 64-bit kernel has: PFNs are
/// physical addresses shifted by the page size) standing for none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub start: u64,
    pub pages: u64,
    pfn: u64,
}

const NO_PFN: u64 = u64::MAX;

impl Run {
    pub fn new(start: u64, pages: u64, pfn: Option<u64>) -> Self {
        Run { start, pages, pfn: pfn.unwrap_or(NO_PFN) }
    }

    /// PFN of the first page, if known.
    pub fn pfn(&self) -> Option<u64> {
        (self.pfn != NO_PFN).then_some(self.pfn)
    }

    pub fn end(&self) -> u64 {
        self.start + self.pages * PAGE
    }

    /// First page of the run as a release argument names it: its PFN, or its user page number.
    pub(crate) fn key(&self, is: ArgMeaning) -> Option<u64> {
        match is {
            ArgMeaning::Pfn => self.pfn(),
            ArgMeaning::Address => Some(self.start / PAGE),
        }
    }

    /// `pages` pages from page `offset` of the run.
    fn slice(&self, offset: u64, pages: u64) -> Run {
        Run::new(self.start + offset * PAGE, pages, self.pfn().map(|p| p + offset))
    }

    fn holds(&self, page: u64, pfn: u64) -> bool {
        self.start <= page && page < self.end() && self.pfn().is_some_and(|p| p + (page - self.start) / PAGE == pfn)
    }
}

/// The strings of a vma, which many vmas share (every map of one device file has the same):
/// stored once (`Correlator` interns them, `intern.rs`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Names {
    /// Device of the backing inode as `major:minor` ([`Vma::dev`]).
    pub dev: String,
    pub path: Option<String>,
}

/// A vma as the correlator keeps it: [`Vma`]'s numbers, its strings behind one shared
/// [`Names`] (72 bytes; a [`Vma`] is 112 plus a heap block per string). Pins and PFN maps share
/// one copy of each (`Correlator::shared_vma`).
#[derive(Debug)]
pub(crate) struct PinVma {
    /// `struct vm_area_struct *`; 0 when the hook only knew the mm.
    pub vma: u64,
    pub mm: u64,
    pub start: u64,
    pub end: u64,
    pub flags: u64,
    pub pgoff: u64,
    /// `struct address_space *` of the backing file, 0 if anonymous.
    pub mapping: u64,
    pub ino: u64,
    pub names: Arc<Names>,
}

impl PinVma {
    pub fn of(v: &Vma, names: Arc<Names>) -> Self {
        PinVma {
            vma: v.vma.0,
            mm: v.mm.0,
            start: v.start.0,
            end: v.end.0,
            flags: v.flags.0,
            pgoff: v.pgoff,
            mapping: v.mapping.0,
            ino: v.ino,
            names,
        }
    }

    /// Whether this is `v` with path `path` (compared without copying).
    pub fn is(&self, v: &Vma, path: Option<&str>) -> bool {
        self.vma == v.vma.0
            && self.mm == v.mm.0
            && self.start == v.start.0
            && self.end == v.end.0
            && self.flags == v.flags.0
            && self.pgoff == v.pgoff
            && self.mapping == v.mapping.0
            && self.ino == v.ino
            && self.names.dev == v.dev
            && self.names.path.as_deref() == path
    }

    pub fn path(&self) -> Option<&str> {
        self.names.path.as_deref()
    }

    /// The vma as events and findings carry it.
    pub fn to_vma(&self) -> Vma {
        Vma {
            vma: Hex(self.vma),
            mm: Hex(self.mm),
            start: Hex(self.start),
            end: Hex(self.end),
            flags: Hex(self.flags),
            pgoff: self.pgoff,
            mapping: Hex(self.mapping),
            ino: self.ino,
            dev: self.names.dev.clone(),
            path: self.names.path.clone(),
        }
    }
}

/// Who took a pin: the hook, the caller (holder), the task and the kernel stack of the lookup
/// or `get_vaddr_frames()` call. Every pin one task takes at one call site has the same, so pins
/// share one copy (`Correlator` interns it, `intern.rs`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub source: PinSource,
    pub hook: HookRef,
    /// The symbol the hook was attached to, when the event said.
    pub symbol: Option<String>,
    pub holder: Holder,
    pub task: Task,
    pub stack: Vec<Frame>,
}

impl Origin {
    /// The origin of a pin of `source` that event `ev` takes.
    pub fn of(ev: &Event, source: PinSource) -> Self {
        Origin {
            source,
            hook: ev.hook.clone(),
            symbol: ev.symbol.clone(),
            holder: Holder::from_frame(ev.caller.as_ref()),
            task: ev.task.clone(),
            stack: ev.stack.clone(),
        }
    }

    /// What the origin interner hashes, from an event: the same as [`Origin::key`] of
    /// [`Origin::of`] the event.
    pub(crate) fn key_of(ev: &Event, source: PinSource) -> OriginKey<'_> {
        let caller = ev.caller.as_ref();
        (
            source == PinSource::RawLookup,
            &ev.hook,
            ev.symbol.as_deref(),
            &ev.task,
            caller.and_then(|f| f.function.as_deref()),
            caller.and_then(|f| f.module.as_deref()),
            caller.map_or(0, |f| f.offset),
            ev.stack.len(),
            ev.stack.first(),
        )
    }

    fn key(&self) -> OriginKey<'_> {
        (
            self.source == PinSource::RawLookup,
            &self.hook,
            self.symbol.as_deref(),
            &self.task,
            self.holder.function.as_deref(),
            self.holder.module.as_deref(),
            self.holder.offset,
            self.stack.len(),
            self.stack.first(),
        )
    }

    /// Whether [`Origin::of`] `ev` and `source` is this origin (compared without copying).
    pub(crate) fn is_of(&self, ev: &Event, source: PinSource) -> bool {
        let caller = ev.caller.as_ref();
        self.source == source
            && self.hook == ev.hook
            && self.symbol == ev.symbol
            && self.task == ev.task
            && self.stack == ev.stack
            && self.holder.function.as_deref() == caller.and_then(|f| f.function.as_deref())
            && self.holder.module.as_deref() == caller.and_then(|f| f.module.as_deref())
            && self.holder.offset == caller.map_or(0, |f| f.offset)
    }
}

/// What an [`Origin`] is hashed by: source, hook, symbol, task, caller function, module and
/// offset, stack depth and first frame.
pub(crate) type OriginKey<'a> =
    (bool, &'a HookRef, Option<&'a str>, &'a Task, Option<&'a str>, Option<&'a str>, u64, usize, Option<&'a Frame>);

impl Interned for Origin {
    fn key_hash(&self, hasher: &impl BuildHasher) -> u64 {
        hasher.hash_one(self.key())
    }
}

impl Interned for Names {
    fn key_hash(&self, hasher: &impl BuildHasher) -> u64 {
        hasher.hash_one((self.dev.as_str(), self.path.as_deref()))
    }
}

/// Hashed by the vma pointer alone, so the interner finds every copy of one vma pointer
/// (`Interner::with_hash`): the mms a zap or munmap of that vma looks through.
impl Interned for PinVma {
    fn key_hash(&self, hasher: &impl BuildHasher) -> u64 {
        hasher.hash_one(self.vma)
    }
}

/// Finding kinds already reported for a pin (one finding per pin and kind), one bit each.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Reported(u8);

impl Reported {
    pub fn contains(&self, kind: &FindingKind) -> bool {
        self.0 & (1 << *kind as u8) != 0
    }

    pub fn push(&mut self, kind: FindingKind) {
        self.0 |= 1 << kind as u8;
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// A frame vector's pointer and the PFNs its kernel record carried (the first frames).
#[derive(Clone, Debug)]
struct FrameVec {
    vec: Hex,
    pfns: Vec<PfnRange>,
}

/// A held pin: ~100 bytes of its own; what it shares with other pins (its origin, its vma) is
/// behind an `Arc`.
#[derive(Clone, Debug)]
pub(crate) struct Pin {
    pub id: u64,
    pub origin: Arc<Origin>,
    pub vma: Option<Arc<PinVma>>,
    pub mm: u64,
    /// The pages held, by user address, in address order; never empty.
    pub runs: SmallVec<[Run; 1]>,
    frames: Option<Box<FrameVec>>,
    pub release: Release,
    pub ts_ns: u64,
    /// Kinds already reported for this pin (one finding per pin and kind).
    pub reported: Reported,
}

impl Pin {
    #[allow(clippy::too_many_arguments)]
    pub fn raw(id: u64, origin: Arc<Origin>, ts_ns: u64, vma: Option<Arc<PinVma>>, mm: u64, page: u64, pfn: u64, release: Release) -> Self {
        Pin {
            id,
            origin,
            vma,
            mm,
            runs: smallvec![Run::new(page, 1, Some(pfn))],
            frames: None,
            release,
            ts_ns,
            reported: Reported::default(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn frames(
        id: u64,
        origin: Arc<Origin>,
        ts_ns: u64,
        vec: Hex,
        start: u64,
        mm: u64,
        nr_frames: u32,
        pfns: &[u64],
        vma: Option<Arc<PinVma>>,
    ) -> Self {
        let mut ranges: Vec<PfnRange> = Vec::new();
        for &pfn in pfns {
            match ranges.last_mut() {
                Some(r) if r.first + r.count == pfn => r.count += 1,
                _ => ranges.push(PfnRange { first: pfn, count: 1 }),
            }
        }
        Pin {
            id,
            origin,
            vma,
            mm,
            runs: smallvec![Run::new(start, nr_frames as u64, None)],
            frames: Some(Box::new(FrameVec { vec, pfns: ranges })),
            release: Release::FrameVector,
            ts_ns,
            reported: Reported::default(),
        }
    }

    /// The frame vector of a frame-vector pin.
    pub fn vec(&self) -> Option<Hex> {
        self.frames.as_ref().map(|f| f.vec)
    }

    pub fn source(&self) -> PinSource {
        self.origin.source
    }

    pub fn holder(&self) -> &Holder {
        &self.origin.holder
    }

    pub fn task(&self) -> &Task {
        &self.origin.task
    }

    pub(crate) fn vma_ptr(&self) -> u64 {
        self.vma.as_ref().map_or(0, |v| v.vma)
    }

    /// Lowest user address held.
    pub fn start(&self) -> u64 {
        self.runs.first().map_or(0, |r| r.start)
    }

    /// End of the highest page held.
    pub fn end(&self) -> u64 {
        self.runs.last().map_or(0, Run::end)
    }

    /// Pages held.
    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|r| r.pages).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Takes the page at `page` with `pfn` into this pin if it already holds it or it continues
    /// one of its runs at either end. A pin that was already reported is not grown: the new
    /// lookup is a new pin.
    pub(crate) fn absorb(&mut self, page: u64, pfn: u64) -> bool {
        if self.holds(page, pfn) {
            return true;
        }
        if !self.can_absorb(page, pfn) {
            return false;
        }
        self.absorb_unchecked(page, pfn)
    }

    /// A run of the pin holds the page with this PFN.
    pub fn holds(&self, page: u64, pfn: u64) -> bool {
        self.runs.iter().any(|r| r.holds(page, pfn))
    }

    /// [`Pin::absorb`] would grow the pin by this page.
    pub(crate) fn can_absorb(&self, page: u64, pfn: u64) -> bool {
        self.reported.is_empty()
            && !self.runs.iter().any(|r| r.start <= page && page < r.end())
            && self.runs.iter().any(|r| {
                r.pfn().is_some_and(|first| (page == r.end() && pfn == first + r.pages) || (page + PAGE == r.start && pfn + 1 == first))
            })
    }

    /// [`Pin::absorb`] would grow a run at its end and join no other run: every run keeps its
    /// start (the indexes' keys).
    pub(crate) fn grows_at_end(&self, page: u64, pfn: u64) -> bool {
        if !self.can_absorb(page, pfn) {
            return false;
        }
        let first_match = self.runs.iter().find(|r| {
            r.pfn().is_some_and(|first| (page == r.end() && pfn == first + r.pages) || (page + PAGE == r.start && pfn + 1 == first))
        });
        first_match.is_some_and(|r| page == r.end()) && !self.runs.iter().any(|r| r.start == page + PAGE)
    }

    fn absorb_unchecked(&mut self, page: u64, pfn: u64) -> bool {
        let grown = self.runs.iter_mut().find_map(|r| {
            let first = r.pfn()?;
            if page == r.end() && pfn == first + r.pages {
                r.pages += 1;
            } else if page + PAGE == r.start && pfn + 1 == first {
                *r = Run::new(page, r.pages + 1, Some(pfn));
            } else {
                return None;
            }
            Some(())
        });
        if grown.is_some() {
            self.merge_runs();
        }
        grown.is_some()
    }

    /// Joins runs that became contiguous in address and PFN.
    fn merge_runs(&mut self) {
        let mut merged: SmallVec<[Run; 1]> = SmallVec::with_capacity(self.runs.len());
        for run in self.runs.drain(..) {
            match merged.last_mut() {
                Some(last) if last.end() == run.start && last.pfn().zip(run.pfn()).is_some_and(|(a, b)| a + last.pages == b) => {
                    last.pages += run.pages
                }
                _ => merged.push(run),
            }
        }
        self.runs = merged;
    }

    /// Whether the pin holds a page whose PFN (or user page number) is in `[lo, hi)`.
    pub fn holds_key(&self, is: ArgMeaning, lo: u64, hi: u64) -> bool {
        self.runs.iter().any(|r| r.key(is).is_some_and(|first| first < hi && lo < first.saturating_add(r.pages)))
    }

    /// Gives back the pages whose PFN (or user page number) is in `[lo, hi)`; returns those
    /// taken, as ranges of the same keys. What stays held stays in the pin, split if need be.
    pub(crate) fn give_back(&mut self, is: ArgMeaning, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        let mut taken = Vec::new();
        let mut kept = SmallVec::with_capacity(self.runs.len() + 1);
        for run in &self.runs {
            let Some(first) = run.key(is) else {
                kept.push(*run);
                continue;
            };
            let last = first + run.pages;
            let (a, b) = (first.max(lo), last.min(hi));
            if a >= b {
                kept.push(*run);
                continue;
            }
            taken.push((a, b));
            if first < a {
                kept.push(run.slice(0, a - first));
            }
            if b < last {
                kept.push(run.slice(b - first, last - b));
            }
        }
        self.runs = kept;
        taken
    }

    pub(crate) fn source_label(&self) -> &'static str {
        match self.source() {
            PinSource::RawLookup => "raw PFN lookup",
            PinSource::FrameVector => "frame-vector pin",
        }
    }

    pub fn evidence(&self, release: String) -> PinEvidence {
        let pfns = match &self.frames {
            Some(f) => f.pfns.clone(),
            None => self.runs.iter().filter_map(|r| Some(PfnRange { first: r.pfn()?, count: r.pages })).collect(),
        };
        let origin = &*self.origin;
        PinEvidence {
            id: self.id,
            source: origin.source,
            hook: origin.hook.clone(),
            symbol: origin.symbol.clone(),
            holder: origin.holder.clone(),
            task: origin.task.clone(),
            vma: self.vma.as_deref().map(PinVma::to_vma),
            start: Hex(self.start()),
            end: Hex(self.end()),
            pfns,
            pages: self.pages(),
            vec: self.vec(),
            release,
            ts_ns: self.ts_ns,
            stack: origin.stack.clone(),
        }
    }
}

/// `[lo, hi)` without the sub-ranges in `taken`.
pub(crate) fn subtract(lo: u64, hi: u64, mut taken: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    taken.sort_unstable();
    let mut left = Vec::new();
    let mut at = lo;
    for (a, b) in taken {
        if at < a {
            left.push((at, a.min(hi)));
        }
        at = at.max(b);
    }
    if at < hi {
        left.push((at, hi));
    }
    left
}
