//! tests/vm/scenarios.toml: which scenarios to run on which kernels and what the auditor must report.
//!
//! ```toml
//! [[scenario]]
//! name = "frame-vector-kept-after-revoke"
//! args = ["frame-vector", "--keep"]         # pfnaudit-scenario's arguments
//! expect = [{ kind = "pin-outlived-revocation", count = 1, path = "/dev/pfnaudit" }]  # path optional
//! max_lost = 0                              # default 0
//! expect_loss = false                       # true: records must be lost (any number)
//! background = false                        # true: run until /tmp/scenario.ready, stop the auditor, kill
//! kernels = ["6.1", "6.12"]                 # default: all
//! demo = false                              # the scenario `cargo xtask demo` shows
//! gate_exit = 1                             # run under `pfn-auditor gate` instead; its exit code
//! modules_loaded_by_command = true           # gate only: the gated command loads the modules
//! why = "..."
//! ```

use anyhow::{Context, Result, bail};
use serde::Deserialize;
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
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub expect: Vec<Expect>,
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
    #[serde(default)]
    pub why: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub kind: String,
    pub count: usize,
    /// The mapping every finding of this kind must name (`pin.vma.path`), as evidence a user reads.
    pub path: Option<String>,
}

impl Scenario {
    pub fn runs_on(&self, kernel_label: &str) -> bool {
        self.kernels.as_ref().is_none_or(|ks| ks.iter().any(|k| k == kernel_label))
    }

    /// The guest plan line: `<name> <mode> <args...>` (see tests/vm/guest/init.sh).
    pub fn plan_line(&self) -> String {
        let mode = match (self.gate_exit, self.background) {
            (Some(_), _) if self.modules_loaded_by_command => "gate-late",
            (Some(_), _) => "gate",
            (None, true) => "background",
            (None, false) => "run",
        };
        format!("{} {mode} {}\n", self.name, self.args.join(" "))
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
        assert_eq!(list[0].plan_line(), "keep run frame-vector --keep\n");
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
        assert_eq!(parse(late).unwrap()[0].plan_line(), "a gate-late x\n");
    }
}
