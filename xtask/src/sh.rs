//! Running external programs with errors that name the command that failed.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Shows the command like a shell would, for error messages and progress lines.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs a command with its output on our stderr (stdout is for results, e.g. `cargo xtask
/// bench`'s lines); fails if it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let what = describe(cmd);
    let status = cmd.stdin(Stdio::null()).stdout(std::io::stderr()).status().with_context(|| format!("cannot start `{what}`"))?;
    if !status.success() {
        bail!("`{what}` failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its stdout; stderr is passed through so the user sees why it failed.
pub fn output(cmd: &mut Command) -> Result<String> {
    let what = describe(cmd);
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output().with_context(|| format!("cannot start `{what}`"))?;
    if !out.status.success() {
        bail!("`{what}` failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent directory").to_path_buf()
}

/// tests/vm (module/, scenario/, scenarios.toml, policy.toml), or $XTASK_VM_SOURCES to try the rig
/// with other fixtures.
pub fn vm_sources_dir() -> PathBuf {
    std::env::var_os("XTASK_VM_SOURCES").map_or_else(|| workspace_root().join("tests/vm"), PathBuf::from)
}

/// Where downloads live between runs (git-ignored).
pub fn cache_dir() -> PathBuf {
    workspace_root().join(".vm-cache")
}

/// Where per-run VM artifacts (console logs, NDJSON, built modules) go.
pub fn vm_target_dir() -> PathBuf {
    workspace_root().join("target/vm-test")
}
