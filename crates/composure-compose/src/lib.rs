//! The Compose file loader: reads compose files exactly as `docker compose` does and turns
//! them into the canonical project model.
//!
//! Pure by design: no async runtime, no Docker client, no network. The only IO is reading
//! the files the caller names (and files those reference: `.env`, `env_file`, `include`,
//! `extends`), through the `Source` trait.

pub mod diag;
pub mod dotenv;
pub mod extends;
pub mod interpolate;
pub mod loader;
pub mod merge;
pub mod model;
pub mod names;
pub mod normalize;
pub mod paths;
pub mod profiles;
pub mod schema;
pub mod semantic;
pub mod source;
pub mod yaml;

pub use diag::{Diagnostic, LoadError, Severity, Span, YamlPath};
pub use loader::{LoadOptions, Loaded, load};
