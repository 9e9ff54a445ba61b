//! A throwaway PKI for TLS tests, made with the `openssl` CLI: a CA, a server certificate for
//! `localhost` / `127.0.0.1`, and client certificates for named hosts. Each client gets a
//! directory in the layout GnuTLS users expect (`ca-cert.pem`, `client-cert.pem`,
//! `client-key.pem`: libnbd's `tls-certificates=`, qemu's `tls-creds-x509,dir=`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of one test PKI (removed with the temp dir).
pub struct Pki {
    _dir: tempfile::TempDir,
    /// Where everything is.
    pub root: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    /// A CA and a server certificate (`server-cert.pem`, `server-key.pem`).
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        openssl(
            &root,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca-cert.pem",
                "-days",
                "2",
                "-subj",
                "/CN=cinderblock test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let pki = Pki { _dir: dir, root };
        pki.leaf("server", "localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth");
        pki
    }

    fn leaf(&self, name: &str, cn: &str, san: &str, usage: &str) {
        let ext = self.root.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\nsubjectAltName={san}\n"
            ),
        )
        .expect("write ext");
        let (key, csr, cert) = (format!("{name}-key.pem"), format!("{name}.csr"), format!("{name}-cert.pem"));
        openssl(
            &self.root,
            &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={cn}")],
        );
        openssl(
            &self.root,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca-cert.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }

    /// The server certificate chain.
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server-cert.pem")
    }

    /// The server key.
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server-key.pem")
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.root.join("ca-cert.pem")
    }

    /// A directory with the CA and a client certificate valid for `host`.
    pub fn client_dir(&self, host: &str) -> PathBuf {
        let name = format!("client-{host}");
        self.leaf(&name, host, &format!("DNS:{host}"), "clientAuth");
        let d = self.root.join(host);
        std::fs::create_dir_all(&d).expect("client dir");
        std::fs::copy(self.ca(), d.join("ca-cert.pem")).expect("copy ca");
        std::fs::copy(self.root.join(format!("{name}-cert.pem")), d.join("client-cert.pem")).expect("copy cert");
        std::fs::copy(self.root.join(format!("{name}-key.pem")), d.join("client-key.pem")).expect("copy key");
        d
    }

    /// A directory with only the CA (a client without a certificate).
    pub fn anonymous_dir(&self) -> PathBuf {
        let d = self.root.join("anonymous");
        std::fs::create_dir_all(&d).expect("dir");
        std::fs::copy(self.ca(), d.join("ca-cert.pem")).expect("copy ca");
        d
    }
}
