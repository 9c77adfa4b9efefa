//! One auditing instance at a time where two would corrupt each other's stacks (kernels before
//! 5.14: [`crate::probes::table::instances_coexist`]). The lock is an advisory `flock` on
//! [`LOCK_PATH`], taken before anything is attached and held for the process's life; the kernel
//! drops it when the process ends, `kill -9` included, so a file left behind never blocks a
//! restart. On 5.14 and later nothing is locked: instances coexist (README "Several instances").
use std::{
    fs::File,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
};

use crate::probes::{kernel_version::KernelVersion, table::instances_coexist};

/// The lock file every instance on such a kernel locks (`run`, `gate`, and `doctor` when it
/// attaches its hooks as a test).
pub const LOCK_PATH: &str = "/run/pfn-auditor.lock";

/// Held while it lives (the file's `flock`, released when it is dropped or the process ends).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Why the lock could not be taken: setup errors (exit code 2, docs/exit-codes.md).
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it; `pid` as /proc/locks names it.
    #[error(
        "another pfn-auditor{} is running, and on Linux {kernel} (before 5.14) a second one would corrupt its kernel stacks (their return probes): stop it first (lock {path})",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Busy { pid: Option<u32>, kernel: String, path: String },
    /// The file could not be opened or locked; the I/O error is part of the message (said once).
    #[error("cannot take the instance lock {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

impl InstanceLock {
    /// Takes the lock on `path` without waiting; `kernel` (the release) is for the message. The
    /// file is created (0644) when missing, and opened read-only, which `flock` needs no more
    /// than: a file that exists is lockable in a read-only `/run` too (a systemd sandbox).
    pub fn take(path: &Path, kernel: &str) -> Result<Self, LockError> {
        let io = |error| LockError::Io { path: path.display().to_string(), error };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .create(true)
            // `create` needs write or append access in std's checks; append writes nothing here.
            .append(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .or_else(|e| match e.raw_os_error() {
                // A read-only file system (the sandbox) with the file already there.
                Some(libc::EROFS) => std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path),
                _ => Err(e),
            })
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                let meta = file.metadata().map_err(io)?;
                let pid = std::fs::read_to_string("/proc/locks").ok().and_then(|text| holder(&text, meta.dev(), meta.ino()));
                Err(LockError::Busy { pid, kernel: kernel.to_string(), path: path.display().to_string() })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

/// For an instance about to attach on `version` (`release` for the message): the lock where
/// instances cannot coexist, `None` where they can.
pub fn for_kernel(version: KernelVersion, release: &str) -> Result<Option<InstanceLock>, LockError> {
    if instances_coexist(version) {
        return Ok(None);
    }
    InstanceLock::take(Path::new(LOCK_PATH), release).map(Some)
}

/// The pid holding a `flock` on the file (`dev`, `ino`) in /proc/locks text, whose lines read
/// `1: FLOCK  ADVISORY  WRITE 2279 00:19:1127 0 EOF` (pid, then major:minor in hex and the inode;
/// fs/locks.c `lock_get_status`); waiters (`->`) are skipped.
fn holder(proc_locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let file = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    proc_locks.lines().filter(|l| !l.contains("->")).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&file.as_str())).then(|| fields[4].parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_naming_the_holder_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pfn-auditor.lock");
        let first = InstanceLock::take(&path, "5.10.0-32-amd64").unwrap();
        let err = InstanceLock::take(&path, "5.10.0-32-amd64").unwrap_err();
        let me = std::process::id();
        assert_eq!(
            err.to_string(),
            format!(
                "another pfn-auditor (pid {me}) is running, and on Linux 5.10.0-32-amd64 (before 5.14) a second one would corrupt its kernel stacks (their return probes): stop it first (lock {})",
                path.display()
            )
        );
        drop(first);
        InstanceLock::take(&path, "5.10.0-32-amd64").expect("free again once the first is dropped");
    }

    /// `kill -9` of the holder frees the lock: the kernel drops a `flock` with its last descriptor.
    #[test]
    fn the_lock_of_a_killed_holder_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pfn-auditor.lock");
        // A shell that locks the file on descriptor 9 (util-linux flock(1)) and keeps it open.
        let mut holder =
            std::process::Command::new("sh").args(["-c", "exec 9<>\"$0\" && flock -n 9 && exec sleep 60"]).arg(&path).spawn().unwrap();
        let busy = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            matches!(InstanceLock::take(&path, "5.10"), Err(LockError::Busy { .. }))
        });
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(busy, "the shell never held the lock");
        InstanceLock::take(&path, "5.10").expect("free once its holder was killed");
    }

    #[test]
    fn a_lock_file_that_is_a_symbolic_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pfn-auditor.lock");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
        let err = InstanceLock::take(&path, "5.10").unwrap_err();
        assert!(err.to_string().starts_with(&format!("cannot take the instance lock {}: ", path.display())), "{err}");
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn the_holder_is_read_from_proc_locks() {
        let text = "1: POSIX  ADVISORY  WRITE 77 00:19:1127 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 2279 00:19:1127 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 3000 00:19:1127 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 4000 08:01:1127 0 EOF\n";
        let dev = libc::makedev(0, 0x19);
        assert_eq!(holder(text, dev, 1127), Some(2279));
        assert_eq!(holder(text, dev, 1128), None);
        assert_eq!(holder(text, libc::makedev(8, 1), 1127), Some(4000));
    }

    #[test]
    fn only_kernels_before_5_14_lock() {
        assert!(for_kernel(KernelVersion::new(6, 1), "6.1.0-50-amd64").unwrap().is_none());
    }
}
