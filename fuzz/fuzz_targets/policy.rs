//! Policy TOML (`--policy FILE`, docs/policy.md): any text is a policy or one `FILE:LINE: reason`
//! line whose LINE is in the text.
#![no_main]
use std::sync::LazyLock;

use auditor::policy::Policy;
use libfuzzer_sys::fuzz_target;

static CATALOG: LazyLock<Policy> = LazyLock::new(Policy::catalog);

fuzz_target!(|data: &[u8]| {
    // The file is read with read_to_string: text that is not UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Policy::parse(text, "fuzz.toml") {
        Ok(policy) => {
            let _ = policy.rules();
            let _ = policy.release_functions();
            if let Ok(layered) = policy.over(&CATALOG) {
                let _ = layered.rules();
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "a policy error is one line: {message:?}");
            assert!((1..=text.matches('\n').count() + 1).contains(&e.line), "line {} outside the text: {message}", e.line);
        }
    }
});
