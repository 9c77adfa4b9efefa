//! Where records go. Each output is one [`crate::pipeline::Sink`]: the NDJSON stream, human text on
//! stderr, JUnit and SARIF reports written at the end, Prometheus metrics. A new output is one file
//! here plus one line where `main.rs` picks the sinks.
pub mod human;
pub mod junit;
pub mod metrics;
pub mod ndjson;
pub mod output_file;
pub mod sarif;

use std::{
    fs::File,
    io::{Seek, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
};

/// Opens a file output (`--output`, `--junit`, `--sarif`) for writing, the one way every output
/// file is opened. The rule (README "Safe outputs"):
/// - a new file is created with mode 0600;
/// - a symbolic link at the final path component is refused (`O_NOFOLLOW`), its target untouched;
/// - an existing regular file or FIFO owned by another user is refused, untouched (a file planted
///   in a shared directory is not ours to truncate or to feed);
/// - an existing regular file of the running user is truncated, as before;
/// - devices (`/dev/null`, `/dev/full`) are written as they are.
///
/// The checks are made on the opened descriptor (`fstat`), so the file cannot be swapped between
/// the check and the write. A refusal is an `io::Error` whose text says why; the caller names the
/// output (exit code 5).
pub fn open_output(path: &Path) -> std::io::Result<File> {
    open_checked(path, Existing::Truncate)
}

/// [`open_output`]'s rule, but an existing regular file of the running user is appended to, not
/// truncated: how an output is reopened on SIGHUP, when whoever sent it may or may not have moved
/// the file away (records already in it are kept).
pub(crate) fn reopen_output(path: &Path) -> std::io::Result<File> {
    open_checked(path, Existing::Append)
}

/// What [`open_checked`] does to an existing regular file of the running user.
#[derive(Clone, Copy, PartialEq)]
enum Existing {
    Truncate,
    Append,
}

fn open_checked(path: &Path, existing: Existing) -> std::io::Result<File> {
    // Before opening too: opening a FIFO for writing blocks until someone reads it, and a FIFO
    // planted by another user must not hold the run up.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        refuse_foreign(&meta)?;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .append(existing == Existing::Append)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refused("refusing to write through a symbolic link"),
            _ => about_the_directory(path, e),
        })?;
    let meta = file.metadata()?;
    refuse_foreign(&meta)?;
    if meta.file_type().is_file() && existing == Existing::Truncate {
        file.set_len(0)?;
    }
    Ok(file)
}

/// A regular file or FIFO of another user is not ours to truncate or feed.
fn refuse_foreign(meta: &std::fs::Metadata) -> std::io::Result<()> {
    let kind = meta.file_type();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if (kind.is_file() || std::os::unix::fs::FileTypeExt::is_fifo(&kind)) && meta.uid() != me {
        return Err(refused(&format!("refusing to write to a file owned by uid {} (running as uid {me})", meta.uid())));
    }
    Ok(())
}

/// An error that is the directory's, said about the directory (the output's name is said by the
/// caller): "directory /x does not exist" rather than "No such file or directory (os error 2)".
fn about_the_directory(path: &Path, e: std::io::Error) -> std::io::Error {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let why = match e.raw_os_error() {
        Some(libc::ENOENT) if !parent.exists() => format!("directory {} does not exist", parent.display()),
        Some(libc::ENOTDIR) => format!("{} is not a directory", parent.display()),
        Some(libc::EACCES) if std::fs::symlink_metadata(path).is_err() => {
            format!("no permission to create a file in directory {}", parent.display())
        }
        Some(libc::EROFS) => format!("directory {} is on a read-only file system", parent.display()),
        _ => return e,
    };
    std::io::Error::new(e.kind(), why)
}

/// Refuses two outputs of one run on the same file (`--output x --junit x`: each would truncate
/// and overwrite the other), and an output on the run's input (`replay r.ndjson --output
/// r.ndjson` would empty the recording before reading it). Paths are compared made absolute and,
/// when both exist, by device and inode (a hard link or `./x` is the same file). Character
/// devices (`/dev/null` twice) may be shared. `outputs` are (name, path) as the output errors name
/// them (`JUnit report out.xml`); the error names the second of a pair and says the first.
pub fn refuse_shared_paths(input: Option<&Path>, outputs: &[(String, &Path)]) -> Result<(), crate::pipeline::OutputError> {
    let key = |path: &Path| {
        let meta = std::fs::metadata(path).ok();
        if meta.as_ref().is_some_and(|m| std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type())) {
            return None;
        }
        Some((std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()), meta.map(|m| (m.dev(), m.ino()))))
    };
    let same = |a: &(std::path::PathBuf, Option<(u64, u64)>), b: &(std::path::PathBuf, Option<(u64, u64)>)| {
        a.0 == b.0 || (a.1.is_some() && a.1 == b.1)
    };
    let input = input.map(|p| (format!("input {}", p.display()), p));
    let all: Vec<(String, &Path)> = input.into_iter().chain(outputs.iter().map(|(n, p)| (n.clone(), *p))).collect();
    for (i, (name, path)) in all.iter().enumerate() {
        let Some(k) = key(path) else { continue };
        if let Some((first, _)) = all[..i].iter().find(|(_, earlier)| key(earlier).is_some_and(|e| same(&e, &k))) {
            return Err(crate::pipeline::OutputError {
                output: name.clone(),
                error: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("it is the same file as the {first}")),
            });
        }
    }
    Ok(())
}

fn refused(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, why.to_string())
}

/// Writes a report whole into `file` (opened by [`open_output`] at the start of the run), from
/// its start, and syncs it when it is a regular file (a full disk can show only at `fsync`).
pub(crate) fn write_report(file: &mut File, text: &str) -> std::io::Result<()> {
    let regular = file.metadata()?.file_type().is_file();
    if regular {
        file.set_len(0)?;
        file.rewind()?;
    }
    file.write_all(text.as_bytes())?;
    file.flush()?;
    if regular {
        file.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_output_is_created_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.ndjson");
        let mut file = open_output(&path).unwrap();
        file.write_all(b"x").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn an_existing_own_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.xml");
        std::fs::write(&path, "a much longer previous report").unwrap();
        let mut file = open_output(&path).unwrap();
        write_report(&mut file, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let link = dir.path().join("out.sarif");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = open_output(&link).unwrap_err();
        assert_eq!(err.to_string(), "refusing to write through a symbolic link");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        // A dangling link is not followed either: nothing is created at its target.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("absent"), &dangling).unwrap();
        assert!(open_output(&dangling).is_err());
        assert!(!dir.path().join("absent").exists());
    }

    #[test]
    fn a_file_owned_by_another_user_is_refused_and_untouched() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to chown a file to another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("planted.ndjson");
        std::fs::write(&path, "planted").unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let err = open_output(&path).unwrap_err();
        assert_eq!(err.to_string(), "refusing to write to a file owned by uid 65534 (running as uid 0)");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "planted");
        // A FIFO of another user is refused before it is opened (opening it would block).
        let fifo = dir.path().join("planted.fifo");
        let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(fifo.as_os_str())).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        std::os::unix::fs::chown(&fifo, Some(65534), Some(65534)).unwrap();
        assert!(open_output(&fifo).unwrap_err().to_string().starts_with("refusing to write to a file owned by uid 65534"));
    }

    #[test]
    fn a_reopened_output_keeps_what_is_in_it_and_follows_the_same_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ndjson");
        std::fs::write(&path, "{\"a\":1}\n").unwrap();
        let mut file = reopen_output(&path).unwrap();
        file.write_all(b"{\"b\":2}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
        let link = dir.path().join("link.ndjson");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(reopen_output(&link).unwrap_err().to_string(), "refusing to write through a symbolic link");
    }

    #[test]
    fn a_missing_or_unwritable_directory_is_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir/run.ndjson");
        assert_eq!(
            open_output(&missing).unwrap_err().to_string(),
            format!("directory {} does not exist", dir.path().join("no-such-dir").display())
        );
        let file = dir.path().join("plain");
        std::fs::write(&file, "").unwrap();
        assert_eq!(open_output(&file.join("run.ndjson")).unwrap_err().to_string(), format!("{} is not a directory", file.display()));
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let locked = dir.path().join("locked");
            std::fs::create_dir(&locked).unwrap();
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
            let err = open_output(&locked.join("run.ndjson")).unwrap_err();
            assert_eq!(err.to_string(), format!("no permission to create a file in directory {}", locked.display()));
        }
    }

    #[test]
    fn two_outputs_on_one_file_or_an_output_on_the_input_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report");
        let junit = ("JUnit report report".to_string(), report.as_path());
        let err = refuse_shared_paths(None, &[junit.clone(), ("SARIF report report".into(), report.as_path())]).unwrap_err();
        assert_eq!(err.to_string(), "cannot write the SARIF report report: it is the same file as the JUnit report report");
        // A hard link of an existing file is the same file too.
        std::fs::write(&report, "").unwrap();
        let link = dir.path().join("link");
        std::fs::hard_link(&report, &link).unwrap();
        assert!(refuse_shared_paths(None, &[junit.clone(), ("NDJSON output link".into(), link.as_path())]).is_err());
        let recording = dir.path().join("run.ndjson");
        let err = refuse_shared_paths(Some(&recording), &[("NDJSON output run.ndjson".into(), recording.as_path())]).unwrap_err();
        assert!(err.to_string().ends_with(&format!("it is the same file as the input {}", recording.display())), "{err}");
        let other = dir.path().join("other");
        assert!(refuse_shared_paths(Some(&recording), &[junit, ("SARIF report other".into(), other.as_path())]).is_ok());
        let null = Path::new("/dev/null");
        assert!(refuse_shared_paths(None, &[("JUnit report /dev/null".into(), null), ("SARIF report /dev/null".into(), null)]).is_ok());
    }

    #[test]
    fn devices_are_written_as_they_are() {
        let mut null = open_output(Path::new("/dev/null")).unwrap();
        write_report(&mut null, "nothing").unwrap();
        let mut full = open_output(Path::new("/dev/full")).unwrap();
        assert_eq!(write_report(&mut full, "x").unwrap_err().raw_os_error(), Some(libc::ENOSPC));
    }
}
