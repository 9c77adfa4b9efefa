//! The NDJSON records, one object a line, each with a `"type"`. Schema version 1; documented in
//! docs/ndjson.md and checked against docs/schema/pfn-auditor.schema.json by the tests.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{correlate::Finding, drain::HookTotals, event::Event, policy::RuleStatus, probes::HookStatus};

/// Bumped on any incompatible change to the records.
pub const SCHEMA_VERSION: u32 = 1;

// One record is built, written and dropped at a time: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Record {
    Status(Status),
    Hook(HookChange),
    Event(Event),
    Finding(Finding),
    Lost(Lost),
    Summary(RunSummary),
}

/// First record of a run: what is attached where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Status {
    pub schema: u32,
    pub version: String,
    pub kernel: String,
    /// Policy file in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Whether raw `event` records follow (`--events`).
    pub events: bool,
    pub hooks: Vec<HookStatus>,
    /// The active holder and suppression rules, from the policy file and the built-in catalog,
    /// in matching order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleStatus>,
}

/// A hook attached or detached after `status`: its module was loaded, unloaded or reloaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HookChange {
    #[serde(flatten)]
    pub status: HookStatus,
    pub ts_ns: u64,
}

/// Records of `hook` lost since the last `lost`: the kernel could not hand them over (ring buffer
/// full), or the daemon could not decode them (`reason: undecodable`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lost {
    pub hook: String,
    pub count: u64,
    pub ts_ns: u64,
    /// Absent: the ring buffer was full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<LossReason>,
}

/// Why records were lost, when it is not a full ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LossReason {
    /// The eBPF object and the daemon disagree on a record's layout (version skew).
    Undecodable,
}

impl Lost {
    pub fn ring_full(hook: &str, count: u64, ts_ns: u64) -> Self {
        Self { hook: hook.into(), count, ts_ns, reason: None }
    }

    pub fn undecodable(hook: &str, count: u64, ts_ns: u64) -> Self {
        Self { hook: hook.into(), count, ts_ns, reason: Some(LossReason::Undecodable) }
    }
}

/// Last record of a run (a recording without it is truncated: `replay` exits 3).
// `Default`: the summary of a run that saw nothing, for recordings made by tests and examples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunSummary {
    pub findings: Vec<Finding>,
    pub counts: BTreeMap<String, u64>,
    pub suppressed: u64,
    /// Suppressed findings per suppression reason.
    #[serde(default)]
    pub suppressed_by: BTreeMap<String, u64>,
    pub pins_held: u64,
    /// Raw-lookup pins whose vma stayed unknown: owner revocations cannot be matched to them.
    #[serde(default)]
    pub pins_without_vma: u64,
    /// Pins and PFN maps dropped to stay within the correlator's bounds: their findings may be
    /// missing, so `gate` counts them as losses.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub evicted_pins: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub evicted_pfnmaps: u64,
    pub events: u64,
    /// Records lost: ring buffer full, plus records that could not be decoded (`undecodable`).
    pub lost_total: u64,
    /// Of `lost_total`, the records per hook the daemon could not decode.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub undecodable: BTreeMap<String, u64>,
    pub hooks: Vec<HookTotals>,
    pub duration_ms: u64,
}

impl RunSummary {
    /// End-of-run lines for humans: suppressions per reason, pins whose vma stayed unknown.
    pub fn notes(&self) -> Vec<String> {
        crate::correlate::notes(&self.suppressed_by, self.pins_without_vma, self.evicted_pins, self.evicted_pfnmaps)
    }

    /// What the gate fails closed on: records lost and correlator state evicted.
    pub fn losses(&self) -> u64 {
        self.lost_total + self.evicted_pins + self.evicted_pfnmaps
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
