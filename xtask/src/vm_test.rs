//! `cargo xtask vm-test`: every scenario of tests/vm/scenarios.toml on every selected kernel, one
//! PASS/FAIL line each, closing with `N passed, N failed`.

use crate::kernels::Series;
use crate::plan::{self, Scenario};
use crate::replay_check;
use crate::sh::vm_sources_dir;
use crate::verdict;
use crate::vm::Guest;
use anyhow::{Result, bail};

/// `only`: name prefixes; when not empty, only the scenarios whose name starts with one of them run.
pub fn run(kernels: &[Series], with_auditor: bool, only: &[String]) -> Result<()> {
    let mut scenarios = plan::load(&vm_sources_dir().join("scenarios.toml"))?;
    if !only.is_empty() {
        scenarios.retain(|s| only.iter().any(|prefix| s.name.starts_with(prefix.as_str())));
    }
    if !with_auditor {
        // The guest runs gated, metrics and check scenarios only with the auditor: nothing to judge without it.
        scenarios.retain(|s| s.gate_exit.is_none() && !s.metrics && s.check.is_none());
    }
    let guest = Guest::prepare(with_auditor)?;
    let (mut passed, mut failed) = (0, 0);
    for &series in kernels {
        let selected: Vec<&Scenario> = scenarios.iter().filter(|s| s.runs_on(series.label)).collect();
        if selected.is_empty() {
            continue;
        }
        let plan: String = selected.iter().map(|s| s.plan_line()).collect();
        let (verdicts, logs): (Vec<Result<String, String>>, String) = match guest.boot(series, &plan) {
            Ok((dir, finished)) => (
                selected
                    .iter()
                    .map(|s| {
                        let what = verdict::judge(s, series.label, &finished.files, with_auditor)?;
                        match &guest.auditor {
                            // Nothing (or no raw events) recorded to replay.
                            Some(_) if !s.replayable() => Ok(what),
                            Some(auditor) => {
                                let recording = dir.join(format!("{}.ndjson", s.name));
                                let sent = |label: &str| finished.files.get(&(s.name.clone(), label.to_string())).map(|f| f.text.as_str());
                                // A gate scenario's reports (the verdict checked they were sent).
                                let gate = match (s.gate_exit, sent("junit"), sent("sarif")) {
                                    (Some(_), Some(junit), Some(sarif)) => {
                                        Some(replay_check::GateReports { junit, sarif, source_root: finished.source_root.as_deref() })
                                    }
                                    _ => None,
                                };
                                let replayed =
                                    replay_check::check(auditor, &recording, &vm_sources_dir().join("policy.toml"), gate.as_ref())?;
                                Ok(format!("{what}; {replayed}"))
                            }
                            None => Ok(what),
                        }
                    })
                    .collect(),
                format!("console {}, results in {}", finished.console_log.display(), dir.display()),
            ),
            Err(err) => (selected.iter().map(|_| Err(format!("{err:#}"))).collect(), String::new()),
        };
        let kernel_failed = verdicts.iter().any(Result::is_err);
        for (scenario, verdict) in selected.iter().zip(verdicts) {
            match verdict {
                Ok(what) => {
                    passed += 1;
                    println!("PASS {} {}: {what}", series.label, scenario.name);
                }
                Err(why) => {
                    failed += 1;
                    println!("FAIL {} {}: {why}", series.label, scenario.name);
                }
            }
        }
        if kernel_failed && !logs.is_empty() {
            println!("  {} logs: {logs}", series.label);
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} VM scenario check(s) failed");
    }
    if passed == 0 {
        bail!("no scenario selected for these kernels in {}", vm_sources_dir().join("scenarios.toml").display());
    }
    Ok(())
}
