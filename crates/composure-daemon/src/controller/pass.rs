//! One reconcile pass over a project: observe the runtime, clean up what nobody wants, then
//! reconcile each service in start-up order and apply its plan.

use std::sync::Arc;

use composure_compose::model::Condition;
use composure_compose::model::{ModelError, Project, project_from_json};
use composure_core::error::SpecError;
use composure_core::placement::{Availability, Cluster, Pin, PlacementSpec};
use composure_core::reconcile::{Plan, ServiceStatus, dependency_state, reconcile_service};
use composure_core::restart::Backoff;
use composure_core::rollout::{Order, Rollout};
use composure_core::spec::{
    DEFAULT_STOP_GRACE_MS, Dependency, ServiceSpec, service_specs, startup_order,
};
use composure_core::{DesiredState, Health, NodeName, Task, TaskId, TaskState, labels};
use composure_runtime::{ContainerInfo, RuntimeError};
use composure_store::{ClusterNode, Guard, StoreError};
use indexmap::IndexMap;

use super::adopt;
use super::observe::{self, container_of};
use super::rollout::PreparedRollout;
use super::steps::free_name;
use super::{Controller, Outcome, Report, ServiceReport};
use crate::agent::Snapshot;
use crate::cluster;
use crate::error::chain;
use crate::events::NewEvent;

/// Why a pass stopped early. The next pass starts over, so none of these is fatal.
#[derive(Debug, thiserror::Error)]
pub(super) enum PassError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("the stored project does not read as a project: {0}")]
    Model(#[from] ModelError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("this daemon does not lead the cluster now; try again shortly")]
    NotLeader,
}

/// What one pass works on: read once at its start, kept current as the pass changes things.
pub(super) struct Work {
    pub project: Arc<Project>,
    /// The project as the runtime creates it: ports the proxy serves are not published by
    /// the engine.
    pub runtime_project: Arc<Project>,
    /// The project revision this pass works from.
    pub revision: u64,
    pub working_dir: String,
    pub specs: IndexMap<String, ServiceSpec>,
    /// The project's containers as listed at the start of the pass, less those removed.
    pub containers: Vec<ContainerInfo>,
    /// Every task of the project, as stored.
    pub tasks: Vec<Task>,
    /// Each service's latest rollout, as stored (kept current as the pass stores new ones).
    pub rollouts: IndexMap<String, Rollout>,
    pub now: u64,
    /// Whether the project's networks and volumes were ensured in this pass.
    pub resources_ready: bool,
    /// When the next pass is due at the latest.
    pub wake_at: Option<u64>,
    /// The agent's steps in flight (taken before the runtime was listed, and those this pass
    /// hands over): their tasks and containers are left alone until they end.
    pub steps: Snapshot,
    /// The nodes the cluster knows, read at the start of the pass.
    pub nodes: Vec<ClusterNode>,
    /// Placement's view of the cluster, built when the pass first has a task to place.
    pub placement: Option<Cluster>,
    /// Why tasks of a service could not be placed in this pass, by service.
    pub unplaced: IndexMap<String, String>,
}

impl Work {
    pub fn wake(&mut self, at: u64) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    pub fn index(&self, id: &TaskId) -> Option<usize> {
        self.tasks.iter().position(|t| &t.id == id)
    }

    /// The stop grace of a service (Docker's default for one no longer in the project).
    pub fn grace_ms(&self, service: &str) -> u64 {
        self.specs
            .get(service)
            .map_or(DEFAULT_STOP_GRACE_MS, |spec| spec.stop_grace_ms)
    }
}

impl Controller {
    pub(super) async fn pass(&mut self) -> Outcome {
        match self.try_pass().await {
            Ok(outcome) => outcome,
            // The desired state changed under the pass: start over from it at once.
            Err(PassError::Store(err @ StoreError::Conflict(_))) => {
                tracing::debug!(project = %self.name, reason = %err, "reconcile pass superseded; starting over");
                Outcome::Again {
                    wake_at: Some(self.shared.clock.now_ms()),
                }
            }
            Err(err) => {
                tracing::warn!(project = %self.name, error = %chain(&err), "reconcile pass failed; will retry");
                Outcome::Again { wake_at: None }
            }
        }
    }

    async fn try_pass(&mut self) -> Result<Outcome, PassError> {
        // Only the leader decides; the others wait until they lead (woken then).
        let Some(leader) = self.shared.leadership.guard() else {
            return Ok(Outcome::Again { wake_at: None });
        };
        let Some(stored) = self.shared.store.project(&self.name).await? else {
            return Ok(Outcome::Gone);
        };
        self.guard = Guard::project(&self.name, stored.revision).and(leader);
        let project = project_from_json(stored.spec.clone())?;
        let project = Arc::new(self.shared.front(&self.name, project));
        if let Some(removing) = &stored.removing {
            return self.remove(&project, removing.volumes).await;
        }
        let nodes = self.shared.store.cluster_nodes().await?;
        let mut specs = service_specs(&project)?;
        self.count_global_replicas(&mut specs, &nodes);
        // Before the list: a step that ends after this shows in the list or stays busy.
        let steps = self.shared.agent.snapshot(&self.name);
        let containers = self.shared.runtime.list(Some(&self.name)).await?;
        let tasks = self.shared.store.tasks(&self.name).await?;
        let rollouts = self
            .shared
            .store
            .rollouts(&self.name)
            .await?
            .into_iter()
            .collect();
        let mut work = Work {
            runtime_project: Arc::new(crate::ingress::runtime_project(&project)),
            project,
            revision: stored.revision,
            working_dir: stored.meta.working_dir.clone(),
            specs,
            containers,
            tasks,
            rollouts,
            now: self.shared.clock.now_ms(),
            resources_ready: false,
            wake_at: None,
            steps,
            nodes,
            placement: None,
            unplaced: IndexMap::new(),
        };
        if let Err(err) = self.observe(&mut work).await {
            // The proxy and the VIPs follow what was observed even when it cannot be
            // recorded (a store with no room): a replica that died leaves them now, not
            // once the store can be written again.
            if !matches!(err, PassError::Store(StoreError::Conflict(_))) {
                self.sync_ingress(&work).await;
            }
            return Err(err);
        }
        self.probe_accepting(&mut work).await;
        // The proxy and the VIPs learn what turned ready or left before anything that
        // depends on it starts in this pass.
        self.sync_ingress(&work).await;
        self.clean_up(&mut work).await?;
        self.move_off_drained(&mut work).await?;
        let mut statuses = IndexMap::new();
        for service in startup_order(&work.specs) {
            let status = self.reconcile(&service, &mut work).await?;
            statuses.insert(service, status);
        }
        self.sync_ingress(&work).await;
        let report = Report {
            revision: work.revision,
            started_at: work.now,
            proxy_problems: self.ingress_errors.clone(),
            placement_problems: work.unplaced.values().cloned().collect(),
            services: work
                .specs
                .iter()
                .filter_map(|(name, spec)| {
                    let mut report = ServiceReport::from(statuses.get(name)?);
                    report.replicas = spec.replicas;
                    Some((name.clone(), report))
                })
                .collect(),
        };
        self.publish(report);
        Ok(Outcome::Again {
            wake_at: work.wake_at,
        })
    }

    /// Sends the proxy the project's published ports and ready replicas; reports (once) what
    /// it cannot serve.
    async fn sync_ingress(&mut self, work: &Work) {
        let mut errors = self
            .shared
            .ingress
            .sync(
                &self.name,
                &work.project,
                std::path::Path::new(&work.working_dir),
                &work.tasks,
                &work.containers,
            )
            .await;
        errors.extend(self.shared.vips.sync(
            &self.name,
            &work.project,
            &work.tasks,
            &work.containers,
        ));
        if errors != self.ingress_errors {
            for error in errors.iter().filter(|e| !self.ingress_errors.contains(e)) {
                tracing::warn!(project = %self.name, error = %error, "proxy");
                self.shared
                    .events
                    .record(NewEvent::project(&self.name, "proxy", error.clone()));
            }
            self.ingress_errors = errors;
        }
    }

    /// Writes what the runtime shows, and what the agent's launches could not do, onto the
    /// tasks, in one transaction. Tasks with a step in flight are left as they are.
    async fn observe(&mut self, work: &mut Work) -> Result<(), PassError> {
        let mut changes = self.record_launch_failures(work);
        let busy = work.steps.busy_tasks();
        changes.extend(
            observe::observe(&mut work.tasks, &work.containers, work.now, &busy)
                .into_iter()
                .map(|change| (change.task, change.event)),
        );
        let mut indexes: Vec<usize> = changes.iter().map(|(index, _)| *index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let changed: Vec<Task> = indexes.iter().map(|&i| work.tasks[i].clone()).collect();
        if !changed.is_empty() {
            self.shared.store.put_tasks(&changed, &self.guard).await?;
        }
        for (index, event) in changes {
            if let Some((kind, message)) = event {
                let task = &work.tasks[index];
                self.shared
                    .events
                    .record(NewEvent::task(task, kind, message));
            }
        }
        self.adopt_unknown(work).await?;
        if !self.adopted {
            self.adopted = true;
            let running = work
                .tasks
                .iter()
                .filter(|t| t.desired == DesiredState::Running && t.state == TaskState::Running)
                .count();
            if running > 0 {
                self.shared.events.record(NewEvent::project(
                    &self.name,
                    "adopted",
                    format!("adopted {running} running container(s)"),
                ));
            }
        }
        Ok(())
    }

    /// Records the running containers that no stored task knows as tasks of their slots
    /// (see [`adopt`]), so that a lost or restored store restarts nothing.
    async fn adopt_unknown(&mut self, work: &mut Work) -> Result<(), PassError> {
        let busy = |id: &str| work.steps.container_busy(id);
        let adopted = adopt::adoptable(
            &self.name,
            &work.tasks,
            &work.containers,
            &work.specs,
            &busy,
            &self.shared.node,
            work.now,
        );
        if adopted.is_empty() {
            return Ok(());
        }
        self.shared.store.put_tasks(&adopted, &self.guard).await?;
        for task in adopted {
            let message = format!(
                "slot {}: container {} had no task in the store (lost or restored): adopted",
                task.slot,
                task.container_name.as_deref().unwrap_or("?")
            );
            self.shared
                .events
                .record(NewEvent::task(&task, "adopted", message));
            work.tasks.push(task);
        }
        Ok(())
    }

    /// Shuts down what nobody wants: tasks of services that left the project, tasks desired
    /// shut down whose container is still there, containers that belong to no task, and
    /// running containers of tasks that ended.
    /// Decisions are recorded in one transaction; the agent carries out the stops.
    async fn clean_up(&mut self, work: &mut Work) -> Result<(), PassError> {
        let mut changed = Vec::new();
        let mut events = Vec::new();
        for index in 0..work.tasks.len() {
            let task = &mut work.tasks[index];
            if task.desired == DesiredState::Running && !work.specs.contains_key(&task.service) {
                let reason = format!("service `{}` is no longer in the project", task.service);
                task.desired = DesiredState::Shutdown;
                task.error.get_or_insert_with(|| reason.clone());
                changed.push(index);
                events.push((index, reason));
            }
        }
        for index in 0..work.tasks.len() {
            let task = &work.tasks[index];
            let unfinished =
                !task.state.is_terminal() || container_of(task, &work.containers).is_some();
            if task.desired == DesiredState::Shutdown && unfinished && self.shut_down(work, index) {
                changed.push(index);
            }
        }
        changed.sort_unstable();
        changed.dedup();
        let tasks: Vec<Task> = changed.iter().map(|&i| work.tasks[i].clone()).collect();
        self.shared.store.put_tasks(&tasks, &self.guard).await?;
        for (index, reason) in events {
            self.shared
                .events
                .record(NewEvent::task(&work.tasks[index], "removed", reason));
        }
        let orphans: Vec<ContainerInfo> = work
            .containers
            .iter()
            .filter(|c| {
                c.labels
                    .get(labels::TASK)
                    .is_none_or(|id| !work.tasks.iter().any(|t| &t.id.0 == id))
            })
            .cloned()
            .collect();
        for container in orphans {
            self.remove_orphan(work, &container);
        }
        for index in 0..work.tasks.len() {
            let task = &work.tasks[index];
            if task.desired == DesiredState::Running && task.state.is_terminal() {
                self.stop_kept(work, index);
            }
        }
        let gone: Vec<String> = work
            .rollouts
            .keys()
            .filter(|service| !work.specs.contains_key(*service))
            .cloned()
            .collect();
        for service in gone {
            self.shared
                .store
                .delete_rollout(&self.name, &service, &self.guard)
                .await?;
            work.rollouts.shift_remove(&service);
        }
        Ok(())
    }

    /// Reconciles one service and applies the plan; returns the service's status.
    async fn reconcile(
        &mut self,
        service: &str,
        work: &mut Work,
    ) -> Result<ServiceStatus, PassError> {
        let Some(spec) = work.specs.get(service).cloned() else {
            return Ok(ServiceStatus::Running);
        };
        let spec = self.gpu_update_order(spec, work).await?;
        let service_tasks: Vec<Task> = work
            .tasks
            .iter()
            .filter(|t| t.service == service)
            .cloned()
            .collect();
        let deps = dependency_state(
            &with_vip_dependencies(&spec, &work.specs),
            &work.tasks,
            &work.specs,
        );
        let rng = &mut self.rng;
        let plan = reconcile_service(
            &spec,
            &service_tasks,
            &deps,
            work.rollouts.get(service),
            work.now,
            &Backoff::default(),
            &mut || rng.f64(),
        );
        if let Some(at) = plan.wake_at {
            work.wake(at);
        }
        let status = plan.status.clone();
        let rollout = match plan.rollout.clone() {
            Some(rollout) => Some(self.prepare_rollout(work, service, rollout).await?),
            None => None,
        };
        if let Some(reason) = plan.rollback.clone() {
            if let Some(rollout) = rollout {
                self.store_prepared(work, service, rollout).await?;
            }
            self.roll_back(work, &spec, &reason).await?;
            return Ok(status);
        }
        self.apply(&spec, plan, rollout, work).await?;
        self.launch_due(service, work).await?;
        Ok(status)
    }

    /// Records the plan's decisions (tasks failed, shut down and created, and the service's
    /// rollout) in one guarded transaction, then hands the agent what they need from the
    /// runtime: a failed task that is not replaced is stopped and kept, a task shut down is
    /// withdrawn, drained and removed. Recording first means a daemon stopped in between
    /// finds every decision in the store.
    async fn apply(
        &mut self,
        spec: &ServiceSpec,
        plan: Plan,
        rollout: Option<PreparedRollout>,
        work: &mut Work,
    ) -> Result<(), PassError> {
        let mut decided: Vec<Task> = Vec::new();
        let mut events: Vec<(usize, &'static str, String)> = Vec::new();
        let mut kept: Vec<usize> = Vec::new();
        let mut stopped: Vec<usize> = Vec::new();
        for (id, reason) in &plan.fail {
            let Some(index) = work.index(id) else {
                continue;
            };
            let task = &mut work.tasks[index];
            let kind = if task.health == Health::Unhealthy {
                "unhealthy"
            } else {
                "failed"
            };
            task.state = TaskState::Failed;
            task.error = Some(reason.clone());
            task.finished_at.get_or_insert(work.now);
            events.push((index, kind, reason.clone()));
            if !plan.shutdown.iter().any(|(other, _)| other == id) {
                // Not replaced (restart policy): stop it, keep it and its logs.
                kept.push(index);
            }
        }
        for (id, reason) in &plan.shutdown {
            let Some(index) = work.index(id) else {
                continue;
            };
            let task = &mut work.tasks[index];
            task.desired = DesiredState::Shutdown;
            task.error.get_or_insert_with(|| reason.clone());
            let kind = if task.slot > spec.replicas {
                "scaled"
            } else {
                "replaced"
            };
            events.push((index, kind, reason.clone()));
            stopped.push(index);
        }
        for (id, at) in &plan.expedite {
            let Some(index) = work.index(id) else {
                continue;
            };
            let task = &mut work.tasks[index];
            task.not_before = *at;
            let message = format!(
                "slot {}: starts without its backoff: no replica of {} is ready",
                task.slot, spec.name
            );
            events.push((index, "expedited", message));
        }
        for new in &plan.create {
            let mut task = Task::new(
                new_task_id(&mut self.rng, &work.tasks),
                &self.name,
                &spec.name,
                new.slot,
                &spec.spec_hash,
                // Placed when it is due to launch (see `place_due`).
                NodeName::default(),
                work.now,
            );
            task.attempt = new.attempt;
            task.not_before = new.not_before;
            let mut message = format!("slot {}: new task", task.slot);
            if task.attempt > 0 {
                message.push_str(&format!(" (restart {} in a row)", task.attempt));
            }
            if task.not_before > work.now {
                message.push_str(&format!(", starts in {} ms", task.not_before - work.now));
            }
            work.tasks.push(task);
            events.push((work.tasks.len() - 1, "scheduled", message));
        }
        let mut touched: Vec<usize> = events.iter().map(|(index, _, _)| *index).collect();
        touched.sort_unstable();
        touched.dedup();
        decided.extend(touched.iter().map(|&index| work.tasks[index].clone()));
        if decided.is_empty() {
            if let Some(rollout) = rollout {
                self.store_prepared(work, &spec.name, rollout).await?;
            }
            return Ok(());
        }
        let stored = rollout.as_ref().map(|r| (spec.name.as_str(), &r.rollout));
        self.shared
            .store
            .put_plan(&self.name, &decided, stored, &self.guard)
            .await?;
        if let Some(rollout) = rollout {
            self.rollout_stored(work, &spec.name, rollout).await?;
        }
        for (index, kind, message) in events {
            self.shared
                .events
                .record(NewEvent::task(&work.tasks[index], kind, message));
        }
        for index in kept {
            self.stop_kept(work, index);
        }
        if !stopped.is_empty() {
            // A start-first update stops an old task because its replacement is ready: the
            // proxy must have the replacement before the old one is withdrawn and drained,
            // or a service of one replica would have no endpoint meanwhile.
            self.sync_ingress(work).await;
        }
        let mut ended = Vec::new();
        for index in stopped {
            if self.shut_down(work, index) {
                ended.push(work.tasks[index].clone());
            }
        }
        self.shared.store.put_tasks(&ended, &self.guard).await?;
        Ok(())
    }

    /// Hands the agent the launch of the service's pending tasks whose time has come, once
    /// the project's networks and volumes exist. The tasks are recorded `Creating`, with their
    /// containers' names, in one transaction first.
    async fn launch_due(&mut self, service: &str, work: &mut Work) -> Result<(), PassError> {
        let mut due = Vec::new();
        for index in 0..work.tasks.len() {
            let task = &work.tasks[index];
            let waiting = task.service == service
                && task.desired == DesiredState::Running
                && matches!(task.state, TaskState::Pending | TaskState::Creating)
                && !work.steps.task_busy(&task.id);
            if !waiting || slot_stopping(work, task) {
                continue;
            }
            if task.not_before > work.now {
                work.wake(task.not_before);
                continue;
            }
            due.push(index);
        }
        if due.is_empty() {
            return Ok(());
        }
        let due = self.place_due(service, work, due).await?;
        if due.is_empty() {
            return Ok(());
        }
        if !work.resources_ready {
            if let Err(err) = self.ensure_resources(work).await {
                return self.fail_launches(work, &due, &err).await;
            }
            work.resources_ready = true;
        }
        let mut recorded = Vec::new();
        for &index in &due {
            let name = match work.tasks[index].container_name.clone() {
                Some(name) => name,
                None => free_name(work, index),
            };
            let task = &mut work.tasks[index];
            task.state = TaskState::Creating;
            task.container_name = Some(name);
            recorded.push(task.clone());
        }
        self.shared.store.put_tasks(&recorded, &self.guard).await?;
        for index in due {
            self.launch(work, index);
        }
        Ok(())
    }

    /// Places the due tasks that have no node yet; returns the due tasks that have one. A
    /// task no node can take stays pending with the reason (recorded, and reported as the
    /// service's problem) and is tried again in the next pass.
    #[tracing::instrument(level = "debug", skip_all, fields(project = %self.name, service))]
    async fn place_due(
        &mut self,
        service: &str,
        work: &mut Work,
        due: Vec<usize>,
    ) -> Result<Vec<usize>, PassError> {
        let unplaced: Vec<usize> = due
            .iter()
            .copied()
            .filter(|&i| work.tasks[i].node.0.is_empty())
            .collect();
        if unplaced.is_empty() {
            return Ok(due);
        }
        let Some(spec) = work.specs.get(service).map(|s| s.placement.clone()) else {
            return Ok(Vec::new());
        };
        self.ensure_placement(work).await?;
        let pin = self.pin(service, &spec, work);
        let key = cluster::service_key(&self.name, service);
        let names: Vec<String> = unplaced
            .iter()
            .map(|&i| cluster::holder_name(&self.name, service, work.tasks[i].slot))
            .collect();
        let placed = match work.placement.as_mut() {
            Some(placement) => placement.place_named(&key, &spec, pin.as_ref(), &names),
            None => Vec::new(),
        };
        let mut changed = Vec::new();
        let mut events = Vec::new();
        for (&index, result) in unplaced.iter().zip(placed) {
            let task = &mut work.tasks[index];
            match result {
                Ok(placed) => {
                    tracing::debug!(slot = task.slot, node = %placed.node, gpus = ?placed.gpus.ids, "placed");
                    task.node = placed.node;
                    task.reserved = spec.reservation;
                    task.gpus = placed.gpus;
                    task.error = None;
                }
                Err(why) => {
                    let why = why.to_string();
                    work.unplaced
                        .insert(service.to_string(), format!("service `{service}`: {why}"));
                    if task.error.as_deref() != Some(why.as_str()) {
                        tracing::info!(slot = task.slot, reason = %why, "cannot place");
                        events.push((index, format!("slot {}: {why}", task.slot)));
                        task.error = Some(why);
                        changed.push(task.clone());
                    }
                }
            }
        }
        self.shared.store.put_tasks(&changed, &self.guard).await?;
        for (index, message) in events {
            self.shared
                .events
                .record(NewEvent::task(&work.tasks[index], "unplaced", message));
        }
        Ok(due
            .into_iter()
            .filter(|&i| !work.tasks[i].node.0.is_empty())
            .collect())
    }

    /// The cluster as placement sees it, built once per pass: other projects' tasks as
    /// stored, this one's as the pass has them.
    async fn ensure_placement(&self, work: &mut Work) -> Result<(), PassError> {
        if work.placement.is_some() {
            return Ok(());
        }
        let mut live: Vec<Task> = self
            .shared
            .store
            .live_tasks()
            .await?
            .into_iter()
            .filter(|t| t.project != self.name)
            .collect();
        live.extend(work.tasks.iter().cloned());
        work.placement = Some(cluster::placement(
            &work.nodes,
            &live,
            &self.shared.node_record,
            &self.shared.node,
        ));
        Ok(())
    }

    fn pin(&self, service: &str, spec: &PlacementSpec, work: &Work) -> Option<Pin> {
        (!spec.global)
            .then(|| cluster::volume_pin(service, &work.project, &work.tasks, &self.shared.node))
            .flatten()
    }

    /// A start-first update of a service that reserves GPUs needs a free GPU for a new
    /// replica beside each old one. While none is free, its slots roll stop-first instead
    /// (the old replica gives its GPU to the new one), rather than wait forever for a GPU;
    /// `up` says so before it happens ([`cluster::start_first_blocked`]).
    async fn gpu_update_order(
        &mut self,
        mut spec: ServiceSpec,
        work: &mut Work,
    ) -> Result<ServiceSpec, PassError> {
        if spec.placement.gpu.is_none() || spec.update.order != Order::StartFirst {
            return Ok(spec);
        }
        let replacing = work.tasks.iter().any(|t| {
            t.service == spec.name
                && t.desired == DesiredState::Running
                && !t.state.is_terminal()
                && t.spec_hash != spec.spec_hash
        });
        if !replacing {
            return Ok(spec);
        }
        self.ensure_placement(work).await?;
        let pin = self.pin(&spec.name, &spec.placement, work);
        let key = cluster::service_key(&self.name, &spec.name);
        let blocked = work.placement.as_ref().and_then(|placement| {
            cluster::start_first_blocked(placement, &key, &spec.placement, pin.as_ref())
        });
        if let Some(why) = blocked {
            tracing::debug!(service = %spec.name, reason = %why, "rolling stop-first: no GPU free for a new replica");
            spec.update.order = Order::StopFirst;
        }
        Ok(spec)
    }

    /// `deploy.mode: global`: a task on each node that is ready, active and meets the
    /// service's constraints.
    fn count_global_replicas(
        &self,
        specs: &mut IndexMap<String, ServiceSpec>,
        nodes: &[ClusterNode],
    ) {
        if !specs.values().any(|s| s.placement.global) {
            return;
        }
        let cluster = cluster::placement(nodes, &[], &self.shared.node_record, &self.shared.node);
        for spec in specs.values_mut().filter(|s| s.placement.global) {
            let eligible = cluster.global_nodes(&spec.placement, None).len();
            spec.replicas = u32::try_from(eligible).unwrap_or(u32::MAX);
        }
    }

    /// Replaces the tasks on drained nodes the way an update rolls (see
    /// [`Self::mark_restart`]): their replacements are placed elsewhere, and with the
    /// default start-first order each old task stops only once its replacement is ready.
    async fn move_off_drained(&mut self, work: &mut Work) -> Result<(), PassError> {
        let drained: Vec<String> = work
            .nodes
            .iter()
            .filter(|n| n.spec.availability == Availability::Drain)
            .map(|n| n.name.clone())
            .collect();
        if drained.is_empty() {
            return Ok(());
        }
        let local = self.shared.node.0.clone();
        let on_drained = |t: &Task| {
            let node = if t.node.0.is_empty() {
                &local
            } else {
                &t.node.0
            };
            !t.state.is_terminal() && drained.contains(node)
        };
        let specs: Vec<ServiceSpec> = work.specs.values().cloned().collect();
        for spec in specs {
            let movable = work.tasks.iter().any(|t| {
                t.service == spec.name
                    && t.desired == DesiredState::Running
                    && t.spec_hash == spec.spec_hash
                    && on_drained(t)
            });
            if !movable {
                continue;
            }
            let why = format!("node {} is drained", drained.join(", "));
            let current = work.rollouts.get(&spec.name).cloned();
            let mut tasks = std::mem::take(&mut work.tasks);
            let marked = self
                .mark_restart(
                    &mut tasks,
                    &spec,
                    current.as_ref(),
                    work.revision,
                    &why,
                    on_drained,
                )
                .await;
            work.tasks = tasks;
            if let Some(rollout) = marked? {
                self.store_rollout(work, &spec.name, rollout).await?;
            }
        }
        Ok(())
    }

    /// The due tasks cannot launch because their project's networks or volumes cannot be
    /// made: for a transient reason they stay due, with the error; otherwise they fail, as a
    /// launch that fails does.
    async fn fail_launches(
        &mut self,
        work: &mut Work,
        due: &[usize],
        err: &RuntimeError,
    ) -> Result<(), PassError> {
        let message = err.to_string();
        if err.is_transient() {
            tracing::warn!(project = %self.name, error = %chain(err), "cannot create the project's networks and volumes yet; will retry");
            work.wake(work.now + RETRY_MS);
        }
        let mut failed = Vec::new();
        for &index in due {
            let task = &mut work.tasks[index];
            task.error = Some(message.clone());
            if !err.is_transient() {
                task.state = TaskState::Failed;
                task.finished_at = Some(work.now);
            }
            failed.push(task.clone());
        }
        self.shared.store.put_tasks(&failed, &self.guard).await?;
        if !err.is_transient() {
            for task in &failed {
                self.shared
                    .events
                    .record(NewEvent::task(task, "failed", message.clone()));
            }
            work.wake(work.now);
        }
        Ok(())
    }

    async fn ensure_resources(&self, work: &Work) -> Result<(), RuntimeError> {
        let runtime = &self.shared.runtime;
        for key in work.project.networks.keys() {
            runtime.ensure_network(&work.project, key).await?;
        }
        for key in work.project.volumes.keys() {
            runtime.ensure_volume(&work.project, key).await?;
        }
        Ok(())
    }
}

/// `spec` waiting also for the VIP of each service it depends on: callers reach a service
/// through its VIP, which must run before they start, as the service itself must.
fn with_vip_dependencies(spec: &ServiceSpec, specs: &IndexMap<String, ServiceSpec>) -> ServiceSpec {
    let mut spec = spec.clone();
    let vips: Vec<Dependency> = spec
        .depends_on
        .iter()
        .map(|dep| crate::vip::vip_name(&dep.service))
        .filter(|vip| specs.contains_key(vip) && *vip != spec.name)
        .map(|vip| Dependency {
            service: vip,
            condition: Condition::ServiceStarted,
            required: true,
            restart: false,
        })
        .collect();
    spec.depends_on.extend(vips);
    spec
}

/// Whether another task of the task's slot is being shut down (a stop-first update stops the
/// old task before its replacement starts): the launch waits until it has ended; the end of
/// the agent's stop wakes the controller.
fn slot_stopping(work: &Work, task: &Task) -> bool {
    work.tasks.iter().any(|other| {
        other.id != task.id
            && other.service == task.service
            && other.slot == task.slot
            && other.desired == DesiredState::Shutdown
            && !other.state.is_terminal()
    })
}

/// How soon a step that failed for a transient reason (engine busy or away) is retried.
const RETRY_MS: u64 = 1_000;

/// A task id: 16 random hex digits, unique for the life of a store in practice.
/// A task id that no task of the project has. With a random seed a collision is all but
/// impossible; with a fixed one (tests, a replayed run) a restarted daemon draws the ids of
/// the run before, and a task recorded under one of them would replace another.
fn new_task_id(rng: &mut fastrand::Rng, tasks: &[Task]) -> TaskId {
    loop {
        let id = TaskId(format!("{:016x}", rng.u64(..)));
        if !tasks.iter().any(|t| t.id == id) {
            return id;
        }
    }
}
