//! Paths of mapped files. /proc/PID/maps names a mapping while its process lives, but a driver's
//! test program is often gone by the time the daemon decodes its records (a gate's command runs
//! for milliseconds). Then the file is found by identity, the device and inode the kernel recorded,
//! among the places PFN maps come from: device nodes under /dev and PCI BAR files under
//! /sys/bus/pci/devices. Never by name alone: a path is given only for the very same inode.
//! A BAR file is named as /proc names it, by its canonical path (`/sys/devices/pci0000:00/…`,
//! not the `/sys/bus/pci/devices/…` symlink), so findings and their fingerprints agree whichever
//! way the path was found.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use auditor_common::VmaInfo;

/// Directory levels searched under /dev (/dev/dri/by-path/… is three deep).
const DEV_DEPTH: usize = 4;
/// Entries looked at per search, so a huge /dev cannot stall the daemon.
const MAX_ENTRIES: usize = 20_000;

/// Where the inode search looks; tests point it at a directory of their own.
pub struct SearchRoots {
    pub dev: PathBuf,
    pub pci_devices: PathBuf,
}

impl Default for SearchRoots {
    fn default() -> Self {
        Self { dev: "/dev".into(), pci_devices: "/sys/bus/pci/devices".into() }
    }
}

/// Path lookups for one live run, with the inode searches remembered.
#[derive(Default)]
pub struct FilePaths {
    roots: SearchRoots,
    /// (kernel dev, inode) → path, including the misses.
    by_inode: HashMap<(u32, u64), Option<String>>,
}

impl FilePaths {
    pub fn with_roots(roots: SearchRoots) -> Self {
        Self { roots, by_inode: HashMap::new() }
    }

    /// The path of the file behind `vma` of process `tgid`: from /proc/PID/maps, else by inode.
    pub fn path(&mut self, tgid: u32, vma: &VmaInfo) -> Option<String> {
        if vma.start == 0 {
            return None;
        }
        if let Some(path) = proc_maps_path(tgid, vma.start) {
            return Some(path);
        }
        // Anonymous memory has no file to look for.
        if vma.mapping == 0 || vma.ino == 0 {
            return None;
        }
        let roots = &self.roots;
        self.by_inode.entry((vma.dev, vma.ino)).or_insert_with(|| find_by_inode(roots, vma.dev, vma.ino)).clone()
    }
}

/// Path of the mapping containing `start` in /proc/PID/maps (None if the process or the
/// mapping is gone, or it is anonymous).
fn proc_maps_path(tgid: u32, start: u64) -> Option<String> {
    let maps = procfs::process::Process::new(tgid as i32).ok()?.maps().ok()?;
    let map = maps.into_iter().find(|m| m.address.0 <= start && start < m.address.1)?;
    match map.pathname {
        procfs::process::MMapPath::Path(p) => Some(p.display().to_string()),
        procfs::process::MMapPath::Anonymous => None,
        other => Some(format!("{other:?}").to_lowercase()),
    }
}

/// The file whose filesystem is kernel device `kdev` (`s_dev`: major in the top 12 bits, minor in
/// the low 20) and whose inode is `ino`.
fn find_by_inode(roots: &SearchRoots, kdev: u32, ino: u64) -> Option<String> {
    let wanted = |path: &Path| {
        let Ok(meta) = std::fs::symlink_metadata(path) else { return false };
        meta.ino() == ino && libc::major(meta.dev()) == kdev >> 20 && libc::minor(meta.dev()) == kdev & 0xf_ffff
    };
    let mut budget = MAX_ENTRIES;
    if let Some(found) = search_dir(&roots.dev, DEV_DEPTH, &wanted, &mut budget) {
        return Some(found.display().to_string());
    }
    // /sys/bus/pci/devices/<bdf>/resource<N>[_wc]: the BARs user space maps.
    let devices = std::fs::read_dir(&roots.pci_devices).ok()?;
    devices.flatten().find_map(|device| {
        let files = std::fs::read_dir(device.path()).ok()?;
        files
            .flatten()
            .map(|f| f.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("resource")))
            .find(|p| wanted(p))
            .map(|p| std::fs::canonicalize(&p).unwrap_or(p).display().to_string())
    })
}

/// Depth-first search; symlinks are looked at, never followed (/dev/fd leads into /proc).
fn search_dir(dir: &Path, depth: usize, wanted: &dyn Fn(&Path) -> bool, budget: &mut usize) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut subdirs = Vec::new();
    for entry in entries.flatten() {
        if *budget == 0 {
            return None;
        }
        *budget -= 1;
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => subdirs.push(path),
            Ok(t) if !t.is_symlink() && wanted(&path) => return Some(path),
            _ => {}
        }
    }
    if depth == 0 {
        return None;
    }
    subdirs.into_iter().find_map(|sub| search_dir(&sub, depth - 1, wanted, budget))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's encoding of a userspace `st_dev`.
    fn kernel_dev(dev: u64) -> u32 {
        (libc::major(dev) << 20) | libc::minor(dev)
    }

    fn vma_of(file: &Path) -> VmaInfo {
        let meta = std::fs::metadata(file).unwrap();
        // A start no process maps: /proc/PID/maps has no entry, the inode search must answer.
        VmaInfo {
            start: 0x1000,
            end: 0x2000,
            mapping: 0xffff_8880_0000_1000,
            ino: meta.ino(),
            dev: kernel_dev(meta.dev()),
            ..Default::default()
        }
    }

    #[test]
    fn a_gone_process_mapping_is_found_by_device_and_inode() {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("dev");
        std::fs::create_dir_all(dev.join("dri/by-path")).unwrap();
        let node = dev.join("dri/card0");
        std::fs::write(&node, b"").unwrap();
        std::fs::write(dev.join("decoy"), b"").unwrap();
        std::os::unix::fs::symlink(&node, dev.join("dri/by-path/pci-0000:00:02.0-card")).unwrap();
        let mut paths = FilePaths::with_roots(SearchRoots { dev: dev.clone(), pci_devices: root.path().join("none") });
        assert_eq!(paths.path(u32::MAX, &vma_of(&node)), Some(node.display().to_string()));
    }

    /// /sys/bus/pci/devices/<bdf> is a symlink into /sys/devices; /proc/PID/maps names the BAR by
    /// the real path, and so must the inode search.
    #[test]
    fn a_pci_bar_found_through_the_bus_symlink_is_named_by_its_canonical_path() {
        let root = tempfile::tempdir().unwrap();
        let device = root.path().join("devices/pci0000:00/0000:00:05.0");
        std::fs::create_dir_all(&device).unwrap();
        let bar = device.join("resource0");
        std::fs::write(&bar, b"").unwrap();
        let bus = root.path().join("bus/pci/devices");
        std::fs::create_dir_all(&bus).unwrap();
        std::os::unix::fs::symlink("../../../devices/pci0000:00/0000:00:05.0", bus.join("0000:00:05.0")).unwrap();
        let mut paths = FilePaths::with_roots(SearchRoots { dev: root.path().join("none"), pci_devices: bus });
        let found = paths.path(u32::MAX, &vma_of(&bar)).unwrap();
        assert_eq!(found, std::fs::canonicalize(&bar).unwrap().display().to_string());
        assert!(found.ends_with("/devices/pci0000:00/0000:00:05.0/resource0"), "{found}");
    }

    #[test]
    fn pci_bar_files_are_searched_and_anonymous_or_unknown_inodes_have_no_path() {
        let root = tempfile::tempdir().unwrap();
        let bdf = root.path().join("pci/0000:00:02.0");
        std::fs::create_dir_all(&bdf).unwrap();
        let bar = bdf.join("resource0");
        std::fs::write(&bar, b"").unwrap();
        let config = bdf.join("config");
        std::fs::write(&config, b"").unwrap();
        let mut paths = FilePaths::with_roots(SearchRoots { dev: root.path().join("none"), pci_devices: root.path().join("pci") });
        let canonical = std::fs::canonicalize(&bar).unwrap();
        assert_eq!(paths.path(u32::MAX, &vma_of(&bar)), Some(canonical.display().to_string()));
        assert_eq!(paths.path(u32::MAX, &vma_of(&config)), None, "only resource files are PCI BARs");
        let anonymous = VmaInfo { mapping: 0, ..vma_of(&bar) };
        assert_eq!(paths.path(u32::MAX, &anonymous), None);
    }
}
