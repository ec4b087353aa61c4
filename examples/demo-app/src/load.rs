//! The `load` role: a client that sends requests to a URL without pause and counts what
//! fails, so that tests can watch a service from inside another container while it is
//! updated.
//!
//! `load http://HOST[:PORT][/PATH] [--connection close|keep-alive] [--interval 10ms]
//! [--timeout 2s]`
//! prints a summary line every half second:
//!
//! ```text
//! load requests=1200 failed=0 longest_gap_ms=14
//! ```
//!
//! A request fails on any error or on a status outside 2xx; with `--connection keep-alive` a
//! request on a pooled connection that the server closed counts as failed too (that is
//! the failure keep-alive clients see when a replica goes away under them). The longest
//! gap is the longest time between two successful answers. Without keep-alive every
//! request resolves the name and opens a new connection.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::net;
use crate::probe::Target;

pub struct Config {
    pub target: Target,
    pub keep_alive: bool,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Default)]
struct Counts {
    requests: u64,
    failed: u64,
    longest_gap: Duration,
}

pub fn run(config: &Config) -> Result<(), String> {
    let Target::Http { addr, host, path } = &config.target else {
        return Err("load needs an http:// URL".to_owned());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: demo-app-load\r\nConnection: {}\r\n\r\n",
        if config.keep_alive {
            "keep-alive"
        } else {
            "close"
        }
    );
    let mut counts = Counts::default();
    let mut pooled: Option<BufReader<TcpStream>> = None;
    let mut last_ok = Instant::now();
    let mut last_report = Instant::now();
    let start = Instant::now();
    loop {
        counts.requests += 1;
        let answer = match pooled.take() {
            Some(conn) => exchange(conn, &request),
            None => net::connect(addr, config.timeout)
                .and_then(|s| exchange(BufReader::new(s), &request)),
        };
        match answer {
            Ok((status, conn)) if (200..300).contains(&status) => {
                let now = Instant::now();
                counts.longest_gap = counts.longest_gap.max(now - last_ok);
                last_ok = now;
                if config.keep_alive {
                    pooled = conn;
                }
            }
            Ok((status, _)) => {
                counts.failed += 1;
                println!(
                    "load error at {} ms: status {status}",
                    start.elapsed().as_millis()
                );
            }
            Err(error) => {
                counts.failed += 1;
                println!("load error at {} ms: {error}", start.elapsed().as_millis());
            }
        }
        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            println!(
                "load requests={} failed={} longest_gap_ms={}",
                counts.requests,
                counts.failed,
                counts.longest_gap.as_millis()
            );
        }
        thread::sleep(config.interval);
    }
}

/// Sends `request` and reads the answer; returns its status and, if the server keeps it
/// open, the connection.
fn exchange(
    mut conn: BufReader<TcpStream>,
    request: &str,
) -> std::io::Result<(u16, Option<BufReader<TcpStream>>)> {
    conn.get_mut().write_all(request.as_bytes())?;
    let mut line = String::new();
    if !net::read_line(&mut conn, &mut line, 1024)? {
        return Err(std::io::Error::other("connection closed before an answer"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {line:?}")))?;
    let mut length = None;
    let mut close = false;
    loop {
        if !net::read_line(&mut conn, &mut line, 8192)? {
            return Err(std::io::Error::other("connection closed in the headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<u64>().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
    }
    match length {
        Some(n) => {
            std::io::copy(&mut conn.by_ref().take(n), &mut std::io::sink())?;
        }
        None => {
            // No length: the body runs to the end of the connection.
            std::io::copy(&mut conn, &mut std::io::sink())?;
            close = true;
        }
    }
    Ok((status, (!close).then_some(conn)))
}
