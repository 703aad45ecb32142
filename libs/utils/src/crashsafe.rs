//! The one way durable state reaches the disk (STYLE.md point 5).
//!
//! Every durable write is: write a temporary file next to the target, fsync it,
//! rename it over the target, fsync the directory. A crash at any point leaves
//! either the old content or the new one; leftover temporary files carry
//! [`TEMP_SUFFIX`] and are removed at start-up with [`remove_temporaries`].
//!
//! These functions block; async callers run them in `spawn_blocking`.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Suffix of files and directories that are being written and are not yet
/// part of the durable state.
pub const TEMP_SUFFIX: &str = "___temp";

/// Suffix of directories that are being deleted.
pub const DELETED_SUFFIX: &str = "___deleted";

/// `path` with `suffix` appended to its last component.
pub fn path_with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether the last component of `path` marks an unfinished write or delete.
pub fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(TEMP_SUFFIX) || n.ends_with(DELETED_SUFFIX))
}

/// fsyncs a directory so that entries created, renamed or removed in it are
/// durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Asks the kernel to start writing `len` bytes of `file` at `offset` to
/// storage, without waiting (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`). Durability still comes from fsync only; this
/// lets a long write overlap its writeback, so the final fsync finds
/// little left to do (RocksDB's `bytes_per_sync`). Outside Linux it does
/// nothing.
pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "writeback range beyond i64",
            ));
        };
        // SAFETY: a plain system call on a file descriptor that `file`
        // keeps open for the duration of the call; it touches no memory
        // of this process.
        let rc = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
    Ok(())
}

/// A file written front to back, as [`start_writeback`] sees it: the
/// range whose writeback is due each time another `chunk` bytes have
/// reached the kernel.
#[derive(Debug)]
pub struct WritebackCursor {
    chunk: u64,
    started: u64,
}

impl WritebackCursor {
    /// Nothing started yet; a range is due every `chunk` bytes.
    pub fn new(chunk: u64) -> WritebackCursor {
        WritebackCursor { chunk, started: 0 }
    }

    /// Once the first `written` bytes of the file are with the kernel: the
    /// (offset, length) to start writeback of, when `chunk` bytes or more
    /// came since the last range, which it then counts as started.
    pub fn due(&mut self, written: u64) -> Option<(u64, u64)> {
        if written.saturating_sub(self.started) < self.chunk {
            return None;
        }
        let from = std::mem::replace(&mut self.started, written);
        Some((from, written - from))
    }
}

/// Disk space reserved ahead of a file written front to back, a `chunk` at
/// a time (`fallocate` with `FALLOC_FL_KEEP_SIZE`): writes into reserved
/// blocks skip the file system's per-block allocation, about a third of
/// the CPU of a buffered write on ext4. The file's size is unchanged; a
/// finished file must be cut to its length with [`File::set_len`], which
/// returns the reserve beyond it (after its fsync: ext4 waits for the
/// file's writeback first otherwise). Reserving is only an optimization:
/// when the file system refuses (no support, no space), it stops being
/// tried, and the writes themselves report any real failure. Outside Linux
/// it does nothing.
#[derive(Debug)]
pub struct Preallocation {
    chunk: u64,
    reserved: u64,
    enabled: bool,
}

impl Preallocation {
    /// Nothing reserved yet; reserves `chunk` bytes at a time.
    pub fn new(chunk: u64) -> Preallocation {
        Preallocation {
            chunk: chunk.max(1),
            reserved: 0,
            enabled: cfg!(target_os = "linux"),
        }
    }

    /// Before bytes up to `end` reach `file`: reserves the space up to the
    /// next multiple of `chunk` at or above `end`, unless it is reserved.
    pub fn reserve(&mut self, file: &File, end: u64) {
        if !self.enabled || end <= self.reserved {
            return;
        }
        let Some(upto) = end.checked_next_multiple_of(self.chunk) else {
            self.enabled = false;
            return;
        };
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let (Ok(offset), Ok(len)) = (
                libc::off_t::try_from(self.reserved),
                libc::off_t::try_from(upto - self.reserved),
            ) else {
                self.enabled = false;
                return;
            };
            // SAFETY: a plain system call on a descriptor `file` keeps open
            // for the call; it touches no memory of this process.
            let rc = unsafe {
                libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len)
            };
            if rc != 0 {
                self.enabled = false;
                return;
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = file;
        self.reserved = upto;
    }
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p),
        Some(_) => Ok(Path::new(".")),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent directory", path.display()),
        )),
    }
}

/// Atomically replaces (or creates) the file at `path` with `contents`.
///
/// After it returns, the new content survives a crash or power loss; if it
/// fails or the process dies midway, the old content (or no file) remains.
pub fn overwrite(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path_with_suffix(path, TEMP_SUFFIX);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fsync_dir(parent_of(path)?)
}

/// Creates `dir` (which must not exist) and fsyncs its parent.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir(dir)?;
    fsync_dir(parent_of(dir)?)
}

/// Creates `dir` and any missing parents, fsyncing each directory whose
/// entries changed.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            create_dir_all(parent)?;
        }
    }
    match fs::create_dir(dir) {
        Ok(()) => fsync_dir(parent_of(dir)?),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Renames `from` to `to` (same file system) and makes the rename durable.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    let to_parent = parent_of(to)?;
    fsync_dir(to_parent)?;
    let from_parent = parent_of(from)?;
    if from_parent != to_parent {
        fsync_dir(from_parent)?;
    }
    Ok(())
}

/// Removes the directory `dir` and everything below it so that a crash midway
/// leaves no half-deleted directory under its real name: it is first renamed
/// to a [`DELETED_SUFFIX`] name, which start-up clean-up finishes removing.
pub fn remove_dir_all(dir: &Path) -> io::Result<()> {
    let doomed = path_with_suffix(dir, DELETED_SUFFIX);
    rename(dir, &doomed)?;
    fs::remove_dir_all(&doomed)?;
    fsync_dir(parent_of(dir)?)
}

/// Removes the file `path` (already gone is fine) and fsyncs its directory,
/// so that the removal survives a crash.
pub fn remove_file_durably(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fsync_dir(parent_of(path)?)
}

/// Removes leftovers of interrupted writes and deletes (names ending in
/// [`TEMP_SUFFIX`] or [`DELETED_SUFFIX`]) directly inside `dir`. Returns the
/// removed paths.
pub fn remove_temporaries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if !is_temporary(&path) {
            continue;
        }
        if path.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        removed.push(path);
    }
    if !removed.is_empty() {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preallocation_reserves_ahead_and_set_len_returns_the_rest() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let mut p = Preallocation::new(1 << 20);
        p.reserve(&file, 10);
        if !p.enabled {
            // This file system reserves nothing: writes just go on.
            return;
        }
        assert_eq!(p.reserved, 1 << 20);
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), 0, "the size is kept");
        assert!(meta.blocks() * 512 >= 1 << 20, "{} blocks", meta.blocks());
        p.reserve(&file, 1 << 20);
        assert_eq!(p.reserved, 1 << 20, "reserved already");
        p.reserve(&file, (1 << 20) + 1);
        assert_eq!(p.reserved, 2 << 20);
        (&file).write_all(b"hello").unwrap();
        file.set_len(5).unwrap();
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), 5);
        assert!(meta.blocks() * 512 <= 64 << 10, "{} blocks", meta.blocks());
        assert_eq!(fs::read(&path).unwrap(), b"hello");
    }

    #[test]
    fn writeback_cursor_gives_consecutive_ranges_of_a_chunk_or_more() {
        let mut c = WritebackCursor::new(100);
        assert_eq!(c.due(99), None);
        assert_eq!(c.due(100), Some((0, 100)));
        assert_eq!(c.due(150), None);
        assert_eq!(c.due(320), Some((100, 220)));
        assert_eq!(c.due(320), None);
        assert_eq!(c.due(420), Some((320, 100)));
    }

    #[test]
    fn writeback_starts_and_bad_ranges_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let mut f = File::create(&path).unwrap();
        f.write_all(&[7u8; 1 << 16]).unwrap();
        start_writeback(&f, 0, 1 << 16).unwrap();
        // Beyond the end is allowed (nothing to write there).
        start_writeback(&f, 1 << 20, 1 << 16).unwrap();
        f.sync_all().unwrap();
        assert_eq!(fs::read(&path).unwrap(), vec![7u8; 1 << 16]);
        if cfg!(target_os = "linux") {
            let err = start_writeback(&f, u64::MAX, 1).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        }
    }

    #[test]
    fn overwrite_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        overwrite(&path, b"one").unwrap();
        overwrite(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("config")]);
    }

    #[test]
    fn temporaries_are_recognised_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("keep");
        fs::write(&keep, b"x").unwrap();
        let tmp_file = path_with_suffix(&keep, TEMP_SUFFIX);
        fs::write(&tmp_file, b"half").unwrap();
        let del_dir = path_with_suffix(&dir.path().join("gone"), DELETED_SUFFIX);
        fs::create_dir_all(del_dir.join("inner")).unwrap();
        assert!(is_temporary(&tmp_file));
        assert!(is_temporary(&del_dir));
        assert!(!is_temporary(&keep));
        let mut removed = remove_temporaries(dir.path()).unwrap();
        removed.sort();
        assert_eq!(removed.len(), 2);
        assert!(keep.exists() && !tmp_file.exists() && !del_dir.exists());
    }

    #[test]
    fn remove_dir_all_and_rename() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        create_dir_all(&a.join("b/c")).unwrap();
        fs::write(a.join("b/c/f"), b"x").unwrap();
        let moved = dir.path().join("moved");
        rename(&a, &moved).unwrap();
        assert!(moved.join("b/c/f").exists());
        remove_dir_all(&moved).unwrap();
        assert!(!moved.exists());
        assert!(fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
