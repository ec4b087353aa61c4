//! This node's GPU inventory: read once at start, from NVML (`libnvidia-ml.so.1`, loaded at
//! run time, so the daemon builds and runs on hosts with no driver) or from a file
//! (`composure daemon --gpu-inventory FILE`: what `nvidia-smi
//! --query-gpu=index,uuid,name,memory.total --format=csv` prints, for hosts where the daemon
//! cannot use NVML and for tests on machines without GPUs). The inventory goes into the
//! node's record, where placement reads it.

use std::path::{Path, PathBuf};

use composure_core::placement::{GpuDevice, NodeGpus};
use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

/// Where the inventory comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GpuSource {
    #[default]
    Nvml,
    /// `nvidia-smi`'s CSV.
    File(PathBuf),
}

/// What the daemon tells when NVML cannot be loaded.
pub const NO_DRIVER: &str = "no NVIDIA driver: libnvidia-ml.so.1 not found";

/// What a GPU is doing now, as NVML reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuUsage {
    /// Percent of the last sample period the GPU was busy (`None` for a MIG instance,
    /// which NVML does not report).
    pub utilization: Option<u32>,
    pub memory_used: Option<u64>,
}

/// The node's GPUs. A file that cannot be read or parsed is an error (the operator named
/// it); a host without NVML has no GPUs, with the reason.
pub fn inventory(source: &GpuSource) -> Result<NodeGpus, String> {
    match source {
        GpuSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|err| {
                format!("cannot read the GPU inventory {}: {err}", path.display())
            })?;
            let devices = parse_csv(&text)
                .map_err(|err| format!("the GPU inventory {}: {err}", path.display()))?;
            Ok(NodeGpus {
                devices,
                problem: None,
            })
        }
        GpuSource::Nvml => Ok(match Nvml::init() {
            Ok(nvml) => match read_nvml(&nvml) {
                Ok(devices) => NodeGpus {
                    devices,
                    problem: None,
                },
                Err(err) => NodeGpus {
                    devices: Vec::new(),
                    problem: Some(format!("cannot read the GPUs through NVML: {err}")),
                },
            },
            Err(err) => NodeGpus {
                devices: Vec::new(),
                problem: Some(init_problem(&err)),
            },
        }),
    }
}

fn init_problem(err: &NvmlError) -> String {
    match err {
        NvmlError::LibloadingError(_) => NO_DRIVER.to_string(),
        NvmlError::DriverNotLoaded => {
            "no NVIDIA driver: the kernel module is not loaded".to_string()
        }
        other => format!("cannot start NVML: {other}"),
    }
}

/// Every assignable device: each GPU, or each MIG instance of a GPU in MIG mode.
fn read_nvml(nvml: &Nvml) -> Result<Vec<GpuDevice>, NvmlError> {
    let mut devices = Vec::new();
    for index in 0..nvml.device_count()? {
        let gpu = nvml.device_by_index(index)?;
        let mig = gpu.mig_mode().map(|m| m.current == 1).unwrap_or(false);
        if !mig {
            devices.push(GpuDevice {
                id: index.to_string(),
                uuid: gpu.uuid()?,
                name: gpu.name()?,
                memory: gpu.memory_info()?.total,
            });
            continue;
        }
        for slot in 0..gpu.mig_device_count()? {
            // Slots with no instance configured answer `NotFound`.
            let Ok(instance) = gpu.mig_device_by_index(slot) else {
                continue;
            };
            devices.push(GpuDevice {
                id: format!("{index}:{slot}"),
                uuid: instance.uuid()?,
                name: instance.name()?,
                memory: instance.memory_info()?.total,
            });
        }
    }
    Ok(devices)
}

/// Each device's use now, device for device of `devices`, where NVML answers (never for an
/// inventory read from a file).
pub fn usage(source: &GpuSource, devices: &[GpuDevice]) -> Vec<GpuUsage> {
    let none = || vec![GpuUsage::default(); devices.len()];
    if *source != GpuSource::Nvml || devices.is_empty() {
        return none();
    }
    let Ok(nvml) = Nvml::init() else {
        return none();
    };
    devices
        .iter()
        .map(|device| match nvml.device_by_uuid(device.uuid.as_str()) {
            Ok(handle) => GpuUsage {
                utilization: handle.utilization_rates().ok().map(|u| u.gpu),
                memory_used: handle.memory_info().ok().map(|m| m.used),
            },
            Err(_) => GpuUsage::default(),
        })
        .collect()
}

/// `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv` (with or without
/// `noheader` and `nounits`): one device per line.
pub fn parse_csv(text: &str) -> Result<Vec<GpuDevice>, String> {
    let mut devices: Vec<GpuDevice> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && line.starts_with("index")) {
            continue;
        }
        let at = || format!("line {}", n + 1);
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [index, uuid, name, memory] = fields[..] else {
            return Err(format!(
                "{}: expected `index, uuid, name, memory.total`, found {} fields",
                at(),
                fields.len()
            ));
        };
        if index.is_empty() || !index.chars().all(|c| c.is_ascii_digit() || c == ':') {
            return Err(format!("{}: `{index}` is not a GPU index", at()));
        }
        if devices
            .iter()
            .any(|d| d.id == index || (!uuid.is_empty() && d.uuid == uuid))
        {
            return Err(format!("{}: GPU {index} ({uuid}) is listed twice", at()));
        }
        devices.push(GpuDevice {
            id: index.to_string(),
            uuid: uuid.to_string(),
            name: name.to_string(),
            memory: parse_memory(memory).ok_or_else(|| {
                format!("{}: `{memory}` is not a memory size (`81559 MiB`)", at())
            })?,
        });
    }
    Ok(devices)
}

/// `81559 MiB`, or a bare number of MiB (`nounits`).
fn parse_memory(text: &str) -> Option<u64> {
    let (number, unit) = text.split_once(' ').unwrap_or((text, "MiB"));
    let factor: u64 = match unit.trim() {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.trim().parse::<u64>().ok()?.checked_mul(factor)
}

/// For messages: the file the inventory came from, if any.
pub fn describe(source: &GpuSource) -> String {
    match source {
        GpuSource::Nvml => "NVML".to_string(),
        GpuSource::File(path) => display(path),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMI: &str = "index, uuid, name, memory.total [MiB]\n\
        0, GPU-6b7f5a1e-1111-2222-3333-444455556666, NVIDIA H200, 143771 MiB\n\
        1, GPU-6b7f5a1e-1111-2222-3333-444455556667, NVIDIA H200, 143771 MiB\n";

    #[test]
    fn reads_what_nvidia_smi_prints() {
        let devices = parse_csv(SMI).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].id, "1");
        assert_eq!(devices[1].uuid, "GPU-6b7f5a1e-1111-2222-3333-444455556667");
        assert_eq!(devices[1].name, "NVIDIA H200");
        assert_eq!(devices[1].memory, 143_771 << 20);
        let bare = parse_csv("0, GPU-a, T4, 15360\n").unwrap();
        assert_eq!(bare[0].memory, 15_360 << 20);
    }

    #[test]
    fn says_which_line_is_wrong() {
        assert_eq!(
            parse_csv("index, uuid\n0, GPU-a, T4\n").unwrap_err(),
            "line 2: expected `index, uuid, name, memory.total`, found 3 fields"
        );
        assert!(
            parse_csv("x, GPU-a, T4, 1 MiB")
                .unwrap_err()
                .contains("not a GPU index")
        );
        assert!(
            parse_csv("0, GPU-a, T4, lots")
                .unwrap_err()
                .contains("not a memory size")
        );
        assert!(
            parse_csv("0, GPU-a, T4, 1 MiB\n0, GPU-b, T4, 1 MiB")
                .unwrap_err()
                .contains("listed twice")
        );
    }

    #[test]
    fn a_host_without_the_driver_has_no_gpus_and_says_why() {
        // This machine has no NVIDIA driver; the library is loaded at run time.
        let gpus = inventory(&GpuSource::Nvml).unwrap();
        if gpus.devices.is_empty() {
            assert!(gpus.problem.is_some());
        }
        let missing = inventory(&GpuSource::File("/nonexistent/gpus.csv".into()));
        assert!(
            missing
                .unwrap_err()
                .starts_with("cannot read the GPU inventory")
        );
    }
}
