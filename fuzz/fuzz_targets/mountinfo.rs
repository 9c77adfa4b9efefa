//! /proc/self/mountinfo text (file_names.rs `Mounts`): any text is a set of mount points.
#![no_main]
use auditor::file_names::Mounts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Mounts::parse(text);
});
