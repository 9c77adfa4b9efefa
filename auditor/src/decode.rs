//! Raw ring-buffer records → typed, enriched [`Event`]s.
//!
//! The kernel snapshot in each record is the truth; enrichment only adds names: kernel frames
//! from kallsyms and file paths (`file_paths.rs`: /proc/PID/maps, else the file with the recorded
//! device and inode; absent when neither finds it).
use std::collections::HashMap;

use auditor_common::{
    EventKind, FileNameEvent, FramesGetEvent, FramesPutEvent, HOOK_COUNT, Header, Hook, MAX_FRAMES, PfnMapEvent, RawLookupEvent,
    ReleaseCallEvent, RevokeCause, RevokeEvent, TaskExitEvent, TaskInfo, VmaFreeEvent, VmaInfo,
};

use crate::{
    file_names::KernelFileNames,
    file_paths::FilePaths,
    module_lines::ModuleDebugInfo,
    probes::table::wrappers_of,
    symbols::{KernelSymbols, attached_symbol, caller_of},
    vocab::event::{Cause, Event, EventBody, Frame, Hex, HookRef, Task, Vma},
};

/// Why a record could not be decoded (a version mismatch between the eBPF object and the daemon
/// would show up here; it is counted, never fatal).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("{kind:?} record has {got} bytes, expected {want}")]
    Size { kind: EventKind, got: usize, want: usize },
}

/// Reads a `#[repr(C)]` record of integers from the front of `bytes`.
fn read<T: Copy>(bytes: &[u8], kind: EventKind) -> Result<T, DecodeError> {
    let want = size_of::<T>();
    if bytes.len() < want {
        return Err(DecodeError::Size { kind, got: bytes.len(), want });
    }
    // SAFETY: length checked; T is a repr(C) struct of integers (any bit pattern is valid) and
    // read_unaligned copes with the ring buffer's 8-byte alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// A record as the kernel wrote it. One is parsed, decoded and dropped at a time: the size of the
/// largest variant (a file name, ~0.5 KiB) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug)]
pub enum RawRecord {
    PfnMap(PfnMapEvent),
    RawLookup(RawLookupEvent),
    FramesGet(FramesGetEvent),
    FramesPut(FramesPutEvent),
    Revoke(RevokeEvent),
    VmaFree(VmaFreeEvent),
    ReleaseCall(ReleaseCallEvent),
    TaskExit(TaskExitEvent),
    FileName(FileNameEvent),
}

impl RawRecord {
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < size_of::<Header>() {
            return Err(DecodeError::Short(bytes.len()));
        }
        let kind_raw = u32::from_ne_bytes(bytes[0..4].try_into().expect("4 bytes"));
        let kind = EventKind::from_u32(kind_raw).ok_or(DecodeError::UnknownKind(kind_raw))?;
        Ok(match kind {
            EventKind::PfnMap => Self::PfnMap(read(bytes, kind)?),
            EventKind::RawLookup => Self::RawLookup(read(bytes, kind)?),
            EventKind::FramesGet => Self::FramesGet(read(bytes, kind)?),
            EventKind::FramesPut => Self::FramesPut(read(bytes, kind)?),
            EventKind::Revoke => Self::Revoke(read(bytes, kind)?),
            EventKind::VmaFree => Self::VmaFree(read(bytes, kind)?),
            EventKind::ReleaseCall => Self::ReleaseCall(read(bytes, kind)?),
            EventKind::TaskExit => Self::TaskExit(read(bytes, kind)?),
            EventKind::FileName => Self::FileName(read(bytes, kind)?),
        })
    }

    /// The hook slot a record names, if it is long enough to have one (for counting a record that
    /// does not parse as a loss of its hook).
    pub fn hook_slot(bytes: &[u8]) -> Option<u32> {
        Some(u32::from_ne_bytes(bytes.get(4..8)?.try_into().ok()?))
    }

    pub fn header(&self) -> &Header {
        match self {
            Self::PfnMap(e) => &e.hdr,
            Self::RawLookup(e) => &e.hdr,
            Self::FramesGet(e) => &e.hdr,
            Self::FramesPut(e) => &e.hdr,
            Self::Revoke(e) => &e.hdr,
            Self::VmaFree(e) => &e.hdr,
            Self::ReleaseCall(e) => &e.hdr,
            Self::TaskExit(e) => &e.hdr,
            Self::FileName(e) => &e.hdr,
        }
    }
}

/// Where enrichment comes from; live runs use the kernel and /proc, tests use fixtures.
pub trait Enrich {
    /// Symbolizes a record's kernel stack (return addresses, innermost first).
    fn stack(&mut self, ips: &[u64]) -> Vec<Frame>;
    /// Path of the file mapped by `vma` of process `tgid`, if it has one.
    fn path(&mut self, tgid: u32, vma: &VmaInfo) -> Option<String>;
    /// The kernel named the file of a vma about to be watched.
    fn file_name(&mut self, _name: &FileNameEvent) {}
    /// A watched vma was freed: its pointer may name another file from now on.
    fn vma_freed(&mut self, _vma: u64) {}
}

/// Decodes records into events, numbering them in reading order.
pub struct Decoder {
    next_seq: u64,
    /// The hook of each counter slot: a table hook, or the release function of a release slot.
    slot_hooks: Vec<Option<HookRef>>,
    /// Per slot, the kernel symbols its probes are attached to (`Attached::symbols_by_slot`).
    slot_symbols: Vec<Vec<String>>,
    /// The stacks later lookup records may share.
    shared: SharedStacks,
}

/// What lookup records that carry no stack of their own are filled in from
/// (`RawLookupEvent::shares_stack`): per thread, the last lookup record read that carried one,
/// symbolized. The kernel names only the last such record of the thread, so one per thread is
/// enough; a record naming another (one that was never read) gets no stack and is counted.
#[derive(Default)]
struct SharedStacks {
    /// Thread id → (stack id, frames).
    by_thread: HashMap<u32, (u64, Vec<Frame>)>,
    /// Records whose shared stack was unknown since the last [`Decoder::take_stacks_unknown`].
    unknown: std::collections::BTreeMap<HookRef, u64>,
}

/// Threads whose last stack is kept (the kernel keeps 16 Ki, `LOOKUP_FRAMES`); past this an
/// arbitrary thread's is forgotten, and a later record sharing it is counted as unknown.
const SHARED_STACK_THREADS: usize = 65_536;

impl SharedStacks {
    /// The stack of a lookup record: its own (kept for the records that may share it, when it
    /// has an id), or the one it shares; `None` when it shares a stack that was never read.
    fn of(&mut self, e: &RawLookupEvent, own: impl FnOnce() -> Vec<Frame>) -> Option<Vec<Frame>> {
        let thread = e.hdr.task.pid;
        if e.shares_stack != 0 {
            return match self.by_thread.get(&thread) {
                Some((id, frames)) if *id == e.stack_id => Some(frames.clone()),
                _ => None,
            };
        }
        let frames = own();
        if e.stack_id != 0 && !frames.is_empty() {
            if self.by_thread.len() >= SHARED_STACK_THREADS
                && !self.by_thread.contains_key(&thread)
                && let Some(&other) = self.by_thread.keys().next()
            {
                self.by_thread.remove(&other);
            }
            self.by_thread.insert(thread, (e.stack_id, frames.clone()));
        }
        Some(frames)
    }
}

impl Decoder {
    /// `slot_hooks`: each counter slot's hook (`Attached::counter_hooks`; a table hook's slot
    /// left out is its table hook); `slot_symbols`: the symbols each slot is attached to.
    pub fn new(slot_hooks: Vec<Option<HookRef>>, slot_symbols: Vec<Vec<String>>) -> Self {
        let slot_hooks = (0..slot_hooks.len().max(HOOK_COUNT))
            .map(|slot| slot_hooks.get(slot).cloned().flatten().or_else(|| Hook::from_u32(slot as u32).map(HookRef::Table)))
            .collect();
        Self { next_seq: 0, slot_hooks, slot_symbols, shared: SharedStacks::default() }
    }

    /// Per hook, the lookup records decoded without their stack since the last call: the earlier
    /// record whose stack they share was never read (not handed over, or not decodable). Their
    /// events carry no stack and no caller; the daemon reports them as `lost` with reason
    /// `stack-unknown`.
    pub(crate) fn take_stacks_unknown(&mut self) -> Vec<(HookRef, u64)> {
        std::mem::take(&mut self.shared.unknown).into_iter().collect()
    }

    /// A module hook was attached, detached or re-attached: the symbols per slot from now on.
    pub(crate) fn set_symbols(&mut self, slot_symbols: Vec<Vec<String>>) {
        self.slot_symbols = slot_symbols;
    }

    /// The hook of a slot; a slot nothing is known of is named by its number (`hook17`).
    pub(crate) fn hook(&self, slot: u32) -> HookRef {
        self.slot_hooks.get(slot as usize).cloned().flatten().unwrap_or_else(|| HookRef::Release(format!("hook{slot}").into()))
    }

    /// The event a record stands for; `None` for records that only inform enrichment (file names).
    pub fn decode(&mut self, raw: &RawRecord, enrich: &mut dyn Enrich) -> Option<Event> {
        if let RawRecord::FileName(name) = raw {
            enrich.file_name(name);
            return None;
        }
        let hdr = raw.header();
        let hook = self.hook(hdr.hook);
        let ips = hdr.stack.frames();
        let mut own = || if ips.is_empty() { Vec::new() } else { enrich.stack(ips) };
        let stack = match raw {
            RawRecord::RawLookup(e) => self.shared.of(e, own).unwrap_or_else(|| {
                *self.shared.unknown.entry(hook.clone()).or_default() += 1;
                Vec::new()
            }),
            _ => own(),
        };
        let attached = self.slot_symbols.get(hdr.hook as usize).map(Vec::as_slice).unwrap_or_default();
        let wrappers = match &hook {
            HookRef::Table(hook) => wrappers_of(*hook),
            HookRef::Release(_) => &[],
        };
        let caller = caller_of(&stack, wrappers, attached);
        let symbol = attached_symbol(&stack, attached).map(str::to_string);
        let tgid = hdr.task.tgid;
        let mut vma = |v: &VmaInfo| to_vma(v, enrich.path(tgid, v));
        let body = match raw {
            RawRecord::PfnMap(e) => EventBody::PfnMap { vma: vma(&e.vma), addr: Hex(e.addr), pfn: e.pfn, pages: e.size.div_ceil(4096) },
            RawRecord::RawLookup(e) => EventBody::RawLookup { vma: vma(&e.vma), address: Hex(e.address), pfn: e.pfn, ram: e.ram != 0 },
            RawRecord::FramesGet(e) => EventBody::FramesGet {
                vec: Hex(e.vec),
                start: Hex(e.start),
                mm: Hex(e.mm),
                nr_frames: e.nr_frames,
                is_pfns: e.is_pfns != 0,
                got_ref: e.got_ref != 0,
                pfns: e.pfns[..(e.nr_frames as usize).min(MAX_FRAMES)].to_vec(),
            },
            RawRecord::FramesPut(e) => EventBody::FramesPut { vec: Hex(e.vec) },
            RawRecord::Revoke(e) => revoke_body(e, &mut vma),
            RawRecord::VmaFree(e) => EventBody::VmaFree { vma: to_vma(&e.vma, None) },
            RawRecord::FileName(_) => unreachable!("handled above"),
            RawRecord::ReleaseCall(e) => EventBody::ReleaseCall { args: e.args.iter().map(|a| Hex(*a)).collect() },
            RawRecord::TaskExit(_) => EventBody::TaskExit {},
        };
        if let RawRecord::VmaFree(e) = raw {
            enrich.vma_freed(e.vma.vma);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(Event { seq, ts_ns: hdr.ts_ns, hook, symbol, task: to_task(&hdr.task), caller, stack, body })
    }
}

/// `frame` with the file and line of its module's debug info, when found. A frame past the first
/// is a return address: the line of the call is that of the instruction before it.
fn with_source_line(mut frame: Frame, return_address: bool, lines: &mut ModuleDebugInfo) -> Frame {
    if let (Some(module), Some(function)) = (&frame.module, &frame.function) {
        let offset = frame.offset.saturating_sub(u64::from(return_address));
        if let Some((file, line)) = lines.locate(module, function, offset) {
            frame.file = Some(file);
            frame.line = Some(line);
        }
    }
    frame
}

fn revoke_body(e: &RevokeEvent, vma: &mut dyn FnMut(&VmaInfo) -> Vma) -> EventBody {
    let cause = match RevokeCause::from_u32(e.cause) {
        Some(RevokeCause::OwnerRevoke) => Cause::OwnerRevoke,
        Some(RevokeCause::Zap) => Cause::Zap,
        Some(RevokeCause::Exit) => Cause::Exit,
        Some(RevokeCause::Unmap) | None => Cause::Unmap,
    };
    let has_vma = e.vma.vma != 0;
    EventBody::Revoke {
        cause,
        mapping: (e.mapping != 0).then_some(Hex(e.mapping)),
        first_pgoff: e.first_pgoff,
        nr_pages: (cause == Cause::OwnerRevoke && e.nr_pages != u64::MAX).then_some(e.nr_pages),
        vma: has_vma.then(|| vma(&e.vma)),
        start: Hex(e.start),
        end: Hex(e.end),
        mm: Hex(e.vma.mm),
    }
}

fn to_task(t: &TaskInfo) -> Task {
    let len = t.comm.iter().position(|&b| b == 0).unwrap_or(t.comm.len());
    Task { tgid: t.tgid, pid: t.pid, start_time_ns: t.start_time_ns, comm: String::from_utf8_lossy(&t.comm[..len]).into_owned() }
}

/// `dev_t` as the kernel stores it in `s_dev`: major in the top 12 bits of 32, minor in the low 20.
fn dev_string(dev: u32) -> String {
    format!("{:02x}:{:02x}", dev >> 20, dev & 0xf_ffff)
}

fn to_vma(v: &VmaInfo, path: Option<String>) -> Vma {
    Vma {
        vma: Hex(v.vma),
        mm: Hex(v.mm),
        start: Hex(v.start),
        end: Hex(v.end),
        flags: Hex(v.flags),
        pgoff: v.pgoff,
        mapping: Hex(v.mapping),
        ino: v.ino,
        dev: dev_string(v.dev),
        path,
    }
}

/// Live enrichment: kallsyms, the file names the kernel sent, /proc and the file system.
pub(crate) struct LiveEnrich<'a> {
    pub symbols: &'a KernelSymbols,
    names: &'a mut KernelFileNames,
    files: &'a mut FilePaths,
    /// Source lines of module frames.
    lines: &'a mut ModuleDebugInfo,
    /// (tgid, start, end) → path, so per-page lookups of a batch do not re-read /proc/PID/maps.
    paths: HashMap<(u32, u64, u64), Option<String>>,
}

impl<'a> LiveEnrich<'a> {
    pub fn new(
        symbols: &'a KernelSymbols,
        names: &'a mut KernelFileNames,
        files: &'a mut FilePaths,
        lines: &'a mut ModuleDebugInfo,
    ) -> Self {
        Self { symbols, names, files, lines, paths: HashMap::new() }
    }
}

impl Enrich for LiveEnrich<'_> {
    fn stack(&mut self, ips: &[u64]) -> Vec<Frame> {
        ips.iter().enumerate().map(|(i, ip)| with_source_line(self.symbols.frame(*ip), i > 0, self.lines)).collect()
    }

    /// The kernel's name for the vma's file first: it does not depend on the process being alive.
    fn path(&mut self, tgid: u32, vma: &VmaInfo) -> Option<String> {
        if let Some(name) = self.names.get(vma.vma) {
            return Some(name.to_owned());
        }
        let files = &mut *self.files;
        self.paths.entry((tgid, vma.start, vma.end)).or_insert_with(|| files.path(tgid, vma)).clone()
    }

    fn file_name(&mut self, name: &FileNameEvent) {
        self.names.learn(name);
    }

    fn vma_freed(&mut self, vma: u64) {
        self.names.forget(vma);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoEnrich;
    impl Enrich for NoEnrich {
        fn stack(&mut self, _: &[u64]) -> Vec<Frame> {
            Vec::new()
        }
        fn path(&mut self, _: u32, _: &VmaInfo) -> Option<String> {
            Some("/dev/pfnaudit".into())
        }
    }

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a repr(C) POD as bytes.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()).to_vec() }
    }

    /// A record header of `kind` from `hook` with a stack of `depth` frames.
    fn header(kind: EventKind, hook: Hook, depth: u32) -> Header {
        let mut hdr = Header { kind: kind as u32, hook: hook as u32, ..Header::default() };
        hdr.stack.depth = depth;
        hdr
    }

    #[test]
    fn raw_lookup_record_decodes_with_task_vma_and_path() {
        let mut rec = RawLookupEvent { hdr: header(EventKind::RawLookup, Hook::FollowPfn, 0), ..RawLookupEvent::default() };
        rec.hdr.task.tgid = 42;
        rec.hdr.task.comm[..4].copy_from_slice(b"demo");
        rec.vma.vma = 0xffff_8880_1234_0000;
        rec.vma.start = 0x7f00_0000_0000;
        rec.vma.end = 0x7f00_0000_4000;
        rec.vma.dev = 5; // 0:5, devtmpfs
        rec.address = 0x7f00_0000_1000;
        rec.pfn = 0x1234;
        let raw = RawRecord::parse(&bytes_of(&rec)).unwrap();
        let ev = Decoder::new(Vec::new(), Vec::new()).decode(&raw, &mut NoEnrich).expect("an event");
        assert_eq!(ev.hook, HookRef::Table(Hook::FollowPfn));
        assert_eq!(ev.task.comm, "demo");
        let EventBody::RawLookup { vma, pfn, address, .. } = ev.body else { panic!("wrong body") };
        assert_eq!(pfn, 0x1234);
        assert_eq!(address, Hex(0x7f00_0000_1000));
        assert_eq!(vma.path.as_deref(), Some("/dev/pfnaudit"));
        assert_eq!(vma.dev, "00:05");
    }

    #[test]
    fn truncated_and_unknown_records_are_errors_not_panics() {
        assert_eq!(RawRecord::parse(&[0u8; 8]).unwrap_err(), DecodeError::Short(8));
        assert_eq!(RawRecord::hook_slot(&[0, 0, 0, 0, 7, 0, 0, 0]), Some(7), "the hook of a record too short to parse");
        assert_eq!(RawRecord::hook_slot(&[0; 6]), None);
        let mut hdr = Header { kind: 99, ..Header::default() };
        assert_eq!(RawRecord::parse(&bytes_of(&hdr)).unwrap_err(), DecodeError::UnknownKind(99));
        hdr.kind = EventKind::Revoke as u32;
        assert!(matches!(RawRecord::parse(&bytes_of(&hdr)), Err(DecodeError::Size { .. })));
    }

    /// A stack of these function names, innermost first.
    struct Named(&'static [&'static str]);
    impl Enrich for Named {
        fn stack(&mut self, _: &[u64]) -> Vec<Frame> {
            self.0.iter().map(|f| Frame { function: Some(f.to_string()), ..Frame::default() }).collect()
        }
        fn path(&mut self, _: u32, _: &VmaInfo) -> Option<String> {
            None
        }
    }

    /// Decodes `record`, whose hook is attached to `attached` on this kernel, with a stack of `frames`.
    fn decode_with_stack(record: &[u8], hook: Hook, attached: &[&str], frames: &'static [&'static str]) -> Event {
        let raw = RawRecord::parse(record).unwrap();
        let mut symbols = vec![Vec::new(); auditor_common::HOOK_COUNT];
        symbols[hook as usize] = attached.iter().map(|s| s.to_string()).collect();
        Decoder::new(Vec::new(), symbols).decode(&raw, &mut Named(frames)).expect("an event")
    }

    #[test]
    fn a_zap_on_7_1_is_caused_by_the_driver_outside_the_renamed_symbol() {
        let rec =
            RevokeEvent { hdr: header(EventKind::Revoke, Hook::ZapVmaPtes, 3), cause: RevokeCause::Zap as u32, ..RevokeEvent::default() };
        // The stack as kallsyms names it on 7.1+.
        let frames = &["zap_special_vma_range", "pfnaudit_ioctl", "__x64_sys_ioctl"];
        let ev = decode_with_stack(&bytes_of(&rec), Hook::ZapVmaPtes, &["zap_special_vma_range"], frames);
        assert_eq!(ev.hook, HookRef::Table(Hook::ZapVmaPtes), "the record keeps the hook");
        assert_eq!(ev.symbol.as_deref(), Some("zap_special_vma_range"), "and says where it is attached");
        assert_eq!(ev.caller.as_ref().and_then(|c| c.function.as_deref()), Some("pfnaudit_ioctl"));
        let line = serde_json::to_value(&ev).unwrap();
        assert_eq!((&line["hook"], &line["symbol"]), (&"zap_vma_ptes".into(), &"zap_special_vma_range".into()), "on the wire");
    }

    /// A PFN map made at fault time through `vmf_insert_pfn()`, which wraps the attached
    /// `vmf_insert_pfn_prot()`: the caller is the driver's fault handler (the table names the wrapper).
    #[test]
    fn a_pfn_map_through_a_wrapper_of_the_attached_symbol_is_caused_by_the_driver() {
        let rec = PfnMapEvent { hdr: header(EventKind::PfnMap, Hook::InsertPfn, 4), ..PfnMapEvent::default() };
        let frames = &["vmf_insert_pfn_prot", "vmf_insert_pfn", "pfnaudit_fault", "__do_fault"];
        let ev = decode_with_stack(&bytes_of(&rec), Hook::InsertPfn, &["vmf_insert_pfn_prot", "vmf_insert_pfn_pmd"], frames);
        assert_eq!(ev.symbol.as_deref(), Some("vmf_insert_pfn_prot"));
        assert_eq!(ev.caller.as_ref().and_then(|c| c.function.as_deref()), Some("pfnaudit_fault"));
    }

    /// Names each frame by its address and counts the calls.
    #[derive(Default)]
    struct AddressNames(usize);
    impl Enrich for AddressNames {
        fn stack(&mut self, ips: &[u64]) -> Vec<Frame> {
            self.0 += 1;
            ips.iter().map(|ip| Frame { addr: Hex(*ip), function: Some(format!("f{ip:x}")), ..Frame::default() }).collect()
        }
        fn path(&mut self, _: u32, _: &VmaInfo) -> Option<String> {
            None
        }
    }

    #[test]
    fn an_event_has_the_frames_its_record_carries_and_no_more() {
        let mut rec = RawLookupEvent::default();
        rec.hdr.kind = EventKind::RawLookup as u32;
        rec.hdr.hook = Hook::FollowPfn as u32;
        rec.hdr.stack.ips[..4].copy_from_slice(&[0x10, 0x20, 0x30, 0x40]);
        rec.hdr.stack.depth = 3;
        let mut decoder = Decoder::new(Vec::new(), Vec::new());
        let mut names = AddressNames::default();
        let ev = decoder.decode(&RawRecord::parse(&bytes_of(&rec)).unwrap(), &mut names).expect("an event");
        let addrs: Vec<u64> = ev.stack.iter().map(|f| f.addr.0).collect();
        assert_eq!(addrs, [0x10, 0x20, 0x30]);

        rec.hdr.stack.depth = 1000; // a corrupt depth reads no further than the record's frames
        let ev = decoder.decode(&RawRecord::parse(&bytes_of(&rec)).unwrap(), &mut names).expect("an event");
        assert_eq!(ev.stack.len(), auditor_common::STACK_DEPTH);

        rec.hdr.stack.depth = 0;
        let ev = decoder.decode(&RawRecord::parse(&bytes_of(&rec)).unwrap(), &mut names).expect("an event");
        assert!(ev.stack.is_empty() && ev.caller.is_none());
        assert_eq!(names.0, 2, "a record without a stack is not symbolized");
    }

    /// A lookup record of thread `pid` at `address`: with its own stack `ips` and the new stack id
    /// `id`, or, with no `ips`, sharing the stack `id` of an earlier record.
    fn lookup(pid: u32, address: u64, id: u64, ips: &[u64]) -> RawRecord {
        let mut rec = RawLookupEvent { hdr: header(EventKind::RawLookup, Hook::FollowPfn, ips.len() as u32), ..RawLookupEvent::default() };
        rec.hdr.task.pid = pid;
        rec.hdr.task.tgid = pid;
        rec.hdr.stack.ips[..ips.len()].copy_from_slice(ips);
        rec.address = address;
        rec.stack_id = id;
        rec.shares_stack = ips.is_empty() as u8;
        RawRecord::parse(&bytes_of(&rec)).unwrap()
    }

    fn frame_names(ev: &Event) -> Vec<&str> {
        ev.stack.iter().filter_map(|f| f.function.as_deref()).collect()
    }

    #[test]
    fn pages_looked_up_from_one_call_frame_get_the_stack_and_caller_of_the_first() {
        let mut symbols = vec![Vec::new(); auditor_common::HOOK_COUNT];
        symbols[Hook::FollowPfn as usize] = vec!["f10".to_string()];
        let mut decoder = Decoder::new(Vec::new(), symbols);
        let mut names = AddressNames::default();
        let first = decoder.decode(&lookup(7, 0x7f00_0000_0000, 0x1_0001, &[0x10, 0x20, 0x30]), &mut names).unwrap();
        assert_eq!(first.caller.as_ref().and_then(|c| c.function.as_deref()), Some("f20"));
        for page in 1..4 {
            let ev = decoder.decode(&lookup(7, 0x7f00_0000_0000 + page * 4096, 0x1_0001, &[]), &mut names).unwrap();
            assert_eq!(frame_names(&ev), ["f10", "f20", "f30"], "page {page} has the stack of the record it names");
            assert_eq!((&ev.caller, &ev.symbol), (&first.caller, &first.symbol));
        }
        assert_eq!(names.0, 1, "symbolized once");
        // The thread's next call has a stack of its own, which its pages then share.
        let next = decoder.decode(&lookup(7, 0x7f00_0001_0000, 0x2_0001, &[0x10, 0x40, 0x30]), &mut names).unwrap();
        let page = decoder.decode(&lookup(7, 0x7f00_0001_1000, 0x2_0001, &[]), &mut names).unwrap();
        assert_eq!((frame_names(&next), frame_names(&page)), (vec!["f10", "f40", "f30"], vec!["f10", "f40", "f30"]));
        assert!(decoder.take_stacks_unknown().is_empty());
    }

    #[test]
    fn a_page_sharing_the_stack_of_a_record_never_read_has_no_stack_and_is_counted() {
        let mut decoder = Decoder::new(Vec::new(), Vec::new());
        let mut names = AddressNames::default();
        decoder.decode(&lookup(7, 0x7f00_0000_0000, 0x1_0001, &[0x10, 0x20]), &mut names).unwrap();
        // The thread's record with stack 0x2_0001 was never read (say it did not decode): its
        // pages must not get the thread's older stack, nor another thread's stack of that id.
        decoder.decode(&lookup(8, 0x7f00_0000_0000, 0x2_0001, &[0x10, 0x50]), &mut names).unwrap();
        for page in 1..3 {
            let ev = decoder.decode(&lookup(7, 0x7f00_0001_0000 + page * 4096, 0x2_0001, &[]), &mut names).unwrap();
            assert!(ev.stack.is_empty() && ev.caller.is_none() && ev.symbol.is_none(), "unknown, not guessed");
            let EventBody::RawLookup { address, .. } = ev.body else { panic!("a raw lookup") };
            assert_eq!(address, Hex(0x7f00_0001_0000 + page * 4096), "the lookup itself is still reported");
        }
        assert_eq!(decoder.take_stacks_unknown(), [(HookRef::Table(Hook::FollowPfn), 2)]);
        assert!(decoder.take_stacks_unknown().is_empty(), "counted once");
        let line = serde_json::to_string(&crate::vocab::record::Record::Lost(crate::vocab::record::Lost::stack_unknown(
            HookRef::Table(Hook::FollowPfn),
            2,
            9,
        )))
        .unwrap();
        assert_eq!(line, r#"{"type":"lost","hook":"follow_pfn","count":2,"ts_ns":9,"reason":"stack-unknown"}"#);
    }

    #[test]
    fn owner_revoke_to_end_of_file_has_no_page_count() {
        let mut rec = RevokeEvent::default();
        rec.hdr.kind = EventKind::Revoke as u32;
        rec.hdr.hook = Hook::UnmapMappingRange as u32;
        rec.cause = RevokeCause::OwnerRevoke as u32;
        rec.mapping = 0xffff_8880_0000_1000;
        rec.nr_pages = u64::MAX;
        let raw = RawRecord::parse(&bytes_of(&rec)).unwrap();
        let ev = Decoder::new(Vec::new(), Vec::new()).decode(&raw, &mut NoEnrich).expect("an event");
        let EventBody::Revoke { cause, nr_pages, mapping, vma, .. } = ev.body else { panic!() };
        assert_eq!(cause, Cause::OwnerRevoke);
        assert_eq!(nr_pages, None);
        assert_eq!(mapping, Some(Hex(0xffff_8880_0000_1000)));
        assert!(vma.is_none());
    }
}
