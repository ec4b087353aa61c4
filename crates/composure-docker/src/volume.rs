//! Project volumes: created on demand with Composure's and compose's labels, removed only
//! when Composure created them. Creating a volume that exists is a no-op in the engine.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::RemoveVolumeOptions;
use composure_compose::model::{self, Project};
use composure_core::labels;
use composure_runtime::RuntimeError;

use crate::error::{from_bollard, is_not_found};
use crate::project_name;

/// Label naming the compose key of a volume (`com.docker.compose.volume`).
pub const COMPOSE_VOLUME: &str = "com.docker.compose.volume";

pub(crate) async fn ensure(
    docker: &Docker,
    project: &Project,
    key: &str,
) -> Result<(), RuntimeError> {
    let project_name = project_name(project)?;
    let def = project.volumes.get(key).ok_or_else(|| {
        RuntimeError::InvalidSpec(format!("volume `{key}` is not declared in the project"))
    })?;
    let name = def
        .name
        .clone()
        .unwrap_or_else(|| format!("{project_name}_{key}"));
    let what = format!("volume `{name}`");
    match docker.inspect_volume(&name).await {
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(from_bollard(e, &what)),
    }
    if def.external == Some(true) {
        return Err(RuntimeError::InvalidSpec(format!(
            "volume `{name}` is declared external but does not exist; create it first \
             (`docker volume create {name}`)"
        )));
    }
    docker
        .create_volume(create_request(project_name, key, &name, def))
        .await
        .map_err(|e| from_bollard(e, &what))?;
    Ok(())
}

/// Removes a volume Composure created; one that is missing, or not Composure's, is left
/// alone. A volume still in use is a `Conflict`.
pub(crate) async fn remove(docker: &Docker, name: &str) -> Result<(), RuntimeError> {
    let what = format!("volume `{name}`");
    let volume = match docker.inspect_volume(name).await {
        Ok(v) => v,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(from_bollard(e, &what)),
    };
    if !volume.labels.contains_key(labels::MANAGED) {
        return Ok(());
    }
    match docker
        .remove_volume(name, None::<RemoveVolumeOptions>)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(from_bollard(e, &what)),
    }
}

/// The create request for a project volume. Pure.
pub(crate) fn create_request(
    project: &str,
    key: &str,
    name: &str,
    def: &model::Volume,
) -> VolumeCreateRequest {
    let mut labels_map: HashMap<String, String> = def.labels.clone().into_iter().collect();
    labels_map.insert(labels::MANAGED.to_string(), "true".to_string());
    labels_map.insert(labels::PROJECT.to_string(), project.to_string());
    labels_map.insert(labels::COMPOSE_PROJECT.to_string(), project.to_string());
    labels_map.insert(COMPOSE_VOLUME.to_string(), key.to_string());
    VolumeCreateRequest {
        name: Some(name.to_string()),
        driver: def.driver.clone(),
        driver_opts: crate::container::map(&def.driver_opts),
        labels: Some(labels_map),
        ..VolumeCreateRequest::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_carries_labels_and_driver() {
        let def = model::Volume {
            driver: Some("local".into()),
            labels: [("backup".to_string(), "daily".to_string())]
                .into_iter()
                .collect(),
            ..model::Volume::default()
        };
        let req = create_request("p", "data", "p_data", &def);
        assert_eq!(req.name.as_deref(), Some("p_data"));
        assert_eq!(req.driver.as_deref(), Some("local"));
        let l = req.labels.unwrap();
        assert_eq!(l[labels::MANAGED], "true");
        assert_eq!(l[labels::COMPOSE_PROJECT], "p");
        assert_eq!(l[COMPOSE_VOLUME], "data");
        assert_eq!(l["backup"], "daily");
    }
}
