//! The correlator as it was before its indexes: every event scans every pin. Kept as the
//! reference the indexed [`super::Correlator`] is checked against on random streams (tests only).
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use super::{
    Kept, PAGE, Scope, Summary, Verdict, lookup_release, make_finding,
    pin::{Names, Origin, Pin, PinVma, Release, subtract},
    released_keys, revocation_evidence, verdict,
};
use crate::{
    policy::{Policy, ReleaseMatch},
    vocab::{
        event::{Event, EventBody, Hex, Vma},
        finding::{Finding, FindingKind, Holder, PinSource, RevocationEvidence},
    },
};

pub(crate) struct Reference {
    policy: Policy,
    /// Known PFN-mapped vmas by vma pointer.
    pfnmaps: HashMap<u64, Vma>,
    pins: Vec<Pin>,
    next_pin_id: u64,
    exited: HashSet<(u32, u64)>,
    kept: Kept,
    pins_without_vma: u64,
    last_ts: u64,
}

impl Reference {
    pub fn new(policy: &Policy) -> Self {
        Self {
            policy: policy.clone(),
            pfnmaps: HashMap::new(),
            pins: Vec::new(),
            next_pin_id: 1,
            exited: HashSet::new(),
            kept: Kept::default(),
            pins_without_vma: 0,
            last_ts: 0,
        }
    }

    /// Feeds one event; returns the findings it caused, in a deterministic order.
    pub fn handle(&mut self, ev: &Event) -> Vec<Finding> {
        self.last_ts = self.last_ts.max(ev.ts_ns);
        let found = match &ev.body {
            EventBody::PfnMap { vma, .. } => {
                self.pfnmaps.insert(vma.vma.0, vma.clone());
                Vec::new()
            }
            EventBody::VmaFree { vma } => {
                self.pfnmaps.remove(&vma.vma.0);
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
                self.pins.retain(|p| p.vec() != Some(*vec));
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
                self.pins.retain(|p| !(p.release == Release::HolderExit && p.task().tgid == ev.task.tgid));
                Vec::new()
            }
        };
        self.kept.keep(&self.policy, found)
    }

    /// Ends the run: pins with a release still held are leaks. Returns every finding of the run.
    pub fn finish(&mut self) -> Summary {
        let leaked: Vec<Finding> = self
            .pins
            .iter()
            .filter(|p| p.release != Release::HolderExit)
            .map(|p| self.finding(p, FindingKind::PinLeaked, None, self.last_ts))
            .collect();
        self.kept.keep(&self.policy, leaked);
        Summary { pins_held: self.pins.len() as u64, pins_without_vma: self.pins_without_vma, ..self.kept.summary() }
    }

    /// Pins currently held (for tests and metrics).
    pub fn pins_held(&self) -> usize {
        self.pins.len()
    }

    /// The vma a lookup came from: as recorded, completed with what the PFN map knew; for
    /// mm-only lookups (follow_pte before 6.10) the PFN map containing the address.
    fn resolve_vma(&self, vma: &Vma, address: u64) -> Option<Arc<PinVma>> {
        if vma.vma.0 != 0 {
            let mut v = vma.clone();
            if v.path.is_none() {
                v.path = self.pfnmaps.get(&vma.vma.0).and_then(|m| m.path.clone());
            }
            return Some(own_copy(&v));
        }
        self.pfnmap_at(vma.mm.0, address)
    }

    fn pfnmap_at(&self, mm: u64, address: u64) -> Option<Arc<PinVma>> {
        let mut hits: Vec<&Vma> = self.pfnmaps.values().filter(|m| m.mm.0 == mm && m.start.0 <= address && address < m.end.0).collect();
        hits.sort_by_key(|m| m.vma.0);
        hits.first().map(|m| own_copy(m))
    }

    fn raw_lookup(&mut self, ev: &Event, recorded: &Vma, address: u64, pfn: u64, ram: bool) {
        let holder = Holder::from_frame(ev.caller.as_ref());
        let Some(release) = lookup_release(&self.policy, holder.function.as_deref(), holder.module.as_deref(), ram) else { return };
        let counts_holds = super::counts_holds(&self.policy, release);
        let page = address & !(PAGE - 1);
        let vma = self.resolve_vma(recorded, page);
        // Without its vma the pin still has the lookup's mm: munmap and exit find it.
        let mm = vma.as_ref().map_or(recorded.mm.0, |v| v.mm);
        let vma_ptr = vma.as_ref().map_or(0, |v| v.vma);
        // vfio and friends look up one page at a time: extend the holder's pin when this page
        // continues one of its runs (or is already in it).
        if self.pins.iter_mut().any(|p| {
            p.source() == PinSource::RawLookup
                && p.holder().function == holder.function
                && p.holder().module == holder.module
                && p.task().tgid == ev.task.tgid
                && p.vma_ptr() == vma_ptr
                && p.mm == mm
                && !(counts_holds && p.holds(page, pfn))
                && p.absorb(page, pfn)
        }) {
            return;
        }
        if vma.is_none() {
            self.pins_without_vma += 1;
        }
        let origin = Arc::new(Origin::of(ev, PinSource::RawLookup));
        let pin = Pin::raw(self.next_pin_id, origin, ev.ts_ns, vma, mm, page, pfn, release);
        self.next_pin_id += 1;
        self.pins.push(pin);
    }

    #[allow(clippy::too_many_arguments)]
    fn frames_get(&mut self, ev: &Event, vec: Hex, start: u64, mm: u64, nr_frames: u32, is_pfns: bool, pfns: &[u64]) -> Vec<Finding> {
        let vma = self.pfnmap_at(mm, start);
        let origin = Arc::new(Origin::of(ev, PinSource::FrameVector));
        let pin = Pin::frames(self.next_pin_id, origin, ev.ts_ns, vec, start, mm, nr_frames, pfns, vma);
        self.next_pin_id += 1;
        let found = if is_pfns { vec![self.finding(&pin, FindingKind::PfnmapFrameVector, None, ev.ts_ns)] } else { Vec::new() };
        self.pins.retain(|p| p.vec() != Some(vec)); // a reused vector pointer replaces its old pin
        self.pins.push(pin);
        found
    }

    fn release_call(&mut self, ev: &Event, args: &[Hex]) {
        for (rule, how) in
            self.policy.holders.iter().enumerate().filter(|(_, h)| h.released_by(&ev.hook)).map(|(i, h)| (i, h.release_match))
        {
            let of_rule = |p: &Pin| p.release == Release::Policy(super::rule_id(rule));
            match how {
                ReleaseMatch::Tgid => self.pins.retain(|p| !(of_rule(p) && p.task().tgid == ev.task.tgid)),
                ReleaseMatch::Arg { index, is, count } => {
                    let Some((first, end)) = released_keys(args, index, is, count) else { continue };
                    let mut left = vec![(first, end)];
                    for p in self.pins.iter_mut().filter(|p| of_rule(p)) {
                        left = left.into_iter().flat_map(|(lo, hi)| subtract(lo, hi, p.give_back(is, lo, hi))).collect();
                        if left.is_empty() {
                            break;
                        }
                    }
                    self.pins.retain(|p| !p.is_empty());
                }
            }
        }
    }

    fn revoke(&mut self, ev: &Event, scope: &Scope) -> Vec<Finding> {
        let mut found = Vec::new();
        let mut ended: Vec<u64> = Vec::new();
        for p in &self.pins {
            if !scope.covers(p) {
                continue;
            }
            let kind = match verdict(p.release, scope.cause, self.exited.contains(&(p.task().tgid, p.task().start_time_ns))) {
                Verdict::Nothing => continue,
                Verdict::Ends => {
                    ended.push(p.id);
                    continue;
                }
                Verdict::Report(kind) if p.reported.contains(&kind) => continue,
                Verdict::Report(kind) => kind,
            };
            found.push((p.id, self.finding(p, kind, Some(revocation_evidence(ev, scope.cause)), ev.ts_ns)));
        }
        self.pins.retain(|p| !ended.contains(&p.id));
        for (id, f) in &found {
            if let Some(p) = self.pins.iter_mut().find(|p| p.id == *id) {
                p.reported.push(f.kind);
            }
        }
        found.into_iter().map(|(_, f)| f).collect()
    }

    fn finding(&self, p: &Pin, kind: FindingKind, revocation: Option<RevocationEvidence>, ts_ns: u64) -> Finding {
        make_finding(&self.policy, p, kind, revocation, ts_ns)
    }
}

/// A vma copy of the pin's own: the reference shares nothing.
fn own_copy(v: &Vma) -> Arc<PinVma> {
    Arc::new(PinVma::of(v, Arc::new(Names { dev: v.dev.clone(), path: v.path.clone() })))
}
