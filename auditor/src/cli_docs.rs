//! Man pages (clap_mangen) and shell completions (clap_complete) made from the CLI's own clap
//! definition, so they say what `--help` says. The binary writes them with a subcommand that is
//! not part of that definition (so no page or completion mentions it):
//! `pfn-auditor generate-docs ROOT` writes them where a Debian system has them, under ROOT;
//! `cargo xtask package` runs it on the package's tree.
use std::{
    io::{self, Write},
    path::{Path, PathBuf},
};

use clap::{ArgMatches, Command};
use clap_complete::Shell;
use clap_mangen::{
    Man,
    roff::{Roff, bold, roman},
};

use crate::gate_outcome::code;

/// The name of the subcommand that writes the files.
pub const SUBCOMMAND: &str = "generate-docs";

/// `generate-docs ROOT`: added to the parser by `main.rs`, hidden from `--help`.
pub fn subcommand() -> Command {
    Command::new(SUBCOMMAND)
        .hide(true)
        .about("Write the man pages and shell completions of this CLI under ROOT/usr/share")
        .arg(clap::Arg::new("root").required(true).value_parser(clap::value_parser!(PathBuf)))
}

/// Runs the subcommand: writes the files for `cli` (the CLI without this subcommand), prints
/// their paths, and returns the exit code: 0, or 5 when a file cannot be written
/// (docs/exit-codes.md).
pub fn run(cli: Command, matches: &ArgMatches) -> u8 {
    let dir = matches.get_one::<PathBuf>("root").expect("root is required");
    match write(cli, dir) {
        Ok(paths) => {
            for path in paths {
                println!("{}", path.display());
            }
            code::CLEAN
        }
        Err(e) => {
            eprintln!("pfn-auditor: cannot write the man pages and completions under {}: {e}", dir.display());
            code::OUTPUT
        }
    }
}

/// Shells with a completion file: the file's name and the directory Debian's package of the shell
/// loads it from (bash-completion's `completionsdir` loads `<command>` when it is first completed;
/// zsh's and fish's vendor directories).
pub(crate) const COMPLETIONS: &[(Shell, &str, &str)] = &[
    (Shell::Bash, "pfn-auditor", "usr/share/bash-completion/completions"),
    (Shell::Zsh, "_pfn-auditor", "usr/share/zsh/vendor-completions"),
    (Shell::Fish, "pfn-auditor.fish", "usr/share/fish/vendor_completions.d"),
];

/// Where the man pages go under the root.
pub(crate) const MAN_DIR: &str = "usr/share/man/man1";

/// Writes `ROOT/`[`MAN_DIR`]`/pfn-auditor.1` and one page per subcommand (`pfn-auditor-run.1`,
/// …), uncompressed, and one completion file per shell of [`COMPLETIONS`] in its directory under
/// ROOT. Returns the paths written.
pub fn write(cli: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    let name = cli.get_name().to_owned();
    let man_dir = dir.join(MAN_DIR);
    std::fs::create_dir_all(&man_dir)?;
    let mut written = vec![write_page(&cli, &man_dir, Some(top_page_sections(&cli)))?];
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(write_page(sub, &man_dir, None)?);
    }
    for (shell, file, shell_dir) in COMPLETIONS {
        let shell_dir = dir.join(shell_dir);
        std::fs::create_dir_all(&shell_dir)?;
        let path = shell_dir.join(file);
        let mut out = io::BufWriter::new(std::fs::File::create(&path)?);
        clap_complete::generate(*shell, &mut cli.clone(), &name, &mut out);
        out.flush()?;
        written.push(path);
    }
    Ok(written)
}

/// One page: clap_mangen's sections, then `extra` (the top page's EXIT STATUS, FILES, SEE ALSO)
/// or, for a subcommand, a SEE ALSO naming the top page.
fn write_page(cmd: &Command, dir: &Path, extra: Option<Roff>) -> io::Result<PathBuf> {
    let man = Man::new(cmd.clone()).manual("pfn-auditor manual");
    let path = dir.join(man.get_filename());
    let mut out = io::BufWriter::new(std::fs::File::create(&path)?);
    man.render(&mut out)?;
    let extra = extra.unwrap_or_else(|| {
        let mut roff = Roff::new();
        roff.control("SH", ["SEE ALSO"]).text([bold("pfn-auditor"), roman("(1)")]);
        roff
    });
    extra.to_writer(&mut out)?;
    out.flush()?;
    Ok(path)
}

/// What a user of the installed package looks up in `man pfn-auditor`: exit codes
/// (docs/exit-codes.md has the details), the files the service uses, the other pages.
fn top_page_sections(cli: &Command) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (value, meaning) in [
        (code::CLEAN, "clean: no failing finding, nothing lost, the gated command succeeded"),
        (code::FINDINGS, "gate: findings at a severity the policy's [gate] fail_on lists"),
        (code::SETUP, "setup error: bad policy, not root, kernel without BTF or hooks, unreadable replay file"),
        (code::EVENTS_LOST, "gate: events were lost or correlator state was evicted (unless --allow-loss)"),
        (code::COMMAND_FAILED, "gate: the command failed"),
        (code::OUTPUT, "an output could not be written, or its path was refused"),
    ] {
        roff.control("TP", []).text([bold(value.to_string())]).text([roman(meaning)]);
    }
    roff.control("SH", ["FILES"]);
    for (path, what) in [
        ("/etc/pfn-auditor/policy.toml", "the policy of the pfn-auditor service (holders' releases, suppressions, gate severities)"),
        ("/var/log/pfn-auditor/pfn-auditor.ndjson", "the service's NDJSON records (status, findings, losses, summary)"),
        ("/lib/systemd/system/pfn-auditor.service", "the service: run with the policy above, metrics on 127.0.0.1:9477"),
    ] {
        roff.control("TP", []).text([bold(path)]).text([roman(what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let pages: Vec<String> =
        cli.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| format!("pfn-auditor-{}(1)", s.get_name())).collect();
    roff.text([roman(pages.join(", "))]);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> Command {
        Command::new("pfn-auditor")
            .about("test CLI")
            .subcommand(Command::new("run").about("Attach").arg(clap::Arg::new("policy").long("policy")))
            .subcommand(Command::new("doctor").about("Check"))
    }

    #[test]
    fn a_page_per_subcommand_and_a_completion_per_shell() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(cli(), dir.path()).unwrap();
        let names: Vec<String> = written.iter().map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(
            names,
            [
                "usr/share/man/man1/pfn-auditor.1",
                "usr/share/man/man1/pfn-auditor-run.1",
                "usr/share/man/man1/pfn-auditor-doctor.1",
                "usr/share/bash-completion/completions/pfn-auditor",
                "usr/share/zsh/vendor-completions/_pfn-auditor",
                "usr/share/fish/vendor_completions.d/pfn-auditor.fish",
            ]
        );
        let top = std::fs::read_to_string(dir.path().join(MAN_DIR).join("pfn-auditor.1")).unwrap();
        assert!(top.contains(".SH \"EXIT STATUS\""), "{top}");
        assert!(top.contains("pfn\\-auditor\\-run(1), pfn\\-auditor\\-doctor(1)"), "{top}");
        let run = std::fs::read_to_string(dir.path().join(MAN_DIR).join("pfn-auditor-run.1")).unwrap();
        assert!(run.contains("\\-\\-policy"), "{run}");
        let bash = std::fs::read_to_string(dir.path().join(COMPLETIONS[0].2).join("pfn-auditor")).unwrap();
        assert!(bash.contains("--policy"), "{bash}");
    }
}
