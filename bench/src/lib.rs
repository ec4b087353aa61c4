//! What the engine benchmarks share: the composure daemon and CLI, Docker and docker-compose
//! run as commands, HTTP probes of published ports, continuous HTTP load, and summary
//! statistics. Every benchmark runs Composure and its anchor in the same run on the same
//! machine and prints ratios.

pub mod compose;
pub mod daemon;
pub mod docker;
pub mod env;
pub mod http;
pub mod load;
pub mod nginx;
pub mod stacks;
pub mod stats;
