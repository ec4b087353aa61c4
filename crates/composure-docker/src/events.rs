//! The engine's event stream, filtered to managed containers, as [`RuntimeEvent`]s.
//!
//! | engine action | [`EventKind`] |
//! |---|---|
//! | `create` | `Created` |
//! | `start` | `Started` |
//! | `die` (attribute `exitCode`) | `Died { exit_code }` |
//! | `oom` | `OutOfMemory` |
//! | `health_status: healthy` / `unhealthy` / `starting` | `HealthChanged(..)` |
//! | `stop` | `Stopped` |
//! | `destroy` | `Destroyed` |
//! | anything else (`kill`, `attach`, `exec_*`, `rename`, …) | dropped |
//!
//! A container event's attributes are its labels plus a few the engine adds (`image`,
//! `name`, `exitCode`, `signal`); those are left out of [`RuntimeEvent::labels`].

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptions;
use composure_core::{Health, labels};
use composure_runtime::{EventKind, RuntimeError, RuntimeEvent};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use indexmap::IndexMap;

use crate::error::from_bollard;

/// Attributes of container events that are not labels.
const ENGINE_ATTRIBUTES: &[&str] = &["image", "name", "exitCode", "signal", "execID"];

/// Events of managed containers from now on; the stream ends when the engine closes it.
pub(crate) fn stream(docker: &Docker) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("label".to_string(), vec![labels::MANAGED.to_string()]),
    ]);
    let options = EventsOptions {
        filters: Some(filters),
        ..EventsOptions::default()
    };
    docker
        .events(Some(options))
        .filter_map(|item| async move {
            match item {
                Ok(message) => runtime_event(message).map(Ok),
                Err(err) => Some(Err(from_bollard(err, "the event stream"))),
            }
        })
        .boxed()
}

/// Maps one engine event; `None` for events the runtime does not report.
pub(crate) fn runtime_event(message: EventMessage) -> Option<RuntimeEvent> {
    if message.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let actor = message.actor?;
    let attributes = actor.attributes.unwrap_or_default();
    // The filter asked for these already; checking again keeps the rule in one place.
    if !attributes.contains_key(labels::MANAGED) {
        return None;
    }
    let kind = match message.action.as_deref()? {
        "create" => EventKind::Created,
        "start" => EventKind::Started,
        "die" => EventKind::Died {
            exit_code: attributes
                .get("exitCode")
                .and_then(|c| c.parse().ok())
                .unwrap_or(-1),
        },
        "oom" => EventKind::OutOfMemory,
        "health_status: healthy" => EventKind::HealthChanged(Health::Healthy),
        "health_status: unhealthy" => EventKind::HealthChanged(Health::Unhealthy),
        "health_status: starting" => EventKind::HealthChanged(Health::Starting),
        "stop" => EventKind::Stopped,
        "destroy" => EventKind::Destroyed,
        _ => return None,
    };
    let mut labels: IndexMap<String, String> = attributes
        .into_iter()
        .filter(|(k, _)| !ENGINE_ATTRIBUTES.contains(&k.as_str()))
        .collect();
    labels.sort_keys();
    Some(RuntimeEvent {
        container_id: actor.id?,
        labels,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(action: &str, extra: &[(&str, &str)]) -> EventMessage {
        let mut attributes: HashMap<String, String> = HashMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::PROJECT.to_string(), "p".to_string()),
            ("image".to_string(), "composure-test:latest".to_string()),
            ("name".to_string(), "p-web-1".to_string()),
        ]);
        for (k, v) in extra {
            attributes.insert(k.to_string(), v.to_string());
        }
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(attributes),
            }),
            ..EventMessage::default()
        }
    }

    fn kind(action: &str, extra: &[(&str, &str)]) -> Option<EventKind> {
        runtime_event(event(action, extra)).map(|e| e.kind)
    }

    #[test]
    fn lifecycle_actions_map_to_kinds() {
        assert_eq!(kind("create", &[]), Some(EventKind::Created));
        assert_eq!(kind("start", &[]), Some(EventKind::Started));
        assert_eq!(
            kind("die", &[("exitCode", "3")]),
            Some(EventKind::Died { exit_code: 3 })
        );
        assert_eq!(kind("oom", &[]), Some(EventKind::OutOfMemory));
        assert_eq!(
            kind("health_status: healthy", &[]),
            Some(EventKind::HealthChanged(Health::Healthy))
        );
        assert_eq!(
            kind("health_status: unhealthy", &[]),
            Some(EventKind::HealthChanged(Health::Unhealthy))
        );
        assert_eq!(kind("stop", &[]), Some(EventKind::Stopped));
        assert_eq!(kind("destroy", &[]), Some(EventKind::Destroyed));
        assert_eq!(kind("kill", &[("signal", "15")]), None);
        assert_eq!(kind("exec_start: sh", &[]), None);
    }

    #[test]
    fn labels_exclude_engine_attributes() {
        let e = runtime_event(event("die", &[("exitCode", "0")])).unwrap();
        assert_eq!(e.container_id, "abc");
        assert_eq!(
            e.labels.keys().collect::<Vec<_>>(),
            [labels::MANAGED, labels::PROJECT]
        );
    }

    #[test]
    fn unmanaged_and_non_container_events_are_dropped() {
        let mut unmanaged = event("start", &[]);
        if let Some(actor) = unmanaged.actor.as_mut() {
            actor.attributes = Some(HashMap::new());
        }
        assert_eq!(runtime_event(unmanaged), None);
        let mut network = event("create", &[]);
        network.typ = Some(EventMessageTypeEnum::NETWORK);
        assert_eq!(runtime_event(network), None);
    }
}
