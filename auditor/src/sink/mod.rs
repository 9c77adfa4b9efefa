//! Where records go: NDJSON stream, human-readable terminal text, JUnit and SARIF reports.
pub mod human;
pub mod junit;
pub mod ndjson;
pub mod sarif;
