//! The Compose file loader: reads compose files exactly as `docker compose` does and turns
//! them into the canonical project model.
//!
//! Pure by design: no async runtime, no Docker client, no network. The only IO is reading
//! the files the caller names (and files those reference: `.env`, `env_file`, `include`,
//! `extends`), through the [`loader`] entry points.

pub mod diag;
pub mod model;
pub mod yaml;

pub use diag::{Diagnostic, LoadError, Severity, Span, YamlPath};
