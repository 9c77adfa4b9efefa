//! The correlator: events in, findings out, no I/O. Live runs and `replay` share it.
//!
//! State: PFN maps by vma pointer (for paths and mm-only lookups), the pins currently held, and
//! the processes known to have exited. MODEL.md has the tables this implements. Every question an
//! event asks (which pins does this revocation, release, exit or lookup touch) is answered from
//! an index (`index.rs`), so an event costs O(log n + what it touches), and the state is bounded
//! by [`Options`].
mod index;
mod intern;
mod pin;
#[cfg(test)]
mod reference;
mod slots;
pub mod synthetic;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    hash::BuildHasher,
    sync::Arc,
};

use hashbrown::HashTable;

use serde::{Deserialize, Serialize};

use crate::{
    policy::{ArgMeaning, Policy, RamPfns, ReleaseMatch},
    vocab::{
        event::{Cause, Event, EventBody, Hex, Vma},
        finding::{Finding, FindingKind, PinSource, RevocationEvidence, fingerprint, same_function},
        record::notes,
    },
};
use index::{IntervalIndex, SlotLists};
use intern::Interner;
use pin::{Names, Origin, Pin, PinVma, Release, Run, subtract};
use slots::{Ordered, Slot};

use crate::probes::table;

const PAGE: u64 = 4096;

/// End-of-run summary of the correlator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub findings: Vec<Finding>,
    /// Findings per kind name.
    pub counts: BTreeMap<String, u64>,
    pub suppressed: u64,
    /// Suppressed findings per suppression reason.
    #[serde(default)]
    pub suppressed_by: BTreeMap<String, u64>,
    /// Pins still held when the run ended.
    pub pins_held: u64,
    /// Raw-lookup pins whose vma stayed unknown (the lookup carried only the mm and no PFN map
    /// of the run contained the address): an owner revocation cannot be matched to them.
    #[serde(default)]
    pub pins_without_vma: u64,
    /// Pins dropped unreported because `Options::max_pins` were held: a loss (gate fails closed).
    #[serde(default)]
    pub evicted_pins: u64,
    /// PFN maps forgotten because `Options::max_pfnmaps` were tracked: later mm-only lookups in
    /// them have no vma (a loss, like `evicted_pins`).
    #[serde(default)]
    pub evicted_pfnmaps: u64,
}

impl Summary {
    /// End-of-run lines for humans: suppressions per reason, pins whose vma stayed unknown.
    pub fn notes(&self) -> Vec<String> {
        notes(&self.suppressed_by, self.pins_without_vma, self.evicted_pins, self.evicted_pfnmaps)
    }

    /// Whether state was dropped to stay within [`Options`]: findings may be missing.
    pub fn evicted(&self) -> bool {
        self.evicted_pins + self.evicted_pfnmaps > 0
    }
}

/// Bounds on the correlator's state, so a flood of PFN maps or pins cannot exhaust memory. Past a
/// bound the oldest entry is evicted and counted (`Summary::evicted_pins` / `evicted_pfnmaps`):
/// an evicted pin can no longer be reported, so an eviction is a loss and `gate` must fail
/// closed on it, like on lost events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Pins tracked at most (each holds one or more page runs).
    pub max_pins: usize,
    /// PFN maps tracked at most.
    pub max_pfnmaps: usize,
}

impl Default for Options {
    /// 1 Mi pins and 256 Ki PFN maps: far above a real workload (per-page lookups coalesce), and
    /// well under 1 GiB of state (`examples/hold-pins`: ~430 bytes a pin with its own PFN map, most
    /// of it the interval indexes, the pin and the vma; what pins share is stored once, `intern.rs`).
    fn default() -> Self {
        Self { max_pins: 1 << 20, max_pfnmaps: 1 << 18 }
    }
}

/// Index group of a pin's release: by tgid, the class of release (frame vector, holder exit,
/// policy rule N).
fn release_class(r: Release) -> u32 {
    match r {
        Release::FrameVector => 0,
        Release::HolderExit => 1,
        Release::Policy(i) => i.saturating_add(2),
    }
}

pub struct Correlator {
    policy: Policy,
    options: Options,
    /// Known PFN-mapped vmas (the vma's one shared copy), oldest first (for eviction).
    pfnmaps: Ordered<Arc<PinVma>>,
    /// PFN map slots by vma pointer.
    pfnmap_by_ptr: HashTable<Slot>,
    /// PFN maps by mm and address interval.
    pfnmaps_by_addr: IntervalIndex<Slot>,
    /// Held pins, in the order they were taken in (the order of their ids and of findings).
    pins: Ordered<Pin>,
    /// The pins by everything an event asks about them.
    ix: PinIndex,
    /// Frame-vector pins by `struct frame_vector *`.
    by_vec: HashMap<u64, Slot>,
    /// Who took the pins (task, call site, stack) and their vmas, one copy each (`intern.rs`).
    origins: Interner<Origin>,
    vmas: Interner<PinVma>,
    names: Interner<Names>,
    /// Reused candidate buffer: no allocation per event once warm.
    scratch: Vec<Slot>,
    /// Hashes vma pointers for `pfnmap_by_ptr`.
    hasher: hashbrown::DefaultHashBuilder,
    next_pin_id: u64,
    /// Processes that exited, by (tgid, leader start time): a pid reused by a later process is not
    /// an exited one.
    exited: HashSet<(u32, u64)>,
    kept: Kept,
    pins_without_vma: u64,
    evicted_pins: u64,
    evicted_pfnmaps: u64,
    last_ts: u64,
}

impl Correlator {
    pub fn new(policy: &Policy) -> Self {
        Self::with_options(policy, Options::default())
    }

    pub fn with_options(policy: &Policy, options: Options) -> Self {
        Self {
            policy: policy.clone(),
            options,
            pfnmaps: Ordered::default(),
            pfnmap_by_ptr: HashTable::new(),
            pfnmaps_by_addr: IntervalIndex::new(PAGE - 1),
            pins: Ordered::default(),
            ix: PinIndex::new(),
            by_vec: HashMap::new(),
            origins: Interner::default(),
            vmas: Interner::default(),
            names: Interner::default(),
            scratch: Vec::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            next_pin_id: 1,
            exited: HashSet::new(),
            kept: Kept::default(),
            pins_without_vma: 0,
            evicted_pins: 0,
            evicted_pfnmaps: 0,
            last_ts: 0,
        }
    }

    /// Feeds one event; returns the findings it caused, in a deterministic order.
    pub fn handle(&mut self, ev: &Event) -> Vec<Finding> {
        self.last_ts = self.last_ts.max(ev.ts_ns);
        let found = match &ev.body {
            EventBody::PfnMap { vma, .. } => {
                self.add_pfnmap(vma);
                Vec::new()
            }
            EventBody::VmaFree { vma } => {
                self.remove_pfnmap(vma.vma.0);
                Vec::new()
            }
            EventBody::RawLookup { vma, address, pfn, ram } => {
                self.raw_lookup(ev, vma, address.0, *pfn, *ram);
                Vec::new()
            }
            EventBody::FramesGet { vec, start, mm, nr_frames, is_pfns, pfns, .. } => {
                self.frames_get(ev, *vec, start.0, mm.0, *nr_frames, *is_pfns, pfns)
            }
            EventBody::FramesPut { vec } => {
                if let Some(slot) = self.by_vec.get(&vec.0).copied() {
                    self.remove_pin(slot);
                }
                Vec::new()
            }
            EventBody::ReleaseCall { args } => {
                self.release_call(ev, args);
                Vec::new()
            }
            EventBody::Revoke { cause, mapping, first_pgoff, nr_pages, vma, start, end, mm } => {
                let scope = Scope {
                    cause: *cause,
                    mapping: *mapping,
                    first_pgoff: *first_pgoff,
                    nr_pages: *nr_pages,
                    vma: vma.as_ref(),
                    start: start.0,
                    end: end.0,
                    mm: mm.0,
                };
                self.revoke(ev, &scope)
            }
            EventBody::TaskExit {} => {
                self.exited.insert((ev.task.tgid, ev.task.start_time_ns));
                // Pins without a declared release end with their holder process.
                self.remove_pins_of(ev.task.tgid, Release::HolderExit);
                Vec::new()
            }
        };
        self.keep(found)
    }

    /// Ends the run: pins with a release still held are leaks. Returns every finding of the run.
    pub fn finish(&mut self) -> Summary {
        let leaked: Vec<Finding> = self
            .pins
            .iter()
            .filter(|p| p.release != Release::HolderExit)
            .map(|p| self.finding(p, FindingKind::PinLeaked, None, self.last_ts))
            .collect();
        self.keep(leaked);
        Summary {
            pins_held: self.pins.len() as u64,
            pins_without_vma: self.pins_without_vma,
            evicted_pins: self.evicted_pins,
            evicted_pfnmaps: self.evicted_pfnmaps,
            ..self.kept.summary()
        }
    }

    /// Pins currently held (for tests and metrics).
    pub fn pins_held(&self) -> usize {
        self.pins.len()
    }

    /// PFN maps currently tracked.
    pub fn pfnmaps_tracked(&self) -> usize {
        self.pfnmaps.len()
    }

    fn keep(&mut self, found: Vec<Finding>) -> Vec<Finding> {
        self.kept.keep(&self.policy, found)
    }

    // ---- PFN maps ---------------------------------------------------------------------------

    fn add_pfnmap(&mut self, vma: &Vma) {
        self.remove_pfnmap(vma.vma.0);
        if self.pfnmaps.len() >= self.options.max_pfnmaps.clamp(1, Ordered::<Arc<PinVma>>::MAX_LEN)
            && let Some(oldest) = self.pfnmaps.first()
            && let Some(ptr) = self.pfnmaps.get(oldest).map(|v| v.vma)
        {
            self.remove_pfnmap(ptr);
            self.evicted_pfnmaps += 1;
        }
        let vma = self.shared_vma(vma, vma.path.as_deref());
        let (ptr, mm, start, last) = (vma.vma, vma.mm, vma.start, vma.end.saturating_sub(1));
        let slot = self.pfnmaps.push(vma);
        self.pfnmaps_by_addr.insert(mm, start, last, slot);
        let Self { pfnmaps, pfnmap_by_ptr, hasher, .. } = self;
        pfnmap_by_ptr.insert_unique(hasher.hash_one(ptr), slot, |&s| hasher.hash_one(pfnmaps.get(s).map_or(0, |v| v.vma)));
    }

    /// The slot of the PFN map of vma pointer `ptr`.
    fn pfnmap_slot(&self, ptr: u64) -> Option<Slot> {
        let pfnmaps = &self.pfnmaps;
        self.pfnmap_by_ptr.find(self.hasher.hash_one(ptr), |&s| pfnmaps.get(s).is_some_and(|v| v.vma == ptr)).copied()
    }

    fn remove_pfnmap(&mut self, ptr: u64) {
        let Self { pfnmaps, pfnmap_by_ptr, hasher, .. } = self;
        let Ok(entry) = pfnmap_by_ptr.find_entry(hasher.hash_one(ptr), |&s| pfnmaps.get(s).is_some_and(|v| v.vma == ptr)) else {
            return;
        };
        let (slot, _) = entry.remove();
        if let Some(old) = self.pfnmaps.remove(slot) {
            self.pfnmaps_by_addr.remove(old.mm, old.start, slot);
        }
    }

    /// The vma a lookup came from: as recorded, completed with what the PFN map knew; for
    /// mm-only lookups (follow_pte before 6.10) the PFN map containing the address.
    fn resolve_vma(&mut self, vma: &Vma, address: u64) -> Option<Arc<PinVma>> {
        if vma.vma.0 == 0 {
            return self.pfnmap_at(vma.mm.0, address);
        }
        let known = match vma.path {
            Some(_) => None,
            None => self.pfnmap_slot(vma.vma.0).and_then(|s| self.pfnmaps.get(s)).map(|m| m.names.clone()),
        };
        let path = vma.path.as_deref().or_else(|| known.as_ref().and_then(|n| n.path.as_deref()));
        Some(self.shared_vma(vma, path))
    }

    /// The one copy of `vma` with path `path` that pins and PFN maps share.
    fn shared_vma(&mut self, vma: &Vma, path: Option<&str>) -> Arc<PinVma> {
        let hash = self.vmas.hash(vma.vma.0);
        let Self { vmas, names, .. } = self;
        vmas.get_or_insert(
            hash,
            |v| v.is(vma, path),
            || {
                let hash = names.hash((vma.dev.as_str(), path));
                let names = names.get_or_insert(
                    hash,
                    |n| n.dev == vma.dev && n.path.as_deref() == path,
                    || Names { dev: vma.dev.clone(), path: path.map(str::to_owned) },
                );
                PinVma::of(vma, names)
            },
        )
    }

    /// The one copy of the origin of a pin of `source` that `ev` takes.
    fn origin(&mut self, ev: &Event, source: PinSource) -> Arc<Origin> {
        let hash = self.origins.hash(Origin::key_of(ev, source));
        self.origins.get_or_insert(hash, |o| o.is_of(ev, source), || Origin::of(ev, source))
    }

    /// The PFN map of `mm` containing `address` (the lowest vma pointer if several do).
    fn pfnmap_at(&mut self, mm: u64, address: u64) -> Option<Arc<PinVma>> {
        self.pfnmap_at_ref(mm, address).cloned()
    }

    /// [`Correlator::pfnmap_at`], borrowed.
    fn pfnmap_at_ref(&mut self, mm: u64, address: u64) -> Option<&Arc<PinVma>> {
        self.scratch.clear();
        self.pfnmaps_by_addr.overlapping(mm, address, address, &mut self.scratch);
        let pfnmaps = &self.pfnmaps;
        self.scratch
            .iter()
            .filter_map(|&s| pfnmaps.get(s))
            .filter(|m| m.mm == mm && m.start <= address && address < m.end)
            .min_by_key(|m| m.vma)
    }

    // ---- pins and their indexes --------------------------------------------------------------

    fn add_pin(&mut self, pin: Pin) {
        debug_assert!(pin.vma.as_ref().is_none_or(|v| v.mm == pin.mm), "a pin's mm is its vma's: zap by vma finds it by that mm");
        if self.pins.len() >= self.options.max_pins.clamp(1, Ordered::<Pin>::MAX_LEN)
            && let Some(oldest) = self.pins.first()
        {
            self.remove_pin(oldest);
            self.evicted_pins += 1;
        }
        let vec = pin.vec();
        let slot = self.pins.push(pin);
        if let Some(p) = self.pins.get(slot) {
            self.ix.add(&self.policy, slot, p);
        }
        if let Some(vec) = vec {
            self.by_vec.insert(vec.0, slot);
        }
    }

    fn remove_pin(&mut self, slot: Slot) -> Option<Pin> {
        let pin = self.pins.remove(slot)?;
        self.ix.remove(&self.policy, slot, &pin);
        if let Some(vec) = pin.vec() {
            self.by_vec.remove(&vec.0);
        }
        Some(pin)
    }

    /// Ends every pin of process `tgid` that ends the way `release` says.
    fn remove_pins_of(&mut self, tgid: u32, release: Release) {
        let class = release_class(release);
        while let Some(slot) = self.ix.by_tgid.any((tgid, class)) {
            if self.remove_pin(slot).is_none() {
                break;
            }
        }
    }

    /// Changes a held pin's pages, keeping the indexes right; a pin left without pages is gone.
    fn update_pin<T>(&mut self, slot: Slot, change: impl FnOnce(&mut Pin) -> T) -> Option<T> {
        let Self { pins, ix, policy, .. } = self;
        let pin = pins.get_mut(slot)?;
        ix.remove(policy, slot, pin);
        let out = change(pin);
        if pin.is_empty() {
            if let Some(vec) = pin.vec() {
                self.by_vec.remove(&vec.0);
            }
            pins.remove(slot);
        } else {
            ix.add(policy, slot, pin);
        }
        Some(out)
    }

    /// The scratch candidates in the order of their pins' ids (the order pins were taken in),
    /// each once; slots of pins gone are left out.
    fn take_candidates(&mut self) -> Vec<Slot> {
        let mut slots = std::mem::take(&mut self.scratch);
        let pins = &self.pins;
        slots.retain(|&s| pins.get(s).is_some());
        slots.sort_unstable_by_key(|&s| pins.get(s).map_or(0, |p| p.id));
        slots.dedup();
        slots
    }

    fn give_back_scratch(&mut self, mut slots: Vec<Slot>) {
        slots.clear();
        self.scratch = slots;
    }

    fn raw_lookup(&mut self, ev: &Event, recorded: &Vma, address: u64, pfn: u64, ram: bool) {
        let caller = ev.caller.as_ref();
        let (function, module) = (caller.and_then(|f| f.function.as_deref()), caller.and_then(|f| f.module.as_deref()));
        let Some(release) = lookup_release(&self.policy, function, module, ram) else { return };
        let counts_holds = counts_holds(&self.policy, release);
        let page = address & !(PAGE - 1);
        // The vma pointer and mm `resolve_vma` gives the pin, without copying the vma: a page
        // that joins a pin needs no copy. Without its vma the pin still has the lookup's mm:
        // munmap and exit find it.
        let vma_ptr = if recorded.vma.0 != 0 { recorded.vma.0 } else { self.pfnmap_at_ref(recorded.mm.0, page).map_or(0, |v| v.vma) };
        let mm = recorded.mm.0;
        // vfio and friends look up one page at a time: extend the holder's pin when this page
        // continues one of its runs (or is already in it). Only a pin with a run holding the
        // page or ending next to it can take it: those are found by address.
        self.scratch.clear();
        self.ix.by_mm.overlapping(mm, page.saturating_sub(1), page.saturating_add(PAGE), &mut self.scratch);
        let slots = self.take_candidates();
        let mut absorbed = None;
        for &slot in &slots {
            let Some(p) = self.pins.get(slot) else { continue };
            if !(p.source() == PinSource::RawLookup
                && p.holder().function.as_deref() == function
                && p.holder().module.as_deref() == module
                && p.task().tgid == ev.task.tgid
                && p.vma_ptr() == vma_ptr
                && p.mm == mm)
            {
                continue;
            }
            if p.holds(page, pfn) {
                if counts_holds {
                    continue; // held once more (vfio: the same page mapped at another IOVA)
                }
                absorbed = Some(None);
                break;
            }
            if p.can_absorb(page, pfn) {
                absorbed = Some(Some(slot));
                break;
            }
        }
        self.give_back_scratch(slots);
        match absorbed {
            Some(None) => return,
            Some(Some(slot)) => {
                self.absorb(slot, page, pfn);
                return;
            }
            None => {}
        }
        let vma = self.resolve_vma(recorded, page);
        if vma.is_none() {
            self.pins_without_vma += 1;
        }
        let origin = self.origin(ev, PinSource::RawLookup);
        let pin = Pin::raw(self.next_pin_id, origin, ev.ts_ns, vma, mm, page, pfn, release);
        self.next_pin_id += 1;
        self.add_pin(pin);
    }

    /// Grows pin `slot` by a page. Growing a run at its end (vfio's page after page) keeps every
    /// run's start, so only the ends in the indexes move; anything else re-indexes the pin.
    fn absorb(&mut self, slot: Slot, page: u64, pfn: u64) {
        let Some(p) = self.pins.get_mut(slot) else { return };
        if !p.grows_at_end(page, pfn) {
            self.update_pin(slot, |p| p.absorb(page, pfn));
            return;
        }
        p.absorb(page, pfn);
        let Self { pins, ix, policy, .. } = self;
        if let Some(p) = pins.get(slot) {
            ix.lengthen(policy, p);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn frames_get(&mut self, ev: &Event, vec: Hex, start: u64, mm: u64, nr_frames: u32, is_pfns: bool, pfns: &[u64]) -> Vec<Finding> {
        let vma = self.pfnmap_at(mm, start);
        let origin = self.origin(ev, PinSource::FrameVector);
        let pin = Pin::frames(self.next_pin_id, origin, ev.ts_ns, vec, start, mm, nr_frames, pfns, vma);
        self.next_pin_id += 1;
        let found = if is_pfns { vec![self.finding(&pin, FindingKind::PfnmapFrameVector, None, ev.ts_ns)] } else { Vec::new() };
        // A reused vector pointer replaces its old pin.
        if let Some(old) = self.by_vec.get(&vec.0).copied() {
            self.remove_pin(old);
        }
        self.add_pin(pin);
        found
    }

    fn release_call(&mut self, ev: &Event, args: &[Hex]) {
        for rule in 0..self.policy.holders.len() {
            let how = match self.policy.holders.get(rule) {
                Some(h) if h.released_by(&ev.hook) => h.release_match,
                _ => continue,
            };
            match how {
                ReleaseMatch::Tgid => {
                    self.remove_pins_of(ev.task.tgid, Release::Policy(rule_id(rule)));
                }
                ReleaseMatch::Arg { index, is, count } => {
                    let Some((first, end)) = released_keys(args, index, is, count) else { continue };
                    if end <= first {
                        continue; // nothing given back
                    }
                    // Each page given back leaves the oldest pin holding it; the rest stay held.
                    self.scratch.clear();
                    self.ix.by_release_key.overlapping(rule as u64, first, end - 1, &mut self.scratch);
                    let slots = self.take_candidates();
                    let mut left = vec![(first, end)];
                    for &slot in &slots {
                        // A candidate may hold none of the pages (the index gives a superset).
                        if !self.pins.get(slot).is_some_and(|p| left.iter().any(|&(lo, hi)| p.holds_key(is, lo, hi))) {
                            continue;
                        }
                        let Some(rest) = self.update_pin(slot, |p| {
                            left.iter().flat_map(|&(lo, hi)| subtract(lo, hi, p.give_back(is, lo, hi))).collect::<Vec<_>>()
                        }) else {
                            continue;
                        };
                        left = rest;
                        if left.is_empty() {
                            break;
                        }
                    }
                    self.give_back_scratch(slots);
                }
            }
        }
    }

    /// Slots of the pins a revocation may cover (to be checked exactly), in id order.
    fn revoke_candidates(&mut self, scope: &Scope) -> Vec<Slot> {
        self.scratch.clear();
        let ix = &self.ix;
        match scope.cause {
            Cause::OwnerRevoke => {
                if let Some(mapping) = scope.mapping {
                    let last = scope.nr_pages.map(|n| scope.first_pgoff.saturating_add(n.max(1) - 1)).unwrap_or(u64::MAX);
                    ix.by_file.overlapping(mapping.0, scope.first_pgoff, last, &mut self.scratch);
                }
            }
            Cause::Zap | Cause::Unmap => {
                if scope.end > 0 {
                    let last = scope.end - 1;
                    if scope.mm != 0 {
                        ix.by_mm.overlapping(scope.mm, scope.start, last, &mut self.scratch);
                    }
                    // Pins of the vma in other mms: a pin's mm is its vma copy's (`add_pin`), and
                    // every copy of a vma pointer pins hold is in the interner, found by pointer.
                    if let Some(v) = scope.vma.filter(|v| v.vma.0 != 0) {
                        for copy in self.vmas.with_hash(self.vmas.hash(v.vma.0)) {
                            if copy.vma == v.vma.0 && (copy.mm != scope.mm || scope.mm == 0) {
                                ix.by_mm.overlapping(copy.mm, scope.start, last, &mut self.scratch);
                            }
                        }
                    }
                }
            }
            Cause::Exit => {
                if scope.mm != 0 {
                    ix.by_mm.all(scope.mm, &mut self.scratch);
                }
            }
        }
        self.take_candidates()
    }

    fn revoke(&mut self, ev: &Event, scope: &Scope) -> Vec<Finding> {
        let slots = self.revoke_candidates(scope);
        let mut found = Vec::new();
        for &slot in &slots {
            let Some(p) = self.pins.get(slot) else { continue };
            if !scope.covers(p) {
                continue;
            }
            let task = p.task();
            let kind = match verdict(p.release, scope.cause, self.exited.contains(&(task.tgid, task.start_time_ns))) {
                Verdict::Nothing => continue,
                Verdict::Ends => {
                    self.remove_pin(slot);
                    continue;
                }
                Verdict::Report(kind) if p.reported.contains(&kind) => continue,
                Verdict::Report(kind) => kind,
            };
            let f = self.finding(p, kind, Some(revocation_evidence(ev, scope.cause)), ev.ts_ns);
            if let Some(p) = self.pins.get_mut(slot) {
                p.reported.push(f.kind);
            }
            found.push(f);
        }
        self.give_back_scratch(slots);
        found
    }
    fn finding(&self, p: &Pin, kind: FindingKind, revocation: Option<RevocationEvidence>, ts_ns: u64) -> Finding {
        make_finding(&self.policy, p, kind, revocation, ts_ns)
    }
}

/// The pin indexes: every question an event asks about pins, answered by slot.
struct PinIndex {
    /// Pins by mm and user address, one interval per run (munmap by mm, exit, coalescing).
    by_mm: IntervalIndex<Slot>,
    /// Pins by file mapping and page-offset interval, one per run (owner revocations).
    by_file: IntervalIndex<Slot>,
    /// Pins by (tgid, release class) (holder exit, releases by tgid).
    by_tgid: SlotLists<(u32, u32)>,
    /// Pins of a rule released by argument, by rule and PFN / user page interval, one per run.
    by_release_key: IntervalIndex<Slot>,
}

impl PinIndex {
    fn new() -> Self {
        Self {
            by_mm: IntervalIndex::new(PAGE - 1),
            by_file: IntervalIndex::new(0),
            by_tgid: SlotLists::new(),
            by_release_key: IntervalIndex::new(0),
        }
    }

    fn add(&mut self, policy: &Policy, slot: Slot, p: &Pin) {
        for r in &p.runs {
            self.by_mm.insert(p.mm, r.start, run_last(r), slot);
        }
        if let Some(v) = p.vma.as_ref() {
            for r in &p.runs {
                let (first, last) = file_pages(v, r);
                self.by_file.insert(v.mapping, first, last, slot);
            }
        }
        self.by_tgid.insert((p.task().tgid, release_class(p.release)), slot);
        if let Some((is, rule)) = release_arg(policy, p.release) {
            for r in &p.runs {
                if let Some((first, last)) = key_pages(r, is) {
                    self.by_release_key.insert(rule, first, last, slot);
                }
            }
        }
    }

    fn remove(&mut self, policy: &Policy, slot: Slot, p: &Pin) {
        for r in &p.runs {
            self.by_mm.remove(p.mm, r.start, slot);
        }
        if let Some(v) = p.vma.as_ref() {
            for r in &p.runs {
                self.by_file.remove(v.mapping, file_pages(v, r).0, slot);
            }
        }
        self.by_tgid.remove((p.task().tgid, release_class(p.release)), slot);
        if let Some((is, rule)) = release_arg(policy, p.release) {
            for r in &p.runs {
                if let Some(key) = r.key(is) {
                    self.by_release_key.remove(rule, key, slot);
                }
            }
        }
    }

    /// After runs of `p` grew at their ends (their starts, the keys, unchanged).
    fn lengthen(&mut self, policy: &Policy, p: &Pin) {
        let release = release_arg(policy, p.release);
        for r in &p.runs {
            self.by_mm.set_last(p.mm, r.start, run_last(r));
            if let Some(v) = p.vma.as_ref() {
                let (first, last) = file_pages(v, r);
                self.by_file.set_last(v.mapping, first, last);
            }
            if let Some((is, rule)) = release
                && let Some((first, last)) = key_pages(r, is)
            {
                self.by_release_key.set_last(rule, first, last);
            }
        }
    }
}

/// For a pin released by argument: what the argument names, and the rule (the release index's
/// group).
fn release_arg(policy: &Policy, release: Release) -> Option<(ArgMeaning, u64)> {
    let Release::Policy(rule) = release else { return None };
    match policy.holders.get(rule as usize)?.release_match {
        ReleaseMatch::Arg { is, .. } => Some((is, u64::from(rule))),
        ReleaseMatch::Tgid => None,
    }
}

/// The finding `kind` of pin `p` (with the revocation that caused it, if one did) at `ts_ns`.
fn make_finding(policy: &Policy, p: &Pin, kind: FindingKind, revocation: Option<RevocationEvidence>, ts_ns: u64) -> Finding {
    let path = p.vma.as_ref().and_then(|v| v.path());
    let holder = p.holder();
    let what = mapping_label(p);
    let release = release_label(policy, p);
    let message = match &revocation {
        Some(r) => format!(
            "{} by {} kept {} page(s) of {} after {} ({}) by {}[{}]",
            p.source_label(),
            holder,
            p.pages(),
            what,
            cause_label(r.cause),
            r.hook,
            r.task.comm,
            r.task.tgid
        ),
        None => format!("{} by {}: {} page(s) of {what} — {}", p.source_label(), holder, p.pages(), kind.description()),
    };
    Finding {
        kind,
        severity: kind.severity(),
        fingerprint: fingerprint(holder, kind, path),
        message,
        ts_ns,
        age_ns: ts_ns.saturating_sub(p.ts_ns),
        pin: p.evidence(release),
        revocation,
    }
}

fn release_label(policy: &Policy, p: &Pin) -> String {
    match p.release {
        Release::FrameVector => "put_vaddr_frames".into(),
        Release::Policy(i) => policy.holders.get(i as usize).map(|h| h.release.join(" | ")).unwrap_or_default(),
        Release::HolderExit => "none declared (ends with the holder process)".into(),
    }
}

/// Findings kept so far and those suppressed, per reason: both correlators' bookkeeping.
#[derive(Default)]
struct Kept {
    findings: Vec<Finding>,
    suppressed_by: BTreeMap<String, u64>,
}

impl Kept {
    /// Applies suppressions and records what is left.
    fn keep(&mut self, policy: &Policy, found: Vec<Finding>) -> Vec<Finding> {
        if found.is_empty() {
            return found;
        }
        let mut kept = Vec::new();
        for f in found {
            if let Some(s) = policy.suppression_for(f.pin.holder.function.as_deref(), f.pin.holder.module.as_deref(), f.kind) {
                *self.suppressed_by.entry(s.reason.clone()).or_insert(0) += 1;
            } else {
                kept.push(f);
            }
        }
        self.findings.extend(kept.iter().cloned());
        kept
    }

    /// The summary's findings, counts and suppressions (the caller fills in the state counts).
    fn summary(&self) -> Summary {
        let mut counts = BTreeMap::new();
        for f in &self.findings {
            *counts.entry(f.kind.name().to_string()).or_insert(0) += 1;
        }
        Summary {
            findings: self.findings.clone(),
            counts,
            suppressed: self.suppressed_by.values().sum(),
            suppressed_by: self.suppressed_by.clone(),
            ..Default::default()
        }
    }
}

/// How a raw lookup by caller `function` in `module` ends, or `None` when it is not a pin (a
/// hooked function that owns its lookups by the probe table's roles, a kernel-internal holder of
/// the policy, a RAM PFN the holder refuses).
fn lookup_release(policy: &Policy, function: Option<&str>, module: Option<&str>, ram: bool) -> Option<Release> {
    if function.is_some_and(|f| table::owns_its_lookups(f, same_function)) {
        return None;
    }
    Some(match policy.holder_for(function, module) {
        Some((_, rule)) if rule.kernel_internal => return None,
        Some((_, rule)) if ram && rule.ram_pfns == RamPfns::Refused => return None,
        Some((index, rule)) if !rule.release.is_empty() => Release::Policy(rule_id(index)),
        _ => Release::HolderExit,
    })
}

/// The id of the policy's holder rule at `index` in a [`Release`]: a policy has far fewer than
/// 2^32 rules (a larger index would name no rule).
fn rule_id(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// Whether each lookup of a page is a hold of its own: a holder whose release gives pages back
/// by argument (vfio returns each IOVA mapping's pages) holds a page looked up twice twice; a
/// holder released by process or never holds it once.
fn counts_holds(policy: &Policy, release: Release) -> bool {
    match release {
        Release::Policy(index) => policy.holders.get(index as usize).is_some_and(|h| matches!(h.release_match, ReleaseMatch::Arg { .. })),
        _ => false,
    }
}

/// What a revocation covering a held pin means for it.
enum Verdict {
    /// Nothing (a process that already exited).
    Nothing,
    /// The pin ends: a lookup without release at its own process's teardown is not a finding.
    Ends,
    Report(FindingKind),
}

fn verdict(release: Release, cause: Cause, holder_exited: bool) -> Verdict {
    match (release, cause) {
        (Release::HolderExit, Cause::Exit) => Verdict::Ends,
        (Release::HolderExit, _) if holder_exited => Verdict::Nothing,
        (Release::HolderExit, _) => Verdict::Report(FindingKind::LookupRevoked),
        (_, Cause::OwnerRevoke | Cause::Zap) => Verdict::Report(FindingKind::PinOutlivedRevocation),
        (_, Cause::Unmap) => Verdict::Report(FindingKind::PinOutlivedUnmap),
        (_, Cause::Exit) => Verdict::Report(FindingKind::PinOutlivedExit),
    }
}

fn revocation_evidence(ev: &Event, cause: Cause) -> RevocationEvidence {
    RevocationEvidence {
        cause,
        hook: ev.hook.clone(),
        symbol: ev.symbol.clone(),
        task: ev.task.clone(),
        caller: ev.caller.clone(),
        ts_ns: ev.ts_ns,
        stack: ev.stack.clone(),
    }
}

/// The pages a release call by argument gives back, as `[first, end)` keys (PFNs or user page
/// numbers); `None` when the argument is missing.
fn released_keys(args: &[Hex], index: usize, is: ArgMeaning, count: Option<usize>) -> Option<(u64, u64)> {
    let arg = |i: usize| args.get(i).map(|h| h.0);
    let value = arg(index)?;
    let first = match is {
        ArgMeaning::Pfn => value,
        ArgMeaning::Address => value / PAGE,
    };
    let pages = count.map_or(Some(1), arg).unwrap_or(1);
    Some((first, first.saturating_add(pages)))
}

/// Last user address byte of a run (a run of no pages indexed as one page: a superset).
fn run_last(r: &Run) -> u64 {
    r.start.saturating_add(r.pages.max(1).saturating_mul(PAGE)).saturating_sub(1)
}

/// First and last file page offsets of a run (vm_pgoff + page index inside the vma): what the
/// by-file index holds and what [`Scope::covers`] compares with an owner revocation.
fn file_pages(v: &PinVma, r: &Run) -> (u64, u64) {
    let first = v.pgoff.saturating_add(r.start.saturating_sub(v.start) / PAGE);
    (first, first.saturating_add(r.pages.max(1) - 1))
}

/// First and last page of a run as a release argument names them ([`Run::key`]): PFNs or user
/// page numbers.
fn key_pages(r: &Run, is: ArgMeaning) -> Option<(u64, u64)> {
    r.key(is).map(|first| (first, first.saturating_add(r.pages.max(1) - 1)))
}

/// What a finding message calls the pinned memory: the file's path, anonymous memory, a file
/// whose path could not be found, or (a frame vector outside any PFN map, whose vma the kernel
/// record does not carry) the user address.
fn mapping_label(p: &Pin) -> String {
    let Some(v) = p.vma.as_deref() else { return format!("user memory at {:#x}", p.start()) };
    match v.path() {
        Some(path) => path.to_owned(),
        None if v.mapping == 0 => "anonymous memory".into(),
        None => format!("a file mapping (dev {} ino {})", v.names.dev, v.ino),
    }
}

fn cause_label(cause: Cause) -> &'static str {
    match cause {
        Cause::OwnerRevoke => "the owner revoked the mapping",
        Cause::Zap => "the driver zapped the ptes",
        Cause::Unmap => "the user unmapped it",
        Cause::Exit => "the process exited",
    }
}

/// What a revocation covers.
struct Scope<'a> {
    cause: Cause,
    mapping: Option<Hex>,
    first_pgoff: u64,
    nr_pages: Option<u64>,
    vma: Option<&'a Vma>,
    start: u64,
    end: u64,
    mm: u64,
}

impl Scope<'_> {
    fn covers(&self, p: &Pin) -> bool {
        match self.cause {
            Cause::OwnerRevoke => {
                let (Some(mapping), Some(vma)) = (self.mapping, p.vma.as_ref()) else { return false };
                if vma.mapping != mapping.0 {
                    return false;
                }
                let revoke_last = self.nr_pages.map(|n| self.first_pgoff.saturating_add(n.max(1) - 1)).unwrap_or(u64::MAX);
                p.runs.iter().any(|r| {
                    let (first, last) = file_pages(vma, r);
                    first <= revoke_last && self.first_pgoff <= last
                })
            }
            Cause::Zap | Cause::Unmap => {
                let same_vma = self.vma.is_some_and(|v| v.vma.0 != 0 && p.vma_ptr() == v.vma.0);
                let same_mm = self.mm != 0 && p.mm == self.mm;
                (same_vma || same_mm) && p.runs.iter().any(|r| r.start < self.end && self.start < r.end())
            }
            Cause::Exit => self.mm != 0 && p.mm == self.mm,
        }
    }
}

#[cfg(test)]
mod equivalence;
#[cfg(test)]
mod tests;
