//! /proc/kallsyms text (symbols.rs): parsed, then every address and name it lists is looked up,
//! and stacks of those addresses get a caller.
#![no_main]
use auditor::symbols::{KernelSymbols, caller_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Read with read_to_string: text that is not UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let symbols = KernelSymbols::parse(text);
    let _ = symbols.addresses_hidden();
    let mut stack = Vec::new();
    for line in text.lines().take(64) {
        let mut cols = line.split_whitespace();
        if let Some(addr) = cols.next().and_then(|a| u64::from_str_radix(a, 16).ok()) {
            for at in [addr, addr.wrapping_add(1), addr.wrapping_sub(1)] {
                let frame = symbols.frame(at);
                let _ = frame.to_string();
                stack.push(frame);
            }
        }
        if let Some(name) = cols.nth(1) {
            let _ = (symbols.has_function(name), symbols.module_of(name), symbols.address_of(name), symbols.has_module(name));
        }
    }
    let _ = caller_of(&stack, &["vmf_insert_pfn"], &["follow_pfn".to_string(), "follow_pte".to_string()]);
});
