//! Host and path routing declared under `x-composure`: several services behind one
//! listener, HTTPS with a certificate per host, and a bad routing declaration refused by
//! `composure up` while the running revision keeps serving.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers panic on setup failures by design

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Daemon, Project, ensure_image, free_port, http_get, wait_for};
use rustls::pki_types::{CertificateDer, ServerName};

/// Two services (each reporting its name as its version) behind one HTTPS listener, `web`
/// for `web.test` and `api` for `/version` of `*.api.test`, and behind one plain listener,
/// `api` for `/version` and `web` for the rest. `api_route` is the api's HTTPS route.
fn compose(https: u16, http: u16, api_route: &str) -> String {
    format!(
        r#"
services:
  web:
    image: IMAGE
    command: ["web", "--port", "8080"]
    environment:
      APP_VERSION: web
    expose: ["8080"]
    healthcheck:
      test: ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 2s
      retries: 2
    x-composure:
      routes:
        - listen: "127.0.0.1:{https}"
          host: web.test
          tls: {{cert: ./certs/web.pem, key: ./certs/web.key}}
        - listen: "127.0.0.1:{http}"
  api:
    image: IMAGE
    command: ["web", "--port", "9000"]
    environment:
      APP_VERSION: api
    x-composure:
      routes:
        - {api_route}
        - listen: "127.0.0.1:{http}"
          path: /version
          port: 9000
"#
    )
}

fn api_route(https: u16) -> String {
    format!(
        r#"{{listen: "127.0.0.1:{https}", host: "*.api.test", path: /version, port: 9000, tls: {{cert: ./certs/api.pem, key: ./certs/api.key}}}}"#
    )
}

/// Writes a self-signed certificate for `names` as `certs/{file}.pem` and `.key`; returns
/// it for clients to trust.
fn certificate(dir: &Path, file: &str, names: &[&str]) -> CertificateDer<'static> {
    let made =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join(format!("{file}.pem")), made.cert.pem()).unwrap();
    std::fs::write(
        certs.join(format!("{file}.key")),
        made.signing_key.serialize_pem(),
    )
    .unwrap();
    made.cert.der().clone()
}

/// `GET path` over TLS to 127.0.0.1:port for `host` (SNI and `Host`), trusting `trusted`
/// only: the status and the body.
fn https_get(
    port: u16,
    host: &str,
    path: &str,
    trusted: &CertificateDer<'static>,
) -> std::io::Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).map_err(std::io::Error::other)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        // A server may close without a TLS close_notify once it has answered.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        other => {
            other?;
        }
    }
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[test]
fn services_share_a_listener_by_host_and_path_with_tls() {
    ensure_image();
    let daemon = Daemon::start();
    let (https, http) = (free_port(), free_port());
    let p = Project::new("routing", &daemon, &compose(https, http, &api_route(https)));
    let web_cert = certificate(p.dir.path(), "web", &["web.test"]);
    let api_cert = certificate(p.dir.path(), "api", &["*.api.test"]);
    p.ok(&["up", "--wait-timeout", "90"]);

    // Each client trusts only the certificate of the host it asks for: the handshake
    // succeeds only if the listener picked it by SNI.
    wait_for("the HTTPS listener", Duration::from_secs(30), || {
        matches!(https_get(https, "web.test", "/", &web_cert), Ok((200, _))).then_some(())
    });
    let (status, body) = https_get(https, "web.test", "/", &web_cert).unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("version: web"), "{body}");
    assert_eq!(
        https_get(https, "web.test", "/version", &web_cert).unwrap(),
        (200, "web\n".to_string())
    );
    let api = || https_get(https, "eu.api.test", "/version", &api_cert);
    wait_for(
        "api behind the HTTPS listener",
        Duration::from_secs(30),
        || matches!(api(), Ok((200, _))).then_some(()),
    );
    assert_eq!(api().unwrap(), (200, "api\n".to_string()));
    // The api's host has a route for `/version` only.
    assert_eq!(
        https_get(https, "eu.api.test", "/", &api_cert).unwrap().0,
        404
    );
    // A name no route claims gets no certificate.
    assert!(https_get(https, "other.test", "/", &web_cert).is_err());

    // The plain listener routes by path.
    assert_eq!(
        http_get(http, "/version").unwrap(),
        (200, "api\n".to_string())
    );
    let (status, body) = http_get(http, "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("version: web"), "{body}");

    // A bad declaration: `composure config` and `composure up` name it, and nothing
    // changes.
    let bad = compose(
        https,
        http,
        &format!(
            r#"{{listen: "127.0.0.1:{https}", host: "*.api.test", path: version, port: 9000, tls: {{cert: ./certs/api.pem, key: ./certs/api.key}}}}"#
        ),
    )
    .replace("IMAGE", common::IMAGE);
    std::fs::write(p.dir.path().join("compose.yaml"), bad).unwrap();
    for verb in [&["config", "-q"][..], &["up", "--wait-timeout", "30"]] {
        let out = p.run(verb);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{verb:?} succeeded: {stderr}");
        assert!(
            stderr.contains("services.api.x-composure.routes[0].path")
                && stderr.contains("path `version` must start with `/`")
                && stderr.contains("hint: write `/version`"),
            "{verb:?}: {stderr}"
        );
    }
    assert_eq!(api().unwrap(), (200, "api\n".to_string()));
    assert_eq!(
        http_get(http, "/version").unwrap(),
        (200, "api\n".to_string())
    );

    // Once fixed, only the key is wrong: the file is checked before the project is taken.
    let missing_key = compose(
        https,
        http,
        &api_route(https).replace("./certs/api.key", "./certs/missing.key"),
    )
    .replace("IMAGE", common::IMAGE);
    std::fs::write(p.dir.path().join("compose.yaml"), missing_key).unwrap();
    let out = p.run(&["up", "--wait-timeout", "30"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("services.api.x-composure.routes[0].tls")
            && stderr.contains("key file `./certs/missing.key` cannot be read"),
        "{stderr}"
    );
    assert_eq!(api().unwrap(), (200, "api\n".to_string()));

    // Without the api's plain route, the running listener sends `/version` to `web`; the
    // change of routes replaces no task.
    let api_task = p.running("api", 1, false).expect("api-1")["id"].clone();
    let plain_route = format!(
        "        - listen: \"127.0.0.1:{http}\"\n          path: /version\n          port: 9000\n"
    );
    let fewer = compose(https, http, &api_route(https));
    assert!(fewer.contains(&plain_route));
    let fewer = fewer
        .replace(&plain_route, "")
        .replace("IMAGE", common::IMAGE);
    std::fs::write(p.dir.path().join("compose.yaml"), fewer).unwrap();
    p.ok(&["up", "--wait-timeout", "30"]);
    wait_for("the new routes", Duration::from_secs(30), || {
        matches!(http_get(http, "/version"), Ok((200, body)) if body == "web\n").then_some(())
    });
    assert_eq!(api().unwrap(), (200, "api\n".to_string()));
    assert_eq!(p.running("api", 1, false).expect("api-1")["id"], api_task);
}
