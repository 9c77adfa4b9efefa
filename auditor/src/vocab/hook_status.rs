//! What became of each hook on this kernel: one row of the `status` record, of `hook` records and
//! of `doctor`'s hook table.
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
    /// Hook name (`follow_pfn`, `unmap_page_range`, or `release` for policy hooks).
    pub hook: String,
    /// Kernel symbol (function or tracepoint) it is attached to.
    pub symbol: String,
    pub state: HookState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
