//! A service's revisions, read from the project's history: each version it ran (a change of
//! spec hash), and what changed from the one before, as key paths a person can read.

use composure_compose::model::{Service, project_from_json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Rollout;
use crate::spec::spec_hash;

/// Values longer than this are not printed in a change, only named.
const MAX_VALUE_CHARS: usize = 60;

/// Keys whose values may be secrets: their changes are named, never printed.
const QUIET_KEYS: &[&str] = &["environment", "labels", "annotations"];

/// One version of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceRevision {
    /// The first project revision that had this version.
    pub revision: u64,
    pub created_at: u64,
    pub spec_hash: String,
    /// The service's canonical JSON at that revision.
    pub service: Value,
    /// What changed from the version before (`image: a → b`, `environment.X changed`);
    /// `["created"]` for the first.
    pub changes: Vec<String>,
}

/// The versions of service `name`, oldest first, from the project's revisions (`revision`,
/// `created_at`, canonical project JSON) in any order. A revision that does not change the
/// service's spec hash (a scale, a change to another service) is not a new version; one
/// without the service, or that does not read, is skipped.
pub fn service_history<'a>(
    name: &str,
    revisions: impl IntoIterator<Item = (u64, u64, &'a Value)>,
) -> Vec<ServiceRevision> {
    let mut revisions: Vec<(u64, u64, &Value)> = revisions.into_iter().collect();
    revisions.sort_by_key(|(revision, _, _)| *revision);
    let mut history: Vec<ServiceRevision> = Vec::new();
    for (revision, created_at, project) in revisions {
        let Some(json) = project.get("services").and_then(|s| s.get(name)) else {
            continue;
        };
        let Some(service) = read_service(project, name) else {
            continue;
        };
        let hash = spec_hash(&service);
        if history.last().is_some_and(|last| last.spec_hash == hash) {
            continue;
        }
        let changes = match history.last() {
            Some(last) => service_changes(&last.service, json),
            None => vec!["created".to_string()],
        };
        history.push(ServiceRevision {
            revision,
            created_at,
            spec_hash: hash,
            service: json.clone(),
            changes,
        });
    }
    history
}

/// The latest of `rollouts` (oldest first) that moved the service to version `index` of
/// `versions`: to its spec hash, from a project revision that had that version.
pub fn rollout_to<'a>(
    versions: &[ServiceRevision],
    index: usize,
    rollouts: &'a [Rollout],
) -> Option<&'a Rollout> {
    let version = versions.get(index)?;
    let until = versions
        .get(index + 1)
        .map_or(u64::MAX, |next| next.revision);
    rollouts.iter().rev().find(|rollout| {
        rollout.target_hash == version.spec_hash
            && (version.revision..until).contains(&rollout.revision)
    })
}

/// The typed service `name` of a stored project, as the engine reads it.
fn read_service(project: &Value, name: &str) -> Option<Service> {
    let mut project = project_from_json(project.clone()).ok()?;
    project.services.shift_remove(name)
}

/// What differs between two versions of a service's JSON, one line per changed leaf:
/// `image: a → b`, `command: ["web"] → ["web","--debug"]`, `healthcheck.interval added`,
/// `environment.TOKEN changed` (environment and labels are named, never printed). Replicas
/// are left out: scaling is not a new version.
pub fn service_changes(old: &Value, new: &Value) -> Vec<String> {
    let mut changes = Vec::new();
    let none = Value::Null;
    let (old, new) = (with_replicas_of(old, &none), with_replicas_of(new, &none));
    diff(&mut changes, "", &old, &new, false);
    changes
}

fn diff(out: &mut Vec<String>, path: &str, old: &Value, new: &Value, quiet: bool) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, old_value) in old {
                let child = join(path, key);
                let quiet = quiet || (path.is_empty() && QUIET_KEYS.contains(&key.as_str()));
                match new.get(key) {
                    Some(new_value) => diff(out, &child, old_value, new_value, quiet),
                    None => out.push(format!("{child} removed")),
                }
            }
            for key in new.keys().filter(|key| !old.contains_key(*key)) {
                let child = join(path, key);
                let quiet = quiet || (path.is_empty() && QUIET_KEYS.contains(&key.as_str()));
                out.push(match (quiet, short(&new[key])) {
                    (false, Some(value)) => format!("{child} added: {value}"),
                    _ => format!("{child} added"),
                });
            }
        }
        _ => out.push(match (quiet, short(old), short(new)) {
            (false, Some(old), Some(new)) => format!("{path}: {old} → {new}"),
            _ => format!("{path} changed"),
        }),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A value as printed in a change: strings bare, the rest as compact JSON; `None` when too
/// long to be worth printing.
fn short(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    (text.chars().count() <= MAX_VALUE_CHARS).then_some(text)
}

/// `previous` (a service's canonical JSON) with the replicas of `current` (`deploy.replicas`
/// and `scale`): going back to an earlier version keeps today's scale.
pub fn with_replicas_of(previous: &Value, current: &Value) -> Value {
    let mut restored = previous.clone();
    let Value::Object(service) = &mut restored else {
        return restored;
    };
    service.remove("scale");
    if let Some(Value::Object(deploy)) = service.get_mut("deploy") {
        deploy.remove("replicas");
    }
    if let Some(scale) = current.get("scale") {
        service.insert("scale".to_string(), scale.clone());
    }
    if let Some(replicas) = current.pointer("/deploy/replicas") {
        let deploy = service
            .entry("deploy")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Value::Object(deploy) = deploy {
            deploy.insert("replicas".to_string(), replicas.clone());
        }
    }
    if service
        .get("deploy")
        .is_some_and(|d| d.as_object().is_some_and(serde_json::Map::is_empty))
    {
        service.remove("deploy");
    }
    restored
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_name_paths_and_hide_environment_values() {
        let old = json!({"image": "a", "environment": {"X": "secret", "Y": "1"},
                         "command": ["web"], "deploy": {"replicas": 2}});
        let new = json!({"image": "b", "environment": {"X": "other", "Z": "2"},
                         "command": ["web", "--debug"], "deploy": {"replicas": 3},
                         "healthcheck": {"interval": "1s"}});
        assert_eq!(
            service_changes(&old, &new),
            [
                "image: a → b",
                "environment.X changed",
                "environment.Y removed",
                "environment.Z added",
                "command: [\"web\"] → [\"web\",\"--debug\"]",
                "healthcheck added: {\"interval\":\"1s\"}",
            ]
        );
    }

    #[test]
    fn a_version_is_matched_with_the_latest_rollout_to_it() {
        let version = |revision: u64, hash: &str| ServiceRevision {
            revision,
            created_at: 0,
            spec_hash: hash.into(),
            service: json!({}),
            changes: Vec::new(),
        };
        let versions = [version(1, "a"), version(5, "b"), version(9, "a")];
        let rollout = |revision: u64, hash: &str, started_at: u64| {
            let spec = crate::spec::ServiceSpec {
                name: "web".into(),
                replicas: 1,
                restart: crate::restart::RestartPolicy::default(),
                depends_on: Vec::new(),
                spec_hash: hash.into(),
                has_healthcheck: false,
                stop_grace_ms: 0,
                healthcheck: None,
                update: super::super::UpdateConfig::update_default(),
                rollback: super::super::UpdateConfig::rollback_default(),
                placement: Default::default(),
            };
            let mut rollout = Rollout::begin(&spec, None, started_at);
            rollout.revision = revision;
            rollout
        };
        let rollouts = [
            rollout(5, "b", 10),
            rollout(6, "b", 20),
            rollout(9, "a", 30),
        ];
        assert_eq!(rollout_to(&versions, 0, &rollouts), None);
        assert_eq!(rollout_to(&versions, 1, &rollouts), Some(&rollouts[1]));
        assert_eq!(rollout_to(&versions, 2, &rollouts), Some(&rollouts[2]));
        assert_eq!(rollout_to(&versions, 3, &rollouts), None);
    }

    #[test]
    fn history_keeps_versions_not_scales() {
        let project = |image: &str, replicas: u64| {
            json!({"services": {"web": {"image": image, "deploy": {"replicas": replicas}},
                                "db": {"image": image}}})
        };
        let revisions = [
            (1, 10, project("a", 1)),
            (2, 20, project("a", 3)),
            (4, 40, project("b", 3)),
            (5, 50, project("a", 3)),
        ];
        let history = service_history(
            "web",
            revisions
                .iter()
                .rev()
                .map(|(rev, at, json)| (*rev, *at, json)),
        );
        let seen: Vec<(u64, Vec<String>)> = history
            .iter()
            .map(|r| (r.revision, r.changes.clone()))
            .collect();
        assert_eq!(
            seen,
            [
                (1, vec!["created".to_string()]),
                (4, vec!["image: a → b".to_string()]),
                (5, vec!["image: b → a".to_string()]),
            ]
        );
        assert_eq!(history[0].spec_hash, history[2].spec_hash);
    }

    #[test]
    fn going_back_keeps_the_current_replicas() {
        let previous = json!({"image": "a", "deploy": {"replicas": 1, "labels": {"x": "y"}}});
        let current = json!({"image": "b", "deploy": {"replicas": 4}});
        assert_eq!(
            with_replicas_of(&previous, &current),
            json!({"image": "a", "deploy": {"labels": {"x": "y"}, "replicas": 4}})
        );
        let previous = json!({"image": "a", "scale": 2});
        let current = json!({"image": "b"});
        assert_eq!(with_replicas_of(&previous, &current), json!({"image": "a"}));
    }
}
