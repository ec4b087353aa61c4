//! Every real-world compose file in the shared corpus loads, or fails for the reason the
//! expectations file gives.
//!
//! The corpus lives beside the repository (`../shared/compose-corpus`); CI lays it there too.
//! Files are loaded with an empty process environment, so only their own `.env` supplies
//! variables, as in the corpus's own docker-compose runs.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use composure_compose::loader::{LoadOptions, load};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compose-corpus")
}

/// `path<TAB>reason` lines: the file must fail and the error must contain `reason`.
fn expectations() -> BTreeMap<String, String> {
    include_str!("corpus-expectations.tsv")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(p, r)| (p.trim().to_string(), r.trim().to_string()))
        .collect()
}

fn compose_files(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(compose_files(&path, names));
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| names.contains(&n))
        {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn check(sub: &str, names: &[&str], expected_count: usize) {
    let root = corpus_dir();
    let files = compose_files(&root.join(sub), names);
    assert_eq!(
        files.len(),
        expected_count,
        "corpus {sub} not found at {}",
        root.display()
    );
    let expectations = expectations();
    let mut problems = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        let mut options = LoadOptions::new(file.parent().unwrap_or(&root));
        options.files = vec![file.clone()];
        let result = load(&options);
        match (result, expectations.get(&rel)) {
            (Ok(_), None) => {}
            (Ok(_), Some(reason)) => problems.push(format!(
                "{rel}: loaded, but expected to fail with {reason:?}"
            )),
            (Err(e), None) => problems.push(format!("{rel}: failed unexpectedly:\n{e}")),
            (Err(e), Some(reason)) => {
                let text = e.to_string();
                if !text.contains(reason.as_str()) {
                    problems.push(format!("{rel}: failed, but not with {reason:?}:\n{text}"));
                }
                assert!(
                    e.errors().all(|d| !d.span.is_none()),
                    "{rel}: an error without position:\n{text}"
                );
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn awesome_compose_files_load() {
    check("awesome-compose", &["compose.yaml", "compose.yml"], 39);
}

#[test]
fn dokploy_templates_load() {
    check("dokploy-templates", &["docker-compose.yml"], 500);
}
