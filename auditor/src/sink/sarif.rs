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
    pipeline::{OutputError, Sink},
    vocab::finding::{Finding, FindingKind, Severity},
    vocab::record::{RunSummary, Status},
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

/// A path as a SARIF `uri` (RFC 3986): an absolute path becomes a `file://` URI, a relative one
/// stays relative (to wherever the module was built); characters a URI path cannot hold are
/// percent-encoded, and so is `:` in a relative one (`anon_inode:[vfio-device]` would otherwise
/// read as a URI scheme).
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
    const NOT_IN_RELATIVE: &AsciiSet = &NOT_IN_PATH.add(b':');
    if path.starts_with('/') {
        format!("file://{}", utf8_percent_encode(path, NOT_IN_PATH))
    } else {
        utf8_percent_encode(path, NOT_IN_RELATIVE).to_string()
    }
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

#[cfg(test)]
#[allow(dead_code)] // its JUnit half is used by auditor/tests/reports.rs
#[path = "../../../tests/schemas/validate.rs"]
mod report_schemas;

#[cfg(test)]
mod tests {
    use super::{report_schemas as validate, *};

    /// One error finding, its holder and mapping named as given.
    fn finding(source: Option<(&str, u32)>, mapping: &str) -> Finding {
        let mut f = crate::correlate::synthetic::kept_past_munmap().remove(0);
        f.pin.holder.file = source.map(|(file, _)| file.to_string());
        f.pin.holder.line = source.map(|(_, line)| line);
        f.pin.vma.get_or_insert_with(Default::default).path = Some(mapping.to_string());
        f
    }

    #[test]
    fn a_holder_with_its_source_line_is_a_physical_location() {
        let sarif = render(&[finding(Some(("/build/my drv/drv.c", 122)), "/dev/pfnaudit")], "1.0");
        assert_eq!(validate::sarif_problems(&sarif), Vec::<String>::new(), "{sarif}");
        let doc: serde_json::Value = serde_json::from_str(&sarif).unwrap();
        let location = &doc["runs"][0]["results"][0]["locations"][0];
        assert_eq!(location["physicalLocation"]["artifactLocation"]["uri"], "file:///build/my%20drv/drv.c");
        assert_eq!(location["physicalLocation"]["region"]["startLine"], 122);
        assert!(location["logicalLocations"][0]["fullyQualifiedName"].is_string());
    }

    #[test]
    fn without_debug_info_the_holder_is_a_logical_location_only() {
        for mapping in ["anon_inode:[vfio-device]", "/sys/devices/pci0000:00/0000:00:03.0/resource0"] {
            let sarif = render(&[finding(None, mapping)], "1.0");
            assert_eq!(validate::sarif_problems(&sarif), Vec::<String>::new(), "{sarif}");
            let doc: serde_json::Value = serde_json::from_str(&sarif).unwrap();
            let result = &doc["runs"][0]["results"][0];
            assert!(result["locations"][0].get("physicalLocation").is_none(), "{sarif}");
            assert!(result["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"].is_string(), "{sarif}");
        }
        assert_eq!(file_uri("anon_inode:[vfio-device]"), "anon_inode%3A%5Bvfio-device%5D");
    }
}
