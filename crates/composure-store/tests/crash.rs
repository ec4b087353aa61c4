//! A daemon killed with SIGKILL in the middle of writing leaves a sound database in which
//! every write it reported committed is readable.
//!
//! The test runs its own binary again as the writer (selected by an environment variable),
//! reads the revisions it reports as committed, and kills it while it is still writing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use composure_core::{DesiredState, Health, Task, TaskId, TaskState};
use composure_store::kv::SqliteKv;
use composure_store::{Guard, ProjectMeta, Store, StoredEvent};
use serde_json::json;

const WRITER_ENV: &str = "COMPOSURE_STORE_CRASH_WRITER";
/// Commits to see from each writer before killing it.
const COMMITS_BEFORE_KILL: u64 = 150;
const ROUNDS: usize = 3;

fn task(n: u64) -> Task {
    Task {
        id: TaskId(format!("task-{n}")),
        project: "app".into(),
        service: "web".into(),
        slot: u32::try_from(n % 4).unwrap() + 1,
        spec_hash: format!("hash-{n}"),
        desired: DesiredState::Running,
        state: if n.is_multiple_of(3) {
            TaskState::Failed
        } else {
            TaskState::Running
        },
        health: Health::None,
        container_id: Some(format!("c-{n}")),
        container_name: None,
        exit_code: None,
        error: None,
        attempt: 0,
        created_at: n,
        not_before: 0,
        started_at: Some(n),
        finished_at: None,
        healthy_at: None,
        node: Default::default(),
        reserved: Default::default(),
        gpus: Default::default(),
    }
}

/// The writer: writes forever, printing `committed <revision> <task n>` after each commit.
fn write_forever(path: &Path) -> ! {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(write_forever_async(path))
}

async fn write_forever_async(path: &Path) -> ! {
    let store = Store::open(path).unwrap();
    let meta = ProjectMeta::default();
    let mut n = store.revision().await.unwrap() * 10;
    loop {
        n += 1;
        let revision = match n % 4 {
            0 => {
                let expected = store
                    .project("app")
                    .await
                    .unwrap()
                    .map_or(0, |p| p.revision);
                store
                    .put_project(
                        "app",
                        &json!({"generation": n, "pad": "x".repeat(2000)}),
                        &meta,
                        expected,
                    )
                    .await
                    .unwrap()
            }
            1 => store
                .append_event(&StoredEvent {
                    revision: 0,
                    time: n,
                    project: "app".into(),
                    service: None,
                    slot: None,
                    task: Some(format!("task-{n}")),
                    kind: "tick".into(),
                    message: "y".repeat(500),
                })
                .await
                .unwrap(),
            _ => store
                .put_tasks(&[task(n), task(n + 1_000_000)], &Guard::none())
                .await
                .unwrap(),
        };
        println!("committed {revision} {n}");
    }
}

#[test]
fn a_writer_killed_mid_write_leaves_a_sound_database() {
    if let Some(path) = std::env::var_os(WRITER_ENV) {
        write_forever(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_writer_killed_mid_write_leaves_a_sound_database",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut last: Option<(u64, u64)> = None;
        let mut seen = 0;
        for line in stdout.lines() {
            let line = line.unwrap();
            // The first report follows libtest's "test <name> ... " on the same line.
            let Some(rest) = line.split_once("committed ").map(|(_, rest)| rest) else {
                continue;
            };
            let (revision, n) = rest.split_once(' ').unwrap();
            last = Some((revision.parse().unwrap(), n.parse().unwrap()));
            seen += 1;
            if seen == COMMITS_BEFORE_KILL {
                // SIGKILL: no destructor, no flush, wherever the writer is.
                child.kill().unwrap();
                break;
            }
        }
        child.wait().unwrap();
        let (revision, n) = last.expect("the writer committed nothing before it ended");
        assert_eq!(
            seen, COMMITS_BEFORE_KILL,
            "the writer ended by itself in round {round}"
        );

        let sqlite = SqliteKv::open(&path).unwrap();
        assert_eq!(sqlite.integrity_check().unwrap(), "ok", "round {round}");
        drop(sqlite);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(check_round(&path, round, revision, n));
    }
}

async fn check_round(path: &Path, round: usize, revision: u64, n: u64) {
    {
        let store = Store::open(path).unwrap();
        assert!(
            store.revision().await.unwrap() >= revision,
            "round {round}: revision {revision} was reported committed but is gone"
        );
        // What the last reported commit wrote is there.
        match n % 4 {
            0 => {
                let history = store.project_history("app").await.unwrap();
                assert!(
                    history
                        .iter()
                        .any(|h| h.revision == revision && h.spec["generation"] == n)
                );
            }
            1 => {
                let events = store.events_since(revision - 1, Some("app")).await.unwrap();
                assert_eq!(events.first().map(|e| e.revision), Some(revision));
            }
            _ => {
                let stored = store
                    .task("app", &TaskId(format!("task-{n}")))
                    .await
                    .unwrap();
                // Ended tasks may since have been pruned by later writes; a live one stays.
                if task(n).state == TaskState::Running {
                    assert_eq!(stored, Some(task(n)), "round {round}");
                }
            }
        }
        // Every table is still readable end to end.
        store.projects().await.unwrap();
        store.tasks("app").await.unwrap();
        store.events_since(0, None).await.unwrap();
    }
}
