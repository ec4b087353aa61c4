use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde_json::json;

use crate::placement::{
    Availability, Cluster, GpuClaim, GpuDevice, NodeGpus, NodeInfo, Placed, PlacementSpec,
    Resources, Role, placement_spec,
};
use crate::{NodeName, SpecError};
use composure_compose::model::Service;

const GIB: u64 = 1 << 30;

fn gpus(n: usize, memory: u64) -> NodeGpus {
    NodeGpus {
        devices: (0..n)
            .map(|i| GpuDevice {
                id: i.to_string(),
                uuid: format!("GPU-{i:04}"),
                name: "NVIDIA H200".into(),
                memory,
            })
            .collect(),
        problem: None,
    }
}

fn node(name: &str, gpus: NodeGpus) -> NodeInfo {
    NodeInfo {
        name: NodeName(name.to_string()),
        hostname: name.to_string(),
        role: Role::Server,
        labels: BTreeMap::new(),
        capacity: Resources::new(64_000, 512 * GIB),
        ready: true,
        availability: Availability::Active,
        gpus,
    }
}

fn service(value: serde_json::Value) -> Service {
    let mut value = value;
    value["image"] = json!("app");
    serde_json::from_value(value).unwrap()
}

fn spec(value: serde_json::Value) -> PlacementSpec {
    placement_spec("web", &service(value)).unwrap()
}

fn one_gpu() -> serde_json::Value {
    json!({"deploy": {"resources": {"reservations": {"devices": [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]}}}})
}

fn slots(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("web-{i}")).collect()
}

fn ids(placed: &[Result<Placed, crate::Unplaced>]) -> Vec<String> {
    placed
        .iter()
        .map(|p| match p {
            Ok(p) => p.gpus.ids.join(","),
            Err(_) => "-".into(),
        })
        .collect()
}

#[test]
fn each_replica_gets_its_own_gpu() {
    let mut cluster = Cluster::new(vec![node("a", gpus(8, 80 * GIB))]);
    let placed = cluster.place_named("p/web", &spec(one_gpu()), None, &slots(4));
    assert_eq!(ids(&placed), ["0", "1", "2", "3"]);
    let claim = &placed[0].as_ref().unwrap().gpus;
    assert_eq!(claim.engine_ids, ["GPU-0000"]);
}

#[test]
fn replicas_beyond_the_gpus_are_unplaced_with_who_holds_them() {
    let mut cluster = Cluster::new(vec![node("a", gpus(8, 80 * GIB))]);
    let placed = cluster.place_named("p/web", &spec(one_gpu()), None, &slots(10));
    assert_eq!(placed.iter().filter(|p| p.is_ok()).count(), 8);
    let why = placed[9].as_ref().unwrap_err().to_string();
    assert!(
        why.starts_with("no node can run it: node a: needs 1 GPU; 0 of 8 free: web-1 holds 0; web-2 holds 1; web-3 holds 2; web-4 holds 3; and 4 more"),
        "{why}"
    );
}

#[test]
fn gpus_all_and_counts_and_device_ids() {
    let mut cluster = Cluster::new(vec![node("a", gpus(4, 80 * GIB))]);
    let all = spec(json!({"gpus": "all"}));
    let placed = cluster.place_named("p/train", &all, None, &slots(2));
    assert_eq!(ids(&placed), ["0,1,2,3", "-"]);

    let mut cluster = Cluster::new(vec![node("a", gpus(4, 80 * GIB))]);
    let two = spec(json!({"gpus": [{"count": 2}]}));
    assert_eq!(
        ids(&cluster.place_named("p/web", &two, None, &slots(3))),
        ["0,1", "2,3", "-"]
    );

    let mut cluster = Cluster::new(vec![node("a", gpus(4, 80 * GIB))]);
    let pinned = spec(
        json!({"deploy": {"resources": {"reservations": {"devices": [
            {"capabilities": ["gpu"], "device_ids": ["GPU-0003", "1"]}
        ]}}}}),
    );
    let placed = cluster.place_named("p/web", &pinned, None, &slots(2));
    assert_eq!(ids(&placed), ["3,1", "-"]);
    let why = placed[1].as_ref().unwrap_err().to_string();
    assert!(
        why.contains("needs GPUs GPU-0003,1; web-1 holds 3"),
        "{why}"
    );
}

#[test]
fn a_node_without_gpus_says_why() {
    let problem = NodeGpus {
        devices: Vec::new(),
        problem: Some("no NVIDIA driver: libnvidia-ml.so.1 not found".into()),
    };
    let mut cluster = Cluster::new(vec![node("a", problem), node("b", NodeGpus::default())]);
    let placed = cluster.place_named("p/web", &spec(one_gpu()), None, &slots(1));
    assert_eq!(
        placed[0].as_ref().unwrap_err().to_string(),
        "no node can run it: node a: needs 1 GPU; no NVIDIA driver: libnvidia-ml.so.1 not found; node b: needs 1 GPU; it has no GPUs"
    );
}

#[test]
fn a_service_without_gpus_is_placed_as_before() {
    let mut cluster = Cluster::new(vec![node("a", NodeGpus::default())]);
    let placed = cluster.place_named("p/web", &PlacementSpec::default(), None, &slots(2));
    assert!(
        placed
            .iter()
            .all(|p| p.as_ref().is_ok_and(|p| p.gpus.is_empty()))
    );
}

#[test]
fn replicas_go_to_the_nodes_with_free_gpus() {
    let mut cluster = Cluster::new(vec![
        node("a", gpus(1, 80 * GIB)),
        node("b", gpus(2, 80 * GIB)),
    ]);
    let placed = cluster.place_named("p/web", &spec(one_gpu()), None, &slots(4));
    let nodes: Vec<String> = placed
        .iter()
        .map(|p| p.as_ref().map_or("-".into(), |p| p.node.0.clone()))
        .collect();
    assert_eq!(nodes, ["a", "b", "b", "-"]);
}

#[test]
fn share_puts_up_to_n_replicas_of_the_service_on_one_gpu() {
    let mut value = one_gpu();
    value["x-composure"] = json!({"gpu": {"share": 2}});
    let shared = spec(value);
    let mut cluster = Cluster::new(vec![node("a", gpus(2, 80 * GIB))]);
    // Spread over the devices first, then doubled up.
    let placed = cluster.place_named("p/web", &shared, None, &slots(5));
    assert_eq!(ids(&placed), ["0", "1", "0", "1", "-"]);
    // Another service cannot join a shared GPU, even with room left in the share.
    let mut cluster = Cluster::new(vec![node("a", gpus(1, 80 * GIB))]);
    cluster.place_named("p/web", &shared, None, &slots(1));
    let other = cluster.place_named("p/api", &shared, None, &slots(1));
    assert!(other[0].is_err());
}

#[test]
fn memory_places_replicas_while_their_sum_fits() {
    let mut value = one_gpu();
    value["x-composure"] = json!({"gpu": {"memory": "30GiB"}});
    let by_memory = spec(value);
    let mut cluster = Cluster::new(vec![node("a", gpus(2, 80 * GIB))]);
    let placed = cluster.place_named("p/web", &by_memory, None, &slots(5));
    assert_eq!(ids(&placed), ["0", "1", "0", "1", "-"]);
    let why = placed[4].as_ref().unwrap_err().to_string();
    assert!(
        why.contains("needs 1 GPU with 30 GiB of memory free; 0 of 2 free"),
        "{why}"
    );
    // An exclusive replica cannot take a GPU that replicas share by memory.
    let exclusive = cluster.place_named("p/train", &spec(one_gpu()), None, &slots(1));
    assert!(exclusive[0].is_err());
}

#[test]
fn settings_are_checked_with_their_path() {
    let err = |value: serde_json::Value| match placement_spec("web", &service(value)) {
        Err(SpecError::InvalidGpu { path, reason, .. }) => format!("{path}: {reason}"),
        other => panic!("{other:?}"),
    };
    let mut value = one_gpu();
    value["x-composure"] = json!({"gpu": {"share": 0}});
    assert!(
        err(value)
            .starts_with("services.web.x-composure.gpu.share: service `web`: `share` must be")
    );
    let mut value = one_gpu();
    value["x-composure"] = json!({"gpu": {"memory": "lots"}});
    assert!(err(value).starts_with("services.web.x-composure.gpu.memory:"));
    let mut value = one_gpu();
    value["x-composure"] = json!({"gpu": {"shares": 2}});
    assert!(err(value).contains("unknown key `shares`"));
    let mut value = one_gpu();
    value["x-composure"] = json!({"gpu": {"share": 2, "memory": "1GiB"}});
    assert!(err(value).contains("cannot both be set"));
    assert!(err(json!({"x-composure": {"gpu": {"share": 2}}})).contains("reserves no GPU"));
    assert!(
        err(json!({"gpus": "all", "x-composure": {"gpu": {"share": 2}}})).contains("cannot share")
    );
    // Devices that are not GPUs are not GPU requests.
    let other = spec(
        json!({"deploy": {"resources": {"reservations": {"devices": [
            {"capabilities": ["tpu"], "count": 1}
        ]}}}}),
    );
    assert_eq!(other.gpu, None);
}

#[test]
fn a_restarted_daemon_sees_the_same_assignment() {
    let mut cluster = Cluster::new(vec![node("a", gpus(4, 80 * GIB))]);
    let placed = cluster.place_named("p/web", &spec(one_gpu()), None, &slots(2));
    // What a restart rebuilds from the tasks' records.
    let mut rebuilt = Cluster::new(vec![node("a", gpus(4, 80 * GIB))]);
    for (slot, p) in slots(2).iter().zip(&placed) {
        let p = p.as_ref().unwrap();
        rebuilt.add_task(&p.node, "p/web", Resources::default());
        rebuilt.add_gpus(&p.node, slot, "p/web", &p.gpus);
    }
    let a = NodeName("a".into());
    assert_eq!(rebuilt.gpu_holders(&a), cluster.gpu_holders(&a));
    let next = rebuilt.place_named("p/web", &spec(one_gpu()), None, &slots(1));
    assert_eq!(ids(&next), ["2"]);
}

/// One step of a world of GPU replicas: services place and end tasks.
#[derive(Clone, Debug)]
enum Step {
    Place { service: usize, count: usize },
    End { pick: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3usize, 1..4usize).prop_map(|(service, count)| Step::Place { service, count }),
        any::<usize>().prop_map(|pick| Step::End { pick }),
    ]
}

/// Three services: one exclusive GPU each, two per replica, and shared by 3.
fn world_specs() -> Vec<(String, PlacementSpec)> {
    let mut shared = one_gpu();
    shared["x-composure"] = json!({"gpu": {"share": 3}});
    vec![
        ("p/one".to_string(), spec(one_gpu())),
        ("p/two".to_string(), spec(json!({"gpus": [{"count": 2}]}))),
        ("p/shared".to_string(), spec(shared)),
    ]
}

proptest! {
    /// Never two exclusive replicas on one GPU, never more than N on a shared one, and
    /// every GPU free again once its task ends (the cluster rebuilt from the live tasks, as
    /// each decision builds it, agrees with one that counted every placement).
    #[test]
    fn gpus_are_never_overcommitted_and_are_freed(steps in prop::collection::vec(step(), 1..40)) {
        let specs = world_specs();
        let nodes = vec![node("a", gpus(4, 80 * GIB)), node("b", gpus(2, 80 * GIB))];
        let mut live: Vec<(String, String, Placed)> = Vec::new();
        let mut next = 0;
        for step in steps {
            let mut cluster = Cluster::new(nodes.clone());
            for (service, name, p) in &live {
                cluster.add_task(&p.node, service, Resources::default());
                cluster.add_gpus(&p.node, name, service, &p.gpus);
            }
            match step {
                Step::Place { service, count } => {
                    let (key, spec) = &specs[service];
                    let names: Vec<String> = (0..count).map(|k| format!("t{}", next + k)).collect();
                    next += count;
                    for (name, placed) in names.iter().zip(cluster.place_named(key, spec, None, &names)) {
                        if let Ok(p) = placed {
                            live.push((key.clone(), name.clone(), p));
                        }
                    }
                }
                Step::End { pick } => {
                    if !live.is_empty() {
                        live.remove(pick % live.len());
                    }
                }
            }
            let mut holders: HashMap<(String, String), Vec<&str>> = HashMap::new();
            for (service, _, p) in &live {
                for id in &p.gpus.ids {
                    holders.entry((p.node.0.clone(), id.clone())).or_default().push(service);
                }
            }
            for ((node, id), on) in &holders {
                let shared = on.iter().all(|s| *s == "p/shared");
                prop_assert!(
                    on.len() == 1 || (shared && on.len() <= 3),
                    "GPU {id} of node {node} held by {on:?}"
                );
            }
            // What is not held is free: a cluster of the live tasks places exactly the free
            // GPUs for exclusive replicas.
            let mut cluster = Cluster::new(nodes.clone());
            for (service, name, p) in &live {
                cluster.add_task(&p.node, service, Resources::default());
                cluster.add_gpus(&p.node, name, service, &p.gpus);
            }
            let free = 6 - holders.len();
            let placed = cluster.place_named("p/one", &specs[0].1, None, &slots(8));
            prop_assert_eq!(placed.iter().filter(|p| p.is_ok()).count(), free);
        }
    }
}

#[test]
fn a_claim_round_trips_through_the_task_record() {
    let claim = GpuClaim {
        ids: vec!["0".into()],
        engine_ids: vec!["GPU-0000".into()],
        share: Some(2),
        memory: None,
    };
    let text = serde_json::to_string(&claim).unwrap();
    assert_eq!(serde_json::from_str::<GpuClaim>(&text).unwrap(), claim);
}
