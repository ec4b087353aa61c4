//! GPUs end to end on the real Docker Engine, with the inventory read from a file
//! (`--gpu-inventory`: 8 GPUs as `nvidia-smi` lists them; this machine has none):
//! `composure gpus`, each replica's own device in its container's device request, the
//! dry run's assignment and the reason a replica cannot get a GPU, and the error a
//! container with a GPU device request gets from an engine without the NVIDIA runtime.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Daemon, Project, ensure_image, inspect, wait_for};

fn inventory(dir: &std::path::Path) -> String {
    let mut text = String::from("index, uuid, name, memory.total [MiB]\n");
    for i in 0..8 {
        text.push_str(&format!(
            "{i}, GPU-{i:08}-1111-2222-3333-444455556666, NVIDIA H200, 143771 MiB\n"
        ));
    }
    let path = dir.join("gpus.csv");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// `replicas` replicas of one GPU each; a failed task is not replaced, so that each
/// replica's first container stays to be inspected.
fn compose(replicas: u32) -> String {
    format!(
        r#"
services:
  infer:
    image: IMAGE
    command: ["web", "--port", "8080"]
    deploy:
      replicas: {replicas}
      restart_policy:
        condition: none
      resources:
        reservations:
          devices:
            - driver: nvidia
              count: 1
              capabilities: [gpu]
"#
    )
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn each_replica_gets_its_own_gpu_and_a_host_without_the_runtime_says_so() {
    ensure_image();
    let files = tempfile::tempdir().unwrap();
    let csv = inventory(files.path());
    let daemon = Daemon::start_with(None, &["--gpu-inventory", &csv]);
    let p = Project::new("gpus", &daemon, &compose(4));

    let listed: serde_json::Value =
        serde_json::from_str(&p.ok(&["gpus", "--format", "json"])).unwrap();
    let node = &listed["nodes"][0];
    let gpus = node["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 8, "{listed}");
    assert_eq!(gpus[3]["uuid"], "GPU-00000003-1111-2222-3333-444455556666");
    assert_eq!(gpus[3]["memory"], 143_771u64 << 20);
    assert!(
        gpus.iter()
            .all(|g| g["holders"].as_array().unwrap().is_empty())
    );
    assert!(p.ok(&["gpus"]).contains("NVIDIA H200"));

    // The dry run gives each replica its own GPU.
    let out = p.run(&["up", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for slot in 1..=4 {
        let line = format!(
            "infer-{slot}: node {}, GPU {}",
            node["node"].as_str().unwrap(),
            slot - 1
        );
        assert!(stdout(&out).contains(&line), "{}", stdout(&out));
    }
    // Ten do not fit on eight: the two left over are not placed, and the reason says who
    // holds the GPUs.
    let ten = Project::new("gpus-ten", &daemon, &compose(10));
    let out = ten.run(&["up", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let why = stderr(&out);
    assert!(
        why.contains("infer: 2 of 10 replica(s) cannot be placed"),
        "{why}"
    );
    assert!(why.contains("needs 1 GPU; 0 of 8 free: "), "{why}");
    assert!(
        why.contains(&format!("{}-infer-1 holds 0", ten.name)),
        "{why}"
    );

    // Up: each container asks the engine for its own device, by UUID; this engine has no
    // NVIDIA runtime, and each task says what to install.
    let out = p.run(&["up", "--wait-timeout", "120"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let failed = wait_for(
        "the 4 replicas to fail to start",
        Duration::from_secs(60),
        || {
            let tasks = p.tasks(true);
            let failed: Vec<serde_json::Value> = tasks
                .into_iter()
                .filter(|t| t["state"] == "failed")
                .collect();
            (failed.len() == 4).then_some(failed)
        },
    );
    for task in &failed {
        let error = task["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("the engine has no nvidia runtime: install nvidia-container-toolkit"),
            "{task}"
        );
        assert_eq!(task["gpus"].as_array().unwrap().len(), 1, "{task}");
    }
    let containers = p.containers_of("infer");
    assert_eq!(containers.len(), 4);
    let mut devices = BTreeSet::new();
    for id in &containers {
        let requests: serde_json::Value =
            serde_json::from_str(&inspect(id, "{{json .HostConfig.DeviceRequests}}")).unwrap();
        assert_eq!(requests.as_array().unwrap().len(), 1, "{requests}");
        assert_eq!(requests[0]["Driver"], "nvidia");
        assert_eq!(requests[0]["Count"], 0);
        let ids = requests[0]["DeviceIDs"].as_array().unwrap();
        assert_eq!(ids.len(), 1, "{requests}");
        let uuid = ids[0].as_str().unwrap().to_string();
        let env = inspect(id, "{{json .Config.Env}}");
        assert!(
            env.contains(&format!("NVIDIA_VISIBLE_DEVICES={uuid}")),
            "{env}"
        );
        devices.insert(uuid);
    }
    assert_eq!(
        devices.len(),
        4,
        "each replica has its own GPU: {devices:?}"
    );
    // Failed tasks hold nothing.
    let listed: serde_json::Value =
        serde_json::from_str(&p.ok(&["gpus", "--format", "json"])).unwrap();
    assert!(
        listed["nodes"][0]["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["holders"].as_array().unwrap().is_empty()),
        "{listed}"
    );
}

#[test]
fn bad_gpu_settings_are_refused_with_their_path() {
    let daemon = Daemon::start_with(None, &[]);
    let compose = r#"
services:
  infer:
    image: IMAGE
    gpus: [{count: 1}]
    x-composure:
      gpu: {share: 0}
"#;
    let p = Project::new("gpus-bad", &daemon, compose);
    let out = p.run(&["config", "-q"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("services.infer.x-composure.gpu.share"),
        "{}",
        stderr(&out)
    );
    let out = p.run(&["up", "--wait-timeout", "30"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("services.infer.x-composure.gpu.share"),
        "{}",
        stderr(&out)
    );
    assert!(!p.run(&["ps"]).status.success(), "nothing was stored");
}

#[test]
fn a_daemon_with_an_unreadable_inventory_does_not_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_composure"))
        .args([
            "daemon",
            "--data-dir",
            "/tmp/composure-gpu-inventory-test",
            "--socket",
            "/tmp/composure-gpu-inventory-test.sock",
            "--gpu-inventory",
            "/nonexistent/gpus.csv",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read the GPU inventory /nonexistent/gpus.csv"),
        "{}",
        stderr(&out)
    );
}

/// `scripts/gpu-check` (the device check for a machine with GPUs), run here with an
/// `nvidia-smi` that prints an inventory file and composure reading the same or another.
#[test]
fn the_gpu_check_compares_the_inventories_and_assigns_four_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let csv = inventory(dir.path());
    let smi = dir.path().join("nvidia-smi");
    std::fs::write(&smi, format!("#!/bin/sh\ncat {csv}\n")).unwrap();
    std::fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/gpu-check");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap()
    );
    let run = |file: &str| {
        std::process::Command::new(&script)
            .args(["--gpu-inventory", file])
            .env("PATH", &path)
            .env("COMPOSURE", env!("CARGO_BIN_EXE_composure"))
            .output()
            .unwrap()
    };
    let out = run(&csv);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("✔ the inventories agree: 8 GPU(s)"),
        "{}",
        stdout(&out)
    );
    for slot in 1..=4 {
        assert!(
            stdout(&out).contains(&format!("infer-{slot}: node ")),
            "{}",
            stdout(&out)
        );
    }
    let other = dir.path().join("other.csv");
    std::fs::write(
        &other,
        std::fs::read_to_string(&csv)
            .unwrap()
            .replace("143771 MiB", "81559 MiB"),
    )
    .unwrap();
    let out = run(other.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("✘ the inventories differ"),
        "{}",
        stdout(&out)
    );

    // This machine has no driver: `composure gpus --local` says so, and succeeds.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_composure"))
        .args(["gpus", "--local"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    if !std::path::Path::new("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1").exists() {
        assert!(
            stdout(&out).contains("no NVIDIA driver: libnvidia-ml.so.1 not found; services that reserve GPUs cannot be placed"),
            "{}",
            stdout(&out)
        );
    }
}
