//! The data directory lock: one daemon per data directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::StoreError;

/// An exclusive lock on a data directory, held until dropped (or the process dies: the
/// kernel releases it, so a killed daemon never leaves a stale lock). The file
/// `<dir>/lock` holds the pid of the holder, to name it when a second daemon is refused.
///
/// `flock` through the standard library (`File::try_lock`, stable since Rust 1.89), which
/// does what the `fs4` crate does without the dependency.
#[derive(Debug)]
pub struct DataDirLock {
    path: PathBuf,
    // Held for its lock; closing it releases the lock.
    _file: File,
}

impl DataDirLock {
    /// Takes the lock, creating the directory if needed, or fails with
    /// [`StoreError::Locked`] naming the pid that holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, StoreError> {
        let io_error = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io_error("create the data directory", dir))?;
        let path = dir.join("lock");
        // Not truncated on open: until we hold the lock, the pid in it is the holder's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("open the lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    pid: holder_pid(&mut file),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(io_error("lock", &path)(source));
            }
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_all())
            .map_err(io_error("write the pid into", &path))?;
        Ok(DataDirLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid the holder wrote, if it has written it yet.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
