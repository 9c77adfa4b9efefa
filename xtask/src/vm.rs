//! One guest run on one kernel: fetch the kernel, build the module for it, pack the initramfs with a
//! plan, boot, and hand back what the guest sent. Shared by vm-test, demo and bench.

use crate::debian::PrivateApt;
use crate::kernels::{self, Series};
use crate::prometheus::Scrape;
use crate::qemu::{Boot, Clock, Finished};
use crate::sh::vm_target_dir;
use crate::{image, modules, setup};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Host-side artifacts every guest gets.
pub struct Guest {
    pub auditor: Option<PathBuf>,
    pub scenario_program: PathBuf,
    pub intree_program: PathBuf,
    apt: PrivateApt,
}

impl Guest {
    /// Installs tools, builds the static auditor (release, as CI does) unless `with_auditor` is false,
    /// and the static scenario programs.
    pub fn prepare(with_auditor: bool) -> Result<Self> {
        setup::install_tools()?;
        let auditor = if with_auditor { Some(setup::build_auditor(true)?) } else { None };
        let scenario_program = image::build_scenario_program()?;
        let intree_program = image::build_intree_program()?;
        Ok(Guest { auditor, scenario_program, intree_program, apt: PrivateApt::open()? })
    }

    /// Boots `series` with `plan` (one line per item, see tests/vm/guest/init.sh) under plain TCG.
    /// Result files are also kept under target/vm-test/<kernel>/<scenario>.<label>.
    pub fn boot(&self, series: Series, plan: &str) -> Result<(PathBuf, Finished)> {
        // TCG boots a distro kernel in about a minute; each item starts the auditor (BPF load and
        // verification are slow under emulation) and runs a scenario.
        self.boot_with(series, plan, Clock::Tcg, Duration::from_secs(150))
    }

    /// [`Guest::boot`] with another clock, allowing `per_item` for each plan item.
    pub fn boot_with(&self, series: Series, plan: &str, clock: Clock, per_item: Duration) -> Result<(PathBuf, Finished)> {
        let kernel = kernels::fetch(&self.apt, series)?;
        let modules = modules::prepare(&kernel)?;
        let in_tree = modules::in_tree(&kernel)?;
        let dir = vm_target_dir().join(series.label);
        std::fs::create_dir_all(&dir)?;
        let initrd = dir.join("initramfs.cpio");
        let contents = image::Contents {
            auditor: self.auditor.as_deref(),
            scenario_program: &self.scenario_program,
            intree_program: &self.intree_program,
            modules: &modules,
            in_tree: &in_tree,
            plan,
        };
        image::write(&initrd, &contents)?;
        let items = plan.lines().count() as u32;
        let timeout = Duration::from_secs(180) + per_item * items;
        // `metrics` items (tests/vm/guest/init.sh) are scraped from the host by Prometheus.
        let scrape = if plan.lines().any(|l| l.split_whitespace().nth(1) == Some("metrics")) {
            Some(Scrape::prepare(&self.apt, &dir)?)
        } else {
            None
        };
        eprintln!("xtask: booting {} with {items} plan item(s)", kernel.release);
        let mut finished =
            Boot { kernel: &kernel, initrd: &initrd, dir: &dir, timeout, disk: None, clock, scrape: scrape.as_ref() }.run()?;
        finished.source_root = image::source_root(&modules).map(Path::to_path_buf);
        for ((name, label), sent) in &finished.files {
            std::fs::write(dir.join(format!("{name}.{label}")), &sent.text)?;
        }
        Ok((dir, finished))
    }
}
