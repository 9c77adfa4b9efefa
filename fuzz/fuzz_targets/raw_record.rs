//! Ring-buffer records (`RawRecord::parse`, `Decoder::decode`): any bytes are a record or a
//! `DecodeError` (counted as lost, never a panic), and every decoded event, written as NDJSON,
//! replays as itself.
#![no_main]
use std::sync::LazyLock;

use auditor::{
    decode::{Decoder, Enrich, RawRecord},
    vocab::{event::Frame, record::Record},
    file_names::{KernelFileNames, Mounts},
    replay_parse,
    symbols::KernelSymbols,
};
use auditor_common::{FileNameEvent, Hook, VmaInfo};
use libfuzzer_sys::fuzz_target;

static SYMBOLS: LazyLock<KernelSymbols> = LazyLock::new(|| {
    KernelSymbols::parse(
        "ffffffff812a0000 T follow_pfn\n\
         ffffffff812b0000 T zap_special_vma_range\n\
         ffffffffc0a00000 t pfnaudit_pin_tracked\t[pfnaudit_test]\n",
    )
});

/// Enrichment as a live run does it, from the record's own fields: each frame's low bits pick an
/// address around one of the symbols, file names come from the record's `FileName` records.
struct FuzzEnrich {
    names: KernelFileNames,
}

impl Enrich for FuzzEnrich {
    fn stack(&mut self, ips: &[u64]) -> Vec<Frame> {
        const BASES: [u64; 3] = [0xffff_ffff_812a_0000, 0xffff_ffff_812b_0000, 0xffff_ffff_c0a0_0000];
        ips.iter().enumerate().map(|(i, ip)| SYMBOLS.frame(BASES[i % BASES.len()] + (ip & 0xffff))).collect()
    }
    fn path(&mut self, _tgid: u32, vma: &VmaInfo) -> Option<String> {
        self.names.get(vma.vma).map(str::to_owned)
    }
    fn file_name(&mut self, name: &FileNameEvent) {
        self.names.learn(name);
    }
    fn vma_freed(&mut self, vma: u64) {
        self.names.forget(vma);
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = RawRecord::hook_slot(data);
    let Ok(raw) = RawRecord::parse(data) else { return };
    let mut slot_symbols = vec![Vec::new(); auditor_common::HOOK_COUNT];
    slot_symbols[Hook::ZapVmaPtes as usize] = vec!["zap_special_vma_range".to_string()];
    let mut decoder = Decoder::new(Vec::new(), slot_symbols);
    let mounts = Mounts::parse("22 1 0:5 / /dev rw - devtmpfs udev rw\n");
    let mut enrich = FuzzEnrich { names: KernelFileNames::new(mounts) };
    // A file name record first, as the kernel sends it before the record that names its vma.
    if let RawRecord::FileName(name) = &raw {
        let _ = enrich.names.path_of(name);
    }
    if let Some(event) = decoder.decode(&raw, &mut enrich) {
        let line = serde_json::to_string(&Record::Event(event.clone())).expect("an event serializes");
        let replayed = replay_parse::record(&line).unwrap_or_else(|e| panic!("a decoded event does not replay: {e}: {line}"));
        assert_eq!(replayed, Record::Event(event), "a decoded event replays as itself");
    }
});
