//! Command-line flags: `--name value` or `--name=value`, each given at most once, plus
//! positional arguments. Small enough that a parser crate would be the bigger part.

use std::time::Duration;

/// A command line that does not make sense; reported with the usage text and exit status 2.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

#[derive(Debug, Default)]
pub struct Args {
    flags: Vec<(String, String)>,
    pub positional: Vec<String>,
}

impl Args {
    /// Parses `raw`, accepting only the flags named in `known` (without their `--`).
    pub fn parse(raw: &[String], known: &[&str]) -> Result<Args, UsageError> {
        let mut args = Args::default();
        let mut rest = raw.iter();
        while let Some(arg) = rest.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                args.positional.push(arg.clone());
                continue;
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name, value.to_owned()),
                None => {
                    let value = rest
                        .next()
                        .ok_or_else(|| UsageError(format!("--{flag} needs a value")))?;
                    (flag, value.clone())
                }
            };
            if !known.contains(&name) {
                return Err(UsageError(format!("unknown flag --{name}")));
            }
            if args.get(name).is_some() {
                return Err(UsageError(format!("--{name} given twice")));
            }
            args.flags.push((name.to_owned(), value));
        }
        Ok(args)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(flag, _)| flag == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn required(&self, name: &str) -> Result<&str, UsageError> {
        self.get(name)
            .ok_or_else(|| UsageError(format!("--{name} is required")))
    }

    pub fn no_positional(&self) -> Result<(), UsageError> {
        match self.positional.first() {
            Some(extra) => Err(UsageError(format!("unexpected argument '{extra}'"))),
            None => Ok(()),
        }
    }

    pub fn port(&self, default: u16) -> Result<u16, UsageError> {
        match self.get("port") {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| UsageError(format!("--port {text:?} is not a port number"))),
        }
    }

    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, UsageError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => parse_duration(text)
                .ok_or_else(|| UsageError(format!("--{name} {text:?} is not a duration"))),
        }
    }
}

/// Parses `500ms`, `2s`, `1m` or a bare number of seconds (`2`, `0.5`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit_secs) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(value * unit_secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn flags_take_a_separate_or_an_attached_value() {
        let args =
            Args::parse(&strings(&["--port", "80", "--db=kv:6379"]), &["port", "db"]).unwrap();
        assert_eq!(args.port(1).unwrap(), 80);
        assert_eq!(args.get("db"), Some("kv:6379"));
        assert!(args.positional.is_empty());
    }

    #[test]
    fn positional_arguments_are_kept_in_order() {
        let args = Args::parse(&strings(&["tcp", "--timeout", "1s", "h:1"]), &["timeout"]).unwrap();
        assert_eq!(args.positional, ["tcp", "h:1"]);
        assert_eq!(
            args.no_positional(),
            Err(UsageError("unexpected argument 'tcp'".into()))
        );
    }

    #[test]
    fn unknown_repeated_and_valueless_flags_are_usage_errors() {
        let unknown = Args::parse(&strings(&["--porte", "1"]), &["port"]).unwrap_err();
        assert_eq!(unknown, UsageError("unknown flag --porte".into()));
        let twice = Args::parse(&strings(&["--port", "1", "--port=2"]), &["port"]).unwrap_err();
        assert_eq!(twice, UsageError("--port given twice".into()));
        let missing = Args::parse(&strings(&["--port"]), &["port"]).unwrap_err();
        assert_eq!(missing, UsageError("--port needs a value".into()));
    }

    #[test]
    fn defaults_apply_and_bad_values_are_rejected() {
        let empty = Args::parse(&[], &["port", "db"]).unwrap();
        assert_eq!(empty.port(6379).unwrap(), 6379);
        assert_eq!(
            empty
                .duration("interval", Duration::from_secs(2))
                .unwrap()
                .as_secs(),
            2
        );
        assert!(empty.required("db").is_err());
        let bad = Args::parse(&strings(&["--port", "99999"]), &["port"]).unwrap();
        assert!(bad.port(1).is_err());
    }

    #[test]
    fn durations_read_units_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration(""), None);
    }
}
