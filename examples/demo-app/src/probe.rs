//! The `probe` role: a health-check command for images without curl or a shell.
//!
//! `probe http://HOST[:PORT][/PATH]` succeeds on a 2xx or 3xx answer; `probe tcp HOST:PORT`
//! succeeds when the port accepts a connection.

use std::io::{BufReader, Write};
use std::time::Duration;

use crate::args::UsageError;
use crate::net;

#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Http {
        /// `host:port`, the port defaulted to 80.
        addr: String,
        /// `Host` header value: the authority as written in the URL.
        host: String,
        path: String,
    },
    Tcp {
        addr: String,
    },
}

impl Target {
    pub fn parse(positional: &[String]) -> Result<Target, UsageError> {
        match positional {
            [kind, addr] if kind == "tcp" => Ok(Target::Tcp { addr: addr.clone() }),
            [url] => parse_http_url(url),
            _ => Err(UsageError(
                "probe needs http://HOST[:PORT][/PATH] or tcp HOST:PORT".to_owned(),
            )),
        }
    }
}

fn parse_http_url(url: &str) -> Result<Target, UsageError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| UsageError(format!("{url:?}: only http:// URLs can be probed")))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(UsageError(format!("{url:?} has no host")));
    }
    let has_port =
        matches!(authority.rsplit_once(':'), Some((_, port)) if port.parse::<u16>().is_ok());
    let addr = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok(Target::Http {
        addr,
        host: authority.to_owned(),
        path: path.to_owned(),
    })
}

/// Probes `target`, giving up after `timeout` per network step. Returns what answered.
pub fn check(target: &Target, timeout: Duration) -> Result<String, String> {
    match target {
        Target::Tcp { addr } => net::connect(addr, timeout)
            .map(|_| format!("{addr} accepts connections"))
            .map_err(|error| format!("{addr}: {error}")),
        Target::Http { addr, host, path } => {
            let status = http_status(addr, host, path, timeout)
                .map_err(|error| format!("http://{host}{path}: {error}"))?;
            let answer = format!("http://{host}{path} answered {status}");
            if (200..400).contains(&status) {
                Ok(answer)
            } else {
                Err(answer)
            }
        }
    }
}

fn http_status(addr: &str, host: &str, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let mut stream = net::connect(addr, timeout)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: demo-app-probe\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut status_line = String::new();
    net::read_line(&mut BufReader::new(stream), &mut status_line, 1024)?;
    // "HTTP/1.1 200 OK"
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {status_line:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Read};
    use std::net::TcpListener;
    use std::thread;

    fn target(args: &[&str]) -> Result<Target, UsageError> {
        Target::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    fn http(addr: &str, host: &str, path: &str) -> Target {
        Target::Http {
            addr: addr.into(),
            host: host.into(),
            path: path.into(),
        }
    }

    /// A one-shot HTTP server that answers the first request with `status_line`.
    fn answer_once(status_line: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request_line = String::new();
            BufReader::new(stream.try_clone().unwrap())
                .read_line(&mut request_line)
                .unwrap();
            assert_eq!(request_line, "GET /healthz HTTP/1.1\r\n");
            write!(stream, "{status_line}\r\nContent-Length: 0\r\n\r\n").unwrap();
            let _ = stream.read(&mut [0; 1]);
        });
        addr
    }

    #[test]
    fn urls_and_tcp_addresses_are_parsed() {
        assert_eq!(
            target(&["http://127.0.0.1:8080/healthz"]).unwrap(),
            http("127.0.0.1:8080", "127.0.0.1:8080", "/healthz")
        );
        assert_eq!(target(&["http://web"]).unwrap(), http("web:80", "web", "/"));
        assert_eq!(
            target(&["http://[::1]/x?y"]).unwrap(),
            http("[::1]:80", "[::1]", "/x?y")
        );
        assert_eq!(
            target(&["tcp", "kv:6379"]).unwrap(),
            Target::Tcp {
                addr: "kv:6379".into()
            }
        );
    }

    #[test]
    fn other_targets_are_usage_errors() {
        assert!(target(&[]).is_err());
        assert!(target(&["https://web/"]).is_err());
        assert!(target(&["http:///healthz"]).is_err());
        assert!(target(&["udp", "kv:1"]).is_err());
    }

    #[test]
    fn a_success_status_passes_and_an_error_status_fails() {
        let timeout = Duration::from_secs(5);
        let ok = answer_once("HTTP/1.1 200 OK");
        let target = http(&ok, &ok, "/healthz");
        assert!(check(&target, timeout).unwrap().ends_with("answered 200"));
        let unavailable = answer_once("HTTP/1.1 503 Service Unavailable");
        let target = http(&unavailable, &unavailable, "/healthz");
        assert!(
            check(&target, timeout)
                .unwrap_err()
                .ends_with("answered 503")
        );
    }

    #[test]
    fn tcp_probes_need_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let timeout = Duration::from_secs(5);
        assert!(check(&Target::Tcp { addr: addr.clone() }, timeout).is_ok());
        drop(listener);
        assert!(check(&Target::Tcp { addr: addr.clone() }, timeout).is_err());
        assert!(check(&http(&addr, &addr, "/"), timeout).is_err());
    }
}
