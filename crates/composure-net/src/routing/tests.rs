use std::net::SocketAddr;
use std::path::Path;

use composure_compose::model::{Project, project_from_json};
use serde_json::{Value, json};

use super::*;

fn project(services: Value) -> Project {
    project_from_json(json!({ "services": services })).unwrap()
}

fn parse(services: Value) -> (Routing, Vec<Diagnostic>) {
    Routing::parse(&project(services))
}

/// `path: message` of each problem, and its hint.
fn problems(services: Value) -> Vec<(String, String, String)> {
    parse(services)
        .1
        .into_iter()
        .map(|d| (d.path.to_string(), d.message, d.hint.unwrap_or_default()))
        .collect()
}

fn one_problem(services: Value) -> (String, String, String) {
    let mut all = problems(services);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

fn service(routes: Value) -> Value {
    json!({"image": "x", "x-composure": {"routes": routes}})
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn a_full_route_reads() {
    let (routing, diags) = parse(json!({"api": service(json!([{
        "listen": "127.0.0.1:8443",
        "host": "API.Example.com",
        "path": "/v1",
        "port": 8080,
        "tls": {"cert": "certs/api.pem", "key": "certs/api.key"},
    }]))}));
    assert_eq!(diags, vec![]);
    let route = &routing.routes()[0];
    assert_eq!(route.service, "api");
    assert_eq!(route.at.to_string(), "services.api.x-composure.routes[0]");
    assert_eq!(route.listen, addr("127.0.0.1:8443"));
    assert_eq!(route.host.as_deref(), Some("api.example.com"));
    assert_eq!(route.path.as_deref(), Some("/v1"));
    assert_eq!(route.port, 8080);
    let listeners = routing.listeners(Path::new("/srv/app"));
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].protocol, Protocol::Http);
    assert_eq!(
        listeners[0].routes,
        vec![RouteConfig {
            host: Some("api.example.com".into()),
            path_prefix: Some("/v1".into()),
            service: "api".into(),
            port: 8080,
        }]
    );
    assert_eq!(
        listeners[0].tls,
        vec![HostCertificate {
            host: None,
            files: TlsFiles {
                cert: "/srv/app/certs/api.pem".into(),
                key: "/srv/app/certs/api.key".into(),
            },
        }]
    );
}

#[test]
fn defaults_listen_on_80_or_443_and_take_the_one_declared_port() {
    let (routing, diags) = parse(json!({
        "web": {"image": "x", "expose": ["3000"], "x-composure": {"routes": [{}]}},
        "api": {
            "image": "x",
            "ports": [{"target": 9000}],
            "x-composure": {"routes": [{"tls": {"cert": "/c.pem", "key": "/k.pem"}}]},
        },
        "ws": {"image": "x", "x-composure": {"routes": [{"listen": "81", "port": "7000"}]}},
    }));
    assert_eq!(diags, vec![]);
    let got: Vec<(SocketAddr, u16)> = routing
        .routes()
        .iter()
        .map(|r| (r.listen, r.port))
        .collect();
    assert_eq!(
        got,
        vec![
            (addr("0.0.0.0:80"), 3000),
            (addr("0.0.0.0:443"), 9000),
            (addr("0.0.0.0:81"), 7000)
        ]
    );
    assert!(!routing.routes()[0].listen_given);
}

#[test]
fn services_without_routes_have_none() {
    let (routing, diags) = parse(json!({
        "web": {"image": "x"},
        "db": {"image": "x", "x-composure": {}},
        "cache": {"image": "x", "x-composure": null},
    }));
    assert!(routing.is_empty());
    assert_eq!(diags, vec![]);
}

#[test]
fn routes_of_several_services_share_a_listener() {
    let (routing, diags) = parse(json!({
        "web": service(json!([{"listen": 8080, "port": 80}])),
        "api": service(json!([
            {"listen": 8080, "path": "/api", "port": 9000},
            {"listen": 8080, "host": "admin.test", "port": 9001},
        ])),
        "other": service(json!([{"listen": 9090, "port": 80}])),
    }));
    assert_eq!(diags, vec![]);
    let listeners = routing.listeners(Path::new("/"));
    assert_eq!(listeners.len(), 2);
    assert_eq!(listeners[0].addr, addr("0.0.0.0:8080"));
    let targets: Vec<(&str, u16)> = listeners[0]
        .routes
        .iter()
        .map(|r| (r.service.as_str(), r.port))
        .collect();
    assert_eq!(targets, vec![("web", 80), ("api", 9000), ("api", 9001)]);
    assert!(listeners[0].tls.is_empty());
    assert_eq!(listeners[1].addr, addr("0.0.0.0:9090"));
}

#[test]
fn several_certificates_are_picked_by_host() {
    let tls = |name: &str| json!({"cert": format!("{name}.pem"), "key": format!("{name}.key")});
    let (routing, diags) = parse(json!({
        "web": service(json!([
            {"listen": 8443, "host": "web.test", "port": 80, "tls": tls("web")},
            {"listen": 8443, "port": 80, "tls": tls("default")},
        ])),
        "api": service(json!([
            {"listen": 8443, "host": "*.api.test", "port": 80, "tls": tls("api")},
            {"listen": 8443, "host": "*.api.test", "path": "/v2", "port": 81, "tls": tls("api")},
        ])),
    }));
    assert_eq!(diags, vec![]);
    let listeners = routing.listeners(Path::new("/p"));
    let certs: Vec<(Option<&str>, &Path)> = listeners[0]
        .tls
        .iter()
        .map(|c| (c.host.as_deref(), c.files.cert.as_path()))
        .collect();
    assert_eq!(
        certs,
        vec![
            (Some("web.test"), Path::new("/p/web.pem")),
            (None, Path::new("/p/default.pem")),
            (Some("*.api.test"), Path::new("/p/api.pem")),
        ]
    );
}

#[test]
fn bad_values_are_reported_with_their_path_and_a_hint() {
    let all = problems(json!({"api": service(json!([{
        "listen": "localhost:80",
        "host": "api.example.com:443",
        "path": "v1",
        "port": 70000,
        "tls": {"cert": "", "kee": "x"},
    }]))}));
    let paths: Vec<&str> = all.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "services.api.x-composure.routes[0].tls.kee",
            "services.api.x-composure.routes[0].tls.cert",
            "services.api.x-composure.routes[0].tls.key",
            "services.api.x-composure.routes[0].listen",
            "services.api.x-composure.routes[0].host",
            "services.api.x-composure.routes[0].path",
            "services.api.x-composure.routes[0].port",
        ]
    );
    for (path, message, hint) in &all {
        assert!(message.starts_with("service `api`: "), "{path}: {message}");
        assert!(!hint.is_empty(), "{path}: no hint");
    }
    assert!(all[0].2.contains("did you mean `key`?"), "{:?}", all[0]);
    assert!(all[4].1.contains("`:` is not allowed"), "{:?}", all[4]);
    assert_eq!(all[5].1, "service `api`: path `v1` must start with `/`");
    assert_eq!(all[5].2, "write `/v1`");
}

#[test]
fn unknown_keys_and_wrong_shapes_are_refused() {
    let (path, message, hint) = one_problem(json!({"api": {
        "image": "x",
        "expose": ["80"],
        "x-composure": {"routes": [{"hots": "a.test"}]},
    }}));
    assert_eq!(path, "services.api.x-composure.routes[0].hots");
    assert_eq!(message, "service `api`: unknown key `hots`");
    assert!(hint.contains("did you mean `host`?"), "{hint}");

    let (path, _, _) = one_problem(json!({"api": {"image": "x", "x-composure": {"route": []}}}));
    assert_eq!(path, "services.api.x-composure.route");
    let (path, message, _) =
        one_problem(json!({"api": {"image": "x", "x-composure": {"routes": {"listen": 80}}}}));
    assert_eq!(path, "services.api.x-composure.routes");
    assert!(
        message.contains("must be a list, not a mapping"),
        "{message}"
    );
    let (path, _, _) = one_problem(json!({"api": {"image": "x", "x-composure": "yes"}}));
    assert_eq!(path, "services.api.x-composure");
    let (path, message, _) = one_problem(json!({"api": service(json!([{"port": 80, "host": 5}]))}));
    assert_eq!(path, "services.api.x-composure.routes[0].host");
    assert!(
        message.contains("must be a string, not a number"),
        "{message}"
    );
}

#[test]
fn host_patterns_are_checked() {
    for bad in [
        "",
        "*",
        "a..b",
        "-a.test",
        "a.*.test",
        "*a.test",
        "http://a.test",
        "a.test/x",
        "a b",
    ] {
        let all = problems(json!({"api": service(json!([{"port": 80, "host": bad}]))}));
        assert_eq!(all.len(), 1, "{bad:?}: {all:?}");
        assert_eq!(
            all[0].0, "services.api.x-composure.routes[0].host",
            "{bad:?}"
        );
    }
    for good in [
        "a.test",
        "*.a.test",
        "localhost",
        "10.0.0.1",
        "my_host.internal",
    ] {
        let all = problems(json!({"api": service(json!([{"port": 80, "host": good}]))}));
        assert_eq!(all, vec![], "{good:?}");
    }
}

#[test]
fn a_route_needs_a_port_when_the_service_has_none_or_several() {
    let (path, message, hint) = one_problem(json!({"api": service(json!([{}]))}));
    assert_eq!(path, "services.api.x-composure.routes[0]");
    assert!(message.contains("declares no port"), "{message}");
    assert!(hint.contains("add `port:`"), "{hint}");
    let (_, message, _) = one_problem(json!({"api": {
        "image": "x",
        "expose": ["8080", "9090-9091/tcp", "53/udp"],
        "x-composure": {"routes": [{}]},
    }}));
    assert!(message.contains("several (8080, 9090, 9091)"), "{message}");
    for port in [0, -1] {
        let (path, _, _) = one_problem(json!({"api": service(json!([{"port": port}]))}));
        assert_eq!(path, "services.api.x-composure.routes[0].port");
    }
}

#[test]
fn listen_must_not_take_a_published_port() {
    let (path, message, hint) = one_problem(json!({
        "web": {"image": "x", "ports": [{"target": 80, "published": "8000-8010"}]},
        "api": service(json!([{"listen": "127.0.0.1:8005", "port": 80}])),
    }));
    assert_eq!(path, "services.api.x-composure.routes[0].listen");
    assert!(
        message
            .contains("127.0.0.1:8005 is also published by service `web` (services.web.ports[0])"),
        "{message}"
    );
    assert!(hint.contains("either published"), "{hint}");
    // Another address, another protocol: no clash.
    let all = problems(json!({
        "web": {"image": "x", "ports": [
            {"target": 80, "published": "8000", "host_ip": "127.0.0.2"},
            {"target": 53, "published": "8001", "protocol": "udp"},
        ]},
        "api": service(json!([
            {"listen": "127.0.0.1:8000", "port": 80},
            {"listen": "127.0.0.1:8001", "port": 80},
        ])),
    }));
    assert_eq!(all, vec![]);
    // The default listen port is checked too, and said to be the default.
    let (_, message, _) = one_problem(json!({
        "web": {"image": "x", "ports": ["80:80"]},
        "api": service(json!([{"port": 80}])),
    }));
    assert!(
        message.contains("0.0.0.0:80 (the default without `tls`)"),
        "{message}"
    );
}

#[test]
fn two_services_cannot_claim_the_same_host_and_path() {
    let (routing, diags) = parse(json!({
        "web": service(json!([{"listen": 8080, "host": "a.test", "path": "/x", "port": 80}])),
        "api": service(json!([
            {"listen": 8080, "host": "A.test", "path": "/x/", "port": 80},
            {"listen": 8080, "host": "a.test", "path": "/y", "port": 80},
            {"listen": 8081, "host": "a.test", "path": "/x", "port": 80},
        ])),
    }));
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(
        diags[0].path.to_string(),
        "services.api.x-composure.routes[0]"
    );
    assert_eq!(
        diags[0].message,
        "service `api`: `a.test/x/` on 0.0.0.0:8080 is already routed to service `web` (services.web.x-composure.routes[0])"
    );
    // The first claimant keeps its route; the others are served.
    assert_eq!(routing.routes().len(), 3);
    assert_eq!(routing.routes()[0].service, "web");
}

#[test]
fn a_listener_is_https_or_plain_not_both() {
    let (path, message, hint) = one_problem(json!({
        "web": service(json!([{"listen": 8443, "port": 80, "tls": {"cert": "c", "key": "k"}}])),
        "api": service(json!([{"listen": 8443, "host": "api.test", "port": 80}])),
    }));
    assert_eq!(path, "services.api.x-composure.routes[0].tls");
    assert!(message.contains("terminates TLS"), "{message}");
    assert!(hint.contains("either HTTPS or plain HTTP"), "{hint}");
}

#[test]
fn one_host_has_one_certificate_per_listener() {
    let (path, message, _) = one_problem(json!({
        "web": service(json!([{"listen": 8443, "host": "a.test", "port": 80, "tls": {"cert": "a", "key": "a"}}])),
        "api": service(json!([{"listen": 8443, "host": "a.test", "path": "/api", "port": 80, "tls": {"cert": "b", "key": "b"}}])),
    }));
    assert_eq!(path, "services.api.x-composure.routes[0].tls");
    assert!(
        message.contains("host `a.test` on 0.0.0.0:8443 already has another certificate"),
        "{message}"
    );
}

#[test]
fn overlapping_listen_addresses_are_refused() {
    let (path, message, _) = one_problem(json!({
        "web": service(json!([{"listen": 8080, "port": 80}])),
        "api": service(json!([{"listen": "127.0.0.1:8080", "port": 80}])),
    }));
    assert_eq!(path, "services.api.x-composure.routes[0].listen");
    assert!(message.contains("overlaps 0.0.0.0:8080"), "{message}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let all = problems(json!({
        "web": service(json!([{"path": "x", "port": 80}, {"host": "", "port": 80}])),
        "api": service(json!([{"port": 0}])),
    }));
    assert_eq!(all.len(), 3, "{all:#?}");
}

#[test]
fn certificates_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["b.test".to_string()]).unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/a.pem"), made.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("certs/a.key"),
        made.signing_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("certs/b.key"),
        other.signing_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(dir.path().join("certs/junk.pem"), "not a certificate").unwrap();
    let tls = |cert: &str, key: &str| json!({"cert": cert, "key": key});
    let (routing, diags) = parse(json!({"web": service(json!([
        {"listen": 1001, "port": 80, "tls": tls("./certs/a.pem", "./certs/a.key")},
        {"listen": 1002, "port": 80, "tls": tls("./certs/missing.pem", "./certs/a.key")},
        {"listen": 1003, "port": 80, "tls": tls("./certs/a.pem", "./certs/b.key")},
        {"listen": 1004, "port": 80, "tls": tls("./certs/junk.pem", "./certs/a.key")},
    ]))}));
    assert_eq!(diags, vec![]);
    let found = routing.check_certificates(dir.path());
    let paths: Vec<String> = found.iter().map(|d| d.path.to_string()).collect();
    assert_eq!(
        paths,
        vec![
            "services.web.x-composure.routes[1].tls",
            "services.web.x-composure.routes[2].tls",
            "services.web.x-composure.routes[3].tls",
        ]
    );
    assert!(
        found[0]
            .message
            .contains("certificate file `./certs/missing.pem` cannot be read"),
        "{}",
        found[0].message
    );
    assert!(
        found[1].message.contains("do not serve"),
        "{}",
        found[1].message
    );
    assert!(
        found[2].message.contains("no certificate"),
        "{}",
        found[2].message
    );
    assert!(
        found[0]
            .hint
            .as_deref()
            .unwrap_or_default()
            .contains(&dir.path().display().to_string()),
        "{:?}",
        found[0].hint
    );
}

#[test]
fn the_service_protocol_is_http_or_tcp() {
    let ok = problems(
        json!({"api": {"image": "x", "expose": ["80"], "x-composure": {"protocol": "http"}}}),
    );
    assert!(ok.is_empty(), "{ok:#?}");
    let (path, message, _) =
        one_problem(json!({"api": {"image": "x", "x-composure": {"protocol": "udp"}}}));
    assert_eq!(path, "services.api.x-composure.protocol");
    assert!(message.contains("must be \"http\" or \"tcp\""), "{message}");
}

#[test]
fn response_timeout_reads_as_a_duration_or_0_for_none() {
    use std::time::Duration;
    let with = |value: Value| {
        project(json!({"api": {"image": "x", "x-composure": {"response_timeout": value}}}))
    };
    let timeout = |value: Value| Routing::upstream_config(&with(value), "api").response_timeout;
    assert_eq!(timeout(json!("1500ms")), Some(Duration::from_millis(1_500)));
    assert_eq!(timeout(json!("1m")), Some(Duration::from_secs(60)));
    assert_eq!(timeout(json!("0s")), None);
    assert_eq!(timeout(json!(0)), None);
    let unset = project(json!({"api": {"image": "x"}}));
    assert_eq!(
        Routing::upstream_config(&unset, "api").response_timeout,
        Some(crate::DEFAULT_RESPONSE_TIMEOUT)
    );
    assert!(Routing::parse(&with(json!("2s"))).1.is_empty());

    for bad in [json!("soon"), json!(30), json!(["1s"])] {
        let (path, message, hint) = one_problem(json!({
            "api": {"image": "x", "x-composure": {"response_timeout": bad}}
        }));
        assert_eq!(path, "services.api.x-composure.response_timeout");
        assert!(
            message.contains("service `api`: `response_timeout`"),
            "{message}"
        );
        assert!(hint.contains("\"30s\""), "{hint}");
        // An invalid value is refused at `up`; what runs meanwhile keeps the default.
        assert_eq!(timeout(bad), Some(crate::DEFAULT_RESPONSE_TIMEOUT));
    }
}
