//! The handshake: fixed newstyle negotiation up to `NBD_OPT_GO` / `NBD_OPT_EXPORT_NAME`.
//!
//! Every option gets its protocol answer (`ERR_UNSUP` for unknown ones, `ERR_INVALID` for
//! malformed ones, `ERR_POLICY` for STARTTLS on a plaintext listener); only framing violations
//! (bad magic, unknown client flags, an oversize payload, an unknown export named by
//! `EXPORT_NAME`) end the session, as the protocol prescribes. The caller bounds the whole
//! handshake with a timeout.
//!
//! Forced TLS (the protocol's FORCEDTLS mode) runs in two parts: [`before_tls`] answers every
//! option but `STARTTLS` and `ABORT` with `NBD_REP_ERR_TLS_REQD` and hangs up on
//! `EXPORT_NAME`; after the TLS handshake [`options`] starts from a fresh state (nothing said in
//! plaintext counts) and a second `STARTTLS` is `NBD_REP_ERR_INVALID`, as the spec says. With a
//! client certificate, only the exports bound to a name that certificate is valid for may be
//! chosen ([`ExportEntry::allows`]).

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::io;
use super::proto::{self, ClientOption, ProtoError, Session};
use super::server::{AttachError, ExportEntry, Registry, TrackGuard};

/// Options accepted in one handshake before the client is judged abusive and dropped.
const MAX_OPTIONS: usize = 4096;

/// A successful handshake: the export chosen and what was negotiated.
pub(crate) struct Negotiated {
    /// The export (holds the shared file descriptor).
    pub entry: Arc<ExportEntry>,
    /// Counts this connection as a user of the export until dropped.
    pub guard: TrackGuard,
    /// Becomes true when the export is removed.
    pub export_stop: watch::Receiver<bool>,
    /// Size, mode and negotiated features.
    pub session: Session,
}

/// How a handshake ended without error.
pub(crate) enum Outcome {
    /// Enter transmission.
    Transmission(Box<Negotiated>),
    /// The client sent `NBD_OPT_ABORT`.
    Aborted,
}

/// Why a handshake ended the session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NegotiateError {
    /// The socket failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client broke the framing.
    #[error("protocol violation: {0}")]
    Proto(#[from] ProtoError),
    /// `NBD_OPT_EXPORT_NAME` named an export we do not have (no error reply exists for it).
    #[error("NBD_OPT_EXPORT_NAME for unknown export {0:?}")]
    UnknownExport(String),
    /// The export already has its maximum of connections.
    #[error("export connection limit reached")]
    ExportFull,
    /// A forced-TLS listener got `NBD_OPT_EXPORT_NAME` before `STARTTLS` (no error reply exists).
    #[error("NBD_OPT_EXPORT_NAME before STARTTLS on a TLS-only listener")]
    TlsRequired,
    /// The client's certificate is not valid for the export it chose with `EXPORT_NAME`.
    #[error("client certificate not valid for export {0}")]
    CertificateRefused(String),
    /// The client sent bytes behind `NBD_OPT_STARTTLS` before our reply (plaintext that would
    /// otherwise be taken as part of the TLS session).
    #[error("data after NBD_OPT_STARTTLS before the TLS handshake")]
    PlaintextAfterStartTls,
    /// More than [`MAX_OPTIONS`] options.
    #[error("too many options")]
    TooManyOptions,
}

/// What the transport tells the option loop.
#[derive(Clone, Copy)]
pub(crate) enum Transport<'a> {
    /// A plaintext listener: `STARTTLS` is refused with `NBD_REP_ERR_POLICY`.
    Plain,
    /// Inside TLS; the client's certificate (DER) if it sent one.
    Tls(Option<&'a [u8]>),
}

/// Run the handshake on a fresh plaintext connection.
pub(crate) async fn negotiate<R, W>(rd: &mut R, wr: &mut W, registry: &Registry) -> Result<Outcome, NegotiateError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let client = greet(rd, wr).await?;
    options(rd, wr, registry, client, Transport::Plain).await
}

/// Send the greeting and read the client's flags.
pub(crate) async fn greet<R, W>(rd: &mut R, wr: &mut W) -> Result<proto::ClientFlags, NegotiateError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    wr.write_all(&proto::encode_greeting()).await?;
    wr.flush().await?;
    let mut flags = [0u8; 4];
    rd.read_exact(&mut flags).await?;
    Ok(proto::parse_client_flags(flags)?)
}

/// How the plaintext part of a forced-TLS handshake ended.
pub(crate) enum BeforeTls {
    /// `NBD_OPT_STARTTLS` was acknowledged: start the TLS handshake now.
    StartTls,
    /// The client sent `NBD_OPT_ABORT`.
    Aborted,
}

/// The plaintext options of a forced-TLS connection, after [`greet`]: everything but `STARTTLS`
/// and `ABORT` is answered `NBD_REP_ERR_TLS_REQD` (payloads are read and dropped, never parsed);
/// `EXPORT_NAME` has no error reply, so it ends the session.
pub(crate) async fn before_tls<R, W>(rd: &mut R, wr: &mut W) -> Result<BeforeTls, NegotiateError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = Vec::with_capacity(128);
    for _ in 0..MAX_OPTIONS {
        let mut hb = [0u8; proto::OPTION_HEADER_LEN];
        rd.read_exact(&mut hb).await?;
        let header = proto::parse_option_header(&hb)?;
        out.clear();
        if header.option == proto::OPT_EXPORT_NAME {
            return Err(NegotiateError::TlsRequired);
        }
        if let Err(e) = header.check_length() {
            proto::encode_option_error(&mut out, header.option, proto::REP_ERR_TOO_BIG, "option payload too large");
            let _ = send(wr, &out).await;
            return Err(e.into());
        }
        let mut data = vec![0u8; header.length as usize];
        rd.read_exact(&mut data).await?;
        match header.option {
            proto::OPT_STARTTLS if data.is_empty() => {
                proto::encode_option_reply(&mut out, header.option, proto::REP_ACK, &[]);
                send(wr, &out).await?;
                return Ok(BeforeTls::StartTls);
            }
            proto::OPT_STARTTLS => {
                proto::encode_option_error(
                    &mut out,
                    header.option,
                    proto::REP_ERR_INVALID,
                    "NBD_OPT_STARTTLS takes no payload",
                );
            }
            proto::OPT_ABORT => {
                proto::encode_option_reply(&mut out, header.option, proto::REP_ACK, &[]);
                let _ = send(wr, &out).await;
                return Ok(BeforeTls::Aborted);
            }
            opt => {
                proto::encode_option_error(
                    &mut out,
                    opt,
                    proto::REP_ERR_TLS_REQD,
                    "this server requires TLS: send NBD_OPT_STARTTLS first",
                );
            }
        }
        send(wr, &out).await?;
    }
    Err(NegotiateError::TooManyOptions)
}

/// The option loop, from the first option (plaintext) or the first one after the TLS
/// handshake (a fresh state: structured replies and metadata contexts must be negotiated again).
pub(crate) async fn options<R, W>(
    rd: &mut R,
    wr: &mut W,
    registry: &Registry,
    client: proto::ClientFlags,
    transport: Transport<'_>,
) -> Result<Outcome, NegotiateError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let peer_cert = match transport {
        Transport::Tls(c) => c,
        Transport::Plain => None,
    };
    let mut structured = false;
    // Export name and whether base:allocation was selected for it.
    let mut meta: Option<(String, bool)> = None;
    let mut out = Vec::with_capacity(256);

    for _ in 0..MAX_OPTIONS {
        let mut hb = [0u8; proto::OPTION_HEADER_LEN];
        rd.read_exact(&mut hb).await?;
        let header = proto::parse_option_header(&hb)?;
        out.clear();
        if let Err(e) = header.check_length() {
            // We will not read (and buffer) the payload, so the stream cannot be resynchronised:
            // say why, then hang up.
            if header.option != proto::OPT_EXPORT_NAME {
                proto::encode_option_error(&mut out, header.option, proto::REP_ERR_TOO_BIG, "option payload too large");
                let _ = wr.write_all(&out).await;
                let _ = wr.flush().await;
            }
            return Err(e.into());
        }
        let mut data = vec![0u8; header.length as usize];
        rd.read_exact(&mut data).await?;
        let opt = header.option;

        let parsed = match proto::parse_option(opt, &data) {
            Ok(p) => p,
            Err(ProtoError::Invalid(why)) if opt != proto::OPT_EXPORT_NAME => {
                proto::encode_option_error(&mut out, opt, proto::REP_ERR_INVALID, why);
                send(wr, &out).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };

        match parsed {
            ClientOption::ExportName(name) => {
                let Some(entry) = registry.get(&name) else {
                    return Err(NegotiateError::UnknownExport(name));
                };
                if !entry.allows(peer_cert) {
                    return Err(NegotiateError::CertificateRefused(entry.name.clone()));
                }
                let (guard, export_stop) = match entry.attach(registry.max_per_export) {
                    Ok(a) => a,
                    Err(AttachError::Gone) => return Err(NegotiateError::UnknownExport(name)),
                    // No error reply exists for EXPORT_NAME: hang up.
                    Err(AttachError::Full) => return Err(NegotiateError::ExportFull),
                };
                let size = io::size(&entry.file)?;
                let session = Session {
                    size,
                    readonly: entry.readonly,
                    structured,
                    base_allocation: structured && meta.as_ref().is_some_and(|(n, sel)| *sel && *n == name),
                };
                let tflags = proto::transmission_flags(entry.readonly, structured);
                proto::encode_export_name_reply(&mut out, size, tflags, client.no_zeroes);
                send(wr, &out).await?;
                return Ok(Outcome::Transmission(Box::new(Negotiated { entry, guard, export_stop, session })));
            }
            ClientOption::Abort => {
                proto::encode_option_reply(&mut out, opt, proto::REP_ACK, &[]);
                // The client may already have closed: its problem, not an error.
                let _ = send(wr, &out).await;
                return Ok(Outcome::Aborted);
            }
            ClientOption::List if !registry.allow_list => {
                // A listing would tell anyone who can connect which volumes exist.
                proto::encode_option_error(&mut out, opt, proto::REP_ERR_POLICY, "listing exports is not allowed");
            }
            ClientOption::List => {
                for name in registry.names() {
                    proto::encode_rep_server(&mut out, &name);
                }
                proto::encode_option_reply(&mut out, opt, proto::REP_ACK, &[]);
            }
            ClientOption::StartTls => match transport {
                Transport::Plain => {
                    proto::encode_option_error(
                        &mut out,
                        opt,
                        proto::REP_ERR_POLICY,
                        "TLS is not enabled on this listener",
                    );
                }
                Transport::Tls(_) => {
                    proto::encode_option_error(&mut out, opt, proto::REP_ERR_INVALID, "TLS is already negotiated");
                }
            },
            ClientOption::Info { name, requests, go } => {
                let Some(entry) = registry.get(&name) else {
                    proto::encode_option_error(&mut out, opt, proto::REP_ERR_UNKNOWN, "no such export");
                    send(wr, &out).await?;
                    continue;
                };
                if !entry.allows(peer_cert) {
                    tracing::info!(export = %entry.name, "nbd: client certificate not valid for this export");
                    proto::encode_option_error(
                        &mut out,
                        opt,
                        proto::REP_ERR_POLICY,
                        "the client certificate does not allow this export",
                    );
                    send(wr, &out).await?;
                    continue;
                }
                let attached = if go {
                    match entry.attach(registry.max_per_export) {
                        Ok(a) => Some(a),
                        Err(AttachError::Gone) => {
                            proto::encode_option_error(&mut out, opt, proto::REP_ERR_UNKNOWN, "no such export");
                            send(wr, &out).await?;
                            continue;
                        }
                        Err(AttachError::Full) => {
                            // POLICY, as the spec has it for a server refusing by its own rules
                            // (and qemu-nbd / nbdkit answer nothing better); the client may retry.
                            proto::encode_option_error(
                                &mut out,
                                opt,
                                proto::REP_ERR_POLICY,
                                "too many connections to this export",
                            );
                            let _ = send(wr, &out).await;
                            return Err(NegotiateError::ExportFull);
                        }
                    }
                } else {
                    None
                };
                let size = match io::size(&entry.file) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(export = %name, error = %e, "nbd: cannot size export");
                        proto::encode_option_error(&mut out, opt, proto::REP_ERR_UNKNOWN, "export is not available");
                        send(wr, &out).await?;
                        continue;
                    }
                };
                let tflags = proto::transmission_flags(entry.readonly, structured);
                proto::encode_info_export(&mut out, opt, size, tflags);
                if requests.contains(&proto::INFO_NAME) {
                    proto::encode_info_name(&mut out, opt, &name);
                }
                // Sent whether asked or not: minimum 1 means any client alignment is fine.
                proto::encode_info_block_size(&mut out, opt);
                proto::encode_option_reply(&mut out, opt, proto::REP_ACK, &[]);
                send(wr, &out).await?;
                if let Some((guard, export_stop)) = attached {
                    let session = Session {
                        size,
                        readonly: entry.readonly,
                        structured,
                        base_allocation: structured && meta.as_ref().is_some_and(|(n, sel)| *sel && *n == name),
                    };
                    return Ok(Outcome::Transmission(Box::new(Negotiated { entry, guard, export_stop, session })));
                }
                continue;
            }
            ClientOption::StructuredReply => {
                structured = true;
                proto::encode_option_reply(&mut out, opt, proto::REP_ACK, &[]);
            }
            ClientOption::MetaContext { name, queries, set } => {
                if !structured {
                    proto::encode_option_error(
                        &mut out,
                        opt,
                        proto::REP_ERR_INVALID,
                        "negotiate NBD_OPT_STRUCTURED_REPLY before metadata contexts",
                    );
                } else if !registry.get(&name).is_some_and(|e| e.allows(peer_cert)) {
                    proto::encode_option_error(&mut out, opt, proto::REP_ERR_UNKNOWN, "no such export");
                } else if set {
                    let selected = queries.iter().any(|q| proto::set_query_matches(q));
                    if selected {
                        proto::encode_meta_context(
                            &mut out,
                            opt,
                            proto::META_BASE_ALLOCATION_ID,
                            proto::META_BASE_ALLOCATION,
                        );
                    }
                    meta = Some((name, selected));
                    proto::encode_option_reply(&mut out, opt, proto::REP_ACK, &[]);
                } else {
                    if queries.is_empty() || queries.iter().any(|q| proto::list_query_matches(q)) {
                        proto::encode_meta_context(&mut out, opt, 0, proto::META_BASE_ALLOCATION);
                    }
                    proto::encode_option_reply(&mut out, opt, proto::REP_ACK, &[]);
                }
            }
            ClientOption::Unknown(_) => {
                proto::encode_option_error(&mut out, opt, proto::REP_ERR_UNSUP, "option not supported");
            }
        }
        send(wr, &out).await?;
    }
    Err(NegotiateError::TooManyOptions)
}

async fn send<W: AsyncWrite + Unpin>(wr: &mut W, buf: &[u8]) -> std::io::Result<()> {
    wr.write_all(buf).await?;
    wr.flush().await
}
