//! Serve one file over NBD with cinderblock's own server, until SIGINT/SIGTERM. Used by
//! `bench/nbd_bench.sh` and handy for poking at the server with nbdinfo/qemu-io by hand.
//!
//! ```text
//! cargo run --release --example nbd_serve -- FILE [--unix PATH] [--tcp ADDR] [--name NAME] [--readonly]
//!                                            [--also NAME=FILE]... [--tls-dir DIR]
//! ```
//!
//! `--tls-dir` requires TLS on the TCP listener (forced STARTTLS) with `DIR/server-cert.pem` and
//! `DIR/server-key.pem` (nbdkit's `--tls-certificates` layout), client certificates optional
//! against `DIR/ca-cert.pem` when it exists.
//!
//! `--also` serves more exports beside the first (the siege bench gives each attacking
//! "tenant" its own).
//!
//! Prints one line `nbd_serve ready` on stdout once every listener is bound. The export name
//! defaults to the empty string (the protocol's "default export"), so URIs like
//! `nbd+unix:///?socket=PATH` work.

use std::net::SocketAddr;
use std::path::PathBuf;

use cinderblock::export::nbd::{NbdConfig, NbdServer};

fn usage() -> ! {
    eprintln!("usage: nbd_serve FILE [--unix PATH] [--tcp ADDR] [--name NAME] [--readonly] [--also NAME=FILE]... [--tls-dir DIR]");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();

    let mut args = std::env::args().skip(1);
    let mut file: Option<PathBuf> = None;
    let mut unix: Option<PathBuf> = None;
    let mut tcp: Option<SocketAddr> = None;
    let mut name = String::new();
    let mut readonly = false;
    let mut also: Vec<(String, PathBuf)> = Vec::new();
    let mut tls_dir: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--unix" => unix = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--tcp" => tcp = Some(args.next().unwrap_or_else(|| usage()).parse().unwrap_or_else(|_| usage())),
            "--name" => name = args.next().unwrap_or_else(|| usage()),
            "--readonly" => readonly = true,
            "--tls-dir" => tls_dir = Some(args.next().unwrap_or_else(|| usage()).into()),
            "--also" => {
                let v = args.next().unwrap_or_else(|| usage());
                let (n, f) = v.split_once('=').unwrap_or_else(|| usage());
                also.push((n.to_string(), f.into()));
            }
            s if s.starts_with('-') => usage(),
            s => file = Some(s.into()),
        }
    }
    let Some(file) = file else { usage() };
    if unix.is_none() && tcp.is_none() {
        tcp = Some("127.0.0.1:10809".parse().expect("default address"));
    }

    let tls = tls_dir.map(|d| {
        let (cert, key, ca) = (d.join("server-cert.pem"), d.join("server-key.pem"), d.join("ca-cert.pem"));
        let files = cinderblock::tls::ServerFiles {
            cert: &cert,
            key: &key,
            client_ca: ca.exists().then_some(ca.as_path()),
            require_client_cert: false,
        };
        cinderblock::tls::server_config(&files, &[]).unwrap_or_else(|e| {
            eprintln!("nbd_serve: {e}");
            std::process::exit(1)
        })
    });
    let server = NbdServer::new(NbdConfig { tls, ..NbdConfig::default() });
    for (name, file) in std::iter::once((name, file)).chain(also) {
        if let Err(e) = server.add_export(name, file, readonly) {
            eprintln!("nbd_serve: {e}");
            std::process::exit(1);
        }
    }
    if let Some(p) = &unix {
        server.listen_unix(p).await.unwrap_or_else(|e| {
            eprintln!("nbd_serve: listen on {}: {e}", p.display());
            std::process::exit(1)
        });
    }
    if let Some(a) = tcp {
        let bound = server.listen_tcp(a).await.unwrap_or_else(|e| {
            eprintln!("nbd_serve: listen on {a}: {e}");
            std::process::exit(1)
        });
        eprintln!("nbd_serve: tcp {bound}");
    }
    println!("nbd_serve ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server.shutdown().await;
}
