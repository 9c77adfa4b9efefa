//! Kernel symbolization from /proc/kallsyms: `addr → func+off [module]`, and symbol presence for
//! the probe table. (kallsyms is the only symbol source a stock kernel gives at runtime; the
//! format is three columns plus an optional `[module]`.)
use std::collections::{BTreeMap, HashMap};

use crate::vocab::event::{Frame, Hex};

#[derive(Clone, Debug)]
struct Symbol {
    addr: u64,
    name: String,
    module: Option<String>,
}

/// Text symbols sorted by address.
#[derive(Clone, Debug, Default)]
pub struct KernelSymbols {
    text: Vec<Symbol>,
    /// Name → index into `text` (the first symbol of that name).
    by_name: HashMap<String, usize>,
    /// Address of the `vmemmap_base` variable (x86-64 KASLR), if listed.
    pub vmemmap_base: Option<u64>,
}

impl KernelSymbols {
    pub fn load() -> anyhow::Result<Self> {
        let text = std::fs::read_to_string("/proc/kallsyms").map_err(|e| anyhow::anyhow!("cannot read /proc/kallsyms: {e}"))?;
        Ok(Self::parse(&text))
    }

    /// Without privileges kallsyms lists names with zero addresses: presence checks still work,
    /// symbolization does not.
    pub fn addresses_hidden(&self) -> bool {
        self.text.iter().all(|s| s.addr == 0)
    }

    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let mut cols = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (cols.next(), cols.next(), cols.next()) else { continue };
            let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
            let module = cols.next().map(|m| m.trim_matches(|c| c == '[' || c == ']').to_string());
            if name == "vmemmap_base" {
                out.vmemmap_base = Some(addr);
            }
            if matches!(kind, "t" | "T" | "w" | "W") {
                out.text.push(Symbol { addr, name: name.to_string(), module });
            }
        }
        out.text.sort_by_key(|s| s.addr);
        for (i, sym) in out.text.iter().enumerate() {
            out.by_name.entry(sym.name.clone()).or_insert(i);
        }
        out
    }

    /// Is there a text symbol of this name (vmlinux or any loaded module)?
    pub fn has_function(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Where function `name` is: `Some(None)` in vmlinux, `Some(Some(module))`, `None` if absent.
    pub fn module_of(&self, name: &str) -> Option<Option<&str>> {
        self.by_name.get(name).map(|&i| self.text[i].module.as_deref())
    }

    /// Address of function `name`: a kprobe on a module function dies with the module, and a
    /// changed address tells that the module was reloaded.
    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).map(|&i| self.text[i].addr)
    }

    /// Is this module loaded (has at least one text symbol)?
    pub fn has_module(&self, module: &str) -> bool {
        self.text.iter().any(|s| s.module.as_deref() == Some(module))
    }

    /// `addr` as a frame; unknown addresses keep only the address.
    pub fn frame(&self, addr: u64) -> Frame {
        let idx = self.text.partition_point(|s| s.addr <= addr);
        match idx.checked_sub(1).map(|i| &self.text[i]) {
            Some(sym) if sym.addr != 0 => Frame {
                addr: Hex(addr),
                function: Some(sym.name.clone()),
                offset: addr - sym.addr,
                module: sym.module.clone(),
                ..Frame::default()
            },
            _ => Frame { addr: Hex(addr), ..Frame::default() },
        }
    }
}

/// Modules listed in /proc/modules, by name, with their load address. Compared between polls to
/// notice modules loaded, unloaded or reloaded while the daemon runs (cheap: a few lines, unlike
/// kallsyms, which is re-read only when this changes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadedModules(BTreeMap<String, u64>);

impl LoadedModules {
    /// /proc/modules; a kernel built without module support has none (`CONFIG_MODULES=n`), which
    /// is no modules, not an error.
    pub fn read() -> anyhow::Result<Self> {
        match std::fs::read_to_string("/proc/modules") {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::parse("")),
            Err(e) => Err(anyhow::anyhow!("cannot read /proc/modules: {e}")),
        }
    }

    /// `name size refcount deps state 0xaddress [(taint)]` per line; the address is 0 when read
    /// without privileges, which still tells loads and unloads apart.
    pub fn parse(text: &str) -> Self {
        let modules = text
            .lines()
            .filter_map(|line| {
                let mut cols = line.split_whitespace();
                let name = cols.next()?;
                let addr = cols.find_map(|c| c.strip_prefix("0x")).and_then(|a| u64::from_str_radix(a, 16).ok()).unwrap_or(0);
                Some((name.to_string(), addr))
            })
            .collect();
        Self(modules)
    }
}

/// Which of `attached` (the symbols one hook's probes are attached to on this kernel) an event
/// came from: the only one, else the one the stack is in (the `vmf_insert_pfn` hook is attached
/// to `vmf_insert_pfn_prot` and the huge-page `vmf_insert_pfn_pmd*`/`_pud*`); `None` when neither
/// tells.
pub(crate) fn attached_symbol<'a>(stack: &[Frame], attached: &'a [String]) -> Option<&'a str> {
    if let [only] = attached {
        return Some(only);
    }
    let symbol = |function: &str| attached.iter().find(|symbol| crate::vocab::finding::same_function(symbol, function));
    stack.iter().find_map(|f| f.function.as_deref().and_then(symbol)).map(String::as_str)
}

/// The first frame that is not inside the hooked function: the kernel code that called it.
/// Frame 0 of a kprobe stack is the probed function itself. The caller is the first frame
/// outside the symbols `attached` (the ones the hook's probes are attached to on this kernel:
/// `zap_vma_ptes` is attached to `zap_special_vma_range` on 7.1+) and outside the hook's
/// `wrappers` (the probe table's `HookFacts::wrappers`: `vmf_insert_pfn` around
/// `vmf_insert_pfn_prot`). Names match exactly or as compiler clones (`.constprop.0`, `.isra.0`…),
/// never by prefix: a driver's `foo_all` calling a hooked `foo` is the caller.
pub fn caller_of(stack: &[Frame], wrappers: &[&str], attached: &[String]) -> Option<Frame> {
    let same = crate::vocab::finding::same_function;
    let inside = |name: &str| attached.iter().any(|symbol| same(symbol, name)) || wrappers.iter().any(|wrapper| same(wrapper, name));
    stack.iter().find(|f| !f.function.as_deref().is_some_and(inside)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _stext
ffffffff812a0000 T follow_pfn
ffffffff812a0100 t follow_pte
ffffffff82e00000 D vmemmap_base
ffffffffc0a00000 t pfnaudit_pin_tracked\t[pfnaudit_test]
ffffffffc0a00200 t pfnaudit_unpin_tracked\t[pfnaudit_test]
";

    #[test]
    fn module_addresses_symbolize_with_function_offset_and_module() {
        let syms = KernelSymbols::parse(SAMPLE);
        let f = syms.frame(0xffffffffc0a0001a);
        assert_eq!(f.to_string(), "pfnaudit_pin_tracked+0x1a [pfnaudit_test]");
        let f = syms.frame(0xffffffff812a0010);
        assert_eq!(f.to_string(), "follow_pfn+0x10");
    }

    #[test]
    fn addresses_below_every_symbol_stay_raw() {
        let syms = KernelSymbols::parse(SAMPLE);
        assert_eq!(syms.frame(0x1000).to_string(), "0x1000");
    }

    #[test]
    fn presence_and_vmemmap_base_are_read() {
        let syms = KernelSymbols::parse(SAMPLE);
        assert!(syms.has_function("follow_pte"));
        assert!(!syms.has_function("follow_pfnmap_start"));
        assert!(syms.has_module("pfnaudit_test"));
        assert_eq!(syms.vmemmap_base, Some(0xffffffff82e00000));
    }

    #[test]
    fn function_addresses_are_looked_up_by_name() {
        let syms = KernelSymbols::parse(SAMPLE);
        assert_eq!(syms.address_of("pfnaudit_unpin_tracked"), Some(0xffffffffc0a00200));
        assert_eq!(syms.address_of("vmemmap_base"), None, "data symbols are not functions");
        assert_eq!(syms.module_of("pfnaudit_pin_tracked"), Some(Some("pfnaudit_test")));
        assert_eq!(syms.module_of("follow_pfn"), Some(None));
        assert_eq!(syms.module_of("absent"), None);
    }

    #[test]
    fn proc_modules_lines_give_name_and_load_address() {
        let text = "videobuf2_common 81920 1 pfnaudit_test, Live 0xffffffffc0a1b000\n\
                    pfnaudit_test 16384 0 - Loading 0xffffffffc0a00000 (OE)\n";
        let modules = LoadedModules::parse(text);
        let reloaded = LoadedModules::parse(&text.replace("0xffffffffc0a00000", "0xffffffffc0b00000"));
        assert_eq!(modules.0.get("videobuf2_common"), Some(&0xffffffffc0a1b000));
        assert_eq!(modules.0.get("pfnaudit_test"), Some(&0xffffffffc0a00000));
        assert_ne!(modules, reloaded, "a module loaded at another address is a change");
    }

    #[test]
    fn caller_skips_the_hooked_function_frames() {
        let syms = KernelSymbols::parse(SAMPLE);
        let stack = vec![syms.frame(0xffffffff812a0004), syms.frame(0xffffffffc0a00031)];
        let caller = caller_of(&stack, &[], &["follow_pfn".into()]).unwrap();
        assert_eq!(caller.function.as_deref(), Some("pfnaudit_pin_tracked"));
    }
    #[test]
    fn caller_skips_the_hooks_wrappers() {
        let frame = |name: &str| Frame { function: Some(name.into()), ..Frame::default() };
        let stack = [frame("vmf_insert_pfn_prot"), frame("vmf_insert_pfn"), frame("vfio_pci_mmap_huge_fault"), frame("__handle_mm_fault")];
        let attached = ["vmf_insert_pfn_prot".to_string()];
        assert_eq!(caller_of(&stack, &["vmf_insert_pfn"], &attached).unwrap().function.as_deref(), Some("vfio_pci_mmap_huge_fault"));
        assert_eq!(
            caller_of(&stack, &[], &attached).unwrap().function.as_deref(),
            Some("vmf_insert_pfn"),
            "no wrapper named: the wrapper is the caller"
        );
    }

    /// A release hook `foo` (a policy release function) is attached to `foo` only: a driver
    /// function `foo_all` that calls it is its caller, not part of it; a clone of `foo` is `foo`.
    #[test]
    fn caller_is_the_first_frame_not_named_exactly_like_the_attached_symbol() {
        let frame = |name: &str| Frame { function: Some(name.into()), ..Frame::default() };
        let attached = ["foo".to_string()];
        let stack = [frame("foo"), frame("foo_all"), frame("drv_ioctl")];
        assert_eq!(caller_of(&stack, &[], &attached).unwrap().function.as_deref(), Some("foo_all"));
        let stack = [frame("foo.constprop.0"), frame("foo_all"), frame("drv_ioctl")];
        assert_eq!(caller_of(&stack, &[], &attached).unwrap().function.as_deref(), Some("foo_all"), "a clone of the attached symbol");
        let stack = [frame("foo_all.isra.0"), frame("drv_ioctl")];
        assert_eq!(caller_of(&stack, &["foo_all"], &[]).unwrap().function.as_deref(), Some("drv_ioctl"), "a clone of a wrapper");
    }

    #[test]
    fn the_attached_symbol_of_a_hook_on_several_functions_is_the_one_the_stack_is_in() {
        let frame = |name: &str| Frame { function: Some(name.into()), ..Frame::default() };
        let attached = ["vmf_insert_pfn_prot".to_string(), "vmf_insert_pfn_pmd".to_string()];
        let stack = [frame("vmf_insert_pfn_pmd.part.0"), frame("vfio_pci_mmap_huge_fault")];
        assert_eq!(attached_symbol(&stack, &attached), Some("vmf_insert_pfn_pmd"));
        assert_eq!(attached_symbol(&[frame("vfio_pci_mmap_huge_fault")], &attached), None, "a stack in neither");
        assert_eq!(attached_symbol(&[], &attached[..1]), Some("vmf_insert_pfn_prot"), "one symbol needs no stack");
    }

    /// 7.1+ attaches the `zap_vma_ptes` hook to `zap_special_vma_range` (renamed): the caller is
    /// the driver that zapped, not the attached function.
    #[test]
    fn caller_is_outside_the_attached_symbol_of_a_renamed_hook() {
        let frame = |name: &str| Frame { function: Some(name.into()), ..Frame::default() };
        let stack = [frame("zap_special_vma_range"), frame("pfnaudit_ioctl"), frame("__x64_sys_ioctl")];
        let attached = ["zap_special_vma_range".to_string()];
        assert_eq!(caller_of(&stack, &[], &attached).unwrap().function.as_deref(), Some("pfnaudit_ioctl"));
        // A compiler clone of the attached symbol is the same function.
        let stack = [frame("__zap_vma_range.isra.0"), frame("unmap_vmas"), frame("exit_mmap")];
        let attached = ["__zap_vma_range".to_string()];
        assert_eq!(caller_of(&stack, &[], &attached).unwrap().function.as_deref(), Some("unmap_vmas"));
    }
}
