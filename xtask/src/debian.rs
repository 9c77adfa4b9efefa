//! A private apt configuration for fetching Debian kernels of other releases without touching the
//! machine's own apt setup. The mirror is whatever the machine already uses for Debian.

use crate::sh::{self, cache_dir};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// bullseye has 5.10, bookworm 6.1, bookworm-backports 6.12.
const SUITES: &[&str] = &["bullseye", "bookworm", "bookworm-backports", "forky"];
const KEYRINGS: &[&str] = &["/usr/share/keyrings/debian-archive-keyring.gpg", "/usr/share/keyrings/debian-archive-bullseye-stable.gpg"];

pub struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    /// Writes the private sources list (if needed) and refreshes its package lists at most once a day.
    pub fn open() -> Result<Self> {
        let root = cache_dir().join("apt");
        for dir in ["lists/partial", "archives/partial", "cache", "debs"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        let apt = PrivateApt { root };
        let sources = sources_list(&debian_mirror()?);
        let list_path = apt.root.join("sources.list");
        let changed = std::fs::read_to_string(&list_path).ok().as_deref() != Some(sources.as_str());
        if changed {
            std::fs::write(&list_path, sources)?;
        }
        let stamp = apt.root.join("updated");
        let fresh =
            std::fs::metadata(&stamp).and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 24 * 3600));
        if changed || !fresh {
            eprintln!("xtask: refreshing private apt lists in {}", apt.root.display());
            sh::run(apt.command("apt-get").args(["update", "-q"]))?;
            std::fs::write(&stamp, "")?;
        }
        Ok(apt)
    }

    /// `apt-get`/`apt-cache` pointed at the private lists, sources and archive directories only.
    pub fn command(&self, program: &str) -> Command {
        let r = self.root.display();
        let mut cmd = Command::new(program);
        cmd.args([
            format!("-oDir::Etc::SourceList={r}/sources.list"),
            "-oDir::Etc::SourceParts=/dev/null".into(),
            format!("-oDir::State::Lists={r}/lists"),
            format!("-oDir::Cache={r}/cache"),
            format!("-oDir::Cache::Archives={r}/archives"),
            // bullseye's Release file may be past its Valid-Until on an old mirror snapshot.
            "-oAcquire::Check-Valid-Until=false".into(),
            "-oAcquire::Languages=none".into(),
            // Files land in our cache dir, which the _apt sandbox user may not be able to write.
            "-oAPT::Sandbox::User=root".into(),
        ]);
        cmd
    }

    /// All package names starting with `prefix`.
    pub fn package_names(&self, prefix: &str) -> Result<Vec<String>> {
        let out = sh::output(self.command("apt-cache").args(["pkgnames", prefix]))?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// The `Depends:` package names of the candidate version (alternatives and versions dropped).
    pub fn depends(&self, package: &str) -> Result<Vec<String>> {
        let out = sh::output(self.command("apt-cache").args(["show", "--no-all-versions", package]))?;
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("Depends:"))
            .with_context(|| format!("apt-cache show {package} has no Depends line"))?;
        Ok(line
            .split(',')
            .filter_map(|alt| alt.split('|').next())
            .filter_map(|dep| dep.split_whitespace().next())
            .map(str::to_owned)
            .collect())
    }

    /// Downloads `package` as `suite` has it (e.g. bookworm's, not forky's newer build), cached by
    /// version, and returns its path.
    pub fn download_from(&self, package: &str, suite: &str) -> Result<PathBuf> {
        // ` prometheus | 2.42.0+ds-5+deb12u1 | http://mirror/debian bookworm/main amd64 Packages`
        let madison = sh::output(self.command("apt-cache").args(["madison", package]))?;
        let version = madison
            .lines()
            .find(|l| l.split('|').nth(2).is_some_and(|src| src.contains(&format!(" {suite}/"))))
            .and_then(|l| l.split('|').nth(1))
            .map(str::trim)
            .with_context(|| format!("{suite} has no {package} (apt-cache madison {package})"))?;
        let debs = self.root.join("debs");
        let deb = debs.join(format!("{package}_{}_amd64.deb", version.replace(':', "%3a")));
        if !deb.exists() {
            eprintln!("xtask: downloading {package} {version} ({suite})");
            sh::run(self.command("apt-get").current_dir(&debs).args(["download", "-q", &format!("{package}={version}")]))?;
        }
        if !deb.exists() {
            bail!("apt-get download {package}={version} left no {}", deb.display());
        }
        Ok(deb)
    }

    /// Downloads a package's .deb (cached) and returns its path.
    pub fn download(&self, package: &str) -> Result<PathBuf> {
        let debs = self.root.join("debs");
        let prefix = format!("{}_", package.replace('+', "%2b"));
        let find = || -> Result<Option<PathBuf>> {
            for entry in std::fs::read_dir(&debs)? {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if (name.starts_with(&prefix) || name.starts_with(&format!("{package}_"))) && name.ends_with(".deb") {
                    return Ok(Some(debs.join(name)));
                }
            }
            Ok(None)
        };
        if let Some(found) = find()? {
            return Ok(found);
        }
        eprintln!("xtask: downloading {package}");
        sh::run(self.command("apt-get").current_dir(&debs).args(["download", "-q", package]))?;
        find()?.with_context(|| format!("apt-get download {package} left no .deb in {}", debs.display()))
    }
}

/// The machine's Debian mirror, from its deb822 sources or its one-line sources.list.
pub fn debian_mirror() -> Result<String> {
    let mut texts = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "sources" || e == "list") {
                texts.push(std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    texts.iter().find_map(|t| mirror_in(t)).context("no Debian mirror found in /etc/apt/sources.list{,.d/*.sources}: add one for bookworm")
}

/// The first URI serving Debian's main archive (not debian-security, not a third-party repo).
fn mirror_in(text: &str) -> Option<String> {
    let is_debian = |uri: &str| uri.trim_end_matches('/').ends_with("/debian");
    for line in text.lines().map(str::trim) {
        if let Some(uris) = line.strip_prefix("URIs:") {
            if let Some(uri) = uris.split_whitespace().find(|u| is_debian(u)) {
                return Some(uri.trim_end_matches('/').to_owned());
            }
        } else if line.starts_with("deb ") {
            // `deb [options] URI suite components`
            let words = line.split_whitespace().skip(1);
            if let Some(uri) = words.filter(|w| !w.starts_with('[') && !w.ends_with(']')).find(|u| is_debian(u)) {
                return Some(uri.trim_end_matches('/').to_owned());
            }
        }
    }
    None
}

fn sources_list(mirror: &str) -> String {
    let keys = KEYRINGS.iter().filter(|k| Path::new(k).exists()).copied().collect::<Vec<_>>().join(",");
    SUITES.iter().map(|suite| format!("deb [signed-by={keys}] {mirror} {suite} main\n")).collect()
}

/// Unpacks a .deb into `dest` (no maintainer scripts run).
pub fn extract(deb: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest)?;
    sh::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest))
}

/// Orders Debian-style version strings (`6.12.90+deb12.1` after `6.12.90+deb12`, `-32` after `-4`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => x.parse::<u64>().unwrap_or(0).cmp(&y.parse::<u64>().unwrap_or(0)),
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_comes_from_deb822_or_one_line_sources_and_skips_security() {
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian-security\n\nTypes: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n";
        assert_eq!(mirror_in(deb822).as_deref(), Some("http://mirror.example/debian"));
        let one_line = "deb [arch=amd64] http://m.example/debian bookworm main\n";
        assert_eq!(mirror_in(one_line).as_deref(), Some("http://m.example/debian"));
        assert_eq!(mirror_in("deb https://packages.example/apt cloud main\n"), None);
    }

    #[test]
    fn newest_kernel_abi_wins() {
        let mut abis = ["5.10.0-4", "5.10.0-32", "5.10.0-30"];
        abis.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(abis.last(), Some(&"5.10.0-32"));
        assert!(version_cmp("6.12.90+deb12.1", "6.12.90+deb12").is_gt());
        assert!(version_cmp("6.12.95+deb12", "6.12.90+deb12.1").is_gt());
    }
}
