// Rebuild the eBPF object when bpf-linker changes (aya template convention).
fn main() {
    let bpf_linker = which::which("bpf-linker").expect("bpf-linker not found: run `cargo xtask build`");
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
