//! SARIF 2.1.0 for code-scanning dashboards: a rule per finding kind, a result per finding, located
//! at the holder: its source file and line (physical location) when the module's debug info gave
//! them, and always `func+off [module]` (logical location); the mapping's path is a related
//! location. A source file under the source root (`--source-root`, by default the directory
//! `gate` or `replay` ran in: a CI job's checkout) is a URI relative to `%SRCROOT%`, which
//! `originalUriBaseIds` resolves, so a code-scanning view finds it in the repository; a file
//! elsewhere keeps its absolute `file://` URI. The run's one invocation says whether it completed
//! (`executionSuccessful`), and when it did not, why (a `toolExecutionNotifications` error: an
//! output that could not be written, a setup error). Valid against the OASIS schema
//! (tests/schemas, `auditor/tests/reports.rs`).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_sarif::sarif::{
    ArtifactLocation, Invocation, Location, LogicalLocation, Message, MultiformatMessageString, Notification, PhysicalLocation, Region,
    ReportingDescriptor, Result as SarifResult, ResultLevel, Run, Sarif, Tool, ToolComponent,
};

use crate::{
    pipeline::{OutputError, Sink},
    vocab::{
        finding::{Finding, FindingKind, Severity},
        record::{RunSummary, Status},
    },
};

/// The `uriBaseId` of source files under the source root (the name GitHub code scanning and
/// the SARIF specification's examples use for a repository's root).
pub const SOURCE_ROOT_ID: &str = "%SRCROOT%";

/// The SARIF report of a run, written at its end: a function of the findings, the source root and
/// the version of pfn-auditor that recorded them (the `status` record's; this build's when there
/// is none). The file is opened (and emptied) when the run starts.
pub struct SarifSink {
    name: String,
    file: std::fs::File,
    version: Option<String>,
    source_root: PathBuf,
}

impl SarifSink {
    /// Opens `path` with [`super::open_output`]; a refusal is an output error naming the report.
    /// `source_root` is made absolute (against the current directory), not resolved: DWARF names
    /// files as the compiler was given them.
    pub fn create(path: &Path, source_root: &Path) -> Result<Self, OutputError> {
        let name = format!("SARIF report {}", path.display());
        let opened = super::open_output(path).and_then(|file| Ok((file, std::path::absolute(source_root)?)));
        let (file, source_root) = opened.map_err(|source| OutputError { output: name.clone(), error: source })?;
        Ok(Self { name, file, version: None, source_root })
    }

    fn write(&mut self, summary: &RunSummary, stopped: Option<&str>) -> std::io::Result<()> {
        let version = self.version.as_deref().unwrap_or(env!("CARGO_PKG_VERSION"));
        super::write_report(&mut self.file, &render(&summary.findings, version, &self.source_root, stopped))
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
        self.write(summary, None)
    }

    fn stopped(&mut self, summary: &RunSummary, why: &str) -> std::io::Result<()> {
        self.write(summary, Some(why))
    }
}

fn text(s: &str) -> MultiformatMessageString {
    MultiformatMessageString::builder().text(s.to_string()).build()
}

/// The SARIF log of `findings`. `source_root` is absolute; `stopped` is why the run did not
/// complete (then its invocation is not successful and carries `stopped` as an error).
pub fn render(findings: &[Finding], version: &str, source_root: &Path, stopped: Option<&str>) -> String {
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
    let results: Vec<SarifResult> = findings.iter().map(|f| result(f, source_root)).collect();
    let driver = ToolComponent::builder().name("pfn-auditor".to_string()).version(version.to_string()).rules(rules).build();
    let invocation = match stopped {
        None => Invocation::builder().execution_successful(true).build(),
        Some(why) => {
            let message = Message::builder().text(why.to_string()).build();
            let error = Notification::builder().level(serde_json::json!("error")).message(message).build();
            Invocation::builder().execution_successful(false).tool_execution_notifications(vec![error]).build()
        }
    };
    // The base URI of a directory ends with '/' (RFC 3986 resolution drops a last segment without).
    let mut root = source_root.to_string_lossy().into_owned();
    if !root.ends_with('/') {
        root.push('/');
    }
    let run = Run::builder()
        .tool(Tool::builder().driver(driver).build())
        .invocations(vec![invocation])
        .original_uri_base_ids(BTreeMap::from([(SOURCE_ROOT_ID.to_string(), ArtifactLocation::builder().uri(file_uri(&root)).build())]))
        .results(results)
        .build();
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

/// Where a holder's source `file` (as the module's DWARF names it) is: relative to `%SRCROOT%`
/// when under `source_root` or relative already (to the directory the module was built in,
/// taken to be the source root); else its absolute `file://` URI.
fn source_artifact(file: &str, source_root: &Path) -> ArtifactLocation {
    let path = Path::new(file);
    let relative = if path.is_absolute() { path.strip_prefix(source_root).ok().filter(|r| !r.as_os_str().is_empty()) } else { Some(path) };
    match relative {
        Some(relative) => {
            ArtifactLocation::builder().uri(file_uri(&relative.to_string_lossy())).uri_base_id(SOURCE_ROOT_ID.to_string()).build()
        }
        None => ArtifactLocation::builder().uri(file_uri(file)).build(),
    }
}

fn result(f: &Finding, source_root: &Path) -> SarifResult {
    let holder = LogicalLocation::builder()
        .name(f.pin.holder.function.clone().unwrap_or_else(|| "?".into()))
        .fully_qualified_name(f.pin.holder.to_string())
        .kind("function".to_string())
        .build();
    let h = &f.pin.holder;
    let location = match (&h.file, h.line) {
        (Some(file), Some(line)) => {
            let region = Region::builder().start_line(i64::from(line)).build();
            let artifact = source_artifact(file, source_root);
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
    fn a_holder_source_under_the_source_root_is_relative_to_srcroot() {
        let sarif = render(&[finding(Some(("/build/my drv/sub/drv.c", 122)), "/dev/pfnaudit")], "1.0", Path::new("/build/my drv"), None);
        assert_eq!(validate::sarif_problems(&sarif), Vec::<String>::new(), "{sarif}");
        let doc: serde_json::Value = serde_json::from_str(&sarif).unwrap();
        let run = &doc["runs"][0];
        let location = &run["results"][0]["locations"][0];
        assert_eq!(location["physicalLocation"]["artifactLocation"]["uri"], "sub/drv.c");
        assert_eq!(location["physicalLocation"]["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        assert_eq!(location["physicalLocation"]["region"]["startLine"], 122);
        assert_eq!(run["originalUriBaseIds"]["%SRCROOT%"]["uri"], "file:///build/my%20drv/");
        assert!(location["logicalLocations"][0]["fullyQualifiedName"].is_string());
        assert_eq!(run["invocations"][0]["executionSuccessful"], true);
        assert!(run["invocations"][0].get("toolExecutionNotifications").is_none(), "{sarif}");
        // The mapping is a device, not a source: it keeps its absolute URI.
        assert_eq!(run["results"][0]["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"], "file:///dev/pfnaudit");
    }

    #[test]
    fn a_holder_source_outside_the_source_root_keeps_its_absolute_uri() {
        let sarif = render(&[finding(Some(("/build/my drv/drv.c", 122)), "/dev/pfnaudit")], "1.0", Path::new("/work/checkout"), None);
        assert_eq!(validate::sarif_problems(&sarif), Vec::<String>::new(), "{sarif}");
        let doc: serde_json::Value = serde_json::from_str(&sarif).unwrap();
        let artifact = &doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"];
        assert_eq!(artifact["uri"], "file:///build/my%20drv/drv.c");
        assert!(artifact.get("uriBaseId").is_none(), "{sarif}");
        // A relative DWARF name is relative to the build directory, taken as the source root.
        let artifact = source_artifact("drivers/vfio/vfio_main.c", Path::new("/src/linux"));
        assert_eq!((artifact.uri.as_deref(), artifact.uri_base_id.as_deref()), (Some("drivers/vfio/vfio_main.c"), Some("%SRCROOT%")));
    }

    #[test]
    fn a_run_that_stopped_says_why_in_its_invocation() {
        let why = "cannot write the NDJSON output /dev/full: No space left on device (os error 28)";
        let sarif = render(&[finding(None, "/dev/pfnaudit")], "1.0", Path::new("/"), Some(why));
        assert_eq!(validate::sarif_problems(&sarif), Vec::<String>::new(), "{sarif}");
        let doc: serde_json::Value = serde_json::from_str(&sarif).unwrap();
        let invocation = &doc["runs"][0]["invocations"][0];
        assert_eq!(invocation["executionSuccessful"], false);
        assert_eq!(invocation["toolExecutionNotifications"][0]["level"], "error");
        assert_eq!(invocation["toolExecutionNotifications"][0]["message"]["text"], why);
        assert_eq!(doc["runs"][0]["results"].as_array().map(Vec::len), Some(1), "findings made before it stopped are kept");
    }

    #[test]
    fn without_debug_info_the_holder_is_a_logical_location_only() {
        for mapping in ["anon_inode:[vfio-device]", "/sys/devices/pci0000:00/0000:00:03.0/resource0"] {
            let sarif = render(&[finding(None, mapping)], "1.0", Path::new("/"), None);
            assert_eq!(validate::sarif_problems(&sarif), Vec::<String>::new(), "{sarif}");
            let doc: serde_json::Value = serde_json::from_str(&sarif).unwrap();
            let result = &doc["runs"][0]["results"][0];
            assert!(result["locations"][0].get("physicalLocation").is_none(), "{sarif}");
            assert!(result["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"].is_string(), "{sarif}");
        }
        assert_eq!(file_uri("anon_inode:[vfio-device]"), "anon_inode%3A%5Bvfio-device%5D");
    }
}
