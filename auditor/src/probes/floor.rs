//! `pfn-auditor run --probe-floor`, a benchmark aid for `cargo xtask bench`: the daemon attaches
//! empty programs (auditor-ebpf/src/floor.rs) wherever it would attach its real ones — every row
//! of the probe table that applies to the running kernel and every policy release function, by the
//! same mechanism (perf kprobe/kretprobe, tracefs kprobe for module hooks, tracepoint) — and
//! otherwise runs as usual. A workload run under it pays for the probes' traps and the idle
//! daemon, not for what the programs do: the bench's floor column. Nothing is recorded.
//!
//! The floor attaches each selected row with its [`Attach`] rewritten to the empty program of the
//! same type ([`ProgramSet::attach`]), so the same rows are selected, prechecked and attached by the
//! same mechanism. An fentry/fexit row (`Attach` has none yet) needs an empty fentry/fexit program
//! of its own per target function, since such a program is verified against one BTF function at
//! load time: the match in `floor_attach` makes that row's author name it.
use super::table::{Attach, ProbeRow};

/// Which programs the loader attaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgramSet {
    /// The auditing programs: every real run.
    #[default]
    Auditing,
    /// Empty programs of the same type at the same places (`--probe-floor`).
    Floor,
}

/// The empty programs, one per program type (auditor-ebpf/src/floor.rs).
pub(crate) const FLOOR_KPROBE: &str = "floor_kprobe";
pub(crate) const FLOOR_KRETPROBE: &str = "floor_kretprobe";
pub(crate) const FLOOR_TRACEPOINT: &str = "floor_tracepoint";

impl ProgramSet {
    /// Where and what `row` attaches in this set: the row's own programs, or the empty ones of the
    /// same types on the same symbol.
    pub(crate) fn attach(self, row: &ProbeRow) -> Attach {
        match self {
            ProgramSet::Auditing => row.attach(),
            ProgramSet::Floor => floor_attach(row.attach()),
        }
    }

    /// The kprobe program for the policy's release function in `slot`.
    pub fn release(self, slot: usize) -> String {
        match self {
            ProgramSet::Auditing => format!("release_{slot}"),
            ProgramSet::Floor => FLOOR_KPROBE.into(),
        }
    }
}

fn floor_attach(attach: Attach) -> Attach {
    match attach {
        Attach::Function { symbol, ret, .. } => {
            Attach::Function { symbol, entry: FLOOR_KPROBE, ret: if ret.is_some() { Some(FLOOR_KRETPROBE) } else { None } }
        }
        Attach::Tracepoint { category, name, .. } => Attach::Tracepoint { category, name, program: FLOOR_TRACEPOINT },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::table::PROBES;

    /// The floor must attach where the auditor does, or it measures another set of probes.
    #[test]
    fn the_floor_attaches_every_row_on_its_symbol_with_only_empty_programs() {
        for row in PROBES {
            let (real, empty) = (ProgramSet::Auditing.attach(row), ProgramSet::Floor.attach(row));
            assert_eq!(real, row.attach());
            assert_eq!(real.symbol(), empty.symbol(), "{row:?}");
            match (real, empty) {
                (Attach::Function { ret, .. }, Attach::Function { entry, ret: empty_ret, .. }) => {
                    assert_eq!(entry, FLOOR_KPROBE);
                    assert_eq!(
                        empty_ret,
                        ret.map(|_| FLOOR_KRETPROBE),
                        "{}: a return probe exactly where the real row has one",
                        real.symbol()
                    );
                }
                (Attach::Tracepoint { category, .. }, Attach::Tracepoint { category: c, program, .. }) => {
                    assert_eq!((c, program), (category, FLOOR_TRACEPOINT));
                }
                _ => panic!("{}: the floor changed the attach mechanism", real.symbol()),
            }
        }
    }

    #[test]
    fn release_functions_get_their_slot_program_or_the_empty_kprobe() {
        assert_eq!(ProgramSet::Auditing.release(3), "release_3");
        assert_eq!(ProgramSet::Floor.release(3), FLOOR_KPROBE);
    }
}
