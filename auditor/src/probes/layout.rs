//! The running kernel's struct layout, read from its BTF (/sys/kernel/btf). aya has no CO-RE
//! relocations for Rust eBPF, so the eBPF programs read fields at offsets computed here.
use std::{collections::HashMap, path::Path};

use anyhow::{Context, anyhow};
use auditor_common::{FrameVectorLayout, KernelLayout};
use btf_rs::{Btf, BtfType, Type};

use super::kernel_version::KernelVersion;

/// vmlinux BTF plus the split BTF of modules that define types we need.
pub struct KernelBtf {
    vmlinux: Btf,
    modules: HashMap<String, Btf>,
}

impl KernelBtf {
    /// Reads /sys/kernel/btf/vmlinux and, where present, the named modules' BTF.
    pub(crate) fn from_sys(modules: &[&str]) -> anyhow::Result<Self> {
        Self::from_dir(Path::new("/sys/kernel/btf"), modules)
    }

    pub(crate) fn from_dir(dir: &Path, modules: &[&str]) -> anyhow::Result<Self> {
        let vmlinux_path = dir.join("vmlinux");
        let vmlinux = std::fs::read(&vmlinux_path)
            .map_err(|e| anyhow!("cannot read kernel BTF {}: {e} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)", vmlinux_path.display()))?;
        let mut module_blobs = Vec::new();
        for module in modules {
            let path = dir.join(module);
            if path.exists() {
                let blob = std::fs::read(&path).map_err(|e| anyhow!("cannot read module BTF {}: {e}", path.display()))?;
                module_blobs.push((*module, blob));
            }
        }
        let module_blobs: Vec<(&str, &[u8])> = module_blobs.iter().map(|(name, blob)| (*name, blob.as_slice())).collect();
        // from_bytes names the blob (`vmlinux: …`): prefixed with the directory, that is its path.
        Self::from_bytes(&vmlinux, &module_blobs).map_err(|e| anyhow!("{}/{e}", dir.display()))
    }

    /// The vmlinux BTF blob (`/sys/kernel/btf/vmlinux`, the `.BTF` section of an ELF) and the
    /// split BTF blobs of modules by name. A blob that is not BTF is a one-line error naming it
    /// (`vmlinux: …` or the module's name), never a panic: the blobs are fuzzed (`fuzz/`).
    pub fn from_bytes(vmlinux: &[u8], modules: &[(&str, &[u8])]) -> anyhow::Result<Self> {
        let vmlinux = Btf::from_bytes(vmlinux).map_err(|e| anyhow!("vmlinux: not BTF: {e}"))?;
        let mut loaded = HashMap::new();
        for (module, blob) in modules {
            let btf = Btf::from_split_bytes(blob, &vmlinux).map_err(|e| anyhow!("{module}: not split BTF: {e}"))?;
            loaded.insert(module.to_string(), btf);
        }
        Ok(Self { vmlinux, modules: loaded })
    }

    fn all(&self) -> impl Iterator<Item = &Btf> {
        std::iter::once(&self.vmlinux).chain(self.modules.values())
    }

    /// The struct named `name` (a definition, not a forward declaration) and the BTF holding it.
    fn find_struct(&self, name: &str) -> Option<(&Btf, btf_rs::Struct)> {
        self.all().find_map(|btf| {
            btf.resolve_types_by_name(name).ok()?.into_iter().find_map(|t| match t {
                Type::Struct(s) => Some((btf, s)),
                _ => None,
            })
        })
    }

    /// Byte offset of `field` in `struct name`, looking through anonymous structs and unions
    /// (6.3+ wraps `vm_flags` in one).
    pub(crate) fn field_offset(&self, name: &str, field: &str) -> Option<u32> {
        let (btf, s) = self.find_struct(name)?;
        member_offset(btf, &s, field).map(|bits| bits / 8)
    }

    /// Value of `enumerator` in `enum name`.
    pub(crate) fn enum_value(&self, name: &str, enumerator: &str) -> Option<u32> {
        self.all().find_map(|btf| {
            btf.resolve_types_by_name(name).ok()?.into_iter().find_map(|t| match t {
                Type::Enum(e) => e.members.iter().find(|m| btf.resolve_name(*m).is_ok_and(|n| n == enumerator)).map(|m| m.val()),
                _ => None,
            })
        })
    }

    pub(crate) fn struct_size(&self, name: &str) -> Option<u32> {
        self.find_struct(name).map(|(_, s)| s.size() as u32)
    }

    /// Names of the parameters of function `func`, in order, with their type names
    /// (`struct vm_area_struct *` → "vm_area_struct").
    pub fn func_params(&self, func: &str) -> Option<Vec<(String, String)>> {
        self.all().find_map(|btf| {
            let f = btf.resolve_types_by_name(func).ok()?.into_iter().find_map(|t| match t {
                Type::Func(f) => Some(f),
                _ => None,
            })?;
            let Type::FuncProto(proto) = btf.resolve_chained_type(&f).ok()? else { return None };
            let params = proto
                .parameters
                .iter()
                .map(|p| {
                    let name = btf.resolve_name(p).unwrap_or_default();
                    (name, pointee_name(btf, p))
                })
                .collect();
            Some(params)
        })
    }
}

/// Links followed from a member or parameter to the type it is made of (typedefs, qualifiers,
/// pointers): a kernel's BTF needs a handful; a chain that loops (only a corrupt BTF has one) ends
/// here instead of looping forever.
const MAX_CHAIN: usize = 32;
/// Levels of anonymous structs and unions looked through: the kernel nests two or three; a struct
/// that contains itself (only a corrupt BTF has one) ends here instead of overflowing the stack.
const MAX_ANONYMOUS_DEPTH: u32 = 8;

/// Bit offset of `field` in `s`, descending into anonymous members.
fn member_offset(btf: &Btf, s: &btf_rs::Struct, field: &str) -> Option<u32> {
    member_offset_within(btf, s, field, MAX_ANONYMOUS_DEPTH)
}

fn member_offset_within(btf: &Btf, s: &btf_rs::Struct, field: &str, depth: u32) -> Option<u32> {
    for m in &s.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == field {
            return Some(m.bit_offset());
        }
        if name.is_empty() && depth > 0 {
            // Through qualifiers: `struct vm_fault` starts with a `const struct { .. }` (5.13+).
            let inner = btf.chained_type_iter(m).take(MAX_CHAIN).find_map(|t| match t {
                Type::Struct(inner) | Type::Union(inner) => Some(inner),
                _ => None,
            });
            let Some(inner) = inner else { continue };
            if let Some(off) = member_offset_within(btf, &inner, field, depth - 1) {
                return m.bit_offset().checked_add(off);
            }
        }
    }
    None
}

/// Name of the struct a parameter points to (through typedefs/const), or of its type.
fn pointee_name(btf: &Btf, param: &dyn BtfType) -> String {
    for t in btf.chained_type_iter(param).take(MAX_CHAIN) {
        match &t {
            Type::Struct(s) | Type::Union(s) => return btf.resolve_name(s).unwrap_or_default(),
            Type::Fwd(f) => return btf.resolve_name(f).unwrap_or_default(),
            Type::Int(i) => return btf.resolve_name(i).unwrap_or_default(),
            _ => {}
        }
    }
    String::new()
}

/// Builds the layout the eBPF programs get. Fields of structs that do not exist on this kernel
/// (follow_pfnmap_args before 6.12) stay `ABSENT`; the hooks that need them are not attached there.
pub fn kernel_layout(btf: &KernelBtf, kernel: KernelVersion, vmemmap_base_addr: u64) -> anyhow::Result<KernelLayout> {
    let required = |s: &str, f: &str| btf.field_offset(s, f).with_context(|| format!("kernel BTF has no field {s}::{f}"));
    let optional = |s: &str, f: &str| btf.field_offset(s, f).unwrap_or(KernelLayout::ABSENT);
    // `outer.field.inner` where `field` is a struct `inner_struct` embedded by value.
    let nested = |outer: &str, field: &str, inner_struct: &str, inner: &str| match (
        btf.field_offset(outer, field),
        btf.field_offset(inner_struct, inner),
    ) {
        (Some(a), Some(b)) => a + b,
        _ => KernelLayout::ABSENT,
    };
    Ok(KernelLayout {
        vmemmap_base_addr,
        vma_vm_start: required("vm_area_struct", "vm_start")?,
        vma_vm_end: required("vm_area_struct", "vm_end")?,
        vma_vm_mm: required("vm_area_struct", "vm_mm")?,
        vma_vm_flags: required("vm_area_struct", "vm_flags")?,
        vma_vm_pgoff: required("vm_area_struct", "vm_pgoff")?,
        vma_vm_file: required("vm_area_struct", "vm_file")?,
        file_f_mapping: required("file", "f_mapping")?,
        file_f_inode: required("file", "f_inode")?,
        inode_i_ino: required("inode", "i_ino")?,
        inode_i_sb: required("inode", "i_sb")?,
        sb_s_dev: required("super_block", "s_dev")?,
        task_tgid: required("task_struct", "tgid")?,
        task_start_time: required("task_struct", "start_time")?,
        task_group_leader: required("task_struct", "group_leader")?,
        task_mm: required("task_struct", "mm")?,
        pfnmap_args_vma: optional("follow_pfnmap_args", "vma"),
        pfnmap_args_address: optional("follow_pfnmap_args", "address"),
        pfnmap_args_pfn: optional("follow_pfnmap_args", "pfn"),
        struct_page_size: btf.struct_size("page").unwrap_or(64),
        follow_pte_takes_vma: follow_pte_takes_vma(btf, kernel) as u32,
        mm_rb_node: nested("mm_struct", "mm_rb", "rb_root", "rb_node"),
        vma_vm_rb: optional("vm_area_struct", "vm_rb"),
        rb_right: optional("rb_node", "rb_right"),
        rb_left: optional("rb_node", "rb_left"),
        mm_mt_root: nested("mm_struct", "mm_mt", "maple_tree", "ma_root"),
        maple_range64_pivot: optional("maple_range_64", "pivot"),
        maple_range64_slot: optional("maple_range_64", "slot"),
        maple_arange64_pivot: optional("maple_arange_64", "pivot"),
        maple_arange64_slot: optional("maple_arange_64", "slot"),
        pg_reserved_bit: btf.enum_value("pageflags", "PG_reserved").unwrap_or(KernelLayout::ABSENT),
        vm_fault_vma: optional("vm_fault", "vma"),
        vm_fault_address: optional("vm_fault", "address"),
        file_dentry: nested("file", "f_path", "path", "dentry"),
        dentry_name: nested("dentry", "d_name", "qstr", "name"),
        dentry_parent: optional("dentry", "d_parent"),
        sb_s_type: optional("super_block", "s_type"),
        fs_type_name: optional("file_system_type", "name"),
        mmap_action_remap: optional("mmap_action", "remap"),
    })
}

/// `struct frame_vector` and the `get_vaddr_frames()` prototype: from BTF where it has them, else
/// as they have been since 4.2 (`{ u32 nr_allocated; u32 nr_frames; bool got_ref; bool is_pfns;
/// void *ptrs[]; }`, unchanged to 6.12) — the BTF is videobuf2-common's from 5.12, and a hook armed
/// before that module loads runs before the daemon can read it.
pub fn frame_vector_layout(btf: &KernelBtf, kernel: KernelVersion) -> FrameVectorLayout {
    let field = |f: &str, known: u32| btf.field_offset("frame_vector", f).unwrap_or(known);
    let has_struct = btf.struct_size("frame_vector").is_some();
    FrameVectorLayout {
        valid: 1,
        nr_frames: field("nr_frames", 4),
        got_ref: field("got_ref", 8),
        is_pfns: if has_struct { field("is_pfns", KernelLayout::ABSENT) } else { 9 },
        ptrs: field("ptrs", 16),
        vec_arg: vec_arg_index(btf, kernel),
    }
}

/// Position of `struct frame_vector *vec` in get_vaddr_frames(): BTF when the prototype is there,
/// else the known history (5.10: start, nr, gup_flags, vec; 5.12: start, nr, vec; 6.2: start, nr,
/// write, vec).
fn vec_arg_index(btf: &KernelBtf, kernel: KernelVersion) -> u32 {
    if let Some(params) = btf.func_params("get_vaddr_frames")
        && let Some(i) = params.iter().position(|(_, ty)| ty == "frame_vector")
    {
        return i as u32;
    }
    if kernel >= KernelVersion::new(5, 12) && kernel < KernelVersion::new(6, 2) { 2 } else { 3 }
}

/// follow_pte() took an mm until 6.9 and a vma in 6.10-6.11.
fn follow_pte_takes_vma(btf: &KernelBtf, kernel: KernelVersion) -> bool {
    match btf.func_params("follow_pte") {
        Some(params) if !params.is_empty() => params[0].1 == "vm_area_struct",
        _ => kernel >= KernelVersion::new(6, 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's own kernel BTF is a real BTF: where it exists, the layout must resolve and the
    /// offsets must be plausible (inside the struct, distinct).
    #[test]
    fn host_kernel_btf_yields_a_complete_vma_layout() {
        let dir = Path::new("/sys/kernel/btf");
        if !dir.join("vmlinux").exists() {
            eprintln!("skipped: no /sys/kernel/btf/vmlinux on this host");
            return;
        }
        let btf = KernelBtf::from_dir(dir, &[]).unwrap();
        let (_, kernel) = KernelVersion::running().unwrap();
        let layout = kernel_layout(&btf, kernel, 0).unwrap();
        let vma_size = btf.struct_size("vm_area_struct").unwrap();
        let offsets =
            [layout.vma_vm_start, layout.vma_vm_end, layout.vma_vm_mm, layout.vma_vm_flags, layout.vma_vm_pgoff, layout.vma_vm_file];
        for off in offsets {
            assert!(off < vma_size, "offset {off} outside vm_area_struct ({vma_size} bytes)");
        }
        let mut sorted = offsets.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), offsets.len(), "two vma fields share an offset: {offsets:?}");
        assert_eq!(layout.vma_vm_start, 0, "vm_start is the first field of vm_area_struct");
        assert_eq!(layout.struct_page_size, 64);
        // find_vma() in the kernel needs one of the two vma trees, whole.
        let rbtree = [layout.mm_rb_node, layout.vma_vm_rb, layout.rb_left, layout.rb_right];
        let maple = [
            layout.mm_mt_root,
            layout.maple_range64_pivot,
            layout.maple_range64_slot,
            layout.maple_arange64_pivot,
            layout.maple_arange64_slot,
        ];
        let complete = |fields: &[u32]| fields.iter().all(|f| *f != KernelLayout::ABSENT);
        assert!(complete(&rbtree) || complete(&maple), "neither vma tree resolves: {layout:?}");
        assert!(layout.pg_reserved_bit < 64, "PG_reserved bit {}", layout.pg_reserved_bit);
        assert!(complete(&[layout.file_dentry, layout.dentry_name, layout.dentry_parent, layout.sb_s_type, layout.fs_type_name]));
        assert!(complete(&[layout.vm_fault_vma, layout.vm_fault_address]));
    }

    /// A little-endian BTF blob of `types` (each `[name_off, info, size_or_type, extra..]`) and
    /// `strings` (starting with the empty name).
    fn blob(types: &[&[u32]], strings: &[u8]) -> Vec<u8> {
        let words: Vec<u8> = types.iter().flat_map(|t| t.iter()).flat_map(|w| w.to_le_bytes()).collect();
        let mut out = vec![0x9f, 0xeb, 1, 0];
        for w in [24, 0, words.len() as u32, words.len() as u32, strings.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend(words);
        out.extend_from_slice(strings);
        out
    }

    const STRUCT: u32 = 4 << 24;
    const TYPEDEF: u32 = 8 << 24;
    const FUNC: u32 = 12 << 24;
    const FUNC_PROTO: u32 = 13 << 24;

    /// Found by fuzzing (`fuzz/`, target `btf`): a struct whose anonymous member is the struct
    /// itself overflowed the stack when a field was looked up.
    #[test]
    fn a_struct_that_contains_itself_has_no_such_field_instead_of_overflowing_the_stack() {
        // 1: struct vm_area_struct { int vm_start; struct vm_area_struct /* anonymous */; }
        let strings = b"\0vm_area_struct\0vm_start\0int\0";
        let btf = blob(&[&[1, STRUCT | 2, 16, 16, 2, 0, 0, 1, 64], &[25, 1 << 24, 4, 32]], strings);
        let btf = KernelBtf::from_bytes(&btf, &[]).unwrap();
        assert_eq!(btf.field_offset("vm_area_struct", "vm_start"), Some(0));
        assert_eq!(btf.field_offset("vm_area_struct", "vm_end"), None);
        let err = kernel_layout(&btf, KernelVersion::new(6, 1), 0).unwrap_err().to_string();
        assert_eq!(err, "kernel BTF has no field vm_area_struct::vm_end");
    }

    /// A typedef chain that loops (a corrupt BTF, like the struct above) ends instead of hanging.
    #[test]
    fn a_parameter_whose_typedefs_loop_has_no_type_name() {
        // 1: typedef a_t b_t; 2: typedef b_t a_t; 3: proto (a_t vma); 4: func follow_pte
        let strings = b"\0a_t\0b_t\0vma\0follow_pte\0";
        let types: [&[u32]; 4] = [&[5, TYPEDEF, 2], &[1, TYPEDEF, 1], &[0, FUNC_PROTO | 1, 0, 9, 1], &[13, FUNC, 3]];
        let btf = KernelBtf::from_bytes(&blob(&types, strings), &[]).unwrap();
        assert_eq!(btf.func_params("follow_pte"), Some(vec![("vma".to_string(), String::new())]));
    }

    #[test]
    fn a_blob_that_is_not_btf_is_a_one_line_error_naming_it() {
        let err = KernelBtf::from_bytes(b"\x7fELF, not BTF", &[]).err().unwrap().to_string();
        assert!(err.starts_with("vmlinux: not BTF: "), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn missing_btf_is_a_one_line_error_naming_the_file() {
        let err = KernelBtf::from_dir(Path::new("/nonexistent-btf"), &[]).err().unwrap().to_string();
        assert!(err.contains("/nonexistent-btf/vmlinux"), "{err}");
        assert!(!err.contains('\n'));
    }
}
