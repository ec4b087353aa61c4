use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use composure_compose::loader::{LoadOptions, load_with};
use composure_compose::model::Project;
use composure_compose::source::MemorySource;
use composure_core::{Health, labels};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};

use super::SimRuntime;
use crate::{
    ContainerSpec, ContainerStatus, EventKind, LogLine, LogOptions, LogStream, Runtime,
    RuntimeError, RuntimeEvent,
};

const GRACE: Duration = Duration::from_secs(10);

fn project() -> Arc<Project> {
    let yaml = r#"
services:
  web:
    image: web:1
  checked:
    image: web:1
    healthcheck:
      test: ["CMD", "true"]
  unchecked:
    image: web:1
    healthcheck:
      disable: true
  built:
    build: .
  stateful:
    image: web:1
    volumes: [data:/data]
volumes:
  data:
"#;
    let source = MemorySource::new().with("/p/compose.yaml", yaml);
    let mut options = LoadOptions::new("/p");
    options.project_name = Some("app".into());
    Arc::new(load_with(&options, &source).unwrap().project)
}

fn spec(project: &Arc<Project>, service: &str, slot: u32) -> ContainerSpec {
    ContainerSpec::new(
        format!("app-{service}-{slot}"),
        project.clone(),
        service,
        "web:1".into(),
        [
            (labels::MANAGED.to_owned(), "true".to_owned()),
            (labels::PROJECT.to_owned(), "app".to_owned()),
        ]
        .into_iter()
        .collect(),
    )
}

/// A simulator with the project's default network, and the project.
async fn setup() -> (SimRuntime, Arc<Project>) {
    let sim = SimRuntime::with_clock(|| 1_000);
    let project = project();
    sim.ensure_network(&project, "default").await.unwrap();
    (sim, project)
}

async fn running(sim: &SimRuntime, project: &Arc<Project>, service: &str, slot: u32) -> String {
    let id = sim.create(&spec(project, service, slot)).await.unwrap();
    sim.start(&id).await.unwrap();
    id
}

async fn status(sim: &SimRuntime, id: &str) -> ContainerStatus {
    sim.inspect(id).await.unwrap().unwrap().status
}

/// The events already delivered (the simulator publishes synchronously).
fn drain(stream: &mut BoxStream<'static, crate::Result<RuntimeEvent>>) -> Vec<EventKind> {
    let mut kinds = Vec::new();
    while let Some(Some(event)) = stream.next().now_or_never() {
        kinds.push(event.unwrap().kind);
    }
    kinds
}

#[tokio::test]
async fn containers_get_sequential_ids_and_follow_their_life() {
    let (sim, project) = setup().await;
    let mut events = sim.events();
    let first = sim.create(&spec(&project, "web", 1)).await.unwrap();
    let second = sim.create(&spec(&project, "web", 2)).await.unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("sim-1", "sim-2"));
    assert_eq!(status(&sim, &first).await, ContainerStatus::Created);

    sim.start(&first).await.unwrap();
    let info = sim.inspect(&first).await.unwrap().unwrap();
    assert_eq!(info.status, ContainerStatus::Running);
    assert_eq!(info.started_at, Some(1_000));
    assert_eq!(
        info.addresses.get("app_default").map(String::as_str),
        Some("10.0.1.2")
    );

    sim.stop(&first, GRACE).await.unwrap();
    let info = sim.inspect("app-web-1").await.unwrap().unwrap();
    assert_eq!(
        info.status,
        ContainerStatus::Exited {
            code: 0,
            oom_killed: false
        }
    );
    assert_eq!(info.finished_at, Some(1_000));
    assert!(info.addresses.is_empty());

    sim.remove(&first).await.unwrap();
    assert_eq!(sim.inspect(&first).await.unwrap(), None);
    assert_eq!(
        drain(&mut events),
        [
            EventKind::Created,
            EventKind::Created,
            EventKind::Started,
            EventKind::Died { exit_code: 0 },
            EventKind::Stopped,
            EventKind::Destroyed,
        ]
    );
}

#[tokio::test]
async fn a_health_check_reports_starting_until_the_test_says_otherwise() {
    let (sim, project) = setup().await;
    let mut events = sim.events();
    let checked = running(&sim, &project, "checked", 1).await;
    let disabled = running(&sim, &project, "unchecked", 1).await;
    let plain = running(&sim, &project, "web", 1).await;
    let health = |id: String| {
        let sim = sim.clone();
        async move { sim.inspect(&id).await.unwrap().unwrap().health }
    };
    assert_eq!(health(checked.clone()).await, Health::Starting);
    assert_eq!(health(disabled).await, Health::None);
    assert_eq!(health(plain).await, Health::None);
    drain(&mut events);

    sim.set_health(&checked, Health::Unhealthy).unwrap();
    sim.set_health(&checked, Health::Unhealthy).unwrap();
    assert_eq!(health(checked.clone()).await, Health::Unhealthy);
    assert_eq!(
        drain(&mut events),
        [EventKind::HealthChanged(Health::Unhealthy)]
    );
    assert!(matches!(
        sim.set_health("nope", Health::Healthy),
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn crash_and_oom_end_a_running_container() {
    let (sim, project) = setup().await;
    let mut events = sim.events();
    let crashed = running(&sim, &project, "web", 1).await;
    let killed = running(&sim, &project, "web", 2).await;
    drain(&mut events);

    sim.crash(&crashed, 2).unwrap();
    assert_eq!(
        status(&sim, &crashed).await,
        ContainerStatus::Exited {
            code: 2,
            oom_killed: false
        }
    );
    sim.oom(&killed).unwrap();
    assert_eq!(
        status(&sim, &killed).await,
        ContainerStatus::Exited {
            code: 137,
            oom_killed: true
        }
    );
    assert_eq!(
        drain(&mut events),
        [
            EventKind::Died { exit_code: 2 },
            EventKind::OutOfMemory,
            EventKind::Died { exit_code: 137 },
        ]
    );
    assert!(matches!(
        sim.crash(&crashed, 1),
        Err(RuntimeError::Conflict(_))
    ));
    assert!(matches!(
        sim.crash("nope", 1),
        Err(RuntimeError::NotFound(_))
    ));

    // An exited container can be started again, like an engine's.
    sim.start(&crashed).await.unwrap();
    assert_eq!(status(&sim, &crashed).await, ContainerStatus::Running);
}

#[tokio::test]
async fn remove_by_hand_kills_and_removes() {
    let (sim, project) = setup().await;
    let mut events = sim.events();
    let id = running(&sim, &project, "web", 1).await;
    drain(&mut events);
    sim.remove_by_hand(&id).unwrap();
    assert_eq!(sim.inspect(&id).await.unwrap(), None);
    assert_eq!(
        drain(&mut events),
        [EventKind::Died { exit_code: 137 }, EventKind::Destroyed]
    );
    assert!(matches!(
        sim.remove_by_hand(&id),
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn fail_next_create_fails_exactly_one_create() {
    let (sim, project) = setup().await;
    sim.fail_next_create(RuntimeError::Other("disk full".into()));
    let error = sim.create(&spec(&project, "web", 1)).await.unwrap_err();
    assert_eq!(error.to_string(), "disk full");
    assert!(sim.containers().is_empty());
    sim.create(&spec(&project, "web", 1)).await.unwrap();
}

#[tokio::test]
async fn images_exist_unless_said_missing() {
    let (sim, project) = setup().await;
    assert_eq!(sim.ensure_image(&project, "web").await.unwrap(), "web:1");
    assert_eq!(
        sim.ensure_image(&project, "built").await.unwrap(),
        "app-built"
    );

    sim.set_image_missing("web:1");
    sim.set_image_missing("app-built");
    assert!(matches!(
        sim.ensure_image(&project, "web").await,
        Err(RuntimeError::ImageMissing { ref image, .. }) if image == "web:1"
    ));
    assert!(matches!(
        sim.ensure_image(&project, "built").await,
        Err(RuntimeError::Build { ref service, .. }) if service == "built"
    ));
    assert!(matches!(
        sim.create(&spec(&project, "web", 1)).await,
        Err(RuntimeError::ImageMissing { .. })
    ));

    sim.set_image_present("web:1");
    assert_eq!(sim.ensure_image(&project, "web").await.unwrap(), "web:1");
    assert!(matches!(
        sim.ensure_image(&project, "nope").await,
        Err(RuntimeError::InvalidSpec(_))
    ));
}

#[tokio::test]
async fn while_the_engine_is_down_every_call_fails_and_streams_end() {
    let (sim, project) = setup().await;
    let id = running(&sim, &project, "web", 1).await;
    let mut events = sim.events();
    let mut follow = sim.logs(&id, &LogOptions::following());

    sim.engine_down(true);
    assert!(matches!(
        sim.ping().await,
        Err(RuntimeError::Unavailable(_))
    ));
    assert!(matches!(
        sim.list(None).await,
        Err(RuntimeError::Unavailable(_))
    ));
    assert!(matches!(
        sim.start(&id).await,
        Err(RuntimeError::Unavailable(_))
    ));
    assert!(matches!(
        sim.remove(&id).await,
        Err(RuntimeError::Unavailable(_))
    ));
    let error = events.next().await.unwrap().unwrap_err();
    assert!(error.is_transient());
    assert!(events.next().await.is_none(), "the event stream ends");
    assert!(follow.next().await.is_none(), "the log stream ends");
    let mut late = sim.events();
    assert!(late.next().await.unwrap().is_err());
    assert!(late.next().await.is_none());
    assert!(
        sim.logs(&id, &LogOptions::history())
            .next()
            .await
            .unwrap()
            .is_err()
    );

    sim.engine_down(false);
    sim.ping().await.unwrap();
    assert_eq!(
        status(&sim, &id).await,
        ContainerStatus::Running,
        "containers outlive the outage"
    );
}

#[tokio::test]
async fn logs_honour_tail_and_follow() {
    let (sim, project) = setup().await;
    let id = running(&sim, &project, "web", 1).await;
    for n in 1..=3 {
        sim.emit_log(&id, &format!("line {n}")).unwrap();
    }
    sim.emit_stderr(&id, "oops").unwrap();

    let text = |lines: Vec<crate::Result<LogLine>>| -> Vec<String> {
        lines.into_iter().map(|l| l.unwrap().text).collect()
    };
    assert_eq!(
        text(sim.logs(&id, &LogOptions::history()).collect().await),
        ["line 1", "line 2", "line 3", "oops"]
    );
    let tail: Vec<_> = sim.logs(&id, &LogOptions::tail(2)).collect().await;
    assert_eq!(tail[1].as_ref().unwrap().stream, LogStream::Stderr);
    assert_eq!(text(tail), ["line 3", "oops"]);
    assert!(
        sim.logs(&id, &LogOptions::tail(0))
            .collect::<Vec<_>>()
            .await
            .is_empty()
    );

    // Follow: new lines arrive as they are written; the stream ends when the container does.
    let mut follow = sim.logs(&id, &LogOptions::following_tail(0));
    let writer = {
        let sim = sim.clone();
        let id = id.clone();
        tokio::spawn(async move {
            sim.emit_log(&id, "later").unwrap();
            sim.crash(&id, 0).unwrap();
        })
    };
    assert_eq!(follow.next().await.unwrap().unwrap().text, "later");
    assert!(follow.next().await.is_none());
    writer.await.unwrap();

    assert!(matches!(
        sim.logs("nope", &LogOptions::history()).next().await,
        Some(Err(RuntimeError::NotFound(_)))
    ));
    assert!(matches!(
        sim.emit_log("nope", "x"),
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn the_clock_dates_starts_and_exits() {
    let now = Arc::new(AtomicU64::new(5));
    let sim = {
        let now = now.clone();
        SimRuntime::with_clock(move || now.load(Ordering::SeqCst))
    };
    let project = project();
    sim.ensure_network(&project, "default").await.unwrap();
    let id = running(&sim, &project, "web", 1).await;
    now.store(9, Ordering::SeqCst);
    sim.crash(&id, 1).unwrap();
    let info = sim.inspect(&id).await.unwrap().unwrap();
    assert_eq!((info.started_at, info.finished_at), (Some(5), Some(9)));
}

#[tokio::test]
async fn clones_share_one_engine() {
    let (sim, project) = setup().await;
    let other = sim.clone();
    let id = running(&sim, &project, "web", 1).await;
    other.crash(&id, 4).unwrap();
    assert_eq!(
        status(&sim, &id).await,
        ContainerStatus::Exited {
            code: 4,
            oom_killed: false
        }
    );
}

#[tokio::test]
async fn networks_in_use_by_running_containers_are_kept() {
    let (sim, project) = setup().await;
    let id = running(&sim, &project, "web", 1).await;
    assert!(matches!(
        sim.remove_network("app_default").await,
        Err(RuntimeError::Conflict(_))
    ));
    sim.stop(&id, GRACE).await.unwrap();
    sim.remove_network("app_default").await.unwrap();
    assert!(sim.networks().is_empty());
    assert!(matches!(
        sim.start(&id).await,
        Err(RuntimeError::NotFound(_))
    ));
}

#[tokio::test]
async fn named_volumes_are_created_with_the_container_like_docker_does() {
    let (sim, project) = setup().await;
    let mut stateful = spec(&project, "stateful", 1);
    stateful.name = "app-stateful-1".into();
    sim.create(&stateful).await.unwrap();
    assert_eq!(sim.volumes(), ["app_data"]);
    assert!(matches!(
        sim.remove_volume("app_data").await,
        Err(RuntimeError::Conflict(_))
    ));
}

#[tokio::test]
async fn a_service_on_an_undefined_service_is_invalid() {
    let (sim, project) = setup().await;
    let mut bad = spec(&project, "web", 1);
    bad.service = "nope".into();
    assert!(matches!(
        sim.create(&bad).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    assert!(matches!(
        sim.ensure_network(&project, "nope").await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    assert!(matches!(
        sim.ensure_volume(&project, "nope").await,
        Err(RuntimeError::InvalidSpec(_))
    ));
}

#[tokio::test]
async fn composure_s_identity_labels_win_over_the_caller_s() {
    let (sim, project) = setup().await;
    let mut odd = spec(&project, "web", 1);
    odd.labels
        .insert(labels::PROJECT.to_owned(), "elsewhere".to_owned());
    odd.labels.insert(labels::SLOT.to_owned(), "1".to_owned());
    let id = sim.create(&odd).await.unwrap();
    let info = sim.inspect(&id).await.unwrap().unwrap();
    let label = |key: &str| info.labels.get(key).map(String::as_str);
    assert_eq!(label(labels::MANAGED), Some("true"));
    assert_eq!(label(labels::PROJECT), Some("app"));
    assert_eq!(label(labels::SERVICE), Some("web"));
    assert_eq!(label(labels::COMPOSE_PROJECT), Some("app"));
    assert_eq!(
        label(labels::SLOT),
        Some("1"),
        "the caller's other labels are kept"
    );
}

#[tokio::test]
async fn containers_created_outside_composure_are_left_alone() {
    let (sim, _project) = setup().await;
    let mut events = sim.events();
    let labels = [(labels::PROJECT.to_owned(), "app".to_owned())]
        .into_iter()
        .collect();
    let id = sim.create_unmanaged("by-hand", labels).unwrap();
    assert_eq!(sim.inspect(&id).await.unwrap(), None);
    assert!(sim.list(None).await.unwrap().is_empty());
    assert!(matches!(
        sim.stop(&id, GRACE).await,
        Err(RuntimeError::Other(_))
    ));
    assert!(matches!(sim.remove(&id).await, Err(RuntimeError::Other(_))));
    assert_eq!(sim.containers().len(), 1, "it is still there");
    sim.remove_by_hand(&id).unwrap();
    assert!(sim.containers().is_empty());
    assert!(
        drain(&mut events).is_empty(),
        "unmanaged containers cause no events"
    );
}

#[tokio::test]
async fn a_missing_network_fails_the_start_and_a_missing_external_one_is_invalid() {
    let sim = SimRuntime::new();
    let project = project();
    let id = sim.create(&spec(&project, "web", 1)).await.unwrap();
    assert!(matches!(
        sim.start(&id).await,
        Err(RuntimeError::NotFound(_))
    ));

    let yaml = "services: {web: {image: x}}\n\
                networks: {ext: {external: true}}\n\
                volumes: {ext: {external: true}}\n";
    let source = MemorySource::new().with("/q/compose.yaml", yaml);
    let mut options = LoadOptions::new("/q");
    options.project_name = Some("q".into());
    let external = load_with(&options, &source).unwrap().project;
    assert!(matches!(
        sim.ensure_network(&external, "ext").await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    assert!(matches!(
        sim.ensure_volume(&external, "ext").await,
        Err(RuntimeError::InvalidSpec(_))
    ));
}
