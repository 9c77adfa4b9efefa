//! Where records go. Each output is one [`crate::pipeline::Sink`]: the NDJSON stream, human text on
//! stderr, JUnit and SARIF reports written at the end, Prometheus metrics. A new output is one file
//! here plus one line where `main.rs` picks the sinks.
pub mod human;
pub mod junit;
pub mod metrics;
pub mod ndjson;
pub mod sarif;

use std::{io::Write, path::Path};

/// Writes a report file whole, and syncs it when it is a regular file (a full disk can show
/// only at `fsync`).
pub fn write_report(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(text.as_bytes())?;
    file.flush()?;
    if file.metadata()?.file_type().is_file() {
        file.sync_all()?;
    }
    Ok(())
}
