//! The engine's types as the API shows them. Explicit conversions keep the wire format
//! independent of the engine's model.

use composure_api as api;
use composure_compose::model::{Port, project_from_json};

use composure_core::rollout::{
    self, Rollout, RolloutFailure, RolloutKind, RolloutState, SlotState,
};
use composure_core::spec::{ServiceSpec, service_specs};
use composure_core::{DesiredState, Health, Task, TaskState};
use composure_store::{StoredEvent, StoredProject};
use indexmap::IndexMap;

use crate::controller::Report;

/// The service specs of a stored project (none if it no longer reads, which a `PUT`
/// prevents).
pub(crate) fn stored_specs(project: &StoredProject) -> IndexMap<String, ServiceSpec> {
    project_from_json(project.spec.clone())
        .ok()
        .and_then(|project| service_specs(&project).ok())
        .unwrap_or_default()
}

pub(crate) fn task_view(task: &Task) -> api::TaskView {
    api::TaskView {
        id: task.id.0.clone(),
        service: task.service.clone(),
        slot: task.slot,
        container_id: task.container_id.clone(),
        container_name: task.container_id.as_ref().map(|_| {
            task.container_name
                .clone()
                .unwrap_or_else(|| format!("{}-{}-{}", task.project, task.service, task.slot))
        }),
        state: task_state(task.state),
        desired: match task.desired {
            DesiredState::Running => api::DesiredState::Running,
            DesiredState::Shutdown => api::DesiredState::Shutdown,
        },
        health: health(task.health),
        restarts: task.attempt,
        exit_code: task.exit_code,
        error: task.error.clone(),
        started_at: task.started_at,
        node: task.node.0.clone(),
        gpus: task.gpus.ids.clone(),
    }
}

fn task_state(state: TaskState) -> api::TaskState {
    match state {
        TaskState::Pending => api::TaskState::Pending,
        TaskState::Creating => api::TaskState::Creating,
        TaskState::Starting => api::TaskState::Starting,
        TaskState::Running => api::TaskState::Running,
        TaskState::Complete => api::TaskState::Complete,
        TaskState::Failed => api::TaskState::Failed,
        TaskState::Shutdown => api::TaskState::Shutdown,
    }
}

fn health(health: Health) -> api::Health {
    match health {
        Health::None => api::Health::None,
        Health::Starting => api::Health::Starting,
        Health::Healthy => api::Health::Healthy,
        Health::Unhealthy => api::Health::Unhealthy,
    }
}

pub(crate) fn event_view(event: StoredEvent) -> api::Event {
    api::Event {
        revision: event.revision,
        time: event.time,
        project: event.project,
        service: event.service,
        slot: event.slot,
        task: event.task,
        kind: event.kind,
        message: event.message,
    }
}

/// The ports a service publishes, from its stored spec (the ingress listens on them for
/// all its replicas). A port without a published number is left out: the ingress picks it.
pub(crate) fn published_ports(spec: &serde_json::Value, service: &str) -> Vec<api::PortView> {
    let ports = spec
        .get("services")
        .and_then(|services| services.get(service))
        .and_then(|service| service.get("ports"))
        .cloned()
        .and_then(|ports| serde_json::from_value::<Vec<Port>>(ports).ok())
        .unwrap_or_default();
    ports
        .into_iter()
        .filter_map(|port| {
            Some(api::PortView {
                host_ip: port.host_ip.unwrap_or_else(|| "0.0.0.0".to_string()),
                published: port.published?,
                target: port.target,
                protocol: port.protocol,
            })
        })
        .collect()
}

fn is_running(task: &Task) -> bool {
    task.desired == DesiredState::Running && task.state == TaskState::Running
}

/// Each service's counts and status: desired from the spec, running and healthy from the
/// tasks, status from the controller's last pass.
pub(crate) fn service_views(
    specs: &IndexMap<String, ServiceSpec>,
    tasks: &[Task],
    report: &Report,
    rollouts: &IndexMap<String, Rollout>,
    now: u64,
) -> Vec<api::ServiceStatusView> {
    specs
        .values()
        .map(|spec| {
            let running: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.service == spec.name && is_running(t))
                .collect();
            let healthy = running
                .iter()
                .filter(|t| matches!(t.health, Health::None | Health::Healthy))
                .count();
            let (mut status, mut message) = match report.get(&spec.name) {
                Some(report) => (report.state, report.message.clone()),
                None => (api::ServiceState::Converging, Some("starting".to_string())),
            };
            // Callers reach a service that has a VIP through it: the service is not running
            // for them until its VIP is.
            if status == api::ServiceState::Running
                && let Some(vip) = report.get(&crate::vip::vip_name(&spec.name))
                && vip.state != api::ServiceState::Running
            {
                status = vip.state;
                message = Some(match &vip.message {
                    Some(why) => format!("its VIP: {why}"),
                    None => "its VIP is starting".to_string(),
                });
            }
            // Clients reach published ports through the project's ingress: a service is not
            // running for them until the ingress is (a rollout also waits for that, so a
            // daemon upgrade right after `up` replaces a serving ingress start-first).
            if status == api::ServiceState::Running
                && let Some(ingress) = report.get(crate::ingress::INGRESS_SERVICE)
                && ingress.state != api::ServiceState::Running
            {
                status = ingress.state;
                message = Some(match &ingress.message {
                    Some(why) => format!("its ingress: {why}"),
                    None => "its ingress is starting".to_string(),
                });
            }
            api::ServiceStatusView {
                name: spec.name.clone(),
                desired: match report.get(&spec.name) {
                    Some(seen) if spec.placement.global => seen.replicas,
                    _ => spec.replicas,
                },
                running: count(running.len()),
                healthy: count(healthy),
                status,
                message,
                ports: Vec::new(),
                rollout: rollouts.get(&spec.name).map(|rollout| {
                    let service_tasks: Vec<Task> = tasks
                        .iter()
                        .filter(|t| t.service == spec.name)
                        .cloned()
                        .collect();
                    rollout_view(spec, &service_tasks, rollout, now)
                }),
            }
        })
        .collect()
}

/// A rollout as the API shows it; while it runs, each slot's progress (from `tasks`, the
/// service's).
pub(crate) fn rollout_view(
    spec: &ServiceSpec,
    tasks: &[Task],
    rollout: &Rollout,
    now: u64,
) -> api::RolloutView {
    let running = rollout.is_active() && rollout.target_hash == spec.spec_hash;
    let progress = running.then(|| rollout::progress(spec, tasks, rollout, now));
    let (updated, total) = match (&progress, &rollout.state) {
        (Some(progress), _) => (progress.updated, progress.total),
        (None, RolloutState::Completed { .. }) => (spec.replicas, spec.replicas),
        (None, _) => (0, spec.replicas),
    };
    let message = match &rollout.state {
        RolloutState::Paused { reason } => Some(reason.clone()),
        _ => progress.as_ref().map(|p| p.summary(rollout)),
    };
    api::RolloutView {
        service: spec.name.clone(),
        kind: rollout_kind(rollout.kind),
        state: rollout_state(&rollout.state),
        revision: rollout.revision,
        started_at: rollout.started_at,
        finished_at: rollout.finished_at(),
        order: rollout.config.order.as_str().to_string(),
        parallelism: rollout.config.parallelism,
        monitor_ms: rollout.config.monitor_ms,
        failure_action: rollout.failure_action().as_str().to_string(),
        max_failure_ratio: rollout.config.max_failure_ratio,
        updated,
        total,
        slots: progress
            .map(|p| p.slots.into_iter().map(slot_view).collect())
            .unwrap_or_default(),
        message,
        failures: rollout.failures.iter().map(failure_view).collect(),
        cause: rollout.cause.as_ref().map(|cause| api::RolloutCauseView {
            revision: cause.revision,
            reason: cause.reason.clone(),
            failures: cause.failures.iter().map(failure_view).collect(),
        }),
        outage_ms: rollout.outage.total_ms(now),
        outage_ongoing: rollout.outage.ongoing(),
    }
}

/// How a rollout went, for a service's history.
pub(crate) fn rollout_summary(rollout: &Rollout, now: u64) -> api::RolloutSummaryView {
    api::RolloutSummaryView {
        kind: rollout_kind(rollout.kind),
        state: rollout_state(&rollout.state),
        started_at: rollout.started_at,
        finished_at: rollout.finished_at(),
        order: rollout.config.order.as_str().to_string(),
        outage_ms: rollout
            .outage
            .total_ms(rollout.finished_at().unwrap_or(now)),
    }
}

fn rollout_kind(kind: RolloutKind) -> api::RolloutKind {
    match kind {
        RolloutKind::Update => api::RolloutKind::Update,
        RolloutKind::Rollback => api::RolloutKind::Rollback,
        RolloutKind::Undo => api::RolloutKind::Undo,
        RolloutKind::Restart => api::RolloutKind::Restart,
    }
}

fn rollout_state(state: &RolloutState) -> api::RolloutState {
    match state {
        RolloutState::Updating => api::RolloutState::Updating,
        RolloutState::Paused { .. } => api::RolloutState::Paused,
        RolloutState::Completed { .. } => api::RolloutState::Completed,
        RolloutState::Superseded { .. } => api::RolloutState::Superseded,
    }
}

fn slot_view(slot: rollout::SlotProgress) -> api::SlotRolloutView {
    use api::SlotRolloutState as S;
    let (state, message) = match slot.state {
        SlotState::Updated => (S::Updated, None),
        SlotState::Monitoring { .. } => (S::Monitoring, None),
        SlotState::Waiting => (S::Waiting, None),
        SlotState::Starting => (S::Starting, None),
        SlotState::WaitingForHealth => (S::WaitingForHealth, None),
        SlotState::Restarting { attempt } => {
            (S::Restarting, Some(format!("restart {attempt} in a row")))
        }
        SlotState::Failed { reason } => (S::Failed, Some(reason)),
    };
    api::SlotRolloutView {
        slot: slot.slot,
        state,
        task: slot.task.map(|id| id.0),
        message,
    }
}

fn failure_view(failure: &RolloutFailure) -> api::RolloutFailureView {
    api::RolloutFailureView {
        slot: failure.slot,
        task: failure.task.0.clone(),
        reason: failure.reason.clone(),
        at: failure.at,
    }
}

/// The project's status: its worst service's.
pub(crate) fn project_state(
    removing: bool,
    services: &[api::ServiceStatusView],
) -> api::ProjectState {
    use api::ServiceState as S;
    if removing {
        return api::ProjectState::Removing;
    }
    let any = |state: S| services.iter().any(|s| s.status == state);
    if any(S::Failed) {
        api::ProjectState::Failed
    } else if any(S::Degraded) {
        api::ProjectState::Degraded
    } else if any(S::Converging) {
        api::ProjectState::Converging
    } else {
        api::ProjectState::Running
    }
}

pub(crate) fn summary(
    project: &StoredProject,
    tasks: &[Task],
    report: &Report,
) -> api::ProjectSummary {
    let specs = stored_specs(project);
    let services = service_views(&specs, tasks, report, &IndexMap::new(), 0);
    api::ProjectSummary {
        name: project.name.clone(),
        revision: project.revision,
        number: project.number,
        status: project_state(project.removing.is_some(), &services),
        services: count(services.len()),
        running: services.iter().map(|s| s.running).sum(),
        desired: services.iter().map(|s| s.desired).sum(),
        config_files: project.meta.files.clone(),
    }
}

pub(crate) fn status(
    project: &StoredProject,
    tasks: &[Task],
    report: &Report,
    rollouts: &IndexMap<String, Rollout>,
    now: u64,
) -> api::ProjectStatus {
    let specs = stored_specs(project);
    let mut services = service_views(&specs, tasks, report, rollouts, now);
    for service in &mut services {
        service.ports = published_ports(&project.spec, &service.name);
    }
    let mut tasks: Vec<&Task> = tasks.iter().collect();
    let order = |service: &str| specs.get_index_of(service).unwrap_or(usize::MAX);
    tasks.sort_by(|a, b| {
        (order(&a.service), a.slot, a.created_at).cmp(&(order(&b.service), b.slot, b.created_at))
    });
    api::ProjectStatus {
        name: project.name.clone(),
        revision: project.revision,
        observed_revision: report.revision,
        observed_at: report.started_at,
        status: project_state(project.removing.is_some(), &services),
        services,
        tasks: tasks.into_iter().map(task_view).collect(),
        store_problem: None,
        problems: report
            .proxy_problems
            .iter()
            .chain(&report.placement_problems)
            .cloned()
            .collect(),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
