//! Published ports behind Composure's proxy: replicas share a port, traffic goes to ready
//! replicas only, and a replica leaves the proxy before it is stopped.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::load::Load;
use common::{Daemon, Project, ensure_image, free_port, http_get, wait_for};

fn web(port: u16, replicas: u32, app_protocol: &str) -> String {
    format!(
        r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    ports:
      - target: 8080
        published: "{port}"
        host_ip: 127.0.0.1
        app_protocol: {app_protocol}
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 2s
      retries: 2
    deploy:
      replicas: {replicas}
"#
    )
}

/// The `host:` line of the demo page: which replica answered.
fn host_of(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
}

#[test]
fn replicas_share_a_published_port() {
    ensure_image();
    let daemon = Daemon::start();
    let port = free_port();
    let p = Project::new("share", &daemon, &web(port, 3, "http"));
    p.ok(&["up", "--wait-timeout", "90"]);
    let hosts: HashSet<String> = wait_for(
        "answers from every replica",
        Duration::from_secs(60),
        || {
            let mut hosts = HashSet::new();
            for _ in 0..60 {
                if let Ok((200, body)) = http_get(port, "/") {
                    hosts.extend(host_of(&body));
                }
            }
            (hosts.len() == 3).then_some(hosts)
        },
    );
    assert_eq!(hosts.len(), 3);
    // The engine publishes nothing: the proxy owns the port.
    let id = p.running("web", 1, true).expect("web-1")["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    let bindings = common::inspect(&id, "{{json .HostConfig.PortBindings}}");
    assert!(
        bindings == "null" || bindings == "{}",
        "the engine publishes {bindings}"
    );
}

/// The ingress containers of a project (the proxy on its published ports).
fn ingress_containers(p: &Project) -> Vec<String> {
    p.containers_of("composure.ingress")
}

/// Every failure the load saw, in words; none expected.
fn failures(seen: &[(common::load::Client, common::load::Seen)]) -> (usize, Vec<String>) {
    let answers = seen.iter().map(|(_, s)| s.answers).sum();
    let failures = seen
        .iter()
        .flat_map(|(kind, s)| s.failures.iter().map(move |f| format!("{kind:?}: {f}")))
        .collect();
    (answers, failures)
}

/// The data plane outlives the control plane: the published port is served by the
/// project's ingress container, which goes on while the daemon is SIGKILLed, absent and
/// restarted; the restarted daemon adopts it.
#[test]
fn a_published_port_serves_through_a_daemon_sigkill_and_restart() {
    ensure_image();
    let mut daemon = Daemon::start();
    let port = free_port();
    let p = Project::new("outlive", &daemon, &web(port, 2, "http"));
    p.ok(&["up", "--wait-timeout", "90"]);
    wait_for("the proxy to answer", Duration::from_secs(30), || {
        matches!(http_get(port, "/healthz"), Ok((200, _))).then_some(())
    });
    let ingress = ingress_containers(&p);
    assert_eq!(ingress.len(), 1, "one ingress container: {ingress:?}");

    let load = Load::start(port, "/healthz", 2);
    std::thread::sleep(Duration::from_millis(500));
    daemon.kill();
    std::thread::sleep(Duration::from_secs(2));
    let unserved = http_get(port, "/healthz");
    assert!(
        matches!(unserved, Ok((200, _))),
        "served with no daemon: {unserved:?}"
    );
    daemon.restart();
    p.ok(&["up", "--wait-timeout", "90"]);
    std::thread::sleep(Duration::from_secs(1));
    let (answers, failed) = failures(&load.stop());
    assert!(answers > 100, "only {answers} answers");
    assert!(
        failed.is_empty(),
        "{} failed requests, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        ingress_containers(&p),
        ingress,
        "the ingress was adopted, not replaced"
    );
}

/// `composure daemon` upgrades in place: a daemon from another executable replaces the
/// ingress (its image is that executable) start-first, and the new ingress takes the
/// listening sockets over from the old one, so no request fails.
#[test]
fn a_daemon_upgrade_replaces_the_ingress_without_failing_a_request() {
    ensure_image();
    let mut daemon = Daemon::start();
    let port = free_port();
    let p = Project::new("upgrade", &daemon, &web(port, 2, "http"));
    p.ok(&["up", "--wait-timeout", "90"]);
    wait_for("the proxy to answer", Duration::from_secs(30), || {
        matches!(http_get(port, "/healthz"), Ok((200, _))).then_some(())
    });
    let before = ingress_containers(&p);
    // Another build of the daemon: the same program with a byte more at its end (which
    // the loader ignores), so its image differs.
    let upgraded = daemon.dir.path().join("composure-next");
    std::fs::copy(env!("CARGO_BIN_EXE_composure"), &upgraded).unwrap();
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&upgraded)
            .unwrap();
        file.write_all(b"\0").unwrap();
    }

    let load = Load::start(port, "/healthz", 2);
    std::thread::sleep(Duration::from_millis(500));
    daemon.upgrade_to(upgraded);
    let after = wait_for("the new ingress alone", Duration::from_secs(120), || {
        let now = ingress_containers(&p);
        (now.len() == 1 && now != before).then_some(now)
    });
    std::thread::sleep(Duration::from_secs(1));
    let (answers, failed) = failures(&load.stop());
    assert!(answers > 100, "only {answers} answers");
    if !failed.is_empty() {
        for id in before.iter().chain(&after) {
            let logs = common::docker(&["logs", id]);
            eprintln!("--- {id}\n{}", String::from_utf8_lossy(&logs.stderr));
        }
        eprintln!("--- daemon\n{}", daemon.log());
    }
    assert!(
        failed.is_empty(),
        "{} failed requests, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_ne!(after, before);
}

/// A published port another program holds: `up` fails and says so (the daemon keeps
/// trying), and the port is served as soon as it is free, with nothing done by hand.
#[test]
fn up_fails_on_a_port_another_program_holds_and_serves_it_once_free() {
    ensure_image();
    let daemon = Daemon::start();
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let p = Project::new("taken", &daemon, &web(port, 1, "http"));
    let out = p.run(&["up", "--wait-timeout", "90"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "up succeeded on a taken port: {stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
    let ps = p.run(&["ps"]);
    assert!(String::from_utf8_lossy(&ps.stderr).contains("in use"));

    drop(blocker);
    wait_for(
        "the freed port to be served",
        Duration::from_secs(60),
        || matches!(http_get(port, "/healthz"), Ok((200, _))).then_some(()),
    );
    p.ok(&["up", "--wait-timeout", "90"]);
}

/// Issue 13: moving a published port to one another program holds gave exit 0 and an
/// outage (the old port was released first). `up` fails saying which port and why, and the
/// old port keeps serving.
#[test]
fn moving_a_port_to_a_taken_one_fails_up_and_keeps_the_old_port_serving() {
    ensure_image();
    let daemon = Daemon::start();
    let old = free_port();
    let p = Project::new("moveport", &daemon, &web(old, 1, "http"));
    p.ok(&["up", "--wait-timeout", "90"]);
    wait_for("the old port to serve", Duration::from_secs(30), || {
        matches!(http_get(old, "/healthz"), Ok((200, _))).then_some(())
    });
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap().port();
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        web(taken, 1, "http").replace("IMAGE", common::IMAGE),
    )
    .unwrap();
    let out = p.run(&["up", "--wait-timeout", "60"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&taken.to_string()) && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(
        matches!(http_get(old, "/healthz"), Ok((200, _))),
        "the old port stopped serving"
    );
    // Once the new port is free, it is served, and only then is the old one released.
    drop(blocker);
    wait_for("the new port to serve", Duration::from_secs(60), || {
        matches!(http_get(taken, "/healthz"), Ok((200, _))).then_some(())
    });
    wait_for(
        "the old port to be released",
        Duration::from_secs(30),
        || http_get(old, "/healthz").is_err().then_some(()),
    );
    p.ok(&["up", "--wait-timeout", "60"]);
}

#[test]
fn scaling_down_under_load_fails_no_request() {
    ensure_image();
    let daemon = Daemon::start();
    let port = free_port();
    let p = Project::new("drain", &daemon, &web(port, 3, "tcp"));
    p.ok(&["up", "--wait-timeout", "90"]);
    wait_for("the proxy to answer", Duration::from_secs(30), || {
        matches!(http_get(port, "/healthz"), Ok((200, _))).then_some(())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            // Bounded: at most 20,000 requests, and it stops when told.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match http_get(port, "/healthz") {
                    Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    p.ok(&["scale", "web=1"]);
    wait_for("one replica left", Duration::from_secs(60), || {
        (p.containers_of("web").len() == 1).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed while replicas were removed"
    );
}

/// A replica without a health check is ready once it accepts connections, not once its
/// container runs: a new version that opens its port late replaces the only replica under
/// load without a failed request.
#[test]
fn a_replica_without_a_health_check_is_ready_once_it_accepts_connections() {
    ensure_image();
    let daemon = Daemon::start();
    let port = free_port();
    let compose = |listen_after: u32| {
        format!(
            r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    environment:
      LISTEN_AFTER_SECS: "{listen_after}"
    ports:
      - target: 8080
        published: "{port}"
        host_ip: 127.0.0.1
        app_protocol: http
"#
        )
    };
    let p = Project::new("accepting", &daemon, &compose(0));
    p.ok(&["up", "--wait-timeout", "90"]);
    wait_for("the proxy to answer", Duration::from_secs(30), || {
        matches!(http_get(port, "/version"), Ok((200, _))).then_some(())
    });
    let old = p.containers_of("web");

    let load = Load::start(port, "/version", 2);
    std::fs::write(
        p.dir.path().join("compose.yaml"),
        compose(3).replace("IMAGE", common::IMAGE),
    )
    .unwrap();
    p.ok(&["up", "--wait-timeout", "90"]);
    wait_for("the old replica to go", Duration::from_secs(60), || {
        let now = p.containers_of("web");
        (now.len() == 1 && now != old).then_some(())
    });
    for (kind, seen) in load.stop() {
        assert!(seen.answers > 0, "{kind:?} clients got no answer");
        assert!(
            seen.failures.is_empty(),
            "{kind:?} clients saw failures while the new replica was not listening yet: {:?}",
            &seen.failures[..seen.failures.len().min(5)]
        );
    }
}

/// A UDP port free on 127.0.0.1.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free udp port")
}

/// Sends a datagram to 127.0.0.1:port from `client` and returns the answer, if one comes
/// within a second (UDP: a lost datagram is the client's to retry).
fn udp_ask(client: &std::net::UdpSocket, port: u16) -> Option<String> {
    client.send_to(b"who?", ("127.0.0.1", port)).ok()?;
    let mut buffer = [0u8; 512];
    let (len, _) = client.recv_from(&mut buffer).ok()?;
    Some(String::from_utf8_lossy(&buffer[..len]).into_owned())
}

fn udp_client() -> std::net::UdpSocket {
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    client
}

#[test]
fn replicas_share_a_published_udp_port() {
    ensure_image();
    let daemon = Daemon::start();
    let port = free_udp_port();
    let compose = format!(
        r#"
services:
  echo:
    image: IMAGE
    command: ["udp-echo", "--port", "5353"]
    ports:
      - target: 5353
        published: "{port}"
        host_ip: 127.0.0.1
        protocol: udp
    deploy:
      replicas: 2
"#
    );
    let p = Project::new("udpshare", &daemon, &compose);
    p.ok(&["up", "--wait-timeout", "90"]);
    // Each client socket is a session of its own, on one replica or the other.
    let hosts: HashSet<String> = wait_for(
        "answers from both replicas",
        Duration::from_secs(60),
        || {
            let mut hosts = HashSet::new();
            for _ in 0..20 {
                hosts.extend(udp_ask(&udp_client(), port));
            }
            (hosts.len() == 2).then_some(hosts)
        },
    );
    assert_eq!(hosts.len(), 2);
    // One client stays with its replica.
    let client = udp_client();
    let first = wait_for("an answer", Duration::from_secs(30), || {
        udp_ask(&client, port)
    });
    for _ in 0..5 {
        if let Some(again) = udp_ask(&client, port) {
            assert_eq!(again, first, "the session moved to another replica");
        }
    }
    // The engine publishes nothing: the proxy owns the port.
    for id in p.containers_of("echo") {
        let bindings = common::inspect(&id, "{{json .HostConfig.PortBindings}}");
        assert!(
            bindings == "null" || bindings == "{}",
            "the engine publishes {bindings}"
        );
    }
}
