//! The `web` role: a small HTTP/1.1 server, one thread per connection, with keep-alive.
//!
//! | route          | answer                                                              |
//! |----------------|---------------------------------------------------------------------|
//! | `GET /`        | host name, version, and the `hits` and `ticks` counters from kv     |
//! | `GET /healthz` | 200 once ready and (with `--db`) the kv store answers; 503 before   |
//! | `GET /version` | the `APP_VERSION` environment variable                              |
//! | `/crash`       | answers, then exits with status 1 (GET or POST)                     |
//! | `/make-unhealthy` | answers; from then on `/healthz` is 503 while `/` still serves   |
//! | `GET /ws`      | a WebSocket that echoes every message (426 without the upgrade)     |

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{kv, net, ws};

const MAX_LINE: usize = 8 * 1024;
const MAX_HEADERS: usize = 100;
/// Bodies are read and thrown away, so only small ones are accepted.
const MAX_BODY: usize = 64 * 1024;
/// How long an idle keep-alive connection (and its thread) is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const KV_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Config {
    pub port: u16,
    /// The kv store's `host:port`, if this instance counts hits.
    pub db: Option<String>,
    pub version: String,
    /// `/healthz` reports "starting" for this long after start.
    pub ready_after: Duration,
}

pub fn run(config: Config) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", config.port))?;
    let app = App::new(config, hostname());
    eprintln!(
        "web: {} version {} listening on port {}, kv: {}",
        app.hostname,
        app.config.version,
        app.config.port,
        app.config.db.as_deref().unwrap_or("none")
    );
    serve(listener, Arc::new(app));
    Ok(())
}

/// Serves clients of `listener` forever, one thread per connection.
pub fn serve(listener: TcpListener, app: Arc<App>) {
    net::serve_forever(listener, "web", move |stream| {
        serve_connection(stream, &app)
    });
}

/// The container's host name, which Docker also puts in `HOSTNAME` (by default the container
/// id's prefix): it tells replicas apart on the index page.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[derive(Debug)]
pub struct App {
    config: Config,
    hostname: String,
    started: Instant,
    /// Set by `/make-unhealthy`: the process keeps serving but fails its health check, the
    /// case that only an orchestrator watching health notices (a hung dependency, a leak).
    unhealthy: AtomicBool,
}

impl App {
    pub fn new(config: Config, hostname: String) -> App {
        App {
            config,
            hostname,
            started: Instant::now(),
            unhealthy: AtomicBool::new(false),
        }
    }

    fn respond(&self, request: &Request) -> Response {
        let allowed: &[&str] = match request.path.as_str() {
            "/crash" | "/make-unhealthy" => &["GET", "HEAD", "POST"],
            _ => &["GET", "HEAD"],
        };
        if !allowed.contains(&request.method.as_str()) {
            let mut response = Response::text(405, "method not allowed\n");
            response.allow = Some(allowed.join(", "));
            return response;
        }
        match request.path.as_str() {
            "/" => self.index(),
            "/healthz" => self.health(),
            "/version" => Response::text(200, format!("{}\n", self.config.version)),
            "/crash" => Response {
                crash: true,
                ..Response::text(200, "crashing\n")
            },
            "/make-unhealthy" => {
                self.unhealthy.store(true, Ordering::Relaxed);
                Response::text(200, "unhealthy from now on\n")
            }
            // An upgrade never gets here (see `serve_connection`).
            "/ws" => Response::text(426, "a WebSocket upgrade is expected here\n"),
            _ => Response::text(404, "not found\n"),
        }
    }

    fn index(&self) -> Response {
        let mut page = format!(
            "Composure demo\nhost: {}\nversion: {}\n",
            self.hostname, self.config.version
        );
        let Some(db) = &self.config.db else {
            page.push_str("kv: not configured\n");
            return Response::text(200, page);
        };
        let counters = kv::Client::connect(db, KV_TIMEOUT).and_then(|mut client| {
            let hits = client.incr("hits")?;
            let ticks = client.get("ticks")?;
            Ok((hits, ticks))
        });
        match counters {
            Ok((hits, ticks)) => {
                let ticks = ticks.unwrap_or_else(|| "0".to_owned());
                page.push_str(&format!("hits: {hits}\nworker ticks: {ticks}\n"));
                Response::text(200, page)
            }
            Err(error) => Response::text(503, format!("kv at {db} unavailable: {error}\n")),
        }
    }

    fn health(&self) -> Response {
        if self.unhealthy.load(Ordering::Relaxed) {
            return Response::text(503, "unhealthy (requested)\n");
        }
        if self.started.elapsed() < self.config.ready_after {
            return Response::text(503, "starting\n");
        }
        if let Some(db) = &self.config.db {
            let ping = kv::Client::connect(db, KV_TIMEOUT).and_then(|mut client| client.ping());
            if let Err(error) = ping {
                return Response::text(503, format!("kv at {db} unavailable: {error}\n"));
            }
        }
        Response::text(200, "ok\n")
    }
}

fn serve_connection(stream: TcpStream, app: &App) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(RequestError::Io(error)) => return Err(error),
            Err(RequestError::Invalid(status, message)) => {
                let response = Response::text(status, format!("{message}\n"));
                return response.write_to(&mut writer, false, false);
            }
        };
        if let (Some(key), "/ws", "GET") = (
            &request.websocket_key,
            request.path.as_str(),
            request.method.as_str(),
        ) {
            eprintln!("web: GET /ws -> 101");
            let buffered = reader.buffer().to_vec();
            return ws::echo(writer, buffered, key);
        }
        let response = app.respond(&request);
        if request.path != "/healthz" || response.status != 200 {
            eprintln!(
                "web: {} {} -> {}",
                request.method, request.path, response.status
            );
        }
        let keep_alive = request.keep_alive && !response.crash;
        response.write_to(&mut writer, keep_alive, request.method == "HEAD")?;
        if response.crash {
            eprintln!("web: crash requested, exiting with status 1");
            std::process::exit(1);
        }
        if !keep_alive {
            return Ok(());
        }
    }
}

#[derive(Debug, PartialEq)]
struct Request {
    method: String,
    /// The request target without its query string.
    path: String,
    keep_alive: bool,
    /// `Sec-WebSocket-Key` of a request to upgrade to a WebSocket.
    websocket_key: Option<String>,
}

#[derive(Debug)]
enum RequestError {
    /// The client sent something we do not serve: answer with this status, then close.
    Invalid(u16, &'static str),
    Io(io::Error),
}

impl From<io::Error> for RequestError {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::InvalidData => RequestError::Invalid(400, "malformed request"),
            _ => RequestError::Io(error),
        }
    }
}

/// Reads one request, discarding its body. `Ok(None)` when the client closed the connection
/// between requests.
fn read_request(reader: &mut impl BufRead) -> Result<Option<Request>, RequestError> {
    let mut line = String::new();
    // Clients may send an empty line before a request (RFC 9112, section 2.2).
    loop {
        if !net::read_line(reader, &mut line, MAX_LINE)? {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut request = parse_request_line(&line)?;
    let mut content_length = 0;
    let (mut upgrade, mut websocket_key) = (false, None);
    for _ in 0..=MAX_HEADERS {
        if !net::read_line(reader, &mut line, MAX_LINE)? {
            return Err(RequestError::Invalid(400, "incomplete request"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            discard_body(reader, content_length)?;
            if upgrade {
                request.websocket_key = websocket_key;
            }
            return Ok(Some(request));
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(RequestError::Invalid(400, "malformed header"));
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "connection" => {
                for option in value.split(',').map(str::trim) {
                    if option.eq_ignore_ascii_case("close") {
                        request.keep_alive = false;
                    } else if option.eq_ignore_ascii_case("keep-alive") {
                        request.keep_alive = true;
                    }
                }
            }
            "upgrade" => upgrade = value.eq_ignore_ascii_case("websocket"),
            "sec-websocket-key" => websocket_key = Some(value.to_owned()),
            "content-length" => {
                content_length = value
                    .parse()
                    .map_err(|_| RequestError::Invalid(400, "malformed content-length"))?;
            }
            "transfer-encoding" => {
                return Err(RequestError::Invalid(
                    501,
                    "transfer-encoding not supported",
                ));
            }
            _ => {}
        }
    }
    Err(RequestError::Invalid(431, "too many headers"))
}

fn parse_request_line(line: &str) -> Result<Request, RequestError> {
    let parts: Vec<&str> = line.split_whitespace().collect();
    let [method, target, version] = parts[..] else {
        return Err(RequestError::Invalid(400, "malformed request line"));
    };
    // HTTP/1.1 keeps connections open unless told otherwise; HTTP/1.0 closes them.
    let keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(RequestError::Invalid(505, "HTTP version not supported")),
    };
    let path = target.split('?').next().unwrap_or(target);
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        keep_alive,
        websocket_key: None,
    })
}

fn discard_body(reader: &mut impl BufRead, length: usize) -> Result<(), RequestError> {
    if length > MAX_BODY {
        return Err(RequestError::Invalid(413, "request body too large"));
    }
    let read = io::copy(&mut reader.by_ref().take(length as u64), &mut io::sink())?;
    if read < length as u64 {
        return Err(RequestError::Invalid(400, "incomplete body"));
    }
    Ok(())
}

#[derive(Debug)]
struct Response {
    status: u16,
    body: String,
    /// Value of the `Allow` header of a 405 answer.
    allow: Option<String>,
    /// Exit the process once this response is sent.
    crash: bool,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            body: body.into(),
            allow: None,
            crash: false,
        }
    }

    fn write_to(&self, out: &mut impl Write, keep_alive: bool, head_only: bool) -> io::Result<()> {
        let mut message = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
             Connection: {}\r\n",
            self.status,
            reason(self.status),
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        if let Some(allow) = &self.allow {
            message.push_str(&format!("Allow: {allow}\r\n"));
        }
        message.push_str("\r\n");
        if !head_only {
            message.push_str(&self.body);
        }
        out.write_all(message.as_bytes())?;
        out.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn parse(text: &str) -> Result<Option<Request>, RequestError> {
        read_request(&mut io::Cursor::new(text))
    }

    fn request(method: &str, path: &str) -> Request {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            keep_alive: true,
            websocket_key: None,
        }
    }

    fn config(db: Option<String>, ready_after: Duration) -> Config {
        Config {
            port: 0,
            db,
            version: "1.2.3".to_owned(),
            ready_after,
        }
    }

    fn app(db: Option<String>) -> App {
        App::new(config(db, Duration::ZERO), "host-a".to_owned())
    }

    fn invalid_status(text: &str) -> u16 {
        match parse(text) {
            Err(RequestError::Invalid(status, _)) => status,
            other => panic!("expected an invalid request, got {other:?}"),
        }
    }

    /// An address where nothing listens.
    fn closed_port() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    #[test]
    fn http_1_1_keeps_the_connection_unless_told_to_close() {
        let kept = parse("GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(kept, Some(request("GET", "/healthz")));
        let closed = parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!closed.keep_alive);
    }

    #[test]
    fn http_1_0_closes_the_connection_unless_asked_to_keep_it() {
        let closed = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!closed.keep_alive);
        let kept = parse("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(kept.keep_alive);
    }

    #[test]
    fn a_body_is_skipped_so_the_next_request_can_be_read() {
        let mut input = io::Cursor::new(
            "\r\nPOST /crash HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
             GET /version HTTP/1.1\r\n\r\n",
        );
        assert_eq!(
            read_request(&mut input).unwrap(),
            Some(request("POST", "/crash"))
        );
        assert_eq!(
            read_request(&mut input).unwrap(),
            Some(request("GET", "/version"))
        );
        assert_eq!(read_request(&mut input).unwrap(), None);
    }

    #[test]
    fn requests_we_do_not_serve_get_an_error_status() {
        assert_eq!(invalid_status("GET /\r\n\r\n"), 400);
        assert_eq!(invalid_status("GET / HTTP/2\r\n\r\n"), 505);
        assert_eq!(invalid_status("GET / HTTP/1.1\r\nno colon\r\n\r\n"), 400);
        assert_eq!(
            invalid_status("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            400
        );
        assert_eq!(
            invalid_status("POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            413
        );
        assert_eq!(
            invalid_status("POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc"),
            400
        );
        assert_eq!(
            invalid_status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        assert_eq!(invalid_status("GET / HTTP/1.1\r\nHost: a"), 400);
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_LINE));
        assert_eq!(invalid_status(&long_line), 400);
        let many_headers = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(invalid_status(&many_headers), 431);
    }

    #[test]
    fn routes_answer_with_their_status() {
        let app = app(None);
        let index = app.respond(&request("GET", "/"));
        assert_eq!(index.status, 200);
        assert!(index.body.contains("host: host-a\n"), "{}", index.body);
        assert!(index.body.contains("kv: not configured"), "{}", index.body);
        assert_eq!(app.respond(&request("GET", "/version")).body, "1.2.3\n");
        assert_eq!(app.respond(&request("GET", "/healthz")).status, 200);
        assert_eq!(app.respond(&request("GET", "/nope")).status, 404);
        let crash = app.respond(&request("POST", "/crash"));
        assert!(crash.crash);
        assert_eq!(crash.status, 200);
        assert!(!app.respond(&request("GET", "/")).crash);
    }

    #[test]
    fn other_methods_are_refused_with_the_allowed_ones() {
        let refused = app(None).respond(&request("DELETE", "/"));
        assert_eq!(refused.status, 405);
        assert_eq!(refused.allow.as_deref(), Some("GET, HEAD"));
    }

    #[test]
    fn health_waits_for_the_ready_delay() {
        let app = App::new(config(None, Duration::from_secs(3600)), "h".into());
        let health = app.respond(&request("GET", "/healthz"));
        assert_eq!((health.status, health.body.as_str()), (503, "starting\n"));
    }

    #[test]
    fn make_unhealthy_fails_health_for_good_but_keeps_serving() {
        let app = app(None);
        assert_eq!(app.respond(&request("GET", "/healthz")).status, 200);
        let answer = app.respond(&request("POST", "/make-unhealthy"));
        assert_eq!(answer.status, 200);
        assert!(!answer.crash);
        for _ in 0..2 {
            let health = app.respond(&request("GET", "/healthz"));
            assert_eq!(
                (health.status, health.body.as_str()),
                (503, "unhealthy (requested)\n")
            );
        }
        assert_eq!(app.respond(&request("GET", "/")).status, 200);
    }

    #[test]
    fn health_and_index_fail_while_the_kv_store_is_unreachable() {
        let app = app(Some(closed_port()));
        assert_eq!(app.respond(&request("GET", "/healthz")).status, 503);
        assert_eq!(app.respond(&request("GET", "/")).status, 503);
    }

    #[test]
    fn the_index_counts_hits_in_the_kv_store() {
        let (addr, _dir) = kv::testing::start_server("web-hits");
        let app = app(Some(addr));
        assert_eq!(app.respond(&request("GET", "/healthz")).status, 200);
        let first = app.respond(&request("GET", "/"));
        assert!(
            first.body.contains("hits: 1\nworker ticks: 0\n"),
            "{}",
            first.body
        );
        let second = app.respond(&request("GET", "/"));
        assert!(second.body.contains("hits: 2\n"), "{}", second.body);
    }

    #[test]
    fn ws_echoes_messages_and_refuses_a_plain_request() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || serve(listener, Arc::new(app(None))));

        let stream = net::connect(&addr, Duration::from_secs(5)).unwrap();
        let (mut socket, _) =
            tungstenite::client(format!("ws://{addr}/ws").as_str(), stream).unwrap();
        for text in ["one", "two"] {
            socket.send(tungstenite::Message::text(text)).unwrap();
            assert_eq!(socket.read().unwrap().into_text().unwrap().as_str(), text);
        }
        socket.close(None).unwrap();

        assert_eq!(app(None).respond(&request("GET", "/ws")).status, 426);
    }

    #[test]
    fn one_connection_carries_several_requests() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || serve(listener, Arc::new(app(None))));

        let mut stream = net::connect(&addr, Duration::from_secs(5)).unwrap();
        stream
            .write_all(b"GET /version HTTP/1.1\r\n\r\nHEAD /healthz HTTP/1.1\r\n\r\n")
            .unwrap();
        stream
            .write_all(b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answers = String::new();
        stream.read_to_string(&mut answers).unwrap();
        let statuses: Vec<&str> = answers
            .lines()
            .filter(|line| line.starts_with("HTTP/1.1"))
            .collect();
        assert_eq!(
            statuses,
            [
                "HTTP/1.1 200 OK",
                "HTTP/1.1 200 OK",
                "HTTP/1.1 404 Not Found"
            ]
        );
        assert!(answers.contains("\r\n\r\n1.2.3\n"), "{answers}");
        assert!(
            answers.ends_with("Connection: close\r\n\r\nnot found\n"),
            "{answers}"
        );
        assert!(
            !answers.contains("ok\n"),
            "HEAD answers carry no body: {answers}"
        );
    }
}
