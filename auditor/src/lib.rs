//! pfn-auditor userspace: probes (load/attach) → drain (ring buffer) → decode (raw → typed
//! events) → correlate (pure) → sinks (ndjson, junit, sarif, metrics, human).
pub mod catalog;
pub mod cli_docs;
pub mod correlate;
pub mod daemon;
pub mod decode;
pub mod doctor;
pub mod drain;
pub mod file_names;
pub mod file_paths;
pub mod gate_outcome;
pub mod host_checks;
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
