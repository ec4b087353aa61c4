//! Continuous HTTP load on a published port, from outside: keep-alive clients (one
//! connection, reused for every request) and clients that open a new connection per
//! request. Every answer is counted; any error or non-200 answer is a failure. Bounded:
//! each client stops when told, or after 20,000 requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const MAX_REQUESTS: usize = 20_000;
const PACE: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    KeepAlive,
    NewConnection,
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub answers: usize,
    /// Each failure, in words.
    pub failures: Vec<String>,
    /// The distinct bodies of the answers (`/version`: the versions that served).
    pub bodies: std::collections::BTreeSet<String>,
    /// Connections opened (a keep-alive client opens a new one only after the server
    /// closed the last).
    pub connections: usize,
}

/// Clients sending `GET path` in the background until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<(Client, JoinHandle<Seen>)>,
}

impl Load {
    /// `per_kind` clients of each kind.
    pub fn start(port: u16, path: &str, per_kind: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for kind in [Client::KeepAlive, Client::NewConnection] {
            for _ in 0..per_kind {
                let (stop, path) = (stop.clone(), path.to_string());
                clients.push((
                    kind,
                    std::thread::spawn(move || run(kind, port, &path, &stop)),
                ));
            }
        }
        Load { stop, clients }
    }

    /// Stops the clients; what each kind saw, all its clients together.
    pub fn stop(self) -> Vec<(Client, Seen)> {
        self.stop.store(true, Ordering::SeqCst);
        let mut by_kind: Vec<(Client, Seen)> = Vec::new();
        for (kind, handle) in self.clients {
            let seen = handle.join().expect("a load client panicked");
            match by_kind.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, total)) => {
                    total.answers += seen.answers;
                    total.failures.extend(seen.failures);
                    total.bodies.extend(seen.bodies);
                    total.connections += seen.connections;
                }
                None => by_kind.push((kind, seen)),
            }
        }
        by_kind
    }
}

fn run(kind: Client, port: u16, path: &str, stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let mut kept: Option<BufReader<TcpStream>> = None;
    for _ in 0..MAX_REQUESTS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let keep_alive = kind == Client::KeepAlive;
        let connection = match kept.take() {
            Some(connection) => Ok(connection),
            None => {
                seen.connections += 1;
                connect(port)
            }
        };
        match connection.and_then(|mut c| get(&mut c, path, keep_alive).map(|a| (c, a))) {
            Ok((connection, (body, open))) => {
                seen.answers += 1;
                seen.bodies.insert(body);
                if keep_alive && open {
                    kept = Some(connection);
                }
            }
            Err(error) => seen.failures.push(error.to_string()),
        }
        std::thread::sleep(PACE);
    }
    seen
}

fn connect(port: u16) -> std::io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// One request: the body of a 200 answer, and whether the server keeps the connection.
fn get(
    connection: &mut BufReader<TcpStream>,
    path: &str,
    keep_alive: bool,
) -> std::io::Result<(String, bool)> {
    let header = if keep_alive { "keep-alive" } else { "close" };
    write!(
        connection.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {header}\r\n\r\n"
    )?;
    let mut line = String::new();
    if connection.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before an answer",
        ));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let (mut length, mut open) = (None, keep_alive);
    loop {
        line.clear();
        if connection.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                open &= !value.trim().eq_ignore_ascii_case("close");
            }
        }
    }
    let length = length.ok_or_else(|| {
        std::io::Error::other(format!("answer without a length (status {status:?})"))
    })?;
    let mut body = vec![0; length];
    connection.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).trim().to_string();
    if status != "200" {
        return Err(std::io::Error::other(format!("HTTP {status}: {body}")));
    }
    Ok((body, open))
}
