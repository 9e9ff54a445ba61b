//! Asynchronous image I/O through librbd's `rbd_aio_*` calls, with completions delivered to
//! tokio: the building block of an NBD backend for RBD images (issue 16A.3; the NBD server
//! does not use it yet, so RBD volumes are still refused for export).
//!
//! Ownership (why this is safe when a connection goes away mid-request): every operation's
//! buffer moves into a heap `Op` that the completion owns. The `Op` is handed to librbd as
//! the completion's argument and reclaimed exactly once, in the completion callback, which
//! sends the buffer and result back over a oneshot channel. If the awaiting future was
//! dropped, the send fails and the buffer is freed there, after librbd is done with it; it
//! is never freed while librbd may still write into it. `rbd_close` waits for in-flight
//! operations, so an image handle never goes away under one either.

use std::io;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::ffi;
use super::rados::Image;

/// What a completion owns until librbd is done.
struct Op {
    buf: Vec<u8>,
    done: Option<oneshot::Sender<(isize, Vec<u8>)>>,
}

extern "C" fn complete(c: ffi::rbd_completion_t, arg: *mut c_void) {
    // SAFETY: `arg` is the `Box<Op>` leaked by `AioImage::submit` for this completion; librbd
    // calls this callback once per completion, so the box is reclaimed exactly once.
    let op = unsafe { Box::from_raw(arg.cast::<Op>()) };
    // SAFETY: `c` is the completion this callback belongs to; its value is final now, and it
    // is released once, here (nothing else keeps it).
    let ret = unsafe {
        let r = ffi::rbd_aio_get_return_value(c);
        ffi::rbd_aio_release(c);
        r
    };
    let Op { buf, done } = *op;
    if let Some(tx) = done {
        // A dropped receiver (the request's future went away) frees the buffer here.
        let _ = tx.send((ret, buf));
    }
}

/// An image opened for asynchronous I/O, shared (one handle per export, by every connection).
#[derive(Debug, Clone)]
pub struct AioImage {
    img: Arc<Image>,
}

impl AioImage {
    /// Wrap an open image.
    pub fn new(img: Image) -> AioImage {
        AioImage { img: Arc::new(img) }
    }

    /// The image, for the synchronous calls (size, extents).
    pub fn image(&self) -> &Image {
        &self.img
    }

    /// Start one operation on `buf` and wait for its completion; returns librbd's result and
    /// the buffer back.
    async fn submit(
        &self,
        mut buf: Vec<u8>,
        start: impl FnOnce(ffi::rbd_image_t, *mut c_char, usize, ffi::rbd_completion_t) -> c_int,
    ) -> io::Result<(usize, Vec<u8>)> {
        let (tx, rx) = oneshot::channel();
        // The heap buffer does not move when the Vec (its pointer, length, capacity) moves into
        // the Op, so `data` stays valid for as long as the Op lives.
        let (data, len) = (buf.as_mut_ptr().cast::<c_char>(), buf.len());
        let op = Box::into_raw(Box::new(Op { buf, done: Some(tx) }));
        let mut c: ffi::rbd_completion_t = ptr::null_mut();
        // SAFETY: `op` is a valid pointer handed to the completion as its argument; `c` a
        // valid out-pointer.
        let r = unsafe { ffi::rbd_aio_create_completion(op.cast(), complete, &mut c) };
        if r < 0 {
            // SAFETY: no completion exists, so nothing else can reclaim `op`.
            drop(unsafe { Box::from_raw(op) });
            return Err(io::Error::from_raw_os_error(-r));
        }
        let r = start(self.img.raw(), data, len, c);
        if r < 0 {
            // librbd reports errors through the completion; should a submission fail anyway,
            // whether the callback still runs is unknown, so the Op and the completion are
            // leaked rather than risk freeing memory librbd may use.
            return Err(io::Error::from_raw_os_error(-r));
        }
        let (ret, buf) = rx.await.map_err(|_| io::Error::other("librbd dropped a completion"))?;
        if ret < 0 {
            return Err(io::Error::from_raw_os_error(-(ret as i32)));
        }
        Ok((ret as usize, buf))
    }

    /// Read `len` bytes at `off` (past the end of data they read as zeroes).
    pub async fn read(&self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let (n, mut buf) = self
            .submit(vec![0u8; len], |img, data, len, c| {
                // SAFETY: `data` points to `len` writable bytes owned by the completion's Op
                // until the callback has run; `img` is open for as long as `self`.
                unsafe { ffi::rbd_aio_read(img, off, len, data, c) }
            })
            .await?;
        if n < len {
            buf[n..].fill(0);
        }
        Ok(buf)
    }

    /// Write `data` at `off`; returns the buffer for reuse.
    pub async fn write(&self, off: u64, data: Vec<u8>) -> io::Result<Vec<u8>> {
        let (_, buf) = self
            .submit(data, |img, data, len, c| {
                // SAFETY: `data` points to `len` readable bytes owned by the completion's Op
                // until the callback has run.
                unsafe { ffi::rbd_aio_write(img, off, len, data, c) }
            })
            .await?;
        Ok(buf)
    }

    /// Unmap a range (NBD TRIM): it reads as zeroes afterwards.
    pub async fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        self.submit(Vec::new(), |img, _, _, c| {
            // SAFETY: no buffer is involved; `img` is open.
            unsafe { ffi::rbd_aio_discard(img, off, len, c) }
        })
        .await
        .map(|_| ())
    }

    /// Write zeroes over a range (NBD WRITE_ZEROES).
    pub async fn write_zeroes(&self, off: u64, len: usize) -> io::Result<()> {
        self.submit(Vec::new(), |img, _, _, c| {
            // SAFETY: no buffer is involved; `img` is open.
            unsafe { ffi::rbd_aio_write_zeroes(img, off, len, c, 0, 0) }
        })
        .await
        .map(|_| ())
    }

    /// Make every completed write durable (NBD FLUSH).
    pub async fn flush(&self) -> io::Result<()> {
        self.submit(Vec::new(), |img, _, _, c| {
            // SAFETY: no buffer is involved; `img` is open.
            unsafe { ffi::rbd_aio_flush(img, c) }
        })
        .await
        .map(|_| ())
    }
}
