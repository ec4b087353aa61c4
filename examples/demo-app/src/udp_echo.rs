//! The `udp-echo` role: answers each datagram with the container's host name, so that a
//! client can tell which replica behind a shared UDP port answered.

use std::io;
use std::net::UdpSocket;

#[derive(Debug)]
pub struct Config {
    pub port: u16,
}

pub fn run(config: &Config) -> io::Result<()> {
    let socket = UdpSocket::bind(("0.0.0.0", config.port))?;
    let name = crate::web::hostname();
    eprintln!("udp-echo: {name} answering on udp port {}", config.port);
    serve(&socket, &name)
}

/// Answers every datagram on `socket` with `name`; returns only on a receive error.
pub fn serve(socket: &UdpSocket, name: &str) -> io::Result<()> {
    let mut buffer = [0u8; 2048];
    loop {
        let (_, peer) = socket.recv_from(&mut buffer)?;
        // A lost answer is the client's to retry, as with any UDP service.
        if let Err(error) = socket.send_to(name.as_bytes(), peer) {
            eprintln!("udp-echo: answer to {peer} failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_datagram_is_answered_with_the_name() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        std::thread::spawn(move || serve(&server, "replica-1"));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buffer = [0u8; 64];
        for message in ["one", "two"] {
            client.send_to(message.as_bytes(), addr).unwrap();
            let (len, from) = client.recv_from(&mut buffer).unwrap();
            assert_eq!(from, addr);
            assert_eq!(&buffer[..len], b"replica-1");
        }
    }
}
