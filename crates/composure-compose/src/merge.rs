//! Merging compose documents (spec chapter "Merge and override") and service definitions
//! (`extends`), on the positioned tree so every value keeps the place it was written: a later
//! error about a value that came from an override file points into that file.
//!
//! The rules, in short: mappings merge key by key, scalars are replaced, sequences are
//! appended. Some attributes have their own rule (see [`Rule`]): shell commands are replaced;
//! `environment`, `labels` and their kin are mappings even when written as `KEY=VALUE` lists;
//! `ports`, `volumes`, `secrets`, `configs` and a few more are sets keyed by an identity, so a
//! later entry with the same identity replaces the earlier one. `!reset` removes what the
//! earlier file set, `!override` replaces it without merging. The result carries no tag.

use std::collections::HashMap;

use indexmap::map::MutableKeys;

use crate::diag::{Diagnostic, PathSeg, Span, YamlPath};
use crate::yaml::{Key, Mapping, Tag, Value, YamlNode};

/// Lays `overlay` (a later file, or a later document of the same stream) over `base`.
/// An empty overlay leaves the base unchanged.
pub fn merge_documents(mut base: YamlNode, overlay: YamlNode) -> Result<YamlNode, Vec<Diagnostic>> {
    let mut merger = Merger::default();
    strip_tags(&mut base);
    merger.check_document(&base);
    merger.check_document(&overlay);
    let merged = if overlay.is_null() {
        Some(base)
    } else {
        merger.merge(base, overlay, &YamlPath::root())
    };
    let span = Span::none();
    merger.finish(merged.unwrap_or_else(|| YamlNode::null(span)))
}

/// Lays the service `overlay` over the service `base`: the extending service over the one it
/// extends. `name` is the overlay's service name, used for the rules and in messages. The
/// caller removes `extends` from the overlay first.
pub fn merge_service(
    name: &str,
    base: &YamlNode,
    overlay: &YamlNode,
) -> Result<YamlNode, Vec<Diagnostic>> {
    let mut merger = Merger::default();
    let mut base = base.clone();
    strip_tags(&mut base);
    let path = YamlPath::root().key("services").key(name);
    let merged = merger.merge(base, overlay.clone(), &path);
    let span = overlay.span.clone();
    merger.finish(merged.unwrap_or_else(|| YamlNode::null(span)))
}

/// Applies the merge tags of a document that is not merged over anything: a `!reset` value
/// means "absent", so its key (or sequence item) goes; `!override` has nothing to override.
pub fn strip_tags(node: &mut YamlNode) {
    if node.tag == Tag::Reset {
        node.value = Value::Null;
    }
    node.tag = Tag::None;
    match &mut node.value {
        Value::Map(entries) => {
            entries.retain(|_, value| value.tag != Tag::Reset);
            entries.values_mut().for_each(strip_tags);
        }
        Value::Seq(items) => {
            items.retain(|item| item.tag != Tag::Reset);
            items.iter_mut().for_each(strip_tags);
        }
        _ => {}
    }
}

/// The node with its tags applied, or `None` when it is itself a `!reset`.
fn stripped(mut node: YamlNode) -> Option<YamlNode> {
    if node.tag == Tag::Reset {
        return None;
    }
    strip_tags(&mut node);
    Some(node)
}

/// How the values at one path merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Mappings merge by key, sequences append, scalars are replaced.
    Generic,
    /// The later value wins whole (shell commands, a single ulimit).
    Replace,
    /// A mapping that may be written as a `KEY=VALUE` list; entries are replaced whole.
    KeyValue,
    /// `host: ip` entries, also written `host:ip` / `host=ip`; a host may have several IPs.
    ExtraHosts,
    /// `depends_on`: a list of names means each with `service_started`, required.
    DependsOn,
    /// A list of names or a mapping of name to options (service `networks`, `models`).
    NamedMap,
    /// `build`: a string is the context.
    Build,
    /// `logging`: options of different drivers do not mix.
    Logging,
    /// A set of entries keyed by an identity; `true` when a single string is a one-item list.
    Unique(Identity, bool),
}

/// What makes two entries of a [`Rule::Unique`] sequence "the same".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Identity {
    /// The entry's text.
    Text,
    /// host IP, published port, target port and protocol.
    Port,
    /// The mount path in the container.
    MountTarget,
    /// The device path in the container.
    Device,
    /// The file the secret appears as (`/run/secrets/<source>` by default).
    Secret,
    /// The file the config appears as (`/<source>` by default).
    Config,
    /// The env file's path.
    EnvFile,
    /// A blkio device's `path`.
    DevicePath,
    /// An IPAM pool's `subnet`.
    Subnet,
}

const RULES: &[(&str, Rule)] = &[
    ("services.*.command", Rule::Replace),
    ("services.*.entrypoint", Rule::Replace),
    ("services.*.healthcheck.test", Rule::Replace),
    ("services.*.ulimits.*", Rule::Replace),
    ("services.*.annotations", Rule::KeyValue),
    ("services.*.build.additional_contexts", Rule::KeyValue),
    ("services.*.build.args", Rule::KeyValue),
    ("services.*.build.labels", Rule::KeyValue),
    ("services.*.deploy.labels", Rule::KeyValue),
    ("services.*.environment", Rule::KeyValue),
    ("services.*.labels", Rule::KeyValue),
    ("services.*.sysctls", Rule::KeyValue),
    ("networks.*.labels", Rule::KeyValue),
    ("volumes.*.labels", Rule::KeyValue),
    ("configs.*.labels", Rule::KeyValue),
    ("secrets.*.labels", Rule::KeyValue),
    ("services.*.extra_hosts", Rule::ExtraHosts),
    ("services.*.build.extra_hosts", Rule::ExtraHosts),
    ("services.*.depends_on", Rule::DependsOn),
    ("services.*.networks", Rule::NamedMap),
    ("services.*.models", Rule::NamedMap),
    ("services.*.build", Rule::Build),
    ("services.*.logging", Rule::Logging),
    ("services.*.ports", Rule::Unique(Identity::Port, false)),
    (
        "services.*.volumes",
        Rule::Unique(Identity::MountTarget, false),
    ),
    ("services.*.devices", Rule::Unique(Identity::Device, false)),
    ("services.*.secrets", Rule::Unique(Identity::Secret, false)),
    ("services.*.configs", Rule::Unique(Identity::Config, false)),
    ("services.*.env_file", Rule::Unique(Identity::EnvFile, true)),
    ("services.*.label_file", Rule::Unique(Identity::Text, true)),
    ("services.*.dns", Rule::Unique(Identity::Text, true)),
    ("services.*.dns_search", Rule::Unique(Identity::Text, true)),
    ("services.*.tmpfs", Rule::Unique(Identity::Text, true)),
    ("services.*.dns_opt", Rule::Unique(Identity::Text, false)),
    ("services.*.cap_add", Rule::Unique(Identity::Text, false)),
    ("services.*.cap_drop", Rule::Unique(Identity::Text, false)),
    (
        "services.*.security_opt",
        Rule::Unique(Identity::Text, false),
    ),
    ("services.*.expose", Rule::Unique(Identity::Text, false)),
    (
        "services.*.external_links",
        Rule::Unique(Identity::Text, false),
    ),
    ("services.*.links", Rule::Unique(Identity::Text, false)),
    ("services.*.profiles", Rule::Unique(Identity::Text, false)),
    (
        "services.*.volumes_from",
        Rule::Unique(Identity::Text, false),
    ),
    (
        "services.*.device_cgroup_rules",
        Rule::Unique(Identity::Text, false),
    ),
    ("services.*.build.tags", Rule::Unique(Identity::Text, false)),
    (
        "services.*.build.platforms",
        Rule::Unique(Identity::Text, false),
    ),
    (
        "services.*.networks.*.aliases",
        Rule::Unique(Identity::Text, false),
    ),
    (
        "services.*.networks.*.link_local_ips",
        Rule::Unique(Identity::Text, false),
    ),
    (
        "services.*.deploy.placement.constraints",
        Rule::Unique(Identity::Text, false),
    ),
    (
        "services.*.deploy.placement.preferences",
        Rule::Unique(Identity::Text, false),
    ),
    (
        "services.*.blkio_config.device_read_bps",
        Rule::Unique(Identity::DevicePath, false),
    ),
    (
        "services.*.blkio_config.device_read_iops",
        Rule::Unique(Identity::DevicePath, false),
    ),
    (
        "services.*.blkio_config.device_write_bps",
        Rule::Unique(Identity::DevicePath, false),
    ),
    (
        "services.*.blkio_config.device_write_iops",
        Rule::Unique(Identity::DevicePath, false),
    ),
    (
        "services.*.blkio_config.weight_device",
        Rule::Unique(Identity::DevicePath, false),
    ),
    (
        "networks.*.ipam.config",
        Rule::Unique(Identity::Subnet, false),
    ),
];

impl Rule {
    fn at(path: &YamlPath) -> Rule {
        RULES
            .iter()
            .find(|(pattern, _)| path_matches(path, pattern))
            .map_or(Rule::Generic, |(_, rule)| *rule)
    }
}

/// `pattern` is dot-separated keys where `*` stands for any one key.
fn path_matches(path: &YamlPath, pattern: &str) -> bool {
    let segments = path.segments();
    segments.len() == pattern.split('.').count()
        && segments
            .iter()
            .zip(pattern.split('.'))
            .all(|(seg, part)| match seg {
                PathSeg::Key(key) => part == "*" || part == key,
                PathSeg::Index(_) => false,
            })
}

#[derive(Default)]
struct Merger {
    diagnostics: Vec<Diagnostic>,
}

impl Merger {
    fn finish(self, node: YamlNode) -> Result<YamlNode, Vec<Diagnostic>> {
        if self.diagnostics.is_empty() {
            Ok(node)
        } else {
            Err(self.diagnostics)
        }
    }

    fn error(&mut self, node: &YamlNode, path: &YamlPath, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::error(node.span.clone(), path.clone(), message));
    }

    fn check_document(&mut self, doc: &YamlNode) {
        if !doc.is_null() && doc.as_map().is_none() {
            let message = format!("a compose file must be a mapping, not a {}", doc.kind());
            self.error(doc, &YamlPath::root(), message);
        }
    }

    /// Merges one value; `None` when the overlay removes it (`!reset`).
    fn merge(&mut self, base: YamlNode, overlay: YamlNode, path: &YamlPath) -> Option<YamlNode> {
        match overlay.tag {
            Tag::Reset => return None,
            Tag::Override => return stripped(overlay),
            Tag::None => {}
        }
        let rule = Rule::at(path);
        if base.is_null() {
            return stripped(overlay);
        }
        // An empty value in a later file adds nothing (a bare `web:` or `default:` key).
        if overlay.is_null() && rule != Rule::Replace {
            return Some(base);
        }
        match rule {
            Rule::Generic => self.merge_generic(base, overlay, path),
            Rule::Replace => stripped(overlay),
            Rule::KeyValue => self.merge_key_values(base, overlay, path),
            Rule::ExtraHosts => self.merge_extra_hosts(base, overlay, path),
            Rule::DependsOn => self.merge_named(base, overlay, path, depends_on_default),
            Rule::NamedMap => self.merge_named(base, overlay, path, YamlNode::null),
            Rule::Build => self.merge_build(base, overlay, path),
            Rule::Logging => self.merge_logging(base, overlay, path),
            Rule::Unique(identity, scalar_is_list) => {
                self.merge_unique(base, overlay, path, identity, scalar_is_list)
            }
        }
    }

    fn merge_generic(
        &mut self,
        base: YamlNode,
        overlay: YamlNode,
        path: &YamlPath,
    ) -> Option<YamlNode> {
        let span = overlay.span.clone();
        match (base.value, overlay.value) {
            (Value::Map(base), Value::Map(overlay)) => {
                Some(YamlNode::map(self.merge_maps(base, overlay, path), span))
            }
            (Value::Seq(mut items), Value::Seq(more)) => {
                items.extend(more.into_iter().filter_map(stripped));
                Some(YamlNode::new(Value::Seq(items), span))
            }
            (base @ (Value::Map(_) | Value::Seq(_)), value) => {
                let base = YamlNode::new(base, Span::none());
                let overlay = YamlNode::new(value, span);
                let message = format!(
                    "cannot merge a {} over the {} given earlier",
                    overlay.kind(),
                    base.kind()
                );
                self.diagnostics.push(
                    Diagnostic::error(overlay.span.clone(), path.clone(), message)
                        .with_hint("write `!override` before the value to replace it whole"),
                );
                None
            }
            (_, value) => stripped(YamlNode::new(value, span)),
        }
    }

    fn merge_maps(&mut self, base: Mapping, mut overlay: Mapping, path: &YamlPath) -> Mapping {
        let mut merged = Mapping::with_capacity(base.len() + overlay.len());
        for (key, value) in base {
            match overlay.shift_remove_entry(key.name.as_str()) {
                None => {
                    merged.insert(key, value);
                }
                Some((key, later)) => {
                    let child = path.key(key.name.as_str());
                    if let Some(value) = self.merge(value, later, &child) {
                        merged.insert(key, value);
                    }
                }
            }
        }
        for (key, value) in overlay {
            if let Some(value) = stripped(value) {
                merged.insert(key, value);
            }
        }
        merged
    }

    fn merge_key_values(
        &mut self,
        base: YamlNode,
        overlay: YamlNode,
        path: &YamlPath,
    ) -> Option<YamlNode> {
        let span = overlay.span.clone();
        let base = self.key_values(base, path);
        let overlay = self.key_values(overlay, path);
        let (mut merged, overlay) = (base?, overlay?);
        for (key, value) in overlay {
            match stripped(value) {
                None => {
                    merged.shift_remove(key.name.as_str());
                }
                Some(value) => replace_entry(&mut merged, key, value),
            }
        }
        Some(YamlNode::map(merged, span))
    }

    /// A `KEY=VALUE` list as a mapping; a bare `KEY` has a null value.
    fn key_values(&mut self, node: YamlNode, path: &YamlPath) -> Option<Mapping> {
        match node.value {
            Value::Map(entries) => Some(entries),
            Value::Null => Some(Mapping::new()),
            Value::Seq(items) => {
                let mut entries = Mapping::new();
                let mut ok = true;
                for (i, item) in items.into_iter().enumerate() {
                    let Some(text) = item.scalar_text() else {
                        self.error(&item, &path.index(i), "expected a `KEY=VALUE` string");
                        ok = false;
                        continue;
                    };
                    let (name, value) = match text.split_once('=') {
                        Some((name, value)) => (name, YamlNode::string(value, item.span.clone())),
                        None => (text.as_str(), YamlNode::null(item.span.clone())),
                    };
                    let value = YamlNode {
                        tag: item.tag,
                        ..value
                    };
                    replace_entry(&mut entries, Key::new(name, item.span), value);
                }
                ok.then_some(entries)
            }
            value => {
                let node = YamlNode::new(value, node.span);
                let message = format!(
                    "expected a mapping or a list of `KEY=VALUE` strings, not a {}",
                    node.kind()
                );
                self.error(&node, path, message);
                None
            }
        }
    }

    fn merge_extra_hosts(
        &mut self,
        base: YamlNode,
        overlay: YamlNode,
        path: &YamlPath,
    ) -> Option<YamlNode> {
        let span = overlay.span.clone();
        let base = self.hosts(base, path);
        let overlay = self.hosts(overlay, path);
        let (mut merged, overlay) = (base?, overlay?);
        for (key, later) in overlay {
            if later.tag == Tag::Reset {
                merged.shift_remove(key.name.as_str());
                continue;
            }
            let later = stripped(later).map(into_items).unwrap_or_default();
            match merged.get_mut(key.name.as_str()) {
                Some(YamlNode {
                    value: Value::Seq(ips),
                    ..
                }) => {
                    for ip in later {
                        if !ips.iter().any(|known| same_text(known, &ip)) {
                            ips.push(ip);
                        }
                    }
                }
                _ => {
                    let node = YamlNode::new(Value::Seq(later), key.span.clone());
                    merged.insert(key, node);
                }
            }
        }
        for value in merged.values_mut() {
            if let Value::Seq(ips) = &mut value.value
                && ips.len() == 1
            {
                *value = ips.remove(0);
            }
        }
        Some(YamlNode::map(merged, span))
    }

    /// Extra hosts as `host` → sequence of IPs, whichever way they were written.
    fn hosts(&mut self, node: YamlNode, path: &YamlPath) -> Option<Mapping> {
        match node.value {
            Value::Null => Some(Mapping::new()),
            Value::Map(entries) => Some(
                entries
                    .into_iter()
                    .map(|(key, value)| {
                        let (span, tag) = (value.span.clone(), value.tag);
                        let ips = Value::Seq(into_items(value));
                        (
                            key,
                            YamlNode {
                                value: ips,
                                span,
                                tag,
                            },
                        )
                    })
                    .collect(),
            ),
            Value::Seq(items) => {
                let mut hosts = Mapping::new();
                let mut ok = true;
                for (i, item) in items.into_iter().enumerate() {
                    let entry = item.scalar_text().and_then(|text| {
                        let (host, ip) = text.split_once('=').or_else(|| text.split_once(':'))?;
                        Some((host.to_string(), ip.to_string()))
                    });
                    let Some((host, ip)) = entry else {
                        self.error(&item, &path.index(i), "expected a `HOST:IP` string");
                        ok = false;
                        continue;
                    };
                    let ip = YamlNode {
                        tag: Tag::None,
                        ..YamlNode::string(ip, item.span.clone())
                    };
                    let entry = hosts
                        .entry(Key::new(host, item.span.clone()))
                        .or_insert_with(|| {
                            YamlNode::new(Value::Seq(Vec::new()), item.span.clone())
                        });
                    entry.tag = item.tag;
                    if let Value::Seq(ips) = &mut entry.value {
                        ips.push(ip);
                    }
                }
                ok.then_some(hosts)
            }
            value => {
                let node = YamlNode::new(value, node.span);
                let message = format!(
                    "expected a mapping or a list of `HOST:IP` strings, not a {}",
                    node.kind()
                );
                self.error(&node, path, message);
                None
            }
        }
    }

    fn merge_named(
        &mut self,
        base: YamlNode,
        overlay: YamlNode,
        path: &YamlPath,
        default: fn(Span) -> YamlNode,
    ) -> Option<YamlNode> {
        let base = self.named(base, path, default);
        let overlay = self.named(overlay, path, default);
        self.merge_generic(base?, overlay?, path)
    }

    /// A list of names as a mapping from each name to `default`.
    fn named(
        &mut self,
        node: YamlNode,
        path: &YamlPath,
        default: fn(Span) -> YamlNode,
    ) -> Option<YamlNode> {
        let Value::Seq(items) = node.value else {
            return Some(node);
        };
        let mut entries = Mapping::new();
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            let Some(name) = item.scalar_text() else {
                self.error(&item, &path.index(i), "expected a name");
                ok = false;
                continue;
            };
            let value = YamlNode {
                tag: item.tag,
                ..default(item.span.clone())
            };
            entries.insert(Key::new(name, item.span), value);
        }
        ok.then(|| YamlNode::map(entries, node.span))
    }

    fn merge_build(
        &mut self,
        base: YamlNode,
        overlay: YamlNode,
        path: &YamlPath,
    ) -> Option<YamlNode> {
        self.merge_generic(build_mapping(base), build_mapping(overlay), path)
    }

    fn merge_logging(
        &mut self,
        base: YamlNode,
        overlay: YamlNode,
        path: &YamlPath,
    ) -> Option<YamlNode> {
        let driver = |node: &YamlNode| node.get("driver").and_then(YamlNode::scalar_text);
        match (driver(&base), driver(&overlay)) {
            (Some(earlier), Some(later)) if earlier != later => stripped(overlay),
            _ => self.merge_generic(base, overlay, path),
        }
    }

    fn merge_unique(
        &mut self,
        base: YamlNode,
        overlay: YamlNode,
        path: &YamlPath,
        identity: Identity,
        scalar_is_list: bool,
    ) -> Option<YamlNode> {
        let span = overlay.span.clone();
        let base = self.items(base, path, scalar_is_list);
        let overlay = self.items(overlay, path, scalar_is_list);
        let (base, overlay) = (base?, overlay?);
        let mut merged: Vec<Option<YamlNode>> = Vec::with_capacity(base.len() + overlay.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for item in base.into_iter().chain(overlay) {
            let Some(id) = identity.of(&item) else {
                merged.push(stripped(item));
                continue;
            };
            match seen.get(&id) {
                // A `!reset` entry strips to nothing: the earlier entry goes.
                Some(&at) => merged[at] = stripped(item),
                None if item.tag != Tag::Reset => {
                    seen.insert(id, merged.len());
                    merged.push(stripped(item));
                }
                None => {}
            }
        }
        let items = merged.into_iter().flatten().collect();
        Some(YamlNode::new(Value::Seq(items), span))
    }

    fn items(
        &mut self,
        node: YamlNode,
        path: &YamlPath,
        scalar_is_list: bool,
    ) -> Option<Vec<YamlNode>> {
        match node.value {
            Value::Seq(items) => Some(items),
            Value::Null => Some(Vec::new()),
            Value::Map(_) => {
                self.error(&node, path, "expected a sequence, not a mapping");
                None
            }
            _ if scalar_is_list => Some(vec![node]),
            value => {
                let node = YamlNode::new(value, node.span);
                let message = format!("expected a sequence, not a {}", node.kind());
                self.error(&node, path, message);
                None
            }
        }
    }
}

/// Sets `key` to `value`; an existing entry keeps its place but takes the new key's span.
fn replace_entry(entries: &mut Mapping, key: Key, value: YamlNode) {
    match entries.get_full_mut2(key.name.as_str()) {
        Some((_, old_key, old_value)) => {
            *old_key = key;
            *old_value = value;
        }
        None => {
            entries.insert(key, value);
        }
    }
}

fn depends_on_default(span: Span) -> YamlNode {
    let mut entries = Mapping::new();
    entries.insert(
        Key::new("condition", span.clone()),
        YamlNode::string("service_started", span.clone()),
    );
    entries.insert(
        Key::new("required", span.clone()),
        YamlNode::new(Value::Bool(true), span.clone()),
    );
    YamlNode::map(entries, span)
}

/// `build: path` is `build: {context: path}`.
fn build_mapping(node: YamlNode) -> YamlNode {
    if matches!(node.value, Value::Map(_)) || node.scalar_text().is_none() {
        return node;
    }
    let span = node.span.clone();
    let mut entries = Mapping::new();
    entries.insert(Key::new("context", span.clone()), node);
    YamlNode::map(entries, span)
}

fn into_items(node: YamlNode) -> Vec<YamlNode> {
    match node.value {
        Value::Seq(items) => items,
        Value::Null => Vec::new(),
        value => vec![YamlNode::new(value, node.span)],
    }
}

fn same_text(a: &YamlNode, b: &YamlNode) -> bool {
    a.scalar_text().is_some() && a.scalar_text() == b.scalar_text()
}

impl Identity {
    /// The entry's identity; `None` when it has none (it is then never merged with another).
    fn of(self, item: &YamlNode) -> Option<String> {
        match self {
            Identity::Text => item
                .scalar_text()
                .or_else(|| Some(item.to_json().to_string())),
            Identity::Port => port_identity(item),
            Identity::MountTarget => match item.as_map() {
                Some(_) => text_at(item, "target"),
                None => item.scalar_text().map(|s| short_volume_target(&s)),
            },
            Identity::Device => match item.as_map() {
                Some(_) => text_at(item, "target").or_else(|| text_at(item, "source")),
                None => item.scalar_text().map(|s| short_device_target(&s)),
            },
            Identity::Secret => mount_identity(item, "/run/secrets/"),
            Identity::Config => mount_identity(item, "/"),
            Identity::EnvFile => match item.as_map() {
                Some(_) => text_at(item, "path"),
                None => item.scalar_text(),
            },
            Identity::DevicePath => text_at(item, "path"),
            Identity::Subnet => text_at(item, "subnet"),
        }
    }
}

fn text_at(node: &YamlNode, key: &str) -> Option<String> {
    node.get(key).and_then(YamlNode::scalar_text)
}

/// Where a secret or config appears in the container: its `target`, or its source's name under
/// the default directory. A relative target is relative to that directory.
fn mount_identity(item: &YamlNode, default_dir: &str) -> Option<String> {
    let in_default_dir = |name: String| {
        if name.starts_with('/') {
            name
        } else {
            format!("{default_dir}{name}")
        }
    };
    match item.as_map() {
        Some(_) => text_at(item, "target")
            .or_else(|| text_at(item, "source"))
            .map(in_default_dir),
        None => item.scalar_text().map(in_default_dir),
    }
}

/// The identity of a port in short (`[HOST:][PUBLISHED:]TARGET[/PROTOCOL]`) or long form:
/// host IP, published, target, protocol. No host IP and `0.0.0.0` are the same.
fn port_identity(item: &YamlNode) -> Option<String> {
    let (host_ip, published, target, protocol) = match item.as_map() {
        Some(_) => (
            text_at(item, "host_ip").unwrap_or_default(),
            text_at(item, "published").unwrap_or_default(),
            text_at(item, "target")?,
            text_at(item, "protocol").unwrap_or_else(|| "tcp".into()),
        ),
        None => parse_short_port(&item.scalar_text()?),
    };
    let host_ip = host_ip.trim_start_matches('[').trim_end_matches(']');
    let host_ip = if host_ip == "0.0.0.0" { "" } else { host_ip };
    Some(format!(
        "{host_ip}|{published}|{target}|{}",
        protocol.to_ascii_lowercase()
    ))
}

fn parse_short_port(text: &str) -> (String, String, String, String) {
    let (rest, protocol) = text.rsplit_once('/').unwrap_or((text, "tcp"));
    let mut parts = rest.rsplitn(3, ':');
    let target = parts.next().unwrap_or_default();
    let published = parts.next().unwrap_or_default();
    let host_ip = parts.next().unwrap_or_default();
    (
        host_ip.to_string(),
        published.to_string(),
        target.to_string(),
        protocol.to_string(),
    )
}

/// The container path of a short volume (`[SOURCE:]TARGET[:MODE]`). A Windows source such as
/// `C:\data` has a colon of its own.
fn short_volume_target(text: &str) -> String {
    let mut parts: Vec<&str> = text.split(':').collect();
    if parts.len() > 2 && is_drive_letter(parts[0]) && parts[1].starts_with(['\\', '/']) {
        parts.remove(0);
    }
    match parts.as_slice() {
        [target] => (*target).to_string(),
        [_, target, ..] => (*target).to_string(),
        [] => String::new(),
    }
}

fn is_drive_letter(part: &str) -> bool {
    part.len() == 1 && part.bytes().all(|b| b.is_ascii_alphabetic())
}

/// The container path of a short device (`HOST[:CONTAINER[:PERMISSIONS]]`).
fn short_device_target(text: &str) -> String {
    let mut parts = text.split(':');
    let host = parts.next().unwrap_or_default();
    parts.next().unwrap_or(host).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{Limits, parse};
    use serde_json::json;

    fn doc(text: &str, file: &str) -> YamlNode {
        let mut docs = parse(text, file, &Limits::default()).expect("parses");
        docs.pop().unwrap_or_else(|| YamlNode::null(Span::none()))
    }

    fn merged(base: &str, overlay: &str) -> YamlNode {
        merge_documents(doc(base, "base.yaml"), doc(overlay, "override.yaml")).expect("merges")
    }

    /// The merged service `web` as JSON.
    fn web(base: &str, overlay: &str) -> serde_json::Value {
        merged(base, overlay).to_json()["services"]["web"].clone()
    }

    fn errors(base: &str, overlay: &str) -> Vec<Diagnostic> {
        merge_documents(doc(base, "base.yaml"), doc(overlay, "override.yaml")).expect_err("fails")
    }

    fn has_tags(node: &YamlNode) -> bool {
        let mut found = false;
        let mut node = node.clone();
        node.walk_mut(&mut |n| found |= n.tag != Tag::None);
        found
    }

    #[test]
    fn mappings_merge_and_scalars_are_replaced() {
        let web = web(
            "services:\n  web:\n    image: a\n    init: true\n    user: root\n",
            "services:\n  web:\n    image: b\n    init: false\n    working_dir: /w\n",
        );
        assert_eq!(
            web,
            json!({"image": "b", "init": false, "user": "root", "working_dir": "/w"})
        );
    }

    #[test]
    fn extension_mappings_merge_key_by_key() {
        let doc = merged("x-common:\n  a: 1\n  b: 1\n", "x-common:\n  b: 2\n  c: 2\n");
        assert_eq!(doc.to_json()["x-common"], json!({"a": 1, "b": 2, "c": 2}));
    }

    #[test]
    fn generic_sequences_append() {
        let web = web(
            "services:\n  web:\n    group_add: [a]\n",
            "services:\n  web:\n    group_add: [b, a]\n",
        );
        assert_eq!(web["group_add"], json!(["a", "b", "a"]));
    }

    #[test]
    fn shell_commands_are_replaced() {
        let web = web(
            "services:\n  web:\n    command: [echo, foo]\n    entrypoint: [sh, -c]\n    healthcheck:\n      test: [CMD, a]\n      retries: 3\n",
            "services:\n  web:\n    command: [echo, bar]\n    entrypoint: bash\n    healthcheck:\n      test: [CMD, b]\n",
        );
        assert_eq!(web["command"], json!(["echo", "bar"]));
        assert_eq!(web["entrypoint"], "bash");
        assert_eq!(
            web["healthcheck"],
            json!({"test": ["CMD", "b"], "retries": 3})
        );
    }

    #[test]
    fn environment_list_and_map_merge_by_key() {
        let web = web(
            "services:\n  web:\n    environment:\n      - A=1\n      - B=1\n      - C\n",
            "services:\n  web:\n    environment:\n      B: 2\n      D: ''\n",
        );
        assert_eq!(
            web["environment"],
            json!({"A": "1", "B": 2, "C": null, "D": ""})
        );
        let web = self::web(
            "services:\n  web:\n    environment: {A: 1, B: 1}\n",
            "services:\n  web:\n    environment: [B=2, A]\n",
        );
        assert_eq!(web["environment"], json!({"A": null, "B": "2"}));
    }

    #[test]
    fn label_like_attributes_merge_by_key() {
        let web = web(
            "services:\n  web:\n    labels: [a=1, b=1]\n    annotations: {a: 1}\n    sysctls: [net.core.somaxconn=1024]\n    build:\n      context: .\n      args: [X=1]\n",
            "services:\n  web:\n    labels: {b: 2}\n    annotations: [a=2]\n    sysctls: {net.core.somaxconn: 2048}\n    build:\n      args: {Y: 2}\n",
        );
        assert_eq!(web["labels"], json!({"a": "1", "b": 2}));
        assert_eq!(web["annotations"], json!({"a": "2"}));
        assert_eq!(web["sysctls"], json!({"net.core.somaxconn": 2048}));
        assert_eq!(web["build"]["args"], json!({"X": "1", "Y": 2}));
    }

    #[test]
    fn extra_hosts_union_whatever_the_syntax() {
        let web = web(
            "services:\n  web:\n    extra_hosts: ['db:10.0.0.1', 'cache=10.0.0.2']\n",
            "services:\n  web:\n    extra_hosts:\n      db: [10.0.0.1, 10.0.0.3]\n      api: 10.0.0.4\n",
        );
        assert_eq!(
            web["extra_hosts"],
            json!({"db": ["10.0.0.1", "10.0.0.3"], "cache": "10.0.0.2", "api": "10.0.0.4"})
        );
    }

    #[test]
    fn ports_merge_by_identity_across_syntaxes() {
        let web = web(
            "services:\n  web:\n    ports:\n      - 8080:80\n      - 127.0.0.1:9000:9000/udp\n      - 443\n",
            "services:\n  web:\n    ports:\n      - target: 80\n        published: '8080'\n        protocol: tcp\n        name: http\n      - 0.0.0.0:8080:80/TCP\n      - '127.0.0.1:9000:9000'\n      - 443\n",
        );
        assert_eq!(
            web["ports"],
            json!([
                "0.0.0.0:8080:80/TCP",
                "127.0.0.1:9000:9000/udp",
                443,
                "127.0.0.1:9000:9000"
            ])
        );
    }

    #[test]
    fn same_bind_twice_gives_one_volume() {
        // TestOverrideVolume
        let web = web(
            "services:\n  web:\n    volumes: ['./src:/src']\n",
            "services:\n  web:\n    volumes: ['./src:/src']\n",
        );
        assert_eq!(web["volumes"], json!(["./src:/src"]));
    }

    #[test]
    fn volumes_merge_by_target() {
        let web = web(
            "services:\n  web:\n    volumes:\n      - foo:/work\n      - /tmp\n      - type: volume\n        source: data\n        target: /data\n",
            "services:\n  web:\n    volumes:\n      - bar:/work:ro\n      - 'C:\\logs:/logs'\n      - other:/data\n",
        );
        assert_eq!(
            web["volumes"],
            json!(["bar:/work:ro", "/tmp", "other:/data", "C:\\logs:/logs"])
        );
    }

    #[test]
    fn devices_merge_by_container_path() {
        let web = web(
            "services:\n  web:\n    devices: ['/dev/sda:/dev/xvda:rwm', /dev/fuse]\n",
            "services:\n  web:\n    devices:\n      - /dev/sdb:/dev/xvda:r\n      - source: /dev/fuse\n        target: /dev/fuse\n",
        );
        assert_eq!(
            web["devices"],
            json!(["/dev/sdb:/dev/xvda:r", {"source": "/dev/fuse", "target": "/dev/fuse"}])
        );
    }

    #[test]
    fn secrets_and_configs_merge_by_target_or_source() {
        let web = web(
            "services:\n  web:\n    secrets: [db, api]\n    configs: [app]\n",
            "services:\n  web:\n    secrets:\n      - source: db2\n        target: /run/secrets/db\n      - source: api\n        target: key\n    configs:\n      - source: app\n        mode: 0440\n",
        );
        assert_eq!(
            web["secrets"],
            json!([{"source": "db2", "target": "/run/secrets/db"}, "api", {"source": "api", "target": "key"}])
        );
        assert_eq!(web["configs"], json!([{"source": "app", "mode": 0o440}]));
    }

    #[test]
    fn plain_lists_append_without_duplicates() {
        let web = web(
            "services:\n  web:\n    dns: 1.1.1.1\n    cap_add: [NET_ADMIN]\n    expose: [80]\n    profiles: [a]\n    env_file: a.env\n    security_opt: ['label:role:ROLE']\n",
            "services:\n  web:\n    dns: [8.8.8.8, 1.1.1.1]\n    cap_add: [NET_ADMIN, SYS_TIME]\n    expose: ['80', '81']\n    profiles: [b, a]\n    env_file:\n      - path: a.env\n        required: false\n      - b.env\n    security_opt: ['label:user:USER']\n",
        );
        assert_eq!(web["dns"], json!(["1.1.1.1", "8.8.8.8"]));
        assert_eq!(web["cap_add"], json!(["NET_ADMIN", "SYS_TIME"]));
        assert_eq!(web["expose"], json!(["80", "81"]));
        assert_eq!(web["profiles"], json!(["a", "b"]));
        assert_eq!(
            web["env_file"],
            json!([{"path": "a.env", "required": false}, "b.env"])
        );
        assert_eq!(
            web["security_opt"],
            json!(["label:role:ROLE", "label:user:USER"])
        );
    }

    #[test]
    fn short_build_then_long_build_sets_context() {
        // TestOverrideBuildContext
        let web = web(
            "services:\n  web:\n    build: .\n",
            "services:\n  web:\n    build:\n      context: src\n      target: prod\n",
        );
        assert_eq!(web["build"], json!({"context": "src", "target": "prod"}));
        let web = self::web(
            "services:\n  web:\n    build:\n      context: .\n      dockerfile: D\n",
            "services:\n  web:\n    build: src\n",
        );
        assert_eq!(web["build"], json!({"context": "src", "dockerfile": "D"}));
    }

    #[test]
    fn service_networks_list_then_mapping() {
        // TestOverrideNetworks
        let web = web(
            "services:\n  web:\n    networks: [front, back]\n",
            "services:\n  web:\n    networks:\n      front:\n        aliases: [www]\n",
        );
        assert_eq!(
            web["networks"],
            json!({"front": {"aliases": ["www"]}, "back": null})
        );
        let web = self::web(
            "services:\n  web:\n    networks:\n      front:\n        aliases: [www, api]\n",
            "services:\n  web:\n    networks: [front]\n",
        );
        assert_eq!(
            web["networks"],
            json!({"front": {"aliases": ["www", "api"]}})
        );
    }

    #[test]
    fn depends_on_list_then_mapping() {
        // TestOverrideDepends_on, TestOverridePartial
        let web = web(
            "services:\n  web:\n    depends_on: [db, cache]\n",
            "services:\n  web:\n    depends_on:\n      db:\n        required: false\n",
        );
        assert_eq!(
            web["depends_on"],
            json!({
                "db": {"condition": "service_started", "required": false},
                "cache": {"condition": "service_started", "required": true}
            })
        );
    }

    #[test]
    fn logging_options_merge_only_for_the_same_driver() {
        let base = "services:\n  web:\n    logging:\n      driver: json-file\n      options: {max-size: 1m}\n";
        let same = web(
            base,
            "services:\n  web:\n    logging:\n      options: {max-file: '3'}\n",
        );
        assert_eq!(
            same["logging"],
            json!({"driver": "json-file", "options": {"max-size": "1m", "max-file": "3"}})
        );
        let other = web(
            base,
            "services:\n  web:\n    logging:\n      driver: syslog\n      options: {tag: x}\n",
        );
        assert_eq!(
            other["logging"],
            json!({"driver": "syslog", "options": {"tag": "x"}})
        );
    }

    #[test]
    fn a_single_ulimit_is_replaced() {
        let web = web(
            "services:\n  web:\n    ulimits:\n      nproc: 65535\n      nofile: {soft: 1, hard: 2}\n",
            "services:\n  web:\n    ulimits:\n      nproc: {soft: 3, hard: 4}\n      nofile: 10\n",
        );
        assert_eq!(
            web["ulimits"],
            json!({"nproc": {"soft": 3, "hard": 4}, "nofile": 10})
        );
    }

    #[test]
    fn ipam_pools_merge_by_subnet() {
        let doc = merged(
            "networks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/24\n          gateway: 10.0.0.1\n",
            "networks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/24\n          gateway: 10.0.0.254\n        - subnet: 10.1.0.0/24\n",
        );
        assert_eq!(
            doc.to_json()["networks"]["n"]["ipam"]["config"],
            json!([{"subnet": "10.0.0.0/24", "gateway": "10.0.0.254"}, {"subnet": "10.1.0.0/24"}])
        );
    }

    #[test]
    fn an_empty_value_adds_nothing() {
        let doc = merged(
            "services:\n  web:\n    image: a\nvolumes:\n  data:\n    driver: local\n",
            "services:\n  web:\nvolumes:\n  data:\n",
        );
        assert_eq!(
            doc.to_json(),
            json!({"services": {"web": {"image": "a"}}, "volumes": {"data": {"driver": "local"}}})
        );
    }

    #[test]
    fn an_empty_file_changes_nothing() {
        // TestLoadWithEmptyFile
        let base = doc("name: demo\nservices:\n  web:\n    image: a\n", "base.yaml");
        let expected = base.to_json();
        let result = merge_documents(base, doc("", "empty.yaml")).expect("merges");
        assert_eq!(result.to_json(), expected);
    }

    #[test]
    fn documents_of_one_stream_merge_like_files() {
        // TestLoadMulmtiDocumentYaml
        let docs = parse(
            "services:\n  web:\n    image: a\n    init: true\n---\nservices:\n  web:\n    image: b\n",
            "multi.yaml",
            &Limits::default(),
        )
        .expect("parses");
        let result = docs
            .into_iter()
            .try_fold(YamlNode::null(Span::none()), merge_documents)
            .expect("merges");
        assert_eq!(
            result.to_json()["services"]["web"],
            json!({"image": "b", "init": true})
        );
    }

    #[test]
    fn reset_removes_keys_at_any_depth() {
        // Test_LoadWithReset and the spec's example
        let web = web(
            "services:\n  web:\n    image: app\n    build: .\n    ports: ['8080:80']\n    environment:\n      FOO: BAR\n",
            "services:\n  web:\n    build: !reset\n    ports: !reset []\n    environment:\n      FOO: !reset null\n",
        );
        assert_eq!(web, json!({"image": "app", "environment": {}}));
    }

    #[test]
    fn reset_removes_a_network_definition() {
        // TestResetRemove
        let doc = merged(
            "networks:\n  test:\n    external: true\n  other: {}\n",
            "networks:\n  test: !reset {}\n",
        );
        assert_eq!(doc.to_json()["networks"], json!({"other": {}}));
    }

    #[test]
    fn override_replaces_without_merging() {
        // TestOverrideReplace, TestLoadWithMultipleIncludeConflict
        let doc = merged(
            "networks:\n  test:\n    external: true\n    name: x\nservices:\n  web:\n    environment: {FOO: a, ZOT: b}\n    ports: ['8080:80']\n    depends_on: [db]\n",
            "networks:\n  test: !override {}\nservices:\n  web:\n    environment: !override\n      ZOT: QIX\n    ports: !override\n      - 8443:443\n    depends_on: !override [cache]\n",
        );
        let json = doc.to_json();
        assert_eq!(json["networks"]["test"], json!({}));
        assert_eq!(
            json["services"]["web"]["environment"],
            json!({"ZOT": "QIX"})
        );
        assert_eq!(json["services"]["web"]["ports"], json!(["8443:443"]));
        assert_eq!(json["services"]["web"]["depends_on"], json!(["cache"]));
        assert!(!has_tags(&doc));
    }

    #[test]
    fn reset_items_remove_entries_from_sets() {
        let web = web(
            "services:\n  web:\n    ports: ['8080:80', '9090:90']\n    environment: [A=1, B=2]\n",
            "services:\n  web:\n    ports: [!reset '8080:80']\n    environment: [!reset A]\n",
        );
        assert_eq!(web["ports"], json!(["9090:90"]));
        assert_eq!(web["environment"], json!({"B": "2"}));
    }

    #[test]
    fn reset_with_nothing_to_reset_removes_the_key() {
        let doc = merged(
            "services:\n  web:\n    image: a\n",
            "services:\n  web:\n    command: !reset\n    labels: !override {a: b}\n    volumes: [!reset '/x', '/y']\n",
        );
        assert_eq!(
            doc.to_json()["services"]["web"],
            json!({"image": "a", "labels": {"a": "b"}, "volumes": ["/y"]})
        );
        assert!(!has_tags(&doc));
    }

    #[test]
    fn tags_in_the_base_are_applied_too() {
        let doc = merged(
            "services:\n  web:\n    image: a\n    command: !reset [x]\n    labels: !override {a: b}\n",
            "services:\n  web:\n    labels: {c: d}\n",
        );
        assert_eq!(
            doc.to_json()["services"]["web"],
            json!({"image": "a", "labels": {"a": "b", "c": "d"}})
        );
        assert!(!has_tags(&doc));
    }

    #[test]
    fn strip_tags_drops_reset_values_of_a_single_document() {
        let mut node = doc(
            "services:\n  web:\n    image: a\n    command: !reset\n    ports: [!reset '80', '81']\n    labels: !override {a: b}\n",
            "one.yaml",
        );
        strip_tags(&mut node);
        assert_eq!(
            node.to_json()["services"]["web"],
            json!({"image": "a", "ports": ["81"], "labels": {"a": "b"}})
        );
        assert!(!has_tags(&node));
    }

    #[test]
    fn values_keep_the_span_of_the_file_they_come_from() {
        let doc = merged(
            "services:\n  web:\n    image: a\n    user: root\n    environment: [A=1]\n",
            "services:\n  web:\n    image: b\n    environment: {B: 2}\n",
        );
        let at = |p: &str| -> Span {
            let path = p
                .split('.')
                .fold(YamlPath::root(), |path, key| path.key(key));
            doc.at(&path).expect("exists").span.clone()
        };
        assert_eq!(&*at("services.web.image").file, "override.yaml");
        assert_eq!(at("services.web.image").line, 3);
        assert_eq!(&*at("services.web.user").file, "base.yaml");
        assert_eq!(at("services.web.user").line, 4);
        assert_eq!(&*at("services.web.environment.A").file, "base.yaml");
        assert_eq!(&*at("services.web.environment.B").file, "override.yaml");
    }

    #[test]
    fn a_mapping_over_a_sequence_is_reported_at_the_overlay() {
        let errs = errors(
            "services:\n  web:\n    environment: [A=1]\n    group_add: [a]\n",
            "services:\n  web:\n    environment: 'A=2'\n    group_add: {a: b}\n",
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs.iter().all(|d| &*d.span.file == "override.yaml"));
        assert_eq!(errs[0].path.to_string(), "services.web.environment");
        assert_eq!(errs[0].span.line, 3);
        assert_eq!(errs[1].path.to_string(), "services.web.group_add");
        assert!(
            errs[1].message.contains("cannot merge a mapping"),
            "{}",
            errs[1]
        );
    }

    #[test]
    fn a_duplicate_key_is_an_error_even_with_reset() {
        // Test_DuplicateReset: caught by the reader, before any merge
        let err = parse(
            "services:\n  web:\n    image: a\n    image: !reset\n",
            "dup.yaml",
            &Limits::default(),
        )
        .expect_err("fails")
        .to_string();
        assert!(err.contains("line 3") && err.contains("line 4"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_mapping_is_reported() {
        let errs = errors("services: {}\n", "- a\n");
        assert!(errs[0].message.contains("must be a mapping"), "{}", errs[0]);
    }

    #[test]
    fn a_set_written_as_a_mapping_is_reported() {
        let errs = errors(
            "services:\n  web:\n    ports: ['80']\n",
            "services:\n  web:\n    ports: {a: 80}\n",
        );
        assert_eq!(errs[0].path.to_string(), "services.web.ports");
    }

    #[test]
    fn merge_service_lays_the_extending_service_over_its_base() {
        let base = doc(
            "image: busybox\nenvironment: [TZ=utc, PORT=80]\nvolumes: ['common:/var/lib/backup/data:rw']\nsecurity_opt: ['label:role:ROLE']\n",
            "common.yaml",
        );
        let overlay = doc(
            "environment: {PORT: 8080}\nvolumes: ['cli:/var/lib/backup/data:ro']\nsecurity_opt: ['label:user:USER']\n",
            "cli.yaml",
        );
        let merged = merge_service("cli", &base, &overlay).expect("merges");
        assert_eq!(
            merged.to_json(),
            json!({
                "image": "busybox",
                "environment": {"TZ": "utc", "PORT": 8080},
                "volumes": ["cli:/var/lib/backup/data:ro"],
                "security_opt": ["label:role:ROLE", "label:user:USER"]
            })
        );
    }

    #[test]
    fn merge_service_over_an_empty_base() {
        let base = YamlNode::null(Span::none());
        let overlay = doc("image: a\ncommand: !reset\n", "x.yaml");
        let merged = merge_service("x", &base, &overlay).expect("merges");
        assert_eq!(merged.to_json(), json!({"image": "a"}));
    }

    #[test]
    fn short_port_identities() {
        let id = |s: &str| port_identity(&YamlNode::string(s, Span::none())).expect("has one");
        assert_eq!(id("80"), "||80|tcp");
        assert_eq!(id("8080:80"), "|8080|80|tcp");
        assert_eq!(id("127.0.0.1::80/udp"), "127.0.0.1||80|udp");
        assert_eq!(id("[::1]:8080:80"), "::1|8080|80|tcp");
        assert_eq!(id("0.0.0.0:8000-8001:80-81"), "|8000-8001|80-81|tcp");
    }
}
