//! The scheduler's throughput: placements per second for 50,000 tasks on 5,000 simulated
//! nodes, with the daemon's own pure placement code (`composure_core::placement`), against
//! the figures the anchors publish: Nomad's C1M (3,750 placements/s on 5 servers) and
//! kube-scheduler (about 800 pods/s). Goal: at least 10,000/s on this 2-core machine.
//!
//! Three cases, each the median of 5 rounds:
//! - **fill**: 500 services of 100 replicas placed from empty; every task reserves 0.1 CPU
//!   and 128 MiB, a fifth of the services have a zone constraint, a tenth
//!   `max_replicas_per_node: 2`;
//! - **spread**: the same with every service spreading over the zone label (the scan path);
//! - **gpu**: 5,000 nodes of 8 GPUs each, 400 services of 100 replicas of one GPU each:
//!   every one of the 40,000 GPUs given out exactly once (the benchmark checks it);
//! - **node loss**: the 50,000 tasks placed, one node down: the decision the daemon makes
//!   then, building the cluster from every live task and placing the lost node's tasks again.
//!
//! Run: `cargo run --release -p composure-bench --bin scheduler` (see bench/README.md).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use composure_bench::stats::median;
use composure_core::placement::{
    Availability, Cluster, Constraint, GpuCount, GpuDevice, GpuRequest, NodeGpus, NodeInfo,
    PlacementSpec, Resources, Role, Spread,
};
use composure_core::{NodeName, placement::Attribute};

const NODES: usize = 5_000;
const SERVICES: usize = 500;
const REPLICAS: usize = 100;
const ROUNDS: usize = 5;
const ZONES: usize = 5;
const GPUS_PER_NODE: usize = 8;

const NOMAD_C1M: f64 = 3_750.0;
const KUBE_SCHEDULER: f64 = 800.0;
const GOAL: f64 = 10_000.0;

fn nodes() -> Vec<NodeInfo> {
    (0..NODES)
        .map(|i| NodeInfo {
            name: NodeName(format!("node-{i:04}")),
            hostname: format!("node-{i:04}.cluster"),
            role: if i < 3 { Role::Server } else { Role::Agent },
            labels: BTreeMap::from([
                ("zone".to_string(), format!("z{}", i % ZONES)),
                ("rack".to_string(), format!("r{}", i % 50)),
            ]),
            capacity: Resources::new(16_000, 64 << 30),
            ready: true,
            availability: Availability::Active,
            gpus: Default::default(),
        })
        .collect()
}

fn services(spread: bool) -> Vec<(String, PlacementSpec)> {
    (0..SERVICES)
        .map(|s| {
            let mut spec = PlacementSpec {
                reservation: Resources::new(100, 128 << 20),
                ..PlacementSpec::default()
            };
            if s % 5 == 0 {
                spec.constraints.push(Constraint {
                    attribute: Attribute::Label("zone".into()),
                    equal: true,
                    value: format!("z{}", s % ZONES),
                });
            }
            if s % 10 == 1 {
                spec.max_replicas_per_node = Some(2);
            }
            if spread {
                spec.spread.push(Spread(Attribute::Label("zone".into())));
            }
            (format!("bench/s{s:03}"), spec)
        })
        .collect()
}

/// Every node with 8 GPUs, and services of one GPU per replica that take them all.
fn gpu_fill() -> (Duration, usize, usize) {
    let nodes: Vec<NodeInfo> = nodes()
        .into_iter()
        .enumerate()
        .map(|(n, mut node)| {
            node.gpus = NodeGpus {
                devices: (0..GPUS_PER_NODE)
                    .map(|g| GpuDevice {
                        id: g.to_string(),
                        uuid: format!("GPU-{n:04}-{g}"),
                        name: "NVIDIA H200".into(),
                        memory: 141 << 30,
                    })
                    .collect(),
                problem: None,
            };
            node
        })
        .collect();
    let spec = PlacementSpec {
        reservation: Resources::new(100, 128 << 20),
        gpu: Some(GpuRequest {
            count: GpuCount::Count(1),
            share: None,
            memory: None,
        }),
        ..PlacementSpec::default()
    };
    let services = NODES * GPUS_PER_NODE / REPLICAS;
    let mut cluster = Cluster::new(nodes);
    let started = Instant::now();
    let mut placed = 0;
    for s in 0..services {
        placed += cluster
            .place(&format!("bench/gpu{s:03}"), &spec, None, REPLICAS)
            .iter()
            .filter(|p| p.is_ok())
            .count();
    }
    let took = started.elapsed();
    let held: usize = cluster
        .nodes()
        .iter()
        .filter_map(|n| cluster.gpu_holders(&n.name))
        .flatten()
        .map(|holders| usize::from(holders.len() == 1))
        .sum();
    (took, placed, held)
}

/// Places every replica of every service from empty; returns the time and how many were
/// placed (all of them, or the benchmark is wrong).
fn fill(spread: bool) -> (Duration, usize, Cluster) {
    let specs = services(spread);
    let mut cluster = Cluster::new(nodes());
    let started = Instant::now();
    let mut placed = 0;
    for (name, spec) in &specs {
        placed += cluster
            .place(name, spec, None, REPLICAS)
            .iter()
            .filter(|p| p.is_ok())
            .count();
    }
    (started.elapsed(), placed, cluster)
}

/// The decision after a node is lost: the cluster rebuilt from the live tasks (as the daemon
/// builds it for each decision), the lost node marked down, its tasks placed again.
fn node_loss(tasks: &[(NodeName, usize)], specs: &[(String, PlacementSpec)]) -> (Duration, usize) {
    let lost = NodeName("node-0042".into());
    let started = Instant::now();
    let mut nodes = nodes();
    if let Some(node) = nodes.iter_mut().find(|n| n.name == lost) {
        node.ready = false;
    }
    let mut cluster = Cluster::new(nodes);
    let mut again: Vec<usize> = Vec::new();
    for (node, service) in tasks {
        if *node == lost {
            again.push(*service);
        } else {
            let (name, spec) = &specs[*service];
            cluster.add_task(node, name, spec.reservation);
        }
    }
    let mut placed = 0;
    for service in &again {
        let (name, spec) = &specs[*service];
        placed += cluster
            .place(name, spec, None, 1)
            .iter()
            .filter(|p| p.is_ok())
            .count();
    }
    (started.elapsed(), placed)
}

fn rate(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64()
}

fn report(case: &str, count: usize, took: Duration) {
    let per_second = rate(count, took);
    println!(
        "{case:<8} {count:>6} placements in {:>8.1} ms: {:>9.0}/s | x{:.1} Nomad C1M, x{:.1} kube-scheduler, x{:.2} the goal",
        took.as_secs_f64() * 1000.0,
        per_second,
        per_second / NOMAD_C1M,
        per_second / KUBE_SCHEDULER,
        per_second / GOAL,
    );
}

fn main() -> anyhow::Result<()> {
    println!(
        "scheduler: {NODES} nodes, {SERVICES} services x {REPLICAS} replicas, median of {ROUNDS} rounds"
    );
    for spread in [false, true] {
        let mut times = Vec::new();
        let mut count = 0;
        for _ in 0..ROUNDS {
            let (took, placed, _) = fill(spread);
            times.push(took);
            count = placed;
        }
        anyhow::ensure!(
            count == SERVICES * REPLICAS,
            "only {count} of {} tasks were placed",
            SERVICES * REPLICAS
        );
        report(
            if spread { "spread" } else { "fill" },
            count,
            median(&times),
        );
    }
    let mut times = Vec::new();
    let (mut count, mut held) = (0, 0);
    for _ in 0..ROUNDS {
        let (took, placed, once) = gpu_fill();
        times.push(took);
        (count, held) = (placed, once);
    }
    let gpus = NODES * GPUS_PER_NODE;
    anyhow::ensure!(
        count == gpus && held == gpus,
        "{count} GPU tasks placed, {held} of {gpus} GPUs held exactly once"
    );
    report("gpu", count, median(&times));
    // The tasks as placed by a fill, to rebuild the cluster from.
    let specs = services(false);
    let mut cluster = Cluster::new(nodes());
    let mut tasks = Vec::new();
    for (s, (name, spec)) in specs.iter().enumerate() {
        for node in cluster
            .place(name, spec, None, REPLICAS)
            .into_iter()
            .flatten()
        {
            tasks.push((node, s));
        }
    }
    let mut times = Vec::new();
    let mut count = 0;
    for _ in 0..ROUNDS {
        let (took, placed) = node_loss(&tasks, &specs);
        times.push(took);
        count = placed;
    }
    let took = median(&times);
    println!(
        "node loss: rebuild from {} tasks and place the lost node's {count} again in {:.1} ms",
        tasks.len(),
        took.as_secs_f64() * 1000.0
    );
    Ok(())
}
