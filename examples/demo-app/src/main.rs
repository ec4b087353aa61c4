//! `demo-app`: the example application that Composure's demos and end-to-end tests run.
//!
//! One static binary with several roles, so that a single `FROM scratch` image serves every
//! service of `examples/demo/compose.yaml` (and of the end-to-end tests):
//! - `web`: an HTTP/1.1 server that counts hits in the kv service;
//! - `kv`: a line-based key-value store persisted under a data directory;
//! - `worker`: increments a counter in the kv service at a fixed interval;
//! - `probe`: a health-check client, since a scratch image has no curl and no shell;
//! - `udp-echo`: answers each UDP datagram with the host name.
//!
//! Exit codes: 0 success, 1 failure (including a requested crash), 2 usage error.

mod args;
mod kv;
mod load;
mod net;
mod probe;
mod udp_echo;
mod web;
mod worker;
mod ws;

use std::process::ExitCode;
use std::time::Duration;
use std::{env, io, thread};

use args::{Args, UsageError};

const USAGE: &str = "\
usage: demo-app <command> [flags]

commands:
  web    [--port 8080] [--db HOST:PORT]    HTTP server: / /healthz /version /crash
                                           /make-unhealthy /ws (WebSocket echo)
  kv     [--port 6379] [--data /data]      key-value store over TCP (PING, GET, SET, INCR)
  worker --db HOST:PORT [--interval 2s]    increments the `ticks` counter in the kv store
  probe  http://HOST[:PORT][/PATH] [--timeout 2s]
  probe  tcp HOST:PORT [--timeout 2s]      exit 0 if the target answers
  load   http://HOST[:PORT][/PATH] [--connection close|keep-alive] [--interval 10ms]
                                           requests without end; prints counts twice a second
  udp-echo [--port 5353]                   answers each UDP datagram with the host name

environment of `web`:
  APP_VERSION        returned by GET /version (default: unknown)
  READY_AFTER_SECS   GET /healthz answers 503 until this long after start (default: 0)
  FAIL_AFTER_SECS    exit with status 1 this long after start (default: never)
  LISTEN_AFTER_SECS  open the port only this long after start (default: 0)
";

fn main() -> ExitCode {
    let mut argv = env::args().skip(1);
    let command = argv.next().unwrap_or_default();
    let rest: Vec<String> = argv.collect();
    if matches!(command.as_str(), "" | "-h" | "--help" | "help")
        || rest.iter().any(|a| a == "-h" || a == "--help")
    {
        print!("{USAGE}");
        return if command.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    match run(&command, &rest) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(UsageError(message))) => {
            eprintln!("demo-app: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Run(message)) => {
            eprintln!("demo-app {command}: {message}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(UsageError),
    Run(String),
}

impl From<UsageError> for Failure {
    fn from(error: UsageError) -> Self {
        Failure::Usage(error)
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        Failure::Run(error.to_string())
    }
}

fn run(command: &str, raw: &[String]) -> Result<(), Failure> {
    match command {
        "web" => {
            let args = Args::parse(raw, &["port", "db"])?;
            args.no_positional()?;
            let config = web::Config {
                port: args.port(8080)?,
                db: args.get("db").map(str::to_owned),
                version: env::var("APP_VERSION").unwrap_or_else(|_| "unknown".to_owned()),
                ready_after: env_duration("READY_AFTER_SECS")?.unwrap_or_default(),
            };
            let fail_after = env_duration("FAIL_AFTER_SECS")?;
            let listen_after = env_duration("LISTEN_AFTER_SECS")?;
            exit_on_termination()?;
            if let Some(delay) = fail_after {
                fail_after_delay(delay);
            }
            // A slow start: the container runs, but nothing accepts connections yet.
            if let Some(delay) = listen_after {
                thread::sleep(delay);
            }
            Ok(web::run(config)?)
        }
        "kv" => {
            let args = Args::parse(raw, &["port", "data"])?;
            args.no_positional()?;
            let config = kv::Config {
                port: args.port(6379)?,
                data: args.get("data").unwrap_or("/data").into(),
            };
            exit_on_termination()?;
            Ok(kv::run(config)?)
        }
        "worker" => {
            let args = Args::parse(raw, &["db", "interval"])?;
            args.no_positional()?;
            let config = worker::Config {
                db: args.required("db")?.to_owned(),
                interval: args.duration("interval", Duration::from_secs(2))?,
            };
            exit_on_termination()?;
            worker::run(config)
        }
        "probe" => {
            let args = Args::parse(raw, &["timeout"])?;
            let target = probe::Target::parse(&args.positional)?;
            let timeout = args.duration("timeout", Duration::from_secs(2))?;
            let answer = probe::check(&target, timeout).map_err(Failure::Run)?;
            println!("ok: {answer}");
            Ok(())
        }
        "load" => {
            let args = Args::parse(raw, &["connection", "interval", "timeout"])?;
            let keep_alive = match args.get("connection").unwrap_or("close") {
                "keep-alive" => true,
                "close" => false,
                other => {
                    return Err(UsageError(format!(
                        "--connection is keep-alive or close, not {other:?}"
                    ))
                    .into());
                }
            };
            let config = load::Config {
                target: probe::Target::parse(&args.positional)?,
                keep_alive,
                interval: args.duration("interval", Duration::from_millis(10))?,
                timeout: args.duration("timeout", Duration::from_secs(2))?,
            };
            exit_on_termination()?;
            load::run(&config).map_err(Failure::Run)
        }
        "udp-echo" => {
            let args = Args::parse(raw, &["port"])?;
            args.no_positional()?;
            let config = udp_echo::Config {
                port: args.port(5353)?,
            };
            exit_on_termination()?;
            Ok(udp_echo::run(&config)?)
        }
        other => Err(UsageError(format!("unknown command '{other}'")).into()),
    }
}

/// Reads a duration (`30`, `30s`, `500ms`, `1m`) from the environment; unset or empty is `None`.
fn env_duration(name: &str) -> Result<Option<Duration>, UsageError> {
    match env::var(name) {
        Ok(text) if !text.is_empty() => args::parse_duration(&text)
            .map(Some)
            .ok_or_else(|| UsageError(format!("{name}={text:?} is not a duration"))),
        _ => Ok(None),
    }
}

/// Exits with status 0 on SIGTERM or SIGINT. Without a handler, PID 1 in a container ignores
/// SIGTERM and `docker stop` has to wait for its timeout and kill us.
fn exit_on_termination() -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("demo-app: received signal {signal}, exiting");
            std::process::exit(0);
        }
    });
    Ok(())
}

/// The `FAIL_AFTER_SECS` switch: a process that dies on schedule, for self-healing demos.
fn fail_after_delay(delay: Duration) {
    thread::spawn(move || {
        thread::sleep(delay);
        eprintln!("demo-app: FAIL_AFTER_SECS elapsed ({delay:?}), exiting with status 1");
        std::process::exit(1);
    });
}
