#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use composure_core::{DesiredState, Health, NodeName, Rollout, Task, TaskId, TaskState};
use serde_json::json;
use tempfile::TempDir;

use crate::kv::{Op, SqliteKv, Txn};
use crate::store::Limits;
use crate::*;

fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    (dir, store)
}

fn open_with(limits: Limits) -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let kv = SqliteKv::open(&dir.path().join("state.db")).unwrap();
    (dir, Store::with_limits(Arc::new(kv), limits))
}

/// A second connection to the store's file, as a backup tool or an older Composure would
/// open it.
fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

fn meta() -> ProjectMeta {
    ProjectMeta {
        working_dir: "/srv/app".into(),
        files: vec!["/srv/app/compose.yaml".into()],
    }
}

/// The revision a caller would pass to put the project next: that of the spec it read.
async fn current(store: &Store, name: &str) -> u64 {
    store
        .project(name)
        .await
        .unwrap()
        .map_or(0, |project| project.revision)
}

/// Puts `spec` as a caller that has just read the project would.
async fn put(store: &Store, name: &str, spec: serde_json::Value) -> u64 {
    let expected = current(store, name).await;
    store
        .put_project(name, &spec, &meta(), expected)
        .await
        .unwrap()
}

fn task(id: &str, service: &str, slot: u32, state: TaskState, created_at: u64) -> Task {
    let mut task = Task::new(
        TaskId(id.into()),
        "app",
        service,
        slot,
        "h1",
        NodeName("local".into()),
        created_at,
    );
    task.state = state;
    if state.is_terminal() {
        task.desired = DesiredState::Shutdown;
    }
    task
}

fn ids(tasks: Vec<Task>) -> Vec<String> {
    tasks.into_iter().map(|t| t.id.0).collect()
}

fn event(project: &str, kind: &str) -> StoredEvent {
    StoredEvent {
        revision: 0,
        time: 1_000,
        project: project.into(),
        service: Some("web".into()),
        slot: Some(1),
        task: Some("t1".into()),
        kind: kind.into(),
        message: format!("{kind} happened"),
    }
}

/// An update of `web` to `target`, for the project revision 1 (the daemon sets the revision
/// of the spec a rollout targets before storing it).
fn rollout(target: &str) -> Rollout {
    let spec = composure_core::ServiceSpec {
        name: "web".into(),
        replicas: 3,
        restart: composure_core::RestartPolicy::default(),
        depends_on: Vec::new(),
        spec_hash: target.into(),
        has_healthcheck: false,
        stop_grace_ms: 10_000,
        healthcheck: None,
        update: composure_core::UpdateConfig::update_default(),
        rollback: composure_core::UpdateConfig::rollback_default(),
        placement: Default::default(),
    };
    let mut rollout = Rollout::begin(&spec, Some("old".into()), 1_000);
    rollout.revision = 1;
    rollout
}

fn node(name: &str) -> Node {
    Node {
        name: name.into(),
        hostname: format!("{name}.local"),
        address: format!("{name}.local:7070"),
        labels: [("zone".to_string(), "a".to_string())].into(),
        resources: NodeResources {
            cpus: 8,
            memory: 16 << 30,
            gpu: Default::default(),
        },
        state: NodeState::Ready,
        engine_version: "27.0".into(),
        updated_at: 5_000,
    }
}

fn is_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    match result {
        Err(StoreError::Conflict(_)) => true,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The file

#[tokio::test]
async fn a_new_store_is_at_revision_zero_with_the_latest_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let kv = Arc::new(SqliteKv::open(&path).unwrap());
    let store = Store::new(kv.clone());
    assert_eq!(store.revision().await.unwrap(), 0);
    assert_eq!(
        crate::schema::version(&raw(&path)).unwrap(),
        crate::schema::latest_version()
    );
    assert_eq!(kv.integrity_check().unwrap(), "ok");
    assert!(
        store.describe().starts_with("sqlite "),
        "{}",
        store.describe()
    );
    assert!(store.projects().await.unwrap().is_empty());
    assert!(store.events_since(0, None).await.unwrap().is_empty());
    assert!(store.nodes().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_database_is_in_wal_mode() {
    // `journal_mode=WAL` is a property of the file, seen by every connection. (The
    // `synchronous=FULL` of the store's own connection is per connection, so it cannot be
    // seen from here; SqliteKv::open sets it next to WAL.)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(&path).unwrap();
    put(&store, "app", json!({})).await;
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(dir.path().join("state.db-wal").exists());
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let t = task("t1", "web", 1, TaskState::Running, 1);
    let (project_revision, revision) = {
        let store = Store::open(&path).unwrap();
        let project = put(&store, "app", json!({"v": 1})).await;
        store.put_task(&t, &Guard::none()).await.unwrap();
        store
            .put_rollout(
                "app",
                "web",
                &rollout("v1"),
                &Guard::project("app", project),
            )
            .await
            .unwrap();
        store.put_node(&node("n1"), 0).await.unwrap();
        let revision = store.append_event(&event("app", "started")).await.unwrap();
        (project, revision)
    };
    let store = Store::open(&path).unwrap();
    assert_eq!(store.revision().await.unwrap(), revision);
    let project = store.project("app").await.unwrap().unwrap();
    assert_eq!(
        (project.revision, project.spec),
        (project_revision, json!({"v": 1}))
    );
    assert_eq!(store.tasks("app").await.unwrap(), [t]);
    assert_eq!(
        store.rollout("app", "web").await.unwrap(),
        Some(rollout("v1"))
    );
    assert_eq!(store.nodes().await.unwrap(), [node("n1")]);
    let events = store.events_since(0, None).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].revision, revision);
    assert_eq!(
        crate::schema::version(&raw(&path)).unwrap(),
        crate::schema::latest_version()
    );
    // Writes go on from where the file was.
    let next = store
        .put_project("app", &json!({"v": 2}), &meta(), project_revision)
        .await
        .unwrap();
    assert_eq!(next, revision + 1);
}

#[tokio::test]
async fn a_database_from_a_newer_composure_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    raw(&path)
        .execute("UPDATE schema_version SET version = 999", [])
        .unwrap();
    let error = Store::open(&path).unwrap_err();
    assert!(
        matches!(error, StoreError::SchemaTooNew { found: 999, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("schema version 999"), "{error}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(
        &path,
        "this is not sqlite, just some text long enough to matter",
    )
    .unwrap();
    assert!(Store::open(&path).is_err());
}

#[tokio::test]
async fn corrupt_json_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(&path).unwrap();
    put(&store, "app", json!({})).await;
    store
        .put_task(&task("t1", "web", 1, TaskState::Running, 1), &Guard::none())
        .await
        .unwrap();
    let conn = raw(&path);
    for key in ["tasks/app/t1", "projects/app"] {
        let changed = conn
            .execute(
                "UPDATE kv SET value = CAST('{' AS BLOB) WHERE key = ?1",
                [key],
            )
            .unwrap();
        assert_eq!(changed, 1, "{key}");
    }
    let error = store.task("app", &TaskId("t1".into())).await.unwrap_err();
    assert!(matches!(error, StoreError::Json { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "the stored task `t1` cannot be written or read as JSON"
    );
    assert!(store.tasks("app").await.is_err());
    let error = store.project("app").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "the stored project `app` cannot be written or read as JSON"
    );
    assert!(store.projects().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_is_shared_across_threads_and_tasks() {
    let (_dir, store) = open();
    let store = Arc::new(store);
    let writers: Vec<_> = (0..4u32)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..10u64 {
                    let t = task(
                        &format!("t{writer}-{n}"),
                        "web",
                        writer,
                        TaskState::Running,
                        n,
                    );
                    store.put_task(&t, &Guard::none()).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(store.revision().await.unwrap(), 40);
    assert_eq!(store.tasks("app").await.unwrap().len(), 40);
}

#[test]
fn the_store_and_the_lock_can_be_shared_and_sent() {
    fn shared<T: Send + Sync>() {}
    shared::<Store>();
    shared::<DataDirLock>();
    shared::<Guard>();
}

#[test]
fn the_data_dir_lock_is_exclusive_and_names_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lock = DataDirLock::acquire(&data).unwrap();
    assert_eq!(lock.path(), data.join("lock"));
    let pid = std::fs::read_to_string(lock.path()).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());

    let error = DataDirLock::acquire(&data).unwrap_err();
    assert!(
        matches!(error, StoreError::Locked { pid: Some(pid), .. } if pid == std::process::id()),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&format!(
            "in use by another Composure daemon (pid {})",
            std::process::id()
        )),
        "{error}"
    );

    drop(lock);
    let again = DataDirLock::acquire(&data).unwrap();
    drop(again);
}

// ---------------------------------------------------------------------------------------
// Revisions

#[tokio::test]
async fn the_revision_increases_by_one_per_write_transaction() {
    let (_dir, store) = open();
    let mut seen = vec![store.revision().await.unwrap()];
    let project = put(&store, "app", json!({"v": 1})).await;
    seen.push(project);
    store.mark_project_removing("app", false).await.unwrap();
    seen.push(store.revision().await.unwrap());
    seen.push(
        store
            .put_task(&task("t1", "web", 1, TaskState::Pending, 1), &Guard::none())
            .await
            .unwrap(),
    );
    seen.push(
        store
            .put_tasks(
                &[
                    task("t2", "web", 2, TaskState::Pending, 1),
                    task("t3", "web", 3, TaskState::Pending, 1),
                ],
                &Guard::project("app", project),
            )
            .await
            .unwrap(),
    );
    seen.push(
        store
            .put_rollout(
                "app",
                "web",
                &rollout("v1"),
                &Guard::project("app", project),
            )
            .await
            .unwrap(),
    );
    seen.push(store.append_event(&event("app", "x")).await.unwrap());
    seen.push(store.put_node(&node("n1"), 0).await.unwrap());
    let project = store
        .put_project_with_rollout(
            "app",
            &json!({"v": 0}),
            &meta(),
            project,
            "web",
            &rollout("v0"),
        )
        .await
        .unwrap();
    seen.push(project);
    store
        .delete_rollout("app", "web", &Guard::project("app", project))
        .await
        .unwrap();
    seen.push(store.revision().await.unwrap());
    store.delete_project("app").await.unwrap();
    seen.push(store.revision().await.unwrap());
    let expected: Vec<u64> = (0..seen.len() as u64).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn a_guard_on_a_raw_key_fences_a_write() {
    let (_dir, store) = open();
    let project = put(&store, "app", json!({})).await;
    // The leader key is absent (revision 0) when the controller reads it.
    let leader = Guard::key("leader", 0);
    let both = Guard::project("app", project).and(leader.clone());
    let t1 = task("t1", "web", 1, TaskState::Running, 1);
    store.put_task(&t1, &both).await.unwrap();

    store
        .kv()
        .txn(Txn::new().then(Op::put("leader", b"someone else".to_vec())))
        .await
        .unwrap();
    let before = store.revision().await.unwrap();
    let t2 = task("t2", "web", 2, TaskState::Running, 1);
    assert!(is_conflict(store.put_task(&t2, &both).await));
    assert!(is_conflict(store.put_task(&t2, &leader).await));
    assert_eq!(store.revision().await.unwrap(), before);
    assert_eq!(store.tasks("app").await.unwrap(), [t1]);
}

// ---------------------------------------------------------------------------------------
// Projects

#[tokio::test]
async fn put_project_then_read_it_back() {
    let (_dir, store) = open();
    let spec = json!({"name": "app", "services": {"web": {"image": "nginx"}}});
    let revision = store.put_project("app", &spec, &meta(), 0).await.unwrap();
    assert_eq!(revision, 1);
    let project = store.project("app").await.unwrap().unwrap();
    assert_eq!(
        project,
        StoredProject {
            name: "app".into(),
            revision,
            number: 1,
            spec,
            meta: meta(),
            removing: None,
        }
    );
    assert_eq!(store.project("other").await.unwrap(), None);
    // A project whose name starts with another's is not mistaken for it.
    assert_eq!(store.project("ap").await.unwrap(), None);
}

/// Issue 13: revision numbers were one counter across projects (a service's history read
/// 1 → 51 → 89). Each project counts its own, and a re-created one goes on from its history.
#[tokio::test]
async fn each_project_numbers_its_own_revisions() {
    let (_dir, store) = open();
    let mut last = 0;
    for n in 1..=3 {
        let spec = json!({"name": "a", "services": {"web": {"image": format!("v{n}")}}});
        last = store.put_project("a", &spec, &meta(), last).await.unwrap();
        // Another project's puts in between do not count.
        let other = store.project("b").await.unwrap().map_or(0, |p| p.revision);
        store
            .put_project("b", &json!({"n": n}), &meta(), other)
            .await
            .unwrap();
        assert_eq!(store.project("a").await.unwrap().unwrap().number, n);
    }
    let numbers: Vec<u64> = store
        .project_history("a")
        .await
        .unwrap()
        .iter()
        .map(|h| h.number)
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    store.delete_project("a").await.unwrap();
    store
        .put_project("a", &json!({"n": 4}), &meta(), 0)
        .await
        .unwrap();
    assert_eq!(store.project("a").await.unwrap().unwrap().number, 4);
}

#[tokio::test]
async fn projects_lists_every_project_by_name() {
    let (_dir, store) = open();
    put(&store, "b", json!({"n": 2})).await;
    put(&store, "a", json!({"n": 1})).await;
    put(&store, "ab", json!({"n": 3})).await;
    store.mark_project_removing("ab", true).await.unwrap();
    let projects = store.projects().await.unwrap();
    let seen: Vec<(String, Option<RemoveRequest>)> = projects
        .iter()
        .map(|p| (p.name.clone(), p.removing))
        .collect();
    assert_eq!(
        seen,
        [
            ("a".to_string(), None),
            ("ab".to_string(), Some(RemoveRequest { volumes: true })),
            ("b".to_string(), None),
        ]
    );
    assert_eq!(projects[2].spec, json!({"n": 2}));
    assert_eq!(projects[0], store.project("a").await.unwrap().unwrap());
}

#[tokio::test]
async fn putting_a_project_again_is_a_new_revision_with_the_new_meta() {
    // The store no longer skips a put of the spec and meta it holds: the daemon's API
    // compares them before it puts (`projects::put`).
    let (_dir, store) = open();
    let spec = json!({"services": {}});
    let first = store.put_project("app", &spec, &meta(), 0).await.unwrap();
    let moved = ProjectMeta {
        working_dir: "/elsewhere".into(),
        files: vec![],
    };
    let second = store
        .put_project("app", &spec, &moved, first)
        .await
        .unwrap();
    assert!(second > first);
    let project = store.project("app").await.unwrap().unwrap();
    assert_eq!((project.revision, project.meta), (second, moved));
    assert_eq!(store.project_history("app").await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_put_from_a_stale_read_conflicts_and_changes_nothing() {
    let (_dir, store) = open();
    let r1 = store
        .put_project("app", &json!({"v": 1}), &meta(), 0)
        .await
        .unwrap();
    let r2 = store
        .put_project("app", &json!({"v": 2}), &meta(), r1)
        .await
        .unwrap();
    let before = store.revision().await.unwrap();

    let stale = store
        .put_project("app", &json!({"v": 3}), &meta(), r1)
        .await;
    let Err(error) = stale else {
        panic!("a stale put was applied: {stale:?}");
    };
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "project `app` changed since it was read; nothing was written"
    );
    // Creating a project that exists, and updating one that does not, are stale too.
    assert!(is_conflict(
        store.put_project("app", &json!({"v": 3}), &meta(), 0).await
    ));
    assert!(is_conflict(
        store
            .put_project("ghost", &json!({"v": 1}), &meta(), r2)
            .await
    ));

    assert_eq!(store.revision().await.unwrap(), before);
    let project = store.project("app").await.unwrap().unwrap();
    assert_eq!((project.revision, project.spec), (r2, json!({"v": 2})));
    assert_eq!(store.project_history("app").await.unwrap().len(), 2);
    assert_eq!(store.project("ghost").await.unwrap(), None);
    assert!(store.project_history("ghost").await.unwrap().is_empty());
}

#[tokio::test]
async fn project_history_keeps_every_spec_newest_first_even_after_delete() {
    let (_dir, store) = open();
    let r1 = put(&store, "app", json!({"v": 1})).await;
    let r2 = put(&store, "app", json!({"v": 2})).await;
    put(&store, "other", json!({"v": 9})).await;
    put(&store, "ap", json!({"v": 8})).await;
    let r3 = put(&store, "app", json!({"v": 3})).await;
    store.delete_project("app").await.unwrap();
    assert_eq!(store.project("app").await.unwrap(), None);

    let history = store.project_history("app").await.unwrap();
    let seen: Vec<(u64, serde_json::Value)> = history
        .iter()
        .map(|h| (h.revision, h.spec.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (r3, json!({"v": 3})),
            (r2, json!({"v": 2})),
            (r1, json!({"v": 1}))
        ]
    );
    assert!(history.iter().all(|h| h.created_at > 0));
    assert!(
        history
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at)
    );
    assert!(store.project_history("nothing").await.unwrap().is_empty());
    assert_eq!(store.project_history("ap").await.unwrap().len(), 1);

    // A project put again after its delete starts from nothing, and its history goes on.
    let r4 = store
        .put_project("app", &json!({"v": 4}), &meta(), 0)
        .await
        .unwrap();
    let history = store.project_history("app").await.unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(history[0].revision, r4);
}

#[tokio::test]
async fn mark_project_removing_is_recorded_and_a_new_put_cancels_it() {
    let (_dir, store) = open();
    let spec = json!({"v": 1});
    let put = store.put_project("app", &spec, &meta(), 0).await.unwrap();
    store.mark_project_removing("app", false).await.unwrap();
    let project = store.project("app").await.unwrap().unwrap();
    assert_eq!(project.removing, Some(RemoveRequest { volumes: false }));
    assert_eq!(project.revision, put, "the spec's revision is unchanged");
    assert!(store.revision().await.unwrap() > put);

    // A later request for volumes wins; a later one without does not take it back.
    store.mark_project_removing("app", true).await.unwrap();
    store.mark_project_removing("app", false).await.unwrap();
    let removing = store.project("app").await.unwrap().unwrap().removing;
    assert_eq!(removing, Some(RemoveRequest { volumes: true }));

    // Marking leaves the spec's revision as it was, so a put from it still applies, and
    // putting the project (even the same spec) cancels the removal.
    let again = store.put_project("app", &spec, &meta(), put).await.unwrap();
    assert!(again > put);
    assert_eq!(store.project("app").await.unwrap().unwrap().removing, None);
}

#[tokio::test]
async fn mark_project_removing_of_a_missing_project_fails() {
    let (_dir, store) = open();
    let error = store
        .mark_project_removing("ghost", true)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::ProjectNotFound(ref name) if name == "ghost"));
    assert_eq!(error.to_string(), "project `ghost` not found");
    assert_eq!(
        store.revision().await.unwrap(),
        0,
        "a failed write leaves no trace"
    );
}

#[tokio::test]
async fn delete_project_drops_its_tasks_and_rollouts_and_keeps_its_history() {
    let (_dir, store) = open();
    let project = put(&store, "app", json!({})).await;
    store
        .put_task(&task("a1", "web", 1, TaskState::Running, 1), &Guard::none())
        .await
        .unwrap();
    store
        .put_rollout(
            "app",
            "web",
            &rollout("v2"),
            &Guard::project("app", project),
        )
        .await
        .unwrap();
    store.mark_project_removing("app", true).await.unwrap();
    // Another project, one whose name starts with this one's.
    let mut elsewhere = task("b1", "web", 1, TaskState::Running, 1);
    elsewhere.project = "apps".into();
    store.put_task(&elsewhere, &Guard::none()).await.unwrap();
    store
        .put_rollout("apps", "web", &rollout("x"), &Guard::none())
        .await
        .unwrap();

    let before = store.revision().await.unwrap();
    store.delete_project("app").await.unwrap();
    assert_eq!(store.revision().await.unwrap(), before + 1);
    assert_eq!(store.project("app").await.unwrap(), None);
    assert!(store.tasks("app").await.unwrap().is_empty());
    assert!(store.rollouts("app").await.unwrap().is_empty());
    assert_eq!(store.rollout("app", "web").await.unwrap(), None);
    assert_eq!(store.project_history("app").await.unwrap().len(), 1);
    assert_eq!(store.rollout_log("app", "web").await.unwrap().len(), 1);
    assert_eq!(store.tasks("apps").await.unwrap(), [elsewhere]);
    assert_eq!(store.rollouts("apps").await.unwrap().len(), 1);

    // The removal request went with it: a new project of that name is not being removed.
    store
        .put_project("app", &json!({}), &meta(), 0)
        .await
        .unwrap();
    assert_eq!(store.project("app").await.unwrap().unwrap().removing, None);
    store.delete_project("app").await.unwrap();

    let after = store.revision().await.unwrap();
    store.delete_project("app").await.unwrap();
    assert_eq!(
        store.revision().await.unwrap(),
        after,
        "deleting nothing is no write"
    );
}

// ---------------------------------------------------------------------------------------
// Tasks

#[tokio::test]
async fn put_task_inserts_then_updates_by_id() {
    let (_dir, store) = open();
    let mut t = task("t1", "web", 1, TaskState::Pending, 10);
    let r1 = store.put_task(&t, &Guard::none()).await.unwrap();
    assert_eq!(store.task("app", &t.id).await.unwrap(), Some(t.clone()));

    t.state = TaskState::Running;
    t.container_id = Some("c1".into());
    t.health = Health::Healthy;
    t.started_at = Some(20);
    let r2 = store.put_task(&t, &Guard::none()).await.unwrap();
    assert!(r2 > r1);
    assert_eq!(store.task("app", &t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(store.tasks("app").await.unwrap(), [t.clone()]);
    assert_eq!(
        store.task("app", &TaskId("nope".into())).await.unwrap(),
        None
    );
    assert_eq!(store.task("other", &t.id).await.unwrap(), None);
}

#[tokio::test]
async fn put_tasks_is_one_transaction_and_one_revision() {
    let (_dir, store) = open();
    let before = store.revision().await.unwrap();
    let batch = [
        task("t1", "web", 1, TaskState::Pending, 1),
        task("t2", "web", 2, TaskState::Pending, 1),
        task("t3", "db", 1, TaskState::Pending, 1),
    ];
    let revision = store.put_tasks(&batch, &Guard::none()).await.unwrap();
    assert_eq!(revision, before + 1);
    assert_eq!(store.tasks("app").await.unwrap().len(), 3);
    assert_eq!(
        store.put_tasks(&[], &Guard::none()).await.unwrap(),
        revision,
        "an empty batch writes nothing"
    );
    assert_eq!(store.revision().await.unwrap(), revision);
}

#[tokio::test]
async fn tasks_from_a_stale_read_of_the_project_conflict_and_apply_nothing() {
    let (_dir, store) = open();
    let read = put(&store, "app", json!({"v": 1})).await;
    let now = put(&store, "app", json!({"v": 2})).await;
    let before = store.revision().await.unwrap();
    let batch = [
        task("t1", "web", 1, TaskState::Pending, 1),
        task("t2", "web", 2, TaskState::Pending, 1),
    ];
    assert!(is_conflict(
        store.put_tasks(&batch, &Guard::project("app", read)).await
    ));
    assert!(is_conflict(
        store
            .put_task(&batch[0], &Guard::project("app", read))
            .await
    ));
    assert_eq!(store.revision().await.unwrap(), before);
    assert!(store.tasks("app").await.unwrap().is_empty());

    let revision = store
        .put_tasks(&batch, &Guard::project("app", now))
        .await
        .unwrap();
    assert_eq!(revision, before + 1);
    assert_eq!(store.tasks("app").await.unwrap(), batch);
    // Writing tasks does not change the project's revision: the guard still holds.
    store
        .put_task(&batch[0], &Guard::project("app", now))
        .await
        .unwrap();
}

#[tokio::test]
async fn tasks_are_ordered_by_service_slot_and_age_and_filtered_by_project() {
    let (_dir, store) = open();
    let mut other = task("o1", "api", 1, TaskState::Running, 1);
    other.project = "other".into();
    store
        .put_tasks(
            &[
                task("w2", "web", 2, TaskState::Running, 5),
                task("w1b", "web", 1, TaskState::Running, 9),
                task("w1a", "web", 1, TaskState::Failed, 3),
                task("d1", "db", 1, TaskState::Running, 7),
                other.clone(),
            ],
            &Guard::none(),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(store.tasks("app").await.unwrap()),
        ["d1", "w1a", "w1b", "w2"]
    );
    assert_eq!(store.tasks("other").await.unwrap(), [other]);
    assert!(store.tasks("nothing").await.unwrap().is_empty());
}

#[tokio::test]
async fn only_the_last_terminal_tasks_of_a_slot_are_kept() {
    let (_dir, store) = open();
    // Eight failed attempts on slot 1, one on slot 2, and the live task of slot 1.
    for n in 0..8 {
        store
            .put_task(
                &task(&format!("f{n}"), "web", 1, TaskState::Failed, n),
                &Guard::none(),
            )
            .await
            .unwrap();
    }
    store
        .put_task(&task("s2", "web", 2, TaskState::Failed, 0), &Guard::none())
        .await
        .unwrap();
    store
        .put_task(
            &task("live", "web", 1, TaskState::Running, 100),
            &Guard::none(),
        )
        .await
        .unwrap();
    assert_eq!(TERMINAL_TASKS_KEPT_PER_SLOT, 5);
    assert_eq!(
        ids(store.tasks("app").await.unwrap()),
        ["f3", "f4", "f5", "f6", "f7", "live", "s2"]
    );
}

#[tokio::test]
async fn a_batch_is_pruned_as_it_is_written() {
    // Ended tasks written together beyond the slot's bound: the oldest are not kept, and
    // the transaction neither puts and deletes the same key (etcd refuses that) nor leaves
    // one behind.
    let (_dir, store) = open();
    let batch: Vec<Task> = (0..8)
        .map(|n| task(&format!("f{n}"), "web", 1, TaskState::Failed, n))
        .collect();
    let revision = store.put_tasks(&batch, &Guard::none()).await.unwrap();
    assert_eq!(revision, 1);
    assert_eq!(
        ids(store.tasks("app").await.unwrap()),
        ["f3", "f4", "f5", "f6", "f7"]
    );

    // A stored task rewritten in a batch that pushes it beyond the bound is dropped.
    let mut old = store.tasks("app").await.unwrap()[0].clone();
    old.error = Some("rewritten".into());
    let newer = task("f8", "web", 1, TaskState::Failed, 8);
    store
        .put_tasks(&[old, newer], &Guard::none())
        .await
        .unwrap();
    assert_eq!(
        ids(store.tasks("app").await.unwrap()),
        ["f4", "f5", "f6", "f7", "f8"]
    );
}

#[tokio::test]
async fn a_task_ending_triggers_pruning_of_its_slot() {
    let (_dir, store) = open_with(Limits {
        terminal_tasks_per_slot: 1,
        ..Limits::default()
    });
    store
        .put_task(&task("old", "web", 1, TaskState::Failed, 1), &Guard::none())
        .await
        .unwrap();
    let mut current = task("new", "web", 1, TaskState::Running, 2);
    store.put_task(&current, &Guard::none()).await.unwrap();
    assert_eq!(
        store.tasks("app").await.unwrap().len(),
        2,
        "live tasks are never pruned"
    );
    current.state = TaskState::Failed;
    store.put_task(&current, &Guard::none()).await.unwrap();
    assert_eq!(store.tasks("app").await.unwrap(), [current]);
}

// ---------------------------------------------------------------------------------------
// Events

#[tokio::test]
async fn append_event_assigns_revisions_and_events_since_filters() {
    let (_dir, store) = open();
    let r1 = store.append_event(&event("app", "created")).await.unwrap();
    let r2 = store
        .append_event(&event("other", "created"))
        .await
        .unwrap();
    let r3 = store.append_event(&event("app", "started")).await.unwrap();
    let r4 = store.append_event(&event("apps", "started")).await.unwrap();
    assert!(r1 < r2 && r2 < r3 && r3 < r4);

    let all = store.events_since(0, None).await.unwrap();
    let revisions: Vec<u64> = all.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, [r1, r2, r3, r4]);
    assert_eq!(
        all[0],
        StoredEvent {
            revision: r1,
            ..event("app", "created")
        }
    );

    let app: Vec<String> = store
        .events_since(0, Some("app"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(app, ["created", "started"]);
    let later = store.events_since(r1, Some("app")).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].revision, r3);
    assert!(store.events_since(r4, None).await.unwrap().is_empty());
}

#[tokio::test]
async fn events_without_service_slot_or_task_round_trip() {
    let (_dir, store) = open();
    let bare = StoredEvent {
        service: None,
        slot: None,
        task: None,
        ..event("app", "project-removed")
    };
    let revision = store.append_event(&bare).await.unwrap();
    assert_eq!(
        store.events_since(0, None).await.unwrap(),
        [StoredEvent { revision, ..bare }]
    );
}

#[tokio::test]
async fn the_event_log_is_trimmed_to_its_bound() {
    let (_dir, store) = open_with(Limits {
        events: 3,
        ..Limits::default()
    });
    let mut revisions = Vec::new();
    for n in 0..5 {
        let e = event(if n % 2 == 0 { "app" } else { "other" }, &format!("e{n}"));
        revisions.push(store.append_event(&e).await.unwrap());
    }
    store.trim_events().await.unwrap();
    let kept: Vec<u64> = store
        .events_since(0, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(kept, revisions[2..]);
    let before = store.revision().await.unwrap();
    store.trim_events().await.unwrap();
    assert_eq!(
        store.revision().await.unwrap(),
        before,
        "a log within its bound is not written"
    );
}

#[tokio::test]
async fn the_event_log_trims_itself_every_256_appends() {
    let (_dir, store) = open_with(Limits {
        events: 10,
        ..Limits::default()
    });
    let mut revisions = Vec::new();
    for n in 0..255 {
        revisions.push(
            store
                .append_event(&event("app", &format!("e{n}")))
                .await
                .unwrap(),
        );
    }
    assert_eq!(store.events_since(0, None).await.unwrap().len(), 255);
    revisions.push(store.append_event(&event("app", "e255")).await.unwrap());
    let kept: Vec<u64> = store
        .events_since(0, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(kept, revisions[246..]);
}

// ---------------------------------------------------------------------------------------
// Rollouts

#[tokio::test]
async fn rollouts_are_kept_per_service_and_replaced() {
    let (_dir, store) = open();
    assert_eq!(store.rollout("shop", "web").await.unwrap(), None);
    let first = rollout("v2");
    let revision = store
        .put_rollout("shop", "web", &first, &Guard::none())
        .await
        .unwrap();
    assert!(revision > 0);
    store
        .put_rollout("shop", "db", &rollout("d2"), &Guard::none())
        .await
        .unwrap();
    store
        .put_rollout("other", "web", &rollout("x"), &Guard::none())
        .await
        .unwrap();
    assert_eq!(store.rollout("shop", "web").await.unwrap(), Some(first));

    let second = rollout("v3");
    store
        .put_rollout("shop", "web", &second, &Guard::none())
        .await
        .unwrap();
    let all = store.rollouts("shop").await.unwrap();
    let names: Vec<&str> = all.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    assert_eq!(all[1].1, second);

    store
        .delete_rollout("shop", "db", &Guard::none())
        .await
        .unwrap();
    assert_eq!(store.rollouts("shop").await.unwrap().len(), 1);
    put(&store, "shop", json!({"services": {}})).await;
    store.delete_project("shop").await.unwrap();
    assert!(store.rollouts("shop").await.unwrap().is_empty());
    assert_eq!(store.rollouts("other").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_rollout_stored_without_a_revision_takes_that_of_its_write() {
    let (_dir, store) = open();
    let mut unset = rollout("v2");
    unset.revision = 0;
    let revision = store
        .put_rollout("shop", "web", &unset, &Guard::none())
        .await
        .unwrap();
    let stored = store.rollout("shop", "web").await.unwrap().unwrap();
    assert_eq!(stored.revision, revision);
    assert_eq!(
        stored,
        Rollout {
            revision,
            ..unset.clone()
        }
    );
    assert_eq!(
        store.rollout_log("shop", "web").await.unwrap()[0].revision,
        revision
    );
}

#[tokio::test]
async fn a_rollout_from_a_stale_read_of_the_project_conflicts() {
    let (_dir, store) = open();
    let read = put(&store, "shop", json!({"v": 1})).await;
    let now = put(&store, "shop", json!({"v": 2})).await;
    let before = store.revision().await.unwrap();
    assert!(is_conflict(
        store
            .put_rollout("shop", "web", &rollout("v2"), &Guard::project("shop", read))
            .await
    ));
    assert_eq!(store.revision().await.unwrap(), before);
    assert_eq!(store.rollout("shop", "web").await.unwrap(), None);
    assert!(store.rollout_log("shop", "web").await.unwrap().is_empty());

    let revision = store
        .put_rollout("shop", "web", &rollout("v2"), &Guard::project("shop", now))
        .await
        .unwrap();
    assert_eq!(revision, before + 1);
    assert_eq!(
        store.rollout("shop", "web").await.unwrap(),
        Some(rollout("v2"))
    );

    // Deleting a rollout is guarded the same way.
    assert!(is_conflict(
        store
            .delete_rollout("shop", "web", &Guard::project("shop", read))
            .await
    ));
    assert!(store.rollout("shop", "web").await.unwrap().is_some());
    store
        .delete_rollout("shop", "web", &Guard::project("shop", now))
        .await
        .unwrap();
    assert_eq!(store.rollout("shop", "web").await.unwrap(), None);
}

#[tokio::test]
async fn a_project_and_a_rollout_are_put_in_one_revision() {
    let (_dir, store) = open();
    let missing = store
        .put_project_with_rollout(
            "shop",
            &json!({"services": {}}),
            &meta(),
            0,
            "web",
            &rollout("v1"),
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::ProjectNotFound(_))),
        "{missing:?}"
    );
    assert_eq!(store.revision().await.unwrap(), 0);

    let expected = put(&store, "shop", json!({"services": {"web": {"image": "b"}}})).await;
    let back = json!({"services": {"web": {"image": "a"}}});
    let revision = store
        .put_project_with_rollout("shop", &back, &meta(), expected, "web", &rollout("v1"))
        .await
        .unwrap();
    assert_eq!(revision, expected + 1);
    assert_eq!(store.revision().await.unwrap(), revision);
    let project = store.project("shop").await.unwrap().unwrap();
    assert_eq!((project.revision, project.spec), (revision, back));
    let history = store.project_history("shop").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].revision, revision);
    let stored = store.rollout("shop", "web").await.unwrap().unwrap();
    assert_eq!(stored.revision, revision);
    assert_eq!(
        stored,
        Rollout {
            revision,
            ..rollout("v1")
        }
    );
    let log = store.rollout_log("shop", "web").await.unwrap();
    assert_eq!(log, [stored]);
}

#[tokio::test]
async fn a_project_and_a_rollout_from_a_stale_read_conflict() {
    let (_dir, store) = open();
    let read = put(&store, "shop", json!({"v": 1})).await;
    let now = put(&store, "shop", json!({"v": 2})).await;
    let before = store.revision().await.unwrap();
    assert!(is_conflict(
        store
            .put_project_with_rollout(
                "shop",
                &json!({"v": 0}),
                &meta(),
                read,
                "web",
                &rollout("v0")
            )
            .await
    ));
    assert_eq!(store.revision().await.unwrap(), before);
    let project = store.project("shop").await.unwrap().unwrap();
    assert_eq!((project.revision, project.spec), (now, json!({"v": 2})));
    assert_eq!(store.project_history("shop").await.unwrap().len(), 2);
    assert_eq!(store.rollout("shop", "web").await.unwrap(), None);
    assert!(store.rollout_log("shop", "web").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_pass_cannot_overwrite_the_rollout_of_an_undo_it_did_not_see() {
    let (_dir, store) = open();
    let read = put(
        &store,
        "shop",
        json!({"services": {"web": {"image": "v2"}}}),
    )
    .await;
    // The pass read the project at `read` and is about to record the progress of the
    // update to v2.
    let mut progress = rollout("v2");
    progress.revision = read;
    progress.outage.observe(false, 1_200);

    // Meanwhile an undo puts v1 back, with the rollout that brings it back.
    let mut undo = rollout("v1");
    undo.kind = composure_core::RolloutKind::Undo;
    undo.started_at = 2_000;
    let undone = store
        .put_project_with_rollout(
            "shop",
            &json!({"services": {"web": {"image": "v1"}}}),
            &meta(),
            read,
            "web",
            &undo,
        )
        .await
        .unwrap();
    assert!(undone > read);

    // The pass's write, computed on what it read, must not land.
    let before = store.revision().await.unwrap();
    let stale = store
        .put_rollout("shop", "web", &progress, &Guard::project("shop", read))
        .await;
    assert!(is_conflict(stale));
    assert_eq!(store.revision().await.unwrap(), before);
    let stored = store.rollout("shop", "web").await.unwrap().unwrap();
    assert_eq!(
        stored,
        Rollout {
            revision: undone,
            ..undo
        }
    );
    let log = store.rollout_log("shop", "web").await.unwrap();
    assert_eq!(
        log,
        std::slice::from_ref(&stored),
        "the pass's rollout is not logged either"
    );

    // The next pass reads the project again and goes on from the undo's rollout.
    let project = store.project("shop").await.unwrap().unwrap();
    assert_eq!(project.revision, undone);
    let mut next = stored;
    next.state = composure_core::RolloutState::Completed { at: 3_000 };
    store
        .put_rollout(
            "shop",
            "web",
            &next,
            &Guard::project("shop", project.revision),
        )
        .await
        .unwrap();
    assert_eq!(store.rollout("shop", "web").await.unwrap(), Some(next));
}

#[tokio::test]
async fn the_rollout_log_keeps_each_rollout_as_it_last_stood() {
    let (_dir, store) = open();
    let mut first = rollout("v2");
    store
        .put_rollout("shop", "web", &first, &Guard::none())
        .await
        .unwrap();
    first.outage.observe(false, 1_500);
    first.state = composure_core::RolloutState::Completed { at: 2_000 };
    store
        .put_rollout("shop", "web", &first, &Guard::none())
        .await
        .unwrap();
    let mut second = rollout("v3");
    second.started_at = 3_000;
    store
        .put_rollout("shop", "web", &second, &Guard::none())
        .await
        .unwrap();
    store
        .put_rollout("shop", "db", &rollout("d2"), &Guard::none())
        .await
        .unwrap();
    store
        .put_rollout("shops", "web", &rollout("x"), &Guard::none())
        .await
        .unwrap();
    assert_eq!(
        store.rollout_log("shop", "web").await.unwrap(),
        [first, second]
    );
    put(&store, "shop", json!({"services": {}})).await;
    store.delete_project("shop").await.unwrap();
    assert_eq!(store.rollout_log("shop", "web").await.unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------
// Nodes

#[tokio::test]
async fn a_node_put_is_listed() {
    let (_dir, store) = open();
    let revision = store.put_node(&node("b"), 0).await.unwrap();
    assert_eq!(revision, 1);
    store.put_node(&node("a"), 0).await.unwrap();
    assert_eq!(store.nodes().await.unwrap(), [node("a"), node("b")]);

    let mut down = node("b");
    down.state = NodeState::Down;
    down.updated_at = 9_000;
    store.put_node(&down, 0).await.unwrap();
    assert_eq!(store.nodes().await.unwrap(), [node("a"), down]);
}

#[tokio::test]
async fn a_node_under_a_lease_goes_with_the_lease() {
    let (_dir, store) = open();
    let lease = store.kv().grant_lease(LOCAL_NODE_TTL).await.unwrap();
    assert_ne!(lease, 0);
    store.put_node(&node("leased"), lease).await.unwrap();
    store.put_node(&node("pinned"), 0).await.unwrap();
    store.kv().keep_alive(lease).await.unwrap();
    assert_eq!(
        store.nodes().await.unwrap(),
        [node("leased"), node("pinned")]
    );

    let before = store.revision().await.unwrap();
    store.kv().revoke_lease(lease).await.unwrap();
    assert_eq!(store.nodes().await.unwrap(), [node("pinned")]);
    assert_eq!(
        store.revision().await.unwrap(),
        before + 1,
        "the delete is a write"
    );
    assert!(store.kv().keep_alive(lease).await.is_err());
}

#[tokio::test]
async fn a_node_whose_lease_is_not_kept_alive_disappears() {
    let (_dir, store) = open();
    let lease = store
        .kv()
        .grant_lease(Duration::from_millis(400))
        .await
        .unwrap();
    store.put_node(&node("n1"), lease).await.unwrap();
    assert_eq!(store.nodes().await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(store.nodes().await.unwrap().is_empty());
    assert!(store.kv().keep_alive(lease).await.is_err());
}

// ---------------------------------------------------------------------------------------
// Migration of an older Composure's file

/// A database as Composure with schema version 3 left it: migrations 1 to 3 applied.
fn version_3_database(path: &Path) -> rusqlite::Connection {
    let mut conn = raw(path);
    conn.execute_batch(
        "CREATE TABLE schema_version (version INTEGER NOT NULL);
         INSERT INTO schema_version (version) VALUES (0);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    for index in 0..3 {
        tx.execute_batch(crate::schema::migration(index)).unwrap();
    }
    tx.execute("UPDATE schema_version SET version = 3", [])
        .unwrap();
    tx.commit().unwrap();
    conn
}

/// A task's JSON as a Composure before nodes wrote it.
fn old_body(task: &Task) -> String {
    let mut body = serde_json::to_value(task).unwrap();
    body.as_object_mut().unwrap().remove("node");
    body.to_string()
}

fn tables(path: &Path) -> Vec<String> {
    let conn = raw(path);
    let mut statement = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn a_version_3_database_is_moved_into_the_key_value_layout_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");

    let shop_v1 = json!({"services": {"web": {"image": "a"}}});
    let shop_v2 = json!({"services": {"web": {"image": "b"}}});
    let blog = json!({"services": {}});
    let gone = json!({"services": {"x": {}}});
    // Tasks written before tasks had nodes: their bodies have no `node`.
    let shop_task = |id: &str, service: &str, state: TaskState, created_at: u64| Task {
        project: "shop".into(),
        node: NodeName::default(),
        ..task(id, service, 1, state, created_at)
    };
    let web = shop_task("w1", "web", TaskState::Running, 10);
    let failed = Task {
        exit_code: Some(1),
        ..shop_task("w0", "web", TaskState::Failed, 5)
    };
    let db = shop_task("d1", "db", TaskState::Running, 20);
    let mut current = rollout("b");
    current.revision = 7;
    let mut earlier = rollout("a");
    earlier.revision = 2;
    earlier.started_at = 500;
    earlier.state = composure_core::RolloutState::Completed { at: 600 };
    let events = [
        StoredEvent {
            revision: 4,
            time: 1_100,
            ..event("shop", "created")
        },
        StoredEvent {
            revision: 8,
            time: 1_200,
            service: None,
            slot: None,
            task: None,
            ..event("blog", "updated")
        },
    ];

    {
        let conn = version_3_database(&path);
        let meta_text = serde_json::to_string(&meta()).unwrap();
        conn.execute(
            "INSERT INTO projects (name, revision, spec, meta, removing) VALUES
             ('shop', 7, ?1, ?2, '{\"volumes\":true}'), ('blog', 5, ?3, ?2, NULL)",
            rusqlite::params![shop_v2.to_string(), meta_text, blog.to_string()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO project_revisions (name, revision, created_at, spec) VALUES
             ('shop', 2, 1000, ?1), ('gone', 3, 1500, ?2), ('blog', 5, 1600, ?3),
             ('shop', 7, 2000, ?4)",
            rusqlite::params![
                shop_v1.to_string(),
                gone.to_string(),
                blog.to_string(),
                shop_v2.to_string()
            ],
        )
        .unwrap();
        for t in [&web, &failed, &db] {
            conn.execute(
                "INSERT INTO tasks (id, project, service, slot, desired, state, terminal,
                     created_at, body)
                 VALUES (?1, ?2, ?3, ?4, 'running', 'running', ?5, ?6, ?7)",
                rusqlite::params![
                    t.id.0,
                    t.project,
                    t.service,
                    t.slot,
                    t.state.is_terminal(),
                    t.created_at,
                    old_body(t)
                ],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO rollouts (project, service, body) VALUES ('shop', 'web', ?1)",
            [serde_json::to_string(&current).unwrap()],
        )
        .unwrap();
        for r in [&earlier, &current] {
            conn.execute(
                "INSERT INTO rollout_log (project, service, started_at, target_hash, body)
                 VALUES ('shop', 'web', ?1, ?2, ?3)",
                rusqlite::params![
                    r.started_at,
                    r.target_hash,
                    serde_json::to_string(r).unwrap()
                ],
            )
            .unwrap();
        }
        for e in &events {
            conn.execute(
                "INSERT INTO events (revision, time, project, service, slot, task, kind, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![
                    e.revision, e.time, e.project, e.service, e.slot, e.task, e.kind, e.message
                ],
            )
            .unwrap();
        }
        conn.execute("UPDATE revision SET value = 9 WHERE id = 1", [])
            .unwrap();
    }

    let store = Store::open(&path).unwrap();
    assert_eq!(
        crate::schema::version(&raw(&path)).unwrap(),
        crate::schema::latest_version()
    );
    let left = tables(&path);
    for old in [
        "projects",
        "project_revisions",
        "tasks",
        "rollouts",
        "rollout_log",
        "events",
    ] {
        assert!(
            !left.iter().any(|t| t == old),
            "{old} is still there: {left:?}"
        );
    }
    assert!(left.iter().any(|t| t == "kv"), "{left:?}");

    assert_eq!(store.revision().await.unwrap(), 9);
    assert_eq!(
        store.project("shop").await.unwrap(),
        Some(StoredProject {
            name: "shop".into(),
            revision: 7,
            number: 0,
            spec: shop_v2.clone(),
            meta: meta(),
            removing: Some(RemoveRequest { volumes: true }),
        })
    );
    let projects = store.projects().await.unwrap();
    let names: Vec<(&str, u64, bool)> = projects
        .iter()
        .map(|p| (p.name.as_str(), p.revision, p.removing.is_some()))
        .collect();
    assert_eq!(names, [("blog", 5, false), ("shop", 7, true)]);

    let history: Vec<(u64, u64, serde_json::Value)> = store
        .project_history("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.revision, h.created_at, h.spec))
        .collect();
    assert_eq!(history, [(7, 2000, shop_v2), (2, 1000, shop_v1)]);
    let gone_history = store.project_history("gone").await.unwrap();
    assert_eq!(
        gone_history,
        [ProjectRevision {
            revision: 3,
            number: 0,
            created_at: 1500,
            spec: gone,
        }]
    );
    assert_eq!(store.project("gone").await.unwrap(), None);

    assert_eq!(
        store.tasks("shop").await.unwrap(),
        [db.clone(), failed.clone(), web.clone()]
    );
    assert_eq!(store.task("shop", &web.id).await.unwrap(), Some(web));

    assert_eq!(
        store.rollout("shop", "web").await.unwrap(),
        Some(current.clone())
    );
    assert_eq!(
        store.rollouts("shop").await.unwrap(),
        [("web".to_string(), current.clone())]
    );
    assert_eq!(
        store.rollout_log("shop", "web").await.unwrap(),
        [earlier, current]
    );

    assert_eq!(store.events_since(0, None).await.unwrap(), events);
    assert_eq!(store.events_since(4, None).await.unwrap(), events[1..]);
    assert_eq!(
        store.events_since(0, Some("shop")).await.unwrap(),
        events[..1]
    );

    // The file goes on from its revision, guarded by the revisions it had.
    assert!(is_conflict(
        store.put_project("shop", &json!({}), &meta(), 2).await
    ));
    let next = store
        .put_project("shop", &json!({"v": 3}), &meta(), 7)
        .await
        .unwrap();
    assert_eq!(next, 10);
    assert_eq!(store.project_history("shop").await.unwrap().len(), 3);
    assert_eq!(store.project("shop").await.unwrap().unwrap().removing, None);
    let event = store.append_event(&event("shop", "later")).await.unwrap();
    assert_eq!(event, 11);
    drop(store);

    // Opening it again migrates nothing more.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.revision().await.unwrap(), 11);
    assert_eq!(store.events_since(0, None).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_version_1_database_is_brought_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let mut conn = raw(&path);
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (0);",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(crate::schema::migration(0)).unwrap();
        tx.execute("UPDATE schema_version SET version = 1", [])
            .unwrap();
        tx.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        crate::schema::version(&raw(&path)).unwrap(),
        crate::schema::latest_version()
    );
    store
        .put_rollout("shop", "web", &rollout("v2"), &Guard::none())
        .await
        .unwrap();
    assert!(store.rollout("shop", "web").await.unwrap().is_some());
}

/// Issue 14, item 3: a corrupt `state.db` stopped the daemon with "database disk image is
/// malformed" and no hint of what to do.
#[tokio::test]
async fn a_damaged_database_is_refused_with_what_to_do() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let err = SqliteKv::open(&garbage).map(|_| ()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");

    // A real database with pages overwritten in the middle.
    let path = dir.path().join("state.db");
    {
        let store = Store::new(Arc::new(SqliteKv::open(&path).unwrap()));
        for n in 0..200 {
            store
                .append_event(&event("app", &format!("k{n}")))
                .await
                .unwrap();
        }
    }
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    assert!(len > 4 * 4096, "{len}");
    file.seek(SeekFrom::Start(2 * 4096)).unwrap();
    file.write_all(&vec![0xa5; 2 * 4096]).unwrap();
    drop(file);
    let err = SqliteKv::open(&path).map(|_| ()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(message.contains("is damaged"), "{message}");
    assert!(message.contains("restore a backup"), "{message}");
    assert!(message.contains("Backup and restore"), "{message}");
}

#[tokio::test]
async fn a_node_spec_outlives_the_record_and_survives_a_new_registration() {
    use composure_core::placement::{Availability, Role};
    let (_dir, store) = open();
    let lease = store.kv().grant_lease(LOCAL_NODE_TTL).await.unwrap();
    store
        .register_node(&node("a"), Role::Agent, lease)
        .await
        .unwrap();
    let nodes = store.cluster_nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].spec.role, Role::Agent);
    assert_eq!(nodes[0].record.as_ref().unwrap().name, "a");
    assert_eq!(nodes[0].labels()["zone"], "a");

    // The operator drains it and labels it; a guarded update on a stale revision fails.
    let mut spec = nodes[0].spec.clone();
    spec.availability = Availability::Drain;
    spec.labels.insert("zone".into(), "b".into());
    assert!(matches!(
        store
            .put_node_spec("a", &spec, nodes[0].spec_revision + 100)
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .put_node_spec("a", &spec, nodes[0].spec_revision)
        .await
        .unwrap();
    // The node registers again (a restart): the operator's decisions stay.
    store
        .register_node(&node("a"), Role::Server, lease)
        .await
        .unwrap();
    let nodes = store.cluster_nodes().await.unwrap();
    assert_eq!(nodes[0].spec, spec);
    assert_eq!(nodes[0].labels()["zone"], "b", "the operator's label wins");

    // Its lease ends: it is still known, without a record (down).
    store.kv().revoke_lease(lease).await.unwrap();
    let nodes = store.cluster_nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(nodes[0].record.is_none());
    store.remove_node("a").await.unwrap();
    assert!(store.cluster_nodes().await.unwrap().is_empty());
}
