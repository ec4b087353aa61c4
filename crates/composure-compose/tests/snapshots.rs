//! Snapshot tests of the canonical model: each folder under `tests/snapshots/` is a project
//! whose `compose.yaml` (with whatever `.env`, override or included files it needs) must load
//! into exactly the JSON of its `expected.json`, as `composure config --format json` prints it.
//!
//! Every case is loaded from memory under `/project`, with an empty process environment and
//! the project name `snap`, so the output is the same on every machine. An optional `args`
//! file adds command-line options, one per line: `file NAME` (a `-f`, in order; without any,
//! `compose.yaml` and `compose.override.yaml` are found as `docker compose` finds them),
//! `profile NAME`, `service NAME` and `project-directory DIR`.
//!
//! `UPDATE_SNAPSHOTS=1 cargo test -p composure-compose --test snapshots` rewrites every
//! `expected.json` from the current loader. Review the diff before committing it: a
//! snapshot of a wrong result is worse than none.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

use std::path::{Path, PathBuf};

use composure_compose::loader::{LoadOptions, load_with};
use composure_compose::model::Project;
use composure_compose::source::MemorySource;

/// Where every case is mounted, so that absolute paths in the output do not depend on
/// where the repository is checked out.
const ROOT: &str = "/project";
const PROJECT_NAME: &str = "snap";
const EXPECTED: &str = "expected.json";
const ARGS: &str = "args";

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots")
}

/// Every file of a case except the expectation and the arguments, relative to the case.
fn case_files(dir: &Path, prefix: &Path, out: &mut Vec<(PathBuf, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("case folder is readable")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let relative = prefix.join(&name);
        if entry.path().is_dir() {
            case_files(&entry.path(), &relative, out);
        } else if prefix.as_os_str().is_empty() && (name == EXPECTED || name == ARGS) {
            continue;
        } else {
            let text = std::fs::read_to_string(entry.path()).expect("case file is UTF-8");
            out.push((relative, text));
        }
    }
}

fn options_for(dir: &Path) -> LoadOptions {
    let mut options = LoadOptions::new(ROOT);
    options.project_name = Some(PROJECT_NAME.into());
    let args = std::fs::read_to_string(dir.join(ARGS)).unwrap_or_default();
    for line in args.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (flag, value) = line.split_once(' ').expect("`flag value` lines in args");
        match flag {
            "file" => options.files.push(Path::new(ROOT).join(value)),
            "profile" => options.profiles.push(value.into()),
            "service" => options.services.push(value.into()),
            "project-directory" => options.project_directory = Some(Path::new(ROOT).join(value)),
            other => panic!("{}: unknown option `{other}`", dir.display()),
        }
    }
    options
}

/// The canonical JSON, as `composure config --format json` renders it: names sorted.
fn render(mut project: Project) -> String {
    project.services.sort_keys();
    project.networks.sort_keys();
    project.volumes.sort_keys();
    project.secrets.sort_keys();
    project.configs.sort_keys();
    project.models.sort_keys();
    let mut text = serde_json::to_string_pretty(&project).expect("the model serializes");
    text.push('\n');
    text
}

fn load_case(dir: &Path) -> Result<String, String> {
    let mut files = Vec::new();
    case_files(dir, Path::new(""), &mut files);
    let source = files
        .into_iter()
        .fold(MemorySource::new(), |s, (path, text)| {
            s.with(Path::new(ROOT).join(path), text)
        });
    load_with(&options_for(dir), &source)
        .map(|loaded| render(loaded.project))
        .map_err(|e| e.to_string())
}

/// The first line where two texts differ, with both versions, for a readable failure.
fn first_difference(expected: &str, actual: &str) -> String {
    let mut expected_lines = expected.lines();
    let mut actual_lines = actual.lines();
    for number in 1.. {
        match (expected_lines.next(), actual_lines.next()) {
            (Some(e), Some(a)) if e == a => continue,
            (None, None) => break,
            (e, a) => {
                return format!(
                    "line {number}:\n  expected: {}\n  actual:   {}",
                    e.unwrap_or("<end>"),
                    a.unwrap_or("<end>")
                );
            }
        }
    }
    String::new()
}

#[test]
fn every_case_loads_into_its_expected_canonical_json() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/snapshots exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("compose.yaml").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "snapshot cases not found");
    let mut problems = Vec::new();
    for dir in &cases {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let actual = match load_case(dir) {
            Ok(json) => json,
            Err(e) => {
                problems.push(format!("{name}: does not load:\n{e}"));
                continue;
            }
        };
        let expected_path = dir.join(EXPECTED);
        if update {
            std::fs::write(&expected_path, &actual).expect("expected.json is writable");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => problems.push(format!(
                "{name}: output differs from {EXPECTED}, {}",
                first_difference(&expected, &actual)
            )),
            Err(_) => problems.push(format!("{name}: no {EXPECTED}")),
        }
    }
    assert!(
        problems.is_empty(),
        "{} snapshot(s) wrong (UPDATE_SNAPSHOTS=1 rewrites them; review the diff):\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}
