//! Writes a synthetic `run --events` recording of a driver test rig at fleet scale, for
//! measuring `pfn-auditor replay`:
//!
//! ```sh
//! cargo run --release -p auditor --example gen-recording -- --pins 16000 > fleet.ndjson
//! cargo run --release -p auditor --example gen-recording -- --policy > fleet.toml
//! pfn-auditor replay fleet.ndjson --policy fleet.toml --no-catalog
//! ```
//!
//! `--pins N` PFN maps, each pinned once by a raw lookup of a holder with a release (100 per
//! process), then `--noise M` unrelated truncates (default 4 N), then an owner revocation of every
//! pinned file: 3 N + M events, N findings.
use std::io::Write;

use auditor::{
    correlate::synthetic::{FLEET_POLICY, Fleet},
    vocab::record::Record,
};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(|v| v.parse::<u64>().expect("a number"));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    if args.iter().any(|a| a == "--policy") {
        return out.write_all(FLEET_POLICY.as_bytes());
    }
    let pins = value("--pins").unwrap_or(1000);
    let noise = value("--noise").unwrap_or(4 * pins);
    let fleet = Fleet::new(pins);
    for event in (0..).map_while(|n| fleet.event(n, noise)) {
        serde_json::to_writer(&mut out, &Record::Event(event))?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
