//! The module layering of docs/architecture.md ("Layers"), checked on the source so it cannot rot:
//! every top-level module of the crate sits in one layer of [`LAYERS`] and names only modules of
//! lower layers (and itself). Modules of one layer are peers and do not name each other either, so
//! the order has no cycle. The vocabulary (`src/vocab/`) is the bottom layer and names nothing.
//!
//! Paths are read with `syn` from the code itself (`use` trees, paths in types and expressions, and
//! the tokens of macro calls): doc comments and strings do not count.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use syn::visit::Visit;

/// The layers, lowest first: the data path from the kernel to the outputs, each stage with the
/// helpers only it and the stages above it use. `main.rs` (the binary) and `lib.rs` (which only
/// declares the modules) are outside: they may name anything.
const LAYERS: &[&[&str]] = &[
    // What every stage speaks.
    &["vocab"],
    // The Prometheus registry: the live session sets the kernel's counters in it, the metrics sink
    // the run's counts and levels; it serves them over HTTP.
    &["metrics"],
    // Facts of this host read without attaching anything: kernel symbols, file names and paths,
    // module source lines.
    &["symbols", "file_names", "file_paths", "module_lines"],
    // The probe table and attaching it.
    &["probes"],
    // What reads the probe table's kernel facts before a run: host prerequisites, the instance lock.
    &["host_checks", "instance_lock"],
    &["drain"],
    &["decode"],
    // The built-in catalog (data only) under the policy that parses it, read by the correlator.
    &["catalog"],
    &["policy"],
    &["correlate"],
    // The two sources' readers: the live session (probes → drain → decode), recorded lines.
    &["daemon", "replay_parse"],
    &["pipeline"],
    &["sink"],
    // Exit codes and the gate's verdict, for the commands and their documentation.
    &["gate_outcome"],
    // The sources as the pipeline sees them, and the commands.
    &["live", "replay", "doctor", "cli_docs"],
];

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

/// The module path of a source file relative to `src/`: `probes/attach/mod.rs` → `[probes, attach]`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.strip_suffix(".rs").unwrap_or(&file);
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// Collects the top-level modules a file names.
struct Names {
    /// The module the code being visited is in (the file's, then any inline `mod m { … }`).
    here: Vec<String>,
    named: BTreeSet<String>,
}

impl Names {
    /// Resolves a path's leading segments: `crate::m…`, or `super::…` from where the code is, to
    /// the top-level module it names (none for a path that stays in the crate root or is external).
    fn resolve(&mut self, segments: &[String]) {
        let top = match segments.first().map(String::as_str) {
            Some("crate") => segments.get(1).cloned(),
            Some("super") => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let mut at = self.here.clone();
                at.truncate(self.here.len().saturating_sub(ups));
                at.into_iter().next().or_else(|| segments.get(ups).cloned())
            }
            _ => None,
        };
        if let Some(top) = top.filter(|t| t != "self" && t != "*") {
            self.named.insert(top);
        }
    }

    /// Every path a `use` tree spells out.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.leaf(prefix, n.ident.to_string()),
            syn::UseTree::Rename(r) => self.leaf(prefix, r.ident.to_string()),
            syn::UseTree::Glob(_) => self.leaf(prefix, "*".to_string()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(prefix, t)),
        }
    }

    fn leaf(&mut self, prefix: &mut Vec<String>, last: String) {
        prefix.push(last);
        let path = prefix.clone();
        self.resolve(&path);
        prefix.pop();
    }
}

impl<'ast> Visit<'ast> for Names {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments);
        syn::visit::visit_path(self, p);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.here.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.here.pop();
    }

    /// A macro's arguments are tokens, not a syntax tree: `crate :: m` or `super :: …` in them.
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let text = m.tokens.to_string();
        let words: Vec<&str> = text.split_whitespace().collect();
        for at in 0..words.len() {
            if (words[at] == "crate" || words[at] == "super") && words.get(at + 1) == Some(&"::") {
                let mut path = vec![words[at].to_string()];
                let mut next = at + 2;
                while let Some(word) = words.get(next) {
                    path.push(word.to_string());
                    if *word != "super" || words.get(next + 1) != Some(&"::") {
                        break;
                    }
                    next += 2;
                }
                self.resolve(&path);
            }
        }
        syn::visit::visit_macro(self, m);
    }
}

/// The top-level modules that the source `text` of a file at `relative` (to `src/`) names, but its own.
fn named_modules(relative: &Path, text: &str) -> BTreeSet<String> {
    let file = syn::parse_file(text).unwrap_or_else(|e| panic!("{}: {e}", relative.display()));
    let here = module_of(relative);
    let mut names = Names { here: here.clone(), named: BTreeSet::new() };
    names.visit_file(&file);
    names.named.remove(&here[0]);
    names.named
}

/// The layer of a top-level module.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Each name in `named` that a file of `module` may not use: a module of its layer or above.
fn upward(module: &str, named: &BTreeSet<String>) -> Vec<String> {
    let own = layer_of(module).unwrap_or_else(|| panic!("module `{module}` is in no layer of LAYERS: place it"));
    named
        .iter()
        .filter(|other| *other != module && layer_of(other).is_some_and(|theirs| theirs >= own))
        .map(|other| format!("{module} → {other}"))
        .collect()
}

#[test]
fn each_module_names_only_modules_of_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut seen = BTreeSet::new();
    let mut violations = Vec::new();
    for file in sources(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        if relative == Path::new("main.rs") || relative == Path::new("lib.rs") {
            continue;
        }
        let module = module_of(relative)[0].clone();
        let named = named_modules(relative, &std::fs::read_to_string(&file).unwrap());
        violations.extend(upward(&module, &named).into_iter().map(|v| format!("{}: {v}", relative.display())));
        seen.insert(module);
    }
    let listed: BTreeSet<String> = LAYERS.iter().flat_map(|l| l.iter().map(|m| m.to_string())).collect();
    assert_eq!(seen, listed, "LAYERS lists exactly the crate's top-level modules");
    assert!(violations.is_empty(), "imports that go up or sideways (docs/architecture.md, Layers): {violations:#?}");
}

/// The check itself finds what it must: paths up, sideways and through `super`, in code, `use`
/// trees and macro calls; not in comments or strings.
#[test]
fn an_upward_path_is_found() {
    let names = |file: &str, text: &str| named_modules(Path::new(file), text).into_iter().collect::<Vec<_>>();
    assert_eq!(names("vocab/record.rs", "use crate::correlate::Finding;"), ["correlate"]);
    assert_eq!(names("vocab/record.rs", "use crate::{vocab::event::Event, pipeline::{Levels, Sink}};"), ["pipeline"]);
    assert_eq!(names("vocab/record.rs", "use crate::vocab::event::Event; use super::finding::Finding;"), Vec::<String>::new());
    assert_eq!(names("vocab/record.rs", "fn f(x: super::super::drain::HookTotals) {}"), ["drain"]);
    assert_eq!(names("vocab/mod.rs", "use super::probes;"), ["probes"]);
    assert_eq!(names("probes/attach/mod.rs", "use super::{layout::KernelBtf, table::Attach};"), Vec::<String>::new());
    assert_eq!(names("metrics.rs", "fn f() { let l = crate::pipeline::Levels::default(); }"), ["pipeline"]);
    assert_eq!(names("metrics.rs", "mod tests { use super::*; use super::super::daemon::X; }"), ["daemon"]);
    assert_eq!(names("decode.rs", "fn f() { assert_eq!(1, crate::sink::N); }"), ["sink"]);
    assert_eq!(names("decode.rs", "/// [`crate::sink::Sink`]\nfn f() { let _ = \"crate::sink\"; }"), Vec::<String>::new());

    let with = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(upward("metrics", &with(&["pipeline", "vocab"])), ["metrics → pipeline"]);
    assert_eq!(upward("catalog", &with(&["policy"])), ["catalog → policy"]);
    assert_eq!(upward("live", &with(&["replay"])), ["live → replay"], "peers do not name each other");
    assert_eq!(upward("metrics", &with(&["metrics"])), Vec::<String>::new(), "a module names itself");
    assert!(upward("probes", &with(&["symbols", "vocab"])).is_empty());
    assert!(upward("sink", &with(&["pipeline", "correlate", "metrics", "policy", "vocab"])).is_empty());
}
