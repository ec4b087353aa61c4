//! `composure config` end to end: the real binary on real files.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn composure(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("composure").expect("binary is built");
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("composure-cli-")
        .tempdir()
        .expect("temp dir");
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }
    dir
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = composure(dir)
        .args(["config", "--format", "json"])
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

#[test]
fn prints_the_canonical_long_syntax() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  web:\n    image: nginx\n    ports: [\"8080:80\"]\n    environment: [A=1]\n    volumes: [\"data:/data\"]\nvolumes:\n  data:\n",
    )]);
    let j = json(dir.path(), &["-p", "demo"]);
    assert_eq!(j["name"], "demo");
    let web = &j["services"]["web"];
    assert_eq!(web["ports"][0]["target"], 80);
    assert_eq!(web["ports"][0]["published"], "8080");
    assert_eq!(web["ports"][0]["protocol"], "tcp");
    assert_eq!(web["environment"]["A"], "1");
    assert_eq!(web["volumes"][0]["type"], "volume");
    assert_eq!(web["volumes"][0]["source"], "data");
    assert_eq!(web["networks"], serde_json::json!({"default": null}));
    assert_eq!(j["networks"]["default"]["name"], "demo_default");
    assert_eq!(j["volumes"]["data"]["name"], "demo_data");
}

#[test]
fn yaml_output_reads_back_as_the_same_model() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  web:\n    image: nginx\n    healthcheck:\n      test: curl -f http://localhost\n      interval: 90s\n",
    )]);
    let out = composure(dir.path())
        .args(["-p", "x", "config"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let yaml = String::from_utf8(out.stdout).expect("utf-8");
    assert!(yaml.contains("interval: 1m30s"), "{yaml}");
    let again = project(&[("compose.yaml", &yaml)]);
    assert_eq!(json(again.path(), &[]), json(dir.path(), &["-p", "x"]));
}

#[test]
fn flags_work_before_and_after_the_verb() {
    let dir = project(&[
        ("a.yaml", "services:\n  a: {image: x}\n"),
        ("b.yaml", "services:\n  b: {image: y}\n"),
    ]);
    composure(dir.path())
        .args(["-f", "a.yaml", "config", "-f", "b.yaml", "--services"])
        .assert()
        .success()
        .stdout("a\nb\n");
}

#[test]
fn env_file_and_dot_env_feed_interpolation() {
    let dir = project(&[
        (
            "compose.yaml",
            "services:\n  web:\n    image: \"nginx:${TAG}\"\n",
        ),
        (".env", "TAG=from-dotenv\n"),
        ("prod.env", "TAG=from-flag\n"),
    ]);
    assert_eq!(
        json(dir.path(), &[])["services"]["web"]["image"],
        "nginx:from-dotenv"
    );
    assert_eq!(
        json(dir.path(), &["--env-file", "prod.env"])["services"]["web"]["image"],
        "nginx:from-flag"
    );
    let out = composure(dir.path())
        .env("TAG", "from-shell")
        .args(["config", "--format", "json"])
        .output()
        .expect("runs");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["services"]["web"]["image"], "nginx:from-shell");
}

#[test]
fn no_interpolate_keeps_variables() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  web:\n    image: \"nginx:${TAG:-1}\"\n",
    )]);
    assert_eq!(
        json(dir.path(), &["--no-interpolate"])["services"]["web"]["image"],
        "nginx:${TAG:-1}"
    );
}

#[test]
fn profiles_select_services() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  web: {image: x}\n  debug: {image: y, profiles: [dev]}\n",
    )]);
    composure(dir.path())
        .args(["config", "--services"])
        .assert()
        .success()
        .stdout("web\n");
    composure(dir.path())
        .args(["--profile", "dev", "config", "--services"])
        .assert()
        .success()
        .stdout("debug\nweb\n");
}

#[test]
fn every_error_is_reported_with_its_position() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  web:\n    image: nginx\n    imagee: typo\n    depends_on: [db]\n    ports: [\"99999:80\"]\n",
    )]);
    composure(dir.path())
        .args(["config"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("compose.yaml:4:5")
                .and(predicate::str::contains("did you mean `image`")),
        );
}

#[test]
fn semantic_errors_point_at_the_reference() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  web:\n    image: nginx\n    depends_on: [db]\n    networks: [back]\n",
    )]);
    composure(dir.path())
        .args(["config", "-q"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("undefined service `db`")
                .and(predicate::str::contains("undefined network `back`")),
        );
}

#[test]
fn missing_file_and_bad_usage_have_distinct_exit_codes() {
    let dir = project(&[]);
    composure(dir.path())
        .args(["config"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no compose file found"));
    composure(dir.path())
        .args(["config", "--format", "xml"])
        .assert()
        .code(2);
}

#[test]
fn quiet_prints_nothing_on_success() {
    let dir = project(&[("compose.yaml", "services:\n  web: {image: x}\n")]);
    composure(dir.path())
        .args(["config", "-q"])
        .assert()
        .success()
        .stdout("");
}

#[test]
fn names_that_would_leave_a_directory_are_errors_with_their_place() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  \"..\":\n    image: nginx\n  web:\n    image: nginx\n    container_name: web\nnetworks:\n  \".x\": {}\n",
    )]);
    composure(dir.path())
        .args(["config", "-p", "demo"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("invalid service name `..`"))
        .stderr(predicate::str::contains("compose.yaml:2"))
        .stderr(predicate::str::contains("invalid network name `.x`"));
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly_as_sigpipe_would() {
    use std::os::unix::process::ExitStatusExt;
    let dir = project(&[("compose.yaml", "services:\n  web:\n    image: nginx\n")]);
    // A pipe whose reading end is closed before the child writes: every write fails with EPIPE.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("composure"))
        .current_dir(dir.path())
        .arg("config")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(141),
        "{:?} {stderr}",
        out.status.signal()
    );
}
