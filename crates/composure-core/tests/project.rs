//! A compose file, loaded by the real loader, run through specs, start-up order, dependency
//! checks and reconcile passes over a tiny in-test world: a database with a health check, a
//! one-off migration that must complete, and a web service that needs both.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use composure_compose::loader::{LoadOptions, load_with};
use composure_compose::source::MemorySource;
use composure_core::{
    Backoff, DesiredState, Health, RestartCondition, ServiceStatus, Task, TaskId, TaskState,
    dependency_state, reconcile_service, service_specs, startup_order,
};
use indexmap::IndexMap;

const COMPOSE: &str = r#"
services:
  web:
    image: web
    scale: 2
    depends_on:
      migrate:
        condition: service_completed_successfully
      db:
        condition: service_healthy
      metrics:
        condition: service_started
        required: false
  migrate:
    image: web
    command: ["migrate"]
    restart: "no"
    depends_on:
      db:
        condition: service_healthy
  db:
    image: db
    healthcheck:
      test: ["CMD", "pg_isready"]
    deploy:
      restart_policy:
        condition: on-failure
        max_attempts: 5
"#;

fn project() -> composure_compose::model::Project {
    let source = MemorySource::new().with("/p/compose.yaml", COMPOSE);
    let mut options = LoadOptions::new("/p");
    options.files = vec!["/p/compose.yaml".into()];
    load_with(&options, &source).unwrap().project
}

/// Every task of the project; the world moves them on one step each pass.
struct World {
    tasks: Vec<Task>,
    now: u64,
    next_id: u64,
}

impl World {
    /// Due tasks start; `db` passes its check one step after it starts; `migrate` exits 0
    /// one step after it starts.
    fn progress(&mut self) {
        for task in &mut self.tasks {
            if task.desired == DesiredState::Shutdown {
                task.state = TaskState::Shutdown;
                continue;
            }
            match (task.service.as_str(), task.state) {
                (_, TaskState::Pending) if self.now >= task.not_before => {
                    task.state = TaskState::Running;
                    task.started_at = Some(self.now);
                    if task.service == "db" {
                        task.health = Health::Starting;
                    }
                }
                ("db", TaskState::Running) => task.health = Health::Healthy,
                ("migrate", TaskState::Running) => {
                    task.state = TaskState::Complete;
                    task.exit_code = Some(0);
                    task.finished_at = Some(self.now);
                }
                _ => {}
            }
        }
    }
}

#[test]
fn a_project_starts_in_dependency_order_and_settles() {
    let specs = service_specs(&project()).unwrap();
    assert_eq!(startup_order(&specs), ["db", "migrate", "web"]);
    assert_eq!(specs["web"].replicas, 2);
    assert_eq!(specs["migrate"].restart.condition, RestartCondition::Never);
    assert_eq!(specs["db"].restart.condition, RestartCondition::OnFailure);
    assert_eq!(specs["db"].restart.max_attempts, Some(5));
    assert!(specs["db"].has_healthcheck);

    let mut world = World {
        tasks: Vec::new(),
        now: 1_000,
        next_id: 0,
    };
    // What each service is waiting for, pass after pass.
    let mut seen: IndexMap<String, Vec<String>> = IndexMap::new();
    let mut statuses = IndexMap::new();
    for _ in 0..8 {
        world.progress();
        for name in startup_order(&specs) {
            let spec = &specs[&name];
            let deps = dependency_state(spec, &world.tasks, &specs);
            let mine: Vec<Task> = world
                .tasks
                .iter()
                .filter(|t| t.service == name)
                .cloned()
                .collect();
            let plan = reconcile_service(
                spec,
                &mine,
                &deps,
                None,
                world.now,
                &Backoff::default(),
                &mut || 0.5,
            );
            assert!(plan.shutdown.is_empty() && plan.fail.is_empty(), "{plan:?}");
            if let Some(reason) = plan.status.reason() {
                let list = seen.entry(name.clone()).or_default();
                if list.last().map(String::as_str) != Some(reason) {
                    list.push(reason.to_string());
                }
            }
            for new in plan.create {
                world.next_id += 1;
                world.tasks.push(Task {
                    id: TaskId(format!("t{}", world.next_id)),
                    project: "p".into(),
                    service: name.clone(),
                    slot: new.slot,
                    spec_hash: spec.spec_hash.clone(),
                    desired: DesiredState::Running,
                    state: TaskState::Pending,
                    health: Health::None,
                    container_id: None,
                    container_name: None,
                    exit_code: None,
                    error: None,
                    attempt: new.attempt,
                    created_at: world.now,
                    not_before: new.not_before,
                    started_at: None,
                    finished_at: None,
                    healthy_at: None,
                    node: Default::default(),
                    reserved: Default::default(),
                    gpus: Default::default(),
                });
            }
            statuses.insert(name, plan.status);
        }
        world.now += 1_000;
    }

    assert_eq!(statuses["db"], ServiceStatus::Running);
    assert_eq!(statuses["migrate"], ServiceStatus::Complete);
    assert_eq!(statuses["web"], ServiceStatus::Running);
    assert_eq!(
        seen["web"],
        [
            "waiting for migrate (service_completed_successfully), db (service_healthy)",
            "waiting for migrate (service_completed_successfully)",
            "0 of 2 replicas ready",
        ]
    );
    assert_eq!(
        seen["migrate"],
        ["waiting for db (service_healthy)", "0 of 1 replicas ready"]
    );
    // web started only after migrate completed.
    let migrate_done = world
        .tasks
        .iter()
        .find(|t| t.service == "migrate")
        .and_then(|t| t.finished_at)
        .unwrap();
    for web in world.tasks.iter().filter(|t| t.service == "web") {
        assert!(web.created_at >= migrate_done, "{web:?}");
    }
    assert_eq!(world.tasks.len(), 4, "one db, one migrate, two web");
}
