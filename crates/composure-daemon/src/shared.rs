//! What every part of the daemon shares: the store, the runtime, the event log and the
//! project controllers.

use std::path::PathBuf;
use std::sync::Arc;

use composure_core::NodeName;
use composure_runtime::Runtime;
use composure_store::Store;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::clock::Clock;
use crate::controller::Controllers;
use crate::engine::EngineWatch;
use crate::events::EventLog;
use crate::ingress::Ingress;
use crate::leader::Leadership;
use crate::vip::Vips;

pub(crate) struct Shared {
    pub store: Arc<Store>,
    /// The node this daemon's agent runs: every task it places goes here (see `cluster`).
    pub node: NodeName,
    /// This node's own record, as it registers it (for placement before the store has it).
    pub node_record: composure_store::Node,
    /// Where this node's GPU inventory came from (for its live use in `composure gpus`).
    pub gpu_source: crate::gpu::GpuSource,
    /// Whether this daemon's controllers decide (see `leader`).
    pub leadership: Leadership,
    pub runtime: Arc<dyn Runtime>,
    /// The engine as last checked, for `/v1/info`.
    pub engine: EngineWatch,
    pub events: EventLog,
    pub controllers: Controllers,
    /// Carries out the slow runtime steps the controllers decide for this node's tasks.
    pub agent: Agent,
    /// The proxy on published ports and routed addresses: each project's ingress.
    pub ingress: Ingress,
    /// Each service's VIP: the container that holds the service's name.
    pub vips: Vips,
    pub data_dir: PathBuf,
    /// The time, for every decision and record (an input: tests run on tokio's paused clock).
    pub clock: Clock,
    /// The seed of the controllers' random numbers.
    pub seed: u64,
    /// Held by the API calls that change a project's desired state, so that a put, a scale
    /// and a delete of the same project never interleave.
    pub writes: tokio::sync::Mutex<()>,
    /// Permits to read a page of the event log for a stream (see `api::streams`).
    pub replay_reads: tokio::sync::Semaphore,
    /// Cancelled when the daemon shuts down: ends the controllers and the open streams.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// `project` as the daemon runs it: with a VIP beside each service that gets one, and
    /// the project's ingress.
    pub fn front(
        &self,
        name: &str,
        project: composure_compose::model::Project,
    ) -> composure_compose::model::Project {
        let project = self.vips.front(name, project);
        self.ingress.front(name, project)
    }
}
