//! /proc/modules text (symbols.rs `LoadedModules`): any text is a set of modules.
#![no_main]
use auditor::symbols::LoadedModules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let modules = LoadedModules::parse(text);
    assert_eq!(modules, LoadedModules::parse(text), "parsing is deterministic");
});
