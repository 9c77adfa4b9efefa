//! Reading kernel structs without CO-RE: every field offset comes from the running kernel's BTF,
//! resolved by the loader and handed over in the `LAYOUT` global.
use auditor_common::{FILE_NAME_DEPTH, FileNameEvent, KernelLayout, TaskInfo, VmaInfo};
use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel, generated};

/// Written by the loader before the programs are loaded. `static mut` (the `.data` map), not a
/// read-only `Global`: the compiler must not fold reads into the initializer's values, and the
/// programs read single fields through a reference instead of copying the whole struct onto
/// their 512-byte stack.
#[unsafe(no_mangle)]
pub static mut LAYOUT: KernelLayout = KernelLayout::EMPTY;

#[inline(always)]
pub fn layout() -> &'static KernelLayout {
    unsafe { &*core::ptr::addr_of!(LAYOUT) }
}

/// Reads a `T` at `base + off`; 0 when the field is absent on this kernel or the read faults.
#[inline(always)]
pub fn read_field<T: Default>(base: u64, off: u32) -> T {
    if base == 0 || off == KernelLayout::ABSENT {
        return T::default();
    }
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.unwrap_or_default()
}

/// Snapshot of the current task.
#[inline(always)]
pub fn current_task(l: &KernelLayout) -> TaskInfo {
    let pid_tgid = bpf_get_current_pid_tgid();
    let task = unsafe { bpf_get_current_task() };
    let leader: u64 = read_field(task, l.task_group_leader);
    TaskInfo {
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        start_time_ns: read_field(leader, l.task_start_time),
        comm: bpf_get_current_comm().unwrap_or_default(),
    }
}

/// `current->mm`.
#[inline(always)]
pub fn current_mm(l: &KernelLayout) -> u64 {
    let task = unsafe { bpf_get_current_task() };
    read_field(task, l.task_mm)
}

/// `vma->vm_mm`.
#[inline(always)]
pub fn vma_mm(l: &KernelLayout, vma: u64) -> u64 {
    read_field(vma, l.vma_vm_mm)
}

/// Fills `out` from a live vma.
#[inline(always)]
pub fn fill_vma(l: &KernelLayout, vma: u64, out: &mut VmaInfo) {
    out.vma = vma;
    out.mm = read_field(vma, l.vma_vm_mm);
    out.start = read_field(vma, l.vma_vm_start);
    out.end = read_field(vma, l.vma_vm_end);
    out.flags = read_field(vma, l.vma_vm_flags);
    out.pgoff = read_field(vma, l.vma_vm_pgoff);
    let file: u64 = read_field(vma, l.vma_vm_file);
    out.mapping = read_field(file, l.file_f_mapping);
    let inode: u64 = read_field(file, l.file_f_inode);
    out.ino = read_field(inode, l.inode_i_ino);
    let sb: u64 = read_field(inode, l.inode_i_sb);
    out.dev = read_field(sb, l.sb_s_dev);
}

/// Physical-address bits of an x86-64 pte (bits 12..51); bit 63 is NX.
const PTE_PFN_MASK: u64 = 0x000f_ffff_ffff_f000;

/// PFN held by the pte `ptep` points at.
#[inline(always)]
pub fn pte_pfn(ptep: u64) -> u64 {
    let pte: u64 = read_field(ptep, 0);
    (pte & PTE_PFN_MASK) >> 12
}

/// Start of the `struct page` array (x86-64 vmemmap model).
#[inline(always)]
fn vmemmap_base(l: &KernelLayout) -> u64 {
    // Without KASLR's variable the base is the fixed default of the 4-level layout.
    let base: u64 = read_field(l.vmemmap_base_addr, 0);
    if base == 0 { 0xffff_ea00_0000_0000 } else { base }
}

/// Turns a `struct page *` into its PFN (x86-64 vmemmap model).
#[inline(always)]
pub fn page_to_pfn(l: &KernelLayout, page: u64) -> u64 {
    let base = vmemmap_base(l);
    let size = l.struct_page_size as u64;
    if size == 0 || page < base {
        return 0;
    }
    (page - base) / size
}

/// Depth bound of the vma rbtree walk: a red-black tree of n nodes is at most 2·log2(n+1) deep,
/// so 40 levels cover a million vmas (vm.max_map_count defaults to 65530).
const RB_MAX_DEPTH: usize = 40;
/// Height bound of the maple tree walk. Nodes may be little more than a third full (leaves at
/// least 6 entries, arange nodes 4 children) and each vma can be followed by a gap entry: 12
/// levels hold over 4^11·6 > 25 M entries, above any `vm.max_map_count` in use (1 M on some
/// distributions, 65 530 by default). A deeper tree leaves the lookup without its vma (counted
/// by the correlator as `pins_without_vma`).
const MAPLE_MAX_HEIGHT: usize = 12;
/// `enum maple_type` (include/linux/maple_tree.h, 6.1+: dense 0, leaf_64 1, range_64 2,
/// arange_64 3): types below `maple_range_64` are leaves; `maple_arange_64` nodes hold 10 slots,
/// the others 16.
const MAPLE_RANGE_64: u64 = 2;
const MAPLE_ARANGE_64: u64 = 3;

/// The vma of `mm` that contains `addr`, or 0: the kernel's `find_vma()` + containment check, for
/// lookups that carry only the mm (`follow_pte(mm, ..)`, 5.10 stable to 6.9). The callers hold
/// the mmap lock (vfio's vaddr_get_pfns, KVM's hva_to_pfn_remapped), so the tree is stable.
#[inline(always)]
pub fn find_vma(l: &KernelLayout, mm: u64, addr: u64) -> u64 {
    let vma = if l.mm_mt_root != KernelLayout::ABSENT {
        maple_find(l, mm, addr)
    } else if l.mm_rb_node != KernelLayout::ABSENT && l.vma_vm_rb != KernelLayout::ABSENT {
        rb_find(l, mm, addr)
    } else {
        0
    };
    let start: u64 = read_field(vma, l.vma_vm_start);
    let end: u64 = read_field(vma, l.vma_vm_end);
    if vma != 0 && start <= addr && addr < end { vma } else { 0 }
}

/// find_vma() of 5.10 (mm/mmap.c): the first vma ending above `addr` in the `mm_rb` tree.
#[inline(always)]
fn rb_find(l: &KernelLayout, mm: u64, addr: u64) -> u64 {
    let mut node: u64 = read_field(mm, l.mm_rb_node);
    let mut found = 0;
    for _ in 0..RB_MAX_DEPTH {
        if node == 0 {
            break;
        }
        let vma = node - l.vma_vm_rb as u64;
        let end: u64 = read_field(vma, l.vma_vm_end);
        if end > addr {
            found = vma;
            let start: u64 = read_field(vma, l.vma_vm_start);
            if start <= addr {
                break;
            }
            node = read_field(node, l.rb_left);
        } else {
            node = read_field(node, l.rb_right);
        }
    }
    found
}

/// mt_find() of 6.1 (lib/maple_tree.c), reduced to a walk down to the slot holding `addr`: in
/// each node the first pivot at or above `addr` names the slot (the last slot's pivot is
/// implicit). The root pointer of a tree with nodes is tagged `MAPLE_ROOT_NODE` (bit 1, and above
/// 4096: xa_is_node); every encoded node pointer carries its type in bits 3..6 and the node is
/// 256-byte aligned. Slots of range/arange nodes hold encoded child nodes, slots of leaf nodes
/// (`maple_leaf_64`, `maple_dense`) the entries: the vmas.
#[inline(always)]
fn maple_find(l: &KernelLayout, mm: u64, addr: u64) -> u64 {
    let root: u64 = read_field(mm, l.mm_mt_root);
    if root & 3 != 2 || root <= 4096 {
        return 0; // empty, or a single entry at index 0: no vma of a user address
    }
    let mut enode = root;
    for _ in 0..MAPLE_MAX_HEIGHT {
        let node = enode & !0xff;
        let node_type = (enode >> 3) & 0xf;
        let (pivots, slots, nr_slots) = if node_type == MAPLE_ARANGE_64 {
            (l.maple_arange64_pivot, l.maple_arange64_slot, 10u64)
        } else {
            (l.maple_range64_pivot, l.maple_range64_slot, 16u64)
        };
        if pivots == KernelLayout::ABSENT || slots == KernelLayout::ABSENT || node == 0 {
            return 0;
        }
        let mut offset = nr_slots - 1;
        for i in 0..15u64 {
            if i + 1 >= nr_slots {
                break;
            }
            let pivot: u64 = read_field(node, pivots + 8 * i as u32);
            if pivot >= addr || (pivot == 0 && i > 0) {
                offset = i;
                break;
            }
        }
        let slot: u64 = read_field(node, slots + 8 * offset as u32);
        if node_type < MAPLE_RANGE_64 {
            return slot; // a leaf: the entry is the vma (or NULL in a gap)
        }
        enode = slot;
    }
    0
}

/// Is `pfn` ordinary RAM: it has a `struct page` (the vmemmap entry is readable) and the page is
/// not `PG_reserved`? vfio refuses such PFNs from a PFN map (is_invalid_reserved_pfn()).
#[inline(always)]
pub fn pfn_is_ram(l: &KernelLayout, pfn: u64) -> bool {
    if l.pg_reserved_bit >= 64 {
        return false;
    }
    let page = vmemmap_base(l) + pfn.wrapping_mul(l.struct_page_size as u64);
    // page->flags is the first field of struct page on every kernel.
    match unsafe { bpf_probe_read_kernel(page as *const u64) } {
        Ok(flags) => flags & (1u64 << l.pg_reserved_bit) == 0,
        Err(_) => false,
    }
}

/// Names the file `vma` maps into `out`: its dentries up to the filesystem root and the
/// filesystem type. False for anonymous memory.
#[inline(always)]
pub fn fill_file_name(l: &KernelLayout, vma: u64, out: &mut FileNameEvent) -> bool {
    let file: u64 = read_field(vma, l.vma_vm_file);
    if file == 0 {
        return false;
    }
    out.vma = vma;
    let inode: u64 = read_field(file, l.file_f_inode);
    let sb: u64 = read_field(inode, l.inode_i_sb);
    out.dev = read_field(sb, l.sb_s_dev);
    let fs_type: u64 = read_field(sb, l.sb_s_type);
    let fs_name: u64 = read_field(fs_type, l.fs_type_name);
    if fs_name != 0 {
        read_str(fs_name, &mut out.fs_type);
    }
    let mut dentry: u64 = read_field(file, l.file_dentry);
    for i in 0..FILE_NAME_DEPTH {
        // A dentry that is its own parent is a root: the filesystem's ("/", not named), or the
        // file's own when it is a pseudo file (anon_inode_getfile(), vfio's device files):
        // d_alloc_pseudo() makes those their own parent, and their name is all there is.
        let parent: u64 = read_field(dentry, l.dentry_parent);
        if dentry == 0 || (parent == dentry && i > 0) {
            break;
        }
        let name: u64 = read_field(dentry, l.dentry_name);
        if name != 0 {
            read_str(name, &mut out.names[i]);
        }
        out.depth = i as u32 + 1;
        if parent == dentry {
            out.complete = 1;
            break;
        }
        dentry = parent;
        let grandparent: u64 = read_field(dentry, l.dentry_parent);
        if grandparent == dentry {
            out.complete = 1; // the next one is the filesystem's root
            break;
        }
    }
    true
}

/// Copies the kernel string at `src` into `dest`, NUL-terminated and cut to its size.
#[inline(always)]
fn read_str<const N: usize>(src: u64, dest: &mut [u8; N]) {
    unsafe { generated::bpf_probe_read_kernel_str(dest.as_mut_ptr().cast(), N as u32, src as *const core::ffi::c_void) };
}
