//! What the real-Docker tests share: the test image, loading a compose file, container
//! specs, polling with a deadline, and a guard that removes a project's leftovers.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use composure_compose::loader::{LoadOptions, load};
use composure_compose::model::Project;
use composure_core::labels;
use composure_docker::DockerRuntime;
use composure_runtime::{ContainerInfo, ContainerSpec, Runtime};
use indexmap::IndexMap;

/// The demo image every test runs (`examples/demo/build.sh` builds it).
pub const IMAGE: &str = "composure-test:latest";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn docker_cli(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs")
}

/// Builds the test image once per test process, unless it is there already (the first
/// build compiles demo-app, which takes a while).
pub fn test_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if docker_cli(&["image", "inspect", IMAGE]).status.success() {
            return;
        }
        let status = Command::new("bash")
            .arg(repo_root().join("examples/demo/build.sh"))
            .arg(IMAGE)
            .current_dir(repo_root())
            .status()
            .expect("build.sh runs");
        assert!(status.success(), "examples/demo/build.sh {IMAGE} failed");
    });
    IMAGE
}

/// A unique project name for one test of this process.
pub fn project_name(test: &str) -> String {
    format!("t-{test}-{}", std::process::id())
}

/// The runtime, writing secret files under `secrets_dir`.
pub async fn runtime(secrets_dir: &Path) -> DockerRuntime {
    DockerRuntime::connect()
        .await
        .expect("the Docker Engine answers (a missing engine fails the test)")
        .with_secrets_dir(secrets_dir.to_path_buf())
}

/// Loads `yaml` as project `name` with the real loader, from a fresh folder that the
/// returned guard keeps alive.
pub fn load_project(name: &str, yaml: &str) -> (Arc<Project>, tempfile::TempDir) {
    load_project_with(name, yaml, &[])
}

/// Like [`load_project`], with other files (`label_file`s, secrets) written beside the
/// compose file first: the loader reads some of them.
pub fn load_project_with(
    name: &str,
    yaml: &str,
    files: &[(&str, &str)],
) -> (Arc<Project>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (file, text) in files {
        std::fs::write(dir.path().join(file), text).expect("file written");
    }
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, yaml).expect("compose.yaml written");
    let mut options = LoadOptions::new(dir.path());
    options.files = vec![file];
    options.project_name = Some(name.to_string());
    options.environment = std::env::vars().collect();
    let loaded = load(&options).unwrap_or_else(|e| panic!("the test project loads: {e:?}"));
    (Arc::new(loaded.project), dir)
}

/// The spec of slot `slot` of `service`, with the labels the daemon would set.
pub fn spec(project: &Arc<Project>, service: &str, slot: u32, image: &str) -> ContainerSpec {
    let name = project.name.clone().expect("a named project");
    let labels: IndexMap<String, String> = [
        (labels::MANAGED, "true".to_string()),
        (labels::PROJECT, name.clone()),
        (labels::SERVICE, service.to_string()),
        (labels::SLOT, slot.to_string()),
        (labels::COMPOSE_NUMBER, slot.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ContainerSpec::new(
        format!("{name}-{service}-{slot}"),
        project.clone(),
        service,
        image.to_string(),
        labels,
    )
}

/// Ensures the networks and volumes of `project` (external ones aside), then creates and starts slot `slot` of `service`.
pub async fn run(rt: &DockerRuntime, project: &Arc<Project>, service: &str, slot: u32) -> String {
    for (key, network) in &project.networks {
        if network.external != Some(true) {
            rt.ensure_network(project, key)
                .await
                .expect("network ensured");
        }
    }
    for (key, volume) in &project.volumes {
        if volume.external != Some(true) {
            rt.ensure_volume(project, key)
                .await
                .expect("volume ensured");
        }
    }
    let id = rt
        .create(&spec(project, service, slot, test_image()))
        .await
        .expect("container created");
    rt.start(&id).await.expect("container started");
    id
}

/// Polls `check` until it gives a value; fails the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `inspect` until `done` holds for the container.
pub async fn wait_container(
    rt: &DockerRuntime,
    id: &str,
    what: &str,
    done: impl Fn(&ContainerInfo) -> bool,
) -> ContainerInfo {
    eventually(what, Duration::from_secs(60), || async {
        rt.inspect(id)
            .await
            .expect("inspect works")
            .filter(|info| done(info))
    })
    .await
}

/// Removes everything a test project left behind, test passed or not: containers (managed
/// or not) labelled with the project, its networks, volumes and built images.
pub struct Cleanup {
    pub project: String,
}

impl Cleanup {
    pub fn new(project: &str) -> Cleanup {
        let cleanup = Cleanup {
            project: project.to_string(),
        };
        cleanup.sweep();
        cleanup
    }

    fn ids(&self, what: &[&str], label: &str) -> Vec<String> {
        let filter = format!("label={label}={}", self.project);
        let mut args = what.to_vec();
        args.extend(["--filter", &filter]);
        let out = docker_cli(&args);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    fn remove(&self, command: &[&str], ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let mut args = command.to_vec();
        args.extend(ids.iter().map(String::as_str));
        docker_cli(&args);
    }

    fn sweep(&self) {
        for label in [labels::PROJECT, labels::COMPOSE_PROJECT] {
            self.remove(&["rm", "-f", "-v"], self.ids(&["ps", "-aq"], label));
        }
        self.remove(
            &["network", "rm"],
            self.ids(&["network", "ls", "-q"], labels::COMPOSE_PROJECT),
        );
        self.remove(
            &["volume", "rm", "-f"],
            self.ids(&["volume", "ls", "-q"], labels::COMPOSE_PROJECT),
        );
        // Built images carry the project label, replaced (untagged) ones included.
        self.remove(
            &["rmi", "-f"],
            self.ids(&["images", "-aq"], labels::COMPOSE_PROJECT),
        );
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.sweep();
    }
}
