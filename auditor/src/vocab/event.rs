//! Decoded, enriched events: what the correlator consumes and what `run --events` records and
//! `replay` reads back. Everything the correlator needs is in here (symbolized caller, paths), so a
//! replay never touches the kernel, `/proc` or kallsyms.
//!
//! Kernel pointers do not fit JSON's 2^53 integers, so every pointer and address is a `0x…` hex
//! string on the wire ([`Hex`]).
use std::sync::Arc;

use auditor_common::Hook;
use serde::{Deserialize, Serialize};

/// A u64 written as a `0x…` hex string in JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hex(pub u64);

impl schemars::JsonSchema for Hex {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Hex".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^0x[0-9a-f]+$",
            "description": "A u64 (kernel pointer, address) as lower-case hex: JSON numbers lose precision past 2^53."
        })
    }
}

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:#x}", self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let digits = s.strip_prefix("0x").ok_or_else(|| serde::de::Error::custom(format!("expected 0x-prefixed hex, got {s:?}")))?;
        u64::from_str_radix(digits, 16).map(Hex).map_err(|e| serde::de::Error::custom(format!("bad hex {s:?}: {e}")))
    }
}

/// The hook that produced an event: one of the probe table's hooks (`auditor_common::Hook`), or
/// a release function the policy hooks. On the wire it is the hook's name: `zap_vma_ptes` (also
/// on kernels where it is attached to another symbol), or the release function's own name.
/// Ordered table hooks first (in table order), then release functions by name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookRef {
    /// A hook of the probe table (never `Hook::Release0`).
    Table(Hook),
    /// A policy release hook, named by its function.
    Release(Arc<str>),
}

impl HookRef {
    /// The hook of this wire name: a table hook's [`Hook::name`], else a release function.
    pub fn from_name(name: &str) -> Self {
        Hook::from_name(name).map_or_else(|| HookRef::Release(name.into()), HookRef::Table)
    }

    /// The name on the wire.
    pub fn name(&self) -> &str {
        match self {
            HookRef::Table(hook) => hook.name(),
            HookRef::Release(function) => function,
        }
    }
}

impl std::fmt::Display for HookRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Hook> for HookRef {
    fn from(hook: Hook) -> Self {
        HookRef::Table(hook)
    }
}

impl Serialize for HookRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for HookRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(HookRef::from_name(&String::deserialize(d)?))
    }
}

impl schemars::JsonSchema for HookRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HookName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A hook's name (`follow_pfn`, `zap_vma_ptes`…, the same on every kernel), or the name of a release function the policy hooks."
        })
    }
}

/// The task an event happened in (kernel snapshot at event time).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Task {
    pub tgid: u32,
    pub pid: u32,
    /// Thread-group leader start time, ns since boot: (tgid, start_time_ns) names a process.
    pub start_time_ns: u64,
    pub comm: String,
}

/// One kernel stack frame, symbolized from /proc/kallsyms at event time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Frame {
    pub addr: Hex,
    /// Function name; `None` when the address is in no known symbol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default)]
    pub offset: u64,
    /// Module name for module text; `None` for vmlinux.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Source file of the instruction (for a return address: of the call), from the module's
    /// debug info (`module_lines.rs`); `None` without it (vmlinux, stripped modules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line in `file`, 1-based.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

impl Frame {
    /// `file:line`, when the module's debug info gave them.
    pub fn source(&self) -> Option<String> {
        source(self.file.as_deref(), self.line)
    }
}

/// `file:line` of a frame or holder, when both are known.
pub fn source(file: Option<&str>, line: Option<u32>) -> Option<String> {
    Some(format!("{}:{}", file?, line?))
}

impl std::fmt::Display for Frame {
    /// `func+0x1a [module]`, the form kernel oopses use.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.function {
            Some(func) => write!(f, "{func}+{:#x}", self.offset)?,
            None => write!(f, "{:#x}", self.addr.0)?,
        }
        if let Some(module) = &self.module {
            write!(f, " [{module}]")?;
        }
        Ok(())
    }
}

/// A vma as the kernel saw it, plus the path `/proc/PID/maps` gave for it (if it could be read).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Vma {
    /// `struct vm_area_struct *`; 0 when the hook only knew the mm.
    pub vma: Hex,
    pub mm: Hex,
    pub start: Hex,
    pub end: Hex,
    pub flags: Hex,
    pub pgoff: u64,
    /// `struct address_space *` of the backing file, 0 if anonymous.
    pub mapping: Hex,
    pub ino: u64,
    /// Device of the backing inode as `major:minor`.
    pub dev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// What took PFNs away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// `unmap_mapping_range()` / `unmap_mapping_pages()`.
    OwnerRevoke,
    /// `zap_vma_ptes()`.
    Zap,
    /// munmap / mremap / MAP_FIXED.
    Unmap,
    /// mm teardown at process exit.
    Exit,
}

/// One event, decoded and enriched. `seq` is the order the daemon read it in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    pub seq: u64,
    /// CLOCK_MONOTONIC ns (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
    /// Hook that produced the event (`follow_pfn`, `zap_vma_ptes`, a release hook…).
    pub hook: HookRef,
    /// The kernel symbol the hook's probe is attached to on the recording's kernel, when the
    /// decoder knows it (`zap_special_vma_range` for `zap_vma_ptes` on 7.1+). Absent in
    /// recordings made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub task: Task,
    /// The first frame outside the attached symbol (and outside wrappers named like the hook):
    /// the kernel code that called it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Frame>,
    /// Kernel call chain, innermost first.
    #[serde(default)]
    pub stack: Vec<Frame>,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EventBody {
    /// `remap_pfn_range()` succeeded.
    PfnMap { vma: Vma, addr: Hex, pfn: u64, pages: u64 },
    /// A raw PFN lookup (`follow_pfn` / `follow_pte` / `follow_pfnmap_start`) returned 0.
    RawLookup {
        vma: Vma,
        address: Hex,
        pfn: u64,
        /// The PFN has a struct page that is not PG_reserved (ordinary RAM).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ram: bool,
    },
    /// `get_vaddr_frames()` returned `nr_frames > 0`.
    FramesGet {
        vec: Hex,
        start: Hex,
        mm: Hex,
        nr_frames: u32,
        /// The kernel fell back to raw PFNs: no reference is held at all.
        is_pfns: bool,
        got_ref: bool,
        /// PFNs of the first frames (at most 16).
        pfns: Vec<u64>,
    },
    /// `put_vaddr_frames(vec)`.
    FramesPut { vec: Hex },
    /// PFNs taken away from a watched mapping / vma / mm.
    Revoke {
        cause: Cause,
        /// OwnerRevoke: the address space and page-offset range (`nr_pages: None` = to the end).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mapping: Option<Hex>,
        #[serde(default)]
        first_pgoff: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nr_pages: Option<u64>,
        /// Zap / Unmap: the vma and user address range torn down.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vma: Option<Vma>,
        #[serde(default)]
        start: Hex,
        #[serde(default)]
        end: Hex,
        /// The mm affected (Exit: the mm torn down).
        mm: Hex,
    },
    /// A watched vma was freed (its pointer may be reused after this).
    VmaFree { vma: Vma },
    /// A policy release hook was called; `hook` names the function.
    ReleaseCall { args: Vec<Hex> },
    /// A watched process exited.
    TaskExit {},
}
