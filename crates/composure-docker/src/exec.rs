//! `composure exec`: a command run in a running container, its input and output wired to
//! the caller's, as `docker compose exec` runs it.

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::ResizeExecOptions;
use composure_runtime::RuntimeError;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::DockerRuntime;
use crate::error::from_bollard;

/// What to run, and how.
#[derive(Clone, Debug, Default)]
pub struct ExecSpec {
    pub command: Vec<String>,
    /// `KEY=VALUE` entries added to the container's environment.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub privileged: bool,
    /// A pseudo-terminal (the caller puts its own terminal in raw mode).
    pub tty: bool,
    /// The terminal's size, `(width, height)`, when `tty`.
    pub size: Option<(u16, u16)>,
    /// Start it and return at once (`-d`).
    pub detach: bool,
}

impl DockerRuntime {
    /// Runs `spec` in `container`, copying `stdin` to it (when given) and its output to
    /// `stdout` and `stderr` (a TTY's output is all `stdout`), and returns its exit code
    /// (0 for `detach`).
    pub async fn exec<I, O, E>(
        &self,
        container: &str,
        spec: &ExecSpec,
        stdin: Option<I>,
        mut stdout: O,
        mut stderr: E,
    ) -> Result<i64, RuntimeError>
    where
        I: AsyncRead + Unpin + Send + 'static,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let what = format!("container `{container}`");
        let options = CreateExecOptions {
            attach_stdin: Some(stdin.is_some() && !spec.detach),
            attach_stdout: Some(!spec.detach),
            attach_stderr: Some(!spec.detach),
            tty: Some(spec.tty),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            cmd: Some(spec.command.clone()),
            privileged: Some(spec.privileged),
            user: spec.user.clone(),
            working_dir: spec.workdir.clone(),
            ..CreateExecOptions::default()
        };
        let created = self
            .docker
            .create_exec(container, options)
            .await
            .map_err(|e| from_bollard(e, &what))?;
        let start = StartExecOptions {
            detach: spec.detach,
            tty: spec.tty,
            output_capacity: None,
        };
        let started = self
            .docker
            .start_exec(&created.id, Some(start))
            .await
            .map_err(|e| from_bollard(e, &what))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Ok(0);
        };
        if let (true, Some((width, height))) = (spec.tty, spec.size) {
            // Best effort: a terminal that cannot be sized still works.
            let _ = self
                .docker
                .resize_exec(
                    &created.id,
                    ResizeExecOptions {
                        h: i32::from(height),
                        w: i32::from(width),
                    },
                )
                .await;
        }
        if let Some(mut stdin) = stdin {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut stdin, &mut input).await;
                // End of input: the command's stdin closes too.
                let _ = input.shutdown().await;
            });
        }
        while let Some(chunk) = output.next().await {
            let written = match chunk.map_err(|e| from_bollard(e, &what))? {
                LogOutput::StdErr { message } => stderr.write_all(&message).await,
                LogOutput::StdOut { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message } => stdout.write_all(&message).await,
            };
            // The reader went away (`| head`): stop copying, the command still ends.
            if written.is_err() {
                break;
            }
            let _ = stdout.flush().await;
            let _ = stderr.flush().await;
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| from_bollard(e, &what))?;
        Ok(inspected.exit_code.unwrap_or(0))
    }
}
