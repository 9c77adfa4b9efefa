//! The module layering of docs/architecture.md, checked on the source so it cannot rot: the
//! vocabulary (`src/vocab/`) is the bottom layer and names nothing of the crate outside itself.
use std::path::{Path, PathBuf};

/// The `.rs` files under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Each path in `text` that leaves module `module` (a top-level module of the crate, whose root
/// file is `mod.rs`): `crate::other…`, `super::` in the module's root file, `super::super`.
fn paths_leaving(module: &str, file: &Path, text: &str) -> Vec<String> {
    let word = |rest: &str| rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("").to_string();
    let mut out = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let next = word(&text[at + "crate::".len()..]);
        if next != module {
            out.push(format!("crate::{next}"));
        }
    }
    let root = file.file_name().is_some_and(|n| n == "mod.rs");
    for (at, _) in text.match_indices("super::") {
        if root || text[at..].starts_with("super::super") {
            out.push(format!("super::{}", word(&text[at + "super::".len()..])));
        }
    }
    out
}

#[test]
fn the_vocabulary_names_nothing_of_the_stages_above_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/vocab");
    let files = sources(&dir);
    assert!(files.len() >= 4, "vocab/ holds event, finding, hook_status, record: {files:?}");
    let upward: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            paths_leaving("vocab", f, &text).into_iter().map(move |p| format!("{}: {p}", f.display()))
        })
        .collect();
    assert!(upward.is_empty(), "vocab/ is the bottom layer, yet it names modules above it: {upward:#?}");
}

/// The check itself finds what it must: a vocabulary file naming a stage fails it.
#[test]
fn an_upward_path_is_found() {
    let file = Path::new("src/vocab/record.rs");
    assert_eq!(paths_leaving("vocab", file, "use crate::correlate::Finding;"), ["crate::correlate"]);
    assert_eq!(paths_leaving("vocab", file, "use crate::vocab::event::Event; use super::finding::Finding;"), Vec::<String>::new());
    assert_eq!(paths_leaving("vocab", file, "x: super::super::drain::HookTotals"), ["super::super"]);
    assert_eq!(paths_leaving("vocab", Path::new("src/vocab/mod.rs"), "use super::probes;"), ["super::probes"]);
}
