//! HTTP/1.1 probes of a published port on 127.0.0.1, and waiting until it serves again.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::bail;

/// How often [`wait_serving`] starts a probe.
pub const POLL: Duration = Duration::from_millis(5);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Probes in flight at once. While a container goes away, Docker's port proxy still accepts
/// connections and dials the dead container's address, which hangs until ARP gives up (about
/// 3 s): such probes must not hold back the next ones, so the bound is above what one
/// [`READ_TIMEOUT`] of probes every [`POLL`] adds up to (200).
const MAX_IN_FLIGHT: usize = 400;

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// One request on a fresh connection: (status, body).
pub fn request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    request(addr, "GET", path)
}

/// The `host:` line of demo-app's index page: the container's host name, which tells a
/// replacement container from the one it replaced.
pub fn host_of(body: &str) -> Option<&str> {
    body.lines().find_map(|l| l.strip_prefix("host: "))
}

/// Starts a `GET path` every [`POLL`] (each on its own thread, so a slow one delays none)
/// until one answers 200 with a body that `accept` takes; the moment that answer arrived,
/// and the body.
pub fn wait_serving(
    addr: SocketAddr,
    path: &str,
    accept: impl Fn(&str) -> bool,
    timeout: Duration,
) -> anyhow::Result<(Instant, String)> {
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + timeout;
    let mut next = start;
    loop {
        let now = Instant::now();
        if now >= deadline {
            bail!("{addr}{path} did not serve within {timeout:?}");
        }
        if now >= next {
            next += POLL;
            if in_flight.load(Ordering::SeqCst) < MAX_IN_FLIGHT {
                in_flight.fetch_add(1, Ordering::SeqCst);
                let (tx, in_flight, path) = (tx.clone(), Arc::clone(&in_flight), path.to_string());
                std::thread::spawn(move || {
                    if let Ok((200, body)) = get(addr, &path) {
                        // The receiver is gone once an earlier probe won: nothing to do.
                        let _ = tx.send((Instant::now(), body));
                    }
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
        let wait = next.saturating_duration_since(Instant::now());
        if let Ok((at, body)) = rx.recv_timeout(wait)
            && accept(&body)
        {
            return Ok((at, body));
        }
    }
}
