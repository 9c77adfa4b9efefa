//! Replay decoding (`cargo bench -p auditor --bench replay`): `event` lines of a fleet recording
//! read by the `Record` deserializer (serde_json, flattened tagged enum) and by `replay_parse`'s
//! reader of the exact bytes `run --events` writes. Measured and not kept (2026-11-29, without
//! `-C target-cpu`, which a portable static binary cannot use): serde_json into borrowed wire
//! structs ~0.7 M lines/s, sonic-rs 0.5 on the same structs slower, simd-json 0.19 (runtime CPU
//! detection) ~25% slower than serde_json in `pfn-auditor replay`.
use auditor::{correlate::synthetic::Fleet, replay_parse::fast_event, vocab::record::Record};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let fleet = Fleet::new(1000);
    let lines: Vec<String> =
        (0..).map_while(|n| fleet.event(n, 20_000)).map(|e| serde_json::to_string(&Record::Event(e)).unwrap()).collect();
    let mut group = c.benchmark_group("replay_parse");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("record_serde_json", |b| b.iter(|| lines.iter().filter(|l| serde_json::from_str::<Record>(l).is_ok()).count()));
    group.bench_function("fast_event", |b| b.iter(|| lines.iter().filter(|l| fast_event(l).is_some()).count()));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
