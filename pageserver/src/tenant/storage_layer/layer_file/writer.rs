//! Writing a layer file: values in order, then index and footer, then a
//! crash-safe rename to the final name.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use pageserver_api::key::Key;
use pageserver_api::value::Value;
use utils::crashsafe;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::{
    blob_crc, blob_header_with_crc, blob_len, crc, Header, IndexEntry, LayerError, RawValue,
    BLOB_HEADER_SIZE, FLAG_PAGE_IMAGE, FLAG_ZSTD, FORMAT_VERSION, HEADER_SIZE, MAGIC,
    MAX_COMPRESSIBLE_VALUE, ZSTD_LEVEL,
};
use crate::tenant::storage_layer::PersistentLayerDesc;

/// Makes temporary names unique within the process.
static NEXT_TEMP_ID: AtomicU64 = AtomicU64::new(0);

/// Buffer size for writing.
const WRITE_BUFFER: usize = 256 * 1024;
/// Bytes handed to the kernel after which their writeback is started
/// ([`crashsafe::start_writeback`]), so that `finish`'s fsync waits for the
/// tail only. Smaller than the 8 MiB once used: the tail the fsync waits for
/// is shorter, and the benchmark's puts were a few per cent faster.
pub(crate) const WRITEBACK_CHUNK: u64 = 2 << 20;
/// Disk space reserved at a time ahead of the writes
/// ([`crashsafe::Preallocation`]).
pub(crate) const PREALLOCATION_CHUNK: u64 = 8 << 20;

/// Writes one delta or image layer file.
///
/// The file is written under a temporary name ending in
/// [`crashsafe::TEMP_SUFFIX`] (the final name depends on the end key, known
/// only at [`LayerWriter::finish`]) and appears under its layer name only once
/// complete and durable. Dropping an unfinished writer removes the temporary
/// file.
pub struct LayerWriter {
    dir: PathBuf,
    temp_path: PathBuf,
    file: BufWriter<File>,
    /// The header to write at `finish`; its key range end is a placeholder
    /// until then.
    header: Header,
    /// Bytes written so far, header included: the offset of the next blob.
    offset: u64,
    /// Which written bytes' writeback to start next.
    writeback: crashsafe::WritebackCursor,
    /// Disk space reserved ahead of the writes.
    prealloc: crashsafe::Preallocation,
    /// CRC32C of everything written after the header.
    body_crc: u32,
    /// Encoded index entries.
    index: Vec<u8>,
    num_values: usize,
    last: Option<(Key, Lsn)>,
    /// A write failed: the file content is unknown, refuse further use.
    poisoned: bool,
    finished: bool,
    compressor: ValueCompressor,
    /// The blob being put, reused.
    blob: Vec<u8>,
}

/// Encodes values as the blobs of layer files, with a reused zstd context
/// (creating a context per value costs more than compressing a page).
#[derive(Default)]
pub(crate) struct ValueCompressor {
    ctx: Option<zstd::bulk::Compressor<'static>>,
}

impl ValueCompressor {
    /// The zstd context, created on first use; `None` when it cannot be
    /// (values are then stored uncompressed).
    fn ready(&mut self) -> Option<&mut zstd::bulk::Compressor<'static>> {
        if self.ctx.is_none() {
            self.ctx = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?);
        }
        self.ctx.as_mut()
    }

    /// Compresses `bytes` into `dest` (at its position), when they may be
    /// compressed (at most [`MAX_COMPRESSIBLE_VALUE`] bytes); the compressed
    /// length when that is smaller.
    fn compress_to(
        &mut self,
        bytes: &[u8],
        dest: &mut impl zstd::zstd_safe::WriteBuf,
    ) -> Option<usize> {
        if bytes.is_empty() || bytes.len() > MAX_COMPRESSIBLE_VALUE {
            return None;
        }
        match self.ready()?.compress_to_buffer(bytes, dest) {
            Ok(n) if n < bytes.len() => Some(n),
            _ => None,
        }
    }

    /// Appends the blob of a serialized value to `out`: a serialized page
    /// image stores only its page ([`FLAG_PAGE_IMAGE`]); with `compress`,
    /// the stored bytes are compressed (straight into `out`) when that makes
    /// them smaller. The value must fit a blob ([`blob_len`]).
    pub(crate) fn append_blob(
        &mut self,
        value: &[u8],
        compress: bool,
        out: &mut Vec<u8>,
    ) -> BlobInfo {
        match Value::serialized_image_page(value) {
            Some(page) => self.append_bytes(page, FLAG_PAGE_IMAGE, compress, out),
            None => self.append_bytes(value, 0, compress, out),
        }
    }

    /// [`ValueCompressor::append_blob`] of the serialized image of `page`.
    pub(crate) fn append_page_blob(
        &mut self,
        page: &[u8],
        compress: bool,
        out: &mut Vec<u8>,
    ) -> BlobInfo {
        self.append_bytes(page, FLAG_PAGE_IMAGE, compress, out)
    }

    fn append_bytes(
        &mut self,
        bytes: &[u8],
        flags: u8,
        compress: bool,
        out: &mut Vec<u8>,
    ) -> BlobInfo {
        let head_at = out.len();
        let stored_at = head_at + BLOB_HEADER_SIZE;
        // The header goes in once the stored bytes are known.
        out.resize(stored_at, 0);
        let mut flags = flags;
        if compress {
            out.reserve(zstd::zstd_safe::compress_bound(bytes.len()));
            let mut dest = io::Cursor::new(&mut *out);
            dest.set_position(stored_at as u64);
            if self.compress_to(bytes, &mut dest).is_some() {
                flags |= FLAG_ZSTD;
            } else {
                out.truncate(stored_at);
            }
        }
        if flags & FLAG_ZSTD == 0 {
            out.extend_from_slice(bytes);
        }
        let stored_len = (out.len() - stored_at) as u32;
        let crc = blob_crc(flags, &out[stored_at..]);
        let head = blob_header_with_crc(flags, stored_len as usize, crc);
        out[head_at..stored_at].copy_from_slice(&head);
        BlobInfo {
            flags,
            stored_len,
            crc,
        }
    }
}

/// What [`ValueCompressor::append_blob`] appended: a blob header, then
/// `stored_len` stored bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlobInfo {
    pub flags: u8,
    pub stored_len: u32,
    /// The blob's CRC (of its flags byte and stored bytes).
    pub crc: u32,
}

impl LayerWriter {
    /// Starts a layer file in `dir` (written under a temporary name: final
    /// name + [`crashsafe::TEMP_SUFFIX`]).
    ///
    /// A delta layer covers the non-empty `lsn_range`; an image layer takes
    /// `lsn..lsn + 1` and holds the values as of `lsn`. Keys put must be at
    /// or after `key_start`.
    pub fn new(
        dir: &Path,
        tenant_id: TenantId,
        timeline_id: TimelineId,
        is_delta: bool,
        key_start: Key,
        lsn_range: Range<Lsn>,
    ) -> Result<Self, LayerError> {
        let kind = if is_delta { "delta" } else { "image" };
        let lsn_ok = if is_delta {
            lsn_range.start < lsn_range.end
        } else {
            lsn_range.start.checked_add(1) == Some(lsn_range.end)
        };
        if !lsn_ok {
            return Err(LayerError::Misuse(format!(
                "cannot start {kind} layer file in {}: invalid LSN range {}..{} \
                 (a delta layer needs a non-empty range, an image layer lsn..lsn+1)",
                dir.display(),
                lsn_range.start,
                lsn_range.end
            )));
        }
        if key_start == Key::MAX {
            return Err(LayerError::Misuse(format!(
                "cannot start {kind} layer file in {}: start key is Key::MAX",
                dir.display()
            )));
        }
        let (temp_path, file) = create_temp(dir, key_start, &lsn_range)?;
        let mut writer = LayerWriter {
            dir: dir.to_owned(),
            temp_path,
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            header: Header {
                version: FORMAT_VERSION,
                is_delta,
                tenant_id,
                timeline_id,
                key_range: key_start..Key::MAX,
                lsn_range,
            },
            offset: HEADER_SIZE as u64,
            writeback: crashsafe::WritebackCursor::new(WRITEBACK_CHUNK),
            prealloc: crashsafe::Preallocation::new(PREALLOCATION_CHUNK),
            body_crc: 0,
            index: Vec::new(),
            num_values: 0,
            last: None,
            poisoned: false,
            finished: false,
            compressor: ValueCompressor::default(),
            blob: Vec::new(),
        };
        // Room for the header, written for real by `finish`.
        writer
            .file
            .write_all(&[0u8; HEADER_SIZE])
            .map_err(|e| LayerError::io(&writer.temp_path, e))?;
        Ok(writer)
    }

    /// Appends a value. Delta: (key, lsn) strictly increasing and lsn within
    /// lsn_range. Image: key strictly increasing and lsn == lsn_range.start.
    /// Violations are [`LayerError::Misuse`] errors and write nothing.
    ///
    /// With `compress`, the value is stored zstd-compressed if that is
    /// smaller (and the value is at most
    /// [`MAX_COMPRESSIBLE_VALUE`](super::MAX_COMPRESSIBLE_VALUE) bytes). Of
    /// a serialized page image only the page is stored (and compressed).
    pub fn put(
        &mut self,
        key: Key,
        lsn: Lsn,
        value: &[u8],
        compress: bool,
    ) -> Result<(), LayerError> {
        self.check_usable()?;
        self.check_put(key, lsn, value.len())?;
        let mut blob = std::mem::take(&mut self.blob);
        blob.clear();
        let info = self.compressor.append_blob(value, compress, &mut blob);
        let stored = &blob[BLOB_HEADER_SIZE..];
        let result = self.append(key, lsn, info.flags, stored, info.crc);
        self.blob = blob;
        result
    }

    /// Appends a value exactly as another layer file stored it (compressed
    /// or not), without decompressing: compaction's copy.
    pub fn put_raw(&mut self, key: Key, lsn: Lsn, value: &RawValue) -> Result<(), LayerError> {
        self.check_usable()?;
        self.check_put(key, lsn, value.stored.len())?;
        self.append(key, lsn, value.flags, &value.stored, value.crc)
    }

    /// Appends a blob: its header, then the `stored` bytes, whose blob CRC
    /// is `crc`. The body CRC is extended from `crc` ([`crc::append_blob`]),
    /// not by reading the stored bytes again.
    fn append(
        &mut self,
        key: Key,
        lsn: Lsn,
        flags: u8,
        stored: &[u8],
        crc: u32,
    ) -> Result<(), LayerError> {
        // `check_put` made sure the value, and so its blob, fits.
        let len = u32::try_from(BLOB_HEADER_SIZE + stored.len()).expect("checked by check_put");
        let offset = self.offset;
        self.write(&blob_header_with_crc(flags, stored.len(), crc))?;
        self.write(stored)?;
        self.body_crc = crc::append_blob(self.body_crc, flags, stored.len(), crc);
        IndexEntry {
            key,
            lsn,
            offset,
            len,
        }
        .encode_into(&mut self.index);
        self.num_values += 1;
        self.last = Some((key, lsn));
        Ok(())
    }

    /// Number of values put so far.
    pub fn num_values(&self) -> usize {
        self.num_values
    }

    /// Bytes written so far (header and value blobs; index and footer come
    /// at `finish`).
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Writes index and footer, fsyncs, renames to the final name (the
    /// [`LayerName`](crate::tenant::storage_layer::LayerName) of the
    /// resulting desc) with [`crashsafe::rename`] (which fsyncs the
    /// directory). `key_end` is exclusive and must be greater than every key
    /// put and than the start key.
    ///
    /// On error nothing is left under the final name by this writer and the
    /// temporary file is removed.
    pub fn finish(mut self, key_end: Key) -> Result<(PersistentLayerDesc, PathBuf), LayerError> {
        let result = self.finish_inner(key_end);
        if result.is_ok() {
            self.finished = true;
        }
        result
    }

    fn finish_inner(&mut self, key_end: Key) -> Result<(PersistentLayerDesc, PathBuf), LayerError> {
        self.check_usable()?;
        let max_key = self.last.map_or(self.header.key_range.start, |(k, _)| k);
        if key_end <= max_key {
            return Err(self.misuse(format!(
                "end key {key_end} must be above the start key and every key put ({max_key})"
            )));
        }
        self.header.key_range.end = key_end;
        let index = std::mem::take(&mut self.index);
        let tail = encode_tail(
            &self.header,
            &index,
            self.num_values,
            self.offset,
            self.body_crc,
        );
        drop(index);
        self.write(&tail)?;
        self.file
            .flush()
            .map_err(|e| LayerError::io(&self.temp_path, e))?;
        commit(
            self.file.get_ref(),
            &self.temp_path,
            &self.dir,
            &self.header,
            self.offset,
        )
    }

    fn check_usable(&self) -> Result<(), LayerError> {
        if self.poisoned {
            return Err(
                self.misuse("an earlier write failed; the file must be abandoned".to_string())
            );
        }
        Ok(())
    }

    fn check_put(&self, key: Key, lsn: Lsn, len: usize) -> Result<(), LayerError> {
        let h = &self.header;
        if key < h.key_range.start {
            return Err(self.misuse(format!(
                "key {key} is before the start key {}",
                h.key_range.start
            )));
        }
        if key == Key::MAX {
            return Err(self.misuse("Key::MAX cannot hold a value".to_string()));
        }
        if h.is_delta {
            if !h.lsn_range.contains(&lsn) {
                return Err(self.misuse(format!(
                    "key {key}: LSN {lsn} outside the layer's LSN range {}..{}",
                    h.lsn_range.start, h.lsn_range.end
                )));
            }
            if let Some((last_key, last_lsn)) = self.last {
                if (key, lsn) <= (last_key, last_lsn) {
                    return Err(self.misuse(format!(
                        "key {key} at LSN {lsn} is not after key {last_key} at LSN {last_lsn}"
                    )));
                }
            }
        } else {
            if lsn != h.lsn_range.start {
                return Err(self.misuse(format!(
                    "key {key}: LSN {lsn} differs from the image layer's LSN {}",
                    h.lsn_range.start
                )));
            }
            if let Some((last_key, _)) = self.last {
                if key <= last_key {
                    return Err(self.misuse(format!(
                        "key {key} is not after the previous key {last_key}"
                    )));
                }
            }
        }
        if blob_len(len).is_none() {
            return Err(self.misuse(format!(
                "key {key} at LSN {lsn}: value of {len} bytes is too large"
            )));
        }
        Ok(())
    }

    fn misuse(&self, what: String) -> LayerError {
        LayerError::Misuse(format!("layer file {}: {what}", self.temp_path.display()))
    }

    /// Writes after the header, keeping the offset (not the body CRC: see
    /// [`LayerWriter::append`]); a failure poisons the writer.
    fn write(&mut self, buf: &[u8]) -> Result<(), LayerError> {
        let end = self.offset + buf.len() as u64;
        self.prealloc.reserve(self.file.get_ref(), end);
        if let Err(e) = self.file.write_all(buf) {
            self.poisoned = true;
            return Err(LayerError::io(&self.temp_path, e));
        }
        self.offset += buf.len() as u64;
        let in_kernel = self.offset - self.file.buffer().len() as u64;
        if let Some((from, len)) = self.writeback.due(in_kernel) {
            // Only an early start: a failed writeback fails `finish`'s fsync.
            let _ = crashsafe::start_writeback(self.file.get_ref(), from, len);
        }
        Ok(())
    }
}

impl Drop for LayerWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        match std::fs::remove_file(&self.temp_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "could not remove unfinished layer file {}: {e}; start-up clean-up will remove it",
                self.temp_path.display()
            ),
        }
    }
}

/// Index, index CRC and footer of a layer file with `header` whose blobs
/// end at `index_offset`; `index` holds the encoded entries and `body_crc`
/// is the CRC32C of the bytes from the end of the header to `index_offset`.
fn encode_tail(
    header: &Header,
    index: &[u8],
    num_values: usize,
    index_offset: u64,
    body_crc: u32,
) -> Vec<u8> {
    let mut tail = Vec::with_capacity(index.len() + 4 + super::FOOTER_SIZE);
    tail.extend_from_slice(index);
    tail.extend_from_slice(&crc32c::crc32c(index).to_le_bytes());
    tail.extend_from_slice(&index_offset.to_le_bytes());
    tail.extend_from_slice(&(num_values as u64).to_le_bytes());
    let body_len = index_offset - HEADER_SIZE as u64 + tail.len() as u64;
    let file_crc = crc::combine(
        crc32c::crc32c(&header.encode()),
        crc32c::crc32c_append(body_crc, &tail),
        body_len,
    );
    tail.extend_from_slice(&file_crc.to_le_bytes());
    tail.extend_from_slice(&MAGIC);
    tail
}

/// Writes the header of a complete layer file of `file_size` bytes at
/// offset 0, fsyncs the file and renames it from `temp_path` to its layer
/// name in `dir` with [`crashsafe::rename`] (which fsyncs the directory).
fn commit(
    file: &File,
    temp_path: &Path,
    dir: &Path,
    header: &Header,
    file_size: u64,
) -> Result<(PersistentLayerDesc, PathBuf), LayerError> {
    let io_err = |e| LayerError::io(temp_path, e);
    file.write_all_at(&header.encode(), 0).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    // Returns the space reserved beyond the end (crashsafe::Preallocation).
    // After the fsync, which leaves no page of the file to wait for (before
    // it, ext4 takes 10 ms and more); the rename's directory fsync makes it
    // durable, and a crash before that leaves a temporary file.
    file.set_len(file_size).map_err(io_err)?;
    let desc = PersistentLayerDesc {
        key_range: header.key_range.clone(),
        lsn_range: header.lsn_range.clone(),
        is_delta: header.is_delta,
        file_size,
    };
    let final_path = dir.join(desc.layer_name().to_string());
    failpoint_before_rename(temp_path)?;
    crashsafe::rename(temp_path, &final_path).map_err(|e| LayerError::io(&final_path, e))?;
    Ok((desc, final_path))
}

/// Makes an L0 delta layer file (whole key space, `lsn_range`) of a file
/// whose blobs are written, in any order, from the end of the header to
/// `index_offset`: appends index and footer there, writes the header, and
/// renames it from `temp_path` into `dir` as with [`LayerWriter::finish`].
/// `index` holds the encoded entries in (key, LSN) order; `body_crc` is the
/// CRC32C of the blob bytes. The first [`HEADER_SIZE`] bytes of the file
/// are overwritten.
///
/// This is how an in-memory layer's ephemeral file becomes its L0 layer
/// without its values being copied.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_in_place(
    file: &File,
    temp_path: &Path,
    dir: &Path,
    ids: (TenantId, TimelineId),
    lsn_range: Range<Lsn>,
    index: &[u8],
    num_values: usize,
    index_offset: u64,
    body_crc: u32,
) -> Result<(PersistentLayerDesc, PathBuf), LayerError> {
    if lsn_range.start >= lsn_range.end || index_offset < HEADER_SIZE as u64 {
        return Err(LayerError::Misuse(format!(
            "cannot finish layer file {}: LSN range {}..{}, blobs end at {index_offset}",
            temp_path.display(),
            lsn_range.start,
            lsn_range.end
        )));
    }
    let header = Header {
        version: FORMAT_VERSION,
        is_delta: true,
        tenant_id: ids.0,
        timeline_id: ids.1,
        key_range: Key::MIN..Key::MAX,
        lsn_range,
    };
    let tail = encode_tail(&header, index, num_values, index_offset, body_crc);
    file.write_all_at(&tail, index_offset)
        .map_err(|e| LayerError::io(temp_path, e))?;
    commit(
        file,
        temp_path,
        dir,
        &header,
        index_offset + tail.len() as u64,
    )
}

/// Creates a new, uniquely named temporary file for a layer in `dir`.
fn create_temp(
    dir: &Path,
    key_start: Key,
    lsn_range: &Range<Lsn>,
) -> Result<(PathBuf, File), LayerError> {
    let mut attempts = 0;
    loop {
        let seq = NEXT_TEMP_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{key_start}__{:016X}-{:016X}.{}-{seq}",
            lsn_range.start.0,
            lsn_range.end.0,
            std::process::id()
        );
        let path = crashsafe::path_with_suffix(&dir.join(name), crashsafe::TEMP_SUFFIX);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            // A leftover of an earlier process with the same id: try the next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => return Err(LayerError::io(&path, e)),
        }
    }
}

/// Test hook before the rename. Configured as `return`, every writer fails
/// here; as `return(TEXT)`, only writers whose temporary path contains TEXT.
#[cfg_attr(not(feature = "testing"), allow(unused_variables))]
fn failpoint_before_rename(temp_path: &Path) -> Result<(), LayerError> {
    fail::fail_point!("layer-writer-before-rename", |only: Option<String>| {
        match only {
            Some(only) if !temp_path.to_string_lossy().contains(only.as_str()) => Ok(()),
            _ => Err(LayerError::io(
                temp_path,
                io::Error::other("failpoint layer-writer-before-rename"),
            )),
        }
    });
    Ok(())
}
