//! A build context as the engine's build API takes it: a tar of the context folder less what
//! `.dockerignore` excludes, plus a content hash that says whether anything changed.
//!
//! The tar is deterministic (`tar::HeaderMode::Deterministic`: no owners, no times), so the
//! hash of its bytes and of the build options is the same for the same files, whatever
//! their mtimes. It is held in memory: fine for the contexts services use, costly for a
//! context of gigabytes (`.dockerignore` is the remedy, as with `docker build`).
//!
//! `.dockerignore` follows the engine's rules (moby's patternmatcher): one pattern per
//! line, `#` comments, `!` re-includes, patterns are relative to the context root (a
//! leading `/` is dropped), `*` and `?` stop at `/`, `**` crosses folders, and a pattern
//! that matches a folder matches everything under it; the last matching pattern wins. The
//! Dockerfile named by the build is always sent. Not supported: a `<Dockerfile>.dockerignore`
//! next to the Dockerfile (a BuildKit feature).

use std::fs;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};

/// Name given in the tar to a Dockerfile that lives outside the context or is inline.
const OUTSIDE_DOCKERFILE: &str = ".composure.Dockerfile";

#[derive(Debug)]
pub(crate) struct BuildContext {
    pub tar: Vec<u8>,
    /// The Dockerfile's path inside the tar.
    pub dockerfile: String,
    /// Hex SHA-256 of the tar and of `options`.
    pub hash: String,
}

/// Tars `context`. `dockerfile` is the Dockerfile's path relative to the context (or an
/// absolute path); `inline` is a Dockerfile given as text (`dockerfile_inline`), which
/// wins. `options` is anything else that changes the image (args, target, …), hashed with
/// the files.
pub(crate) fn prepare(
    context: &Path,
    dockerfile: Option<&str>,
    inline: Option<&str>,
    options: &str,
) -> Result<BuildContext, String> {
    if !context.is_dir() {
        return Err(format!(
            "build context `{}` is not a folder",
            context.display()
        ));
    }
    let ignore = match fs::read_to_string(context.join(".dockerignore")) {
        Ok(text) => Patterns::parse(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Patterns::default(),
        Err(e) => return Err(format!("cannot read .dockerignore: {e}")),
    };
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);

    let (dockerfile_in_tar, extra) = match (inline, dockerfile) {
        (Some(text), _) => (
            OUTSIDE_DOCKERFILE.to_string(),
            Some(text.as_bytes().to_vec()),
        ),
        (None, file) => {
            let file = file.unwrap_or("Dockerfile");
            let path = context.join(file);
            match relative_inside(context, &path) {
                Some(rel) => (rel, None),
                None => {
                    let bytes = fs::read(&path)
                        .map_err(|e| format!("cannot read Dockerfile `{}`: {e}", path.display()))?;
                    (OUTSIDE_DOCKERFILE.to_string(), Some(bytes))
                }
            }
        }
    };
    add_tree(
        &mut builder,
        context,
        Path::new(""),
        &ignore,
        &dockerfile_in_tar,
    )
    .map_err(|e| format!("cannot read the build context: {e}"))?;
    if let Some(bytes) = extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, OUTSIDE_DOCKERFILE, bytes.as_slice())
            .map_err(|e| format!("cannot add the Dockerfile: {e}"))?;
    }
    let tar = builder
        .into_inner()
        .map_err(|e| format!("cannot finish the build context: {e}"))?;
    let mut hasher = Sha256::new();
    hasher.update(&tar);
    hasher.update(options.as_bytes());
    let hash = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(BuildContext {
        tar,
        dockerfile: dockerfile_in_tar,
        hash,
    })
}

/// `path` relative to `root` with `/` separators, when it lies inside `root`.
fn relative_inside(root: &Path, path: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in path.strip_prefix(root).ok()?.components() {
        match component {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Adds the entries of `root/rel`, sorted by name so the tar is the same each time.
fn add_tree(
    builder: &mut tar::Builder<Vec<u8>>,
    root: &Path,
    rel: &Path,
    ignore: &Patterns,
    dockerfile: &str,
) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| rel.join(e.file_name())))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        let name = entry.to_string_lossy().replace('\\', "/");
        let full = root.join(&entry);
        let meta = fs::symlink_metadata(&full)?;
        let excluded = ignore.excludes(&name) && name != dockerfile;
        if meta.is_dir() {
            if !excluded {
                builder.append_path_with_name(&full, &entry)?;
            }
            // An excluded folder may still hold re-included files (`!dir/keep`).
            if !excluded || ignore.has_exceptions() {
                add_tree(builder, root, &entry, ignore, dockerfile)?;
            }
        } else if !excluded && (meta.is_file() || meta.file_type().is_symlink()) {
            builder.append_path_with_name(&full, &entry)?;
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Pattern {
    glob: GlobMatcher,
    exception: bool,
}

/// The patterns of a `.dockerignore`.
#[derive(Debug, Default)]
pub(crate) struct Patterns(Vec<Pattern>);

impl Patterns {
    pub(crate) fn parse(text: &str) -> Result<Patterns, String> {
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = clean(pattern);
            if pattern.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!(".dockerignore: bad pattern `{line}`: {e}"))?
                .compile_matcher();
            out.push(Pattern { glob, exception });
        }
        Ok(Patterns(out))
    }

    fn has_exceptions(&self) -> bool {
        self.0.iter().any(|p| p.exception)
    }

    /// Whether `path` (relative, `/`-separated) is left out of the context: the last
    /// pattern matching it or one of its parent folders decides.
    pub(crate) fn excludes(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for pattern in &self.0 {
            // Only a pattern that could change the verdict is worth matching.
            if pattern.exception != excluded {
                continue;
            }
            let hit = pattern.glob.is_match(path)
                || parents.iter().any(|parent| pattern.glob.is_match(parent));
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }
}

/// The engine's clean-up of a pattern: no leading `/`, no `.` segments, no trailing `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(text: &str) -> Patterns {
        Patterns::parse(text).unwrap()
    }

    #[test]
    fn dockerignore_rules() {
        let p = patterns("# comment\n\n/target\n*.log\n!keep.log\nsecret/**\ndocs/*.md\n");
        assert!(p.excludes("target"));
        assert!(p.excludes("target/debug/app"));
        assert!(!p.excludes("src/target"));
        assert!(p.excludes("a.log"));
        assert!(!p.excludes("sub/a.log"), "`*` does not cross folders");
        assert!(!p.excludes("keep.log"));
        assert!(p.excludes("secret/x/y"));
        assert!(p.excludes("docs/a.md"));
        assert!(!p.excludes("docs/sub/a.md"));
        assert!(!p.excludes("main.rs"));
    }

    #[test]
    fn last_matching_pattern_wins_and_double_star_crosses_folders() {
        let p = patterns("**/*.tmp\n!important.tmp\n");
        assert!(p.excludes("a/b/c.tmp"));
        assert!(p.excludes("c.tmp"));
        assert!(!p.excludes("important.tmp"));
        let p = patterns("!keep\nkeep\n");
        assert!(p.excludes("keep"));
        let p = patterns("dir\n!dir/keep\n");
        assert!(p.excludes("dir/other"));
        assert!(!p.excludes("dir/keep"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(Patterns::parse("a[").is_err());
    }

    fn tar_names(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn context_respects_dockerignore_and_hash_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(root.join(".dockerignore"), "*.log\nDockerfile\n").unwrap();
        fs::write(root.join("app.txt"), "v1").unwrap();
        fs::write(root.join("debug.log"), "noise").unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/data"), "x").unwrap();

        let first = prepare(root, Some("Dockerfile"), None, "{}").unwrap();
        let names = tar_names(&first.tar);
        assert!(names.contains(&"app.txt".to_string()), "{names:?}");
        assert!(names.contains(&"sub/data".to_string()), "{names:?}");
        assert!(
            names.contains(&"Dockerfile".to_string()),
            "the Dockerfile is always sent"
        );
        assert!(!names.contains(&"debug.log".to_string()), "{names:?}");
        assert_eq!(first.dockerfile, "Dockerfile");

        let again = prepare(root, Some("Dockerfile"), None, "{}").unwrap();
        assert_eq!(first.hash, again.hash, "same files, same hash");
        fs::write(root.join("debug.log"), "more noise").unwrap();
        let ignored_change = prepare(root, Some("Dockerfile"), None, "{}").unwrap();
        assert_eq!(
            first.hash, ignored_change.hash,
            "ignored files do not count"
        );
        fs::write(root.join("app.txt"), "v2").unwrap();
        let changed = prepare(root, Some("Dockerfile"), None, "{}").unwrap();
        assert_ne!(first.hash, changed.hash);
        let other_args = prepare(root, Some("Dockerfile"), None, "{\"args\":1}").unwrap();
        assert_ne!(changed.hash, other_args.hash, "options count");
    }

    #[test]
    fn dockerfile_outside_the_context_or_inline_is_added() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        fs::create_dir(&ctx).unwrap();
        fs::write(dir.path().join("Other.Dockerfile"), "FROM scratch\n").unwrap();
        let outside = prepare(&ctx, Some("../Other.Dockerfile"), None, "").unwrap();
        assert_eq!(outside.dockerfile, OUTSIDE_DOCKERFILE);
        assert_eq!(tar_names(&outside.tar), [OUTSIDE_DOCKERFILE]);
        let inline = prepare(&ctx, None, Some("FROM scratch\n"), "").unwrap();
        assert_eq!(inline.dockerfile, OUTSIDE_DOCKERFILE);
        assert!(prepare(&dir.path().join("missing"), None, None, "").is_err());
    }
}
