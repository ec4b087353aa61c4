//! A container's output as lines.
//!
//! The engine sends output in frames tagged stdout or stderr (a TTY container's output is
//! one stream, reported as stdout). A frame usually holds one line; one holding several is
//! split, and the trailing newline is dropped. Reading logs back needs a log driver the
//! engine can read (`json-file`, the default, `local` or `journald`).

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use composure_runtime::{LogLine, LogStream, RuntimeError};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};

use crate::error::from_bollard;

pub(crate) fn stream(
    docker: &Docker,
    id: &str,
    follow: bool,
    tail: Option<usize>,
) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
    let options = LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
        ..LogsOptions::default()
    };
    let what = format!("container `{id}`");
    docker
        .logs(id, Some(options))
        .flat_map(move |item| {
            let lines = match item {
                Ok(output) => lines(output).into_iter().map(Ok).collect(),
                Err(err) => vec![Err(from_bollard(err, &what))],
            };
            stream::iter(lines)
        })
        .boxed()
}

pub(crate) fn lines(output: LogOutput) -> Vec<LogLine> {
    let (stream, bytes) = match output {
        LogOutput::StdErr { message } => (LogStream::Stderr, message),
        LogOutput::StdOut { message }
        | LogOutput::Console { message }
        | LogOutput::StdIn { message } => (LogStream::Stdout, message),
    };
    let text = String::from_utf8_lossy(&bytes);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.split('\n')
        .map(|line| LogLine {
            stream,
            text: line.strip_suffix('\r').unwrap_or(line).to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_become_lines_without_newlines() {
        let out = lines(LogOutput::StdErr {
            message: "oops\n".into(),
        });
        assert_eq!(
            out,
            vec![LogLine {
                stream: LogStream::Stderr,
                text: "oops".into()
            }]
        );
        let out = lines(LogOutput::Console {
            message: "a\r\nb\n".into(),
        });
        let texts: Vec<_> = out.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a", "b"]);
        assert!(out.iter().all(|l| l.stream == LogStream::Stdout));
    }
}
