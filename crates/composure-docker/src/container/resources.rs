//! Resources: memory, CPU, PIDs, block IO, ulimits, devices and device requests (GPUs).
//!
//! `deploy.resources` wins over the legacy top-level attributes (`mem_limit`, `cpus`, …),
//! as in `docker compose`.

use std::collections::HashMap;

use bollard::models::{
    DeviceMapping, DeviceRequest, HostConfig, ResourcesBlkioWeightDevice, ResourcesUlimits,
    ThrottleDevice,
};
use composure_compose::model::{self, DeviceCount, Resource, Service};
use composure_runtime::RuntimeError;

use super::{invalid, non_empty, unsupported};

/// A host config with the resource fields of `svc` set, the rest left default.
pub(super) fn host_config(name: &str, svc: &Service) -> Result<HostConfig, RuntimeError> {
    let resources = svc.deploy.as_ref().and_then(|d| d.resources.as_ref());
    let limits = resources.and_then(|r| r.limits.as_ref());
    let reservations = resources.and_then(|r| r.reservations.as_ref());
    check_resource_sections(name, limits, reservations)?;

    let mut host = HostConfig {
        memory: limits.and_then(|l| l.memory).or(svc.mem_limit).map(|b| b.0),
        nano_cpus: limits.and_then(|l| l.cpus).or(svc.cpus).map(|c| c.nanos()),
        pids_limit: limits.and_then(|l| l.pids).or(svc.pids_limit),
        memory_reservation: reservations
            .and_then(|r| r.memory)
            .or(svc.mem_reservation)
            .map(|b| b.0),
        // A reservation is a floor under contention: CPU shares are the engine's closest
        // notion (1024 shares per CPU, as Kubernetes maps CPU requests).
        cpu_shares: svc.cpu_shares.or_else(|| {
            reservations
                .and_then(|r| r.cpus)
                .map(|c| (c.0 * 1024.0).round() as i64)
        }),
        memory_swap: svc.memswap_limit.map(|b| b.0),
        memory_swappiness: svc.mem_swappiness,
        cpu_period: svc.cpu_period,
        cpu_quota: svc.cpu_quota,
        cpu_realtime_period: svc.cpu_rt_period.map(|m| m.0),
        cpu_realtime_runtime: svc.cpu_rt_runtime.map(|m| m.0),
        cpuset_cpus: svc.cpuset.clone(),
        cpu_count: svc.cpu_count,
        cpu_percent: svc.cpu_percent,
        oom_kill_disable: svc.oom_kill_disable,
        oom_score_adj: svc.oom_score_adj,
        ulimits: ulimits(&svc.ulimits),
        devices: devices(name, &svc.devices)?,
        device_cgroup_rules: non_empty(&svc.device_cgroup_rules),
        device_requests: device_requests(svc, reservations),
        ..HostConfig::default()
    };
    if let Some(blkio) = &svc.blkio_config {
        set_blkio(&mut host, blkio);
    }
    Ok(host)
}

fn check_resource_sections(
    name: &str,
    limits: Option<&Resource>,
    reservations: Option<&Resource>,
) -> Result<(), RuntimeError> {
    for (section, resource) in [("limits", limits), ("reservations", reservations)] {
        if resource.is_some_and(|r| !r.generic_resources.is_empty()) {
            return Err(unsupported(
                name,
                &format!("deploy.resources.{section}.generic_resources"),
            ));
        }
    }
    if limits.is_some_and(|l| !l.devices.is_empty()) {
        return Err(invalid(
            name,
            "`deploy.resources.limits.devices` is not a thing: devices are reserved \
             (`deploy.resources.reservations.devices`)",
        ));
    }
    if reservations.is_some_and(|r| r.pids.is_some()) {
        return Err(invalid(
            name,
            "`deploy.resources.reservations.pids` is not a thing: PIDs are only limited",
        ));
    }
    Ok(())
}

fn ulimits(ulimits: &model::Ulimits) -> Option<Vec<ResourcesUlimits>> {
    let out: Vec<ResourcesUlimits> = ulimits
        .iter()
        .map(|(name, u)| ResourcesUlimits {
            name: Some(name.clone()),
            soft: Some(u.soft()),
            hard: Some(u.hard()),
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

fn devices(
    name: &str,
    devices: &[model::DeviceMapping],
) -> Result<Option<Vec<DeviceMapping>>, RuntimeError> {
    let mut out = Vec::new();
    for d in devices {
        // A CDI name (`vendor.com/class=name`) is not a path; the engine takes those as
        // device requests of the `cdi` driver from API 1.45 on.
        if !d.source.starts_with('/') && d.source.contains('=') {
            return Err(unsupported(name, &format!("devices: {} (CDI)", d.source)));
        }
        out.push(DeviceMapping {
            path_on_host: Some(d.source.clone()),
            path_in_container: Some(d.target.clone().unwrap_or_else(|| d.source.clone())),
            cgroup_permissions: Some(d.permissions.clone().unwrap_or_else(|| "rwm".into())),
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `gpus` entries ask for the `gpu` capability whatever else they list; reservation
/// devices are taken as written.
fn device_requests(svc: &Service, reservations: Option<&Resource>) -> Option<Vec<DeviceRequest>> {
    let gpus = svc.gpus.iter().map(|r| device_request(r, true));
    let reserved = reservations
        .into_iter()
        .flat_map(|r| r.devices.iter())
        .map(|r| device_request(r, false));
    let out: Vec<DeviceRequest> = gpus.chain(reserved).collect();
    (!out.is_empty()).then_some(out)
}

fn device_request(r: &model::DeviceRequest, gpu: bool) -> DeviceRequest {
    let mut capabilities = r.capabilities.clone();
    if gpu && !capabilities.iter().any(|c| c == "gpu") {
        capabilities.push("gpu".to_string());
    }
    DeviceRequest {
        driver: r.driver.clone(),
        count: r.count.map(|c| match c {
            DeviceCount::All => -1,
            DeviceCount::Count(n) => i64::try_from(n).unwrap_or(i64::MAX),
        }),
        device_ids: non_empty(&r.device_ids),
        capabilities: (!capabilities.is_empty()).then(|| vec![capabilities]),
        options: (!r.options.is_empty()).then(|| {
            r.options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>()
        }),
    }
}

/// Puts the replica's assigned GPUs in the place of the GPU requests: one request of
/// those devices by id (with every capability, driver and option the requests named), so
/// that no two replicas get the same GPU. Requests for other devices stay as written.
pub(super) fn assign_gpus(host: &mut HostConfig, gpus: &[String]) {
    if gpus.is_empty() {
        return;
    }
    let requests = host.device_requests.take().unwrap_or_default();
    let is_gpu = |r: &DeviceRequest| {
        r.driver.as_deref() == Some("nvidia")
            || r.capabilities
                .iter()
                .flatten()
                .flatten()
                .any(|c| c == "gpu")
    };
    let (gpu, mut rest): (Vec<DeviceRequest>, Vec<DeviceRequest>) =
        requests.into_iter().partition(is_gpu);
    let mut capabilities: Vec<String> = vec!["gpu".to_string()];
    let mut options: HashMap<String, String> = HashMap::new();
    for request in &gpu {
        for capability in request.capabilities.iter().flatten().flatten() {
            if !capabilities.contains(capability) {
                capabilities.push(capability.clone());
            }
        }
        options.extend(request.options.clone().unwrap_or_default());
    }
    let driver = gpu
        .iter()
        .find_map(|r| r.driver.clone())
        .unwrap_or_else(|| "nvidia".to_string());
    rest.insert(
        0,
        DeviceRequest {
            driver: Some(driver),
            count: None,
            device_ids: Some(gpus.to_vec()),
            capabilities: Some(vec![capabilities]),
            options: (!options.is_empty()).then_some(options),
        },
    );
    host.device_requests = Some(rest);
}

fn set_blkio(host: &mut HostConfig, blkio: &model::BlkioConfig) {
    let throttle = |devices: &[model::ThrottleDevice]| {
        let out: Vec<ThrottleDevice> = devices
            .iter()
            .map(|d| ThrottleDevice {
                path: Some(d.path.clone()),
                rate: Some(d.rate.0),
            })
            .collect();
        (!out.is_empty()).then_some(out)
    };
    host.blkio_weight = blkio.weight;
    host.blkio_weight_device = (!blkio.weight_device.is_empty()).then(|| {
        blkio
            .weight_device
            .iter()
            .map(|w| ResourcesBlkioWeightDevice {
                path: Some(w.path.clone()),
                weight: Some(usize::from(w.weight)),
            })
            .collect()
    });
    host.blkio_device_read_bps = throttle(&blkio.device_read_bps);
    host.blkio_device_write_bps = throttle(&blkio.device_write_bps);
    host.blkio_device_read_iops = throttle(&blkio.device_read_iops);
    host.blkio_device_write_iops = throttle(&blkio.device_write_iops);
}
