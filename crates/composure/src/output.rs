//! How results and errors reach the terminal.

use std::io::{IsTerminal, Write};

use composure_compose::{LoadError, Severity};

/// Exit status for a failure the user can fix in their input (`2` is clap's usage error).
pub const EXIT_FAILURE: u8 = 1;

/// Prints an error to stderr: every compose diagnostic on its own line, coloured on a terminal.
pub fn print_error(err: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    match err.downcast_ref::<LoadError>() {
        Some(load) => {
            for d in &load.diagnostics {
                let _ = writeln!(stderr, "{}", paint(&d.to_string(), d.severity));
            }
        }
        None => {
            let _ = writeln!(
                stderr,
                "{}",
                paint(&format!("error: {err:#}"), Severity::Error)
            );
        }
    }
}

/// Prints warnings (from a load that succeeded) to stderr.
pub fn print_warnings(warnings: &[composure_compose::Diagnostic]) {
    let mut stderr = std::io::stderr().lock();
    for w in warnings {
        let _ = writeln!(stderr, "{}", paint(&w.to_string(), w.severity));
    }
}

fn paint(text: &str, severity: Severity) -> String {
    if !std::io::stderr().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        return text.to_string();
    }
    let colour = match severity {
        Severity::Error => "\x1b[31m",
        Severity::Warning => "\x1b[33m",
    };
    format!("{colour}{text}\x1b[0m")
}
