//! Crash recovery: a container's process is SIGKILLed; how long until its published port
//! answers HTTP 200 again. Composure (`restart: always`) against Docker's own restart policy
//! (`--restart always` and `--restart on-failure`), interleaved kill by kill in one run.
//!
//! Each side runs [`INSTANCES`] one-replica web services, killed in turn, so that every kill
//! hits a process that ran longer than both engines' backoff reset (10 s): a "first crash".
//! Then one instance per side is killed again as soon as it serves, [`REPEATED`] times in a
//! row, to show each engine's backoff.
//!
//! Run: `cargo run --release -p composure-bench --bin crash_recovery` (see bench/README.md).

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use composure_bench::compose::{ComposureProject, PROJECT_LABEL};
use composure_bench::daemon::Daemon;
use composure_bench::docker::{self, Event, Events, LabelGuard, unix_nanos};
use composure_bench::env::{IMAGE, ensure_image, free_port, load_average, run_name};
use composure_bench::http::{self, POLL};
use composure_bench::stats::{Summary, ms, ratio};

/// Instances per side, killed in turn.
const INSTANCES: usize = 10;
/// First-crash kills per side.
const KILLS: usize = 30;
/// Kills in a row of one instance per side.
const REPEATED: usize = 8;
/// Both engines reset their backoff after a run of 10 s; a margin on top.
const STABLE: Duration = Duration::from_millis(10_500);
/// A pause between a recovery and the next kill, so that one recovery's tail (the engine's
/// bookkeeping) does not overlap the next measurement.
const SETTLE: Duration = Duration::from_millis(300);
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Composure,
    DockerAlways,
    DockerOnFailure,
}

impl Side {
    const ALL: [Side; 3] = [Side::Composure, Side::DockerAlways, Side::DockerOnFailure];

    fn label(self) -> &'static str {
        match self {
            Side::Composure => "Composure (`restart: always`)",
            Side::DockerAlways => "Docker `--restart always`",
            Side::DockerOnFailure => "Docker `--restart on-failure`",
        }
    }
}

#[derive(Debug)]
struct Instance {
    side: Side,
    port: u16,
    /// Docker: the container, which Docker restarts in place. Composure: the service, whose
    /// container is replaced by a new one.
    target: String,
    project: String,
    /// When it last started serving: the next first-crash kill waits [`STABLE`] after this.
    serving_since: Instant,
}

impl Instance {
    fn container(&self) -> anyhow::Result<String> {
        match self.side {
            Side::Composure => {
                let project = format!("{PROJECT_LABEL}={}", self.project);
                let service = format!("com.docker.compose.service={}", self.target);
                // `docker ps` may briefly list none while a container changes state.
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    let ids = docker::running_with(&[&project, &service])?;
                    if let [id] = ids.as_slice() {
                        return Ok(id.clone());
                    }
                    if Instant::now() >= deadline {
                        let all = docker::lines(&[
                            "ps",
                            "-a",
                            "--filter",
                            &format!("label={project}"),
                            "--filter",
                            &format!("label={service}"),
                            "--format",
                            "{{.ID}} {{.Status}} {{.Names}}",
                        ])?;
                        bail!(
                            "expected one running container of {}, found {ids:?}; all: {all:?}",
                            self.target
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            _ => Ok(self.target.clone()),
        }
    }

    /// Kills the process and waits until the port serves again.
    fn crash(&mut self) -> anyhow::Result<Kill> {
        let id = self.container()?;
        let pid = docker::main_pid(&id)?;
        let restarts = docker::inspect(&id, "{{.RestartCount}}")?;
        let killed_ns = unix_nanos(SystemTime::now());
        let killed_at = Instant::now();
        docker::crash(&pid)?;
        let (served_at, body) =
            http::wait_serving(http::local(self.port), "/", |_| true, RECOVERY_TIMEOUT)
                .with_context(|| format!("{} on port {} after a kill", self.target, self.port))?;
        let took = served_at - killed_at;
        // A new process must have answered, not the killed one.
        let new_id = match self.side {
            Side::Composure => {
                let now = self.container()?;
                if now == id || http::host_of(&body) != Some(&now[..12]) {
                    bail!(
                        "{}: the answer did not come from a replacement",
                        self.target
                    );
                }
                now
            }
            _ => {
                if docker::inspect(&id, "{{.RestartCount}}")? == restarts {
                    bail!("{}: Docker did not restart it", self.target);
                }
                id.clone()
            }
        };
        self.serving_since = served_at;
        Ok(Kill {
            took,
            killed_ns,
            old_id: id,
            new_id,
        })
    }

    fn wait_stable(&self) {
        let ready = self.serving_since + STABLE;
        std::thread::sleep(ready.saturating_duration_since(Instant::now()));
    }
}

/// One kill: how long until serving, and what Docker's events need to tell its phases.
#[derive(Debug)]
struct Kill {
    took: Duration,
    killed_ns: u128,
    old_id: String,
    /// The replacement (Composure) or the same container (Docker).
    new_id: String,
}

/// Where the time of one kill went, from Docker's events: each phase's end after the kill.
#[derive(Debug, Default)]
struct Phases {
    died: Vec<Duration>,
    removed: Vec<Duration>,
    created: Vec<Duration>,
    started: Vec<Duration>,
    serving: Vec<Duration>,
}

impl Phases {
    fn add(&mut self, kill: &Kill, events: &[Event]) {
        let after = |id: &str, action: &str| {
            events
                .iter()
                .filter(|e| e.id == id && e.action == action && e.time_ns >= kill.killed_ns)
                .map(|e| Duration::from_nanos((e.time_ns - kill.killed_ns) as u64))
                .min()
        };
        self.died.extend(after(&kill.old_id, "die"));
        if kill.new_id != kill.old_id {
            self.removed.extend(after(&kill.old_id, "destroy"));
            self.created.extend(after(&kill.new_id, "create"));
        }
        self.started.extend(after(&kill.new_id, "start"));
        self.serving.push(kill.took);
    }
}

fn composure_file(ports: &[u16]) -> String {
    let mut file = String::from("services:\n");
    for (i, port) in ports.iter().enumerate() {
        file.push_str(&format!(
            "  web{:02}:\n    image: {IMAGE}\n    command: [\"web\", \"--port\", \"8080\"]\n    restart: always\n    ports: [\"127.0.0.1:{port}:8080\"]\n",
            i + 1
        ));
    }
    file
}

fn main() -> anyhow::Result<()> {
    ensure_image()?;
    let load_before = load_average();
    let run = run_name("crash");
    eprintln!(
        "run {run}: starting a daemon, {INSTANCES} Composure services and 2 x {INSTANCES} Docker containers"
    );

    let events = Events::start(SystemTime::now(), &["type=container".to_string()])?;
    let daemon = Daemon::start()?;
    let ports: Vec<u16> = (0..INSTANCES)
        .map(|_| free_port())
        .collect::<Result<_, _>>()?;
    let project_name = format!("{run}-composure");
    let project = ComposureProject::new(&daemon, &project_name, &composure_file(&ports))?;
    project.ok(&["up", "--wait-timeout", "120"])?;
    let mut sides: Vec<Vec<Instance>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for (i, port) in ports.iter().enumerate() {
        sides[0].push(Instance {
            side: Side::Composure,
            port: *port,
            target: format!("web{:02}", i + 1),
            project: project_name.clone(),
            serving_since: Instant::now(),
        });
    }

    let label = format!("composure.bench={run}");
    let _guard = LabelGuard(label.clone());
    for (s, (side, policy)) in [
        (Side::DockerAlways, "always"),
        (Side::DockerOnFailure, "on-failure"),
    ]
    .into_iter()
    .enumerate()
    {
        for i in 0..INSTANCES {
            let port = free_port()?;
            let name = format!("{run}-{policy}-{:02}", i + 1);
            let id = docker::run_web(&name, &label, policy, port)?;
            sides[s + 1].push(Instance {
                side,
                port,
                target: id,
                project: String::new(),
                serving_since: Instant::now(),
            });
        }
    }
    for instance in sides.iter_mut().flatten() {
        let (at, _) =
            http::wait_serving(http::local(instance.port), "/", |_| true, RECOVERY_TIMEOUT)?;
        instance.serving_since = at;
    }

    eprintln!("first crashes: {KILLS} kills per side, interleaved, each after a stable run");
    let mut first: Vec<Vec<Kill>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for k in 0..KILLS {
        for (s, instances) in sides.iter_mut().enumerate() {
            let instance = &mut instances[k % INSTANCES];
            instance.wait_stable();
            std::thread::sleep(SETTLE);
            first[s].push(instance.crash()?);
        }
        eprintln!(
            "  kill {:>2}: composure {:.0} ms, docker always {:.0} ms, docker on-failure {:.0} ms",
            k + 1,
            ms(first[0][k].took),
            ms(first[1][k].took),
            ms(first[2][k].took)
        );
    }

    eprintln!("repeated kills: {REPEATED} in a row of one instance per side");
    let mut repeated: Vec<Vec<Duration>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for (s, instances) in sides.iter_mut().enumerate().take(2) {
        let instance = &mut instances[0];
        instance.wait_stable();
        for _ in 0..REPEATED {
            let took = instance.crash()?.took;
            eprintln!("  {}: {:.0} ms", instance.side.label(), ms(took));
            repeated[s].push(took);
        }
    }

    // The last events arrive within milliseconds; the stream is read in the background.
    std::thread::sleep(Duration::from_millis(500));
    let seen = events.snapshot();
    let phases: Vec<Phases> = first
        .iter()
        .map(|kills| {
            let mut phases = Phases::default();
            for kill in kills {
                phases.add(kill, &seen);
            }
            phases
        })
        .collect();
    let first: Vec<Vec<Duration>> = first
        .iter()
        .map(|kills| kills.iter().map(|k| k.took).collect())
        .collect();
    report(&first, &repeated, &phases);
    println!(
        "\nMachine load (1-minute load average, 2 cores): {load_before} at the start, {} at the end.",
        load_average()
    );
    drop(project);
    drop(daemon);
    Ok(())
}

/// A row of the phase table: its label and which durations of a run it shows.
type PhaseRow = (&'static str, fn(&Phases) -> &[Duration]);

fn report(first: &[Vec<Duration>], repeated: &[Vec<Duration>], phases: &[Phases]) {
    println!("## Crash recovery: SIGKILL of the process → the published port answers 200 again\n");
    println!(
        "First crashes: {KILLS} kills per side, interleaved, each of a process that had served for at least {:.1} s; probes every {} ms.\n",
        STABLE.as_secs_f64(),
        POLL.as_millis()
    );
    println!("| | kills | min (ms) | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let summaries: Vec<Option<Summary>> = first.iter().map(|s| Summary::of(s)).collect();
    for (side, summary) in Side::ALL.iter().zip(&summaries) {
        if let Some(s) = summary {
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                side.label(),
                s.n,
                ms(s.min),
                ms(s.p50),
                ms(s.p90),
                ms(s.p99),
                ms(s.max)
            );
        }
    }
    if let (Some(ours), Some(always), Some(on_failure)) = (summaries[0], summaries[1], summaries[2])
    {
        println!();
        println!(
            "Docker `always` / Composure: p50 {}, p99 {}, max {}. Docker `on-failure` / Composure: p50 {}, p99 {}.",
            ratio(always.p50, ours.p50),
            ratio(always.p99, ours.p99),
            ratio(always.max, ours.max),
            ratio(on_failure.p50, ours.p50),
            ratio(on_failure.p99, ours.p99)
        );
        let met = always.p50.as_secs_f64() >= 2.0 * ours.p50.as_secs_f64()
            && on_failure.p50.as_secs_f64() >= 2.0 * ours.p50.as_secs_f64();
        println!(
            "Goal (at least 2x faster than Docker's first restart, p50): {}.",
            if met { "met" } else { "MISSED" }
        );
    }
    println!(
        "\nWhere the time goes (p50 of each phase's end, ms after the kill, from Docker's events; first crashes):\n"
    );
    println!("| phase | Composure | Docker `always` | Docker `on-failure` |");
    println!("|---|---:|---:|---:|");
    let p50 =
        |v: &[Duration]| Summary::of(v).map_or("-".to_string(), |s| format!("{:.0}", ms(s.p50)));
    let rows: [PhaseRow; 5] = [
        ("`die` (the engine saw the exit)", |p| &p.died),
        ("old container removed (`destroy`)", |p| &p.removed),
        ("replacement created (`create`)", |p| &p.created),
        ("`start`", |p| &p.started),
        ("port answers 200", |p| &p.serving),
    ];
    for (label, field) in rows {
        println!(
            "| {label} | {} | {} | {} |",
            p50(field(&phases[0])),
            p50(field(&phases[1])),
            p50(field(&phases[2]))
        );
    }
    println!(
        "\nRepeated kills: one instance killed again as soon as it serves, {REPEATED} times in a row.\n"
    );
    println!("| kill in a row | Composure (ms) | Docker `always` (ms) | Docker / Composure |");
    println!("|---:|---:|---:|---:|");
    for i in 0..REPEATED {
        if let (Some(ours), Some(docker)) = (repeated[0].get(i), repeated[1].get(i)) {
            println!(
                "| {} | {:.0} | {:.0} | {} |",
                i + 1,
                ms(*ours),
                ms(*docker),
                ratio(*docker, *ours)
            );
        }
    }
    let total = |v: &[Duration]| v.iter().sum::<Duration>();
    println!(
        "| total | {:.0} | {:.0} | {} |",
        ms(total(&repeated[0])),
        ms(total(&repeated[1])),
        ratio(total(&repeated[1]), total(&repeated[0]))
    );
}
