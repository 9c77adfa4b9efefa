//! Where a record stream goes: a [`Destination`] takes whole records, so a file can be rotated
//! (`--output-max-mib`, `--output-keep`) or reopened (SIGHUP, logrotate's convention) only between
//! two records, never inside one. stdout is a destination that does neither.
//!
//! Rotation is logrotate's scheme, done by the writer: `run.ndjson` is renamed to `run.ndjson.1`
//! (`.1` to `.2`, …, the oldest past `keep` is replaced), then a new `run.ndjson` is opened through
//! [`super::open_output`]. A reader that follows the file as `tail -F` or a log collector does
//! (by inode or content fingerprint, over `run.ndjson*`) reads the old file to its end, every
//! record of which was written and flushed before the rename, then the new file from its start.
//! With rotation, a start rotates a non-empty file an earlier run left at the path the same way,
//! so restarts (a service's) keep at most `keep` old files as well.
use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

/// A record stream's output. `write_record` gets one whole record (its trailing newline
/// included); the `Write` half is for flushing.
pub trait Destination: Write {
    fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        self.write_all(record)
    }
    /// The run starts: a file kept whole until now is emptied (`super::begin_file`), or rotated
    /// away when it is rotated by size; a no-op where there is no file.
    fn begin(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// Reopens the output at its path (SIGHUP); a no-op where there is no path.
    fn reopen(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// Flushes and, for a regular file, `fsync`s (the end of a run: a full disk may show only here).
    fn sync(&mut self) -> std::io::Result<()> {
        self.flush()
    }
}

/// stdout and other unnamed streams: records are written as they come.
impl<W: Write> Destination for BufWriter<W> {}

/// `--output-max-mib` / `--output-keep`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated before the record that would take it past this many bytes (a record
    /// larger than this alone gets a file of its own).
    pub max_bytes: u64,
    /// Rotated files kept (`PATH.1` newest … `PATH.keep` oldest); at least 1.
    pub keep: u32,
}

/// A named output file, opened by [`super::open_output`], rotated by size and reopened on request.
pub struct OutputFile {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes in the current file: what was there when it was opened plus what was written since.
    size: u64,
    rotation: Option<Rotation>,
    /// A regular file (synced at the end; can be rotated), not a device or FIFO.
    regular: bool,
}

impl OutputFile {
    /// Opens `path` by [`super::open_output`]: an existing file of ours is kept as it is until
    /// the run starts ([`Destination::begin`]). Then, without `rotation`, it is emptied; with
    /// `rotation`, a non-empty one is rotated away by the same code and keep count as a rotation by
    /// size (it becomes `PATH.1`, …), so a restarted daemon (the service) keeps its previous runs'
    /// records within `keep` files, and a run that fails to start leaves every file whole.
    /// Rotation needs a regular file: a device or FIFO with `rotation` is refused (an
    /// `InvalidInput` error), without waiting for a FIFO's reader.
    pub fn create(path: &Path, rotation: Option<Rotation>) -> std::io::Result<Self> {
        let Some(r) = rotation else {
            return Self::wrap(path, super::open_output(path)?, None);
        };
        if r.keep == 0 || r.max_bytes == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "rotation needs a size and at least one file to keep"));
        }
        let file = super::open_output_as(path, super::OpenAs { append: false, regular_only: true })?;
        Self::wrap(path, file, rotation)
    }

    fn wrap(path: &Path, file: File, rotation: Option<Rotation>) -> std::io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(64 * 1024, file),
            size: meta.len(),
            rotation,
            regular: meta.file_type().is_file(),
        })
    }

    /// `PATH.n`: the nth newest rotated file.
    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Everything written so far is flushed and synced into the current file, which becomes
    /// `PATH.1` (older ones move up one, the oldest kept is replaced); a new `PATH` follows. When
    /// nothing is at `PATH` any more (someone moved or deleted the file without a SIGHUP), there
    /// is nothing to rotate: the new `PATH` is opened and the rotated files stay as they are.
    fn rotate(&mut self, keep: u32) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()?;
        if std::fs::symlink_metadata(&self.path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            return self.reopen();
        }
        for n in (1..keep).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        let mut file = super::open_output_as(&self.path, super::OpenAs { append: false, regular_only: true })?;
        // Planted between the rename and the open: not ours to keep.
        super::begin_file(&mut file)?;
        *self = Self::wrap(&self.path, file, self.rotation)?;
        Ok(())
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl Destination for OutputFile {
    fn begin(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if let Some(Rotation { keep, .. }) = self.rotation
            && self.size > 0
        {
            return self.rotate(keep);
        }
        super::begin_file(self.out.get_mut())?;
        self.size = 0;
        Ok(())
    }

    fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        if let Some(Rotation { max_bytes, keep }) = self.rotation
            && self.size > 0
            && self.size + record.len() as u64 > max_bytes
        {
            self.rotate(keep)?;
        }
        self.write_all(record)
    }

    /// What was written goes to the file open until now (flushed first, so nothing is left in the
    /// buffer); later records go to whatever is at the path now: a new file when logrotate moved
    /// the old one away, else the same file, appended to.
    fn reopen(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let file = super::open_output_as(&self.path, super::OpenAs { append: true, regular_only: self.rotation.is_some() })?;
        *self = Self::wrap(&self.path, file, self.rotation)?;
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if self.regular { self.out.get_ref().sync_all() } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn files_rotate_between_records_and_the_oldest_past_keep_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ndjson");
        let mut out = OutputFile::create(&path, Some(Rotation { max_bytes: 10, keep: 2 })).unwrap();
        for record in ["aaaa\n", "bbbb\n", "cccc\n", "dddddddddddd\n", "eeee\n", "ffff\n"] {
            out.write_record(record.as_bytes()).unwrap();
        }
        out.sync().unwrap();
        assert_eq!(read(&path), "eeee\nffff\n");
        assert_eq!(read(&dir.path().join("run.ndjson.1")), "dddddddddddd\n", "a record larger than the limit has a file of its own");
        assert_eq!(read(&dir.path().join("run.ndjson.2")), "cccc\n");
        assert!(!dir.path().join("run.ndjson.3").exists(), "keep = 2: aaaa/bbbb's file was replaced");
    }

    #[test]
    fn a_start_with_rotation_rotates_the_previous_file_within_the_keep_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ndjson");
        let rotation = Some(Rotation { max_bytes: 1 << 20, keep: 2 });
        for (run, before) in [("first\n", ""), ("second\n", "first\n"), ("third\n", "second\n")] {
            let mut out = OutputFile::create(&path, rotation).unwrap();
            assert_eq!(read(&path), before, "the previous run's file is kept until the run starts");
            out.begin().unwrap();
            assert_eq!(read(&path), "", "each run starts a new file");
            out.write_record(run.as_bytes()).unwrap();
            out.sync().unwrap();
        }
        assert_eq!(read(&path), "third\n");
        assert_eq!(read(&dir.path().join("run.ndjson.1")), "second\n");
        assert_eq!(read(&dir.path().join("run.ndjson.2")), "first\n");
        assert!(!dir.path().join("run.ndjson.3").exists(), "keep = 2 holds across restarts");
        // A run that fails to start (no begin) rotates nothing.
        drop(OutputFile::create(&path, rotation).unwrap());
        assert_eq!(read(&path), "third\n");
        // An empty file (a run that wrote nothing) is reused, not rotated.
        std::fs::write(&path, "").unwrap();
        OutputFile::create(&path, rotation).unwrap().begin().unwrap();
        assert_eq!(read(&dir.path().join("run.ndjson.1")), "second\n");
        // Without rotation a start truncates, as before.
        std::fs::write(&path, "old\n").unwrap();
        OutputFile::create(&path, None).unwrap().begin().unwrap();
        assert_eq!(read(&path), "");
        assert_eq!(read(&dir.path().join("run.ndjson.1")), "second\n");
    }

    #[test]
    fn reopen_writes_to_a_new_file_when_the_old_one_was_moved_and_appends_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ndjson");
        let mut out = OutputFile::create(&path, None).unwrap();
        out.write_record(b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        out.write_record(b"two\n").unwrap();
        out.reopen().unwrap();
        out.write_record(b"three\n").unwrap();
        out.reopen().unwrap();
        out.write_record(b"four\n").unwrap();
        out.sync().unwrap();
        assert_eq!(read(&dir.path().join("moved")), "one\ntwo\n", "buffered records go to the file they were written for");
        assert_eq!(read(&path), "three\nfour\n");
    }

    #[test]
    fn a_file_moved_or_deleted_without_sighup_is_replaced_at_the_next_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ndjson");
        let mut out = OutputFile::create(&path, Some(Rotation { max_bytes: 10, keep: 2 })).unwrap();
        out.write_record(b"aaaa\n").unwrap();
        out.write_record(b"bbbb\n").unwrap();
        out.write_record(b"cccc\n").unwrap();
        std::fs::rename(&path, dir.path().join("saved")).unwrap();
        out.write_record(b"dddd\n").unwrap();
        out.write_record(b"eeee\n").unwrap();
        out.flush().unwrap();
        assert_eq!(read(&path), "eeee\n", "a new file where the moved one was");
        std::fs::remove_file(&path).unwrap();
        out.write_record(b"ffff\n").unwrap();
        out.write_record(b"gggg\n").unwrap();
        out.sync().unwrap();
        assert_eq!(read(&dir.path().join("run.ndjson.1")), "aaaa\nbbbb\n");
        assert_eq!(read(&dir.path().join("saved")), "cccc\ndddd\n", "the moved file got its records up to the size limit");
        assert_eq!(read(&path), "gggg\n", "a new file where the deleted one was");
        assert!(!dir.path().join("run.ndjson.2").exists(), "nothing was at the path to rotate");
    }

    #[test]
    fn rotation_of_a_device_or_with_nothing_to_keep_is_refused() {
        let err = OutputFile::create(Path::new("/dev/null"), Some(Rotation { max_bytes: 1 << 20, keep: 1 })).err().unwrap();
        assert_eq!(err.to_string(), "only a regular file can be rotated (not a device or FIFO)");
        let dir = tempfile::tempdir().unwrap();
        assert!(OutputFile::create(&dir.path().join("x"), Some(Rotation { max_bytes: 1 << 20, keep: 0 })).is_err());
        assert!(!dir.path().join("x").exists());
    }
}
