//! Source lines of module code from a relocatable object's DWARF, on objects the host's C compiler
//! makes the way kbuild makes a .ko's (`cc -c -g -O2`: ET_REL, RELA relocations in .debug_*).
use std::path::{Path, PathBuf};

use auditor::module_lines::{ModuleDebugInfo, ModuleLines};

const SOURCE: &str = "\
int sink;
__attribute__((noinline)) void callee(int x) { sink += x; }
__attribute__((noinline)) void holder(int x) {
    callee(x);
    callee(x + 1);
}
__attribute__((noinline, cold, section(\".text.unlikely\"))) void cold_holder(int x) {
    callee(x * 3);
}
";

/// `cc -c SOURCE` with `flags` into `dir/name`.
fn compile(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let source = dir.join("holder.c");
    std::fs::write(&source, SOURCE).unwrap();
    let out = dir.join(name);
    let status = std::process::Command::new("cc").args(flags).args(["-c", "-O2", "-o"]).arg(&out).arg(&source).status().unwrap();
    assert!(status.success());
    out
}

fn lines_of(path: &Path) -> ModuleLines {
    ModuleLines::parse(&std::fs::read(path).unwrap(), None).unwrap()
}

#[test]
fn functions_map_to_their_source_lines() {
    let dir = tempfile::tempdir().unwrap();
    let lines = lines_of(&compile(dir.path(), "holder.ko", &["-g"]));
    let (file, line) = lines.locate("callee", 0).unwrap();
    assert!(file.ends_with("holder.c"), "{file}");
    assert_eq!(line, 2);
    // Every instruction of holder() is on its lines (3-6), none on callee's.
    let (_, line) = lines.locate("holder", 0).unwrap();
    assert!((3..=6).contains(&line), "{line}");
    assert_eq!(lines.locate("absent", 0), None);
}

/// .text.unlikely starts at address 0 too: each section is placed apart, or cold_holder+0 would
/// read as callee's line.
#[test]
fn functions_of_other_sections_do_not_read_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let lines = lines_of(&compile(dir.path(), "holder.ko", &["-g"]));
    let (_, line) = lines.locate("cold_holder", 0).unwrap();
    assert!((7..=8).contains(&line), "cold_holder+0 is on line {line}");
}

#[test]
fn an_object_without_debug_info_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = compile(dir.path(), "holder.ko", &[]);
    let err = ModuleLines::parse(&std::fs::read(path).unwrap(), None).err().unwrap();
    assert!(err.contains("no debug info"), "{err}");
    assert!(ModuleLines::parse(b"not an ELF file", None).is_err());
}

#[test]
fn module_files_are_found_in_debug_dirs_and_modules_dep() {
    let dir = tempfile::tempdir().unwrap();
    let debug = dir.path().join("debug/kernel/drivers");
    std::fs::create_dir_all(&debug).unwrap();
    compile(&debug, "my-driver.ko", &["-g"]);
    let sys = dir.path().join("sys-module");
    let mut info = ModuleDebugInfo::with_roots(vec![dir.path().join("debug")], None, sys.clone());
    assert_eq!(info.locate("my_driver", "callee", 0).map(|(_, line)| line), Some(2));
    assert_eq!(info.locate("other", "callee", 0), None);

    let modules = dir.path().join("lib-modules");
    std::fs::create_dir_all(modules.join("updates")).unwrap();
    compile(&modules.join("updates"), "dkms_driver.ko", &["-g"]);
    compile(&modules.join("updates"), "stripped.ko", &[]);
    std::fs::write(modules.join("modules.dep"), "updates/dkms_driver.ko:\nupdates/stripped.ko: updates/dkms_driver.ko\n").unwrap();
    let mut info = ModuleDebugInfo::with_roots(Vec::new(), Some(modules), sys);
    assert_eq!(info.locate("dkms_driver", "callee", 0).map(|(_, line)| line), Some(2));
    assert_eq!(info.locate("stripped", "callee", 0), None, "no debug info: no line");
}
