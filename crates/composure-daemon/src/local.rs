//! What this host alone gives, without a daemon: its GPU inventory as `composure gpus`
//! shows it, and where a project's replicas would go on it as `up --dry-run` shows it, with
//! nothing running yet. For `composure gpus --local` and `up --dry-run --local`: checks on a
//! host with GPUs but no container engine (`scripts/gpu-check`), and a look at what the
//! daemon would see before one is started. The same code as the daemon's, over a cluster
//! of this one node.

use composure_api::{GpusView, PlacementPreview, PutProject};
use composure_store::{ClusterNode, NodeSpec};

use crate::config::NodeConfig;
use crate::gpu;

/// This host's GPUs, read as a daemon started with `config` would read them, and their use
/// now.
pub fn gpus(config: &NodeConfig) -> Result<GpusView, String> {
    let record = record(config)?;
    let usage = gpu::usage(&config.gpus, &record.resources.gpu.devices);
    Ok(crate::cluster::gpus_view(&[], &[], &record, &usage))
}

/// Where each replica of the project `body` would run on this host alone, with nothing
/// running: the same checks and placement as the daemon's dry run.
pub fn preview(
    name: &str,
    body: &PutProject,
    config: &NodeConfig,
) -> Result<PlacementPreview, String> {
    let body =
        serde_json::to_vec(body).map_err(|err| format!("cannot encode the project: {err}"))?;
    let decoded = crate::decode::put_project(name, &body)?;
    let record = record(config)?;
    let node = ClusterNode {
        name: record.name.clone(),
        spec: NodeSpec {
            labels: Default::default(),
            availability: Default::default(),
            role: config.role,
        },
        spec_revision: 0,
        record: Some(record.clone()),
    };
    Ok(crate::cluster::preview(
        name,
        &decoded.project,
        &decoded.specs,
        &[node],
        &[],
        &record,
        &composure_core::NodeName(record.name.clone()),
    ))
}

fn record(config: &NodeConfig) -> Result<composure_store::Node, String> {
    let gpus = gpu::inventory(&config.gpus)?;
    Ok(crate::node::record(config, &gpus, String::new(), 0))
}
