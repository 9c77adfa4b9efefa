//! What `doctor` checks on the host before the hooks, one row per prerequisite, each with what to
//! do about it: kernel release, BTF, kprobes (present, and not disabled system-wide), the BPF ring
//! buffer, fentry, tracefs, /proc/modules, /proc/kallsyms, privileges. Pure functions over a
//! [`Host`] (a root directory, an euid and what the bpf(2) feature probes said), so tests run them
//! on fixture directories; every check runs whatever the others found.
use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
};

/// How a prerequisite stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckState {
    Ok,
    /// Auditing works, with less (e.g. no hooks that wait for a module).
    Warning,
    /// Auditing cannot work until it is fixed.
    Missing,
}

impl CheckState {
    pub fn name(self) -> &'static str {
        match self {
            CheckState::Ok => "ok",
            CheckState::Warning => "warning",
            CheckState::Missing => "missing",
        }
    }
}

/// One prerequisite: what was found and, unless it is fine, what to do.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub state: CheckState,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, state: CheckState::Ok, detail: detail.into(), fix: None }
    }
    fn bad(name: &'static str, state: CheckState, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, state, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// Names of the checks, as in the output.
pub(crate) const KERNEL: &str = "kernel";
pub const BTF: &str = "btf";
pub(crate) const KPROBES: &str = "kprobes";
pub(crate) const KPROBES_ON: &str = "kprobes-on";
pub(crate) const RING_BUFFER: &str = "ringbuf";
pub(crate) const FENTRY: &str = "fentry";
pub(crate) const TRACEFS: &str = "tracefs";
pub(crate) const MODULES: &str = "modules";
pub(crate) const KALLSYMS: &str = "kallsyms";
pub(crate) const PRIVILEGES: &str = "privileges";

/// The host as the checks see it: every absolute path is read under `root` (`/` for real).
#[derive(Clone, Debug)]
pub struct Host {
    pub root: PathBuf,
    pub euid: u32,
    pub features: Features,
}

/// What the kernel said when asked through bpf(2) (aya's feature probes, which load a trivial
/// program or create a small map): supported or not, or why it could not be asked.
#[derive(Clone, Debug)]
pub(crate) struct Features {
    /// `BPF_MAP_TYPE_RINGBUF` (Linux 5.8), the map every record goes through.
    pub ring_buffer: Result<bool, String>,
    /// `BPF_PROG_TYPE_TRACING` (fentry/fexit through BPF trampolines, Linux 5.5 on x86-64).
    pub fentry: Result<bool, String>,
}

impl Default for Features {
    /// Not asked: doctor asks as root only.
    fn default() -> Self {
        let not_root = || Err("probing needs root".to_string());
        Self { ring_buffer: not_root(), fentry: not_root() }
    }
}

impl Features {
    /// Probes the running kernel.
    pub fn probe() -> Self {
        Self {
            ring_buffer: aya::sys::is_map_supported(aya::maps::MapType::RingBuf).map_err(|e| format!("probe failed: {e}")),
            fentry: aya::sys::is_program_supported(aya::programs::ProgramType::Tracing).map_err(|e| format!("probe failed: {e}")),
        }
    }
}

impl Host {
    /// The machine this runs on, its features not probed (see [`Host::probe_features`]).
    pub fn this() -> Self {
        // SAFETY: geteuid has no preconditions.
        Self { root: PathBuf::from("/"), euid: unsafe { libc::geteuid() }, features: Features::default() }
    }

    /// Asks the kernel through bpf(2), as root only: unprivileged bpf(2) is off on Debian, and
    /// asking as another user would only be refused.
    pub(crate) fn probe_features(mut self) -> Self {
        if self.euid == 0 {
            self.features = Features::probe();
        }
        self
    }

    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    fn read(&self, absolute: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.path(absolute))
    }

    /// The kernel release (`uname -r`), if it can be read.
    pub fn release(&self) -> Option<String> {
        self.read("/proc/sys/kernel/osrelease").ok().map(|r| r.trim().to_string())
    }

    /// The kernel's build configuration: /boot/config-RELEASE, else /proc/config.gz (through
    /// `gzip -dc`). `None` when neither can be read.
    fn kernel_config(&self) -> Option<(String, String)> {
        if let Some(release) = self.release() {
            let boot = format!("/boot/config-{release}");
            if let Ok(text) = self.read(&boot) {
                return Some((boot, text));
            }
        }
        let gz = self.path("/proc/config.gz");
        let out = std::process::Command::new("gzip").arg("-dc").arg(&gz).stderr(std::process::Stdio::null()).output().ok()?;
        (out.status.success() && !out.stdout.is_empty())
            .then(|| ("/proc/config.gz".to_string(), String::from_utf8_lossy(&out.stdout).into()))
    }
}

/// Every check, in the order `doctor` prints them.
pub(crate) fn check_all(host: &Host) -> Vec<Check> {
    vec![
        kernel(host),
        btf(host),
        kprobes(host),
        kprobes_on(host),
        ring_buffer(host),
        fentry(host),
        tracefs(host),
        modules(host),
        kallsyms(host),
        privileges(host),
    ]
}

pub fn kernel(host: &Host) -> Check {
    match host.release() {
        Some(release) => match crate::probes::kernel_version::KernelVersion::parse_release(&release) {
            Some(version) => Check::ok(KERNEL, format!("{release} ({version})")),
            None => Check::bad(KERNEL, CheckState::Missing, format!("cannot parse the release {release:?}"), "report it with `uname -a`"),
        },
        None => {
            Check::bad(KERNEL, CheckState::Missing, "cannot read /proc/sys/kernel/osrelease", "mount /proc (`mount -t proc proc /proc`)")
        }
    }
}

pub fn btf(host: &Host) -> Check {
    if host.path("/sys/kernel/btf/vmlinux").exists() {
        Check::ok(BTF, "/sys/kernel/btf/vmlinux")
    } else {
        Check::bad(
            BTF,
            CheckState::Missing,
            "no /sys/kernel/btf/vmlinux (kernel built without CONFIG_DEBUG_INFO_BTF, or /sys not mounted)",
            "boot a kernel with CONFIG_DEBUG_INFO_BTF=y (every Debian kernel since 5.10)",
        )
    }
}

const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe/type";

pub fn kprobes(host: &Host) -> Check {
    if let Ok(t) = host.read(KPROBE_PMU) {
        return Check::ok(KPROBES, format!("kprobe PMU (perf type {})", t.trim()));
    }
    let fix = "boot a kernel with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y (every Debian kernel has them)";
    match host.kernel_config() {
        Some((source, config)) => match config_value(&config, "CONFIG_KPROBES") {
            Some("y") => Check::bad(
                KPROBES,
                CheckState::Warning,
                format!("CONFIG_KPROBES=y ({source}) but no kprobe PMU ({KPROBE_PMU}): kernel older than 4.17?"),
                "kprobes are attached through tracefs instead: mount it (see tracefs)",
            ),
            _ => Check::bad(
                KPROBES,
                CheckState::Missing,
                format!("kernel built without CONFIG_KPROBES ({source}); no kprobe PMU ({KPROBE_PMU})"),
                fix,
            ),
        },
        None => Check::bad(
            KPROBES,
            CheckState::Missing,
            format!("no kprobe PMU ({KPROBE_PMU}), and no kernel config readable (/boot/config-RELEASE, /proc/config.gz) to say why"),
            fix,
        ),
    }
}

/// The system-wide kprobe switch (`kernel/kprobes.c`, debugfs `kprobes/enabled`): at 0 every
/// kprobe is disarmed and new ones are registered disarmed, so the hooks attach without error and
/// never fire — a run would see nothing and look clean.
pub(crate) const KPROBES_ENABLED: &str = "/sys/kernel/debug/kprobes/enabled";

pub(crate) fn kprobes_on(host: &Host) -> Check {
    match host.read(KPROBES_ENABLED).map(|v| v.trim().to_string()) {
        Ok(v) if v == "0" => Check::bad(
            KPROBES_ON,
            CheckState::Missing,
            format!("kprobes are disabled system-wide ({KPROBES_ENABLED} is 0): hooks attach but never fire"),
            format!("echo 1 > {KPROBES_ENABLED}"),
        ),
        Ok(v) => Check::ok(KPROBES_ON, format!("{KPROBES_ENABLED} is {v}")),
        Err(e) => Check::ok(
            KPROBES_ON,
            format!("{KPROBES_ENABLED} not readable ({}): kprobes are on unless someone turned them off there", io_reason(&e)),
        ),
    }
}

/// The BPF ring buffer appeared in Linux 5.8 (commit 457f44363a88).
const RING_BUFFER_SINCE: crate::probes::kernel_version::KernelVersion = crate::probes::kernel_version::KernelVersion::new(5, 8);

pub(crate) fn ring_buffer(host: &Host) -> Check {
    let missing = || {
        Check::bad(
            RING_BUFFER,
            CheckState::Missing,
            "no BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8): records cannot reach the daemon",
            "boot Linux 5.8 or later",
        )
    };
    match &host.features.ring_buffer {
        Ok(true) => Check::ok(RING_BUFFER, "BPF_MAP_TYPE_RINGBUF (probed)"),
        Ok(false) => missing(),
        Err(why) => match host.release().and_then(|r| crate::probes::kernel_version::KernelVersion::parse_release(&r)) {
            Some(v) if v >= RING_BUFFER_SINCE => {
                Check::ok(RING_BUFFER, format!("BPF_MAP_TYPE_RINGBUF expected on {v} (not probed: {why})"))
            }
            Some(_) => missing(),
            None => Check::bad(
                RING_BUFFER,
                CheckState::Warning,
                format!("unknown: not probed ({why}) and no kernel release to judge by"),
                "run doctor as root",
            ),
        },
    }
}

/// Informational: every hook is a kprobe or a tracepoint, so fentry is never needed.
pub fn fentry(host: &Host) -> Check {
    let support = match &host.features.fentry {
        Ok(true) => "supported (probed)".to_string(),
        Ok(false) => "not supported (probed)".to_string(),
        Err(why) => format!("not probed ({why})"),
    };
    Check::ok(FENTRY, format!("{support}; not needed: every hook is a kprobe or a tracepoint"))
}

/// An I/O error without Rust's `(os error N)` suffix.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_string()
}

/// `CONFIG_X=v` in a kernel config; `None` when it is absent or `# CONFIG_X is not set`.
fn config_value<'a>(config: &'a str, key: &str) -> Option<&'a str> {
    config.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Where tracefs is mounted (its `events` directory is there), if it is.
pub(crate) fn tracefs_mounted(host: &Host) -> Option<&'static str> {
    TRACEFS_DIRS.into_iter().find(|dir| host.path(dir).join("events").is_dir())
}

pub fn tracefs(host: &Host) -> Check {
    if let Some(dir) = TRACEFS_DIRS.into_iter().find(|dir| host.path(dir).join("kprobe_events").exists()) {
        return Check::ok(TRACEFS, dir);
    }
    if let Some(dir) = tracefs_mounted(host) {
        return Check::bad(
            TRACEFS,
            CheckState::Warning,
            format!(
                "mounted at {dir} but without kprobe_events (kernel without CONFIG_KPROBE_EVENTS): hooks on functions of modules not loaded yet (policy release functions, videobuf2) cannot be armed"
            ),
            "boot a kernel with CONFIG_KPROBE_EVENTS=y",
        );
    }
    Check::bad(
        TRACEFS,
        CheckState::Warning,
        "not mounted (nothing at /sys/kernel/tracing or /sys/kernel/debug/tracing): the sched_process_exit tracepoint and hooks on functions of modules not loaded yet (policy release functions, videobuf2) cannot be attached",
        "mount -t tracefs nodev /sys/kernel/tracing",
    )
}

pub fn modules(host: &Host) -> Check {
    match host.read("/proc/modules") {
        Ok(text) => Check::ok(MODULES, format!("/proc/modules: {} module(s) loaded", text.lines().count())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check::bad(
            MODULES,
            CheckState::Warning,
            "no /proc/modules (kernel built without CONFIG_MODULES): only built-in code can be audited",
            "nothing to do unless the holder is a module: then boot a kernel with CONFIG_MODULES=y",
        ),
        Err(e) => Check::bad(MODULES, CheckState::Warning, format!("cannot read /proc/modules: {e}"), "run as root"),
    }
}

pub fn kallsyms(host: &Host) -> Check {
    let fix_restrict = "run as root (with CAP_SYSLOG), and `sysctl kernel.kptr_restrict=0` if it is 2";
    let file = match std::fs::File::open(host.path("/proc/kallsyms")) {
        Ok(f) => f,
        Err(e) => {
            return Check::bad(KALLSYMS, CheckState::Missing, format!("cannot read /proc/kallsyms: {e}"), "mount /proc; run as root");
        }
    };
    // The first lines of an SMP x86-64 kernel are per-CPU symbols (`0000000000000000 A
    // fixed_percpu_data`), at offset 0 even when addresses are shown: judge by the first text
    // symbol (`_stext`).
    let text_symbol =
        BufReader::new(file).lines().map_while(Result::ok).find(|line| matches!(line.split_whitespace().nth(1), Some("T" | "t")));
    let Some(text_symbol) = text_symbol else {
        return Check::bad(KALLSYMS, CheckState::Missing, "/proc/kallsyms has no text symbol", "boot a kernel with CONFIG_KALLSYMS=y");
    };
    let restrict = host.read("/proc/sys/kernel/kptr_restrict").map(|r| r.trim().to_string()).unwrap_or_else(|_| "?".into());
    let address = text_symbol.split_whitespace().next().unwrap_or("");
    if address.chars().all(|c| c == '0') {
        Check::bad(
            KALLSYMS,
            CheckState::Missing,
            format!("/proc/kallsyms shows zero addresses (kptr_restrict={restrict}): stacks cannot be symbolized"),
            fix_restrict,
        )
    } else {
        Check::ok(KALLSYMS, format!("/proc/kallsyms with addresses (kptr_restrict={restrict})"))
    }
}

/// Capability bits the auditor needs (linux/capability.h).
const CAPS: [(u32, &str); 3] = [(39, "CAP_BPF"), (38, "CAP_PERFMON"), (21, "CAP_SYS_ADMIN")];

pub fn privileges(host: &Host) -> Check {
    let cap_eff = host
        .read("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:").and_then(|v| u64::from_str_radix(v.trim(), 16).ok())));
    let lacking: Vec<&str> = match cap_eff {
        Some(bits) => CAPS.iter().filter(|(bit, _)| bits & (1 << bit) == 0).map(|(_, name)| *name).collect(),
        None => Vec::new(),
    };
    let caps = match cap_eff {
        Some(_) if lacking.is_empty() => "CAP_BPF CAP_PERFMON CAP_SYS_ADMIN effective".to_string(),
        Some(bits) if bits & (1 << 21) != 0 => format!("CAP_SYS_ADMIN effective (it covers {})", lacking.join(" ")),
        Some(_) => format!("lacking {}", lacking.join(" ")),
        None => "capabilities unknown (no CapEff in /proc/self/status)".to_string(),
    };
    // CAP_SYS_ADMIN covers the other two (and kernels before 5.8 have neither).
    let enough = cap_eff.is_none_or(|bits| lacking.is_empty() || bits & (1 << 21) != 0);
    if host.euid != 0 {
        Check::bad(PRIVILEGES, CheckState::Missing, format!("not root (euid {}); {caps}", host.euid), "run it with sudo")
    } else if !enough {
        Check::bad(
            PRIVILEGES,
            CheckState::Missing,
            format!("root, but {caps}"),
            "run outside the container or sandbox that drops them (e.g. `docker run --privileged`, systemd CapabilityBoundingSet)",
        )
    } else {
        Check::ok(PRIVILEGES, format!("root; {caps}"))
    }
}

/// True when the kprobes check says no kprobe can be attached (hook rows then say so once).
pub(crate) fn kprobes_unavailable(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.name == KPROBES && c.state == CheckState::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixture host: `files` written under a temporary root.
    fn fixture(files: &[(&str, &str)], euid: u32) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let host = Host { root: dir.path().to_path_buf(), euid, features: Features::default() };
        (dir, host)
    }

    const ALL_CAPS: &str = "Name:\tx\nCapEff:\t000001ffffffffff\n";

    fn ready_host() -> (tempfile::TempDir, Host) {
        let (dir, mut host) = fixture(
            &[
                ("/proc/sys/kernel/osrelease", "6.1.0-50-amd64\n"),
                ("/sys/kernel/btf/vmlinux", "btf"),
                (KPROBE_PMU, "6\n"),
                ("/sys/kernel/tracing/kprobe_events", ""),
                ("/proc/modules", "vfio 1 0 - Live 0xffffffffc0000000\n"),
                ("/proc/kallsyms", "ffffffff81000000 T _stext\n"),
                ("/proc/sys/kernel/kptr_restrict", "1\n"),
                ("/proc/self/status", ALL_CAPS),
                (KPROBES_ENABLED, "1\n"),
            ],
            0,
        );
        host.features = Features { ring_buffer: Ok(true), fentry: Ok(true) };
        (dir, host)
    }

    #[test]
    fn a_ready_host_passes_every_check() {
        let (_dir, host) = ready_host();
        let checks = check_all(&host);
        assert!(checks.iter().all(|c| c.state == CheckState::Ok && c.fix.is_none()), "{checks:#?}");
        assert_eq!(
            checks.iter().map(|c| c.name).collect::<Vec<_>>(),
            [KERNEL, BTF, KPROBES, KPROBES_ON, RING_BUFFER, FENTRY, TRACEFS, MODULES, KALLSYMS, PRIVILEGES]
        );
        assert_eq!(checks[0].detail, "6.1.0-50-amd64 (6.1)");
        assert!(!kprobes_unavailable(&checks));
    }

    #[test]
    fn an_empty_host_gets_every_check_with_a_fix() {
        let (_dir, host) = fixture(&[], 1000);
        let checks = check_all(&host);
        assert_eq!(checks.len(), 10, "no check stops the others");
        // What cannot be known there is not claimed missing: the kprobe switch (debugfs) and
        // fentry (informational: never needed).
        for c in checks.iter().filter(|c| ![KPROBES_ON, FENTRY].contains(&c.name)) {
            assert_ne!(c.state, CheckState::Ok, "{c:?}");
            assert!(c.fix.as_deref().is_some_and(|f| !f.is_empty()), "{c:?}");
        }
        assert!(kprobes_unavailable(&checks));
        let tracefs = checks.iter().find(|c| c.name == TRACEFS).unwrap();
        assert_eq!(tracefs.fix.as_deref(), Some("mount -t tracefs nodev /sys/kernel/tracing"));
        let privileges = checks.iter().find(|c| c.name == PRIVILEGES).unwrap();
        assert!(privileges.detail.starts_with("not root (euid 1000)"), "{privileges:?}");
    }

    #[test]
    fn kprobes_missing_from_the_kernel_config_say_so() {
        let (_dir, host) = fixture(
            &[("/proc/sys/kernel/osrelease", "6.18.44\n"), ("/boot/config-6.18.44", "CONFIG_BPF=y\n# CONFIG_KPROBES is not set\n")],
            0,
        );
        let c = kprobes(&host);
        assert_eq!(c.state, CheckState::Missing);
        assert!(c.detail.starts_with("kernel built without CONFIG_KPROBES (/boot/config-6.18.44)"), "{c:?}");
        assert!(c.fix.unwrap().contains("CONFIG_KPROBES=y"));
    }

    #[test]
    fn kprobes_configured_without_the_pmu_are_a_warning() {
        let (_dir, host) = fixture(&[("/proc/sys/kernel/osrelease", "4.14.0\n"), ("/boot/config-4.14.0", "CONFIG_KPROBES=y\n")], 0);
        assert_eq!(kprobes(&host).state, CheckState::Warning);
    }

    #[test]
    fn kprobes_config_is_read_from_proc_config_gz() {
        if std::process::Command::new("gzip").arg("--version").output().is_err() {
            eprintln!("skipped: no gzip");
            return;
        }
        let (dir, host) = fixture(&[("/proc/sys/kernel/osrelease", "6.18.44\n")], 0);
        let plain = dir.path().join("proc/config");
        std::fs::write(&plain, "# CONFIG_KPROBES is not set\n").unwrap();
        assert!(std::process::Command::new("gzip").arg(&plain).status().unwrap().success());
        let c = kprobes(&host);
        assert!(c.detail.starts_with("kernel built without CONFIG_KPROBES (/proc/config.gz)"), "{c:?}");
    }

    #[test]
    fn per_cpu_symbols_at_zero_before_the_text_do_not_hide_the_addresses() {
        let shown = "0000000000000000 A fixed_percpu_data\n0000000000000000 A __per_cpu_start\nffffffff81000000 T _stext\n";
        let (_dir, host) = fixture(&[("/proc/kallsyms", shown), ("/proc/sys/kernel/kptr_restrict", "0\n")], 0);
        assert_eq!(kallsyms(&host).state, CheckState::Ok);
        let hidden = "0000000000000000 A fixed_percpu_data\n0000000000000000 T _stext\n";
        let (_dir, host) = fixture(&[("/proc/kallsyms", hidden), ("/proc/sys/kernel/kptr_restrict", "0\n")], 0);
        assert_eq!(kallsyms(&host).state, CheckState::Missing);
    }

    #[test]
    fn hidden_kallsyms_addresses_are_missing_with_the_sysctl_to_run() {
        let (_dir, host) = fixture(&[("/proc/kallsyms", "0000000000000000 T _stext\n"), ("/proc/sys/kernel/kptr_restrict", "2\n")], 1000);
        let c = kallsyms(&host);
        assert_eq!(c.state, CheckState::Missing);
        assert!(c.detail.contains("kptr_restrict=2"), "{c:?}");
        assert!(c.fix.unwrap().contains("sysctl kernel.kptr_restrict=0"));
    }

    #[test]
    fn per_cpu_symbols_at_zero_do_not_hide_real_addresses() {
        let listing = "0000000000000000 A fixed_percpu_data\n0000000000001000 A cpu_debug_store\nffffffff81000000 T _stext\n";
        let (_dir, host) = fixture(&[("/proc/kallsyms", listing), ("/proc/sys/kernel/kptr_restrict", "0\n")], 0);
        assert_eq!(kallsyms(&host).state, CheckState::Ok, "{:?}", kallsyms(&host));
        let hidden = "0000000000000000 A fixed_percpu_data\n0000000000000000 T _stext\n";
        let (_dir, host) = fixture(&[("/proc/kallsyms", hidden), ("/proc/sys/kernel/kptr_restrict", "0\n")], 1000);
        assert_eq!(kallsyms(&host).state, CheckState::Missing);
    }

    #[test]
    fn root_without_bpf_capabilities_is_missing_and_names_them() {
        // CAP_BPF (39) and CAP_PERFMON (38), no CAP_SYS_ADMIN.
        let (_dir, host) = fixture(&[("/proc/self/status", "CapEff:\t000000c000000000\n")], 0);
        let c = privileges(&host);
        assert_eq!(c.state, CheckState::Missing);
        assert_eq!(c.detail, "root, but lacking CAP_SYS_ADMIN");
        // CAP_SYS_ADMIN alone covers the other two (kernels before 5.8 have neither).
        let (_dir, host) = fixture(&[("/proc/self/status", "CapEff:\t0000000000200000\n")], 0);
        assert_eq!(privileges(&host), Check::ok(PRIVILEGES, "root; CAP_SYS_ADMIN effective (it covers CAP_BPF CAP_PERFMON)"));
    }

    #[test]
    fn kprobes_disabled_through_debugfs_are_missing_with_the_command_that_enables_them() {
        let (_dir, host) = fixture(&[(KPROBES_ENABLED, "0\n")], 0);
        let c = kprobes_on(&host);
        assert_eq!(c.state, CheckState::Missing);
        assert_eq!(c.detail, "kprobes are disabled system-wide (/sys/kernel/debug/kprobes/enabled is 0): hooks attach but never fire");
        assert_eq!(c.fix.as_deref(), Some("echo 1 > /sys/kernel/debug/kprobes/enabled"));
        let (_dir, host) = fixture(&[], 0);
        let c = kprobes_on(&host);
        assert_eq!(c.state, CheckState::Ok, "unknown is not missing: {c:?}");
        assert!(c.detail.contains("not readable (No such file or directory)"), "{c:?}");
    }

    #[test]
    fn the_ring_buffer_is_probed_else_judged_by_the_kernel_release() {
        let (_dir, mut host) = fixture(&[("/proc/sys/kernel/osrelease", "5.4.0-42-generic\n")], 1000);
        let c = ring_buffer(&host);
        assert_eq!((c.state, c.fix.as_deref()), (CheckState::Missing, Some("boot Linux 5.8 or later")), "{c:?}");
        host.features.ring_buffer = Ok(true);
        assert_eq!(ring_buffer(&host).state, CheckState::Ok, "a probe beats the version");
        let (_dir, host) = fixture(&[("/proc/sys/kernel/osrelease", "6.1.0-50-amd64\n")], 1000);
        assert_eq!(ring_buffer(&host).detail, "BPF_MAP_TYPE_RINGBUF expected on 6.1 (not probed: probing needs root)");
        let (_dir, mut host) = fixture(&[("/proc/sys/kernel/osrelease", "6.1.0-50-amd64\n")], 0);
        host.features.ring_buffer = Ok(false);
        assert_eq!(ring_buffer(&host).state, CheckState::Missing, "a probe that says no is believed");
    }

    #[test]
    fn fentry_is_reported_as_not_needed_whatever_the_probe_says() {
        let (_dir, mut host) = fixture(&[], 0);
        host.features.fentry = Ok(false);
        assert_eq!(fentry(&host), Check::ok(FENTRY, "not supported (probed); not needed: every hook is a kprobe or a tracepoint"));
    }

    #[test]
    fn the_debugfs_tracing_directory_counts() {
        let (_dir, host) = fixture(&[("/sys/kernel/debug/tracing/kprobe_events", "")], 0);
        assert_eq!(tracefs(&host), Check::ok(TRACEFS, "/sys/kernel/debug/tracing"));
    }

    #[test]
    fn tracefs_mounted_without_kprobe_events_names_the_config() {
        let (_dir, host) = fixture(&[("/sys/kernel/tracing/events/sched/enable", "0")], 0);
        assert_eq!(tracefs_mounted(&host), Some("/sys/kernel/tracing"));
        let c = tracefs(&host);
        assert!(c.detail.starts_with("mounted at /sys/kernel/tracing but without kprobe_events"), "{c:?}");
        assert_eq!(c.fix.as_deref(), Some("boot a kernel with CONFIG_KPROBE_EVENTS=y"));
    }
}
