//! The live pipeline: attach → drain → decode → correlate → sinks, until told to stop.
//! `run` stops on SIGINT/SIGTERM or `--duration`; `gate` stops when its command exits.
use std::{future::Future, sync::Arc, time::Duration};

use auditor_common::Hook;

use crate::{
    decode::{Decoder, LiveEnrich, RawRecord},
    drain::{KernelMaps, LossTracker, Undecodable, totals},
    file_names::{KernelFileNames, Mounts},
    file_paths::FilePaths,
    metrics::Metrics,
    module_lines::ModuleDebugInfo,
    probes::{
        self, Attached, KernelFacts,
        table::{MissingEssential, missing_essential},
    },
    symbols::{KernelSymbols, LoadedModules},
    vocab::{
        hook_status::{HookState, HookStatus},
        record::{Lost, hook_or_unknown},
    },
};

/// How often the ring buffer is drained. The kernel wakes the daemon for no record (only for a
/// backlog past 256 KiB, `auditor-ebpf/src/emit.rs`): records wait for this timer, so a finding
/// is written at most this long plus its decoding after the event that completes it, within
/// 100 ms, and a busy holder costs no context switch per record.
pub(crate) const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// How often the kernel's counters are read for losses and metrics.
const COUNTER_POLL: Duration = Duration::from_millis(100);

/// What a session reports, in order; `live.rs` turns these into records for the pipeline.
pub(crate) trait Observer {
    /// Probes attached; `status` is ready to be written.
    fn attached(&mut self, attached: &Attached);
    /// One decoded event.
    fn event(&mut self, event: &crate::vocab::event::Event);
    /// Records of a hook lost since the last report: the ring buffer was full, or they could not
    /// be decoded (version skew between eBPF object and daemon).
    fn lost(&mut self, lost: &Lost);
    /// A hook in a module was attached, or detached, after `attached` (module loaded or unloaded).
    fn hook_changed(&mut self, status: &HookStatus, ts_ns: u64);
    /// An output failed: the session stops at once.
    fn failed(&self) -> bool;
    /// Every poll (100 ms), whether or not anything was recorded.
    fn poll(&mut self);
}

pub(crate) struct SessionOptions {
    pub release_functions: Vec<crate::vocab::hook_status::ReleaseFunction>,
    pub ring_buffer_bytes: u32,
    /// `--module-debug-dir`: where to look first for modules' `.ko` files with debug info.
    pub module_debug_dirs: Vec<std::path::PathBuf>,
    pub programs: probes::floor::ProgramSet,
}

/// What the session saw, for the summary.
pub(crate) struct SessionEnd {
    pub hooks: Vec<crate::vocab::record::HookTotals>,
}

/// An attached session, ready to run.
pub(crate) struct Session {
    attached: Attached,
    maps: KernelMaps,
    /// What kallsyms said when `modules` was read: stacks of a module loaded later symbolize
    /// only after a refresh.
    symbols: KernelSymbols,
    modules: LoadedModules,
    names: KernelFileNames,
    files: FilePaths,
    /// Source lines of module frames (`module_lines.rs`).
    lines: ModuleDebugInfo,
    decoder: Decoder,
    losses: LossTracker,
    /// Records that did not parse since the last counter poll, per hook name.
    undecodable: Undecodable,
    metrics: Arc<Metrics>,
    /// Held until the session ends where instances cannot coexist (`instance_lock.rs`).
    _instance: Option<crate::instance_lock::InstanceLock>,
}

impl Session {
    /// Attaches everything. Fails (setup error) when the kernel lacks what auditing needs.
    /// `metrics` gets the kernel's per-hook counters at every poll.
    pub fn start(opts: &SessionOptions, metrics: Arc<Metrics>, observer: &mut dyn Observer) -> anyhow::Result<Self> {
        refuse_disabled_kprobes(&crate::host_checks::Host::this())?;
        let facts = KernelFacts::read()?;
        // Before anything is attached: on kernels before 5.14 a second instance is refused.
        probes::require_root()?;
        let instance = crate::instance_lock::for_kernel(facts.version, &facts.release)?;
        let mut attached = probes::load_and_attach(&facts, &opts.release_functions, opts.ring_buffer_bytes, opts.programs)?;
        require_essential_hooks(&attached)?;
        let maps = KernelMaps::take(&mut attached.ebpf)?;
        observer.attached(&attached);
        let decoder = Decoder::new(attached.counter_hooks.clone(), attached.symbols_by_slot());
        Ok(Self {
            attached,
            maps,
            symbols: facts.symbols,
            modules: facts.modules,
            names: KernelFileNames::new(Mounts::read()),
            files: FilePaths::default(),
            lines: ModuleDebugInfo::new(opts.module_debug_dirs.clone(), &facts.release),
            decoder,
            losses: LossTracker::default(),
            undecodable: Undecodable::default(),
            metrics,
            _instance: instance,
        })
    }

    /// Runs until `stop` completes, then drains what is left and returns the totals. Stops early,
    /// without the final drain, when the observer's outputs failed.
    pub async fn run(mut self, stop: impl Future<Output = ()>, observer: &mut dyn Observer) -> anyhow::Result<SessionEnd> {
        tokio::pin!(stop);
        let mut drain = tokio::time::interval(DRAIN_EVERY);
        let mut poll = tokio::time::interval(COUNTER_POLL);
        loop {
            tokio::select! {
                batch = self.maps.next_batch() => {
                    let batch = batch?;
                    self.handle_batch(batch, observer);
                }
                _ = drain.tick() => {
                    let batch = self.maps.drain_now();
                    self.handle_batch(batch, observer);
                }
                _ = poll.tick() => {
                    self.poll_counters(observer);
                    observer.poll();
                }
                _ = &mut stop => break,
            }
            if observer.failed() {
                return Ok(SessionEnd { hooks: self.totals() });
            }
        }
        // Records written just before the stop are still in the ring: read them all.
        let rest = self.maps.drain_now();
        self.handle_batch(rest, observer);
        self.poll_counters(observer);
        Ok(SessionEnd { hooks: self.totals() })
    }

    /// The kernel's counters and run-time statistics per hook, now.
    fn totals(&self) -> Vec<crate::vocab::record::HookTotals> {
        totals(&self.maps.read_counters(), &self.attached.counter_hooks, self.attached.run_times().as_deref())
    }

    fn handle_batch(&mut self, batch: Vec<Vec<u8>>, observer: &mut dyn Observer) {
        // Also on the tick's empty batches: a module load is followed within one tick even when
        // nothing is recorded. And these records were written before this check, so a module
        // their stacks point into is in /proc/modules by now (unless already unloaded again).
        self.follow_modules(observer);
        let mut enrich = LiveEnrich::new(&self.symbols, &mut self.names, &mut self.files, &mut self.lines);
        for bytes in batch {
            if observer.failed() {
                return;
            }
            match RawRecord::parse(&bytes) {
                Ok(raw) => {
                    if let Some(event) = self.decoder.decode(&raw, &mut enrich) {
                        observer.event(&event);
                    }
                }
                Err(e) => {
                    let hook = RawRecord::hook_slot(&bytes).map(|slot| self.decoder.hook(slot));
                    let name = hook_or_unknown(hook.as_ref()).to_string();
                    if self.undecodable.count(hook) {
                        log::warn!("undecodable record of {name} (eBPF object and daemon disagree?): {e}");
                    }
                }
            }
        }
    }

    /// On a module load, unload or reload: re-reads kallsyms (for symbolization and module hooks)
    /// and brings the module hooks in line. /proc/modules is a few lines; kallsyms is megabytes.
    fn follow_modules(&mut self, observer: &mut dyn Observer) {
        let modules = match LoadedModules::read() {
            Ok(modules) if modules != self.modules => modules,
            Ok(_) => return,
            Err(e) => {
                log::warn!("{e}");
                return;
            }
        };
        match KernelSymbols::load() {
            Ok(symbols) => self.symbols = symbols,
            Err(e) => {
                log::warn!("{e}");
                return;
            }
        }
        self.modules = modules;
        self.lines.forget_modules();
        let now = monotonic_ns();
        let changed = self.attached.follow_modules(&self.symbols);
        if !changed.is_empty() {
            self.decoder.set_symbols(self.attached.symbols_by_slot());
        }
        for status in changed {
            observer.hook_changed(&status, now);
        }
    }

    fn poll_counters(&mut self, observer: &mut dyn Observer) {
        let counters = self.maps.read_counters();
        let now = monotonic_ns();
        for (slot, count) in self.losses.new_losses(&counters) {
            observer.lost(&Lost::ring_full(self.decoder.hook(slot as u32), count, now));
        }
        for lost in self.undecodable.take(now) {
            observer.lost(&lost);
        }
        for (hook, count) in self.decoder.take_stacks_unknown() {
            observer.lost(&Lost::stack_unknown(hook, count, now));
        }
        self.metrics.set_hooks(&totals(&counters, &self.attached.counter_hooks, self.attached.run_times().as_deref()));
    }
}

/// Without a raw-lookup hook or the revocation hooks the run would report nothing and look clean:
/// refuse to start instead.
fn require_essential_hooks(attached: &Attached) -> anyhow::Result<()> {
    let attached_hook = |hook: Hook| attached.hooks.iter().any(|h| h.hook == hook && h.state == HookState::Attached);
    match missing_essential(attached_hook) {
        None => Ok(()),
        Some(MissingEssential::RawLookup) => {
            anyhow::bail!("no raw PFN lookup hook could be attached on this kernel (run `pfn-auditor doctor`)")
        }
        Some(MissingEssential::Revocation(hook)) => {
            let why = attached.hooks.iter().find(|h| h.hook == hook).and_then(|h| h.reason.clone()).unwrap_or_default();
            anyhow::bail!("revocation hook {} could not be attached: {why} (run `pfn-auditor doctor`)", hook.name())
        }
    }
}

/// With kprobes switched off system-wide every hook attaches and none fires: the run would see
/// nothing and look clean. Refuse to start instead (setup error), with the command that fixes it.
fn refuse_disabled_kprobes(host: &crate::host_checks::Host) -> anyhow::Result<()> {
    let check = crate::host_checks::kprobes_on(host);
    match (check.state, check.fix) {
        (crate::host_checks::CheckState::Missing, Some(fix)) => anyhow::bail!("{}; `{fix}` (run `pfn-auditor doctor`)", check.detail),
        _ => Ok(()),
    }
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns()` stamps events with.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
