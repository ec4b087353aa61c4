//! A data directory locked by one process cannot be locked by another, which is told the
//! holder's pid; the lock is free again once the holder is gone.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use composure_store::{DataDirLock, StoreError};

const HOLDER_ENV: &str = "COMPOSURE_STORE_LOCK_HOLDER";

/// The holder: takes the lock, says so, and keeps it until its stdin closes.
fn hold(dir: &Path) -> ! {
    let _lock = DataDirLock::acquire(dir).unwrap();
    // libtest has already written "test <name> ... " without a newline: start a line.
    println!("\nlocked");
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest).unwrap();
    std::process::exit(0);
}

#[test]
fn a_second_process_is_refused_with_the_holders_pid() {
    if let Some(dir) = std::env::var_os(HOLDER_ENV) {
        hold(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_second_process_is_refused_with_the_holders_pid",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(holder.stdout.take().unwrap());
    let locked = stdout
        .lines()
        .map(Result::unwrap)
        .any(|line| line == "locked");
    assert!(locked, "the holder ended before taking the lock");

    let error = DataDirLock::acquire(dir.path()).unwrap_err();
    assert!(
        matches!(error, StoreError::Locked { pid: Some(pid), .. } if pid == holder.id()),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&format!("pid {}", holder.id())),
        "{error}"
    );

    // Closing its stdin lets the holder exit; the kernel then releases the lock.
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    let lock = DataDirLock::acquire(dir.path()).unwrap();
    let pid = std::fs::read_to_string(lock.path()).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());
}

#[test]
fn a_killed_holder_leaves_no_stale_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_second_process_is_refused_with_the_holders_pid",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(holder.stdout.take().unwrap());
    assert!(
        stdout
            .lines()
            .map(Result::unwrap)
            .any(|line| line == "locked")
    );
    assert!(DataDirLock::acquire(dir.path()).is_err());

    holder.kill().unwrap();
    holder.wait().unwrap();
    DataDirLock::acquire(dir.path()).unwrap();
}
