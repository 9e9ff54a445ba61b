//! Exports: handing existing volume files to consumers, as loop block devices ([`loopdev`]) or
//! over NBD ([`nbd`]).
//!
//! Invariants:
//! - exports never allocate, resize or delete storage: that is the driver's job. An export opens
//!   a file the driver created and closes it on removal (`loopdev` may tell a loop device that
//!   its file grew, nothing more);
//! - paths are given by callers, who build them from validated UUIDs (the driver's
//!   `volume_path`); nothing here derives a path from a name or a request string. NBD export
//!   names are opaque strings (the volume id) used only as registry keys;
//! - nothing here knows HTTP, SQL or tenants; the attach lifecycle (service + jobs) decides what
//!   is exported and calls in.

pub mod loopdev;
pub mod nbd;
