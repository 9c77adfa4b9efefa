//! `--metrics [ADDRESS:]PORT`: the OpenMetrics text exposition a Prometheus server scrapes
//! (docs/metrics.md lists every metric). Whatever only grows is a counter (`_total`, so `rate()`
//! applies): per-hook kernel counters, BPF run time and runs, events, findings, lost records.
//! Gauges are only for levels, which go down too: pins held, PFN maps tracked.
use std::{net::SocketAddr, sync::Arc, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::vocab::{
    finding::FindingKind,
    record::{HookTotals, Levels, LossReason, Lost},
};

type Labels = Vec<(String, String)>;
type U64Gauge = Gauge<u64, AtomicU64>;
type SecondsCounter = Counter<f64, AtomicU64>;

/// Live metrics of one run; cheap to update from the daemon loop.
pub struct Metrics {
    registry: Registry,
    hook_hits: Family<Labels, Counter>,
    hook_emitted: Family<Labels, Counter>,
    hook_dropped: Family<Labels, Counter>,
    bpf_runs: Family<Labels, Counter>,
    bpf_run_seconds: Family<Labels, SecondsCounter>,
    findings: Family<Labels, Counter>,
    lost: Family<Labels, Counter>,
    events: Counter,
    pins_held: U64Gauge,
    pfnmaps: U64Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pfn_auditor");
        let counters = || Family::<Labels, Counter>::default();
        let (hook_hits, hook_emitted, hook_dropped) = (counters(), counters(), counters());
        let (bpf_runs, findings, lost) = (counters(), counters(), counters());
        let bpf_run_seconds = Family::<Labels, SecondsCounter>::default();
        let (events, pins_held, pfnmaps) = (Counter::default(), U64Gauge::default(), U64Gauge::default());
        registry.register("hook_hits", "Times each probe ran (kernel counter)", hook_hits.clone());
        registry.register("hook_emitted", "Records each probe wrote to the ring buffer (kernel counter)", hook_emitted.clone());
        registry.register(
            "hook_dropped",
            "Records each probe lost because the ring buffer was full (kernel counter)",
            hook_dropped.clone(),
        );
        registry.register("hook_bpf_runs", "Runs of each hook's eBPF programs (kernel run-time statistics)", bpf_runs.clone());
        registry.register_with_unit(
            "hook_bpf_run",
            "Time spent in each hook's eBPF programs (kernel run-time statistics)",
            prometheus_client::registry::Unit::Seconds,
            bpf_run_seconds.clone(),
        );
        registry.register("findings", "Findings reported, by kind and severity", findings.clone());
        registry.register("lost", "Records lost, by hook and reason (ring-full, undecodable, stack-unknown)", lost.clone());
        registry.register("events", "Events decoded", events.clone());
        registry.register("pins_held", "Pins held now", pins_held.clone());
        registry.register("pfnmaps_tracked", "PFN maps tracked now", pfnmaps.clone());
        // Every series a user alerts on exists from the start at 0: `increase()` and `rate()`
        // need two samples of a series, so one that first appeared at 1 would not count its
        // first finding.
        for kind in FindingKind::ALL {
            drop(findings.get_or_create(&finding_labels(kind.name(), kind.severity().name())));
        }
        Self { registry, hook_hits, hook_emitted, hook_dropped, bpf_runs, bpf_run_seconds, findings, lost, events, pins_held, pfnmaps }
    }
}

/// Brings a counter up to a total read elsewhere (a kernel counter). A total below what was
/// counted (a counter reset, which per-CPU map counters do not do) is ignored: counters only grow.
fn advance(family: &Family<Labels, Counter>, labels: &Labels, total: u64) {
    let counter = family.get_or_create(labels);
    counter.inc_by(total.saturating_sub(counter.get()));
}

fn hook_label(hook: &str) -> Labels {
    vec![("hook".to_string(), hook.to_string())]
}

fn finding_labels(kind: &str, severity: &str) -> Labels {
    vec![("kind".to_string(), kind.to_string()), ("severity".to_string(), severity.to_string())]
}

/// `lost` has a `reason` label: a full ring buffer, records the daemon could not decode, or
/// records whose shared stack it never read.
fn lost_labels(hook: &str, reason: Option<LossReason>) -> Labels {
    let reason = match reason {
        None => "ring-full",
        Some(LossReason::Undecodable) => "undecodable",
        Some(LossReason::StackUnknown) => "stack-unknown",
    };
    vec![("hook".to_string(), hook.to_string()), ("reason".to_string(), reason.to_string())]
}

impl Metrics {
    /// The kernel's per-hook counters, as totals since the probes were loaded.
    pub(crate) fn set_hooks(&self, totals: &[HookTotals]) {
        for t in totals {
            let labels = hook_label(t.hook.name());
            // At 0 until a loss, like the findings (`Default`).
            for reason in [None, Some(LossReason::Undecodable), Some(LossReason::StackUnknown)] {
                drop(self.lost.get_or_create(&lost_labels(t.hook.name(), reason)));
            }
            advance(&self.hook_hits, &labels, t.hits);
            advance(&self.hook_emitted, &labels, t.emitted);
            advance(&self.hook_dropped, &labels, t.dropped);
            // The kernel's run-time statistics (`bpf_prog_info.run_cnt` / `run_time_ns`, summed
            // over the hook's programs) only grow while the programs stay loaded.
            if let Some(runs) = t.bpf_runs {
                advance(&self.bpf_runs, &labels, runs);
            }
            if let Some(ns) = t.bpf_run_ns {
                let counter = self.bpf_run_seconds.get_or_create(&labels);
                let seconds = ns as f64 / 1e9;
                if seconds > counter.get() {
                    counter.inc_by(seconds - counter.get());
                }
            }
        }
    }

    pub fn finding(&self, kind: &str, severity: &str) {
        self.findings.get_or_create(&finding_labels(kind, severity)).inc();
    }

    pub fn lost(&self, lost: &Lost) {
        self.lost.get_or_create(&lost_labels(lost.hook_name(), lost.reason)).inc_by(lost.count);
    }

    pub fn event(&self) {
        self.events.inc();
    }

    pub(crate) fn set_levels(&self, levels: &Levels) {
        self.pins_held.set(levels.pins_held);
        self.pfnmaps.set(levels.pfnmaps);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Binds `--metrics`' address: before anything is attached or written, so an address that cannot
/// be listened on is a setup error (exit 2) that leaves the outputs as they were.
pub(crate) async fn listen(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr} for --metrics: {e}"))
}

/// Serves `GET /metrics` (any path, in fact) on `listener` ([`listen`]) until the task is dropped.
pub(crate) fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { continue };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = conn.read(&mut request).await;
                let body = metrics.render();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::event::HookRef;

    #[test]
    fn exposition_names_hooks_and_finding_kinds() {
        let m = Metrics::default();
        let totals = |runs, ns| HookTotals {
            hook: HookRef::from_name("follow_pfn"),
            hits: 7,
            emitted: 6,
            dropped: 1,
            bpf_runs: Some(runs),
            bpf_run_ns: Some(ns),
        };
        m.set_hooks(&[totals(10, 1_000_000)]);
        m.set_hooks(&[totals(14, 1_500_000)]);
        m.finding("pin-outlived-revocation", "error");
        m.lost(&Lost::undecodable(Some(HookRef::from_name("zap_vma_ptes")), 2, 5));
        let text = m.render();
        assert!(text.contains(r#"pfn_auditor_lost_total{hook="zap_vma_ptes",reason="undecodable"} 2"#), "{text}");
        assert!(text.contains(r#"pfn_auditor_hook_dropped_total{hook="follow_pfn"} 1"#), "{text}");
        assert!(text.contains(r#"pfn_auditor_hook_bpf_runs_total{hook="follow_pfn"} 14"#), "{text}");
        assert!(text.contains(r#"pfn_auditor_hook_bpf_run_seconds_total{hook="follow_pfn"} 0.0015"#), "{text}");
        assert!(text.contains("# TYPE pfn_auditor_hook_bpf_run_seconds counter"), "{text}");
        assert!(text.contains(r#"pfn_auditor_findings_total{kind="pin-outlived-revocation",severity="error"} 1"#), "{text}");
    }

    /// What `rate()` needs: every monotonic value is a counter, and a kernel total read again
    /// moves it by the difference only; levels are gauges and go down.
    #[test]
    fn kernel_totals_are_counters_and_levels_are_gauges() {
        let m = Metrics::default();
        let totals = |hits| {
            [HookTotals {
                hook: HookRef::from_name("unmap_mapping_range"),
                hits,
                emitted: 0,
                dropped: 0,
                bpf_runs: Some(hits),
                bpf_run_ns: None,
            }]
        };
        m.set_hooks(&totals(10));
        m.set_hooks(&totals(25));
        m.set_levels(&Levels { pins_held: 3, pfnmaps: 2 });
        m.set_levels(&Levels { pins_held: 1, pfnmaps: 2 });
        let text = m.render();
        for line in [
            "# TYPE pfn_auditor_hook_hits counter",
            r#"pfn_auditor_hook_hits_total{hook="unmap_mapping_range"} 25"#,
            "# TYPE pfn_auditor_hook_bpf_runs counter",
            r#"pfn_auditor_hook_bpf_runs_total{hook="unmap_mapping_range"} 25"#,
            "# TYPE pfn_auditor_pins_held gauge",
            "pfn_auditor_pins_held 1",
            "pfn_auditor_pfnmaps_tracked 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        let gauges: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE") && l.ends_with(" gauge")).collect();
        assert_eq!(gauges, ["# TYPE pfn_auditor_pins_held gauge", "# TYPE pfn_auditor_pfnmaps_tracked gauge"], "only levels are gauges");
    }

    /// `increase(pfn_auditor_findings_total{severity="error"}[1h]) > 0` (docs/metrics.md) fires
    /// on the first finding only if the series was there at 0 before it.
    #[test]
    fn series_to_alert_on_exist_at_zero_before_the_first_finding_or_loss() {
        let m = Metrics::default();
        m.set_hooks(&[HookTotals {
            hook: HookRef::from_name("follow_pte"),
            hits: 0,
            emitted: 0,
            dropped: 0,
            bpf_runs: None,
            bpf_run_ns: None,
        }]);
        let text = m.render();
        for line in [
            r#"pfn_auditor_findings_total{kind="pin-outlived-revocation",severity="error"} 0"#,
            r#"pfn_auditor_findings_total{kind="pin-outlived-unmap",severity="error"} 0"#,
            r#"pfn_auditor_findings_total{kind="pin-leaked",severity="warning"} 0"#,
            r#"pfn_auditor_lost_total{hook="follow_pte",reason="ring-full"} 0"#,
            r#"pfn_auditor_lost_total{hook="follow_pte",reason="undecodable"} 0"#,
            r#"pfn_auditor_lost_total{hook="follow_pte",reason="stack-unknown"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert_eq!(text.lines().filter(|l| l.starts_with("pfn_auditor_findings_total")).count(), FindingKind::ALL.len());
        m.finding("pin-outlived-revocation", "error");
        m.lost(&Lost::undecodable(Some(HookRef::from_name("follow_pte")), 3, 1));
        let text = m.render();
        assert!(text.contains(r#"pfn_auditor_findings_total{kind="pin-outlived-revocation",severity="error"} 1"#), "{text}");
        assert!(text.contains(r#"pfn_auditor_lost_total{hook="follow_pte",reason="undecodable"} 3"#), "{text}");
    }

    #[tokio::test]
    async fn metrics_are_served_over_http_on_loopback() {
        let m = Arc::new(Metrics::default());
        m.event();
        let listener = listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        serve(listener, m);
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"));
        assert!(body.contains("pfn_auditor_events_total 1"), "{body}");
    }
}
