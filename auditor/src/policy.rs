//! The policy file (TOML): per holder, how its raw-lookup pins are released; suppressions; which
//! severities fail `gate`. See docs/policy.md. A bad policy is refused at start with
//! `FILE:LINE: reason`.
use std::{fmt, path::Path};

use auditor_common::RELEASE_SLOTS;
use serde::Deserialize;
use toml::Spanned;

use crate::correlate::finding::{FindingKind, Severity};

/// How a release-hook call finds the pins it releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseMatch {
    /// Every pin of the holder taken by the calling process.
    Tgid,
    /// Pins whose PFN (or user address) equals argument `n` of the call.
    Arg { index: usize, is: ArgMeaning },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgMeaning {
    Pfn,
    Address,
}

/// A release function to hook. `module` is its holder's: where the function is looked for while
/// it is not in kallsyms, so its hook can be armed before the driver is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseFunction {
    pub name: String,
    pub module: Option<String>,
}

/// One `[[holder]]`: kernel code that takes raw lookups and how it gives them back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolderRule {
    pub module: Option<String>,
    pub function: Option<String>,
    pub release: Vec<String>,
    pub release_match: ReleaseMatch,
}

impl HolderRule {
    /// Does a lookup made from `function` in `module` belong to this holder?
    pub fn matches(&self, function: Option<&str>, module: Option<&str>) -> bool {
        let module_ok = self.module.as_deref().is_none_or(|m| Some(m) == module);
        let function_ok = self.function.as_deref().is_none_or(|f| Some(f) == function);
        module_ok && function_ok
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
    /// Holder function or module name.
    pub holder: String,
    pub kind: FindingKind,
    pub reason: String,
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

/// `FILE:LINE: reason` — one line, as the CLI prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
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
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyError { file: file.clone(), line: 0, reason: format!("cannot read policy: {e}") })?;
        Self::parse(&text, &file)
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
            let release_match = match &h.release_match {
                None => ReleaseMatch::Tgid,
                Some(m) => parse_match(m.get_ref(), h.release_arg_is).map_err(|r| err(m.span().start, r))?,
            };
            if matches!(release_match, ReleaseMatch::Tgid) && h.release_arg_is.is_some() {
                return Err(err(at, "`release_arg_is` needs `release_match = \"argN\"`".into()));
            }
            holders.push(HolderRule {
                module: h.module.clone(),
                function: h.function.clone(),
                release: h.release.clone(),
                release_match,
            });
        }

        let mut suppressions = Vec::new();
        for s in &raw.suppress {
            let s = s.get_ref();
            let kind = FindingKind::from_name(s.kind.get_ref())
                .ok_or_else(|| err(s.kind.span().start, format!("unknown finding kind {:?} (known: {})", s.kind.get_ref(), FindingKind::names().join(", "))))?;
            suppressions.push(Suppression { holder: s.holder.clone(), kind, reason: s.reason.clone() });
        }

        let fail_on = match &raw.gate {
            None => vec![Severity::Error],
            Some(g) => g
                .fail_on
                .get_ref()
                .iter()
                .map(|s| Severity::from_name(s).ok_or_else(|| err(g.fail_on.span().start, format!("unknown severity {s:?} (known: error, warning)"))))
                .collect::<Result<_, _>>()?,
        };

        let policy = Self { holders, suppressions, fail_on };
        let releases = policy.release_functions();
        if releases.len() > RELEASE_SLOTS {
            let at = raw.holder.last().map(|h| h.span().start).unwrap_or(0);
            return Err(err(at, format!("{} distinct release functions; at most {RELEASE_SLOTS} can be hooked", releases.len())));
        }
        Ok(policy)
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
    pub fn holder_for(&self, function: Option<&str>, module: Option<&str>) -> Option<(usize, &HolderRule)> {
        self.holders.iter().enumerate().find(|(_, h)| h.matches(function, module))
    }

    pub fn suppression_for(&self, function: Option<&str>, module: Option<&str>, kind: FindingKind) -> Option<&Suppression> {
        self.suppressions
            .iter()
            .find(|s| s.kind == kind && (Some(s.holder.as_str()) == function || Some(s.holder.as_str()) == module))
    }
}

fn parse_match(text: &str, arg_is: Option<ArgMeaning>) -> Result<ReleaseMatch, String> {
    if text == "tgid" {
        return Ok(ReleaseMatch::Tgid);
    }
    let index = text
        .strip_prefix("arg")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < auditor_common::RELEASE_ARGS)
        .ok_or_else(|| format!("release_match must be \"tgid\" or \"arg0\"..\"arg5\", not {text:?}"))?;
    let is = arg_is.ok_or_else(|| format!("release_match = {text:?} needs release_arg_is = \"pfn\" or \"address\""))?;
    Ok(ReleaseMatch::Arg { index, is })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(p.holders[1].release_match, ReleaseMatch::Arg { index: 1, is: ArgMeaning::Pfn });
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

    #[test]
    fn more_release_functions_than_slots_is_refused() {
        let funcs: Vec<String> = (0..=RELEASE_SLOTS).map(|i| format!("\"f{i}\"")).collect();
        let text = format!("[[holder]]\nmodule = \"m\"\nrelease = [{}]\n", funcs.join(", "));
        let e = Policy::parse(&text, "p.toml").unwrap_err();
        assert!(e.reason.contains("at most 8"), "{e}");
    }

    #[test]
    fn default_policy_fails_gate_on_errors_only() {
        assert_eq!(Policy::default().fail_on, vec![Severity::Error]);
        assert!(Policy::parse("", "empty.toml").unwrap().holders.is_empty());
    }
}
