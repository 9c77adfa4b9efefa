//! Synthetic event streams shaped like what the kernel emits, for tests and benchmarks. Each
//! helper models one kernel call; pointers are made-up but consistent.
use crate::vocab::event::{Cause, Event, EventBody, Frame, Hex, HookRef, Task, Vma};

pub(crate) const DEVICE_PATH: &str = "/dev/pfnaudit";

/// Builds a stream with increasing `seq` and `ts_ns` (1 µs apart).
pub struct Stream {
    pub events: Vec<Event>,
    ts: u64,
}

impl Default for Stream {
    fn default() -> Self {
        Self { events: Vec::new(), ts: 1_000_000 }
    }
}

/// A process with one PFN-mapped vma of `pages` pages of the device.
#[derive(Clone)]
pub struct Proc {
    pub tgid: u32,
    pub comm: &'static str,
    pub mm: u64,
    pub vma: u64,
    pub mapping: u64,
    pub start: u64,
    pub pages: u64,
    pub first_pfn: u64,
    /// Thread-group leader start time, ns since boot: with `tgid` it names the process.
    pub start_time_ns: u64,
}

impl Proc {
    pub fn new(tgid: u32) -> Self {
        Self {
            tgid,
            comm: "scenario",
            mm: 0xffff_8880_0100_0000 + tgid as u64 * 0x1000,
            vma: 0xffff_8880_0200_0000 + tgid as u64 * 0x1000,
            mapping: 0xffff_8880_0300_0000,
            start: 0x7f00_0000_0000,
            pages: 4,
            first_pfn: 0x10_0000 + tgid as u64 * 0x100,
            start_time_ns: 42,
        }
    }

    pub fn task(&self) -> Task {
        Task { tgid: self.tgid, pid: self.tgid, start_time_ns: self.start_time_ns, comm: self.comm.into() }
    }

    pub fn vma(&self) -> Vma {
        Vma {
            vma: Hex(self.vma),
            mm: Hex(self.mm),
            start: Hex(self.start),
            end: Hex(self.start + self.pages * 4096),
            flags: Hex(auditor_common::VM_IO | auditor_common::VM_PFNMAP),
            pgoff: 0,
            mapping: Hex(self.mapping),
            ino: 7,
            dev: "00:05".into(),
            path: Some(DEVICE_PATH.into()),
        }
    }
}

pub fn frame(function: &str, module: Option<&str>) -> Frame {
    Frame {
        addr: Hex(0xffff_ffff_c000_0000),
        function: Some(function.into()),
        offset: 0x2a,
        module: module.map(Into::into),
        ..Frame::default()
    }
}

/// The findings of one frame-vector pin of 4 pages kept past a munmap (one error finding): what
/// report tests render.
#[cfg(test)]
pub(crate) fn kept_past_munmap() -> Vec<super::Finding> {
    let p = Proc::new(1);
    let mut s = Stream::default();
    s.frames_get(&p, 0x1000, false, 4).vma_revoke(&p, Cause::Unmap, 0..4);
    let mut c = super::Correlator::new(&crate::policy::Policy::default());
    s.events.iter().flat_map(|e| c.handle(e)).collect()
}

impl Stream {
    pub fn push(&mut self, hook: &str, task: Task, caller: Option<Frame>, body: EventBody) -> &mut Self {
        self.ts += 1_000;
        let stack: Vec<Frame> = std::iter::once(frame(hook, None)).chain(caller.clone()).collect();
        self.events.push(Event {
            seq: self.events.len() as u64,
            ts_ns: self.ts,
            hook: HookRef::from_name(hook),
            symbol: None,
            task,
            caller,
            stack,
            body,
        });
        self
    }

    pub fn pfn_map(&mut self, p: &Proc) -> &mut Self {
        let body = EventBody::PfnMap { vma: p.vma(), addr: Hex(p.start), pfn: p.first_pfn, pages: p.pages };
        self.push("remap_pfn_range", p.task(), Some(frame("pfnaudit_mmap", Some("pfnaudit_test"))), body)
    }

    /// One `follow_pfn()` per page from `holder` in `module`.
    pub fn lookups(&mut self, p: &Proc, holder: &str, module: &str, pages: std::ops::Range<u64>) -> &mut Self {
        for i in pages {
            let body = EventBody::RawLookup { vma: p.vma(), address: Hex(p.start + i * 4096), pfn: p.first_pfn + i, ram: false };
            self.push("follow_pfn", p.task(), Some(frame(holder, Some(module))), body);
        }
        self
    }

    pub fn release(&mut self, p: &Proc, function: &str, arg0: u64) -> &mut Self {
        self.release_args(p, function, [arg0, 0, 0, 0, 0, 0])
    }

    /// A call of release hook `function` with these six arguments.
    pub(crate) fn release_args(&mut self, p: &Proc, function: &str, args: [u64; 6]) -> &mut Self {
        let body = EventBody::ReleaseCall { args: args.into_iter().map(Hex).collect() };
        self.push(function, p.task(), Some(frame("pfnaudit_ioctl", Some("pfnaudit_test"))), body)
    }

    pub fn owner_revoke(&mut self, p: &Proc, first_pgoff: u64, nr_pages: Option<u64>) -> &mut Self {
        let body = EventBody::Revoke {
            cause: Cause::OwnerRevoke,
            mapping: Some(Hex(p.mapping)),
            first_pgoff,
            nr_pages,
            vma: None,
            start: Hex(0),
            end: Hex(0),
            mm: Hex(0),
        };
        self.push("unmap_mapping_range", p.task(), Some(frame("pfnaudit_ioctl", Some("pfnaudit_test"))), body)
    }

    /// Zap or munmap of `[first, last)` pages of the process's vma.
    pub fn vma_revoke(&mut self, p: &Proc, cause: Cause, pages: std::ops::Range<u64>) -> &mut Self {
        let hook = if cause == Cause::Zap { "zap_vma_ptes" } else { "unmap_page_range" };
        let body = EventBody::Revoke {
            cause,
            mapping: Some(Hex(p.mapping)),
            first_pgoff: 0,
            nr_pages: None,
            vma: Some(p.vma()),
            start: Hex(p.start + pages.start * 4096),
            end: Hex(p.start + pages.end * 4096),
            mm: Hex(p.mm),
        };
        self.push(hook, p.task(), Some(frame("unmap_vmas", None)), body)
    }

    /// The process exits: its mm is torn down, then its thread-group leader is gone.
    pub fn exit(&mut self, p: &Proc) -> &mut Self {
        self.exit_mmap(p).push("sched_process_exit", p.task(), None, EventBody::TaskExit {})
    }

    /// The mm of `p` torn down (`exit_mmap`), without the task's exit.
    pub(crate) fn exit_mmap(&mut self, p: &Proc) -> &mut Self {
        let body = EventBody::Revoke {
            cause: Cause::Exit,
            mapping: None,
            first_pgoff: 0,
            nr_pages: None,
            vma: None,
            start: Hex(0),
            end: Hex(0),
            mm: Hex(p.mm),
        };
        self.push("exit_mmap", p.task(), Some(frame("__mmput", None)), body)
    }

    pub fn frames_get(&mut self, p: &Proc, vec: u64, is_pfns: bool, pages: u32) -> &mut Self {
        let body = EventBody::FramesGet {
            vec: Hex(vec),
            start: Hex(p.start),
            mm: Hex(p.mm),
            nr_frames: pages,
            is_pfns,
            got_ref: !is_pfns,
            pfns: (0..pages as u64).map(|i| p.first_pfn + i).collect(),
        };
        self.push("get_vaddr_frames", p.task(), Some(frame("pfnaudit_pin_frames", Some("pfnaudit_test"))), body)
    }

    pub fn frames_put(&mut self, p: &Proc, vec: u64) -> &mut Self {
        self.push(
            "put_vaddr_frames",
            p.task(),
            Some(frame("pfnaudit_unpin_frames", Some("pfnaudit_test"))),
            EventBody::FramesPut { vec: Hex(vec) },
        )
    }

    /// A truncate of an unrelated file: revocations of a mapping nobody pinned.
    pub fn unrelated_truncate(&mut self, p: &Proc) -> &mut Self {
        let body = EventBody::Revoke {
            cause: Cause::OwnerRevoke,
            mapping: Some(Hex(0xffff_8880_0900_0000)),
            first_pgoff: 0,
            nr_pages: None,
            vma: None,
            start: Hex(0),
            end: Hex(0),
            mm: Hex(0),
        };
        self.push("unmap_mapping_range", p.task(), Some(frame("truncate_pagecache", None)), body)
    }
}

/// A fleet of test-rig processes, 100 PFN maps each, each map on its own file and pinned once
/// by a raw lookup of [`FLEET_HOLDER`] (a holder with a release): the shape of the scaling
/// benchmarks and of `examples/gen-recording.rs`. Pin `i` is one page; events are made one at
/// a time so a million pins need no million-event vector.
pub struct Fleet {
    pub pins: u64,
    pub per_process: u64,
}

/// The fleet's holder and its policy (released by PFN, one page per call).
pub(crate) const FLEET_HOLDER: &str = "rig_pin_pfn";
pub const FLEET_POLICY: &str = "[[holder]]\nmodule = \"rig\"\nfunction = \"rig_pin_pfn\"\nrelease = [\"rig_unpin_pfn\"]\nrelease_match = \"arg0\"\nrelease_arg_is = \"pfn\"\n";

impl Fleet {
    pub fn new(pins: u64) -> Self {
        Self { pins, per_process: 100 }
    }

    /// The process and PFN map of pin `i`: a 16-page map on file mapping `i`.
    pub fn proc(&self, i: u64) -> Proc {
        let tgid = 1000 + (i / self.per_process) as u32;
        Proc {
            tgid,
            comm: "rig",
            mm: 0xffff_8880_0000_0000 + tgid as u64 * 0x1000,
            vma: 0xffff_8890_0000_0000 + i * 0x100,
            mapping: 0xffff_88a0_0000_0000 + i * 0x100,
            start: 0x7f00_0000_0000 + (i % self.per_process) * 0x10_0000,
            pages: 16,
            first_pfn: 0x100_0000 + i * 16,
            start_time_ns: 42,
        }
    }

    /// Event `n` of the stream: PFN maps and pins (2 per pin), `noise` unrelated truncates,
    /// then an owner revocation of every pinned file. `None` past the end.
    pub fn event(&self, n: u64, noise: u64) -> Option<Event> {
        let mut s = Stream { events: Vec::new(), ts: 1_000_000 + n * 1_000 };
        let setup = 2 * self.pins;
        if n < setup {
            let p = self.proc(n / 2);
            if n.is_multiple_of(2) {
                s.pfn_map(&p)
            } else {
                s.lookups(&p, FLEET_HOLDER, "rig", 0..1)
            };
        } else if n < setup + noise {
            s.unrelated_truncate(&self.proc(0));
        } else if n < setup + noise + self.pins {
            s.owner_revoke(&self.proc(n - setup - noise), 0, None);
        } else {
            return None;
        }
        let mut ev = s.events.pop()?;
        ev.seq = n;
        Some(ev)
    }

    /// Events that keep the number of live pins constant, for measuring the cost of one event at
    /// a given state size: a lookup pinning page `2 + j % 8` of pin `j`'s map (a new pin), an
    /// unrelated truncate, a munmap of pages 12..16 (no pin there) and the release of the new
    /// page: no findings.
    pub fn steady_cycle(&self, j: u64) -> [Event; 4] {
        let p = self.proc(j % self.pins.max(1));
        let page = 2 + j % 8;
        let mut s = Stream::default();
        s.lookups(&p, FLEET_HOLDER, "rig", page..page + 1).unrelated_truncate(&p).vma_revoke(&p, Cause::Unmap, 12..16).release_args(
            &p,
            "rig_unpin_pfn",
            [p.first_pfn + page, 0, 0, 0, 0, 0],
        );
        let [a, b, c, d]: [Event; 4] = s.events.try_into().expect("four events");
        [a, b, c, d]
    }
}
