//! `cargo xtask demo`: the misbehaving-driver scenario on 6.1, showing what pfn-auditor tells a user.

use crate::kernels;
use crate::plan::{self, Scenario};
use crate::sh::vm_sources_dir;
use crate::verdict;
use crate::vm::Guest;
use anyhow::{Context, Result, bail};

pub fn run() -> Result<()> {
    let scenarios = plan::load(&vm_sources_dir().join("scenarios.toml"))?;
    let demo = pick(&scenarios).context("no scenario has `demo = true` or expects an error finding")?;
    println!("demo: {} — {}", demo.name, demo.why);
    let guest = Guest::prepare(true)?;
    let (dir, finished) = guest.boot(kernels::series("6.1")?, &demo.plan_line())?;
    let stderr = finished.files.get(&(demo.name.clone(), "stderr".into()));
    println!("--- pfn-auditor said (stderr) ---");
    print!("{}", stderr.map_or("(nothing was sent back)\n", |s| s.text.as_str()));
    println!("--- NDJSON: {} ---", dir.join(format!("{}.ndjson", demo.name)).display());
    match verdict::judge(demo, "6.1", &finished.files, true) {
        Ok(what) => {
            println!("caught: {what}");
            Ok(())
        }
        Err(why) => bail!("the demo finding was not caught: {why} (console: {})", finished.console_log.display()),
    }
}

/// The demo's scenario: the one marked `demo = true` on 6.1, else the first with an error finding.
pub fn pick(scenarios: &[Scenario]) -> Option<&Scenario> {
    let on_61 = || scenarios.iter().filter(|s| s.runs_on("6.1"));
    on_61()
        .find(|s| s.demo)
        .or_else(|| on_61().find(|s| s.expect_for("6.1").iter().any(|e| verdict::ERROR_KINDS.contains(&e.kind.as_str()))))
}
