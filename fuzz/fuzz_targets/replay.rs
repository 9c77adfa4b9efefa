//! NDJSON recordings (`pfn-auditor replay FILE`): every line reads the same through the fast
//! `event` path as through the `Record` deserializer (replay_parse.rs promises it), and a whole
//! recording replays through the correlator or stops with one `FILE:LINE: reason` line.
#![no_main]
use std::sync::LazyLock;

use auditor::{policy::Policy, vocab::record::Record, replay::replay, replay_parse};
use libfuzzer_sys::fuzz_target;

/// The built-in catalog, as `replay` without `--policy` uses it.
static POLICY: LazyLock<Policy> = LazyLock::new(|| Policy::load(None, true).expect("the built-in catalog"));

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            let fast = replay_parse::record(line).map_err(|e| e.to_string());
            let slow = serde_json::from_str::<Record>(line).map_err(|e| e.to_string());
            assert_eq!(fast, slow, "the fast path and the Record deserializer disagree on {line:?}");
        }
    }
    if let Err(e) = replay(data, "fuzz.ndjson", &POLICY, Vec::new()) {
        let message = e.to_string();
        assert!(!message.contains('\n'), "a replay error is one line: {message:?}");
    }
});
