//! Our own NBD server (STORAGE.md §3): fixed newstyle negotiation, structured replies,
//! `base:allocation`, concurrent out-of-order request handling on a shared file descriptor.
//!
//! - [`proto`]: wire constants, decoders and encoders (pure; fuzzed);
//! - `negotiate`: the handshake;
//! - `connection`: the transmission phase (reader, blocking I/O jobs, writer);
//! - `io`: the blocking file calls behind each command;
//! - `sink`: the write half of a connection, with `sendfile` on sockets;
//! - [`qos`]: per-export token buckets (Cinder back-end QoS specs);
//! - [`server`]: the export registry and the TCP / unix-socket listeners.

mod connection;
mod io;
mod negotiate;
pub mod proto;
pub mod qos;
pub mod server;
mod sink;

pub use qos::QosLimits;
pub use server::{
    export_digest, ExportInfo, GroupStats, NbdConfig, NbdError, NbdServer, NbdStats, QuiesceGuard, OP_NAMES,
};

#[cfg(test)]
mod tests;
