//! Images from a registry (issue 13): a real registry (Debian's `docker-registry`) started
//! by the test on loopback, which the engine trusts without TLS, with and without htpasswd
//! authentication. `up` pulls what is missing, pins every replica to the digest, rolls when
//! a tag moved, says why a pull failed (and leaves the running revision alone), and sends
//! the credentials of the Docker client configuration.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Daemon, IMAGE, Project, docker, ensure_image, free_port, inspect, wait_for};

/// A `docker-registry` on 127.0.0.1, its storage in a temporary directory; stopped (and its
/// images gone) when dropped.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// `users`: htpasswd entries `(user, password)`; none: no authentication.
    fn start(users: &[(&str, &str)]) -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if !users.is_empty() {
            let htpasswd: String = users
                .iter()
                .map(|(user, password)| {
                    format!("{user}:{}\n", bcrypt::hash(password, 5).expect("bcrypt"))
                })
                .collect();
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, htpasswd).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: composure-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_file = dir.path().join("config.yml");
        std::fs::write(&config_file, config).expect("write config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry runs (apt-get install docker-registry)");
        wait_for("the registry to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    fn image(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
    }

    /// Pushes a new image to `reference` (the test image plus a label, so each push is new
    /// bytes), then removes it from the engine: only the registry has it.
    fn push(&self, reference: &str, version: &str, docker_config: Option<&Path>) -> String {
        let build = Command::new("docker")
            .args(["build", "-q", "-t", reference, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                let mut stdin = child.stdin.take().expect("stdin");
                writeln!(
                    stdin,
                    "FROM {IMAGE}\nLABEL io.composure.test.version={version}"
                )?;
                drop(stdin);
                child.wait_with_output()
            })
            .expect("docker build");
        assert!(build.status.success(), "docker build {reference}");
        let id = String::from_utf8_lossy(&build.stdout).trim().to_string();
        let mut push = Command::new("docker");
        if let Some(config) = docker_config {
            push.arg("--config").arg(config);
        }
        let pushed = push
            .args(["push", reference])
            .output()
            .expect("docker push");
        assert!(
            pushed.status.success(),
            "docker push {reference}: {}",
            String::from_utf8_lossy(&pushed.stderr)
        );
        let _ = docker(&["rmi", "-f", reference]);
        id
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Docker client configuration logged in to `registry`, by `docker login` itself.
fn logged_in(registry: &str, user: &str, password: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new("docker")
        .arg("--config")
        .arg(dir.path())
        .args(["login", registry, "-u", user, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(password.as_bytes())?;
            child.wait_with_output()
        })
        .expect("docker login");
    assert!(
        out.status.success(),
        "docker login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn web(image: &str, extra: &str) -> String {
    format!(
        "services:\n  web:\n    image: {image}\n{extra}    command: [\"web\", \"--port\", \"8080\"]\n    deploy:\n      replicas: 2\n"
    )
}

/// The image each running replica of `service` was created from, and its pin label.
fn replica_images(p: &Project, service: &str) -> Vec<(String, String)> {
    p.containers_of(service)
        .iter()
        .map(|id| {
            (
                inspect(id, "{{.Image}}"),
                inspect(id, "{{index .Config.Labels \"io.composure.image\"}}"),
            )
        })
        .collect()
}

#[test]
fn up_pulls_what_is_missing_pins_the_digest_and_rolls_when_the_tag_moves() {
    ensure_image();
    let registry = Registry::start(&[]);
    let image = registry.image("app:1");
    let first = registry.push(&image, "1", None);
    let daemon = Daemon::start();
    let p = Project::new("pull", &daemon, &web(&image, ""));

    let out = p.run(&["up", "--wait-timeout", "120"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("web Pulled {image}@sha256:")),
        "{}",
        stderr(&out)
    );
    let replicas = replica_images(&p, "web");
    assert_eq!(replicas.len(), 2);
    for (id, pin) in &replicas {
        assert_eq!(id, &first, "every replica runs the pulled bytes");
        assert!(pin.starts_with(&format!("{image}@sha256:")), "{pin}");
    }

    // The tag moves in the registry. `missing` (the default) keeps what is here...
    let second = registry.push(&image, "2", None);
    let _ = docker(&["tag", &first, &image]);
    p.ok(&["up", "--wait-timeout", "120"]);
    assert!(replica_images(&p, "web").iter().all(|(id, _)| id == &first));
    // ...and `--pull always` fetches the new digest and rolls the service onto it.
    let out = p.run(&["up", "--pull", "always", "--wait-timeout", "120"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let replicas = wait_for(
        "the roll to the new digest",
        Duration::from_secs(60),
        || {
            let replicas = replica_images(&p, "web");
            (replicas.len() == 2 && replicas.iter().all(|(id, _)| id == &second))
                .then_some(replicas)
        },
    );
    assert_ne!(replicas[0].1, format!("{image}@{first}"));

    // `composure pull` pulls again, as `docker compose pull` does.
    p.ok(&["pull"]);
    p.ok(&["down"]);
    let _ = docker(&["rmi", "-f", &image]);
}

#[test]
fn a_failed_pull_says_why_and_leaves_the_running_revision_serving() {
    ensure_image();
    let registry = Registry::start(&[]);
    let good = registry.image("app:1");
    registry.push(&good, "1", None);
    let daemon = Daemon::start();
    let p = Project::new("pullfail", &daemon, &web(&good, ""));
    p.ok(&["up", "--wait-timeout", "120"]);
    let before = p.containers_of("web");

    let cases = [
        (
            registry.image("app:no-such-tag"),
            "has no such image or tag",
        ),
        (registry.image("nothing-here:1"), "has no such image or tag"),
        (
            format!("127.0.0.1:{}/app:1", free_port()),
            "cannot be reached",
        ),
    ];
    for (image, why) in cases {
        std::fs::write(p.dir.path().join("compose.yaml"), web(&image, "")).expect("write");
        let out = p.run(&["up", "--wait-timeout", "30"]);
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{image}: {text}");
        assert!(
            text.contains(why) && text.contains("web"),
            "{image}: {text}"
        );
        assert_eq!(p.containers_of("web"), before, "nothing was touched");
    }
    // `pull_policy: never` with nothing local: no pull is tried.
    let never = registry.image("app:2");
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        web(&never, "    pull_policy: never\n"),
    )
    .expect("write");
    let out = p.run(&["up", "--wait-timeout", "30"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("pull_policy: never"),
        "{}",
        stderr(&out)
    );
    assert_eq!(p.containers_of("web"), before);
    p.ok(&["down"]);
    let _ = docker(&["rmi", "-f", &good]);
}

#[test]
fn a_private_registry_takes_the_credentials_of_the_docker_configuration() {
    ensure_image();
    let password = "s3cret-Composure-pw";
    let registry = Registry::start(&[("ci", password)]);
    let host = format!("127.0.0.1:{}", registry.port);
    let login = logged_in(&host, "ci", password);
    let image = registry.image("private:1");
    let pushed = registry.push(&image, "1", Some(login.path()));
    let daemon = Daemon::start();
    let p = Project::new("private", &daemon, &web(&image, ""));

    let anonymous = tempfile::tempdir().expect("temp dir");
    let out = p.run_env(
        &[("DOCKER_CONFIG", anonymous.path())],
        &["up", "--wait-timeout", "30"],
    );
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("unauthorised") && text.contains(&host),
        "{text}"
    );

    let out = p.run_env(
        &[("DOCKER_CONFIG", login.path())],
        &["up", "--wait-timeout", "120"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        replica_images(&p, "web")
            .iter()
            .all(|(id, _)| id == &pushed)
    );
    // The password is used, never kept: not in the daemon's log, its store, or events.
    let events = p.ok(&["events", "--no-follow", "--format", "json"]);
    assert!(!events.contains(password));
    assert!(!daemon.log().contains(password));
    for file in walk(&PathBuf::from(daemon.socket().parent().expect("data dir"))) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(password),
            "{} holds the password",
            file.display()
        );
    }
    p.ok(&["down"]);
    let _ = docker(&["rmi", "-f", &image]);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn images_are_built_before_anything_is_scheduled_and_a_changed_context_rolls() {
    ensure_image();
    let daemon = Daemon::start();
    // The demo's shape: kv runs web's image and web waits for kv to be healthy, so the
    // image must exist before any task of web is scheduled.
    let compose = "services:
  web:
    build: .
    image: IMAGE_NAME
    command: [\"web\", \"--port\", \"8080\", \"--db\", \"kv:6379\"]
    depends_on:
      kv: {condition: service_healthy}
  kv:
    image: IMAGE_NAME
    command: [\"kv\", \"--port\", \"6379\"]
    healthcheck:
      test: [\"CMD\", \"/demo-app\", \"probe\", \"tcp\", \"127.0.0.1:6379\"]
      interval: 1s
";
    let p = Project::new("buildfirst", &daemon, "");
    let image = format!("{}-app", p.name);
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        compose.replace("IMAGE_NAME", &image),
    )
    .expect("write");
    std::fs::write(
        p.dir.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nLABEL io.composure.test.version=1\n"),
    )
    .expect("write");
    let out = p.run(&["up", "--wait-timeout", "120"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("web Built"), "{}", stderr(&out));
    let first = replica_images(&p, "web");
    assert_eq!(first.len(), 1);

    // Unchanged: nothing rolls. A changed Dockerfile: built again, and both services roll.
    p.ok(&["up", "--wait-timeout", "120"]);
    assert_eq!(replica_images(&p, "web"), first);
    std::fs::write(
        p.dir.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nLABEL io.composure.test.version=2\n"),
    )
    .expect("write");
    p.ok(&["up", "--wait-timeout", "120"]);
    wait_for(
        "web and kv on the new image",
        Duration::from_secs(60),
        || {
            let web = replica_images(&p, "web");
            let kv = replica_images(&p, "kv");
            (web.len() == 1 && kv.len() == 1 && web[0].0 != first[0].0 && kv[0].0 == web[0].0)
                .then_some(())
        },
    );
    // `--no-build` does not build, `build` does.
    p.ok(&["up", "--no-build", "--wait-timeout", "60"]);
    let out = p.run(&["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("web Built"), "{}", stderr(&out));
    p.ok(&["down"]);
    let _ = docker(&["rmi", "-f", &image]);
}
