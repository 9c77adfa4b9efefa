//! `cargo xtask systemd-test`: the Debian package and its service on a Debian system booted with
//! the real systemd. A bookworm root (debootstrap, minbase + systemd) is made once into an ext4
//! image cached under .vm-cache/systemd-root, keyed by the recipe that made it; each run boots it
//! as a copy-on-write snapshot with a Debian test kernel and an initramfs that mounts it, copies
//! this run's files in (the .deb, the test module, the scenario program, tests/vm/systemd/test.sh)
//! and hands over to systemd. test.sh installs the package, verifies the unit, runs `doctor`,
//! enables the service, loads the test driver, runs the demo scenario and checks the findings in
//! /var/log/pfn-auditor, then removes and purges the package; this side judges what it sends back.

use crate::debian::{self, PrivateApt};
use crate::initramfs::Cpio;
use crate::kernels::{self, Series};
use crate::plan::{self, Scenario};
use crate::qemu::{Boot, Clock, GuestFiles};
use crate::setup::ensure_static;
use crate::sh::{self, cache_dir, vm_sources_dir, vm_target_dir};
use crate::{demo, image, modules, package, verdict};
use anyhow::{Context, Result, bail};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SUITE: &str = "bookworm";
/// Added to debootstrap's minbase: systemd as PID 1.
const ROOT_PACKAGES: &[&str] = &["systemd", "systemd-sysv"];
/// The root image's size; minbase with systemd takes about 300 MiB.
const IMAGE_BYTES: u64 = 1 << 30;
/// What the initramfs loads to mount the root (Debian builds them as modules); ext4 asks the crypto
/// API for crc32c at mount time, which modinfo's dependencies do not name.
const ROOT_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"];
const TEST_UNIT: &str = "pfnaudit-systemd-test.service";
/// The test driver's source file (tests/vm/module), where the service must locate holders.
const HOLDER_SOURCE: &str = "pfnaudit_test.c";

/// Runs the test on `series` (6.1 in `cargo xtask test`).
pub fn run(series: Series) -> Result<()> {
    let scenarios = plan::load(&vm_sources_dir().join("scenarios.toml"))?;
    let mut scenario = demo::pick(&scenarios).context("no scenario has `demo = true`")?.clone();
    // test.sh installs the driver under /lib/modules: the service (no --module-debug-dir) must
    // locate each holder at a line of its source that makes a raw lookup.
    for expect in scenario.expect.iter_mut().chain(scenario.expect_on.values_mut().flatten()) {
        expect.holder_source = Some(HOLDER_SOURCE.to_owned());
    }
    let deb = package::build()?;
    let root_image = root_image()?;
    let apt = PrivateApt::open()?;
    let kernel = kernels::fetch(&apt, series)?;
    let dir = vm_target_dir().join(series.label).join("systemd");
    std::fs::create_dir_all(&dir)?;
    let initrd = dir.join("initramfs.cpio");
    write_initramfs(&initrd, &kernel, &deb, &scenario)?;
    eprintln!("xtask: booting {} with systemd from {}", kernel.release, root_image.display());
    let append = format!("systemd.unit={TEST_UNIT} systemd.show_status=0");
    let boot = Boot {
        kernel: &kernel,
        initrd: &initrd,
        dir: &dir,
        timeout: Duration::from_secs(900),
        disk: Some((&root_image, &append)),
        clock: Clock::Tcg,
        scrape: None,
    };
    let finished = boot.run()?;
    for ((_, label), sent) in &finished.files {
        std::fs::write(dir.join(label), &sent.text)?;
    }
    match judge(&scenario, series.label, &finished.files) {
        Ok(what) => {
            println!("PASS {} systemd: {what}", series.label);
            Ok(())
        }
        Err(why) => {
            println!("FAIL {} systemd: {why}", series.label);
            println!("  logs: console {}, results in {}", finished.console_log.display(), dir.display());
            bail!("the package and service test failed")
        }
    }
}

/// Every step test.sh took passed (among them: reload reopens the file, a restart rotates the
/// previous run's to .1), the service's NDJSON has the scenario's findings as scenarios.toml
/// expects them with the holder's file:line, the log directory and files have the modes the issue
/// asks for (0750, 0600), the metrics were served on loopback, and purging left no path behind.
fn judge(scenario: &Scenario, kernel: &str, files: &GuestFiles) -> Result<String, String> {
    let get = |label: &str| files.get(&(scenario.name.clone(), label.to_owned())).ok_or(format!("the guest sent no {label}"));
    let steps = &get("steps")?.text;
    let failed: Vec<&str> = steps.lines().filter(|l| !l.starts_with("ok ") && !l.trim().is_empty()).collect();
    if !failed.is_empty() {
        return Err(format!("steps failed: {}", failed.join("; ")));
    }
    let findings = verdict::judge(scenario, kernel, files, true)?;
    let modes = &get("modes")?.text;
    for (mode, what) in [
        ("750", "/var/log/pfn-auditor"),
        ("600", "/var/log/pfn-auditor/pfn-auditor.ndjson"),
        ("600", "/var/log/pfn-auditor/pfn-auditor.ndjson.1"),
    ] {
        if !modes.lines().any(|l| l == format!("{mode} root {what}")) {
            return Err(format!("{what} is not mode {mode} owned by root: {}", modes.trim()));
        }
    }
    let metrics = &get("metrics")?.text;
    if !metrics.starts_with("HTTP/1.") || !metrics.contains("pfn_auditor") {
        return Err(format!("no metrics on 127.0.0.1:9477: {}", metrics.lines().next().unwrap_or("(nothing)")));
    }
    let leftover = get("leftover")?.text.trim().to_owned();
    if !leftover.is_empty() {
        return Err(format!("install, remove and purge left paths behind:\n{leftover}"));
    }
    let exposure = get("security")?.text.lines().rev().find(|l| l.contains("Overall exposure level")).unwrap_or("").trim().to_owned();
    Ok(format!(
        "{} steps ok; service {findings}; log dir 0750, NDJSON 0600; metrics on loopback; purge left nothing; {exposure}",
        steps.lines().count()
    ))
}

/// The initramfs: busybox, tests/vm/systemd/init.sh, the modules that mount the root, and the
/// files test.sh needs (/payload).
fn write_initramfs(path: &Path, kernel: &kernels::Kernel, deb: &Path, scenario: &Scenario) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut cpio = Cpio::new(BufWriter::new(file));
    for dir in ["bin", "dev", "proc", "sys", "modules", "payload", "payload/modules"] {
        cpio.dir(dir)?;
    }
    cpio.char_device("dev/console", 5, 1)?;
    image::add_busybox(&mut cpio)?;
    let sources = vm_sources_dir().join("systemd");
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    cpio.file("init", 0o755, &read(&sources.join("init.sh"))?)?;
    add_modules(&mut cpio, "modules", &modules::with_deps(kernel, ROOT_MODULES)?)?;

    add_modules(&mut cpio, "payload/modules", &modules::prepare(kernel)?)?;
    cpio.file("payload/pfn-auditor.deb", 0o644, &read(deb)?)?;
    let program = image::build_scenario_program()?;
    ensure_static(&program)?;
    cpio.file(&format!("payload/{}", scenario.binary()), 0o755, &read(&program)?)?;
    cpio.file("payload/policy.toml", 0o644, &read(&vm_sources_dir().join("policy.toml"))?)?;
    // test.sh takes the scenario's name and the program's arguments.
    let script = read(&sources.join("test.sh"))?;
    cpio.file("payload/test.sh", 0o755, &script)?;
    let unit = String::from_utf8(read(&sources.join(TEST_UNIT))?)?;
    let args = std::iter::once(scenario.name.as_str()).chain(scenario.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
    let unit = unit.replace("/pfnaudit-test/test.sh", &format!("/pfnaudit-test/test.sh {args}"));
    cpio.file(&format!("payload/{TEST_UNIT}"), 0o644, unit.as_bytes())?;
    cpio.finish()?.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}

/// `dir/<name>.ko` for each module and `dir/order`, the order to load them in.
fn add_modules<W: std::io::Write>(cpio: &mut Cpio<W>, dir: &str, modules: &[modules::Module]) -> Result<()> {
    let mut order = String::new();
    for module in modules {
        cpio.file(&format!("{dir}/{}.ko", module.name), 0o644, &std::fs::read(&module.file)?)?;
        order.push_str(&module.name);
        order.push('\n');
    }
    cpio.file(&format!("{dir}/order"), 0o644, order.as_bytes())?;
    Ok(())
}

/// The recipe of the root image: when it changes, the cached image is made again.
fn recipe(mirror: &str) -> String {
    format!(
        "debootstrap --variant=minbase --include={} {SUITE} {mirror}\nmkfs.ext4 {IMAGE_BYTES} bytes\nhostname pfnaudit\n",
        ROOT_PACKAGES.join(",")
    )
}

/// The cached root image, made first if it is missing or its recipe changed.
fn root_image() -> Result<PathBuf> {
    let mirror = debian::debian_mirror()?;
    let dir = cache_dir().join("systemd-root").join(SUITE);
    let image = dir.join("root.img");
    let recipe_path = dir.join("recipe");
    let recipe = recipe(&mirror);
    if image.exists() && std::fs::read_to_string(&recipe_path).ok().as_deref() == Some(recipe.as_str()) {
        return Ok(image);
    }
    std::fs::create_dir_all(&dir)?;
    let tree = dir.join("tree");
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?; // an interrupted run's
    }
    eprintln!("xtask: making the {SUITE} root for the systemd test (debootstrap, a few minutes, once)");
    // debootstrap's downloads are kept with the private apt cache.
    let debs = cache_dir().join("apt/debootstrap");
    std::fs::create_dir_all(&debs)?;
    sh::run(
        Command::new("debootstrap")
            .args(["--variant=minbase", &format!("--include={}", ROOT_PACKAGES.join(","))])
            .arg(format!("--cache-dir={}", debs.display()))
            .arg("--keyring=/usr/share/keyrings/debian-archive-keyring.gpg")
            .args([SUITE])
            .arg(&tree)
            .arg(&mirror),
    )?;
    std::fs::write(tree.join("etc/hostname"), "pfnaudit\n")?;
    let partial = dir.join("root.img.partial");
    let _ = std::fs::remove_file(&partial);
    std::fs::File::create(&partial)?.set_len(IMAGE_BYTES)?;
    sh::run(Command::new("mkfs.ext4").args(["-q", "-F", "-L", "pfnaudit-root", "-d"]).arg(&tree).arg(&partial))?;
    std::fs::remove_dir_all(&tree)?;
    std::fs::rename(&partial, &image)?;
    std::fs::write(&recipe_path, recipe)?;
    Ok(image)
}
