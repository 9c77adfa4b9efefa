//! Replay decoding (`cargo bench -p auditor --bench replay`): `event` lines of a fleet recording
//! read by the `Record` deserializer (serde_json, flattened tagged enum), by the borrowed wire
//! structs of `replay_parse` (serde_json). sonic-rs 0.5 on the same wire structs measured the
//! same as serde_json here (2026-11-29, without `-C target-cpu`, which a portable static binary
//! cannot use), so it is not a dependency.
use auditor::{correlate::synthetic::Fleet, record::Record, replay_parse::fast_event};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let fleet = Fleet::new(1000);
    let lines: Vec<String> =
        (0..).map_while(|n| fleet.event(n, 20_000)).map(|e| serde_json::to_string(&Record::Event(e)).unwrap()).collect();
    let mut group = c.benchmark_group("replay_parse");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("record_serde_json", |b| b.iter(|| lines.iter().filter(|l| serde_json::from_str::<Record>(l).is_ok()).count()));
    group.bench_function("wire_serde_json", |b| b.iter(|| lines.iter().filter(|l| fast_event(l).is_some()).count()));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
