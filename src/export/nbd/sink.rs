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

/// A socket's readiness and `sendfile` on its descriptor.
trait SendfileSocket: std::os::fd::AsFd + Sync {
    fn ready(&self) -> impl Future<Output = io::Result<()>> + Send;
    fn try_sendfile(&self, file: &File, offset: &mut i64, len: usize) -> io::Result<usize>;
    fn try_send_more(&self, buf: &[u8]) -> io::Result<usize>;
}

impl SendfileSocket for TcpStream {
    async fn ready(&self) -> io::Result<()> {
        self.writable().await
    }
    fn try_sendfile(&self, file: &File, offset: &mut i64, len: usize) -> io::Result<usize> {
        self.try_io(Interest::WRITABLE, || sendfile(self, file, offset, len))
    }
    fn try_send_more(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_io(Interest::WRITABLE, || send_more(self, buf))
    }
}

impl SendfileSocket for UnixStream {
    async fn ready(&self) -> io::Result<()> {
        self.writable().await
    }
    fn try_sendfile(&self, file: &File, offset: &mut i64, len: usize) -> io::Result<usize> {
        self.try_io(Interest::WRITABLE, || sendfile(self, file, offset, len))
    }
    fn try_send_more(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_io(Interest::WRITABLE, || send_more(self, buf))
    }
}

fn sendfile(sock: impl std::os::fd::AsFd, file: &File, offset: &mut i64, len: usize) -> io::Result<usize> {
    nix::sys::sendfile::sendfile64(sock, file, Some(offset), len).map_err(io::Error::from)
}

fn send_more(sock: &impl std::os::fd::AsFd, buf: &[u8]) -> io::Result<usize> {
    use nix::sys::socket::{send, MsgFlags};
    use std::os::fd::AsRawFd;
    send(sock.as_fd().as_raw_fd(), buf, MsgFlags::from_bits_retain(nix::libc::MSG_MORE) | MsgFlags::MSG_NOSIGNAL)
        .map_err(io::Error::from)
}

/// Loop `send(MSG_MORE)` until all of `buf` went out.
async fn send_all_more<S: SendfileSocket>(sock: &S, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        sock.ready().await?;
        match sock.try_send_more(buf) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Loop `sendfile` until `len` bytes went out, waiting for writability in between.
async fn send_all<S: SendfileSocket>(sock: &S, file: &File, offset: u64, len: usize) -> io::Result<()> {
    let mut pos = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(nix::libc::EOVERFLOW))?;
    let mut left = len;
    while left > 0 {
        sock.ready().await?;
        match sock.try_sendfile(file, &mut pos, left) {
            // The file ended early: it cannot, as the range was checked; never spin on it.
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "sendfile: file shorter than the export"))
            }
            Ok(n) => left -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl ReplySink for tcp::OwnedWriteHalf {
    fn can_send_file(&self) -> bool {
        true
    }
    fn send_file(&self, file: &File, offset: u64, len: usize) -> impl Future<Output = io::Result<()>> + Send {
        send_all::<TcpStream>(self.as_ref(), file, offset, len)
    }
    fn send_more(&self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send {
        send_all_more::<TcpStream>(self.as_ref(), buf)
    }
}

impl ReplySink for unix::OwnedWriteHalf {
    fn can_send_file(&self) -> bool {
        true
    }
    fn send_file(&self, file: &File, offset: u64, len: usize) -> impl Future<Output = io::Result<()>> + Send {
        send_all::<UnixStream>(self.as_ref(), file, offset, len)
    }
    fn send_more(&self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send {
        send_all_more::<UnixStream>(self.as_ref(), buf)
    }
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
