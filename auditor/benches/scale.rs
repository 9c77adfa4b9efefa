//! Correlator cost at fleet scale (`cargo bench -p auditor --bench scale`):
//! - `steady/{seq,scattered}/<n>`: the cost of one event (a lookup making a pin, an unrelated
//!   truncate, a munmap next to pins, a release) with n pins live, n = 1k, 10k, 100k, 1M, over
//!   4096 pins taken one after the other (`seq`) or scattered over the whole state: flat if every
//!   question the correlator asks is answered from an index (scattered also measures cache misses).
//! - `fleet/16000`: the whole stream of the scaling issue: 16 000 pins on their own PFN maps,
//!   64 000 unrelated revocations, then a revocation of every pinned file (16 000 findings).
use auditor::{
    correlate::{
        Correlator, Options,
        synthetic::{FLEET_POLICY, Fleet},
    },
    policy::Policy,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn steady(c: &mut Criterion) {
    let policy = Policy::parse(FLEET_POLICY, "fleet.toml").unwrap();
    let mut group = c.benchmark_group("steady");
    for pins in [1_000u64, 10_000, 100_000, 1_000_000] {
        let fleet = Fleet::new(pins);
        let bound = 2 * pins as usize;
        let mut correlator = Correlator::with_options(&policy, Options { max_pins: bound, max_pfnmaps: bound });
        for n in 0..2 * pins {
            correlator.handle(&fleet.event(n, 0).unwrap());
        }
        assert_eq!(correlator.pins_held() as u64, pins);
        // Pins in the order the fleet took them (a process's maps together), and scattered.
        for (name, stride) in [("seq", 1), ("scattered", 7919)] {
            let cycles: Vec<_> = (0..4096u64).flat_map(|j| fleet.steady_cycle(j * stride)).collect();
            group.throughput(Throughput::Elements(cycles.len() as u64));
            group.bench_function(format!("{name}/{pins}"), |b| {
                b.iter(|| {
                    let mut found = 0;
                    for e in &cycles {
                        found += correlator.handle(e).len();
                    }
                    assert_eq!(found, 0);
                })
            });
        }
        assert_eq!(correlator.pins_held() as u64, pins, "the cycle keeps the state size");
    }
    group.finish();
}

fn fleet(c: &mut Criterion) {
    let policy = Policy::parse(FLEET_POLICY, "fleet.toml").unwrap();
    let mut group = c.benchmark_group("fleet");
    let fleet = Fleet::new(16_000);
    let events: Vec<_> = (0..).map_while(|n| fleet.event(n, 64_000)).collect();
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("16000", |b| {
        b.iter_batched(
            || Correlator::new(&policy),
            |mut correlator| {
                let found: usize = events.iter().map(|e| correlator.handle(e).len()).sum();
                assert_eq!(found, 16_000);
                correlator
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = steady, fleet
}
criterion_main!(benches);
