//! What became of each hook on this kernel: one row of the `status` record, of `hook` records and
//! of `doctor`'s hook table.
use auditor_common::Hook;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HookState {
    Attached,
    /// The running kernel has no such function in this role (the reason says which replaces it).
    Absent,
    /// The function lives in a module that is not loaded.
    ModuleNotLoaded,
    /// Present, but loading or attaching failed (the reason carries the error).
    Failed,
    /// `doctor` without privileges: would be attached.
    Available,
}

impl HookState {
    /// As in the records (`module-not-loaded`).
    pub fn name(self) -> &'static str {
        match self {
            HookState::Attached => "attached",
            HookState::Absent => "absent",
            HookState::ModuleNotLoaded => "module-not-loaded",
            HookState::Failed => "failed",
            HookState::Available => "available",
        }
    }
}

/// One row of the `status` record / `doctor` output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HookStatus {
    /// Hook name (`follow_pfn`, `unmap_page_range`, or `release` for every policy release
    /// function: its `symbol` names which).
    // A table hook, or `Hook::Release0` for a release function; a name only on the wire.
    #[serde(with = "hook_name")]
    #[schemars(with = "String")]
    pub hook: Hook,
    /// Kernel symbol (function or tracepoint) it is attached to.
    pub symbol: String,
    pub state: HookState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A [`Hook`] as its name on the wire (`release` for `Hook::Release0`); another name is an error.
mod hook_name {
    use auditor_common::Hook;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(hook: &Hook, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(hook.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hook, D::Error> {
        let name = String::deserialize(d)?;
        Hook::from_name(&name)
            .or((name == Hook::Release0.name()).then_some(Hook::Release0))
            .ok_or_else(|| D::Error::custom(format!("unknown hook {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_row_names_its_hook_as_on_the_wire_and_reads_it_back() {
        for hook in Hook::FIXED.into_iter().chain([Hook::Release0]) {
            let row = HookStatus { hook, symbol: "f".into(), state: HookState::Attached, reason: None };
            let json = serde_json::to_value(&row).unwrap();
            assert_eq!(json["hook"], hook.name());
            assert_eq!(serde_json::from_value::<HookStatus>(json).unwrap(), row);
        }
        let unknown = serde_json::json!({"hook": "no_such_hook", "symbol": "f", "state": "attached"});
        let e = serde_json::from_value::<HookStatus>(unknown).unwrap_err();
        assert!(e.to_string().contains("unknown hook \"no_such_hook\""), "{e}");
    }
}

/// A release function of a policy's holder to hook (docs/policy.md). `module` is its holder's:
/// where the function is looked for while it is not in kallsyms, so its hook can be armed before
/// the driver is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseFunction {
    pub name: String,
    pub module: Option<String>,
}
