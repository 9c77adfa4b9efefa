//! /proc/PID/maps text (file_paths.rs, through procfs): any text names a path or nothing.
#![no_main]
use auditor::file_paths::path_in_maps;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The address asked about: the start of the first line's range (a hit), then one page in.
    let text = String::from_utf8_lossy(data);
    let first = text.split(['-', ' ', '\n']).next().and_then(|a| u64::from_str_radix(a, 16).ok()).unwrap_or(0);
    let _ = path_in_maps(data, first);
    let _ = path_in_maps(data, first.wrapping_add(0x1000));
});
