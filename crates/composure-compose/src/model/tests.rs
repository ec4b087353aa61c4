//! Whole-project tests: short syntaxes in context, round trips, error paths, the schema's
//! attribute list, and the awesome-compose corpus.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

fn project(doc: Value) -> Project {
    match project_from_json(doc) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn canonical(doc: Value) -> Value {
    serde_json::to_value(project(doc)).unwrap()
}

fn error(doc: Value) -> ModelError {
    project_from_json(doc).unwrap_err()
}

/// Serializing, reading back and serializing again changes nothing (but the obsolete
/// `version`, which is never printed).
fn assert_fixed_point(p: &Project) {
    let once = serde_json::to_value(p).unwrap();
    let again = project(once.clone());
    let without_version = Project {
        version: None,
        ..p.clone()
    };
    assert_eq!(
        again, without_version,
        "reading the canonical form back gives another model"
    );
    assert_eq!(serde_json::to_value(&again).unwrap(), once);
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compose-corpus")
}

#[test]
fn short_syntaxes_become_long_in_a_project() {
    let got = canonical(json!({
        "version": "3.8",
        "services": {
            "web": {
                "image": "nginx",
                "command": "nginx -g 'daemon off;'",
                "ports": ["8080:80", 443],
                "volumes": ["./site:/usr/share/nginx/html:ro", "cache:/var/cache"],
                "environment": ["MODE=prod", "TOKEN"],
                "labels": ["tier=front"],
                "depends_on": ["api"],
                "networks": ["front"],
                "secrets": ["cert"],
                "configs": ["site"],
                "env_file": ".env",
                "dns": "8.8.8.8",
                "tmpfs": "/run",
                "healthcheck": {"test": "curl -f http://localhost", "interval": "90s"},
                "extends": "base",
                "ulimits": {"nproc": "65535"},
                "privileged": "yes",
                "mem_limit": "512m",
                "stop_grace_period": "1m30s",
                "x-extra": [1, 2],
            },
            "api": {"build": "./api", "gpus": "all", "devices": ["/dev/fuse"]},
            "base": null,
        },
        "networks": {"front": null},
        "volumes": {"cache": {}},
        "secrets": {"cert": {"file": "./cert.pem"}},
        "configs": {"site": {"content": "hello"}},
        "x-project": {"team": "a"},
    }));
    assert_eq!(
        got,
        json!({
            "services": {
                "web": {
                    "command": ["nginx", "-g", "daemon off;"],
                    "configs": [{"source": "site"}],
                    "depends_on": {"api": {"condition": "service_started", "required": true}},
                    "dns": ["8.8.8.8"],
                    "env_file": [{"path": ".env", "required": true}],
                    "environment": {"MODE": "prod", "TOKEN": null},
                    "extends": {"service": "base"},
                    "healthcheck": {"interval": "1m30s",
                                    "test": ["CMD-SHELL", "curl -f http://localhost"]},
                    "image": "nginx",
                    "labels": {"tier": "front"},
                    "mem_limit": 536_870_912,
                    "networks": {"front": null},
                    "ports": [
                        {"mode": "ingress", "protocol": "tcp", "published": "8080", "target": 80},
                        {"mode": "ingress", "protocol": "tcp", "target": 443},
                    ],
                    "privileged": true,
                    "secrets": [{"source": "cert", "target": "/run/secrets/cert"}],
                    "stop_grace_period": "1m30s",
                    "tmpfs": ["/run"],
                    "ulimits": {"nproc": 65535},
                    "volumes": [
                        {"type": "bind", "source": "./site", "target": "/usr/share/nginx/html",
                         "read_only": true, "bind": {"create_host_path": true}},
                        {"type": "volume", "source": "cache", "target": "/var/cache",
                         "volume": {}},
                    ],
                    "x-extra": [1, 2],
                },
                "api": {
                    "build": {"context": "./api"},
                    "devices": [{"source": "/dev/fuse", "target": "/dev/fuse",
                                 "permissions": "rwm"}],
                    "gpus": [{"count": "all"}],
                },
                "base": {},
            },
            "networks": {"front": {}},
            "volumes": {"cache": {}},
            "secrets": {"cert": {"file": "./cert.pem"}},
            "configs": {"site": {"content": "hello"}},
            "x-project": {"team": "a"},
        })
    );
}

#[test]
fn version_is_read_but_not_printed() {
    let p = project(json!({"version": 3.8, "services": {}}));
    assert_eq!(p.version.as_deref(), Some("3.8"));
    assert_eq!(serde_json::to_value(&p).unwrap(), json!({"services": {}}));
}

#[test]
fn an_empty_document_is_an_empty_project() {
    assert_eq!(project(Value::Null), Project::default());
    assert!(project_from_json(json!("services")).is_err());
}

#[test]
fn services_keep_their_order() {
    let p = project(json!({"services": {"zeta": {}, "alpha": {}, "mid": {}}}));
    let names: Vec<&str> = p.services.keys().map(String::as_str).collect();
    assert_eq!(names, ["zeta", "alpha", "mid"]);
}

#[test]
fn errors_carry_the_json_path() {
    let cases = [
        (
            json!({"services": {"web": {"ports": ["80:80/http"]}}}),
            "services.web.ports[0]",
            "http",
        ),
        (
            json!({"services": {"web": {"healthcheck": {"interval": "10"}}}}),
            "services.web.healthcheck.interval",
            "missing unit",
        ),
        (
            json!({"services": {"web": {"deploy": {"replicas": "many"}}}}),
            "services.web.deploy.replicas",
            "`many`",
        ),
        (
            json!({"services": {"web": {"volumes": ["a:/b", "x1:/y:ro:w"]}}}),
            "services.web.volumes[1]",
            "too many colons",
        ),
        (
            json!({"services": {"web": {"mem_limit": "lots"}}}),
            "services.web.mem_limit",
            "`lots`",
        ),
        (
            json!({"services": {"web": {"environment": {"A": [1]}}}}),
            "services.web.environment.A",
            "sequence",
        ),
        (
            json!({"services": {"web": {"depends_on": {"db": {"condition": "up"}}}}}),
            "services.web.depends_on.db.condition",
            "`up`",
        ),
    ];
    for (doc, path, fragment) in cases {
        let err = error(doc);
        assert_eq!(err.path, path, "{err}");
        assert!(err.message.contains(fragment), "{err}");
        assert_eq!(err.yaml_path.to_string(), path);
    }
}

#[test]
fn unknown_attributes_are_errors_naming_the_key() {
    let err = error(json!({"services": {"web": {"imgae": "nginx"}}}));
    assert_eq!(err.path, "services.web.imgae");
    assert!(err.message.contains("`imgae`"), "{err}");

    let err = error(json!({"services": {}, "servcies": {}}));
    assert_eq!(err.path, "servcies");

    let err = error(json!({"services": {"web": {"deploy": {"resources": {"limit": {}}}}}}));
    assert_eq!(err.path, "services.web.deploy.resources.limit");

    // Attributes without `x-` extensions are checked by serde itself.
    let err = error(json!({"services": {"web": {"blkio_config": {"wieght": 10}}}}));
    assert_eq!(err.path, "services.web.blkio_config.wieght");
    assert!(err.message.contains("expected one of"), "{err}");
}

#[test]
fn legacy_external_name_becomes_the_name() {
    let p = project(json!({"services": {}, "volumes": {"data": {"external": {"name": "real"}}}}));
    assert_eq!(p.volumes["data"].external, Some(true));
    assert_eq!(p.volumes["data"].name.as_deref(), Some("real"));
    let err = error(json!({"networks": {"n": {"external": {"name": "a"}, "name": "b"}}}));
    assert_eq!(err.path, "networks.n");
}

/// One value for every attribute of the schema's `service` definition, in a mix of
/// short and long syntaxes.
fn every_service_attribute() -> Value {
    // Several literals: one would exceed the json! macro's recursion limit.
    let parts = [
        json!({
            "annotations": ["com.example.foo=bar"],
            "attach": "false",
            "blkio_config": {"weight": 300, "device_read_bps": [{"path": "/dev/sda", "rate": "12mb"}]},
            "build": {"context": ".", "args": {"A": 1}},
            "cap_add": ["ALL"],
            "cap_drop": ["NET_ADMIN"],
            "cgroup": "host",
            "cgroup_parent": "m-executor-abcd",
            "command": ["echo", "hi"],
            "configs": [{"source": "cfg", "target": "/cfg", "mode": 292}],
            "container_name": "my-web",
            "cpu_count": "2",
            "cpu_percent": 50,
            "cpu_shares": 73,
            "cpu_quota": "50000",
            "cpu_period": 100000,
            "cpu_rt_period": "1400us",
            "cpu_rt_runtime": 95000,
            "cpus": "1.5",
            "cpuset": "0-3",
            "credential_spec": {"config": "my_credential_spec"},
            "depends_on": {"db": {"condition": "service_healthy", "restart": "true"}},
            "deploy": {"replicas": 2},
            "develop": {"watch": [{"path": "./src", "action": "sync", "target": "/app"}]},
        }),
        json!({
            "device_cgroup_rules": ["c 1:3 mr"],
            "devices": ["/dev/ttyUSB0:/dev/ttyUSB0"],
            "dns": ["8.8.8.8"],
            "dns_opt": ["use-vc"],
            "dns_search": "example.com",
            "domainname": "foo.com",
            "entrypoint": "/entrypoint.sh -v",
            "env_file": [".env", {"path": "opt.env", "required": false}],
            "label_file": "./app.labels",
            "environment": {"A": "1"},
            "expose": ["3000"],
            "extends": {"service": "base", "file": "common.yaml"},
            "provider": {"type": "awesomecloud", "options": {"type": "mysql", "size": 256,
                                                               "zones": ["a", "b"]}},
            "external_links": ["redis_1"],
            "extra_hosts": {"somehost": "162.242.195.82"},
            "gpus": [{"driver": "nvidia", "count": 2}],
            "group_add": ["mail", 1000],
            "healthcheck": {"test": ["CMD", "true"], "retries": 3},
            "hostname": "web",
            "image": "nginx:1.27",
            "init": true,
            "ipc": "shareable",
            "isolation": "default",
            "labels": {"a": "b"},
        }),
        json!({
            "links": ["db:database"],
            "logging": {"driver": "syslog", "options": {"syslog-address": "tcp://192.168.0.42:123"}},
            "mac_address": "02:42:ac:11:00:02",
            "mem_limit": "1g",
            "mem_reservation": 1024,
            "mem_swappiness": "60",
            "memswap_limit": -1,
            "network_mode": "bridge",
            "models": ["llm"],
            "networks": {"front": {"aliases": ["www"]}},
            "oom_kill_disable": "true",
            "oom_score_adj": -500,
            "pid": "host",
            "pids_limit": "-1",
            "platform": "linux/amd64",
            "ports": ["127.0.0.1:8080:80"],
            "pre_start": [{"command": "migrate", "image": "busybox"}],
            "post_start": [{"command": "./on-start.sh", "user": "root"}],
            "pre_stop": [{"command": ["./on-stop.sh"]}],
            "privileged": false,
            "profiles": ["debug"],
            "pull_policy": "every_12h",
            "pull_refresh_after": "12h",
            "read_only": "true",
        }),
        json!({
            "restart": "on-failure:3",
            "runtime": "runc",
            "scale": "3",
            "security_opt": ["label=user:USER"],
            "shm_size": "64m",
            "secrets": ["token"],
            "sysctls": ["net.core.somaxconn=1024"],
            "stdin_open": true,
            "stop_grace_period": "30s",
            "stop_signal": "SIGUSR1",
            "storage_opt": {"size": "1G"},
            "tmpfs": ["/data:mode=755,uid=1009"],
            "tty": "true",
            "ulimits": {"nofile": {"soft": 20000, "hard": 40000}},
            "use_api_socket": true,
            "user": "1000:1000",
            "uts": "host",
            "userns_mode": "host",
            "volumes": [{"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": "1g"}}],
            "volumes_from": ["other:ro"],
            "working_dir": "/app",
            "x-composure": {"autoscale": true},
        }),
    ];
    let mut all = serde_json::Map::new();
    for part in parts {
        if let Value::Object(map) = part {
            all.extend(map);
        }
    }
    Value::Object(all)
}

#[test]
fn every_schema_service_attribute_has_a_field() {
    let schema_path = corpus().join("compose-go-testdata/schema/compose-spec.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&schema_path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", schema_path.display()));
    let mut in_schema: Vec<&String> = schema["$defs"]["service"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    in_schema.sort();

    let sample = every_service_attribute();
    let mut in_sample: Vec<&String> = sample
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with("x-"))
        .collect();
    in_sample.sort();
    assert_eq!(
        in_sample, in_schema,
        "the sample must cover exactly the schema's attributes"
    );

    let p = project(json!({"services": {"web": sample.clone()}}));
    let printed = serde_json::to_value(&p).unwrap();
    let printed = printed["services"]["web"].as_object().unwrap();
    for key in sample.as_object().unwrap().keys() {
        assert!(
            printed.contains_key(key),
            "`{key}` is lost on the way through the model"
        );
    }
    assert_fixed_point(&p);
}

#[test]
fn typed_values_of_the_full_service() {
    let p = project(json!({"services": {"web": every_service_attribute()}}));
    let web = &p.services["web"];
    assert_eq!(web.attach, Some(false));
    assert_eq!(web.cpu_rt_period, Some(Microseconds(1400)));
    assert_eq!(web.cpus, Some(Cpus(1.5)));
    assert_eq!(web.scale, Some(3));
    assert_eq!(web.memswap_limit, Some(Bytes(-1)));
    assert_eq!(web.pids_limit, Some(-1));
    assert_eq!(web.mem_limit, Some(Bytes(1 << 30)));
    assert_eq!(web.group_add, vec!["mail", "1000"]);
    assert_eq!(
        web.entrypoint,
        Some(vec!["/entrypoint.sh".into(), "-v".into()])
    );
    assert!(web.depends_on["db"].restart);
    assert_eq!(web.configs[0].mode, Some(FileMode(0o444)));
    assert_eq!(
        web.provider.as_ref().unwrap().options["zones"],
        vec!["a", "b"]
    );
    assert_eq!(
        web.env_file[1],
        EnvFile {
            path: "opt.env".into(),
            required: false,
            format: None
        }
    );
    assert!(web.develop.is_some());
}

#[test]
fn round_trip_of_a_mixed_project_is_a_fixed_point() {
    let p = project(json!({
        "name": "shop",
        "services": {
            "web": {"ports": ["9090-9091:8080-8081", {"target": 22, "x-k": 1}],
                    "volumes": ["/data", "./a:/b:z"], "command": [],
                    "healthcheck": {"disable": true}, "extra_hosts": ["h=1.2.3.4,::1"]},
        },
        "networks": {"n": {"external": true}},
        "models": {"llm": {"model": "ai/smollm2"}},
        "include": ["other.yaml"],
    }));
    assert_eq!(p.services["web"].command, Some(vec![]));
    assert_fixed_point(&p);
}

/// Every awesome-compose sample, parsed as YAML and read as the model (no interpolation:
/// none of these files needs it).
#[test]
fn awesome_compose_corpus_reads() {
    let dir = corpus().join("awesome-compose");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .flat_map(|entry| ["compose.yaml", "compose.yml"].map(|name| entry.path().join(name)))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 39,
        "found only {} compose files",
        files.len()
    );

    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.display().to_string();
        let docs = crate::yaml::parse(&text, &name, &crate::yaml::Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let doc = docs
            .first()
            .map(crate::yaml::YamlNode::to_json)
            .unwrap_or(Value::Null);
        match project_from_json(doc) {
            Ok(p) => {
                assert!(!p.services.is_empty(), "{name}: no services");
                assert_fixed_point(&p);
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
