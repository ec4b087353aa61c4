//! What `PUT /v1/projects/{name}` is sent, decoded and checked before anything is stored.
//! Pure (no store, no runtime, no file reads), so a fuzz target can drive it
//! (`fuzz/fuzz_targets/api_project.rs`).
//!
//! A project sent to the API never went through the loader, so everything the loader checks
//! about names is checked again here: every name that reaches a path (the VIP's directory,
//! a container's secret files), a container name or a label passes
//! [`composure_compose::names::validate_name`].

use composure_api::PutProject;
use composure_compose::model::{Project, project_from_json};
use composure_compose::names::{check_project_names, validate_project_name};
use composure_core::labels;
use composure_core::spec::{ServiceSpec, service_specs};
use composure_store::ProjectMeta;
use indexmap::IndexMap;

/// A project as the API stores it.
#[derive(Debug)]
pub struct DecodedProject {
    pub project: Project,
    /// The engine's view of each service.
    pub specs: IndexMap<String, ServiceSpec>,
    /// The canonical JSON that is stored.
    pub spec: serde_json::Value,
    pub meta: ProjectMeta,
}

/// Decodes the body of a `PUT /v1/projects/{name}`. The error is the message of a 400.
pub fn put_project(name: &str, body: &[u8]) -> Result<DecodedProject, String> {
    put_project_over(name, body, None)
}

/// [`put_project`] for `up SERVICE...` (`?merge=true`): the body's services (the named ones
/// and their dependencies) replace theirs in `stored`, the project's desired state now, and
/// its other services stay as stored, as do the networks, volumes, secrets and configs the
/// body does not name.
pub fn put_project_over(
    name: &str,
    body: &[u8],
    stored: Option<&serde_json::Value>,
) -> Result<DecodedProject, String> {
    let request: PutProject =
        serde_json::from_slice(body).map_err(|err| format!("invalid request body: {err}"))?;
    project_request(name, request, stored)
}

/// [`put_project_over`] of a body already read.
pub fn project_request(
    name: &str,
    mut request: PutProject,
    stored: Option<&serde_json::Value>,
) -> Result<DecodedProject, String> {
    validate_project_name(name)?;
    if let Some(stored) = stored {
        keep_the_rest(&mut request.project, stored);
    }
    let mut project =
        project_from_json(request.project).map_err(|err| format!("invalid project: {err}"))?;
    if let Some(named) = project.name.as_deref()
        && named != name
    {
        return Err(format!(
            "the project is named `{}` but was sent as `{name}`",
            named.chars().take(64).collect::<String>()
        ));
    }
    project.name = Some(name.to_string());
    let problems = check_project_names(&project);
    if !problems.is_empty() {
        let mut message = String::from("invalid project:");
        for (path, rule) in &problems {
            message.push_str(&format!("\n  {path}: {rule}"));
        }
        return Err(message);
    }
    let specs = service_specs(&project).map_err(|err| format!("invalid project: {err}"))?;
    let spec = serde_json::to_value(&project)
        .map_err(|err| format!("cannot serialize the project: {err}"))?;
    Ok(DecodedProject {
        project,
        specs,
        spec,
        meta: ProjectMeta {
            working_dir: request.working_dir,
            files: request.files,
        },
    })
}

impl DecodedProject {
    /// Records the image each service runs (the image phase's pins) on the service, and
    /// derives the specs again: a new pin is a change of spec.
    pub fn pin_images(&mut self, pins: &IndexMap<String, String>) -> Result<(), String> {
        for (service, reference) in pins {
            if let Some(definition) = self.project.services.get_mut(service) {
                definition
                    .labels
                    .insert(labels::IMAGE.to_string(), reference.clone());
            }
        }
        self.specs =
            service_specs(&self.project).map_err(|err| format!("invalid project: {err}"))?;
        self.spec = serde_json::to_value(&self.project)
            .map_err(|err| format!("cannot serialize the project: {err}"))?;
        Ok(())
    }
}

/// Fills in what `project` leaves out of `stored`'s services and top-level resources.
fn keep_the_rest(project: &mut serde_json::Value, stored: &serde_json::Value) {
    use serde_json::Value;
    for key in ["services", "networks", "volumes", "secrets", "configs"] {
        let Some(Value::Object(kept)) = stored.get(key) else {
            continue;
        };
        let Value::Object(target) = project else {
            return;
        };
        let entry = target
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Value::Object(entries) = entry {
            for (name, value) in kept {
                entries.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(project: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "project": project,
            "working_dir": "/srv/app",
            "files": ["/srv/app/compose.yaml"],
        }))
        .expect("serializes")
    }

    #[test]
    fn a_good_project_decodes() {
        let decoded = put_project(
            "app",
            &body(serde_json::json!({ "services": { "web": { "image": "nginx" } } })),
        )
        .expect("decodes");
        assert_eq!(decoded.project.name.as_deref(), Some("app"));
        assert!(decoded.specs.contains_key("web"));
        assert_eq!(decoded.meta.working_dir, "/srv/app");
    }

    #[test]
    fn a_service_name_that_climbs_out_is_refused() {
        for service in ["../../../victimdir", "..", ".", "a/b", ".hidden"] {
            let err = put_project(
                "app",
                &body(serde_json::json!({ "services": { service: { "image": "nginx" } } })),
            )
            .expect_err(service);
            assert!(err.contains("invalid service name"), "{service}: {err}");
        }
    }

    #[test]
    fn other_names_that_reach_paths_are_refused() {
        let err = put_project(
            "app",
            &body(serde_json::json!({
                "services": { "web": { "image": "nginx", "container_name": "../../etc" } },
                "networks": { "..": {} },
            })),
        )
        .expect_err("bad names");
        assert!(err.contains("invalid container name"), "{err}");
        assert!(err.contains("invalid network name"), "{err}");
    }

    #[test]
    fn project_names_are_checked_and_bounded() {
        let good = body(serde_json::json!({ "services": {} }));
        for bad in ["..", "Up", "a.b", "-x", ""] {
            let err = put_project(bad, &good).expect_err(bad);
            assert!(err.contains("invalid project name"), "{bad}: {err}");
        }
        let long = "a".repeat(10_000);
        let err = put_project(&long, &good).expect_err("too long");
        assert!(err.contains("at most 63 characters"), "{err}");
        assert!(err.len() < 400, "{err}");
    }
}
