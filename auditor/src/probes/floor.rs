//! `pfn-auditor run --probe-floor`, a benchmark aid for `cargo xtask bench`: the daemon attaches
//! empty programs (auditor-ebpf/src/floor.rs) wherever it would attach its real ones — every row
//! of the probe table that applies to the running kernel and every policy release function, by the
//! same mechanism (perf kprobe/kretprobe, tracefs kprobe for module hooks, tracepoint) — and
//! otherwise runs as usual. A workload run under it pays for the probes' traps and the idle
//! daemon, not for what the programs do: the bench's floor column. Nothing is recorded.
//!
//! The floor table is the probe table with only the program names changed, so the same rows are
//! selected, prechecked and attached. An fentry/fexit row (`Attach` has none yet) needs an empty
//! fentry/fexit program of its own per target function, since such a program is verified against
//! one BTF function at load time: the match in `floor_attach` makes that row's author name it.
use super::table::{Attach, PROBES, ProbeRow};

/// Which programs the loader attaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Programs {
    /// The auditing programs: every real run.
    #[default]
    Auditing,
    /// Empty programs of the same type at the same places (`--probe-floor`).
    Floor,
}

/// The empty programs, one per program type (auditor-ebpf/src/floor.rs).
pub const FLOOR_KPROBE: &str = "floor_kprobe";
pub const FLOOR_KRETPROBE: &str = "floor_kretprobe";
pub const FLOOR_TRACEPOINT: &str = "floor_tracepoint";

impl Programs {
    /// The probe table whose programs are attached.
    pub fn table(self) -> &'static [ProbeRow] {
        match self {
            Programs::Auditing => PROBES,
            Programs::Floor => &FLOOR_PROBES,
        }
    }

    /// The kprobe program for the policy's release function in `slot`.
    pub fn release(self, slot: usize) -> String {
        match self {
            Programs::Auditing => format!("release_{slot}"),
            Programs::Floor => FLOOR_KPROBE.into(),
        }
    }
}

/// [`PROBES`] with each program replaced by the empty one of its type.
static FLOOR_PROBES: [ProbeRow; PROBES.len()] = floor_table();

const fn floor_table() -> [ProbeRow; PROBES.len()] {
    let mut rows = [PROBES[0]; PROBES.len()];
    let mut i = 0;
    while i < rows.len() {
        rows[i] = PROBES[i];
        rows[i].attach = floor_attach(PROBES[i].attach);
        i += 1;
    }
    rows
}

const fn floor_attach(attach: Attach) -> Attach {
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

    /// The floor must attach where the auditor does, or it measures another set of probes.
    #[test]
    fn the_floor_table_attaches_the_same_rows_with_only_empty_programs() {
        let floor = Programs::Floor.table();
        assert_eq!(floor.len(), PROBES.len());
        for (real, empty) in PROBES.iter().zip(floor) {
            let same_row = (real.hook, real.attach.symbol(), real.since, real.until, real.module, real.arity)
                == (empty.hook, empty.attach.symbol(), empty.since, empty.until, empty.module, empty.arity);
            assert!(same_row, "{real:?} vs {empty:?}");
            match (real.attach, empty.attach) {
                (Attach::Function { ret, .. }, Attach::Function { entry, ret: empty_ret, .. }) => {
                    assert_eq!(entry, FLOOR_KPROBE);
                    assert_eq!(
                        empty_ret,
                        ret.map(|_| FLOOR_KRETPROBE),
                        "{}: a return probe exactly where the real row has one",
                        real.attach.symbol()
                    );
                }
                (Attach::Tracepoint { category, .. }, Attach::Tracepoint { category: c, program, .. }) => {
                    assert_eq!((c, program), (category, FLOOR_TRACEPOINT));
                }
                _ => panic!("{}: the floor changed the attach mechanism", real.attach.symbol()),
            }
        }
    }

    #[test]
    fn release_functions_get_their_slot_program_or_the_empty_kprobe() {
        assert_eq!(Programs::Auditing.release(3), "release_3");
        assert_eq!(Programs::Floor.release(3), FLOOR_KPROBE);
    }
}
