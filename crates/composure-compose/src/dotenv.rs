//! The `.env` and `env_file` formats, read the way compose reads them.
//!
//! [`parse_dotenv`] follows compose-go's dotenv parser (spec: "Env_file format"):
//! `KEY=value` and `KEY: value`, an optional `export ` prefix, comments, single quotes
//! (literal), double quotes (escapes and interpolation), values spanning lines inside quotes,
//! and lines holding only `KEY`, whose value comes from the caller's environment.
//! [`parse_raw_env`] is the `format: raw` variant, `docker run --env-file` style.

use indexmap::IndexMap;

use crate::interpolate::{InterpolationError, interpolate_str};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DotenvError {
    #[error("line {line}: unexpected character {found:?} in variable name {text:?}")]
    InvalidNameCharacter {
        line: usize,
        found: char,
        text: String,
    },
    #[error("line {line}: key cannot contain a space: {name:?}")]
    NameWithSpace { line: usize, name: String },
    #[error("line {line}: missing variable name")]
    MissingName { line: usize },
    #[error("line {line}: unterminated quoted value {text}")]
    UnterminatedQuote { line: usize, text: String },
    #[error("line {line}: {source}")]
    Interpolation {
        line: usize,
        #[source]
        source: InterpolationError,
    },
}

impl DotenvError {
    /// The 1-based line the problem starts on.
    pub fn line(&self) -> usize {
        match self {
            DotenvError::InvalidNameCharacter { line, .. }
            | DotenvError::NameWithSpace { line, .. }
            | DotenvError::MissingName { line }
            | DotenvError::UnterminatedQuote { line, .. }
            | DotenvError::Interpolation { line, .. } => *line,
        }
    }
}

const BYTE_ORDER_MARK: char = '\u{feff}';

/// Parses a `.env` file. Values may refer to variables: `lookup` (the caller's environment)
/// is asked first, then the keys defined earlier in the same file, as compose-go does. A key
/// given alone takes its value from `lookup` and is left out when `lookup` has none. Keys keep
/// the order of their first definition; a later definition replaces the value.
pub fn parse_dotenv(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, DotenvError> {
    let text = text.strip_prefix(BYTE_ORDER_MARK).unwrap_or(text);
    let mut vars = IndexMap::new();
    let mut reader = Reader { text, pos: 0 };
    while reader.next_statement() {
        let start = reader.pos;
        match reader.key()? {
            Key::Inherited(name) => {
                if let Some(value) = lookup(&name) {
                    vars.insert(name, value);
                }
            }
            Key::Assigned(name) => {
                let raw = reader.value()?;
                let value = raw
                    .resolve(&|var: &str| lookup(var).or_else(|| vars.get(var).cloned()))
                    .map_err(|source| DotenvError::Interpolation {
                        line: reader.line_at(start),
                        source,
                    })?;
                vars.insert(name, value);
            }
        }
    }
    Ok(vars)
}

/// Parses an `env_file` with `format: raw`: `KEY=VALUE` lines taken literally (no quotes, no
/// escapes, no interpolation, no trimming of the value), `#` comment lines and blank lines
/// skipped. A line holding only `KEY` is dropped, having no environment to inherit from; see
/// [`parse_raw_env_with_lookup`].
pub fn parse_raw_env(text: &str) -> Result<IndexMap<String, String>, DotenvError> {
    parse_raw_env_with_lookup(text, &|_| None)
}

/// [`parse_raw_env`], with lines holding only `KEY` taking their value from `lookup`.
pub fn parse_raw_env_with_lookup(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, DotenvError> {
    let text = text.strip_prefix(BYTE_ORDER_MARK).unwrap_or(text);
    let mut vars = IndexMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (line, None),
        };
        if name.is_empty() {
            return Err(DotenvError::MissingName { line: line_number });
        }
        // A name may not hold whitespace; for a value-less line trailing blanks are allowed.
        let name = if value.is_none() {
            name.trim_end()
        } else {
            name
        };
        if name.contains(char::is_whitespace) {
            return Err(DotenvError::NameWithSpace {
                line: line_number,
                name: name.to_string(),
            });
        }
        let value = match value {
            Some(value) => Some(value.to_string()),
            None => lookup(name),
        };
        if let Some(value) = value {
            vars.insert(name.to_string(), value);
        }
    }
    Ok(vars)
}

/// A value as written, before escapes and interpolation.
enum RawValue<'a> {
    Unquoted(&'a str),
    SingleQuoted(String),
    DoubleQuoted(String),
}

impl RawValue<'_> {
    fn resolve(
        self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, InterpolationError> {
        match self {
            RawValue::Unquoted(text) => interpolate_str(text, lookup),
            RawValue::SingleQuoted(text) => Ok(text),
            RawValue::DoubleQuoted(text) => interpolate_str(&expand_escapes(&text), lookup),
        }
    }
}

/// Blanks inside a line, as compose-go's dotenv counts them (never the line break).
fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')
}

enum Key {
    /// `NAME=...` or `NAME: ...`: a value follows.
    Assigned(String),
    /// `NAME` alone: the value comes from the environment.
    Inherited(String),
}

/// A cursor over the file.
struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    /// Counted only when an error needs it, to keep parsing linear.
    fn line_at(&self, pos: usize) -> usize {
        self.text[..pos].matches('\n').count() + 1
    }

    /// Moves to the start of the next statement, past blank lines and comments. False at
    /// the end of the file.
    fn next_statement(&mut self) -> bool {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if trimmed.is_empty() {
                return false;
            }
            if !trimmed.starts_with('#') {
                return true;
            }
            self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
        }
    }

    /// Reads `[export ]NAME` and the `=` or `:` after it, up to the value.
    fn key(&mut self) -> Result<Key, DotenvError> {
        let start = self.pos;
        self.skip_export();
        let rest = self.rest();
        let mut separator = None;
        for (i, c) in rest.char_indices() {
            match c {
                '=' | ':' => {
                    separator = Some(i);
                    break;
                }
                '\n' => break,
                c if is_blank(c) || is_name_char(c) => {}
                found => {
                    return Err(DotenvError::InvalidNameCharacter {
                        line: self.line_at(start),
                        found,
                        text: rest.lines().next().unwrap_or_default().to_string(),
                    });
                }
            }
        }
        let Some(separator) = separator else {
            // The name alone on its line (or at the end of the file).
            let line_end = rest.find('\n').unwrap_or(rest.len());
            self.pos += (line_end + 1).min(rest.len());
            return Ok(Key::Inherited(self.checked_name(&rest[..line_end], start)?));
        };
        let name = self.checked_name(&rest[..separator], start)?;
        self.pos += separator + 1;
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches(is_blank).len();
        Ok(Key::Assigned(name))
    }

    /// The name with trailing blanks removed; inner ones are an error on the line of `start`.
    fn checked_name(&self, name: &str, start: usize) -> Result<String, DotenvError> {
        let name = name.trim_end();
        if name.contains(char::is_whitespace) {
            return Err(DotenvError::NameWithSpace {
                line: self.line_at(start),
                name: name.to_string(),
            });
        }
        Ok(name.to_string())
    }

    fn skip_export(&mut self) {
        if let Some(after) = self.rest().strip_prefix("export")
            && after.starts_with(is_blank)
        {
            let trimmed = after.trim_start_matches(is_blank);
            self.pos += self.rest().len() - trimmed.len();
        }
    }

    fn value(&mut self) -> Result<RawValue<'a>, DotenvError> {
        match self.rest().chars().next() {
            Some(quote @ ('"' | '\'')) => self.quoted(quote),
            _ => Ok(self.unquoted()),
        }
    }

    fn unquoted(&mut self) -> RawValue<'a> {
        let rest = self.rest();
        let line_end = rest.find('\n').unwrap_or(rest.len());
        self.pos += (line_end + 1).min(rest.len());
        let line = &rest[..line_end];
        // Only ` #` opens an inline comment: `a#b` is a value.
        let value = line.split(" #").next().unwrap_or_default();
        RawValue::Unquoted(value.trim_end())
    }

    /// Reads a quoted value. A backslash before the quote character keeps the quote in the
    /// value; before anything else, both characters stay (escapes are expanded later, and only
    /// in double quotes). Whatever follows the closing quote on the line is read as the next
    /// statement, which is how `"value" # comment` works.
    fn quoted(&mut self, quote: char) -> Result<RawValue<'a>, DotenvError> {
        let start = self.pos;
        let body = &self.rest()[quote.len_utf8()..];
        let mut value = String::new();
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            if escaped {
                escaped = false;
                if c != quote {
                    value.push('\\');
                }
                value.push(c);
            } else if c == '\\' {
                escaped = true;
            } else if c == quote {
                self.pos = start + quote.len_utf8() + i + c.len_utf8();
                return Ok(if quote == '"' {
                    RawValue::DoubleQuoted(value)
                } else {
                    RawValue::SingleQuoted(value)
                });
            } else {
                value.push(c);
            }
        }
        let rest = self.rest();
        Err(DotenvError::UnterminatedQuote {
            line: self.line_at(start),
            text: rest.lines().next().unwrap_or_default().to_string(),
        })
    }
}

/// Expands the escapes compose-go knows in double-quoted values: `\a \b \f \n \r \t \v \\ \"`,
/// `\$` (a literal `$`, kept away from interpolation as `$$`) and XSI octal `\0nnn`. Any other
/// backslash stays as written.
fn expand_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (expansion, used) = match after.chars().next() {
            Some('a') => ("\u{7}".to_string(), 1),
            Some('b') => ("\u{8}".to_string(), 1),
            Some('f') => ("\u{c}".to_string(), 1),
            Some('n') => ("\n".to_string(), 1),
            Some('r') => ("\r".to_string(), 1),
            Some('t') => ("\t".to_string(), 1),
            Some('v') => ("\u{b}".to_string(), 1),
            Some('\\') => ("\\".to_string(), 1),
            Some('"') => ("\"".to_string(), 1),
            Some('$') => ("$$".to_string(), 1),
            Some('0') => octal_escape(after),
            _ => ("\\".to_string(), 0),
        };
        out.push_str(&expansion);
        rest = &after[used..];
    }
    out.push_str(rest);
    out
}

/// `after` starts with the `0` of `\0nnn`. Exactly three octal digits naming a byte give that
/// character; anything else (`\0`, `\012`, `\0999`) is kept as written.
fn octal_escape(after: &str) -> (String, usize) {
    let digits = after[1..]
        .bytes()
        .take(3)
        .take_while(u8::is_ascii_digit)
        .count();
    let written = &after[..1 + digits];
    let code = (digits == 3)
        .then(|| u8::from_str_radix(&written[1..], 8).ok())
        .flatten();
    match code {
        Some(byte) => (char::from(byte).to_string(), written.len()),
        None => (format!("\\{written}"), written.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                "../../../../shared/compose-corpus/compose-go-testdata/dotenv/fixtures/",
                $name
            ))
        };
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> IndexMap<String, String> {
        parse_with(text, &no_env)
    }

    fn parse_with(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> IndexMap<String, String> {
        match parse_dotenv(text, lookup) {
            Ok(vars) => vars,
            Err(e) => panic!("{text:?} failed: {e}"),
        }
    }

    fn pairs(vars: &IndexMap<String, String>) -> Vec<(&str, &str)> {
        vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    fn one(text: &str) -> (String, String) {
        let vars = parse(text);
        assert_eq!(vars.len(), 1, "{text:?} gave {vars:?}");
        let (k, v) = vars.first().unwrap_or_else(|| panic!("empty"));
        (k.clone(), v.clone())
    }

    fn value_of(text: &str) -> String {
        one(text).1
    }

    fn os_env(name: &str) -> Option<String> {
        (name == "VAR_TO_BE_LOADED_FROM_OS_ENV").then(|| "SOME_RANDOM_VALUE".to_string())
    }

    #[test]
    fn fixture_plain() {
        assert_eq!(
            pairs(&parse(fixture!("plain.env"))),
            [
                ("OPTION_A", "1"),
                ("OPTION_B", "2"),
                ("OPTION_C", "3"),
                ("OPTION_D", "4"),
                ("OPTION_E", "5"),
                ("456", "ABC"),
                ("OPTION_F", ""),
                ("OPTION_G", ""),
                ("OPTION_H", "my string"),
            ]
        );
    }

    #[test]
    fn fixture_utf8_bom() {
        assert_eq!(
            pairs(&parse(fixture!("utf8-bom.env"))),
            [
                ("OPTION_A", "1"),
                ("OPTION_B", "2"),
                ("OPTION_C", "3"),
                ("OPTION_D", "4"),
                ("OPTION_E", "5"),
                ("456", "ABC"),
                ("OPTION_F", ""),
                ("OPTION_G", ""),
                ("OPTION_H", "my string"),
            ]
        );
    }

    #[test]
    fn fixture_exported() {
        assert_eq!(
            pairs(&parse(fixture!("exported.env"))),
            [("OPTION_A", "2"), ("OPTION_B", "\\n")]
        );
    }

    #[test]
    fn fixture_equals() {
        assert_eq!(
            pairs(&parse(fixture!("equals.env"))),
            [(
                "OPTION_A",
                "postgres://localhost:5432/database?sslmode=disable"
            )]
        );
    }

    #[test]
    fn fixture_quoted() {
        assert_eq!(
            pairs(&parse(fixture!("quoted.env"))),
            [
                ("OPTION_A", "1"),
                ("OPTION_B", "2"),
                ("OPTION_C", ""),
                ("OPTION_D", "\\n"),
                ("OPTION_E", "1"),
                ("OPTION_F", "2"),
                ("OPTION_G", ""),
                ("OPTION_H", "\n"),
                ("OPTION_I", "echo 'asd'"),
                ("OPTION_J", "first line\nsecond line\nthird line\nand so on"),
                ("OPTION_K", "Let's go!"),
                ("OPTION_Z", "last value"),
            ]
        );
    }

    #[test]
    fn fixture_unquoted() {
        assert_eq!(
            pairs(&parse(fixture!("unquoted.env"))),
            [
                ("OPTION_A", "some quoted phrase"),
                ("OPTION_B", "first one with an unquoted phrase"),
                ("OPTION_C", "then another one with an unquoted phrase"),
                (
                    "OPTION_D",
                    "then another one with an unquoted phrase special è char"
                ),
                ("OPTION_E", "then another one quoted phrase"),
            ]
        );
    }

    #[test]
    fn fixture_special() {
        assert_eq!(
            pairs(&parse(fixture!("special.env"))),
            [
                ("VAR.WITH.DOTS", "dots"),
                ("VAR_WITH_UNDERSCORES", "underscores"),
                ("VAR-WITH-DASHES", "dashes"),
            ]
        );
    }

    #[test]
    fn fixture_substitutions() {
        let expected = [
            ("OPTION_A", "1"),
            ("OPTION_B", "1"),
            ("OPTION_C", "1"),
            ("OPTION_D", "1_1"),
            ("OPTION_E", ""),
        ];
        assert_eq!(pairs(&parse(fixture!("substitutions.env"))), expected);
    }

    #[test]
    fn fixture_substitutions_prefer_the_environment_over_earlier_keys() {
        // compose-go: the file's own OPTION_A stays 1, but references to it see the
        // environment's value, as the project would.
        let env = |name: &str| (name == "OPTION_A").then(|| "5".to_string());
        assert_eq!(
            pairs(&parse_with(fixture!("substitutions.env"), &env)),
            [
                ("OPTION_A", "1"),
                ("OPTION_B", "5"),
                ("OPTION_C", "5"),
                ("OPTION_D", "5_5"),
                ("OPTION_E", ""),
            ]
        );
    }

    #[test]
    fn fixture_substitutions_default() {
        assert_eq!(
            pairs(&parse(fixture!("substitutions-default.env"))),
            [
                ("OPTION_A", "1"),
                ("OPTION_B", "1"),
                ("OPTION_C", "1"),
                ("OPTION_D", "1_1"),
                ("OPTION_E", ""),
            ]
        );
        let env = |name: &str| (name == "OPTION_A").then(|| "5".to_string());
        assert_eq!(
            pairs(&parse_with(fixture!("substitutions-default.env"), &env)),
            [
                ("OPTION_A", "5"),
                ("OPTION_B", "5"),
                ("OPTION_C", "5"),
                ("OPTION_D", "5_5"),
                ("OPTION_E", ""),
            ]
        );
    }

    #[test]
    fn fixture_inherited_single_var() {
        assert_eq!(
            pairs(&parse_with(fixture!("inherited-single-var.env"), &os_env)),
            [("VAR_TO_BE_LOADED_FROM_OS_ENV", "SOME_RANDOM_VALUE")]
        );
    }

    #[test]
    fn fixture_inherited_multi_var() {
        assert_eq!(
            pairs(&parse_with(fixture!("inherited-multi-var.env"), &os_env)),
            [
                ("foo", "bar"),
                ("VAR_TO_BE_LOADED_FROM_OS_ENV", "SOME_RANDOM_VALUE"),
                ("bar", "baz"),
            ]
        );
        // Without the environment the inherited key is dropped, the others stay.
        assert_eq!(
            pairs(&parse(fixture!("inherited-multi-var.env"))),
            [("foo", "bar"), ("bar", "baz")]
        );
    }

    #[test]
    fn fixture_inherited_not_found() {
        assert!(parse_with(fixture!("inherited-not-found.env"), &os_env).is_empty());
    }

    #[test]
    fn fixture_invalid1_fails_on_line_7() {
        let err = parse_dotenv(fixture!("invalid1.env"), &no_env);
        let err = err.err().unwrap_or_else(|| panic!("invalid1.env parsed"));
        assert_eq!(err.line(), 7);
        assert_eq!(
            err.to_string(),
            "line 7: key cannot contain a space: \"INVALID LINE\""
        );
    }

    #[test]
    fn separators_and_spacing() {
        assert_eq!(one("FOO=bar"), ("FOO".into(), "bar".into()));
        assert_eq!(one("FOO =bar"), ("FOO".into(), "bar".into()));
        assert_eq!(one("FOO= bar"), ("FOO".into(), "bar".into()));
        assert_eq!(one(" KEY =value"), ("KEY".into(), "value".into()));
        assert_eq!(one("\tKEY=value"), ("KEY".into(), "value".into()));
        assert_eq!(one("FOO=bar "), ("FOO".into(), "bar".into()));
        assert_eq!(one("FOO=foobar="), ("FOO".into(), "foobar=".into()));
        assert_eq!(one("OPTION_A=1:B"), ("OPTION_A".into(), "1:B".into()));
        assert_eq!(one("FOO.BAR=foobar"), ("FOO.BAR".into(), "foobar".into()));
        assert_eq!(one("=\"value\""), (String::new(), "value".into()));
    }

    #[test]
    fn yaml_style_colon_separator() {
        assert_eq!(one("OPTION_A: 1"), ("OPTION_A".into(), "1".into()));
        assert_eq!(
            one("OPTION_A: Foo=bar"),
            ("OPTION_A".into(), "Foo=bar".into())
        );
    }

    #[test]
    fn export_prefix() {
        assert_eq!(one("export OPTION_A=2"), ("OPTION_A".into(), "2".into()));
        assert_eq!(one("export\tOPTION_A=2"), ("OPTION_A".into(), "2".into()));
        assert_eq!(one("  export OPTION_A=2"), ("OPTION_A".into(), "2".into()));
        assert_eq!(one("export exportFoo=2"), ("exportFoo".into(), "2".into()));
        assert_eq!(one("exportFOO=2"), ("exportFOO".into(), "2".into()));
        assert_eq!(one("export_FOO =2"), ("export_FOO".into(), "2".into()));
        assert_eq!(one("export.FOO= 2"), ("export.FOO".into(), "2".into()));
        assert_eq!(
            one("export OPTION_A=\"export A\""),
            ("OPTION_A".into(), "export A".into())
        );
    }

    #[test]
    fn comments() {
        assert!(parse("# only a comment").is_empty());
        assert!(parse("\t # indented comment\n\n\r\n  \t").is_empty());
        assert_eq!(value_of("FOO=bar # this is foo"), "bar");
        assert_eq!(value_of("FOO=bar #this is foo"), "bar");
        assert_eq!(value_of("FOO=bar #"), "bar");
        assert_eq!(
            value_of("FOO=123#not-an-inline-comment"),
            "123#not-an-inline-comment"
        );
        assert_eq!(value_of("FOO=\"bar#baz\""), "bar#baz");
        assert_eq!(value_of("FOO=\"bar#baz\"#"), "bar#baz");
        assert_eq!(value_of("FOO=\"bar#baz\" # comment"), "bar#baz");
        assert_eq!(value_of("FOO='bar#baz' # comment"), "bar#baz");
        assert_eq!(value_of("FOO=\"bar#baz#bang\" # comment"), "bar#baz#bang");
    }

    #[test]
    fn quotes() {
        assert_eq!(value_of("FOO=\"bar\""), "bar");
        assert_eq!(value_of("FOO='bar'"), "bar");
        assert_eq!(value_of(r#"FOO="escaped\"bar""#), "escaped\"bar");
        assert_eq!(value_of(r#"FOO="\"quoted\"""#), "\"quoted\"");
        assert_eq!(value_of(r#"FOO="'d'""#), "'d'");
        assert_eq!(
            value_of(r#"VAR="{\"hello\": \"json\"}""#),
            r#"{"hello": "json"}"#
        );
        assert_eq!(value_of(r"VAR='Let\'s go!'"), "Let's go!");
    }

    #[test]
    fn double_quote_escapes() {
        assert_eq!(value_of(r#"FOO="bar\nbaz""#), "bar\nbaz");
        assert_eq!(value_of(r#"FOO="a\tb""#), "a\tb");
        assert_eq!(
            value_of(r#"KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z""#),
            "Z\u{7}Z\u{8}Z\u{c}Z\nZ\rZ\tZ\u{b}Z\\ZSZ"
        );
        assert_eq!(value_of(r#"FOO="bar\n\ b\az""#), "bar\n\\ b\u{7}z");
        assert_eq!(value_of(r#"FOO="bar\\\n\ b\az""#), "bar\\\n\\ b\u{7}z");
        assert_eq!(value_of(r#"FOO="bar\\r\ b\az""#), "bar\\r\\ b\u{7}z");
        assert_eq!(value_of(r#"FOO="bar\nbaz\\""#), "bar\nbaz\\");
        assert_eq!(value_of(r#"KEY="\0123""#), "S");
    }

    #[test]
    fn unknown_escapes_stay_as_written() {
        assert_eq!(value_of(r#"KEY="\x07""#), r"\x07");
        assert_eq!(value_of(r#"KEY="\u12e4""#), r"\u12e4");
        assert_eq!(value_of(r#"KEY="\U00101234""#), r"\U00101234");
        assert_eq!(
            value_of(r#"KEY="\c \0 \012 \0999 \0777""#),
            r"\c \0 \012 \0999 \0777"
        );
    }

    #[test]
    fn single_quotes_and_unquoted_values_keep_backslashes() {
        assert_eq!(value_of(r"FOO=a\tb"), r"a\tb");
        assert_eq!(value_of(r"FOO='a\tb'"), r"a\tb");
    }

    #[test]
    fn multiline_double_quoted_value() {
        let text = "TEST_URLS=\"stratum+tcp://a:3333\nstratum+tcp://b:443\"";
        assert_eq!(value_of(text), "stratum+tcp://a:3333\nstratum+tcp://b:443");
    }

    #[test]
    fn crlf_line_endings() {
        assert_eq!(
            pairs(&parse("A=1\r\nB='2'\r\nC=\"3\" # c\r\n")),
            [("A", "1"), ("B", "2"), ("C", "3")]
        );
    }

    #[test]
    fn expansion_in_unquoted_and_double_quoted_values() {
        assert_eq!(
            pairs(&parse("FOO=test\nBAR=$FOO")),
            [("FOO", "test"), ("BAR", "test")]
        );
        assert_eq!(value_of("BAR=${FOO}bar"), "bar");
        assert_eq!(
            pairs(&parse("FOO=test\nBAR=${FOO}bar\nBAZ=\"quote $FOO\"")),
            [("FOO", "test"), ("BAR", "testbar"), ("BAZ", "quote test")]
        );
        assert_eq!(value_of("BAR=$FOO"), "");
        assert_eq!(value_of("RESULT=${UNSET:-Default Value}"), "Default Value");
    }

    #[test]
    fn later_keys_are_not_visible_to_earlier_values() {
        assert_eq!(pairs(&parse("A=$B\nB=b")), [("A", ""), ("B", "b")]);
    }

    #[test]
    fn no_expansion_in_single_quotes_or_after_escapes() {
        assert_eq!(value_of("BAR='quote $FOO'"), "quote $FOO");
        assert_eq!(value_of("VAR='${OTHER}'"), "${OTHER}");
        assert_eq!(value_of(r#"FOO="foo\$BAR""#), "foo$BAR");
        assert_eq!(value_of(r#"FOO="foo\${BAR}""#), "foo${BAR}");
        assert_eq!(
            pairs(&parse("FOO=test\nBAR=\"foo\\${FOO} ${FOO}\"")),
            [("FOO", "test"), ("BAR", "foo${FOO} test")]
        );
        assert_eq!(value_of("FOO=$$BAR"), "$BAR");
    }

    #[test]
    fn lookup_supplies_referenced_variables() {
        let env = |name: &str| (name == "ME").then(|| "YES".to_string());
        assert_eq!(pairs(&parse_with("TEST=$ME", &env)), [("TEST", "YES")]);
    }

    #[test]
    fn environment_does_not_override_values_defined_in_the_file() {
        let env = |name: &str| (name == "A").then(|| "from env".to_string());
        assert_eq!(
            pairs(&parse_with("A=from file", &env)),
            [("A", "from file")]
        );
    }

    #[test]
    fn inherited_key_at_end_of_file_without_newline() {
        let env = |name: &str| (name == "HOME").then(|| "/root".to_string());
        assert_eq!(
            pairs(&parse_with("A=1\nHOME", &env)),
            [("A", "1"), ("HOME", "/root")]
        );
        assert_eq!(pairs(&parse_with("HOME  \n", &env)), [("HOME", "/root")]);
    }

    #[test]
    fn redefined_key_takes_the_last_value() {
        assert_eq!(pairs(&parse("A=1\nB=2\nA=3")), [("A", "3"), ("B", "2")]);
    }

    #[test]
    fn bad_name_character_is_an_error_with_its_line() {
        let err = parse_dotenv("A=1\nlol$wut", &no_env).err();
        let err = err.unwrap_or_else(|| panic!("parsed"));
        assert_eq!(err.line(), 2);
        assert_eq!(
            err.to_string(),
            "line 2: unexpected character '$' in variable name \"lol$wut\""
        );
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        for text in [
            r#"KEY=""#,
            r#"KEY="value"#,
            r#"KEY="value\""#,
            r#"KEY="value'"#,
            "KEY='",
            "KEY='value",
            r"KEY='value\'",
            "KEY='value\"",
        ] {
            let err = parse_dotenv(&format!("# c\n{text}"), &no_env).err();
            let err = err.unwrap_or_else(|| panic!("{text:?} parsed"));
            assert!(
                err.to_string()
                    .starts_with("line 2: unterminated quoted value"),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn interpolation_errors_carry_the_line() {
        let err = parse_dotenv("A=1\n\nB=${NEEDED:?please set it}", &no_env).err();
        let err = err.unwrap_or_else(|| panic!("parsed"));
        assert_eq!(err.line(), 3);
        assert_eq!(
            err.to_string(),
            "line 3: required variable NEEDED is missing a value: please set it"
        );
        let err = parse_dotenv("B=\"${ bad }\"", &no_env).err();
        assert!(matches!(
            err,
            Some(DotenvError::Interpolation { line: 1, .. })
        ));
    }

    #[test]
    fn raw_format_takes_values_literally() {
        let text =
            "\u{feff}# comment\n\nA=\"quoted\" \nB='$HOME'\n  C=${X:?boom}\\n\nD==x=\nE=\nF\n";
        let vars = parse_raw_env(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            pairs(&vars),
            [
                ("A", "\"quoted\" "),
                ("B", "'$HOME'"),
                ("C", "${X:?boom}\\n"),
                ("D", "=x="),
                ("E", ""),
            ]
        );
    }

    #[test]
    fn raw_format_inherits_value_less_keys_from_the_lookup() {
        let env = |name: &str| (name == "F").then(|| "from env".to_string());
        let vars = parse_raw_env_with_lookup("F\nG\n", &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pairs(&vars), [("F", "from env")]);
    }

    #[test]
    fn raw_format_rejects_bad_names_with_their_line() {
        let err = parse_raw_env("A=1\n=oops").err();
        assert_eq!(err, Some(DotenvError::MissingName { line: 2 }));
        let err = parse_raw_env("A=1\n# c\nMY KEY=1").err();
        assert_eq!(
            err,
            Some(DotenvError::NameWithSpace {
                line: 3,
                name: "MY KEY".into()
            })
        );
    }
}
