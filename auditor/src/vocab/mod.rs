//! The shared vocabulary, the bottom layer every stage speaks: typed hooks ([`event::HookRef`]),
//! decoded events, findings with their kinds and severities, hook status rows, and the NDJSON
//! records built from them (docs/ndjson.md). Plain data with its wire form and the few rules that
//! are part of it (fingerprints, clone-suffix-free function names).
//!
//! Stages import from here, never the other way: this module uses nothing of the crate outside
//! itself (checked by `auditor/tests/layering.rs`), so the data path stays one way, probes → drain → decode →
//! correlate → sinks (docs/architecture.md).
pub mod event;
pub mod finding;
pub mod hook_status;
pub mod record;
