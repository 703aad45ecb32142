//! Bounds-checked little-endian reader over a record body. Every failure
//! becomes a [`RecordError::Malformed`] naming the rmgr, the info code, the
//! field and the offset, so no parser needs to index slices itself.

use super::RecordError;

/// Cursor over the main data of one record.
pub(crate) struct BodyReader<'a> {
    rmgr: &'static str,
    info: u8,
    data: &'a [u8],
    pos: usize,
}

impl<'a> BodyReader<'a> {
    pub(crate) fn new(rmgr: &'static str, info: u8, data: &'a [u8]) -> Self {
        BodyReader {
            rmgr,
            info,
            data,
            pos: 0,
        }
    }

    /// An error about this record.
    pub(crate) fn error(&self, problem: impl Into<String>) -> RecordError {
        RecordError::Malformed {
            rmgr: self.rmgr,
            info: self.info,
            problem: problem.into(),
        }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize, field: &str) -> Result<&'a [u8], RecordError> {
        if self.remaining() < n {
            return Err(self.error(format!(
                "body is {} bytes, too short for {field} ({n} bytes at offset {})",
                self.data.len(),
                self.pos
            )));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    pub(crate) fn skip(&mut self, n: usize, field: &str) -> Result<(), RecordError> {
        self.bytes(n, field).map(|_| ())
    }

    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, RecordError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn bool(&mut self, field: &str) -> Result<bool, RecordError> {
        Ok(self.u8(field)? != 0)
    }

    pub(crate) fn u16(&mut self, field: &str) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn i32(&mut self, field: &str) -> Result<i32, RecordError> {
        Ok(i32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn i64(&mut self, field: &str) -> Result<i64, RecordError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    /// A non-negative C `int` page number.
    pub(crate) fn pageno(&mut self, field: &str) -> Result<u32, RecordError> {
        let v = self.i32(field)?;
        u32::try_from(v).map_err(|_| self.error(format!("{field} is negative ({v})")))
    }

    /// A C `int` element count, checked to be non-negative and to fit the
    /// remaining bytes at `elem_size` bytes per element.
    pub(crate) fn count(&mut self, field: &str, elem_size: usize) -> Result<usize, RecordError> {
        let v = self.i32(field)?;
        self.check_count(field, i64::from(v), elem_size)
    }

    /// Check an already-read element count against the remaining bytes.
    pub(crate) fn check_count(
        &self,
        field: &str,
        n: i64,
        elem_size: usize,
    ) -> Result<usize, RecordError> {
        let n = usize::try_from(n).map_err(|_| self.error(format!("{field} is negative ({n})")))?;
        match n.checked_mul(elem_size) {
            Some(len) if len <= self.remaining() => Ok(n),
            _ => Err(self.error(format!(
                "{field} is {n} ({elem_size} bytes each) but only {} bytes remain at offset {}",
                self.remaining(),
                self.pos
            ))),
        }
    }

    /// `n` consecutive `u32` values.
    pub(crate) fn u32_vec(&mut self, n: usize, field: &str) -> Result<Vec<u32>, RecordError> {
        let raw = self.bytes(n * 4, field)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// A NUL-terminated string (the NUL is consumed). Invalid UTF-8 is
    /// replaced, since these strings are labels (GIDs, paths) in the server
    /// encoding.
    pub(crate) fn cstring(&mut self, field: &str) -> Result<String, RecordError> {
        let rest = &self.data[self.pos..];
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(self.error(format!(
                "{field} at offset {} has no NUL terminator",
                self.pos
            )));
        };
        let s = String::from_utf8_lossy(&rest[..nul]).into_owned();
        self.pos += nul + 1;
        Ok(s)
    }

    /// Require that the whole body was consumed.
    pub(crate) fn finish(&self, what: &str) -> Result<(), RecordError> {
        if self.remaining() != 0 {
            return Err(self.error(format!(
                "{} unexpected bytes after {what} (body is {} bytes)",
                self.remaining(),
                self.data.len()
            )));
        }
        Ok(())
    }
}
