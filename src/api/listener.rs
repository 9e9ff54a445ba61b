//! The HTTP listener: accepts connections and serves the router on each, with the limits a
//! public daemon needs (issue 17.6) that `axum::serve` does not offer:
//! - at most `http.max_connections` connections at once; one more is answered `503` with a JSON
//!   body and `Retry-After`, and closed, instead of waiting in the kernel's backlog or taking
//!   descriptors until the daemon can no longer open files;
//! - `http.header_read_timeout_seconds` for a request's headers, which also bounds how long a
//!   kept-alive connection may sit idle between requests (hyper starts the timer whenever the
//!   connection waits for a new request);
//! - bodies are read by [`super::buffer_body`] within `http.body_read_timeout_seconds`.
//!
//! With `[tls]` the same loop serves HTTPS: the connection cap is taken before the TLS
//! handshake (a client that never finishes one still holds only its slot, and for at most
//! `http.header_read_timeout_seconds`), and the request limits apply inside TLS unchanged.
//!
//! Each connection gets the peer address as `ConnectInfo` (login throttling keys on it). On
//! shutdown the listener stops accepting and open connections finish their current request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::HttpConfig;

/// How long connections may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The answer to a connection over the cap: what any HTTP client reads as "try again".
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
Connection: close\r\nContent-Length: 86\r\n\r\n\
{\"computeFault\": {\"code\": 503, \"message\": \"Too many connections; retry in a moment.\"}}";

/// Answer a connection over the cap with [`BUSY`] and close it gracefully.
///
/// The answer follows the request's head: an HTTP client that receives a response before it
/// has sent its request treats it as a protocol error (hyper reports `UnexpectedMessage`), not
/// as "try again". After the answer and our FIN the client's remaining bytes are drained, as
/// nginx's lingering close does, because closing with unread bytes makes the kernel send a
/// reset that can reach the client before the 503 does. Every step is bounded in time and
/// bytes, so a refused client holds nothing for long.
async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    const LINGER: Duration = Duration::from_secs(2);
    const MAX_READ: usize = 64 * 1024;
    let mut buf = [0u8; 4096];
    let mut head: Vec<u8> = Vec::new();
    let _ = tokio::time::timeout(LINGER, async {
        while head.len() < MAX_READ && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if tokio::time::timeout(LINGER, stream.write_all(BUSY)).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut drained = 0;
        while drained < MAX_READ {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// Serve `app` on `listener` until `shutdown` completes; over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: &HttpConfig,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let handshake_timeout = Duration::from_secs(cfg.header_read_timeout_seconds);
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1.1 only (every OpenStack and Huawei client speaks it): hyper's version detection
    // for HTTP/2 would wait for a first byte with no timeout, so a silent connection would be
    // held for ever.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_read_timeout_seconds))
        .keep_alive(true);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; the cap normally keeps
                    // us from getting here.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: http.max_connections reached");
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = tower::ServiceExt::map_request(app.clone(), move |req: hyper::Request<hyper::body::Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req
        });
        if let Some(acceptor) = &tls {
            let (acceptor, builder, watcher) = (acceptor.clone(), builder.clone(), graceful.watcher());
            tokio::spawn(async move {
                let _permit = permit;
                let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
            continue;
        }
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("some HTTP connections did not finish within the shutdown grace period");
    }
}
