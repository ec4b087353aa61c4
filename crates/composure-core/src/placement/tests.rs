use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;

const GIB: u64 = 1 << 30;

fn node(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        name: NodeName(name.to_string()),
        hostname: format!("{name}.example"),
        role: Role::Server,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        capacity: Resources::new(2000, 4 * GIB),
        ready: true,
        availability: Availability::Active,
        gpus: Default::default(),
    }
}

fn names(placed: &[Result<NodeName, Unplaced>]) -> Vec<String> {
    placed
        .iter()
        .map(|p| match p {
            Ok(node) => node.0.clone(),
            Err(_) => "-".to_string(),
        })
        .collect()
}

fn spec(deploy: serde_json::Value) -> PlacementSpec {
    let service: Service =
        serde_json::from_value(json!({"image": "app", "deploy": deploy})).unwrap();
    placement_spec("web", &service).unwrap()
}

fn three() -> Cluster {
    Cluster::new(vec![node("c", &[]), node("a", &[]), node("b", &[])])
}

#[test]
fn replicas_spread_across_nodes_in_name_order() {
    let mut cluster = three();
    let placed = cluster.place("p/web", &PlacementSpec::default(), None, 6);
    assert_eq!(names(&placed), ["a", "b", "c", "a", "b", "c"]);
}

#[test]
fn a_service_goes_first_where_it_has_fewest_tasks_then_where_there_are_fewest_tasks() {
    let mut cluster = three();
    cluster.add_task(&NodeName("a".into()), "p/web", Resources::default());
    cluster.add_task(&NodeName("b".into()), "p/db", Resources::default());
    cluster.add_task(&NodeName("b".into()), "p/db", Resources::default());
    // b and c have no web; c has fewer tasks.
    let placed = cluster.place("p/web", &PlacementSpec::default(), None, 3);
    assert_eq!(names(&placed), ["c", "b", "a"]);
}

#[test]
fn constraints_on_labels_role_and_hostname() {
    let mut nodes = vec![
        node("a", &[("zone", "east")]),
        node("b", &[("zone", "west")]),
        node("c", &[]),
    ];
    nodes[2].role = Role::Agent;
    let mut cluster = Cluster::new(nodes);
    let east = spec(json!({"placement": {"constraints": ["node.labels.zone == east"]}}));
    assert_eq!(names(&cluster.place("p/a", &east, None, 2)), ["a", "a"]);
    let not_east = spec(json!({"placement": {"constraints": ["node.labels.zone!=east"]}}));
    assert_eq!(names(&cluster.place("p/b", &not_east, None, 2)), ["b", "c"]);
    let workers = spec(json!({"placement": {"constraints": ["node.role==worker"]}}));
    assert_eq!(names(&cluster.place("p/c", &workers, None, 1)), ["c"]);
    let host = spec(json!({"placement": {"constraints": ["node.hostname==b.example"]}}));
    assert_eq!(names(&cluster.place("p/d", &host, None, 1)), ["b"]);
}

#[test]
fn an_unplaceable_task_says_why_on_every_node() {
    let mut nodes = vec![
        node("a", &[("zone", "west")]),
        node("b", &[]),
        node("c", &[]),
    ];
    nodes[1].capacity = Resources::new(500, 4 * GIB);
    nodes[2].ready = false;
    let mut cluster = Cluster::new(nodes);
    let mut cluster_d = cluster.clone();
    let wanted = spec(json!({
        "placement": {"constraints": ["node.labels.zone==east"]},
    }));
    let placed = cluster.place("p/web", &wanted, None, 1);
    let Err(why) = &placed[0] else {
        panic!("placed: {placed:?}")
    };
    assert_eq!(
        why.to_string(),
        "no node can run it: node a: `node.labels.zone==east` not met (it has west); \
         node b: `node.labels.zone==east` not met (it has no such label); node c: down"
    );
    let big = spec(json!({"resources": {"reservations": {"cpus": "2", "memory": "1G"}}}));
    let placed = cluster_d.place("p/web", &big, None, 2);
    assert_eq!(names(&placed), ["a", "-"]);
    let Err(why) = &placed[1] else { panic!() };
    assert_eq!(
        why.to_string(),
        "no node can run it: node a: needs 2 CPUs, 0 free; node b: needs 2 CPUs, 0.5 free; node c: down"
    );
}

#[test]
fn reservations_fill_nodes_and_memory_is_checked_too() {
    let mut cluster = three();
    let half = spec(json!({"resources": {"reservations": {"cpus": "0.5", "memory": "3G"}}}));
    let placed = cluster.place("p/web", &half, None, 4);
    assert_eq!(names(&placed), ["a", "b", "c", "-"]);
    let Err(why) = &placed[3] else { panic!() };
    assert!(
        why.to_string()
            .contains("node a: needs 3 GiB of memory, 1 GiB free"),
        "{why}"
    );
    assert_eq!(
        cluster.free(&NodeName("a".into())),
        Some(Resources::new(1500, GIB))
    );
}

#[test]
fn max_replicas_per_node_caps_each_node() {
    let mut cluster = Cluster::new(vec![node("a", &[]), node("b", &[])]);
    let capped = spec(json!({"placement": {"max_replicas_per_node": 1}}));
    let placed = cluster.place("p/web", &capped, None, 3);
    assert_eq!(names(&placed), ["a", "b", "-"]);
    let Err(why) = &placed[2] else { panic!() };
    assert!(
        why.to_string()
            .contains("node a: runs 1 of its replicas already (max_replicas_per_node: 1)"),
        "{why}"
    );
}

#[test]
fn drained_and_down_nodes_take_nothing() {
    let mut nodes = vec![node("a", &[]), node("b", &[]), node("c", &[])];
    nodes[0].availability = Availability::Drain;
    nodes[1].ready = false;
    let mut cluster = Cluster::new(nodes);
    let placed = cluster.place("p/web", &PlacementSpec::default(), None, 2);
    assert_eq!(names(&placed), ["c", "c"]);
}

#[test]
fn spread_balances_groups_before_nodes() {
    // Three nodes in east, one in west: spread over zone puts half the replicas in west.
    let mut cluster = Cluster::new(vec![
        node("a", &[("zone", "east")]),
        node("b", &[("zone", "east")]),
        node("c", &[("zone", "east")]),
        node("d", &[("zone", "west")]),
    ]);
    let spread = spec(json!({"placement": {"preferences": [{"spread": "node.labels.zone"}]}}));
    let placed = cluster.place("p/web", &spread, None, 4);
    assert_eq!(names(&placed), ["a", "d", "b", "d"]);
}

#[test]
fn nested_spread_balances_the_outer_level_first() {
    let mut cluster = Cluster::new(vec![
        node("a", &[("dc", "1"), ("rack", "x")]),
        node("b", &[("dc", "1"), ("rack", "y")]),
        node("c", &[("dc", "2"), ("rack", "x")]),
    ]);
    let spread = spec(json!({"placement": {"preferences": [
        {"spread": "node.labels.dc"}, {"spread": "node.labels.rack"}]}}));
    let placed = cluster.place("p/web", &spread, None, 4);
    assert_eq!(names(&placed), ["a", "c", "b", "c"]);
}

#[test]
fn a_pinned_service_stays_on_its_node() {
    let mut cluster = three();
    let pin = Pin {
        node: NodeName("b".into()),
        reason: "the volume `data` is on node b".into(),
    };
    let placed = cluster.place("p/db", &PlacementSpec::default(), Some(&pin), 2);
    assert_eq!(names(&placed), ["b", "b"]);
    let capped = spec(json!({"placement": {"max_replicas_per_node": 1}}));
    let placed = cluster.place("p/db2", &capped, Some(&pin), 2);
    let Err(why) = &placed[1] else { panic!() };
    assert!(
        why.to_string()
            .contains("node a: the volume `data` is on node b"),
        "{why}"
    );
}

#[test]
fn global_runs_one_task_on_each_eligible_node() {
    let mut nodes = vec![node("a", &[("gpu", "yes")]), node("b", &[]), node("c", &[])];
    nodes[2].availability = Availability::Drain;
    let mut cluster = Cluster::new(nodes);
    let global = spec(json!({"mode": "global"}));
    assert!(global.global);
    let targets = cluster.global_nodes(&global, None);
    assert_eq!(targets, [NodeName("a".into()), NodeName("b".into())]);
    let placed = cluster.place("p/agent", &global, None, targets.len() + 1);
    assert_eq!(names(&placed), ["a", "b", "-"]);
    let gpus =
        spec(json!({"mode": "global", "placement": {"constraints": ["node.labels.gpu==yes"]}}));
    assert_eq!(cluster.global_nodes(&gpus, None), [NodeName("a".into())]);
}

#[test]
fn what_is_placed_counts_for_the_next_service() {
    let mut cluster = Cluster::new(vec![node("a", &[]), node("b", &[])]);
    let two = spec(json!({"resources": {"reservations": {"cpus": "1.5"}}}));
    assert_eq!(names(&cluster.place("p/x", &two, None, 1)), ["a"]);
    assert_eq!(names(&cluster.place("p/y", &two, None, 2)), ["b", "-"]);
}

#[test]
fn bad_placement_is_refused_with_its_reason() {
    let service = |deploy: serde_json::Value| -> Service {
        serde_json::from_value(json!({"image": "app", "deploy": deploy})).unwrap()
    };
    let cases = [
        (
            json!({"placement": {"constraints": ["node.labels.zone"]}}),
            "has no `==` or `!=`",
        ),
        (
            json!({"placement": {"constraints": ["engine.labels.x==1"]}}),
            "`engine.labels.x` is not a node attribute",
        ),
        (
            json!({"placement": {"constraints": ["node.role==boss"]}}),
            "not `boss`",
        ),
        (
            json!({"placement": {"preferences": [{"spread": "zone"}]}}),
            "`spread: zone` does not name a node attribute",
        ),
    ];
    for (deploy, expected) in cases {
        let err = placement_spec("web", &service(deploy.clone())).unwrap_err();
        assert!(err.to_string().contains(expected), "{deploy}: {err}");
        assert!(
            err.to_string()
                .starts_with("service `web`: `deploy.placement`")
        );
    }
}

#[test]
fn constraints_round_trip_through_the_spec_as_text() {
    let placement = spec(json!({"placement": {
        "constraints": ["node.labels.zone == east", "node.role==manager"],
        "preferences": [{"spread": "node.labels.rack"}], "max_replicas_per_node": 2},
        "resources": {"reservations": {"cpus": "0.25", "memory": "64M"}}}));
    let text = serde_json::to_value(&placement).unwrap();
    assert_eq!(
        text,
        json!({"constraints": ["node.labels.zone==east", "node.role==server"],
               "spread": ["node.labels.rack"], "max_replicas_per_node": 2,
               "reservation": {"millicpus": 250, "memory": 64 << 20}})
    );
    let back: PlacementSpec = serde_json::from_value(text).unwrap();
    assert_eq!(back, placement);
}

#[test]
fn units_read_as_people_write_them() {
    assert_eq!(cpus(2000), "2");
    assert_eq!(cpus(500), "0.5");
    assert_eq!(cpus(125), "0.125");
    assert_eq!(bytes(512 << 20), "512 MiB");
    assert_eq!(bytes(1536 << 20), "1.5 GiB");
    assert_eq!(bytes(100), "100 B");
}

proptest! {
    /// Whatever the nodes and the requests: no node gets more than it has, more than the
    /// per-node cap, or a task it is excluded from; a task is unplaced only when no
    /// candidate node could take it; and without reservations or caps, replicas spread
    /// evenly (no node has two more of the service than another candidate).
    #[test]
    fn placement_never_overcommits_and_spreads_evenly(
        capacities in prop::collection::vec((0u64..4000, any::<bool>(), any::<bool>()), 1..12),
        requests in prop::collection::vec((0u64..1500, 0u32..3, 0usize..8, any::<bool>()), 1..6),
    ) {
        let nodes: Vec<NodeInfo> = capacities.iter().enumerate().map(|(i, &(cpu, ready, drain))| {
            let zone = format!("z{}", i % 3);
            let mut n = node(&format!("n{i:02}"), &[("zone", &zone)]);
            n.capacity = Resources::new(cpu, 4 * GIB);
            n.ready = ready;
            n.availability = if drain { Availability::Drain } else { Availability::Active };
            n
        }).collect();
        let mut cluster = Cluster::new(nodes.clone());
        let mut per_node: HashMap<(usize, String), u32> = HashMap::new();
        for (r, &(cpu, max, count, spread)) in requests.iter().enumerate() {
            let service = format!("p/s{r}");
            let spec = PlacementSpec {
                reservation: Resources::new(cpu, 0),
                max_replicas_per_node: Some(max),
                spread: if spread {
                    vec![Spread(Attribute::Label("zone".into()))]
                } else {
                    Vec::new()
                },
                ..PlacementSpec::default()
            };
            for placed in cluster.place(&service, &spec, None, count) {
                match placed {
                    Ok(name) => {
                        let i = nodes.iter().position(|n| n.name == name).unwrap();
                        prop_assert!(nodes[i].ready && nodes[i].availability == Availability::Active);
                        *per_node.entry((i, service.clone())).or_default() += 1;
                        if max > 0 {
                            prop_assert!(per_node[&(i, service.clone())] <= max);
                        }
                    }
                    Err(why) => {
                        // Every node has a reason.
                        prop_assert_eq!(why.reasons.len(), nodes.len());
                    }
                }
            }
            if cpu == 0 && max == 0 && count > 0 {
                let candidates: Vec<usize> = (0..nodes.len())
                    .filter(|&i| nodes[i].ready && nodes[i].availability == Availability::Active)
                    .collect();
                let on = |i: usize| per_node.get(&(i, service.clone())).copied().unwrap_or(0);
                // Spread: even across the zones that have candidates; otherwise across nodes.
                let mut groups: BTreeMap<String, u32> = BTreeMap::new();
                for &i in &candidates {
                    let key = if spread { nodes[i].labels["zone"].clone() } else { i.to_string() };
                    *groups.entry(key).or_default() += on(i);
                }
                if let (Some(lo), Some(hi)) = (groups.values().min(), groups.values().max()) {
                    prop_assert!(hi - lo <= 1, "uneven: {:?}", groups);
                }
            }
        }
        for (i, node) in nodes.iter().enumerate() {
            let free = cluster.free(&node.name).unwrap();
            prop_assert!(free.millicpus <= node.capacity.millicpus);
            let used: u64 = requests.iter().enumerate()
                .map(|(r, &(cpu, _, _, _))| cpu * u64::from(per_node.get(&(i, format!("p/s{r}"))).copied().unwrap_or(0)))
                .sum();
            prop_assert!(used <= node.capacity.millicpus, "node {} overcommitted: {} > {}", i, used, node.capacity.millicpus);
        }
    }
}
