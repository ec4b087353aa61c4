//! `volumes`, `secrets` and `configs` as binds and mounts (see the module docs above for
//! which form each takes and why).

use std::path::{Path, PathBuf};

use bollard::models::{
    Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType,
    MountVolumeOptions,
};
use composure_compose::model::{FileObject, FileRef, MountType as Kind, ServiceVolume};
use composure_runtime::RuntimeError;
use indexmap::IndexMap;

use super::{CreateInput, invalid, unsupported};

/// A secret or config file to write before the container is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileToWrite {
    pub path: PathBuf,
    pub content: FileContent,
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Where a written file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileContent {
    Text(String),
    /// The value of this variable in the process's environment.
    Env(String),
    /// A copy of this host file.
    Copy(PathBuf),
}

#[derive(Debug, Default)]
pub(super) struct MountPlan {
    pub binds: Vec<String>,
    pub mounts: Vec<Mount>,
    pub files: Vec<FileToWrite>,
}

pub(super) fn plan(input: &CreateInput<'_>) -> Result<MountPlan, RuntimeError> {
    let mut plan = MountPlan::default();
    for volume in &input.service.volumes {
        volume_mount(input, volume, &mut plan)?;
    }
    let kinds = [
        (
            Grant::Secret,
            &input.service.secrets,
            &input.project.secrets,
        ),
        (
            Grant::Config,
            &input.service.configs,
            &input.project.configs,
        ),
    ];
    for (grant, refs, defs) in kinds {
        for file_ref in refs {
            file_mount(input, grant, file_ref, defs, &mut plan)?;
        }
    }
    Ok(plan)
}

fn volume_mount(
    input: &CreateInput<'_>,
    v: &ServiceVolume,
    plan: &mut MountPlan,
) -> Result<(), RuntimeError> {
    let name = input.service_name;
    let target = v
        .target
        .clone()
        .ok_or_else(|| invalid(name, "a volume has no `target`"))?;
    match v.kind {
        Kind::Bind => bind(name, v, target, plan),
        Kind::Volume => {
            if v.volume.as_ref().is_some_and(|o| o.subpath.is_some()) {
                return Err(unsupported(name, "volumes[].volume.subpath"));
            }
            let source = match &v.source {
                Some(key) => Some(
                    input
                        .project
                        .volumes
                        .get(key)
                        .and_then(|d| d.name.clone())
                        .ok_or_else(|| {
                            invalid(
                                name,
                                format!(
                                    "volume `{key}` is not declared in the top-level `volumes`"
                                ),
                            )
                        })?,
                ),
                None => None,
            };
            plan.mounts.push(Mount {
                typ: Some(MountType::VOLUME),
                source,
                target: Some(target),
                read_only: v.read_only.then_some(true),
                consistency: v.consistency.clone(),
                volume_options: v.volume.as_ref().map(|o| MountVolumeOptions {
                    no_copy: o.nocopy.then_some(true),
                    labels: super::map(&o.labels),
                    ..MountVolumeOptions::default()
                }),
                ..Mount::default()
            });
            Ok(())
        }
        Kind::Tmpfs => {
            plan.mounts.push(Mount {
                typ: Some(MountType::TMPFS),
                target: Some(target),
                read_only: v.read_only.then_some(true),
                tmpfs_options: v.tmpfs.as_ref().map(|t| MountTmpfsOptions {
                    size_bytes: t.size.map(|b| b.0),
                    mode: t.mode.map(|m| i64::from(m.0)),
                    options: None,
                }),
                ..Mount::default()
            });
            Ok(())
        }
        Kind::Image => Err(unsupported(name, "volumes[].type: image")),
        Kind::Npipe => Err(unsupported(name, "volumes[].type: npipe")),
        Kind::Cluster => Err(unsupported(name, "volumes[].type: cluster")),
    }
}

fn bind(
    name: &str,
    v: &ServiceVolume,
    target: String,
    plan: &mut MountPlan,
) -> Result<(), RuntimeError> {
    let source = v.source.clone().ok_or_else(|| {
        invalid(
            name,
            format!("the bind mount at `{target}` has no `source`"),
        )
    })?;
    if !Path::new(&source).is_absolute() {
        return Err(invalid(
            name,
            format!("bind source `{source}` is not an absolute path"),
        ));
    }
    let options = v.bind.clone().unwrap_or_default();
    let create = v.bind.as_ref().is_some_and(|b| b.create_host_path);
    let recursive = options.recursive.as_deref().unwrap_or("enabled");
    if !matches!(recursive, "enabled" | "disabled") {
        return Err(unsupported(
            name,
            &format!("volumes[].bind.recursive: {recursive}"),
        ));
    }
    if create {
        if recursive == "disabled" {
            return Err(invalid(
                name,
                format!("bind `{source}`: `recursive: disabled` needs `create_host_path: false`"),
            ));
        }
        let mut opts: Vec<&str> = vec![if v.read_only { "ro" } else { "rw" }];
        opts.extend(options.propagation.as_deref());
        opts.extend(options.selinux.as_deref());
        opts.extend(v.consistency.as_deref());
        plan.binds
            .push(format!("{source}:{target}:{}", opts.join(",")));
        return Ok(());
    }
    if options.selinux.is_some() {
        return Err(unsupported(
            name,
            &format!("volumes[].bind.selinux without create_host_path (bind `{source}`)"),
        ));
    }
    let propagation = options
        .propagation
        .as_deref()
        .map(|p| {
            p.parse::<MountBindOptionsPropagationEnum>()
                .map_err(|_| invalid(name, format!("unknown bind propagation `{p}`")))
        })
        .transpose()?;
    let non_recursive = (recursive == "disabled").then_some(true);
    plan.mounts.push(Mount {
        typ: Some(MountType::BIND),
        source: Some(source),
        target: Some(target),
        read_only: v.read_only.then_some(true),
        consistency: v.consistency.clone(),
        bind_options: (propagation.is_some() || non_recursive.is_some()).then_some(
            MountBindOptions {
                propagation,
                non_recursive,
                ..MountBindOptions::default()
            },
        ),
        ..Mount::default()
    });
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Grant {
    Secret,
    Config,
}

impl Grant {
    fn word(self) -> &'static str {
        match self {
            Grant::Secret => "secret",
            Grant::Config => "config",
        }
    }

    /// Where the file lands when the grant names no absolute target.
    fn target(self, file_ref: &FileRef) -> String {
        let base = match self {
            Grant::Secret => "/run/secrets",
            Grant::Config => "",
        };
        match file_ref.target.as_deref() {
            Some(t) if t.starts_with('/') => t.to_string(),
            Some(t) => format!("{base}/{t}"),
            None => format!("{base}/{}", file_ref.source),
        }
    }
}

fn file_mount(
    input: &CreateInput<'_>,
    grant: Grant,
    file_ref: &FileRef,
    defs: &IndexMap<String, FileObject>,
    plan: &mut MountPlan,
) -> Result<(), RuntimeError> {
    let name = input.service_name;
    let word = grant.word();
    let key = &file_ref.source;
    let def = defs
        .get(key)
        .ok_or_else(|| invalid(name, format!("{word} `{key}` is not declared")))?;
    if def.external == Some(true) {
        return Err(unsupported(
            name,
            &format!("{word}s.{key}: external (needs a swarm)"),
        ));
    }
    if def.driver.is_some() || def.template_driver.is_some() {
        return Err(unsupported(name, &format!("{word}s.{key}: driver")));
    }
    let owner_or_mode = file_ref.uid.is_some() || file_ref.gid.is_some() || file_ref.mode.is_some();
    let written = input.files_dir.join(format!("{word}s")).join(sanitize(key));
    let content = match (&def.file, &def.environment, &def.content) {
        (Some(file), _, _) if !owner_or_mode => {
            plan.mounts
                .push(read_only_bind(file.clone(), grant.target(file_ref)));
            return Ok(());
        }
        (Some(file), _, _) => FileContent::Copy(PathBuf::from(file)),
        (None, Some(var), _) => FileContent::Env(var.clone()),
        (None, None, Some(text)) => FileContent::Text(text.clone()),
        (None, None, None) => {
            return Err(invalid(
                name,
                format!("{word} `{key}` has no `file`, `environment` or `content`"),
            ));
        }
    };
    let id = |what: &str, value: &Option<String>| -> Result<Option<u32>, RuntimeError> {
        value
            .as_deref()
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    invalid(
                        name,
                        format!("{word} `{key}`: `{what}: {v}` is not a number"),
                    )
                })
            })
            .transpose()
    };
    plan.files.push(FileToWrite {
        path: written.clone(),
        content,
        mode: file_ref.mode.map_or(0o444, |m| m.0),
        uid: id("uid", &file_ref.uid)?,
        gid: id("gid", &file_ref.gid)?,
    });
    plan.mounts.push(read_only_bind(
        written.display().to_string(),
        grant.target(file_ref),
    ));
    Ok(())
}

fn read_only_bind(source: String, target: String) -> Mount {
    Mount {
        typ: Some(MountType::BIND),
        source: Some(source),
        target: Some(target),
        read_only: Some(true),
        ..Mount::default()
    }
}

/// A secret's key as a file name: nothing that climbs out of the folder.
fn sanitize(key: &str) -> String {
    let safe: String = key
        .chars()
        .map(|c| if c == '/' || c == '\\' { '_' } else { c })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string();
    if safe.is_empty() {
        "_".to_string()
    } else {
        safe
    }
}
