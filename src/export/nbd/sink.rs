//! The write half of a connection, as the reply writer sees it: bytes through `AsyncWrite`, and,
//! where the transport is a real socket, file data sent straight from the page cache with
//! `sendfile` (the kernel hands page references to the socket: one copy fewer than `pread` +
//! `write`, which is most of the CPU a large READ costs).
//!
//! Invariant: `send_file` is only called with a range that was checked against the export size
//! and found in the page cache just before (`io::fully_cached`), so it does not wait for the disk
//! on the runtime thread; it sends exactly `len` bytes or fails, and on failure the connection is
//! dropped (the reply header already promised the data).

use std::fs::File;
use std::future::Future;
use std::io;

use tokio::io::{AsyncWrite, Interest, WriteHalf};
use tokio::net::{tcp, unix, TcpStream, UnixStream};

/// A reply destination, optionally able to send file ranges without a user-space copy.
pub(crate) trait ReplySink: AsyncWrite + Unpin + Send + 'static {
    /// Whether [`ReplySink::send_file`] works on this transport.
    fn can_send_file(&self) -> bool;

    /// Send `len` bytes of `file` at `offset`. Only called when `can_send_file` is true.
    fn send_file(&self, file: &File, offset: u64, len: usize) -> impl Future<Output = io::Result<()>> + Send;

    /// Send all of `buf`, telling TCP that more follows at once (`MSG_MORE`), so a reply
    /// header and the file data after it leave in one segment. Only called when
    /// `can_send_file` is true.
    fn send_more(&self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
}

/// A socket's readiness and a non-blocking call on its descriptor.
trait Socket: std::os::fd::AsFd + Sync {
    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Run `op` if the socket is writable; `WouldBlock` clears the readiness.
    fn try_write_op(&self, op: impl FnOnce() -> io::Result<usize>) -> io::Result<usize>;
}

/// Both socket types, through one macro: their tokio APIs match but share no trait.
macro_rules! socket_sink {
    ($stream:ty, $half:ty) => {
        impl Socket for $stream {
            async fn ready(&self) -> io::Result<()> {
                self.writable().await
            }
            fn try_write_op(&self, op: impl FnOnce() -> io::Result<usize>) -> io::Result<usize> {
                self.try_io(Interest::WRITABLE, op)
            }
        }

        impl ReplySink for $half {
            fn can_send_file(&self) -> bool {
                true
            }
            fn send_file(&self, file: &File, offset: u64, len: usize) -> impl Future<Output = io::Result<()>> + Send {
                send_file_all::<$stream>(self.as_ref(), file, offset, len)
            }
            fn send_more(&self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send {
                send_more_all::<$stream>(self.as_ref(), buf)
            }
        }
    };
}

socket_sink!(TcpStream, tcp::OwnedWriteHalf);
socket_sink!(UnixStream, unix::OwnedWriteHalf);

/// Repeat `step` (bytes still to send → bytes sent) until `len` bytes went out, waiting for
/// writability in between.
async fn send_until_done<S: Socket>(
    sock: &S,
    len: usize,
    mut step: impl FnMut(usize) -> io::Result<usize> + Send,
) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        sock.ready().await?;
        match sock.try_write_op(|| step(left)) {
            // Zero progress on a non-empty request: the file ended early (it cannot, as the range
            // was checked) or the socket is gone; never spin on it.
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "no progress sending a reply")),
            Ok(n) => left -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `sendfile` of `len` bytes of `file` at `offset`.
async fn send_file_all<S: Socket>(sock: &S, file: &File, offset: u64, len: usize) -> io::Result<()> {
    let mut pos = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(nix::libc::EOVERFLOW))?;
    send_until_done(sock, len, |left| {
        nix::sys::sendfile::sendfile64(sock, file, Some(&mut pos), left).map_err(io::Error::from)
    })
    .await
}

/// `send(MSG_MORE)` of all of `buf`.
async fn send_more_all<S: Socket>(sock: &S, buf: &[u8]) -> io::Result<()> {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    let flags = MsgFlags::from_bits_retain(nix::libc::MSG_MORE) | MsgFlags::MSG_NOSIGNAL;
    let fd = sock.as_fd().as_raw_fd();
    send_until_done(sock, buf.len(), |left| send(fd, &buf[buf.len() - left..], flags).map_err(io::Error::from)).await
}

/// Any other stream (in-memory pipes in tests): bytes only.
impl<S: AsyncWrite + Send + 'static> ReplySink for WriteHalf<S> {
    fn can_send_file(&self) -> bool {
        false
    }
    fn send_file(&self, _file: &File, _offset: u64, _len: usize) -> impl Future<Output = io::Result<()>> + Send {
        std::future::ready(Err(io::Error::from(io::ErrorKind::Unsupported)))
    }
    fn send_more(&self, _buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send {
        std::future::ready(Err(io::Error::from(io::ErrorKind::Unsupported)))
    }
}
