//! The Docker runtime against the real engine. A missing engine fails these tests.
//!
//! Every test uses its own project (`t-<test>-<pid>`) and a [`Cleanup`] guard that removes
//! what the project left, whether the test passed or not.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptions;
use composure_core::{Health, labels};
use composure_runtime::{
    ContainerStatus, EventKind, LogOptions, LogStream, Runtime, RuntimeError, RuntimeEvent,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use support::{
    Cleanup, eventually, load_project, load_project_with, project_name, run, runtime, spec,
    test_image, wait_container,
};

async fn bollard() -> Docker {
    Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

fn server_api_version() -> String {
    let out = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn ping_negotiates_the_engine_api_version() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path()).await;
    let server = server_api_version();
    assert!(!server.is_empty(), "docker version names the server's API");
    assert_eq!(
        rt.api_version(),
        server,
        "the client speaks the engine's version"
    );
    let info = rt.ping().await.unwrap();
    assert_eq!(info.name, "Docker Engine");
    assert!(info.version.contains(&format!("API {server}")), "{info:?}");
}

#[tokio::test]
async fn an_engine_that_does_not_answer_is_unavailable() {
    let missing = composure_docker::DockerRuntime::connect_to("unix:///nonexistent/docker.sock")
        .await
        .unwrap_err();
    assert!(matches!(missing, RuntimeError::Unavailable(_)), "{missing}");
    // A path that exists but where no engine listens.
    let dir = tempfile::tempdir().unwrap();
    let not_a_socket = dir.path().join("docker.sock");
    std::fs::write(&not_a_socket, "").unwrap();
    let silent =
        composure_docker::DockerRuntime::connect_to(&format!("unix://{}", not_a_socket.display()))
            .await
            .unwrap_err();
    assert!(matches!(silent, RuntimeError::Unavailable(_)), "{silent}");
}

#[tokio::test]
async fn web_with_a_healthcheck_becomes_healthy() {
    let name = project_name("health");
    let _cleanup = Cleanup::new(&name);
    let (project, dir) = load_project(
        &name,
        r#"
services:
  web:
    image: composure-test:latest
    command: ["web", "--port", "8080"]
    environment:
      READY_AFTER_SECS: "1"
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 500ms
      timeout: 2s
      retries: 3
      start_period: 5s
"#,
    );
    let rt = runtime(dir.path()).await;
    let id = run(&rt, &project, "web", 1).await;
    let info = wait_container(&rt, &id, "web to be healthy", |i| {
        i.health == Health::Healthy
    })
    .await;
    assert_eq!(info.status, ContainerStatus::Running);
    assert_eq!(info.name, format!("{name}-web-1"));
    assert_eq!(info.image, test_image());
    assert!(info.started_at.is_some());
    assert_eq!(info.finished_at, None);
    assert!(
        info.addresses.contains_key(&format!("{name}_default")),
        "{:?}",
        info.addresses
    );
    assert_eq!(info.labels[labels::MANAGED], "true");
    assert_eq!(info.labels[labels::SLOT], "1");
    let listed = rt.list(Some(&name)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].health, Health::Healthy);
}

/// Subscribes to events and returns once the stream is known to be live: a canary
/// container's creation has come through it.
async fn live_events(
    rt: &composure_docker::DockerRuntime,
    project: &std::sync::Arc<composure_compose::model::Project>,
    service: &str,
) -> mpsc::UnboundedReceiver<RuntimeEvent> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut events = rt.events();
    tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    let canary = rt
        .create(&spec(project, service, 99, test_image()))
        .await
        .unwrap();
    eventually("the canary's create event", Duration::from_secs(30), || {
        let seen = std::iter::from_fn(|| rx.try_recv().ok())
            .any(|e| e.container_id == canary && e.kind == EventKind::Created);
        async move { seen.then_some(()) }
    })
    .await;
    rt.remove(&canary).await.unwrap();
    rx
}

#[tokio::test]
async fn events_report_start_health_and_death_with_the_exit_code() {
    let name = project_name("events");
    let _cleanup = Cleanup::new(&name);
    let (project, dir) = load_project(
        &name,
        r#"
services:
  web:
    image: composure-test:latest
    command: ["web", "--port", "8080"]
    environment:
      FAIL_AFTER_SECS: "5"
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 500ms
"#,
    );
    let rt = runtime(dir.path()).await;
    let mut rx = live_events(&rt, &project, "web").await;
    let id = run(&rt, &project, "web", 1).await;

    let mut kinds = Vec::new();
    let died = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = rx.recv().await {
            if event.container_id != id {
                continue;
            }
            assert_eq!(event.labels[labels::PROJECT], name);
            kinds.push(event.kind.clone());
            if let EventKind::Died { exit_code } = event.kind {
                return exit_code;
            }
        }
        panic!("the event stream ended")
    })
    .await
    .expect("the container dies within a minute");
    assert_eq!(died, 1, "FAIL_AFTER_SECS exits with status 1");
    assert_eq!(kinds.first(), Some(&EventKind::Created), "{kinds:?}");
    assert!(kinds.contains(&EventKind::Started), "{kinds:?}");
    assert!(
        kinds.contains(&EventKind::HealthChanged(Health::Healthy)),
        "{kinds:?}"
    );

    let info = wait_container(&rt, &id, "the exit to be recorded", |i| {
        matches!(i.status, ContainerStatus::Exited { .. })
    })
    .await;
    assert_eq!(
        info.status,
        ContainerStatus::Exited {
            code: 1,
            oom_killed: false
        }
    );
    assert!(info.finished_at.is_some());
}

#[tokio::test]
async fn stop_honours_the_grace_period_then_remove_forgets() {
    let name = project_name("stop");
    let _cleanup = Cleanup::new(&name);
    let (project, dir) = load_project(
        &name,
        r#"
services:
  web:
    image: composure-test:latest
    command: ["web"]
    stop_signal: SIGTERM
    stop_grace_period: 10s
"#,
    );
    let rt = runtime(dir.path()).await;
    let mut rx = live_events(&rt, &project, "web").await;
    let id = run(&rt, &project, "web", 1).await;
    // Running is not enough: until demo-app has installed its handler, SIGTERM to PID 1
    // is ignored (a loaded machine stretches that moment). It has once it listens.
    eventually("web's start-up line", Duration::from_secs(30), || async {
        let lines: Vec<_> = rt.logs(&id, &LogOptions::history()).collect().await;
        lines
            .into_iter()
            .filter_map(Result::ok)
            .find(|l| l.text.contains("listening on port"))
    })
    .await;

    rt.stop(&id, Duration::from_secs(10)).await.unwrap();
    let info = rt.inspect(&id).await.unwrap().unwrap();
    assert_eq!(
        info.status,
        ContainerStatus::Exited {
            code: 0,
            oom_killed: false
        },
        "demo-app exits 0 on SIGTERM, well within the grace period (no kill)"
    );
    rt.remove(&id).await.unwrap();
    assert_eq!(rt.inspect(&id).await.unwrap(), None);
    rt.remove(&id)
        .await
        .expect("removing a missing container succeeds");
    assert!(matches!(
        rt.stop(&id, Duration::from_secs(1)).await,
        Err(RuntimeError::NotFound(_))
    ));

    let mut kinds = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = rx.recv().await {
            if event.container_id == id {
                kinds.push(event.kind.clone());
                if event.kind == EventKind::Destroyed {
                    return;
                }
            }
        }
    })
    .await
    .expect("the destroy event arrives");
    assert!(kinds.contains(&EventKind::Stopped), "{kinds:?}");
}

#[tokio::test]
async fn list_filters_by_project_and_never_shows_unmanaged_containers() {
    let one = project_name("list-one");
    let two = project_name("list-two");
    let _cleanup = (Cleanup::new(&one), Cleanup::new(&two));
    let yaml = "services:\n  web:\n    image: composure-test:latest\n";
    let (p1, dir) = load_project(&one, yaml);
    let (p2, _dir2) = load_project(&two, yaml);
    let rt = runtime(dir.path()).await;
    for project in [&p1, &p2] {
        rt.ensure_network(project, "default").await.unwrap();
    }
    let a = rt.create(&spec(&p1, "web", 1, test_image())).await.unwrap();
    let b = rt.create(&spec(&p1, "web", 2, test_image())).await.unwrap();
    let c = rt.create(&spec(&p2, "web", 1, test_image())).await.unwrap();

    // A container that looks like the project's but lacks the managed label.
    let docker = bollard().await;
    let stranger = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(format!("{one}-stranger")),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(test_image().to_string()),
                labels: Some(HashMap::from([(labels::PROJECT.to_string(), one.clone())])),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;

    let mut ids: Vec<String> = rt
        .list(Some(&one))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    ids.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(ids, want);
    let all: Vec<String> = rt
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert!(all.contains(&c) && all.contains(&a) && !all.contains(&stranger));
    for info in rt.list(Some(&one)).await.unwrap() {
        assert_eq!(info.status, ContainerStatus::Created);
    }

    assert_eq!(rt.inspect(&stranger).await.unwrap(), None);
    assert!(rt.remove(&stranger).await.is_err(), "not ours: refused");
    assert!(rt.stop(&stranger, Duration::from_secs(1)).await.is_err());
    assert!(
        docker.inspect_container(&stranger, None).await.is_ok(),
        "the stranger is still there"
    );
}

#[tokio::test]
async fn networks_aliases_and_shared_namespaces_connect_services() {
    let name = project_name("net");
    let _cleanup = Cleanup::new(&name);
    let missing = format!("t-missing-net-{}", std::process::id());
    let (project, dir) = load_project(
        &name,
        &format!(
            r#"
services:
  kv:
    image: composure-test:latest
    command: ["kv", "--port", "6379"]
    networks:
      default: {{}}
      back:
        aliases: [cache]
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "tcp", "127.0.0.1:6379"]
      interval: 500ms
  by-name:
    image: composure-test:latest
    command: ["probe", "tcp", "kv:6379"]
    networks: [back]
  by-alias:
    image: composure-test:latest
    command: ["probe", "tcp", "cache:6379"]
    networks: [back]
  shared:
    image: composure-test:latest
    command: ["probe", "tcp", "127.0.0.1:6379"]
    network_mode: "service:kv"
  outside:
    image: composure-test:latest
    networks: [ext]
networks:
  back: {{}}
  ext:
    external: true
    name: {missing}
"#
        ),
    );
    let rt = runtime(dir.path()).await;
    for key in ["default", "back"] {
        rt.ensure_network(&project, key).await.unwrap();
        rt.ensure_network(&project, key).await.expect("idempotent");
    }
    let err = rt.ensure_network(&project, "ext").await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::InvalidSpec(m) if m.contains(&missing) && m.contains("external")),
        "{err}"
    );

    let kv = run(&rt, &project, "kv", 1).await;
    let info = wait_container(&rt, &kv, "kv to be healthy", |i| {
        i.health == Health::Healthy
    })
    .await;
    for network in [format!("{name}_default"), format!("{name}_back")] {
        assert!(
            info.addresses.contains_key(&network),
            "{:?}",
            info.addresses
        );
    }
    for service in ["by-name", "by-alias", "shared"] {
        let id = rt
            .create(&spec(&project, service, 1, test_image()))
            .await
            .unwrap();
        rt.start(&id).await.unwrap();
        let done = wait_container(&rt, &id, "the probe to finish", |i| {
            matches!(i.status, ContainerStatus::Exited { .. })
        })
        .await;
        assert_eq!(
            done.status,
            ContainerStatus::Exited {
                code: 0,
                oom_killed: false
            },
            "{service} reaches kv"
        );
    }
    rt.remove(&kv).await.unwrap();
    rt.remove_network(&format!("{name}_back")).await.unwrap();
    rt.remove_network(&format!("{name}_back"))
        .await
        .expect("missing is fine");
}

#[tokio::test]
async fn named_volumes_are_project_scoped_and_labelled() {
    let name = project_name("vol");
    let _cleanup = Cleanup::new(&name);
    let missing = format!("t-missing-vol-{}", std::process::id());
    let (project, dir) = load_project(
        &name,
        &format!(
            r#"
services:
  kv:
    image: composure-test:latest
    command: ["kv", "--port", "6379", "--data", "/data"]
    volumes: ["data:/data"]
volumes:
  data: {{}}
  ext:
    external: true
    name: {missing}
"#
        ),
    );
    let rt = runtime(dir.path()).await;
    let err = rt.ensure_volume(&project, "ext").await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::InvalidSpec(m) if m.contains(&missing)),
        "{err}"
    );

    rt.ensure_network(&project, "default").await.unwrap();
    rt.ensure_volume(&project, "data").await.unwrap();
    rt.ensure_volume(&project, "data")
        .await
        .expect("idempotent");
    let volume_name = format!("{name}_data");
    let docker = bollard().await;
    let volume = docker.inspect_volume(&volume_name).await.unwrap();
    assert_eq!(volume.labels[labels::MANAGED], "true");
    assert_eq!(volume.labels[labels::COMPOSE_PROJECT], name);
    assert_eq!(volume.labels["com.docker.compose.volume"], "data");

    let id = rt
        .create(&spec(&project, "kv", 1, test_image()))
        .await
        .unwrap();
    rt.start(&id).await.unwrap();
    let mounts = docker
        .inspect_container(&id, None)
        .await
        .unwrap()
        .mounts
        .unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m.name.as_deref() == Some(volume_name.as_str())
                && m.destination.as_deref() == Some("/data")),
        "{mounts:?}"
    );
    assert!(
        matches!(
            rt.remove_volume(&volume_name).await,
            Err(RuntimeError::Conflict(_))
        ),
        "a volume in use is a conflict"
    );
    rt.remove(&id).await.unwrap();
    rt.remove_volume(&volume_name).await.unwrap();
    assert!(docker.inspect_volume(&volume_name).await.is_err());
    rt.remove_volume(&volume_name)
        .await
        .expect("missing is fine");
}

#[tokio::test]
async fn builds_through_the_engine_and_reuses_an_unchanged_context() {
    let name = project_name("build");
    let _cleanup = Cleanup::new(&name);
    test_image();
    let (project, dir) = load_project(
        &name,
        r#"
services:
  app:
    build:
      context: .
      args:
        GREETING: hello
  ghost:
    image: composure-missing-image:never
  always:
    image: composure-test:latest
    pull_policy: always
  never:
    build: .
    pull_policy: never
"#,
    );
    let ctx = dir.path();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM composure-test:latest\nARG GREETING\nLABEL io.composure.test=${GREETING}\nCOPY payload.txt /payload.txt\n",
    )
    .unwrap();
    std::fs::write(ctx.join("payload.txt"), "v1").unwrap();
    std::fs::write(ctx.join(".dockerignore"), "ignored.txt\n").unwrap();
    std::fs::write(ctx.join("ignored.txt"), "a").unwrap();

    let rt = runtime(dir.path()).await;
    let docker = bollard().await;
    let image_id = |tag: String| {
        let docker = docker.clone();
        async move { docker.inspect_image(&tag).await.unwrap() }
    };
    let tag = rt.ensure_image(&project, "app").await.unwrap();
    assert_eq!(tag, format!("{name}-app"));
    let first = image_id(tag.clone()).await;
    let image_labels = first.config.as_ref().unwrap().labels.clone().unwrap();
    assert_eq!(
        image_labels["io.composure.test"], "hello",
        "build args reach the build"
    );
    assert!(image_labels.contains_key(composure_docker::image::BUILD_HASH));

    assert_eq!(rt.ensure_image(&project, "app").await.unwrap(), tag);
    assert_eq!(
        image_id(tag.clone()).await.id,
        first.id,
        "unchanged context: no rebuild"
    );
    std::fs::write(ctx.join("ignored.txt"), "b").unwrap();
    rt.ensure_image(&project, "app").await.unwrap();
    assert_eq!(
        image_id(tag.clone()).await.id,
        first.id,
        ".dockerignore'd files do not count"
    );
    std::fs::write(ctx.join("payload.txt"), "v2").unwrap();
    rt.ensure_image(&project, "app").await.unwrap();
    assert_ne!(
        image_id(tag.clone()).await.id,
        first.id,
        "a changed file rebuilds"
    );

    let err = rt.ensure_image(&project, "ghost").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RuntimeError::ImageMissing { .. }), "{text}");
    assert!(
        text.contains("`ghost`") && text.contains("registry"),
        "{text}"
    );
    rt.ensure_network(&project, "default").await.unwrap();
    let err = rt
        .create(&spec(&project, "ghost", 1, "composure-missing-image:never"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RuntimeError::ImageMissing { reason, .. } if reason.contains("`ghost`")),
        "{err}"
    );
    let err = rt
        .ensure_image(&project, "always")
        .await
        .unwrap_err()
        .to_string();
    // Nothing can be reached from this machine but loopback: the pull is tried, and fails.
    assert!(
        err.contains("`always`") && err.contains("registry docker.io cannot be reached"),
        "{err}"
    );
    let err = rt.ensure_image(&project, "never").await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImageMissing { .. }), "{err}");

    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM composure-test:latest\nCOPY no-such-file /x\n",
    )
    .unwrap();
    let err = rt.ensure_image(&project, "app").await.unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Build { service, reason }
                 if service == "app" && reason.contains("no-such-file")),
        "{err}"
    );
}

#[tokio::test]
async fn logs_read_back_stdout_and_stderr() {
    let name = project_name("logs");
    let _cleanup = Cleanup::new(&name);
    let (project, dir) = load_project(
        &name,
        r#"
services:
  web:
    image: composure-test:latest
    command: ["web", "--port", "8080"]
  probe:
    image: composure-test:latest
    command: ["probe", "tcp", "web:8080"]
"#,
    );
    let rt = runtime(dir.path()).await;
    let web = run(&rt, &project, "web", 1).await;
    let line = eventually("web's start-up line", Duration::from_secs(30), || async {
        let lines: Vec<_> = rt.logs(&web, &LogOptions::history()).collect().await;
        lines
            .into_iter()
            .filter_map(Result::ok)
            .find(|l| l.text.contains("listening on port 8080"))
    })
    .await;
    assert_eq!(line.stream, LogStream::Stderr);

    let probe = eventually(
        "a probe that reaches web",
        Duration::from_secs(60),
        || async {
            let id = rt
                .create(&spec(&project, "probe", 1, test_image()))
                .await
                .unwrap();
            rt.start(&id).await.unwrap();
            let done = wait_container(&rt, &id, "the probe to finish", |i| {
                matches!(i.status, ContainerStatus::Exited { .. })
            })
            .await;
            if done.status
                == (ContainerStatus::Exited {
                    code: 0,
                    oom_killed: false,
                })
            {
                Some(id)
            } else {
                rt.remove(&id).await.unwrap();
                None
            }
        },
    )
    .await;
    let lines: Vec<_> = rt
        .logs(&probe, &LogOptions::history())
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.stream == LogStream::Stdout && l.text.starts_with("ok:")),
        "{lines:?}"
    );
    let tail: Vec<_> = rt.logs(&web, &LogOptions::tail(1)).collect().await;
    assert_eq!(tail.len(), 1);
}

#[tokio::test]
async fn secrets_configs_and_label_files_reach_the_container() {
    let name = project_name("files");
    let _cleanup = Cleanup::new(&name);
    let (project, dir) = load_project_with(
        &name,
        r#"
services:
  web:
    image: composure-test:latest
    command: ["web"]
    label_file: ./labels.env
    secrets:
      - token
      - source: api
        target: api_key
        mode: 0400
    configs:
      - site
secrets:
  token:
    file: ./token.txt
  api:
    environment: CARGO_PKG_NAME
configs:
  site:
    content: hello
"#,
        &[("token.txt", "t0k3n"), ("labels.env", "team=blue\n")],
    );
    let secrets_dir = dir.path().join("secrets");
    let rt = runtime(&secrets_dir).await;
    let id = run(&rt, &project, "web", 1).await;
    let info = wait_container(&rt, &id, "web to run", |i| {
        i.status == ContainerStatus::Running
    })
    .await;
    assert_eq!(info.labels["team"], "blue");

    let docker = bollard().await;
    let mounts = docker
        .inspect_container(&id, None)
        .await
        .unwrap()
        .mounts
        .unwrap();
    let source = |target: &str| {
        mounts
            .iter()
            .find(|m| m.destination.as_deref() == Some(target))
            .and_then(|m| m.source.clone())
            .unwrap_or_else(|| panic!("nothing at {target}: {mounts:?}"))
    };
    assert_eq!(
        source("/run/secrets/token"),
        dir.path().join("token.txt").display().to_string()
    );
    let api = source("/run/secrets/api_key");
    assert_eq!(std::fs::read_to_string(&api).unwrap(), "composure-docker");
    assert_eq!(
        std::fs::metadata(&api).unwrap().permissions().mode() & 0o777,
        0o400
    );
    assert_eq!(std::fs::read_to_string(source("/site")).unwrap(), "hello");

    rt.remove(&id).await.unwrap();
    assert!(
        !secrets_dir.join(format!("{name}-web-1")).exists(),
        "written files go with the container"
    );
}

/// Faults injected with the docker CLI, as a user would.
struct CliFaults;

#[async_trait::async_trait]
impl composure_runtime::contract::Faults for CliFaults {
    async fn crash(&self, id: &str) -> Result<i64, String> {
        docker_cli(&["kill", "-s", "KILL", id])?;
        Ok(137)
    }

    async fn remove_by_hand(&self, id: &str) -> Result<(), String> {
        docker_cli(&["rm", "-f", id]).map(|_| ())
    }

    async fn create_unmanaged(&self, name: &str, project: &str) -> Result<String, String> {
        let label = format!("io.composure.project={project}");
        docker_cli(&[
            "create",
            "--name",
            name,
            "--label",
            &label,
            test_image(),
            "web",
        ])
    }
}

fn docker_cli(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The runtime contract that the simulator also passes: the fake and the real engine agree.
#[tokio::test]
async fn runtime_contract_holds_against_docker() {
    test_image();
    let secrets = tempfile::tempdir().unwrap();
    let rt = runtime(secrets.path()).await;
    let prefix = project_name("ctr");
    let _guards: Vec<Cleanup> = composure_runtime::contract::CHECKS
        .iter()
        .map(|check| Cleanup::new(&format!("{prefix}-{check}")))
        .chain([Cleanup::new(&format!(
            "{prefix}-managed-label-filtering-other"
        ))])
        .collect();
    if let Err(e) = composure_runtime::contract::run_all(&rt, &CliFaults, &prefix).await {
        panic!("{e}");
    }
}
