//! The loader pipeline: files → YAML → interpolation → include → extends → merge → profiles
//! → schema → typed model → normalisation → semantic checks.
//!
//! Each stage lives in its own module; this one only orders them, decides which files and
//! variables take part, and keeps every diagnostic so the user sees all problems at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

use crate::diag::{Diagnostic, Diagnostics, LoadError, Span, YamlPath};
use crate::extends::{ExtendsContext, resolve_extends};
use crate::model::Project;
use crate::source::{Source, absolutize};
use crate::yaml::{Limits, Value, YamlNode};
use crate::{dotenv, interpolate, merge, names, normalize, paths, profiles, schema, semantic};

/// File names looked for when no `-f` is given, in order of preference.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// What to load and how: the loader's equivalent of `docker compose`'s global flags.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// `-f` files; empty means "find compose.yaml (and its override) from `working_dir` up".
    pub files: Vec<PathBuf>,
    /// The directory relative paths on the command line are taken from (the shell's cwd).
    pub working_dir: PathBuf,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// `--profile` (empty: `COMPOSE_PROFILES` decides).
    pub profiles: Vec<String>,
    /// Services named on the command line: they and their dependencies are kept.
    pub services: Vec<String>,
    /// `--env-file`, in order; empty means `.env` in the project directory if it exists.
    pub env_files: Vec<PathBuf>,
    /// The process environment (passed in: the loader reads no global state).
    pub environment: IndexMap<String, String>,
    /// `--no-interpolate` turns this off.
    pub interpolate: bool,
    pub limits: Limits,
}

impl LoadOptions {
    pub fn new(working_dir: impl Into<PathBuf>) -> Self {
        LoadOptions {
            files: Vec::new(),
            working_dir: working_dir.into(),
            project_name: None,
            project_directory: None,
            profiles: Vec::new(),
            services: Vec::new(),
            env_files: Vec::new(),
            environment: IndexMap::new(),
            interpolate: true,
            limits: Limits::default(),
        }
    }
}

/// A loaded project and what the loader noticed on the way.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub project: Project,
    /// The merged document, kept to point diagnostics of later stages at a place in a file.
    pub document: YamlNode,
    pub warnings: Vec<Diagnostic>,
    /// The compose files that make up the project, absolute.
    pub files: Vec<PathBuf>,
    pub project_directory: PathBuf,
    /// The variables interpolation saw (process environment over env files).
    pub environment: IndexMap<String, String>,
}

/// Loads a project from the file system.
pub fn load(options: &LoadOptions) -> Result<Loaded, LoadError> {
    load_with(options, &crate::source::FileSystem)
}

/// Loads a project, reading files through `source`.
pub fn load_with(options: &LoadOptions, source: &dyn Source) -> Result<Loaded, LoadError> {
    let files = compose_files(options, source)?;
    let project_directory = match &options.project_directory {
        Some(dir) => absolutize(&options.working_dir, dir),
        None => files
            .first()
            .and_then(|f| f.parent())
            .map_or_else(|| options.working_dir.clone(), Path::to_path_buf),
    };
    let mut environment = project_environment(options, &project_directory, source)?;

    let mut diags = Diagnostics::new();
    let mut documents = Vec::new();
    for file in &files {
        documents.extend(read_documents(file, source, &options.limits)?);
    }

    let name = project_name(options, &environment, &mut documents)?;
    environment.insert("COMPOSE_PROJECT_NAME".into(), name.clone());

    let mut loader = Loader {
        source,
        limits: options.limits,
        interpolate: options.interpolate,
        cache: HashMap::new(),
        include_stack: files.clone(),
    };
    let mut merged: Option<YamlNode> = None;
    for (mut doc, file) in documents {
        let dir = file
            .parent()
            .map_or_else(|| project_directory.clone(), Path::to_path_buf);
        if loader.interpolate {
            diags.extend(interpolate::interpolate_node_with_unset_warnings(
                &mut doc,
                &YamlPath::root(),
                &lookup(&environment),
            ));
        }
        diags.extend(loader.apply_includes(&mut doc, &project_directory, &environment));
        let mut ctx = loader.extends_context(&environment);
        diags.extend(resolve_extends(&mut doc, &dir, &mut ctx));
        merged = Some(match merged {
            None => {
                let mut doc = doc;
                merge::strip_tags(&mut doc);
                doc
            }
            Some(base) => match merge::merge_documents(base, doc) {
                Ok(m) => m,
                Err(errors) => {
                    diags.extend(errors);
                    return Err(LoadError::new(diags.into_vec()));
                }
            },
        });
    }
    if diags.has_errors() {
        return Err(LoadError::new(diags.into_vec()));
    }
    let mut document = merged.unwrap_or_else(|| empty_document(&files));
    if let Some(map) = document.as_map_mut() {
        map.shift_remove("include");
        if let Some((key, _)) = map.shift_remove_entry("version") {
            diags.push(
                Diagnostic::warning(
                    key.span,
                    YamlPath::root().key("version"),
                    "the `version` key is obsolete and ignored",
                )
                .with_hint("remove it; the compose specification has no versions"),
            );
        }
    }

    let profiles = active_profiles(options, &environment);
    diags.extend(profiles::apply_profiles(
        &mut document,
        &profiles,
        &options.services,
    ));
    diags.extend(schema::validate(&document));
    if diags.has_errors() {
        return Err(LoadError::new(diags.into_vec()));
    }

    let home = environment.get("HOME").cloned();
    paths::resolve_paths(&mut document, &project_directory, home.as_deref());
    let mut project = crate::model::project_from_json(document.to_json()).map_err(|e| {
        let span = document.span_at(&e.yaml_path);
        LoadError::single(Diagnostic::error(span, e.yaml_path, e.message))
    })?;
    project.name = Some(name);
    let ctx = normalize::Context {
        project_directory: &project_directory,
        environment: &environment,
        source,
    };
    diags.extend(normalize::normalize(&mut project, &document, &ctx));
    diags.extend(semantic::check(&project, &document));
    let (project, warnings) = diags.finish(project)?;
    Ok(Loaded {
        project,
        document,
        warnings,
        files,
        project_directory,
        environment,
    })
}

fn empty_document(files: &[PathBuf]) -> YamlNode {
    let file = files
        .first()
        .map(|f| f.display().to_string())
        .unwrap_or_default();
    YamlNode::map(Default::default(), Span::new(Arc::from(file), 1, 1))
}

pub fn lookup(env: &IndexMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| env.get(name).cloned()
}

/// The compose files of the project: `-f` as given, else `COMPOSE_FILE`, else the first of
/// [`DEFAULT_FILES`] found in the working directory or a parent, plus its `.override` sibling.
fn compose_files(options: &LoadOptions, source: &dyn Source) -> Result<Vec<PathBuf>, LoadError> {
    if !options.files.is_empty() {
        return Ok(options
            .files
            .iter()
            .map(|f| absolutize(&options.working_dir, f))
            .collect());
    }
    if let Some(list) = options
        .environment
        .get("COMPOSE_FILE")
        .filter(|l| !l.is_empty())
    {
        let sep = options
            .environment
            .get("COMPOSE_PATH_SEPARATOR")
            .map_or(":", String::as_str);
        return Ok(list
            .split(sep)
            .map(|f| absolutize(&options.working_dir, Path::new(f)))
            .collect());
    }
    let mut dir = Some(options.working_dir.as_path());
    while let Some(d) = dir {
        for name in DEFAULT_FILES {
            let candidate = d.join(name);
            if source.exists(&candidate) {
                let (stem, ext) = name.rsplit_once('.').unwrap_or((name, "yaml"));
                let over = d.join(format!("{stem}.override.{ext}"));
                let mut files = vec![candidate];
                if source.exists(&over) {
                    files.push(over);
                }
                return Ok(files);
            }
        }
        dir = d.parent();
    }
    Err(Diagnostic::global(format!(
        "no compose file found in {} or any parent directory",
        options.working_dir.display()
    ))
    .with_hint("name one with -f, or create compose.yaml")
    .into())
}

/// The variables for interpolation: env files first, the process environment over them.
fn project_environment(
    options: &LoadOptions,
    project_directory: &Path,
    source: &dyn Source,
) -> Result<IndexMap<String, String>, LoadError> {
    let env_files: Vec<(PathBuf, bool)> = if options.env_files.is_empty() {
        vec![(project_directory.join(".env"), false)]
    } else {
        options
            .env_files
            .iter()
            .map(|f| (absolutize(&options.working_dir, f), true))
            .collect()
    };
    let mut env = read_env_files(&env_files, &options.environment, source)?;
    env.extend(
        options
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    Ok(env)
}

/// Reads env files in order (later ones win); a variable inside a file may refer to the
/// process environment and to variables defined earlier.
fn read_env_files(
    files: &[(PathBuf, bool)],
    process: &IndexMap<String, String>,
    source: &dyn Source,
) -> Result<IndexMap<String, String>, LoadError> {
    let mut env = IndexMap::new();
    for (file, required) in files {
        if !required && !source.exists(file) {
            continue;
        }
        let text = source.read(file).map_err(|e| {
            Diagnostic::global(format!("cannot read env file {}: {e}", file.display()))
        })?;
        let vars = dotenv::parse_dotenv(&text, &|name| {
            process.get(name).or_else(|| env.get(name)).cloned()
        })
        .map_err(|e| Diagnostic::global(format!("{}: {e}", file.display())))?;
        env.extend(vars);
    }
    Ok(env)
}

fn read_documents(
    file: &Path,
    source: &dyn Source,
    limits: &Limits,
) -> Result<Vec<(YamlNode, PathBuf)>, LoadError> {
    let text = source.read(file).map_err(|e| {
        Diagnostic::global(format!("cannot read compose file {}: {e}", file.display()))
    })?;
    let docs = crate::yaml::parse(&text, &file.display().to_string(), limits)?;
    for doc in &docs {
        if !doc.is_null() && doc.as_map().is_none() {
            return Err(Diagnostic::error(
                doc.span.clone(),
                YamlPath::root(),
                format!("a compose file must be a mapping, found a {}", doc.kind()),
            )
            .into());
        }
    }
    Ok(docs
        .into_iter()
        .filter(|d| !d.is_null())
        .map(|d| (d, file.to_path_buf()))
        .collect())
}

/// The project name: `-p`, else `COMPOSE_PROJECT_NAME`, else the last `name:` in the files,
/// else the project directory's name. Names given by the user must be valid as written;
/// a directory name is normalised.
fn project_name(
    options: &LoadOptions,
    env: &IndexMap<String, String>,
    documents: &mut [(YamlNode, PathBuf)],
) -> Result<String, LoadError> {
    let checked = |name: &str, span: Span, path: YamlPath| {
        names::validate_project_name(name)
            .map(|()| name.to_string())
            .map_err(|msg| LoadError::single(Diagnostic::error(span, path, msg)))
    };
    if let Some(name) = &options.project_name {
        return checked(name, Span::none(), YamlPath::root());
    }
    if let Some(name) = env.get("COMPOSE_PROJECT_NAME").filter(|n| !n.is_empty()) {
        return checked(name, Span::none(), YamlPath::root());
    }
    let mut from_file = None;
    for (doc, _) in documents.iter() {
        if let Some(node) = doc.get("name") {
            let text = node.scalar_text().unwrap_or_default();
            let value = if options.interpolate {
                interpolate::interpolate_str(&text, &lookup(env)).map_err(|e| {
                    LoadError::single(Diagnostic::error(
                        node.span.clone(),
                        YamlPath::root().key("name"),
                        e.to_string(),
                    ))
                })?
            } else {
                text
            };
            if !value.is_empty() {
                from_file = Some((value, node.span.clone()));
            }
        }
    }
    if let Some((name, span)) = from_file {
        return checked(&name, span, YamlPath::root().key("name"));
    }
    let dir = options
        .project_directory
        .as_ref()
        .map(|d| absolutize(&options.working_dir, d))
        .or_else(|| {
            documents
                .first()
                .and_then(|(_, f)| f.parent().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| options.working_dir.clone());
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let name = names::normalize_project_name(&base);
    if name.is_empty() {
        return Err(Diagnostic::global(format!(
            "cannot derive a project name from the directory {}",
            dir.display()
        ))
        .with_hint("give one with -p NAME or a top-level `name:`")
        .into());
    }
    Ok(name)
}

fn active_profiles(options: &LoadOptions, env: &IndexMap<String, String>) -> Vec<String> {
    if !options.profiles.is_empty() {
        return options.profiles.clone();
    }
    env.get("COMPOSE_PROFILES")
        .map(|p| {
            p.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// State shared by the recursive parts of a load (include, extends).
struct Loader<'s> {
    source: &'s dyn Source,
    limits: Limits,
    interpolate: bool,
    /// Parsed and interpolated documents of files read for `extends`, by path.
    cache: HashMap<PathBuf, YamlNode>,
    /// Files being loaded, outermost first, for include cycle detection.
    include_stack: Vec<PathBuf>,
}

/// How deep `include` may nest before we call it a mistake.
const MAX_INCLUDE_DEPTH: usize = 32;

impl<'s> Loader<'s> {
    /// Reads one file's first document, interpolated with `env`.
    fn read_interpolated(
        &mut self,
        file: &Path,
        env: &IndexMap<String, String>,
    ) -> Result<YamlNode, Diagnostic> {
        if let Some(doc) = self.cache.get(file) {
            return Ok(doc.clone());
        }
        let docs = read_documents(file, self.source, &self.limits).map_err(|e| {
            e.diagnostics
                .into_iter()
                .next()
                .unwrap_or_else(|| Diagnostic::global(""))
        })?;
        let mut doc = match docs.into_iter().next() {
            Some((doc, _)) => doc,
            None => empty_document(&[file.to_path_buf()]),
        };
        if self.interpolate {
            let errors = interpolate::interpolate_node(&mut doc, &YamlPath::root(), &lookup(env));
            if let Some(first) = errors.into_iter().next() {
                return Err(first);
            }
        }
        self.cache.insert(file.to_path_buf(), doc.clone());
        Ok(doc)
    }

    fn extends_context<'a>(&'a mut self, env: &'a IndexMap<String, String>) -> FileExtends<'a, 's> {
        FileExtends { loader: self, env }
    }

    /// Loads each `include` entry of `doc` as a project of its own and lays `doc` over it.
    fn apply_includes(
        &mut self,
        doc: &mut YamlNode,
        project_directory: &Path,
        env: &IndexMap<String, String>,
    ) -> Vec<Diagnostic> {
        let Some(includes) = doc.as_map_mut().and_then(|m| m.shift_remove("include")) else {
            return Vec::new();
        };
        let mut diags = Vec::new();
        let Some(entries) = includes.as_seq() else {
            return vec![Diagnostic::error(
                includes.span.clone(),
                YamlPath::root().key("include"),
                format!("`include` must be a list, found a {}", includes.kind()),
            )];
        };
        let mut included: Option<YamlNode> = None;
        for (i, entry) in entries.iter().enumerate() {
            let path = YamlPath::root().key("include").index(i);
            match self.load_include(entry, &path, project_directory, env) {
                Ok(sub) => {
                    included = Some(match included {
                        None => sub,
                        Some(base) => match merge::merge_documents(base, sub) {
                            Ok(m) => m,
                            Err(e) => {
                                diags.extend(e);
                                return diags;
                            }
                        },
                    });
                }
                Err(e) => diags.extend(e),
            }
        }
        if let Some(base) = included {
            let overlay = std::mem::replace(doc, YamlNode::null(Span::none()));
            match merge::merge_documents(base, overlay) {
                Ok(m) => *doc = m,
                Err(e) => diags.extend(e),
            }
        }
        diags
    }

    fn load_include(
        &mut self,
        entry: &YamlNode,
        path: &YamlPath,
        parent_dir: &Path,
        parent_env: &IndexMap<String, String>,
    ) -> Result<YamlNode, Vec<Diagnostic>> {
        let err = |msg: String| vec![Diagnostic::error(entry.span.clone(), path.clone(), msg)];
        let (files, project_dir, env_files) = match &entry.value {
            Value::String(p) => (vec![p.clone()], None, Vec::new()),
            Value::Map(m) => {
                let files = match m.get("path").map(|p| &p.value) {
                    Some(Value::String(p)) => vec![p.clone()],
                    Some(Value::Seq(items)) => {
                        items.iter().filter_map(YamlNode::scalar_text).collect()
                    }
                    _ => return Err(err("an include entry needs a `path`".into())),
                };
                let env_files = match m.get("env_file").map(|p| &p.value) {
                    Some(Value::String(p)) => vec![p.clone()],
                    Some(Value::Seq(items)) => {
                        items.iter().filter_map(YamlNode::scalar_text).collect()
                    }
                    _ => Vec::new(),
                };
                (
                    files,
                    m.get("project_directory").and_then(YamlNode::scalar_text),
                    env_files,
                )
            }
            _ => {
                return Err(err(format!(
                    "an include entry must be a path or a mapping, found a {}",
                    entry.kind()
                )));
            }
        };
        let files: Vec<PathBuf> = files
            .iter()
            .map(|f| absolutize(parent_dir, Path::new(f)))
            .collect();
        let Some(first) = files.first() else {
            return Err(err("an include entry needs a `path`".into()));
        };
        for f in &files {
            if self.include_stack.contains(f) {
                let chain: Vec<String> = self
                    .include_stack
                    .iter()
                    .chain([f])
                    .map(|p| p.display().to_string())
                    .collect();
                return Err(err(format!(
                    "include cycle detected: {}",
                    chain.join(" -> ")
                )));
            }
            if !self.source.exists(f) {
                return Err(err(format!("included file {} does not exist", f.display())));
            }
        }
        if self.include_stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(err(format!(
                "includes nest deeper than {MAX_INCLUDE_DEPTH} levels"
            )));
        }
        let sub_dir = match project_dir {
            Some(d) => absolutize(parent_dir, Path::new(&d)),
            None => first
                .parent()
                .map_or_else(|| parent_dir.to_path_buf(), Path::to_path_buf),
        };
        // The included project's variables: its env files, with the including project's
        // environment over them.
        let env_files: Vec<(PathBuf, bool)> = if env_files.is_empty() {
            vec![(sub_dir.join(".env"), false)]
        } else {
            env_files
                .iter()
                .map(|f| (absolutize(parent_dir, Path::new(f)), true))
                .collect()
        };
        let mut env =
            read_env_files(&env_files, parent_env, self.source).map_err(|e| e.diagnostics)?;
        env.extend(parent_env.iter().map(|(k, v)| (k.clone(), v.clone())));

        let mut merged: Option<YamlNode> = None;
        for file in &files {
            self.include_stack.push(file.clone());
            let result = self.load_included_file(file, &sub_dir, &env);
            self.include_stack.pop();
            let doc = result?;
            merged = Some(match merged {
                None => doc,
                Some(base) => merge::merge_documents(base, doc)?,
            });
        }
        let mut doc = merged.unwrap_or_else(|| empty_document(&files));
        paths::resolve_paths(&mut doc, &sub_dir, env.get("HOME").map(String::as_str));
        Ok(doc)
    }

    fn load_included_file(
        &mut self,
        file: &Path,
        project_dir: &Path,
        env: &IndexMap<String, String>,
    ) -> Result<YamlNode, Vec<Diagnostic>> {
        let mut doc = self.read_interpolated(file, env).map_err(|d| vec![d])?;
        let mut diags = self.apply_includes(&mut doc, project_dir, env);
        let dir = file
            .parent()
            .map_or_else(|| project_dir.to_path_buf(), Path::to_path_buf);
        let mut ctx = self.extends_context(env);
        diags.extend(resolve_extends(&mut doc, &dir, &mut ctx));
        merge::strip_tags(&mut doc);
        if diags.iter().any(Diagnostic::is_error) {
            Err(diags)
        } else {
            Ok(doc)
        }
    }
}

/// `extends` reading other files through the loader (cached, interpolated with the
/// environment of the file that extends).
struct FileExtends<'a, 's> {
    loader: &'a mut Loader<'s>,
    env: &'a IndexMap<String, String>,
}

impl ExtendsContext for FileExtends<'_, '_> {
    fn load(&mut self, file: &str, from_dir: &Path) -> Result<(YamlNode, PathBuf), Diagnostic> {
        let path = absolutize(from_dir, Path::new(file));
        if !self.loader.source.exists(&path) {
            return Err(Diagnostic::global(format!(
                "extended file {} does not exist",
                path.display()
            )));
        }
        let doc = self.loader.read_interpolated(&path, self.env)?;
        let dir = path
            .parent()
            .map_or_else(|| from_dir.to_path_buf(), Path::to_path_buf);
        Ok((doc, dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    fn options(files: &[&str]) -> LoadOptions {
        let mut o = LoadOptions::new("/p");
        o.files = files.iter().map(PathBuf::from).collect();
        o
    }

    fn load_mem(o: &LoadOptions, files: &[(&str, &str)]) -> Result<Loaded, LoadError> {
        let source = files
            .iter()
            .fold(MemorySource::new(), |s, (p, t)| s.with(*p, *t));
        load_with(o, &source)
    }

    fn testdata() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/compose-corpus/compose-go-testdata/loader/testdata")
    }

    fn load_testdata(file: &str, env: &[(&str, &str)]) -> Loaded {
        let dir = testdata();
        let mut o = LoadOptions::new(&dir);
        o.files = vec![dir.join(file)];
        o.environment = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(&o).unwrap_or_else(|e| panic!("{file} loads:\n{e}"))
    }

    const WEB: &str = "services:\n  web:\n    image: nginx\n";

    #[test]
    fn project_name_precedence() {
        let named = "name: from-file\nservices:\n  web: {image: x}\n";
        let files = [("/p/compose.yaml", named)];
        let mut o = options(&["/p/compose.yaml"]);
        assert_eq!(
            load_mem(&o, &files).expect("loads").project.name.as_deref(),
            Some("from-file")
        );
        o.environment
            .insert("COMPOSE_PROJECT_NAME".into(), "from-env".into());
        assert_eq!(
            load_mem(&o, &files).expect("loads").project.name.as_deref(),
            Some("from-env")
        );
        o.project_name = Some("from-flag".into());
        assert_eq!(
            load_mem(&o, &files).expect("loads").project.name.as_deref(),
            Some("from-flag")
        );
        o.project_name = Some("Bad Name".into());
        let e = load_mem(&o, &files).expect_err("invalid -p");
        assert!(e.to_string().contains("project name"), "{e}");
    }

    #[test]
    fn directory_name_is_normalised() {
        let mut o = LoadOptions::new("/p/My_App.v2");
        o.files = vec!["compose.yaml".into()];
        let loaded = load_mem(&o, &[("/p/My_App.v2/compose.yaml", WEB)]).expect("loads");
        assert_eq!(loaded.project.name.as_deref(), Some("my_appv2"));
    }

    #[test]
    fn last_name_wins_and_is_interpolated_everywhere() {
        let a = "name: first\nservices:\n  web:\n    image: \"img-${COMPOSE_PROJECT_NAME}\"\n";
        let b = "name: second\n";
        let o = options(&["/p/a.yaml", "/p/b.yaml"]);
        let loaded = load_mem(&o, &[("/p/a.yaml", a), ("/p/b.yaml", b)]).expect("loads");
        assert_eq!(
            loaded.project.services["web"].image.as_deref(),
            Some("img-second")
        );
    }

    #[test]
    fn variables_shell_over_env_file_over_dotenv() {
        let file = "services:\n  web:\n    image: \"x:${TAG}\"\n    labels: {a: \"${ONLY_DOTENV:-none}\"}\n";
        let files = [
            ("/p/compose.yaml", file),
            ("/p/.env", "TAG=dotenv\nONLY_DOTENV=yes\n"),
            ("/p/other.env", "TAG=flag\n"),
        ];
        let mut o = options(&["/p/compose.yaml"]);
        let web =
            |o: &LoadOptions| load_mem(o, &files).expect("loads").project.services["web"].clone();
        assert_eq!(web(&o).image.as_deref(), Some("x:dotenv"));
        assert_eq!(web(&o).labels["a"], "yes");
        o.env_files = vec!["other.env".into()];
        assert_eq!(web(&o).image.as_deref(), Some("x:flag"));
        assert_eq!(web(&o).labels["a"], "none", "--env-file replaces .env");
        o.environment.insert("TAG".into(), "shell".into());
        assert_eq!(web(&o).image.as_deref(), Some("x:shell"));
    }

    #[test]
    fn missing_env_file_flag_is_an_error() {
        let mut o = options(&["/p/compose.yaml"]);
        o.env_files = vec!["nope.env".into()];
        let e = load_mem(&o, &[("/p/compose.yaml", WEB)]).expect_err("fails");
        assert!(e.to_string().contains("nope.env"), "{e}");
    }

    #[test]
    fn interpolated_numbers_become_numbers() {
        let file = "services:\n  web:\n    image: x\n    scale: ${FOO_SCALE}\n";
        let mut o = options(&["/p/compose.yaml"]);
        o.environment.insert("FOO_SCALE".into(), "2".into());
        let loaded = load_mem(&o, &[("/p/compose.yaml", file)]).expect("loads");
        assert_eq!(loaded.project.services["web"].scale, Some(2));
    }

    #[test]
    fn unset_variables_warn_once_per_place() {
        let file = "services:\n  web:\n    image: \"x:${TAG}${TAG}\"\n";
        let loaded =
            load_mem(&options(&["/p/compose.yaml"]), &[("/p/compose.yaml", file)]).expect("loads");
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].message.contains("TAG"));
    }

    #[test]
    fn default_files_are_found_upwards_with_their_override() {
        let mut o = LoadOptions::new("/p/sub/dir");
        o.project_name = Some("t".into());
        let files = [
            ("/p/compose.yaml", WEB),
            (
                "/p/compose.override.yaml",
                "services:\n  web:\n    image: overridden\n",
            ),
        ];
        let loaded = load_mem(&o, &files).expect("loads");
        assert_eq!(loaded.files.len(), 2);
        assert_eq!(
            loaded.project.services["web"].image.as_deref(),
            Some("overridden")
        );
        assert_eq!(loaded.project_directory, PathBuf::from("/p"));
    }

    #[test]
    fn multi_document_files_merge_like_several_files() {
        let file = "services:\n  web:\n    image: one\n---\nservices:\n  web:\n    image: two\n";
        let loaded =
            load_mem(&options(&["/p/compose.yaml"]), &[("/p/compose.yaml", file)]).expect("loads");
        assert_eq!(loaded.project.services["web"].image.as_deref(), Some("two"));
    }

    #[test]
    fn empty_second_file_changes_nothing() {
        let o = options(&["/p/a.yaml", "/p/b.yaml"]);
        let loaded =
            load_mem(&o, &[("/p/a.yaml", WEB), ("/p/b.yaml", "# nothing\n")]).expect("loads");
        assert_eq!(
            loaded.project.services["web"].image.as_deref(),
            Some("nginx")
        );
    }

    #[test]
    fn profiles_from_the_environment() {
        let file = "services:\n  web: {image: x}\n  dbg: {image: y, profiles: [debug]}\n";
        let mut o = options(&["/p/compose.yaml"]);
        assert_eq!(
            load_mem(&o, &[("/p/compose.yaml", file)])
                .expect("ok")
                .project
                .services
                .len(),
            1
        );
        o.environment
            .insert("COMPOSE_PROFILES".into(), "debug".into());
        assert_eq!(
            load_mem(&o, &[("/p/compose.yaml", file)])
                .expect("ok")
                .project
                .services
                .len(),
            2
        );
    }

    #[test]
    fn obsolete_version_is_a_warning() {
        let file = "version: '3.8'\nservices:\n  web: {image: x}\n";
        let loaded =
            load_mem(&options(&["/p/compose.yaml"]), &[("/p/compose.yaml", file)]).expect("loads");
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.message.contains("obsolete"))
        );
    }

    #[test]
    fn a_file_that_is_not_a_mapping_is_an_error() {
        let e = load_mem(
            &options(&["/p/compose.yaml"]),
            &[("/p/compose.yaml", "- a\n- b\n")],
        )
        .expect_err("fails");
        assert!(e.to_string().contains("must be a mapping"), "{e}");
    }

    #[test]
    fn all_errors_come_at_once() {
        let file = "services:\n  web:\n    image: x\n    depends_on: [a]\n  db:\n    image: y\n    networks: [n]\n";
        let e = load_mem(&options(&["/p/compose.yaml"]), &[("/p/compose.yaml", file)])
            .expect_err("fails");
        assert_eq!(e.errors().count(), 2, "{e}");
    }

    #[test]
    fn include_with_env_file_and_relative_paths() {
        // TestLoadWithInclude: the include's env file feeds interpolation of the included
        // file, whose relative env_file resolves against its own folder.
        let loaded = load_testdata("compose-include.yaml", &[]);
        let imported = &loaded.project.services["imported"];
        assert_eq!(imported.container_name.as_deref(), Some("imported"));
        let env_file = Path::new(&imported.env_file[0].path);
        assert!(env_file.ends_with("subdir/extra.env"), "{env_file:?}");
        assert_eq!(imported.environment["SOURCE"].as_deref(), Some("extends"));
        assert!(loaded.project.services.contains_key("bar"));
    }

    #[test]
    fn process_environment_beats_include_env_file() {
        let loaded = load_testdata("compose-include.yaml", &[("SOURCE", "override")]);
        assert_eq!(
            loaded.project.services["imported"]
                .container_name
                .as_deref(),
            Some("override")
        );
    }

    #[test]
    fn include_cycle_is_detected() {
        let dir = testdata();
        let mut o = LoadOptions::new(&dir);
        o.files = vec![dir.join("compose-include-cycle.yaml")];
        let e = load(&o).expect_err("cycle");
        assert!(e.to_string().contains("include cycle detected"), "{e}");
    }

    #[test]
    fn including_file_overrides_included_definitions() {
        let inc = "services:\n  bar:\n    image: included\n    environment: {FOO: bar}\n";
        let main = "include: [inc.yaml]\nservices:\n  bar:\n    image: busybox\n    environment: !override {ZOT: QIX}\n";
        let o = options(&["/p/compose.yaml"]);
        let loaded =
            load_mem(&o, &[("/p/compose.yaml", main), ("/p/inc.yaml", inc)]).expect("loads");
        let bar = &loaded.project.services["bar"];
        assert_eq!(bar.image.as_deref(), Some("busybox"));
        assert_eq!(bar.environment.len(), 1);
        assert_eq!(bar.environment["ZOT"].as_deref(), Some("QIX"));
    }

    #[test]
    fn included_project_directory_anchors_its_paths() {
        let inc = "services:\n  s:\n    build: .\n    volumes: [\"./data:/data\"]\n";
        let main = "include:\n  - path: sub/inc.yaml\n    project_directory: other\n";
        let o = options(&["/p/compose.yaml"]);
        let loaded =
            load_mem(&o, &[("/p/compose.yaml", main), ("/p/sub/inc.yaml", inc)]).expect("loads");
        let s = &loaded.project.services["s"];
        assert_eq!(
            s.build.as_ref().map(|b| b.context.as_str()),
            Some("/p/other")
        );
        assert_eq!(s.volumes[0].source.as_deref(), Some("/p/other/data"));
    }

    #[test]
    fn extends_from_another_file_keeps_its_paths() {
        // TestLoadWithExtends.
        let loaded = load_testdata("compose-test-extends.yaml", &[]);
        let s = &loaded.project.services["importer"];
        assert_eq!(s.container_name.as_deref(), Some("imported"));
        assert!(Path::new(&s.env_file[0].path).ends_with("subdir/extra.env"));
        assert_eq!(s.environment["SOURCE"].as_deref(), Some("extends"));
        assert!(s.networks.contains_key("default"));
    }

    #[test]
    fn selected_services_keep_their_dependencies() {
        let file =
            "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x}\n  c: {image: x}\n";
        let mut o = options(&["/p/compose.yaml"]);
        o.services = vec!["a".into()];
        let loaded = load_mem(&o, &[("/p/compose.yaml", file)]).expect("loads");
        let names: Vec<&String> = loaded.project.services.keys().collect();
        assert_eq!(names, ["a", "b"]);
    }
}
