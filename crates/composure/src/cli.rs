//! Command-line syntax. Global flags work before or after the verb, as in `docker compose`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "composure",
    version,
    about = "Run an unchanged compose.yaml in production"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The project flags every verb understands. They are accepted both before and after the
/// verb (clap's `global` would let the later ones replace the earlier; we append instead).
#[derive(Clone, Debug, Default, Args)]
pub struct GlobalArgs {
    /// Compose configuration files (default: compose.yaml in this directory or a parent)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name (default: `name:` in the file, else the project directory's name)
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Alternate working directory (default: the directory of the first file)
    #[arg(long, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Profiles to enable (default: COMPOSE_PROFILES)
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Alternate environment files (default: .env in the project directory)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// The daemon to talk to (default: unix:///run/composure/composure.sock as root, else
    /// $XDG_RUNTIME_DIR/composure/composure.sock)
    #[arg(short = 'H', long, env = "COMPOSURE_HOST", value_name = "unix:///PATH")]
    pub host: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit the project to the daemon and wait until it runs as declared
    Up(UpArgs),
    /// Stop and remove the project's containers and networks (and volumes with -v)
    Down(DownArgs),
    /// List the project's tasks: one line per replica
    Ps(PsArgs),
    /// Show the output of the project's containers
    Logs(LogsArgs),
    /// Set the number of replicas of services: `scale web=3 worker=2`
    Scale(ScaleArgs),
    /// Replace the tasks of services (all when none is named)
    Restart(RestartArgs),
    /// Show what the daemon does and sees, as it happens
    Events(EventsArgs),
    /// Rolling updates of a service: progress, history of versions, undo
    Rollout(RolloutArgs),
    /// The cluster's nodes: list, inspect, label, drain, activate, remove
    Node(NodeArgs),
    /// The nodes' GPUs and which replica holds each
    Gpus(GpusArgs),
    /// Run a command in a running replica of a service: `exec web sh`, `exec --index 2 web env`
    Exec(ExecArgs),
    /// Print the public address of a service's port: `port web 80` → 0.0.0.0:8080
    Port(PortArgs),
    /// Show the processes of each running replica
    Top(ServicesArgs),
    /// List the images the running replicas run
    Images(ImagesArgs),
    /// Send a signal to the running replicas of services (they are replaced per their
    /// restart policy)
    Kill(KillArgs),
    /// Wait until services' replicas have ended, and exit with the first one's exit code
    Wait(WaitArgs),
    /// Stop services: their replicas go (scaled to 0); `start` brings the file's count back
    Stop(ServicesArgs),
    /// Start services again at the replicas their compose file asks for
    Start(ServicesArgs),
    /// Pull the images of services, with the credentials of the Docker client configuration
    Pull(PullArgs),
    /// Build the images of services that have a `build:` section
    Build(BuildArgs),
    /// List the projects the daemon runs
    Ls(LsArgs),
    /// Show the Composure version (and the daemon's, when one answers)
    Version(VersionArgs),
    /// Parse, resolve and render the compose file in canonical form
    Config(ConfigArgs),
    /// Print a shell completion script: `composure completion bash > /etc/bash_completion.d/composure`
    Completion(CompletionArgs),
    /// Run the daemon: the control plane and the local agent
    Daemon(DaemonArgs),
    /// Run a service's VIP (inside the VIP container the daemon creates)
    #[command(hide = true)]
    Vip(VipArgs),
    /// Run a project's ingress (inside the ingress container the daemon creates)
    #[command(hide = true)]
    Ingress(IngressArgs),
}

#[derive(Debug, Args)]
pub struct IngressArgs {
    /// The directory holding the ingress's config, written by the daemon
    #[arg(long, value_name = "DIR", required_unless_present = "is_ready")]
    pub dir: Option<PathBuf>,
    /// Create this file once serving (the container's health check looks for it)
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Only say (by the exit status) whether the ingress that creates FILE serves
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dir", "ready_file"])]
    pub is_ready: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VipArgs {
    /// The directory holding the VIP's config, written by the daemon
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Return once the daemon has the project, without waiting for it to converge
    #[arg(short, long)]
    pub detach: bool,
    /// Give up waiting after this many seconds (the daemon keeps trying)
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub wait_timeout: u64,
    /// Show where each replica would run, and why what cannot be placed cannot; change
    /// nothing
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: place on this host alone, as a daemon started here with nothing
    /// running would, without asking a daemon
    #[arg(long, requires = "dry_run")]
    pub local: bool,
    /// With --local: read this host's GPUs from FILE instead of NVML (see `composure daemon --gpu-inventory`)
    #[arg(long, value_name = "FILE", requires = "local")]
    pub gpu_inventory: Option<PathBuf>,
    #[command(flatten)]
    pub images: ImageArgs,
    /// Replace every replica (of the named services, else all), rolled in like an update,
    /// even when nothing changed
    #[arg(long)]
    pub force_recreate: bool,
    /// With services named: those only, not their dependencies
    #[arg(long)]
    pub no_deps: bool,
    /// Run N replicas of SERVICE, in place of the file's `deploy.replicas` (repeatable)
    #[arg(long, value_name = "SERVICE=N")]
    pub scale: Vec<String>,
    /// Services to run (with their dependencies); default: all
    pub services: Vec<String>,
}

/// How `up` gets images, as `docker compose up` takes them.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Build images before starting, even when their context did not change
    #[arg(long, conflicts_with = "no_build")]
    pub build: bool,
    /// Do not build images, even when missing or changed
    #[arg(long)]
    pub no_build: bool,
    /// Pull images before starting: always, missing, never (or any pull_policy), in place
    /// of each service's pull_policy
    #[arg(long, value_name = "POLICY")]
    pub pull: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Run the command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Set an environment variable (repeatable): KEY=VALUE
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The replica, by slot number
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub index: u32,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Run as this user
    #[arg(short, long)]
    pub user: Option<String>,
    /// Run in this directory of the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Allocate no pseudo-terminal (the default when stdin is not a terminal)
    #[arg(short = 'T', long = "no-tty")]
    pub no_tty: bool,
    pub service: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Only these services; default: all
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Only the image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Only these services; default: all
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The signal to send
    #[arg(short, long, default_value = "SIGKILL")]
    pub signal: String,
    /// Only these services; default: all
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Take the project down once the services have ended
    #[arg(long)]
    pub down_project: bool,
    #[arg(required = true)]
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// tcp or udp
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// The replica (every replica shares the ingress's port; accepted for compose's sake)
    #[arg(long, value_name = "N")]
    pub index: Option<u32>,
    pub service: String,
    /// The container's port
    pub private_port: u16,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Pull `always` (default) or only what is `missing`
    #[arg(long, value_name = "POLICY", default_value = "always")]
    pub policy: String,
    /// Leave out services that have a `build:` section
    #[arg(long)]
    pub ignore_buildable: bool,
    /// Exit 0 even when an image could not be pulled
    #[arg(long)]
    pub ignore_pull_failures: bool,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
    /// Services whose images to pull; default: all
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Services to build; default: every service with a `build:` section
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Also remove the project's named volumes
    #[arg(short, long)]
    pub volumes: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Show ended tasks too (the history of each slot)
    #[arg(short, long)]
    pub all: bool,
    /// Only the container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Only the services' names
    #[arg(long = "services")]
    pub service_names: bool,
    /// Only tasks in this state (repeatable): compose's `running`, `created`, `exited`, `dead`, or
    /// a task state (`pending`, `creating`, `starting`, `complete`, `failed`, `shutdown`)
    #[arg(long, value_name = "STATUS")]
    pub status: Vec<String>,
    /// Only these services
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Only the project names
    #[arg(short, long)]
    pub quiet: bool,
    /// Show every project, stopped ones too (all are listed: accepted for compose's sake)
    #[arg(short, long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Output format: `json` names the client's and the daemon's versions
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Only the version number
    #[arg(long)]
    pub short: bool,
}

/// `-f` means `--follow` here, as in `docker compose logs`: the project flags go before
/// the verb (`composure -f compose.yaml logs -f`).
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep following the output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of each container's output
    #[arg(short = 'n', long, value_name = "LINES")]
    pub tail: Option<usize>,
    /// Only output from this time on: RFC 3339 (2026-12-04T10:00:00Z), a Unix time in
    /// seconds, or a time ago (42m, 1h30m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Show when each line was written (RFC 3339)
    #[arg(short, long)]
    pub timestamps: bool,
    /// Print each line without its replica prefix
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Only these services
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// SERVICE=REPLICAS pairs
    #[arg(required = true, value_name = "SERVICE=REPLICAS")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Events of every project, not only this one
    #[arg(long)]
    pub all_projects: bool,
    /// Print the past events and exit instead of following
    #[arg(long)]
    pub no_follow: bool,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Show the progress of the service's latest rolling update (or rollback)
    Status(RolloutStatusArgs),
    /// List the service's versions and what changed between them
    History(RolloutStatusArgs),
    /// Go back to the service's previous version, rolling through its replicas
    Undo(RolloutUndoArgs),
}

#[derive(Debug, Args)]
pub struct RolloutStatusArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    pub service: String,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes: state (ready, down, drain), role, resources, tasks
    #[command(alias = "list")]
    Ls(NodeLsArgs),
    /// Show nodes in detail (JSON)
    Inspect(NodeNamesArgs),
    /// Set or remove a node's labels, or its availability
    Update(NodeUpdateArgs),
    /// Move a node's tasks to other nodes, as a rolling update does, and place nothing new on it
    Drain(NodeNamesArgs),
    /// Let a drained node take tasks again
    Activate(NodeNamesArgs),
    /// Forget nodes that are down and run nothing
    #[command(alias = "remove")]
    Rm(NodeNamesArgs),
}

#[derive(Debug, Args)]
pub struct NodeLsArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Args)]
pub struct GpusArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// This host's GPUs as a daemon started here would read them, without asking a daemon
    #[arg(long)]
    pub local: bool,
    /// With --local: read the inventory from FILE (`nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv`) instead of NVML
    #[arg(long, value_name = "FILE", requires = "local")]
    pub gpu_inventory: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Args)]
pub struct NodeNamesArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[arg(required = true, value_name = "NODE")]
    pub nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NodeUpdateArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Set a label (repeatable): constraints see it as `node.labels.KEY`
    #[arg(long = "label", alias = "label-add", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Remove a label (repeatable)
    #[arg(long = "label-rm", value_name = "KEY")]
    pub remove_labels: Vec<String>,
    /// `active` or `drain`
    #[arg(long, value_enum, value_name = "AVAILABILITY")]
    pub availability: Option<Availability>,
    #[arg(value_name = "NODE")]
    pub node: String,
}

/// `composure node update --availability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Availability {
    Active,
    Drain,
}

#[derive(Debug, Args)]
pub struct RolloutUndoArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Go back to the version of this revision (see `rollout history`)
    #[arg(long, value_name = "REVISION")]
    pub to_revision: Option<u64>,
    /// Return once the daemon has the request, without waiting for the rollout
    #[arg(short, long)]
    pub detach: bool,
    /// Give up waiting after this many seconds (the daemon keeps going)
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub wait_timeout: u64,
    pub service: String,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Where the daemon keeps its state (default: /var/lib/composure as root, else
    /// $XDG_DATA_HOME/composure)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The Unix socket of the API (default: the --host path, else
    /// /run/composure/composure.sock as root, $XDG_RUNTIME_DIR/composure/composure.sock otherwise)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The group whose members may use the API socket (as dockerd's -G): a name or a GID.
    /// Membership is as powerful as root
    #[arg(short = 'G', long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// This node's name in the store (default: the host name)
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// The address the other nodes reach this one at
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub advertise_addr: String,
    /// Where each project's proxy on its published ports runs: `container` (on the host's
    /// network: ports keep serving while the daemon is down or upgraded) or `daemon`
    #[arg(long, value_enum, default_value = "container", value_name = "WHERE")]
    pub ingress: IngressWhere,
    /// Read this node's GPUs from FILE (what `nvidia-smi
    /// --query-gpu=index,uuid,name,memory.total --format=csv` prints) instead of NVML: for
    /// hosts where the daemon cannot use NVML, and for tests on machines without GPUs
    #[arg(long, value_name = "FILE")]
    pub gpu_inventory: Option<PathBuf>,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Where the ingress runs (`composure daemon --ingress`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum IngressWhere {
    #[default]
    Container,
    Daemon,
}

/// Where the daemon keeps its state: SQLite in `--data-dir` unless etcd endpoints are given.
#[derive(Debug, Args, Clone, Default)]
pub struct StoreArgs {
    /// Keep the state in this etcd cluster instead of SQLite (comma-separated client URLs)
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// The CA certificate (PEM) the etcd members' certificates are checked against (turns TLS on)
    #[arg(long, value_name = "FILE", requires = "etcd_endpoints")]
    pub etcd_ca: Option<PathBuf>,
    /// The client certificate (PEM) to present to etcd
    #[arg(long, value_name = "FILE", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM)
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// The key prefix of this cluster's state, so that several clusters can share one etcd
    #[arg(long, default_value = "/composure/", value_name = "PREFIX")]
    pub etcd_prefix: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

impl GlobalArgs {
    /// These flags followed by `later` ones: lists append, single values are replaced.
    pub fn then(&self, later: &GlobalArgs) -> GlobalArgs {
        let append = |a: &[PathBuf], b: &[PathBuf]| a.iter().chain(b).cloned().collect();
        GlobalArgs {
            files: append(&self.files, &later.files),
            project_name: later
                .project_name
                .clone()
                .or_else(|| self.project_name.clone()),
            project_directory: later
                .project_directory
                .clone()
                .or_else(|| self.project_directory.clone()),
            profiles: self
                .profiles
                .iter()
                .chain(&later.profiles)
                .cloned()
                .collect(),
            env_files: append(&self.env_files, &later.env_files),
            host: later.host.clone().or_else(|| self.host.clone()),
        }
    }
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
    /// Print the service names, one per line
    #[arg(long)]
    pub services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    pub volumes: bool,
    /// Print the profile names, one per line
    #[arg(long = "profiles", id = "list_profiles")]
    pub list_profiles: bool,
    /// Print the image names, one per line
    #[arg(long)]
    pub images: bool,
    /// Only validate the configuration, print nothing
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't interpolate environment variables
    #[arg(long)]
    pub no_interpolate: bool,
    /// Services to keep (with their dependencies)
    pub service_names: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
