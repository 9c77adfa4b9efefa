//! The NDJSON output as a log collector meets it: rotated by size (`--output-max-mib`,
//! `--output-keep`) and reopened on SIGHUP after logrotate moved it, while a reader follows the
//! file. Every record must reach the reader exactly once and whole.
use std::{
    collections::BTreeMap,
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use auditor::{correlate::synthetic::Fleet, vocab::record::Record};

fn auditor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pfn-auditor"))
}

/// A fleet recording (`run --events` lines) of `pins` pins: 7 × pins events, ~600 bytes each.
fn recording(dir: &Path, pins: u64) -> PathBuf {
    let fleet = Fleet::new(pins);
    let mut text = String::new();
    for event in (0..).map_while(|n| fleet.event(n, 4 * pins)) {
        text += &serde_json::to_string(&Record::Event(event)).unwrap();
        text.push('\n');
    }
    text += &serde_json::to_string(&Record::Summary(Default::default())).unwrap();
    text.push('\n');
    let path = dir.join("recording.ndjson");
    std::fs::write(&path, text).unwrap();
    path
}

/// What `replay FILE --output` writes without rotation: the records the follower must see.
fn unrotated(recording: &Path, dir: &Path) -> Vec<String> {
    let out = dir.join("whole.ndjson");
    let status = auditor().arg("replay").arg(recording).arg("--output").arg(&out).status().unwrap();
    assert!(status.success());
    std::fs::read_to_string(out).unwrap().lines().map(str::to_owned).collect()
}

/// Follows `BASE` and its rotations `BASE.N` the way a log collector's file receiver does: each
/// file known by its identity (inode), read on from where it was left, a line taken only once its
/// newline is there. Files are ordered as they came: first seen first, and among files first seen
/// in the same pass, the oldest rotation first.
#[derive(Default)]
struct Follower {
    files: BTreeMap<u64, Followed>,
    passes: u64,
}

struct Followed {
    /// (pass first seen, age rank within that pass: older rotations first).
    order: (u64, i64),
    offset: u64,
    partial: Vec<u8>,
    lines: Vec<String>,
}

impl Follower {
    fn pass(&mut self, base: &Path) {
        self.passes += 1;
        let dir = base.parent().unwrap();
        let name = base.file_name().unwrap().to_str().unwrap();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            // BASE is the newest (rank 0), BASE.N older the larger N.
            let rank: i64 = match file_name.strip_prefix(name) {
                Some("") => 0,
                Some(rest) => match rest.strip_prefix('.').and_then(|n| n.parse::<i64>().ok()) {
                    Some(n) => -n,
                    None => continue,
                },
                None => continue,
            };
            // The file may be renamed between listing and opening: then it is read in a later pass.
            let Ok(mut file) = std::fs::File::open(entry.path()) else { continue };
            let inode = file.metadata().unwrap().ino();
            let passes = self.passes;
            let followed = self.files.entry(inode).or_insert_with(|| Followed {
                order: (passes, rank),
                offset: 0,
                partial: Vec::new(),
                lines: Vec::new(),
            });
            file.seek(SeekFrom::Start(followed.offset)).unwrap();
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).unwrap();
            followed.offset += bytes.len() as u64;
            followed.partial.extend_from_slice(&bytes);
            while let Some(end) = followed.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = followed.partial.drain(..=end).collect();
                followed.lines.push(String::from_utf8(line[..end].to_vec()).expect("a whole UTF-8 line"));
            }
        }
    }

    /// Every line read, file after file in the order they came; and whatever was left without
    /// its newline.
    fn lines(&self) -> (Vec<String>, usize) {
        let mut files: Vec<&Followed> = self.files.values().collect();
        files.sort_by_key(|f| f.order);
        let partial = files.iter().map(|f| f.partial.len()).sum();
        (files.into_iter().flat_map(|f| f.lines.iter().cloned()).collect(), partial)
    }
}

#[test]
fn a_follower_reads_every_record_once_and_whole_across_size_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let recording = recording(dir.path(), 1500);
    let expected = unrotated(&recording, dir.path());
    let base = dir.path().join("out.ndjson");
    let mut replay = auditor()
        .arg("replay")
        .arg(&recording)
        .arg("--output")
        .arg(&base)
        .args(["--output-max-mib", "1", "--output-keep", "100"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut follower = Follower::default();
    let status = loop {
        follower.pass(&base);
        if let Some(status) = replay.try_wait().unwrap() {
            break status;
        }
    };
    follower.pass(&base);
    let mut stderr = String::new();
    replay.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{stderr}");

    let (lines, partial) = follower.lines();
    assert_eq!(partial, 0, "a record was left without its end");
    assert_eq!(lines.len(), expected.len(), "records lost or duplicated across rotations");
    assert!(lines == expected, "the follower read the records in another order or changed");
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).expect("every record is whole JSON");
    }
    let rotated: Vec<u64> =
        (1..=100).map_while(|n| std::fs::metadata(dir.path().join(format!("out.ndjson.{n}"))).ok()).map(|m| m.len()).collect();
    assert!(rotated.len() >= 3, "{} records made only {} rotations", expected.len(), rotated.len());
    assert!(rotated.iter().all(|&len| len <= 1 << 20), "a rotated file is over 1 MiB: {rotated:?}");
    assert_eq!(follower.files.len(), rotated.len() + 1, "every rotated file and the current one were followed");
}

#[test]
fn sighup_after_logrotate_moved_the_output_continues_in_a_new_file_losing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let recording = recording(dir.path(), 200);
    let expected = unrotated(&recording, dir.path());
    let text = std::fs::read_to_string(&recording).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);

    // The recording comes through a FIFO, so the replay is still running when logrotate acts.
    let fifo = dir.path().join("recording.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let base = dir.path().join("out.ndjson");
    let mut replay = auditor().arg("replay").arg(&fifo).arg("--output").arg(&base).stderr(Stdio::piped()).spawn().unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    for line in first {
        writeln!(writer, "{line}").unwrap();
    }
    writer.flush().unwrap();
    // Event records are buffered (64 KiB): wait until the first half has reached the file.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&base).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "nothing written from the first half within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }

    // logrotate: move the file away, then SIGHUP (its `postrotate` step).
    let moved = dir.path().join("out.ndjson.1");
    std::fs::rename(&base, &moved).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(replay.id() as i32, libc::SIGHUP) }, 0);
    for line in second {
        writeln!(writer, "{line}").unwrap();
    }
    drop(writer);
    let status = replay.wait().unwrap();
    let mut stderr = String::new();
    replay.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "SIGHUP must not end the run: {status:?} {stderr}");

    let old = std::fs::read_to_string(&moved).unwrap();
    let new = std::fs::read_to_string(&base).expect("SIGHUP reopened the path: a new file is there");
    assert!(old.ends_with('\n') && !new.is_empty(), "both files hold whole records");
    let got: Vec<&str> = old.lines().chain(new.lines()).collect();
    assert_eq!(got.len(), expected.len(), "records lost or duplicated across the reopen");
    assert!(got == expected, "the two files together are not the unrotated output");
    assert!(new.lines().last().unwrap().contains("\"type\":\"summary\""));
}

#[test]
fn rotation_without_a_file_or_of_a_device_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let recording = recording(dir.path(), 1);
    let out = auditor().arg("replay").arg(&recording).args(["--output-max-mib", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "pfn-auditor: --output-max-mib needs --output FILE (stdout cannot be rotated)\n");
    let out = auditor().arg("replay").arg(&recording).args(["--output", "/dev/null", "--output-max-mib", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "pfn-auditor: cannot write the NDJSON output /dev/null: only a regular file can be rotated (not a device or FIFO)\n"
    );
    let out = auditor().arg("replay").arg(&recording).args(["--output", "x", "--output-max-mib", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a zero size is a usage error");
    // 2^44 MiB is 2^64 bytes: it must not wrap to a size of 0 (or to a small one).
    let out = auditor().arg("replay").arg(&recording).args(["--output", "x", "--output-max-mib", "17592186044416"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stderr).unwrap().starts_with("error: invalid value '17592186044416' for '--output-max-mib <MiB>'"));
}
