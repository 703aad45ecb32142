//! Reading a layer file: open checks header, footer and index; every value
//! read is checked against its CRC.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::tenant::storage_layer::page_cache::PAGE_CACHE;
use pageserver_api::key::Key;
use pageserver_api::value::Value;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::{
    blob_crc, u32_at, u64_at, Header, IndexEntry, LayerError, BLOB_HEADER_SIZE, FLAG_PAGE_IMAGE,
    FLAG_ZSTD, FOOTER_CRC_OFFSET, FOOTER_SIZE, HEADER_SIZE, INDEX_ENTRY_SIZE, INDEX_ENTRY_SIZE_V1,
    MAGIC, MAX_COMPRESSIBLE_VALUE,
};
use crate::tenant::storage_layer::{LayerName, PersistentLayerDesc};

/// How much [`LayerReader::iter_values`] and [`LayerReader::verify`] read at
/// once.
const READ_CHUNK: u64 = 1024 * 1024;

/// An open, checked layer file. Reads use positioned reads, so one reader
/// can serve many threads at once.
#[derive(Debug)]
pub struct LayerReader {
    path: PathBuf,
    file: File,
    desc: PersistentLayerDesc,
    tenant_id: TenantId,
    timeline_id: TimelineId,
    /// Sorted by (key, lsn); blob extents checked (between header and
    /// index, not overlapping).
    index: Vec<IndexEntry>,
    /// Blob flag bits of this file's format version.
    known_flags: u8,
    /// This opened file's key in the page cache.
    cache_id: u64,
}

/// A layer file mapped into memory ([`LayerReader::map_cached`]); cloned
/// cheaply, unmapped when the last clone (or value read from it) is gone.
#[derive(Debug, Clone)]
pub struct MappedLayer {
    bytes: Bytes,
    /// The page cache id of the reader that mapped it.
    cache_id: u64,
}

/// A value as stored in a layer file: possibly compressed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RawValue {
    pub(super) flags: u8,
    pub(super) stored: Bytes,
    /// The blob's CRC32C (of flags and stored bytes), as checked: a copy
    /// reuses it instead of computing it again.
    pub(super) crc: u32,
}

impl RawValue {
    /// Whether the stored bytes are a zstd frame.
    pub fn is_compressed(&self) -> bool {
        self.flags & FLAG_ZSTD != 0
    }

    /// Whether the value is a serialized page image (of which the stored
    /// bytes hold the page).
    pub fn is_page_image(&self) -> bool {
        self.flags & FLAG_PAGE_IMAGE != 0
    }

    /// The stored bytes: the value itself when neither compressed nor a
    /// page image.
    pub fn stored(&self) -> &[u8] {
        &self.stored
    }
}

thread_local! {
    /// One zstd context per thread, reused: creating one per value costs
    /// more than decompressing a page.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// The serialized value of a blob's checked stored bytes: decompressed when
/// `flags` has [`FLAG_ZSTD`], the image prefix put back before the page
/// when it has [`FLAG_PAGE_IMAGE`]. The error says what is wrong.
pub(crate) fn decode_stored(flags: u8, stored: Bytes) -> Result<Bytes, String> {
    let image = flags & FLAG_PAGE_IMAGE != 0;
    if flags & FLAG_ZSTD != 0 {
        return decompress(&stored, image).map(Bytes::from);
    }
    if !image {
        return Ok(stored);
    }
    let mut value = Vec::with_capacity(Value::IMAGE_PREFIX_LEN + stored.len());
    value.extend_from_slice(&Value::serialized_image_prefix(stored.len()));
    value.extend_from_slice(&stored);
    Ok(Bytes::from(value))
}

/// Decompresses a stored zstd value: one frame with its content size, at
/// most [`MAX_COMPRESSIBLE_VALUE`] bytes (checked before decompressing),
/// behind the image prefix when it is a page `image`.
fn decompress(stored: &[u8], image: bool) -> Result<Vec<u8>, String> {
    let size = match zstd::zstd_safe::get_frame_content_size(stored) {
        Ok(Some(n)) if n <= MAX_COMPRESSIBLE_VALUE as u64 => n as usize,
        Ok(Some(n)) => return Err(format!("compressed value claims {n} bytes, over the limit")),
        _ => return Err("not a zstd frame with a content size".to_string()),
    };
    let prefix_len = if image { Value::IMAGE_PREFIX_LEN } else { 0 };
    let mut value = Vec::with_capacity(prefix_len + size);
    if image {
        value.extend_from_slice(&Value::serialized_image_prefix(size));
    }
    // Decompressed after the prefix, in place.
    let mut out = std::io::Cursor::new(value);
    out.set_position(prefix_len as u64);
    let decompressed = DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut()
            .expect("created above")
            .decompress_to_buffer(stored, &mut out)
    });
    match decompressed {
        Ok(n) if n == size => Ok(out.into_inner()),
        Ok(n) => Err(format!("decompressed to {n} bytes, frame says {size}")),
        Err(e) => Err(format!("cannot decompress: {e}")),
    }
}

impl LayerReader {
    /// Opens `path` and checks header, footer and index checksums; loads the
    /// index into memory. When the file name parses as a
    /// [`LayerName`], it must match the header.
    pub fn open(path: &Path) -> Result<Self, LayerError> {
        let file = File::open(path).map_err(|e| LayerError::io(path, e))?;
        let file_size = file.metadata().map_err(|e| LayerError::io(path, e))?.len();
        let min_size = (HEADER_SIZE + 4 + FOOTER_SIZE) as u64;
        if file_size < min_size {
            return Err(LayerError::corrupt(
                path,
                file_size,
                format!(
                    "file is {file_size} bytes, less than the {min_size} of an empty layer file"
                ),
            ));
        }
        let mut header = [0u8; HEADER_SIZE];
        read_exact_at(&file, path, &mut header, 0)?;
        let header = Header::decode(&header, path)?;

        let footer_start = file_size - FOOTER_SIZE as u64;
        let mut footer = [0u8; FOOTER_SIZE];
        read_exact_at(&file, path, &mut footer, footer_start)?;
        if footer[FOOTER_SIZE - 8..] != MAGIC {
            return Err(LayerError::corrupt(
                path,
                file_size - 8,
                "bad magic at end of file (truncated or not a layer file)",
            ));
        }
        let index_offset = u64_at(&footer, 0);
        let count = u64_at(&footer, 8);
        let entry_size = if header.version == 1 {
            INDEX_ENTRY_SIZE_V1
        } else {
            INDEX_ENTRY_SIZE
        };
        let index_len = count
            .checked_mul(entry_size as u64)
            .and_then(|n| n.checked_add(4));
        let fits = index_offset >= HEADER_SIZE as u64
            && footer_start.checked_sub(index_offset).is_some()
            && index_len == Some(footer_start - index_offset);
        if !fits {
            return Err(LayerError::corrupt(
                path,
                footer_start,
                format!(
                    "footer says index at offset {index_offset} with {count} entries, \
                     which does not fit a file of {file_size} bytes"
                ),
            ));
        }
        // Bounded by the file size, checked above.
        let mut index_bytes = vec![0u8; (footer_start - index_offset) as usize];
        read_exact_at(&file, path, &mut index_bytes, index_offset)?;
        let (entries, crc) = index_bytes.split_at(index_bytes.len() - 4);
        if crc32c::crc32c(entries) != u32_at(crc, 0) {
            return Err(LayerError::corrupt(
                path,
                index_offset,
                "index checksum mismatch",
            ));
        }
        let index = decode_index(entries, &header, index_offset, path)?;

        let desc = PersistentLayerDesc {
            key_range: header.key_range.clone(),
            lsn_range: header.lsn_range.clone(),
            is_delta: header.is_delta,
            file_size,
        };
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            if let Ok(parsed) = name.parse::<LayerName>() {
                if parsed != desc.layer_name() {
                    return Err(LayerError::corrupt(
                        path,
                        0,
                        format!(
                            "header describes layer {} but the file is named {name}",
                            desc.layer_name()
                        ),
                    ));
                }
            }
        }
        Ok(LayerReader {
            path: path.to_owned(),
            file,
            desc,
            tenant_id: header.tenant_id,
            timeline_id: header.timeline_id,
            index,
            known_flags: header.known_flags(),
            cache_id: crate::tenant::storage_layer::page_cache::next_reader_id(),
        })
    }

    /// The file this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Key range, LSN range, kind and size of the layer.
    pub fn desc(&self) -> &PersistentLayerDesc {
        &self.desc
    }

    /// The tenant the layer belongs to.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// The timeline the layer belongs to.
    pub fn timeline_id(&self) -> TimelineId {
        self.timeline_id
    }

    /// Number of values in the layer.
    pub fn num_values(&self) -> usize {
        self.index.len()
    }

    /// Values of `key` with lsn in `lsn_range`, newest first; each checked
    /// against its CRC (and decompressed).
    pub fn get_values(
        &self,
        key: Key,
        lsn_range: Range<Lsn>,
    ) -> Result<Vec<(Lsn, Bytes)>, LayerError> {
        self.values_newest_first(key, lsn_range, false)
    }

    /// [`LayerReader::get_values`] down to the newest page image (a
    /// serialized [`Value::Image`]), which a read needs nothing older than:
    /// older values are not checked or decompressed.
    pub fn get_values_to_image(
        &self,
        key: Key,
        lsn_range: Range<Lsn>,
    ) -> Result<Vec<(Lsn, Bytes)>, LayerError> {
        self.values_newest_first(key, lsn_range, true)
    }

    fn values_newest_first(
        &self,
        key: Key,
        lsn_range: Range<Lsn>,
        to_image: bool,
    ) -> Result<Vec<(Lsn, Bytes)>, LayerError> {
        let range = self.entry_range(key, &lsn_range);
        if range.is_empty() {
            return Ok(Vec::new());
        }
        // The values of one key are usually adjacent (not in an L0 layer,
        // whose values are in arrival order): then one read gets them all,
        // at the first value not in the page cache.
        let entries = &self.index[range.clone()];
        let adjacent = entries.windows(2).all(|w| w[0].end() == w[1].offset);
        let start = entries[0].offset;
        let mut extent: Option<Bytes> = None;
        // Checked and decoded values stay in the page cache.
        let cache = &*PAGE_CACHE;
        let mut values = Vec::with_capacity(range.len());
        for i in range.rev() {
            let entry = &self.index[i];
            let value = match cache.get(self.cache_id, i as u32) {
                Some(value) => value,
                None => {
                    let blob = if adjacent {
                        let whole = match &extent {
                            Some(whole) => whole.clone(),
                            None => extent
                                .insert(self.read_range(start, entries[entries.len() - 1].end())?)
                                .clone(),
                        };
                        whole.slice((entry.offset - start) as usize..(entry.end() - start) as usize)
                    } else {
                        self.read_range(entry.offset, entry.end())?
                    };
                    let value = self.decode_blob(blob, entry)?;
                    cache.insert(self.cache_id, i as u32, value.clone());
                    value
                }
            };
            let image = Value::is_serialized_image(&value);
            values.push((entry.lsn, value));
            if to_image && image {
                break;
            }
        }
        Ok(values)
    }

    /// The newest value of `key` with lsn in `lsn_range`, as stored:
    /// checked against its CRC, not decompressed (and not cached). Image
    /// layer creation copies these.
    pub fn get_newest_raw(
        &self,
        key: Key,
        lsn_range: Range<Lsn>,
    ) -> Result<Option<(Lsn, RawValue)>, LayerError> {
        let Some(i) = self.entry_range(key, &lsn_range).last() else {
            return Ok(None);
        };
        let entry = &self.index[i];
        let blob = self.read_range(entry.offset, entry.end())?;
        Ok(Some((entry.lsn, self.check_blob(blob, entry)?)))
    }

    /// Every (key, lsn) with a value, in order (index only).
    pub fn index_entries(&self) -> impl Iterator<Item = (Key, Lsn)> + '_ {
        self.index.iter().map(|e| (e.key, e.lsn))
    }

    /// Every value in (key, lsn) order, read sequentially in chunks (for
    /// compaction); each checked. Stops after the first error.
    pub fn iter_values(&self) -> impl Iterator<Item = Result<(Key, Lsn, Bytes), LayerError>> + '_ {
        self.iter_values_chunked(READ_CHUNK)
    }

    /// Every value as stored (checksum checked, not decompressed) in (key,
    /// lsn) order: compaction copies these with [`super::LayerWriter::put_raw`].
    pub fn iter_raw(&self) -> RawValueIter<'_> {
        RawValueIter(self.iter_values_chunked(READ_CHUNK))
    }

    /// [`LayerReader::iter_raw`] of the values whose keys are in `keys`.
    pub fn iter_raw_keys(&self, keys: Range<Key>) -> RawValueIter<'_> {
        let mut it = self.iter_values_chunked(READ_CHUNK);
        it.next = self.index.partition_point(|e| e.key < keys.start);
        it.end = self.index.partition_point(|e| e.key < keys.end);
        RawValueIter(it)
    }

    /// The whole file mapped into memory, for
    /// [`LayerReader::iter_raw_keys_mapped`], when all of it is in the page
    /// cache (`None` otherwise: read it with `pread`, which reports a disk
    /// error as an error, where a map faults; see [`utils::file_map`]).
    /// Keep it for the task at hand only. Layer files never change, as a
    /// map needs.
    pub fn map_cached(&self) -> Result<Option<MappedLayer>, LayerError> {
        let map = utils::file_map::FileMap::new(&self.file, self.desc.file_size)
            .map_err(|e| self.io(e))?;
        if !map.is_resident().map_err(|e| self.io(e))? {
            return Ok(None);
        }
        Ok(Some(MappedLayer {
            bytes: Bytes::from_owner(map),
            cache_id: self.cache_id,
        }))
    }

    /// [`LayerReader::iter_raw_keys`] reading the blobs from `map`, this
    /// reader's [`LayerReader::map_cached`] (without one, or with a map of
    /// another reader, it reads): no system call and no copy per value,
    /// which matters where the values lie scattered over the file, as an
    /// L0 layer's do (they are in arrival order). The values share the map.
    pub fn iter_raw_keys_mapped(
        &self,
        keys: Range<Key>,
        map: Option<&MappedLayer>,
    ) -> RawValueIter<'_> {
        let mut it = self.iter_raw_keys(keys);
        if let Some(map) = map.filter(|m| m.cache_id == self.cache_id) {
            // The whole file: the iterator never reads.
            it.0.chunk = map.bytes.clone();
        }
        it
    }

    /// Each value's key and the bytes its blob takes in the file, in
    /// (key, LSN) order: what planning a rewrite by size needs.
    pub fn blob_sizes(&self) -> impl Iterator<Item = (Key, u64)> + '_ {
        self.index.iter().map(|e| (e.key, u64::from(e.len)))
    }

    pub(super) fn iter_values_chunked(&self, chunk_size: u64) -> ValueIter<'_> {
        ValueIter {
            reader: self,
            next: 0,
            end: self.index.len(),
            chunk: Bytes::new(),
            chunk_start: 0,
            chunk_size,
            failed: false,
        }
    }

    /// Checks the whole-file CRC and every value blob: what `pagectl verify`
    /// and downloads call.
    pub fn verify(&self) -> Result<(), LayerError> {
        let size = self.file.metadata().map_err(|e| self.io(e))?.len();
        if size != self.desc.file_size {
            return Err(self.corrupt(
                size.min(self.desc.file_size),
                format!(
                    "file is now {size} bytes, was {} when opened",
                    self.desc.file_size
                ),
            ));
        }
        let crc_at = size - (FOOTER_SIZE - FOOTER_CRC_OFFSET) as u64;
        let mut buf = vec![0u8; READ_CHUNK.min(crc_at) as usize];
        let mut crc = 0;
        let mut pos = 0;
        while pos < crc_at {
            let n = (crc_at - pos).min(buf.len() as u64) as usize;
            read_exact_at(&self.file, &self.path, &mut buf[..n], pos)?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            pos += n as u64;
        }
        let mut stored = [0u8; 4];
        read_exact_at(&self.file, &self.path, &mut stored, crc_at)?;
        if u32::from_le_bytes(stored) != crc {
            return Err(self.corrupt(crc_at, "whole-file checksum mismatch"));
        }
        for value in self.iter_values() {
            value?;
        }
        Ok(())
    }

    /// Index positions of the values of `key` with lsn in `lsn_range`.
    fn entry_range(&self, key: Key, lsn_range: &Range<Lsn>) -> Range<usize> {
        if lsn_range.start >= lsn_range.end {
            return 0..0;
        }
        let lo = self
            .index
            .partition_point(|e| (e.key, e.lsn) < (key, lsn_range.start));
        let len = self.index[lo..].partition_point(|e| e.key == key && e.lsn < lsn_range.end);
        lo..lo + len
    }

    /// Reads `start..end`, which lies within the blob area.
    fn read_range(&self, start: u64, end: u64) -> Result<Bytes, LayerError> {
        let mut buf = vec![0u8; (end - start) as usize];
        read_exact_at(&self.file, &self.path, &mut buf, start)?;
        Ok(Bytes::from(buf))
    }

    /// Checks and decodes the blob of `entry`: exactly its extent in the file.
    fn decode_blob(&self, blob: Bytes, entry: &IndexEntry) -> Result<Bytes, LayerError> {
        let raw = self.check_blob(blob, entry)?;
        self.decode_raw(&raw, entry)
    }

    /// Checks the blob of `entry` (length, flags, checksum) without
    /// decompressing it; the value shares `blob`'s buffer.
    fn check_blob(&self, blob: Bytes, entry: &IndexEntry) -> Result<RawValue, LayerError> {
        let what = |w: &str| format!("value of key {} at LSN {}: {w}", entry.key, entry.lsn);
        // Open checked that every extent holds at least a blob header.
        if blob.len() < BLOB_HEADER_SIZE {
            return Err(self.corrupt(entry.offset, what("blob too short")));
        }
        let stored_len = u32_at(&blob, 0) as usize;
        if stored_len != blob.len() - BLOB_HEADER_SIZE {
            return Err(self.corrupt(
                entry.offset,
                what(&format!(
                    "stored length {stored_len} does not match the {} bytes the index gives it",
                    blob.len() - BLOB_HEADER_SIZE
                )),
            ));
        }
        let flags = blob[4];
        if flags & !self.known_flags != 0 {
            return Err(self.corrupt(
                entry.offset + 4,
                what(&format!("unknown flags {flags:#04x}")),
            ));
        }
        let stored = &blob[BLOB_HEADER_SIZE..];
        let crc = u32_at(&blob, 5);
        if blob_crc(flags, stored) != crc {
            return Err(self.corrupt(entry.offset + 5, what("checksum mismatch")));
        }
        Ok(RawValue {
            flags,
            stored: blob.slice(BLOB_HEADER_SIZE..),
            crc,
        })
    }

    /// The serialized value of a checked blob ([`decode_stored`]).
    fn decode_raw(&self, raw: &RawValue, entry: &IndexEntry) -> Result<Bytes, LayerError> {
        decode_stored(raw.flags, raw.stored.clone()).map_err(|w| {
            self.corrupt(
                entry.offset + BLOB_HEADER_SIZE as u64,
                format!("value of key {} at LSN {}: {w}", entry.key, entry.lsn),
            )
        })
    }

    fn corrupt(&self, offset: u64, what: impl Into<String>) -> LayerError {
        LayerError::corrupt(&self.path, offset, what)
    }

    fn io(&self, e: io::Error) -> LayerError {
        LayerError::io(&self.path, e)
    }
}

/// Decodes and checks the index entries: sorted, within the header's
/// ranges, each blob's extent between header and index and no two
/// overlapping (version 1: blobs in index order tiling that space exactly,
/// which gives their lengths).
fn decode_index(
    entries: &[u8],
    header: &Header,
    index_offset: u64,
    path: &Path,
) -> Result<Vec<IndexEntry>, LayerError> {
    let entry_size = if header.version == 1 {
        INDEX_ENTRY_SIZE_V1
    } else {
        INDEX_ENTRY_SIZE
    };
    let mut index: Vec<IndexEntry> = Vec::with_capacity(entries.len() / entry_size);
    let entry_at = |i: usize| index_offset + (i * entry_size) as u64;
    let bad = |i: usize, what: String| {
        LayerError::corrupt(path, entry_at(i), format!("index entry {i}: {what}"))
    };
    for (i, raw) in entries.chunks_exact(entry_size).enumerate() {
        let mut e = IndexEntry::decode(raw, header.version);
        if !header.key_range.contains(&e.key) || !header.lsn_range.contains(&e.lsn) {
            return Err(bad(
                i,
                format!(
                    "key {} at LSN {} is outside the layer's ranges",
                    e.key, e.lsn
                ),
            ));
        }
        if let Some(prev) = index.last_mut() {
            if (prev.key, prev.lsn) >= (e.key, e.lsn) {
                return Err(bad(
                    i,
                    format!("key {} at LSN {} is out of order", e.key, e.lsn),
                ));
            }
            if header.version == 1 {
                // The previous blob ends where this one starts.
                match e.offset.checked_sub(prev.offset).map(u32::try_from) {
                    Some(Ok(len)) => prev.len = len,
                    _ => return Err(bad(i, format!("blob offset {} is out of place", e.offset))),
                }
            }
        }
        if header.version == 1 && index.is_empty() && e.offset != HEADER_SIZE as u64 {
            return Err(bad(i, format!("blob offset {} is out of place", e.offset)));
        }
        if header.version == 1 {
            // Until the next entry says otherwise, the blob runs to the index.
            e.len = index_offset
                .checked_sub(e.offset)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0);
        }
        index.push(e);
    }
    if header.version == 1 && index.is_empty() && index_offset != HEADER_SIZE as u64 {
        return Err(LayerError::corrupt(
            path,
            index_offset,
            "no index entries but data between header and index",
        ));
    }
    // Extents in file order: each within the blob area, none overlapping.
    let mut order: Vec<usize> = (0..index.len()).collect();
    if !index.windows(2).all(|w| w[0].offset < w[1].offset) {
        order.sort_unstable_by_key(|&i| index[i].offset);
    }
    let mut area_start = HEADER_SIZE as u64;
    for i in order {
        let e = &index[i];
        if e.offset < area_start || (e.len as usize) < BLOB_HEADER_SIZE || e.end() > index_offset {
            return Err(bad(
                i,
                format!(
                    "blob at offset {} of {} bytes is out of place",
                    e.offset, e.len
                ),
            ));
        }
        area_start = e.end();
    }
    Ok(index)
}

/// Reads exactly `buf.len()` bytes at `offset`; a short file is corruption.
fn read_exact_at(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<(), LayerError> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            LayerError::corrupt(
                path,
                offset,
                format!("file ends before the {} bytes expected here", buf.len()),
            )
        } else {
            LayerError::io(path, e)
        }
    })
}

/// Iterator of [`LayerReader::iter_values`]: reads whole blobs in chunks.
pub(super) struct ValueIter<'a> {
    reader: &'a LayerReader,
    next: usize,
    /// Index position to stop at (exclusive).
    end: usize,
    chunk: Bytes,
    chunk_start: u64,
    chunk_size: u64,
    failed: bool,
}

impl ValueIter<'_> {
    /// Makes the chunk hold blob `i`, reading from its start as many whole
    /// blobs as fit in `chunk_size` (at least one).
    fn fill(&mut self, i: usize) -> Result<(), LayerError> {
        let index = &self.reader.index;
        let r = self.reader;
        let start = index[i].offset;
        let mut last = i;
        // Blobs in index order are usually back to back (not in L0 layers).
        while last + 1 < self.end
            && index[last + 1].offset == index[last].end()
            && index[last + 1].end() - start <= self.chunk_size
        {
            last += 1;
        }
        let len = (index[last].end() - start) as usize;
        // A new buffer each time: the values handed out share it.
        let mut chunk = vec![0u8; len];
        read_exact_at(&r.file, &r.path, &mut chunk, start)?;
        self.chunk = Bytes::from(chunk);
        self.chunk_start = start;
        Ok(())
    }
}

/// Values as stored, checksums checked, not decompressed.
pub struct RawValueIter<'a>(ValueIter<'a>);

impl Iterator for RawValueIter<'_> {
    type Item = Result<(Key, Lsn, RawValue), LayerError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0
            .next_raw()
            .map(|r| r.map(|(e, raw)| (e.key, e.lsn, raw)))
    }
}

impl Iterator for ValueIter<'_> {
    type Item = Result<(Key, Lsn, Bytes), LayerError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (entry, raw) = match self.next_raw()? {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        match self.reader.decode_raw(&raw, &entry) {
            Ok(value) => Some(Ok((entry.key, entry.lsn, value))),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl ValueIter<'_> {
    fn next_raw(&mut self) -> Option<Result<(IndexEntry, RawValue), LayerError>> {
        let r = self.reader;
        if self.failed || self.next >= self.end {
            return None;
        }
        let i = self.next;
        let entry = r.index[i];
        let end = entry.end();
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if entry.offset < self.chunk_start || end > chunk_end {
            if let Err(e) = self.fill(i) {
                self.failed = true;
                return Some(Err(e));
            }
        }
        let blob = self
            .chunk
            .slice((entry.offset - self.chunk_start) as usize..(end - self.chunk_start) as usize);
        match r.check_blob(blob, &entry) {
            Ok(raw) => {
                self.next += 1;
                Some(Ok((entry, raw)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
