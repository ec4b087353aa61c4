//! Variable interpolation in compose files (spec chapter "Interpolation").
//!
//! Supported forms: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`,
//! `${VAR?err}`, `${VAR:+alt}`, `${VAR+alt}`, with expansions nested inside the default,
//! alternative and error words, and `$$` for a literal `$`. A `$` that is followed by neither
//! `$`, `{` nor a name start stays literal, as compose-go keeps it; a `${` that does not form a
//! valid expansion is an error.
//!
//! A template is parsed completely before anything is looked up, so a syntax error anywhere is
//! reported even in a branch that would not be taken. The words of `:-`, `:?`, `:+` and their
//! relatives are then evaluated only when taken, like a shell does (compose-go evaluates them
//! eagerly, which makes `${SET:-${UNSET:?}}` fail; we do not).

use crate::diag::{Diagnostic, YamlPath};
use crate::yaml::{Value, YamlNode};

/// Deepest nesting of `${...}` inside defaults; keeps hostile input from exhausting the stack.
const MAX_NESTING: usize = 32;

/// Longest piece of the offending value quoted in an error message.
const MAX_QUOTED_CHARS: usize = 120;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterpolationError {
    /// `${NAME:?message}` or `${NAME?message}` met an unset (or empty) variable.
    #[error("required variable {name} is missing a value{}", reason_suffix(.reason))]
    MissingRequired { name: String, reason: String },
    /// The value is not a well-formed template.
    #[error("invalid interpolation format for {input:?}: {reason}")]
    InvalidFormat { input: String, reason: String },
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// Replaces the variables in `input` with their values from `lookup`. An unset variable with
/// no default becomes the empty string (compose warns about it; see
/// [`interpolate_node_with_unset_warnings`]).
pub fn interpolate_str(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    render(input, lookup).map(|rendered| rendered.text)
}

/// Interpolates every string value in the tree in place. Mapping keys are left alone: the
/// spec applies interpolation to values only. Each value that fails becomes an error
/// diagnostic and keeps its text; the walk goes on so that all failures come out together.
pub fn interpolate_node(
    node: &mut YamlNode,
    path: &YamlPath,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    walk(node, path, lookup, false, &mut diagnostics);
    diagnostics
}

/// Like [`interpolate_node`], and also adds a warning for each unset variable that was
/// replaced by an empty string, as `docker compose` prints them.
pub fn interpolate_node_with_unset_warnings(
    node: &mut YamlNode,
    path: &YamlPath,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    walk(node, path, lookup, true, &mut diagnostics);
    diagnostics
}

/// The names of the variables `input` refers to, nested ones included, each once, in order
/// of first appearance. For a malformed template, the names found before the error.
pub fn referenced_variables(input: &str) -> Vec<String> {
    let mut parser = Parser::new(input);
    // The names seen up to a syntax error are still worth reporting.
    let _ = parser.template(0, input.len(), 0);
    let mut names: Vec<String> = Vec::new();
    for name in parser.names {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

struct Rendered {
    text: String,
    /// Variables that were unset and had no default, in order of use.
    unset: Vec<String>,
}

fn render(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Rendered, InterpolationError> {
    if !input.contains('$') {
        return Ok(Rendered {
            text: input.to_string(),
            unset: Vec::new(),
        });
    }
    let pieces = Parser::new(input)
        .template(0, input.len(), 0)
        .map_err(|err| err.into_error(input))?;
    let mut rendered = Rendered {
        text: String::with_capacity(input.len()),
        unset: Vec::new(),
    };
    evaluate(&pieces, lookup, &mut rendered)?;
    Ok(rendered)
}

fn walk(
    node: &mut YamlNode,
    path: &YamlPath,
    lookup: &dyn Fn(&str) -> Option<String>,
    warn_unset: bool,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let YamlNode { value, span, .. } = node;
    match value {
        Value::String(text) if text.contains('$') => match render(text, lookup) {
            Ok(rendered) => {
                if warn_unset {
                    for name in &rendered.unset {
                        diagnostics.push(Diagnostic::warning(
                            span.clone(),
                            path.clone(),
                            format!(
                                "the {name:?} variable is not set; defaulting to a blank string"
                            ),
                        ));
                    }
                }
                *text = rendered.text;
            }
            Err(err) => diagnostics.push(error_diagnostic(span.clone(), path.clone(), &err)),
        },
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &path.index(i), lookup, warn_unset, diagnostics);
            }
        }
        Value::Map(mapping) => {
            for (key, item) in mapping.iter_mut() {
                walk(
                    item,
                    &path.key(key.name.clone()),
                    lookup,
                    warn_unset,
                    diagnostics,
                );
            }
        }
        _ => {}
    }
}

fn error_diagnostic(
    span: crate::diag::Span,
    path: YamlPath,
    err: &InterpolationError,
) -> Diagnostic {
    let hint = match err {
        InterpolationError::MissingRequired { name, .. } => {
            format!("set {name} in the environment or in the project's .env file")
        }
        InterpolationError::InvalidFormat { .. } => {
            "write `$$` where a literal `$` is meant".to_string()
        }
    };
    Diagnostic::error(span, path, err.to_string()).with_hint(hint)
}

/// One part of a parsed template.
#[derive(Debug)]
enum Piece<'a> {
    Literal(&'a str),
    Variable {
        name: &'a str,
        modifier: Option<(Modifier, Vec<Piece<'a>>)>,
    },
}

/// What follows the name inside `${...}`.
#[derive(Clone, Copy, Debug)]
enum Modifier {
    /// `:-`
    DefaultIfUnsetOrEmpty,
    /// `-`
    DefaultIfUnset,
    /// `:?`
    RequireNonEmpty,
    /// `?`
    RequireSet,
    /// `:+`
    AlternativeIfNonEmpty,
    /// `+`
    AlternativeIfSet,
}

/// A syntax error, at a byte offset of the whole input.
#[derive(Debug)]
enum SyntaxError {
    Unterminated {
        at: usize,
    },
    MissingName {
        at: usize,
    },
    BadModifier {
        at: usize,
        name: String,
        found: char,
    },
    TooDeep {
        at: usize,
    },
}

impl SyntaxError {
    fn into_error(self, input: &str) -> InterpolationError {
        let position = |at: usize| input[..at].chars().count() + 1;
        let reason = match self {
            SyntaxError::Unterminated { at } => {
                format!(
                    "`${{` at character {} is never closed by `}}`",
                    position(at)
                )
            }
            SyntaxError::MissingName { at } => format!(
                "`${{` at character {} must be followed by a variable name \
                 (a letter or `_`, then letters, digits or `_`)",
                position(at)
            ),
            SyntaxError::BadModifier { at, name, found } => format!(
                "unexpected {found:?} after `${{{name}` at character {}; \
                 expected `}}` or one of `:-`, `-`, `:?`, `?`, `:+`, `+`",
                position(at)
            ),
            SyntaxError::TooDeep { at } => format!(
                "expansions are nested more than {MAX_NESTING} deep at character {}",
                position(at)
            ),
        };
        InterpolationError::InvalidFormat {
            input: quoted_excerpt(input),
            reason,
        }
    }
}

fn quoted_excerpt(input: &str) -> String {
    match input.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_string(),
    }
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

struct Parser<'a> {
    src: &'a str,
    /// Every variable name met, in order, duplicates included.
    names: Vec<&'a str>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            names: Vec::new(),
        }
    }

    fn byte(&self, at: usize, end: usize) -> Option<u8> {
        (at < end).then(|| self.src.as_bytes()[at])
    }

    /// Parses `src[start..end]` as text with expansions in it.
    fn template(
        &mut self,
        start: usize,
        end: usize,
        depth: usize,
    ) -> Result<Vec<Piece<'a>>, SyntaxError> {
        let mut pieces = Vec::new();
        let mut literal_start = start;
        let mut at = start;
        while let Some(offset) = self.src[at..end].find('$') {
            let dollar = at + offset;
            let next = match self.byte(dollar + 1, end) {
                Some(b'$') => {
                    // Keep the first `$` of the pair as text, drop the second.
                    push_literal(&mut pieces, &self.src[literal_start..=dollar]);
                    literal_start = dollar + 2;
                    dollar + 2
                }
                Some(b'{') => {
                    push_literal(&mut pieces, &self.src[literal_start..dollar]);
                    let (piece, next) = self.braced(dollar, end, depth)?;
                    pieces.push(piece);
                    literal_start = next;
                    next
                }
                Some(b) if is_name_start(b) => {
                    push_literal(&mut pieces, &self.src[literal_start..dollar]);
                    let name_end = self.name_end(dollar + 1, end);
                    let name = &self.src[dollar + 1..name_end];
                    self.names.push(name);
                    pieces.push(Piece::Variable {
                        name,
                        modifier: None,
                    });
                    literal_start = name_end;
                    name_end
                }
                // Anything else cannot start an expansion: the `$` is plain text.
                _ => dollar + 1,
            };
            at = next;
        }
        push_literal(&mut pieces, &self.src[literal_start..end]);
        Ok(pieces)
    }

    fn name_end(&self, start: usize, end: usize) -> usize {
        let mut at = start;
        while self.byte(at, end).is_some_and(is_name_char) {
            at += 1;
        }
        at
    }

    /// Parses the `${...}` that starts at `dollar`; returns it and the offset after it.
    fn braced(
        &mut self,
        dollar: usize,
        end: usize,
        depth: usize,
    ) -> Result<(Piece<'a>, usize), SyntaxError> {
        if depth >= MAX_NESTING {
            return Err(SyntaxError::TooDeep { at: dollar });
        }
        let name_start = dollar + 2;
        match self.byte(name_start, end) {
            None => return Err(SyntaxError::Unterminated { at: dollar }),
            Some(b) if !is_name_start(b) => return Err(SyntaxError::MissingName { at: dollar }),
            Some(_) => {}
        }
        let name_end = self.name_end(name_start, end);
        let name = &self.src[name_start..name_end];
        self.names.push(name);

        let (modifier, word_start) = match (self.byte(name_end, end), self.byte(name_end + 1, end))
        {
            (None, _) => return Err(SyntaxError::Unterminated { at: dollar }),
            (Some(b'}'), _) => {
                let piece = Piece::Variable {
                    name,
                    modifier: None,
                };
                return Ok((piece, name_end + 1));
            }
            (Some(b':'), Some(b'-')) => (Modifier::DefaultIfUnsetOrEmpty, name_end + 2),
            (Some(b':'), Some(b'?')) => (Modifier::RequireNonEmpty, name_end + 2),
            (Some(b':'), Some(b'+')) => (Modifier::AlternativeIfNonEmpty, name_end + 2),
            (Some(b'-'), _) => (Modifier::DefaultIfUnset, name_end + 1),
            (Some(b'?'), _) => (Modifier::RequireSet, name_end + 1),
            (Some(b'+'), _) => (Modifier::AlternativeIfSet, name_end + 1),
            (Some(_), _) => {
                let found = self.src[name_end..end].chars().next().unwrap_or('}');
                return Err(SyntaxError::BadModifier {
                    at: name_end,
                    name: name.to_string(),
                    found,
                });
            }
        };
        let close = self
            .closing_brace(word_start, end)
            .ok_or(SyntaxError::Unterminated { at: dollar })?;
        let word = self.template(word_start, close, depth + 1)?;
        let piece = Piece::Variable {
            name,
            modifier: Some((modifier, word)),
        };
        Ok((piece, close + 1))
    }

    /// The `}` that closes a `${` whose word starts at `start`. Braces inside the word pair up,
    /// so `${A:-${B}}` and `${A:-{x}}` close at their last brace.
    fn closing_brace(&self, start: usize, end: usize) -> Option<usize> {
        let mut open = 1usize;
        for (i, b) in self.src.as_bytes()[start..end].iter().enumerate() {
            match b {
                b'{' => open += 1,
                b'}' => {
                    open -= 1;
                    if open == 0 {
                        return Some(start + i);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

fn push_literal<'a>(pieces: &mut Vec<Piece<'a>>, text: &'a str) {
    if !text.is_empty() {
        pieces.push(Piece::Literal(text));
    }
}

fn evaluate(
    pieces: &[Piece<'_>],
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Rendered,
) -> Result<(), InterpolationError> {
    for piece in pieces {
        match piece {
            Piece::Literal(text) => out.text.push_str(text),
            Piece::Variable {
                name,
                modifier: None,
            } => match lookup(name) {
                Some(value) => out.text.push_str(&value),
                None => out.unset.push(name.to_string()),
            },
            Piece::Variable {
                name,
                modifier: Some((modifier, word)),
            } => apply_modifier(name, *modifier, word, lookup, out)?,
        }
    }
    Ok(())
}

fn apply_modifier(
    name: &str,
    modifier: Modifier,
    word: &[Piece<'_>],
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Rendered,
) -> Result<(), InterpolationError> {
    let value = lookup(name);
    let is_set = value.is_some();
    let is_non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let value = value.unwrap_or_default();
    match modifier {
        Modifier::DefaultIfUnsetOrEmpty if !is_non_empty => evaluate(word, lookup, out)?,
        Modifier::DefaultIfUnset if !is_set => evaluate(word, lookup, out)?,
        Modifier::RequireNonEmpty if !is_non_empty => return Err(missing(name, word, lookup)?),
        Modifier::RequireSet if !is_set => return Err(missing(name, word, lookup)?),
        Modifier::AlternativeIfNonEmpty if is_non_empty => evaluate(word, lookup, out)?,
        Modifier::AlternativeIfSet if is_set => evaluate(word, lookup, out)?,
        // The alternatives stand for nothing when not taken; the others for the value.
        Modifier::AlternativeIfNonEmpty | Modifier::AlternativeIfSet => {}
        _ => out.text.push_str(&value),
    }
    Ok(())
}

/// The error for a missing required variable, its message word evaluated.
fn missing(
    name: &str,
    word: &[Piece<'_>],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<InterpolationError, InterpolationError> {
    let mut reason = Rendered {
        text: String::new(),
        unset: Vec::new(),
    };
    evaluate(word, lookup, &mut reason)?;
    Ok(InterpolationError::MissingRequired {
        name: name.to_string(),
        reason: reason.text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{Limits, parse};
    use proptest::prelude::*;

    /// FOO is set, EMPTY is set to the empty string, anything else is unset.
    fn env(name: &str) -> Option<String> {
        match name {
            "FOO" => Some("first".to_string()),
            "EMPTY" => Some(String::new()),
            "A_1" => Some("digits".to_string()),
            "_" => Some("underscore".to_string()),
            _ => None,
        }
    }

    fn ok(input: &str) -> String {
        match interpolate_str(input, &env) {
            Ok(s) => s,
            Err(e) => panic!("{input:?} failed: {e}"),
        }
    }

    fn err(input: &str) -> InterpolationError {
        match interpolate_str(input, &env) {
            Ok(s) => panic!("{input:?} should fail, gave {s:?}"),
            Err(e) => e,
        }
    }

    fn assert_invalid(input: &str) {
        let e = err(input);
        assert!(
            matches!(e, InterpolationError::InvalidFormat { .. }),
            "{input:?}: {e}"
        );
        assert!(
            e.to_string()
                .starts_with("invalid interpolation format for")
        );
    }

    #[test]
    fn text_without_dollar_is_unchanged() {
        assert_eq!(ok("plain text: {x} }"), "plain text: {x} }");
    }

    #[test]
    fn plain_and_braced_variables_expand() {
        assert_eq!(ok("This $FOO var"), "This first var");
        assert_eq!(ok("This ${FOO} var"), "This first var");
        assert_eq!(ok("${FOO}${FOO}"), "firstfirst");
    }

    #[test]
    fn unset_or_empty_variable_without_default_is_blank() {
        assert_eq!(ok("This ${missing} var"), "This  var");
        assert_eq!(ok("This $missing var"), "This  var");
        assert_eq!(ok("This ${EMPTY} var"), "This  var");
    }

    #[test]
    fn plain_name_stops_at_the_first_non_name_character() {
        assert_eq!(ok("$FOO-bar"), "first-bar");
        assert_eq!(ok("$FOO.txt"), "first.txt");
        assert_eq!(ok("$FOObar"), "");
    }

    #[test]
    fn names_may_hold_digits_and_underscores() {
        assert_eq!(ok("$A_1/${A_1}"), "digits/digits");
        assert_eq!(ok("${_}"), "underscore");
    }

    #[test]
    fn colon_dash_defaults_when_unset_or_empty() {
        assert_eq!(ok("ok ${missing:-def}"), "ok def");
        assert_eq!(ok("ok ${EMPTY:-def}"), "ok def");
        assert_eq!(ok("ok ${FOO:-def}"), "ok first");
    }

    #[test]
    fn dash_defaults_only_when_unset() {
        assert_eq!(ok("ok ${missing-def}"), "ok def");
        assert_eq!(ok("ok ${EMPTY-def}"), "ok ");
        assert_eq!(ok("ok ${FOO-def}"), "ok first");
    }

    #[test]
    fn empty_default_gives_empty_string() {
        assert_eq!(ok("[${missing:-}]"), "[]");
        assert_eq!(ok("[${missing-}]"), "[]");
    }

    #[test]
    fn default_word_is_taken_verbatim_up_to_the_closing_brace() {
        assert_eq!(
            ok("ok ${EMPTY:-/non:-alphanumeric}"),
            "ok /non:-alphanumeric"
        );
        assert_eq!(ok("${missing-myerror?msg}"), "myerror?msg");
        assert_eq!(ok("${missing:-a b\nc}"), "a b\nc");
        assert_eq!(ok("${missing:-{x}}"), "{x}");
    }

    #[test]
    fn defaults_expand_nested_variables() {
        assert_eq!(ok("ok ${missing-$FOO}"), "ok first");
        assert_eq!(ok("ok ${missing-${FOO}}"), "ok first");
        assert_eq!(ok("ok ${missing-${FOO} ${FOO}}"), "ok first first");
        assert_eq!(ok("ok ${EMPTY:-${FOO}}"), "ok first");
        assert_eq!(ok("${A:-${B:-x}}"), "x");
        assert_eq!(ok("${A:-foo_${FOO}}"), "foo_first");
        assert_eq!(ok("${A:-${B:-${C:-deep}}}!"), "deep!");
    }

    #[test]
    fn text_after_a_nested_expansion_is_kept() {
        assert_eq!(ok("${missing:-${FOO}}/tail $FOO"), "first/tail first");
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        assert_eq!(ok("$${foo}"), "${foo}");
        assert_eq!(ok("$$VAR_NOT_INTERPOLATED"), "$VAR_NOT_INTERPOLATED");
        assert_eq!(ok("$$$FOO"), "$first");
        assert_eq!(ok("$$$$"), "$$");
    }

    #[test]
    fn double_dollar_inside_a_default_is_a_literal_dollar() {
        assert_eq!(ok("${missing:-$$FOO}"), "$FOO");
        assert_eq!(ok("${missing:-$${FOO}}"), "${FOO}");
        assert_eq!(ok("${missing:-a$$}"), "a$");
    }

    #[test]
    fn dollar_that_cannot_start_a_name_stays_literal() {
        assert_eq!(ok("cost: 5$"), "cost: 5$");
        assert_eq!(ok("$1 and $ and $-x and $}"), "$1 and $ and $-x and $}");
        assert_eq!(ok("regex ^a$|b$"), "regex ^a$|b$");
    }

    #[test]
    fn colon_question_fails_when_unset_or_empty() {
        let e = err("not ok ${UNSET_VAR:?Mandatory Variable Unset}");
        assert_eq!(
            e.to_string(),
            "required variable UNSET_VAR is missing a value: Mandatory Variable Unset"
        );
        let e = err("not ok ${EMPTY:?Mandatory Variable Empty}");
        assert_eq!(
            e.to_string(),
            "required variable EMPTY is missing a value: Mandatory Variable Empty"
        );
        assert_eq!(ok("ok ${FOO:?err}"), "ok first");
    }

    #[test]
    fn question_fails_only_when_unset() {
        let e = err("${UNSET_VAR?bar-baz}");
        assert_eq!(
            e,
            InterpolationError::MissingRequired {
                name: "UNSET_VAR".into(),
                reason: "bar-baz".into()
            }
        );
        assert_eq!(ok("ok ${EMPTY?err}"), "ok ");
        assert_eq!(ok("ok ${FOO?err}"), "ok first");
    }

    #[test]
    fn required_without_message_says_so_plainly() {
        assert_eq!(
            err("${UNSET_VAR:?}").to_string(),
            "required variable UNSET_VAR is missing a value"
        );
        assert_eq!(
            err("${UNSET_VAR?}").to_string(),
            "required variable UNSET_VAR is missing a value"
        );
    }

    #[test]
    fn required_message_is_interpolated() {
        assert_eq!(
            err("${UNSET_VAR:?Mandatory ${FOO}}").to_string(),
            "required variable UNSET_VAR is missing a value: Mandatory first"
        );
        assert_eq!(
            err("${UNSET_VAR?$FOO}").to_string(),
            "required variable UNSET_VAR is missing a value: first"
        );
    }

    #[test]
    fn required_inside_a_taken_default_fails() {
        let e = err("${missing:-${INNER:?inner needed}}");
        assert_eq!(
            e.to_string(),
            "required variable INNER is missing a value: inner needed"
        );
    }

    #[test]
    fn branches_not_taken_are_not_evaluated() {
        assert_eq!(ok("${FOO:-${INNER:?never}}"), "first");
        assert_eq!(ok("${missing:+${INNER:?never}}"), "");
    }

    #[test]
    fn colon_plus_gives_alternative_when_non_empty() {
        assert_eq!(ok("[${FOO:+alt}]"), "[alt]");
        assert_eq!(ok("[${EMPTY:+alt}]"), "[]");
        assert_eq!(ok("[${missing:+alt}]"), "[]");
        assert_eq!(ok("[${FOO:+--flag=$FOO}]"), "[--flag=first]");
    }

    #[test]
    fn plus_gives_alternative_when_set() {
        assert_eq!(ok("[${FOO+alt}]"), "[alt]");
        assert_eq!(ok("[${EMPTY+alt}]"), "[alt]");
        assert_eq!(ok("[${missing+alt}]"), "[]");
    }

    #[test]
    fn modifier_is_the_one_right_after_the_name() {
        assert_eq!(ok("${missing-va:-lu:?e}"), "va:-lu:?e");
        assert_eq!(ok("${FOO+va-lu?e}"), "va-lu?e");
        assert_eq!(
            err("${missing?va+lu-e:?e}").to_string(),
            "required variable missing is missing a value: va+lu-e:?e"
        );
    }

    #[test]
    fn malformed_braces_are_errors() {
        for input in [
            "${",
            "${}",
            "${ }",
            "${ VAR }",
            "${ foo}",
            "${foo }",
            "${foo!}",
            "${foo",
            "${foo:-x",
            "${FOO:x}",
            "a ${1abc} b",
            "${A:-${}",
        ] {
            assert_invalid(input);
        }
    }

    #[test]
    fn invalid_format_names_the_value_and_the_place() {
        assert_eq!(
            err("x ${ VAR }").to_string(),
            "invalid interpolation format for \"x ${ VAR }\": `${` at character 3 must be \
             followed by a variable name (a letter or `_`, then letters, digits or `_`)"
        );
        assert_eq!(
            err("ab${foo").to_string(),
            "invalid interpolation format for \"ab${foo\": `${` at character 3 is never \
             closed by `}`"
        );
        let message = err("${foo!}").to_string();
        assert!(
            message.contains("unexpected '!' after `${foo`"),
            "{message}"
        );
    }

    #[test]
    fn syntax_errors_in_branches_not_taken_still_count() {
        assert_invalid("${FOO:-${ bad }}");
    }

    #[test]
    fn very_deep_nesting_is_an_error_not_a_crash() {
        let depth = 200;
        let input = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
        let message = err(&input).to_string();
        assert!(message.contains("nested more than 32 deep"), "{message}");
        let shallow = format!("{}x{}", "${A:-".repeat(10), "}".repeat(10));
        assert_eq!(ok(&shallow), "x");
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let input = format!("{}${{", "a".repeat(500));
        let message = err(&input).to_string();
        assert!(message.contains('…'));
        assert!(message.len() < 400, "{message}");
    }

    #[test]
    fn multiline_values_expand_on_every_line() {
        assert_eq!(
            ok("echo $FOO\necho ${missing:-two}\n"),
            "echo first\necho two\n"
        );
    }

    #[test]
    fn non_ascii_text_is_kept() {
        assert_eq!(ok("héllo ${FOO} wörld €$"), "héllo first wörld €$");
    }

    #[test]
    fn referenced_variables_lists_each_name_once_in_order() {
        assert_eq!(
            referenced_variables("$docker:${project:-cli} ${A:-${B:-$docker}} $$NOT ${C?x}"),
            ["docker", "project", "A", "B", "C"]
        );
        assert!(referenced_variables("no vars, $$escaped, $1").is_empty());
    }

    #[test]
    fn referenced_variables_keeps_names_before_a_syntax_error() {
        assert_eq!(referenced_variables("$FIRST ${ bad} $LATER"), ["FIRST"]);
    }

    fn tree(yaml: &str) -> YamlNode {
        match parse(yaml, "compose.yaml", &Limits::default()) {
            Ok(mut docs) if docs.len() == 1 => docs.remove(0),
            other => panic!("bad test yaml: {other:?}"),
        }
    }

    #[test]
    fn node_values_are_interpolated_and_keys_are_not() {
        let mut root = tree(
            "services:\n  web:\n    image: \"nginx:${FOO}\"\n    labels:\n      \"$FOO\": \"$FOO\"\n    command: [\"echo\", \"$$HOME\", \"${missing:-x}\"]\n    ports: [8080]\n",
        );
        let diags = interpolate_node(&mut root, &YamlPath::root(), &env);
        assert!(diags.is_empty(), "{diags:?}");
        let web = root.get("services").and_then(|s| s.get("web"));
        let web = web.unwrap_or_else(|| panic!("no web"));
        assert_eq!(
            web.get("image").and_then(YamlNode::as_str),
            Some("nginx:first")
        );
        let labels = web.get("labels").and_then(YamlNode::as_map);
        let labels = labels.unwrap_or_else(|| panic!("no labels"));
        assert_eq!(labels.get("$FOO").and_then(YamlNode::as_str), Some("first"));
        let command: Vec<_> = web
            .get("command")
            .and_then(YamlNode::as_seq)
            .unwrap_or_default()
            .iter()
            .filter_map(YamlNode::as_str)
            .collect();
        assert_eq!(command, ["echo", "$HOME", "x"]);
        assert!(matches!(
            web.get("ports")
                .and_then(|p| p.as_seq())
                .map(|s| &s[0].value),
            Some(Value::Int(8080))
        ));
    }

    #[test]
    fn every_failing_value_is_reported_with_its_place() {
        let mut root = tree(
            "services:\n  web:\n    image: ${IMAGE:?set the image}\n    environment:\n      - A=${ bad }\n      - B=$FOO\n",
        );
        let diags = interpolate_node(&mut root, &YamlPath::root(), &env);
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert!(diags.iter().all(Diagnostic::is_error));
        assert_eq!(diags[0].path.to_string(), "services.web.image");
        assert_eq!((diags[0].span.line, diags[0].span.column), (3, 12));
        assert_eq!(
            diags[0].message,
            "required variable IMAGE is missing a value: set the image"
        );
        assert!(
            diags[0]
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("IMAGE"))
        );
        assert_eq!(diags[1].path.to_string(), "services.web.environment[0]");
        assert_eq!(diags[1].span.line, 5);
        // The walk went on past the failures.
        let b = root.at(&YamlPath::root()
            .key("services")
            .key("web")
            .key("environment")
            .index(1));
        assert_eq!(b.and_then(YamlNode::as_str), Some("B=first"));
        // A failed value keeps its text.
        let a = root.at(&YamlPath::root()
            .key("services")
            .key("web")
            .key("environment")
            .index(0));
        assert_eq!(a.and_then(YamlNode::as_str), Some("A=${ bad }"));
    }

    #[test]
    fn unset_variables_give_warnings_on_request() {
        let yaml = "x: \"$FOO $NOPE ${ALSO_NOPE} ${DEFAULTED:-d} ${GATED:+g}\"\n";
        let mut quiet = tree(yaml);
        assert!(interpolate_node(&mut quiet, &YamlPath::root(), &env).is_empty());
        let mut loud = tree(yaml);
        let diags = interpolate_node_with_unset_warnings(&mut loud, &YamlPath::root(), &env);
        let messages: Vec<_> = diags.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "the \"NOPE\" variable is not set; defaulting to a blank string",
                "the \"ALSO_NOPE\" variable is not set; defaulting to a blank string",
            ]
        );
        assert!(diags.iter().all(|d| !d.is_error()));
        assert_eq!(diags[0].path.to_string(), "x");
        assert_eq!(loud.get("x").and_then(YamlNode::as_str), Some("first   d "));
    }

    proptest! {
        #[test]
        fn never_panics(input in ".{0,200}") {
            let _ = interpolate_str(&input, &env);
            let _ = referenced_variables(&input);
        }

        #[test]
        fn never_panics_on_template_like_input(input in "[$\\{\\}:?+\\-a-zA-Z_0-9 ]{0,80}") {
            let _ = interpolate_str(&input, &env);
            let _ = referenced_variables(&input);
        }

        #[test]
        fn text_without_dollar_comes_back_unchanged(input in "[^$]{0,200}") {
            prop_assert_eq!(interpolate_str(&input, &env), Ok(input.clone()));
        }

        #[test]
        fn escaped_text_comes_back_literally(input in ".{0,100}") {
            let escaped = input.replace('$', "$$");
            prop_assert_eq!(interpolate_str(&escaped, &env), Ok(input.clone()));
        }
    }
}
