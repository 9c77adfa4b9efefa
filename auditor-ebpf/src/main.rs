//! pfn-auditor's kernel half: kprobes on PFN lookups, frame-vector pins, PFN maps and the paths
//! that revoke them. Which symbol each program is attached to on which kernel is decided by the
//! loader's probe table (auditor/src/probes/table.rs); argument layouts that changed between
//! versions are told through `LAYOUT`. Prototypes were checked against docs/kernel-facts.md.
#![no_std]
#![no_main]
// Inline BPF assembly (the atomic add of `maps::count_watch`), as aya-ebpf itself uses.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod emit;
mod floor;
mod kernel;
mod maps;

use auditor_common::{
    EventKind, FileNameEvent, FramesGetEvent, FramesPutEvent, Hook, KernelLayout, MAX_FRAMES, PfnMapEvent, RawLookupEvent,
    ReleaseCallEvent, RevokeCause, RevokeEvent, TaskExitEvent, VM_IO, VM_PFNMAP, VmaFreeEvent,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{kprobe, kretprobe, tracepoint},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};

use emit::{Stack, count_hit, emit, new_stack_id, take_call_frame, take_stack};
use kernel::{current_mm, fill_file_name, fill_vma, find_vma, layout, page_to_pfn, pfn_is_ram, pte_pfn, read_field, vma_mm};
use maps::{
    BPF_NOEXIST, CallFrame, ENTRIES, ENTRY_SCRATCH, EntryArgs, EntryKey, IN_INTERNAL, IN_REVOCATION, LOOKUP_FRAMES, LookupFrame,
    ThreadFlag, WATCHED_MAPPINGS, WATCHED_MMS, WATCHED_TGIDS, WATCHED_VECS, WATCHED_VMAS, count_watch, frame_vector_layout, live_flag,
    watching,
};

// Every program body carries #[inline(always)]: aya's macros wrap it in an outer function, and a
// body the compiler leaves out of line becomes a BPF global function whose `ProbeContext` argument
// the verifier rejects.

// ---------------------------------------------------------------------------------------------
// Entry/return plumbing

#[inline(always)]
fn entry_key(hook: Hook) -> EntryKey {
    EntryKey { pid_tgid: bpf_get_current_pid_tgid(), hook: hook as u32, _pad: 0 }
}

/// Saves up to four arguments for the matching return probe, and the entry stack when `ctx` is
/// given (the return probe may emit a record the stack belongs to). Built in a per-CPU scratch
/// entry: it is too big for the eBPF stack.
#[inline(always)]
fn save_entry_args(ctx: Option<&ProbeContext>, hook: Hook, args: [u64; 4]) {
    let Some(saved) = ENTRY_SCRATCH.get_ptr_mut(0) else { return };
    let saved = unsafe { &mut *saved };
    saved.args = args;
    saved.ts_ns = unsafe { bpf_ktime_get_ns() };
    saved.frame = CallFrame::default();
    saved.shared_stack_id = 0;
    match ctx {
        Some(ctx) => take_stack(ctx, &mut saved.stack),
        None => saved.stack.depth = 0,
    }
    let _ = ENTRIES.insert(&entry_key(hook), &*saved, 0);
}

/// A raw lookup of `address` in `vma` that may pin: its arguments saved for the return probe,
/// with its call frame and, unless it continues this thread's last recorded lookup (the same
/// call frame, the same vma, the next page: a driver looking a range up page by page), its
/// stack. A continuing lookup's record names the stack of the record it continues instead.
#[inline(always)]
fn save_lookup_entry(ctx: &ProbeContext, hook: Hook, args: [u64; 4], vma: u64, address: u64) {
    let Some(saved) = ENTRY_SCRATCH.get_ptr_mut(0) else { return };
    let saved = unsafe { &mut *saved };
    saved.args = args;
    saved.ts_ns = unsafe { bpf_ktime_get_ns() };
    take_call_frame(ctx, &mut saved.frame);
    saved.shared_stack_id = 0;
    if saved.frame.caller != 0
        && vma != 0
        && let Some(last) = unsafe { LOOKUP_FRAMES.get(&bpf_get_current_pid_tgid()) }
        && last.frame.caller == saved.frame.caller
        && last.frame.sp == saved.frame.sp
        && last.vma == vma
        && last.next_page == address & !PAGE_MASK
    {
        saved.shared_stack_id = last.stack_id;
    }
    if saved.shared_stack_id == 0 {
        take_stack(ctx, &mut saved.stack);
    } else {
        saved.stack.depth = 0;
    }
    let _ = ENTRIES.insert(&entry_key(hook), &*saved, 0);
}

/// Bits of an address inside its 4 KiB page.
const PAGE_MASK: u64 = 4095;

/// A hooked call whose return may emit a record: its arguments and stack saved.
#[inline(always)]
fn save_entry(ctx: &ProbeContext, hook: Hook, args: [u64; 4]) {
    save_entry_args(Some(ctx), hook, args);
}

/// Hands what `save_entry` stored for this thread and hook to `f`, in place (it is too big to
/// copy onto the eBPF stack), then drops it.
#[inline(always)]
fn take_entry(hook: Hook, f: impl FnOnce(&EntryArgs)) {
    let key = entry_key(hook);
    let Some(saved) = ENTRIES.get_ptr(&key) else { return };
    f(unsafe { &*saved });
    let _ = ENTRIES.remove(&key);
}

/// Takes what `save_entry` stored for this thread and `hook`, and hands it to `f` when the call
/// returned 0 (success, for the lookups and `remap_pfn_range()`).
#[inline(always)]
fn take_entry_on_success(ctx: &RetProbeContext, hook: Hook, f: impl FnOnce(&EntryArgs)) {
    let succeeded = ret(ctx) == 0;
    take_entry(hook, |e| {
        if succeeded {
            f(e)
        }
    });
}

/// Is this thread inside `hook` right now? Entries left behind by a missed kretprobe expire like
/// the thread flags do.
#[inline(always)]
fn is_entered(hook: Hook) -> bool {
    let saved = unsafe { ENTRIES.get(&entry_key(hook)) };
    saved.is_some_and(|e| unsafe { bpf_ktime_get_ns() }.wrapping_sub(e.ts_ns) < maps::FLAG_LIFETIME_NS)
}

#[inline(always)]
fn arg(ctx: &ProbeContext, n: usize) -> u64 {
    ctx.arg::<u64>(n).unwrap_or(0)
}

#[inline(always)]
fn ret(ctx: &RetProbeContext) -> i64 {
    ctx.ret::<i64>()
}

// ---------------------------------------------------------------------------------------------
// Watching

/// A vma no record has watched yet: its records are preceded by its file's name and it becomes
/// watched. The one hash lookup a PFN map or lookup record pays for watching.
#[inline(always)]
fn is_new_vma(vma: u64) -> bool {
    vma != 0 && WATCHED_VMAS.get_ptr(&vma).is_none()
}

/// Watches a vma [`is_new_vma`] said is new.
#[inline(always)]
fn watch_new_vma(vma: u64, mapping: u64) {
    if WATCHED_VMAS.insert(&vma, &mapping, BPF_NOEXIST).is_err() {
        return; // another CPU watched it first (or the map is full)
    }
    count_watch(1);
    if mapping != 0 {
        match WATCHED_MAPPINGS.get_ptr_mut(&mapping) {
            Some(n) => unsafe { *n += 1 },
            None => {
                let _ = WATCHED_MAPPINGS.insert(&mapping, &1, 0);
            }
        }
    }
}

/// Before the first record that watches a new `vma`: names the file it maps, in the kernel, once
/// (counted on the `hook` whose record follows).
#[inline(always)]
fn name_new_vma(l: &KernelLayout, hook: Hook, vma: u64) {
    if l.file_dentry == KernelLayout::ABSENT {
        return;
    }
    let file: u64 = read_field(vma, l.vma_vm_file);
    if file == 0 {
        return;
    }
    emit::<FileNameEvent>(l, EventKind::FileName, hook as u32, Stack::None, 0, |ev| {
        fill_file_name(l, vma, ev);
    });
}

#[inline(always)]
fn unwatch_vma(vma: u64) -> Option<u64> {
    let mapping = unsafe { WATCHED_VMAS.get(&vma) }.copied()?;
    WATCHED_VMAS.remove(&vma).ok()?;
    count_watch(-1);
    if mapping != 0
        && let Some(n) = WATCHED_MAPPINGS.get_ptr_mut(&mapping)
    {
        unsafe {
            if *n <= 1 {
                let _ = WATCHED_MAPPINGS.remove(&mapping);
            } else {
                *n -= 1;
            }
        }
    }
    Some(mapping)
}

/// A pin was taken: its mm (munmap, exit) and process (exit) become interesting. Looked up
/// before inserted: per-page pins of one process write nothing after the first.
#[inline(always)]
fn watch_pinner(mm: u64) {
    if mm != 0 && WATCHED_MMS.get_ptr(&mm).is_none() && WATCHED_MMS.insert(&mm, &1, BPF_NOEXIST).is_ok() {
        count_watch(1);
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if WATCHED_TGIDS.get_ptr(&tgid).is_none() && WATCHED_TGIDS.insert(&tgid, &1, BPF_NOEXIST).is_ok() {
        count_watch(1);
    }
}

/// Drops a watch [`watch_pinner`] or `get_vaddr_frames` made; true when there was one.
#[inline(always)]
fn unwatch<K>(map: &aya_ebpf::maps::HashMap<K, impl Copy>, key: &K) -> bool {
    let gone = map.remove(key).is_ok();
    if gone {
        count_watch(-1);
    }
    gone
}

#[inline(always)]
fn is_watched_vma(l: &KernelLayout, vma: u64) -> bool {
    WATCHED_VMAS.get_ptr(&vma).is_some() || WATCHED_MMS.get_ptr(&vma_mm(l, vma)).is_some()
}

// ---------------------------------------------------------------------------------------------
// PFN maps: remap_pfn_range(vma, addr, pfn, size, prot)

#[kprobe]
#[inline(always)]
pub fn remap_pfn_range_entry(ctx: ProbeContext) -> u32 {
    count_hit(Hook::RemapPfnRange as u32);
    save_entry(&ctx, Hook::RemapPfnRange, [arg(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2), arg(&ctx, 3)]);
    0
}

// remap_pfn_range_complete(struct vm_area_struct *vma, struct mmap_action *action) — 7.x: the
// PFN remap a driver's mmap_prepare asked for (action->remap), done once the vma exists.
#[kprobe]
#[inline(always)]
pub fn remap_pfn_range_complete_entry(ctx: ProbeContext) -> u32 {
    count_hit(Hook::RemapPfnRange as u32);
    let l = layout();
    if l.mmap_action_remap == KernelLayout::ABSENT {
        return 0;
    }
    let remap = arg(&ctx, 1) + l.mmap_action_remap as u64;
    let (start, pfn, size): (u64, u64, u64) = (read_field(remap, 0), read_field(remap, 8), read_field(remap, 16));
    save_entry(&ctx, Hook::RemapPfnRange, [arg(&ctx, 0), start, pfn, size]);
    0
}

#[kretprobe]
#[inline(always)]
pub fn remap_pfn_range_return(ctx: RetProbeContext) -> u32 {
    take_entry_on_success(&ctx, Hook::RemapPfnRange, |e| {
        let l = layout();
        let [vma, addr, pfn, size] = e.args;
        let new = is_new_vma(vma);
        if new {
            name_new_vma(l, Hook::RemapPfnRange, vma);
        }
        emit::<PfnMapEvent>(l, EventKind::PfnMap, Hook::RemapPfnRange as u32, Stack::Saved(&e.stack), e.ts_ns, |ev| {
            fill_vma(l, vma, &mut ev.vma);
            ev.addr = addr;
            ev.pfn = pfn;
            ev.size = size;
            if new {
                watch_new_vma(vma, ev.vma.mapping);
            }
        });
    });
    0
}

/// A PFN inserted into `vma` at fault time: the first insertion into a vma not yet watched makes
/// it a PFN map (one record per vma, not per fault).
#[inline(always)]
fn emit_inserted_pfn(ctx: &ProbeContext, vma: u64, addr: u64, pfn: u64, size: u64) {
    count_hit(Hook::InsertPfn as u32);
    if !is_new_vma(vma) {
        return;
    }
    let l = layout();
    let flags: u64 = read_field(vma, l.vma_vm_flags);
    if flags & VM_PFNMAP == 0 {
        return;
    }
    name_new_vma(l, Hook::InsertPfn, vma);
    emit::<PfnMapEvent>(l, EventKind::PfnMap, Hook::InsertPfn as u32, Stack::Here(ctx), 0, |ev| {
        fill_vma(l, vma, &mut ev.vma);
        ev.addr = addr;
        ev.pfn = pfn;
        ev.size = size;
        watch_new_vma(vma, ev.vma.mapping);
    });
}

// vmf_insert_pfn_prot(struct vm_area_struct *vma, unsigned long addr, unsigned long pfn, pgprot_t)
// (vmf_insert_pfn() calls it), 5.10 .. 7.x.
#[kprobe]
#[inline(always)]
pub fn insert_pfn_entry(ctx: ProbeContext) -> u32 {
    emit_inserted_pfn(&ctx, arg(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2), 4096);
    0
}

/// `pfn_t` keeps flags in its top 12 bits (include/linux/pfn_t.h, to 6.16); a plain PFN has none.
const PFN_T_PFN_MASK: u64 = (1 << 52) - 1;

// vmf_insert_pfn_pmd(_prot)(struct vm_fault *vmf, pfn_t pfn, ..) and the pud variants: the huge
// faults of vfio-pci BARs (6.12+) and DAX. `size` is the pmd (2 MiB) or pud (1 GiB).
#[inline(always)]
fn inserted_huge_pfn(ctx: &ProbeContext, size: u64) -> u32 {
    let l = layout();
    let vmf = arg(ctx, 0);
    let vma: u64 = read_field(vmf, l.vm_fault_vma);
    let address: u64 = read_field(vmf, l.vm_fault_address);
    emit_inserted_pfn(ctx, vma, address & !(size - 1), arg(ctx, 1) & PFN_T_PFN_MASK, size);
    0
}

#[kprobe]
#[inline(always)]
pub fn insert_pfn_pmd_entry(ctx: ProbeContext) -> u32 {
    inserted_huge_pfn(&ctx, 2 << 20)
}

#[kprobe]
#[inline(always)]
pub fn insert_pfn_pud_entry(ctx: ProbeContext) -> u32 {
    inserted_huge_pfn(&ctx, 1 << 30)
}

// ---------------------------------------------------------------------------------------------
// Raw lookups

/// A lookup the kernel makes for itself: under a PAT/ptrace helper, or during a teardown we are
/// already reporting (untrack_pfn runs inside munmap and exit). Neither recorded nor watched.
/// A lookup inside get_vaddr_frames() (its 5.10 follow_pfn fallback) is part of the frame-vector
/// pin that get_vaddr_frames' own record reports.
#[inline(always)]
fn is_kernel_internal_lookup() -> bool {
    let tid = bpf_get_current_pid_tgid();
    live_flag(&IN_INTERNAL, tid).is_some() || live_flag(&IN_REVOCATION, tid).is_some() || is_entered(Hook::GetVaddrFrames)
}

#[kprobe]
#[inline(always)]
pub fn kernel_internal_entry(_ctx: ProbeContext) -> u32 {
    count_hit(Hook::KernelInternal as u32);
    let tid = bpf_get_current_pid_tgid();
    let depth = live_flag(&IN_INTERNAL, tid).map(|f| f.what).unwrap_or(0);
    let flag = ThreadFlag { what: depth + 1, _pad: 0, since_ns: unsafe { bpf_ktime_get_ns() } };
    let _ = IN_INTERNAL.insert(&tid, &flag, 0);
    0
}

#[kretprobe]
#[inline(always)]
pub fn kernel_internal_return(_ctx: RetProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid();
    if let Some(flag) = IN_INTERNAL.get_ptr_mut(&tid) {
        unsafe {
            if (*flag).what <= 1 {
                let _ = IN_INTERNAL.remove(&tid);
            } else {
                (*flag).what -= 1;
            }
        }
    }
    0
}

/// Emits a successful raw lookup and watches what it came from. Where the hook only knows the mm
/// (follow_pte before 6.10), the vma containing the address is looked up in the mm's tree; `vma`
/// stays 0 in the record only when none contains it.
#[inline(always)]
fn emit_raw_lookup(l: &KernelLayout, hook: Hook, e: &EntryArgs, vma: u64, mm: u64, address: u64, pfn: u64) {
    let vma = if vma == 0 { find_vma(l, mm, address) } else { vma };
    if vma != 0 {
        let flags: u64 = read_field(vma, l.vma_vm_flags);
        if flags & (VM_IO | VM_PFNMAP) == 0 {
            return; // a lookup of ordinary memory is not a raw-PFN pin
        }
    }
    let new = is_new_vma(vma);
    if new {
        name_new_vma(l, hook, vma);
    }
    // A lookup that shares a stack saved none (depth 0), so its record gets none. (One `Stack`
    // for both: the verifier rejects the spilled pointer of a `Stack` chosen at run time.)
    let shared = e.shared_stack_id;
    let stack_id = if shared != 0 {
        shared
    } else if e.stack.depth > 0 {
        new_stack_id()
    } else {
        0
    };
    let emitted = emit::<RawLookupEvent>(l, EventKind::RawLookup, hook as u32, Stack::Saved(&e.stack), e.ts_ns, |ev| {
        if vma != 0 {
            fill_vma(l, vma, &mut ev.vma);
        } else {
            ev.vma.mm = mm;
        }
        ev.address = address;
        ev.pfn = pfn;
        ev.ram = pfn_is_ram(l, pfn) as u8;
        ev.shares_stack = (shared != 0) as u8;
        ev.stack_id = stack_id;
        if new {
            watch_new_vma(vma, ev.vma.mapping);
        }
        watch_pinner(ev.vma.mm);
    });
    // What the thread's next lookup from this frame may share: this record's stack, once it is
    // handed over (a dropped record is never named), or still the one this record shares.
    let next_page = (address & !PAGE_MASK) + 4096;
    let tid = bpf_get_current_pid_tgid();
    if shared != 0 {
        if let Some(last) = LOOKUP_FRAMES.get_ptr_mut(&tid) {
            unsafe { (*last).next_page = next_page };
        }
    } else if emitted && stack_id != 0 && vma != 0 && e.frame.caller != 0 {
        let _ = LOOKUP_FRAMES.insert(&tid, &LookupFrame { frame: e.frame, vma, next_page, stack_id }, 0);
    }
}

/// Whether a lookup in `vma` can be a raw-PFN pin: only then does its entry probe keep state and
/// a stack for the return probe (the kernel's lookups of ordinary memory cost one field read).
/// A lookup whose vma is unknown (none contains the address) is kept: its record says so.
#[inline(always)]
fn may_pin(l: &KernelLayout, vma: u64) -> bool {
    vma == 0 || read_field::<u64>(vma, l.vma_vm_flags) & (VM_IO | VM_PFNMAP) != 0
}

// follow_pfn(struct vm_area_struct *vma, unsigned long address, unsigned long *pfn) — <= 6.9
#[kprobe]
#[inline(always)]
pub fn follow_pfn_entry(ctx: ProbeContext) -> u32 {
    count_hit(Hook::FollowPfn as u32);
    let vma = arg(&ctx, 0);
    if is_kernel_internal_lookup() || !may_pin(layout(), vma) {
        return 0;
    }
    let address = arg(&ctx, 1);
    save_lookup_entry(&ctx, Hook::FollowPfn, [vma, address, arg(&ctx, 2), 0], vma, address);
    0
}

#[kretprobe]
#[inline(always)]
pub fn follow_pfn_return(ctx: RetProbeContext) -> u32 {
    take_entry_on_success(&ctx, Hook::FollowPfn, |e| {
        let [vma, address, pfn_out, _] = e.args;
        let pfn: u64 = read_field(pfn_out, 0);
        emit_raw_lookup(layout(), Hook::FollowPfn, e, vma, 0, address, pfn);
    });
    0
}

// follow_pte(struct mm_struct *mm, ...) 5.12–6.9; follow_pte(struct vm_area_struct *vma, ...)
// 6.10–6.11; both (.., unsigned long address, pte_t **ptepp, spinlock_t **ptlp).
// The vma is found at entry (callers hold the mmap lock until after the return), so a lookup of
// ordinary memory keeps no state; the return probe gets it as the fourth saved argument.
#[kprobe]
#[inline(always)]
pub fn follow_pte_entry(ctx: ProbeContext) -> u32 {
    count_hit(Hook::FollowPte as u32);
    // On 6.1 follow_pfn() is built on follow_pte(): report the outer call only.
    if is_entered(Hook::FollowPfn) || is_kernel_internal_lookup() {
        return 0;
    }
    let l = layout();
    let (first, address) = (arg(&ctx, 0), arg(&ctx, 1));
    let (vma, mm) = if l.follow_pte_takes_vma != 0 { (first, 0) } else { (find_vma(l, first, address), first) };
    if !may_pin(l, vma) {
        return 0;
    }
    save_lookup_entry(&ctx, Hook::FollowPte, [mm, address, arg(&ctx, 2), vma], vma, address);
    0
}

#[kretprobe]
#[inline(always)]
pub fn follow_pte_return(ctx: RetProbeContext) -> u32 {
    take_entry_on_success(&ctx, Hook::FollowPte, |e| {
        let [mm, address, ptepp, vma] = e.args;
        let ptep: u64 = read_field(ptepp, 0);
        emit_raw_lookup(layout(), Hook::FollowPte, e, vma, mm, address, pte_pfn(ptep));
    });
    0
}

// follow_pfnmap_start(struct follow_pfnmap_args *args) — 6.12+; inputs args->vma, args->address,
// output args->pfn.
#[kprobe]
#[inline(always)]
pub fn follow_pfnmap_start_entry(ctx: ProbeContext) -> u32 {
    count_hit(Hook::FollowPfnmapStart as u32);
    let l = layout();
    let args = arg(&ctx, 0);
    let vma: u64 = read_field(args, l.pfnmap_args_vma);
    if is_kernel_internal_lookup() || !may_pin(l, vma) {
        return 0;
    }
    save_lookup_entry(&ctx, Hook::FollowPfnmapStart, [args, 0, 0, 0], vma, read_field(args, l.pfnmap_args_address));
    0
}

#[kretprobe]
#[inline(always)]
pub fn follow_pfnmap_start_return(ctx: RetProbeContext) -> u32 {
    take_entry_on_success(&ctx, Hook::FollowPfnmapStart, |e| {
        let l = layout();
        let args = e.args[0];
        let vma: u64 = read_field(args, l.pfnmap_args_vma);
        let address: u64 = read_field(args, l.pfnmap_args_address);
        let pfn: u64 = read_field(args, l.pfnmap_args_pfn);
        emit_raw_lookup(l, Hook::FollowPfnmapStart, e, vma, 0, address, pfn);
    });
    0
}

// ---------------------------------------------------------------------------------------------
// Frame vectors: get_vaddr_frames(start, nr_frames, [gup_flags | write,] vec) / put_vaddr_frames(vec)

#[kprobe]
#[inline(always)]
pub fn get_vaddr_frames_entry(ctx: ProbeContext) -> u32 {
    count_hit(Hook::GetVaddrFrames as u32);
    let Some(fv) = frame_vector_layout() else { return 0 };
    // The verifier forbids ctx pointer arithmetic, and LLVM turns "one of two loads" into a load
    // from a computed offset: read both argument registers (volatile: not merged), then choose.
    // x86-64 arguments: rdi, rsi, rdx (arg 2), rcx (arg 3).
    let (third, fourth) = unsafe { (core::ptr::read_volatile(&(*ctx.regs).rdx), core::ptr::read_volatile(&(*ctx.regs).rcx)) };
    let vec = if fv.vec_arg == 2 { third } else { fourth };
    save_entry(&ctx, Hook::GetVaddrFrames, [arg(&ctx, 0), arg(&ctx, 1), vec, 0]);
    0
}

#[kretprobe]
#[inline(always)]
pub fn get_vaddr_frames_return(ctx: RetProbeContext) -> u32 {
    let got = ret(&ctx) as i32;
    take_entry(Hook::GetVaddrFrames, |e| {
        if got <= 0 {
            return;
        }
        let Some(fv) = frame_vector_layout() else { return };
        let l = layout();
        let [start, _, vec, _] = e.args;
        let mm = current_mm(l);
        emit::<FramesGetEvent>(l, EventKind::FramesGet, Hook::GetVaddrFrames as u32, Stack::Saved(&e.stack), e.ts_ns, |ev| {
            ev.vec = vec;
            ev.start = start;
            ev.mm = mm;
            ev.nr_frames = got as u32;
            let is_pfns: u8 = read_field(vec, fv.is_pfns);
            ev.is_pfns = is_pfns;
            ev.got_ref = read_field(vec, fv.got_ref);
            if fv.ptrs != KernelLayout::ABSENT {
                let ptrs = vec + fv.ptrs as u64;
                for i in 0..MAX_FRAMES {
                    if i >= got as usize {
                        break;
                    }
                    let raw: u64 = read_field(ptrs + 8 * i as u64, 0);
                    ev.pfns[i] = if is_pfns != 0 { raw } else { page_to_pfn(l, raw) };
                }
            }
        });
        if WATCHED_VECS.insert(&vec, &1, BPF_NOEXIST).is_ok() {
            count_watch(1);
        }
        watch_pinner(mm);
    });
    0
}

#[kprobe]
#[inline(always)]
pub fn put_vaddr_frames_entry(ctx: ProbeContext) -> u32 {
    count_hit(Hook::PutVaddrFrames as u32);
    let vec = arg(&ctx, 0);
    if !watching() || WATCHED_VECS.get_ptr(&vec).is_none() || !unwatch(&WATCHED_VECS, &vec) {
        return 0;
    }
    let l = layout();
    emit::<FramesPutEvent>(l, EventKind::FramesPut, Hook::PutVaddrFrames as u32, Stack::Here(&ctx), 0, |ev| {
        ev.vec = vec;
    });
    0
}

// ---------------------------------------------------------------------------------------------
// Revocations

/// Marks the thread as inside revocation `hook`; false when an outer revocation already is.
#[inline(always)]
fn enter_revocation(hook: Hook) -> bool {
    let tid = bpf_get_current_pid_tgid();
    if live_flag(&IN_REVOCATION, tid).is_some() {
        return false;
    }
    let flag = ThreadFlag { what: hook as u32, _pad: 0, since_ns: unsafe { bpf_ktime_get_ns() } };
    let _ = IN_REVOCATION.insert(&tid, &flag, 0);
    true
}

#[inline(always)]
fn leave_revocation(hook: Hook) {
    let tid = bpf_get_current_pid_tgid();
    if unsafe { IN_REVOCATION.get(&tid) }.is_some_and(|f| f.what == hook as u32) {
        let _ = IN_REVOCATION.remove(&tid);
    }
}

#[inline(always)]
fn emit_owner_revoke(ctx: &ProbeContext, hook: Hook, mapping: u64, first_pgoff: u64, nr_pages: u64) {
    count_hit(hook as u32);
    if !watching() || !enter_revocation(hook) || WATCHED_MAPPINGS.get_ptr(&mapping).is_none() {
        return;
    }
    let l = layout();
    emit::<RevokeEvent>(l, EventKind::Revoke, hook as u32, Stack::Here(ctx), 0, |ev| {
        ev.cause = RevokeCause::OwnerRevoke as u32;
        ev.mapping = mapping;
        ev.first_pgoff = first_pgoff;
        // The kernel treats a zero length as "to the end of the file".
        ev.nr_pages = if nr_pages == 0 { u64::MAX } else { nr_pages };
    });
}

// unmap_mapping_range(struct address_space *mapping, loff_t holebegin, loff_t holelen, int even_cows)
#[kprobe]
#[inline(always)]
pub fn unmap_mapping_range_entry(ctx: ProbeContext) -> u32 {
    let holebegin = arg(&ctx, 1);
    let holelen = arg(&ctx, 2);
    emit_owner_revoke(&ctx, Hook::UnmapMappingRange, arg(&ctx, 0), holebegin >> 12, holelen.div_ceil(4096));
    0
}

#[kretprobe]
#[inline(always)]
pub fn unmap_mapping_range_return(_ctx: RetProbeContext) -> u32 {
    leave_revocation(Hook::UnmapMappingRange);
    0
}

// unmap_mapping_pages(struct address_space *mapping, pgoff_t start, pgoff_t nr, bool even_cows)
#[kprobe]
#[inline(always)]
pub fn unmap_mapping_pages_entry(ctx: ProbeContext) -> u32 {
    emit_owner_revoke(&ctx, Hook::UnmapMappingPages, arg(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2));
    0
}

#[kretprobe]
#[inline(always)]
pub fn unmap_mapping_pages_return(_ctx: RetProbeContext) -> u32 {
    leave_revocation(Hook::UnmapMappingPages);
    0
}

/// Zap and munmap: a range of one vma loses its ptes.
#[inline(always)]
fn emit_vma_revoke(ctx: &ProbeContext, hook: Hook, cause: RevokeCause, vma: u64, start: u64, end: u64) {
    let l = layout();
    if !is_watched_vma(l, vma) {
        return;
    }
    emit::<RevokeEvent>(l, EventKind::Revoke, hook as u32, Stack::Here(ctx), 0, |ev| {
        ev.cause = cause as u32;
        fill_vma(l, vma, &mut ev.vma);
        ev.mapping = ev.vma.mapping;
        ev.start = start;
        ev.end = end;
    });
}

// zap_vma_ptes(struct vm_area_struct *vma, unsigned long address, unsigned long size)
#[kprobe]
#[inline(always)]
pub fn zap_vma_ptes_entry(ctx: ProbeContext) -> u32 {
    count_hit(Hook::ZapVmaPtes as u32);
    if !watching() || !enter_revocation(Hook::ZapVmaPtes) {
        return 0;
    }
    let (vma, address, size) = (arg(&ctx, 0), arg(&ctx, 1), arg(&ctx, 2));
    emit_vma_revoke(&ctx, Hook::ZapVmaPtes, RevokeCause::Zap, vma, address, address + size);
    0
}

#[kretprobe]
#[inline(always)]
pub fn zap_vma_ptes_return(_ctx: RetProbeContext) -> u32 {
    leave_revocation(Hook::ZapVmaPtes);
    0
}

// unmap_page_range(struct mmu_gather *tlb, struct vm_area_struct *vma, unsigned long addr,
//                  unsigned long end, struct zap_details *details)
// Runs under every teardown of page tables; on its own (no revocation hook above it on this
// thread) it is munmap / mremap / MAP_FIXED.
#[kprobe]
#[inline(always)]
pub fn unmap_page_range_entry(ctx: ProbeContext) -> u32 {
    count_hit(Hook::UnmapPageRange as u32);
    if !watching() || live_flag(&IN_REVOCATION, bpf_get_current_pid_tgid()).is_some() {
        return 0;
    }
    emit_vma_revoke(&ctx, Hook::UnmapPageRange, RevokeCause::Unmap, arg(&ctx, 1), arg(&ctx, 2), arg(&ctx, 3));
    0
}

// exit_mmap(struct mm_struct *mm): the last user of an mm is gone (in whichever task dropped the
// last reference: the exiting process, or a reader of its /proc files).
#[kprobe]
#[inline(always)]
pub fn exit_mmap_entry(ctx: ProbeContext) -> u32 {
    count_hit(Hook::ExitMmap as u32);
    if !watching() {
        return 0;
    }
    let mm = arg(&ctx, 0);
    // Remembered even when this mm is not watched (yet): the return must drop any watch, since
    // the mm pointer is reused by the next process. (While nothing at all is watched no pin can
    // appear during the teardown: lookups under it are the kernel's own.)
    save_entry_args(None, Hook::ExitMmap, [mm, 0, 0, 0]);
    if !enter_revocation(Hook::ExitMmap) || WATCHED_MMS.get_ptr(&mm).is_none() {
        return 0;
    }
    let l = layout();
    emit::<RevokeEvent>(l, EventKind::Revoke, Hook::ExitMmap as u32, Stack::Here(&ctx), 0, |ev| {
        ev.cause = RevokeCause::Exit as u32;
        ev.vma.mm = mm;
    });
    0
}

#[kretprobe]
#[inline(always)]
pub fn exit_mmap_return(_ctx: RetProbeContext) -> u32 {
    leave_revocation(Hook::ExitMmap);
    take_entry(Hook::ExitMmap, |e| {
        unwatch(&WATCHED_MMS, &e.args[0]);
    });
    0
}

// vm_area_free(struct vm_area_struct *vma): the pointer may be reused from now on.
#[kprobe]
#[inline(always)]
pub fn vm_area_free_entry(ctx: ProbeContext) -> u32 {
    count_hit(Hook::VmAreaFree as u32);
    if !watching() {
        return 0;
    }
    let vma = arg(&ctx, 0);
    let Some(mapping) = unwatch_vma(vma) else { return 0 };
    let l = layout();
    emit::<VmaFreeEvent>(l, EventKind::VmaFree, Hook::VmAreaFree as u32, Stack::None, 0, |ev| {
        ev.vma.vma = vma;
        ev.vma.mm = vma_mm(l, vma);
        ev.vma.start = read_field(vma, l.vma_vm_start);
        ev.vma.end = read_field(vma, l.vma_vm_end);
        ev.vma.mapping = mapping;
    });
    0
}

// sched:sched_process_exit — a process that took pins is gone (pins without a declared release
// end here).
#[tracepoint]
#[inline(always)]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    count_hit(Hook::TaskExit as u32);
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !watching() || tgid != pid_tgid as u32 || WATCHED_TGIDS.get_ptr(&tgid).is_none() || !unwatch(&WATCHED_TGIDS, &tgid) {
        return 0;
    }
    let l = layout();
    emit::<TaskExitEvent>(l, EventKind::TaskExit, Hook::TaskExit as u32, Stack::None, 0, |_| {});
    0
}

// ---------------------------------------------------------------------------------------------
// Release hooks named by the policy: one program per slot, attached to whatever function the
// policy names.

#[inline(always)]
fn release(ctx: &ProbeContext, slot: u32) -> u32 {
    let hook = Hook::Release0 as u32 + slot;
    count_hit(hook);
    let l = layout();
    emit::<ReleaseCallEvent>(l, EventKind::ReleaseCall, hook, Stack::Here(ctx), 0, |ev| {
        ev.slot = slot;
        for (i, a) in ev.args.iter_mut().enumerate() {
            *a = arg(ctx, i);
        }
    });
    0
}

macro_rules! release_slots {
    ($($name:ident = $slot:expr),*) => {$(
        #[kprobe]
        #[inline(always)]
        pub fn $name(ctx: ProbeContext) -> u32 {
            release(&ctx, $slot)
        }
    )*};
}

release_slots!(release_0 = 0, release_1 = 1, release_2 = 2, release_3 = 3, release_4 = 4, release_5 = 5, release_6 = 6, release_7 = 7);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
