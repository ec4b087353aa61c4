//! How results and errors reach the terminal.

/// `println!` for what a verb prints on stdout (see [`write_out`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*), true)
    };
}

/// `print!` for what a verb prints on stdout (see [`write_out`]).
macro_rules! out_raw {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*), false)
    };
}

/// Writes to stdout. A reader that went away (`composure ps | head -1`) ends the process at
/// once and quietly with status 141, as a process killed by SIGPIPE ends (`docker compose`,
/// coreutils), instead of the panic `println!` gives. SIGPIPE itself stays ignored: the
/// daemon's sockets need that, and it is the same binary.
pub fn write_out(text: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(text)
        .and_then(|()| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
        Err(err) => {
            eprintln!("error: cannot write the output: {err}");
            std::process::exit(i32::from(EXIT_FAILURE));
        }
    }
}

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

fn stdout_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn stderr_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub fn success(text: &str) -> String {
    if stderr_colour() {
        format!("\x1b[32m✔ {text}\x1b[0m")
    } else {
        format!("✔ {text}")
    }
}

pub fn warning(text: &str) -> String {
    paint(&format!("warning: {text}"), Severity::Warning)
}

pub fn failure(text: &str) -> String {
    if stderr_colour() {
        format!("\x1b[31m✘ {text}\x1b[0m")
    } else {
        format!("✘ {text}")
    }
}

/// One line of `up` progress for a service: `web  2/2 running, 2 healthy`.
pub fn service_progress(service: &composure_api::ServiceStatusView) -> String {
    use composure_api::ServiceState;
    let mark = match service.status {
        ServiceState::Running => "✔",
        ServiceState::Converging => "…",
        ServiceState::Degraded => "!",
        ServiceState::Failed => "✘",
    };
    let mut line = format!(
        "{mark} {:<16} {}/{} running",
        service.name, service.running, service.desired
    );
    if service.healthy > 0 {
        line.push_str(&format!(", {} healthy", service.healthy));
    }
    if let Some(message) = &service.message {
        line.push_str(&format!(" — {message}"));
    }
    if service.rollout.as_ref().is_some_and(|r| r.outage_ongoing) {
        line.push_str(" (no ready replica)");
    }
    line
}

/// `1.3 s without a ready replica`, or `no time without a ready replica`.
pub fn outage(ms: u64) -> String {
    match ms {
        0 => "no time without a ready replica".to_string(),
        ms => format!("{:.1} s without a ready replica", ms as f64 / 1000.0),
    }
}

/// How a rollout that `up` followed went: `web: updated 1/1 (stop-first: 1.3 s without a
/// ready replica)`.
pub fn rollout_outcome(view: &composure_api::RolloutView) -> String {
    use composure_api::RolloutKind;
    let verb = match view.kind {
        RolloutKind::Update => "updated",
        RolloutKind::Rollback => "rolled back",
        RolloutKind::Undo => "undone",
        RolloutKind::Restart => "restarted",
    };
    format!(
        "{}: {verb} {}/{} ({}: {})",
        view.service,
        view.updated,
        view.total,
        view.order,
        outage(view.outage_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(format_datetime(1_709_210_096_000), "2024-02-29 12:34:56");
        assert_eq!(rfc3339(1_709_210_096_007), "2024-02-29T12:34:56.007Z");
        assert_eq!(bytes(999), "999B");
        assert_eq!(bytes(12_345_678), "12.3MB");
    }
}

/// `composure rollout status` as text: what the rollout does, how far it got, each slot,
/// and the failures.
pub fn rollout_status(view: &composure_api::RolloutView) -> String {
    use composure_api::{RolloutKind, RolloutState};
    use std::fmt::Write as _;
    let mut out = String::new();
    let what = match view.kind {
        RolloutKind::Update => "update".to_string(),
        RolloutKind::Rollback => "rollback".to_string(),
        RolloutKind::Undo => "undo".to_string(),
        RolloutKind::Restart => "restart".to_string(),
    };
    let state = match view.state {
        RolloutState::Updating => "in progress",
        RolloutState::Paused => "paused",
        RolloutState::Completed => "completed",
        RolloutState::Superseded => "superseded by a later change",
    };
    let _ = writeln!(out, "{}: {what}, {state}", view.service);
    if let Some(cause) = &view.cause {
        let _ = writeln!(out, "  back from a failed update: {}", cause.reason);
    }
    let parallelism = match view.parallelism {
        0 => "all slots at once".to_string(),
        1 => "1 slot at a time".to_string(),
        n => format!("{n} slots at a time"),
    };
    let _ = writeln!(
        out,
        "  {}, {parallelism}, monitor {}s, on failure: {}",
        view.order,
        view.monitor_ms as f64 / 1000.0,
        view.failure_action
    );
    let _ = writeln!(out, "  {}/{} slots updated", view.updated, view.total);
    let _ = writeln!(
        out,
        "  {}{}",
        outage(view.outage_ms),
        if view.outage_ongoing {
            " (none ready now)"
        } else {
            ""
        }
    );
    if let Some(message) = &view.message {
        let _ = writeln!(out, "  {message}");
    }
    for slot in &view.slots {
        let mut line = format!(
            "  slot {:<3} {}",
            slot.slot,
            word(&slot.state).replace('_', " ")
        );
        if let Some(message) = &slot.message {
            line.push_str(&format!(": {message}"));
        }
        let _ = writeln!(out, "{line}");
    }
    if !view.failures.is_empty() {
        let _ = writeln!(out, "  failures:");
        for failure in &view.failures {
            let short: String = failure.task.chars().take(8).collect();
            let _ = writeln!(
                out,
                "    slot {} (task {short}): {}",
                failure.slot, failure.reason
            );
        }
    }
    out
}

/// `composure rollout history` as a table: one line per version, the current one marked.
pub fn rollout_history(history: &composure_api::RolloutHistory) -> String {
    use comfy_table::{Table, presets::NOTHING};
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header(["", "REVISION", "CREATED", "SPEC", "CHANGES", "ROLLOUT"]);
    for revision in &history.revisions {
        table.add_row([
            if revision.current { "*" } else { "" }.to_string(),
            revision.revision.to_string(),
            format_datetime(revision.created_at),
            revision.spec_hash.clone(),
            revision.changes.join(", "),
            revision.rollout.as_ref().map_or("-".to_string(), |r| {
                format!(
                    "{} {}, {}: {}",
                    word(&r.kind),
                    word(&r.state),
                    r.order,
                    outage(r.outage_ms)
                )
            }),
        ]);
    }
    table.to_string()
}

/// A size as `docker images` prints it: decimal units (`12.3MB`).
pub fn bytes(size: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = size.max(0) as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{size}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
fn format_datetime(ms: u64) -> String {
    let text = humantime::format_rfc3339_seconds(system_time(ms)).to_string();
    text.trim_end_matches('Z').replacen('T', " ", 1)
}

/// Milliseconds since the epoch as RFC 3339 with milliseconds (`2026-12-04T20:16:59.123Z`).
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(system_time(ms)).to_string()
}

fn system_time(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

/// `composure ps` as a table; `ports`: each service's published ports, as compose shows them.
pub fn task_table(
    tasks: &[&composure_api::TaskView],
    ports: &indexmap::IndexMap<String, String>,
) -> String {
    use comfy_table::{Table, presets::NOTHING};
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header([
        "NAME",
        "SERVICE",
        "SLOT",
        "STATE",
        "HEALTH",
        "RESTARTS",
        "NODE",
        "CONTAINER",
        "PORTS",
        "LAST ERROR",
    ]);
    for t in tasks {
        table.add_row([
            t.container_name.clone().unwrap_or_else(|| "-".into()),
            t.service.clone(),
            t.slot.to_string(),
            word(&t.state),
            word(&t.health),
            t.restarts.to_string(),
            if t.gpus.is_empty() {
                dash(&t.node)
            } else {
                format!("{} (GPU {})", dash(&t.node), t.gpus.join(","))
            },
            t.container_id
                .as_deref()
                .map_or("-".into(), |id| id.chars().take(12).collect()),
            ports.get(&t.service).cloned().unwrap_or_default(),
            t.error.clone().unwrap_or_default(),
        ]);
    }
    table.to_string()
}

/// `composure up --dry-run`: one line per service, the replicas per node.
pub fn placement_table(preview: &composure_api::PlacementPreview) -> String {
    use comfy_table::{Table, presets::NOTHING};
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header([
        "SERVICE",
        "REPLICAS",
        "PLACED ON",
        "RUNNING ALREADY",
        "UNPLACED",
    ]);
    for s in &preview.services {
        let nodes: Vec<String> = s.nodes.iter().map(|(n, c)| format!("{n}={c}")).collect();
        table.add_row([
            s.service.clone(),
            s.replicas.to_string(),
            if nodes.is_empty() {
                "-".to_string()
            } else {
                nodes.join(",")
            },
            s.kept.to_string(),
            s.unplaced.to_string(),
        ]);
    }
    table.to_string()
}

/// `composure ls`: one line per project, as `docker compose ls` prints them.
pub fn project_table(projects: &[composure_api::ProjectSummary]) -> String {
    use comfy_table::{Table, presets::NOTHING};
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header(["NAME", "STATUS", "REVISION", "CONFIG FILES"]);
    for p in projects {
        table.add_row([
            p.name.clone(),
            format!("{}({}/{})", word(&p.status), p.running, p.desired),
            if p.number > 0 { p.number } else { p.revision }.to_string(),
            p.config_files.join(","),
        ]);
    }
    table.to_string()
}

/// `composure gpus`: one line per GPU, with who holds it; a node without GPUs says why.
pub fn gpu_table(view: &composure_api::GpusView) -> String {
    use comfy_table::{Table, presets::NOTHING};
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header([
        "NODE", "GPU", "NAME", "MEMORY", "USED", "UTIL", "UUID", "HELD BY",
    ]);
    let mut notes = Vec::new();
    for node in &view.nodes {
        if node.gpus.is_empty() {
            notes.push(match &node.problem {
                Some(problem) => format!(
                    "{}: {problem}; services that reserve GPUs cannot be placed there",
                    node.node
                ),
                None => format!("{}: no GPUs", node.node),
            });
        }
        for gpu in &node.gpus {
            let holders: Vec<String> = gpu
                .holders
                .iter()
                .map(|h| {
                    let how = match (h.share, h.memory) {
                        (_, Some(memory)) => format!(" ({})", gib(memory)),
                        (Some(share), None) => format!(" (share {share})"),
                        (None, None) => String::new(),
                    };
                    format!("{}-{}-{}{how}", h.project, h.service, h.slot)
                })
                .collect();
            table.add_row([
                node.node.clone(),
                gpu.id.clone(),
                dash(&gpu.name),
                gib(gpu.memory),
                gpu.memory_used.map_or("-".to_string(), gib),
                gpu.utilization.map_or("-".to_string(), |u| format!("{u}%")),
                dash(&gpu.uuid),
                if holders.is_empty() {
                    "-".to_string()
                } else {
                    holders.join(", ")
                },
            ]);
        }
    }
    let mut text = if view.nodes.iter().any(|n| !n.gpus.is_empty()) {
        table.to_string()
    } else {
        String::new()
    };
    for note in notes {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&note);
    }
    text
}

/// `composure node ls`: one line per node.
pub fn node_table(nodes: &[composure_api::NodeView]) -> String {
    use comfy_table::{Table, presets::NOTHING};
    let mut table = Table::new();
    table.load_preset(NOTHING);
    table.set_header([
        "NAME", "HOSTNAME", "STATE", "ROLE", "CPUS", "MEMORY", "RESERVED", "TASKS", "ENGINE",
        "LABELS",
    ]);
    for n in nodes {
        let role = if n.leader {
            format!("{} (leader)", n.role)
        } else {
            n.role.clone()
        };
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        table.add_row([
            n.name.clone(),
            dash(&n.hostname),
            word(&n.state),
            role,
            n.cpus.to_string(),
            gib(n.memory),
            format!(
                "{} CPUs, {}",
                n.reserved_millicpus as f64 / 1000.0,
                gib(n.reserved_memory)
            ),
            n.tasks.to_string(),
            dash(&n.engine_version),
            labels.join(","),
        ]);
    }
    table.to_string()
}

fn dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

/// Bytes in GiB with one decimal.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// The wire name of an enum value (`running`, `healthy`).
fn word<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// `web-1 |` prefixes for log lines, padded to line up and coloured per service.
#[derive(Debug, Default)]
pub struct Prefixes {
    colours: std::collections::HashMap<String, usize>,
    width: usize,
}

impl Prefixes {
    pub fn get(&mut self, service: &str, slot: u32) -> String {
        const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];
        let next = self.colours.len();
        let colour = *self.colours.entry(service.to_string()).or_insert(next);
        let label = format!("{service}-{slot}");
        self.width = self.width.max(label.len());
        let padded = format!("{label:<width$} |", width = self.width);
        if stdout_colour() {
            format!("\x1b[{}m{padded}\x1b[0m", COLOURS[colour % COLOURS.len()])
        } else {
            padded
        }
    }
}

/// `composure events` as text.
pub fn event_line(event: &composure_api::Event) -> String {
    let who = match (&event.service, event.slot) {
        (Some(s), Some(n)) => format!("{}/{s}-{n}", event.project),
        (Some(s), None) => format!("{}/{s}", event.project),
        _ => event.project.clone(),
    };
    format!(
        "{} {who} {}: {}",
        rfc3339(event.time),
        event.kind,
        event.message
    )
}
