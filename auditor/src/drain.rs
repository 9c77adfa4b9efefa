//! Draining the kernel side: ring-buffer records as they arrive, and the per-hook counters
//! (hits / emitted / dropped) whose `dropped` deltas become `lost` records.
use std::collections::HashMap;

use anyhow::{Context, anyhow};
use auditor_common::{HOOK_COUNT, HookCounters};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, RingBuf},
};
use tokio::io::unix::AsyncFd;

use crate::{
    probes::run_time::RunTime,
    vocab::{
        event::HookRef,
        record::{HookTotals, Lost},
    },
};

/// The maps the daemon reads, taken out of the loaded object.
pub(crate) struct KernelMaps {
    pub events: AsyncFd<RingBuf<MapData>>,
    pub counters: PerCpuArray<MapData, HookCounters>,
}

impl KernelMaps {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        let mut take = |name: &str| ebpf.take_map(name).ok_or_else(|| anyhow!("eBPF object has no map {name}"));
        let events = RingBuf::try_from(take("EVENTS")?).context("EVENTS is not a ring buffer")?;
        let counters = PerCpuArray::try_from(take("COUNTERS")?).context("COUNTERS is not a per-CPU array")?;
        // SAFETY: the ring buffer owns its fd for as long as the AsyncFd owns the ring buffer.
        let events = unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow!("polling the ring buffer: {e}"))?;
        Ok(Self { events, counters })
    }

    /// Waits until records are available, then returns all of them (copied out).
    pub(crate) async fn next_batch(&mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut guard = self.events.readable_mut().await.context("waiting for the ring buffer")?;
        let batch = drain_ring(guard.get_inner_mut());
        guard.clear_ready();
        Ok(batch)
    }

    /// Whatever is in the ring buffer right now, without waiting (final drain at shutdown).
    pub(crate) fn drain_now(&mut self) -> Vec<Vec<u8>> {
        drain_ring(self.events.get_mut())
    }

    /// Counters summed over CPUs, indexed by hook slot.
    pub(crate) fn read_counters(&self) -> Vec<HookCounters> {
        (0..HOOK_COUNT as u32)
            .map(|slot| match self.counters.get(&slot, 0) {
                Ok(per_cpu) => per_cpu.iter().fold(HookCounters::default(), |acc, c| HookCounters {
                    hits: acc.hits + c.hits,
                    emitted: acc.emitted + c.emitted,
                    dropped: acc.dropped + c.dropped,
                }),
                Err(_) => HookCounters::default(),
            })
            .collect()
    }
}

fn drain_ring(ring: &mut RingBuf<MapData>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        out.push(item.to_vec());
    }
    out
}

/// Turns successive counter snapshots into "lost since last time" per hook.
#[derive(Default)]
pub(crate) struct LossTracker {
    reported: HashMap<usize, u64>,
}

impl LossTracker {
    /// `(slot, newly lost)` for every slot whose `dropped` grew since the last call.
    pub(crate) fn new_losses(&mut self, counters: &[HookCounters]) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        for (slot, c) in counters.iter().enumerate() {
            let seen = self.reported.entry(slot).or_default();
            if c.dropped > *seen {
                out.push((slot, c.dropped - *seen));
                *seen = c.dropped;
            }
        }
        out
    }
}

/// Records that did not parse, per hook (`None`: too short to name one), until the next counter
/// poll reports them as `lost` records with `reason: undecodable`.
#[derive(Default)]
pub(crate) struct Undecodable(std::collections::BTreeMap<Option<HookRef>, u64>);

impl Undecodable {
    /// Counts one record of `hook`; true for the first one since the last report (worth a log line).
    pub fn count(&mut self, hook: Option<HookRef>) -> bool {
        let first = self.0.is_empty();
        *self.0.entry(hook).or_default() += 1;
        first
    }

    /// One `lost` record per hook counted since the last call.
    pub fn take(&mut self, ts_ns: u64) -> Vec<Lost> {
        std::mem::take(&mut self.0).into_iter().map(|(hook, count)| Lost::undecodable(hook, count, ts_ns)).collect()
    }
}

/// Totals for the hooks that ran at all (`hooks`: each counter slot's hook, `None` for an unused
/// release slot), with the kernel's run-time statistics per slot
/// when it keeps them.
pub(crate) fn totals(counters: &[HookCounters], hooks: &[Option<HookRef>], run_times: Option<&[RunTime]>) -> Vec<HookTotals> {
    counters
        .iter()
        .zip(hooks)
        .enumerate()
        .filter_map(|(slot, (c, hook))| Some((slot, c, hook.as_ref()?)))
        .filter(|(_, c, _)| c.hits > 0 || c.dropped > 0)
        .map(|(slot, c, hook)| {
            let run = run_times.map(|r| r.get(slot).copied().unwrap_or_default());
            HookTotals {
                hook: hook.clone(),
                hits: c.hits,
                emitted: c.emitted,
                dropped: c.dropped,
                bpf_runs: run.map(|r| r.runs),
                bpf_run_ns: run.map(|r| r.ns),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use auditor_common::Hook;

    use super::*;

    fn dropped(n: u64) -> HookCounters {
        HookCounters { hits: 10, emitted: 10 - n.min(10), dropped: n }
    }

    #[test]
    fn losses_are_reported_once_as_deltas() {
        let mut t = LossTracker::default();
        assert_eq!(t.new_losses(&[dropped(0), dropped(3)]), vec![(1, 3)]);
        assert_eq!(t.new_losses(&[dropped(0), dropped(3)]), vec![]);
        assert_eq!(t.new_losses(&[dropped(2), dropped(5)]), vec![(0, 2), (1, 2)]);
    }

    #[test]
    fn undecodable_records_become_one_loss_per_hook_per_poll() {
        let mut u = Undecodable::default();
        let zap = || Some(HookRef::Table(Hook::ZapVmaPtes));
        assert!(u.count(zap()), "the first one is logged");
        assert!(!u.count(zap()));
        assert!(!u.count(None), "a record too short to name its hook");
        let lost = u.take(7);
        assert_eq!(lost, [Lost::undecodable(None, 1, 7), Lost::undecodable(zap(), 2, 7)]);
        assert_eq!(lost[0].hook_name(), "unknown");
        assert!(u.take(8).is_empty(), "reported once");
        assert!(u.count(Some(Hook::FollowPfn.into())), "logged again after a report");
    }

    #[test]
    fn totals_name_hooks_and_skip_idle_ones() {
        let hooks = [Some(Hook::FollowPfn.into()), Some(Hook::ZapVmaPtes.into()), None];
        let t = totals(&[dropped(1), HookCounters::default(), dropped(3)], &hooks, None);
        assert_eq!(t.len(), 1, "an idle hook and an unused slot have no totals");
        assert_eq!(t[0].hook, HookRef::Table(Hook::FollowPfn));
        assert_eq!(t[0].dropped, 1);
        assert_eq!((t[0].bpf_runs, t[0].bpf_run_ns), (None, None), "no statistics: none reported, not zero");
    }

    #[test]
    fn totals_carry_each_hooks_bpf_run_time() {
        let hooks = [Some(Hook::FollowPfn.into()), Some(HookRef::Release("drv_unpin".into()))];
        let runs = [RunTime { runs: 20, ns: 31_000 }, RunTime { runs: 4, ns: 900 }];
        let t = totals(&[dropped(0), dropped(0)], &hooks, Some(&runs));
        assert_eq!((t[1].hook.name(), t[1].bpf_runs, t[1].bpf_run_ns), ("drv_unpin", Some(4), Some(900)));
        let json = serde_json::to_value(&t[0]).unwrap();
        assert_eq!(json["hook"], "follow_pfn", "named on the wire");
        assert_eq!((json["bpf_runs"].as_u64(), json["bpf_run_ns"].as_u64()), (Some(20), Some(31_000)));
    }
}
