//! The policy file (TOML): per holder, how its raw-lookup pins are released; suppressions; which
//! severities fail `gate`. See docs/policy.md. A bad policy is refused at start with
//! `FILE:LINE: reason`. The built-in catalog (`catalog.toml`) is written in the same format and
//! layered under the user's file ([`Policy::load`]).
use std::{fmt, path::Path};

use auditor_common::RELEASE_SLOTS;
use serde::Deserialize;
use toml::Spanned;

pub use crate::vocab::hook_status::ReleaseFunction;
use crate::vocab::{
    event::HookRef,
    finding::{FindingKind, Severity, same_function},
    record::RuleStatus,
};
use crate::{catalog, probes::table::hook_of_function};

/// How a release-hook call finds the pins it releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseMatch {
    /// Every pin of the holder taken by the calling process.
    Tgid,
    /// The pages from the PFN (or user address) in argument `index`: `count` pages when `count`
    /// names the argument holding the page count, else the one page. Each page is taken from the
    /// oldest pin of the holder that holds it.
    Arg { index: usize, is: ArgMeaning, count: Option<usize> },
}

/// What a holder does with a lookup that returned a PFN of ordinary RAM (`ram_pfns`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RamPfns {
    /// Keeps it like any other PFN: a pin.
    #[default]
    Pinned,
    /// Refuses it (vfio: `vaddr_get_pfns` returns -EFAULT): not a pin.
    Refused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgMeaning {
    Pfn,
    Address,
}

/// One `[[holder]]`: kernel code that takes raw lookups and how it gives them back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderRule {
    pub module: Option<String>,
    pub function: Option<String>,
    pub release: Vec<String>,
    pub release_match: ReleaseMatch,
    pub ram_pfns: RamPfns,
    /// The kernel looking PFNs up for its own bookkeeping: never a pin.
    pub kernel_internal: bool,
    /// The file the rule was read from (`catalog.toml` for the built-in catalog).
    pub source: String,
}

impl HolderRule {
    /// Does a lookup made from `function` in `module` belong to this holder?
    pub fn matches(&self, function: Option<&str>, module: Option<&str>) -> bool {
        let module_ok = self.module.as_deref().is_none_or(|m| Some(m) == module);
        let function_ok = self.function.as_deref().is_none_or(|f| function.is_some_and(|g| same_function(f, g)));
        module_ok && function_ok
    }

    /// Is `hook` (a hooked release function) one of this holder's releases?
    pub(crate) fn released_by(&self, hook: &HookRef) -> bool {
        match hook {
            HookRef::Release(function) => self.release.iter().any(|r| same_function(r, function)),
            HookRef::Table(_) => false,
        }
    }

    /// One sentence on what the rule does, for `doctor` and the `status` record.
    pub fn describe(&self) -> String {
        if self.kernel_internal {
            return "kernel-internal: its lookups are not pins".into();
        }
        let mut out = match (self.release.is_empty(), self.release_match) {
            (true, _) => "no release declared: a lookup lives as long as the holder process".to_string(),
            (false, ReleaseMatch::Tgid) => "a release call ends the holder's pins in the calling process".to_string(),
            (false, ReleaseMatch::Arg { index, is, count }) => {
                let what = if is == ArgMeaning::Pfn { "PFN" } else { "user address" };
                match count {
                    Some(c) => format!("a release call ends arg{c} pages from the {what} in arg{index}"),
                    None => format!("a release call ends the page at the {what} in arg{index}"),
                }
            }
        };
        if self.ram_pfns == RamPfns::Refused {
            out.push_str("; lookups of RAM PFNs are refused, not pins");
        }
        out
    }

    /// `module:function` as shown in findings and errors.
    pub fn label(&self) -> String {
        match (&self.module, &self.function) {
            (Some(m), Some(f)) => format!("{f} [{m}]"),
            (Some(m), None) => format!("[{m}]"),
            (None, Some(f)) => f.clone(),
            (None, None) => "?".into(),
        }
    }
}

/// One `[[suppress]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    /// Holder function (clone suffixes ignored) or module name.
    pub holder: String,
    pub kind: FindingKind,
    pub reason: String,
    /// The file the suppression was read from (`catalog.toml` for the built-in catalog).
    pub source: String,
}

impl Suppression {
    fn matches(&self, function: Option<&str>, module: Option<&str>, kind: FindingKind) -> bool {
        self.kind == kind && (function.is_some_and(|f| same_function(&self.holder, f)) || Some(self.holder.as_str()) == module)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub holders: Vec<HolderRule>,
    pub suppressions: Vec<Suppression>,
    /// Severities that make `gate` fail.
    pub fail_on: Vec<Severity>,
}

impl Default for Policy {
    fn default() -> Self {
        Self { holders: Vec::new(), suppressions: Vec::new(), fail_on: vec![Severity::Error] }
    }
}

/// `FILE:LINE: reason` — one line, as the CLI prints it; `FILE: reason` for the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    /// From 1; 0 when the error is the whole file's (it cannot be read), printed without a line.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.reason),
            line => write!(f, "{}:{line}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for PolicyError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    holder: Vec<Spanned<RawHolder>>,
    #[serde(default)]
    suppress: Vec<Spanned<RawSuppress>>,
    #[serde(default)]
    gate: Option<RawGate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHolder {
    module: Option<String>,
    function: Option<String>,
    #[serde(default)]
    release: Vec<String>,
    release_match: Option<Spanned<String>>,
    release_arg_is: Option<ArgMeaning>,
    release_count: Option<Spanned<String>>,
    ram_pfns: Option<RamPfns>,
    #[serde(default)]
    kernel_internal: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuppress {
    holder: String,
    kind: Spanned<String>,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    fail_on: Spanned<Vec<String>>,
}

impl Policy {
    /// The parsed policy and its text.
    fn read(path: &Path) -> Result<(Self, String), PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            file: file.clone(),
            line: 0,
            reason: format!("cannot read policy: {e}"),
        })?;
        Ok((Self::parse(&text, &file)?, text))
    }

    /// Parses policy text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, PolicyError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let err = |offset: usize, reason: String| PolicyError { file: file.to_string(), line: line_of(offset), reason };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            err(offset, e.message().trim().replace('\n', " "))
        })?;

        let mut holders = Vec::new();
        for h in &raw.holder {
            let at = h.span().start;
            let h = h.get_ref();
            if h.module.is_none() && h.function.is_none() {
                return Err(err(at, "a [[holder]] needs `module`, `function` or both".into()));
            }
            let names = h.module.iter().chain(&h.function).chain(&h.release);
            if names.into_iter().any(|n| n.trim().is_empty()) {
                return Err(err(at, "`module`, `function` and `release` names must not be empty".into()));
            }
            if let Some((function, hook)) = h.release.iter().find_map(|r| Some((r, hook_of_function(r)?))) {
                return Err(err(
                    at,
                    format!("release {function:?} is hooked by pfn-auditor itself (as {}), not a release function", hook.name()),
                ));
            }
            let release_match = match &h.release_match {
                None => ReleaseMatch::Tgid,
                Some(m) => parse_match(m.get_ref(), h.release_arg_is).map_err(|r| err(m.span().start, r))?,
            };
            if matches!(release_match, ReleaseMatch::Tgid) && h.release_arg_is.is_some() {
                return Err(err(at, "`release_arg_is` needs `release_match = \"argN\"`".into()));
            }
            let release_match = match (&h.release_count, release_match) {
                (None, m) => m,
                (Some(c), ReleaseMatch::Arg { index, is, .. }) => {
                    let count = parse_arg(c.get_ref())
                        .ok_or_else(|| err(c.span().start, format!("release_count must be \"arg0\"..\"arg5\", not {:?}", c.get_ref())))?;
                    if count == index {
                        return Err(err(c.span().start, format!("release_count and release_match both name arg{index}")));
                    }
                    ReleaseMatch::Arg { index, is, count: Some(count) }
                }
                (Some(c), ReleaseMatch::Tgid) => {
                    return Err(err(c.span().start, "`release_count` needs `release_match = \"argN\"`".into()));
                }
            };
            let how = h.release_match.is_some() || h.release_arg_is.is_some() || h.release_count.is_some();
            if h.release.is_empty() && how {
                return Err(err(at, "`release_match`, `release_arg_is` and `release_count` need `release = [\"function\", ..]`".into()));
            }
            let releases = !h.release.is_empty() || h.release_match.is_some() || h.ram_pfns.is_some();
            if h.kernel_internal && releases {
                return Err(err(at, "a `kernel_internal` holder takes no pins: it has no release, release_match or ram_pfns".into()));
            }
            holders.push(HolderRule {
                module: h.module.clone(),
                function: h.function.clone(),
                release: h.release.clone(),
                release_match,
                ram_pfns: h.ram_pfns.unwrap_or_default(),
                kernel_internal: h.kernel_internal,
                source: file.to_string(),
            });
        }

        let mut suppressions = Vec::new();
        for s in &raw.suppress {
            let s = s.get_ref();
            let kind = FindingKind::from_name(s.kind.get_ref()).ok_or_else(|| {
                err(
                    s.kind.span().start,
                    format!("unknown finding kind {:?} (known: {})", s.kind.get_ref(), FindingKind::names().join(", ")),
                )
            })?;
            if s.holder.trim().is_empty() {
                return Err(err(s.kind.span().start, "a [[suppress]] needs a non-empty `holder`".into()));
            }
            suppressions.push(Suppression { holder: s.holder.clone(), kind, reason: s.reason.clone(), source: file.to_string() });
        }

        let fail_on = match &raw.gate {
            None => vec![Severity::Error],
            Some(g) => g
                .fail_on
                .get_ref()
                .iter()
                .map(|s| {
                    Severity::from_name(s)
                        .ok_or_else(|| err(g.fail_on.span().start, format!("unknown severity {s:?} (known: error, warning)")))
                })
                .collect::<Result<_, _>>()?,
        };

        let policy = Self { holders, suppressions, fail_on };
        if let Err(reason) = policy.check_release_slots() {
            let at = raw.holder.last().map(|h| h.span().start).unwrap_or(0);
            return Err(err(at, reason));
        }
        Ok(policy)
    }

    /// The user's policy file (or none) over the built-in catalog (or not, `--no-catalog`).
    pub fn load(path: Option<&Path>, catalog: bool) -> Result<Self, PolicyError> {
        let (user, text) = match path {
            Some(p) => Self::read(p)?,
            None => (Self::default(), String::new()),
        };
        if !catalog {
            return Ok(user);
        }
        let file = path.map(|p| p.display().to_string()).unwrap_or_else(|| catalog::FILE.to_string());
        // Too many release functions with the catalog's: name the user's last holder.
        let line = text.rfind("[[holder]]").map_or(1, |at| text[..at].matches('\n').count() + 1);
        user.over(&Self::catalog()).map_err(|reason| PolicyError { file, line, reason })
    }

    /// The built-in catalog (`catalog.rs`) as a policy: holders and suppressions; its `[gate]` is
    /// never used.
    pub fn catalog() -> Self {
        Self::parse(catalog::TEXT, catalog::FILE).expect("the built-in catalog parses (tested)")
    }

    /// This policy layered over `under`: its holder rules first (the first match wins, so they
    /// override `under`'s for the same holder), then `under`'s; the suppressions of both; this
    /// policy's `[gate]`.
    pub fn over(mut self, under: &Policy) -> Result<Self, String> {
        self.holders.extend(under.holders.iter().cloned());
        self.suppressions.extend(under.suppressions.iter().cloned());
        self.check_release_slots().map_err(|reason| format!("{reason} with the built-in catalog's (run with --no-catalog)"))?;
        Ok(self)
    }

    fn check_release_slots(&self) -> Result<(), String> {
        let n = self.release_functions().len();
        if n > RELEASE_SLOTS {
            return Err(format!("{n} distinct release functions; at most {RELEASE_SLOTS} can be hooked"));
        }
        Ok(())
    }

    /// Every active rule, holders in matching order, then suppressions.
    pub fn rules(&self) -> Vec<RuleStatus> {
        let holders = self.holders.iter().map(|h| RuleStatus {
            rule: "holder".into(),
            holder: h.label(),
            release: h.release.clone(),
            effect: h.describe(),
            source: h.source.clone(),
        });
        let suppressions = self.suppressions.iter().map(|s| RuleStatus {
            rule: "suppress".into(),
            holder: s.holder.clone(),
            release: Vec::new(),
            effect: format!("{} suppressed: {}", s.kind.name(), s.reason),
            source: s.source.clone(),
        });
        holders.chain(suppressions).collect()
    }

    /// Distinct release functions in order of appearance: what the loader attaches kprobes to,
    /// each with the module of the first holder naming it.
    pub fn release_functions(&self) -> Vec<ReleaseFunction> {
        let mut out: Vec<ReleaseFunction> = Vec::new();
        for h in &self.holders {
            for name in &h.release {
                if !out.iter().any(|r| &r.name == name) {
                    out.push(ReleaseFunction { name: name.clone(), module: h.module.clone() });
                }
            }
        }
        out
    }

    /// The holder rule a lookup from `function [module]` falls under (first match wins).
    pub(crate) fn holder_for(&self, function: Option<&str>, module: Option<&str>) -> Option<(usize, &HolderRule)> {
        self.holders.iter().enumerate().find(|(_, h)| h.matches(function, module))
    }

    pub(crate) fn suppression_for(&self, function: Option<&str>, module: Option<&str>, kind: FindingKind) -> Option<&Suppression> {
        self.suppressions.iter().find(|s| s.matches(function, module, kind))
    }
}

/// `argN`, N counted from 0 (the function's first parameter is `arg0`).
fn parse_arg(text: &str) -> Option<usize> {
    // Exactly one digit: `arg+3` and `arg03` are typos, not arg3.
    let digit = text.strip_prefix("arg").filter(|n| n.len() == 1)?.chars().next()?.to_digit(10)?;
    Some(digit as usize).filter(|n| *n < auditor_common::RELEASE_ARGS)
}

fn parse_match(text: &str, arg_is: Option<ArgMeaning>) -> Result<ReleaseMatch, String> {
    if text == "tgid" {
        return Ok(ReleaseMatch::Tgid);
    }
    let index = parse_arg(text).ok_or_else(|| format!("release_match must be \"tgid\" or \"arg0\"..\"arg5\", not {text:?}"))?;
    let is = arg_is.ok_or_else(|| format!("release_match = {text:?} needs release_arg_is = \"pfn\" or \"address\""))?;
    Ok(ReleaseMatch::Arg { index, is, count: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_parses_and_knows_vfio_kvm_and_the_kernel_internal_callers() {
        let c = Policy::catalog();
        let (_, vfio) = c.holder_for(Some("vaddr_get_pfns.constprop.0"), Some("vfio_iommu_type1")).unwrap();
        assert_eq!(vfio.release, ["vfio_unpin_pages_remote"]);
        assert_eq!(vfio.release_match, ReleaseMatch::Arg { index: 2, is: ArgMeaning::Pfn, count: Some(3) });
        assert_eq!(vfio.ram_pfns, RamPfns::Refused);
        assert_eq!(vfio.source, catalog::FILE);
        assert!(c.suppression_for(Some("hva_to_pfn_remapped"), Some("kvm"), FindingKind::LookupRevoked).is_some());
        assert!(c.holder_for(Some("get_pat_info"), None).is_some_and(|(_, h)| h.kernel_internal));
    }

    const GOOD: &str = r#"
[[holder]]
module = "pfnaudit_test"
function = "pfnaudit_pin_tracked"
release = ["pfnaudit_unpin_tracked"]

[[holder]]
module = "vfio_iommu_type1"
release = ["vfio_unpin_pages", "pfnaudit_unpin_tracked"]
release_match = "arg1"
release_arg_is = "pfn"

[[suppress]]
holder = "kvm"
kind = "lookup-revoked"
reason = "KVM holds an mmu notifier"

[gate]
fail_on = ["error", "warning"]
"#;

    #[test]
    fn a_full_policy_parses_with_distinct_release_functions() {
        let p = Policy::parse(GOOD, "p.toml").unwrap();
        let names: Vec<String> = p.release_functions().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["pfnaudit_unpin_tracked", "vfio_unpin_pages"]);
        assert_eq!(p.release_functions()[0].module.as_deref(), Some("pfnaudit_test"));
        assert_eq!(p.holders[1].release_match, ReleaseMatch::Arg { index: 1, is: ArgMeaning::Pfn, count: None });
        assert_eq!(p.fail_on, vec![Severity::Error, Severity::Warning]);
        assert!(p.holder_for(Some("pfnaudit_pin_tracked"), Some("pfnaudit_test")).is_some());
        assert!(p.holder_for(Some("other"), Some("pfnaudit_test")).is_none());
        assert!(p.holder_for(Some("vfio_pin_pfn"), Some("vfio_iommu_type1")).is_some());
    }

    #[test]
    fn bad_policy_names_file_and_line() {
        let text = "[[holder]]\nmodule = \"m\"\n\n[[suppress]]\nholder = \"m\"\nkind = \"pin-outlived-lunch\"\nreason = \"x\"\n";
        let e = Policy::parse(text, "bad.toml").unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        assert!(e.to_string().starts_with("bad.toml:6: unknown finding kind \"pin-outlived-lunch\""), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn unknown_keys_and_syntax_errors_are_refused_with_their_line() {
        let e = Policy::parse("[[holder]]\nmodule = \"m\"\nrelase = [\"f\"]\n", "p.toml").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.reason.contains("relase"), "{e}");
        let e = Policy::parse("[[holder]\n", "p.toml").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
    }

    #[test]
    fn holder_without_identity_or_with_bad_match_is_refused() {
        let e = Policy::parse("\n[[holder]]\nrelease = [\"f\"]\n", "p.toml").unwrap_err();
        assert!(e.to_string().starts_with("p.toml:2: a [[holder]] needs"), "{e}");
        let e = Policy::parse("[[holder]]\nmodule = \"m\"\nrelease_match = \"arg9\"\n", "p.toml").unwrap_err();
        assert_eq!(e.line, 3);
        let e = Policy::parse("[[holder]]\nmodule = \"m\"\nrelease_match = \"arg0\"\n", "p.toml").unwrap_err();
        assert!(e.reason.contains("release_arg_is"), "{e}");
    }

    /// A release hook's events carry the function's name as their hook: one named like a hook of
    /// the probe table, or like a symbol a hook is attached to on some kernel (compiler clones
    /// included), could not be told from it.
    #[test]
    fn a_release_that_is_one_of_the_auditors_hooks_is_refused_under_any_of_its_names() {
        let e = Policy::parse("[[holder]]\nmodule = \"m\"\nrelease = [\"f\", \"zap_vma_ptes\"]\n", "p.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.toml:1: release \"zap_vma_ptes\" is hooked by pfn-auditor itself (as zap_vma_ptes), not a release function"
        );
        for (alias, hook) in [
            ("zap_special_vma_range", "zap_vma_ptes"),
            ("__zap_vma_range", "unmap_page_range"),
            ("unmap_page_range.constprop.0", "unmap_page_range"),
            ("exit_mmap.isra.0", "exit_mmap"),
            ("follow_pte.part.0", "follow_pte"),
            ("untrack_pfn.cold", "kernel_internal_lookup"),
        ] {
            let e = Policy::parse(&format!("[[holder]]\nmodule = \"m\"\nrelease = [\"{alias}\"]\n"), "p.toml").unwrap_err();
            assert_eq!(e.reason, format!("release \"{alias}\" is hooked by pfn-auditor itself (as {hook}), not a release function"));
        }
        assert!(Policy::parse("[[holder]]\nmodule = \"m\"\nrelease = [\"zap_page_range_single\"]\n", "p.toml").is_ok());
    }

    #[test]
    fn more_release_functions_than_slots_is_refused() {
        let funcs: Vec<String> = (0..=RELEASE_SLOTS).map(|i| format!("\"f{i}\"")).collect();
        let text = format!("[[holder]]\nmodule = \"m\"\nrelease = [{}]\n", funcs.join(", "));
        let e = Policy::parse(&text, "p.toml").unwrap_err();
        assert!(e.reason.contains("at most 8"), "{e}");
    }

    #[test]
    fn release_keys_need_a_release_function_and_exact_distinct_arguments() {
        let e = Policy::parse("[[holder]]\nmodule = \"m\"\nrelease_match = \"arg2\"\nrelease_arg_is = \"pfn\"\n", "p.toml").unwrap_err();
        assert!(e.reason.contains("need `release = "), "{e}");
        for bad in ["arg+3", "arg03", "arg6"] {
            let t = format!(
                "[[holder]]\nmodule = \"m\"\nrelease = [\"f\"]\nrelease_match = \"arg2\"\nrelease_arg_is = \"pfn\"\nrelease_count = \"{bad}\"\n"
            );
            assert_eq!(Policy::parse(&t, "p.toml").unwrap_err().line, 6, "release_count = {bad:?}");
        }
        let same =
            "[[holder]]\nmodule = \"m\"\nrelease = [\"f\"]\nrelease_match = \"arg2\"\nrelease_arg_is = \"pfn\"\nrelease_count = \"arg2\"\n";
        assert!(Policy::parse(same, "p.toml").unwrap_err().reason.contains("both name arg2"));
        for empty in [
            "[[holder]]\nmodule = \"\"\n",
            "[[holder]]\nmodule = \"m\"\nrelease = [\"\"]\n",
            "[[suppress]]\nholder = \"\"\nkind = \"pin-leaked\"\nreason = \"r\"\n",
        ] {
            assert!(Policy::parse(empty, "p.toml").is_err(), "{empty:?} accepted");
        }
    }

    #[test]
    fn too_many_release_functions_with_the_catalog_name_the_last_holder_line() {
        let path = std::env::temp_dir().join(format!("pfn-auditor-slots-{}.toml", std::process::id()));
        let funcs: Vec<String> = (0..RELEASE_SLOTS).map(|i| format!("\"f{i}\"")).collect();
        std::fs::write(&path, format!("# mine\n\n[[holder]]\nmodule = \"m\"\nrelease = [{}]\n", funcs.join(", "))).unwrap();
        let e = Policy::load(Some(&path), true).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.reason.contains("--no-catalog"), "{e}");
    }

    #[test]
    fn release_count_ram_pfns_and_kernel_internal_parse_and_are_checked() {
        let text = "[[holder]]\nmodule = \"m\"\nrelease = [\"f\"]\nrelease_match = \"arg2\"\nrelease_arg_is = \"pfn\"\nrelease_count = \"arg3\"\nram_pfns = \"refused\"\n\n[[holder]]\nfunction = \"g\"\nkernel_internal = true\n";
        let p = Policy::parse(text, "p.toml").unwrap();
        assert_eq!(p.holders[0].release_match, ReleaseMatch::Arg { index: 2, is: ArgMeaning::Pfn, count: Some(3) });
        assert_eq!(p.holders[0].ram_pfns, RamPfns::Refused);
        assert_eq!((p.holders[1].kernel_internal, p.holders[1].ram_pfns), (true, RamPfns::Pinned));
        let e = Policy::parse("[[holder]]\nmodule = \"m\"\nrelease = [\"f\"]\nrelease_count = \"arg3\"\n", "p.toml").unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (4, "`release_count` needs `release_match = \"argN\"`"));
        let e = Policy::parse(
            "[[holder]]\nmodule = \"m\"\nrelease_match = \"arg0\"\nrelease_arg_is = \"pfn\"\nrelease_count = \"3\"\n",
            "p.toml",
        )
        .unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.reason.starts_with("release_count must be \"arg0\""), "{e}");
        let e = Policy::parse("[[holder]]\nfunction = \"g\"\nkernel_internal = true\nrelease = [\"f\"]\n", "p.toml").unwrap_err();
        assert!(e.reason.contains("takes no pins"), "{e}");
        let e = Policy::parse("[[holder]]\nfunction = \"g\"\nram_pfns = \"sometimes\"\n", "p.toml").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn functions_match_their_compiler_clones() {
        let p = Policy::parse(GOOD, "p.toml").unwrap();
        for clone in [
            "pfnaudit_pin_tracked.constprop.0",
            "pfnaudit_pin_tracked.isra.0.cold",
            "pfnaudit_pin_tracked.part.2",
            "pfnaudit_pin_tracked.llvm.99",
        ] {
            assert_eq!(p.holder_for(Some(clone), Some("pfnaudit_test")).map(|(i, _)| i), Some(0), "{clone}");
        }
        assert!(p.holder_for(Some("pfnaudit_pin_tracked_more"), Some("pfnaudit_test")).is_none());
        assert!(p.holders[0].released_by(&HookRef::from_name("pfnaudit_unpin_tracked.isra.0")));
        assert!(!p.holders[0].released_by(&HookRef::Table(auditor_common::Hook::UnmapMappingRange)), "a revocation releases nothing");
        let s = Policy::parse("[[suppress]]\nholder = \"hva_to_pfn\"\nkind = \"lookup-revoked\"\nreason = \"r\"\n", "p.toml").unwrap();
        assert!(s.suppression_for(Some("hva_to_pfn.constprop.0"), None, FindingKind::LookupRevoked).is_some());
    }

    #[test]
    fn a_policy_over_another_comes_first_and_keeps_its_gate() {
        let user = Policy::parse("[[holder]]\nmodule = \"m\"\n\n[gate]\nfail_on = [\"warning\"]\n", "user.toml").unwrap();
        let under = Policy::parse(GOOD, "under.toml").unwrap();
        let p = user.over(&under).unwrap();
        let sources: Vec<&str> = p.holders.iter().map(|h| h.source.as_str()).collect();
        assert_eq!(sources, ["user.toml", "under.toml", "under.toml"]);
        assert_eq!(p.fail_on, vec![Severity::Warning]);
        let rules = p.rules();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[3].rule, "suppress");
        assert_eq!(rules[3].effect, "lookup-revoked suppressed: KVM holds an mmu notifier");
        assert_eq!(rules[2].effect, "a release call ends the page at the PFN in arg1");
        let funcs: Vec<String> = (0..RELEASE_SLOTS).map(|i| format!("\"f{i}\"")).collect();
        let full = Policy::parse(&format!("[[holder]]\nmodule = \"m\"\nrelease = [{}]\n", funcs.join(", ")), "full.toml").unwrap();
        let e = full.over(&under).unwrap_err();
        assert!(e.contains("--no-catalog"), "{e}");
    }

    #[test]
    fn default_policy_fails_gate_on_errors_only() {
        assert_eq!(Policy::default().fail_on, vec![Severity::Error]);
        assert!(Policy::parse("", "empty.toml").unwrap().holders.is_empty());
    }
}
