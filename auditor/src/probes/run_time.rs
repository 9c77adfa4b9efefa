//! What the probes cost on this machine: the kernel's run-time statistics of each eBPF program
//! (`BPF_ENABLE_STATS` with `BPF_STATS_RUN_TIME`, kernel 5.8+; `bpf_prog_info.run_cnt` and
//! `run_time_ns`), summed per hook over its entry and return programs.
use std::os::fd::OwnedFd;

use auditor_common::{HOOK_COUNT, Hook, RELEASE_SLOTS};
use aya::Ebpf;

use super::table::{Attach, PROBES};

/// Runs of one hook's programs and the time spent in them, as the kernel counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunTime {
    /// Program runs (a call through an entry and a return probe counts twice).
    pub runs: u64,
    /// Nanoseconds spent in the programs (the kernel's clock around each run).
    pub ns: u64,
}

/// Keeps the kernel's run-time statistics on while held (they cost two clock reads per program
/// run, and the kernel keeps them on while any holder has one).
pub(crate) struct RunTimeStats(#[allow(dead_code)] OwnedFd);

impl RunTimeStats {
    /// Turns the statistics on; `None` (with a warning) when the kernel refuses.
    pub fn enable() -> Option<Self> {
        match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => Some(Self(fd)),
            Err(e) => {
                log::warn!("no BPF run-time statistics (runs, ns per hook): {e}");
                None
            }
        }
    }
}

/// Each program of the object with its counter slot: the probe table's entry and return
/// programs of each hook, `release_N` for release slot N. One program serves one hook.
pub(crate) fn program_slots() -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    let mut add = |program: &str, slot: usize| {
        if !out.iter().any(|(p, _)| p == program) {
            out.push((program.to_string(), slot));
        }
    };
    for row in PROBES {
        match row.attach() {
            Attach::Function { entry, ret, .. } => {
                add(entry, row.hook as usize);
                if let Some(ret) = ret {
                    add(ret, row.hook as usize);
                }
            }
            Attach::Tracepoint { program, .. } => add(program, row.hook as usize),
        }
    }
    for slot in 0..RELEASE_SLOTS {
        add(&format!("release_{slot}"), Hook::Release0 as usize + slot);
    }
    out
}

/// Per counter slot, the runs and time of its loaded programs so far (programs never loaded,
/// e.g. of hooks absent on this kernel, count nothing).
pub fn read(ebpf: &Ebpf) -> Vec<RunTime> {
    let mut slots = vec![RunTime::default(); HOOK_COUNT];
    for (program, slot) in program_slots() {
        let Some(info) = ebpf.program(&program).and_then(|p| p.info().ok()) else { continue };
        slots[slot].runs += info.run_count();
        slots[slot].ns += info.run_time().as_nanos() as u64;
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_program_counts_for_one_hook() {
        let slots = program_slots();
        for row in PROBES {
            let Attach::Function { entry, .. } = row.attach() else { continue };
            let (_, slot) = slots.iter().find(|(p, _)| p == entry).expect("every entry program has a slot");
            assert_eq!(*slot, row.hook as usize, "{entry} is counted for {}", row.hook.name());
        }
        let (_, slot) = slots.iter().find(|(p, _)| p == "release_2").expect("release programs have slots");
        assert_eq!(*slot, Hook::Release0 as usize + 2);
        assert!(slots.iter().all(|(_, slot)| *slot < HOOK_COUNT));
    }
}
