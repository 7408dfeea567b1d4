//! A SQLite VFS that hands each transaction's WAL frames to the kernel in a
//! few large `pwrite`s instead of two per page.
//!
//! SQLite writes a WAL frame as two writes: its 24-byte header, then the
//! page. A group commit of a few dozen webhooks is about 90 pages, so 180
//! system calls, each an unaligned buffered write that locks and dirties a
//! page-cache folio or two. Measured on the benchmark machine (a C loop that
//! writes 90 frames the way SQLite does, no fsync): 185-222 µs of CPU per
//! commit, against 22-24 µs for the same bytes in one `pwrite`; with the
//! commit's fsync, 423 against 125 µs.
//!
//! This VFS is the platform's default VFS (`unix`) with one change: a file
//! opened as a WAL gets a buffer. Writes that continue the buffered range
//! are appended to it; the buffer goes to the real file (in pieces of up to
//! 128 KiB, the most the unix VFS writes at once) before anything that could observe the file (a read, a sync, a
//! truncate, a size query, a file control, a close), before a write
//! elsewhere, and right after the last frame of a transaction.
//!
//! That last rule is what makes the buffer invisible to every other
//! connection whatever `synchronous` is. A transaction's frames become
//! visible when SQLite publishes the new WAL-index header, after it has
//! written them; with `synchronous = FULL` a sync comes in between, but
//! with `NORMAL` or `OFF` nothing does. So the buffer watches the frames
//! themselves: a frame header whose "database size after commit" field is
//! non-zero is a commit frame (the WAL format), and once one is written
//! every write until the next transaction's first non-commit frame goes
//! straight through (the commit frame's page, and the padding frames SQLite
//! repeats it as on devices without power-safe overwrite, which are commit
//! frames too). A commit frame's header that does not continue the
//! buffered frames (a single-page transaction, or checksums being rewritten
//! in place) is written at once, since its page may never follow.
//!
//! Crash safety is SQLite's own: nothing in the buffer belongs to a
//! committed transaction (its commit frame and everything before it are
//! written before the commit is published, and synced before it returns
//! when `synchronous = FULL`). A process that dies with frames in the
//! buffer loses only frames of a transaction that never committed, which
//! recovery would have discarded anyway.
//!
//! Reads are not served from the buffer: a read flushes first. The writer
//! reads its own WAL only for pages it has evicted from its cache, and
//! during checkpoints it runs itself.

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use rusqlite::ffi;

/// The name to open a connection with (`Connection::open_with_flags_and_vfs`).
pub const NAME: &str = "hookgate-walbuf";
const NAME_C: &CStr = c"hookgate-walbuf";

/// A buffer that reaches this size is written out even mid-transaction, so
/// a bulk transaction's memory stays bounded.
const CAP: usize = 4 << 20;

/// Size of a WAL frame header (the WAL format).
const FRAME_HEADER: c_int = 24;

/// The VFS this one wraps: the platform default at registration.
static REAL: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());
static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();

static WAL_WRITES: AtomicU64 = AtomicU64::new(0);
static FILE_WRITES: AtomicU64 = AtomicU64::new(0);

/// Writes seen so far, process-wide: for tests and for a look at how well
/// the buffer coalesces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Writes SQLite made to WAL files opened through this VFS.
    pub wal_writes: u64,
    /// Writes those turned into on the real files.
    pub file_writes: u64,
}

/// The counters since the process started.
pub fn stats() -> Stats {
    Stats {
        wal_writes: WAL_WRITES.load(Ordering::Relaxed),
        file_writes: FILE_WRITES.load(Ordering::Relaxed),
    }
}

/// Registers the VFS under [`NAME`] (once per process; later calls return
/// the first call's result). It is not made the default: connections ask
/// for it by name.
pub fn register() -> Result<&'static str, rusqlite::Error> {
    let result = REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find with a null name returns the default VFS,
        // a static object owned by SQLite, or null if SQLite could not
        // initialise.
        let real = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
        if real.is_null() {
            return Err(ffi::SQLITE_ERROR);
        }
        REAL.store(real, Ordering::Release);
        // SAFETY: `real` is a valid VFS object that SQLite never frees.
        let mut vfs = unsafe { std::ptr::read(real) };
        // Every method but xOpen is the real VFS's own, called with this
        // object instead of the real one: the unix VFS's methods other than
        // xOpen do not use their VFS argument (os_unix.c), and the fields
        // SQLite itself reads (`mxPathname`, `pAppData`) are copied. xOpen
        // passes the real object on, since the unix VFS keeps it in each
        // file.
        vfs.zName = NAME_C.as_ptr();
        vfs.pNext = std::ptr::null_mut();
        vfs.szOsFile += WAL_FILE_HEADER as c_int;
        vfs.xOpen = Some(open);
        let vfs = Box::into_raw(Box::new(vfs));
        // SAFETY: `vfs` is valid for the rest of the process (leaked) and
        // fully initialised; SQLite links it into its list.
        match unsafe { ffi::sqlite3_vfs_register(vfs, 0) } {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(rc),
        }
    });
    match result {
        Ok(()) => Ok(NAME),
        Err(rc) => Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(*rc),
            Some("registering the hookgate-walbuf VFS".to_owned()),
        )),
    }
}

/// A WAL file: SQLite's file object, then our state, then the real VFS's
/// file object in the rest of the `szOsFile` bytes SQLite allocated.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    buffer: *mut Buffer,
}

/// Where the real file object starts: after `WalFile`, rounded up to 16
/// bytes so the real object is as aligned as SQLite's own allocation.
const WAL_FILE_HEADER: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

#[derive(Default)]
struct Buffer {
    data: Vec<u8>,
    /// The file offset of `data[0]`.
    offset: i64,
    /// A commit frame's header has been written and no frame of a later
    /// transaction yet: writes go straight through.
    after_commit: bool,
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

fn real_vfs() -> *mut ffi::sqlite3_vfs {
    REAL.load(Ordering::Acquire)
}

/// xOpen: WAL files get a buffer; every other file is the real VFS's,
/// opened in place (our `szOsFile` is larger than the real one's).
unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real = real_vfs();
    // SAFETY: `real` was set before this VFS was registered, so before
    // SQLite could call this; it is a valid VFS with an xOpen.
    let real_open = unsafe { (*real).xOpen.expect("a VFS has xOpen") };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // SAFETY: `file` has room for the real VFS's file object (our
        // szOsFile is larger); the arguments are SQLite's own.
        return unsafe { real_open(real, name, file, flags, out_flags) };
    }
    let wal = file.cast::<WalFile>();
    // SAFETY: `file` points to szOsFile bytes, 8-byte aligned (SQLite's
    // allocation), of which the first WAL_FILE_HEADER are ours and the rest
    // the real file object's.
    unsafe {
        (*wal).base.pMethods = std::ptr::null();
        let inner = file
            .cast::<u8>()
            .add(WAL_FILE_HEADER)
            .cast::<ffi::sqlite3_file>();
        let rc = real_open(real, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        (*wal).real = inner;
        (*wal).buffer = Box::into_raw(Box::default());
        (*wal).base.pMethods = &WAL_METHODS;
    }
    ffi::SQLITE_OK
}

/// The parts of a WAL file object.
///
/// # Safety
/// `file` must be a file this VFS opened as a WAL (its methods are
/// `WAL_METHODS`), not yet closed, used by one thread at a time (SQLite
/// serialises calls on one connection's files).
unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, &'a mut Buffer) {
    let wal = file.cast::<WalFile>();
    // SAFETY: per this function's contract.
    unsafe { ((*wal).real, &mut *(*wal).buffer) }
}

/// The real file's method table.
///
/// # Safety
/// `real` must be an open file of the real VFS.
unsafe fn methods<'a>(real: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    // SAFETY: an open file's pMethods is valid until it is closed.
    unsafe { &*(*real).pMethods }
}

/// The most the real VFS writes in one call: the unix VFS masks a write's
/// length to 17 bits (`seekAndWriteFd`), so a longer buffer goes out in
/// pieces of at most this, each ending on a 4 KiB file offset.
const MAX_WRITE: i64 = 0x1ffff;

/// Writes the buffered range to the real file, in as few calls as the
/// real VFS takes (a commit of 90 pages: 3).
///
/// # Safety
/// As for `parts`.
unsafe fn flush(real: *mut ffi::sqlite3_file, buffer: &mut Buffer) -> c_int {
    let mut rc = ffi::SQLITE_OK;
    let mut at = 0usize;
    while at < buffer.data.len() {
        let offset = buffer.offset + at as i64;
        let end = buffer.offset + buffer.data.len() as i64;
        // MAX_WRITE is over 4 KiB, so the piece is never empty.
        let piece = (end.min((offset + MAX_WRITE) & !4095) - offset) as usize;
        FILE_WRITES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the real file is open; the pointer and length (at most
        // MAX_WRITE) describe initialised bytes of the buffer. The real
        // xWrite retries short writes.
        rc = unsafe {
            (methods(real).xWrite.expect("a file has xWrite"))(
                real,
                buffer.data.as_ptr().add(at).cast::<c_void>(),
                piece as c_int,
                offset,
            )
        };
        if rc != ffi::SQLITE_OK {
            break;
        }
        at += piece;
    }
    // Written or failed, the bytes are done with: after a failed write
    // SQLite abandons the transaction, and its next frames are written
    // again from the WAL's last committed frame.
    buffer.data.clear();
    rc
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    WAL_WRITES.fetch_add(1, Ordering::Relaxed);
    // SAFETY: SQLite calls this only on files it opened through `open` with
    // WAL_METHODS, one call at a time per file.
    let (real, buffer) = unsafe { parts(file) };
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // SAFETY: SQLite passes `amount` readable bytes at `data`.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
    let header = amount == FRAME_HEADER;
    let commit = header && bytes[4..8] != [0, 0, 0, 0];
    if header && !commit {
        buffer.after_commit = false;
    }
    let contiguous = !buffer.data.is_empty()
        && i64::try_from(buffer.data.len()).is_ok_and(|n| buffer.offset + n == offset);
    if !buffer.data.is_empty() && !contiguous {
        // SAFETY: as above.
        let rc = unsafe { flush(real, buffer) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if buffer.data.is_empty() {
        buffer.offset = offset;
    }
    buffer.data.extend_from_slice(bytes);
    let now =
        buffer.data.len() >= CAP || (buffer.after_commit && !commit) || (commit && !contiguous);
    if commit {
        buffer.after_commit = true;
    }
    if now {
        // SAFETY: as above.
        return unsafe { flush(real, buffer) };
    }
    ffi::SQLITE_OK
}

/// Defines a method that flushes the buffer and then calls the real
/// file's method of the same name with the same arguments.
macro_rules! flush_then {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: SQLite calls this only on files `open` gave
            // WAL_METHODS, one call at a time per file.
            let (real, buffer) = unsafe { parts(file) };
            // SAFETY: as above.
            let rc = unsafe { flush(real, buffer) };
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            // SAFETY: the real file is open; the arguments are SQLite's.
            unsafe { (methods(real).$method.expect("a file has every version-1 method"))(real $(, $arg)*) }
        }
    };
}

/// Defines a method that calls the real file's method directly.
macro_rules! forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: SQLite calls this only on files `open` gave
            // WAL_METHODS, one call at a time per file.
            let (real, _) = unsafe { parts(file) };
            // SAFETY: the real file is open; the arguments are SQLite's.
            unsafe { (methods(real).$method.expect("a file has every version-1 method"))(real $(, $arg)*) }
        }
    };
}

flush_then!(read, xRead, (data: *mut c_void, amount: c_int, offset: i64));
flush_then!(truncate, xTruncate, (size: i64));
flush_then!(sync, xSync, (flags: c_int));
flush_then!(file_size, xFileSize, (size: *mut i64));
flush_then!(file_control, xFileControl, (op: c_int, arg: *mut c_void));
forward!(lock, xLock, (level: c_int));
forward!(unlock, xUnlock, (level: c_int));
forward!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
forward!(sector_size, xSectorSize, ());
forward!(device_characteristics, xDeviceCharacteristics, ());

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let wal = file.cast::<WalFile>();
    // SAFETY: SQLite closes a file once, after its last other call.
    let (real, buffer) = unsafe { parts(file) };
    // SAFETY: as above.
    let flushed = unsafe { flush(real, buffer) };
    // SAFETY: the real file is open; it is closed exactly once, here.
    let closed = unsafe { (methods(real).xClose.expect("a file has xClose"))(real) };
    // SAFETY: `buffer` came from Box::into_raw in `open` and is freed once;
    // nothing refers to it after this.
    unsafe { drop(Box::from_raw((*wal).buffer)) };
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

#[cfg(test)]
mod tests;
