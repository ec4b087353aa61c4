//! Diagnostics: what went wrong in a compose file, where, and what to do about it.
//!
//! The loader never stops at the first problem it can recover from: every stage collects
//! [`Diagnostic`]s and the caller gets all of them at once in a [`LoadError`].

use std::fmt;
use std::sync::Arc;

/// A position in a source file. Lines and columns are 1-based, as editors show them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// The file as the user named it (or `<input>` for text without a file).
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl Span {
    pub fn new(file: Arc<str>, line: u32, column: u32) -> Self {
        Span { file, line, column }
    }

    /// A span for things that have no place in a file (command-line flags, defaults).
    pub fn none() -> Self {
        Span {
            file: Arc::from(""),
            line: 0,
            column: 0,
        }
    }

    pub fn is_none(&self) -> bool {
        self.line == 0
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return Ok(());
        }
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A path into a YAML document: `services.web.ports[0]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct YamlPath(Vec<PathSeg>);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

impl YamlPath {
    pub fn root() -> Self {
        YamlPath(Vec::new())
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segs = self.0.clone();
        segs.push(PathSeg::Key(key.into()));
        YamlPath(segs)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(PathSeg::Index(index));
        YamlPath(segs)
    }

    pub fn segments(&self) -> &[PathSeg] {
        &self.0
    }

    /// Parses a JSON pointer (`/services/web/ports/0`) as produced by the schema validator.
    /// Numeric segments become indexes; the caller resolves them against the document.
    pub fn from_json_pointer(pointer: &str) -> Self {
        let segs = pointer
            .split('/')
            .skip(1)
            .map(|s| {
                let s = s.replace("~1", "/").replace("~0", "~");
                match s.parse::<usize>() {
                    Ok(i) => PathSeg::Index(i),
                    Err(_) => PathSeg::Key(s),
                }
            })
            .collect();
        YamlPath(segs)
    }
}

impl From<Vec<PathSeg>> for YamlPath {
    fn from(segs: Vec<PathSeg>) -> Self {
        YamlPath(segs)
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSeg::Key(k) if i == 0 => write!(f, "{k}")?,
                PathSeg::Key(k) => write!(f, ".{k}")?,
                PathSeg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    pub path: YamlPath,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, path: YamlPath, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            path,
            hint: None,
        }
    }

    pub fn warning(span: Span, path: YamlPath, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            message: message.into(),
            span,
            path,
            hint: None,
        }
    }

    /// An error that is not tied to a place in a file (a missing file, a bad flag).
    pub fn global(message: impl Into<String>) -> Self {
        Diagnostic::error(Span::none(), YamlPath::root(), message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if !self.span.is_none() {
            write!(f, "{}: ", self.span)?;
        }
        write!(f, "{level}: ")?;
        if !self.path.segments().is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Everything that stopped a load, all at once. Holds at least one error; may hold warnings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadError {
    pub fn new(diagnostics: Vec<Diagnostic>) -> Self {
        LoadError { diagnostics }
    }

    pub fn single(diagnostic: Diagnostic) -> Self {
        LoadError {
            diagnostics: vec![diagnostic],
        }
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

impl From<Diagnostic> for LoadError {
    fn from(d: Diagnostic) -> Self {
        LoadError::single(d)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics during a stage; turns into a `Result` at the end.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        self.items.extend(ds);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// Warnings collected so far, taken out (used when the stage succeeded).
    pub fn take_warnings(&mut self) -> Vec<Diagnostic> {
        std::mem::take(&mut self.items)
    }

    /// `Ok(value)` if no error was collected, the whole list otherwise.
    pub fn finish<T>(self, value: T) -> Result<(T, Vec<Diagnostic>), LoadError> {
        if self.has_errors() {
            Err(LoadError::new(self.into_vec()))
        } else {
            Ok((value, self.into_vec()))
        }
    }

    /// The diagnostics in the order found, each said once (the same variable twice in one
    /// value, say, is one finding).
    pub fn into_vec(self) -> Vec<Diagnostic> {
        let mut seen = std::collections::HashSet::new();
        self.items
            .into_iter()
            .filter(|d| seen.insert((d.span.clone(), d.message.clone())))
            .collect()
    }
}
