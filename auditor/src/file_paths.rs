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
pub(crate) struct SearchRoots {
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
pub(crate) struct FilePaths {
    roots: SearchRoots,
    /// (kernel dev, inode) → path, including the misses.
    by_inode: HashMap<(u32, u64), Option<String>>,
}

impl FilePaths {
    #[cfg(test)]
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
    let maps = std::fs::File::open(format!("/proc/{tgid}/maps")).ok()?;
    path_in_maps(std::io::BufReader::new(maps), start)
}

/// The path of the mapping containing `start` in /proc/PID/maps text: `None` when no mapping
/// contains `start` or it is anonymous; a pseudo path without its brackets (`[stack]` → `stack`).
/// Lines that do not parse are skipped. Fuzzed (`fuzz/`): never panics on any text.
///
/// Parsed here rather than by procfs, the crate this used: its parser (procfs-core 0.18
/// `MMapPath::from`) panics on the mapping of a file whose path starts with `/SYSV` and is
/// shorter than 13 bytes, which any process able to create such a file could make the daemon
/// read; and only two fields are needed (`start-end perms offset dev inode   path`, proc(5)).
pub fn path_in_maps(maps: impl std::io::BufRead, start: u64) -> Option<String> {
    for line in maps.split(b'\n') {
        let line = line.ok()?;
        let line = String::from_utf8_lossy(&line);
        let mut fields = line.splitn(6, ' ');
        let Some((low, high)) = fields.next().and_then(|range| range.split_once('-')) else { continue };
        let (Ok(low), Ok(high)) = (u64::from_str_radix(low, 16), u64::from_str_radix(high, 16)) else { continue };
        if !(low <= start && start < high) {
            continue;
        }
        // perms, offset, dev and inode, then the path padded with spaces (none when anonymous).
        let path = fields.nth(4).unwrap_or_default().trim_start();
        return match path.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
            _ if path.is_empty() => None,
            Some(pseudo) => Some(pseudo.to_string()),
            None => Some(path.to_string()),
        };
    }
    None
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

    const MAPS: &str = "\
55d0c8a00000-55d0c8a02000 r--p 00000000 fe:01 1835018                    /usr/bin/pfnaudit-scenario
7f3a10000000-7f3a10004000 rw-s 00000000 00:05 412                        /dev/pfnaudit
7f3a10004000-7f3a10025000 rw-p 00000000 00:00 0 
7ffd5e3c1000-7ffd5e3e2000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn proc_maps_text_names_the_mapping_containing_an_address() {
        let at = |start: u64| path_in_maps(MAPS.as_bytes(), start);
        assert_eq!(at(0x7f3a_1000_1000).as_deref(), Some("/dev/pfnaudit"));
        assert_eq!(at(0x7f3a_1000_4000), None, "anonymous: the end of /dev/pfnaudit's range is not in it");
        assert_eq!(at(0x7ffd5e3c1000).as_deref(), Some("stack"));
        assert_eq!(at(0x1000), None, "no mapping there");
        assert_eq!(path_in_maps(&b"7f3a10000000 garbage\n"[..], 0x7f3a_1000_0000), None, "text that does not parse names nothing");
    }

    /// Found by fuzzing (`fuzz/`, target `proc_maps`): procfs, which parsed these lines before,
    /// panicked on a file named like a SysV shared memory segment but shorter.
    #[test]
    fn a_mapped_file_named_like_sysv_shared_memory_is_named_not_a_panic() {
        let maps = b"7f3a10000000-7f3a10004000 rw-s 00000000 fe:01 77 /SYSV\n";
        assert_eq!(path_in_maps(&maps[..], 0x7f3a_1000_0000).as_deref(), Some("/SYSV"));
        let shm = b"7f3a10000000-7f3a10004000 rw-s 00000000 00:01 32769 /SYSV00000000 (deleted)\n";
        assert_eq!(path_in_maps(&shm[..], 0x7f3a_1000_0000).as_deref(), Some("/SYSV00000000 (deleted)"));
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
