use composure_core::{DesiredState, Health, Task, TaskId, TaskState};
use serde_json::json;
use tempfile::TempDir;

use crate::store::Limits;
use crate::*;

fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state.db")).unwrap();
    (dir, store)
}

fn meta() -> ProjectMeta {
    ProjectMeta {
        working_dir: "/srv/app".into(),
        files: vec!["/srv/app/compose.yaml".into()],
    }
}

fn task(id: &str, service: &str, slot: u32, state: TaskState, created_at: u64) -> Task {
    Task {
        id: TaskId(id.into()),
        project: "app".into(),
        service: service.into(),
        slot,
        spec_hash: "h1".into(),
        desired: if state.is_terminal() {
            DesiredState::Shutdown
        } else {
            DesiredState::Running
        },
        state,
        health: Health::None,
        container_id: None,
        container_name: None,
        exit_code: None,
        error: None,
        attempt: 0,
        created_at,
        not_before: 0,
        started_at: None,
        finished_at: None,
    }
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

#[test]
fn a_new_store_is_at_revision_zero_with_the_latest_schema() {
    let (_dir, store) = open();
    assert_eq!(store.revision().unwrap(), 0);
    assert_eq!(
        crate::schema::version(&store.conn()).unwrap(),
        crate::schema::latest_version()
    );
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

#[test]
fn the_database_is_in_wal_mode_with_full_sync() {
    let (_dir, store) = open();
    let conn = store.conn();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(sync, 2, "2 is FULL");
}

#[test]
fn put_project_then_read_it_back() {
    let (_dir, store) = open();
    let spec = json!({"name": "app", "services": {"web": {"image": "nginx"}}});
    let revision = store.put_project("app", &spec, &meta()).unwrap();
    assert_eq!(revision, 1);
    let project = store.project("app").unwrap().unwrap();
    assert_eq!(
        project,
        StoredProject {
            name: "app".into(),
            revision,
            spec,
            meta: meta(),
            removing: None,
        }
    );
    assert_eq!(store.project("other").unwrap(), None);
}

#[test]
fn projects_lists_every_project_by_name() {
    let (_dir, store) = open();
    store.put_project("b", &json!({"n": 2}), &meta()).unwrap();
    store.put_project("a", &json!({"n": 1}), &meta()).unwrap();
    let names: Vec<String> = store
        .projects()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn putting_the_same_project_again_changes_nothing() {
    let (_dir, store) = open();
    let spec = json!({"services": {}});
    let first = store.put_project("app", &spec, &meta()).unwrap();
    assert_eq!(store.put_project("app", &spec, &meta()).unwrap(), first);
    assert_eq!(store.revision().unwrap(), first);
    assert_eq!(store.project_history("app").unwrap().len(), 1);

    let moved = ProjectMeta {
        working_dir: "/elsewhere".into(),
        files: vec![],
    };
    let second = store.put_project("app", &spec, &moved).unwrap();
    assert!(second > first, "a new meta is a change");
    assert_eq!(store.project("app").unwrap().unwrap().meta, moved);
}

#[test]
fn project_history_keeps_every_spec_newest_first_even_after_delete() {
    let (_dir, store) = open();
    let r1 = store.put_project("app", &json!({"v": 1}), &meta()).unwrap();
    let r2 = store.put_project("app", &json!({"v": 2}), &meta()).unwrap();
    store
        .put_project("other", &json!({"v": 9}), &meta())
        .unwrap();
    let r3 = store.put_project("app", &json!({"v": 3}), &meta()).unwrap();
    store.delete_project("app").unwrap();
    assert_eq!(store.project("app").unwrap(), None);

    let history = store.project_history("app").unwrap();
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
    assert!(store.project_history("nothing").unwrap().is_empty());
}

#[test]
fn mark_project_removing_is_recorded_and_a_new_put_cancels_it() {
    let (_dir, store) = open();
    let spec = json!({"v": 1});
    let put = store.put_project("app", &spec, &meta()).unwrap();
    store.mark_project_removing("app", false).unwrap();
    let project = store.project("app").unwrap().unwrap();
    assert_eq!(project.removing, Some(RemoveRequest { volumes: false }));
    assert_eq!(project.revision, put, "the spec's revision is unchanged");
    assert!(store.revision().unwrap() > put);

    // A later request for volumes wins; a later one without does not take it back.
    store.mark_project_removing("app", true).unwrap();
    store.mark_project_removing("app", false).unwrap();
    let removing = store.project("app").unwrap().unwrap().removing;
    assert_eq!(removing, Some(RemoveRequest { volumes: true }));

    // Putting the same spec again is not a no-op while a removal is pending.
    let again = store.put_project("app", &spec, &meta()).unwrap();
    assert!(again > put);
    assert_eq!(store.project("app").unwrap().unwrap().removing, None);
}

#[test]
fn mark_project_removing_of_a_missing_project_fails() {
    let (_dir, store) = open();
    let error = store.mark_project_removing("ghost", true).unwrap_err();
    assert!(matches!(error, StoreError::ProjectNotFound(ref name) if name == "ghost"));
    assert_eq!(error.to_string(), "project `ghost` not found");
    assert_eq!(
        store.revision().unwrap(),
        0,
        "a failed write leaves no trace"
    );
}

#[test]
fn delete_project_drops_its_tasks_only() {
    let (_dir, store) = open();
    store.put_project("app", &json!({}), &meta()).unwrap();
    store
        .put_task(&task("a1", "web", 1, TaskState::Running, 1))
        .unwrap();
    let mut elsewhere = task("b1", "web", 1, TaskState::Running, 1);
    elsewhere.project = "other".into();
    store.put_task(&elsewhere).unwrap();

    let before = store.revision().unwrap();
    store.delete_project("app").unwrap();
    assert!(store.revision().unwrap() > before);
    assert!(store.tasks("app").unwrap().is_empty());
    assert_eq!(store.tasks("other").unwrap(), [elsewhere]);

    let after = store.revision().unwrap();
    store.delete_project("app").unwrap();
    assert_eq!(
        store.revision().unwrap(),
        after,
        "deleting nothing is no write"
    );
}

#[test]
fn put_task_inserts_then_updates_by_id() {
    let (_dir, store) = open();
    let mut t = task("t1", "web", 1, TaskState::Pending, 10);
    let r1 = store.put_task(&t).unwrap();
    assert_eq!(store.task(&t.id).unwrap(), Some(t.clone()));

    t.state = TaskState::Running;
    t.container_id = Some("c1".into());
    t.health = Health::Healthy;
    t.started_at = Some(20);
    let r2 = store.put_task(&t).unwrap();
    assert!(r2 > r1);
    assert_eq!(store.task(&t.id).unwrap(), Some(t.clone()));
    assert_eq!(store.tasks("app").unwrap(), [t]);
    assert_eq!(store.task(&TaskId("nope".into())).unwrap(), None);
}

#[test]
fn put_tasks_is_one_transaction_and_one_revision() {
    let (_dir, store) = open();
    let before = store.revision().unwrap();
    let batch = [
        task("t1", "web", 1, TaskState::Pending, 1),
        task("t2", "web", 2, TaskState::Pending, 1),
        task("t3", "db", 1, TaskState::Pending, 1),
    ];
    let revision = store.put_tasks(&batch).unwrap();
    assert_eq!(revision, before + 1);
    assert_eq!(store.tasks("app").unwrap().len(), 3);
    assert_eq!(
        store.put_tasks(&[]).unwrap(),
        revision,
        "an empty batch writes nothing"
    );
    assert_eq!(store.revision().unwrap(), revision);
}

#[test]
fn tasks_are_ordered_by_service_slot_and_age_and_filtered_by_project() {
    let (_dir, store) = open();
    store
        .put_tasks(&[
            task("w2", "web", 2, TaskState::Running, 5),
            task("w1b", "web", 1, TaskState::Running, 9),
            task("w1a", "web", 1, TaskState::Failed, 3),
            task("d1", "db", 1, TaskState::Running, 7),
        ])
        .unwrap();
    let ids: Vec<String> = store
        .tasks("app")
        .unwrap()
        .into_iter()
        .map(|t| t.id.0)
        .collect();
    assert_eq!(ids, ["d1", "w1a", "w1b", "w2"]);
    assert!(store.tasks("other").unwrap().is_empty());
}

#[test]
fn only_the_last_terminal_tasks_of_a_slot_are_kept() {
    let (_dir, store) = open();
    // Eight failed attempts on slot 1, one on slot 2, and the live task of slot 1.
    for n in 0..8 {
        store
            .put_task(&task(&format!("f{n}"), "web", 1, TaskState::Failed, n))
            .unwrap();
    }
    store
        .put_task(&task("s2", "web", 2, TaskState::Failed, 0))
        .unwrap();
    store
        .put_task(&task("live", "web", 1, TaskState::Running, 100))
        .unwrap();

    let ids: Vec<String> = store
        .tasks("app")
        .unwrap()
        .into_iter()
        .map(|t| t.id.0)
        .collect();
    assert_eq!(ids, ["f3", "f4", "f5", "f6", "f7", "live", "s2"]);
}

#[test]
fn a_task_ending_triggers_pruning_of_its_slot() {
    let limits = Limits {
        terminal_tasks_per_slot: 1,
        ..Limits::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(&dir.path().join("state.db"), limits).unwrap();
    store
        .put_task(&task("old", "web", 1, TaskState::Failed, 1))
        .unwrap();
    let mut current = task("new", "web", 1, TaskState::Running, 2);
    store.put_task(&current).unwrap();
    assert_eq!(
        store.tasks("app").unwrap().len(),
        2,
        "live tasks are never pruned"
    );
    current.state = TaskState::Failed;
    store.put_task(&current).unwrap();
    assert_eq!(store.tasks("app").unwrap(), [current]);
}

#[test]
fn append_event_assigns_revisions_and_events_since_filters() {
    let (_dir, store) = open();
    let r1 = store.append_event(&event("app", "created")).unwrap();
    let r2 = store.append_event(&event("other", "created")).unwrap();
    let r3 = store.append_event(&event("app", "started")).unwrap();
    assert!(r1 < r2 && r2 < r3);

    let all = store.events_since(0, None).unwrap();
    let revisions: Vec<u64> = all.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, [r1, r2, r3]);
    assert_eq!(
        all[0],
        StoredEvent {
            revision: r1,
            ..event("app", "created")
        }
    );

    let app: Vec<String> = store
        .events_since(0, Some("app"))
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(app, ["created", "started"]);
    let later = store.events_since(r1, Some("app")).unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].revision, r3);
    assert!(store.events_since(r3, None).unwrap().is_empty());
}

#[test]
fn events_without_service_slot_or_task_round_trip() {
    let (_dir, store) = open();
    let bare = StoredEvent {
        service: None,
        slot: None,
        task: None,
        ..event("app", "project-removed")
    };
    let revision = store.append_event(&bare).unwrap();
    assert_eq!(
        store.events_since(0, None).unwrap(),
        [StoredEvent { revision, ..bare }]
    );
}

#[test]
fn the_event_log_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        events: 3,
        ..Limits::default()
    };
    let store = Store::open_with(&dir.path().join("state.db"), limits).unwrap();
    let revisions: Vec<u64> = (0..5)
        .map(|n| store.append_event(&event("app", &format!("e{n}"))).unwrap())
        .collect();
    let kept: Vec<u64> = store
        .events_since(0, None)
        .unwrap()
        .into_iter()
        .map(|e| e.revision)
        .collect();
    assert_eq!(kept, revisions[2..]);
}

#[test]
fn the_revision_increases_by_one_per_write_transaction() {
    let (_dir, store) = open();
    let mut seen = vec![store.revision().unwrap()];
    seen.push(store.put_project("app", &json!({"v": 1}), &meta()).unwrap());
    store.mark_project_removing("app", false).unwrap();
    seen.push(store.revision().unwrap());
    seen.push(
        store
            .put_task(&task("t1", "web", 1, TaskState::Pending, 1))
            .unwrap(),
    );
    seen.push(
        store
            .put_tasks(&[
                task("t2", "web", 2, TaskState::Pending, 1),
                task("t3", "web", 3, TaskState::Pending, 1),
            ])
            .unwrap(),
    );
    seen.push(store.append_event(&event("app", "x")).unwrap());
    store.delete_project("app").unwrap();
    seen.push(store.revision().unwrap());
    let expected: Vec<u64> = (0..seen.len() as u64).collect();
    assert_eq!(seen, expected);
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let t = task("t1", "web", 1, TaskState::Running, 1);
    let revision = {
        let store = Store::open(&path).unwrap();
        store.put_project("app", &json!({"v": 1}), &meta()).unwrap();
        store.put_task(&t).unwrap();
        store.append_event(&event("app", "started")).unwrap()
    };
    let store = Store::open(&path).unwrap();
    assert_eq!(store.revision().unwrap(), revision);
    assert_eq!(store.project("app").unwrap().unwrap().spec, json!({"v": 1}));
    assert_eq!(store.tasks("app").unwrap(), [t]);
    assert_eq!(store.events_since(0, None).unwrap().len(), 1);
    assert_eq!(
        crate::schema::version(&store.conn()).unwrap(),
        crate::schema::latest_version()
    );
}

#[test]
fn a_database_from_a_newer_composure_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE schema_version SET version = 999", [])
            .unwrap();
    }
    let error = Store::open(&path).unwrap_err();
    assert!(
        matches!(error, StoreError::SchemaTooNew { found: 999, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("schema version 999"), "{error}");
}

#[test]
fn a_file_that_is_not_a_database_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(
        &path,
        "this is not sqlite, just some text long enough to matter",
    )
    .unwrap();
    assert!(Store::open(&path).is_err());
}

#[test]
fn corrupt_json_is_reported_with_its_key() {
    let (_dir, store) = open();
    store
        .put_task(&task("t1", "web", 1, TaskState::Running, 1))
        .unwrap();
    store
        .conn()
        .execute("UPDATE tasks SET body = '{' WHERE id = 't1'", [])
        .unwrap();
    let error = store.task(&TaskId("t1".into())).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the stored task `t1` cannot be written or read as JSON"
    );
}

#[test]
fn the_store_is_shared_across_threads() {
    let (_dir, store) = open();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let store = &store;
            scope.spawn(move || {
                for n in 0..10u64 {
                    store
                        .put_task(&task(
                            &format!("t{thread}-{n}"),
                            "web",
                            thread,
                            TaskState::Running,
                            n,
                        ))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(store.revision().unwrap(), 40);
    assert_eq!(store.tasks("app").unwrap().len(), 40);
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

#[test]
fn the_store_and_the_lock_can_be_shared_and_sent() {
    fn shared<T: Send + Sync>() {}
    shared::<Store>();
    shared::<DataDirLock>();
}

fn rollout(target: &str) -> composure_core::Rollout {
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
    };
    composure_core::Rollout::begin(&spec, Some("old".into()), 1_000)
}

#[test]
fn rollouts_are_kept_per_service_and_replaced() {
    let (_dir, store) = open();
    assert_eq!(store.rollout("shop", "web").unwrap(), None);
    let first = rollout("v2");
    let revision = store.put_rollout("shop", "web", &first).unwrap();
    assert!(revision > 0);
    store.put_rollout("shop", "db", &rollout("d2")).unwrap();
    store.put_rollout("other", "web", &rollout("x")).unwrap();
    assert_eq!(store.rollout("shop", "web").unwrap(), Some(first));

    let second = rollout("v3");
    store.put_rollout("shop", "web", &second).unwrap();
    let all = store.rollouts("shop").unwrap();
    let names: Vec<&str> = all.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    assert_eq!(all[1].1, second);

    store.delete_rollout("shop", "db").unwrap();
    assert_eq!(store.rollouts("shop").unwrap().len(), 1);
    store
        .put_project("shop", &json!({"services": {}}), &meta())
        .unwrap();
    store.delete_project("shop").unwrap();
    assert!(store.rollouts("shop").unwrap().is_empty());
    assert_eq!(store.rollouts("other").unwrap().len(), 1);
}

#[test]
fn a_project_and_a_rollout_are_put_in_one_revision() {
    let (_dir, store) = open();
    let missing = store.put_project_with_rollout(
        "shop",
        &json!({"services": {}}),
        &meta(),
        "web",
        &rollout("v1"),
    );
    assert!(matches!(missing, Err(StoreError::ProjectNotFound(_))));
    store
        .put_project(
            "shop",
            &json!({"services": {"web": {"image": "b"}}}),
            &meta(),
        )
        .unwrap();
    let back = json!({"services": {"web": {"image": "a"}}});
    let revision = store
        .put_project_with_rollout("shop", &back, &meta(), "web", &rollout("v1"))
        .unwrap();
    assert_eq!(store.revision().unwrap(), revision);
    let project = store.project("shop").unwrap().unwrap();
    assert_eq!((project.revision, project.spec), (revision, back));
    assert_eq!(store.project_history("shop").unwrap().len(), 2);
    let stored = store.rollout("shop", "web").unwrap().unwrap();
    assert_eq!(stored.revision, revision);
}

#[test]
fn the_rollout_log_keeps_each_rollout_as_it_last_stood() {
    let (_dir, store) = open();
    let mut first = rollout("v2");
    store.put_rollout("shop", "web", &first).unwrap();
    first.outage.observe(false, 1_500);
    first.state = composure_core::RolloutState::Completed { at: 2_000 };
    store.put_rollout("shop", "web", &first).unwrap();
    let mut second = rollout("v3");
    second.started_at = 3_000;
    store.put_rollout("shop", "web", &second).unwrap();
    store.put_rollout("shop", "db", &rollout("d2")).unwrap();
    assert_eq!(store.rollout_log("shop", "web").unwrap(), [first, second]);
    store
        .put_project("shop", &json!({"services": {}}), &meta())
        .unwrap();
    store.delete_project("shop").unwrap();
    assert_eq!(store.rollout_log("shop", "web").unwrap().len(), 2);
}

#[test]
fn a_version_1_database_gains_the_rollouts_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
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
        crate::schema::version(&store.conn()).unwrap(),
        crate::schema::latest_version()
    );
    store.put_rollout("shop", "web", &rollout("v2")).unwrap();
    assert!(store.rollout("shop", "web").unwrap().is_some());
}
