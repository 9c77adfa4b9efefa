//! The correlator: events in, findings out, no I/O. Live runs and `replay` share it.
//!
//! State: PFN maps by vma pointer (for paths and mm-only lookups), the pins currently held, and
//! the processes known to have exited. MODEL.md has the tables this implements.
pub mod finding;
mod pin;
pub mod synthetic;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::{
    event::{Cause, Event, EventBody, Hex, Vma},
    policy::{ArgMeaning, Policy, RamPfns, ReleaseMatch, same_function},
};
pub use finding::{Finding, FindingKind, Holder, PinSource, Severity};
use finding::{RevocationEvidence, fingerprint};
use pin::{Pin, Release, subtract};

use crate::probes::table::NESTING_HOOKS;

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
}

impl Summary {
    /// End-of-run lines for humans: suppressions per reason, pins whose vma stayed unknown.
    pub fn notes(&self) -> Vec<String> {
        notes(&self.suppressed_by, self.pins_without_vma)
    }
}

/// End-of-run lines for humans, from a summary's suppressions and pins without a vma.
pub fn notes(suppressed_by: &BTreeMap<String, u64>, pins_without_vma: u64) -> Vec<String> {
    let mut notes: Vec<String> = suppressed_by.iter().map(|(reason, n)| format!("suppressed: {reason}: {n}")).collect();
    if pins_without_vma > 0 {
        notes.push(format!(
            "{pins_without_vma} pin(s) without a known vma (no PFN map of the run contains their address): an owner revocation of their file cannot be matched to them"
        ));
    }
    notes
}

pub struct Correlator {
    policy: Policy,
    /// Known PFN-mapped vmas by vma pointer.
    pfnmaps: HashMap<u64, Vma>,
    pins: Vec<Pin>,
    next_pin_id: u64,
    exited: HashSet<u32>,
    findings: Vec<Finding>,
    suppressed_by: BTreeMap<String, u64>,
    pins_without_vma: u64,
    last_ts: u64,
}

impl Correlator {
    pub fn new(policy: &Policy) -> Self {
        Self {
            policy: policy.clone(),
            pfnmaps: HashMap::new(),
            pins: Vec::new(),
            next_pin_id: 1,
            exited: HashSet::new(),
            findings: Vec::new(),
            suppressed_by: BTreeMap::new(),
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
                self.pins.retain(|p| p.vec != Some(*vec));
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
                self.exited.insert(ev.task.tgid);
                // Pins without a declared release end with their holder process.
                self.pins.retain(|p| !(p.release == Release::HolderExit && p.task.tgid == ev.task.tgid));
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
        let mut counts = BTreeMap::new();
        for f in &self.findings {
            *counts.entry(f.kind.name().to_string()).or_insert(0) += 1;
        }
        Summary {
            findings: self.findings.clone(),
            counts,
            suppressed: self.suppressed_by.values().sum(),
            suppressed_by: self.suppressed_by.clone(),
            pins_held: self.pins.len() as u64,
            pins_without_vma: self.pins_without_vma,
        }
    }

    /// Pins currently held (for tests and metrics).
    pub fn pins_held(&self) -> usize {
        self.pins.len()
    }

    /// Applies suppressions and records what is left.
    fn keep(&mut self, found: Vec<Finding>) -> Vec<Finding> {
        let mut kept = Vec::new();
        for f in found {
            if let Some(s) = self.policy.suppression_for(f.pin.holder.function.as_deref(), f.pin.holder.module.as_deref(), f.kind) {
                *self.suppressed_by.entry(s.reason.clone()).or_insert(0) += 1;
            } else {
                kept.push(f);
            }
        }
        self.findings.extend(kept.iter().cloned());
        kept
    }

    /// The vma a lookup came from: as recorded, completed with what the PFN map knew; for
    /// mm-only lookups (follow_pte before 6.10) the PFN map containing the address.
    fn resolve_vma(&self, vma: &Vma, address: u64) -> Option<Vma> {
        if vma.vma.0 != 0 {
            let mut v = vma.clone();
            if v.path.is_none() {
                v.path = self.pfnmaps.get(&vma.vma.0).and_then(|m| m.path.clone());
            }
            return Some(v);
        }
        self.pfnmap_at(vma.mm.0, address)
    }

    fn pfnmap_at(&self, mm: u64, address: u64) -> Option<Vma> {
        let mut hits: Vec<&Vma> = self.pfnmaps.values().filter(|m| m.mm.0 == mm && m.start.0 <= address && address < m.end.0).collect();
        hits.sort_by_key(|m| m.vma.0);
        hits.first().map(|m| (*m).clone())
    }

    fn raw_lookup(&mut self, ev: &Event, recorded: &Vma, address: u64, pfn: u64, ram: bool) {
        let holder = Holder::from_frame(ev.caller.as_ref());
        // Callers whose lookups belong to another hooked call (the probe table's nesting hooks).
        // The eBPF side already drops them; this covers recordings from other sources. Kernel
        // code that looks PFNs up for its own bookkeeping (x86 PAT, ptrace) is in the catalog
        // (`kernel_internal` holders).
        if holder.function.as_deref().is_some_and(|f| NESTING_HOOKS.iter().any(|n| same_function(n.name(), f))) {
            return;
        }
        let release = match self.policy.holder_for(holder.function.as_deref(), holder.module.as_deref()) {
            Some((_, rule)) if rule.kernel_internal => return,
            Some((_, rule)) if ram && rule.ram_pfns == RamPfns::Refused => return,
            Some((index, rule)) if !rule.release.is_empty() => Release::Policy(index),
            _ => Release::HolderExit,
        };
        let page = address & !(PAGE - 1);
        let vma = self.resolve_vma(recorded, page);
        // Without its vma the pin still has the lookup's mm: munmap and exit find it.
        let mm = vma.as_ref().map_or(recorded.mm.0, |v| v.mm.0);
        let vma_ptr = vma.as_ref().map(|v| v.vma.0).unwrap_or(0);
        // vfio and friends look up one page at a time: extend the holder's pin when this page
        // continues one of its runs (or is already in it).
        if self.pins.iter_mut().any(|p| {
            p.source == PinSource::RawLookup
                && p.holder.function == holder.function
                && p.holder.module == holder.module
                && p.task.tgid == ev.task.tgid
                && p.vma_ptr() == vma_ptr
                && p.mm == mm
                && p.absorb(page, pfn)
        }) {
            return;
        }
        if vma.is_none() {
            self.pins_without_vma += 1;
        }
        let pin = Pin::raw(self.next_pin_id, ev, holder, vma, mm, page, pfn, release);
        self.next_pin_id += 1;
        self.pins.push(pin);
    }

    #[allow(clippy::too_many_arguments)]
    fn frames_get(&mut self, ev: &Event, vec: Hex, start: u64, mm: u64, nr_frames: u32, is_pfns: bool, pfns: &[u64]) -> Vec<Finding> {
        let vma = self.pfnmap_at(mm, start);
        let pin = Pin::frames(self.next_pin_id, ev, vec, start, mm, nr_frames, pfns, vma);
        self.next_pin_id += 1;
        let found = if is_pfns { vec![self.finding(&pin, FindingKind::PfnmapFrameVector, None, ev.ts_ns)] } else { Vec::new() };
        self.pins.retain(|p| p.vec != Some(vec)); // a reused vector pointer replaces its old pin
        self.pins.push(pin);
        found
    }

    fn release_call(&mut self, ev: &Event, args: &[Hex]) {
        let arg = |i: usize| args.get(i).map(|h| h.0);
        for (rule, how) in
            self.policy.holders.iter().enumerate().filter(|(_, h)| h.released_by(&ev.hook)).map(|(i, h)| (i, h.release_match))
        {
            let of_rule = |p: &Pin| p.release == Release::Policy(rule);
            match how {
                ReleaseMatch::Tgid => self.pins.retain(|p| !(of_rule(p) && p.task.tgid == ev.task.tgid)),
                ReleaseMatch::Arg { index, is, count } => {
                    let Some(value) = arg(index) else { continue };
                    let first = match is {
                        ArgMeaning::Pfn => value,
                        ArgMeaning::Address => value / PAGE,
                    };
                    let pages = count.map_or(Some(1), arg).unwrap_or(1);
                    // Each page given back leaves the oldest pin holding it; the rest stay held.
                    let mut left = vec![(first, first.saturating_add(pages))];
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
            let kind = match (p.release, scope.cause) {
                // A lookup with no release ends with its process: the process's own teardown is
                // not a finding.
                (Release::HolderExit, Cause::Exit) => {
                    ended.push(p.id);
                    continue;
                }
                (Release::HolderExit, _) if self.exited.contains(&p.task.tgid) => continue,
                (Release::HolderExit, _) => FindingKind::LookupRevoked,
                (_, Cause::OwnerRevoke | Cause::Zap) => FindingKind::PinOutlivedRevocation,
                (_, Cause::Unmap) => FindingKind::PinOutlivedUnmap,
                (_, Cause::Exit) => FindingKind::PinOutlivedExit,
            };
            if p.reported.contains(&kind) {
                continue;
            }
            let revocation = RevocationEvidence {
                cause: scope.cause,
                hook: ev.hook.clone(),
                task: ev.task.clone(),
                caller: ev.caller.clone(),
                ts_ns: ev.ts_ns,
                stack: ev.stack.clone(),
            };
            found.push((p.id, self.finding(p, kind, Some(revocation), ev.ts_ns)));
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
        let path = p.vma.as_ref().and_then(|v| v.path.clone());
        let what = mapping_label(p);
        let release = self.release_label(p);
        let message = match &revocation {
            Some(r) => format!(
                "{} by {} kept {} page(s) of {} after {} ({}) by {}[{}]",
                p.source_label(),
                p.holder,
                p.pages(),
                what,
                cause_label(r.cause),
                r.hook,
                r.task.comm,
                r.task.tgid
            ),
            None => format!("{} by {}: {} page(s) of {what} — {}", p.source_label(), p.holder, p.pages(), kind.description()),
        };
        Finding {
            kind,
            severity: kind.severity(),
            fingerprint: fingerprint(&p.holder, kind, path.as_deref()),
            message,
            ts_ns,
            age_ns: ts_ns.saturating_sub(p.ts_ns),
            pin: p.evidence(release),
            revocation,
        }
    }

    fn release_label(&self, p: &Pin) -> String {
        match p.release {
            Release::FrameVector => "put_vaddr_frames".into(),
            Release::Policy(i) => self.policy.holders.get(i).map(|h| h.release.join(" | ")).unwrap_or_default(),
            Release::HolderExit => "none declared (ends with the holder process)".into(),
        }
    }
}

/// What a finding message calls the pinned memory: the file's path, anonymous memory, a file
/// whose path could not be found, or (a frame vector outside any PFN map, whose vma the kernel
/// record does not carry) the user address.
fn mapping_label(p: &Pin) -> String {
    match &p.vma {
        Some(crate::event::Vma { path: Some(path), .. }) => path.clone(),
        Some(v) if v.mapping.0 == 0 => "anonymous memory".into(),
        Some(v) => format!("a file mapping (dev {} ino {})", v.dev, v.ino),
        None => format!("user memory at {:#x}", p.start()),
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
                if vma.mapping != mapping {
                    return false;
                }
                let revoke_last = self.nr_pages.map(|n| self.first_pgoff.saturating_add(n.max(1) - 1)).unwrap_or(u64::MAX);
                p.runs.iter().any(|r| {
                    // File page offsets of the run: vm_pgoff + page index inside the vma.
                    let first = vma.pgoff + r.start.saturating_sub(vma.start.0) / PAGE;
                    let last = first + r.pages.max(1) - 1;
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
mod tests;
