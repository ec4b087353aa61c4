//! GPU assignment through the daemon over the simulated runtime (which, unlike this
//! machine's engine, starts containers that ask for GPUs), with the inventory read from a
//! file: distinct GPUs per replica, replicas left pending with the reason, GPUs freed by a
//! scale-down taken by the pending ones, sharing, the assignment kept across a daemon
//! restart, and a start-first update rolling stop-first when no GPU is free.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod harness;

use std::collections::BTreeSet;
use std::sync::Arc;

use composure_api::{ScaleRequest, TaskState};
use composure_daemon::gpu::GpuSource;
use harness::{Daemon, current, sim};

/// A daemon that reads `count` GPUs from an inventory file.
async fn with_gpus(count: usize) -> Daemon {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut csv = String::from("index, uuid, name, memory.total [MiB]\n");
    for i in 0..count {
        csv.push_str(&format!("{i}, GPU-{i:04}, NVIDIA H200, 81920 MiB\n"));
    }
    let path = dir.path().join("gpus.csv");
    std::fs::write(&path, csv).unwrap();
    Daemon::start_configured(dir, sim(), |config| {
        config.node.gpus = GpuSource::File(path);
    })
    .await
}

fn service(name: &str, replicas: u32, extra: &str) -> String {
    format!(
        "
  {name}:
    image: demo
    environment: {{VERSION: \"1\"}}
    deploy:
      replicas: {replicas}
      resources:
        reservations:
          devices: [{{driver: nvidia, count: 1, capabilities: [gpu]}}]
{extra}"
    )
}

/// Every running task's GPUs, by service and slot.
fn held(status: &composure_api::ProjectStatus) -> Vec<(String, u32, Vec<String>)> {
    status
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .map(|t| (t.service.clone(), t.slot, t.gpus.clone()))
        .collect()
}

fn distinct(held: &[(String, u32, Vec<String>)]) -> bool {
    let all: Vec<&String> = held.iter().flat_map(|(_, _, g)| g).collect();
    all.len() == all.iter().collect::<BTreeSet<_>>().len()
}

#[tokio::test(start_paused = true)]
async fn replicas_beyond_the_gpus_wait_and_take_the_gpus_a_scale_down_frees() {
    let daemon = with_gpus(8).await;
    let yaml = format!(
        "services:{}{}",
        service("train", 6, ""),
        service("infer", 4, "")
    );
    daemon.up("ai", &yaml).await;
    let status = daemon
        .wait_status("ai", "8 replicas running, 2 pending", |s| {
            held(s).len() == 8 && !s.problems.is_empty()
        })
        .await;
    assert!(distinct(&held(&status)), "{:?}", held(&status));
    assert!(
        status.problems[0].contains("service `infer`: no node can run it: node ")
            && status.problems[0].contains("needs 1 GPU; 0 of 8 free: ai-train-1 holds 0; "),
        "{:?}",
        status.problems
    );
    let pending: Vec<_> = current(&status, "infer")
        .into_iter()
        .filter(|t| t.state == TaskState::Pending)
        .collect();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|t| t.gpus.is_empty()));

    // `composure gpus`: every GPU held once.
    let gpus = daemon.client.gpus().await.unwrap();
    let devices = &gpus.nodes[0].gpus;
    assert_eq!(devices.len(), 8);
    assert!(devices.iter().all(|g| g.holders.len() == 1), "{devices:?}");

    // Scaling train down frees two GPUs; infer's pending replicas take them.
    let request = ScaleRequest {
        services: [("train".to_string(), 4)].into_iter().collect(),
    };
    daemon.client.scale("ai", &request).await.unwrap();
    let status = daemon.wait_running("ai").await;
    let held = held(&status);
    assert_eq!(held.len(), 8);
    assert!(distinct(&held), "{held:?}");
    assert_eq!(held.iter().filter(|(s, _, _)| s == "infer").count(), 4);
    assert!(status.problems.is_empty(), "{:?}", status.problems);
}

#[tokio::test(start_paused = true)]
async fn the_assignment_survives_a_daemon_restart() {
    let daemon = with_gpus(4).await;
    daemon
        .up("ai", &format!("services:{}", service("infer", 3, "")))
        .await;
    let before = held(&daemon.wait_running("ai").await);
    let containers: BTreeSet<String> = daemon
        .containers("ai")
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    let dir = daemon.dir.clone();
    let path = dir.path().join("gpus.csv");
    let (dir, sim) = daemon.stop().await;
    let daemon = Daemon::start_configured(dir, sim, |config| {
        config.node.gpus = GpuSource::File(path);
    })
    .await;
    let mut after = held(&daemon.wait_running("ai").await);
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(before, after);
    let now: BTreeSet<String> = daemon
        .containers("ai")
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(containers, now, "nothing was restarted");
    // A new replica gets the GPU nobody holds.
    let request = ScaleRequest {
        services: [("infer".to_string(), 4)].into_iter().collect(),
    };
    daemon.client.scale("ai", &request).await.unwrap();
    let status = daemon.wait_running("ai").await;
    assert!(distinct(&held(&status)));
    assert_eq!(held(&status).len(), 4);
}

#[tokio::test(start_paused = true)]
async fn share_puts_replicas_of_the_service_on_one_gpu() {
    let daemon = with_gpus(2).await;
    let shared = "    x-composure:\n      gpu: {share: 2}\n";
    daemon
        .up("ai", &format!("services:{}", service("infer", 5, shared)))
        .await;
    let status = daemon
        .wait_status("ai", "4 replicas on 2 GPUs", |s| {
            held(s).len() == 4 && !s.problems.is_empty()
        })
        .await;
    let mut per_gpu = std::collections::BTreeMap::<String, usize>::new();
    for (_, _, gpus) in held(&status) {
        *per_gpu.entry(gpus[0].clone()).or_default() += 1;
    }
    assert_eq!(per_gpu.values().copied().collect::<Vec<_>>(), [2, 2]);
    assert!(
        status.problems[0].contains("needs 1 GPU shared by at most 2 replicas; 0 of 2 free"),
        "{:?}",
        status.problems
    );
}

#[tokio::test(start_paused = true)]
async fn a_start_first_update_with_no_free_gpu_rolls_stop_first_and_says_so() {
    let daemon = with_gpus(2).await;
    daemon
        .up("ai", &format!("services:{}", service("infer", 2, "")))
        .await;
    let before: BTreeSet<String> = current(&daemon.wait_running("ai").await, "infer")
        .iter()
        .map(|t| t.id.clone())
        .collect();
    let changed = format!("services:{}", service("infer", 2, "")).replace("\"1\"", "\"2\"");
    let put = daemon
        .client
        .put_project("ai", &harness::project("ai", &changed))
        .await
        .unwrap();
    assert!(
        put.warnings.iter().any(
            |w| w.contains("service `infer`: start-first needs a free GPU")
                && w.contains("roll stop-first")
        ),
        "{:?}",
        put.warnings
    );
    let status = daemon
        .wait_status("ai", "the update to finish", |s| {
            let tasks = current(s, "infer");
            s.status == composure_api::ProjectState::Running
                && tasks.len() == 2
                && tasks
                    .iter()
                    .all(|t| t.state == TaskState::Running && !before.contains(&t.id))
        })
        .await;
    assert!(distinct(&held(&status)), "{:?}", held(&status));
}
