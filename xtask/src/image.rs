//! The guest's initramfs: busybox, the init script, pfn-auditor, the scenario program, the test
//! module with its dependencies, the policy and the plan.

use crate::initramfs::Cpio;
use crate::modules::Module;
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
    pub modules: &'a [Module],
    pub plan: &'a str,
}

/// Compiles tests/vm/scenario/pfnaudit-scenario.c statically (the guest has no libc).
pub fn build_scenario_program() -> Result<PathBuf> {
    let sources = vm_sources_dir();
    let source = sources.join("scenario/pfnaudit-scenario.c");
    if !source.exists() {
        bail!("{} is missing: the scenario program drives the test module", source.display());
    }
    let out = vm_target_dir().join("pfnaudit-scenario");
    std::fs::create_dir_all(vm_target_dir())?;
    sh::run(
        Command::new("gcc-12")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&out)
            .arg("-I")
            .arg(sources.join("module"))
            .arg(&source),
    )?;
    Ok(out)
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

    ensure_static(Path::new(BUSYBOX)).context("busybox-static is needed (cargo xtask build installs it)")?;
    cpio.file("bin/busybox", 0o755, &std::fs::read(BUSYBOX)?)?;
    for applet in sh::output(Command::new(BUSYBOX).arg("--list"))?.lines() {
        if applet != "busybox" {
            cpio.symlink(&format!("bin/{applet}"), "busybox")?;
        }
    }

    let init = workspace_root().join("tests/vm/guest/init.sh");
    cpio.file("init", 0o755, &std::fs::read(&init).with_context(|| format!("cannot read {}", init.display()))?)?;
    if let Some(auditor) = contents.auditor {
        ensure_static(auditor)?;
        cpio.file("bin/pfn-auditor", 0o755, &std::fs::read(auditor)?)?;
    }
    ensure_static(contents.scenario_program)?;
    cpio.file("bin/pfnaudit-scenario", 0o755, &std::fs::read(contents.scenario_program)?)?;

    let mut order = String::new();
    for module in contents.modules {
        cpio.file(&format!("modules/{}.ko", module.name), 0o644, &std::fs::read(&module.file)?)?;
        order.push_str(&module.name);
        order.push('\n');
    }
    cpio.file("modules/order", 0o644, order.as_bytes())?;

    let policy = vm_sources_dir().join("policy.toml");
    if policy.exists() {
        cpio.file("policy.toml", 0o644, &std::fs::read(&policy)?)?;
    }
    cpio.file("plan", 0o644, contents.plan.as_bytes())?;
    cpio.finish()?.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}
