//! YAML 1.2 reading into a positioned tree ([`YamlNode`]).
//!
//! We build our own tree from saphyr-parser's event stream instead of using a ready-made
//! document type because the loader needs four things at once that no YAML crate gives
//! together: a source position on every node, the `!reset` / `!override` tags of the compose
//! merge rules, `<<` merge keys (YAML 1.1, still used everywhere in compose files), and hard
//! limits on input size, nesting depth and alias expansion (a "billion laughs" file must fail
//! fast, not eat the machine).

use std::sync::Arc;

use indexmap::IndexMap;
use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};

use crate::diag::{Diagnostic, LoadError, PathSeg, Span, YamlPath};

/// Limits that keep hostile or broken input from taking the process down.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest file accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most nodes a document may have once aliases are expanded.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 32 * 1024 * 1024,
            max_depth: 128,
            max_nodes: 2_000_000,
        }
    }
}

/// The compose merge tags (spec chapter "Merge and override").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tag {
    #[default]
    None,
    /// `!reset`: drop the value inherited from earlier files or `extends`.
    Reset,
    /// `!override`: replace the inherited value wholesale instead of merging.
    Override,
}

/// A YAML value with its position in the source.
#[derive(Clone, Debug)]
pub struct YamlNode {
    pub value: Value,
    pub span: Span,
    pub tag: Tag,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<YamlNode>),
    Map(Mapping),
}

pub type Mapping = IndexMap<Key, YamlNode>;

/// A mapping key: its text and where it was written. Equality and hashing use the text only,
/// so a `Mapping` can be indexed with a `&str`.
#[derive(Clone, Debug)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

impl Key {
    pub fn new(name: impl Into<String>, span: Span) -> Self {
        Key {
            name: name.into(),
            span,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Key {}
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}
impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.name
    }
}

impl YamlNode {
    pub fn new(value: Value, span: Span) -> Self {
        YamlNode {
            value,
            span,
            tag: Tag::None,
        }
    }

    pub fn null(span: Span) -> Self {
        YamlNode::new(Value::Null, span)
    }

    pub fn string(s: impl Into<String>, span: Span) -> Self {
        YamlNode::new(Value::String(s.into()), span)
    }

    pub fn map(m: Mapping, span: Span) -> Self {
        YamlNode::new(Value::Map(m), span)
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn as_map(&self) -> Option<&Mapping> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Mapping> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[YamlNode]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The node under `key` when this is a mapping.
    pub fn get(&self, key: &str) -> Option<&YamlNode> {
        self.as_map().and_then(|m| m.get(key))
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut YamlNode> {
        self.as_map_mut().and_then(|m| m.get_mut(key))
    }

    /// A scalar as text the way YAML wrote it (numbers and booleans too); `None` for
    /// null and collections.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            _ => None,
        }
    }

    /// A short name of the node's type, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::String(_) => "string",
            Value::Seq(_) => "sequence",
            Value::Map(_) => "mapping",
        }
    }

    /// The node at `path`, if there is one.
    pub fn at(&self, path: &YamlPath) -> Option<&YamlNode> {
        let mut node = self;
        for seg in path.segments() {
            node = match (seg, &node.value) {
                (PathSeg::Key(k), Value::Map(m)) => m.get(k.as_str())?,
                (PathSeg::Index(i), Value::Seq(s)) => s.get(*i)?,
                // JSON pointers cannot tell a numeric key from an index.
                (PathSeg::Index(i), Value::Map(m)) => m.get(i.to_string().as_str())?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The best span to report for `path`: the node itself, or its deepest existing parent.
    pub fn span_at(&self, path: &YamlPath) -> Span {
        let mut node = self;
        let mut span = self.span.clone();
        for seg in path.segments() {
            let next: Option<(Option<&Key>, &YamlNode)> = match (seg, &node.value) {
                (PathSeg::Key(k), Value::Map(m)) => {
                    m.get_key_value(k.as_str()).map(|(k, v)| (Some(k), v))
                }
                (PathSeg::Index(i), Value::Map(m)) => m
                    .get_key_value(i.to_string().as_str())
                    .map(|(k, v)| (Some(k), v)),
                (PathSeg::Index(i), Value::Seq(s)) => s.get(*i).map(|n| (None, n)),
                _ => None,
            };
            let Some((key, child)) = next else { break };
            // A key's own position reads better than that of a null or block value.
            span = match key {
                Some(key)
                    if matches!(child.value, Value::Null | Value::Map(_) | Value::Seq(_))
                        || child.span.is_none() =>
                {
                    key.span.clone()
                }
                _ => child.span.clone(),
            };
            node = child;
        }
        span
    }

    /// Converts to JSON (for schema validation and typed decoding). Non-finite floats
    /// become null: JSON cannot say them and no compose field takes them.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::String(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(YamlNode::to_json).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Visits every node, depth first, mutably.
    pub fn walk_mut(&mut self, f: &mut dyn FnMut(&mut YamlNode)) {
        f(self);
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.walk_mut(f)),
            Value::Map(m) => m.values_mut().for_each(|n| n.walk_mut(f)),
            _ => {}
        }
    }
}

/// Formats a float the way YAML readers expect to read it back.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        }
    } else {
        let s = f.to_string();
        if s.contains(['.', 'e', 'E']) {
            s
        } else {
            format!("{s}.0")
        }
    }
}

/// Parses a YAML stream into its documents. An empty stream (or one with only comments)
/// yields no document.
pub fn parse(text: &str, file: &str, limits: &Limits) -> Result<Vec<YamlNode>, LoadError> {
    let file: Arc<str> = Arc::from(file);
    if text.len() > limits.max_bytes {
        return Err(Diagnostic::error(
            Span::new(file, 1, 1),
            YamlPath::root(),
            format!(
                "file is {} bytes, more than the limit of {} bytes",
                text.len(),
                limits.max_bytes
            ),
        )
        .into());
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match parse_text(text, &file, limits) {
        Err(err) if is_indentation_error(&err) => {
            // A flow collection whose lines (its closing `]` most often) sit at the
            // indentation of its key: YAML 1.2 forbids it, but `docker compose` (go-yaml)
            // and PyYAML read it, and real files have it. Read it again indented one
            // column past its key; the first error stands if that fails too.
            match relax_flow_indentation(text) {
                Some(relaxed) => parse_text(&relaxed, &file, limits).map_err(|_| err),
                None => Err(err),
            }
        }
        other => other,
    }
}

const INDENTATION_ERROR: &str = "invalid YAML: invalid indentation";

fn is_indentation_error(err: &LoadError) -> bool {
    err.errors()
        .any(|d| d.message.starts_with(INDENTATION_ERROR))
}

/// `text` with every line inside a flow collection (`[` … `]`, `{` … `}` spread over lines)
/// indented at least one column past the key (or `- ` item) that opened it, or `None` when
/// no line needs it. Whitespace at the start of a line inside a flow collection is not
/// content (flow scalars fold it away), so this changes no value.
///
/// A pragmatic scan, not a YAML scanner: quotes, comments and block scalars are skipped;
/// a `[` or `{` opens a flow collection only where a value starts (after `: `, `- `, or at
/// the start of a line) or inside another one.
fn relax_flow_indentation(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut depth = 0usize;
    let mut opener_indent = 0usize;
    let mut changed = false;
    let mut quote: Option<char> = None;
    // A block scalar's indentation: its lines are skipped.
    let mut block_scalar: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let body = line.trim();
        if let Some(at) = block_scalar {
            if body.is_empty() || indent > at {
                out.push_str(line);
                continue;
            }
            block_scalar = None;
        }
        if depth > 0 && quote.is_none() && !body.is_empty() && indent <= opener_indent {
            out.push_str(&" ".repeat(opener_indent + 1 - indent));
            changed = true;
        }
        let start_depth = depth;
        let key_indent = indent + item_prefix(&line[indent..]);
        // Nothing but indentation, `- ` or `key: ` so far: a value may start here.
        let mut at_value = true;
        let mut previous = ' ';
        for c in line.chars() {
            match quote {
                Some('\'') if c == '\'' => quote = None,
                Some('"') if c == '"' && previous != '\\' => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if previous.is_whitespace() => break,
                    '\'' | '"' => quote = Some(c),
                    '[' | '{' if depth > 0 || at_value => {
                        if depth == 0 {
                            opener_indent = key_indent;
                        }
                        depth += 1;
                    }
                    ']' | '}' if depth > 0 => depth -= 1,
                    _ => {}
                },
            }
            at_value = match c {
                ' ' | '\t' => at_value || matches!(previous, ':' | '-'),
                _ => false,
            };
            previous = c;
        }
        if start_depth == 0 && depth == 0 && quote.is_none() && opens_block_scalar(body) {
            block_scalar = Some(indent);
        }
        out.push_str(line);
    }
    changed.then_some(out)
}

/// How many columns of `- ` item markers start `line` (after its indentation).
fn item_prefix(line: &str) -> usize {
    let mut n = 0;
    let mut rest = line;
    while let Some(after) = rest.strip_prefix("- ") {
        let spaces = after.len() - after.trim_start_matches(' ').len();
        n += 2 + spaces;
        rest = &after[spaces..];
    }
    n
}

/// Whether a block-context line ends with a block scalar indicator (`key: |`, `- >-2`).
fn opens_block_scalar(body: &str) -> bool {
    let body = match body.find(" #") {
        Some(at) => body[..at].trim_end(),
        None => body,
    };
    let last = body.rsplit([' ', '\t']).next().unwrap_or("");
    let mut chars = last.chars();
    matches!(chars.next(), Some('|' | '>')) && chars.all(|c| matches!(c, '-' | '+' | '1'..='9'))
}

fn parse_text(text: &str, file: &Arc<str>, limits: &Limits) -> Result<Vec<YamlNode>, LoadError> {
    let mut builder = Builder::new(file.clone(), limits);
    for event in Parser::new_from_str(text) {
        match event {
            Ok((event, span)) => builder.on_event(event, span)?,
            Err(e) => {
                let m = e.marker();
                let span = builder.span_of(m.line(), m.col());
                return Err(Diagnostic::error(
                    span,
                    YamlPath::root(),
                    format!("invalid YAML: {}", e.info()),
                )
                .into());
            }
        }
    }
    Ok(builder.documents)
}

/// A collection being built.
enum Frame {
    Seq {
        node: YamlNode,
        items: Vec<YamlNode>,
        anchor: usize,
    },
    Map {
        node: YamlNode,
        entries: Mapping,
        merges: Vec<YamlNode>,
        pending_key: Option<YamlNode>,
        /// The pending key is a plain `<<`.
        pending_merge: bool,
        anchor: usize,
    },
}

struct Builder<'l> {
    file: Arc<str>,
    limits: &'l Limits,
    stack: Vec<Frame>,
    /// Anchored nodes and their sizes (in nodes), for alias expansion accounting.
    anchors: std::collections::HashMap<usize, (YamlNode, usize)>,
    /// Nodes in the current document, aliases expanded.
    nodes: usize,
    documents: Vec<YamlNode>,
    /// The last scalar was a plain `<<`: a merge key when it stands in key position.
    plain_merge_key: bool,
}

impl<'l> Builder<'l> {
    fn new(file: Arc<str>, limits: &'l Limits) -> Self {
        Builder {
            file,
            limits,
            stack: Vec::new(),
            anchors: Default::default(),
            nodes: 0,
            documents: Vec::new(),
            plain_merge_key: false,
        }
    }

    fn span_of(&self, line: usize, col: usize) -> Span {
        Span::new(self.file.clone(), line as u32, col as u32 + 1)
    }

    fn span(&self, s: &YSpan) -> Span {
        self.span_of(s.start.line(), s.start.col())
    }

    fn error(&self, span: Span, msg: impl Into<String>) -> LoadError {
        Diagnostic::error(span, YamlPath::root(), msg).into()
    }

    fn count(&mut self, n: usize, span: &Span) -> Result<(), LoadError> {
        self.nodes += n;
        if self.nodes > self.limits.max_nodes {
            return Err(self
                .error(
                    span.clone(),
                    format!(
                        "document has more than {} nodes once aliases are expanded",
                        self.limits.max_nodes
                    ),
                )
                .diagnostics
                .remove(0)
                .with_hint("a chain of aliases that refer to each other grows exponentially")
                .into());
        }
        Ok(())
    }

    fn tag(
        &self,
        tag: Option<&saphyr_parser::Tag>,
        span: &Span,
    ) -> Result<(Tag, Option<String>), LoadError> {
        let Some(tag) = tag else {
            return Ok((Tag::None, None));
        };
        match (tag.handle.as_str(), tag.suffix.as_str()) {
            ("!", "reset") => Ok((Tag::Reset, None)),
            ("!", "override") => Ok((Tag::Override, None)),
            ("!!", core) | ("tag:yaml.org,2002:", core) => Ok((Tag::None, Some(core.to_string()))),
            (h, s) => Err(Diagnostic::error(
                span.clone(),
                YamlPath::root(),
                format!("unknown YAML tag `{h}{s}`"),
            )
            .with_hint("compose files know only the `!reset` and `!override` tags")
            .into()),
        }
    }

    fn on_event(&mut self, event: Event<'_>, yspan: YSpan) -> Result<(), LoadError> {
        let span = self.span(&yspan);
        if !matches!(event, Event::Scalar(..)) {
            self.plain_merge_key = false;
        }
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                self.anchors.clear();
                self.nodes = 0;
            }
            Event::Scalar(text, style, anchor, tag) => {
                // `<<` is a merge key when plain and untagged, or tagged `!!merge`.
                let merge_tag = tag.as_deref().is_some_and(|t| {
                    t.suffix == "merge" && (t.handle == "!!" || t.handle == "tag:yaml.org,2002:")
                });
                self.plain_merge_key =
                    text == "<<" && (merge_tag || (style == ScalarStyle::Plain && tag.is_none()));
                let (tag, core) = self.tag(tag.as_deref(), &span)?;
                let value = resolve_scalar(&text, style, core.as_deref())
                    .map_err(|m| self.error(span.clone(), m))?;
                self.count(1, &span)?;
                let node = YamlNode { value, span, tag };
                if anchor != 0 {
                    self.anchors.insert(anchor, (node.clone(), 1));
                }
                self.add(node)?;
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id).cloned() else {
                    return Err(self.error(span, "alias refers to an unknown anchor"));
                };
                self.count(size, &span)?;
                self.add(node)?;
            }
            Event::SequenceStart(anchor, tag) => {
                let (tag, _) = self.tag(tag.as_deref(), &span)?;
                self.push_frame(Frame::Seq {
                    node: YamlNode {
                        value: Value::Null,
                        span,
                        tag,
                    },
                    items: Vec::new(),
                    anchor,
                })?;
            }
            Event::MappingStart(anchor, tag) => {
                let (tag, _) = self.tag(tag.as_deref(), &span)?;
                self.push_frame(Frame::Map {
                    node: YamlNode {
                        value: Value::Null,
                        span,
                        tag,
                    },
                    entries: Mapping::new(),
                    merges: Vec::new(),
                    pending_key: None,
                    pending_merge: false,
                    anchor,
                })?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Err(self.error(span, "unbalanced YAML collection end"));
                };
                let (node, anchor) = match frame {
                    Frame::Seq {
                        mut node,
                        items,
                        anchor,
                    } => {
                        node.value = Value::Seq(items);
                        (node, anchor)
                    }
                    Frame::Map {
                        mut node,
                        mut entries,
                        merges,
                        anchor,
                        ..
                    } => {
                        apply_merge_keys(&mut entries, merges);
                        node.value = Value::Map(entries);
                        (node, anchor)
                    }
                };
                self.count(1, &node.span)?;
                if anchor != 0 {
                    let size = node_count(&node);
                    self.anchors.insert(anchor, (node.clone(), size));
                }
                self.add(node)?;
            }
        }
        Ok(())
    }

    fn push_frame(&mut self, frame: Frame) -> Result<(), LoadError> {
        if self.stack.len() >= self.limits.max_depth {
            let span = match &frame {
                Frame::Seq { node, .. } | Frame::Map { node, .. } => node.span.clone(),
            };
            return Err(self.error(
                span,
                format!(
                    "nesting is deeper than the limit of {} levels",
                    self.limits.max_depth
                ),
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// Adds a finished node to the collection being built, or ends a document.
    fn add(&mut self, node: YamlNode) -> Result<(), LoadError> {
        let Some(top) = self.stack.last_mut() else {
            self.documents.push(node);
            return Ok(());
        };
        match top {
            Frame::Seq { items, .. } => items.push(node),
            Frame::Map {
                entries,
                pending_key,
                pending_merge,
                ..
            } => match pending_key.take() {
                None => {
                    *pending_merge = self.plain_merge_key;
                    *pending_key = Some(node);
                }
                Some(key) => {
                    let key_span = key.span.clone();
                    let name = match &key.value {
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(self.error(key_span, "a mapping key must be a scalar"));
                        }
                        Value::Null => "null".to_string(),
                        _ => key.scalar_text().unwrap_or_default(),
                    };
                    if *pending_merge {
                        return self.add_merge(node);
                    }
                    if let Some((old, _)) = entries.get_key_value(name.as_str()) {
                        let msg = format!(
                            "duplicate key `{name}` (first at line {}, again at line {})",
                            old.span.line, key_span.line
                        );
                        return Err(self.error(key_span, msg));
                    }
                    entries.insert(Key::new(name, key_span), node);
                }
            },
        }
        Ok(())
    }

    fn add_merge(&mut self, node: YamlNode) -> Result<(), LoadError> {
        let sources = match node.value {
            Value::Map(_) => vec![node],
            Value::Seq(items) if items.iter().all(|n| n.as_map().is_some()) => items,
            _ => {
                return Err(Diagnostic::error(
                    node.span,
                    YamlPath::root(),
                    "the merge key `<<` takes a mapping or a sequence of mappings",
                )
                .with_hint("write `<<: *anchor` where `anchor` names a mapping")
                .into());
            }
        };
        if let Some(Frame::Map { merges, .. }) = self.stack.last_mut() {
            merges.extend(sources);
        }
        Ok(())
    }
}

/// `<<` merge keys: keys written in the mapping win; among merged mappings the first wins.
fn apply_merge_keys(entries: &mut Mapping, merges: Vec<YamlNode>) {
    for source in merges {
        if let Value::Map(m) = source.value {
            for (k, v) in m {
                if !entries.contains_key(k.name.as_str()) {
                    entries.insert(k, v);
                }
            }
        }
    }
}

fn node_count(node: &YamlNode) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Map(m) => 1 + m.values().map(node_count).sum::<usize>(),
        _ => 1,
    }
}

/// YAML 1.2 core schema resolution of a scalar; quoted and block scalars are strings.
fn resolve_scalar(text: &str, style: ScalarStyle, core_tag: Option<&str>) -> Result<Value, String> {
    match core_tag {
        Some("str") => return Ok(Value::String(text.to_string())),
        Some("null") => return Ok(Value::Null),
        Some("bool") => {
            return parse_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| format!("`{text}` is not a boolean"));
        }
        Some("int") => {
            return parse_int(text)
                .map(Value::Int)
                .ok_or_else(|| format!("`{text}` is not an integer"));
        }
        Some("float") => {
            return parse_float(text)
                .map(Value::Float)
                .ok_or_else(|| format!("`{text}` is not a number"));
        }
        Some("merge") => return Ok(Value::String(text.to_string())),
        Some(other) if !matches!(other, "map" | "seq") => {
            return Err(format!("unsupported YAML tag `!!{other}`"));
        }
        _ => {}
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_string()));
    }
    Ok(match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        _ => {
            if let Some(b) = parse_bool(text) {
                Value::Bool(b)
            } else if let Some(i) = parse_int(text) {
                Value::Int(i)
            } else if let Some(f) = parse_float(text) {
                Value::Float(f)
            } else {
                Value::String(text.to_string())
            }
        }
    })
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let (neg, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let value = if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        // YAML 1.1 octal (`0755`): the spec is 1.2, but compose files are written for
        // go-yaml, which still reads file modes this way.
        i64::from_str_radix(digits, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -value } else { value })
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    // The core schema's float: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac_part {
        Some(f) => digits(int_part) && digits(f) && !(int_part.is_empty() && f.is_empty()),
        None => !int_part.is_empty() && digits(int_part),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if mantissa_ok && exponent_ok {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> YamlNode {
        let mut docs = parse(text, "t.yaml", &Limits::default()).expect("parses");
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    }

    fn err(text: &str) -> String {
        parse(text, "t.yaml", &Limits::default())
            .expect_err("fails")
            .to_string()
    }

    #[test]
    fn a_flow_collection_closed_at_its_keys_indentation_reads_as_compose_reads_it() {
        let text = "services:\n  web:\n    command: [\n      \"a\",\n      \"b # not a comment\"\n    ]\n    environment: {\n      A: '1', B: \"[x\"\n    }\n    labels:\n      - x: [\n          1, 2\n        ]\n  - ignored\n";
        // (the last line is invalid in any reading: the relaxed text must fail too)
        assert!(parse(text, "t.yaml", &Limits::default()).is_err());
        let text = text.replace("  - ignored\n", "");
        let j = one(&text).to_json();
        assert_eq!(
            j["services"]["web"]["command"],
            serde_json::json!(["a", "b # not a comment"])
        );
        assert_eq!(j["services"]["web"]["environment"]["B"], "[x");
        assert_eq!(
            j["services"]["web"]["labels"][0]["x"],
            serde_json::json!([1, 2])
        );
        // In a sequence item, the key's column is past the `- `.
        let j = one("- command: [\n    a\n  ]\n").to_json();
        assert_eq!(j[0]["command"], serde_json::json!(["a"]));
        // Text that needs nothing is left alone; a block scalar's brackets are content.
        assert_eq!(relax_flow_indentation("a: [1,\n  2]\nb: |\n  [\n"), None);
        let j = one("s: |\n  [ not flow\nt: [\n  1\n]\n").to_json();
        assert_eq!(j["s"], "[ not flow\n");
        assert_eq!(j["t"], serde_json::json!([1]));
        // Other indentation errors stay errors.
        assert!(err("a:\n  b: 1\n c: 2\n").contains("invalid"));
    }

    #[test]
    fn core_schema_scalars() {
        let n = one(
            "a: 1\nb: 1.5\nc: true\nd: yes\ne: ~\nf: '1'\ng: 0x1F\nh: 0o17\ni: 1e3\nj: .5\nk: 1.2.3\n",
        );
        let j = n.to_json();
        assert_eq!(j["a"], 1);
        assert_eq!(j["b"], 1.5);
        assert_eq!(j["c"], true);
        assert_eq!(j["d"], "yes", "YAML 1.2: yes is a string");
        assert!(j["e"].is_null());
        assert_eq!(j["f"], "1");
        assert_eq!(j["g"], 31);
        assert_eq!(j["h"], 15);
        assert_eq!(j["i"], 1000.0);
        assert_eq!(j["j"], 0.5);
        assert_eq!(j["k"], "1.2.3");
        let modes = one("a: 0755\nb: 0440\nc: 089\nd: 0\n").to_json();
        assert_eq!(modes["a"], 0o755, "go-yaml reads a leading zero as octal");
        assert_eq!(modes["b"], 0o440);
        assert_eq!(modes["c"], 89);
        assert_eq!(modes["d"], 0);
    }

    #[test]
    fn positions_are_one_based() {
        let n = one("services:\n  web:\n    image: nginx\n");
        let img = n
            .at(&YamlPath::root().key("services").key("web").key("image"))
            .expect("exists");
        assert_eq!((img.span.line, img.span.column), (3, 12));
        let key_span = n.span_at(&YamlPath::root().key("services").key("web").key("nope"));
        assert_eq!(key_span.line, 2);
    }

    #[test]
    fn merge_keys_explicit_wins_first_source_wins() {
        let n = one("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  x: 9\n");
        let c = n.get("c").expect("c").to_json();
        assert_eq!(c, serde_json::json!({"x": 9, "y": 1, "z": 2}));
    }

    #[test]
    fn merge_key_to_scalar_is_rejected() {
        assert!(err("a: &a 1\nb:\n  <<: *a\n").contains("merge key"));
    }

    #[test]
    fn merge_tag_marks_a_merge_key() {
        let n = one("a: &a {x: 1}\nb:\n  !!merge <<: *a\n  y: 2\n");
        assert_eq!(
            n.get("b").expect("b").to_json(),
            serde_json::json!({"y": 2, "x": 1})
        );
    }

    #[test]
    fn quoted_merge_key_is_a_plain_key() {
        let n = one("a:\n  '<<': 1\n");
        assert_eq!(n.get("a").expect("a").to_json()["<<"], 1);
    }

    #[test]
    fn tags_are_kept() {
        let n = one("a: !reset null\nb: !override [1]\nc: !!str 12\n");
        assert_eq!(n.get("a").expect("a").tag, Tag::Reset);
        assert_eq!(n.get("b").expect("b").tag, Tag::Override);
        assert_eq!(n.get("c").expect("c").to_json(), "12");
        assert!(err("a: !custom 1\n").contains("unknown YAML tag"));
    }

    #[test]
    fn duplicate_keys_name_both_lines() {
        let e = err("a: 1\nb: 2\na: !reset 3\n");
        assert!(
            e.contains("duplicate key `a`") && e.contains("line 1") && e.contains("line 3"),
            "{e}"
        );
    }

    #[test]
    fn alias_bomb_is_stopped() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(err(&text).contains("aliases are expanded"));
    }

    #[test]
    fn deep_nesting_is_stopped() {
        let text = "[".repeat(10_000);
        let e = err(&text);
        assert!(e.contains("nesting") || e.contains("recursion"), "{e}");
    }

    #[test]
    fn multi_document_and_empty() {
        let docs = parse("a: 1\n---\na: 2\n", "t", &Limits::default()).expect("ok");
        assert_eq!(docs.len(), 2);
        assert!(
            parse("# only a comment\n", "t", &Limits::default())
                .expect("ok")
                .is_empty()
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let e = err("a: [1, 2\nb: 3\n");
        assert!(e.starts_with("t.yaml:"), "{e}");
    }
}
