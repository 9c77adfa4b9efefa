//! Boots a kernel + initramfs under QEMU/TCG, watches the console for the guest's markers and
//! collects the result files the guest sends over the second serial port.

use crate::kernels::Kernel;
use crate::prometheus::Scrape;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Console lines that mean the guest is dead or wedged: no point waiting for the timeout.
const FATAL_MARKERS: &[&str] = &["Kernel panic", "BUG: soft lockup", "self-detected stall", "detected stalls on CPUs"];
const INIT_STARTED: &str = "PFNAUDIT-INIT-STARTED";
const DONE: &str = "PFNAUDIT-DONE";
/// The guest kernel's command line. `no_timer_check`: under TCG on a loaded host the boot-time
/// check that the IO-APIC timer ticks can miss its window, and with interrupt remapping on (the
/// intel-iommu VFIO needs) the kernel then panics, "timer doesn't work through
/// Interrupt-remapped IO-APIC" (`check_timer()`, arch/x86/kernel/apic/io_apic.c; seen on 6.1 at a
/// load of 12 on 2 cores); the parameter makes `timer_irq_works()` trust the timer.
const APPEND: &str = "console=ttyS0 panic=-1 oops=panic softlockup_panic=1 loglevel=4 tsc=reliable intel_iommu=on no_timer_check";
/// `PFNAUDIT-METRICS-READY <scenario>`: the daemon serves metrics; the host scrapes them now.
const METRICS_READY: &str = "PFNAUDIT-METRICS-READY ";
/// The label of the host's scrape result among a scenario's files.
pub const PROMETHEUS_LABEL: &str = "prometheus";

/// A file the guest sent: `(scenario, label)` → (status word, contents).
pub type GuestFiles = BTreeMap<(String, String), Sent>;

#[derive(Clone, Debug)]
pub struct Sent {
    pub status: String,
    pub text: String,
}

/// How the guest's clock runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Clock {
    /// Plain TCG: guest time is host time, so it carries TCG's emulation cost and the host's load
    /// (the VM tests; timings drift by a quarter between days)
    Tcg,
    /// `-icount shift=0,sleep=off`: guest time is the guest's instruction count, one nanosecond
    /// per instruction, and an idle guest skips ahead: timings are deterministic and a kprobe
    /// trap costs what its instructions cost, not what TCG takes to emulate it. The RTC starts at
    /// a fixed date and runs on guest time too: the kernel mixes the boot time into its random
    /// pool, and random numbers place mappings and slab objects
    Icount,
}

impl Clock {
    /// QEMU arguments for this clock.
    fn qemu_args(self) -> &'static [&'static str] {
        match self {
            Clock::Tcg => &[],
            Clock::Icount => &["-icount", "shift=0,sleep=off", "-rtc", "base=2026-11-30T00:00:00,clock=vm"],
        }
    }
}

pub struct Boot<'a> {
    pub kernel: &'a Kernel,
    pub initrd: &'a Path,
    /// target/vm-test/<kernel>: console.log and serial1.log go here.
    pub dir: &'a Path,
    pub timeout: Duration,
    /// A root disk image (virtio, `/dev/vda`), booted as a copy-on-write snapshot so the image is
    /// never changed, and what the kernel command line gets in addition (the systemd test).
    pub disk: Option<(&'a Path, &'a str)>,
    pub clock: Clock,
    /// The plan has `metrics` scenarios: forward their ports and scrape them from the host.
    pub scrape: Option<&'a Scrape>,
}

pub struct Finished {
    pub console_log: PathBuf,
    pub files: GuestFiles,
    /// The `--source-root` the guest's gate scenarios were given (`image::source_root`).
    pub source_root: Option<PathBuf>,
}

enum Attempt {
    /// With what the host scraped, per scenario.
    Done(GuestFiles),
    /// The kernel died before our init ran: TCG flakiness, worth one retry.
    EarlyPanic,
    Failed(String),
}

impl Boot<'_> {
    /// Boots once (twice if the kernel panicked before init started) and returns what the guest sent.
    pub fn run(&self) -> Result<Finished> {
        let console_log = self.dir.join("console.log");
        let serial_log = self.dir.join("serial1.log");
        for try_no in 1..=2 {
            let _ = std::fs::remove_file(&serial_log);
            match self.attempt(&console_log, &serial_log)? {
                Attempt::Done(scraped) => {
                    let text = std::fs::read_to_string(&serial_log).unwrap_or_default();
                    let mut files = parse_guest_files(&text);
                    files.extend(scraped);
                    return Ok(Finished { console_log, files, source_root: None });
                }
                Attempt::EarlyPanic if try_no == 1 => {
                    eprintln!("xtask: {} panicked before init started; retrying once", self.kernel.release);
                }
                Attempt::EarlyPanic => bail!("kernel panicked before init, twice (console: {})", console_log.display()),
                Attempt::Failed(why) => bail!("{why} (console: {})", console_log.display()),
            }
        }
        unreachable!("the loop returns or fails on its second try")
    }

    fn attempt(&self, console_log: &Path, serial_log: &Path) -> Result<Attempt> {
        let mut log = std::fs::File::create(console_log)?;
        let mut qemu = self.command(serial_log).spawn().context("cannot start qemu-system-x86_64 (cargo xtask build installs it)")?;
        let lines = console_lines(&mut qemu);
        let deadline = Instant::now() + self.timeout;
        let mut init_started = false;
        let mut scrapes = Vec::new();
        let outcome = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    break Attempt::Failed(format!("timed out after {} s", self.timeout.as_secs()));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break Attempt::Failed("QEMU exited before the guest finished".into());
                }
            };
            writeln!(log, "{line}")?;
            if let Some(at) = line.find("PFNAUDIT-") {
                // The first marker shares its line with firmware escape sequences: show ours only.
                eprintln!("  [{}] {}", self.kernel.label, line[at..].trim());
            }
            init_started |= line.contains(INIT_STARTED);
            if let (Some(scrape), Some(at)) = (self.scrape, line.find(METRICS_READY)) {
                // In a thread: the console is read on while Prometheus scrapes.
                let name = line[at + METRICS_READY.len()..].trim().to_owned();
                let (scrape, label) = (scrape.clone(), self.kernel.label.to_owned());
                scrapes.push(std::thread::spawn(move || (name, scrape.check(&label))));
            }
            if line.contains(DONE) {
                break if line.contains(&format!("{DONE} ok")) {
                    Attempt::Done(GuestFiles::new())
                } else {
                    Attempt::Failed(format!("guest stopped early: {}", line.trim()))
                };
            }
            if let Some(marker) = FATAL_MARKERS.iter().find(|m| line.contains(*m)) {
                break if init_started || !marker.contains("panic") {
                    Attempt::Failed(format!("guest kernel failed: {}", line.trim()))
                } else {
                    Attempt::EarlyPanic
                };
            }
        };
        stop(&mut qemu, matches!(outcome, Attempt::Done(_)));
        for line in lines.try_iter() {
            writeln!(log, "{line}")?;
        }
        // A scrape ends by itself within its wait, whatever the guest did.
        let mut scraped = GuestFiles::new();
        for handle in scrapes {
            let (name, result) = handle.join().map_err(|_| anyhow::anyhow!("the scrape thread panicked"))?;
            let (status, text) = match result {
                Ok(line) => ("0", line),
                Err(e) => ("1", format!("{e:#}")),
            };
            scraped.insert((name, PROMETHEUS_LABEL.to_owned()), Sent { status: status.to_owned(), text: text + "\n" });
        }
        Ok(match outcome {
            Attempt::Done(_) => Attempt::Done(scraped),
            other => other,
        })
    }

    fn command(&self, serial_log: &Path) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        // q35 with an emulated VT-d (interrupt remapping on: vfio's type1 refuses a container
        // without it unless allow_unsafe_interrupts is set), QEMU's `edu` test device for vfio-pci,
        // an e1000 whose driver the in-tree scenarios load themselves (no default NIC), and a CPU
        // with SVM + nested paging so kvm_amd runs inside the TCG guest.
        cmd.args(["-accel", "tcg", "-machine", "q35", "-cpu", "qemu64,+svm,+npt", "-m", "1G", "-smp", "1"])
            .args(["-device", "intel-iommu,intremap=on", "-device", "edu", "-nic", "none", "-device", "e1000"])
            .args(self.clock.qemu_args())
            .args(self.scrape.map(Scrape::qemu_args).unwrap_or_default())
            .args(["-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(&self.kernel.vmlinuz)
            .arg("-initrd")
            .arg(self.initrd)
            .args(["-append", &format!("{APPEND}{}", self.disk.map(|(_, extra)| format!(" {extra}")).unwrap_or_default())])
            .args(["-serial", "mon:stdio", "-serial"])
            .arg(format!("file:{}", serial_log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((image, _)) = self.disk {
            cmd.arg("-drive").arg(format!("file={},format=raw,if=virtio,snapshot=on", image.display()));
        }
        cmd
    }
}

/// QEMU's stdout and stderr, line by line, from reader threads.
fn console_lines(qemu: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = qemu.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = qemu.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for stream in [stdout, stderr].into_iter().flatten() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_owned();
                if tx.send(text).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// After PFNAUDIT-DONE the guest powers off by itself; give it a moment, then kill.
fn stop(qemu: &mut Child, graceful: bool) {
    if graceful {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if let Ok(Some(_)) = qemu.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
}

/// Splits the second serial port's stream into the framed files (see tests/vm/guest/init.sh).
pub fn parse_guest_files(stream: &str) -> GuestFiles {
    let mut files = GuestFiles::new();
    let mut current: Option<((String, String), Sent)> = None;
    for line in stream.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("PFNAUDIT-BEGIN ") {
            let mut words = rest.split_whitespace();
            let (name, label) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
            let status = words.next().and_then(|w| w.strip_prefix("status=")).unwrap_or("?");
            let sent = Sent { status: status.to_owned(), text: String::new() };
            current = Some(((name.to_owned(), label.to_owned()), sent));
        } else if line.starts_with("PFNAUDIT-END ") {
            if let Some((key, sent)) = current.take() {
                files.insert(key, sent);
            }
        } else if let Some((_, sent)) = current.as_mut() {
            sent.text.push_str(line);
            sent.text.push('\n');
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_args(clock: Clock) -> Vec<String> {
        let kernel = Kernel {
            label: "6.1",
            release: "6.1.0-50-amd64".into(),
            vmlinuz: "vmlinuz".into(),
            modules_dir: "modules".into(),
            headers: "headers".into(),
        };
        let boot = Boot {
            kernel: &kernel,
            initrd: Path::new("initrd"),
            dir: Path::new("dir"),
            timeout: Duration::ZERO,
            disk: None,
            clock,
            scrape: None,
        };
        boot.command(Path::new("serial1.log")).get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn icount_is_added_for_the_bench_only() {
        let tcg = qemu_args(Clock::Tcg);
        assert!(!tcg.iter().any(|a| a.contains("icount")), "the VM tests' command line stays plain TCG: {tcg:?}");
        let icount = qemu_args(Clock::Icount);
        let at = icount.iter().position(|a| a == "-icount").expect("-icount given");
        assert_eq!(icount[at + 1], "shift=0,sleep=off");
        assert_eq!(icount[at + 2..at + 4], ["-rtc", "base=2026-11-30T00:00:00,clock=vm"], "the boot time is fixed");
        let mut without: Vec<String> = icount.clone();
        without.drain(at..at + 4);
        assert_eq!(without, tcg, "icount changes nothing else");
    }

    #[test]
    fn framed_files_are_split_by_scenario_and_label_with_their_status() {
        let stream = "noise\r\nPFNAUDIT-BEGIN keep ndjson status=0\n{\"type\":\"status\"}\n\nPFNAUDIT-END keep ndjson\n\
                      PFNAUDIT-BEGIN keep stderr status=0\nerror: pin kept\nPFNAUDIT-END keep stderr\n\
                      PFNAUDIT-BEGIN cut ndjson status=0\n{\"type\":";
        let files = parse_guest_files(stream);
        let ndjson = &files[&("keep".into(), "ndjson".into())];
        assert_eq!((ndjson.status.as_str(), ndjson.text.as_str()), ("0", "{\"type\":\"status\"}\n\n"));
        assert_eq!(files[&("keep".into(), "stderr".into())].text, "error: pin kept\n");
        assert!(!files.contains_key(&("cut".into(), "ndjson".into())), "an unterminated file is not trusted");
    }
}
