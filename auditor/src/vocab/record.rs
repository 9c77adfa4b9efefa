//! The NDJSON records, one object a line, each with a `"type"`. Schema version 1; documented in
//! docs/ndjson.md and checked against docs/schema/pfn-auditor.schema.json by the tests.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    event::{Event, HookRef},
    finding::Finding,
    hook_status::HookStatus,
};

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
    /// When the run started: wall-clock (CLOCK_REALTIME) nanoseconds since the Unix epoch, UTC.
    /// With `boot_id` it makes each run's first line its own, so log shippers that recognise a
    /// file by its first line or first KiB (docs/fleet.md) do not take a restarted run's new
    /// file for the old one. Absent in recordings made before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_unix_ns: Option<u64>,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`, a UUID string; random per boot,
    /// Documentation/admin-guide/sysctl/kernel.rst "random"); absent when it cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

impl Status {
    /// `started_unix_ns` and `boot_id` of a run starting now (`None` for what cannot be read:
    /// a clock before 1970, no /proc).
    pub fn run_identity() -> (Option<u64>, Option<String>) {
        let started =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().and_then(|d| u64::try_from(d.as_nanos()).ok());
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string());
        (started, boot_id.filter(|s| !s.is_empty()))
    }
}

/// A hook attached or detached after `status`: its module was loaded, unloaded or reloaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HookChange {
    #[serde(flatten)]
    pub status: HookStatus,
    pub ts_ns: u64,
}

/// Records of `hook` lost since the last `lost`: the kernel could not hand them over (ring buffer
/// full), the daemon could not decode them (`reason: undecodable`), or they arrived without the
/// stack they share with an earlier record (`reason: stack-unknown`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lost {
    /// The hook of the records' counter slot, by name; `unknown` (none in Rust) for a record too
    /// short to name its slot.
    #[serde(with = "lost_hook")]
    #[schemars(with = "String")]
    pub hook: Option<HookRef>,
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
    /// Lookup records that carry no stack of their own but share the stack of an earlier record
    /// of their thread (the same call frame, the next page) that the daemon never read: their
    /// events were delivered without a stack or caller, never with a guessed one.
    StackUnknown,
}

impl Lost {
    /// `count` records of `hook` the kernel dropped because the ring buffer was full.
    pub fn ring_full(hook: HookRef, count: u64, ts_ns: u64) -> Self {
        Self { hook: Some(hook), count, ts_ns, reason: None }
    }

    /// `count` records of `hook` (`None`: too short to name it) that did not parse.
    pub fn undecodable(hook: Option<HookRef>, count: u64, ts_ns: u64) -> Self {
        Self { hook, count, ts_ns, reason: Some(LossReason::Undecodable) }
    }

    /// `count` lookup records of `hook` delivered without the stack they share with a record the
    /// daemon never read.
    pub fn stack_unknown(hook: HookRef, count: u64, ts_ns: u64) -> Self {
        Self { hook: Some(hook), count, ts_ns, reason: Some(LossReason::StackUnknown) }
    }

    /// The hook's name on the wire, [`UNKNOWN_HOOK`] when no hook is known.
    pub fn hook_name(&self) -> &str {
        hook_or_unknown(self.hook.as_ref())
    }
}

/// The wire name of a loss whose record was too short to name its hook.
pub const UNKNOWN_HOOK: &str = "unknown";

/// A loss's hook by name: the hook's, or [`UNKNOWN_HOOK`] for none.
pub fn hook_or_unknown(hook: Option<&HookRef>) -> &str {
    hook.map_or(UNKNOWN_HOOK, HookRef::name)
}

/// A loss's hook on the wire: its name, or [`UNKNOWN_HOOK`] for none (a release function the
/// policy named `unknown` reads back as none; both are written the same).
mod lost_hook {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{HookRef, UNKNOWN_HOOK, hook_or_unknown};

    pub fn from_name(name: &str) -> Option<HookRef> {
        (name != UNKNOWN_HOOK).then(|| HookRef::from_name(name))
    }

    pub fn serialize<S: Serializer>(hook: &Option<HookRef>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(hook_or_unknown(hook.as_ref()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HookRef>, D::Error> {
        Ok(from_name(&String::deserialize(d)?))
    }
}

/// Losses per hook on the wire: an object from hook name to count, in name order.
mod lost_hooks {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{HookRef, hook_or_unknown, lost_hook};

    pub fn serialize<S: Serializer>(counts: &BTreeMap<Option<HookRef>, u64>, s: S) -> Result<S::Ok, S::Error> {
        counts.iter().map(|(hook, n)| (hook_or_unknown(hook.as_ref()), *n)).collect::<BTreeMap<_, _>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Option<HookRef>, u64>, D::Error> {
        let by_name = BTreeMap::<String, u64>::deserialize(d)?;
        Ok(by_name.into_iter().map(|(name, n)| (lost_hook::from_name(&name), n)).collect())
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
    /// Of `lost_total`, the records per hook the daemon could not decode; `unknown` (none in Rust)
    /// for records too short to name their hook.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", with = "lost_hooks")]
    #[schemars(with = "BTreeMap<String, u64>")]
    pub undecodable: BTreeMap<Option<HookRef>, u64>,
    pub hooks: Vec<HookTotals>,
    pub duration_ms: u64,
}

impl RunSummary {
    /// End-of-run lines for humans: suppressions per reason, pins whose vma stayed unknown.
    pub fn notes(&self) -> Vec<String> {
        notes(&self.suppressed_by, self.pins_without_vma, self.evicted_pins, self.evicted_pfnmaps)
    }

    /// What the gate fails closed on: records lost and correlator state evicted.
    pub fn losses(&self) -> u64 {
        self.lost_total + self.evicted_pins + self.evicted_pfnmaps
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What the correlator holds now (levels, not counts: they go down too), for the
/// metrics' gauges: at every poll of a live run and at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Levels {
    /// Pins currently held.
    pub pins_held: u64,
    /// PFN maps currently tracked.
    pub pfnmaps: u64,
}

/// Per-hook totals as reported in `summary` and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HookTotals {
    /// The hook of the counter slot: a table hook's name, or a policy release function's.
    #[schemars(with = "String")]
    pub hook: HookRef,
    /// Times the hook's probes ran, counted by the programs themselves.
    pub hits: u64,
    /// Records they wrote to the ring buffer.
    pub emitted: u64,
    /// Records lost because the ring buffer was full.
    pub dropped: u64,
    /// Runs of the hook's eBPF programs as the kernel counts them (an entry and a return probe
    /// each count; `bpf_prog_info.run_cnt`); absent when the kernel keeps no run-time statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_runs: Option<u64>,
    /// Nanoseconds spent in those runs (`bpf_prog_info.run_time_ns`): the probes' cost on this
    /// machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpf_run_ns: Option<u64>,
}

/// One active rule, as `doctor` and the `status` record list them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuleStatus {
    /// `holder` or `suppress`.
    pub rule: String,
    /// `function [module]` of a holder; the function or module name a suppression names.
    pub holder: String,
    /// Release functions (hooked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release: Vec<String>,
    /// What the rule does, in one sentence.
    pub effect: String,
    /// The policy file it comes from, or `catalog.toml` for the built-in catalog.
    pub source: String,
}

/// End-of-run lines for humans, from a summary's suppressions, pins without a vma and evictions.
pub fn notes(suppressed_by: &BTreeMap<String, u64>, pins_without_vma: u64, evicted_pins: u64, evicted_pfnmaps: u64) -> Vec<String> {
    let mut notes: Vec<String> = suppressed_by.iter().map(|(reason, n)| format!("suppressed: {reason}: {n}")).collect();
    if pins_without_vma > 0 {
        notes.push(format!(
            "{pins_without_vma} pin(s) without a known vma (no PFN map of the run contains their address): an owner revocation of their file cannot be matched to them"
        ));
    }
    if evicted_pins + evicted_pfnmaps > 0 {
        notes.push(format!(
            "state limit reached: {evicted_pins} pin(s) and {evicted_pfnmaps} PFN map(s) evicted unreported: findings may be missing (raise --max-pins / --max-pfnmaps)"
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use auditor_common::Hook;

    use super::*;

    #[test]
    fn a_loss_of_no_known_hook_reads_and_writes_as_unknown() {
        let line = r#"{"type":"lost","hook":"unknown","count":2,"ts_ns":5,"reason":"undecodable"}"#;
        let Record::Lost(lost) = serde_json::from_str(line).unwrap() else { panic!("a lost record") };
        assert_eq!(lost, Lost::undecodable(None, 2, 5));
        assert_eq!(serde_json::to_string(&Record::Lost(lost)).unwrap(), line, "the wire form is unchanged");

        let line = r#"{"type":"lost","hook":"zap_vma_ptes","count":1,"ts_ns":6}"#;
        let Record::Lost(lost) = serde_json::from_str(line).unwrap() else { panic!("a lost record") };
        assert_eq!(lost.hook, Some(HookRef::Table(Hook::ZapVmaPtes)));
    }

    #[test]
    fn undecodable_counts_are_keyed_by_hook_and_written_by_name_in_name_order() {
        let release = HookRef::from_name("drv_release");
        let summary = RunSummary {
            undecodable: BTreeMap::from([(Some(HookRef::Table(Hook::ZapVmaPtes)), 1), (None, 3), (Some(release.clone()), 2)]),
            ..RunSummary::default()
        };
        let json = serde_json::to_value(&summary).unwrap();
        let names: Vec<(&String, &serde_json::Value)> = json["undecodable"].as_object().unwrap().iter().collect();
        assert_eq!(names.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["drv_release", "unknown", "zap_vma_ptes"]);
        let back: RunSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back.undecodable, summary.undecodable);
        assert_eq!(back.undecodable[&Some(release)], 2);
    }
}
