//! Builds the eBPF object (auditor-ebpf) with the nightly toolchain for bpfel-unknown-none and
//! places it in OUT_DIR, where `src/probes/mod.rs` embeds it. Needs `bpf-linker` on PATH and
//! nightly with rust-src: `cargo xtask build` installs both.
fn main() -> anyhow::Result<()> {
    let ebpf = aya_build::Package {
        name: "auditor-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../auditor-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::Nightly)
}
