//! `pfn-auditor doctor`: can this machine be audited, and which hook carries which role here?
use std::{fmt::Write as _, path::Path};

use crate::{
    policy::{Policy, RuleStatus},
    probes::{self, HookState, HookStatus, KernelFacts},
};

/// Everything doctor found, printable as a table or JSON.
#[derive(Debug, serde::Serialize)]
pub struct Diagnosis {
    pub kernel_release: String,
    pub kernel_version: String,
    pub btf: Result<String, String>,
    pub root: bool,
    /// True when the hooks below were really attached (root), false when only planned.
    pub attached_for_real: bool,
    pub hooks: Vec<HookStatus>,
    /// Holder and suppression rules in force: policy file first, then the built-in catalog.
    pub rules: Vec<RuleStatus>,
}

impl Diagnosis {
    /// Ready to audit: root, BTF, a raw-lookup hook and every revocation hook attached or attachable.
    pub fn ready(&self) -> bool {
        let ok = |hook: auditor_common::Hook| {
            self.hooks.iter().any(|h| h.hook == hook.name() && matches!(h.state, HookState::Attached | HookState::Available))
        };
        self.root && self.btf.is_ok() && crate::probes::table::missing_essential(ok).is_none()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(out, "kernel      {} ({})", self.kernel_release, self.kernel_version);
        match &self.btf {
            Ok(path) => _ = writeln!(out, "btf         {path}"),
            Err(e) => _ = writeln!(out, "btf         MISSING: {e}"),
        }
        let _ = writeln!(out, "root        {}", yes_no(self.root));
        let how = if self.attached_for_real { "attached now" } else { "planned (run as root to attach for real)" };
        let _ = writeln!(out, "hooks       {how}");
        let _ = writeln!(out, "  {:<22} {:<24} {:<18} reason", "hook", "symbol", "state");
        for h in &self.hooks {
            let _ = writeln!(out, "  {:<22} {:<24} {:<18} {}", h.hook, h.symbol, h.state.name(), h.reason.as_deref().unwrap_or(""));
        }
        let _ =
            writeln!(out, "rules       {}", if self.rules.is_empty() { "none (no policy, --no-catalog)" } else { "matched in this order" });
        let _ = writeln!(out, "  {:<8} {:<32} {:<26} {:<22} effect", "rule", "holder", "release", "source");
        for r in &self.rules {
            let _ = writeln!(out, "  {:<8} {:<32} {:<26} {:<22} {}", r.rule, r.holder, r.release.join(", "), r.source, r.effect);
        }
        let _ = writeln!(out, "ready       {}", yes_no(self.ready()));
        out
    }
}

pub fn diagnose(policy: &Policy) -> anyhow::Result<Diagnosis> {
    let release_functions = &policy.release_functions();
    let facts = KernelFacts::read()?;
    let btf_path = Path::new("/sys/kernel/btf/vmlinux");
    let btf = if btf_path.exists() {
        Ok(btf_path.display().to_string())
    } else {
        Err("no /sys/kernel/btf/vmlinux (kernel built without CONFIG_DEBUG_INFO_BTF)".to_string())
    };
    let root = probes::require_root().is_ok();
    let (hooks, attached_for_real) = if root && btf.is_ok() {
        // Attach for real (and detach on drop): the only proof that the verifier accepts the
        // programs on this kernel.
        match probes::load_and_attach(&facts, release_functions, 1 << 20) {
            Ok(attached) => (attached.hooks, true),
            Err(e) => {
                let mut planned = probes::plan(&facts, release_functions);
                planned.push(HookStatus {
                    hook: "load".into(),
                    symbol: "-".into(),
                    state: HookState::Failed,
                    reason: Some(format!("{e:#}")),
                });
                (planned, false)
            }
        }
    } else {
        (probes::plan(&facts, release_functions), false)
    };
    Ok(Diagnosis {
        kernel_release: facts.release.clone(),
        kernel_version: facts.version.to_string(),
        btf,
        root,
        attached_for_real,
        hooks,
        rules: policy.rules(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_in_force_are_listed_with_their_source() {
        let user = Policy::parse("[[holder]]\nmodule = \"drv\"\nrelease = [\"drv_unpin\"]\n", "my.toml").unwrap();
        let d = Diagnosis {
            kernel_release: "6.1.0-50-amd64".into(),
            kernel_version: "6.1.0".into(),
            btf: Ok("/sys/kernel/btf/vmlinux".into()),
            root: false,
            attached_for_real: false,
            hooks: Vec::new(),
            rules: user.over(&crate::catalog::catalog()).unwrap().rules(),
        };
        let text = d.render();
        let rules: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("rules")).skip(2).take_while(|l| l.starts_with("  ")).collect();
        assert!(rules[0].contains("[drv]") && rules[0].contains("drv_unpin") && rules[0].contains("my.toml"), "{text}");
        assert!(
            rules[1].contains("[vfio_iommu_type1]") && rules[1].contains("vfio_unpin_pages_remote") && rules[1].contains("catalog.toml"),
            "{text}"
        );
        assert!(rules[1].contains("arg3 pages from the PFN in arg2"), "{text}");
        assert!(rules.iter().any(|r| r.starts_with("  suppress") && r.contains("kvm") && r.contains("MMU notifier")), "{text}");
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["rules"][1]["source"], "catalog.toml");
    }
}
