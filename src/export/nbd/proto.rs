//! NBD wire format: constants, decoders and encoders. Pure: no I/O, no allocation beyond the
//! decoded strings and the output buffers (sizes bounded by the option limit), no dependency
//! outside `std`, so the fuzz target (`fuzz/`) includes this file directly by path.
//!
//! Scope (see `STORAGE.md` §3): fixed newstyle negotiation with `NO_ZEROES`, the options
//! `EXPORT_NAME`, `ABORT`, `LIST`, `STARTTLS` (refused), `INFO`, `GO`, `STRUCTURED_REPLY`,
//! `LIST_META_CONTEXT`, `SET_META_CONTEXT` (`base:allocation` only), compact (32-bit) request
//! headers, simple and structured replies. All integers are big-endian on the wire.
//!
//! Invariants: a decoder never panics on any input (the fuzz target checks this); a request that
//! passes [`validate_request`] is inside the export and within the payload limit, so the caller
//! can do I/O on `[offset, offset + length)` without further checks.

use std::fmt;

// ---------------------------------------------------------------------------------------------
// Magic numbers.

/// `NBDMAGIC`, first 8 bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: second greeting word, and the prefix of every client option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Prefix of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Prefix of every (compact) request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Prefix of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Prefix of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

// ---------------------------------------------------------------------------------------------
// Handshake.

/// Handshake flag: the server speaks fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: the server can omit the 124 zero bytes after `EXPORT_NAME`.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag: the client speaks fixed newstyle.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: omit the 124 zero bytes.
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Handshake flags we send.
pub const HANDSHAKE_FLAGS: u16 = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES;

/// Length of the server greeting: NBDMAGIC, IHAVEOPT, handshake flags.
pub const GREETING_LEN: usize = 18;
/// Length of an option header: IHAVEOPT, option, length.
pub const OPTION_HEADER_LEN: usize = 16;
/// Length of a compact request header.
pub const REQUEST_HEADER_LEN: usize = 28;
/// Length of a simple reply header.
pub const SIMPLE_REPLY_LEN: usize = 16;
/// Length of a structured reply chunk header.
pub const CHUNK_HEADER_LEN: usize = 20;
/// Length of an `OFFSET_DATA` chunk header plus its offset field (data follows).
pub const OFFSET_DATA_PREFIX_LEN: usize = CHUNK_HEADER_LEN + 8;

/// Longest option payload we accept. Export names are at most 4096 bytes (protocol); a
/// meta-context option carries a name and a few queries. Anything longer is refused.
pub const MAX_OPTION_LEN: u32 = 64 * 1024;
/// Longest string (export name, query) the protocol allows.
pub const MAX_STRING_LEN: usize = 4096;

// Options.
/// Choose an export and enter transmission (no reply on error: the server hangs up).
pub const OPT_EXPORT_NAME: u32 = 1;
/// Abort negotiation.
pub const OPT_ABORT: u32 = 2;
/// List exports.
pub const OPT_LIST: u32 = 3;
/// Start TLS (refused: no TLS yet).
pub const OPT_STARTTLS: u32 = 5;
/// Describe an export.
pub const OPT_INFO: u32 = 6;
/// Describe an export and enter transmission.
pub const OPT_GO: u32 = 7;
/// Use structured replies.
pub const OPT_STRUCTURED_REPLY: u32 = 8;
/// List metadata contexts.
pub const OPT_LIST_META_CONTEXT: u32 = 9;
/// Select metadata contexts.
pub const OPT_SET_META_CONTEXT: u32 = 10;
/// 64-bit headers (not supported: answered `ERR_UNSUP`).
pub const OPT_EXTENDED_HEADERS: u32 = 11;

// Option reply types.
/// Option done.
pub const REP_ACK: u32 = 1;
/// One export (`LIST`).
pub const REP_SERVER: u32 = 2;
/// One information item (`INFO`, `GO`).
pub const REP_INFO: u32 = 3;
/// One metadata context.
pub const REP_META_CONTEXT: u32 = 4;
/// Bit set on every error reply.
pub const REP_FLAG_ERROR: u32 = 1 << 31;
/// Unknown option.
pub const REP_ERR_UNSUP: u32 = REP_FLAG_ERROR | 1;
/// Refused by policy.
pub const REP_ERR_POLICY: u32 = REP_FLAG_ERROR | 2;
/// Malformed option.
pub const REP_ERR_INVALID: u32 = REP_FLAG_ERROR | 3;
/// Unsupported on this platform.
pub const REP_ERR_PLATFORM: u32 = REP_FLAG_ERROR | 4;
/// TLS required.
pub const REP_ERR_TLS_REQD: u32 = REP_FLAG_ERROR | 5;
/// No such export.
pub const REP_ERR_UNKNOWN: u32 = REP_FLAG_ERROR | 6;
/// The server is shutting down.
pub const REP_ERR_SHUTDOWN: u32 = REP_FLAG_ERROR | 7;
/// Block size negotiation required.
pub const REP_ERR_BLOCK_SIZE_REQD: u32 = REP_FLAG_ERROR | 8;
/// Request or reply too large.
pub const REP_ERR_TOO_BIG: u32 = REP_FLAG_ERROR | 9;

// Information types (`INFO`, `GO`).
/// Size and transmission flags.
pub const INFO_EXPORT: u16 = 0;
/// Canonical name.
pub const INFO_NAME: u16 = 1;
/// Human description.
pub const INFO_DESCRIPTION: u16 = 2;
/// Block size constraints.
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Smallest I/O the export accepts.
pub const BLOCK_SIZE_MIN: u32 = 1;
/// Preferred I/O granularity.
pub const BLOCK_SIZE_PREFERRED: u32 = 4096;
/// Largest READ/WRITE payload accepted.
pub const MAX_PAYLOAD: u32 = 32 * 1024 * 1024;

/// The one metadata context we serve.
pub const META_BASE_ALLOCATION: &str = "base:allocation";
/// Its id in `SET_META_CONTEXT` replies and `BLOCK_STATUS` chunks.
pub const META_BASE_ALLOCATION_ID: u32 = 1;
/// `base:allocation` status: unallocated.
pub const STATE_HOLE: u32 = 1 << 0;
/// `base:allocation` status: reads as zeroes.
pub const STATE_ZERO: u32 = 1 << 1;

// ---------------------------------------------------------------------------------------------
// Transmission.

/// Transmission flag: always set.
pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
/// The export is read-only.
pub const TFLAG_READ_ONLY: u16 = 1 << 1;
/// FLUSH is supported.
pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
/// FUA is supported.
pub const TFLAG_SEND_FUA: u16 = 1 << 3;
/// Rotational medium (never set).
pub const TFLAG_ROTATIONAL: u16 = 1 << 4;
/// TRIM is supported.
pub const TFLAG_SEND_TRIM: u16 = 1 << 5;
/// WRITE_ZEROES is supported.
pub const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// The DF read flag is supported (only with structured replies).
pub const TFLAG_SEND_DF: u16 = 1 << 7;
/// Several connections to one export see one coherent cache.
pub const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
/// RESIZE is supported (never set).
pub const TFLAG_SEND_RESIZE: u16 = 1 << 9;
/// CACHE is supported.
pub const TFLAG_SEND_CACHE: u16 = 1 << 10;
/// FAST_ZERO is supported.
pub const TFLAG_SEND_FAST_ZERO: u16 = 1 << 11;

// Commands.
/// Read.
pub const CMD_READ: u16 = 0;
/// Write (payload follows the header).
pub const CMD_WRITE: u16 = 1;
/// Disconnect (no reply).
pub const CMD_DISC: u16 = 2;
/// Flush to stable storage.
pub const CMD_FLUSH: u16 = 3;
/// Discard.
pub const CMD_TRIM: u16 = 4;
/// Prefetch.
pub const CMD_CACHE: u16 = 5;
/// Write zeroes.
pub const CMD_WRITE_ZEROES: u16 = 6;
/// Query allocation.
pub const CMD_BLOCK_STATUS: u16 = 7;

// Command flags.
/// Force unit access: persist before replying.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
/// WRITE_ZEROES: keep the range allocated.
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
/// READ: one content chunk only.
pub const CMD_FLAG_DF: u16 = 1 << 2;
/// BLOCK_STATUS: one extent only.
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// WRITE_ZEROES: fail fast with ENOTSUP rather than writing zeroes slowly.
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;
/// Every command flag we know.
pub const CMD_FLAGS_KNOWN: u16 = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE | CMD_FLAG_FAST_ZERO;

// Structured reply chunk types and flags.
/// Last chunk of a reply.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
/// Empty final chunk.
pub const REPLY_TYPE_NONE: u16 = 0;
/// Data at an offset.
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
/// Zeroes at an offset.
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
/// Block status descriptors for one context.
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
/// Error.
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;
/// Error at an offset.
pub const REPLY_TYPE_ERROR_OFFSET: u16 = (1 << 15) | 2;

// Errors (wire values).
/// Operation not permitted (write to a read-only export).
pub const EPERM: u32 = 1;
/// I/O error.
pub const EIO: u32 = 5;
/// Out of memory.
pub const ENOMEM: u32 = 12;
/// Invalid request.
pub const EINVAL: u32 = 22;
/// No space (also: write beyond the end of the export).
pub const ENOSPC: u32 = 28;
/// Value too large.
pub const EOVERFLOW: u32 = 75;
/// Not supported (FAST_ZERO that would be slow).
pub const ENOTSUP: u32 = 95;
/// The server is shutting down.
pub const ESHUTDOWN: u32 = 108;

/// Map an OS errno to the NBD error the protocol allows.
pub fn errno_to_nbd(errno: i32) -> u32 {
    // Linux errno values: the protocol's numbers were chosen to match them.
    match errno {
        1 | 13 | 30 => EPERM,    // EPERM, EACCES, EROFS
        12 => ENOMEM,            // ENOMEM
        22 => EINVAL,            // EINVAL
        27 | 28 | 122 => ENOSPC, // EFBIG, ENOSPC, EDQUOT
        75 => EOVERFLOW,         // EOVERFLOW
        95 => ENOTSUP,           // EOPNOTSUPP
        108 => ESHUTDOWN,        // ESHUTDOWN
        _ => EIO,
    }
}

/// A human name for an NBD wire error, for messages.
pub fn nbd_error_name(err: u32) -> &'static str {
    match err {
        EPERM => "EPERM",
        EIO => "EIO",
        ENOMEM => "ENOMEM",
        EINVAL => "EINVAL",
        ENOSPC => "ENOSPC",
        EOVERFLOW => "EOVERFLOW",
        ENOTSUP => "ENOTSUP",
        ESHUTDOWN => "ESHUTDOWN",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding errors.

/// Why a client message could not be decoded. Every variant means the peer broke the protocol
/// framing (the connection must be dropped) except [`ProtoError::Invalid`], which is answered
/// with `NBD_REP_ERR_INVALID` during negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// A magic number was wrong.
    BadMagic(u64),
    /// The client set handshake flags we do not know, or did not set fixed newstyle.
    BadClientFlags(u32),
    /// An option payload is longer than [`MAX_OPTION_LEN`].
    OptionTooLong(u32),
    /// An option payload is syntactically invalid.
    Invalid(&'static str),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::BadMagic(m) => write!(f, "bad magic {m:#x}"),
            ProtoError::BadClientFlags(x) => write!(f, "unsupported client flags {x:#x}"),
            ProtoError::OptionTooLong(n) => write!(f, "option payload of {n} bytes is too long"),
            ProtoError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ProtoError {}

// ---------------------------------------------------------------------------------------------
// Small big-endian helpers.

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// A cursor over an option payload; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u16(&mut self) -> Result<u16, ProtoError> {
        if self.remaining() < 2 {
            return Err(ProtoError::Invalid("option payload truncated"));
        }
        let v = be16(self.buf, self.pos);
        self.pos += 2;
        Ok(v)
    }

    fn u32(&mut self) -> Result<u32, ProtoError> {
        if self.remaining() < 4 {
            return Err(ProtoError::Invalid("option payload truncated"));
        }
        let v = be32(self.buf, self.pos);
        self.pos += 4;
        Ok(v)
    }

    /// A length-prefixed (u32) UTF-8 string of at most [`MAX_STRING_LEN`] bytes.
    fn string(&mut self) -> Result<String, ProtoError> {
        let len = self.u32()? as usize;
        if len > MAX_STRING_LEN {
            return Err(ProtoError::Invalid("string longer than 4096 bytes"));
        }
        if self.remaining() < len {
            return Err(ProtoError::Invalid("string runs past the option payload"));
        }
        let s = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        check_string(s)
    }
}

/// Validate a protocol string: UTF-8, no NUL, at most 4096 bytes.
fn check_string(s: &[u8]) -> Result<String, ProtoError> {
    if s.len() > MAX_STRING_LEN {
        return Err(ProtoError::Invalid("string longer than 4096 bytes"));
    }
    if s.contains(&0) {
        return Err(ProtoError::Invalid("string contains NUL"));
    }
    String::from_utf8(s.to_vec()).map_err(|_| ProtoError::Invalid("string is not UTF-8"))
}

// ---------------------------------------------------------------------------------------------
// Negotiation.

/// The server greeting: `NBDMAGIC`, `IHAVEOPT`, handshake flags.
pub fn encode_greeting() -> [u8; GREETING_LEN] {
    let mut b = [0u8; GREETING_LEN];
    b[0..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..18].copy_from_slice(&HANDSHAKE_FLAGS.to_be_bytes());
    b
}

/// What the client's flags asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFlags {
    /// Omit the 124 zero bytes after `EXPORT_NAME`.
    pub no_zeroes: bool,
}

/// Decode the client's 32-bit flags. Fixed newstyle is required; unknown bits are refused (the
/// protocol says the server must then hang up).
pub fn parse_client_flags(bytes: [u8; 4]) -> Result<ClientFlags, ProtoError> {
    let flags = u32::from_be_bytes(bytes);
    if flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 || flags & FLAG_C_FIXED_NEWSTYLE == 0 {
        return Err(ProtoError::BadClientFlags(flags));
    }
    Ok(ClientFlags { no_zeroes: flags & FLAG_C_NO_ZEROES != 0 })
}

/// An option header: which option, and how many payload bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    /// Option number.
    pub option: u32,
    /// Payload length.
    pub length: u32,
}

/// Decode an option header. The length is returned even when too long, so the caller can
/// answer before hanging up; [`OptionHeader::check_length`] tells.
pub fn parse_option_header(b: &[u8; OPTION_HEADER_LEN]) -> Result<OptionHeader, ProtoError> {
    let magic = be64(b, 0);
    if magic != IHAVEOPT {
        return Err(ProtoError::BadMagic(magic));
    }
    Ok(OptionHeader { option: be32(b, 8), length: be32(b, 12) })
}

impl OptionHeader {
    /// Refuse payloads over [`MAX_OPTION_LEN`].
    pub fn check_length(&self) -> Result<(), ProtoError> {
        if self.length > MAX_OPTION_LEN {
            return Err(ProtoError::OptionTooLong(self.length));
        }
        Ok(())
    }
}

/// A decoded client option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOption {
    /// `NBD_OPT_EXPORT_NAME`.
    ExportName(String),
    /// `NBD_OPT_ABORT`.
    Abort,
    /// `NBD_OPT_LIST`.
    List,
    /// `NBD_OPT_STARTTLS`.
    StartTls,
    /// `NBD_OPT_INFO` (`go == false`) or `NBD_OPT_GO`.
    Info {
        /// Export name.
        name: String,
        /// Information types requested.
        requests: Vec<u16>,
        /// True for `GO`.
        go: bool,
    },
    /// `NBD_OPT_STRUCTURED_REPLY`.
    StructuredReply,
    /// `NBD_OPT_LIST_META_CONTEXT` (`set == false`) or `NBD_OPT_SET_META_CONTEXT`.
    MetaContext {
        /// Export name.
        name: String,
        /// Queries.
        queries: Vec<String>,
        /// True for `SET`.
        set: bool,
    },
    /// Any other option: answered `NBD_REP_ERR_UNSUP`.
    Unknown(u32),
}

/// Decode an option's payload. `Err(ProtoError::Invalid)` is answered `NBD_REP_ERR_INVALID`
/// (except for `EXPORT_NAME`, where the server can only hang up).
pub fn parse_option(option: u32, data: &[u8]) -> Result<ClientOption, ProtoError> {
    if data.len() > MAX_OPTION_LEN as usize {
        return Err(ProtoError::OptionTooLong(data.len() as u32));
    }
    match option {
        OPT_EXPORT_NAME => Ok(ClientOption::ExportName(check_string(data)?)),
        OPT_ABORT => Ok(ClientOption::Abort),
        OPT_LIST => {
            if !data.is_empty() {
                return Err(ProtoError::Invalid("NBD_OPT_LIST takes no payload"));
            }
            Ok(ClientOption::List)
        }
        OPT_STARTTLS => {
            if !data.is_empty() {
                return Err(ProtoError::Invalid("NBD_OPT_STARTTLS takes no payload"));
            }
            Ok(ClientOption::StartTls)
        }
        OPT_INFO | OPT_GO => {
            let mut c = Cursor::new(data);
            let name = c.string()?;
            let n = c.u16()? as usize;
            if c.remaining() != n * 2 {
                return Err(ProtoError::Invalid("information request count does not match the payload"));
            }
            let mut requests = Vec::with_capacity(n);
            for _ in 0..n {
                requests.push(c.u16()?);
            }
            Ok(ClientOption::Info { name, requests, go: option == OPT_GO })
        }
        OPT_STRUCTURED_REPLY => {
            if !data.is_empty() {
                return Err(ProtoError::Invalid("NBD_OPT_STRUCTURED_REPLY takes no payload"));
            }
            Ok(ClientOption::StructuredReply)
        }
        OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
            let mut c = Cursor::new(data);
            let name = c.string()?;
            let n = c.u32()? as usize;
            // Each query takes at least 4 bytes: refuse counts the payload cannot hold before
            // allocating anything.
            if n > c.remaining() / 4 {
                return Err(ProtoError::Invalid("query count does not match the payload"));
            }
            let mut queries = Vec::with_capacity(n);
            for _ in 0..n {
                queries.push(c.string()?);
            }
            if c.remaining() != 0 {
                return Err(ProtoError::Invalid("trailing bytes after the queries"));
            }
            Ok(ClientOption::MetaContext { name, queries, set: option == OPT_SET_META_CONTEXT })
        }
        other => Ok(ClientOption::Unknown(other)),
    }
}

/// Does a `LIST_META_CONTEXT` query select `base:allocation`? (`base:` lists the namespace.)
pub fn list_query_matches(query: &str) -> bool {
    query == META_BASE_ALLOCATION || query == "base:"
}

/// Does a `SET_META_CONTEXT` query select `base:allocation`?
pub fn set_query_matches(query: &str) -> bool {
    query == META_BASE_ALLOCATION
}

/// Append an option reply.
pub fn encode_option_reply(buf: &mut Vec<u8>, option: u32, reply_type: u32, data: &[u8]) {
    buf.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    buf.extend_from_slice(&option.to_be_bytes());
    buf.extend_from_slice(&reply_type.to_be_bytes());
    buf.extend_from_slice(&(data.len() as u32).to_be_bytes());
    buf.extend_from_slice(data);
}

/// Append an error reply with a human message (truncated to 4096 bytes).
pub fn encode_option_error(buf: &mut Vec<u8>, option: u32, reply_type: u32, message: &str) {
    let mut m = message.as_bytes();
    if m.len() > MAX_STRING_LEN {
        m = &m[..MAX_STRING_LEN];
    }
    encode_option_reply(buf, option, reply_type, m);
}

/// Append an `NBD_REP_SERVER` reply for one export.
pub fn encode_rep_server(buf: &mut Vec<u8>, name: &str) {
    let mut d = Vec::with_capacity(4 + name.len());
    d.extend_from_slice(&(name.len() as u32).to_be_bytes());
    d.extend_from_slice(name.as_bytes());
    encode_option_reply(buf, OPT_LIST, REP_SERVER, &d);
}

/// Append an `NBD_REP_INFO` / `NBD_INFO_EXPORT` reply.
pub fn encode_info_export(buf: &mut Vec<u8>, option: u32, size: u64, tflags: u16) {
    let mut d = [0u8; 12];
    d[0..2].copy_from_slice(&INFO_EXPORT.to_be_bytes());
    d[2..10].copy_from_slice(&size.to_be_bytes());
    d[10..12].copy_from_slice(&tflags.to_be_bytes());
    encode_option_reply(buf, option, REP_INFO, &d);
}

/// Append an `NBD_REP_INFO` / `NBD_INFO_NAME` reply.
pub fn encode_info_name(buf: &mut Vec<u8>, option: u32, name: &str) {
    let mut d = Vec::with_capacity(2 + name.len());
    d.extend_from_slice(&INFO_NAME.to_be_bytes());
    d.extend_from_slice(name.as_bytes());
    encode_option_reply(buf, option, REP_INFO, &d);
}

/// Append an `NBD_REP_INFO` / `NBD_INFO_BLOCK_SIZE` reply (1 / 4096 / 32 MiB).
pub fn encode_info_block_size(buf: &mut Vec<u8>, option: u32) {
    let mut d = [0u8; 14];
    d[0..2].copy_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    d[2..6].copy_from_slice(&BLOCK_SIZE_MIN.to_be_bytes());
    d[6..10].copy_from_slice(&BLOCK_SIZE_PREFERRED.to_be_bytes());
    d[10..14].copy_from_slice(&MAX_PAYLOAD.to_be_bytes());
    encode_option_reply(buf, option, REP_INFO, &d);
}

/// Append an `NBD_REP_META_CONTEXT` reply.
pub fn encode_meta_context(buf: &mut Vec<u8>, option: u32, id: u32, name: &str) {
    let mut d = Vec::with_capacity(4 + name.len());
    d.extend_from_slice(&id.to_be_bytes());
    d.extend_from_slice(name.as_bytes());
    encode_option_reply(buf, option, REP_META_CONTEXT, &d);
}

/// Append the reply to `EXPORT_NAME`: size, flags and (unless `no_zeroes`) 124 zero bytes.
pub fn encode_export_name_reply(buf: &mut Vec<u8>, size: u64, tflags: u16, no_zeroes: bool) {
    buf.extend_from_slice(&size.to_be_bytes());
    buf.extend_from_slice(&tflags.to_be_bytes());
    if !no_zeroes {
        buf.extend_from_slice(&[0u8; 124]);
    }
}

/// Transmission flags for an export.
pub fn transmission_flags(readonly: bool, structured: bool) -> u16 {
    let mut f = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_CACHE | TFLAG_CAN_MULTI_CONN;
    if structured {
        f |= TFLAG_SEND_DF;
    }
    if readonly {
        f |= TFLAG_READ_ONLY;
    } else {
        f |= TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES | TFLAG_SEND_FAST_ZERO;
    }
    f
}

// ---------------------------------------------------------------------------------------------
// Requests.

/// A decoded request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags.
    pub flags: u16,
    /// Command type (`CMD_*`); unknown values are kept and refused by [`validate_request`].
    pub command: u16,
    /// Opaque client cookie (handle), echoed in the reply.
    pub cookie: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub length: u32,
}

impl Request {
    /// Bytes of payload that follow this header on the wire.
    pub fn payload_len(&self) -> u32 {
        if self.command == CMD_WRITE {
            self.length
        } else {
            0
        }
    }
}

/// Decode a request header. A bad magic means the stream is out of sync: hang up.
pub fn parse_request(b: &[u8; REQUEST_HEADER_LEN]) -> Result<Request, ProtoError> {
    let magic = be32(b, 0);
    if magic != REQUEST_MAGIC {
        return Err(ProtoError::BadMagic(magic as u64));
    }
    Ok(Request { flags: be16(b, 4), command: be16(b, 6), cookie: be64(b, 8), offset: be64(b, 16), length: be32(b, 24) })
}

/// Encode a request header (used by test clients and the fuzz target).
pub fn encode_request(req: &Request) -> [u8; REQUEST_HEADER_LEN] {
    let mut b = [0u8; REQUEST_HEADER_LEN];
    b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&req.flags.to_be_bytes());
    b[6..8].copy_from_slice(&req.command.to_be_bytes());
    b[8..16].copy_from_slice(&req.cookie.to_be_bytes());
    b[16..24].copy_from_slice(&req.offset.to_be_bytes());
    b[24..28].copy_from_slice(&req.length.to_be_bytes());
    b
}

/// What the transmission phase knows when checking a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Export size in bytes, as sent to the client.
    pub size: u64,
    /// The export refuses writes.
    pub readonly: bool,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// `base:allocation` was selected.
    pub base_allocation: bool,
}

/// Check a request before any I/O. `Err` carries the NBD error to reply with. Order: unknown
/// command, flags, read-only, payload limit, bounds.
pub fn validate_request(req: &Request, s: &Session) -> Result<(), u32> {
    let allowed = match req.command {
        CMD_READ => CMD_FLAG_FUA | if s.structured { CMD_FLAG_DF } else { 0 },
        CMD_WRITE | CMD_TRIM | CMD_FLUSH | CMD_CACHE | CMD_DISC => CMD_FLAG_FUA,
        CMD_WRITE_ZEROES => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
        CMD_BLOCK_STATUS => CMD_FLAG_FUA | CMD_FLAG_REQ_ONE,
        _ => return Err(EINVAL),
    };
    if req.flags & !allowed != 0 {
        return Err(EINVAL);
    }
    let writes = matches!(req.command, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
    if writes && s.readonly {
        return Err(EPERM);
    }
    if matches!(req.command, CMD_READ | CMD_WRITE) && req.length > MAX_PAYLOAD {
        return Err(EINVAL);
    }
    if matches!(req.command, CMD_FLUSH | CMD_DISC) {
        return Ok(());
    }
    if req.command == CMD_BLOCK_STATUS && (!s.structured || !s.base_allocation || req.length == 0) {
        return Err(EINVAL);
    }
    let in_bounds = req.offset.checked_add(req.length as u64).is_some_and(|end| end <= s.size);
    if !in_bounds {
        return Err(if writes { ENOSPC } else { EINVAL });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Replies.

/// Append a simple reply header.
pub fn encode_simple_reply(buf: &mut Vec<u8>, cookie: u64, error: u32) {
    buf.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    buf.extend_from_slice(&error.to_be_bytes());
    buf.extend_from_slice(&cookie.to_be_bytes());
}

/// Append a structured chunk header.
pub fn encode_chunk_header(buf: &mut Vec<u8>, flags: u16, kind: u16, cookie: u64, length: u32) {
    buf.extend_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    buf.extend_from_slice(&flags.to_be_bytes());
    buf.extend_from_slice(&kind.to_be_bytes());
    buf.extend_from_slice(&cookie.to_be_bytes());
    buf.extend_from_slice(&length.to_be_bytes());
}

/// Append the header of a final `OFFSET_DATA` chunk carrying `data_len` bytes at `offset`; the
/// caller appends the data.
pub fn encode_offset_data_header(buf: &mut Vec<u8>, cookie: u64, offset: u64, data_len: u32) {
    encode_chunk_header(buf, REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, cookie, data_len + 8);
    buf.extend_from_slice(&offset.to_be_bytes());
}

/// Append a final `NONE` chunk.
pub fn encode_none_chunk(buf: &mut Vec<u8>, cookie: u64) {
    encode_chunk_header(buf, REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0);
}

/// Append a final `ERROR` chunk with a message (truncated to 4096 bytes).
pub fn encode_error_chunk(buf: &mut Vec<u8>, cookie: u64, error: u32, message: &str) {
    let mut m = message.as_bytes();
    if m.len() > MAX_STRING_LEN {
        m = &m[..MAX_STRING_LEN];
    }
    encode_chunk_header(buf, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, 6 + m.len() as u32);
    buf.extend_from_slice(&error.to_be_bytes());
    buf.extend_from_slice(&(m.len() as u16).to_be_bytes());
    buf.extend_from_slice(m);
}

/// One `base:allocation` extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes (never zero).
    pub length: u32,
    /// `STATE_*` flags.
    pub flags: u32,
}

/// Append a final `BLOCK_STATUS` chunk for one context.
pub fn encode_block_status_chunk(buf: &mut Vec<u8>, cookie: u64, context_id: u32, extents: &[Extent]) {
    encode_chunk_header(buf, REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, cookie, 4 + 8 * extents.len() as u32);
    buf.extend_from_slice(&context_id.to_be_bytes());
    for e in extents {
        buf.extend_from_slice(&e.length.to_be_bytes());
        buf.extend_from_slice(&e.flags.to_be_bytes());
    }
}

/// Encode an error reply to a request, simple or structured as negotiated.
pub fn encode_error_reply(buf: &mut Vec<u8>, structured: bool, cookie: u64, error: u32, message: &str) {
    if structured {
        encode_error_chunk(buf, cookie, error, message);
    } else {
        encode_simple_reply(buf, cookie, error);
    }
}

/// Encode a success reply with no payload.
pub fn encode_ok_reply(buf: &mut Vec<u8>, structured: bool, cookie: u64) {
    if structured {
        encode_none_chunk(buf, cookie);
    } else {
        encode_simple_reply(buf, cookie, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Client-side helpers (test clients, fuzz round trips).

/// Encode a client option.
pub fn encode_option(buf: &mut Vec<u8>, option: u32, data: &[u8]) {
    buf.extend_from_slice(&IHAVEOPT.to_be_bytes());
    buf.extend_from_slice(&option.to_be_bytes());
    buf.extend_from_slice(&(data.len() as u32).to_be_bytes());
    buf.extend_from_slice(data);
}

/// Payload of an `INFO`/`GO` option.
pub fn encode_info_payload(name: &str, requests: &[u16]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&(name.len() as u32).to_be_bytes());
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(requests.len() as u16).to_be_bytes());
    for r in requests {
        d.extend_from_slice(&r.to_be_bytes());
    }
    d
}

/// Payload of a `LIST_META_CONTEXT`/`SET_META_CONTEXT` option.
pub fn encode_meta_payload(name: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&(name.len() as u32).to_be_bytes());
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}

/// A decoded option reply header (client side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionReplyHeader {
    /// The option answered.
    pub option: u32,
    /// `REP_*`.
    pub reply_type: u32,
    /// Payload length.
    pub length: u32,
}

/// Decode an option reply header (client side).
pub fn parse_option_reply_header(b: &[u8; 20]) -> Result<OptionReplyHeader, ProtoError> {
    let magic = be64(b, 0);
    if magic != OPTION_REPLY_MAGIC {
        return Err(ProtoError::BadMagic(magic));
    }
    Ok(OptionReplyHeader { option: be32(b, 8), reply_type: be32(b, 12), length: be32(b, 16) })
}

/// A decoded reply header (client side): simple or the header of a structured chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyHeader {
    /// Simple reply (16 bytes).
    Simple {
        /// Error (0 = success).
        error: u32,
        /// Cookie.
        cookie: u64,
    },
    /// Structured chunk (20 bytes).
    Chunk {
        /// Chunk flags.
        flags: u16,
        /// Chunk type.
        kind: u16,
        /// Cookie.
        cookie: u64,
        /// Payload length.
        length: u32,
    },
}

/// Decode the first 16 bytes of a reply; for a structured chunk pass 20 bytes.
pub fn parse_reply_header(b: &[u8]) -> Result<ReplyHeader, ProtoError> {
    if b.len() < 4 {
        return Err(ProtoError::Invalid("reply truncated"));
    }
    match be32(b, 0) {
        SIMPLE_REPLY_MAGIC if b.len() >= SIMPLE_REPLY_LEN => {
            Ok(ReplyHeader::Simple { error: be32(b, 4), cookie: be64(b, 8) })
        }
        STRUCTURED_REPLY_MAGIC if b.len() >= CHUNK_HEADER_LEN => {
            Ok(ReplyHeader::Chunk { flags: be16(b, 4), kind: be16(b, 6), cookie: be64(b, 8), length: be32(b, 16) })
        }
        SIMPLE_REPLY_MAGIC | STRUCTURED_REPLY_MAGIC => Err(ProtoError::Invalid("reply truncated")),
        m => Err(ProtoError::BadMagic(m as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session { size: 1 << 20, readonly: false, structured: true, base_allocation: true }
    }

    fn req(command: u16, flags: u16, offset: u64, length: u32) -> Request {
        Request { flags, command, cookie: 7, offset, length }
    }

    #[test]
    fn greeting_bytes() {
        let g = encode_greeting();
        assert_eq!(&g[0..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        assert_eq!(u16::from_be_bytes([g[16], g[17]]), 3);
    }

    #[test]
    fn client_flags() {
        assert_eq!(parse_client_flags(3u32.to_be_bytes()), Ok(ClientFlags { no_zeroes: true }));
        assert_eq!(parse_client_flags(1u32.to_be_bytes()), Ok(ClientFlags { no_zeroes: false }));
        assert!(parse_client_flags(0u32.to_be_bytes()).is_err());
        assert!(parse_client_flags(5u32.to_be_bytes()).is_err());
    }

    #[test]
    fn option_header_round_trip() {
        let mut b = Vec::new();
        encode_option(&mut b, OPT_GO, &[1, 2, 3]);
        let h = parse_option_header(b[..16].try_into().unwrap()).unwrap();
        assert_eq!(h, OptionHeader { option: OPT_GO, length: 3 });
        b[0] ^= 1;
        assert!(matches!(parse_option_header(b[..16].try_into().unwrap()), Err(ProtoError::BadMagic(_))));
        assert!(OptionHeader { option: 1, length: MAX_OPTION_LEN + 1 }.check_length().is_err());
    }

    #[test]
    fn info_and_go_payloads() {
        let d = encode_info_payload("vol", &[INFO_BLOCK_SIZE, INFO_NAME]);
        assert_eq!(
            parse_option(OPT_GO, &d),
            Ok(ClientOption::Info { name: "vol".into(), requests: vec![3, 1], go: true })
        );
        // Count that does not match the payload.
        let mut bad = d.clone();
        bad.push(0);
        assert!(matches!(parse_option(OPT_INFO, &bad), Err(ProtoError::Invalid(_))));
        // Name length past the end.
        let mut bad = d.clone();
        bad[3] = 200;
        assert!(matches!(parse_option(OPT_GO, &bad), Err(ProtoError::Invalid(_))));
        // Truncated.
        assert!(parse_option(OPT_GO, &[0, 0]).is_err());
        // Huge name length.
        assert!(parse_option(OPT_GO, &[0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn meta_payloads() {
        let d = encode_meta_payload("vol", &["base:allocation", "qemu:dirty-bitmap:x"]);
        assert_eq!(
            parse_option(OPT_SET_META_CONTEXT, &d),
            Ok(ClientOption::MetaContext {
                name: "vol".into(),
                queries: vec!["base:allocation".into(), "qemu:dirty-bitmap:x".into()],
                set: true
            })
        );
        // A query count the payload cannot hold is refused without allocating.
        let mut bad = encode_meta_payload("vol", &[]);
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse_option(OPT_LIST_META_CONTEXT, &bad), Err(ProtoError::Invalid(_))));
        assert!(list_query_matches("base:"));
        assert!(!set_query_matches("base:"));
    }

    #[test]
    fn simple_options() {
        assert_eq!(parse_option(OPT_LIST, &[]), Ok(ClientOption::List));
        assert!(parse_option(OPT_LIST, &[1]).is_err());
        assert_eq!(parse_option(OPT_STRUCTURED_REPLY, &[]), Ok(ClientOption::StructuredReply));
        assert!(parse_option(OPT_STRUCTURED_REPLY, &[0]).is_err());
        assert_eq!(parse_option(OPT_EXPORT_NAME, b"a"), Ok(ClientOption::ExportName("a".into())));
        assert!(parse_option(OPT_EXPORT_NAME, b"a\0").is_err());
        assert!(parse_option(OPT_EXPORT_NAME, &[0xff, 0xfe]).is_err());
        assert_eq!(parse_option(4242, &[1, 2]), Ok(ClientOption::Unknown(4242)));
        assert_eq!(parse_option(OPT_EXTENDED_HEADERS, &[]), Ok(ClientOption::Unknown(OPT_EXTENDED_HEADERS)));
    }

    #[test]
    fn request_round_trip() {
        let r = req(CMD_WRITE, CMD_FLAG_FUA, 4096, 512);
        let b = encode_request(&r);
        assert_eq!(parse_request(&b), Ok(r));
        assert_eq!(r.payload_len(), 512);
        assert_eq!(req(CMD_READ, 0, 0, 512).payload_len(), 0);
        let mut bad = b;
        bad[0] = 0;
        assert!(parse_request(&bad).is_err());
    }

    #[test]
    fn validation() {
        let s = session();
        assert_eq!(validate_request(&req(CMD_READ, 0, 0, 4096), &s), Ok(()));
        assert_eq!(validate_request(&req(CMD_READ, CMD_FLAG_DF, 0, 4096), &s), Ok(()));
        assert_eq!(
            validate_request(&req(CMD_READ, CMD_FLAG_DF, 0, 4096), &Session { structured: false, ..s }),
            Err(EINVAL)
        );
        assert_eq!(validate_request(&req(99, 0, 0, 0), &s), Err(EINVAL));
        assert_eq!(validate_request(&req(CMD_READ, 1 << 9, 0, 1), &s), Err(EINVAL));
        assert_eq!(validate_request(&req(CMD_WRITE, CMD_FLAG_NO_HOLE, 0, 1), &s), Err(EINVAL));
        assert_eq!(validate_request(&req(CMD_WRITE, 0, (1 << 20) - 1, 2), &s), Err(ENOSPC));
        assert_eq!(validate_request(&req(CMD_READ, 0, (1 << 20) - 1, 2), &s), Err(EINVAL));
        assert_eq!(validate_request(&req(CMD_READ, 0, u64::MAX, 2), &s), Err(EINVAL));
        assert_eq!(
            validate_request(&req(CMD_READ, 0, 0, MAX_PAYLOAD + 1), &Session { size: u64::MAX, ..s }),
            Err(EINVAL)
        );
        assert_eq!(validate_request(&req(CMD_TRIM, 0, 0, u32::MAX), &Session { size: u64::MAX, ..s }), Ok(()));
        let ro = Session { readonly: true, ..s };
        for c in [CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES] {
            assert_eq!(validate_request(&req(c, 0, 0, 1), &ro), Err(EPERM));
        }
        assert_eq!(validate_request(&req(CMD_FLUSH, 0, 0, 0), &ro), Ok(()));
        assert_eq!(validate_request(&req(CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, 0, 1), &s), Ok(()));
        assert_eq!(validate_request(&req(CMD_BLOCK_STATUS, 0, 0, 0), &s), Err(EINVAL));
        assert_eq!(
            validate_request(&req(CMD_BLOCK_STATUS, 0, 0, 1), &Session { base_allocation: false, ..s }),
            Err(EINVAL)
        );
        assert_eq!(
            validate_request(&req(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO | CMD_FLAG_FUA, 0, 1), &s),
            Ok(())
        );
    }

    #[test]
    fn reply_encoders() {
        let mut b = Vec::new();
        encode_error_chunk(&mut b, 9, EIO, "boom");
        assert_eq!(b.len(), CHUNK_HEADER_LEN + 6 + 4);
        assert_eq!(
            parse_reply_header(&b),
            Ok(ReplyHeader::Chunk { flags: REPLY_FLAG_DONE, kind: REPLY_TYPE_ERROR, cookie: 9, length: 10 })
        );
        b.clear();
        encode_simple_reply(&mut b, 3, EPERM);
        assert_eq!(parse_reply_header(&b), Ok(ReplyHeader::Simple { error: EPERM, cookie: 3 }));
        b.clear();
        encode_block_status_chunk(&mut b, 1, 1, &[Extent { length: 512, flags: 3 }, Extent { length: 512, flags: 0 }]);
        assert_eq!(b.len(), CHUNK_HEADER_LEN + 4 + 16);
        let long = "x".repeat(10_000);
        b.clear();
        encode_error_chunk(&mut b, 1, EIO, &long);
        assert_eq!(b.len(), CHUNK_HEADER_LEN + 6 + MAX_STRING_LEN);
    }

    #[test]
    fn errno_mapping() {
        assert_eq!(errno_to_nbd(13), EPERM);
        assert_eq!(errno_to_nbd(122), ENOSPC);
        assert_eq!(errno_to_nbd(95), ENOTSUP);
        assert_eq!(errno_to_nbd(4), EIO);
    }

    #[test]
    fn flags_for_exports() {
        let rw = transmission_flags(false, true);
        assert_eq!(rw & TFLAG_READ_ONLY, 0);
        assert_ne!(rw & TFLAG_SEND_TRIM, 0);
        assert_ne!(rw & TFLAG_SEND_DF, 0);
        let ro = transmission_flags(true, false);
        assert_ne!(ro & TFLAG_READ_ONLY, 0);
        assert_eq!(ro & (TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES | TFLAG_SEND_FUA | TFLAG_SEND_DF), 0);
        assert_ne!(ro & TFLAG_CAN_MULTI_CONN, 0);
    }
}
