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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, resolve and render the compose file in canonical form
    Config(ConfigArgs),
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
