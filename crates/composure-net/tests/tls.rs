//! TLS termination on the HTTP proxy, with a certificate made in the test.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use composure_net::{HttpProxy, Router, TlsFiles, UpstreamConfig};
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
    let made = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
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
        .connect(ServerName::try_from("app.test").unwrap(), tcp)
        .await
        .unwrap()
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
