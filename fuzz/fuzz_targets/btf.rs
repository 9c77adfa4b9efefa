//! The kernel's BTF (`probes/layout.rs`): any blob is refused with one line or read into the
//! struct layouts the eBPF programs get, for one of the kernel series the probe table knows, picked
//! by the blob's length: the version only changes the fallbacks used where the BTF lacks a
//! function (follow_pte, get_vaddr_frames), while the field lookups, most of an execution, are the
//! same for all three, so one layout per input reaches the same code at a third of the cost.
#![no_main]
use auditor::probes::{
    kernel_version::KernelVersion,
    layout::{KernelBtf, frame_vector_layout, kernel_layout},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let btf = match KernelBtf::from_bytes(data, &[]) {
        Ok(btf) => btf,
        Err(e) => {
            let message = format!("{e:#}");
            assert!(!message.contains('\n'), "a BTF error is one line: {message:?}");
            return;
        }
    };
    let kernels = [KernelVersion::new(5, 10), KernelVersion::new(6, 1), KernelVersion::new(6, 12)];
    let kernel = kernels[data.len() % kernels.len()];
    if let Err(e) = kernel_layout(&btf, kernel, 0) {
        let message = format!("{e:#}");
        assert!(!message.contains('\n'), "a layout error is one line: {message:?}");
    }
    let _ = frame_vector_layout(&btf, kernel);
    for func in ["follow_pte", "get_vaddr_frames", "remap_pfn_range", "unmap_mapping_range"] {
        let _ = btf.func_params(func);
    }
});
