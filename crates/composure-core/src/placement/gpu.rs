//! GPUs: what a service asks for, what a node has, and which devices a new replica gets.
//! Pure: the node's devices and who holds each come in; the devices for one replica, or
//! why there are none, come out.
//!
//! A replica asks through compose's own syntax: `gpus:` (`all` or device requests) or
//! `deploy.resources.reservations.devices` entries with the `gpu` capability, each with a
//! `count` (`all` takes every GPU of the node) or `device_ids`. Each replica gets its own
//! devices, unlike `docker compose`, which hands every replica the same ones. Two settings
//! under `x-composure.gpu` share a device instead:
//! - `share: N`: up to N replicas of the service on one GPU (time-slicing);
//! - `memory: 20GiB`: a replica takes that much of a GPU's memory, and a GPU takes
//!   replicas (of any service asking by memory) while their sum fits.
//!
//! The choice among the devices that can take the replica: exclusive, the lowest index;
//! shared, the device with the fewest holders (spreading the load), then the lowest index;
//! by memory, the one with the most memory left, then the lowest index.

use composure_compose::model::{Bytes, DeviceCount, DeviceRequest, Service};
use composure_compose::{Diagnostic, Span, YamlPath};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::SpecError;

/// One assignable device of a node: a GPU, or a MIG instance of one (a GPU in MIG mode is
/// assignable only through its instances).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuDevice {
    /// How people and `device_ids` name it: the index (`0`), or `<gpu>:<instance>` for a
    /// MIG instance (`0:1`), as `nvidia-smi` numbers them.
    pub id: String,
    /// `GPU-…` or `MIG-…`; what the engine is given, since indices can change across reboots.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    #[serde(default)]
    pub name: String,
    /// Bytes.
    #[serde(default)]
    pub memory: u64,
}

impl GpuDevice {
    /// The name the engine's device request carries.
    pub fn engine_id(&self) -> &str {
        if self.uuid.is_empty() {
            &self.id
        } else {
            &self.uuid
        }
    }
}

/// A node's GPUs as placement sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGpus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<GpuDevice>,
    /// Why the node could not read its GPUs ("no NVIDIA driver: libnvidia-ml.so.1 not
    /// found"): the reason a GPU replica cannot go there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// How many devices a replica asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuCount {
    Count(u32),
    /// `count: all`: every device of the node.
    All,
    /// `device_ids`: exactly these (by id or UUID).
    Ids(Vec<String>),
}

/// What one replica of a service asks of a node's GPUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuRequest {
    pub count: GpuCount,
    /// `x-composure.gpu.share`: up to this many replicas of the service on one device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<u32>,
    /// `x-composure.gpu.memory`: bytes of a device's memory each replica takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

/// The devices a task was given, recorded on the task so that placement counts them
/// without reading its service's spec, and so that a restarted daemon sees the same
/// assignment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuClaim {
    /// The devices' ids on the node.
    pub ids: Vec<String>,
    /// The same devices as the engine is given them (UUIDs where known).
    #[serde(default)]
    pub engine_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

impl GpuClaim {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Who holds a device, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// For messages: `web-1`, or `shop/web-1` for another project's task.
    pub name: String,
    /// The service key placement counts tasks under.
    pub service: String,
    pub share: Option<u32>,
    pub memory: Option<u64>,
}

impl GpuRequest {
    /// Whether a device with these holders can take one more replica of `service`.
    fn admits(&self, device: &GpuDevice, holders: &[Holder], service: &str) -> bool {
        match (self.share, self.memory) {
            (_, Some(memory)) => {
                let used: u64 = holders.iter().filter_map(|h| h.memory).sum();
                holders.iter().all(|h| h.memory.is_some())
                    && used.saturating_add(memory) <= device.memory
            }
            (Some(share), None) => {
                holders
                    .iter()
                    .all(|h| h.share.is_some() && h.service == service)
                    && holders.len() < share as usize
            }
            (None, None) => holders.is_empty(),
        }
    }

    fn wanted(&self, devices: usize) -> usize {
        match &self.count {
            GpuCount::Count(n) => *n as usize,
            GpuCount::All => devices.max(1),
            GpuCount::Ids(ids) => ids.len(),
        }
    }

    /// "2 GPUs", "1 GPU with 20 GiB free", "GPUs 0,3".
    fn describe(&self, devices: usize) -> String {
        let what = match &self.count {
            GpuCount::Ids(ids) => format!("GPU{} {}", plural(ids.len()), ids.join(",")),
            GpuCount::All => format!("all {} GPUs", devices),
            GpuCount::Count(n) => format!("{n} GPU{}", plural(*n as usize)),
        };
        match (self.share, self.memory) {
            (_, Some(memory)) => format!("{what} with {} of memory free", super::bytes(memory)),
            (Some(share), None) => format!("{what} shared by at most {share} replicas"),
            (None, None) => what,
        }
    }

    /// The claim for the devices at `chosen` (indices into `devices`).
    fn claim(&self, devices: &[GpuDevice], chosen: &[usize]) -> GpuClaim {
        GpuClaim {
            ids: chosen.iter().map(|&d| devices[d].id.clone()).collect(),
            engine_ids: chosen
                .iter()
                .map(|&d| devices[d].engine_id().to_string())
                .collect(),
            share: self.share,
            memory: self.memory,
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The devices of a node (with their holders, index for index) one new replica of
/// `service` gets, or why it gets none: "needs 2 GPUs; 1 of 8 free: web-1 holds 0,1; …".
pub fn assign(
    gpus: &NodeGpus,
    holders: &[Vec<Holder>],
    request: &GpuRequest,
    service: &str,
) -> Result<GpuClaim, String> {
    let devices = &gpus.devices;
    let needs = format!("needs {}", request.describe(devices.len()));
    if devices.is_empty() {
        let why = gpus.problem.as_deref().unwrap_or("it has no GPUs");
        return Err(format!("{needs}; {why}"));
    }
    let held = |d: usize| holders.get(d).map_or(&[][..], Vec::as_slice);
    let admits = |d: usize| request.admits(&devices[d], held(d), service);
    if let GpuCount::Ids(ids) = &request.count {
        let mut chosen = Vec::new();
        for id in ids {
            let Some(d) = devices.iter().position(|g| &g.id == id || &g.uuid == id) else {
                return Err(format!("{needs}; it has no GPU {id}"));
            };
            if !admits(d) {
                return Err(format!("{needs}; {}", holders_text(devices, holders, &[d])));
            }
            chosen.push(d);
        }
        return Ok(request.claim(devices, &chosen));
    }
    let mut fit: Vec<usize> = (0..devices.len()).filter(|&d| admits(d)).collect();
    let wanted = request.wanted(devices.len());
    if fit.len() < wanted {
        let busy: Vec<usize> = (0..devices.len()).filter(|&d| !admits(d)).collect();
        return Err(format!(
            "{needs}; {} of {} free: {}",
            fit.len(),
            devices.len(),
            holders_text(devices, holders, &busy)
        ));
    }
    match (request.share, request.memory) {
        (_, Some(_)) => {
            let left = |d: usize| {
                let used: u64 = held(d).iter().filter_map(|h| h.memory).sum();
                devices[d].memory.saturating_sub(used)
            };
            fit.sort_by_key(|&d| (std::cmp::Reverse(left(d)), d));
        }
        (Some(_), None) => fit.sort_by_key(|&d| (held(d).len(), d)),
        (None, None) => {}
    }
    fit.truncate(wanted);
    fit.sort_unstable();
    Ok(request.claim(devices, &fit))
}

/// How many holders a reason names before it counts the rest.
const HOLDERS_SHOWN: usize = 4;

/// "web-1 holds 0,1; web-2 holds 2" for the devices at `busy`, each holder once, in the
/// order of its first device.
fn holders_text(devices: &[GpuDevice], holders: &[Vec<Holder>], busy: &[usize]) -> String {
    let mut by_holder: Vec<(&str, Vec<&str>)> = Vec::new();
    for &d in busy {
        for holder in holders.get(d).into_iter().flatten() {
            match by_holder.iter_mut().find(|(name, _)| *name == holder.name) {
                Some((_, ids)) => ids.push(&devices[d].id),
                None => by_holder.push((&holder.name, vec![&devices[d].id])),
            }
        }
    }
    if by_holder.is_empty() {
        return "none is held, but none has room".to_string();
    }
    let mut parts: Vec<String> = by_holder
        .iter()
        .take(HOLDERS_SHOWN)
        .map(|(name, ids)| format!("{name} holds {}", ids.join(",")))
        .collect();
    if by_holder.len() > HOLDERS_SHOWN {
        parts.push(format!("and {} more", by_holder.len() - HOLDERS_SHOWN));
    }
    parts.join("; ")
}

/// The keys `x-composure.gpu` takes.
const GPU_KEYS: &[&str] = &["share", "memory"];

/// One problem with a service's GPU settings: where, what, and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuProblem {
    pub path: YamlPath,
    pub message: String,
    pub hint: &'static str,
}

impl GpuProblem {
    fn new(path: YamlPath, message: String, hint: &'static str) -> GpuProblem {
        GpuProblem {
            path,
            message,
            hint,
        }
    }

    pub fn diagnostic(&self) -> Diagnostic {
        Diagnostic::error(Span::none(), self.path.clone(), self.message.clone())
            .with_hint(self.hint)
    }

    fn spec_error(self, service: &str) -> SpecError {
        SpecError::InvalidGpu {
            service: service.to_string(),
            path: self.path.to_string(),
            reason: self.message,
            hint: self.hint.to_string(),
        }
    }
}

/// Every GPU setting problem in a project, for `composure config`.
pub fn check_project(project: &composure_compose::model::Project) -> Vec<Diagnostic> {
    project
        .services
        .iter()
        .filter_map(|(name, service)| gpu_settings(name, service).err())
        .map(|problem| problem.diagnostic())
        .collect()
}

/// What one replica of the service asks of the GPUs, or `None` for a service that asks
/// for none.
pub fn gpu_request(name: &str, service: &Service) -> Result<Option<GpuRequest>, SpecError> {
    gpu_settings(name, service).map_err(|problem| problem.spec_error(name))
}

fn gpu_settings(name: &str, service: &Service) -> Result<Option<GpuRequest>, GpuProblem> {
    let at = YamlPath::root().key("services").key(name);
    let shared = sharing(name, service, &at.key("x-composure").key("gpu"))?;
    let reserved = service
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.reservations.as_ref())
        .map(|r| r.devices.as_slice())
        .unwrap_or_default();
    let requests: Vec<&DeviceRequest> = service
        .gpus
        .iter()
        .chain(reserved.iter().filter(|r| is_gpu(r)))
        .collect();
    let mut count = None;
    for request in requests {
        let this = match (&request.count, request.device_ids.is_empty()) {
            (_, false) => GpuCount::Ids(request.device_ids.clone()),
            (Some(DeviceCount::Count(n)), true) => {
                GpuCount::Count(u32::try_from(*n).unwrap_or(u32::MAX))
            }
            (Some(DeviceCount::All) | None, true) => GpuCount::All,
        };
        count = Some(match (count, this) {
            (None, this) => this,
            (Some(GpuCount::All), _) | (_, GpuCount::All) => GpuCount::All,
            (Some(GpuCount::Count(a)), GpuCount::Count(b)) => GpuCount::Count(a.saturating_add(b)),
            (Some(GpuCount::Ids(mut a)), GpuCount::Ids(b)) => {
                a.extend(b);
                GpuCount::Ids(a)
            }
            (Some(_), _) => {
                return Err(GpuProblem::new(
                    at.key("deploy")
                        .key("resources")
                        .key("reservations")
                        .key("devices"),
                    format!(
                        "service `{name}`: GPUs are asked for both by `count` and by `device_ids`"
                    ),
                    "ask either for a number of GPUs (each replica gets its own) or for the devices by id",
                ));
            }
        });
    }
    let Some(count) = count else {
        return match shared {
            Some((path, _)) => Err(GpuProblem::new(
                path,
                format!(
                    "service `{name}`: `x-composure.gpu` is set but the service reserves no GPU"
                ),
                "reserve GPUs with `gpus:` or `deploy.resources.reservations.devices` (`capabilities: [gpu]`)",
            )),
            None => Ok(None),
        };
    };
    if count == GpuCount::Count(0) {
        return Ok(None);
    }
    let (share, memory) = shared.map_or((None, None), |(_, s)| s);
    if matches!(count, GpuCount::All) && (share.is_some() || memory.is_some()) {
        return Err(GpuProblem::new(
            at.key("x-composure").key("gpu"),
            format!(
                "service `{name}`: a replica that takes every GPU (`count: all`) cannot share them"
            ),
            "ask for a number of GPUs (`count: 1`) to share them",
        ));
    }
    Ok(Some(GpuRequest {
        count,
        share,
        memory,
    }))
}

/// A device request for GPUs: the `gpu` capability, or the `nvidia` driver.
fn is_gpu(request: &DeviceRequest) -> bool {
    request.capabilities.iter().any(|c| c == "gpu") || request.driver.as_deref() == Some("nvidia")
}

type Sharing = (Option<u32>, Option<u64>);

/// `x-composure.gpu`, with its path.
fn sharing(
    name: &str,
    service: &Service,
    at: &YamlPath,
) -> Result<Option<(YamlPath, Sharing)>, GpuProblem> {
    let Some(gpu) = service
        .extensions
        .get("x-composure")
        .and_then(|x| x.get("gpu"))
        .filter(|g| !g.is_null())
    else {
        return Ok(None);
    };
    const HINT: &str = "write `gpu: {share: 4}` (replicas per GPU) or `gpu: {memory: 20GiB}`";
    let Value::Object(map) = gpu else {
        return Err(GpuProblem::new(
            at.clone(),
            format!("service `{name}`: `gpu` must be a mapping"),
            HINT,
        ));
    };
    if let Some(key) = map.keys().find(|k| !GPU_KEYS.contains(&k.as_str())) {
        return Err(GpuProblem::new(
            at.key(key),
            format!("service `{name}`: unknown key `{key}` under `x-composure.gpu`"),
            "the keys are `share` and `memory`",
        ));
    }
    let share = match map.get("share") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n >= 1 => Some(n),
            _ => {
                return Err(GpuProblem::new(
                    at.key("share"),
                    format!(
                        "service `{name}`: `share` must be a whole number of replicas, at least 1, not {value}"
                    ),
                    "`share: 4` lets up to 4 replicas of the service use one GPU",
                ));
            }
        },
    };
    let memory = match map.get("memory") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let parsed = match value {
                Value::String(text) => Bytes::parse(text).ok(),
                Value::Number(n) => n.as_i64().map(Bytes),
                _ => None,
            };
            match parsed
                .and_then(|b| u64::try_from(b.0).ok())
                .filter(|&b| b > 0)
            {
                Some(bytes) => Some(bytes),
                None => {
                    return Err(GpuProblem::new(
                        at.key("memory"),
                        format!(
                            "service `{name}`: `memory` must be a size such as 20GiB, not {value}"
                        ),
                        "`memory: 20GiB` places each replica on a GPU with 20 GiB of its memory free",
                    ));
                }
            }
        }
    };
    if share.is_some() && memory.is_some() {
        return Err(GpuProblem::new(
            at.clone(),
            format!("service `{name}`: `share` and `memory` cannot both be set"),
            "share a GPU either by a number of replicas (`share`) or by its memory (`memory`)",
        ));
    }
    Ok(Some((at.clone(), (share, memory))))
}

#[cfg(test)]
mod tests;
