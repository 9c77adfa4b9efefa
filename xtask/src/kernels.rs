//! Debian kernels for the VM tests: the newest ABI of each series, downloaded through the private
//! apt config, unpacked under .vm-cache/kernels/<abi>/ with headers made usable in place.

use crate::debian::{self, PrivateApt};
use crate::sh::{self, cache_dir};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernel series under test, by the label users pass to `--kernel`.
pub const SERIES: &[Series] = &[
    Series { label: "5.10", abi_prefix: "5.10.0-", default: true }, // bullseye
    Series { label: "6.1", abi_prefix: "6.1.0-", default: true },   // bookworm
    Series { label: "6.12", abi_prefix: "6.12.", default: true },   // bookworm-backports
    // Debian testing: whatever 7.x it ships now (7.2 on 2026-11-27); not in the default set, as
    // its kernel moves on under the tests (`cargo xtask vm-test --kernel forky`).
    Series { label: "forky", abi_prefix: "7.", default: false },
];

#[derive(Clone, Copy, Debug)]
pub struct Series {
    pub label: &'static str,
    /// What the ABI (the part between `linux-image-` and `-amd64`) starts with.
    abi_prefix: &'static str,
    /// Tested when no `--kernel` is given (and so by `cargo xtask test`, i.e. CI).
    pub default: bool,
}

/// The series tested when none is named.
pub fn default_series() -> Vec<Series> {
    SERIES.iter().copied().filter(|s| s.default).collect()
}

pub fn series(label: &str) -> Result<Series> {
    SERIES.iter().copied().find(|s| s.label == label).with_context(|| {
        let known: Vec<_> = SERIES.iter().map(|s| s.label).collect();
        format!("unknown kernel `{label}`: choose one of {}", known.join(", "))
    })
}

/// An unpacked Debian kernel: image, modules tree and build headers.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub label: &'static str,
    /// e.g. `6.1.0-50-amd64`, the kernel's `uname -r`.
    pub release: String,
    pub vmlinuz: PathBuf,
    pub modules_dir: PathBuf,
    pub headers: PathBuf,
}

/// Finds the newest ABI of the series and makes sure it is downloaded and unpacked.
pub fn fetch(apt: &PrivateApt, series: Series) -> Result<Kernel> {
    let abi = newest_abi(apt, series)?;
    let release = format!("{abi}-amd64");
    let root = cache_dir().join("kernels").join(&abi);
    let done = root.join(".unpacked");
    if !done.exists() {
        if root.exists() {
            std::fs::remove_dir_all(&root)?; // a half-unpacked tree from an interrupted run
        }
        let image_pkg = format!("linux-image-{release}");
        let headers_pkg = format!("linux-headers-{release}");
        let mut packages = vec![image_pkg.clone(), headers_pkg.clone()];
        // From 7.x (forky) the image package is split: the kernel and the modules come in
        // linux-binary-* and linux-modules-*, which it depends on.
        packages.extend(apt.depends(&image_pkg)?.into_iter().filter(|d| d.starts_with("linux-binary-") || d.starts_with("linux-modules-")));
        packages
            .extend(apt.depends(&headers_pkg)?.into_iter().filter(|d| d.starts_with("linux-headers-") || d.starts_with("linux-kbuild-")));
        for package in &packages {
            debian::extract(&apt.download(package)?, &root)?;
        }
        relocate_headers(&root)?;
        make_host_tools_runnable(apt, &root)?;
        std::fs::write(&done, packages.join("\n"))?;
    }
    // Packages of merged-/usr releases (7.x) ship the kernel and modules under usr/lib/modules.
    let first_existing = |paths: [String; 2]| {
        let [classic, merged] = paths.map(|p| root.join(p));
        if classic.exists() { classic } else { merged }
    };
    let kernel = Kernel {
        label: series.label,
        vmlinuz: first_existing([format!("boot/vmlinuz-{release}"), format!("usr/lib/modules/{release}/vmlinuz")]),
        modules_dir: first_existing([format!("lib/modules/{release}"), format!("usr/lib/modules/{release}")]),
        headers: root.join(format!("usr/src/linux-headers-{release}")),
        release,
    };
    for path in [&kernel.vmlinuz, &kernel.modules_dir, &kernel.headers] {
        if !path.exists() {
            bail!("{} is missing from the unpacked kernel (delete {} to refetch)", path.display(), root.display());
        }
    }
    Ok(kernel)
}

fn newest_abi(apt: &PrivateApt, series: Series) -> Result<String> {
    let mut abis: Vec<String> = apt
        .package_names(&format!("linux-image-{}", series.abi_prefix))?
        .iter()
        .filter_map(|name| name.strip_prefix("linux-image-")?.strip_suffix("-amd64"))
        // `-cloud`, `-rt` flavours and `-dbg` packages have another dash after the prefix.
        .filter(|abi| abi.strip_prefix(series.abi_prefix).is_some_and(|rest| !rest.contains('-')))
        .map(str::to_owned)
        .collect();
    abis.sort_by(|a, b| debian::version_cmp(a, b));
    abis.pop().with_context(|| format!("no linux-image-{}*-amd64 in the private apt lists (.vm-cache/apt)", series.abi_prefix))
}

/// Kbuild's host tools of a newer release (forky's need glibc 2.38; this machine has 2.36) run with
/// that release's own C library and libelf, unpacked next to them: their ELF interpreter and
/// runpath are pointed there (names stay, as Debian's objtool and modpost dispatch on them).
fn make_host_tools_runnable(apt: &PrivateApt, root: &Path) -> Result<()> {
    let kbuild_root = root.join("usr/lib");
    let Some(kbuild) = std::fs::read_dir(&kbuild_root)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("linux-kbuild-")))
    else {
        bail!("no usr/lib/linux-kbuild-* in {}", root.display());
    };
    // ldd names what the host's libraries cannot give (`version `GLIBC_2.38' not found`).
    let unrunnable: Vec<PathBuf> = elf_programs(&kbuild)?
        .into_iter()
        .filter(|tool| Command::new("ldd").arg(tool).output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("not found")))
        .collect();
    if unrunnable.is_empty() {
        return Ok(());
    }
    let sysroot = root.join("host-libs");
    for package in ["libc6", "libelf1t64", "zlib1g", "libzstd1"] {
        debian::extract(&apt.download(package)?, &sysroot)?;
    }
    let libdir = sysroot.join("usr/lib/x86_64-linux-gnu");
    let interpreter = libdir.join("ld-linux-x86-64.so.2");
    for tool in unrunnable {
        sh::run(Command::new("patchelf").arg("--set-interpreter").arg(&interpreter).arg("--set-rpath").arg(&libdir).arg(&tool))?;
    }
    Ok(())
}

/// Dynamically linked ELF programs (those with an interpreter) under `dir`.
fn elf_programs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            found.extend(elf_programs(&path)?);
        } else if meta.is_file()
            && std::fs::read(&path).is_ok_and(|b| b.starts_with(b"\x7fELF"))
            && Command::new("patchelf").arg("--print-interpreter").arg(&path).output().is_ok_and(|o| o.status.success())
        {
            found.push(path);
        }
    }
    Ok(found)
}

/// Debian's headers point at /usr/src and /usr/lib/linux-kbuild-* with absolute paths; point them
/// at the unpacked copies instead so `make -C <headers> M=...` works without installing anything.
fn relocate_headers(root: &Path) -> Result<()> {
    let src = root.join("usr/src");
    for entry in std::fs::read_dir(&src).with_context(|| format!("no usr/src in {}", root.display()))? {
        let dir = entry?.path();
        relocate_tree(root, &dir, 0)?;
    }
    Ok(())
}

fn relocate_tree(root: &Path, dir: &Path, depth: usize) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            if target.is_absolute() {
                let local = root.join(target.strip_prefix("/")?);
                std::fs::remove_file(&path)?;
                std::os::unix::fs::symlink(local, &path)?;
            }
        } else if meta.is_file() && depth == 0 && path.file_name().is_some_and(|n| n == "Makefile") {
            // The flavour Makefile includes the -common tree by absolute path.
            let text = std::fs::read_to_string(&path)?;
            let local_usr = format!("{}/usr/", root.display());
            let fixed = text.replace(" /usr/", &format!(" {local_usr}")).replace("=/usr/", &format!("={local_usr}"));
            if fixed != text {
                std::fs::write(&path, fixed)?;
            }
        } else if meta.is_dir() && depth < 1 {
            relocate_tree(root, &path, depth + 1)?;
        }
    }
    Ok(())
}
