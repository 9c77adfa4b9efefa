//! Correlator throughput (`cargo bench -p auditor --bench correlator`): a vfio-like stream of
//! single-page lookups that coalesce into one pin, and a noise stream of unrelated truncates.
use auditor::{
    correlate::{
        Correlator,
        synthetic::{Proc, Stream},
    },
    policy::Policy,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const HOLDER_POLICY: &str = "[[holder]]\nmodule = \"vfio_iommu_type1\"\nrelease = [\"vfio_unpin\"]\n";

fn vfio_like(pages: u64) -> Stream {
    let mut p = Proc::new(1);
    p.pages = pages;
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, "vfio_pin_pages_remote", "vfio_iommu_type1", 0..pages).owner_revoke(&p, 0, None);
    s
}

fn noise(n: usize) -> Stream {
    let p = Proc::new(2);
    let mut s = Stream::default();
    s.pfn_map(&p).lookups(&p, "vfio_pin_pages_remote", "vfio_iommu_type1", 0..1);
    for _ in 0..n {
        s.unrelated_truncate(&p);
    }
    s
}

fn bench(c: &mut Criterion) {
    let policy = Policy::parse(HOLDER_POLICY, "bench.toml").unwrap();
    let mut group = c.benchmark_group("correlator");
    for (name, stream) in [("vfio_lookups_100k", vfio_like(100_000)), ("truncate_noise_100k", noise(100_000))] {
        group.throughput(Throughput::Elements(stream.events.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut c = Correlator::new(&policy);
                let mut findings = 0;
                for e in &stream.events {
                    findings += c.handle(e).len();
                }
                findings + c.finish().findings.len()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
