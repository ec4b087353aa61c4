//! Networking shared by the roles: a thread-per-connection accept loop, outgoing connections
//! with deadlines, bounded line reads.

use std::io::{self, BufRead, Read};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Connects to `addr` (`host:port`), trying each address the name resolves to, and sets
/// `timeout` as the read and write timeout of the stream. The name is resolved on every call
/// because a restarted service may come back at another address.
pub fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last_error = None;
    for resolved in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&resolved, timeout) {
            Ok(stream) => {
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                return Ok(stream);
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolves to no address"),
        )
    }))
}

/// Reads one line of at most `max` bytes (newline included) into `line`, so that a peer
/// cannot make us buffer without bound. Returns `Ok(false)` at the end of the stream.
pub fn read_line(reader: &mut impl BufRead, line: &mut String, max: usize) -> io::Result<bool> {
    line.clear();
    let read = reader.by_ref().take(max as u64).read_line(line)?;
    if read == max && !line.ends_with('\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(read > 0)
}

/// Accepts connections on `listener` forever and runs `handle` on each, in its own thread.
/// Failed connections are logged under the `role` name.
pub fn serve_forever<H>(listener: TcpListener, role: &'static str, handle: H)
where
    H: Fn(TcpStream) -> io::Result<()> + Send + Sync + 'static,
{
    let handle = Arc::new(handle);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let handle = Arc::clone(&handle);
                thread::spawn(move || {
                    if let Err(error) = handle(stream)
                        && !is_idle_timeout(&error)
                    {
                        eprintln!("{role}: connection failed: {error}");
                    }
                });
            }
            Err(error) => {
                eprintln!("{role}: accept failed: {error}");
                // Out of file descriptors, most likely: give connections time to close.
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Whether `error` is a read timeout: the normal end of an idle connection, not worth a log line.
fn is_idle_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn lines_are_read_one_at_a_time_up_to_the_limit() {
        let mut input = io::Cursor::new("short\nmuch too long\n");
        let mut line = String::new();
        assert!(read_line(&mut input, &mut line, 8).unwrap());
        assert_eq!(line, "short\n");
        let error = read_line(&mut input, &mut line, 8).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn end_of_stream_is_not_an_error() {
        let mut line = String::new();
        assert!(!read_line(&mut io::Cursor::new(""), &mut line, 8).unwrap());
    }

    #[test]
    fn connect_reaches_a_listener_and_reports_a_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert!(connect(&open, Duration::from_secs(2)).is_ok());
        drop(listener);
        assert!(connect(&open, Duration::from_secs(2)).is_err());
    }
}
