//! The single-host engine end to end, on the real Docker Engine: `composure daemon` and the
//! CLI verbs, with containers killed, removed and made unhealthy behind its back.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::time::Duration;

use common::{Daemon, Project, docker, ensure_image, inspect, wait_for};

const WEB_AND_KV: &str = r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080", "--db", "kv:6379"]
    deploy:
      replicas: 2
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 2s
      retries: 3
    depends_on:
      kv:
        condition: service_healthy
  kv:
    image: IMAGE
    command: ["kv", "--port", "6379", "--data", "/data"]
    volumes: ["kv-data:/data"]
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "tcp", "127.0.0.1:6379"]
      interval: 1s
      timeout: 2s
      retries: 3
volumes:
  kv-data:
"#;

const ONE_WEB: &str = r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
"#;

const LONG: Duration = Duration::from_secs(90);

fn container_of(task: &serde_json::Value) -> String {
    task["container_id"]
        .as_str()
        .expect("container id")
        .to_string()
}

#[test]
fn up_converges_in_dependency_order_and_down_leaves_nothing() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("up", &daemon, WEB_AND_KV);
    p.ok(&["up", "--wait-timeout", "90"]);

    let tasks = p.tasks(false);
    assert_eq!(tasks.len(), 3, "{tasks:#?}");
    assert!(
        tasks
            .iter()
            .all(|t| t["state"] == "running" && t["health"] == "healthy"),
        "{tasks:#?}"
    );
    // Names and labels as docker compose makes them.
    let web1 = p.running("web", 1, true).expect("web-1");
    let id = container_of(&web1);
    assert_eq!(inspect(&id, "{{.Name}}"), format!("/{}-web-1", p.name));
    assert_eq!(
        inspect(
            &id,
            "{{index .Config.Labels \"com.docker.compose.service\"}}"
        ),
        "web"
    );
    assert_eq!(
        inspect(&id, "{{.HostConfig.RestartPolicy.Name}}"),
        "no",
        "Composure decides restarts"
    );

    // service_healthy: web started only after kv passed a health check.
    let kv = container_of(&p.running("kv", 1, true).expect("kv-1"));
    let kv_healthy_at = inspect(
        &kv,
        "{{range .State.Health.Log}}{{if eq .ExitCode 0}}{{.End}}\n{{end}}{{end}}",
    );
    let first_healthy = kv_healthy_at
        .lines()
        .next()
        .expect("kv passed a check")
        .to_string();
    let web_started = inspect(&id, "{{.State.StartedAt}}");
    assert!(
        web_started.as_str() >= first_healthy.as_str(),
        "web started {web_started}, kv healthy {first_healthy}"
    );

    p.ok(&["down", "-v"]);
    assert!(
        p.containers().is_empty(),
        "containers left: {:?}",
        p.containers()
    );
    let label = format!("label=com.docker.compose.project={}", p.name);
    assert!(common::docker_lines(&["network", "ls", "-q", "--filter", &label]).is_empty());
    assert!(common::docker_lines(&["volume", "ls", "-q", "--filter", &label]).is_empty());
}

#[test]
fn a_crashed_container_is_replaced() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("crash", &daemon, ONE_WEB);
    p.ok(&["up", "--wait-timeout", "60"]);
    let before = container_of(&p.running("web", 1, false).expect("web-1"));
    assert!(docker(&["kill", &before]).status.success());
    let after = wait_for("a new task in slot 1", LONG, || {
        p.running("web", 1, false)
            .filter(|t| container_of(t) != before)
    });
    assert_eq!(after["restarts"], 1, "{after:#}");
    let history = p.tasks(true);
    assert!(
        history.iter().any(|t| t["state"] == "failed"),
        "the crashed task stays in the history: {history:#?}"
    );
}

#[test]
fn an_unhealthy_container_is_replaced() {
    ensure_image();
    let daemon = Daemon::start();
    // The check probes a port nothing listens on: the container runs but is unhealthy.
    let compose = r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "tcp", "127.0.0.1:9"]
      interval: 1s
      timeout: 1s
      retries: 2
"#;
    let p = Project::new("unhealthy", &daemon, compose);
    p.ok(&["up", "-d"]);
    let replaced = wait_for("an unhealthy task to be replaced", LONG, || {
        p.tasks(true).into_iter().find(|t| {
            t["state"] == "failed" && t["error"].as_str().is_some_and(|e| e.contains("unhealthy"))
        })
    });
    assert_eq!(replaced["service"], "web");
    wait_for("a replacement task", LONG, || {
        p.tasks(false)
            .into_iter()
            .find(|t| t["restarts"].as_u64() >= Some(1))
    });
}

#[test]
fn a_container_removed_by_hand_is_recreated() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("rm", &daemon, ONE_WEB);
    p.ok(&["up", "--wait-timeout", "60"]);
    let before = container_of(&p.running("web", 1, false).expect("web-1"));
    assert!(docker(&["rm", "-f", &before]).status.success());
    wait_for("a new container in slot 1", LONG, || {
        p.running("web", 1, false)
            .filter(|t| container_of(t) != before)
    });
}

/// The project's containers (`before`, sorted, started at `started`) stay the very same
/// for `watch`: none replaced, none restarted, none added.
fn assert_nothing_restarted(
    p: &Project,
    daemon: &Daemon,
    before: &[String],
    started: &[String],
    watch: Duration,
) {
    let deadline = std::time::Instant::now() + watch;
    while std::time::Instant::now() < deadline {
        let mut now: Vec<String> = p.tasks(false).iter().map(container_of).collect();
        now.sort();
        assert_eq!(now, before, "daemon log:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    let restarted: Vec<String> = before
        .iter()
        .map(|id| inspect(id, "{{.State.StartedAt}}"))
        .collect();
    assert_eq!(started, restarted, "containers were restarted");
    assert_eq!(p.containers().len(), before.len(), "no extra containers");
}

#[test]
fn a_killed_daemon_adopts_running_containers() {
    ensure_image();
    let mut daemon = Daemon::start();
    let p = Project::new("adopt", &daemon, WEB_AND_KV);
    p.ok(&["up", "--wait-timeout", "90"]);
    let mut before: Vec<String> = p.tasks(false).iter().map(container_of).collect();
    before.sort();
    let started: Vec<String> = before
        .iter()
        .map(|id| inspect(id, "{{.State.StartedAt}}"))
        .collect();

    daemon.kill();
    // Stopping the daemon never stops user containers.
    assert!(
        before
            .iter()
            .all(|id| inspect(id, "{{.State.Running}}") == "true")
    );
    daemon.restart();

    // The restarted daemon reports the same containers, and over several resync periods
    // creates nothing new and restarts nothing.
    assert_nothing_restarted(&p, &daemon, &before, &started, Duration::from_secs(8));
}

/// Issue 14, item 3: with `state.db` gone, every running container was removed before any
/// replacement was created. Now `up` again (the documented recovery) adopts them.
#[test]
fn a_lost_store_is_recovered_by_up_again_without_a_restart() {
    ensure_image();
    // The store on disk is what is lost here.
    let mut daemon = Daemon::start_with(None, &[]);
    let p = Project::new("lost", &daemon, WEB_AND_KV);
    p.ok(&["up", "--wait-timeout", "90"]);
    let mut before: Vec<String> = p.tasks(false).iter().map(container_of).collect();
    before.sort();
    let started: Vec<String> = before
        .iter()
        .map(|id| inspect(id, "{{.State.StartedAt}}"))
        .collect();

    daemon.kill();
    for name in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(daemon.dir.path().join("data").join(name));
    }
    daemon.restart();
    p.ok(&["up", "--wait-timeout", "90"]);

    assert_nothing_restarted(&p, &daemon, &before, &started, Duration::from_secs(6));
    let events = p.ok(&["events", "--no-follow", "--format", "json"]);
    assert!(events.contains("\"adopted\""), "{events}");
}

#[test]
fn scale_up_and_down() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new("scale", &daemon, ONE_WEB);
    p.ok(&["up", "--wait-timeout", "60"]);
    let first = container_of(&p.running("web", 1, false).expect("web-1"));
    p.ok(&["scale", "web=3"]);
    wait_for("3 running replicas", LONG, || {
        (p.running("web", 3, false).is_some() && p.running("web", 2, false).is_some()).then_some(())
    });
    assert_eq!(
        container_of(&p.running("web", 1, false).expect("web-1")),
        first,
        "scaling up touches no running replica"
    );
    p.ok(&["scale", "web=1"]);
    wait_for("one replica left", LONG, || {
        (p.containers().len() == 1).then_some(())
    });
    assert_eq!(
        container_of(&p.running("web", 1, false).expect("web-1")),
        first
    );
}

#[test]
fn bad_inputs_get_clear_errors() {
    ensure_image();
    let daemon = Daemon::start();
    // A missing image: nothing to pull from; the error names the service.
    let p = Project::new(
        "noimage",
        &daemon,
        "services:\n  ghost:\n    image: composure-no-such-image:1\n",
    );
    let out = p.run(&["up", "--wait-timeout", "15"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ghost") && stderr.contains("composure-no-such-image"),
        "{stderr}"
    );

    // An invalid file never reaches the daemon.
    let bad = Project::new(
        "badfile",
        &daemon,
        "services:\n  web:\n    image: x\n    ports: [\"99999:80\"]\n",
    );
    let out = bad.run(&["up", "-d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("compose.yaml:4"));

    // A second daemon on the same data directory fails clearly.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_composure"))
        .args(["daemon", "--data-dir"])
        .arg(daemon.dir.path().join("data"))
        .arg("--socket")
        .arg(daemon.dir.path().join("other.sock"))
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another Composure daemon"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn container_name_names_the_container() {
    ensure_image();
    let daemon = Daemon::start();
    let wanted = format!("composure-named-{}", std::process::id());
    let compose = format!(
        "services:\n  web:\n    image: IMAGE\n    command: [\"web\", \"--port\", \"8080\"]\n    container_name: {wanted}\n"
    );
    let p = Project::new("named", &daemon, &compose);
    p.ok(&["up", "--wait-timeout", "60"]);
    let id = container_of(&p.running("web", 1, false).expect("web-1"));
    assert_eq!(inspect(&id, "{{.Name}}"), format!("/{wanted}"));
}

#[test]
fn up_of_a_named_service_leaves_the_others_running() {
    ensure_image();
    let daemon = Daemon::start();
    let two = |version: &str| {
        format!(
            r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    deploy:
      replicas: 2
  worker:
    image: IMAGE
    command: ["web", "--port", "8081"]
    environment:
      VERSION: "{version}"
"#
        )
    };
    let p = Project::new("up-named", &daemon, &two("1"));
    p.ok(&["up", "--wait-timeout", "60"]);
    let mut web = p.containers_of("web");
    web.sort();
    let worker = p.containers_of("worker");
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        two("2").replace("IMAGE", common::IMAGE),
    )
    .unwrap();
    p.ok(&["up", "worker", "--wait-timeout", "60"]);
    let mut still = p.containers_of("web");
    still.sort();
    assert_eq!(still, web, "`up worker` left web alone");
    wait_for("worker to be replaced", LONG, || {
        let now = p.containers_of("worker");
        (now.len() == 1 && now != worker).then_some(())
    });
    p.ok(&["down"]);
}

#[test]
fn a_socket_the_user_may_not_use_is_said_and_no_second_daemon_starts() {
    use std::os::unix::fs::PermissionsExt;
    let daemon = Daemon::start();
    let p = Project::new("denied", &daemon, ONE_WEB);
    std::fs::set_permissions(p.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The daemon's socket is in a directory only root may enter; run as nobody.
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_composure"))
            .args(["-p", &p.name])
            .args(args)
            .current_dir(p.dir.path())
            .env("COMPOSURE_HOST", daemon.host())
            .env("NO_COLOR", "1")
            .output()
            .expect("setpriv runs")
    };
    for args in [&["up", "-d"][..], &["ps"][..]] {
        let out = as_nobody(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("permission denied"), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("No daemon was running"),
            "{args:?}: {stderr}"
        );
    }
    assert!(!p.run(&["ps"]).status.success(), "nothing was submitted");
}

#[test]
fn up_of_a_service_that_keeps_failing_says_why_without_waiting_for_the_timeout() {
    ensure_image();
    let daemon = Daemon::start();
    let p = Project::new(
        "keeps-failing",
        &daemon,
        "services:\n  web:\n    image: IMAGE\n    command: [\"no-such-command\"]\n",
    );
    // With the default 300 s timeout, this returns only once web has failed 3 times in a row.
    let out = p.run(&["up"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fail 3 times in a row"), "{stderr}");
    assert!(!stderr.contains("did not converge"), "{stderr}");
    p.ok(&["down"]);

    // A missing image fails before anything is stored: the image phase says why.
    let ghost = Project::new(
        "keeps-failing-image",
        &daemon,
        "services:\n  web:\n    image: composure-no-such-image:1\n",
    );
    let out = ghost.run(&["up"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("image `composure-no-such-image:1` is not available")
            && stderr.contains("service `web` needs it"),
        "{stderr}"
    );
    let ls = ghost.ok(&["ls", "-q"]);
    assert!(!ls.contains(&ghost.name), "nothing was stored: {ls}");
}
