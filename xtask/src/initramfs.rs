//! A minimal newc ("070701") cpio writer: the initramfs format the kernel unpacks at boot.
//! Written here instead of shelling out to cpio so device nodes need no root and the archive is
//! reproducible (fixed mtimes, owners and inode numbers).

use std::io::{self, Write};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

pub struct Cpio<W: Write> {
    out: W,
    next_ino: u32,
    written: usize,
}

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Self {
        Cpio { out, next_ino: 1, written: 0 }
    }

    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), b"")
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | mode, 1, (0, 0), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node, e.g. /dev/console (5, 1): init needs it before devtmpfs is mounted.
    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | 0o600, 1, (major, minor), b"")
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), b"")?;
        Ok(self.out)
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        let ino = if mode == 0 { 0 } else { self.next_ino };
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // checksum (unused by newc)
        ];
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len();
        Ok(())
    }

    /// newc aligns each header and each file body to 4 bytes.
    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - self.written % 4) % 4;
        self.put(&[0u8; 3][..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The system's cpio (GNU) must list and extract what we write, with contents intact.
    #[test]
    fn gnu_cpio_reads_back_files_links_and_dirs() {
        let mut cpio = Cpio::new(Vec::new());
        cpio.dir("bin").unwrap();
        cpio.file("/bin/hello", 0o755, b"odd-length body").unwrap();
        cpio.symlink("bin/sh", "hello").unwrap();
        let archive = cpio.finish().unwrap();
        assert_eq!(archive.len() % 4, 0);
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.cpio"), &archive).unwrap();
        let Ok(status) = Command::new("cpio").args(["-idm", "-F", "a.cpio"]).current_dir(&dir).status() else {
            eprintln!("cpio not installed (cargo xtask build installs it); skipping");
            return;
        };
        assert!(status.success());
        assert_eq!(std::fs::read(dir.join("bin/hello")).unwrap(), b"odd-length body");
        assert_eq!(std::fs::read_link(dir.join("bin/sh")).unwrap().to_str(), Some("hello"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
