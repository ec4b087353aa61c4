//! `extends` (spec 05-services.md "extends"): a service takes another service's definition,
//! from the same document or another file, and lays its own over it.
//!
//! Chains are followed to their end, each service resolved once per call (its result is
//! written back, so later references reuse it). A service that comes from a file in another
//! directory has its relative paths rewritten to stay right once it lives in this document.
//! Reading the other files is the caller's job, through [`ExtendsContext`].

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use crate::diag::{Diagnostic, Span, YamlPath};
use crate::merge::merge_service;
use crate::yaml::{Value, YamlNode};

/// How many `extends` may follow each other. Real files use two or three; the limit keeps
/// the recursion that resolves a chain far from the end of the stack.
pub const MAX_EXTENDS_DEPTH: usize = 64;

/// Access to the files that `extends.file` names.
pub trait ExtendsContext {
    /// The parsed and interpolated document of `file` (as written in `extends.file`, relative
    /// to `from_dir` unless absolute or remote), and the directory its relative paths are
    /// relative to. An error without a span is reported at the `extends.file` value.
    fn load(&mut self, file: &str, from_dir: &Path) -> Result<(YamlNode, PathBuf), Diagnostic>;

    /// Told each time an `extends` is followed (compose's "extends" event): the extending
    /// service, the service it extends, and the file when another file is named.
    fn followed(&mut self, _service: &str, _base: &str, _file: Option<&str>) {}
}

/// Resolves every service's `extends` in `doc`, whose relative paths are relative to `dir`.
/// Afterwards no service of `doc` has `extends`, except those reported in the diagnostics.
pub fn resolve_extends(
    doc: &mut YamlNode,
    dir: &Path,
    ctx: &mut dyn ExtendsContext,
) -> Vec<Diagnostic> {
    let names: Vec<String> = match doc.get("services").and_then(YamlNode::as_map) {
        Some(services) => services.keys().map(|key| key.name.clone()).collect(),
        None => return Vec::new(),
    };
    let root = std::mem::replace(doc, YamlNode::null(doc.span.clone()));
    let mut resolver = Resolver {
        ctx,
        documents: vec![Document {
            node: root,
            dir: dir.to_path_buf(),
        }],
        by_file: HashMap::new(),
        failed: HashSet::new(),
        diagnostics: Vec::new(),
    };
    for name in names {
        // Failures are recorded as diagnostics; the other services still resolve.
        let _ = resolver.resolve(0, &name, &mut Vec::new());
    }
    *doc = resolver.documents.swap_remove(0).node;
    resolver.diagnostics
}

/// Reports references to services that the document does not define: `depends_on`, `links`,
/// `volumes_from` and `service:NAME` in `network_mode`, `ipc`, `pid`, `uts`, `cgroup`.
/// `extends` does not bring the services a base refers to, so run this on the final model.
pub fn check_service_refs(doc: &YamlNode) -> Vec<Diagnostic> {
    let Some(services) = doc.get("services").and_then(YamlNode::as_map) else {
        return Vec::new();
    };
    let mut diagnostics = Vec::new();
    for (key, service) in services {
        let path = YamlPath::root().key("services").key(key.name.as_str());
        for (reference, span, at) in service_refs(service, &path) {
            if !services.contains_key(reference.as_str()) {
                let message = format!(
                    "service \"{}\" depends on undefined service \"{reference}\"",
                    key.name
                );
                diagnostics.push(Diagnostic::error(span, at, message).with_hint(
                    "define that service in this project: `extends` does not bring the services its base refers to",
                ));
            }
        }
    }
    diagnostics
}

/// The services `service` refers to, each with where it is named.
fn service_refs(service: &YamlNode, path: &YamlPath) -> Vec<(String, Span, YamlPath)> {
    let mut refs = Vec::new();
    let mut named = |span: &Span, at: YamlPath, name: Option<&str>| {
        if let Some(name) = name.filter(|name| !name.is_empty()) {
            refs.push((name.to_string(), span.clone(), at));
        }
    };
    if let Some(depends_on) = service.get("depends_on") {
        let at = path.key("depends_on");
        match &depends_on.value {
            Value::Seq(items) => items.iter().enumerate().for_each(|(i, item)| {
                named(&item.span, at.index(i), item.as_str());
            }),
            Value::Map(entries) => entries.keys().for_each(|key| {
                named(&key.span, at.key(key.name.as_str()), Some(&key.name));
            }),
            _ => {}
        }
    }
    for attribute in ["links", "volumes_from"] {
        let items = service
            .get(attribute)
            .and_then(YamlNode::as_seq)
            .unwrap_or(&[]);
        for (i, item) in items.iter().enumerate() {
            let text = item.as_str().unwrap_or_default();
            if !text.starts_with("container:") {
                named(
                    &item.span,
                    path.key(attribute).index(i),
                    text.split(':').next(),
                );
            }
        }
    }
    for attribute in ["network_mode", "ipc", "pid", "uts", "cgroup"] {
        if let Some(node) = service.get(attribute) {
            let name = node.as_str().and_then(|s| s.strip_prefix("service:"));
            named(&node.span, path.key(attribute), name);
        }
    }
    refs
}

struct Document {
    node: YamlNode,
    dir: PathBuf,
}

/// A failure already reported as a diagnostic.
struct Failed;

/// A service being resolved: its document (an index into `documents`) and name.
type Link = (usize, String);

struct Resolver<'c> {
    ctx: &'c mut dyn ExtendsContext,
    /// The document being resolved first, then the files `extends` named.
    documents: Vec<Document>,
    by_file: HashMap<String, usize>,
    failed: HashSet<Link>,
    diagnostics: Vec<Diagnostic>,
}

/// What an `extends` names.
struct Target {
    service: String,
    file: Option<String>,
    /// Where to report a missing service.
    span: Span,
}

impl Resolver<'_> {
    fn service(&self, doc: usize, name: &str) -> Option<&YamlNode> {
        self.documents[doc].node.get("services")?.get(name)
    }

    fn file_label(&self, doc: usize) -> String {
        self.documents[doc].node.span.file.to_string()
    }

    /// The service with its `extends` applied, written back into its document.
    fn resolve(
        &mut self,
        doc: usize,
        name: &str,
        chain: &mut Vec<Link>,
    ) -> Result<YamlNode, Failed> {
        let link = (doc, name.to_string());
        if self.failed.contains(&link) {
            return Err(Failed);
        }
        let service = self.service(doc, name).cloned().ok_or(Failed)?;
        if service.get("extends").is_none() {
            return Ok(service);
        }
        chain.push(link.clone());
        let result = self.follow(doc, name, service, chain);
        chain.pop();
        match result {
            Ok(merged) => {
                let slot = self.documents[doc]
                    .node
                    .get_mut("services")
                    .and_then(|services| services.get_mut(name));
                if let Some(slot) = slot {
                    *slot = merged.clone();
                }
                Ok(merged)
            }
            Err(failed) => {
                self.failed.insert(link);
                Err(failed)
            }
        }
    }

    fn follow(
        &mut self,
        doc: usize,
        name: &str,
        mut service: YamlNode,
        chain: &mut Vec<Link>,
    ) -> Result<YamlNode, Failed> {
        let path = YamlPath::root().key("services").key(name).key("extends");
        let (key, extends) = service
            .as_map_mut()
            .and_then(|entries| entries.shift_remove_entry("extends"))
            .ok_or(Failed)?;
        // A block mapping starts at its first key: the `extends` key reads better.
        let at = match extends.value {
            Value::Map(_) => key.span,
            _ => extends.span.clone(),
        };
        let target = self.target(name, &extends, &at, &path)?;
        self.ctx
            .followed(name, &target.service, target.file.as_deref());
        let base_doc = match &target.file {
            None => doc,
            Some(file) => {
                let span = extends.get("file").map_or(&extends.span, |n| &n.span);
                self.load(doc, file, span, &path.key("file"))?
            }
        };
        let base_link = (base_doc, target.service.clone());
        if let Some(start) = chain.iter().position(|link| *link == base_link) {
            let message = self.cycle_message(&chain[start..], &base_link);
            return self.fail(Diagnostic::error(at, path, message));
        }
        if self.service(base_doc, &target.service).is_none() {
            let message = format!(
                "cannot extend service \"{name}\": service \"{}\" not found in {}",
                target.service,
                self.file_label(base_doc)
            );
            return self.fail(Diagnostic::error(target.span, path.key("service"), message));
        }
        if chain.len() > MAX_EXTENDS_DEPTH {
            let first = chain.first().map_or(name, |(_, first)| first.as_str());
            let message = format!(
                "`extends` nests deeper than {MAX_EXTENDS_DEPTH} levels, starting from service \"{first}\""
            );
            return self.fail(
                Diagnostic::error(at, path, message)
                    .with_hint("let the services extend a common base instead of each other"),
            );
        }
        let mut base = self.resolve(base_doc, &target.service, chain)?;
        if base_doc != doc {
            let relocation =
                Relocation::between(&self.documents[base_doc].dir, &self.documents[doc].dir);
            if let Some(relocation) = relocation {
                relocation.service(&mut base);
            }
        }
        merge_service(name, &base, &service).map_err(|diagnostics| {
            self.diagnostics.extend(diagnostics);
            Failed
        })
    }

    fn fail<T>(&mut self, diagnostic: Diagnostic) -> Result<T, Failed> {
        self.diagnostics.push(diagnostic);
        Err(Failed)
    }

    fn target(
        &mut self,
        name: &str,
        extends: &YamlNode,
        at: &Span,
        path: &YamlPath,
    ) -> Result<Target, Failed> {
        match &extends.value {
            Value::String(service) if !service.is_empty() => Ok(Target {
                service: service.clone(),
                file: None,
                span: extends.span.clone(),
            }),
            Value::Map(_) => {
                let service = extends
                    .get("service")
                    .filter(|n| n.as_str().is_some_and(|s| !s.is_empty()));
                let Some(service) = service else {
                    let message = format!("extends.{name}.service is required");
                    return self.fail(Diagnostic::error(at.clone(), path.key("service"), message));
                };
                let file = match extends.get("file") {
                    None => None,
                    Some(file) if file.is_null() => None,
                    Some(file) => match file.as_str() {
                        Some(text) => Some(text.to_string()),
                        None => {
                            let message = format!("expected a file path, not a {}", file.kind());
                            return self.fail(Diagnostic::error(
                                file.span.clone(),
                                path.key("file"),
                                message,
                            ));
                        }
                    },
                };
                Ok(Target {
                    service: service.as_str().unwrap_or_default().to_string(),
                    file,
                    span: service.span.clone(),
                })
            }
            _ => self.fail(
                Diagnostic::error(
                    at.clone(),
                    path.clone(),
                    "`extends` takes a service name or a mapping with `service` and `file`",
                )
                .with_hint("write `extends: {service: base, file: common.yaml}`"),
            ),
        }
    }

    /// The document of `file`, named from document `from`, loaded once per call.
    fn load(
        &mut self,
        from: usize,
        file: &str,
        span: &Span,
        path: &YamlPath,
    ) -> Result<usize, Failed> {
        let from_dir = self.documents[from].dir.clone();
        let key = file_key(file, &from_dir);
        if let Some(&doc) = self.by_file.get(&key) {
            return Ok(doc);
        }
        match self.ctx.load(file, &from_dir) {
            Ok((node, dir)) => {
                self.documents.push(Document { node, dir });
                let doc = self.documents.len() - 1;
                self.by_file.insert(key, doc);
                Ok(doc)
            }
            Err(mut diagnostic) => {
                if diagnostic.span.is_none() {
                    diagnostic.span = span.clone();
                    diagnostic.path = path.clone();
                }
                self.fail(diagnostic)
            }
        }
    }

    fn cycle_message(&self, chain: &[Link], back: &Link) -> String {
        let across_files = chain.iter().any(|(doc, _)| *doc != back.0);
        let links: Vec<String> = chain
            .iter()
            .chain(std::iter::once(back))
            .map(|(doc, name)| match across_files {
                true => format!("{name} ({})", self.file_label(*doc)),
                false => name.clone(),
            })
            .collect();
        format!("circular reference in extends: {}", links.join(" -> "))
    }
}

/// Identifies a file named by `extends.file`, so each is loaded once. Remote references
/// (`scheme:...`) and absolute paths stand for themselves.
fn file_key(file: &str, from_dir: &Path) -> String {
    let scheme = file
        .split_once(':')
        .is_some_and(|(scheme, _)| scheme.len() > 1 && scheme.bytes().all(is_scheme_byte));
    if scheme || Path::new(file).is_absolute() {
        file.to_string()
    } else {
        normalize(&from_dir.join(file))
            .to_string_lossy()
            .into_owned()
    }
}

fn is_scheme_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// Rewrites paths relative to one directory (the base's file) so they are relative to
/// another (the extending document's).
struct Relocation {
    /// The base's directory, relative to the extending document's when both are relative or
    /// both absolute; as given otherwise.
    prefix: PathBuf,
}

impl Relocation {
    /// `None` when nothing needs rewriting.
    fn between(from: &Path, to: &Path) -> Option<Relocation> {
        let (from, to) = (normalize(from), normalize(to));
        if from == to {
            return None;
        }
        let prefix = relative_to(&from, &to).unwrap_or(from);
        Some(Relocation { prefix })
    }

    /// A relative path rewritten; absolute paths, `~` paths and empty ones stay as they are.
    fn path(&self, path: &str) -> Option<String> {
        let windows_absolute = path.len() > 2
            && path.as_bytes()[0].is_ascii_alphabetic()
            && path[1..].starts_with([':'])
            && path[2..].starts_with(['\\', '/']);
        if path.is_empty()
            || path.starts_with('~')
            || Path::new(path).is_absolute()
            || windows_absolute
        {
            return None;
        }
        let joined = normalize(&self.prefix.join(path));
        let text = joined.to_string_lossy();
        Some(if text.is_empty() {
            ".".into()
        } else {
            text.into_owned()
        })
    }

    /// A build context: URLs and other builder references stay as they are.
    fn context(&self, context: &str) -> Option<String> {
        let remote = [
            "http://",
            "https://",
            "git://",
            "ssh://",
            "github.com/",
            "git@",
        ]
        .iter()
        .any(|prefix| context.starts_with(prefix));
        if remote || context.contains("://") || context.starts_with("service:") {
            return None;
        }
        self.path(context)
    }

    /// A bind source keeps a leading `./` so the short syntax still reads it as a path and
    /// not as a volume name.
    fn bind_source(&self, source: &str) -> Option<String> {
        self.path(source).map(|path| {
            if path.starts_with(['.', '/']) {
                path
            } else {
                format!("./{path}")
            }
        })
    }

    fn service(&self, service: &mut YamlNode) {
        let Some(entries) = service.as_map_mut() else {
            return;
        };
        if let Some(build) = entries.get_mut("build") {
            self.build(build);
        }
        for attribute in ["env_file", "label_file"] {
            if let Some(files) = entries.get_mut(attribute) {
                self.files(files);
            }
        }
        if let Some(Value::Seq(volumes)) = entries.get_mut("volumes").map(|n| &mut n.value) {
            volumes.iter_mut().for_each(|volume| self.volume(volume));
        }
        let watch = entries
            .get_mut("develop")
            .and_then(|develop| develop.get_mut("watch"));
        if let Some(Value::Seq(rules)) = watch.map(|n| &mut n.value) {
            for path in rules.iter_mut().filter_map(|rule| rule.get_mut("path")) {
                rewrite(path, |p| self.path(p));
            }
        }
    }

    fn build(&self, build: &mut YamlNode) {
        if build.as_str().is_some() {
            rewrite(build, |p| self.context(p));
            return;
        }
        if let Some(context) = build.get_mut("context") {
            rewrite(context, |p| self.context(p));
        }
        if let Some(contexts) = build.get_mut("additional_contexts") {
            rewrite_named(contexts, |p| self.context(p));
        }
        if let Some(ssh) = build.get_mut("ssh") {
            rewrite_named(ssh, |p| self.path(p));
        }
    }

    /// `env_file` and `label_file`: a path, or a list of paths or `{path: ...}` entries.
    fn files(&self, files: &mut YamlNode) {
        match &mut files.value {
            Value::String(_) => rewrite(files, |p| self.path(p)),
            Value::Seq(items) => {
                for item in items {
                    match item.get_mut("path") {
                        Some(path) => rewrite(path, |p| self.path(p)),
                        None => rewrite(item, |p| self.path(p)),
                    }
                }
            }
            _ => {}
        }
    }

    /// A bind mount's host path: `./src:/dst` in the short syntax (a source that does not
    /// start with `.` is a volume name or absolute), `source` of a `type: bind` mount.
    fn volume(&self, volume: &mut YamlNode) {
        if let Some(text) = volume.as_str() {
            let Some((source, rest)) = text.split_once(':') else {
                return;
            };
            if source.starts_with('.')
                && let Some(source) = self.bind_source(source)
            {
                volume.value = Value::String(format!("{source}:{rest}"));
            }
            return;
        }
        if volume.get("type").and_then(YamlNode::as_str) == Some("bind")
            && let Some(source) = volume.get_mut("source")
        {
            rewrite(source, |p| self.bind_source(p));
        }
    }
}

/// Replaces a string node's text with `f`'s answer, if any.
fn rewrite(node: &mut YamlNode, f: impl Fn(&str) -> Option<String>) {
    if let Value::String(text) = &mut node.value
        && let Some(new) = f(text)
    {
        *text = new;
    }
}

/// Rewrites the values of `NAME: path` mappings and `NAME=path` lists.
fn rewrite_named(node: &mut YamlNode, f: impl Fn(&str) -> Option<String>) {
    match &mut node.value {
        Value::Map(entries) => entries.values_mut().for_each(|value| rewrite(value, &f)),
        Value::Seq(items) => {
            for item in items {
                rewrite(item, |text| {
                    let (name, path) = text.split_once('=')?;
                    f(path).map(|path| format!("{name}={path}"))
                });
            }
        }
        _ => {}
    }
}

/// Lexically cleans a path: drops `.`, folds `name/..`. Does not touch the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut parts: Vec<Component> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match parts.last() {
                Some(Component::Normal(_)) => {
                    parts.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => parts.push(component),
            },
            other => parts.push(other),
        }
    }
    parts.iter().collect()
}

/// `target` as seen from `base` (both normalized), when that can be told without the file
/// system.
fn relative_to(target: &Path, base: &Path) -> Option<PathBuf> {
    if target.is_absolute() != base.is_absolute() {
        return None;
    }
    let target: Vec<Component> = target.components().collect();
    let base: Vec<Component> = base.components().collect();
    let common = target.iter().zip(&base).take_while(|(a, b)| a == b).count();
    if base[common..].contains(&Component::ParentDir) {
        return None;
    }
    let mut relative = PathBuf::new();
    base[common..].iter().for_each(|_| relative.push(".."));
    target[common..].iter().for_each(|part| relative.push(part));
    Some(relative)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::merge_documents;
    use crate::yaml::{Limits, Tag, parse};
    use serde_json::{Value as Json, json};

    /// compose-go's loader test data; `COMPOSE_CORPUS` points elsewhere if the corpus moved.
    fn testdata() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/compose-corpus/compose-go-testdata/loader/testdata")
    }

    /// Files from memory first, then from disk; `remote:` names files under `remote/`, the
    /// way compose-go's tests plug in a remote loader.
    #[derive(Default)]
    struct Files {
        memory: HashMap<PathBuf, String>,
        events: Vec<String>,
    }

    impl Files {
        fn with(mut self, path: impl AsRef<Path>, text: &str) -> Self {
            self.memory
                .insert(normalize(path.as_ref()), text.to_string());
            self
        }
    }

    impl ExtendsContext for Files {
        fn load(&mut self, file: &str, from_dir: &Path) -> Result<(YamlNode, PathBuf), Diagnostic> {
            let path = match file.strip_prefix("remote:") {
                Some(rest) => testdata().join("remote").join(rest),
                None => normalize(&from_dir.join(file)),
            };
            let text = match self.memory.get(&path) {
                Some(text) => text.clone(),
                None => std::fs::read_to_string(&path).map_err(|e| {
                    Diagnostic::global(format!("{}: file does not exist ({e})", path.display()))
                })?,
            };
            let name = path.display().to_string();
            let mut docs =
                parse(&text, &name, &Limits::default()).map_err(|e| e.diagnostics[0].clone())?;
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            Ok((
                docs.pop().unwrap_or_else(|| YamlNode::null(Span::none())),
                dir,
            ))
        }

        fn followed(&mut self, service: &str, base: &str, file: Option<&str>) {
            self.events
                .push(format!("{service} -> {base} in {}", file.unwrap_or("-")));
        }
    }

    /// Loads `path` through `files` and resolves its `extends`.
    fn resolve(files: &mut Files, path: impl AsRef<Path>) -> (YamlNode, Vec<Diagnostic>) {
        let path = path.as_ref().to_string_lossy().into_owned();
        let (mut doc, dir) = files.load(&path, Path::new("")).expect("loads");
        let diagnostics = resolve_extends(&mut doc, &dir, files);
        (doc, diagnostics)
    }

    fn resolved(files: &mut Files, path: impl AsRef<Path>) -> YamlNode {
        let (doc, diagnostics) = resolve(files, path);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert!(
            !mentions_extends(&doc),
            "extends left in {:#}",
            doc.to_json()
        );
        doc
    }

    fn mentions_extends(doc: &YamlNode) -> bool {
        let mut found = false;
        let mut doc = doc.clone();
        doc.walk_mut(&mut |n| {
            found |= n.tag != Tag::None || n.get("extends").is_some();
        });
        found
    }

    fn service(doc: &YamlNode, name: &str) -> Json {
        doc.to_json()["services"][name].clone()
    }

    fn messages(diagnostics: &[Diagnostic]) -> String {
        diagnostics
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A root file in `testdata/extends` that extends services of `base.yaml`.
    fn base_importer(services: &str) -> (Files, PathBuf) {
        let root = testdata().join("extends/root.yaml");
        let files = Files::default().with(&root, &format!("services:\n{services}"));
        (files, root)
    }

    #[test]
    fn services_of_another_file_are_inherited() {
        // TestExtends, TestExtendsPort, TestExtendsUlimits
        let (mut files, root) = base_importer(
            "  importer:\n    extends: {file: base.yaml, service: base}\n    hostname: importer\n  nested:\n    extends: {file: base.yaml, service: another}\n    hostname: nested\n  ports:\n    extends: {file: base.yaml, service: with-port}\n    hostname: ports\n  limits:\n    extends: {file: base.yaml, service: withUlimits}\n",
        );
        let doc = resolved(&mut files, root);
        assert_eq!(
            service(&doc, "importer"),
            json!({"image": "base", "hostname": "importer"})
        );
        assert_eq!(
            service(&doc, "nested"),
            json!({"image": "base", "hostname": "nested"})
        );
        assert_eq!(service(&doc, "ports")["ports"], json!(["8000:8000"]));
        assert_eq!(service(&doc, "ports")["hostname"], "ports");
        assert_eq!(
            service(&doc, "limits")["ulimits"],
            json!({"nproc": 65535, "nofile": {"soft": 20000, "hard": 40000}})
        );
        assert_eq!(files.events.len(), 5, "{:?}", files.events);
        assert!(files.events.contains(&"another -> base in -".to_string()));
    }

    #[test]
    fn a_chain_through_files_rebases_the_build_context() {
        // TestExtendsRelativePath, TestIncludeWithExtends
        let root = testdata().join("root.yaml");
        let mut files = Files::default().with(
            &root,
            "services:\n  app:\n    extends: {file: extends/base.yaml, service: with-build}\n",
        );
        let doc = resolved(&mut files, root);
        assert_eq!(service(&doc, "app"), json!({"build": "extends"}));
        assert_eq!(files.events.len(), 2);

        let mut files = Files::default();
        let doc = resolved(&mut files, testdata().join("extends/nested.yaml"));
        assert_eq!(service(&doc, "with-build"), json!({"build": "."}));
    }

    #[test]
    fn extending_an_empty_service() {
        // TestExtendsNil
        let (mut files, root) =
            base_importer("  app:\n    extends: {file: base.yaml, service: nil}\n    image: x\n");
        let doc = resolved(&mut files, root);
        assert_eq!(service(&doc, "app"), json!({"image": "x"}));
    }

    #[test]
    fn extends_without_service_is_reported() {
        // TestExtendsWihtMissingService
        let (mut files, root) =
            base_importer("  app:\n    image: x\n    extends:\n      file: base.yaml\n");
        let (_, diagnostics) = resolve(&mut files, &root);
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].message, "extends.app.service is required");
        assert_eq!(diagnostics[0].span.line, 4);
        assert_eq!(
            diagnostics[0].path.to_string(),
            "services.app.extends.service"
        );
    }

    #[test]
    fn extending_the_same_service_of_an_earlier_file_keeps_one_port() {
        // TestExtendsPortOverride
        let first = testdata().join("extends/ports.yaml");
        let second = testdata().join("extends/second.yaml");
        let mut files = Files::default().with(
            &second,
            "services:\n  test:\n    extends: {file: ports.yaml, service: test}\n",
        );
        let (base, _) = files
            .load(&first.to_string_lossy(), Path::new(""))
            .expect("loads");
        let overlay = resolved(&mut files, &second);
        let doc = merge_documents(base, overlay).expect("merges");
        assert_eq!(service(&doc, "test")["ports"], json!(["8080:8080"]));
    }

    #[test]
    fn same_file_extends_inside_an_extended_file() {
        // TestLoadExtendsSameFile
        let mut files = Files::default()
            .with(
                "/proj/compose.yaml",
                "services:\n  a:\n    extends: {file: sub/compose.yaml, service: service}\n  b:\n    extends: {file: sub/compose.yaml, service: base}\n",
            )
            .with(
                "/proj/sub/compose.yaml",
                "services:\n  base:\n    build: ..\n  service:\n    extends: base\n    image: svc\n",
            );
        let doc = resolved(&mut files, "/proj/compose.yaml");
        assert_eq!(service(&doc, "a"), json!({"build": ".", "image": "svc"}));
        assert_eq!(service(&doc, "b"), json!({"build": "."}));
        assert_eq!(files.events.len(), 3, "{:?}", files.events);
    }

    #[test]
    fn references_to_services_the_project_lacks_are_reported() {
        // TestExtendsWithServiceRef
        let services = "  a:\n    extends: {file: depends_on.yaml, service: with_depends_on}\n  b:\n    extends: {file: depends_on.yaml, service: with_volumes_from}\n  c:\n    extends: {file: depends_on.yaml, service: with_ipc}\n  d:\n    extends: {file: depends_on.yaml, service: with_network_mode}\n";
        let (mut files, root) = base_importer(services);
        let doc = resolved(&mut files, root);
        let problems = check_service_refs(&doc);
        assert_eq!(problems.len(), 4, "{}", messages(&problems));
        assert!(
            problems
                .iter()
                .all(|d| d.message.contains("depends on undefined service \"zot\"")),
            "{}",
            messages(&problems)
        );
        assert!(problems[0].span.file.ends_with("depends_on.yaml"));
        assert_eq!(problems[0].path.to_string(), "services.a.depends_on[0]");

        let (mut files, root) = base_importer(&format!("{services}  zot:\n    image: z\n"));
        let doc = resolved(&mut files, root);
        assert!(check_service_refs(&doc).is_empty());
    }

    #[test]
    fn service_refs_cover_every_attribute() {
        let doc = parse(
            "services:\n  web:\n    depends_on: {db: {condition: service_healthy}}\n    links: ['cache:c']\n    volumes_from: ['data:ro', 'container:x']\n    pid: 'service:p'\n    network_mode: host\n  db: {}\n",
            "c.yaml",
            &Limits::default(),
        )
        .expect("parses")
        .remove(0);
        let problems = check_service_refs(&doc);
        let names: Vec<&str> = problems
            .iter()
            .map(|d| d.message.rsplit('"').nth(1).unwrap_or_default())
            .collect();
        assert_eq!(names, ["cache", "data", "p"]);
    }

    #[test]
    fn override_replaces_inherited_depends_on() {
        // TestLoadExtendsDependsOn
        let mut files = Files::default().with(
            "/p/compose.yaml",
            "services:\n  service_a: {image: a}\n  service_b: {image: b}\n  base:\n    image: x\n    depends_on: [service_b]\n  app:\n    extends: base\n    depends_on: !override [service_a]\n",
        );
        let doc = resolved(&mut files, "/p/compose.yaml");
        assert_eq!(service(&doc, "app")["depends_on"], json!(["service_a"]));
        assert_eq!(service(&doc, "base")["depends_on"], json!(["service_b"]));
    }

    #[test]
    fn each_link_of_a_chain_is_followed_once() {
        // TestLoadExtendsListener
        let mut files = Files::default().with(
            "/p/compose.yaml",
            "services:\n  foo:\n    extends: bar\n  bar:\n    extends: wee\n  wee:\n    extends: last\n  last:\n    image: l\n    user: root\n",
        );
        let doc = resolved(&mut files, "/p/compose.yaml");
        assert_eq!(files.events.len(), 3, "{:?}", files.events);
        for name in ["foo", "bar", "wee"] {
            assert_eq!(service(&doc, name), json!({"image": "l", "user": "root"}));
        }
    }

    #[test]
    fn a_chain_inside_another_file_counts_each_link() {
        // TestLoadExtendsListenerMultipleFiles
        let mut files = Files::default()
            .with(
                "/p/compose.yaml",
                "services:\n  a:\n    extends: {file: sub/compose.yaml, service: b}\n",
            )
            .with(
                "/p/sub/compose.yaml",
                "services:\n  b:\n    extends: c\n  c:\n    image: c\n",
            );
        let doc = resolved(&mut files, "/p/compose.yaml");
        assert_eq!(service(&doc, "a"), json!({"image": "c"}));
        assert_eq!(files.events, ["a -> b in sub/compose.yaml", "b -> c in -"]);
    }

    #[test]
    fn reset_on_the_extending_service_drops_inherited_values() {
        // TestExtendsReset, TestLoadExtendsWihReset
        let mut files = Files::default();
        let doc = resolved(&mut files, testdata().join("extends/reset.yaml"));
        assert_eq!(service(&doc, "base"), json!({"image": "alpine:latest"}));

        let mut files = Files::default().with(
            "/p/compose.yaml",
            "services:\n  base:\n    image: b\n    volumes: ['/a:/a']\n  app:\n    extends: base\n    volumes: !reset []\n",
        );
        let doc = resolved(&mut files, "/p/compose.yaml");
        assert_eq!(service(&doc, "app"), json!({"image": "b"}));
    }

    #[test]
    fn the_extending_service_wins() {
        // TestLoadExtends, TestLoadExtendsOverrideCommand
        let mut files = Files::default().with(
            "/p/compose.yaml",
            "services:\n  foo:\n    image: foo\n    extends: bar\n  bar:\n    image: bar\n    command: [echo, hi]\n  baz:\n    extends: bar\n    command: \"printf '%s' 'a b'\"\n",
        );
        let doc = resolved(&mut files, "/p/compose.yaml");
        assert_eq!(
            service(&doc, "foo"),
            json!({"image": "foo", "command": ["echo", "hi"]})
        );
        assert_eq!(service(&doc, "baz")["command"], "printf '%s' 'a b'");
    }

    #[test]
    fn build_contexts_from_other_directories() {
        // TestLoadExtendsMultipleFiles
        let mut files = Files::default()
            .with(
                "/p/compose.yaml",
                "services:\n  a:\n    extends: {file: a/compose.yaml, service: a}\n  b:\n    extends: {file: b/compose.yaml, service: b}\n",
            )
            .with("/p/a/compose.yaml", "services:\n  a:\n    build: .\n")
            .with("/p/b/compose.yaml", "services:\n  b:\n    build:\n      target: t\n");
        let doc = resolved(&mut files, "/p/compose.yaml");
        assert_eq!(service(&doc, "a"), json!({"build": "a"}));
        // no context: the project directory, as for any build without one
        assert_eq!(service(&doc, "b"), json!({"build": {"target": "t"}}));
    }

    #[test]
    fn env_files_resolve_from_the_extended_file() {
        // TestLoadWithExtends
        let mut files = Files::default();
        let doc = resolved(&mut files, testdata().join("compose-test-extends.yaml"));
        let importer = service(&doc, "importer");
        assert_eq!(importer["env_file"], json!(["subdir/extra.env"]));
        assert_eq!(importer["volumes"], json!(["/opt/data:/var/lib/mysql"]));
        assert_eq!(importer["image"], "nginx");
        let span = doc
            .at(&YamlPath::root()
                .key("services")
                .key("importer")
                .key("image"))
            .expect("image")
            .span
            .clone();
        assert!(
            span.file.ends_with("compose-test-extends-imported.yaml"),
            "{span}"
        );
    }

    #[test]
    fn url_contexts_are_kept() {
        // TestLoadWithExtendsWithContextUrl
        let mut files = Files::default();
        let doc = resolved(
            &mut files,
            testdata().join("compose-test-extends-with-context-url.yaml"),
        );
        assert_eq!(
            service(&doc, "importer-with-https-url")["build"]["context"],
            "https://github.com/docker/compose.git"
        );
    }

    #[test]
    fn remote_files_resolve_relative_to_their_local_copy() {
        // TestLoadWithRemoteResources
        let root = testdata().join("root.yaml");
        let mut files = Files::default().with(
            &root,
            "services:\n  foo:\n    extends: {file: 'remote:compose.yaml', service: foo}\n",
        );
        let doc = resolved(&mut files, root);
        let foo = service(&doc, "foo");
        assert_eq!(foo["env_file"], json!(["remote/env"]));
        assert_eq!(foo["volumes"], json!(["./remote:/foo"]));
    }

    #[test]
    fn a_missing_file_is_reported_at_extends_file() {
        // TestLoadWithMissingResources
        let mut files = Files::default().with(
            "/p/compose.yaml",
            "services:\n  foo:\n    extends:\n      service: foo\n      file: 'remote:nope.yaml'\n",
        );
        let (_, diagnostics) = resolve(&mut files, "/p/compose.yaml");
        assert_eq!(diagnostics.len(), 1);
        assert!(
            diagnostics[0].message.contains("does not exist"),
            "{}",
            diagnostics[0]
        );
        assert_eq!(diagnostics[0].span.line, 5);
        assert_eq!(&*diagnostics[0].span.file, "/p/compose.yaml");
    }

    #[test]
    fn cycles_across_files_are_reported() {
        // TestLoadWithResourcesCycle
        let mut files = Files::default().with(
            "/p/compose.yaml",
            "services:\n  main:\n    extends: {file: 'remote:cycle/compose.yaml', service: foo}\n",
        );
        let (_, diagnostics) = resolve(&mut files, "/p/compose.yaml");
        assert_eq!(diagnostics.len(), 1, "{}", messages(&diagnostics));
        let message = &diagnostics[0].message;
        assert!(message.starts_with("circular reference"), "{message}");
        assert!(
            message.contains("foo (") && message.contains("bar ("),
            "{message}"
        );
    }

    #[test]
    fn cycles_in_one_file_are_reported_once() {
        let mut files = Files::default().with(
            "/p/compose.yaml",
            "services:\n  a:\n    extends: b\n  b:\n    extends: c\n  c:\n    extends: a\n  d:\n    extends: d\n  e:\n    extends: a\n",
        );
        let (_, diagnostics) = resolve(&mut files, "/p/compose.yaml");
        let text = messages(&diagnostics);
        assert_eq!(diagnostics.len(), 2, "{text}");
        assert!(
            text.contains("circular reference in extends: a -> b -> c -> a"),
            "{text}"
        );
        assert!(
            text.contains("circular reference in extends: d -> d"),
            "{text}"
        );
    }

    /// `s0` extends `s1`, which extends `s2`, ... down to `s{hops}`.
    fn extends_chain(hops: usize) -> String {
        let mut text = format!("services:\n  s{hops}:\n    image: base\n");
        for i in 0..hops {
            text.push_str(&format!("  s{i}:\n    extends: s{}\n", i + 1));
        }
        text
    }

    #[test]
    fn a_chain_as_deep_as_the_limit_resolves() {
        let mut files = Files::default().with("/p/compose.yaml", &extends_chain(MAX_EXTENDS_DEPTH));
        let doc = resolved(&mut files, "/p/compose.yaml");
        assert_eq!(service(&doc, "s0"), json!({"image": "base"}));
    }

    #[test]
    fn a_chain_deeper_than_the_limit_is_an_error_not_a_stack_overflow() {
        // Each level of a chain is a level of recursion: 10000 of them (a 300 KB file)
        // used to overflow the stack and abort the process.
        let mut files = Files::default().with("/p/compose.yaml", &extends_chain(10_000));
        let (_, diagnostics) = resolve(&mut files, "/p/compose.yaml");
        assert!(!diagnostics.is_empty());
        let first = &diagnostics[0];
        assert_eq!(
            first.message,
            format!(
                "`extends` nests deeper than {MAX_EXTENDS_DEPTH} levels, starting from service \"s0\""
            )
        );
        let hops = MAX_EXTENDS_DEPTH;
        assert_eq!(first.path.to_string(), format!("services.s{hops}.extends"));
        let mut files =
            Files::default().with("/p/compose.yaml", &extends_chain(MAX_EXTENDS_DEPTH + 1));
        let (_, diagnostics) = resolve(&mut files, "/p/compose.yaml");
        assert_eq!(diagnostics.len(), 1, "{}", messages(&diagnostics));
    }

    #[test]
    fn a_missing_base_service_is_reported() {
        let mut files = Files::default().with(
            "/p/compose.yaml",
            "services:\n  a:\n    extends: nope\n  b:\n    extends: {service: ghost, file: ../p/compose.yaml}\n  c:\n    extends: [x]\n",
        );
        let (_, diagnostics) = resolve(&mut files, "/p/compose.yaml");
        let text = messages(&diagnostics);
        assert_eq!(diagnostics.len(), 3, "{text}");
        assert!(
            text.contains("service \"nope\" not found in /p/compose.yaml"),
            "{text}"
        );
        assert!(text.contains("service \"ghost\" not found"), "{text}");
        assert!(text.contains("`extends` takes a service name"), "{text}");
        assert_eq!(diagnostics[0].span.line, 3);
    }

    #[test]
    fn override_in_the_middle_of_a_chain_across_files() {
        // TestOverrideMiddle
        let mut files = Files::default()
            .with(
                "/p/compose.yaml",
                "services:\n  top:\n    extends: {file: middle/compose.yaml, service: middle}\n    volumes: ['/top:/top']\n    networks: !override [top_net]\n",
            )
            .with(
                "/p/middle/compose.yaml",
                "services:\n  middle:\n    extends: {file: ../base/compose.yaml, service: base}\n    volumes: !override ['/middle:/middle']\n    networks: !override [middle_net]\n",
            )
            .with(
                "/p/base/compose.yaml",
                "services:\n  base:\n    image: b\n    volumes: ['/base:/base']\n    networks: [base_net]\n",
            );
        let doc = resolved(&mut files, "/p/compose.yaml");
        assert_eq!(
            service(&doc, "top"),
            json!({"image": "b", "volumes": ["/middle:/middle", "/top:/top"], "networks": ["top_net"]})
        );
    }

    #[test]
    fn override_in_the_middle_of_a_chain_in_one_file() {
        // TestOverrideSelfExtends
        let mut files = Files::default().with(
            "/p/compose.yaml",
            "services:\n  a:\n    image: a\n    depends_on: [x]\n  b:\n    extends: a\n    depends_on: !override [y]\n  c:\n    extends: b\n    depends_on: [z]\n  x: {image: x}\n  y: {image: y}\n  z: {image: z}\n",
        );
        let doc = resolved(&mut files, "/p/compose.yaml");
        let depends_on = service(&doc, "c")["depends_on"].clone();
        let names: Vec<&String> = depends_on.as_object().expect("a mapping").keys().collect();
        assert_eq!(names, ["y", "z"]);
    }

    #[test]
    fn anchors_merge_keys_extends_and_override_together() {
        // TestParseYAMLFilesMergeOverride
        let mut files = Files::default().with(
            "/p/compose.yaml",
            "services:\n  base:\n    image: base\n    configs:\n      - source: base_config\n        target: /base\n  x: &x\n    extends: base\n    configs: !override\n      - source: x_config\n        target: /x\n  y:\n    <<: *x\n",
        );
        let doc = resolved(&mut files, "/p/compose.yaml");
        let only_x = json!([{"source": "x_config", "target": "/x"}]);
        assert_eq!(service(&doc, "x")["configs"], only_x);
        assert_eq!(service(&doc, "y")["configs"], only_x);
        assert_eq!(
            service(&doc, "base")["configs"],
            json!([{"source": "base_config", "target": "/base"}])
        );
    }

    #[test]
    fn relative_paths_of_a_service_are_rebased() {
        let mut files = Files::default()
            .with(
                "/p/compose.yaml",
                "services:\n  app:\n    extends: {file: ../lib/common.yaml, service: common}\n",
            )
            .with(
                "/lib/common.yaml",
                "services:\n  common:\n    build:\n      context: ./app\n      additional_contexts:\n        assets: ./assets\n        base: docker-image://alpine\n        svc: service:other\n      ssh: ['key=./id_rsa', default]\n    env_file:\n      - path: ./a.env\n      - b.env\n      - /abs.env\n    label_file: labels\n    volumes:\n      - .:/src\n      - ../data:/data:ro\n      - named:/named\n      - ~/home:/home\n      - type: bind\n        source: cache\n        target: /cache\n      - type: volume\n        source: vol\n        target: /vol\n    develop:\n      watch:\n        - path: ./src\n          action: sync\n",
            );
        let doc = resolved(&mut files, "/p/compose.yaml");
        let app = service(&doc, "app");
        assert_eq!(
            app["build"],
            json!({
                "context": "../lib/app",
                "additional_contexts": {
                    "assets": "../lib/assets",
                    "base": "docker-image://alpine",
                    "svc": "service:other"
                },
                "ssh": ["key=../lib/id_rsa", "default"]
            })
        );
        assert_eq!(
            app["env_file"],
            json!([{"path": "../lib/a.env"}, "../lib/b.env", "/abs.env"])
        );
        assert_eq!(app["label_file"], "../lib/labels");
        assert_eq!(
            app["volumes"],
            json!([
                "../lib:/src",
                "../data:/data:ro",
                "named:/named",
                "~/home:/home",
                {"type": "bind", "source": "../lib/cache", "target": "/cache"},
                {"type": "volume", "source": "vol", "target": "/vol"}
            ])
        );
        assert_eq!(app["develop"]["watch"][0]["path"], "../lib/src");
    }

    #[test]
    fn a_bind_source_in_a_subdirectory_stays_a_path() {
        let mut files = Files::default()
            .with(
                "/p/compose.yaml",
                "services:\n  app:\n    extends: {file: sub/c.yaml, service: s}\n",
            )
            .with(
                "/p/sub/c.yaml",
                "services:\n  s:\n    volumes: ['./data:/data']\n",
            );
        let doc = resolved(&mut files, "/p/compose.yaml");
        assert_eq!(service(&doc, "app")["volumes"], json!(["./sub/data:/data"]));
    }

    #[test]
    fn paths_between_relative_and_absolute_directories() {
        let relocation = Relocation::between(Path::new("/lib"), Path::new("proj"))
            .expect("different directories");
        assert_eq!(relocation.path("./x").as_deref(), Some("/lib/x"));
        assert!(Relocation::between(Path::new("a/./b"), Path::new("a/b/c/..")).is_none());
        let relocation =
            Relocation::between(Path::new("a/b"), Path::new("a/c")).expect("different");
        assert_eq!(relocation.path(".").as_deref(), Some("../b"));
        assert_eq!(relocation.path("C:\\x").as_deref(), None);
    }
}
