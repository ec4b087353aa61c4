//! Where the loader reads files from.
//!
//! The loader's only IO is reading the files the user names and the files they reference
//! (`.env`, `env_file`, `include`, `extends`). It goes through this trait so that tests, the
//! fuzzer and benchmarks can load from memory, and so nothing else in the crate touches the
//! file system.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

pub trait Source {
    /// Reads a whole file as UTF-8 text.
    fn read(&self, path: &Path) -> io::Result<String>;

    /// Whether a file exists (used for optional files: `.env`, `compose.override.yaml`).
    fn exists(&self, path: &Path) -> bool;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileSystem;

impl Source for FileSystem {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.is_file()
    }
}

/// Files held in memory, keyed by absolute path.
#[derive(Clone, Debug, Default)]
pub struct MemorySource {
    files: HashMap<PathBuf, String>,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.files.insert(path.into(), text.into());
        self
    }
}

impl Source for MemorySource {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }
}

/// Joins `path` onto `base` unless it is absolute, and removes `.` and `..` components
/// lexically (no symlink resolution: the path may name a file that does not exist yet, and
/// `docker compose` does the same).
pub fn absolutize(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolutize_cleans_dots() {
        assert_eq!(
            absolutize(Path::new("/a/b"), Path::new("./c/../d")),
            PathBuf::from("/a/b/d")
        );
        assert_eq!(
            absolutize(Path::new("/a/b"), Path::new("/x/./y")),
            PathBuf::from("/x/y")
        );
        assert_eq!(
            absolutize(Path::new("/a/b"), Path::new("../../..")),
            PathBuf::from("/")
        );
    }
}
