//! The export manager: turns attachments into live exports (an NBD export per attachment, or a
//! loop device) and back, and re-creates them at start.
//!
//! NBD has no authentication, so the export name is the credential: each attachment gets
//! `<volume id>-<128 random bits>`, given only in the answer to the call that exported it
//! (`os-initialize_connection`, attachment update). The attachment row keeps the name's
//! SHA-256 (`data.export_digest`), never the name: the server is keyed by that digest, so a
//! restart re-registers the export and the client reconnects with the name it has, while
//! nobody who can read the database or the attachment can.
//!
//! Invariants: an NBD export exists per attachment whose connection info carries an
//! `export_digest`; a loop device exists per attachment with `local` connection info; at start,
//! every exported attachment is exported again (loop devices are adopted by backing file when
//! they survived) and loop devices backed by one of our volume files with no attachment are
//! detached.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::config::{ExportsConfig, Transport};
use crate::error::{Error, ErrorKind, Result};
use crate::export::loopdev::{self, AttachOptions, LoopDevice};
use crate::export::nbd::NbdServer;
use crate::model::Attachment;

/// Live exports of this node.
pub struct ExportManager {
    nbd: NbdServer,
    nbd_addr: SocketAddr,
    nbd_host: String,
    unix_socket: Option<PathBuf>,
    default_transport: Transport,
    /// Loop devices by attachment id.
    loops: Mutex<HashMap<String, LoopDevice>>,
    /// `(directory, pool)`: an export whose file is under the directory counts in that pool's
    /// NBD statistics.
    pool_dirs: Vec<(PathBuf, String)>,
}

impl std::fmt::Debug for ExportManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportManager").field("nbd_addr", &self.nbd_addr).finish()
    }
}

/// What a consumer asked for and what we need to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Volume id (the NBD export name).
    pub volume_id: String,
    /// The volume's file.
    pub path: PathBuf,
    /// Export read-only.
    pub readonly: bool,
    /// NBD or loop.
    pub transport: Transport,
    /// The consumer's host (the connector's `host`): a TLS client certificate opens the NBD
    /// export only if it is valid for this name.
    pub client: Option<String>,
}

/// What an export gives: the connection info for the caller (with the secret export name) and
/// the connection info the attachment row keeps (with its digest instead).
#[derive(Debug, Clone)]
pub struct Exported {
    /// For the response of the call that exported.
    pub info: Value,
    /// For the attachment row.
    pub stored: Value,
}

/// A new unguessable NBD export name for a volume.
fn secret_export_name(volume_id: &str) -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| Error::internal(format!("random: {e}")))?;
    let secret: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{volume_id}-{secret}"))
}

/// Whether a volume's export path is a block device (an LV), which is attached as itself.
fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

fn export_error(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Invalid, format!("cannot export the volume: {e}")).with_code("EVS.5400")
}

impl ExportManager {
    /// Start the NBD listeners described by `cfg`.
    pub async fn start(cfg: &ExportsConfig, nbd: NbdServer) -> Result<ExportManager> {
        let nbd_addr = nbd
            .listen_tcp(cfg.nbd_listen)
            .await
            .map_err(|e| Error::internal(format!("cannot listen for NBD on {}: {e}", cfg.nbd_listen)))?;
        if let Some(sock) = &cfg.nbd_unix_socket {
            nbd.listen_unix(sock)
                .await
                .map_err(|e| Error::internal(format!("cannot listen for NBD on {}: {e}", sock.display())))?;
        }
        tracing::info!(%nbd_addr, unix = ?cfg.nbd_unix_socket, "NBD server listening");
        Ok(ExportManager {
            nbd,
            nbd_addr,
            nbd_host: cfg.nbd_host.clone().unwrap_or_else(|| nbd_addr.ip().to_string()),
            unix_socket: cfg.nbd_unix_socket.clone(),
            default_transport: cfg.default_transport,
            loops: Mutex::new(HashMap::new()),
            pool_dirs: Vec::new(),
        })
    }

    /// Name the pools whose exports' NBD traffic is counted per pool (`(directory, pool)`).
    pub fn with_pool_dirs(mut self, pool_dirs: Vec<(PathBuf, String)>) -> ExportManager {
        self.pool_dirs = pool_dirs;
        self
    }

    /// NBD statistics by pool (exports outside every pool directory count under `""`).
    pub fn nbd_stats(&self) -> Vec<crate::export::nbd::GroupStats> {
        self.nbd.group_stats()
    }

    /// Loop devices attached now.
    pub fn loop_count(&self) -> usize {
        self.loops.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The bound NBD TCP address.
    pub fn nbd_addr(&self) -> SocketAddr {
        self.nbd_addr
    }

    /// The transport a connector asks for (`cinderblock_transport`), else the default.
    pub fn transport_for(&self, connector: &Value) -> Result<Transport> {
        match connector.get("cinderblock_transport").and_then(Value::as_str) {
            None => Ok(self.default_transport),
            Some("nbd") => Ok(Transport::Nbd),
            Some("loop") | Some("local") => Ok(Transport::Loop),
            Some(other) => Err(Error::invalid("EVS.5400", format!("unknown cinderblock_transport {other:?}"))),
        }
    }

    /// Export for attachment `attachment_id`: a new secret NBD name (see the module docs) or a
    /// loop device; returns Cinder-shaped connection info for the caller and for the row.
    pub async fn export(&self, attachment_id: &str, req: &ExportRequest) -> Result<Exported> {
        let access_mode = if req.readonly { "ro" } else { "rw" };
        match req.transport {
            Transport::Nbd => {
                let name = secret_export_name(&req.volume_id)?;
                let digest = crate::export::nbd::export_digest(&name);
                self.add_nbd(&digest, req).await?;
                let mut data = json!({
                    "host": self.nbd_host,
                    "port": self.nbd_addr.port(),
                    "access_mode": access_mode,
                });
                if self.nbd.tls_required() {
                    // The TCP port speaks NBD only after STARTTLS (x509): say so, so a client
                    // does not try plaintext and get refused.
                    data["tls"] = json!(true);
                }
                if let Some(s) = &self.unix_socket {
                    data["unix_socket"] = json!(s.display().to_string());
                }
                let mut stored = json!({"driver_volume_type": "nbd", "data": data.clone()});
                stored["data"]["export_digest"] = json!(digest);
                if let Some(c) = &req.client {
                    stored["data"]["tls_client"] = json!(c);
                }
                data["export_name"] = json!(name);
                Ok(Exported { info: json!({"driver_volume_type": "nbd", "data": data}), stored })
            }
            Transport::Loop if is_block_device(&req.path) => {
                // The volume is a block device already (an LV): hand it over, no loop device.
                let info = json!({
                    "driver_volume_type": "local",
                    "data": {"device_path": req.path.display().to_string(), "access_mode": access_mode},
                });
                Ok(Exported { info: info.clone(), stored: info })
            }
            Transport::Loop => {
                let dev = self.attach_loop(attachment_id, &req.path, req.readonly).await?;
                let info = json!({
                    "driver_volume_type": "local",
                    "data": {"device_path": dev.path().display().to_string(), "access_mode": access_mode},
                });
                Ok(Exported { info: info.clone(), stored: info })
            }
        }
    }

    async fn add_nbd(&self, digest: &str, req: &ExportRequest) -> Result<()> {
        let nbd = self.nbd.clone();
        let (digest, display, path, ro) = (digest.to_string(), req.volume_id.clone(), req.path.clone(), req.readonly);
        let client = req.client.clone();
        let group =
            self.pool_dirs.iter().find(|(d, _)| path.starts_with(d)).map(|(_, p)| p.clone()).unwrap_or_default();
        tokio::task::spawn_blocking(move || nbd.add_bound_export_digest(digest, display, &group, path, ro, client))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(export_error)
    }

    async fn attach_loop(&self, attachment_id: &str, path: &Path, readonly: bool) -> Result<LoopDevice> {
        if let Some(dev) = self.loops.lock().unwrap_or_else(|e| e.into_inner()).get(attachment_id) {
            return Ok(*dev);
        }
        let p = path.to_path_buf();
        let attached = tokio::task::spawn_blocking(move || {
            loopdev::attach(&p, AttachOptions { readonly, ..AttachOptions::default() })
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(export_error)?;
        tracing::info!(attachment = attachment_id, device = %attached.device.path().display(), "loop device attached");
        self.loops.lock().unwrap_or_else(|e| e.into_inner()).insert(attachment_id.to_string(), attached.device);
        Ok(attached.device)
    }

    /// The NBD export digest an attachment's stored connection info carries (none for loop
    /// devices and for exports made before names were secret).
    pub fn nbd_digest(attachment: &Attachment) -> Option<String> {
        let info: Value = serde_json::from_str(attachment.connection_info.as_deref()?).ok()?;
        info["data"]["export_digest"].as_str().map(str::to_string)
    }

    /// Remove the export of `attachment`. `volume_still_on_nbd` matters only for exports made
    /// before export names were secret (named by the volume id, shared by its attachments).
    pub async fn unexport(&self, attachment: &Attachment, volume_still_on_nbd: bool) -> Result<()> {
        let Some(info) = attachment.connection_info.as_deref() else { return Ok(()) };
        let info: Value = serde_json::from_str(info).unwrap_or(Value::Null);
        match info.get("driver_volume_type").and_then(Value::as_str) {
            Some("nbd") => match Self::nbd_digest(attachment) {
                Some(d) => {
                    self.nbd.remove_export_digest(&d).await;
                }
                None if !volume_still_on_nbd => {
                    self.nbd.remove_export(&attachment.volume_id).await;
                }
                None => {}
            },
            Some("local") => {
                let dev = self.loops.lock().unwrap_or_else(|e| e.into_inner()).remove(&attachment.id);
                if let Some(dev) = dev {
                    tokio::task::spawn_blocking(move || loopdev::detach(dev))
                        .await
                        .map_err(|e| Error::internal(e.to_string()))?
                        .map_err(|e| Error::internal(format!("detaching the loop device: {e}")))?;
                    tracing::info!(attachment = %attachment.id, "loop device detached");
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Tell the exports of `attachments` (of one volume) that its file grew.
    pub async fn refresh_size(&self, attachments: &[Attachment]) {
        for a in attachments {
            let dev = self.loops.lock().unwrap_or_else(|e| e.into_inner()).get(&a.id).copied();
            if let Some(dev) = dev {
                match tokio::task::spawn_blocking(move || loopdev::set_capacity(dev)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(attachment = %a.id, error = %e, "LOOP_SET_CAPACITY failed"),
                    Err(e) => tracing::warn!(attachment = %a.id, error = %e, "LOOP_SET_CAPACITY task failed"),
                }
            }
        }
    }

    /// Re-create the exports of `attachments` (each with the path of its volume) after a
    /// restart; returns the attachments whose connection info changed (a new loop device).
    /// Loop devices backed by a file under one of `volume_dirs` that no attachment owns are
    /// detached.
    pub async fn restore(
        &self,
        attachments: &[(Attachment, PathBuf, bool)],
        volume_dirs: &[PathBuf],
    ) -> Vec<(String, Value)> {
        let mut changed = Vec::new();
        let mut owned: Vec<PathBuf> = Vec::new();
        for (a, path, readonly) in attachments {
            let info: Value =
                a.connection_info.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or(Value::Null);
            match info.get("driver_volume_type").and_then(Value::as_str) {
                Some("nbd") => {
                    let req = ExportRequest {
                        volume_id: a.volume_id.clone(),
                        path: path.clone(),
                        readonly: *readonly,
                        transport: Transport::Nbd,
                        client: info["data"]["tls_client"].as_str().map(str::to_string),
                    };
                    let Some(digest) = info["data"]["export_digest"].as_str() else {
                        // Exported before names were secret: its name was the volume id, which
                        // anyone could guess. Not re-exported; the consumer connects again.
                        tracing::warn!(attachment = %a.id, "not restoring an NBD export named by its volume id; initialize the connection again");
                        continue;
                    };
                    if let Err(e) = self.add_nbd(digest, &req).await {
                        tracing::error!(attachment = %a.id, error = %e, "could not re-export over NBD");
                    }
                }
                Some("local") if is_block_device(path) => {}
                Some("local") => {
                    let wanted = info["data"]["device_path"].as_str().and_then(|p| LoopDevice::from_path(Path::new(p)));
                    let adopted = wanted
                        .filter(|d| d.backing_file().as_deref() == Some(path.as_path()))
                        .or_else(|| loopdev::find_by_backing_file(path).ok().and_then(|v| v.into_iter().next()));
                    let dev = match adopted {
                        Some(d) => {
                            self.loops.lock().unwrap_or_else(|e| e.into_inner()).insert(a.id.clone(), d);
                            d
                        }
                        None => match self.attach_loop(&a.id, path, *readonly).await {
                            Ok(d) => d,
                            Err(e) => {
                                tracing::error!(attachment = %a.id, error = %e, "could not re-attach a loop device");
                                continue;
                            }
                        },
                    };
                    owned.push(path.clone());
                    let dev_path = dev.path().display().to_string();
                    if info["data"]["device_path"].as_str() != Some(dev_path.as_str()) {
                        let mut new_info = info.clone();
                        new_info["data"]["device_path"] = json!(dev_path);
                        changed.push((a.id.clone(), new_info));
                    }
                }
                _ => {}
            }
        }
        if let Ok(all) = loopdev::list_attached() {
            for (dev, backing) in all {
                let ours = volume_dirs.iter().any(|d| backing.starts_with(d));
                let used = self.loops.lock().unwrap_or_else(|e| e.into_inner()).values().any(|d| *d == dev);
                if ours && !used && !owned.contains(&backing) {
                    tracing::warn!(device = %dev.path().display(), file = %backing.display(), "detaching a loop device no attachment owns");
                    let _ = tokio::task::spawn_blocking(move || loopdev::detach(dev)).await;
                }
            }
        }
        changed
    }

    /// qos: set the I/O limits of the NBD export whose name has `digest` (no-op if gone).
    pub fn set_qos(&self, digest: &str, limits: crate::export::nbd::QosLimits) {
        self.nbd.set_export_qos_digest(digest, limits);
    }

    /// Hold new writes to the NBD exports of `volume_ids` and flush them (see
    /// [`NbdServer::quiesce`]) until the guard drops. Loop-device exports are not held: the
    /// kernel writes to those files directly, so a group snapshot of loop-attached volumes is
    /// consistent per volume only.
    pub async fn quiesce(&self, volume_ids: &[String]) -> Result<crate::export::nbd::QuiesceGuard> {
        self.nbd
            .quiesce(volume_ids, std::time::Duration::from_secs(30))
            .await
            .map_err(|e| Error::internal(format!("could not quiesce the exports: {e}")))
    }

    /// Live exports: NBD exports plus loop devices.
    pub fn count(&self) -> usize {
        self.nbd.list().len() + self.loops.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Stop the NBD server (graceful).
    pub async fn shutdown(&self) {
        self.nbd.shutdown().await;
    }
}
