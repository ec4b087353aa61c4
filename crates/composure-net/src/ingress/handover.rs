//! Listening sockets handed from a running ingress to the one replacing it, so that a
//! published port never closes during an upgrade (the way HAProxy and Envoy restart).
//!
//! The running ingress listens on a Unix socket in its directory ([`SOCKET`]). A new one
//! connects, receives every listening socket it serves (a descriptor of the same kernel
//! socket, with its queue of connections not yet accepted), starts serving them, and says
//! `ok`; only then does the old one stop accepting and drain what it has in flight. Until
//! the `ok` both accept from the same queue, which is harmless; if the new one dies first,
//! the old one goes on as if nothing happened.
//!
//! `SOCK_SEQPACKET` keeps each message (a batch of socket names and their descriptors)
//! whole. The blocking exchange runs on a thread of its own: it happens once per upgrade.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use tokio_util::sync::CancellationToken;

use crate::config::Transport;
use crate::socket::BoundSocket;

/// The Unix socket a running ingress hands its sockets over on.
pub const SOCKET: &str = "handover.sock";
/// Descriptors per message (the kernel takes at most 253 in one).
const BATCH: usize = 64;
/// The most bytes one message's names take.
const MESSAGE: usize = 16 * 1024;
/// How long either side waits for the other before giving up on a handover.
const PATIENCE: Duration = Duration::from_secs(10);
const OK: &[u8] = b"ok";

/// What a listening socket is: the key both sides agree on.
pub type SocketKey = (Transport, SocketAddr);

/// The sockets a process serves, shared with its handover thread.
#[derive(Clone, Debug, Default)]
pub struct Shared(Arc<Mutex<HashMap<SocketKey, OwnedFd>>>);

impl Shared {
    /// Offers a descriptor of the socket `key` to a successor.
    pub fn insert_fd(&self, key: SocketKey, fd: OwnedFd) {
        self.lock().insert(key, fd);
    }

    /// Another descriptor of the socket `key`, if it is served.
    pub fn duplicate(&self, key: &SocketKey) -> Option<std::io::Result<OwnedFd>> {
        self.lock().get(key).map(OwnedFd::try_clone)
    }

    pub fn remove(&self, key: &SocketKey) {
        self.lock().remove(key);
    }

    /// Closes this process's descriptors of every socket: once its listeners have stopped
    /// too, the sockets close (unless a successor holds them).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketKey, OwnedFd>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A predecessor that handed its sockets over and waits for the word that they are served.
#[derive(Debug)]
pub struct Predecessor(OwnedFd);

impl Predecessor {
    /// Tells the old ingress to stop accepting: the new one serves the sockets now.
    pub fn release(self) {
        if let Err(e) = rustix::net::send(&self.0, OK, SendFlags::NOSIGNAL) {
            tracing::warn!(error = %e, "cannot tell the old ingress to stop accepting");
        }
    }
}

/// Takes the sockets of the ingress serving `dir`, if one is there. `None` when none
/// answers (the first ingress, or one that died: its sockets died with it).
pub fn take(dir: &Path) -> Option<(HashMap<SocketKey, BoundSocket>, Predecessor)> {
    let path = dir.join(SOCKET);
    if !path.exists() {
        return None;
    }
    match receive(&path) {
        Ok((sockets, conn)) => {
            tracing::info!(sockets = sockets.len(), "took the listening sockets over");
            Some((sockets, Predecessor(conn)))
        }
        Err(e) => {
            tracing::info!(error = %e, "no ingress to take sockets over from");
            None
        }
    }
}

fn receive(path: &Path) -> std::io::Result<(HashMap<SocketKey, BoundSocket>, OwnedFd)> {
    let conn = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::sockopt::set_socket_timeout(
        &conn,
        rustix::net::sockopt::Timeout::Recv,
        Some(PATIENCE),
    )?;
    rustix::net::connect(&conn, &SocketAddrUnix::new(path)?)?;
    let mut sockets = HashMap::new();
    loop {
        let mut bytes = vec![0u8; MESSAGE];
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(BATCH))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &conn,
            &mut [IoSliceMut::new(&mut bytes)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if got.bytes == 0 {
            return Err(std::io::Error::other("the old ingress closed the handover"));
        }
        let keys: Vec<SocketKey> =
            serde_json::from_slice(&bytes[..got.bytes]).map_err(std::io::Error::other)?;
        if keys.is_empty() {
            return Ok((sockets, conn));
        }
        if keys.len() != fds.len() {
            return Err(std::io::Error::other(format!(
                "{} socket names came with {} descriptors",
                keys.len(),
                fds.len()
            )));
        }
        for (key, fd) in keys.into_iter().zip(fds) {
            sockets.insert(key, BoundSocket::from_fd(key.0, fd)?);
        }
    }
}

/// The handover socket a running ingress offers.
#[derive(Debug)]
pub struct Offer(Arc<OwnedFd>);

impl Offer {
    /// Stops offering: the thread waiting for a successor ends.
    pub fn close(self) {
        // Wakes the thread's `accept` (with an error), which ends it.
        let _ = rustix::net::shutdown(&*self.0, rustix::net::Shutdown::Both);
    }
}

/// Serves handovers of `shared`'s sockets on `dir/handover.sock` until one succeeds (then
/// cancels `handed_over`) or the offer is closed. Runs on a thread of its own.
pub fn serve(dir: &Path, shared: Shared, handed_over: CancellationToken) -> std::io::Result<Offer> {
    let path = dir.join(SOCKET);
    // A predecessor's socket file: it has handed over, or it is dead.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::bind(&listener, &SocketAddrUnix::new(&path)?)?;
    rustix::net::listen(&listener, 4)?;
    let listener = Arc::new(listener);
    let offer = Offer(listener.clone());
    let path: PathBuf = path;
    std::thread::Builder::new()
        .name("ingress-handover".into())
        .spawn(move || {
            loop {
                let conn = match rustix::net::accept_with(&*listener, SocketFlags::CLOEXEC) {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::debug!(error = %e, path = %path.display(), "no more handovers");
                        return;
                    }
                };
                match hand_over(&conn, &shared) {
                    Ok(()) => {
                        tracing::info!("a new ingress serves the sockets; stopping accepting");
                        handed_over.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "handover failed; serving on"),
                }
            }
        })?;
    Ok(offer)
}

fn hand_over(conn: &OwnedFd, shared: &Shared) -> std::io::Result<()> {
    rustix::net::sockopt::set_socket_timeout(
        conn,
        rustix::net::sockopt::Timeout::Recv,
        Some(PATIENCE),
    )?;
    {
        let sockets = shared.lock();
        let all: Vec<(&SocketKey, &OwnedFd)> = sockets.iter().collect();
        for batch in all.chunks(BATCH) {
            let keys: Vec<SocketKey> = batch.iter().map(|(k, _)| **k).collect();
            let fds: Vec<_> = batch.iter().map(|(_, fd)| fd.as_fd()).collect();
            send(conn, &keys, &fds)?;
        }
    }
    send(conn, &[], &[])?;
    let mut answer = [0u8; 8];
    let (got, _) = rustix::net::recv(conn, &mut answer[..], RecvFlags::empty())?;
    if &answer[..got] == OK {
        Ok(())
    } else {
        Err(std::io::Error::other(
            "the new ingress went away before serving",
        ))
    }
}

fn send(
    conn: &OwnedFd,
    keys: &[SocketKey],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(keys).map_err(std::io::Error::other)?;
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len().max(1)))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(std::io::Error::other(
            "too many descriptors for one message",
        ));
    }
    rustix::net::sendmsg(
        conn,
        &[IoSlice::new(&bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}
