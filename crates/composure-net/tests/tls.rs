//! TLS termination on the HTTP proxy, with a certificate made in the test.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use composure_net::{HostCertificate, HttpProxy, Router, TlsFiles, UpstreamConfig};
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

struct Certificate {
    _dir: tempfile::TempDir,
    files: TlsFiles,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn certificate(host: &str) -> Certificate {
    certificate_for(&[host])
}

fn certificate_for(names: &[&str]) -> Certificate {
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.cert, made.cert.pem()).unwrap();
    std::fs::write(&files.key, made.signing_key.serialize_pem()).unwrap();
    Certificate {
        _dir: dir,
        files,
        der: made.cert.der().clone(),
    }
}

async fn connect(proxy: SocketAddr, cert: &Certificate, alpn: &[u8]) -> TlsStream<TcpStream> {
    connect_as(proxy, cert, "app.test", alpn).await.unwrap()
}

/// A TLS connection to `proxy` asking for `name`, trusting `cert` only.
async fn connect_as(
    proxy: SocketAddr,
    cert: &Certificate,
    name: &str,
    alpn: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(proxy).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
}

#[tokio::test]
async fn https_is_terminated_and_forwarded_as_http() {
    let a = HttpBackend::start("a").await;
    let (_tx, up) = upstream("web", vec![a.endpoint()], UpstreamConfig::default());
    let cert = certificate("app.test");
    let proxy = HttpProxy::bind("127.0.0.1:0".parse().unwrap(), Router::single(up))
        .await
        .unwrap()
        .with_tls(&cert.files)
        .unwrap();
    let addr = proxy.local_addr();
    tokio::spawn(proxy.serve(std::future::pending()));

    // HTTP/1.1 over TLS.
    let stream = connect(addr, &cert, b"http/1.1").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = Request::get("/")
            .header("host", "app.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"a");
    }
    let seen = a.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["x-forwarded-host"], "app.test");

    // HTTP/2, chosen by ALPN.
    let stream = connect(addr, &cert, b"h2").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://app.test/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_certificate_files_are_refused() {
    let (_tx, up) = upstream("web", vec![], UpstreamConfig::default());
    let cert = certificate("app.test");
    let swapped = TlsFiles {
        cert: cert.files.key.clone(),
        key: cert.files.cert.clone(),
    };
    let proxy = HttpProxy::bind("127.0.0.1:0".parse().unwrap(), Router::single(up))
        .await
        .unwrap();
    let err = proxy.with_tls(&swapped).unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn the_certificate_is_picked_by_the_server_name() {
    let (_tx, up) = upstream("web", vec![], UpstreamConfig::default());
    let exact = certificate("app.test");
    let wildcard = certificate("*.shop.test");
    let fallback = certificate_for(&["fallback.test", "other.test"]);
    let by_host = |host: Option<&str>, cert: &Certificate| HostCertificate {
        host: host.map(str::to_string),
        files: cert.files.clone(),
    };
    let proxy = HttpProxy::bind("127.0.0.1:0".parse().unwrap(), Router::single(up.clone()))
        .await
        .unwrap()
        .with_certificates(&[
            by_host(None, &fallback),
            by_host(Some("*.shop.test"), &wildcard),
            by_host(Some("app.test"), &exact),
        ])
        .unwrap();
    let addr = proxy.local_addr();
    tokio::spawn(proxy.serve(std::future::pending()));
    // Each client trusts only the certificate it should get: a wrong one fails the handshake.
    for (name, cert) in [
        ("app.test", &exact),
        ("www.shop.test", &wildcard),
        ("other.test", &fallback),
    ] {
        let stream = connect_as(addr, cert, name, b"http/1.1").await;
        let stream = stream.unwrap_or_else(|e| panic!("{name}: {e}"));
        let presented = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(presented, cert.der, "{name}");
    }

    // Without a default certificate, a name no host matches gets no handshake.
    let proxy = HttpProxy::bind("127.0.0.1:0".parse().unwrap(), Router::single(up))
        .await
        .unwrap()
        .with_certificates(&[by_host(Some("app.test"), &exact)])
        .unwrap();
    let addr = proxy.local_addr();
    tokio::spawn(proxy.serve(std::future::pending()));
    assert!(
        connect_as(addr, &fallback, "other.test", b"http/1.1")
            .await
            .is_err()
    );
    assert!(
        connect_as(addr, &exact, "app.test", b"http/1.1")
            .await
            .is_ok()
    );
}
