//! Read-only memory maps of whole files that nothing writes any more.
//!
//! A map reads a file's pages where the page cache holds them: no system
//! call and no copy per read, which matters to a reader that visits many
//! small extents of a file in no particular order. The price:
//!
//! * The file must not change while it is mapped: bytes written to it
//!   would show through, and a read of a page cut off by truncation raises
//!   `SIGBUS`. Only map files that this process wrote and made immutable
//!   (such as finished layer files), and keep each map no longer than the
//!   task that needs it.
//! * A page that the kernel cannot read (a disk error) raises `SIGBUS`
//!   where `pread` returns an error. Use a map only while
//!   [`FileMap::is_resident`] says every page is in memory, which a page
//!   that failed to read never is: then only a page evicted meanwhile and
//!   then unreadable can fault, and after a restart the file is not
//!   resident, so the reader falls back to `pread` and reports the error.

use std::fs::File;
use std::io;
use std::ptr::NonNull;

/// A whole file mapped read-only into memory; unmapped when dropped.
#[derive(Debug)]
pub struct FileMap {
    /// Start of the mapping; dangling (never dereferenced) when `len` is 0.
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; reading
// shared immutable memory from any thread is sound.
unsafe impl Send for FileMap {}
// SAFETY: as above: `&FileMap` only gives out shared reads.
unsafe impl Sync for FileMap {}

impl FileMap {
    /// Maps the first `len` bytes of `file`, which must be at least that
    /// long and must not change while mapped (see the module documentation).
    pub fn new(file: &File, len: u64) -> io::Result<FileMap> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
        if len == 0 {
            return Ok(FileMap {
                ptr: NonNull::dangling(),
                len,
            });
        }
        if file.metadata()?.len() < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("cannot map {len} bytes of a shorter file"),
            ));
        }
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a new private read-only mapping at an address the
            // kernel picks; it aliases no memory of this process. The file
            // descriptor only needs to be open for the call.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                )
            };
            if addr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let ptr = NonNull::new(addr.cast::<u8>())
                .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
            Ok(FileMap { ptr, len })
        }
        #[cfg(not(unix))]
        {
            let _ = file;
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "memory maps are only supported on Unix",
            ))
        }
    }

    /// Whether every page of the map is in memory now (`mincore`).
    pub fn is_resident(&self) -> io::Result<bool> {
        if self.len == 0 {
            return Ok(true);
        }
        #[cfg(unix)]
        {
            // SAFETY: a plain query of the system's configuration.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let page = usize::try_from(page)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| io::Error::other("cannot tell the page size"))?;
            let mut pages = vec![0u8; self.len.div_ceil(page)];
            // SAFETY: `ptr` is the page-aligned start of a mapping of `len`
            // bytes, alive while `self` is; `pages` has one byte per page
            // of it, which is what the kernel writes.
            let rc = unsafe {
                libc::mincore(
                    self.ptr.as_ptr().cast(),
                    self.len,
                    pages.as_mut_ptr().cast(),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(pages.iter().all(|p| p & 1 == 1))
        }
        #[cfg(not(unix))]
        Ok(false)
    }
}

impl AsRef<[u8]> for FileMap {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` readable bytes (or `len` is 0),
        // mapped until `self` is dropped; nothing in this process writes
        // them, and the callers of `new` keep the file unchanged.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        #[cfg(unix)]
        if self.len > 0 {
            // SAFETY: unmaps exactly the mapping made in `new`, which no
            // borrow outlives (`as_ref` borrows `self`).
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_the_file_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        File::create(&path).unwrap().write_all(&data).unwrap();
        let file = File::open(&path).unwrap();
        let map = FileMap::new(&file, data.len() as u64).unwrap();
        drop(file);
        assert_eq!(map.as_ref(), &data[..]);
        let head = FileMap::new(&File::open(&path).unwrap(), 10).unwrap();
        assert_eq!(head.as_ref(), &data[..10]);
        let empty = FileMap::new(&File::open(&path).unwrap(), 0).unwrap();
        assert!(empty.as_ref().is_empty());
    }

    #[test]
    fn residency_follows_the_page_cache() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        file.write_all(&vec![7u8; 1 << 20]).unwrap();
        file.sync_all().unwrap();
        let file = File::open(&path).unwrap();
        let map = FileMap::new(&file, 1 << 20).unwrap();
        // Just written: in the page cache.
        assert!(map.is_resident().unwrap());
        // SAFETY: a plain system call on an open descriptor.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        if map.is_resident().unwrap() {
            // This file system keeps its pages (tmpfs): nothing to evict.
            return;
        }
        // Reading through the map brings the pages back.
        assert!(map.as_ref().iter().all(|b| *b == 7));
        assert!(map.is_resident().unwrap());
    }

    #[test]
    fn a_map_longer_than_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap().write_all(b"short").unwrap();
        let err = FileMap::new(&File::open(&path).unwrap(), 6).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
