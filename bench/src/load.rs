//! Continuous HTTP load on a published port from two kinds of clients, each request's end
//! recorded: keep-alive clients (one connection reused, as browsers and HTTP client
//! libraries do) and clients that open a new connection per request. From the record: how
//! many requests failed, and how long the longest outage lasted.
//!
//! A keep-alive client whose reused connection turns out closed before any byte of the
//! answer came back sends the request again on a new connection once, as HTTP clients do
//! for idempotent requests (RFC 9112, 9.3.1); that is a reconnect, not a failure. Every
//! request is bounded by timeouts, and every client stops when told or after
//! [`MAX_RUN`], whichever comes first.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a client runs, whatever happens to the one who started it.
const MAX_RUN: Duration = Duration::from_secs(300);
const MAX_HEADER_LINES: usize = 64;

/// How a client talks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    KeepAlive,
    NewConnection,
}

impl ClientKind {
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::KeepAlive => "keep-alive",
            ClientKind::NewConnection => "new connection per request",
        }
    }
}

/// One request's end.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    /// How long the request took, from sending to its end.
    pub took: Duration,
    /// The answer's body on a 200; why it failed otherwise.
    pub outcome: Result<String, String>,
}

/// What one client saw.
#[derive(Clone, Debug)]
pub struct ClientRecord {
    pub kind: ClientKind,
    pub samples: Vec<Sample>,
    /// Requests sent again on a new connection after the reused one was found closed.
    pub reconnects: usize,
}

/// Clients running in the background until [`Load::stop`].
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<ClientRecord>>,
}

impl Load {
    /// Starts `per_kind` clients of each kind sending `GET path` to `addr`, each one request
    /// every `pace` at most, each giving up on a request after 2 s without a byte.
    pub fn start(addr: SocketAddr, path: &str, per_kind: usize, pace: Duration) -> Load {
        Load::start_patient(addr, path, per_kind, pace, IO_TIMEOUT)
    }

    /// Like [`Load::start`], with clients that wait up to `patience` for each read.
    pub fn start_patient(
        addr: SocketAddr,
        path: &str,
        per_kind: usize,
        pace: Duration,
        patience: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = [ClientKind::KeepAlive, ClientKind::NewConnection]
            .into_iter()
            .flat_map(|kind| std::iter::repeat_n(kind, per_kind))
            .map(|kind| {
                let (stop, path) = (Arc::clone(&stop), path.to_string());
                std::thread::spawn(move || run_client(kind, addr, &path, pace, patience, &stop))
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the clients; what each saw.
    pub fn stop(self) -> Vec<ClientRecord> {
        self.stop.store(true, Ordering::SeqCst);
        self.clients
            .into_iter()
            .filter_map(|client| client.join().ok())
            .collect()
    }
}

fn run_client(
    kind: ClientKind,
    addr: SocketAddr,
    path: &str,
    pace: Duration,
    patience: Duration,
    stop: &AtomicBool,
) -> ClientRecord {
    let mut record = ClientRecord {
        kind,
        samples: Vec::new(),
        reconnects: 0,
    };
    let started = Instant::now();
    let mut connection: Option<Connection> = None;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_RUN {
        let sent = Instant::now();
        let outcome = match kind {
            ClientKind::NewConnection => Connection::open(addr, patience)
                .and_then(|mut c| c.get(path, false).map(|(_, body)| body)),
            ClientKind::KeepAlive => {
                keep_alive_get(&mut connection, addr, path, patience, &mut record)
            }
        };
        if outcome.is_err() {
            connection = None;
        }
        record.samples.push(Sample {
            at: Instant::now(),
            took: sent.elapsed(),
            outcome: outcome.map_err(|e| e.to_string()),
        });
        std::thread::sleep(pace.saturating_sub(sent.elapsed()));
    }
    record
}

/// A GET on the kept connection (opened first if there is none); sent again on a new one
/// if the kept one was closed before any byte of the answer came.
fn keep_alive_get(
    connection: &mut Option<Connection>,
    addr: SocketAddr,
    path: &str,
    patience: Duration,
    record: &mut ClientRecord,
) -> std::io::Result<String> {
    if let Some(kept) = connection.as_mut() {
        match kept.get(path, true) {
            Ok((keep, body)) => {
                if !keep {
                    *connection = None;
                }
                return Ok(body);
            }
            Err(_) if kept.answered_nothing => record.reconnects += 1,
            Err(error) => return Err(error),
        }
    }
    let mut fresh = Connection::open(addr, patience)?;
    let (keep, body) = fresh.get(path, true)?;
    *connection = keep.then_some(fresh);
    Ok(body)
}

/// One HTTP/1.1 connection.
struct Connection {
    reader: BufReader<TcpStream>,
    /// Whether the last request failed before any byte of its answer arrived.
    answered_nothing: bool,
}

impl Connection {
    fn open(addr: SocketAddr, patience: Duration) -> std::io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(patience))?;
        stream.set_write_timeout(Some(patience))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            reader: BufReader::new(stream),
            answered_nothing: false,
        })
    }

    /// `GET path`: whether the server keeps the connection open, and the body of a 200.
    fn get(&mut self, path: &str, keep_alive: bool) -> std::io::Result<(bool, String)> {
        self.answered_nothing = true;
        let connection = if keep_alive { "keep-alive" } else { "close" };
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n\r\n"
        )?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before an answer",
            ));
        }
        self.answered_nothing = false;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {line:?}")))?;
        let (mut length, mut keep) = (None, keep_alive);
        for _ in 0..MAX_HEADER_LINES {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("connection") {
                    keep &= !value.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = Vec::new();
        match length {
            Some(length) => {
                body.resize(length, 0);
                self.reader.read_exact(&mut body)?;
            }
            None => {
                self.reader.read_to_end(&mut body)?;
                keep = false;
            }
        }
        let body = String::from_utf8_lossy(&body).trim().to_string();
        if status != 200 {
            return Err(std::io::Error::other(format!("HTTP {status}: {body}")));
        }
        Ok((keep, body))
    }
}

/// What a set of clients saw between two moments.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub requests: usize,
    pub failed: usize,
    pub reconnects: usize,
    /// The longest stretch without a successful answer that has a failed request in it:
    /// from the last success before a failure to the first success after it.
    pub outage: Duration,
    /// The longest stretch between two successful answers, failures or not.
    pub max_gap: Duration,
    /// The longest a request took, answered or not.
    pub slowest: Duration,
    /// A few of the failures, in words, for the report.
    pub failure_examples: Vec<String>,
}

/// Tallies the samples of `records` that ended within `from..=until`, over all the
/// clients together: an outage is a stretch in which no client got an answer.
pub fn tally<'a>(
    records: impl IntoIterator<Item = &'a ClientRecord>,
    from: Instant,
    until: Instant,
) -> Tally {
    let mut samples: Vec<&Sample> = Vec::new();
    let mut reconnects = 0;
    for record in records {
        reconnects += record.reconnects;
        samples.extend(
            record
                .samples
                .iter()
                .filter(|s| (from..=until).contains(&s.at)),
        );
    }
    samples.sort_by_key(|s| s.at);
    let mut tally = Tally {
        requests: samples.len(),
        reconnects,
        ..Tally::default()
    };
    let mut last_success = from;
    let mut failed_since_success = false;
    for sample in samples {
        tally.slowest = tally.slowest.max(sample.took);
        match &sample.outcome {
            Ok(_) => {
                let gap = sample.at.duration_since(last_success);
                tally.max_gap = tally.max_gap.max(gap);
                if failed_since_success {
                    tally.outage = tally.outage.max(gap);
                }
                last_success = sample.at;
                failed_since_success = false;
            }
            Err(reason) => {
                tally.failed += 1;
                failed_since_success = true;
                if tally.failure_examples.len() < 3 && !tally.failure_examples.contains(reason) {
                    tally.failure_examples.push(reason.clone());
                }
            }
        }
    }
    if failed_since_success {
        tally.outage = tally.outage.max(until.duration_since(last_success));
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: ClientKind, start: Instant, outcomes: &[(u64, bool)]) -> ClientRecord {
        ClientRecord {
            kind,
            samples: outcomes
                .iter()
                .map(|&(ms, ok)| Sample {
                    at: start + Duration::from_millis(ms),
                    took: Duration::from_millis(1),
                    outcome: if ok {
                        Ok("v1".into())
                    } else {
                        Err("refused".into())
                    },
                })
                .collect(),
            reconnects: 1,
        }
    }

    #[test]
    fn an_outage_is_a_stretch_without_success_that_has_a_failure_in_it() {
        let t0 = Instant::now();
        let a = record(
            ClientKind::KeepAlive,
            t0,
            &[(10, true), (20, true), (120, true), (130, true)],
        );
        let b = record(
            ClientKind::NewConnection,
            t0,
            &[
                (15, true),
                (300, false),
                (310, false),
                (700, true),
                (710, true),
            ],
        );
        let t = tally([&a, &b], t0, t0 + Duration::from_secs(1));
        assert_eq!((t.requests, t.failed, t.reconnects), (9, 2, 2));
        assert_eq!(t.outage, Duration::from_millis(570), "130 → 700");
        assert_eq!(t.max_gap, Duration::from_millis(570));
        assert_eq!(t.failure_examples, ["refused"]);

        let quiet = tally([&a], t0, t0 + Duration::from_secs(1));
        assert_eq!(quiet.outage, Duration::ZERO, "a slow stretch is no outage");
        assert_eq!(quiet.max_gap, Duration::from_millis(100));
    }
}
