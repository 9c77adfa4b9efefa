//! Reading kernel structs without CO-RE: every field offset comes from the running kernel's BTF,
//! resolved by the loader and handed over in the `LAYOUT` global.
use auditor_common::{KernelLayout, TaskInfo, VmaInfo};
use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel},
};

#[unsafe(no_mangle)]
pub static LAYOUT: Global<KernelLayout> = Global::new(KernelLayout {
    vmemmap_base_addr: 0,
    vma_vm_start: u32::MAX,
    vma_vm_end: u32::MAX,
    vma_vm_mm: u32::MAX,
    vma_vm_flags: u32::MAX,
    vma_vm_pgoff: u32::MAX,
    vma_vm_file: u32::MAX,
    file_f_mapping: u32::MAX,
    file_f_inode: u32::MAX,
    inode_i_ino: u32::MAX,
    inode_i_sb: u32::MAX,
    sb_s_dev: u32::MAX,
    task_tgid: u32::MAX,
    task_start_time: u32::MAX,
    task_group_leader: u32::MAX,
    task_mm: u32::MAX,
    pfnmap_args_vma: u32::MAX,
    pfnmap_args_address: u32::MAX,
    pfnmap_args_pfn: u32::MAX,
    struct_page_size: 64,
    follow_pte_takes_vma: 0,
    _pad: 0,
});

#[inline(always)]
pub fn layout() -> KernelLayout {
    LAYOUT.load()
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

/// Turns a `struct page *` into its PFN (x86-64 vmemmap model).
#[inline(always)]
pub fn page_to_pfn(l: &KernelLayout, page: u64) -> u64 {
    // Without KASLR's variable the base is the fixed default of the 4-level layout.
    let mut base: u64 = read_field(l.vmemmap_base_addr, 0);
    if base == 0 {
        base = 0xffff_ea00_0000_0000;
    }
    let size = l.struct_page_size as u64;
    if size == 0 || page < base {
        return 0;
    }
    (page - base) / size
}
