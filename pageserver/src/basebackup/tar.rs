//! A streaming tar writer: entries are written header first, then their
//! body in pieces, so a relation file never has to sit in memory whole.
//! Headers come from the `tar` crate (ustar format; our paths are short).

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

const BLOCK: usize = 512;

/// Writes a tar archive to `out`.
pub struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
    /// Bytes still owed to the entry being written.
    remaining: u64,
    /// Size of the entry being written, for its padding.
    entry_size: u64,
}

impl<W: Write> TarWriter<W> {
    /// An archive whose entries carry the current time.
    pub fn new(out: W) -> Self {
        let mtime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self {
            out,
            mtime,
            remaining: 0,
            entry_size: 0,
        }
    }

    fn header(&mut self, path: &str, size: u64, kind: tar::EntryType, mode: u32) -> io::Result<()> {
        assert_eq!(self.remaining, 0, "previous tar entry not finished");
        let mut h = tar::Header::new_ustar();
        h.set_path(path)?;
        h.set_size(size);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        self.remaining = size;
        self.entry_size = size;
        Ok(())
    }

    /// A directory entry (`path` without a trailing slash).
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        self.header(&format!("{path}/"), 0, tar::EntryType::Directory, 0o700)
    }

    /// Starts a regular file of `size` bytes; write its body with
    /// [`TarWriter::body`], then call [`TarWriter::end_file`].
    pub fn begin_file(&mut self, path: &str, size: u64) -> io::Result<()> {
        self.header(path, size, tar::EntryType::Regular, 0o600)
    }

    /// Writes part of the current file's body.
    pub fn body(&mut self, data: &[u8]) -> io::Result<()> {
        let n = data.len() as u64;
        if n > self.remaining {
            return Err(io::Error::other(format!(
                "tar entry body overflows its size by {} bytes",
                n - self.remaining
            )));
        }
        self.out.write_all(data)?;
        self.remaining -= n;
        Ok(())
    }

    /// Ends the current file, padding it to a block boundary.
    pub fn end_file(&mut self) -> io::Result<()> {
        if self.remaining != 0 {
            return Err(io::Error::other(format!(
                "tar entry body is {} bytes short",
                self.remaining
            )));
        }
        let pad = (BLOCK - (self.entry_size as usize % BLOCK)) % BLOCK;
        self.out.write_all(&[0u8; BLOCK][..pad])?;
        self.entry_size = 0;
        Ok(())
    }

    /// A whole file at once.
    pub fn file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.begin_file(path, data.len() as u64)?;
        self.body(data)?;
        self.end_file()
    }

    /// Writes the end-of-archive marker and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trip_through_the_tar_crate() {
        let mut w = TarWriter::new(Vec::new());
        w.dir("base").unwrap();
        w.file("PG_VERSION", b"15\n").unwrap();
        w.begin_file("base/1/1259", 8192 * 2).unwrap();
        w.body(&[1u8; 8192]).unwrap();
        w.body(&[2u8; 8192]).unwrap();
        w.end_file().unwrap();
        w.file("empty", b"").unwrap();
        let bytes = w.finish().unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            seen.push((path, body.len(), body.first().copied()));
        }
        assert_eq!(
            seen,
            vec![
                ("base/".to_string(), 0, None),
                ("PG_VERSION".to_string(), 3, Some(b'1')),
                ("base/1/1259".to_string(), 16384, Some(1)),
                ("empty".to_string(), 0, None),
            ]
        );
    }

    #[test]
    fn wrong_body_sizes_are_errors() {
        let mut w = TarWriter::new(Vec::new());
        w.begin_file("f", 4).unwrap();
        assert!(w.body(&[0; 5]).is_err());
        w.body(&[0; 3]).unwrap();
        assert!(w.end_file().is_err());
    }
}
