//! Relative paths in a compose document made absolute against its project directory.
//!
//! Done on the positioned tree, before typed decoding, because a document pulled in by
//! `include` has its own project directory: its paths must be fixed before it is laid into
//! the including document, where nothing would tell them apart any more.

use std::path::Path;

use crate::source::absolutize;
use crate::yaml::{Key, Value, YamlNode};

/// Makes every relative filesystem path in `doc` absolute against `base`; `~` expands to
/// `home` where the spec allows it (bind mount sources).
pub fn resolve_paths(doc: &mut YamlNode, base: &Path, home: Option<&str>) {
    if let Some(services) = doc.get_mut("services").and_then(YamlNode::as_map_mut) {
        for service in services.values_mut() {
            resolve_service_paths(service, base, home);
        }
    }
    for section in ["secrets", "configs"] {
        if let Some(items) = doc.get_mut(section).and_then(YamlNode::as_map_mut) {
            for item in items.values_mut() {
                if let Some(file) = item.get_mut("file") {
                    fix(file, base);
                }
            }
        }
    }
}

pub fn resolve_service_paths(service: &mut YamlNode, base: &Path, home: Option<&str>) {
    if let Some(build) = service.get_mut("build") {
        let span = build.span.clone();
        match &mut build.value {
            Value::String(_) => fix_context(build, base),
            Value::Map(m) => {
                match m.get_mut("context") {
                    Some(ctx) => fix_context(ctx, base),
                    // The spec's default, `.`, is this project's directory: written out
                    // here, because an included project's directory is known only here.
                    None => {
                        let context = YamlNode::string(base.display().to_string(), span.clone());
                        m.insert(Key::new("context", span), context);
                    }
                }
                if let Some(extra) = m.get_mut("additional_contexts") {
                    match &mut extra.value {
                        Value::Map(m) => m.values_mut().for_each(|c| fix_context(c, base)),
                        Value::Seq(items) => items.iter_mut().for_each(|item| {
                            fix_keyed_list_item(item, base);
                        }),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    for key in ["env_file", "label_file"] {
        if let Some(node) = service.get_mut(key) {
            match &mut node.value {
                Value::String(_) => fix(node, base),
                Value::Seq(items) => {
                    for item in items {
                        if item.as_str().is_some() {
                            fix(item, base);
                        } else if let Some(path) = item.get_mut("path") {
                            fix(path, base);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(Value::Seq(volumes)) = service.get_mut("volumes").map(|v| &mut v.value) {
        for volume in volumes {
            match &mut volume.value {
                Value::String(spec) => {
                    if let Some(fixed) = fix_short_volume(spec, base, home) {
                        *spec = fixed;
                    }
                }
                Value::Map(m) => {
                    let is_bind = m.get("type").and_then(YamlNode::as_str) == Some("bind");
                    if let (true, Some(source)) = (is_bind, m.get_mut("source")) {
                        if let Some(s) = source.as_str().and_then(|s| expand_home(s, home)) {
                            source.value = Value::String(s);
                        }
                        fix(source, base);
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(Value::Seq(watches)) = service
        .get_mut("develop")
        .and_then(|d| d.get_mut("watch"))
        .map(|w| &mut w.value)
    {
        for watch in watches {
            if let Some(path) = watch.get_mut("path") {
                fix(path, base);
            }
        }
    }
}

/// `name=path` items of a list-form `additional_contexts`.
fn fix_keyed_list_item(item: &mut YamlNode, base: &Path) {
    if let Value::String(s) = &mut item.value
        && let Some((name, path)) = s.split_once('=')
        && !is_remote(path)
    {
        *s = format!("{name}={}", absolutize(base, Path::new(path)).display());
    }
}

fn fix(node: &mut YamlNode, base: &Path) {
    if let Value::String(s) = &mut node.value
        && !s.is_empty()
    {
        *s = absolutize(base, Path::new(s.as_str()))
            .display()
            .to_string();
    }
}

fn fix_context(node: &mut YamlNode, base: &Path) {
    if node.as_str().is_some_and(is_remote) {
        return;
    }
    fix(node, base);
}

/// Build contexts may be URLs (git, http) or references to images or services.
pub fn is_remote(s: &str) -> bool {
    s.contains("://")
        || s.starts_with("git@")
        || s.starts_with("github.com/")
        || s.starts_with("service:")
}

fn expand_home(s: &str, home: Option<&str>) -> Option<String> {
    let home = home?;
    if s == "~" {
        Some(home.to_string())
    } else {
        s.strip_prefix("~/")
            .map(|rest| format!("{}/{rest}", home.trim_end_matches('/')))
    }
}

/// The short volume syntax `SOURCE:TARGET[:MODE]`: a source starting with `.`, `/` or `~` is
/// a host path (a bind mount); anything else names a volume.
fn fix_short_volume(spec: &str, base: &Path, home: Option<&str>) -> Option<String> {
    let (source, rest) = spec.split_once(':')?;
    if let Some(expanded) = expand_home(source, home) {
        return Some(format!("{expanded}:{rest}"));
    }
    source
        .starts_with('.')
        .then(|| format!("{}:{rest}", absolutize(base, Path::new(source)).display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{Limits, parse};

    fn resolved(text: &str) -> serde_json::Value {
        let mut doc = parse(text, "t", &Limits::default())
            .expect("parses")
            .remove(0);
        resolve_paths(&mut doc, Path::new("/p"), Some("/home/u"));
        doc.to_json()
    }

    #[test]
    fn build_env_file_and_volumes() {
        let j = resolved(
            "services:\n  a:\n    build: ./app\n    env_file: [.env, {path: ../x.env}]\n    volumes:\n      - ./data:/data:ro\n      - ~/cache:/cache\n      - db:/db\n      - /abs:/abs\n      - {type: bind, source: ./src, target: /src}\n  b:\n    build: {context: 'https://github.com/a/b.git'}\nsecrets:\n  s: {file: ./s.txt}\n",
        );
        let a = &j["services"]["a"];
        assert_eq!(a["build"], "/p/app");
        assert_eq!(a["env_file"][0], "/p/.env");
        assert_eq!(a["env_file"][1]["path"], "/x.env");
        assert_eq!(a["volumes"][0], "/p/data:/data:ro");
        assert_eq!(a["volumes"][1], "/home/u/cache:/cache");
        assert_eq!(a["volumes"][2], "db:/db");
        assert_eq!(a["volumes"][3], "/abs:/abs");
        assert_eq!(a["volumes"][4]["source"], "/p/src");
        assert_eq!(
            j["services"]["b"]["build"]["context"],
            "https://github.com/a/b.git"
        );
        assert_eq!(j["secrets"]["s"]["file"], "/p/s.txt");
    }

    #[test]
    fn a_build_without_context_builds_the_project_directory() {
        let j = resolved(
            "services:\n  a:\n    build: {dockerfile_inline: FROM scratch}\n  b:\n    build:\n      dockerfile: Containerfile\n",
        );
        assert_eq!(j["services"]["a"]["build"]["context"], "/p");
        assert_eq!(j["services"]["b"]["build"]["context"], "/p");
    }
}
