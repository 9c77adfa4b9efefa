//! `cargo xtask package`: the Debian package `target/debian/pfn-auditor_<version>_amd64.deb` with
//! the static binary, the hardened service (packaging/pfn-auditor.service), the default policy as a
//! conffile, a man page per subcommand and shell completions (both written by the binary itself:
//! `pfn-auditor generate-docs`), and maintainer scripts (packaging/debian/) that stop the service
//! on removal and leave nothing behind on purge.
//!
//! Built with `dpkg-deb --build` from a staged tree, not cargo-deb: dpkg-deb is on every Debian
//! machine, while cargo-deb would be compiled on each fresh CI machine, and the package needs
//! maintainer scripts and a generated tree (man pages, completions) of its own anyway.

use crate::setup;
use crate::sh::{self, workspace_root};
use anyhow::{Context, Result, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const PACKAGE: &str = "pfn-auditor";
/// The unit's path in the package (bookworm's systemd reads /lib/systemd/system).
pub const UNIT_PATH: &str = "lib/systemd/system/pfn-auditor.service";
/// The default policy, a conffile.
pub const POLICY_PATH: &str = "etc/pfn-auditor/policy.toml";

/// Builds the release binary (installing tools first) and the package; returns the .deb's path.
pub fn build() -> Result<PathBuf> {
    let binary = setup::build(true)?;
    let out = workspace_root().join("target/debian");
    let root = out.join("root");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    stage(&binary, &root)?;
    verify_unit(&root)?;
    let deb = out.join(format!("{PACKAGE}_{}_amd64.deb", version()?));
    sh::run(Command::new("dpkg-deb").args(["--root-owner-group", "-Zxz", "--build"]).arg(&root).arg(&deb))?;
    println!("{}", deb.display());
    Ok(deb)
}

/// The package's version: the auditor crate's.
fn version() -> Result<String> {
    let manifest = workspace_root().join("auditor/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let value: toml::Value = toml::from_str(&text).with_context(|| format!("{} is not TOML", manifest.display()))?;
    value
        .get("package")
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .context("auditor/Cargo.toml has no package.version")
}

/// Lays out the package's tree under `root`, DEBIAN/ included.
fn stage(binary: &Path, root: &Path) -> Result<()> {
    let packaging = workspace_root().join("packaging");
    install(binary, &root.join("usr/bin/pfn-auditor"), 0o755)?;
    // As Debian ships programs: without the symbol table (the eBPF object inside is data).
    sh::run(Command::new("strip").arg("--strip-unneeded").arg(root.join("usr/bin/pfn-auditor")))?;
    install(&packaging.join("pfn-auditor.service"), &root.join(UNIT_PATH), 0o644)?;
    install(&packaging.join("policy.toml"), &root.join(POLICY_PATH), 0o644)?;
    // Man pages and completions, from the binary's own CLI definition.
    sh::output(Command::new(binary).arg("generate-docs").arg(root))?;
    let man_dir = root.join("usr/share/man/man1");
    let pages: Vec<PathBuf> = std::fs::read_dir(&man_dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    if pages.is_empty() {
        bail!("`pfn-auditor generate-docs` wrote no man page in {}", man_dir.display());
    }
    // Debian compresses man pages; -n keeps the timestamp out, so the same page gives the same bytes.
    sh::run(Command::new("gzip").args(["-9nf"]).args(&pages))?;
    let doc = root.join("usr/share/doc").join(PACKAGE);
    std::fs::create_dir_all(&doc)?;
    std::fs::write(doc.join("copyright"), COPYRIGHT)?;

    let debian = root.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        install(&packaging.join("debian").join(script), &debian.join(script), 0o755)?;
    }
    std::fs::write(debian.join("conffiles"), format!("/{POLICY_PATH}\n"))?;
    let files = package_files(root)?;
    let md5sums = sh::output(Command::new("md5sum").current_dir(root).args(&files))?;
    std::fs::write(debian.join("md5sums"), md5sums)?;
    let installed_kib: u64 =
        files.iter().map(|f| std::fs::metadata(root.join(f)).map(|m| m.len().div_ceil(1024))).sum::<std::io::Result<u64>>()?;
    std::fs::write(debian.join("control"), control(&version()?, installed_kib))?;
    Ok(())
}

fn install(from: &Path, to: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(to.parent().context("no parent directory")?)?;
    std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Every regular file of the tree outside DEBIAN/, relative to `root`, sorted.
fn package_files(root: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                out.push(path.strip_prefix(root)?.to_path_buf());
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n != "DEBIAN") {
            walk(root, &path, &mut files)?;
        }
    }
    files.sort();
    Ok(files)
}

/// `systemd-analyze verify` of the unit as installed: in a copy of the package's tree with this
/// machine's units added (the targets it is ordered after), passed as `--root` so the unit's
/// programs (ExecStart's /usr/bin/pfn-auditor) are looked up in the package. Man pages are not
/// looked up (`--man=no`: they are in the package, not on this machine). systemd-analyze exits 0
/// on a directive it ignores, so any line naming the unit fails the check.
fn verify_unit(package_root: &Path) -> Result<()> {
    let root = package_root.with_file_name("verify-root");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    sh::run(Command::new("cp").arg("-a").arg(package_root).arg(&root))?;
    // -n: the package's own unit is not replaced by an installed one.
    sh::run(Command::new("cp").args(["-an", "/lib/systemd/system/."]).arg(root.join("lib/systemd/system")))?;
    // The base system's programs the unit runs (ExecReload's shell: its builtin kill).
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::copy("/bin/sh", root.join("bin/sh")).context("cannot copy /bin/sh")?;
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .arg(format!("/{UNIT_PATH}"))
        .output()
        .context("cannot start systemd-analyze (cargo xtask build installs systemd)")?;
    std::fs::remove_dir_all(&root)?;
    let complaints = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || complaints.lines().any(|l| l.contains("pfn-auditor")) {
        bail!("systemd-analyze verify {UNIT_PATH} ({}):\n{complaints}", out.status);
    }
    Ok(())
}

fn control(version: &str, installed_kib: u64) -> String {
    format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: amd64\n\
         Maintainer: pfn-auditor developers <pfn-auditor@localhost>\n\
         Installed-Size: {installed_kib}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: reports kernel code that keeps raw PFNs after their mapping was revoked\n \
         pfn-auditor hooks raw PFN lookups and pins of VM_IO|VM_PFNMAP mappings\n \
         (follow_pfn, follow_pte, follow_pfnmap_start, get_vaddr_frames) and the\n \
         revocation paths with eBPF kprobes, and reports every pin that outlives a\n \
         revocation, with the holder, the mapping, the revoker and their stacks.\n \
         .\n \
         The package has a static binary, a hardened systemd service (not enabled on\n \
         install: systemctl enable --now pfn-auditor), its policy in /etc/pfn-auditor,\n \
         man pages and bash, zsh and fish completions.\n"
    )
}

const COPYRIGHT: &str = "\
pfn-auditor

Copyright: the pfn-auditor developers
License: GPL-2.0-only OR MIT (at your option)

On Debian systems, the full text of the GNU General Public License version 2 can be found in
/usr/share/common-licenses/GPL-2.
";
