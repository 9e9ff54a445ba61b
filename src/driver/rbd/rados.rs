//! Safe wrappers over the librados/librbd calls of `ffi.rs`: a cluster handle (one per
//! configuration, shared by the pools that name it), an I/O context on one RADOS pool, and an
//! open image. Errors are `io::Error`s carrying the errno librbd returned (`ENOENT`, `EEXIST`,
//! `ENOTEMPTY`, …), so callers can tell "already done" from a failure.
//!
//! Lifetimes: an `Image` holds an `Arc` of its `IoCtx`, which holds an `Arc` of its `Cluster`,
//! so a handle is never destroyed while something opened from it is alive. librados and librbd
//! handles are thread-safe (librbd serialises operations on an image internally), which is
//! why the wrappers are `Send + Sync`.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::raw::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::ptr;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::ffi;

fn check(r: c_int) -> io::Result<c_int> {
    if r < 0 {
        Err(io::Error::from_raw_os_error(-r))
    } else {
        Ok(r)
    }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("NUL byte in {s:?}")))
}

/// Copy a C string owned by librbd (NULL reads as empty).
fn owned(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: librbd fills these fields with NUL-terminated strings it allocated; they stay
    // valid until the matching cleanup call, which the callers make after copying.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Which cluster, as whom: the key of the shared cluster handles.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterKey {
    /// The ceph.conf to read.
    pub conf: PathBuf,
    /// The client id (`cinderblock` for `client.cinderblock`).
    pub client_id: String,
    /// The keyring, when not the one ceph.conf names.
    pub keyring: Option<PathBuf>,
}

/// A connected cluster handle (`rados_t`).
#[derive(Debug)]
pub struct Cluster {
    h: ffi::rados_t,
    key: ClusterKey,
}

// SAFETY: a rados_t may be used from any thread concurrently (librados is thread-safe); it is
// only shut down in Drop, when no IoCtx (each holds an Arc<Cluster>) is left.
unsafe impl Send for Cluster {}
// SAFETY: as above; every method takes &self and librados locks internally.
unsafe impl Sync for Cluster {}

impl Cluster {
    /// The handle for `key`: the live one if any pool already opened it, else a new
    /// connection (one handle per configuration).
    pub fn connect(key: &ClusterKey) -> io::Result<Arc<Cluster>> {
        static HANDLES: OnceLock<Mutex<HashMap<ClusterKey, Weak<Cluster>>>> = OnceLock::new();
        let mut handles = HANDLES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = handles.get(key).and_then(Weak::upgrade) {
            return Ok(c);
        }
        handles.retain(|_, w| w.strong_count() > 0);
        let c = Arc::new(Self::connect_new(key)?);
        handles.insert(key.clone(), Arc::downgrade(&c));
        Ok(c)
    }

    fn connect_new(key: &ClusterKey) -> io::Result<Cluster> {
        let id = cstr(&key.client_id)?;
        let mut h: ffi::rados_t = ptr::null_mut();
        // SAFETY: `h` is a valid out-pointer; `id` a NUL-terminated string alive for the call.
        check(unsafe { ffi::rados_create(&mut h, id.as_ptr()) })?;
        // From here on Drop shuts the handle down, also when configuring or connecting fails.
        let c = Cluster { h, key: key.clone() };
        let conf = cstr(&key.conf.to_string_lossy())?;
        // SAFETY: `c.h` is a created, unconnected handle; `conf` is alive for the call.
        check(unsafe { ffi::rados_conf_read_file(c.h, conf.as_ptr()) })
            .map_err(|e| io::Error::new(e.kind(), format!("read {}: {e}", key.conf.display())))?;
        let mut opts: Vec<(&str, String)> = vec![
            // Fail instead of hanging for ever when the monitors or OSDs are unreachable.
            ("client_mount_timeout", "30".into()),
            ("rados_mon_op_timeout", "60".into()),
            ("rados_osd_op_timeout", "300".into()),
        ];
        if let Some(k) = &key.keyring {
            opts.push(("keyring", k.to_string_lossy().into_owned()));
        }
        for (k, v) in opts {
            let (ck, cv) = (cstr(k)?, cstr(&v)?);
            // SAFETY: unconnected handle; both strings alive for the call.
            check(unsafe { ffi::rados_conf_set(c.h, ck.as_ptr(), cv.as_ptr()) })
                .map_err(|e| io::Error::new(e.kind(), format!("ceph option {k}: {e}")))?;
        }
        // SAFETY: a configured handle; connect blocks until the monitors answer or time out.
        check(unsafe { ffi::rados_connect(c.h) })
            .map_err(|e| io::Error::new(e.kind(), format!("connect to the cluster of {}: {e}", key.conf.display())))?;
        Ok(c)
    }

    /// Raw size and free space of the cluster, in bytes.
    pub fn stat(&self) -> io::Result<(u64, u64)> {
        let mut st = ffi::rados_cluster_stat_t::default();
        // SAFETY: connected handle; `st` is a valid out-pointer of the C struct's layout.
        check(unsafe { ffi::rados_cluster_stat(self.h, &mut st) })?;
        Ok((st.kb.saturating_mul(1024), st.kb_avail.saturating_mul(1024)))
    }

    /// Run a monitor command (`{"prefix": "df", "format": "json"}`) and return its output.
    pub fn mon_command(&self, cmd: &str) -> io::Result<String> {
        let c = cstr(cmd)?;
        let mut cmds = [c.as_ptr()];
        let (mut out, mut outlen, mut status, mut statuslen) = (ptr::null_mut(), 0usize, ptr::null_mut(), 0usize);
        // SAFETY: connected handle; `cmds` is one NUL-terminated command alive for the call; no
        // input buffer; the out-pointers are valid and what librados allocates into them is
        // freed below, once.
        let r = unsafe {
            ffi::rados_mon_command(
                self.h,
                cmds.as_mut_ptr(),
                1,
                ptr::null(),
                0,
                &mut out,
                &mut outlen,
                &mut status,
                &mut statuslen,
            )
        };
        let take = |p: *mut c_char, len: usize| -> String {
            if p.is_null() {
                return String::new();
            }
            // SAFETY: librados filled `p` with `len` bytes (not necessarily NUL-terminated).
            let text = String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }).into_owned();
            // SAFETY: allocated by rados_mon_command, freed once, not used after.
            unsafe { ffi::rados_buffer_free(p) };
            text
        };
        let (out, status) = (take(out, outlen), take(status, statuslen));
        if r < 0 {
            let e = io::Error::from_raw_os_error(-r);
            return Err(io::Error::new(e.kind(), format!("mon command {cmd}: {e}: {status}")));
        }
        Ok(out)
    }

    /// An I/O context on the RADOS pool `pool`.
    pub fn ioctx(self: &Arc<Self>, pool: &str) -> io::Result<Arc<IoCtx>> {
        let name = cstr(pool)?;
        let mut io: ffi::rados_ioctx_t = ptr::null_mut();
        // SAFETY: connected handle; `io` a valid out-pointer; `name` alive for the call.
        check(unsafe { ffi::rados_ioctx_create(self.h, name.as_ptr(), &mut io) })
            .map_err(|e| io::Error::new(e.kind(), format!("RADOS pool {pool}: {e}")))?;
        Ok(Arc::new(IoCtx { io, cluster: Arc::clone(self) }))
    }

    /// Which configuration this handle was made from.
    pub fn key(&self) -> &ClusterKey {
        &self.key
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: the handle was created by rados_create and nothing opened from it is alive
        // (each IoCtx holds an Arc<Cluster>); it is not used after this.
        unsafe { ffi::rados_shutdown(self.h) }
    }
}

/// An I/O context on one RADOS pool (`rados_ioctx_t`).
#[derive(Debug)]
pub struct IoCtx {
    io: ffi::rados_ioctx_t,
    cluster: Arc<Cluster>,
}

// SAFETY: an ioctx may be shared between threads (librados is thread-safe and the pool and
// namespace are never changed after creation); destroyed only in Drop, after every Image
// (each holds an Arc<IoCtx>) is gone.
unsafe impl Send for IoCtx {}
// SAFETY: as above.
unsafe impl Sync for IoCtx {}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: created by rados_ioctx_create, no image opened from it is alive.
        unsafe { ffi::rados_ioctx_destroy(self.io) }
    }
}

/// Image creation options, destroyed on drop.
struct Opts(ffi::rbd_image_options_t);

impl Opts {
    fn new(vals: &[(c_int, u64)]) -> io::Result<Opts> {
        let mut o: ffi::rbd_image_options_t = ptr::null_mut();
        // SAFETY: `o` is a valid out-pointer.
        unsafe { ffi::rbd_image_options_create(&mut o) };
        let opts = Opts(o);
        for (k, v) in vals {
            // SAFETY: `opts.0` was created above; the option ids are uint64 options.
            check(unsafe { ffi::rbd_image_options_set_uint64(opts.0, *k, *v) })?;
        }
        Ok(opts)
    }
}

impl Drop for Opts {
    fn drop(&mut self) {
        // SAFETY: created by rbd_image_options_create, not used after this.
        unsafe { ffi::rbd_image_options_destroy(self.0) }
    }
}

/// One entry of the RBD trash.
#[derive(Debug, Clone)]
pub struct TrashEntry {
    /// The image id (the trash is keyed by id).
    pub id: String,
    /// The name it had.
    pub name: String,
}

impl IoCtx {
    /// The cluster this context belongs to.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Write the whole RADOS object `oid`.
    pub fn write_full(&self, oid: &str, data: &[u8]) -> io::Result<()> {
        let o = cstr(oid)?;
        // SAFETY: valid ioctx; `o` and `data` alive for the call, `data.len()` bytes readable.
        check(unsafe { ffi::rados_write_full(self.io, o.as_ptr(), data.as_ptr().cast(), data.len()) }).map(|_| ())
    }

    /// Read up to `max` bytes of the RADOS object `oid`; `None` when it does not exist.
    pub fn read(&self, oid: &str, max: usize) -> io::Result<Option<Vec<u8>>> {
        let o = cstr(oid)?;
        let mut buf = vec![0u8; max];
        // SAFETY: valid ioctx; `buf` has `max` writable bytes, alive for the call.
        match check(unsafe { ffi::rados_read(self.io, o.as_ptr(), buf.as_mut_ptr().cast(), max, 0) }) {
            Ok(n) => {
                buf.truncate(n as usize);
                Ok(Some(buf))
            }
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Remove the RADOS object `oid` (a missing one is success).
    pub fn remove(&self, oid: &str) -> io::Result<()> {
        let o = cstr(oid)?;
        // SAFETY: valid ioctx; `o` alive for the call.
        match check(unsafe { ffi::rados_remove(self.io, o.as_ptr()) }) {
            Err(e) if e.raw_os_error() != Some(libc_enoent()) => Err(e),
            _ => Ok(()),
        }
    }

    /// Names of every image in the pool.
    pub fn list_images(&self) -> io::Result<Vec<String>> {
        let mut max: usize = 64;
        loop {
            let mut specs = vec![ffi::rbd_image_spec_t { id: ptr::null_mut(), name: ptr::null_mut() }; max];
            let mut n = max;
            // SAFETY: `specs` has `n` entries librbd may fill; on -ERANGE it fills none and sets
            // `n` to the count needed.
            let r = unsafe { ffi::rbd_list2(self.io, specs.as_mut_ptr(), &mut n) };
            if r == -(nix::errno::Errno::ERANGE as c_int) {
                max = n.max(max * 2);
                continue;
            }
            check(r)?;
            let names = specs[..n].iter().map(|s| owned(s.name)).collect();
            // SAFETY: the first `n` entries were filled by rbd_list2 and are freed once, here.
            unsafe { ffi::rbd_image_spec_list_cleanup(specs.as_mut_ptr(), n) };
            return Ok(names);
        }
    }

    /// Create the image `name` of `size` bytes with objects of `1 << order` bytes and the
    /// pool's default features (layering, exclusive-lock, object-map, fast-diff, deep-flatten).
    pub fn create(&self, name: &str, size: u64, order: u8) -> io::Result<()> {
        let n = cstr(name)?;
        let opts = Opts::new(&[(ffi::RBD_IMAGE_OPTION_ORDER, u64::from(order))])?;
        // SAFETY: valid ioctx, options and name, alive for the call.
        check(unsafe { ffi::rbd_create4(self.io, n.as_ptr(), size, opts.0) }).map(|_| ())
    }

    /// Clone `parent@snap` as `child` (clone format 2: the snapshot needs no protection, and
    /// removing it while clones depend on it moves it to the trash namespace).
    pub fn clone_image(&self, parent: &str, snap: &str, child: &str, order: u8) -> io::Result<()> {
        let (p, s, c) = (cstr(parent)?, cstr(snap)?, cstr(child)?);
        let opts =
            Opts::new(&[(ffi::RBD_IMAGE_OPTION_CLONE_FORMAT, 2), (ffi::RBD_IMAGE_OPTION_ORDER, u64::from(order))])?;
        // SAFETY: parent and child in this same ioctx; every string and the options alive for
        // the call.
        check(unsafe { ffi::rbd_clone3(self.io, p.as_ptr(), s.as_ptr(), self.io, c.as_ptr(), opts.0) }).map(|_| ())
    }

    /// Remove the image `name` (fails with ENOTEMPTY while it has snapshots, EBUSY while open
    /// elsewhere).
    pub fn remove_image(&self, name: &str) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: valid ioctx; `n` alive for the call.
        check(unsafe { ffi::rbd_remove(self.io, n.as_ptr()) }).map(|_| ())
    }

    /// Rename an image.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (f, t) = (cstr(from)?, cstr(to)?);
        // SAFETY: valid ioctx; both names alive for the call.
        check(unsafe { ffi::rbd_rename(self.io, f.as_ptr(), t.as_ptr()) }).map(|_| ())
    }

    /// Move an image to the RBD trash, removable at once.
    pub fn trash_move(&self, name: &str) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: valid ioctx; `n` alive for the call.
        check(unsafe { ffi::rbd_trash_move(self.io, n.as_ptr(), 0) }).map(|_| ())
    }

    /// The images in the RBD trash.
    pub fn trash_list(&self) -> io::Result<Vec<TrashEntry>> {
        let mut max: usize = 16;
        loop {
            let blank = ffi::rbd_trash_image_info_t {
                id: ptr::null_mut(),
                name: ptr::null_mut(),
                source: 0,
                deletion_time: 0,
                deferment_end_time: 0,
            };
            let mut entries = vec![blank; max];
            let mut n = max;
            // SAFETY: `entries` has `n` slots; on -ERANGE none is filled and `n` is the count
            // needed.
            let r = unsafe { ffi::rbd_trash_list(self.io, entries.as_mut_ptr(), &mut n) };
            if r == -(nix::errno::Errno::ERANGE as c_int) {
                max = n.max(max * 2);
                continue;
            }
            check(r)?;
            let out = entries[..n].iter().map(|e| TrashEntry { id: owned(e.id), name: owned(e.name) }).collect();
            // SAFETY: the first `n` entries were filled by rbd_trash_list; freed once, here.
            unsafe { ffi::rbd_trash_list_cleanup(entries.as_mut_ptr(), n) };
            return Ok(out);
        }
    }

    /// Remove an image from the trash (fails while clones depend on it).
    pub fn trash_remove(&self, id: &str) -> io::Result<()> {
        let i = cstr(id)?;
        // SAFETY: valid ioctx; `i` alive for the call.
        check(unsafe { ffi::rbd_trash_remove(self.io, i.as_ptr(), false) }).map(|_| ())
    }

    /// Open the image `name`, at its head or at snapshot `snap`.
    pub fn open(self: &Arc<Self>, name: &str, snap: Option<&str>, read_only: bool) -> io::Result<Image> {
        let n = cstr(name)?;
        let s = snap.map(cstr).transpose()?;
        let sp = s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let mut h: ffi::rbd_image_t = ptr::null_mut();
        // SAFETY: valid ioctx; `h` a valid out-pointer; strings alive for the call (NULL snap
        // = the head).
        let r = unsafe {
            if read_only {
                ffi::rbd_open_read_only(self.io, n.as_ptr(), &mut h, sp)
            } else {
                ffi::rbd_open(self.io, n.as_ptr(), &mut h, sp)
            }
        };
        check(r)?;
        Ok(Image { h, _io: Arc::clone(self) })
    }

    /// Open the image with id `id` read-only at its head (images in the trash have no name).
    pub fn open_by_id(self: &Arc<Self>, id: &str) -> io::Result<Image> {
        let i = cstr(id)?;
        let mut h: ffi::rbd_image_t = ptr::null_mut();
        // SAFETY: valid ioctx; `h` a valid out-pointer; `i` alive; NULL snap = the head.
        check(unsafe { ffi::rbd_open_by_id_read_only(self.io, i.as_ptr(), &mut h, ptr::null()) })?;
        Ok(Image { h, _io: Arc::clone(self) })
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

/// A snapshot of an image.
#[derive(Debug, Clone)]
pub struct SnapInfo {
    /// Its name.
    pub name: String,
    /// The image's size when it was taken.
    pub size: u64,
}

/// The parent of a clone.
#[derive(Debug, Clone)]
pub struct Parent {
    /// The parent image's id.
    pub image_id: String,
    /// Its name (empty or stale when the parent is in the trash).
    pub image_name: String,
}

/// An open image (`rbd_image_t`), closed on drop.
#[derive(Debug)]
pub struct Image {
    h: ffi::rbd_image_t,
    _io: Arc<IoCtx>,
}

// SAFETY: librbd image handles may be used from several threads (the ImageCtx locks
// internally); closed only in Drop.
unsafe impl Send for Image {}
// SAFETY: as above.
unsafe impl Sync for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: opened by rbd_open*, not used after this.
        let r = unsafe { ffi::rbd_close(self.h) };
        if r < 0 {
            tracing::warn!(error = %io::Error::from_raw_os_error(-r), "rbd_close failed");
        }
    }
}

extern "C" fn collect_extent(off: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `&mut Vec<(u64, u64)>` that `Image::extents` passes, alive and not
    // otherwise borrowed while rbd_diff_iterate2 runs (it calls back on the caller's thread).
    let v = unsafe { &mut *(arg as *mut Vec<(u64, u64)>) };
    if exists != 0 {
        v.push((off, len as u64));
    }
    0
}

impl Image {
    /// The raw handle, for the asynchronous calls of `aio.rs` (valid while `self` lives).
    pub(crate) fn raw(&self) -> ffi::rbd_image_t {
        self.h
    }

    /// Size in bytes.
    pub fn size(&self) -> io::Result<u64> {
        let mut s = 0u64;
        // SAFETY: open image; `s` a valid out-pointer.
        check(unsafe { ffi::rbd_get_size(self.h, &mut s) })?;
        Ok(s)
    }

    /// Resize to `size` bytes.
    pub fn resize(&self, size: u64) -> io::Result<()> {
        // SAFETY: open image.
        check(unsafe { ffi::rbd_resize(self.h, size) }).map(|_| ())
    }

    /// Copy the parent's data into this clone and detach it.
    pub fn flatten(&self) -> io::Result<()> {
        // SAFETY: open image.
        check(unsafe { ffi::rbd_flatten(self.h) }).map(|_| ())
    }

    /// The parent image of a clone, `None` for an image that is not one.
    pub fn parent(&self) -> io::Result<Option<Parent>> {
        let mut img = ffi::rbd_linked_image_spec_t {
            pool_id: 0,
            pool_name: ptr::null_mut(),
            pool_namespace: ptr::null_mut(),
            image_id: ptr::null_mut(),
            image_name: ptr::null_mut(),
            trash: false,
        };
        let mut snap = ffi::rbd_snap_spec_t { id: 0, namespace_type: 0, name: ptr::null_mut() };
        // SAFETY: open image; both out-structs have the C layout and are freed below only
        // when the call filled them (success).
        let r = unsafe { ffi::rbd_get_parent(self.h, &mut img, &mut snap) };
        if r == -libc_enoent() {
            return Ok(None);
        }
        check(r)?;
        let p = Parent { image_id: owned(img.image_id), image_name: owned(img.image_name) };
        // SAFETY: filled by rbd_get_parent; freed once.
        unsafe {
            ffi::rbd_linked_image_spec_cleanup(&mut img);
            ffi::rbd_snap_spec_cleanup(&mut snap);
        }
        Ok(Some(p))
    }

    /// The image's snapshots (user namespace).
    pub fn snaps(&self) -> io::Result<Vec<SnapInfo>> {
        let mut max: c_int = 16;
        loop {
            let blank = ffi::rbd_snap_info_t { id: 0, size: 0, name: ptr::null() };
            let mut v = vec![blank; max as usize];
            let mut n = max;
            // SAFETY: `v` has `n` slots (librbd needs count + 1 and says so with -ERANGE,
            // setting `n`, filling nothing).
            let r = unsafe { ffi::rbd_snap_list(self.h, v.as_mut_ptr(), &mut n) };
            if r == -(nix::errno::Errno::ERANGE as c_int) {
                max = n.max(max * 2);
                continue;
            }
            let count = check(r)? as usize;
            let out = v[..count].iter().map(|s| SnapInfo { name: owned(s.name), size: s.size }).collect();
            // SAFETY: filled by rbd_snap_list; freed once.
            unsafe { ffi::rbd_snap_list_end(v.as_mut_ptr()) };
            return Ok(out);
        }
    }

    /// Whether the snapshot `name` exists.
    pub fn snap_exists(&self, name: &str) -> io::Result<bool> {
        let n = cstr(name)?;
        let mut e = false;
        // SAFETY: open image; `n` alive; `e` a valid out-pointer.
        check(unsafe { ffi::rbd_snap_exists(self.h, n.as_ptr(), &mut e) })?;
        Ok(e)
    }

    /// Take the snapshot `name`.
    pub fn snap_create(&self, name: &str) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: open image; `n` alive for the call.
        check(unsafe { ffi::rbd_snap_create(self.h, n.as_ptr()) }).map(|_| ())
    }

    /// Remove the snapshot `name` (with clone-v2 children it moves to the trash namespace and
    /// goes when the last child does).
    pub fn snap_remove(&self, name: &str) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: open image; `n` alive for the call.
        check(unsafe { ffi::rbd_snap_remove(self.h, n.as_ptr()) }).map(|_| ())
    }

    /// Roll the head back to the snapshot `name` (also its size).
    pub fn snap_rollback(&self, name: &str) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: open image; `n` alive for the call.
        check(unsafe { ffi::rbd_snap_rollback(self.h, n.as_ptr()) }).map(|_| ())
    }

    /// The image metadata value of `key`, `None` when unset.
    pub fn metadata_get(&self, key: &str) -> io::Result<Option<String>> {
        let k = cstr(key)?;
        let mut len: usize = 256;
        loop {
            let mut buf = vec![0u8; len];
            let mut n = len;
            // SAFETY: open image; `buf` has `n` writable bytes; on -ERANGE `n` is the size needed.
            let r = unsafe { ffi::rbd_metadata_get(self.h, k.as_ptr(), buf.as_mut_ptr().cast(), &mut n) };
            if r == -(nix::errno::Errno::ERANGE as c_int) {
                len = n.max(len * 2);
                continue;
            }
            if r == -libc_enoent() {
                return Ok(None);
            }
            check(r)?;
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned()));
        }
    }

    /// Set image metadata.
    pub fn metadata_set(&self, key: &str, value: &str) -> io::Result<()> {
        let (k, v) = (cstr(key)?, cstr(value)?);
        // SAFETY: open image; strings alive for the call.
        check(unsafe { ffi::rbd_metadata_set(self.h, k.as_ptr(), v.as_ptr()) }).map(|_| ())
    }

    /// Remove image metadata (unset is success).
    pub fn metadata_remove(&self, key: &str) -> io::Result<()> {
        let k = cstr(key)?;
        // SAFETY: open image; `k` alive for the call.
        match check(unsafe { ffi::rbd_metadata_remove(self.h, k.as_ptr()) }) {
            Err(e) if e.raw_os_error() != Some(libc_enoent()) => Err(e),
            _ => Ok(()),
        }
    }

    /// The allocated extents `(offset, length)` of the open version (head or snapshot):
    /// `include_parent` adds what a clone reads from its parent, `whole_object` reports whole
    /// objects from the object map (fast-diff: cheap, object granularity) instead of listing
    /// each object's extents.
    pub fn extents(&self, include_parent: bool, whole_object: bool) -> io::Result<Vec<(u64, u64)>> {
        let len = self.size()?;
        let mut v: Vec<(u64, u64)> = Vec::new();
        // SAFETY: open image; NULL from-snapshot = since the beginning; the callback gets `&mut
        // v` as its argument, alive for the call and touched by nothing else meanwhile.
        check(unsafe {
            ffi::rbd_diff_iterate2(
                self.h,
                ptr::null(),
                0,
                len,
                u8::from(include_parent),
                u8::from(whole_object),
                collect_extent,
                (&mut v as *mut Vec<(u64, u64)>).cast(),
            )
        })?;
        Ok(v)
    }

    /// Read exactly `buf.len()` bytes at `off`.
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: open image; `rest` has `rest.len()` writable bytes alive for the call.
            let r = unsafe { ffi::rbd_read(self.h, off + done as u64, rest.len(), rest.as_mut_ptr().cast()) };
            if r < 0 {
                return Err(io::Error::from_raw_os_error(-r as i32));
            }
            if r == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("read past the image's end at {off}"),
                ));
            }
            done += r as usize;
        }
        Ok(())
    }

    /// Write all of `buf` at `off`.
    pub fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let rest = &buf[done..];
            // SAFETY: open image; `rest` readable for `rest.len()` bytes during the call.
            let r = unsafe { ffi::rbd_write(self.h, off + done as u64, rest.len(), rest.as_ptr().cast()) };
            if r < 0 {
                return Err(io::Error::from_raw_os_error(-r as i32));
            }
            if r == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, format!("write past the image's end at {off}")));
            }
            done += r as usize;
        }
        Ok(())
    }

    /// Discard a range (it then reads as zeroes).
    pub fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        // SAFETY: open image.
        check(unsafe { ffi::rbd_discard(self.h, off, len) }).map(|_| ())
    }

    /// Make every completed write durable.
    pub fn flush(&self) -> io::Result<()> {
        // SAFETY: open image.
        check(unsafe { ffi::rbd_flush(self.h) }).map(|_| ())
    }
}
