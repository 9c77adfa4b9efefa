//! pfn-auditor userspace: probes (load/attach) → drain (ring buffer) → decode (raw → typed
//! events) → correlate (pure) → sinks (ndjson, junit, sarif, metrics, human), all speaking the
//! vocabulary of `vocab` (the bottom layer; docs/architecture.md). Exported is what the binary,
//! tests, benches, examples and fuzz targets use; the rest is crate-private, so unused code warns.
pub(crate) mod catalog;
pub mod cli_docs;
pub mod correlate;
pub(crate) mod daemon;
pub mod decode;
pub mod doctor;
pub(crate) mod drain;
pub mod file_names;
pub mod file_paths;
pub mod gate_outcome;
pub(crate) mod host_checks;
pub(crate) mod instance_lock;
pub mod live;
pub mod metrics;
pub mod module_lines;
pub mod pipeline;
pub mod policy;
pub mod probes;
pub mod replay;
pub mod replay_parse;
pub mod sink;
pub mod symbols;
pub mod vocab;
