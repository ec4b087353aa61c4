//! The daemon over the simulated runtime (DESIGN.md, test layer 3): the real store on a
//! temporary directory, the real control loop, driven through the API client over a
//! temporary socket, with faults injected in the simulator.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod harness;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use composure_api::{
    ClientError, DesiredState, EngineState, EventsQuery, LogStream, LogsQuery, ProjectState,
    PutProject, RestartRequest, ScaleRequest, TaskState,
};
use composure_core::Health;
use composure_daemon::{DaemonConfig, DaemonError, run};
use composure_runtime::{Runtime, RuntimeError};
use futures_util::StreamExt;
use harness::{Daemon, TIMEOUT, current, running, wait_for};
use indexmap::IndexMap;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SHOP: &str = "
services:
  web:
    image: demo
    deploy:
      replicas: 2
  db:
    image: demo
";

fn container_id(task: &composure_api::TaskView) -> String {
    task.container_id
        .clone()
        .expect("a running task has a container")
}

#[tokio::test(start_paused = true)]
async fn up_converges_and_labels_the_containers() {
    let daemon = Daemon::start().await;
    let revision = daemon.up("shop", SHOP).await;
    assert!(revision > 0);
    let status = daemon.wait_running("shop").await;
    assert_eq!(current(&status, "web").len(), 2);
    assert_eq!(current(&status, "db").len(), 1);

    let containers = daemon.containers("shop").await;
    let mut names: Vec<&str> = containers
        .iter()
        .map(|c| c.name.trim_start_matches('/'))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["shop-db-1", "shop-web-1", "shop-web-2"]);
    let web2 = containers
        .iter()
        .find(|c| c.name.ends_with("shop-web-2"))
        .unwrap();
    let task = running(&status, "web", 2).unwrap();
    assert_eq!(web2.labels["io.composure.task"], task.id);
    assert_eq!(web2.labels["io.composure.project"], "shop");
    assert_eq!(web2.labels["com.docker.compose.project"], "shop");
    assert_eq!(web2.labels["com.docker.compose.service"], "web");
    assert_eq!(web2.labels["com.docker.compose.container-number"], "2");
    assert_eq!(web2.labels["com.docker.compose.oneoff"], "False");
    assert_eq!(
        web2.labels["com.docker.compose.project.working_dir"],
        "/srv/app"
    );

    // The same file again changes nothing.
    let again = daemon
        .client
        .put_project("shop", &harness::project("shop", SHOP))
        .await
        .unwrap();
    assert_eq!(again.revision, revision);
    assert!(again.changed_services.is_empty());
    let listed = daemon.client.projects().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].running, listed[0].desired), (3, 3));
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_crashed_container_is_replaced_by_a_new_task() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    let status = daemon.wait_running("shop").await;
    let before = running(&status, "web", 1).unwrap().clone();

    daemon.sim.crash(&container_id(&before), 3).unwrap();
    let status = daemon
        .wait_status("shop", "slot 1 to get a new running task", |s| {
            running(s, "web", 1).is_some_and(|t| t.id != before.id)
        })
        .await;
    let after = running(&status, "web", 1).unwrap();
    assert_ne!(after.container_id, before.container_id);
    assert_eq!(after.restarts, 1);
    let old = status.tasks.iter().find(|t| t.id == before.id).unwrap();
    assert_eq!(old.state, TaskState::Failed);
    assert_eq!(old.desired, DesiredState::Shutdown);
    assert_eq!(old.exit_code, Some(3));
    // The other slot was not touched.
    assert!(
        status
            .tasks
            .iter()
            .filter(|t| t.slot == 2 && t.service == "web")
            .count()
            == 1
    );
    daemon.stop().await;
}

/// A kill storm (issue 14, item 4): a running replica of 3 is killed every second for a
/// minute. Replicas that served come back at once and a slot is always on its way, so the
/// service is never without a running replica for long. Before the rule, no replica lived
/// the 10 s that reset the backoff and every slot sat in backoff together.
#[tokio::test(start_paused = true)]
async fn a_kill_storm_never_leaves_a_service_without_a_replica() {
    let daemon = Daemon::start().await;
    let yaml = "
services:
  web:
    image: demo
    deploy:
      replicas: 3
";
    daemon.up("storm", yaml).await;
    daemon.wait_running("storm").await;
    let tick = Duration::from_millis(100);
    let mut hole = Duration::ZERO;
    let mut longest = hole;
    let mut kills = 0;
    for step in 0..600 {
        let mut up: Vec<_> = daemon
            .containers("storm")
            .await
            .into_iter()
            .filter(|c| c.status == composure_runtime::ContainerStatus::Running)
            .collect();
        if step % 10 == 0 && !up.is_empty() {
            // The oldest one, as a fixed and fair choice.
            up.sort_by_key(|c| c.started_at);
            daemon.sim.crash(&up[0].id, 137).unwrap();
            up.remove(0);
            kills += 1;
        }
        hole = if up.is_empty() {
            hole + tick
        } else {
            Duration::ZERO
        };
        longest = longest.max(hole);
        tokio::time::sleep(tick).await;
    }
    assert_eq!(kills, 60);
    assert!(
        longest <= Duration::from_secs(1),
        "no replica ran for {longest:?}"
    );
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_container_is_replaced() {
    let daemon = Daemon::start().await;
    let yaml = "
services:
  api:
    image: demo
    healthcheck:
      test: [\"CMD\", \"/demo-app\", \"probe\"]
";
    daemon.up("checked", yaml).await;
    let status = daemon
        .wait_status("checked", "the api task to run", |s| {
            running(s, "api", 1).is_some()
        })
        .await;
    let before = running(&status, "api", 1).unwrap().clone();

    daemon
        .sim
        .set_health(&container_id(&before), Health::Unhealthy)
        .unwrap();
    let status = daemon
        .wait_status("checked", "the unhealthy task to be replaced", |s| {
            running(s, "api", 1).is_some_and(|t| t.id != before.id)
        })
        .await;
    let old = status.tasks.iter().find(|t| t.id == before.id).unwrap();
    assert_eq!(old.state, TaskState::Failed);
    assert!(
        old.error.as_deref().unwrap_or("").contains("unhealthy"),
        "{old:?}"
    );
    let containers = daemon.containers("checked").await;
    assert!(
        containers
            .iter()
            .all(|c| Some(&c.id) != before.container_id.as_ref())
    );
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_container_removed_by_hand_is_recreated() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    let status = daemon.wait_running("shop").await;
    let before = running(&status, "db", 1).unwrap().clone();

    daemon.sim.remove_by_hand(&container_id(&before)).unwrap();
    let status = daemon
        .wait_status("shop", "db to be recreated", |s| {
            running(s, "db", 1).is_some_and(|t| t.id != before.id)
        })
        .await;
    let old = status.tasks.iter().find(|t| t.id == before.id).unwrap();
    assert_eq!(
        old.error.as_deref(),
        Some("container removed outside Composure")
    );
    assert_eq!(daemon.containers("shop").await.len(), 3);
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_daemon_adopts_its_containers() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    let before = daemon.wait_running("shop").await;
    let (dir, sim) = daemon.stop().await;
    // Stopping the daemon stopped no container.
    let containers = sim.list(Some("shop")).await.unwrap();
    assert_eq!(containers.len(), 3);

    let daemon = Daemon::start_on(dir, sim).await;
    wait_for("the new daemon to adopt", || {
        let client = daemon.client.clone();
        async move {
            let query = EventsQuery {
                project: Some("shop".into()),
                since: None,
                follow: false,
            };
            let events: Vec<_> = client.events(&query).await.ok()?.collect().await;
            events
                .iter()
                .any(|e| e.as_ref().is_ok_and(|e| e.kind == "adopted"))
                .then_some(())
        }
    })
    .await;
    let after = daemon.wait_running("shop").await;
    assert_eq!(after.tasks, before.tasks, "same tasks, same containers");
    let mut ids: Vec<String> = daemon
        .containers("shop")
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    let mut before_ids: Vec<String> = containers.into_iter().map(|c| c.id).collect();
    ids.sort();
    before_ids.sort();
    assert_eq!(ids, before_ids);
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn scaling_up_and_down_keeps_the_other_slots() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    let status = daemon.wait_running("shop").await;
    let first = running(&status, "web", 1).unwrap().id.clone();

    let up = ScaleRequest {
        services: IndexMap::from([("web".to_string(), 3)]),
    };
    daemon.client.scale("shop", &up).await.unwrap();
    let status = daemon
        .wait_status("shop", "three web replicas", |s| {
            (1..=3).all(|slot| running(s, "web", slot).is_some())
        })
        .await;
    assert_eq!(running(&status, "web", 1).unwrap().id, first);

    let down = ScaleRequest {
        services: IndexMap::from([("web".to_string(), 1)]),
    };
    daemon.client.scale("shop", &down).await.unwrap();
    let status = daemon
        .wait_status("shop", "one web replica", |s| current(s, "web").len() == 1)
        .await;
    assert_eq!(running(&status, "web", 1).unwrap().id, first);
    wait_for("the scaled-down containers to go", || async {
        let web = daemon
            .containers("shop")
            .await
            .into_iter()
            .filter(|c| c.labels.get("io.composure.service").map(String::as_str) == Some("web"))
            .count();
        (web == 1).then_some(())
    })
    .await;
    let status = daemon.wait_running("shop").await;
    assert_eq!(
        status
            .services
            .iter()
            .find(|s| s.name == "web")
            .unwrap()
            .desired,
        1
    );
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_service_waits_for_its_dependency_to_be_healthy() {
    let daemon = Daemon::start().await;
    let yaml = "
services:
  web:
    image: demo
    depends_on:
      db:
        condition: service_healthy
  db:
    image: demo
    healthcheck:
      test: [\"CMD\", \"/demo-app\", \"probe\"]
";
    daemon.up("deps", yaml).await;
    let status = daemon
        .wait_status("deps", "web to wait for db", |s| {
            running(s, "db", 1).is_some()
                && s.services.iter().any(|svc| {
                    svc.name == "web" && svc.message.as_deref().is_some_and(|m| m.contains("db"))
                })
        })
        .await;
    assert!(
        current(&status, "web").is_empty(),
        "no web task before db is healthy: {status:?}"
    );

    let db = running(&status, "db", 1).unwrap();
    daemon
        .sim
        .set_health(&container_id(db), Health::Healthy)
        .unwrap();
    daemon.wait_running("deps").await;
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn restart_replaces_the_tasks_of_a_service() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    let status = daemon.wait_running("shop").await;
    let old: Vec<String> = current(&status, "web")
        .iter()
        .map(|t| t.id.clone())
        .collect();
    let db = running(&status, "db", 1).unwrap().id.clone();

    let request = RestartRequest {
        services: vec!["web".into()],
    };
    daemon.client.restart("shop", &request).await.unwrap();
    let status = daemon
        .wait_status("shop", "new web tasks", |s| {
            (1..=2).all(|slot| running(s, "web", slot).is_some_and(|t| !old.contains(&t.id)))
        })
        .await;
    assert_eq!(running(&status, "db", 1).unwrap().id, db);
    assert_eq!(running(&status, "web", 1).unwrap().restarts, 0);
    daemon.stop().await;
}

/// A restart rolls like an update (start-first by default): at no point does the service
/// run fewer replicas than it declares, and the rollout says it was a restart.
#[tokio::test(start_paused = true)]
async fn a_restart_rolls_without_going_below_the_declared_replicas() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    let status = daemon.wait_running("shop").await;
    let old: Vec<String> = current(&status, "web")
        .iter()
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(old.len(), 2);

    let request = RestartRequest {
        services: vec!["web".into()],
    };
    daemon.client.restart("shop", &request).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = daemon.client.project("shop").await.unwrap();
        let up = (1..=2)
            .filter(|&slot| running(&status, "web", slot).is_some())
            .count();
        assert_eq!(
            up, 2,
            "a slot without a running replica: {:#?}",
            status.tasks
        );
        let restarted =
            (1..=2).all(|slot| running(&status, "web", slot).is_some_and(|t| !old.contains(&t.id)));
        let gone = !status
            .tasks
            .iter()
            .any(|t| old.contains(&t.id) && t.state == TaskState::Running);
        if restarted && gone {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restart did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let rollout = wait_rollout(&daemon, "completed").await;
    assert_eq!(rollout.kind, composure_api::RolloutKind::Restart);
    daemon.stop().await;
}

async fn wait_rollout(daemon: &Daemon, state: &str) -> composure_api::RolloutView {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let rollout = daemon.client.rollout("shop", "web").await.unwrap();
        if format!("{:?}", rollout.state).eq_ignore_ascii_case(state) {
            return rollout;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rollout not {state}: {rollout:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn delete_leaves_nothing_behind() {
    let daemon = Daemon::start().await;
    let yaml = "
services:
  web:
    image: demo
    volumes:
      - data:/data
volumes:
  data: {}
";
    daemon.up("gone", yaml).await;
    daemon.wait_running("gone").await;

    daemon.client.delete_project("gone", true).await.unwrap();
    wait_for("the project to be forgotten", || async {
        match daemon.client.project("gone").await {
            Err(err) if err.is_not_found() => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(daemon.containers("gone").await.is_empty());
    assert!(daemon.sim.networks().iter().all(|n| !n.starts_with("gone")));
    assert!(daemon.sim.volumes().iter().all(|v| !v.starts_with("gone")));
    assert!(daemon.client.projects().await.unwrap().is_empty());

    // The same name again, on the same daemon, is a new project that converges.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    daemon.up("gone", yaml).await;
    daemon.wait_running("gone").await;
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_put_whose_image_cannot_be_had_is_refused_and_stores_nothing() {
    let daemon = Daemon::start().await;
    daemon.sim.set_image_missing("ghost");
    let body = harness::project("ghost", "services:\n  web:\n    image: ghost\n");
    let err = daemon.client.put_project("ghost", &body).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    assert!(err.to_string().contains("ghost"), "{err}");
    let missing = daemon.client.project("ghost").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn bad_requests_get_a_clear_400() {
    let daemon = Daemon::start().await;
    let bad = PutProject::new(
        json!({"services": {"web": {"image": "demo", "ports": [{"target": "eighty"}]}}}),
        "/srv/app".into(),
        vec![],
    );
    let err = daemon.client.put_project("shop", &bad).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("services.web.ports"), "{err}");

    let good = harness::project("shop", SHOP);
    let err = daemon
        .client
        .put_project("Not A Name", &good)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    let err = daemon.client.project("nothing").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "no project `nothing`");

    daemon.up("shop", SHOP).await;
    let scale = ScaleRequest {
        services: IndexMap::from([("nope".to_string(), 2)]),
    };
    let err = daemon.client.scale("shop", &scale).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("no service `nope`"), "{err}");
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn bad_routes_are_refused_and_new_routes_replace_no_task() {
    let daemon = Daemon::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let routed = |path: &str| {
        format!(
            "
services:
  web:
    image: demo
    x-composure:
      routes:
        - {{listen: \"127.0.0.1:{port}\", path: {path}, port: 80}}
"
        )
    };
    let revision = daemon.up("shop", &routed("/a")).await;
    let status = daemon.wait_running("shop").await;
    let task = running(&status, "web", 1).unwrap().id.clone();

    let err = daemon
        .client
        .put_project("shop", &harness::project("shop", &routed("a")))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(
            "services.web.x-composure.routes[0].path: service `web`: path `a` must start with `/`"
        ) && message.contains("hint: write `/a`"),
        "{message}"
    );
    assert_eq!(daemon.status("shop").await.revision, revision);

    // Routes tell the proxy how to reach the tasks: changing them replaces none.
    let response = daemon
        .client
        .put_project("shop", &harness::project("shop", &routed("/b")))
        .await
        .unwrap();
    assert!(response.revision > revision);
    assert_eq!(response.changed_services, Vec::<String>::new());
    let status = daemon
        .wait_status("shop", "the new revision", |s| {
            s.observed_revision >= response.revision
        })
        .await;
    assert_eq!(running(&status, "web", 1).unwrap().id, task);
    daemon.stop().await;
}

async fn wait_engine(daemon: &Daemon, state: EngineState) -> composure_api::Info {
    wait_for("the engine's state in /v1/info", || {
        let client = daemon.client.clone();
        async move {
            let info = client
                .info()
                .await
                .expect("/v1/info answers whatever the engine does");
            (info.engine.state == state).then_some(info)
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn info_reports_an_engine_that_is_down_and_the_daemon_recovers() {
    let daemon = Daemon::start().await;
    let info = wait_engine(&daemon, EngineState::Up).await;
    assert_eq!(info.engine.name, "composure-sim");
    daemon.sim.engine_down(true);
    let info = wait_engine(&daemon, EngineState::Down).await;
    let error = info.engine.error.unwrap_or_default();
    assert!(error.contains("down"), "{error}");
    assert_eq!(
        info.engine.name, "composure-sim",
        "the last answer's name is kept"
    );

    // Desired state is accepted while the engine is away, and applied when it is back.
    // Meanwhile the status says its states are as last seen (`ps` said "running").
    daemon.up("shop", SHOP).await;
    let status = daemon.status("shop").await;
    assert_ne!(status.status, ProjectState::Running);
    assert!(
        status
            .problems
            .first()
            .is_some_and(|p| p.contains("engine does not answer")),
        "{:?}",
        status.problems
    );
    daemon.sim.engine_down(false);
    wait_engine(&daemon, EngineState::Up).await;
    daemon.wait_running("shop").await;
    daemon.stop().await;
}

/// Issue 14, item 6: `/v1/info` hung for 20 s when the engine was frozen.
#[tokio::test(start_paused = true)]
async fn info_answers_at_once_while_the_engine_hangs() {
    let daemon = Daemon::start().await;
    wait_engine(&daemon, EngineState::Up).await;
    daemon.sim.engine_frozen(true);
    let info = wait_engine(&daemon, EngineState::Down).await;
    let error = info.engine.error.unwrap_or_default();
    assert!(error.contains("did not answer"), "{error}");
    // Every answer comes without waiting on the engine: on the paused clock, no time
    // passes while the daemon answers.
    let before = tokio::time::Instant::now();
    daemon.client.info().await.unwrap();
    assert_eq!(before.elapsed(), Duration::ZERO);
    daemon.sim.engine_frozen(false);
    wait_engine(&daemon, EngineState::Up).await;
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn events_are_kept_and_streamed() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    let status = daemon.wait_running("shop").await;

    let history = EventsQuery {
        project: Some("shop".into()),
        since: None,
        follow: false,
    };
    let events: Vec<_> = daemon
        .client
        .events(&history)
        .await
        .unwrap()
        .collect()
        .await;
    let events: Vec<_> = events.into_iter().map(Result::unwrap).collect();
    for kind in ["updated", "scheduled", "created", "started"] {
        assert!(
            events.iter().any(|e| e.kind == kind),
            "no {kind} in {events:?}"
        );
    }
    assert!(events.windows(2).all(|w| w[0].revision < w[1].revision));

    let last = events.last().unwrap().revision;
    let live = EventsQuery {
        project: Some("shop".into()),
        since: Some(last),
        follow: true,
    };
    let mut stream = daemon.client.events(&live).await.unwrap();
    let db = running(&status, "db", 1).unwrap();
    daemon.sim.crash(&container_id(db), 1).unwrap();
    let died = tokio::time::timeout(TIMEOUT, async {
        while let Some(event) = stream.next().await {
            let event = event.unwrap();
            assert!(event.revision > last);
            if event.kind == "died" {
                return event;
            }
        }
        panic!("the event stream ended");
    })
    .await
    .expect("a died event");
    assert_eq!(died.service.as_deref(), Some("db"));
    // The daemon ends open streams when it stops.
    daemon.stop().await;
    let rest: Vec<_> = tokio::time::timeout(TIMEOUT, stream.collect::<Vec<_>>())
        .await
        .expect("the stream ends with the daemon");
    drop(rest);
}

#[tokio::test(start_paused = true)]
async fn the_socket_is_private_replaced_when_stale_and_removed_on_exit() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let socket = dir.path().join("run").join("composure.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    // A killed daemon's socket: the file stays, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let daemon = Daemon::start_on(dir, harness::sim()).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    // A second daemon on the same data directory is refused, naming the holder.
    let second = run(
        DaemonConfig::local(
            daemon.dir.path().join("data"),
            daemon.dir.path().join("other.sock"),
        ),
        daemon.sim.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(second, DaemonError::Lock(_)), "{second:?}");
    assert!(second.to_string().contains("in use"), "{second}");

    // A second daemon on the same socket is refused too.
    let other_dir = tempfile::tempdir().unwrap();
    let second = run(
        DaemonConfig::local(other_dir.path().to_path_buf(), socket.clone()),
        daemon.sim.clone(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(second, DaemonError::SocketInUse { .. }),
        "{second:?}"
    );

    daemon.stop().await;
    assert!(!socket.exists());
    let err = harness_client_error(&socket).await;
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
}

async fn harness_client_error(socket: &std::path::Path) -> ClientError {
    composure_api::Client::new(socket).info().await.unwrap_err()
}

#[tokio::test(start_paused = true)]
async fn a_changed_spec_replaces_the_tasks_of_that_service_only() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    let status = daemon.wait_running("shop").await;
    let web = running(&status, "web", 1).unwrap().clone();
    let db = running(&status, "db", 1).unwrap().clone();

    let changed = SHOP.replace("  web:\n    image: demo", "  web:\n    image: demo2");
    let answer = daemon
        .client
        .put_project("shop", &harness::project("shop", &changed))
        .await
        .unwrap();
    assert_eq!(answer.changed_services, ["web"]);
    // The slots move one at a time; wait for the update to be over.
    let status = daemon
        .wait_status("shop", "web to run the new spec", |s| {
            running(s, "web", 1).is_some_and(|t| t.id != web.id)
                && running(s, "web", 2).is_some()
                && current(s, "web").len() == 2
                && s.services.iter().any(|svc| {
                    svc.name == "web"
                        && svc.rollout.as_ref().is_some_and(|r| {
                            r.revision >= answer.revision
                                && r.state == composure_api::RolloutState::Completed
                        })
                })
        })
        .await;
    assert_eq!(running(&status, "db", 1).unwrap().id, db.id);
    let images: Vec<String> = daemon
        .containers("shop")
        .await
        .into_iter()
        .filter(|c| c.labels["io.composure.service"] == "web")
        .map(|c| c.image)
        .collect();
    assert_eq!(images, ["demo2", "demo2"]);
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn under_restart_no_a_crashed_task_stays_failed() {
    let daemon = Daemon::start().await;
    let yaml = "
services:
  job:
    image: demo
    restart: \"no\"
";
    daemon.up("once", yaml).await;
    let status = daemon
        .wait_status("once", "the job to run", |s| running(s, "job", 1).is_some())
        .await;
    let task = running(&status, "job", 1).unwrap().clone();
    daemon.sim.crash(&container_id(&task), 2).unwrap();
    let status = daemon
        .wait_status("once", "the project to fail", |s| {
            s.status == ProjectState::Failed
        })
        .await;
    assert_eq!(status.tasks.len(), 1, "not replaced: {status:?}");
    assert_eq!(status.tasks[0].state, TaskState::Failed);
    let message = status.services[0].message.clone().unwrap_or_default();
    assert!(message.contains("exited with code 2"), "{message}");
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_fails_the_task_with_the_reason_and_retries_with_backoff() {
    let daemon = Daemon::start().await;
    let yaml = "
services:
  web:
    image: ghost
";
    // A put whose image cannot be had is refused (the image phase), so the image goes away
    // after: the replacement of a crashed replica cannot start.
    daemon.up("ghost", yaml).await;
    let status = daemon.wait_running("ghost").await;
    daemon.sim.set_image_missing("ghost");
    daemon
        .sim
        .crash(&container_id(&status.tasks[0]), 1)
        .unwrap();
    let status = daemon
        .wait_status("ghost", "the failure to show", |s| {
            s.tasks.iter().any(|t| {
                t.state == TaskState::Failed
                    && t.error.as_deref().is_some_and(|e| e.contains("ghost"))
            }) && s.status == ProjectState::Degraded
        })
        .await;
    let failed = status
        .tasks
        .iter()
        .find(|t| t.state == TaskState::Failed && t.container_id.is_none())
        .unwrap();
    assert!(
        failed.error.as_deref().unwrap_or("").contains("ghost"),
        "{failed:?}"
    );
    daemon
        .wait_status("ghost", "a retry", |s| {
            s.tasks.iter().any(|t| t.restarts >= 1)
        })
        .await;
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn logs_merge_the_replicas_of_a_service() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    let status = daemon.wait_running("shop").await;
    let web1 = container_id(running(&status, "web", 1).unwrap());
    let web2 = container_id(running(&status, "web", 2).unwrap());
    let db = container_id(running(&status, "db", 1).unwrap());
    daemon.sim.emit_log(&web1, "one").unwrap();
    daemon.sim.emit_stderr(&web2, "two").unwrap();
    daemon.sim.emit_log(&db, "db line").unwrap();

    let query = LogsQuery {
        service: Some("web".into()),
        follow: false,
        tail: None,
        task: None,
        since: None,
    };
    let entries: Vec<_> = daemon
        .client
        .logs("shop", &query)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let lines: Vec<(u32, LogStream, &str)> = entries
        .iter()
        .map(|e| (e.slot, e.stream, e.line.as_str()))
        .collect();
    assert_eq!(
        lines,
        [(1, LogStream::Stdout, "one"), (2, LogStream::Stderr, "two")]
    );
    assert!(entries.iter().all(|e| e.service == "web"));

    let follow = LogsQuery {
        service: None,
        follow: true,
        tail: Some(0),
        task: None,
        since: None,
    };
    let mut stream = daemon.client.logs("shop", &follow).await.unwrap();
    daemon.sim.emit_log(&db, "later").unwrap();
    let entry = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .expect("a followed line")
        .expect("the stream is open")
        .unwrap();
    assert_eq!(
        (entry.service.as_str(), entry.line.as_str()),
        ("db", "later")
    );

    let unknown = LogsQuery {
        service: Some("nope".into()),
        ..LogsQuery::default()
    };
    let Err(err) = daemon.client.logs("shop", &unknown).await else {
        panic!("logs of an unknown service");
    };
    assert_eq!(err.status(), Some(400));
    daemon.stop().await;
}

/// Issue 13: `logs -f` stopped (and exited 0) when a replica was replaced. It follows the
/// service: the replacement's output comes on the same stream, and the stream ends only
/// when the project is gone.
#[tokio::test(start_paused = true)]
async fn followed_logs_go_on_with_the_replica_that_replaces_a_crashed_one() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    let status = daemon.wait_running("shop").await;
    let db = running(&status, "db", 1).unwrap().clone();
    let follow = LogsQuery {
        service: Some("db".into()),
        follow: true,
        tail: Some(0),
        task: None,
        since: None,
    };
    let mut stream = daemon.client.logs("shop", &follow).await.unwrap();
    daemon.sim.crash(&container_id(&db), 1).unwrap();
    let status = daemon
        .wait_status("shop", "db to be replaced", |s| {
            running(s, "db", 1).is_some_and(|t| t.id != db.id)
        })
        .await;
    let replacement = running(&status, "db", 1).unwrap().clone();
    // The stream picks the new container up within a rescan; say something until it shows.
    let entry = tokio::time::timeout(TIMEOUT, async {
        loop {
            daemon
                .sim
                .emit_log(&container_id(&replacement), "from the replacement")
                .unwrap();
            match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
                Ok(next) => break next,
                Err(_) => continue,
            }
        }
    })
    .await
    .expect("the replacement's line")
    .expect("the stream is open")
    .unwrap();
    assert_eq!(entry.task, replacement.id);
    assert_eq!(entry.line, "from the replacement");

    daemon.client.delete_project("shop", false).await.unwrap();
    let end = tokio::time::timeout(TIMEOUT, async {
        while let Some(item) = stream.next().await {
            item.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ends once the project is gone");
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_transient_create_failure_is_retried_without_failing_the_task() {
    let daemon = Daemon::start().await;
    daemon
        .sim
        .fail_next_create(RuntimeError::Conflict("the engine is busy".into()));
    daemon
        .up("busy", "services:\n  web:\n    image: demo\n")
        .await;
    let status = daemon.wait_running("busy").await;
    assert_eq!(status.tasks.len(), 1, "one task, retried: {status:?}");
    assert_eq!(status.tasks[0].restarts, 0);
    daemon.stop().await;
}

/// `depends_on: {db: {restart: true}}`: once `db` is updated, `web` is restarted (rolled in
/// like an update); `worker`, which depends on `db` without `restart`, keeps its tasks.
#[tokio::test(start_paused = true)]
async fn a_dependency_updated_restarts_the_services_that_ask_for_it() {
    let yaml = |version: &str| {
        format!(
            "
services:
  db:
    image: demo
    environment:
      VERSION: \"{version}\"
  web:
    image: demo
    deploy:
      replicas: 2
    depends_on:
      db: {{condition: service_started, restart: true}}
  worker:
    image: demo
    depends_on:
      db: {{condition: service_started}}
"
        )
    };
    let daemon = Daemon::start().await;
    daemon.up("shop", &yaml("1")).await;
    let status = daemon.wait_running("shop").await;
    let ids = |status: &composure_api::ProjectStatus, service: &str| -> Vec<String> {
        current(status, service)
            .iter()
            .map(|t| t.id.clone())
            .collect()
    };
    let (web, worker) = (ids(&status, "web"), ids(&status, "worker"));

    daemon.up("shop", &yaml("2")).await;
    let status = daemon
        .wait_status("shop", "web restarted after db's update", |s| {
            (1..=2).all(|slot| running(s, "web", slot).is_some_and(|t| !web.contains(&t.id)))
                && current(s, "web").len() == 2
        })
        .await;
    assert_eq!(
        ids(&status, "worker"),
        worker,
        "worker did not ask to be restarted"
    );
    let rollout = daemon.client.rollout("shop", "web").await.unwrap();
    assert_eq!(rollout.kind, composure_api::RolloutKind::Restart);
    daemon.stop().await;
}

/// A name that would climb out of the daemon's directories (the VIP's files live in
/// `<data>/vip/<project>/<service>`) is refused by the API before anything is stored.
#[tokio::test(start_paused = true)]
async fn names_that_would_leave_the_data_directory_are_refused() {
    let daemon = Daemon::start().await;
    let victim = daemon.dir.path().join("victimdir");
    for (project, service) in [
        ("app", "../../../victimdir"),
        ("app", ".."),
        ("app", "a/b"),
        ("app", "."),
    ] {
        let body = PutProject::new(
            json!({ "services": { service: { "image": "demo", "expose": ["80"] } } }),
            "/srv/app".to_string(),
            vec![],
        );
        let err = daemon
            .client
            .put_project(project, &body)
            .await
            .expect_err(service);
        match err {
            ClientError::Api { status, message } => {
                assert_eq!(status, 400, "{service}: {message}");
                assert!(message.contains("invalid service name"), "{message}");
            }
            other => panic!("{service}: {other}"),
        }
    }
    let long = "a".repeat(10_000);
    let body = harness::project("app", "services:\n  web:\n    image: demo\n");
    match daemon.client.put_project(&long, &body).await {
        Err(ClientError::Api { status, message }) => {
            assert_eq!(status, 400, "{message}");
            assert!(message.contains("at most 63 characters"), "{message}");
        }
        other => panic!("a 10 KB project name: {other:?}"),
    }
    assert!(!victim.exists());
    assert!(daemon.client.projects().await.expect("list").is_empty());
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_long_stop_grace_holds_up_no_other_decision() {
    // `slow` ignores the stop signal and has an hour to stop in: its scale-down takes that
    // hour, while the project's other services are looked after as usual.
    const STUBBORN: &str = "
services:
  slow:
    image: demo
    stop_grace_period: 1h
    deploy:
      replicas: 2
  fast:
    image: demo
";
    let daemon = Daemon::start().await;
    daemon.up("shop", STUBBORN).await;
    let status = daemon.wait_running("shop").await;
    let stopping = running(&status, "slow", 2).unwrap().clone();
    daemon
        .sim
        .ignore_stop_signal(&container_id(&stopping))
        .unwrap();
    let down = ScaleRequest {
        services: IndexMap::from([("slow".to_string(), 1)]),
    };
    daemon.client.scale("shop", &down).await.unwrap();
    daemon
        .wait_status("shop", "slot 2 of slow desired shut down", |s| {
            current(s, "slow").len() == 1
        })
        .await;

    let fast = running(&daemon.status("shop").await, "fast", 1)
        .unwrap()
        .clone();
    daemon.sim.crash(&container_id(&fast), 1).unwrap();
    let status = daemon
        .wait_status("shop", "fast to be replaced", |s| {
            running(s, "fast", 1).is_some_and(|t| t.id != fast.id)
        })
        .await;
    // The stop of slow's slot 2 is still within its grace: its container runs on, its task
    // is not marked shut down, and the restart and the status answered meanwhile.
    let slow2 = status.tasks.iter().find(|t| t.id == stopping.id).unwrap();
    assert_eq!(slow2.desired, DesiredState::Shutdown);
    assert_eq!(slow2.state, TaskState::Running);
    let restart = RestartRequest {
        services: vec!["fast".to_string()],
    };
    daemon.client.restart("shop", &restart).await.unwrap();
    let still = daemon.sim.inspect(&container_id(&stopping)).await.unwrap();
    assert!(
        still.is_some_and(|c| matches!(c.status, composure_runtime::ContainerStatus::Running)),
        "slow's slot 2 is still within its grace"
    );
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_vip_serves_the_ready_replicas_only() {
    // A service that declares its ports gets a VIP container holding its name, fed the
    // replicas that are ready (healthy, here) through its config file.
    const API: &str = r#"
services:
  api:
    image: demo
    expose: ["8080"]
    healthcheck:
      test: ["CMD", "true"]
    deploy:
      replicas: 2
"#;
    let daemon = Daemon::start().await;
    daemon.up("vips", API).await;
    let config = daemon.dir.path().join("data/vip/vips/api/config.json");
    let endpoints = || {
        let text = std::fs::read_to_string(&config).ok()?;
        let config: composure_net::vip::VipConfig = serde_json::from_str(&text).ok()?;
        Some(
            config
                .endpoints
                .into_iter()
                .map(|e| e.task)
                .collect::<Vec<_>>(),
        )
    };
    let status = wait_for("two api replicas and the VIP to run", || async {
        let status = daemon.status("vips").await;
        let replicas = (1..=2).all(|slot| running(&status, "api", slot).is_some());
        let vip = running(&status, "api.vip", 1).is_some();
        (replicas && vip).then_some(status)
    })
    .await;
    let vip = daemon
        .containers("vips")
        .await
        .into_iter()
        .find(|c| c.labels.get("io.composure.vip-for").map(String::as_str) == Some("api"))
        .expect("the VIP container");
    assert_eq!(vip.name, "vips-api.vip-1");
    assert_eq!(endpoints().unwrap_or_default(), Vec::<String>::new());

    let replicas: Vec<_> = (1..=2)
        .map(|slot| running(&status, "api", slot).unwrap().clone())
        .collect();
    for replica in &replicas {
        daemon
            .sim
            .set_health(&container_id(replica), Health::Healthy)
            .unwrap();
    }
    wait_for("the VIP to have both replicas", || async {
        let mut got = endpoints()?;
        got.sort();
        let mut want: Vec<String> = replicas.iter().map(|t| t.id.clone()).collect();
        want.sort();
        (got == want).then_some(())
    })
    .await;

    daemon
        .sim
        .set_health(&container_id(&replicas[0]), Health::Unhealthy)
        .unwrap();
    wait_for("the VIP to drop the unhealthy replica", || async {
        (endpoints()? == vec![replicas[1].id.clone()]).then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_fixed_seed_and_the_paused_clock_repeat_the_same_decisions() {
    // Twice the same story on fresh daemons: up, a crash and its restart delay, a scale-up.
    // The task ids (drawn from the seeded generator), the restart delay and the events per
    // task are the same both times.
    async fn story() -> Vec<(String, String, u32, Vec<String>)> {
        let daemon = Daemon::start().await;
        daemon.up("shop", SHOP).await;
        let status = daemon.wait_running("shop").await;
        let first = running(&status, "web", 1).unwrap().clone();
        daemon.sim.crash(&container_id(&first), 1).unwrap();
        daemon
            .wait_status("shop", "slot 1 to run a new task", |s| {
                running(s, "web", 1).is_some_and(|t| t.id != first.id)
            })
            .await;
        let up = ScaleRequest {
            services: IndexMap::from([("web".to_string(), 3)]),
        };
        daemon.client.scale("shop", &up).await.unwrap();
        let status = daemon.wait_running("shop").await;
        let events = daemon.events("shop").await;
        let mut tasks: Vec<_> = status
            .tasks
            .iter()
            .map(|t| {
                let kinds = events
                    .iter()
                    .filter(|e| e.task.as_deref() == Some(t.id.as_str()))
                    .map(|e| format!("{}: {}", e.kind, e.message))
                    .collect();
                (t.id.clone(), t.service.clone(), t.slot, kinds)
            })
            .collect();
        tasks.sort();
        daemon.stop().await;
        tasks
    }
    let first = story().await;
    let second = story().await;
    assert_eq!(first.len(), 5, "{first:#?}");
    assert_eq!(first, second);
}

#[tokio::test(start_paused = true)]
async fn a_service_whose_vip_cannot_start_is_not_running() {
    // Callers reach the service through its VIP: while the VIP cannot start, the service
    // (and so `up --wait`) does not count as running, and says why, and a service that
    // depends on it waits.
    const API: &str = r#"
services:
  api:
    image: demo
    expose: ["8080"]
  client:
    image: demo
    depends_on: [api]
"#;
    let daemon = Daemon::start().await;
    daemon.sim.set_image_missing(harness::VIP_IMAGE);
    daemon.up("novip", API).await;
    let status = daemon
        .wait_status("novip", "the VIP to fail", |s| {
            s.tasks
                .iter()
                .any(|t| t.service == "api.vip" && t.state == TaskState::Failed)
                && running(s, "api", 1).is_some()
        })
        .await;
    let api = status.services.iter().find(|s| s.name == "api").unwrap();
    assert_ne!(api.status, composure_api::ServiceState::Running, "{api:?}");
    assert!(
        api.message
            .as_deref()
            .is_some_and(|m| m.starts_with("its VIP")),
        "{api:?}"
    );
    assert_ne!(status.status, ProjectState::Running);
    assert!(running(&status, "client", 1).is_none(), "{status:#?}");

    daemon.sim.set_image_present(harness::VIP_IMAGE);
    daemon
        .wait_status("novip", "the project to run once the VIP can start", |s| {
            s.status == ProjectState::Running && running(s, "client", 1).is_some()
        })
        .await;
    daemon.stop().await;
}

/// Reads what the daemon sends on `stream` until it closes it.
async fn read_to_close(stream: &mut tokio::net::UnixStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut answer))
        .await
        .expect("the daemon closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Issue 14, item 6: half-sent requests stayed open for as long as the client liked.
#[tokio::test(start_paused = true)]
async fn half_sent_requests_and_trickled_bodies_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let daemon = Daemon::start().await;
    let mut half = tokio::net::UnixStream::connect(&daemon.socket)
        .await
        .unwrap();
    half.write_all(b"GET /v1/info HTTP/1.1\r\nHost: composure\r\n")
        .await
        .unwrap();
    let before = tokio::time::Instant::now();
    let answer = read_to_close(&mut half).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(
        before.elapsed() >= Duration::from_secs(10),
        "the header timeout is 10 s"
    );

    let mut trickle = tokio::net::UnixStream::connect(&daemon.socket)
        .await
        .unwrap();
    trickle
        .write_all(
            b"PUT /v1/projects/shop HTTP/1.1\r\nHost: composure\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"proj",
        )
        .await
        .unwrap();
    let answer = read_to_close(&mut trickle).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 30 s"), "{answer}");

    // The daemon serves on.
    daemon.client.info().await.unwrap();
    daemon.stop().await;
}

/// Past 256 connections, more wait for a place (in the socket's backlog) instead of
/// taking the daemon's file descriptors; connections that send nothing give theirs up
/// after the header timeout.
#[tokio::test(start_paused = true)]
async fn connections_past_the_cap_wait_for_a_place() {
    let daemon = Daemon::start().await;
    let mut idle = Vec::new();
    for _ in 0..256 {
        idle.push(
            tokio::net::UnixStream::connect(&daemon.socket)
                .await
                .unwrap(),
        );
    }
    // A new client: the harness's own has a connection from before, kept alive.
    let fresh = composure_api::Client::new(&daemon.socket);
    let before = tokio::time::Instant::now();
    fresh.info().await.unwrap();
    assert!(
        before.elapsed() >= Duration::from_secs(10),
        "served at once past the cap"
    );
    for stream in &mut idle {
        assert!(read_to_close(stream).await.is_empty());
    }
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_a_413() {
    let daemon = Daemon::start().await;
    let big = "x".repeat(17 * 1024 * 1024);
    let err = daemon
        .client
        .put_project(
            "shop",
            &composure_api::PutProject::new(
                json!({"name": "shop", "services": {}, "pad": big}),
                "/srv/app".into(),
                Vec::new(),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(413), "{err}");
    assert!(err.to_string().contains("over 16 MiB"), "{err}");
    daemon.stop().await;
}

/// A replay longer than a page (256 events) comes whole, in order and none twice, and a
/// follower goes on with live events from where the pages ended.
#[tokio::test(start_paused = true)]
async fn a_long_event_replay_comes_in_pages_in_order() {
    let daemon = Daemon::start().await;
    let yaml = "
services:
  web:
    image: demo
    deploy:
      replicas: 80
";
    daemon.up("big", yaml).await;
    daemon.wait_running("big").await;
    let all = EventsQuery {
        project: Some("big".into()),
        since: None,
        follow: false,
    };
    let events: Vec<_> = daemon
        .client
        .events(&all)
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(events.len() > 300, "{} events", events.len());
    assert!(events.windows(2).all(|w| w[0].revision < w[1].revision));
    // From the middle of a page.
    let from = events[100].revision;
    let rest: Vec<_> = daemon
        .client
        .events(&EventsQuery {
            since: Some(from),
            ..all.clone()
        })
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rest.len(), events.len() - 101);
    assert_eq!(rest[0].revision, events[101].revision);

    let follow = EventsQuery {
        follow: true,
        ..all
    };
    let mut stream = daemon.client.events(&follow).await.unwrap();
    let mut seen = 0;
    while seen < events.len() {
        stream.next().await.unwrap().unwrap();
        seen += 1;
    }
    let status = daemon.status("big").await;
    daemon
        .sim
        .crash(&container_id(running(&status, "web", 7).unwrap()), 1)
        .unwrap();
    let next = tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .expect("a live event")
        .unwrap()
        .unwrap();
    assert!(next.revision > events.last().unwrap().revision);
    daemon.stop().await;
}

/// The ids of the project's running containers, sorted.
async fn running_ids(daemon: &Daemon, project: &str) -> Vec<String> {
    let mut ids: Vec<String> = daemon
        .containers(project)
        .await
        .into_iter()
        .filter(|c| c.status == composure_runtime::ContainerStatus::Running)
        .map(|c| c.id)
        .collect();
    ids.sort();
    ids
}

fn remove_store(dir: &std::path::Path) {
    for name in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(dir.join("data").join(name));
    }
}

/// Issue 14, item 3: with `state.db` deleted, every running container was removed
/// ("belongs to no task") before any replacement was created.
#[tokio::test(start_paused = true)]
async fn a_lost_store_adopts_the_running_containers_instead_of_replacing_them() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    daemon.wait_running("shop").await;
    let before = running_ids(&daemon, "shop").await;
    assert_eq!(before.len(), 3);
    let (dir, sim) = daemon.stop().await;
    remove_store(dir.path());

    let daemon = Daemon::start_on(dir, sim).await;
    daemon.up("shop", SHOP).await;
    let status = daemon.wait_running("shop").await;
    assert_eq!(
        running_ids(&daemon, "shop").await,
        before,
        "a container was replaced"
    );
    assert_eq!(current(&status, "web").len(), 2);
    let events = daemon.events("shop").await;
    let adopted = events
        .iter()
        .filter(|e| e.kind == "adopted" && e.task.is_some())
        .count();
    assert_eq!(adopted, 3, "{events:?}");
    assert!(!events.iter().any(|e| e.kind == "removed"), "{events:?}");
    daemon.stop().await;
}

fn copy_store(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["state.db", "state.db-wal", "state.db-shm"] {
        if from.join(name).exists() {
            std::fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }
}

/// An older backup put back: its task whose container ended is replaced by the container
/// of the task it never knew, which is adopted; nothing is recreated.
#[tokio::test(start_paused = true)]
async fn a_restored_backup_adopts_the_containers_it_does_not_know() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    daemon.wait_running("shop").await;
    let (dir, sim) = daemon.stop().await;
    let data = dir.path().join("data");
    let backup = dir.path().join("backup");
    copy_store(&data, &backup);

    // After the backup, web's slot 1 crashes and a new task takes it.
    let daemon = Daemon::start_on(dir, sim).await;
    let status = daemon.wait_running("shop").await;
    let old = running(&status, "web", 1).unwrap().clone();
    daemon.sim.crash(&container_id(&old), 1).unwrap();
    let status = daemon
        .wait_status("shop", "slot 1 to run a new task", |s| {
            running(s, "web", 1).is_some_and(|t| t.id != old.id)
        })
        .await;
    let new = running(&status, "web", 1).unwrap().clone();
    let before = running_ids(&daemon, "shop").await;
    let (dir, sim) = daemon.stop().await;

    remove_store(dir.path());
    copy_store(&backup, &data);
    let daemon = Daemon::start_on(dir, sim).await;
    let status = daemon
        .wait_status("shop", "slot 1 to run the adopted task", |s| {
            running(s, "web", 1).is_some_and(|t| t.id == new.id)
        })
        .await;
    assert_eq!(
        running(&status, "web", 1).unwrap().container_id,
        new.container_id
    );
    let status = daemon.wait_running("shop").await;
    assert_eq!(current(&status, "web").len(), 2);
    assert_eq!(
        running_ids(&daemon, "shop").await,
        before,
        "a container was replaced"
    );
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn up_of_named_services_changes_those_and_leaves_the_others_running() {
    let daemon = Daemon::start().await;
    daemon.up("shop", SHOP).await;
    let before = daemon.wait_running("shop").await;
    let web_ids: Vec<String> = current(&before, "web")
        .iter()
        .map(|t| t.id.clone())
        .collect();

    // `up db` with a changed db: the body holds db only (the loader's service selection).
    let only_db = "
services:
  db:
    image: demo
    environment:
      VERSION: \"2\"
";
    let response = daemon
        .client
        .put_services("shop", &harness::project("shop", only_db))
        .await
        .unwrap();
    assert_eq!(response.changed_services, ["db"]);
    let after = daemon
        .wait_status("shop", "db replaced", |s| {
            s.observed_revision >= response.revision
                && s.status == ProjectState::Running
                && current(s, "db").len() == 1
                && current(s, "db")[0].state == TaskState::Running
        })
        .await;
    let still: Vec<String> = current(&after, "web")
        .iter()
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(still, web_ids, "web was left alone");

    // On a project that does not exist yet, only the named services are stored.
    let response = daemon
        .client
        .put_services("fresh", &harness::project("fresh", only_db))
        .await
        .unwrap();
    assert_eq!(response.changed_services, ["db"]);
}

/// Issue 13: `down` stopped containers one after another, so 11 that ignore SIGTERM took
/// 11 stop graces. Now each dependency level stops at once, dependents first: three web
/// replicas that ignore the signal take one grace (virtual time), and db outlives them.
#[tokio::test(start_paused = true)]
async fn down_stops_each_dependency_level_at_once_dependents_first() {
    const LEVELS: &str = "
services:
  db:
    image: demo
    stop_grace_period: 30s
  web:
    image: demo
    stop_grace_period: 30s
    depends_on: [db]
    deploy:
      replicas: 3
";
    let daemon = Daemon::start().await;
    daemon.up("levels", LEVELS).await;
    let status = daemon.wait_running("levels").await;
    for task in &status.tasks {
        daemon
            .sim
            .ignore_stop_signal(&container_id(task))
            .expect("stubborn");
    }
    let service_of = |c: &composure_runtime::ContainerInfo| {
        c.labels
            .get(composure_core::labels::SERVICE)
            .cloned()
            .unwrap_or_default()
    };
    let started = tokio::time::Instant::now();
    daemon
        .client
        .delete_project("levels", false)
        .await
        .expect("down");
    loop {
        let left = daemon.sim.containers();
        if left.iter().all(|c| service_of(c) != "web") {
            assert!(
                left.iter().any(|c| service_of(c) == "db"),
                "db went before its dependents"
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let web_stopped = started.elapsed();
    assert!(
        web_stopped < std::time::Duration::from_secs(45),
        "three replicas that ignore SIGTERM stopped in {web_stopped:?}: one after another"
    );
    daemon.stop().await;
}
