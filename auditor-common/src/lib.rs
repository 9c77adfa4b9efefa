//! Records shared by the eBPF programs (writers) and the daemon (reader).
//!
//! Every record starts with a [`Header`]; `Header::kind` says which struct follows. All
//! structs are `#[repr(C)]`, padded explicitly, and contain only integers so that the eBPF side
//! can fill them field by field and userspace can read them with `read_unaligned`.
#![no_std]

pub mod hook;
pub use hook::{HOOK_COUNT, Hook};

/// Length of `task_struct::comm`.
pub const TASK_COMM_LEN: usize = 16;
/// How many frame-vector entries one `FramesGet` record carries (the rest are counted only).
pub const MAX_FRAMES: usize = 16;
/// How many arguments a release-hook call record carries.
pub const RELEASE_ARGS: usize = 6;
/// Release hooks a policy may name (kprobe programs are loaded once per slot).
pub const RELEASE_SLOTS: usize = 8;
/// Kernel frames a record carries, innermost first; a deeper stack keeps its innermost frames
/// (the hooked function, the holder and its callers: what a finding shows). The deepest stacks
/// the VM scenarios record are 23 frames (an owner revocation under a PCI BAR claim) and 19 (a
/// PFN inserted at fault time); 32 leaves room for a deeper driver or a nested fault at
/// 256 bytes a record (the eBPF side copies the frames into the ring-buffer record itself).
pub const STACK_DEPTH: usize = 32;

/// Which record follows the header.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `remap_pfn_range()` succeeded, or a PFN was first inserted into a vma at fault time
    /// (`vmf_insert_pfn*()`): a PFN map exists.
    PfnMap = 1,
    /// `follow_pfn()` / `follow_pte()` / `follow_pfnmap_start()` returned 0.
    RawLookup = 2,
    /// `get_vaddr_frames()` returned n > 0.
    FramesGet = 3,
    /// `put_vaddr_frames(vec)`.
    FramesPut = 4,
    /// Something took PFNs away from a watched vma / mapping / mm.
    Revoke = 5,
    /// A watched vma was freed; its pointer may be reused from now on.
    VmaFree = 6,
    /// A policy-declared release hook was called.
    ReleaseCall = 7,
    /// A watched task (thread group leader) exited.
    TaskExit = 8,
    /// The name of the file a newly watched vma maps, taken from its dentries (sent once per vma,
    /// before the record that watches it).
    FileName = 9,
}

impl EventKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::PfnMap,
            2 => Self::RawLookup,
            3 => Self::FramesGet,
            4 => Self::FramesPut,
            5 => Self::Revoke,
            6 => Self::VmaFree,
            7 => Self::ReleaseCall,
            8 => Self::TaskExit,
            9 => Self::FileName,
            _ => return None,
        })
    }
}

/// Why PFNs were taken away, as seen by the hook that fired.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeCause {
    /// `unmap_mapping_range()` / `unmap_mapping_pages()`: the owner revoked a file range.
    OwnerRevoke = 1,
    /// `zap_vma_ptes()`: the driver zapped ptes of one vma.
    Zap = 2,
    /// munmap / mremap / MAP_FIXED: page tables of a vma torn down outside any other revocation.
    Unmap = 3,
    /// `exit_mmap()`: the whole mm is torn down.
    Exit = 4,
}

impl RevokeCause {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::OwnerRevoke,
            2 => Self::Zap,
            3 => Self::Unmap,
            4 => Self::Exit,
            _ => return None,
        })
    }
}

/// The task an event happened in, snapshotted in the kernel at event time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskInfo {
    pub tgid: u32,
    pub pid: u32,
    /// `task_struct::start_time` of the thread group leader (ns since boot); with tgid it names
    /// a process uniquely even when pids are reused.
    pub start_time_ns: u64,
    pub comm: [u8; TASK_COMM_LEN],
}

/// The kernel stack of a hooked call, taken at function entry (`bpf_get_stack()`), where the
/// hooked function is frame 0 and its caller frame 1. Copied into the record it explains, so no
/// later stack can change it before the daemon reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelStack {
    /// Valid entries of `ips` (0: no stack: the record has none, or the kernel could not unwind).
    pub depth: u32,
    pub _pad: u32,
    /// Return addresses (kernel text), innermost first.
    pub ips: [u64; STACK_DEPTH],
}

impl KernelStack {
    /// The valid frames.
    pub fn frames(&self) -> &[u64] {
        &self.ips[..(self.depth as usize).min(STACK_DEPTH)]
    }
}

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Header {
    /// [`EventKind`] as u32.
    pub kind: u32,
    /// [`Hook`] as u32: which probe wrote the record.
    pub hook: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at the event.
    pub ts_ns: u64,
    pub task: TaskInfo,
    /// The hooked call's stack; empty for records no stack explains (vma frees, exits, file names).
    pub stack: KernelStack,
}

/// A vma as the kernel saw it at event time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VmaInfo {
    /// `struct vm_area_struct *`; 0 when the hook only knew the mm.
    pub vma: u64,
    /// `struct mm_struct *`.
    pub mm: u64,
    pub start: u64,
    pub end: u64,
    pub flags: u64,
    pub pgoff: u64,
    /// `vma->vm_file->f_mapping` (`struct address_space *`), 0 for anonymous vmas.
    pub mapping: u64,
    pub ino: u64,
    /// `inode->i_sb->s_dev` (kernel dev_t encoding: major << 20 | minor).
    pub dev: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PfnMapEvent {
    pub hdr: Header,
    pub vma: VmaInfo,
    /// User address the range starts at.
    pub addr: u64,
    pub pfn: u64,
    /// Bytes.
    pub size: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawLookupEvent {
    pub hdr: Header,
    /// For `follow_pte(mm, ...)` kernels the vma is found in the kernel (find_vma); only
    /// `vma.mm` is set when none contains the address.
    pub vma: VmaInfo,
    pub address: u64,
    pub pfn: u64,
    /// 1 when the PFN has a `struct page` that is not `PG_reserved`: ordinary RAM, which holders
    /// such as vfio refuse (they take only MMIO and reserved PFNs from a PFN map).
    pub ram: u8,
    /// 1 when the record carries no stack of its own (`hdr.stack` is empty) but has the stack of
    /// the earlier lookup record of the same thread whose `stack_id` it names: a lookup from the
    /// same call frame (same return address and stack pointer at entry) on the page after that
    /// thread's previous recorded lookup in the same vma (a driver looking up a range page by
    /// page). The kernel names only a record it handed over (a reservation that failed is not
    /// named again: the next page takes its own stack); the daemon fills the frames in from that
    /// record, and a record it did not read leaves the stack unknown and counted, never guessed.
    pub shares_stack: u8,
    pub _pad: [u8; 6],
    /// The stack's id: a record with its own stack gets a new one (unique for the run: the CPU in
    /// the low 16 bits, that CPU's count above, never 0), a record that shares a stack names the
    /// one of the record it shares.
    pub stack_id: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FramesGetEvent {
    pub hdr: Header,
    /// `struct frame_vector *`: the handle `put_vaddr_frames()` is matched by.
    pub vec: u64,
    pub start: u64,
    pub mm: u64,
    /// Return value: number of frames pinned.
    pub nr_frames: u32,
    /// `vec->is_pfns`: the kernel fell back to follow_pfn and holds no reference.
    pub is_pfns: u8,
    pub got_ref: u8,
    pub _pad: [u8; 2],
    /// PFNs of the first `min(nr_frames, MAX_FRAMES)` frames (page pointers already converted).
    pub pfns: [u64; MAX_FRAMES],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FramesPutEvent {
    pub hdr: Header,
    pub vec: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RevokeEvent {
    pub hdr: Header,
    /// [`RevokeCause`] as u32.
    pub cause: u32,
    pub _pad: u32,
    /// OwnerRevoke: the `address_space` and page-offset range (`nr_pages == u64::MAX`: to end).
    pub mapping: u64,
    pub first_pgoff: u64,
    pub nr_pages: u64,
    /// Zap / Unmap: the vma and the user address range torn down. Exit: only `vma.mm`.
    pub vma: VmaInfo,
    pub start: u64,
    pub end: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VmaFreeEvent {
    pub hdr: Header,
    pub vma: VmaInfo,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ReleaseCallEvent {
    pub hdr: Header,
    /// Index of the policy release hook (order of appearance in the policy).
    pub slot: u32,
    pub _pad: u32,
    pub args: [u64; RELEASE_ARGS],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskExitEvent {
    pub hdr: Header,
}

/// Dentry levels a [`FileNameEvent`] carries: the file and up to 11 parents below its filesystem's
/// root (/sys/devices/pci0000:00/0000:00:05.0/resource0 needs 4, a BAR behind two PCIe switches 8).
pub const FILE_NAME_DEPTH: usize = 12;
/// Bytes per dentry name (longer names are cut; PCI and device names are far shorter).
pub const FILE_NAME_LEN: usize = 48;

/// The file behind a vma, named in the kernel at the moment it became interesting, so the path
/// does not depend on whether the process still exists when the daemon reads the record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileNameEvent {
    pub hdr: Header,
    /// The vma (`struct vm_area_struct *`) the name belongs to.
    pub vma: u64,
    /// `inode->i_sb->s_dev` of the file (kernel encoding), to find the filesystem's mount.
    pub dev: u32,
    /// Valid entries of `names`.
    pub depth: u32,
    /// 1 when the names reach the filesystem's root; 0 when the path is deeper than
    /// [`FILE_NAME_DEPTH`] and only its end is known.
    pub complete: u32,
    pub _pad: u32,
    /// `sb->s_type->name` (`sysfs`, `devtmpfs`, `anon_inodefs`…), NUL-terminated.
    pub fs_type: [u8; 16],
    /// Dentry names, the file's own first, then its parents up to (not including) the root;
    /// NUL-terminated.
    pub names: [[u8; FILE_NAME_LEN]; FILE_NAME_DEPTH],
}

/// Per-hook counters kept in a per-CPU array indexed by [`Hook`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HookCounters {
    /// Times the probe ran.
    pub hits: u64,
    /// Records written to the ring buffer.
    pub emitted: u64,
    /// Records lost because the ring buffer reservation failed.
    pub dropped: u64,
}

/// Struct layout of the running kernel, read from its BTF by the loader and handed to the eBPF
/// programs as one global (aya has no CO-RE relocations). `u32::MAX` marks "absent". Only `u32`
/// fields after the first `u64`, an even number of them: no implicit padding (the struct is
/// copied byte-wise into the eBPF object).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelLayout {
    /// Kernel address of the `vmemmap_base` variable (x86-64 KASLR), 0 if not found.
    pub vmemmap_base_addr: u64,
    pub vma_vm_start: u32,
    pub vma_vm_end: u32,
    pub vma_vm_mm: u32,
    pub vma_vm_flags: u32,
    pub vma_vm_pgoff: u32,
    pub vma_vm_file: u32,
    pub file_f_mapping: u32,
    pub file_f_inode: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub sb_s_dev: u32,
    pub task_tgid: u32,
    pub task_start_time: u32,
    pub task_group_leader: u32,
    pub task_mm: u32,
    pub pfnmap_args_vma: u32,
    pub pfnmap_args_address: u32,
    pub pfnmap_args_pfn: u32,
    /// `sizeof(struct page)`, to turn page pointers into PFNs.
    pub struct_page_size: u32,
    /// 1 when `follow_pte()` takes a vma (6.10+), 0 when it takes an mm.
    pub follow_pte_takes_vma: u32,
    // find_vma() in the kernel, for lookups that carry only the mm (follow_pte(mm, ..) to 6.9):
    // the vma rbtree to 6.0, the maple tree from 6.1 (include/linux/mm_types.h, maple_tree.h).
    /// `mm_struct::mm_rb.rb_node` (to 6.0).
    pub mm_rb_node: u32,
    /// `vm_area_struct::vm_rb` (to 6.0).
    pub vma_vm_rb: u32,
    /// `rb_node::rb_right`, `rb_node::rb_left`.
    pub rb_right: u32,
    pub rb_left: u32,
    /// `mm_struct::mm_mt.ma_root` (6.1+).
    pub mm_mt_root: u32,
    /// `maple_range_64::pivot`, `::slot`; `maple_arange_64::pivot`, `::slot` (6.1+).
    pub maple_range64_pivot: u32,
    pub maple_range64_slot: u32,
    pub maple_arange64_pivot: u32,
    pub maple_arange64_slot: u32,
    /// Bit of `PG_reserved` in `page->flags` (`enum pageflags`): PFNs of ordinary RAM are told
    /// from reserved pages and MMIO.
    pub pg_reserved_bit: u32,
    /// `vm_fault::vma` and `vm_fault::address`, for PFN insertion at fault time (huge faults).
    pub vm_fault_vma: u32,
    pub vm_fault_address: u32,
    /// `file::f_path.dentry`, `dentry::d_name.name`, `dentry::d_parent`, `super_block::s_type`,
    /// `file_system_type::name`: the mapped file's name, taken in the kernel ([`FileNameEvent`]).
    pub file_dentry: u32,
    pub dentry_name: u32,
    pub dentry_parent: u32,
    pub sb_s_type: u32,
    pub fs_type_name: u32,
    /// `mmap_action::remap` (7.x mmap_prepare): `{ start, start_pfn, size, pgprot }` at +0, +8, +16.
    pub mmap_action_remap: u32,
}

impl KernelLayout {
    pub const ABSENT: u32 = u32::MAX;

    /// Every field absent: what the eBPF object holds until the loader overrides it.
    pub const EMPTY: KernelLayout = KernelLayout {
        vmemmap_base_addr: 0,
        vma_vm_start: Self::ABSENT,
        vma_vm_end: Self::ABSENT,
        vma_vm_mm: Self::ABSENT,
        vma_vm_flags: Self::ABSENT,
        vma_vm_pgoff: Self::ABSENT,
        vma_vm_file: Self::ABSENT,
        file_f_mapping: Self::ABSENT,
        file_f_inode: Self::ABSENT,
        inode_i_ino: Self::ABSENT,
        inode_i_sb: Self::ABSENT,
        sb_s_dev: Self::ABSENT,
        task_tgid: Self::ABSENT,
        task_start_time: Self::ABSENT,
        task_group_leader: Self::ABSENT,
        task_mm: Self::ABSENT,
        pfnmap_args_vma: Self::ABSENT,
        pfnmap_args_address: Self::ABSENT,
        pfnmap_args_pfn: Self::ABSENT,
        struct_page_size: 64,
        follow_pte_takes_vma: 0,
        mm_rb_node: Self::ABSENT,
        vma_vm_rb: Self::ABSENT,
        rb_right: Self::ABSENT,
        rb_left: Self::ABSENT,
        mm_mt_root: Self::ABSENT,
        maple_range64_pivot: Self::ABSENT,
        maple_range64_slot: Self::ABSENT,
        maple_arange64_pivot: Self::ABSENT,
        maple_arange64_slot: Self::ABSENT,
        pg_reserved_bit: Self::ABSENT,
        vm_fault_vma: Self::ABSENT,
        vm_fault_address: Self::ABSENT,
        file_dentry: Self::ABSENT,
        dentry_name: Self::ABSENT,
        dentry_parent: Self::ABSENT,
        sb_s_type: Self::ABSENT,
        fs_type_name: Self::ABSENT,
        mmap_action_remap: Self::ABSENT,
    };
}

impl Default for KernelLayout {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// `struct frame_vector` and `get_vaddr_frames()` as the running kernel has them. From 5.12 they
/// live in the videobuf2-common module, which may be loaded after the programs are: so this is not
/// part of the read-only [`KernelLayout`] but the one entry of the `FRAME_VECTOR_LAYOUT` array map,
/// written before the frame-vector hooks are attached.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameVectorLayout {
    /// 1 once written; the hooks ignore calls while it is 0 (the map's initial state).
    pub valid: u32,
    pub nr_frames: u32,
    pub got_ref: u32,
    /// `KernelLayout::ABSENT` on kernels without the field.
    pub is_pfns: u32,
    pub ptrs: u32,
    /// Index of the `vec` argument of `get_vaddr_frames()` (2 or 3).
    pub vec_arg: u32,
}

/// `VM_IO` and `VM_PFNMAP` from include/linux/mm.h (unchanged 5.10 .. 6.12).
pub const VM_IO: u64 = 0x0000_4000;
pub const VM_PFNMAP: u64 = 0x0000_0400;

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are plain-old-data: integers and integer arrays, explicit padding.
    unsafe impl aya::Pod for KernelLayout {}
    unsafe impl aya::Pod for HookCounters {}
    unsafe impl aya::Pod for FrameVectorLayout {}
}
