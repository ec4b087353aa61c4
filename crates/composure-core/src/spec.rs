//! What the engine needs of a compose service, derived once per project revision.

use composure_compose::model::{self, Condition, Project, Service};
use composure_compose::semantic;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::SpecError;
use crate::placement::{PlacementSpec, placement_spec};
use crate::restart::{RestartCondition, RestartPolicy, millis};
use crate::rollout::{Order, UpdateConfig};

/// Docker's and Compose's default time between the stop signal and the kill.
pub const DEFAULT_STOP_GRACE_MS: u64 = 10_000;

/// One service as the reconciler sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    /// `deploy.replicas`, else `scale`, else 1; 0 allowed. For `deploy.mode: global` 1 here;
    /// the daemon sets it to the number of eligible nodes ([`crate::Cluster::global_nodes`]).
    pub replicas: u32,
    /// From `deploy.restart_policy`, else `restart:`, else [`RestartPolicy::default`].
    pub restart: RestartPolicy,
    /// From the normalised `depends_on`, in file order.
    pub depends_on: Vec<Dependency>,
    /// See [`spec_hash`].
    pub spec_hash: String,
    /// A health check in the file (with a test, not disabled). Health checks that come from
    /// the image's `HEALTHCHECK` are seen at run time only (as a task health other than
    /// [`crate::Health::None`]).
    pub has_healthcheck: bool,
    /// `stop_grace_period`, default [`DEFAULT_STOP_GRACE_MS`].
    pub stop_grace_ms: u64,
    /// The health check's command, for messages (`/demo-app probe tcp 127.0.0.1:9`).
    #[serde(default)]
    pub healthcheck: Option<String>,
    /// How a change of spec rolls through the slots: `deploy.update_config`.
    #[serde(default = "UpdateConfig::update_default")]
    pub update: UpdateConfig,
    /// How a failed update (or an undo) goes back: `deploy.rollback_config`.
    #[serde(default = "UpdateConfig::rollback_default")]
    pub rollback: UpdateConfig,
    /// Where its tasks may run: `deploy.placement`, `deploy.mode`, reservations.
    #[serde(default)]
    pub placement: PlacementSpec,
}

/// One `depends_on` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
    /// A missing optional dependency is ignored.
    pub required: bool,
    /// Restart this service (rolled in like an update) once the dependency has been updated.
    pub restart: bool,
}

/// The specs of every service of `project`, in file order.
///
/// A service another one waits for with `condition: service_completed_successfully` is a
/// job: unless its file says how to restart it, it restarts on failure only, so that its
/// exit 0 completes it (as compose runs it once) instead of starting it again forever.
pub fn service_specs(project: &Project) -> Result<IndexMap<String, ServiceSpec>, SpecError> {
    let mut specs = project
        .services
        .iter()
        .map(|(name, service)| Ok((name.clone(), service_spec(name, service)?)))
        .collect::<Result<IndexMap<_, _>, SpecError>>()?;
    let jobs: Vec<String> = specs
        .values()
        .flat_map(|spec| &spec.depends_on)
        .filter(|dep| dep.condition == Condition::ServiceCompletedSuccessfully)
        .map(|dep| dep.service.clone())
        .collect();
    for job in jobs {
        let unwritten = project
            .services
            .get(&job)
            .is_some_and(|service| !RestartPolicy::is_written(service));
        if let Some(spec) = specs.get_mut(&job).filter(|_| unwritten) {
            spec.restart.condition = RestartCondition::OnFailure;
        }
    }
    Ok(specs)
}

/// The spec of one service.
///
/// One replica with a named volume mounted read-write updates (and rolls back)
/// **stop-first** unless `update_config.order` says otherwise: start-first would run two
/// containers on one volume, which a database does not survive ([`single_writer_volume`]).
pub fn service_spec(name: &str, service: &Service) -> Result<ServiceSpec, SpecError> {
    let replicas = replicas(name, service)?;
    let mut update_default = UpdateConfig::update_default();
    let mut rollback_default = UpdateConfig::rollback_default();
    if replicas == 1 && single_writer_volume(service).is_some() {
        update_default.order = Order::StopFirst;
        rollback_default.order = Order::StopFirst;
    }
    Ok(ServiceSpec {
        name: name.to_string(),
        replicas,
        restart: RestartPolicy::from_service(name, service)?,
        depends_on: service
            .depends_on
            .iter()
            .map(|(target, dep)| Dependency {
                service: target.clone(),
                condition: dep.condition,
                required: dep.required,
                restart: dep.restart,
            })
            .collect(),
        spec_hash: spec_hash(service),
        has_healthcheck: has_healthcheck(service),
        stop_grace_ms: service
            .stop_grace_period
            .map_or(DEFAULT_STOP_GRACE_MS, millis),
        healthcheck: has_healthcheck(service)
            .then(|| healthcheck_command(service))
            .flatten(),
        update: UpdateConfig::from_model(
            name,
            "update_config",
            service
                .deploy
                .as_ref()
                .and_then(|d| d.update_config.as_ref()),
            update_default,
        )?,
        rollback: UpdateConfig::from_model(
            name,
            "rollback_config",
            service
                .deploy
                .as_ref()
                .and_then(|d| d.rollback_config.as_ref()),
            rollback_default,
        )?,
        placement: placement_spec(name, service)?,
    })
}

/// The first named volume the service mounts read-write, if any: why one replica of it
/// updates stop-first by default (two containers must not write one volume at once).
pub fn single_writer_volume(service: &Service) -> Option<&str> {
    service
        .volumes
        .iter()
        .filter(|v| v.kind == model::MountType::Volume && !v.read_only)
        .find_map(|v| v.source.as_deref())
}

/// The health check's test as a command line: `CMD`/`CMD-SHELL` dropped, words joined.
fn healthcheck_command(service: &Service) -> Option<String> {
    let test = service.healthcheck.as_ref()?.test.as_ref()?;
    let words = match test.first().map(String::as_str) {
        Some("CMD" | "CMD-SHELL") => &test[1..],
        _ => &test[..],
    };
    (!words.is_empty()).then(|| words.join(" "))
}

fn replicas(name: &str, service: &Service) -> Result<u32, SpecError> {
    let mode = service.deploy.as_ref().and_then(|d| d.mode.as_deref());
    match mode {
        None | Some("replicated") => {}
        // One task per eligible node: the daemon counts them.
        Some("global") => return Ok(1),
        Some(other) => {
            return Err(SpecError::Unsupported {
                service: name.to_string(),
                field: format!("deploy.mode: {other}"),
            });
        }
    }
    let replicas = semantic::replicas(service);
    u32::try_from(replicas).map_err(|_| SpecError::TooManyReplicas {
        service: name.to_string(),
        replicas,
    })
}

fn has_healthcheck(service: &Service) -> bool {
    let Some(check) = &service.healthcheck else {
        return false;
    };
    let disabled = check.disable == Some(true);
    match &check.test {
        Some(test) => !disabled && test.first().is_some_and(|kind| kind != "NONE"),
        // Only timings: they tune the image's check, if it has one.
        None => false,
    }
}

/// Hex SHA-256 of the service's canonical JSON: the serde_json form of [`model::Service`]
/// with object keys sorted (so the order of a mapping in the file does not matter), and
/// without `deploy.replicas` and `scale`, so that scaling never replaces tasks, nor
/// `deploy.update_config` and `deploy.rollback_config`, which say how tasks are replaced
/// and are not part of what runs (as in Swarm, changing them rolls nothing), nor
/// `x-composure.routes`, which tell the proxy how to reach the tasks, nor the label
/// [`crate::labels::FRONTED_BY`], which the daemon adds (not the file). Any other
/// change to the service (image, command, environment, restart policy, ...) changes the hash
/// and replaces the service's tasks.
pub fn spec_hash(service: &Service) -> String {
    let mut service = service.clone();
    service.scale = None;
    // Set by the daemon on a service whose name its VIP holds; not part of the file.
    service.labels.shift_remove(crate::labels::FRONTED_BY);
    if let Some(deploy) = service.deploy.as_mut() {
        deploy.replicas = None;
        deploy.update_config = None;
        deploy.rollback_config = None;
        if *deploy == model::Deploy::default() {
            service.deploy = None;
        }
    }
    if let Some(serde_json::Value::Object(x)) = service.extensions.get_mut("x-composure") {
        x.remove("routes");
        if x.is_empty() {
            service.extensions.shift_remove("x-composure");
        }
    }
    let mut hasher = Sha256::new();
    match serde_json::to_value(&service) {
        Ok(json) => write_canonical(&json, &mut hasher),
        // The model is plain data with string keys, so this does not happen; the debug form
        // is still deterministic and content-sensitive.
        Err(_) => hasher.update(format!("{service:?}").as_bytes()),
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Feeds `value` to `hasher` as compact JSON with object keys in sorted order.
fn write_canonical(value: &serde_json::Value, hasher: &mut Sha256) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            hasher.update(b"{");
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                hasher.update(Value::String(key.clone()).to_string().as_bytes());
                hasher.update(b":");
                write_canonical(value, hasher);
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                write_canonical(item, hasher);
            }
            hasher.update(b"]");
        }
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

/// The services in groups to stop one after another, each group's at once, as `docker
/// compose down` stops them: a service's dependents before it (so nothing loses what it
/// depends on while it still runs), and everything that depends on nothing left at once.
/// A service's group is its depth in the dependency graph, deepest first.
pub fn shutdown_groups(specs: &IndexMap<String, ServiceSpec>) -> Vec<Vec<String>> {
    let mut depth: IndexMap<&str, usize> = IndexMap::new();
    for name in startup_order(specs) {
        let Some(spec) = specs.get(&name) else {
            continue;
        };
        // Every dependency comes earlier in the startup order, so its depth is known.
        let d = spec
            .depends_on
            .iter()
            .filter_map(|dep| depth.get(dep.service.as_str()))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(spec.name.as_str(), d);
    }
    let deepest = depth.values().copied().max().unwrap_or(0);
    let mut groups = vec![Vec::new(); deepest + 1];
    for (name, d) in depth {
        groups[deepest - d].push(name.to_string());
    }
    groups.retain(|group| !group.is_empty());
    groups
}

/// Service names with every service after the services it depends on, otherwise in file
/// order. Dependencies on services that are not in `specs` are skipped; cycles (which the
/// loader rejects) are broken where they close instead of looping.
pub fn startup_order(specs: &IndexMap<String, ServiceSpec>) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unseen,
        Visiting,
        Done,
    }
    fn visit(
        index: usize,
        specs: &IndexMap<String, ServiceSpec>,
        marks: &mut [Mark],
        order: &mut Vec<String>,
    ) {
        if marks[index] != Mark::Unseen {
            return;
        }
        marks[index] = Mark::Visiting;
        for dep in &specs[index].depends_on {
            if let Some(dep_index) = specs.get_index_of(&dep.service) {
                visit(dep_index, specs, marks, order);
            }
        }
        marks[index] = Mark::Done;
        order.push(specs[index].name.clone());
    }
    let mut marks = vec![Mark::Unseen; specs.len()];
    let mut order = Vec::with_capacity(specs.len());
    for index in 0..specs.len() {
        visit(index, specs, &mut marks, &mut order);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restart::RestartCondition;
    use serde_json::json;

    fn project(services: serde_json::Value) -> Project {
        serde_json::from_value(json!({ "services": services })).unwrap()
    }

    fn one(service: serde_json::Value) -> Result<ServiceSpec, SpecError> {
        service_spec("web", &serde_json::from_value(service).unwrap())
    }

    #[test]
    fn one_replica_with_a_read_write_named_volume_updates_stop_first_unless_told() {
        let with = |extra: serde_json::Value| {
            let mut service = json!({"image": "postgres", "volumes": [
                {"type": "volume", "source": "data", "target": "/var/lib/postgresql/data"}
            ]});
            if let (Some(s), Some(e)) = (service.as_object_mut(), extra.as_object()) {
                s.extend(e.clone());
            }
            one(service).unwrap()
        };
        let db = with(json!({}));
        assert_eq!(db.update.order, Order::StopFirst);
        assert_eq!(db.rollback.order, Order::StopFirst);
        let told = with(json!({"deploy": {"update_config": {"order": "start-first"}}}));
        assert_eq!(told.update.order, Order::StartFirst);
        let two = with(json!({"deploy": {"replicas": 2}}));
        assert_eq!(two.update.order, Order::StartFirst);
        let read_only = one(json!({"image": "app", "volumes": [
            {"type": "volume", "source": "assets", "target": "/srv", "read_only": true}
        ]}))
        .unwrap();
        assert_eq!(read_only.update.order, Order::StartFirst);
        let anonymous =
            one(json!({"image": "app", "volumes": [{"type": "volume", "target": "/tmp"}]}))
                .unwrap();
        assert_eq!(anonymous.update.order, Order::StartFirst);
    }

    #[test]
    fn dependents_stop_before_what_they_depend_on_each_group_at_once() {
        let specs = service_specs(&project(json!({
            "db": {"image": "pg"},
            "cache": {"image": "redis"},
            "api": {"image": "app", "depends_on": {"db": {"condition": "service_started"}}},
            "web": {"image": "app", "depends_on": {
                "api": {"condition": "service_started"},
                "cache": {"condition": "service_started"},
            }},
            "cron": {"image": "app"},
        })))
        .unwrap();
        assert_eq!(
            shutdown_groups(&specs),
            [vec!["web"], vec!["api"], vec!["db", "cache", "cron"]]
        );
        assert!(shutdown_groups(&IndexMap::new()).is_empty());
    }

    #[test]
    fn a_service_others_wait_to_complete_is_a_job_unless_its_file_says_otherwise() {
        let specs = service_specs(&project(json!({
            "migrate": {"image": "app"},
            "seed": {"image": "app", "restart": "always"},
            "cache": {"image": "redis"},
            "web": {"image": "app", "depends_on": {
                "migrate": {"condition": "service_completed_successfully"},
                "seed": {"condition": "service_completed_successfully"},
                "cache": {"condition": "service_started"},
            }},
        })))
        .unwrap();
        assert_eq!(
            specs["migrate"].restart.condition,
            RestartCondition::OnFailure
        );
        assert_eq!(specs["seed"].restart.condition, RestartCondition::Any);
        assert_eq!(specs["cache"].restart.condition, RestartCondition::Any);
        assert_eq!(specs["web"].restart.condition, RestartCondition::Any);
    }

    #[test]
    fn full_spec_from_a_service() {
        let spec = one(json!({
            "image": "app", "scale": 2, "restart": "on-failure:5",
            "depends_on": {"db": {"condition": "service_healthy", "required": true},
                           "cache": {"condition": "service_started", "required": false,
                                     "restart": true}},
            "healthcheck": {"test": ["CMD", "true"]},
            "stop_grace_period": "1m30s",
        }))
        .unwrap();
        assert_eq!(spec.name, "web");
        assert_eq!(spec.replicas, 2);
        assert_eq!(spec.restart.condition, RestartCondition::OnFailure);
        assert_eq!(spec.restart.max_attempts, Some(5));
        assert_eq!(
            spec.depends_on,
            vec![
                Dependency {
                    service: "db".into(),
                    condition: Condition::ServiceHealthy,
                    required: true,
                    restart: false
                },
                Dependency {
                    service: "cache".into(),
                    condition: Condition::ServiceStarted,
                    required: false,
                    restart: true
                },
            ]
        );
        assert!(spec.has_healthcheck);
        assert_eq!(spec.stop_grace_ms, 90_000);
        assert_eq!(spec.spec_hash.len(), 64);
    }

    #[test]
    fn defaults() {
        let spec = one(json!({"image": "app"})).unwrap();
        assert_eq!(spec.replicas, 1);
        assert_eq!(spec.restart, RestartPolicy::default());
        assert!(spec.depends_on.is_empty());
        assert!(!spec.has_healthcheck);
        assert_eq!(spec.stop_grace_ms, 10_000);
    }

    #[test]
    fn replicas_come_from_deploy_then_scale_and_may_be_zero() {
        let cases = [
            (
                json!({"image": "a", "scale": 3, "deploy": {"replicas": 5}}),
                5,
            ),
            (json!({"image": "a", "scale": 3}), 3),
            (json!({"image": "a", "deploy": {"replicas": 0}}), 0),
            (json!({"image": "a", "deploy": {"mode": "global"}}), 1),
            (
                json!({"image": "a", "deploy": {"mode": "replicated", "replicas": 2}}),
                2,
            ),
        ];
        for (service, replicas) in cases {
            assert_eq!(
                one(service.clone()).unwrap().replicas,
                replicas,
                "{service}"
            );
        }
    }

    #[test]
    fn unsupported_modes_and_absurd_replicas_are_errors() {
        let err = one(json!({"image": "a", "deploy": {"mode": "replicated-job"}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `web`: `deploy.mode: replicated-job` is not supported yet"
        );
        let err = one(json!({"image": "a", "scale": 5_000_000_000u64})).unwrap_err();
        assert!(matches!(err, SpecError::TooManyReplicas { .. }), "{err}");
    }

    #[test]
    fn healthcheck_counts_only_with_a_test_and_not_disabled() {
        let cases = [
            (json!({"test": ["CMD-SHELL", "true"]}), true),
            (json!({"test": ["NONE"]}), false),
            (json!({"test": ["CMD", "true"], "disable": true}), false),
            (json!({"disable": true}), false),
            (json!({"interval": "5s"}), false),
        ];
        for (check, expected) in cases {
            let spec = one(json!({"image": "a", "healthcheck": check.clone()})).unwrap();
            assert_eq!(spec.has_healthcheck, expected, "{check}");
        }
    }

    #[test]
    fn hash_ignores_scale_and_key_order_but_not_content() {
        let hash = |service: serde_json::Value| one(service).unwrap().spec_hash;
        let base = hash(json!({"image": "a", "environment": {"A": "1", "B": "2"}}));
        assert_eq!(
            base,
            hash(json!({"image": "a", "environment": {"B": "2", "A": "1"}}))
        );
        assert_eq!(
            base,
            hash(json!({"image": "a", "environment": {"A": "1", "B": "2"}, "scale": 4}))
        );
        assert_eq!(
            base,
            hash(json!({"image": "a", "environment": {"A": "1", "B": "2"},
                        "deploy": {"replicas": 3}}))
        );
        assert_ne!(
            base,
            hash(json!({"image": "a", "environment": {"A": "1", "B": "3"}}))
        );
        assert_ne!(
            base,
            hash(json!({"image": "b", "environment": {"A": "1", "B": "2"}}))
        );
        assert_ne!(
            base,
            hash(json!({"image": "a", "environment": {"A": "1", "B": "2"},
                        "deploy": {"replicas": 3, "restart_policy": {"condition": "none"}}}))
        );
    }

    #[test]
    fn routes_do_not_change_the_hash() {
        let hash = |service: serde_json::Value| one(service).unwrap().spec_hash;
        let base = hash(json!({"image": "a"}));
        let routed = |path: &str| {
            hash(json!({"image": "a", "x-composure": {"routes": [{"path": path, "port": 80}]}}))
        };
        assert_eq!(routed("/a"), base);
        assert_eq!(routed("/b"), base);
        // Other settings under `x-composure` still count.
        let other = hash(json!({"image": "a", "x-composure": {"routes": [], "other": 1}}));
        assert_ne!(other, base);
    }

    #[test]
    fn update_settings_are_read_and_do_not_change_the_hash() {
        let base = one(json!({"image": "a"})).unwrap();
        assert_eq!(base.update, UpdateConfig::update_default());
        assert_eq!(base.rollback, UpdateConfig::rollback_default());
        let tuned = one(json!({"image": "a", "deploy": {
            "update_config": {"parallelism": 2, "order": "stop-first", "monitor": "2s"},
            "rollback_config": {"failure_action": "continue"},
        }}))
        .unwrap();
        assert_eq!(tuned.spec_hash, base.spec_hash);
        assert_eq!(tuned.update.parallelism, 2);
        assert_eq!(tuned.update.order, crate::rollout::Order::StopFirst);
        assert_eq!(tuned.update.monitor_ms, 2_000);
        assert_eq!(
            tuned.rollback.failure_action,
            crate::rollout::FailureAction::Continue
        );
        let err = one(json!({"image": "a", "deploy": {
            "rollback_config": {"failure_action": "retry"}}}))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("deploy.rollback_config.failure_action: retry"),
            "{err}"
        );
    }

    #[test]
    fn the_health_check_command_is_kept_for_messages() {
        let spec = one(json!({"image": "a", "healthcheck": {
            "test": ["CMD", "/demo-app", "probe", "tcp", "127.0.0.1:9"]}}))
        .unwrap();
        assert_eq!(
            spec.healthcheck.as_deref(),
            Some("/demo-app probe tcp 127.0.0.1:9")
        );
        let spec = one(json!({"image": "a", "healthcheck": {
            "test": ["CMD-SHELL", "curl -f localhost"]}}))
        .unwrap();
        assert_eq!(spec.healthcheck.as_deref(), Some("curl -f localhost"));
        assert_eq!(one(json!({"image": "a"})).unwrap().healthcheck, None);
    }

    #[test]
    fn specs_keep_file_order() {
        let specs = service_specs(&project(json!({
            "b": {"image": "x"}, "a": {"image": "x"}, "c": {"image": "x"},
        })))
        .unwrap();
        assert_eq!(specs.keys().collect::<Vec<_>>(), ["b", "a", "c"]);
        let err = service_specs(&project(json!({
            "ok": {"image": "x"}, "bad": {"image": "x", "restart": "often"},
        })))
        .unwrap_err();
        assert!(err.to_string().contains("service `bad`"), "{err}");
    }

    #[test]
    fn startup_order_puts_dependencies_first() {
        let specs = service_specs(&project(json!({
            "web": {"image": "x", "depends_on": ["api", "cache"]},
            "api": {"image": "x", "depends_on": ["db", "migrate"]},
            "migrate": {"image": "x", "depends_on": ["db"]},
            "cache": {"image": "x"},
            "db": {"image": "x"},
            "lonely": {"image": "x", "depends_on": {"ghost": {"required": false}}},
        })))
        .unwrap();
        assert_eq!(
            startup_order(&specs),
            ["db", "migrate", "api", "cache", "web", "lonely"]
        );
    }

    #[test]
    fn startup_order_survives_a_cycle() {
        let specs = service_specs(&project(json!({
            "a": {"image": "x", "depends_on": ["b"]},
            "b": {"image": "x", "depends_on": ["a"]},
        })))
        .unwrap();
        let order = startup_order(&specs);
        assert_eq!(order.len(), 2);
        assert!(order.contains(&"a".to_string()) && order.contains(&"b".to_string()));
    }
}
