//! Paths of mapped files as the kernel named them: the eBPF side sends the dentry names of a file
//! once, when its vma first becomes interesting ([`FileNameEvent`]), and this module turns them
//! into the path a user knows, the filesystem's mount point from /proc/self/mountinfo followed by
//! the names. Unlike /proc/PID/maps this works after the process is gone, and it gives one
//! canonical name per file (`/sys/devices/pci0000:00/0000:00:05.0/resource0`, never the
//! `/sys/bus/pci/devices/...` symlink), so fingerprints stay the same from run to run.
//! Filesystems mounted nowhere (anonymous inodes, vfio's device inodes) are named like /proc does:
//! `anon_inode:[vfio-device]`, or `<fstype>:<name>` for other pseudo filesystems.
use std::collections::HashMap;

use auditor_common::{FILE_NAME_DEPTH, FileNameEvent};

/// Mount points by kernel device number (`major << 20 | minor`), for mounts of a filesystem's
/// root ("/" in mountinfo's fourth field).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mounts(HashMap<u32, String>);

impl Mounts {
    /// Reads /proc/self/mountinfo; an unreadable file gives no mounts (paths then fall back).
    pub fn read() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// `36 35 0:21 / /sys rw,nosuid - sysfs sysfs rw`: the first mount of each device wins.
    pub fn parse(text: &str) -> Self {
        let mut mounts = HashMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(dev), Some(root), Some(point)) = (fields.get(2), fields.get(3), fields.get(4)) else { continue };
            let Some((major, minor)) = dev.split_once(':') else { continue };
            let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else { continue };
            if *root == "/" {
                mounts.entry(major << 20 | minor).or_insert_with(|| unescape(point));
            }
        }
        Self(mounts)
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Paths of watched vmas named by the kernel, by vma pointer (forgotten when the vma is freed).
#[derive(Debug, Default)]
pub struct KernelFileNames {
    mounts: Mounts,
    by_vma: HashMap<u64, String>,
}

impl KernelFileNames {
    pub fn new(mounts: Mounts) -> Self {
        Self { mounts, by_vma: HashMap::new() }
    }

    pub fn learn(&mut self, e: &FileNameEvent) {
        if let Some(path) = self.path_of(e) {
            self.by_vma.insert(e.vma, path);
        }
    }

    pub fn forget(&mut self, vma: u64) {
        self.by_vma.remove(&vma);
    }

    pub fn get(&self, vma: u64) -> Option<&str> {
        self.by_vma.get(&vma).map(String::as_str)
    }

    /// The user-facing path of the named file; `None` when the record names nothing.
    pub fn path_of(&self, e: &FileNameEvent) -> Option<String> {
        let depth = (e.depth as usize).min(FILE_NAME_DEPTH);
        if depth == 0 || e.complete == 0 {
            return None; // a path cut short is no path: /proc or the inode search name it
        }
        let names: Vec<String> = e.names[..depth].iter().rev().map(|n| c_string(n)).collect();
        let relative = names.join("/");
        Some(match self.mounts.0.get(&e.dev) {
            Some(point) => format!("{}/{relative}", point.trim_end_matches('/')),
            None => match c_string(&e.fs_type).as_str() {
                "anon_inodefs" => format!("anon_inode:{relative}"),
                "" => relative,
                fs => format!("{fs}:{relative}"),
            },
        })
    }
}

fn c_string(bytes: &[u8]) -> String {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditor_common::{FILE_NAME_LEN, Header};

    fn record(dev: u32, fs: &str, names_leaf_first: &[&str]) -> FileNameEvent {
        let mut e = FileNameEvent {
            hdr: Header::default(),
            vma: 0x1000,
            dev,
            depth: names_leaf_first.len() as u32,
            complete: 1,
            _pad: 0,
            fs_type: [0; 16],
            names: [[0; FILE_NAME_LEN]; FILE_NAME_DEPTH],
        };
        e.fs_type[..fs.len()].copy_from_slice(fs.as_bytes());
        for (slot, name) in e.names.iter_mut().zip(names_leaf_first) {
            slot[..name.len()].copy_from_slice(name.as_bytes());
        }
        e
    }

    const MOUNTINFO: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
23 1 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=4096k
30 23 0:5 /pts /dev/pts rw - devtmpfs udev rw
31 1 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn a_pci_bar_file_is_named_under_its_sysfs_mount_point() {
        let names = KernelFileNames::new(Mounts::parse(MOUNTINFO));
        let e = record(21, "sysfs", &["resource0", "0000:00:05.0", "pci0000:00", "devices"]);
        assert_eq!(names.path_of(&e).as_deref(), Some("/sys/devices/pci0000:00/0000:00:05.0/resource0"));
    }

    #[test]
    fn device_nodes_and_escaped_mount_points() {
        let names = KernelFileNames::new(Mounts::parse(MOUNTINFO));
        assert_eq!(names.path_of(&record(5, "devtmpfs", &["pfnaudit"])).as_deref(), Some("/dev/pfnaudit"));
        assert_eq!(names.path_of(&record(40, "tmpfs", &["f"])).as_deref(), Some("/mnt/with space/f"));
    }

    #[test]
    fn unmounted_pseudo_filesystems_are_named_like_proc_does() {
        let names = KernelFileNames::new(Mounts::parse(MOUNTINFO));
        assert_eq!(names.path_of(&record(13, "anon_inodefs", &["[vfio-device]"])).as_deref(), Some("anon_inode:[vfio-device]"));
        assert_eq!(names.path_of(&record(77, "vfio", &["[vfio-device]"])).as_deref(), Some("vfio:[vfio-device]"));
        assert_eq!(names.path_of(&record(77, "vfio", &[])), None);
    }

    #[test]
    fn a_path_deeper_than_the_record_is_not_passed_off_as_complete() {
        let names = KernelFileNames::new(Mounts::parse(MOUNTINFO));
        let mut e = record(21, "sysfs", &["resource0", "0000:05:00.0", "0000:04:01.0", "pci0000:00"]);
        e.complete = 0;
        assert_eq!(names.path_of(&e), None);
    }

    #[test]
    fn names_are_kept_per_vma_until_it_is_freed() {
        let mut names = KernelFileNames::new(Mounts::parse(MOUNTINFO));
        names.learn(&record(5, "devtmpfs", &["card0", "dri"]));
        assert_eq!(names.get(0x1000), Some("/dev/dri/card0"));
        names.forget(0x1000);
        assert_eq!(names.get(0x1000), None);
    }
}
