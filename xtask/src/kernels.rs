//! Debian kernels for the VM tests: the newest ABI of each series, downloaded through the private
//! apt config, unpacked under .vm-cache/kernels/<abi>/ with headers made usable in place.

use crate::debian::{self, PrivateApt};
use crate::sh::cache_dir;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The kernel series under test, by the label users pass to `--kernel`.
pub const SERIES: &[Series] = &[
    Series { label: "5.10", abi_prefix: "5.10.0-" },      // bullseye
    Series { label: "6.1", abi_prefix: "6.1.0-" },        // bookworm
    Series { label: "6.12", abi_prefix: "6.12." },        // bookworm-backports
];

#[derive(Clone, Copy, Debug)]
pub struct Series {
    pub label: &'static str,
    /// What the ABI (the part between `linux-image-` and `-amd64`) starts with.
    abi_prefix: &'static str,
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
        let headers_pkg = format!("linux-headers-{release}");
        let mut packages = vec![format!("linux-image-{release}"), headers_pkg.clone()];
        packages.extend(
            apt.depends(&headers_pkg)?
                .into_iter()
                .filter(|d| d.starts_with("linux-headers-") || d.starts_with("linux-kbuild-")),
        );
        for package in &packages {
            debian::extract(&apt.download(package)?, &root)?;
        }
        relocate_headers(&root)?;
        std::fs::write(&done, packages.join("\n"))?;
    }
    let kernel = Kernel {
        label: series.label,
        vmlinuz: root.join(format!("boot/vmlinuz-{release}")),
        modules_dir: root.join(format!("lib/modules/{release}")),
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
    abis.pop().with_context(|| {
        format!("no linux-image-{}*-amd64 in the private apt lists (.vm-cache/apt)", series.abi_prefix)
    })
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
