//! The guest's initramfs: busybox, the init script, pfn-auditor, the scenario programs, the test
//! module with its dependencies, Debian's modules for the in-tree scenarios, the policy and the plan.

use crate::initramfs::Cpio;
use crate::modules::{InTree, Module};
use crate::setup::ensure_static;
use crate::sh::{self, vm_sources_dir, vm_target_dir, workspace_root};
use anyhow::{Context, Result, bail};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

const BUSYBOX: &str = "/bin/busybox";

pub struct Contents<'a> {
    /// None: the guest only loads the module and runs the scenarios (to test the rig itself).
    pub auditor: Option<&'a Path>,
    pub scenario_program: &'a Path,
    /// tests/vm/intree/pfnaudit-intree (in-tree drivers only).
    pub intree_program: &'a Path,
    pub modules: &'a [Module],
    pub in_tree: &'a InTree,
    pub plan: &'a str,
}

/// The test module's build directory (its sources are copied there; DWARF names them by that
/// absolute path): the gate scenarios' `--source-root`, as a CI job passes its checkout.
pub fn source_root(modules: &[Module]) -> Option<&Path> {
    modules.iter().find(|m| m.name == "pfnaudit_test").and_then(|m| m.file.parent())
}

/// Compiles tests/vm/scenario/pfnaudit-scenario.c statically (the guest has no libc).
pub fn build_scenario_program() -> Result<PathBuf> {
    build_program("scenario/pfnaudit-scenario.c", "the scenario program drives the test module")
}

/// Compiles tests/vm/intree/pfnaudit-intree.c statically, against this machine's UAPI headers
/// (linux/vfio.h, linux/kvm.h, linux/dma-heap.h).
pub fn build_intree_program() -> Result<PathBuf> {
    build_program("intree/pfnaudit-intree.c", "the in-tree scenarios drive vfio, e1000 and KVM with it")
}

fn build_program(relative: &str, what_for: &str) -> Result<PathBuf> {
    let sources = vm_sources_dir();
    let source = sources.join(relative);
    if !source.exists() {
        bail!("{} is missing: {what_for}", source.display());
    }
    let stem = source.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    let out = vm_target_dir().join(stem);
    std::fs::create_dir_all(vm_target_dir())?;
    sh::run(Command::new("gcc-12").args(["-static", "-O2", "-Wall", "-o"]).arg(&out).arg("-I").arg(sources.join("module")).arg(&source))?;
    Ok(out)
}

/// The static busybox as bin/busybox, with a bin/<applet> link for each applet (bin/ must exist).
pub fn add_busybox<W: std::io::Write>(cpio: &mut Cpio<W>) -> Result<()> {
    ensure_static(Path::new(BUSYBOX)).context("busybox-static is needed (cargo xtask build installs it)")?;
    cpio.file("bin/busybox", 0o755, &std::fs::read(BUSYBOX)?)?;
    for applet in sh::output(Command::new(BUSYBOX).arg("--list"))?.lines() {
        if applet != "busybox" {
            cpio.symlink(&format!("bin/{applet}"), "busybox")?;
        }
    }
    Ok(())
}

/// Writes the initramfs to `path`.
pub fn write(path: &Path, contents: &Contents) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut cpio = Cpio::new(BufWriter::new(file));
    for dir in ["bin", "dev", "proc", "sys", "tmp", "out", "modules"] {
        cpio.dir(dir)?;
    }
    // The kernel opens /dev/console for init's stdio before anything is mounted.
    cpio.char_device("dev/console", 5, 1)?;

    add_busybox(&mut cpio)?;

    let init = workspace_root().join("tests/vm/guest/init.sh");
    cpio.file("init", 0o755, &std::fs::read(&init).with_context(|| format!("cannot read {}", init.display()))?)?;
    if let Some(auditor) = contents.auditor {
        ensure_static(auditor)?;
        cpio.file("bin/pfn-auditor", 0o755, &std::fs::read(auditor)?)?;
    }
    ensure_static(contents.scenario_program)?;
    cpio.file("bin/pfnaudit-scenario", 0o755, &std::fs::read(contents.scenario_program)?)?;
    ensure_static(contents.intree_program)?;
    cpio.file("bin/pfnaudit-intree", 0o755, &std::fs::read(contents.intree_program)?)?;

    let mut order = String::new();
    for module in contents.modules {
        cpio.file(&format!("modules/{}.ko", module.name), 0o644, &std::fs::read(&module.file)?)?;
        order.push_str(&module.name);
        order.push('\n');
    }
    cpio.file("modules/order", 0o644, order.as_bytes())?;
    if let Some(built) = source_root(contents.modules) {
        cpio.file("modules/source-root", 0o644, built.as_os_str().as_encoded_bytes())?;
    }
    // In-tree modules: their own directory and list, so the gate-late scenarios' unloading of
    // modules/order leaves vfio and kvm alone.
    cpio.dir("modules/intree")?;
    let mut boot = String::new();
    for module in contents.in_tree.boot.iter().chain(&contents.in_tree.late) {
        cpio.file(&format!("modules/intree/{}.ko", module.name), 0o644, &std::fs::read(&module.file)?)?;
    }
    for module in &contents.in_tree.boot {
        boot.push_str(&module.name);
        boot.push('\n');
    }
    cpio.file("modules/intree/boot", 0o644, boot.as_bytes())?;

    let policy = vm_sources_dir().join("policy.toml");
    if policy.exists() {
        cpio.file("policy.toml", 0o644, &std::fs::read(&policy)?)?;
    }
    cpio.file("plan", 0o644, contents.plan.as_bytes())?;
    cpio.finish()?.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}
