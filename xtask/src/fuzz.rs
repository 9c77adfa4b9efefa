//! `cargo xtask fuzz --seconds N`: every cargo-fuzz target in `fuzz/` for N seconds each, one at a
//! time, from the committed seeds (`fuzz/seeds/<target>/`) plus seeds made here: ring-buffer
//! records of every kind (`auditor-common`'s structs) and the BTF of the host and of the test
//! kernels in .vm-cache, trimmed to the types pfn-auditor reads (`btf_trim.rs`). The corpus grows
//! in `fuzz/corpus/<target>/` (git-ignored) from run to run; a crash stops with the input libFuzzer
//! saved under `fuzz/artifacts/<target>/`. The BTF seed keeps only the members read; the
//! whole-member blobs are run once each before fuzzing (`fuzz/whole/btf/`). `--runs N` stops
//! after N executions. Ends with one line per target: executions reached.
use std::{
    collections::HashSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use auditor_common as common;

use crate::{btf_trim, setup, sh};

/// What one target reached.
pub struct Outcome {
    pub target: String,
    pub executions: u64,
    pub seconds: u64,
}

/// How long each target runs: seconds, executions, or whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    seconds: Option<u64>,
    runs: Option<u64>,
}

impl Budget {
    /// `--seconds`, `--runs`: 60 s when neither is given; `--runs` alone has no time limit.
    pub fn new(seconds: Option<u64>, runs: Option<u64>) -> Self {
        Self { seconds: seconds.or(if runs.is_some() { None } else { Some(60) }), runs }
    }

    /// libFuzzer's flags for it (`-max_total_time=0` is no time limit).
    fn flags(self) -> Vec<String> {
        let mut flags = vec![format!("-max_total_time={}", self.seconds.unwrap_or(0))];
        flags.extend(self.runs.map(|r| format!("-runs={r}")));
        flags
    }
}

/// How the targets are built: cargo-fuzz's default (AddressSanitizer) or without a sanitizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sanitizer {
    /// AddressSanitizer, cargo-fuzz's default; what `.ci/run` runs.
    Address,
    /// No sanitizer: 3.5x (raw_record) to 5x (replay) the executions a second on this project's
    /// targets. Every parser fuzzed is safe Rust (no `unsafe` in auditor's parsers), so ASan adds
    /// checks only inside dependencies; panics, overflow checks and debug assertions stay on.
    None,
}

impl Sanitizer {
    /// `cargo fuzz <command> [-s none --target-dir ...] ...`: the unsanitized build in a target
    /// directory of its own, so switching does not rebuild everything each time.
    fn cargo_fuzz(self, root: &Path, command: &str) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root).args(["+nightly", "fuzz", command]);
        if self == Sanitizer::None {
            cmd.args(["-s", "none", "--target-dir"]).arg(root.join("fuzz/target/sanitizer-none"));
        }
        cmd
    }
}

/// Longest input libFuzzer makes for a target (bytes), where its default (the largest input of
/// the corpus, at least 4096) would waste executions: a BTF seed is ~5 KiB (`btf_trim::Members::
/// Named`); a longer blob only adds types nobody asks for and costs parse time. Not for `replay`:
/// at 4096 the corpus loses ~430 edges (correlator paths that need several whole records).
const MAX_LEN: &[(&str, usize)] = &[("btf", 8192)];

/// AddressSanitizer's options while fuzzing, unless `ASAN_OPTIONS` is set: no allocation stack
/// kept per `malloc` (a fifth of a BTF execution went to recording them; a report then lacks where
/// the memory was allocated, which replaying the saved input without these options shows) and a
/// 16 MiB quarantine of freed memory instead of 256 MiB (fresh pages for every allocation cost
/// another tenth). Together 15–30 % more executions per second on `btf`.
const ASAN_OPTIONS: &str = "malloc_context_size=0:quarantine_size_mb=16";

pub fn run(budget: Budget, sanitizer: Sanitizer, only: &[String]) -> Result<Vec<Outcome>> {
    setup::install_cargo_fuzz()?;
    let root = sh::workspace_root();
    let listed = sh::output(Command::new("cargo").current_dir(&root).args(["+nightly", "fuzz", "list"]))?;
    let targets: Vec<String> = listed.lines().map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect();
    let targets: Vec<String> = if only.is_empty() { targets } else { only.iter().filter(|t| targets.contains(t)).cloned().collect() };
    if targets.is_empty() {
        bail!("no fuzz target named {only:?} (`cargo +nightly fuzz list` lists them)");
    }
    // One build for all targets (release, debug assertions; AddressSanitizer unless told otherwise).
    sh::run(&mut sanitizer.cargo_fuzz(&root, "build"))?;
    let mut outcomes = Vec::new();
    for target in &targets {
        let corpus = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
        generated_seeds(target, &corpus)?;
        run_whole_inputs(&root, target, sanitizer)?;
        let outcome = fuzz_one(&root, target, &corpus, budget, sanitizer)?;
        eprintln!("fuzz: {}: {} executions in {} s, no crash", outcome.target, outcome.executions, outcome.seconds);
        outcomes.push(outcome);
    }
    for o in &outcomes {
        println!("fuzz: {:<11} {:>12} executions  {:>8} exec/s  no crash", o.target, o.executions, o.executions / o.seconds.max(1));
    }
    Ok(outcomes)
}

/// Runs one target; its libFuzzer output goes to `fuzz/artifacts/<target>.log` (outside the
/// target's artifact directory, where cargo-fuzz looks for the crashing input), the tail of which
/// is shown on a crash.
fn fuzz_one(root: &Path, target: &str, corpus: &Path, budget: Budget, sanitizer: Sanitizer) -> Result<Outcome> {
    let seeds = root.join("fuzz/seeds").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    std::fs::create_dir_all(&artifacts)?;
    let log_path = root.join("fuzz/artifacts").join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut cmd = sanitizer.cargo_fuzz(root, "run");
    cmd.arg(target).arg(corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--").args(budget.flags()).args([
        // A hang is a finding too: one input may take at most 10 s.
        "-timeout=10".into(),
        "-print_final_stats=1".into(),
        format!("-artifact_prefix={}/", artifacts.display()),
    ]);
    if let Some((_, max_len)) = MAX_LEN.iter().find(|(t, _)| *t == target) {
        cmd.arg(format!("-max_len={max_len}"));
    }
    if std::env::var_os("ASAN_OPTIONS").is_none() {
        cmd.env("ASAN_OPTIONS", ASAN_OPTIONS);
    }
    eprintln!("fuzz: {target}: {} (log: {})", sh::describe(&cmd), log_path.display());
    let started = std::time::Instant::now();
    let status = cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).status().context("cannot start cargo fuzz")?;
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        // The input's Debug dump is one huge line: cut long lines, the input is in its file.
        let tail: Vec<&str> = text.lines().rev().take(40).map(|l| l.get(..300).unwrap_or(l)).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("fuzz target {target} failed ({status}); the input is in {}:\n{}", artifacts.display(), tail.join("\n"));
    }
    let executions =
        final_stat(&text, "stat::number_of_executed_units").with_context(|| format!("no final stats in {}", log_path.display()))?;
    Ok(Outcome { target: target.to_string(), executions, seconds: started.elapsed().as_secs() })
}

/// A `stat::name: value` line of `-print_final_stats=1`.
fn final_stat(log: &str, name: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| l.strip_prefix(name)?.trim_start_matches(':').trim().parse().ok())
}

/// Inputs too big to fuzz, run once each before fuzzing: `fuzz/whole/<target>/`.
fn whole_dir(target: &str) -> PathBuf {
    sh::workspace_root().join("fuzz/whole").join(target)
}

/// Seeds that cannot be committed: records whose layout the code defines, and the kernels' BTF
/// (the seed with only the members pfn-auditor reads, the whole-member blob in [`whole_dir`]).
fn generated_seeds(target: &str, corpus: &Path) -> Result<()> {
    match target {
        "raw_record" => {
            for (name, bytes) in raw_records() {
                std::fs::write(corpus.join(format!("seed-{name}")), bytes)?;
            }
        }
        "btf" => {
            let keep = btf_names(&sh::workspace_root())?;
            let whole = whole_dir(target);
            std::fs::create_dir_all(&whole).with_context(|| format!("cannot create {}", whole.display()))?;
            for (name, blob) in kernel_btfs(&keep)? {
                std::fs::write(whole.join(format!("{name}.btf")), &blob)?;
                let seed = btf_trim::trim(&blob, &keep, btf_trim::Members::Named).with_context(|| format!("trimming {name}'s members"))?;
                std::fs::write(corpus.join(format!("seed-{name}.btf")), seed)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Runs each input of [`whole_dir`] through the target once (libFuzzer runs the files it is
/// given and stops); a crash fails like a fuzzing crash.
fn run_whole_inputs(root: &Path, target: &str, sanitizer: Sanitizer) -> Result<()> {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(whole_dir(target)).into_iter().flatten().flatten().map(|e| e.path()).collect();
    if inputs.is_empty() {
        return Ok(());
    }
    inputs.sort();
    let artifacts = root.join("fuzz/artifacts").join(target);
    std::fs::create_dir_all(&artifacts)?;
    let mut cmd = sanitizer.cargo_fuzz(root, "run");
    cmd.arg(target).args(&inputs);
    cmd.arg("--").args(["-timeout=10".to_string(), format!("-artifact_prefix={}/", artifacts.display())]);
    sh::run(&mut cmd).with_context(|| format!("fuzz target {target} failed on a whole input of {}", whole_dir(target).display()))
}

/// The bytes of a `#[repr(C)]` record as the eBPF side writes it into the ring buffer.
fn bytes_of<T: Copy>(record: &T) -> Vec<u8> {
    // SAFETY: T is one of auditor-common's repr(C) records of integers; reading its bytes,
    // padding included (zeroed by `Default`/`zeroed` construction below), is what the kernel does.
    unsafe { std::slice::from_raw_parts((record as *const T).cast::<u8>(), size_of::<T>()).to_vec() }
}

/// One record of every kind, with the values a raw lookup of the test device has (the gate
/// fixture's recording): a header, a vma of /dev/pfnaudit, PFNs.
fn raw_records() -> Vec<(&'static str, Vec<u8>)> {
    let header = |kind: common::EventKind, hook: common::Hook| {
        let mut comm = [0u8; common::TASK_COMM_LEN];
        comm[..8].copy_from_slice(b"scenario");
        common::Header {
            kind: kind as u32,
            hook: hook as u32,
            ts_ns: 1_234_567_890,
            task: common::TaskInfo { tgid: 201, pid: 201, start_time_ns: 987_654_321, comm },
            stack: {
                let mut stack = common::KernelStack { depth: 3, _pad: 0, ips: [0; common::STACK_DEPTH] };
                stack.ips[..3].copy_from_slice(&[0xffff_ffff_8120_1001, 0xffff_ffff_c080_2123, 0xffff_ffff_8100_0099]);
                stack
            },
        }
    };
    let vma = common::VmaInfo {
        vma: 0xffff_8880_0431_2000,
        mm: 0xffff_8880_0432_0000,
        start: 0x7f3a_1000_0000,
        end: 0x7f3a_1000_4000,
        flags: common::VM_IO | common::VM_PFNMAP | 0xfb,
        pgoff: 0,
        mapping: 0xffff_8880_0433_0000,
        ino: 412,
        dev: 5,
        _pad: 0,
    };
    use common::{EventKind as K, Hook as H};
    let mut name = common::FileNameEvent {
        hdr: header(K::FileName, H::RemapPfnRange),
        vma: vma.vma,
        dev: 5,
        depth: 1,
        complete: 1,
        _pad: 0,
        fs_type: [0; 16],
        names: [[0; common::FILE_NAME_LEN]; common::FILE_NAME_DEPTH],
    };
    name.fs_type[..8].copy_from_slice(b"devtmpfs");
    name.names[0][..8].copy_from_slice(b"pfnaudit");
    let mut pfns = [0u64; common::MAX_FRAMES];
    pfns[..2].copy_from_slice(&[0xfeb40, 0xfeb41]);
    vec![
        (
            "pfn-map",
            bytes_of(&common::PfnMapEvent { hdr: header(K::PfnMap, H::RemapPfnRange), vma, addr: vma.start, pfn: 0xfeb40, size: 0x4000 }),
        ),
        (
            "raw-lookup",
            bytes_of(&common::RawLookupEvent {
                hdr: header(K::RawLookup, H::FollowPfn),
                vma,
                address: vma.start,
                pfn: 0xfeb40,
                ram: 0,
                shares_stack: 0,
                _pad: [0; 6],
                stack_id: 1,
            }),
        ),
        (
            "frames-get",
            bytes_of(&common::FramesGetEvent {
                hdr: header(K::FramesGet, H::GetVaddrFrames),
                vec: 0xffff_8880_0500_0000,
                start: vma.start,
                mm: vma.mm,
                nr_frames: 2,
                is_pfns: 1,
                got_ref: 0,
                _pad: [0; 2],
                pfns,
            }),
        ),
        ("frames-put", bytes_of(&common::FramesPutEvent { hdr: header(K::FramesPut, H::PutVaddrFrames), vec: 0xffff_8880_0500_0000 })),
        (
            "revoke",
            bytes_of(&common::RevokeEvent {
                hdr: header(K::Revoke, H::UnmapMappingRange),
                cause: common::RevokeCause::OwnerRevoke as u32,
                _pad: 0,
                mapping: vma.mapping,
                first_pgoff: 0,
                nr_pages: u64::MAX,
                vma: common::VmaInfo::default(),
                start: 0,
                end: 0,
            }),
        ),
        ("vma-free", bytes_of(&common::VmaFreeEvent { hdr: header(K::VmaFree, H::VmAreaFree), vma })),
        (
            "release-call",
            bytes_of(&common::ReleaseCallEvent {
                hdr: header(K::ReleaseCall, H::Release0),
                slot: 0,
                _pad: 0,
                args: [vma.start, 1, 0, 0, 0, 0],
            }),
        ),
        ("task-exit", bytes_of(&common::TaskExitEvent { hdr: header(K::TaskExit, H::TaskExit) })),
        ("file-name", bytes_of(&name)),
    ]
}

/// Every name quoted in the files that read BTF: the structs, enums and functions they look up
/// (names that are not types, such as field names, select nothing).
fn btf_names(root: &Path) -> Result<HashSet<String>> {
    let mut names = HashSet::new();
    for file in ["auditor/src/probes/layout.rs", "auditor/src/probes/table.rs", "auditor/src/probes/module_hooks.rs"] {
        let text = std::fs::read_to_string(root.join(file)).with_context(|| format!("cannot read {file}"))?;
        for quoted in text.split('"').skip(1).step_by(2) {
            if !quoted.is_empty() && quoted.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                names.insert(quoted.to_string());
            }
        }
    }
    Ok(names)
}

/// BTF of the host (`/sys/kernel/btf/vmlinux`) and of each test kernel unpacked in
/// .vm-cache/kernels (its vmlinuz decompressed, the `.BTF` section of the vmlinux inside), trimmed
/// to the types in `keep` with all their members.
fn kernel_btfs(keep: &HashSet<String>) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    match std::fs::read("/sys/kernel/btf/vmlinux") {
        Ok(blob) => out.push(("host".to_string(), btf_trim::trim(&blob, keep, btf_trim::Members::All).context("trimming the host's BTF")?)),
        Err(e) => eprintln!("fuzz: no BTF seed from this host: /sys/kernel/btf/vmlinux: {e}"),
    }
    let kernels = sh::cache_dir().join("kernels");
    for dir in std::fs::read_dir(&kernels).into_iter().flatten().flatten() {
        let boot = dir.path().join("boot");
        let Some(vmlinuz) = std::fs::read_dir(&boot).into_iter().flatten().flatten().map(|e| e.path()).find(|p| is_vmlinuz(p)) else {
            continue;
        };
        let name = dir.file_name().to_string_lossy().into_owned();
        let seed = whole_cache(&name, || {
            let vmlinux = decompress_vmlinuz(&vmlinuz)?;
            btf_trim::trim(btf_trim::elf_section(&vmlinux, ".BTF")?, keep, btf_trim::Members::All)
        });
        match seed {
            Ok(blob) => out.push((name, blob)),
            Err(e) => eprintln!("fuzz: no BTF seed from {}: {e:#}", vmlinuz.display()),
        }
    }
    if out.is_empty() {
        bail!("no BTF to seed the btf target with: neither /sys/kernel/btf/vmlinux nor a kernel in {}", kernels.display());
    }
    Ok(out)
}

fn is_vmlinuz(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-"))
}

/// A test kernel's trimmed BTF, made once and kept in [`whole_dir`] (decompressing takes seconds).
fn whole_cache(kernel: &str, make: impl FnOnce() -> Result<Vec<u8>>) -> Result<Vec<u8>> {
    let path = whole_dir("btf").join(format!("{kernel}.btf"));
    if let Ok(blob) = std::fs::read(&path) {
        return Ok(blob);
    }
    make()
}

/// The vmlinux ELF inside a bzImage, as the kernel's scripts/extract-vmlinux finds it: the first
/// xz, zstd or gzip stream that decompresses to an ELF file.
fn decompress_vmlinuz(vmlinuz: &Path) -> Result<Vec<u8>> {
    let image = std::fs::read(vmlinuz).with_context(|| format!("cannot read {}", vmlinuz.display()))?;
    let formats: [(&[u8], &str); 3] = [(b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b\x08", "gzip")];
    for (magic, tool) in formats {
        for at in (0..image.len().saturating_sub(magic.len())).filter(|&i| image[i..].starts_with(magic)) {
            let mut child = Command::new(tool)
                .arg("-dc")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {tool}"))?;
            let mut stdin = child.stdin.take().expect("piped");
            let payload = image[at..].to_vec();
            // Written from a thread: the decompressed output is read at the same time.
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(&payload);
            });
            // The stream is followed by the rest of the image: the tool complains, the output counts.
            let out = child.wait_with_output()?;
            let _ = writer.join();
            if out.stdout.starts_with(b"\x7fELF") {
                return Ok(out.stdout);
            }
        }
    }
    bail!("no compressed vmlinux found in {}", vmlinuz.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_stats_are_read_from_libfuzzer_output() {
        let log = "#1048576\tpulse  cov: 12\nDone 7405281 runs in 61 second(s)\nstat::number_of_executed_units: 7405281\nstat::average_exec_per_sec:     121398\n";
        assert_eq!(final_stat(log, "stat::number_of_executed_units"), Some(7_405_281));
        assert_eq!(final_stat("crashed before the stats\n", "stat::number_of_executed_units"), None);
    }

    #[test]
    fn a_seed_of_every_record_kind_has_its_kind_in_its_header() {
        let records = raw_records();
        let kinds: Vec<u32> = records.iter().map(|(_, bytes)| u32::from_ne_bytes(bytes[..4].try_into().unwrap())).collect();
        assert_eq!(kinds, (1..=9).collect::<Vec<u32>>(), "one seed per EventKind, in order");
    }

    #[test]
    fn budget_without_runs_is_60_seconds_and_runs_alone_have_no_time_limit() {
        assert_eq!(Budget::new(None, None).flags(), ["-max_total_time=60"]);
        assert_eq!(Budget::new(None, Some(10_000_000)).flags(), ["-max_total_time=0", "-runs=10000000"]);
        assert_eq!(Budget::new(Some(600), Some(5)).flags(), ["-max_total_time=600", "-runs=5"]);
    }

    #[test]
    fn the_btf_seed_keeps_every_offset_the_whole_member_blob_has_for_the_names_asked() {
        let Ok(blob) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            eprintln!("skipped: this host has no /sys/kernel/btf/vmlinux");
            return;
        };
        let keep = btf_names(&sh::workspace_root()).unwrap();
        let whole = btf_trim::trim(&blob, &keep, btf_trim::Members::All).unwrap();
        let seed = btf_trim::trim(&whole, &keep, btf_trim::Members::Named).unwrap();
        assert!(seed.len() * 3 < whole.len(), "the seed ({} bytes) is a fraction of the whole blob ({} bytes)", seed.len(), whole.len());
        let (whole, seed) = (btf_trim::struct_members(&whole).unwrap(), btf_trim::struct_members(&seed).unwrap());
        assert_eq!(whole.len(), seed.len(), "the same structs and unions");
        for ((name, all), (seed_name, named)) in whole.iter().zip(&seed) {
            assert_eq!(name, seed_name);
            // A member is asked for when its own name (after the anonymous members' dots) is.
            let asked: Vec<&(String, u32)> =
                all.iter().filter(|(m, _)| m.ends_with('.') || m.is_empty() || keep.contains(m.rsplit('.').next().unwrap_or(m))).collect();
            assert_eq!(asked, named.iter().collect::<Vec<_>>(), "members of {name:?}: names and bit offsets");
        }
        assert!(whole.iter().any(|(name, _)| name == "vm_area_struct"));
    }

    #[test]
    fn btf_names_include_the_structs_layout_rs_reads() {
        let names = btf_names(&sh::workspace_root()).unwrap();
        for name in ["vm_area_struct", "task_struct", "frame_vector", "pageflags", "get_vaddr_frames", "follow_pte"] {
            assert!(names.contains(name), "{name} missing");
        }
    }
}
