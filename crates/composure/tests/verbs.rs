//! The everyday verbs of a `docker compose` user, on the real Docker Engine: `ls`,
//! `version`, and `ps -q`, `--services`, `--status`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use common::{Daemon, Project, docker_lines, ensure_image};

const WEB: &str = r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    deploy:
      replicas: 2
"#;

#[test]
fn ls_version_and_ps_filters_answer_as_compose_does() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("verbs", &daemon, WEB);
    p.ok(&["up", "--wait-timeout", "120"]);

    let table = p.ok(&["ls"]);
    let line = table
        .lines()
        .find(|l| l.contains(&p.name))
        .unwrap_or_default();
    assert!(
        line.contains("running(2/2)") && line.contains("compose.yaml"),
        "{table}"
    );
    assert!(p.ok(&["ls", "-q"]).lines().any(|l| l == p.name));
    let listed: serde_json::Value =
        serde_json::from_str(&p.ok(&["ls", "--format", "json"])).unwrap();
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|project| project["name"] == p.name.as_str())
        .unwrap();
    assert!(
        mine["config_files"][0]
            .as_str()
            .unwrap()
            .ends_with("compose.yaml"),
        "{mine}"
    );

    // Event times carry the date: RFC 3339 in JSON and in the text.
    let events = p.ok(&["events", "--no-follow", "--format", "json"]);
    let first: serde_json::Value =
        serde_json::from_str(events.lines().next().unwrap_or_default()).unwrap();
    let time = first["time"].as_str().unwrap_or_default();
    assert!(
        time.len() == 24 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
        "{first}"
    );
    assert!(first["time_ms"].as_u64().is_some(), "{first}");
    let text = p.ok(&["events", "--no-follow"]);
    assert!(
        text.lines()
            .next()
            .unwrap_or_default()
            .starts_with(&time[..11]),
        "{text}"
    );

    let ids: Vec<String> = p.ok(&["ps", "-q"]).lines().map(String::from).collect();
    assert_eq!(ids.len(), 2);
    let engine = docker_lines(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={}", p.name),
    ]);
    for id in &ids {
        assert!(engine.contains(id), "{id} not in {engine:?}");
    }
    assert_eq!(p.ok(&["ps", "--services"]).trim(), "web");
    assert_eq!(
        p.ok(&["ps", "-q", "--status", "running"]).lines().count(),
        2
    );
    assert_eq!(p.ok(&["ps", "-q", "--status", "exited"]).lines().count(), 0);
    let out = p.run(&["ps", "--status", "sleeping"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--status sleeping"));

    let version = p.ok(&["version"]);
    assert!(
        version.contains(&format!("Composure version {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert!(version.contains("Daemon version"), "{version}");
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["version", "--format", "json"])).unwrap();
    assert_eq!(json["client"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        p.ok(&["version", "--short"]).trim(),
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn completion_scripts_come_from_the_verbs() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_composure"))
        .args(["completion", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    for verb in ["up", "pull", "build", "rollout", "completion"] {
        assert!(script.contains(verb), "no `{verb}` in the bash completion");
    }
    // bash reads it without a syntax error.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("composure.bash");
    std::fs::write(&file, script.as_bytes()).unwrap();
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .status()
        .unwrap();
    assert!(checked.success());
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_composure"))
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_composure"))
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// Issue 13: `logs` printed nothing for a crash-looping service. It shows each live slot's
/// newest attempt, failed ones included; `-t`, `--since` and `--no-log-prefix` as compose.
#[test]
fn logs_show_a_failing_services_output_with_timestamps_and_since() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new(
        "logs",
        &daemon,
        "services:\n  bad:\n    image: IMAGE\n    command: [\"no-such-command\"]\n",
    );
    let _ = p.run(&["up", "-d"]);
    let text = common::wait_for(
        "the failed attempt's output",
        std::time::Duration::from_secs(60),
        || {
            let out = p.ok(&["logs", "-t"]);
            out.contains("unknown command").then_some(out)
        },
    );
    let line = text
        .lines()
        .find(|l| l.contains("unknown command"))
        .unwrap_or_default();
    // `bad-1 | 2026-12-04T20:16:59.123Z demo-app: unknown command …`
    let (prefix, rest) = line.split_once(" | ").unwrap_or_default();
    assert_eq!(prefix.trim(), "bad-1", "{line}");
    let time = rest.split(' ').next().unwrap_or_default();
    assert!(time.len() == 24 && time.ends_with('Z'), "{line}");

    // A new attempt may not have said anything yet: each read is retried until it has.
    let said = |args: &[&str]| {
        common::wait_for(
            "an attempt's output",
            std::time::Duration::from_secs(60),
            || {
                let out = p.ok(args);
                out.contains("unknown command").then_some(out)
            },
        )
    };
    let bare = said(&["logs", "--no-log-prefix"]);
    assert!(
        bare.lines()
            .any(|l| !l.contains(" | ") && l.contains("unknown command")),
        "{bare}"
    );
    said(&["logs", "--since", "1h"]);
    assert!(
        p.ok(&["logs", "--since", "2099-01-01T00:00:00Z"])
            .trim()
            .is_empty()
    );
    let out = p.run(&["logs", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(1));
    p.ok(&["down"]);
}

/// `ps` shows each replica's published ports (PORTS; `Publishers` and compose's other
/// field names in JSON), and `port` prints where a service's port is published.
#[test]
fn ps_and_port_show_the_published_ports() {
    ensure_image();
    let daemon = Daemon::start();
    let published = common::free_port();
    let p = Project::new(
        "ports",
        &daemon,
        &format!(
            "services:\n  web:\n    image: IMAGE\n    command: [\"web\", \"--port\", \"8080\"]\n    ports: [\"{published}:8080\"]\n    deploy:\n      replicas: 2\n"
        ),
    );
    p.ok(&["up", "--wait-timeout", "120"]);
    let shown = format!("0.0.0.0:{published}->8080/tcp");
    let table = p.ok(&["ps"]);
    assert!(
        table.lines().next().unwrap_or_default().contains("PORTS"),
        "{table}"
    );
    assert_eq!(table.matches(&shown).count(), 2, "{table}");
    let rows: serde_json::Value = serde_json::from_str(&p.ok(&["ps", "--format", "json"])).unwrap();
    let web: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["service"] == "web")
        .collect();
    assert_eq!(web.len(), 2);
    for row in web {
        assert_eq!(row["Service"], "web");
        assert_eq!(row["State"], "running");
        assert_eq!(row["Project"], p.name.as_str());
        assert_eq!(row["Publishers"][0]["PublishedPort"], published);
        assert_eq!(row["Publishers"][0]["TargetPort"], 8080);
        assert!(row["Name"].as_str().unwrap().starts_with(&p.name), "{row}");
    }
    assert_eq!(
        p.ok(&["port", "web", "8080"]).trim(),
        format!("0.0.0.0:{published}")
    );
    let out = p.run(&["port", "web", "9999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("publishes no port 9999/tcp"));
    p.ok(&["down"]);
}

/// `exec` runs a command in a replica (1 unless `--index`), with its exit code, its output
/// and its input (`-T` without a terminal, as here).
#[test]
fn exec_runs_a_command_in_a_replica_with_its_exit_code_and_io() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("exec", &daemon, WEB);
    p.ok(&["up", "--wait-timeout", "120"]);
    let ok = p.run(&[
        "exec",
        "-T",
        "web",
        "/demo-app",
        "probe",
        "http://127.0.0.1:8080/healthz",
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = p.run(&[
        "exec",
        "-T",
        "--index",
        "2",
        "web",
        "/demo-app",
        "no-such-command",
    ]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unknown command"),
        "the command's stderr comes through: {}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let env = p.run(&[
        "exec",
        "-T",
        "-e",
        "GREETING=hi",
        "web",
        "/demo-app",
        "probe",
        "tcp",
        "127.0.0.1:1",
    ]);
    assert_ne!(
        env.status.code(),
        Some(0),
        "a failing probe is a failing exec"
    );
    let missing = p.run(&["exec", "--index", "3", "web", "/demo-app"]);
    assert_eq!(missing.status.code(), Some(1));
    let text = String::from_utf8_lossy(&missing.stderr);
    assert!(
        text.contains("no running replica 3 (running: 1, 2)"),
        "{text}"
    );
    let unknown = p.run(&["exec", "nope", "/demo-app"]);
    assert_eq!(unknown.status.code(), Some(1));
    p.ok(&["down"]);
}

/// `top`, `images`, `kill` and `wait` on the running replicas, as compose's verbs; a killed
/// replica is replaced (Composure keeps the project as declared), and `wait` gives a job's
/// exit code once it has ended for good.
#[test]
fn top_images_kill_and_wait_act_on_the_replicas() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new(
        "replicas",
        &daemon,
        r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    deploy:
      replicas: 2
  job:
    image: IMAGE
    command: ["no-such-command"]
    restart: "no"
"#,
    );
    p.ok(&["up", "-d"]);
    let waited = p.run(&["wait", "job"]);
    assert_eq!(
        waited.status.code(),
        Some(2),
        "the job's exit code (a usage error)"
    );

    common::wait_for(
        "both web replicas",
        std::time::Duration::from_secs(60),
        || (p.containers_of("web").len() == 2).then_some(()),
    );
    let top = p.ok(&["top", "web"]);
    assert!(top.contains("-web-1") && top.contains("-web-2"), "{top}");
    assert!(top.contains("PID") && top.contains("demo-app"), "{top}");

    let images = p.ok(&["images", "web"]);
    assert!(
        images
            .lines()
            .next()
            .unwrap_or_default()
            .contains("IMAGE ID"),
        "{images}"
    );
    assert_eq!(images.matches("composure-test").count(), 2, "{images}");
    let ids = p.ok(&["images", "-q"]);
    assert_eq!(ids.lines().count(), 1, "one image: {ids}");

    let before = p.running("web", 1, false).expect("web-1")["id"].clone();
    p.ok(&["kill", "web"]);
    common::wait_for(
        "web-1 to be replaced",
        std::time::Duration::from_secs(60),
        || {
            p.running("web", 1, false)
                .filter(|task| task["id"] != before)
                .map(|_| ())
        },
    );
    let unknown = p.run(&["top", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    p.ok(&["down"]);
}

/// `up --scale`, `--force-recreate` and `--no-deps`, as compose's.
#[test]
fn up_scale_force_recreate_and_no_deps() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new(
        "upflags",
        &daemon,
        r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    depends_on: [kv]
  kv:
    image: IMAGE
    command: ["kv", "--port", "6379"]
"#,
    );
    // --no-deps: web alone, kv not started.
    p.ok(&[
        "up",
        "--no-deps",
        "--scale",
        "web=2",
        "--wait-timeout",
        "120",
        "web",
    ]);
    assert_eq!(p.containers_of("web").len(), 2, "--scale web=2");
    assert!(p.containers_of("kv").is_empty(), "--no-deps started kv");
    p.ok(&["up", "--wait-timeout", "120"]);
    let before = p.containers_of("web");
    assert_eq!(before.len(), 1, "the file's replicas again");
    // Nothing changed: --force-recreate replaces the replicas anyway, rolled in.
    p.ok(&["up", "--force-recreate", "--wait-timeout", "120", "web"]);
    let after = common::wait_for("web replaced", std::time::Duration::from_secs(60), || {
        let now = p.containers_of("web");
        (now.len() == 1 && now != before).then_some(now)
    });
    assert_ne!(after, before);
    let bad = p.run(&["up", "--scale", "nope=2"]);
    assert_eq!(bad.status.code(), Some(1));
    p.ok(&["down"]);
}

/// `daemon --socket-group GROUP` (as dockerd's `-G`): the socket belongs to that group,
/// mode 0660; a group the host does not have is refused at start.
#[test]
fn the_socket_group_owns_the_api_socket() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let daemon = Daemon::start_with(None, &["--socket-group", "65534"]);
    let meta = std::fs::metadata(daemon.socket()).unwrap();
    assert_eq!(meta.gid(), 65534);
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_composure"))
        .args([
            "daemon",
            "--socket-group",
            "no-such-group-here",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--socket")
        .arg(dir.path().join("d.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no group `no-such-group-here`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Not root: the CLI's default daemon is the user's own, under `$XDG_RUNTIME_DIR` (as
/// rootless Docker's), not the system's.
#[test]
fn a_user_who_is_not_root_defaults_to_their_own_daemon() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_composure"))
        .arg("ls")
        .env_remove("COMPOSURE_HOST")
        .env("XDG_RUNTIME_DIR", dir.path())
        .env("HOME", dir.path())
        .output()
        .expect("setpriv runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = dir.path().join("composure/composure.sock");
    assert!(stderr.contains(&expected.display().to_string()), "{stderr}");
    // Root keeps the system's.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_composure"))
        .arg("ls")
        .env_remove("COMPOSURE_HOST")
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    // (A system daemon may be running on this machine: then `ls` simply answers.)
    if !out.status.success() {
        assert!(String::from_utf8_lossy(&out.stderr).contains("/run/composure/composure.sock"));
    }
}

/// `stop` takes a service's replicas away (scaled to 0) and `start` brings the file's count
/// back; the other services are left alone.
#[test]
fn stop_and_start_scale_a_service_to_zero_and_back() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new(
        "stopstart",
        &daemon,
        r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    deploy:
      replicas: 2
  other:
    image: IMAGE
    command: ["web", "--port", "8080"]
"#,
    );
    p.ok(&["up", "--wait-timeout", "120"]);
    let other = p.containers_of("other");
    p.ok(&["stop", "web"]);
    common::wait_for("web stopped", std::time::Duration::from_secs(60), || {
        p.containers_of("web").is_empty().then_some(())
    });
    assert_eq!(p.containers_of("other"), other, "other was left alone");
    p.ok(&["start", "web"]);
    common::wait_for("web started", std::time::Duration::from_secs(60), || {
        (p.containers_of("web").len() == 2).then_some(())
    });
    assert_eq!(p.run(&["stop", "nope"]).status.code(), Some(1));
    p.ok(&["down"]);
}
