use composure_compose::model::project_from_json;
use composure_core::{DesiredState, Health, TaskState};
use composure_net::Protocol;
use indexmap::IndexMap;
use std::time::Duration;

use super::image::{interpreter, remove_unfinished, shared_libraries};
use super::*;

fn project(services: serde_json::Value) -> Project {
    project_from_json(serde_json::json!({
        "name": "shop",
        "services": services,
        "networks": {"default": {"name": "shop_default"}, "back": {"name": "shop_back"}},
    }))
    .unwrap()
}

fn image() -> VipImage {
    VipImage {
        tag: "composure-vip:abc".into(),
        context: Some(PathBuf::from("/data/vip-image/abc")),
    }
}

fn ports(service: serde_json::Value) -> Option<Vec<(u16, Protocol)>> {
    let p = project(serde_json::json!({ "s": service }));
    fronted_ports(&p.services["s"]).map(|v| v.iter().map(|p| (p.port, p.protocol)).collect())
}

#[test]
fn declared_tcp_ports_get_a_vip_with_their_protocol() {
    let got = ports(serde_json::json!({
        "image": "x", "networks": {"default": null},
        "ports": [
            {"target": 8080, "published": "80", "protocol": "tcp", "app_protocol": "http"},
            {"target": 9000, "protocol": "tcp"},
        ],
        "expose": ["5432", "7000-7002/tcp", "8080"],
    }));
    assert_eq!(
        got,
        Some(vec![
            (8080, Protocol::Http),
            (9000, Protocol::Tcp),
            (5432, Protocol::Tcp),
            (7000, Protocol::Tcp),
            (7001, Protocol::Tcp),
            (7002, Protocol::Tcp),
        ])
    );
}

#[test]
fn the_service_protocol_applies_to_ports_that_name_none() {
    let got = ports(serde_json::json!({
        "image": "x", "networks": {"default": null},
        "expose": ["8080"],
        "ports": [{"target": 9000, "protocol": "tcp", "x-composure": {"protocol": "tcp"}}],
        "x-composure": {"protocol": "http"},
    }));
    assert_eq!(
        got,
        Some(vec![(9000, Protocol::Tcp), (8080, Protocol::Http)])
    );
}

#[test]
fn services_that_cannot_be_fronted_keep_docker_dns() {
    let base = |extra: serde_json::Value| {
        let mut s = serde_json::json!({"image": "x", "networks": {"default": null}});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        ports(s)
    };
    // No declared port: nothing to listen on.
    assert_eq!(base(serde_json::json!({})), None);
    // A UDP port cannot go through the VIP, and the name cannot be split.
    assert_eq!(
        base(serde_json::json!({"expose": ["8080", "53/udp"]})),
        None
    );
    assert_eq!(
        base(serde_json::json!({"ports": [{"target": 53, "protocol": "udp"}]})),
        None
    );
    // The file asks for DNS round robin.
    assert_eq!(
        base(serde_json::json!({"expose": ["8080"], "deploy": {"endpoint_mode": "dnsrr"}})),
        None
    );
    // Too many ports to listen on each.
    assert_eq!(base(serde_json::json!({"expose": ["10000-20000"]})), None);
    // Not on the project's networks.
    let host = ports(serde_json::json!({"image": "x", "network_mode": "host", "expose": ["80"]}));
    assert_eq!(host, None);
}

#[test]
fn front_adds_a_vip_that_takes_the_name_and_aliases() {
    let p = project(serde_json::json!({
        "web": {
            "image": "x", "expose": ["8080"],
            "networks": {"default": null, "back": {"aliases": ["www"]}},
            "stop_grace_period": "30s",
        },
        "db": {"image": "y", "networks": {"default": null}},
    }));
    let fronted = front(p, &image(), Path::new("/data/vip/shop"));
    let web = &fronted.services["web"];
    assert_eq!(
        web.labels.get(FRONTED_BY).map(String::as_str),
        Some("web.vip")
    );
    // The replicas' networks stay as written (the engine drops their aliases), so their
    // spec hash is the one of the file.
    assert_eq!(web.networks["back"].as_ref().unwrap().aliases, ["www"]);
    let specs = |p: &Project| {
        composure_core::spec::service_specs(p).unwrap()["web"]
            .spec_hash
            .clone()
    };
    let plain = project(serde_json::json!({
        "web": {
            "image": "x", "expose": ["8080"],
            "networks": {"default": null, "back": {"aliases": ["www"]}},
            "stop_grace_period": "30s",
        },
        "db": {"image": "y", "networks": {"default": null}},
    }));
    assert_eq!(specs(&fronted), specs(&plain));
    let vip = &fronted.services["web.vip"];
    assert_eq!(vip.image.as_deref(), Some("composure-vip:abc"));
    assert_eq!(vip.labels.get(VIP_FOR).map(String::as_str), Some("web"));
    assert_eq!(vip.networks["default"].as_ref().unwrap().aliases, ["web"]);
    assert_eq!(
        vip.networks["back"].as_ref().unwrap().aliases,
        ["web", "www"]
    );
    assert_eq!(vip.stop_grace_period, web.stop_grace_period);
    assert_eq!(vip.volumes[0].source.as_deref(), Some("/data/vip/shop/web"));
    assert_eq!(vip.volumes[0].target.as_deref(), Some(MOUNT));
    // db declares no port: no VIP, and it keeps its name.
    assert!(!fronted.services.contains_key("db.vip"));
    assert!(!fronted.services["db"].labels.contains_key(FRONTED_BY));
    // Fronting what is fronted already changes nothing.
    let again = front(fronted.clone(), &image(), Path::new("/data/vip/shop"));
    assert_eq!(again, fronted);
}

#[test]
fn a_service_named_like_the_vip_keeps_the_name_for_itself() {
    let p = project(serde_json::json!({
        "web": {"image": "x", "expose": ["8080"], "networks": {"default": null}},
        "web.vip": {"image": "y", "networks": {"default": null}},
    }));
    let fronted = front(p.clone(), &image(), Path::new("/v"));
    assert_eq!(fronted.services["web.vip"], p.services["web.vip"]);
    assert!(!fronted.services["web"].labels.contains_key(FRONTED_BY));
}

fn task(id: &str, service: &str, health: Health, container: &str) -> Task {
    Task {
        id: TaskId(id.into()),
        project: "shop".into(),
        service: service.into(),
        slot: 1,
        spec_hash: String::new(),
        desired: DesiredState::Running,
        state: TaskState::Running,
        health,
        container_id: Some(container.into()),
        container_name: None,
        exit_code: None,
        error: None,
        attempt: 0,
        created_at: 0,
        not_before: 0,
        started_at: None,
        finished_at: None,
        healthy_at: None,
        node: Default::default(),
        reserved: Default::default(),
        gpus: Default::default(),
    }
}

fn container(id: &str, addresses: &[(&str, &str)]) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        name: id.into(),
        image: String::new(),
        labels: IndexMap::new(),
        status: composure_runtime::ContainerStatus::Running,
        health: Health::None,
        started_at: None,
        finished_at: None,
        addresses: addresses
            .iter()
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect(),
    }
}

#[tokio::test]
async fn sync_writes_the_ready_replicas_and_withdraw_takes_one_out() {
    let dir = tempfile::tempdir().unwrap();
    let vips = Vips::new(
        dir.path().to_path_buf(),
        Some(image()),
        crate::clock::Clock::system(),
    );
    let p = vips.front(
        "shop",
        project(serde_json::json!({
            "web": {"image": "x", "expose": ["8080"], "networks": {"back": null}},
        })),
    );
    let tasks = [
        task("t1", "web", Health::Healthy, "c1"),
        task("t2", "web", Health::Starting, "c2"),
        task("t3", "web", Health::None, "c3"),
    ];
    let containers = [
        container("c1", &[("other", "10.9.0.1"), ("shop_back", "172.20.0.2")]),
        container("c2", &[("shop_back", "172.20.0.3")]),
        container("c3", &[("shop_back", "172.20.0.4")]),
    ];
    assert!(vips.sync("shop", &p, &tasks, &containers).is_empty());
    let web_dir = dir.path().join("shop/web");
    let config: VipConfig = read_json(&web_dir, CONFIG_FILE).unwrap();
    let ips: Vec<String> = config.endpoints.iter().map(|e| e.ip.to_string()).collect();
    // t2 is not healthy yet; t1 is reached on the network it shares with the VIP.
    assert_eq!(ips, ["172.20.0.2", "172.20.0.4"]);
    assert_eq!(
        config.ports,
        [VipPort {
            port: 8080,
            protocol: Protocol::Tcp
        }]
    );

    // Nothing changed: the file keeps its generation.
    assert!(vips.sync("shop", &p, &tasks, &containers).is_empty());
    let same: VipConfig = read_json(&web_dir, CONFIG_FILE).unwrap();
    assert_eq!(same.generation, config.generation);

    // No VIP has answered: withdrawing does not wait for one.
    vips.withdraw("shop", "web", &TaskId("t1".into())).await;
    let after: VipConfig = read_json(&web_dir, CONFIG_FILE).unwrap();
    assert!(after.generation > config.generation);
    assert_eq!(after.endpoints.len(), 1);
    assert_eq!(after.endpoints[0].task, "t3");

    // A VIP reports a request in flight on t1: drain waits for it until the deadline.
    let status = VipStatus {
        generation: after.generation,
        active: [("t1".to_string(), 2)].into_iter().collect(),
    };
    write_json(&web_dir, STATUS_FILE, &status).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
    assert_eq!(
        vips.drain("shop", "web", &TaskId("t1".into()), deadline)
            .await,
        2
    );
    assert_eq!(
        vips.drain("shop", "web", &TaskId("t3".into()), deadline)
            .await,
        0
    );

    vips.remove_project("shop");
    assert!(!dir.path().join("shop").exists());
}

#[test]
fn without_an_image_nothing_is_fronted() {
    let vips = Vips::new(
        PathBuf::from("/nowhere"),
        None,
        crate::clock::Clock::system(),
    );
    let p = project(
        serde_json::json!({"web": {"image": "x", "expose": ["80"], "networks": {"default": null}}}),
    );
    assert_eq!(vips.front("shop", p.clone()), p);
    assert!(vips.image_project().is_none());
}

#[test]
fn the_libraries_come_from_the_memory_map() {
    let maps = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 123 /usr/bin/composure
7f0000000000-7f0000001000 r--p 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000001000-7f0000002000 r-xp 00001000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000003000-7f0000004000 r--p 00000000 fd:01 789 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1
7f0000005000-7f0000006000 r--p 00000000 fd:01 790 /opt/my libs/libfoo.so
7f0000007000-7f0000008000 r--p 00000000 fd:01 791 /usr/lib/old.so.1 (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00022000-7ffd00023000 r-xp 00000000 00:00 0 [vdso]
";
    let libs: Vec<String> = shared_libraries(maps)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        libs,
        [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/opt/my libs/libfoo.so",
        ]
    );
}

#[test]
fn the_interpreter_of_this_test_binary_is_found() {
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let interp = interpreter(&exe).expect("a dynamically linked test binary");
    assert!(interp.starts_with('/'), "{interp}");
    assert!(Path::new(&interp).exists(), "{interp}");
    assert_eq!(interpreter(b"not an elf file"), None);
}

#[tokio::test]
async fn withdraw_waits_for_a_vip_that_is_behind_to_serve_the_withdrawal() {
    let dir = tempfile::tempdir().unwrap();
    let (vips, p, tasks, containers) = two_replicas(dir.path(), crate::clock::Clock::system());
    assert!(vips.sync("shop", &p, &tasks, &containers).is_empty());
    let web_dir = dir.path().join("shop/web");
    let first: VipConfig = read_json(&web_dir, CONFIG_FILE).unwrap();
    // The VIP runs but serves an older config than the one just written.
    let behind = VipStatus {
        generation: first.generation - 1,
        active: Default::default(),
    };
    write_json(&web_dir, STATUS_FILE, &behind).unwrap();

    let withdrawing = {
        let vips = vips.clone();
        tokio::spawn(async move { vips.withdraw("shop", "web", &TaskId("t1".into())).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !withdrawing.is_finished(),
        "withdraw returned before the VIP served it"
    );
    let wanted: VipConfig = read_json(&web_dir, CONFIG_FILE).unwrap();
    let caught_up = VipStatus {
        generation: wanted.generation,
        active: Default::default(),
    };
    write_json(&web_dir, STATUS_FILE, &caught_up).unwrap();
    tokio::time::timeout(Duration::from_secs(1), withdrawing)
        .await
        .expect("withdraw returns once the VIP serves the withdrawal")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn withdraw_of_a_task_a_sync_already_dropped_still_waits_for_the_vip() {
    // A pass marks a task for shutdown and syncs (its config no longer has the task) before
    // the agent withdraws it: the withdrawal must still wait until the VIP serves that
    // config, or the stop that follows cuts requests the VIP still sends the task.
    let dir = tempfile::tempdir().unwrap();
    let (vips, p, mut tasks, containers) =
        two_replicas(dir.path(), crate::clock::Clock::tokio_from(1_000));
    assert!(vips.sync("shop", &p, &tasks, &containers).is_empty());
    let web_dir = dir.path().join("shop/web");
    let both: VipConfig = read_json(&web_dir, CONFIG_FILE).unwrap();
    let serving = VipStatus {
        generation: both.generation,
        active: Default::default(),
    };
    write_json(&web_dir, STATUS_FILE, &serving).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    tasks[0].desired = composure_core::DesiredState::Shutdown;
    assert!(vips.sync("shop", &p, &tasks, &containers).is_empty());
    let without: VipConfig = read_json(&web_dir, CONFIG_FILE).unwrap();
    assert!(without.generation > both.generation);
    assert_eq!(without.endpoints.len(), 1);

    let withdrawing = {
        let vips = vips.clone();
        tokio::spawn(async move { vips.withdraw("shop", "web", &TaskId("t1".into())).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !withdrawing.is_finished(),
        "withdraw returned before the VIP served the config without the task"
    );
    let caught_up = VipStatus {
        generation: without.generation,
        active: Default::default(),
    };
    write_json(&web_dir, STATUS_FILE, &caught_up).unwrap();
    tokio::time::timeout(Duration::from_secs(1), withdrawing)
        .await
        .expect("withdraw returns once the VIP serves the config")
        .unwrap();
}

/// VIPs on `dir` and a project whose `web` has two ready replicas, t1 and t2.
fn two_replicas(
    dir: &Path,
    clock: crate::clock::Clock,
) -> (std::sync::Arc<Vips>, Project, Vec<Task>, Vec<ContainerInfo>) {
    let vips = std::sync::Arc::new(Vips::new(dir.to_path_buf(), Some(image()), clock));
    let p = vips.front(
        "shop",
        project(serde_json::json!({
            "web": {"image": "x", "expose": ["8080"], "networks": {"back": null}},
        })),
    );
    let tasks = vec![
        task("t1", "web", Health::None, "c1"),
        task("t2", "web", Health::None, "c2"),
    ];
    let containers = vec![
        container("c1", &[("shop_back", "172.20.0.2")]),
        container("c2", &[("shop_back", "172.20.0.3")]),
    ];
    (vips, p, tasks, containers)
}

#[test]
fn half_built_image_contexts_of_failed_starts_are_removed() {
    let root = tempfile::tempdir().unwrap();
    let finished = root.path().join("0123456789abcdef");
    let unfinished = root.path().join(".0123456789abcdef.4242");
    std::fs::create_dir_all(finished.join("rootfs")).unwrap();
    std::fs::create_dir_all(unfinished.join("rootfs")).unwrap();
    std::fs::write(unfinished.join("rootfs/composure"), b"half a copy").unwrap();
    remove_unfinished(root.path());
    assert!(finished.is_dir(), "a finished context is kept");
    assert!(!unfinished.exists(), "a half-built one is removed");
}
