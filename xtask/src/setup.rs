//! `cargo xtask build`: installs what a fresh Debian 12 machine lacks, then builds the static
//! pfn-auditor. Every step checks first, so a second run only rebuilds what cargo finds stale.

use crate::sh::{self, workspace_root};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages the build and the VM rig need.
const APT_PACKAGES: &[&str] = &[
    "qemu-system-x86", // boots the test kernels (TCG: no KVM on CI)
    "busybox-static",  // the guest's shell and tools
    "cpio",
    "clang",
    "gcc-12", // builds the test module and the static scenario program
    "make",
    "kmod", // modinfo, for the module dependency order
    "xz-utils",
    "zstd", // Debian ships compressed .ko files
    "libc6-dev",
    "musl-tools",
    "patchelf",      // lets newer releases' kbuild tools run with their own C library (kernels.rs)
    "libxml2-utils", // xmllint: the JUnit reports are validated against tests/schemas/junit-10.xsd
    "systemd",       // systemd-analyze verify of the package's unit (package.rs)
    "debootstrap",   // the Debian root of the systemd test (systemd_test.rs)
    "e2fsprogs",     // mkfs.ext4 -d: that root as a disk image, without mounting anything
];

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
const BPF_LINKER_VERSION: &str = "0.10.4";
/// cargo-fuzz for `cargo xtask fuzz` (runs with the nightly toolchain installed above).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// `cargo xtask build`: prints the binary's path.
pub fn build(release: bool) -> Result<PathBuf> {
    install_tools()?;
    let binary = build_auditor(release)?;
    println!("{}", binary.display());
    Ok(binary)
}

/// Everything the build and the VM rig need from outside the workspace.
pub fn install_tools() -> Result<()> {
    install_apt_packages()?;
    install_rust_toolchains()?;
    install_bpf_linker()
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn install_apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES.iter().copied().filter(|p| !is_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    sh::run(Command::new("apt-get").args(["update", "-q"]))?;
    sh::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )
}

fn install_rust_toolchains() -> Result<()> {
    let toolchains = sh::output(Command::new("rustup").args(["toolchain", "list"])).context("rustup is needed (https://rustup.rs)")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        sh::run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let nightly_components = sh::output(Command::new("rustup").args(["+nightly", "component", "list", "--installed"]))?;
    if !nightly_components.lines().any(|l| l.starts_with("rust-src")) {
        sh::run(Command::new("rustup").args(["+nightly", "component", "add", "rust-src"]))?;
    }
    // The workspace's toolchain (stable) needs the musl target for the static binary.
    let targets = sh::output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !targets.lines().any(|l| l == MUSL_TARGET) {
        sh::run(Command::new("rustup").args(["target", "add", MUSL_TARGET]))?;
    }
    Ok(())
}

fn install_bpf_linker() -> Result<()> {
    let current = Command::new("bpf-linker").arg("--version").output();
    if current.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION}");
    sh::run(Command::new("cargo").args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--locked"]))
}

/// cargo-fuzz, pinned; nightly with it (`cargo +nightly fuzz`). Only `cargo xtask fuzz` needs it.
pub fn install_cargo_fuzz() -> Result<()> {
    install_rust_toolchains()?;
    let current = Command::new("cargo").args(["fuzz", "--version"]).output();
    if current.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION)) {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    sh::run(Command::new("cargo").args(["install", &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"), "--locked"]))
}

/// The path of the static pfn-auditor binary for a profile.
pub fn auditor_binary(release: bool) -> PathBuf {
    let profile = if release { "release" } else { "debug" };
    workspace_root().join("target").join(MUSL_TARGET).join(profile).join("pfn-auditor")
}

pub fn build_auditor(release: bool) -> Result<PathBuf> {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(workspace_root()).args(["build", "-p", "auditor", "--target", MUSL_TARGET]);
    if release {
        cargo.arg("--release");
    }
    sh::run(&mut cargo)?;
    let binary = auditor_binary(release);
    ensure_static(&binary)?;
    Ok(binary)
}

/// The guest has no dynamic loader: refuse a binary that asks for one (an ELF PT_INTERP header).
pub fn ensure_static(binary: &Path) -> Result<()> {
    let bytes = std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    if has_interpreter(&bytes).with_context(|| format!("{} is not a 64-bit ELF", binary.display()))? {
        bail!("{} is dynamically linked (has PT_INTERP); the VM guest cannot run it", binary.display());
    }
    Ok(())
}

fn has_interpreter(elf: &[u8]) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 {
        bail!("bad ELF header");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = elf.get(at..at + 4).context("truncated program header")?;
        if u32::from_le_bytes(p_type.try_into()?) == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_test_binary_is_dynamic_and_garbage_is_refused() {
        // The test harness itself is a normal glibc executable, so it has an interpreter.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&me).unwrap());
        assert!(has_interpreter(b"#!/bin/sh\necho not an elf, padded to sixty-four bytes........").is_err());
    }
}
