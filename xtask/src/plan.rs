//! tests/vm/scenarios.toml: which scenarios to run on which kernels and what the auditor must report.
//!
//! ```toml
//! [[scenario]]
//! name = "frame-vector-kept-after-revoke"
//! program = "scenario"                      # default; "intree": tests/vm/intree/pfnaudit-intree
//! args = ["frame-vector", "--keep"]         # the program's arguments
//! expect = [{ kind = "pin-outlived-revocation", count = 1, path = "/dev/pfnaudit" }]
//! # Optional per expectation, each checked on every finding of that kind:
//! #   path = "/dev/pfnaudit"                  pin.vma.path
//! #   holder_module = "vfio_iommu_type1"      pin.holder.module
//! #   holder = "pfnaudit_pin_tracked"         pin.holder.function (the first frame of the pin's
//! #                                           stack outside the hooked function)
//! #   pages = 16                              pin.pages
//! #   hook = "zap_vma_ptes"                   revocation.hook
//! #   caller = "vfio_pci_zap_and_vma_lock"    revocation.caller.function (clone suffixes such as
//! #                                           .constprop.0 / .isra.0 ignored on both sides)
//! #   holder_source = "pfnaudit_test.c"       pin.holder.file and .line: a line of
//! #                                           tests/vm/module/<file> that calls a raw lookup
//! #                                           (NDJSON and the gate's SARIF)
//! expect_on = { "5.10" = [] }               # replaces `expect` on these kernels
//! min_suppressed = 1                        # summary.suppressed must be at least this
//! max_lost = 0                              # default 0
//! expect_loss = false                       # true: records must be lost (any number)
//! background = false                        # true: run until /tmp/scenario.ready, stop the auditor, kill
//! kernels = ["6.1", "6.12"]                 # default: all
//! demo = false                              # the scenario `cargo xtask demo` shows
//! gate_exit = 1                             # run under `pfn-auditor gate` instead; its exit code
//! modules_loaded_by_command = true           # gate only: the gated command loads the modules
//! output_unwritable = "ndjson"              # exit 5 on an output that cannot be written: "ndjson"
//!                                           # (`--output /dev/full`, gate or run), "junit" (gate
//!                                           # `--junit /dev/full`), "closed-pipe" (run `--output -`
//!                                           # into a pipe whose reader exited); see `Unwritable`
//! metrics = true                            # `run --metrics`, scraped by Prometheus on the host
//!                                           # while the program runs in a loop (xtask/src/prometheus.rs)
//! check = "storm"                           # a guest-side check instead (init.sh `check_storm`,
//!                                           # judged by verdict.rs `judge_check`); see `Check`
//! max_rss_mib = 64                          # check = "storm": the daemon's peak RSS bound
//! why = "..."
//! ```

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    scenario: Vec<Scenario>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Which scenario program runs it: `scenario` (pfnaudit-scenario, the test module; default) or
    /// `intree` (pfnaudit-intree, Debian's own drivers).
    #[serde(default = "default_program")]
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub expect: Vec<Expect>,
    /// Per kernel label: the expectations there, instead of `expect`.
    #[serde(default)]
    pub expect_on: BTreeMap<String, Vec<Expect>>,
    /// The summary record's `suppressed` count must be at least this.
    pub min_suppressed: Option<u64>,
    #[serde(default)]
    pub max_lost: u64,
    /// The scenario makes the kernel lose records on purpose: some must be lost (`max_lost` ignored).
    #[serde(default)]
    pub expect_loss: bool,
    #[serde(default)]
    pub background: bool,
    pub kernels: Option<Vec<String>>,
    #[serde(default)]
    pub demo: bool,
    /// Run the scenario as `pfn-auditor gate ... -- pfnaudit-scenario ARGS` and expect this exit code.
    pub gate_exit: Option<u8>,
    /// With `gate_exit`: the modules are unloaded first and the gated command loads them, so the
    /// auditor starts before the driver (its symbols and release hooks come later).
    #[serde(default)]
    pub modules_loaded_by_command: bool,
    /// An output that cannot be written, of `gate` (with `gate_exit = 5`) or, without, of `run`
    /// (no program runs). Judged are exit code 5, the one-line error naming the output and, for
    /// `gate`, the reports saying why (nothing can be replayed).
    pub output_unwritable: Option<Unwritable>,
    /// `run --metrics` in the guest, the program run in a loop while Prometheus on the host scrapes
    /// the daemon through a QEMU port forward; `rate()` over a counter must return a value above 0.
    #[serde(default)]
    pub metrics: bool,
    /// A guest-side check of the daemon itself rather than a scenario under it.
    pub check: Option<Check>,
    /// `check = "storm"`: the daemon's peak RSS (VmHWM) must stay under this many MiB.
    pub max_rss_mib: Option<u64>,
    #[serde(default)]
    pub why: String,
}

/// Which output cannot be written, and how (`output_unwritable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unwritable {
    /// `--output /dev/full` (`gate` or `run`): every write fails with ENOSPC, a full disk.
    Ndjson,
    /// `gate --junit /dev/full`: the JUnit report, written at the end, fails.
    Junit,
    /// `run --output -` with stdout a pipe whose reader has exited: writes fail with EPIPE.
    ClosedPipe,
}

impl Unwritable {
    /// The start of the one line `pfn-auditor: cannot write the <output>: <reason>` naming it.
    pub fn error(self) -> &'static str {
        match self {
            Unwritable::Ndjson => "cannot write the NDJSON output /dev/full",
            Unwritable::Junit => "cannot write the JUnit report /dev/full",
            Unwritable::ClosedPipe => "cannot write the NDJSON output stdout",
        }
    }

    /// The guest's mode (tests/vm/guest/init.sh) for `gate` (`gated`) or `run`; `None` where the
    /// output does not apply (a JUnit report of `run`, stdout of `gate`, which is the command's).
    fn mode(self, gated: bool) -> Option<&'static str> {
        match (self, gated) {
            (Unwritable::Ndjson, true) => Some("gate-full"),
            (Unwritable::Ndjson, false) => Some("run-full"),
            (Unwritable::Junit, true) => Some("gate-junit-full"),
            (Unwritable::ClosedPipe, false) => Some("run-closed-pipe"),
            (Unwritable::Junit, false) | (Unwritable::ClosedPipe, true) => None,
        }
    }
}

/// The guest-side checks (tests/vm/guest/init.sh `check_<name>`, dashes as underscores). The
/// scenario's `program` and `args` are the workload where the check runs one; `expect` applies to
/// the NDJSON of the (first) daemon, as for any scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// `doctor --json` as root, as nobody, without tracefs, with kprobes switched off in debugfs
    /// (and `run` then); no workload.
    Doctor,
    /// SIGTERM while `run` is attaching; no workload.
    SigtermAttach,
    /// SIGTERM while `run` drains the workload's records (the workload still running).
    SigtermDrain,
    /// Two `run`s at once, both seeing the workload; the second stops, the first keeps working.
    SecondInstance,
    /// A second `run` while one runs is refused (kernels before 5.14), and `doctor` does not
    /// attach beside it; the first sees the workload.
    SecondInstanceRefused,
    /// `run` killed with SIGKILL, then a new `run` with the workload; nothing left behind.
    Kill9Restart,
    /// `run` under the workload (given the daemon's pid: it stops it for a while), its peak RSS
    /// bounded and its losses accounted per hook.
    Storm,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Doctor => "doctor",
            Check::SigtermAttach => "sigterm-attach",
            Check::SigtermDrain => "sigterm-drain",
            Check::SecondInstance => "second-instance",
            Check::SecondInstanceRefused => "second-instance-refused",
            Check::Kill9Restart => "kill9-restart",
            Check::Storm => "storm",
        }
    }

    /// Whether the daemon records raw events (`run --events`), so its recording can be replayed.
    pub fn records_events(self) -> bool {
        matches!(self, Check::SecondInstance | Check::SecondInstanceRefused | Check::Kill9Restart)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub kind: String,
    pub count: usize,
    /// The mapping every finding of this kind must name (`pin.vma.path`), as evidence a user reads.
    pub path: Option<String>,
    /// The holder's module every finding of this kind must name (`pin.holder.module`).
    pub holder_module: Option<String>,
    /// The holder function every finding of this kind must name (`pin.holder.function`, read
    /// from the pin's own stack), compared without compiler clone suffixes.
    pub holder: Option<String>,
    /// The pages every finding of this kind must say its pin holds (`pin.pages`).
    pub pages: Option<u64>,
    /// The revoking hook every finding of this kind must name (`revocation.hook`).
    pub hook: Option<String>,
    /// The function that called the revoking hook (`revocation.caller.function`), compared
    /// without compiler clone suffixes.
    pub caller: Option<String>,
    /// The test driver's source file every finding of this kind must locate its holder in
    /// (`pin.holder.file` ends with it, and `pin.holder.line` of tests/vm/module/<file> calls a
    /// raw lookup), in NDJSON and in the gate's SARIF (`physicalLocation`).
    pub holder_source: Option<String>,
}

/// The programs a scenario can name, and their binary in the guest's /bin.
pub const PROGRAMS: &[(&str, &str)] = &[("scenario", "pfnaudit-scenario"), ("intree", "pfnaudit-intree")];

fn default_program() -> String {
    "scenario".into()
}

/// A function name without the suffixes of compiler-made clones (`.constprop.0`, `.isra.0`,
/// `.part.0`, `.cold`): `zap.constprop.0` and `zap` are the same function to a reader.
pub fn function_base(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

impl Scenario {
    pub fn runs_on(&self, kernel_label: &str) -> bool {
        self.kernels.as_ref().is_none_or(|ks| ks.iter().any(|k| k == kernel_label))
    }

    /// What the auditor must report on this kernel.
    pub fn expect_for(&self, kernel_label: &str) -> &[Expect] {
        self.expect_on.get(kernel_label).unwrap_or(&self.expect)
    }

    /// The program's binary name in the guest.
    pub fn binary(&self) -> &'static str {
        PROGRAMS.iter().find(|(key, _)| *key == self.program).map_or("pfnaudit-scenario", |(_, bin)| bin)
    }

    /// Whether `pfn-auditor replay` of the run's NDJSON must reprint its findings (it recorded
    /// raw events).
    pub fn replayable(&self) -> bool {
        self.output_unwritable.is_none() && self.check.is_none_or(Check::records_events)
    }

    /// The guest plan line: `<name> <mode> <program> <args...>` (see tests/vm/guest/init.sh).
    pub fn plan_line(&self) -> String {
        let check_mode;
        let mode = match (self.gate_exit, self.background) {
            _ if self.check.is_some() => {
                check_mode = format!("check-{}", self.check.map_or("", Check::name));
                check_mode.as_str()
            }
            (Some(_), _) if self.modules_loaded_by_command => "gate-late",
            (gated, _) if self.output_unwritable.is_some() => {
                self.output_unwritable.and_then(|u| u.mode(gated.is_some())).expect("checked when parsed")
            }
            (None, _) if self.metrics => "metrics",
            (Some(_), _) => "gate",
            (None, true) => "background",
            (None, false) => "run",
        };
        let words: Vec<&str> = std::iter::once(self.binary()).chain(self.args.iter().map(String::as_str)).collect();
        format!("{} {mode} {}\n", self.name, words.join(" "))
    }
}

pub fn load(path: &Path) -> Result<Vec<Scenario>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not a valid scenario list", path.display()))
}

fn parse(text: &str) -> Result<Vec<Scenario>> {
    let file: File = toml::from_str(text)?;
    for s in &file.scenario {
        // The guest splits plan lines on whitespace: names and arguments must be single words.
        let words = std::iter::once(&s.name).chain(&s.args);
        if let Some(bad) = words.into_iter().find(|w| w.is_empty() || w.contains(char::is_whitespace)) {
            bail!("scenario `{}`: `{bad}` is empty or contains whitespace", s.name);
        }
        if !PROGRAMS.iter().any(|(key, _)| *key == s.program) {
            let known: Vec<&str> = PROGRAMS.iter().map(|(key, _)| *key).collect();
            bail!("scenario `{}`: unknown program `{}` (one of {})", s.name, s.program, known.join(", "));
        }
        if let Some(kernels) = &s.kernels
            && let Some(label) = s.expect_on.keys().find(|k| !kernels.contains(k))
        {
            bail!("scenario `{}`: expect_on names kernel {label}, which it does not run on", s.name);
        }
        if let Some(unwritable) = s.output_unwritable {
            if s.gate_exit.is_some_and(|c| c != 5) || s.modules_loaded_by_command || s.background {
                bail!(
                    "scenario `{}`: output_unwritable runs `run` or `gate` to exit 5 (gate_exit = 5 or none; not background or modules_loaded_by_command)",
                    s.name
                );
            }
            if unwritable.mode(s.gate_exit.is_some()).is_none() {
                bail!("scenario `{}`: output_unwritable = {unwritable:?} is an output of `run` or `gate` only, not both", s.name);
            }
        }
        let unwritable = s.output_unwritable.is_some();
        if s.metrics && (s.gate_exit.is_some() || s.background || unwritable) {
            bail!("scenario `{}`: metrics runs `run --metrics` (not gate_exit, background or output_unwritable)", s.name);
        }
        if s.check.is_some() && (s.gate_exit.is_some() || s.background || unwritable) {
            bail!("scenario `{}`: a check runs the daemon its own way (no gate_exit, background or output_unwritable)", s.name);
        }
        if s.max_rss_mib.is_some() != (s.check == Some(Check::Storm)) {
            bail!("scenario `{}`: max_rss_mib goes with check = \"storm\", and a storm needs it", s.name);
        }
        if s.modules_loaded_by_command && s.gate_exit.is_none() {
            bail!("scenario `{}`: modules_loaded_by_command needs gate_exit (only gated commands load modules)", s.name);
        }
        if file.scenario.iter().filter(|o| o.name == s.name).count() > 1 {
            bail!("scenario `{}` is listed twice", s.name);
        }
    }
    Ok(file.scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_with_defaults_and_kernel_filters() {
        let list = parse(
            r#"
            [[scenario]]
            name = "keep"
            args = ["frame-vector", "--keep"]
            expect = [{ kind = "pin-outlived-revocation", count = 1 }]
            kernels = ["6.1"]
            [[scenario]]
            name = "clean"
            "#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].runs_on("6.1") && !list[0].runs_on("5.10"));
        assert!(list[1].runs_on("5.10") && list[1].expect.is_empty() && list[1].max_lost == 0);
        assert_eq!(list[0].plan_line(), "keep run pfnaudit-scenario frame-vector --keep\n");
    }

    #[test]
    fn arguments_with_spaces_and_duplicate_names_are_refused() {
        let spaced = "[[scenario]]\nname = \"a\"\nargs = [\"two words\"]\n";
        assert!(parse(spaced).unwrap_err().to_string().contains("whitespace"));
        let twice = "[[scenario]]\nname = \"a\"\n[[scenario]]\nname = \"a\"\n";
        assert!(parse(twice).unwrap_err().to_string().contains("twice"));
        let ungated = "[[scenario]]\nname = \"a\"\nmodules_loaded_by_command = true\n";
        assert!(parse(ungated).unwrap_err().to_string().contains("needs gate_exit"));
        let late = "[[scenario]]\nname = \"a\"\nargs = [\"x\"]\ngate_exit = 0\nmodules_loaded_by_command = true\n";
        assert_eq!(parse(late).unwrap()[0].plan_line(), "a gate-late pfnaudit-scenario x\n");
        let full = "[[scenario]]\nname = \"a\"\nargs = [\"x\"]\ngate_exit = 5\noutput_unwritable = \"ndjson\"\n";
        assert_eq!(parse(full).unwrap()[0].plan_line(), "a gate-full pfnaudit-scenario x\n");
        assert_eq!(parse(&full.replace("ndjson", "junit")).unwrap()[0].plan_line(), "a gate-junit-full pfnaudit-scenario x\n");
        let error = parse(&full.replace("ndjson", "closed-pipe")).unwrap_err().to_string();
        assert!(error.contains("output of `run` or `gate` only"), "stdout of gate is the command's: {error}");
        let run = |output: &str| parse(&format!("[[scenario]]\nname = \"a\"\noutput_unwritable = \"{output}\"\n"));
        assert_eq!(run("ndjson").unwrap()[0].plan_line(), "a run-full pfnaudit-scenario\n");
        assert_eq!(run("closed-pipe").unwrap()[0].plan_line(), "a run-closed-pipe pfnaudit-scenario\n");
        assert!(run("junit").unwrap_err().to_string().contains("output of `run` or `gate` only"), "run writes no JUnit");
        assert!(run("stderr").is_err(), "an output the scenarios do not know");
        let scraped = "[[scenario]]\nname = \"a\"\nargs = [\"noise\", \"50\"]\nmetrics = true\n";
        assert_eq!(parse(scraped).unwrap()[0].plan_line(), "a metrics pfnaudit-scenario noise 50\n");
        assert!(parse("[[scenario]]\nname = \"a\"\nmetrics = true\ngate_exit = 0\n").unwrap_err().to_string().contains("metrics runs"));
        let wrong = "[[scenario]]\nname = \"a\"\ngate_exit = 1\noutput_unwritable = \"ndjson\"\n";
        assert!(parse(wrong).unwrap_err().to_string().contains("exit 5"));
    }

    #[test]
    fn program_per_kernel_expectations_and_evidence_keys_parse() {
        let list = parse(
            r#"
            [[scenario]]
            name = "claim"
            program = "intree"
            args = ["iomem-claim-keep"]
            kernels = ["5.10", "6.1"]
            expect = [{ kind = "pin-outlived-revocation", count = 1, holder_module = "vfio_iommu_type1", hook = "unmap_mapping_range", caller = "__request_region" }]
            expect_on = { "5.10" = [] }
            min_suppressed = 1
            "#,
        )
        .unwrap();
        let s = &list[0];
        assert_eq!(s.plan_line(), "claim run pfnaudit-intree iomem-claim-keep\n");
        assert!(s.expect_for("5.10").is_empty());
        let e = &s.expect_for("6.1")[0];
        assert_eq!(
            (e.holder_module.as_deref(), e.hook.as_deref(), e.caller.as_deref()),
            (Some("vfio_iommu_type1"), Some("unmap_mapping_range"), Some("__request_region"))
        );
        assert_eq!(s.min_suppressed, Some(1));
        let bad = "[[scenario]]\nname = \"a\"\nprogram = \"nope\"\n";
        assert!(parse(bad).unwrap_err().to_string().contains("unknown program `nope`"));
        let elsewhere = "[[scenario]]\nname = \"a\"\nkernels = [\"6.1\"]\nexpect_on = { \"5.10\" = [] }\n";
        assert!(parse(elsewhere).unwrap_err().to_string().contains("does not run on"));
    }

    #[test]
    fn checks_have_their_own_plan_mode_and_exclude_the_other_modes() {
        let storm = "[[scenario]]\nname = \"s\"\nargs = [\"storm\", \"15000\"]\ncheck = \"storm\"\nmax_rss_mib = 64\n";
        let list = parse(storm).unwrap();
        assert_eq!(list[0].plan_line(), "s check-storm pfnaudit-scenario storm 15000\n");
        assert!(!list[0].replayable());
        let kill = "[[scenario]]\nname = \"k\"\nargs = [\"x\"]\ncheck = \"kill9-restart\"\n";
        assert_eq!(parse(kill).unwrap()[0].plan_line(), "k check-kill9-restart pfnaudit-scenario x\n");
        assert!(parse(kill).unwrap()[0].replayable());
        let gated = "[[scenario]]\nname = \"g\"\ncheck = \"doctor\"\ngate_exit = 0\n";
        assert!(parse(gated).unwrap_err().to_string().contains("its own way"));
        let unbounded = "[[scenario]]\nname = \"s\"\ncheck = \"storm\"\n";
        assert!(parse(unbounded).unwrap_err().to_string().contains("max_rss_mib"));
        assert!(parse("[[scenario]]\nname = \"s\"\ncheck = \"nope\"\n").is_err());
    }

    #[test]
    fn the_checked_in_scenario_list_parses() {
        let list = load(&crate::sh::workspace_root().join("tests/vm/scenarios.toml")).unwrap();
        assert!(list.iter().any(|s| s.program == "intree"), "the in-tree scenarios are listed");
    }

    #[test]
    fn clone_suffixes_are_ignored_in_function_names() {
        assert_eq!(function_base("vfio_pci_zap_and_vma_lock.constprop.0"), "vfio_pci_zap_and_vma_lock");
        assert_eq!(function_base("revoke_iomem.isra.0"), "revoke_iomem");
        assert_eq!(function_base("__request_region"), "__request_region");
    }
}
