//! This node's record in the store: put under a lease that is kept alive while the daemon
//! runs, so that in a cluster a node that dies disappears from the store within the lease's
//! time. On one host (SQLite) the local node is always present while its daemon runs.

use std::sync::Arc;
use std::time::Duration;

use composure_core::placement::NodeGpus;
use composure_runtime::Runtime;
use composure_store::kv::LeaseId;
use composure_store::{LOCAL_NODE_TTL, Node, NodeResources, NodeState, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::NodeConfig;

/// How often the lease is renewed: several times within its time to live (see
/// [`LOCAL_NODE_TTL`]), so that a cut of the store shorter than TTL − this never ends it.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(1);

/// Keeps the node's record alive until `stop`; a lost lease (the store was away longer than
/// its time to live) is replaced by a new one and the record put again.
pub(crate) async fn keep_registered(
    store: Arc<Store>,
    runtime: Arc<dyn Runtime>,
    config: NodeConfig,
    gpus: NodeGpus,
    clock: Clock,
    stop: CancellationToken,
) {
    let mut lease: Option<LeaseId> = None;
    loop {
        let step = async {
            match lease {
                Some(id) => store.kv().keep_alive(id).await.map_err(StoreError::from),
                None => {
                    let id = register(&store, &*runtime, &config, &gpus, &clock).await?;
                    lease = Some(id);
                    Ok(())
                }
            }
        };
        if let Err(err) = step.await {
            tracing::warn!(node = %config.name, error = %err, "cannot refresh this node's record; will retry");
            lease = None;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(KEEP_ALIVE_EVERY) => {}
        }
    }
    // A node that stops on purpose leaves at once instead of after its lease's time.
    if let Some(id) = lease
        && let Err(err) = store.kv().revoke_lease(id).await
    {
        tracing::debug!(error = %err, "cannot revoke this node's lease");
    }
}

/// Puts the node's record under a new lease; returns the lease.
async fn register(
    store: &Store,
    runtime: &dyn Runtime,
    config: &NodeConfig,
    gpus: &NodeGpus,
    clock: &Clock,
) -> Result<LeaseId, StoreError> {
    let lease = store.kv().grant_lease(LOCAL_NODE_TTL).await?;
    let engine_version = match runtime.ping().await {
        Ok(engine) => engine.version,
        Err(_) => String::new(),
    };
    let node = record(config, gpus, engine_version, clock.now_ms());
    store.register_node(&node, config.role, lease).await?;
    tracing::info!(node = %node.name, cpus = node.resources.cpus, memory = node.resources.memory, "node registered");
    Ok(lease)
}

/// This node's record as it describes itself.
pub(crate) fn record(
    config: &NodeConfig,
    gpus: &NodeGpus,
    engine_version: String,
    now: u64,
) -> Node {
    Node {
        name: config.name.clone(),
        hostname: crate::config::raw_host_name(),
        address: config.address.clone(),
        labels: config.labels.clone(),
        resources: local_resources(gpus.clone()),
        state: NodeState::Ready,
        engine_version,
        updated_at: now,
    }
}

/// This host's CPUs and memory.
fn local_resources(gpu: NodeGpus) -> NodeResources {
    let cpus = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1);
    NodeResources {
        cpus,
        memory: total_memory().unwrap_or(0),
        gpu,
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total(text), Some(24_576_000 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
    }
}
