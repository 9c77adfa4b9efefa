//! `--metrics`: the run's events, findings and losses counted into the Prometheus registry that
//! `crate::metrics` serves, and the correlator's levels (the kernel's per-hook counters are set by
//! the session).
use std::sync::Arc;

use crate::{
    metrics::Metrics,
    pipeline::Sink,
    vocab::{
        event::Event,
        finding::Finding,
        record::{Levels, Lost},
    },
};

pub struct MetricsSink(pub Arc<Metrics>);

impl Sink for MetricsSink {
    fn name(&self) -> String {
        "metrics".into()
    }

    fn event(&mut self, _event: &Event) -> std::io::Result<()> {
        self.0.event();
        Ok(())
    }

    fn finding(&mut self, finding: &Finding) -> std::io::Result<()> {
        self.0.finding(finding.kind.name(), finding.severity.name());
        Ok(())
    }

    fn lost(&mut self, lost: &Lost) -> std::io::Result<()> {
        self.0.lost(lost);
        Ok(())
    }

    fn levels(&mut self, levels: &Levels) -> std::io::Result<()> {
        self.0.set_levels(levels);
        Ok(())
    }
}
