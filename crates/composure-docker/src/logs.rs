//! A container's output as lines.
//!
//! The engine sends output in frames tagged stdout or stderr (a TTY container's output is
//! one stream, reported as stdout). A frame usually holds one line; one holding several is
//! split, and the trailing newline is dropped. Reading logs back needs a log driver the
//! engine can read (`json-file`, the default, `local` or `journald`).

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use composure_runtime::{LogLine, LogOptions, LogStream, RuntimeError};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};

use crate::error::from_bollard;
use crate::inspect::epoch_ms;

pub(crate) fn stream(
    docker: &Docker,
    id: &str,
    options: &LogOptions,
) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
    let options = LogsOptions {
        follow: options.follow,
        stdout: true,
        stderr: true,
        // Every line comes with the engine's time, which `LogLine::time_ms` carries.
        timestamps: true,
        since: options
            .since_ms
            .map_or(0, |ms| i32::try_from(ms / 1000).unwrap_or(i32::MAX)),
        tail: options
            .tail
            .map_or_else(|| "all".to_string(), |n| n.to_string()),
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
        .map(|line| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            // With timestamps, the engine starts each line with its RFC 3339 time and a space.
            let (time_ms, text) = match line.split_once(' ') {
                Some((time, rest)) => match epoch_ms(time) {
                    Some(ms) => (Some(ms), rest),
                    None => (None, line),
                },
                None => match epoch_ms(line) {
                    Some(ms) => (Some(ms), ""),
                    None => (None, line),
                },
            };
            LogLine {
                stream,
                text: text.to_string(),
                time_ms,
            }
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
                text: "oops".into(),
                time_ms: None,
            }]
        );
        let out = lines(LogOutput::StdOut {
            message: "2024-02-29T12:34:56.007000000Z hello world\n".into(),
        });
        assert_eq!(out[0].text, "hello world");
        assert_eq!(out[0].time_ms, Some(1_709_210_096_007));
        let out = lines(LogOutput::Console {
            message: "a\r\nb\n".into(),
        });
        let texts: Vec<_> = out.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a", "b"]);
        assert!(out.iter().all(|l| l.stream == LogStream::Stdout));
    }
}
