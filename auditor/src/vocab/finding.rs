//! Findings: what a pin outliving a revocation looks like on the wire. Serialized fields are fixed
//! in order and contain nothing made at output time, so a replay prints the same bytes.
use serde::{Deserialize, Serialize};

use super::event::{Cause, Frame, Hex, HookRef, Task, Vma};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    PinOutlivedRevocation,
    PinOutlivedUnmap,
    LookupRevoked,
    PinOutlivedExit,
    PfnmapFrameVector,
    PinLeaked,
}

impl FindingKind {
    pub const ALL: [FindingKind; 6] = [
        FindingKind::PinOutlivedRevocation,
        FindingKind::PinOutlivedUnmap,
        FindingKind::LookupRevoked,
        FindingKind::PinOutlivedExit,
        FindingKind::PfnmapFrameVector,
        FindingKind::PinLeaked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FindingKind::PinOutlivedRevocation => "pin-outlived-revocation",
            FindingKind::PinOutlivedUnmap => "pin-outlived-unmap",
            FindingKind::LookupRevoked => "lookup-revoked",
            FindingKind::PinOutlivedExit => "pin-outlived-exit",
            FindingKind::PfnmapFrameVector => "pfnmap-frame-vector",
            FindingKind::PinLeaked => "pin-leaked",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|k| k.name()).collect()
    }

    /// MODEL.md's default severities.
    pub fn severity(self) -> Severity {
        match self {
            FindingKind::PinOutlivedRevocation | FindingKind::PinOutlivedUnmap => Severity::Error,
            _ => Severity::Warning,
        }
    }

    /// One sentence for humans, JUnit and SARIF rule help.
    pub fn description(self) -> &'static str {
        match self {
            FindingKind::PinOutlivedRevocation => {
                "A pinned PFN was still held when the owner of the mapping revoked it (unmap_mapping_range) or the driver zapped its ptes: the holder may DMA to or read memory that now belongs to someone else."
            }
            FindingKind::PinOutlivedUnmap => {
                "A pinned PFN was still held when the user unmapped the range it came from (munmap/mremap/MAP_FIXED)."
            }
            FindingKind::LookupRevoked => {
                "A raw PFN lookup by code with no declared release was revoked while the holder was alive: a possible use-after-revoke that cannot be proven (declare the holder's release in the policy)."
            }
            FindingKind::PinOutlivedExit => {
                "A pinned PFN was still held when the process that mapped it exited and its address space was torn down."
            }
            FindingKind::PfnmapFrameVector => {
                "get_vaddr_frames() returned raw PFNs of a VM_IO/VM_PFNMAP mapping: nothing holds a reference to them."
            }
            FindingKind::PinLeaked => "A pin with a release function was still held when the run ended.",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Severity::Error, Severity::Warning].into_iter().find(|s| s.name() == name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PinSource {
    RawLookup,
    FrameVector,
}

/// Kernel code holding a pin: the caller of the lookup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Holder {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub module: Option<String>,
    pub offset: u64,
    /// Source file and line of the call site, from the module's debug info (see
    /// [`Frame::file`]); `None` without it. Not part of the fingerprint.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<u32>,
}

impl Holder {
    /// The function as written in the source: the symbol without its compiler clone suffix
    /// (see [`base_name`]).
    pub fn base_function(&self) -> Option<&str> {
        self.function.as_deref().map(base_name)
    }

    /// `file:line` of the call site, when the module's debug info gave them.
    pub fn source(&self) -> Option<String> {
        super::event::source(self.file.as_deref(), self.line)
    }

    pub fn from_frame(frame: Option<&Frame>) -> Self {
        match frame {
            Some(f) => {
                Holder { function: f.function.clone(), module: f.module.clone(), offset: f.offset, file: f.file.clone(), line: f.line }
            }
            None => Holder::default(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{:#x}", self.function.as_deref().unwrap_or("?"), self.offset)?;
        if let Some(m) = &self.module {
            write!(f, " [{m}]")?;
        }
        Ok(())
    }
}

/// `count` consecutive PFNs from `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PfnRange {
    pub first: u64,
    pub count: u64,
}

/// The pin as evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PinEvidence {
    pub id: u64,
    pub source: PinSource,
    /// Hook that took it (`follow_pfn`, `get_vaddr_frames`…).
    pub hook: HookRef,
    /// The kernel symbol the hook was attached to (absent in recordings older than this field).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub symbol: Option<String>,
    pub holder: Holder,
    pub task: Task,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vma: Option<Vma>,
    pub start: Hex,
    pub end: Hex,
    pub pfns: Vec<PfnRange>,
    pub pages: u64,
    /// Frame-vector handle (`struct frame_vector *`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vec: Option<Hex>,
    /// How the pin is released: `put_vaddr_frames`, policy functions, or `holder exit`.
    pub release: String,
    pub ts_ns: u64,
    pub stack: Vec<Frame>,
}

/// What took the PFNs away.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RevocationEvidence {
    pub cause: Cause,
    /// The revoking hook (`zap_vma_ptes`, also on kernels where it is attached to another symbol).
    pub hook: HookRef,
    /// The kernel symbol the hook was attached to (`zap_special_vma_range` on 7.1+; absent in
    /// recordings older than this field).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub symbol: Option<String>,
    pub task: Task,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub caller: Option<Frame>,
    pub ts_ns: u64,
    pub stack: Vec<Frame>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    /// Stable across runs: holder + kind + mapping path. CI and dashboards de-duplicate on it.
    pub fingerprint: String,
    pub message: String,
    /// When it was found (event clock, CLOCK_MONOTONIC ns).
    pub ts_ns: u64,
    pub pin: PinEvidence,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub revocation: Option<RevocationEvidence>,
    /// Age of the pin when it was revoked (or when the run ended).
    pub age_ns: u64,
}

/// A kernel function symbol without the suffix the compiler gave a clone of it
/// (`vaddr_get_pfns.constprop.0`, `foo.isra.0.cold`, `bar.part.1`, `baz.llvm.123456`): C identifiers
/// have no `.`, so everything from the first `.` on is a suffix. The same source function is
/// `vaddr_get_pfns.constprop.0` on one kernel build and `vaddr_get_pfns` on the next.
pub fn base_name(symbol: &str) -> &str {
    symbol.split_once('.').map_or(symbol, |(base, _)| base)
}

/// Same function, compiler clones included: `vaddr_get_pfns.constprop.0` is `vaddr_get_pfns`.
pub fn same_function(a: &str, b: &str) -> bool {
    base_name(a) == base_name(b)
}

/// FNV-1a 64: tiny, stable across Rust versions and platforms (unlike `DefaultHasher`). The holder
/// function is hashed without its clone suffix, so a finding keeps its fingerprint across kernel
/// builds that clone the function differently.
pub fn fingerprint(holder: &Holder, kind: FindingKind, path: Option<&str>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [holder.base_function().unwrap_or(""), holder.module.as_deref().unwrap_or(""), kind.name(), path.unwrap_or("")];
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_ignores_offsets_and_pids() {
        let a = Holder { function: Some("drv_pin".into()), module: Some("drv".into()), offset: 0x10, ..Holder::default() };
        let b = Holder { offset: 0x99, ..a.clone() };
        let fa = fingerprint(&a, FindingKind::PinLeaked, Some("/dev/x"));
        assert_eq!(fa, fingerprint(&b, FindingKind::PinLeaked, Some("/dev/x")));
        assert_ne!(fa, fingerprint(&a, FindingKind::PinOutlivedExit, Some("/dev/x")));
        assert_ne!(fa, fingerprint(&a, FindingKind::PinLeaked, Some("/dev/y")));
        let with_source = Holder { file: Some("drv.c".into()), line: Some(12), ..a.clone() };
        assert_eq!(fa, fingerprint(&with_source, FindingKind::PinLeaked, Some("/dev/x")), "a rebuilt driver keeps its findings");
        assert_eq!(fa.len(), 16);
    }

    /// CI baselines and dashboards store fingerprints: the value must not drift between releases
    /// (FNV-1a 64 over NUL-terminated holder function, module, kind, path; computed independently).
    #[test]
    fn fingerprint_algorithm_is_pinned() {
        let h = Holder { function: Some("f".into()), module: Some("m".into()), offset: 0, ..Holder::default() };
        assert_eq!(fingerprint(&h, FindingKind::PinLeaked, Some("/p")), "35ebeebd90938f2f");
    }

    #[test]
    fn clone_suffixes_are_not_part_of_the_fingerprint() {
        let plain =
            Holder { function: Some("vaddr_get_pfns".into()), module: Some("vfio_iommu_type1".into()), offset: 221, ..Holder::default() };
        let want = fingerprint(&plain, FindingKind::PinOutlivedRevocation, Some("/sys/devices/pci0000:00/0000:00:05.0/resource0"));
        for clone in [
            "vaddr_get_pfns.constprop.0",
            "vaddr_get_pfns.isra.0",
            "vaddr_get_pfns.part.3",
            "vaddr_get_pfns.cold",
            "vaddr_get_pfns.isra.0.cold",
            "vaddr_get_pfns.llvm.8412657",
        ] {
            let h = Holder { function: Some(clone.into()), ..plain.clone() };
            assert_eq!(h.base_function(), Some("vaddr_get_pfns"), "{clone}");
            assert_eq!(
                fingerprint(&h, FindingKind::PinOutlivedRevocation, Some("/sys/devices/pci0000:00/0000:00:05.0/resource0")),
                want,
                "{clone}"
            );
        }
        let other = Holder { function: Some("vaddr_get_pfn".into()), ..plain };
        assert_ne!(
            want,
            fingerprint(&other, FindingKind::PinOutlivedRevocation, Some("/sys/devices/pci0000:00/0000:00:05.0/resource0")),
            "another function"
        );
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in FindingKind::ALL {
            assert_eq!(FindingKind::from_name(k.name()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.name());
        }
    }
}
