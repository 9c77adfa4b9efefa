//! What the Debian package ships (packaging/, `cargo xtask package`): the service's default policy
//! must load, and so must the example in its comments once a user uncomments it.
use std::path::Path;

use auditor::policy::Policy;

fn shipped_policy() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/policy.toml")
}

#[test]
fn the_default_policy_loads_and_adds_no_rule_to_the_catalog() {
    let shipped = Policy::load(Some(&shipped_policy()), true).unwrap();
    let catalog_only = Policy::load(None, true).unwrap();
    assert_eq!(shipped, catalog_only);
}

#[test]
fn the_commented_example_loads_when_uncommented() {
    let text = std::fs::read_to_string(shipped_policy()).unwrap();
    // `# [[holder]]`, `# module = …`: the example's lines are TOML after `# `; prose is not.
    let example: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(example.contains("[[holder]]") && example.contains("[[suppress]]"), "{example}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, &example).unwrap();
    let policy = Policy::load(Some(&path), false).unwrap_or_else(|e| panic!("{e}\n{example}"));
    assert_eq!(policy.holders.len(), 1, "{example}");
}
