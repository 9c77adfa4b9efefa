//! SARIF 2.1.0 for code-scanning dashboards: a rule per finding kind, a result per finding, located
//! at the holder: its source file and line (physical location) when the module's debug info gave
//! them, and always `func+off [module]` (logical location); the mapping's path is a related
//! location. Valid against the OASIS schema (tests/schemas, `auditor/tests/reports.rs`).
use std::collections::BTreeMap;

use serde_sarif::sarif::{
    ArtifactLocation, Location, LogicalLocation, Message, MultiformatMessageString, PhysicalLocation, Region, ReportingDescriptor,
    Result as SarifResult, ResultLevel, Run, Sarif, Tool, ToolComponent,
};

use crate::{
    correlate::{Finding, FindingKind, Severity},
    pipeline::{OutputError, Sink},
    record::{RunSummary, Status},
};

/// The SARIF report of a run, written at its end: a function of the findings and of the version
/// of pfn-auditor that recorded them (the `status` record's; this build's when there is none).
/// The file is opened (and emptied) when the run starts.
pub struct SarifSink {
    name: String,
    file: std::fs::File,
    version: Option<String>,
}

impl SarifSink {
    /// Opens `path` with [`super::open_output`]; a refusal is an output error naming the report.
    pub fn create(path: &std::path::Path) -> Result<Self, OutputError> {
        let name = format!("SARIF report {}", path.display());
        let file = super::open_output(path).map_err(|source| OutputError { output: name.clone(), error: source })?;
        Ok(Self { name, file, version: None })
    }
}

impl Sink for SarifSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn status(&mut self, status: &Status) -> std::io::Result<()> {
        self.version = Some(status.version.clone());
        Ok(())
    }

    fn finish(&mut self, summary: &RunSummary) -> std::io::Result<()> {
        let version = self.version.as_deref().unwrap_or(env!("CARGO_PKG_VERSION"));
        super::write_report(&mut self.file, &render(&summary.findings, version))
    }
}

fn text(s: &str) -> MultiformatMessageString {
    MultiformatMessageString::builder().text(s.to_string()).build()
}

pub fn render(findings: &[Finding], version: &str) -> String {
    let rules: Vec<ReportingDescriptor> = FindingKind::ALL
        .iter()
        .map(|k| {
            ReportingDescriptor::builder()
                .id(k.name().to_string())
                .name(k.name().to_string())
                .short_description(text(k.description()))
                .help(text(k.description()))
                .build()
        })
        .collect();
    let results: Vec<SarifResult> = findings.iter().map(result).collect();
    let driver = ToolComponent::builder().name("pfn-auditor".to_string()).version(version.to_string()).rules(rules).build();
    let run = Run::builder().tool(Tool::builder().driver(driver).build()).results(results).build();
    let sarif = Sarif::builder()
        .schema("https://json.schemastore.org/sarif-2.1.0.json".to_string())
        .version(serde_json::json!("2.1.0"))
        .runs(vec![run])
        .build();
    serde_json::to_string_pretty(&sarif).expect("SARIF of in-memory values")
}

/// A path as a SARIF `uri`: an absolute path becomes a `file://` URI, a relative one stays relative
/// (to wherever the module was built); characters a URI cannot hold are percent-encoded.
fn file_uri(path: &str) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const NOT_IN_PATH: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'[')
        .add(b']')
        .add(b'\\')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    let encoded = utf8_percent_encode(path, NOT_IN_PATH).to_string();
    if path.starts_with('/') { format!("file://{encoded}") } else { encoded }
}

fn result(f: &Finding) -> SarifResult {
    let holder = LogicalLocation::builder()
        .name(f.pin.holder.function.clone().unwrap_or_else(|| "?".into()))
        .fully_qualified_name(f.pin.holder.to_string())
        .kind("function".to_string())
        .build();
    let h = &f.pin.holder;
    let location = match (&h.file, h.line) {
        (Some(file), Some(line)) => {
            let region = Region::builder().start_line(i64::from(line)).build();
            let artifact = ArtifactLocation::builder().uri(file_uri(file)).build();
            Location::builder()
                .logical_locations(vec![holder])
                .physical_location(PhysicalLocation::builder().artifact_location(artifact).region(region).build())
                .build()
        }
        _ => Location::builder().logical_locations(vec![holder]).build(),
    };
    let mapping: Vec<Location> = f
        .pin
        .vma
        .as_ref()
        .and_then(|v| v.path.clone())
        .map(|path| {
            Location::builder()
                .id(0)
                .message(Message::builder().text("the mapping whose PFNs were pinned".to_string()).build())
                .physical_location(
                    PhysicalLocation::builder().artifact_location(ArtifactLocation::builder().uri(file_uri(&path)).build()).build(),
                )
                .build()
        })
        .into_iter()
        .collect();
    let level = match f.severity {
        Severity::Error => ResultLevel::Error,
        Severity::Warning => ResultLevel::Warning,
    };
    SarifResult::builder()
        .rule_id(f.kind.name().to_string())
        .level(level)
        .message(Message::builder().text(f.message.clone()).build())
        .locations(vec![location])
        .related_locations(mapping)
        .partial_fingerprints(BTreeMap::from([("pfnAuditor/v1".to_string(), f.fingerprint.clone())]))
        .build()
}
