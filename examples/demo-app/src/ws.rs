//! `GET /ws`: a WebSocket that sends every text and binary message back. It shows a
//! long-lived connection through a proxy: it stays open while other services are updated.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;

use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

/// How long an idle WebSocket (and its thread) is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The `Sec-WebSocket-Accept` answer to a client's `Sec-WebSocket-Key` (RFC 6455, 4.2.2).
pub fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.trim().as_bytes())
}

/// Switches `stream` to the WebSocket protocol (the upgrade request was read, with `key`;
/// `buffered` is what the reader took past it) and echoes messages until the client closes.
pub fn echo(mut stream: TcpStream, buffered: Vec<u8>, key: &str) -> io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )?;
    stream.flush()?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut socket = WebSocket::from_partially_read(stream, buffered, Role::Server, None);
    loop {
        match socket.read() {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                socket.send(message).map_err(io::Error::other)?;
            }
            // Pings are answered and a close is acknowledged by the next read.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_)) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(());
            }
            Err(tungstenite::Error::Io(error)) => return Err(error),
            Err(error) => return Err(io::Error::other(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
