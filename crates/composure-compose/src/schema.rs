//! Validation of a compose document against the compose-spec JSON schema.
//!
//! The schema (compose-go's copy, draft 2020-12) is embedded and compiled once per process.
//! The validator's raw errors speak JSON and dump schema fragments; this module turns each
//! one into a [`Diagnostic`] that points at the offending YAML node (or key) and says in a
//! sentence what is wrong.

use std::collections::HashSet;
use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::Value as Json;

use crate::diag::{Diagnostic, PathSeg, Span, YamlPath};
use crate::names::{self, NameKind};
use crate::yaml::YamlNode;

const SCHEMA_TEXT: &str = include_str!("../schema/compose-spec.json");

/// The pattern the schema uses for service, network, volume, secret and config keys.
const NAME_PATTERN: &str = "^[a-zA-Z0-9._-]+$";
const EXTENSION_PATTERN: &str = "^x-";

struct CompiledSchema {
    validator: Validator,
    /// Kept to look up the properties an object allows, for "did you mean" hints.
    document: Json,
}

static SCHEMA: LazyLock<Result<CompiledSchema, String>> = LazyLock::new(compile);

fn compile() -> Result<CompiledSchema, String> {
    let document: Json = serde_json::from_str(SCHEMA_TEXT).map_err(|e| e.to_string())?;
    let validator = jsonschema::validator_for(&document).map_err(|e| e.to_string())?;
    Ok(CompiledSchema {
        validator,
        document,
    })
}

/// Checks one compose document against the compose-spec schema. Returns one error per bad
/// place, sorted by position; an empty list means the document is valid.
pub fn validate(doc: &YamlNode) -> Vec<Diagnostic> {
    let compiled = match &*SCHEMA {
        Ok(compiled) => compiled,
        Err(e) => {
            return vec![Diagnostic::global(format!(
                "internal error: the embedded compose schema does not compile: {e}"
            ))];
        }
    };
    let json = doc.to_json();
    // The fast check allocates no error objects: most files are valid.
    if compiled.validator.is_valid(&json) {
        return Vec::new();
    }
    let explainer = Explainer {
        schema: &compiled.document,
    };
    let mut findings = Vec::new();
    for error in compiled.validator.iter_errors(&json) {
        explainer.explain(&error, &mut findings);
    }
    into_diagnostics(doc, findings)
}

/// One problem, before it gets a span.
struct Finding {
    path: YamlPath,
    /// Point at the last key of `path` itself rather than at its value.
    at_key: bool,
    message: String,
    hint: Option<String>,
}

impl Finding {
    fn at(path: YamlPath, message: String) -> Self {
        Finding {
            path,
            at_key: false,
            message,
            hint: None,
        }
    }
}

struct Explainer<'s> {
    schema: &'s Json,
}

impl Explainer<'_> {
    fn explain(&self, error: &ValidationError<'_>, out: &mut Vec<Finding>) {
        let path = yaml_path(error);
        let instance = error.instance().as_ref();
        let finding = match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                out.extend(unexpected.iter().map(|key| self.unknown_key(error, key)));
                return;
            }
            ValidationErrorKind::OneOfNotValid { context }
            | ValidationErrorKind::AnyOf { context } => {
                self.explain_alternatives(error, context, out);
                return;
            }
            ValidationErrorKind::Type { kind } => {
                Finding::at(path, type_message(&types_of(kind), instance))
            }
            ValidationErrorKind::Enum { options } => {
                Finding::at(path, enum_message(options, instance))
            }
            ValidationErrorKind::Constant { expected_value } => Finding::at(
                path,
                format!("must be {}, not {}", shown(expected_value), shown(instance)),
            ),
            ValidationErrorKind::Pattern { pattern } => pattern_finding(path, pattern, instance),
            ValidationErrorKind::Required { property } => {
                Finding::at(path, format!("missing required key {}", shown(property)))
            }
            ValidationErrorKind::UniqueItems => duplicate_finding(path, instance),
            ValidationErrorKind::OneOfMultipleValid { .. } => Finding::at(
                path,
                "is ambiguous: it matches more than one of the allowed forms".to_string(),
            ),
            kind => Finding::at(
                path,
                limit_message(kind).unwrap_or_else(|| error.to_string()),
            ),
        };
        out.push(finding);
    }

    /// A `oneOf`/`anyOf` failed: explain the alternative the user most likely meant, not all.
    fn explain_alternatives(
        &self,
        error: &ValidationError<'_>,
        branches: &[Vec<ValidationError<'static>>],
        out: &mut Vec<Finding>,
    ) {
        let here = error.instance_path().as_str();
        let fitting = branches
            .iter()
            .filter(|branch| mismatched_types(branch, here).is_none());
        // The alternative that accepts the value's type and is closest to matching.
        match fitting.min_by_key(|branch| branch.len()) {
            Some(best) => best.iter().for_each(|e| self.explain(e, out)),
            None => {
                let expected: Vec<JsonType> = branches
                    .iter()
                    .filter_map(|branch| mismatched_types(branch, here))
                    .flatten()
                    .collect();
                let message = type_message(&expected, error.instance().as_ref());
                out.push(Finding::at(yaml_path(error), message));
            }
        }
    }

    fn unknown_key(&self, error: &ValidationError<'_>, key: &str) -> Finding {
        let object_path = yaml_path(error);
        let object_schema = self
            .schema
            .pointer(parent_pointer(error.schema_path().as_str()));
        let name_pattern = object_schema.and_then(name_pattern);
        let section_kind = match object_path.segments() {
            [PathSeg::Key(section)] => NameKind::of_section(section),
            _ => None,
        };
        let (message, hint) = match (name_pattern, section_kind) {
            (Some(_), Some(kind)) => match names::validate_name(kind, key) {
                Err(rule) => (rule, None),
                Ok(()) => (format!("invalid {} name `{key}`", kind.as_str()), None),
            },
            (Some(pattern), None) => (
                format!("invalid name `{key}`"),
                Some(format!("names here {}", describe_pattern(pattern))),
            ),
            (None, _) => (
                format!("unknown key `{key}`"),
                object_schema.and_then(|schema| unknown_key_hint(schema, key)),
            ),
        };
        Finding {
            path: object_path.key(key),
            at_key: true,
            message,
            hint,
        }
    }
}

fn yaml_path(error: &ValidationError<'_>) -> YamlPath {
    YamlPath::from_json_pointer(error.instance_path().as_str())
}

/// The JSON pointer of the schema object that holds the keyword `pointer` ends with.
fn parent_pointer(pointer: &str) -> &str {
    pointer.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// The pattern an object's keys must match when it is a map of names (`services`, ...).
fn name_pattern(object_schema: &Json) -> Option<&str> {
    object_schema
        .get("patternProperties")?
        .as_object()?
        .keys()
        .map(String::as_str)
        .find(|p| *p != EXTENSION_PATTERN)
}

fn describe_pattern(pattern: &str) -> String {
    if pattern == NAME_PATTERN {
        "may contain only letters, digits, `.`, `_` and `-`".to_string()
    } else {
        format!("must match the pattern `{pattern}`")
    }
}

/// "did you mean" for a near miss, else the rule for extension keys when they are allowed.
fn unknown_key_hint(object_schema: &Json, key: &str) -> Option<String> {
    let known = object_schema
        .get("properties")
        .and_then(Json::as_object)
        .map(|props| props.keys().map(String::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(close) = names::closest_name(key, known.iter().copied()) {
        return Some(format!("did you mean `{close}`?"));
    }
    let allows_extensions = object_schema
        .get("patternProperties")
        .and_then(|p| p.get(EXTENSION_PATTERN))
        .is_some();
    allows_extensions.then(|| "extension keys must start with `x-`".to_string())
}

/// The types a branch of a `oneOf`/`anyOf` wanted, when it rejected the value at `here`
/// for its type alone (directly or through a nested `oneOf`/`anyOf`).
fn mismatched_types(branch: &[ValidationError<'_>], here: &str) -> Option<Vec<JsonType>> {
    branch
        .iter()
        .filter(|e| e.instance_path().as_str() == here)
        .find_map(|e| match e.kind() {
            ValidationErrorKind::Type { kind } => Some(types_of(kind)),
            ValidationErrorKind::OneOfNotValid { context }
            | ValidationErrorKind::AnyOf { context } => context
                .iter()
                .map(|b| mismatched_types(b, here))
                .collect::<Option<Vec<_>>>()
                .map(|all| all.concat()),
            _ => None,
        })
}

fn types_of(kind: &TypeKind) -> Vec<JsonType> {
    match kind {
        TypeKind::Single(t) => vec![*t],
        TypeKind::Multiple(set) => set.iter().collect(),
    }
}

fn type_message(expected: &[JsonType], found: &Json) -> String {
    let mut expected = expected.to_vec();
    // Null last: "a string or null" reads better than "null or a string".
    expected.sort_by_key(|t| (*t == JsonType::Null, *t));
    expected.dedup();
    // "an integer or number" says nothing more than "a number".
    if expected.contains(&JsonType::Number) {
        expected.retain(|t| *t != JsonType::Integer);
    }
    let words: Vec<&str> = expected.iter().map(|t| type_word(*t)).collect();
    let expected = match words.split_first() {
        Some((first, _)) => with_article(&join_or(&words), first),
        None => "another type".to_string(),
    };
    format!("expected {expected}, found {}", found_kind(found))
}

fn type_word(t: JsonType) -> &'static str {
    match t {
        JsonType::Null => "null",
        JsonType::Boolean => "boolean",
        JsonType::Integer => "integer",
        JsonType::Number => "number",
        JsonType::String => "string",
        JsonType::Array => "sequence",
        JsonType::Object => "mapping",
    }
}

/// The kind of a value in the words [`YamlNode::kind`] uses.
fn found_kind(value: &Json) -> String {
    let word = match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "sequence",
        Json::Object(_) => "mapping",
    };
    with_article(word, word)
}

/// Prefixes `phrase` with the article its first word `head` takes.
fn with_article(phrase: &str, head: &str) -> String {
    if head == "null" {
        phrase.to_string()
    } else if head.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {phrase}")
    } else {
        format!("a {phrase}")
    }
}

/// `a`, `a or b`, `a, b or c`.
fn join_or(items: &[&str]) -> String {
    match items.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, init)) => format!("{} or {last}", init.join(", ")),
        None => String::new(),
    }
}

fn enum_message(options: &Json, found: &Json) -> String {
    let allowed: Vec<String> = match options {
        Json::Array(items) => items.iter().map(shown).collect(),
        other => vec![shown(other)],
    };
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    let choice = if allowed.len() == 1 {
        allowed.concat()
    } else {
        format!("one of {}", join_or(&allowed))
    };
    format!("must be {choice}, not {}", shown(found))
}

fn pattern_finding(path: YamlPath, pattern: &str, found: &Json) -> Finding {
    let is_container_name =
        matches!(path.segments().last(), Some(PathSeg::Key(k)) if k == "container_name");
    if let (true, Some(name)) = (is_container_name, found.as_str())
        && let Err(rule) = names::validate_container_name(name)
    {
        return Finding::at(path, rule);
    }
    Finding::at(
        path,
        format!(
            "invalid value {}: it {}",
            shown(found),
            describe_pattern(pattern)
        ),
    )
}

/// Points at the second occurrence of the first repeated item.
fn duplicate_finding(path: YamlPath, found: &Json) -> Finding {
    let items = found.as_array().map(Vec::as_slice).unwrap_or_default();
    let repeat = (1..items.len()).find(|&i| items[..i].contains(&items[i]));
    match repeat {
        Some(i) => Finding::at(
            path.index(i),
            format!(
                "duplicate entry {}: entries must be unique",
                shown(&items[i])
            ),
        ),
        None => Finding::at(path, "entries must be unique".to_string()),
    }
}

/// Messages for the numeric and size limits, which the validator words around raw JSON.
fn limit_message(kind: &ValidationErrorKind) -> Option<String> {
    Some(match kind {
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("must be more than {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        ValidationErrorKind::MinItems { limit } => format!("must have at least {limit} entries"),
        ValidationErrorKind::MaxItems { limit } => format!("must have at most {limit} entries"),
        ValidationErrorKind::MinLength { limit } => {
            format!("must be at least {limit} characters long")
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!("must be at most {limit} characters long")
        }
        ValidationErrorKind::MinProperties { limit } => {
            format!("must have at least {limit} keys")
        }
        ValidationErrorKind::MaxProperties { limit } => format!("must have at most {limit} keys"),
        _ => return None,
    })
}

/// A value as a message quotes it: scalars in backquotes (shortened), collections by kind.
fn shown(value: &Json) -> String {
    const MAX_CHARS: usize = 60;
    let text = match value {
        Json::String(s) => s.clone(),
        Json::Null => return "null".to_string(),
        Json::Bool(_) | Json::Number(_) => value.to_string(),
        Json::Array(_) | Json::Object(_) => return found_kind(value),
    };
    if text.chars().count() > MAX_CHARS {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("`{cut}…`")
    } else {
        format!("`{text}`")
    }
}

/// Gives each finding its span, keeps one per place, and orders them as they appear.
fn into_diagnostics(doc: &YamlNode, findings: Vec<Finding>) -> Vec<Diagnostic> {
    let mut seen = HashSet::new();
    let mut diagnostics: Vec<Diagnostic> = findings
        .into_iter()
        .filter(|f| seen.insert(f.path.clone()))
        .map(|f| {
            let span = if f.at_key {
                key_span(doc, &f.path)
            } else {
                doc.span_at(&f.path)
            };
            let diagnostic = Diagnostic::error(span, f.path, f.message);
            match f.hint {
                Some(hint) => diagnostic.with_hint(hint),
                None => diagnostic,
            }
        })
        .collect();
    diagnostics.sort_by(|a, b| {
        (a.span.line, a.span.column, a.path.to_string()).cmp(&(
            b.span.line,
            b.span.column,
            b.path.to_string(),
        ))
    });
    diagnostics
}

/// Where the last key of `path` is written.
fn key_span(doc: &YamlNode, path: &YamlPath) -> Span {
    if let Some((PathSeg::Key(key), parent)) = path.segments().split_last()
        && let Some(map) = doc
            .at(&YamlPath::from(parent.to_vec()))
            .and_then(YamlNode::as_map)
        && let Some((key, _)) = map.get_key_value(key.as_str())
    {
        return key.span.clone();
    }
    doc.span_at(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{Limits, parse};

    fn check(text: &str) -> Vec<Diagnostic> {
        let mut docs = parse(text, "compose.yaml", &Limits::default()).expect("parses");
        validate(&docs.remove(0))
    }

    fn only(text: &str) -> Diagnostic {
        let mut diags = check(text);
        assert_eq!(diags.len(), 1, "{diags:#?}");
        diags.remove(0)
    }

    fn at(d: &Diagnostic) -> (String, u32, u32) {
        (d.path.to_string(), d.span.line, d.span.column)
    }

    #[test]
    fn schema_compiles() {
        assert!(SCHEMA.is_ok(), "{:?}", SCHEMA.as_ref().err());
    }

    #[test]
    fn valid_files_pass() {
        assert_eq!(check("services:\n  web:\n    image: nginx\n"), vec![]);
        let fuller = "\
name: shop
x-common: &common {restart: always}
services:
  web:
    <<: *common
    image: nginx
    ports: ['8080:80', 443, {target: 80, published: '8081'}]
    depends_on: {db: {condition: service_healthy}}
    x-note: anything
  db:
    image: postgres:16
    profiles: [debug]
networks: {front: {}}
volumes: {data: }
";
        assert_eq!(check(fuller), vec![]);
    }

    #[test]
    fn unknown_key_near_a_known_one_suggests_it() {
        let d = only("services:\n  web:\n    imgae: nginx\n");
        assert_eq!(at(&d), ("services.web.imgae".into(), 3, 5));
        assert_eq!(d.message, "unknown key `imgae`");
        assert_eq!(d.hint.as_deref(), Some("did you mean `image`?"));
    }

    #[test]
    fn unknown_key_far_from_any_explains_extensions() {
        let d = only("services: {}\ncustom:\n  a: 1\n");
        assert_eq!(at(&d), ("custom".into(), 2, 1));
        assert_eq!(d.message, "unknown key `custom`");
        assert_eq!(
            d.hint.as_deref(),
            Some("extension keys must start with `x-`")
        );
    }

    #[test]
    fn several_unknown_keys_are_reported_each_at_its_key() {
        let diags = check("services:\n  web:\n    image: x\n    enviroment: []\n    foo: 1\n");
        let places: Vec<_> = diags.iter().map(at).collect();
        assert_eq!(
            places,
            vec![
                ("services.web.enviroment".into(), 4, 5),
                ("services.web.foo".into(), 5, 5)
            ]
        );
        assert_eq!(
            diags[0].hint.as_deref(),
            Some("did you mean `environment`?")
        );
    }

    #[test]
    fn type_error_says_expected_and_found() {
        let d = only("services:\n  web:\n    image: x\n    restart: 5\n");
        assert_eq!(at(&d), ("services.web.restart".into(), 4, 14));
        assert_eq!(d.message, "expected a string, found an integer");
    }

    #[test]
    fn type_error_on_a_mapping_points_at_its_key() {
        let d = only("services:\n  web:\n    image: x\n    command:\n      a: b\n");
        assert_eq!(at(&d), ("services.web.command".into(), 4, 5));
        assert_eq!(
            d.message,
            "expected a string, sequence or null, found a mapping"
        );
    }

    #[test]
    fn one_of_with_no_fitting_type_lists_all_types() {
        let d = only("services:\n  web:\n    image: x\n    ports:\n      - true\n");
        assert_eq!(at(&d), ("services.web.ports[0]".into(), 5, 9));
        assert_eq!(
            d.message,
            "expected a number, string or mapping, found a boolean"
        );
    }

    #[test]
    fn one_of_explains_the_branch_that_fits_the_type() {
        let d = only(
            "services:\n  web:\n    image: x\n    depends_on:\n      db:\n        condition: ready\n",
        );
        assert_eq!(
            at(&d),
            ("services.web.depends_on.db.condition".into(), 6, 20)
        );
        assert_eq!(
            d.message,
            "must be one of `service_started`, `service_healthy` or \
             `service_completed_successfully`, not `ready`"
        );
    }

    #[test]
    fn one_of_reports_a_missing_required_key() {
        let d = only(
            "services:\n  web:\n    image: x\n    depends_on:\n      db:\n        restart: true\n",
        );
        assert_eq!(at(&d), ("services.web.depends_on.db".into(), 5, 7));
        assert_eq!(d.message, "missing required key `condition`");
    }

    #[test]
    fn one_of_unknown_key_inside_the_long_form() {
        let d = only(
            "services:\n  web:\n    image: x\n    ports:\n      - target: 80\n        publised: 8080\n",
        );
        assert_eq!(at(&d), ("services.web.ports[0].publised".into(), 6, 9));
        assert_eq!(d.hint.as_deref(), Some("did you mean `published`?"));
    }

    #[test]
    fn enum_error_lists_allowed_values() {
        let d = only("services:\n  web:\n    image: x\n    ipc: shareable\n    cgroup: shared\n");
        assert_eq!(at(&d), ("services.web.cgroup".into(), 5, 13));
        assert_eq!(
            d.message,
            "must be one of `host` or `private`, not `shared`"
        );
    }

    #[test]
    fn pattern_error_names_the_pattern() {
        let d = only("services:\n  web:\n    image: x\n    pull_policy: sometimes\n");
        assert_eq!(at(&d), ("services.web.pull_policy".into(), 4, 18));
        assert!(
            d.message
                .starts_with("invalid value `sometimes`: it must match the pattern `always|never|"),
            "{}",
            d.message
        );
    }

    #[test]
    fn bad_service_name_points_at_the_name_and_says_the_rule() {
        let d = only("services:\n  web:\n    image: x\n  my web:\n    image: y\n");
        assert_eq!(at(&d), ("services.my web".into(), 4, 3));
        assert!(
            d.message.starts_with("invalid service name `my web`"),
            "{}",
            d.message
        );
        assert!(
            d.message.contains("letters, digits, `.`, `_` and `-`"),
            "{}",
            d.message
        );
    }

    #[test]
    fn bad_volume_name_says_volume() {
        let d = only("services: {}\nvolumes:\n  'data/x': {}\n");
        assert_eq!(at(&d), ("volumes.data/x".into(), 3, 3));
        assert!(
            d.message.starts_with("invalid volume name `data/x`"),
            "{}",
            d.message
        );
    }

    #[test]
    fn bad_name_inside_a_service_says_which_names_are_allowed() {
        let d = only(
            "services:\n  web:\n    image: x\n    depends_on:\n      'd b': {condition: service_started}\n",
        );
        assert_eq!(at(&d), ("services.web.depends_on.d b".into(), 5, 7));
        assert_eq!(d.message, "invalid name `d b`");
        assert_eq!(
            d.hint.as_deref(),
            Some("names here may contain only letters, digits, `.`, `_` and `-`")
        );
    }

    #[test]
    fn duplicate_entries_point_at_the_repeat() {
        let d = only("services:\n  web:\n    image: x\n    profiles: [a, b, a]\n");
        assert_eq!(at(&d), ("services.web.profiles[2]".into(), 4, 22));
        assert_eq!(d.message, "duplicate entry `a`: entries must be unique");
    }

    #[test]
    fn a_document_that_is_not_a_mapping() {
        let d = only("- web\n");
        assert_eq!(at(&d), (String::new(), 1, 1));
        assert_eq!(d.message, "expected a mapping, found a sequence");
    }

    #[test]
    fn errors_come_sorted_by_position_one_per_place() {
        let text = "\
services:
  b:
    image: x
    restart: 1
    imgae: y
  a:
    image: 3
zzz: 1
";
        let diags = check(text);
        let lines: Vec<u32> = diags.iter().map(|d| d.span.line).collect();
        assert_eq!(lines, vec![4, 5, 7, 8], "{diags:#?}");
        let paths: HashSet<String> = diags.iter().map(|d| d.path.to_string()).collect();
        assert_eq!(paths.len(), diags.len());
    }

    /// Runs the schema over the real-world corpus. Which files fail is reported, not asserted;
    /// what is asserted is that every error is placed in its file.
    #[test]
    fn corpus_errors_are_all_placed() {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compose-corpus");
        let mut files = Vec::new();
        for (dir, names) in [
            ("awesome-compose", &["compose.yaml", "compose.yml"][..]),
            ("dokploy-templates/blueprints", &["docker-compose.yml"][..]),
        ] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                files.extend(
                    names
                        .iter()
                        .map(|n| entry.path().join(n))
                        .filter(|p| p.exists()),
                );
            }
        }
        files.sort();
        let (mut failing, mut errors) = (0, 0);
        let started = std::time::Instant::now();
        for file in &files {
            let text = std::fs::read_to_string(file).expect("readable");
            let name = file
                .strip_prefix(&root)
                .unwrap_or(file)
                .display()
                .to_string();
            let docs = match parse(&text, &name, &Limits::default()) {
                Ok(docs) => docs,
                Err(e) => {
                    println!("not YAML the reader accepts: {e}");
                    continue;
                }
            };
            let diags: Vec<Diagnostic> = docs.iter().flat_map(validate).collect();
            if !diags.is_empty() {
                failing += 1;
                errors += diags.len();
            }
            for d in &diags {
                println!("{d}");
                assert!(d.span.line > 0, "unplaced: {d}");
            }
        }
        println!(
            "{} files, {failing} failing, {errors} errors, {:?}",
            files.len(),
            started.elapsed()
        );
    }
}
