//! Kprobes on module functions through tracefs, armed before the module is loaded.
//!
//! A driver's test script loads the driver and uses it at once; a hook attached when the daemon
//! notices the module would miss its first calls. tracefs accepts `p:GROUP/NAME MODULE:FUNC` for a
//! module that is not loaded, and the kernel arms the probe when the module comes (before its init
//! runs), disarms it when the module goes and arms it again on reload. The perf kprobe PMU that aya
//! uses refuses absent symbols, so the eBPF program is attached to the trace event itself:
//! `perf_event_open(PERF_TYPE_TRACEPOINT, id)` + `PERF_EVENT_IOC_SET_BPF`, as aya's own legacy path
//! does for kernels without the PMU.
use std::{
    fs::OpenOptions,
    io::Write,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, anyhow, bail};
use aya::programs::KProbe;
use perf_event_open_sys as perf;

/// The tracefs group of every event pfn-auditor creates.
const GROUP: &str = "pfnaudit";

static NEXT_EVENT: AtomicU32 = AtomicU32::new(0);

/// One kprobe event and the perf event that runs the eBPF program on it; removed on drop.
pub(crate) struct TracefsKprobe {
    tracefs: PathBuf,
    name: String,
    /// Closed before the event is removed (the kernel refuses to remove an event in use).
    perf_fd: Option<OwnedFd>,
}

/// The mounted tracefs with kprobe events, if any.
pub(crate) fn tracefs_root() -> Option<PathBuf> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"].into_iter().map(PathBuf::from).find(|p| p.join("kprobe_events").exists())
}

impl TracefsKprobe {
    /// Attaches `prog` (already loaded) to `module:function`, at its entry or, with `is_return`,
    /// its return.
    pub fn attach(
        tracefs: &Path,
        prog: &KProbe,
        program_name: &str,
        module: &str,
        function: &str,
        is_return: bool,
    ) -> anyhow::Result<Self> {
        let name = format!("e{}_{}", std::process::id(), NEXT_EVENT.fetch_add(1, Ordering::Relaxed));
        let kind = if is_return { 'r' } else { 'p' };
        write_kprobe_events(tracefs, &format!("{kind}:{GROUP}/{name} {module}:{function}"))
            .with_context(|| format!("creating the tracefs kprobe on {module}:{function}"))?;
        // From here on, dropping `probe` removes the event again.
        let mut probe = Self { tracefs: tracefs.to_path_buf(), name, perf_fd: None };
        let id_path = tracefs.join("events").join(GROUP).join(&probe.name).join("id");
        let id: u64 = std::fs::read_to_string(&id_path)
            .with_context(|| format!("reading {}", id_path.display()))?
            .trim()
            .parse()
            .with_context(|| format!("{} is not a number", id_path.display()))?;
        let prog_fd = prog.fd()?.as_fd().as_raw_fd();
        probe.perf_fd =
            Some(open_tracepoint_with_bpf(id, prog_fd).with_context(|| format!("attaching {program_name} to {module}:{function}"))?);
        Ok(probe)
    }
}

impl Drop for TracefsKprobe {
    fn drop(&mut self) {
        drop(self.perf_fd.take());
        if let Err(e) = write_kprobe_events(&self.tracefs, &format!("-:{GROUP}/{}", self.name)) {
            log::warn!("cannot remove tracefs kprobe {GROUP}/{}: {e}", self.name);
        }
    }
}

/// Removes events of earlier runs that were killed before they could: their pid is gone, or now
/// belongs to a process that is not pfn-auditor (pids are reused). Events of another running
/// instance are kept (instances coexist); and the kernel refuses to remove an event that a perf
/// event still uses (EBUSY), so a live run's hooks cannot be taken from it even by mistake.
pub(crate) fn remove_stale_events(tracefs: &Path) {
    let Ok(events) = std::fs::read_to_string(tracefs.join("kprobe_events")) else { return };
    for line in events.lines() {
        // `p:pfnaudit/e123_4 pfnaudit_test:pfnaudit_unpin_tracked`
        let Some(event) = line.split_whitespace().next().and_then(|e| e.split_once(':')).map(|(_, e)| e) else { continue };
        let Some(name) = event.strip_prefix(GROUP).and_then(|n| n.strip_prefix('/')) else { continue };
        let Some(pid) = name.strip_prefix('e').and_then(|n| n.split('_').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !is_auditor(pid) {
            let _ = write_kprobe_events(tracefs, &format!("-:{event}"));
        }
    }
}

/// Whether process `pid` exists and is pfn-auditor (its `comm`, the executable's name).
fn is_auditor(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == "pfn-auditor")
}

/// Appends one command: opening kprobe_events without append would delete every event.
fn write_kprobe_events(tracefs: &Path, command: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new().append(true).open(tracefs.join("kprobe_events"))?;
    file.write_all(format!("{command}\n").as_bytes())
}

fn open_tracepoint_with_bpf(id: u64, prog_fd: i32) -> anyhow::Result<OwnedFd> {
    let mut attr = perf::bindings::perf_event_attr {
        type_: perf::bindings::PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<perf::bindings::perf_event_attr>() as u32,
        config: id,
        ..Default::default()
    };
    attr.__bindgen_anon_2.wakeup_events = 1;
    // All processes on CPU 0: the program is attached to the trace event, which runs it on every
    // CPU; the perf event only carries it.
    // SAFETY: attr is initialized; the returned fd is checked before use.
    let fd = unsafe { perf::perf_event_open(&mut attr, -1, 0, -1, perf::bindings::PERF_FLAG_FD_CLOEXEC as _) };
    if fd < 0 {
        bail!("perf_event_open(tracepoint {id}): {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain ioctls on a valid perf event fd.
    if unsafe { perf::ioctls::SET_BPF(fd.as_raw_fd(), prog_fd as u32) } < 0 {
        return Err(anyhow!("PERF_EVENT_IOC_SET_BPF: {}", std::io::Error::last_os_error()));
    }
    if unsafe { perf::ioctls::ENABLE(fd.as_raw_fd(), 0) } < 0 {
        return Err(anyhow!("PERF_EVENT_IOC_ENABLE: {}", std::io::Error::last_os_error()));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_dead_runs_are_removed_and_live_ones_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let own = std::process::id();
        // A live process that is not pfn-auditor: the pid of a killed run, reused.
        let mut reused = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let events = format!(
            "p:pfnaudit/e999999999_0 pfnaudit_test:pfnaudit_unpin_tracked\n\
             r:pfnaudit/e{own}_1 videobuf2_common:get_vaddr_frames\n\
             p:pfnaudit/e{}_2 pfnaudit_test:pfnaudit_unpin_tracked\n\
             p:kprobes/e999999999_0 someone_elses:probe\n",
            reused.id()
        );
        std::fs::write(dir.path().join("kprobe_events"), &events).unwrap();
        remove_stale_events(dir.path());
        let _ = reused.kill();
        let _ = reused.wait();
        // A regular file stands in for tracefs: the commands written are appended to it.
        let written = std::fs::read_to_string(dir.path().join("kprobe_events")).unwrap();
        assert_eq!(&written[events.len()..], format!("-:pfnaudit/e999999999_0\n-:pfnaudit/e{}_2\n", reused.id()));
    }
}
