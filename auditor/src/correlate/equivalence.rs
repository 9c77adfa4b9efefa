//! The indexed correlator gives the same findings, in the same order, as the reference (every
//! event scans every pin) on random streams that mix every event kind over a few processes,
//! vmas, files, holders and release rules, so that pins overlap, coalesce, split and collide.
use super::{reference::Reference, synthetic::*, *};
use crate::vocab::event::Frame;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

const POLICY: &str = r#"
[[holder]]
function = "hold_tgid"
release = ["rel_tgid"]

[[holder]]
function = "hold_pfn"
release = ["rel_pfn"]
release_match = "arg0"
release_arg_is = "pfn"
release_count = "arg1"

[[holder]]
function = "hold_addr"
release = ["rel_addr"]
release_match = "arg1"
release_arg_is = "address"
release_count = "arg2"

[[holder]]
function = "hold_one"
release = ["rel_pfn"]
release_match = "arg0"
release_arg_is = "pfn"
ram_pfns = "refused"

[[suppress]]
holder = "hold_none2"
kind = "lookup-revoked"
reason = "test"
"#;

const HOLDERS: &[&str] = &["hold_tgid", "hold_pfn", "hold_addr", "hold_one", "hold_none", "hold_none2", "follow_pte"];
const RELEASES: &[&str] = &["rel_tgid", "rel_pfn", "rel_addr", "rel_tgid.isra.0"];

/// Processes with two vmas each (the second on another file, at another page offset).
fn vmas(tgid: u32) -> [Proc; 2] {
    let a = Proc { pages: 8, ..Proc::new(tgid) };
    let b = Proc {
        vma: a.vma + 0x800,
        mapping: 0xffff_8880_0300_1000,
        start: a.start + 0x10_0000,
        first_pfn: 0x20_0000 + tgid as u64 * 0x10,
        ..a.clone()
    };
    [a, b]
}

fn random_stream(rng: &mut Rng, len: usize) -> Stream {
    let procs: Vec<Proc> = (1..=3).flat_map(vmas).collect();
    let mut s = Stream::default();
    for _ in 0..len {
        let p = rng.pick(&procs).clone();
        let page = rng.below(p.pages + 2);
        match rng.below(14) {
            0 => {
                let mut v = p.vma();
                v.pgoff = rng.below(3);
                let body = EventBody::PfnMap { vma: v, addr: Hex(p.start), pfn: p.first_pfn, pages: p.pages };
                s.push("remap_pfn_range", p.task(), None, body);
            }
            1 => {
                s.push("vm_area_free", p.task(), None, EventBody::VmaFree { vma: p.vma() });
            }
            2..=5 => {
                let holder = *rng.pick(HOLDERS);
                let mut vma = p.vma();
                if rng.below(4) == 0 {
                    vma = crate::vocab::event::Vma { mm: Hex(p.mm), ..Default::default() };
                } else if rng.below(3) == 0 {
                    vma.path = None;
                }
                let pfn = p.first_pfn + page + if rng.below(5) == 0 { 1 } else { 0 };
                let body =
                    EventBody::RawLookup { vma, address: Hex(p.start + page * 4096 + rng.below(2) * 8), pfn, ram: rng.below(6) == 0 };
                s.push("follow_pfn", p.task(), Some(frame(holder, Some("m"))), body);
            }
            6 => {
                let vec = 0xffff_8880_5555_0000 + rng.below(3) * 0x100;
                s.frames_get(&p, vec, rng.below(2) == 0, 1 + rng.below(3) as u32);
            }
            7 => {
                s.frames_put(&p, 0xffff_8880_5555_0000 + rng.below(3) * 0x100);
            }
            8 | 9 => {
                let f = *rng.pick(RELEASES);
                let args = match f {
                    "rel_addr" => [0, p.start + page * 4096, rng.below(4), 0, 0, 0],
                    _ => [p.first_pfn + page, rng.below(4), 0, 0, 0, 0],
                };
                s.release_args(&p, f, args);
            }
            10 => {
                let nr = if rng.below(3) == 0 { None } else { Some(rng.below(4)) };
                s.owner_revoke(&p, rng.below(p.pages + 2), nr);
            }
            11 => {
                let cause = if rng.below(2) == 0 { Cause::Zap } else { Cause::Unmap };
                let from = rng.below(p.pages);
                s.vma_revoke(&p, cause, from..from + rng.below(4));
            }
            12 => {
                s.exit_mmap(&p);
            }
            _ => {
                s.push("sched_process_exit", p.task(), None::<Frame>, EventBody::TaskExit {});
            }
        }
    }
    s
}

#[test]
fn indexed_correlator_matches_the_reference_on_random_streams() {
    let policy = Policy::parse(POLICY, "eq.toml").unwrap();
    let mut findings = 0;
    for seed in 1..=400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let stream = random_stream(&mut rng, 250);
        let mut indexed = Correlator::new(&policy);
        let mut reference = Reference::new(&policy);
        for (i, e) in stream.events.iter().enumerate() {
            let (got, want) = (indexed.handle(e), reference.handle(e));
            assert_eq!(got, want, "seed {seed}, event {i}: {e:?}");
            assert_eq!(indexed.pins_held(), reference.pins_held(), "seed {seed}, event {i}: {e:?}");
            findings += got.len();
        }
        assert_eq!(indexed.finish(), reference.finish(), "seed {seed}");
    }
    assert!(findings > 1000, "the streams exercise findings: {findings}");
}
