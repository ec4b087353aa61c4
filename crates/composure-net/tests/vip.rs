//! A VIP on loopback: it serves the ports its config file names, relays to the replicas the
//! file lists, reports the generation it serves and what is in flight, and lets a withdrawn
//! replica finish its requests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{HttpBackend, client, eventually, get};
use composure_net::Protocol;
use composure_net::vip::{
    CONFIG_FILE, STATUS_FILE, VipConfig, VipEndpoint, VipOptions, VipPort, VipStatus, read_json,
    run, write_json,
};
use tokio_util::sync::CancellationToken;

fn config(generation: u64, port: u16, replicas: &[&HttpBackend]) -> VipConfig {
    VipConfig {
        generation,
        service: "web".into(),
        ports: vec![VipPort {
            port,
            protocol: Protocol::Http,
        }],
        endpoints: replicas
            .iter()
            .map(|b| VipEndpoint {
                task: b.name.clone(),
                ip: b.addr.ip(),
            })
            .collect(),
        response_timeout_ms: None,
    }
}

fn status(dir: &std::path::Path) -> VipStatus {
    read_json(dir, STATUS_FILE).unwrap_or_default()
}

#[tokio::test]
async fn a_vip_follows_its_config_and_drains_a_withdrawn_replica() {
    let dir = tempfile::tempdir().unwrap();
    // The replicas serve one port number on their own addresses, as containers do; the VIP
    // serves it on a third address.
    let b1 = HttpBackend::start("b1").await;
    let port = b1.addr.port();
    let b2 = HttpBackend::start_at("b2", SocketAddr::new("127.0.0.2".parse().unwrap(), port)).await;
    let vip_addr = SocketAddr::new("127.0.0.3".parse().unwrap(), port);

    write_json(dir.path(), CONFIG_FILE, &config(1, port, &[&b1])).unwrap();
    let shutdown = CancellationToken::new();
    let mut options = VipOptions::new(dir.path().to_path_buf());
    options.ip = vip_addr.ip();
    options.drain = Duration::from_secs(2);
    let vip = tokio::spawn(run(options, shutdown.clone()));

    eventually("the VIP serves generation 1", || {
        status(dir.path()).generation == 1
    })
    .await;
    let http = client();
    assert_eq!(get(&http, vip_addr, "/").await.1, "b1");

    // A request in flight on b1 when b1 is withdrawn finishes; new ones go to b2.
    let held = {
        let http = http.clone();
        tokio::spawn(async move { get(&http, vip_addr, "/hold").await })
    };
    b1.wait_held().await;
    write_json(dir.path(), CONFIG_FILE, &config(2, port, &[&b2])).unwrap();
    eventually("the VIP serves generation 2, b1 draining", || {
        let s = status(dir.path());
        s.generation == 2 && s.active.get("b1") == Some(&1)
    })
    .await;
    for _ in 0..5 {
        assert_eq!(get(&http, vip_addr, "/").await.1, "b2");
    }
    b1.release();
    assert!(held.await.unwrap().0.is_success());
    eventually("b1 has drained", || {
        !status(dir.path()).active.contains_key("b1")
    })
    .await;

    // A config that does not read is ignored: the VIP keeps serving what it had.
    std::fs::write(dir.path().join(CONFIG_FILE), "{ not json").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&http, vip_addr, "/").await.1, "b2");

    shutdown.cancel();
    vip.await.unwrap().unwrap();
}
