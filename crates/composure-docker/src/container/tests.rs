use std::path::Path;

use bollard::models::{MountType, RestartPolicyNameEnum};
use composure_compose::model::project_from_json;
use serde_json::{Value, json};

use super::*;

const FILES_DIR: &str = "/var/lib/composure/files/p-web-1";

/// A project `p` with the service `web` as given, the networks and volumes it may use
/// (with the scoped names the loader would give them), and secrets and configs.
fn project(mut web: Value) -> Project {
    // What the loader's normaliser does: a service with no network joins `default`.
    if web.get("networks").is_none() && web.get("network_mode").is_none() {
        web["networks"] = json!(["default"]);
    }
    project_from_json(json!({
        "name": "p",
        "services": {"web": web},
        "networks": {
            "default": {"name": "p_default"},
            "back": {"name": "p_back"},
        },
        "volumes": {"data": {"name": "p_data"}},
        "secrets": {
            "token": {"file": "/srv/token.txt"},
            "api_key": {"environment": "API_KEY"},
            "ext": {"external": true, "name": "ext"},
        },
        "configs": {
            "site": {"content": "hello"},
            "nginx": {"file": "/srv/nginx.conf"},
        },
    }))
    .unwrap()
}

fn plan_with(web: Value, peers: &Peers) -> Result<CreatePlan, RuntimeError> {
    plan_given(web, peers, &[])
}

fn plan_given(web: Value, peers: &Peers, gpus: &[String]) -> Result<CreatePlan, RuntimeError> {
    let project = project(web);
    let labels: IndexMap<String, String> = [(labels::SLOT.to_string(), "1".to_string())]
        .into_iter()
        .collect();
    let file_labels: IndexMap<String, String> = [
        ("from.file".to_string(), "f".to_string()),
        ("shared".to_string(), "file".to_string()),
    ]
    .into_iter()
    .collect();
    plan_create(&CreateInput {
        project_name: "p",
        project: &project,
        service_name: "web",
        service: &project.services["web"],
        container_name: "p-web-1",
        image: "composure-test:latest",
        labels: &labels,
        file_labels: &file_labels,
        peers,
        files_dir: Path::new(FILES_DIR),
        gpus,
    })
}

fn plan(web: Value) -> CreatePlan {
    plan_with(web, &Peers::new()).unwrap()
}

fn error(web: Value) -> String {
    plan_with(web, &Peers::new()).unwrap_err().to_string()
}

fn host(plan: &CreatePlan) -> &HostConfig {
    plan.body.host_config.as_ref().unwrap()
}

use bollard::models::HostConfig;

#[test]
fn process_fields_map_to_the_config() {
    let p = plan(json!({
        "image": "ignored:by-plan",
        "command": ["web", "--port", "8080"],
        "entrypoint": ["/demo-app"],
        "environment": {"A": "1", "EMPTY": "", "UNSET": null},
        "user": "1000:1000",
        "working_dir": "/srv",
        "hostname": "h",
        "domainname": "example.org",
        "tty": true,
        "stdin_open": true,
        "stop_signal": "SIGINT",
        "stop_grace_period": "1500ms",
        "init": true,
    }));
    let body = &p.body;
    assert_eq!(p.name, "p-web-1");
    assert_eq!(body.image.as_deref(), Some("composure-test:latest"));
    assert_eq!(
        body.cmd,
        Some(vec!["web".into(), "--port".into(), "8080".into()])
    );
    assert_eq!(body.entrypoint, Some(vec!["/demo-app".into()]));
    assert_eq!(body.env, Some(vec!["A=1".into(), "EMPTY=".into()]));
    assert_eq!(body.user.as_deref(), Some("1000:1000"));
    assert_eq!(body.working_dir.as_deref(), Some("/srv"));
    assert_eq!(body.hostname.as_deref(), Some("h"));
    assert_eq!(body.domainname.as_deref(), Some("example.org"));
    assert_eq!((body.tty, body.open_stdin), (Some(true), Some(true)));
    assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(body.stop_timeout, Some(2), "rounded up to whole seconds");
    assert_eq!(host(&p).init, Some(true));
}

#[test]
fn the_engine_restart_policy_is_always_no() {
    for restart in ["always", "unless-stopped", "on-failure:3", "no"] {
        let p = plan(json!({"restart": restart}));
        let policy = host(&p).restart_policy.as_ref().unwrap();
        assert_eq!(policy.name, Some(RestartPolicyNameEnum::NO), "{restart}");
    }
    let p = plan(json!({"deploy": {"restart_policy": {"condition": "any"}}}));
    assert_eq!(
        host(&p).restart_policy.as_ref().unwrap().name,
        Some(RestartPolicyNameEnum::NO)
    );
}

#[test]
fn labels_layer_file_service_caller_then_identity() {
    let p = plan(json!({"labels": {
        "shared": "service",
        "mine": "m",
        "io.composure.managed": "spoofed",
        "com.docker.compose.project": "other",
    }}));
    let labels = p.body.labels.as_ref().unwrap();
    assert_eq!(labels["from.file"], "f");
    assert_eq!(labels["shared"], "service", "labels win over label_file");
    assert_eq!(labels["mine"], "m");
    assert_eq!(labels[labels::SLOT], "1", "the caller's labels are kept");
    assert_eq!(labels[labels::MANAGED], "true", "identity labels win");
    assert_eq!(labels[labels::PROJECT], "p");
    assert_eq!(labels[labels::SERVICE], "web");
    assert_eq!(labels[labels::COMPOSE_PROJECT], "p");
    assert_eq!(labels[labels::COMPOSE_SERVICE], "web");
}

#[test]
fn healthcheck_durations_are_nanoseconds() {
    let p = plan(json!({"healthcheck": {
        "test": ["CMD", "/demo-app", "probe", "http://127.0.0.1:8080/healthz"],
        "interval": "1s", "timeout": "500ms", "retries": 3,
        "start_period": "2s", "start_interval": "100ms",
    }}));
    let hc = p.body.healthcheck.unwrap();
    assert_eq!(hc.test.unwrap()[0], "CMD");
    assert_eq!(hc.interval, Some(1_000_000_000));
    assert_eq!(hc.timeout, Some(500_000_000));
    assert_eq!(hc.retries, Some(3));
    assert_eq!(hc.start_period, Some(2_000_000_000));
    assert_eq!(hc.start_interval, Some(100_000_000));

    let p = plan(json!({"healthcheck": {"disable": true}}));
    assert_eq!(p.body.healthcheck.unwrap().test, Some(vec!["NONE".into()]));
    let p = plan(json!({"healthcheck": {"test": "curl -f localhost"}}));
    assert_eq!(
        p.body.healthcheck.unwrap().test,
        Some(vec!["CMD-SHELL".into(), "curl -f localhost".into()])
    );
}

#[test]
fn deploy_resources_win_over_legacy_attributes() {
    let p = plan(json!({
        "mem_limit": "1g", "cpus": 2, "pids_limit": 50, "mem_reservation": "64m",
        "memswap_limit": "2g", "mem_swappiness": 10, "cpu_period": 100000, "cpu_quota": 50000,
        "cpu_rt_period": "1ms", "cpu_rt_runtime": 500, "cpuset": "0-1",
        "oom_kill_disable": true, "oom_score_adj": -500,
        "deploy": {"resources": {
            "limits": {"cpus": "0.5", "memory": "256m", "pids": 100},
            "reservations": {"cpus": "0.25", "memory": "128m"},
        }},
    }));
    let h = host(&p);
    assert_eq!(h.memory, Some(256 << 20));
    assert_eq!(h.nano_cpus, Some(500_000_000));
    assert_eq!(h.pids_limit, Some(100));
    assert_eq!(h.memory_reservation, Some(128 << 20));
    assert_eq!(h.cpu_shares, Some(256), "0.25 CPU reserved = 256 shares");
    assert_eq!(h.memory_swap, Some(2 << 30));
    assert_eq!(h.memory_swappiness, Some(10));
    assert_eq!((h.cpu_period, h.cpu_quota), (Some(100_000), Some(50_000)));
    assert_eq!(h.cpu_realtime_period, Some(1000));
    assert_eq!(h.cpu_realtime_runtime, Some(500));
    assert_eq!(h.cpuset_cpus.as_deref(), Some("0-1"));
    assert_eq!(h.oom_kill_disable, Some(true));
    assert_eq!(h.oom_score_adj, Some(-500));

    let legacy = plan(json!({"mem_limit": "1g", "cpus": 1.5, "cpu_shares": 512}));
    let h = host(&legacy);
    assert_eq!(h.memory, Some(1 << 30));
    assert_eq!(h.nano_cpus, Some(1_500_000_000));
    assert_eq!(h.cpu_shares, Some(512));
}

#[test]
fn assigned_gpus_replace_the_counts_asked_for() {
    let gpus = ["GPU-0002".to_string(), "GPU-0005".to_string()];
    let web = json!({
        "gpus": [{"count": 2, "capabilities": ["compute"]}],
        "environment": {"NVIDIA_VISIBLE_DEVICES": "all", "A": "1"},
        "deploy": {"resources": {"reservations": {"devices": [
            {"capabilities": ["tpu"], "count": 1},
        ]}}},
    });
    let p = plan_given(web, &Peers::new(), &gpus).unwrap();
    let h = host(&p);
    let reqs = h.device_requests.as_ref().unwrap();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].driver.as_deref(), Some("nvidia"));
    assert_eq!(reqs[0].count, None);
    assert_eq!(reqs[0].device_ids.as_deref(), Some(&gpus[..]));
    assert_eq!(
        reqs[0].capabilities,
        Some(vec![vec!["gpu".to_string(), "compute".to_string()]])
    );
    // Not a GPU: as written.
    assert_eq!(reqs[1].capabilities, Some(vec![vec!["tpu".to_string()]]));
    let env = p.body.env.unwrap();
    assert!(env.contains(&"NVIDIA_VISIBLE_DEVICES=GPU-0002,GPU-0005".to_string()));
    assert!(env.contains(&"A=1".to_string()));
    assert!(!env.contains(&"NVIDIA_VISIBLE_DEVICES=all".to_string()));
}

#[test]
fn gpus_and_reserved_devices_are_device_requests() {
    let p = plan(json!({
        "gpus": "all",
        "deploy": {"resources": {"reservations": {"devices": [
            {"driver": "nvidia", "device_ids": ["0", "3"], "capabilities": ["gpu", "utility"]},
        ]}}},
        "devices": ["/dev/fuse", "/dev/sda:/dev/xvda:r"],
    }));
    let h = host(&p);
    let reqs = h.device_requests.as_ref().unwrap();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].count, Some(-1));
    assert_eq!(reqs[0].capabilities, Some(vec![vec!["gpu".to_string()]]));
    assert_eq!(reqs[1].driver.as_deref(), Some("nvidia"));
    assert_eq!(reqs[1].device_ids, Some(vec!["0".into(), "3".into()]));
    assert_eq!(reqs[1].count, None);
    let devices = h.devices.as_ref().unwrap();
    assert_eq!(devices[0].path_in_container.as_deref(), Some("/dev/fuse"));
    assert_eq!(devices[0].cgroup_permissions.as_deref(), Some("rwm"));
    assert_eq!(devices[1].path_in_container.as_deref(), Some("/dev/xvda"));
    assert_eq!(devices[1].cgroup_permissions.as_deref(), Some("r"));
}

#[test]
fn kernel_and_security_attributes() {
    let p = plan(json!({
        "ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": 512},
        "sysctls": {"net.core.somaxconn": 1024},
        "cap_add": ["NET_ADMIN"], "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": true, "privileged": false,
        "tmpfs": ["/run", "/tmp:size=64m"],
        "shm_size": "128m",
        "extra_hosts": ["db=10.0.0.5", "v6=::1"],
        "dns": ["1.1.1.1"], "dns_opt": ["ndots:2"], "dns_search": ["example.org"],
        "group_add": ["audio"], "userns_mode": "host", "uts": "host",
        "cgroup": "private", "cgroup_parent": "/composure",
        "runtime": "runc", "isolation": "default",
        "storage_opt": {"size": "10G"},
        "device_cgroup_rules": ["c 1:3 mr"],
        "logging": {"driver": "json-file", "options": {"max-size": "10m"}},
        "blkio_config": {"weight": 300, "weight_device": [{"path": "/dev/sda", "weight": 400}],
                          "device_read_bps": [{"path": "/dev/sda", "rate": "1mb"}]},
        "platform": "linux/amd64",
    }));
    let h = host(&p);
    let ulimits = h.ulimits.as_ref().unwrap();
    assert_eq!(ulimits[0].name.as_deref(), Some("nofile"));
    assert_eq!((ulimits[0].soft, ulimits[0].hard), (Some(1024), Some(2048)));
    assert_eq!((ulimits[1].soft, ulimits[1].hard), (Some(512), Some(512)));
    assert_eq!(h.sysctls.as_ref().unwrap()["net.core.somaxconn"], "1024");
    assert_eq!(h.cap_add, Some(vec!["NET_ADMIN".into()]));
    assert_eq!(h.cap_drop, Some(vec!["ALL".into()]));
    assert_eq!(h.security_opt, Some(vec!["no-new-privileges:true".into()]));
    assert_eq!((h.readonly_rootfs, h.privileged), (Some(true), Some(false)));
    let tmpfs = h.tmpfs.as_ref().unwrap();
    assert_eq!(tmpfs["/run"], "");
    assert_eq!(tmpfs["/tmp"], "size=64m");
    assert_eq!(h.shm_size, Some(128 << 20));
    assert_eq!(
        h.extra_hosts,
        Some(vec!["db:10.0.0.5".into(), "v6:::1".into()])
    );
    assert_eq!(h.dns, Some(vec!["1.1.1.1".into()]));
    assert_eq!(h.dns_options, Some(vec!["ndots:2".into()]));
    assert_eq!(h.dns_search, Some(vec!["example.org".into()]));
    assert_eq!(h.group_add, Some(vec!["audio".into()]));
    assert_eq!(h.userns_mode.as_deref(), Some("host"));
    assert_eq!(h.uts_mode.as_deref(), Some("host"));
    assert_eq!(h.cgroupns_mode, Some(HostConfigCgroupnsModeEnum::PRIVATE));
    assert_eq!(h.cgroup_parent.as_deref(), Some("/composure"));
    assert_eq!(h.runtime.as_deref(), Some("runc"));
    assert_eq!(h.isolation, Some(HostConfigIsolationEnum::DEFAULT));
    assert_eq!(h.storage_opt.as_ref().unwrap()["size"], "10G");
    assert_eq!(h.device_cgroup_rules, Some(vec!["c 1:3 mr".into()]));
    let log = h.log_config.as_ref().unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    assert_eq!(log.config.as_ref().unwrap()["max-size"], "10m");
    assert_eq!(h.blkio_weight, Some(300));
    assert_eq!(h.blkio_weight_device.as_ref().unwrap()[0].weight, Some(400));
    assert_eq!(
        h.blkio_device_read_bps.as_ref().unwrap()[0].rate,
        Some(1 << 20)
    );
    assert_eq!(p.platform.as_deref(), Some("linux/amd64"));
}

#[test]
fn ports_are_exposed_and_published() {
    let p = plan(json!({
        "ports": ["8080:80", "127.0.0.1::9000/udp", "3000", "8000-8001:7000-7001",
                   "9100-9200:81"],
        "expose": ["5000-5001/tcp", 6000],
    }));
    let exposed = p.body.exposed_ports.as_ref().unwrap();
    for key in [
        "80/tcp", "9000/udp", "3000/tcp", "7000/tcp", "7001/tcp", "81/tcp", "5000/tcp", "5001/tcp",
        "6000/tcp",
    ] {
        assert!(exposed.contains(&key.to_string()), "{key} in {exposed:?}");
    }
    let bindings = host(&p).port_bindings.as_ref().unwrap();
    let binding = |key: &str| bindings[key].as_ref().unwrap()[0].clone();
    assert_eq!(binding("80/tcp").host_port.as_deref(), Some("8080"));
    assert_eq!(binding("80/tcp").host_ip, None);
    assert_eq!(binding("9000/udp").host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        binding("9000/udp").host_port.as_deref(),
        Some(""),
        "engine picks"
    );
    assert_eq!(binding("3000/tcp").host_port.as_deref(), Some(""));
    assert_eq!(binding("7001/tcp").host_port.as_deref(), Some("8001"));
    assert_eq!(binding("81/tcp").host_port.as_deref(), Some("9100-9200"));
    assert!(
        !bindings.contains_key("5000/tcp"),
        "expose does not publish"
    );
}

#[test]
fn volumes_become_binds_and_mounts() {
    let p = plan(json!({"volumes": [
        "/srv/app:/app:ro,z",
        {"type": "bind", "source": "/srv/conf", "target": "/conf",
         "bind": {"create_host_path": false, "propagation": "rslave"}},
        {"type": "bind", "source": "/srv/plain", "target": "/plain"},
        "data:/data:nocopy",
        "/anonymous",
        {"type": "tmpfs", "target": "/scratch", "tmpfs": {"size": "1m", "mode": "1777"}},
    ]}));
    let h = host(&p);
    assert_eq!(h.binds, Some(vec!["/srv/app:/app:ro,z".to_string()]));
    let mounts = h.mounts.as_ref().unwrap();
    let at = |target: &str| {
        mounts
            .iter()
            .find(|m| m.target.as_deref() == Some(target))
            .unwrap_or_else(|| panic!("no mount at {target}"))
    };
    let conf = at("/conf");
    assert_eq!(conf.typ, Some(MountType::BIND));
    assert_eq!(
        conf.bind_options.as_ref().unwrap().propagation,
        Some(bollard::models::MountBindOptionsPropagationEnum::RSLAVE)
    );
    assert_eq!(
        at("/plain").typ,
        Some(MountType::BIND),
        "long syntax: no host path created"
    );
    let data = at("/data");
    assert_eq!(data.typ, Some(MountType::VOLUME));
    assert_eq!(
        data.source.as_deref(),
        Some("p_data"),
        "the project-scoped name"
    );
    assert_eq!(data.volume_options.as_ref().unwrap().no_copy, Some(true));
    let anon = at("/anonymous");
    assert_eq!(
        (anon.typ, anon.source.as_deref()),
        (Some(MountType::VOLUME), None)
    );
    let scratch = at("/scratch");
    assert_eq!(scratch.typ, Some(MountType::TMPFS));
    let tmpfs = scratch.tmpfs_options.as_ref().unwrap();
    assert_eq!(
        (tmpfs.size_bytes, tmpfs.mode),
        (Some(1 << 20), Some(0o1777))
    );
}

#[test]
fn unmappable_volumes_are_rejected() {
    assert!(
        error(
            json!({"volumes": [{"type": "volume", "source": "data", "target": "/d",
                                        "volume": {"subpath": "x"}}]})
        )
        .contains("subpath")
    );
    assert!(
        error(json!({"volumes": [{"type": "image", "source": "alpine", "target": "/i"}]}))
            .contains("type: image")
    );
    assert!(error(json!({"volumes": ["nope:/x"]})).contains("`nope` is not declared"));
    assert!(
        error(
            json!({"volumes": [{"type": "bind", "source": "/a", "target": "/b",
                                        "bind": {"create_host_path": false, "selinux": "z"}}]})
        )
        .contains("selinux")
    );
    assert!(
        error(json!({"volumes": [{"type": "bind", "source": "rel", "target": "/b"}]}))
            .contains("absolute")
    );
}

#[test]
fn secrets_and_configs_are_read_only_files() {
    let p = plan(json!({
        "secrets": ["token", {"source": "api_key", "target": "key", "mode": "0400", "uid": "0"}],
        "configs": ["site", {"source": "nginx", "target": "/etc/nginx/nginx.conf"}],
    }));
    let mounts = host(&p).mounts.as_ref().unwrap();
    let at = |target: &str| {
        mounts
            .iter()
            .find(|m| m.target.as_deref() == Some(target))
            .unwrap_or_else(|| panic!("no mount at {target}: {mounts:?}"))
    };
    let token = at("/run/secrets/token");
    assert_eq!(
        token.source.as_deref(),
        Some("/srv/token.txt"),
        "a file is bound as is"
    );
    assert_eq!(token.read_only, Some(true));
    let key = at("/run/secrets/key");
    assert_eq!(
        key.source.as_deref(),
        Some("/var/lib/composure/files/p-web-1/secrets/api_key")
    );
    assert_eq!(
        at("/site").source.as_deref(),
        Some("/var/lib/composure/files/p-web-1/configs/site")
    );
    assert_eq!(
        at("/etc/nginx/nginx.conf").source.as_deref(),
        Some("/srv/nginx.conf")
    );
    assert_eq!(
        p.files,
        vec![
            FileToWrite {
                path: Path::new(FILES_DIR).join("secrets/api_key"),
                content: FileContent::Env("API_KEY".into()),
                mode: 0o400,
                uid: Some(0),
                gid: None,
            },
            FileToWrite {
                path: Path::new(FILES_DIR).join("configs/site"),
                content: FileContent::Text("hello".into()),
                mode: 0o444,
                uid: None,
                gid: None,
            },
        ]
    );
    assert!(error(json!({"secrets": ["ext"]})).contains("external"));
    let copied = plan(json!({"secrets": [{"source": "token", "mode": 288}]}));
    assert_eq!(
        copied.files[0].content,
        FileContent::Copy("/srv/token.txt".into()),
        "an owner or mode needs a copy"
    );
}

#[test]
fn networks_first_at_create_the_rest_after() {
    let p = plan(json!({"networks": {
        "default": {"aliases": ["www"]},
        "back": {"priority": 10, "ipv4_address": "172.30.0.5", "aliases": ["api"]},
    }}));
    assert_eq!(
        host(&p).network_mode.as_deref(),
        Some("p_back"),
        "highest priority first"
    );
    let endpoints = p
        .body
        .networking_config
        .as_ref()
        .unwrap()
        .endpoints_config
        .as_ref()
        .unwrap();
    let back = &endpoints["p_back"];
    assert_eq!(
        back.aliases,
        Some(vec!["web".into(), "api".into(), "p-web-1".into()])
    );
    assert_eq!(
        back.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
        Some("172.30.0.5")
    );
    assert_eq!(p.connect_after.len(), 1);
    let (name, endpoint) = &p.connect_after[0];
    assert_eq!(name, "p_default");
    assert_eq!(
        endpoint.aliases,
        Some(vec!["web".into(), "www".into(), "p-web-1".into()])
    );
    assert!(
        error(json!({"networks": {"default": {"mac_address": "02:42:ac:11:00:02"}}}))
            .contains("networks.default.mac_address")
    );
    assert!(error(json!({"networks": ["nowhere"]})).contains("`nowhere` is not declared"));
}

#[test]
fn service_references_need_a_running_peer() {
    let web = json!({
        "network_mode": "service:db", "ipc": "service:db", "pid": "host",
        "links": ["db:database"], "external_links": ["legacy"], "volumes_from": ["db:ro", "container:c1"],
    });
    let svc: Service = serde_json::from_value(web.clone()).unwrap();
    assert_eq!(referenced_services(&svc), vec!["db".to_string()]);
    let missing = plan_with(web.clone(), &Peers::new()).unwrap_err();
    assert!(
        missing.is_transient(),
        "a starting dependency is worth a retry"
    );
    assert!(missing.to_string().contains("service `db`"), "{missing}");

    let peers: Peers = [(
        "db".to_string(),
        Peer {
            id: "dbid".into(),
            name: "p-db-1".into(),
        },
    )]
    .into_iter()
    .collect();
    let p = plan_with(web, &peers).unwrap();
    let h = host(&p);
    assert_eq!(h.network_mode.as_deref(), Some("container:dbid"));
    assert_eq!(h.ipc_mode.as_deref(), Some("container:dbid"));
    assert_eq!(h.pid_mode.as_deref(), Some("host"));
    assert_eq!(h.volumes_from, Some(vec!["p-db-1:ro".into(), "c1".into()]));
    assert!(p.body.networking_config.is_none());
    assert!(p.connect_after.is_empty());

    let linked = plan_with(json!({"links": ["db"]}), &peers).unwrap();
    let endpoints = linked
        .body
        .networking_config
        .unwrap()
        .endpoints_config
        .unwrap();
    assert_eq!(endpoints["p_default"].links, Some(vec!["p-db-1:db".into()]));
}

#[test]
fn unsupported_fields_are_rejected_not_dropped() {
    for (field, value) in [
        ("annotations", json!({"a": "b"})),
        ("mac_address", json!("02:42:ac:11:00:02")),
        ("post_start", json!([{"command": "true"}])),
        ("pre_stop", json!([{"command": "true"}])),
        ("use_api_socket", json!(true)),
        ("credential_spec", json!({"file": "x"})),
    ] {
        let mut web = json!({});
        web[field] = value;
        assert_eq!(
            error(web),
            format!("service `web`: `{field}` is not supported yet")
        );
    }
    assert!(error(json!({"devices": ["vendor.com/gpu=all"]})).contains("CDI"));
    assert!(
        error(json!({"deploy": {"resources": {"reservations": {
        "generic_resources": [{"discrete_resource_spec": {"kind": "SSD", "value": 1}}]}}}}))
        .contains("generic_resources")
    );
    // The caller (the daemon) decides the name; `container_name` is its input, not a check.
    let plan = plan_with(json!({"container_name": "fixed"}), &Peers::new()).expect("plans");
    assert_eq!(plan.name, "p-web-1");
}

#[test]
fn empty_command_needs_an_entrypoint() {
    assert!(error(json!({"command": []})).contains("command: []"));
    let p = plan(json!({"command": [], "entrypoint": ["/demo-app", "kv"]}));
    assert_eq!(p.body.cmd, Some(vec![]));
    let p = plan(json!({"entrypoint": []}));
    assert_eq!(
        p.body.entrypoint,
        Some(vec![]),
        "clears the image's entrypoint"
    );
}

#[test]
fn the_body_serialises_as_the_engine_expects() {
    let p = plan(json!({"ports": ["8080:80"], "healthcheck": {"test": ["CMD", "true"]}}));
    let json = serde_json::to_value(&p.body).unwrap();
    assert_eq!(json["ExposedPorts"], json!({"80/tcp": {}}));
    assert_eq!(
        json["HostConfig"]["PortBindings"]["80/tcp"],
        json!([{"HostPort": "8080"}])
    );
    assert_eq!(json["HostConfig"]["RestartPolicy"]["Name"], "no");
    assert_eq!(
        json["NetworkingConfig"]["EndpointsConfig"]["p_default"]["Aliases"],
        json!(["web", "p-web-1"])
    );
}
