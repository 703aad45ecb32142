//! Reassembling WAL records from a raw WAL byte stream (what the
//! replication protocol or segment files deliver), the way PostgreSQL 15's
//! `XLogDecodeNextRecord` does.
//!
//! [`WalStreamDecoder`] is fed bytes in any chunks with
//! [`WalStreamDecoder::feed_bytes`] and returns each complete record from
//! [`WalStreamDecoder::poll_decode`]. It checks every page header (magic,
//! flags, address, continuation length, segment size and system id), skips
//! page headers, joins records split across pages and segments, checks each
//! record's header, prev-link and CRC, skips the rest of a segment after
//! `XLOG_SWITCH`, and drops a record whose continuation was replaced by an
//! `XLOG_OVERWRITE_CONTRECORD` after a crash. The records it returns are
//! decoded with [`crate::walrecord::decode_wal_record`].

use bytes::{Buf, Bytes, BytesMut};
use utils::lsn::Lsn;

use crate::pg_constants::{RM_XLOG_ID, XLOG_OVERWRITE_CONTRECORD, XLOG_SWITCH, XLR_RMGR_INFO_MASK};
use crate::walrecord::{check_record_header, decode_wal_record, DecodedWALRecord, WalDecodeError};
use crate::xlog_utils::{
    is_valid_wal_segment_size, segment_offset, xlog_record_crc, XLogLongPageHeaderData,
    XLogPageHeaderData, XLogRecord, MAXALIGN, WAL_SEGMENT_SIZE, XLOG_BLCKSZ, XLOG_PAGE_MAGIC,
    XLOG_SIZE_OF_XLOG_LONG_PHD, XLOG_SIZE_OF_XLOG_RECORD, XLOG_SIZE_OF_XLOG_SHORT_PHD,
    XLP_ALL_FLAGS, XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD, XLP_LONG_HEADER,
};

/// Initial buffer reserved for a record; larger records grow the buffer as
/// their bytes arrive, so a corrupt length cannot force a huge allocation.
const RECORD_BUF_INITIAL: usize = 64 * 1024;

/// What the decoder expects at its current position.
#[derive(Debug)]
enum State {
    /// The start of a record (after alignment padding).
    NewRecord,
    /// The rest of a record of `total` bytes starting at `start`; `buf` holds
    /// the bytes read so far.
    Record {
        start: Lsn,
        total: u32,
        buf: BytesMut,
    },
    /// The continuation of a record that began before the decoder's start
    /// LSN: `remaining` bytes to skip, page headers included as usual.
    SkipContinuation { remaining: u32 },
    /// Unused space up to `until` after an `XLOG_SWITCH` record: skipped
    /// without reading page headers.
    SkipToSegmentEnd { until: Lsn },
    /// A previous call failed; the stream cannot be trusted further.
    Failed(WalDecodeError),
}

/// Reassembles WAL records from a byte stream starting at a given LSN. See
/// the module documentation.
#[derive(Debug)]
pub struct WalStreamDecoder {
    /// LSN of the first byte in `input`.
    lsn: Lsn,
    input: BytesMut,
    state: State,
    seg_size: usize,
    /// Start of the last record returned, to check the next `xl_prev`.
    prev_record: Option<Lsn>,
    /// System id from the first long page header seen.
    sysid: Option<u64>,
    /// Start of a record dropped because its continuation was overwritten;
    /// the next record must be the `XLOG_OVERWRITE_CONTRECORD` naming it.
    aborted_record: Option<Lsn>,
}

impl WalStreamDecoder {
    /// A decoder for a stream whose first byte is at `start_lsn`, with the
    /// default 16 MiB segments. `start_lsn` may be a page start (a record
    /// continued from the previous page is skipped) or the start of a record.
    pub fn new(start_lsn: Lsn) -> Self {
        Self::with_segment_size(start_lsn, WAL_SEGMENT_SIZE)
    }

    /// Like [`WalStreamDecoder::new`] for a cluster whose segments are
    /// `seg_size` bytes (`initdb --wal-segsize`). An invalid `seg_size` or
    /// `start_lsn` is reported by the first [`WalStreamDecoder::poll_decode`].
    pub fn with_segment_size(start_lsn: Lsn, seg_size: usize) -> Self {
        let state = match Self::check_start(start_lsn, seg_size) {
            Ok(()) => State::NewRecord,
            Err(detail) => State::Failed(WalDecodeError::InvalidStart {
                lsn: start_lsn,
                detail,
            }),
        };
        Self {
            lsn: start_lsn,
            input: BytesMut::new(),
            state,
            seg_size,
            prev_record: None,
            sysid: None,
            aborted_record: None,
        }
    }

    fn check_start(lsn: Lsn, seg_size: usize) -> Result<(), String> {
        if !is_valid_wal_segment_size(seg_size) {
            return Err(format!(
                "{seg_size} is not a valid WAL segment size (a power of two from 1 MiB to 1 GiB)"
            ));
        }
        if !lsn.is_aligned(MAXALIGN) {
            return Err("a WAL record or page starts at a multiple of 8 bytes".into());
        }
        let in_page = lsn.0 % XLOG_BLCKSZ as u64;
        let header = if segment_offset(lsn, seg_size) < XLOG_BLCKSZ {
            XLOG_SIZE_OF_XLOG_LONG_PHD
        } else {
            XLOG_SIZE_OF_XLOG_SHORT_PHD
        };
        if in_page != 0 && in_page < header as u64 {
            return Err(format!(
                "the LSN is inside the {header}-byte page header; start at the page start or a record start"
            ));
        }
        Ok(())
    }

    /// The LSN up to which input has been consumed.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// The segment size the decoder was created with.
    pub fn segment_size(&self) -> usize {
        self.seg_size
    }

    /// Appends the next bytes of the stream.
    pub fn feed_bytes(&mut self, buf: &[u8]) {
        self.input.extend_from_slice(buf);
    }

    /// Returns the next complete record as `(end LSN, record bytes)`, or
    /// `None` when more input is needed. The end LSN is MAXALIGNed
    /// (PostgreSQL's `EndRecPtr`); after an `XLOG_SWITCH` record it is the
    /// start of the next segment. The record's start LSN is
    /// [`WalStreamDecoder::last_record_lsn`].
    ///
    /// After an error the decoder returns the same error forever.
    pub fn poll_decode(&mut self) -> Result<Option<(Lsn, Bytes)>, WalDecodeError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        match self.poll_inner() {
            Ok(r) => Ok(r),
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// Start LSN of the record last returned by
    /// [`WalStreamDecoder::poll_decode`].
    pub fn last_record_lsn(&self) -> Option<Lsn> {
        self.prev_record
    }

    /// Like [`WalStreamDecoder::poll_decode`], also decoding the record.
    pub fn poll_decode_record(&mut self) -> Result<Option<DecodedWALRecord>, WalDecodeError> {
        match self.poll_decode()? {
            Some((end, rec)) => {
                let start = self.prev_record.expect("set for every record returned");
                decode_wal_record(start, end, rec).map(Some)
            }
            None => Ok(None),
        }
    }

    fn consume(&mut self, n: usize) {
        self.input.advance(n);
        self.lsn = Lsn(self.lsn.0 + n as u64);
    }

    fn room_on_page(&self) -> usize {
        XLOG_BLCKSZ - (self.lsn.0 % XLOG_BLCKSZ as u64) as usize
    }

    fn poll_inner(&mut self) -> Result<Option<(Lsn, Bytes)>, WalDecodeError> {
        loop {
            if let State::SkipToSegmentEnd { until } = self.state {
                let n = (until.0 - self.lsn.0).min(self.input.len() as u64) as usize;
                self.consume(n);
                if self.lsn < until {
                    return Ok(None);
                }
                self.state = State::NewRecord;
                continue;
            }
            if matches!(self.state, State::NewRecord) && !self.lsn.is_aligned(MAXALIGN) {
                let pad = (self.lsn.align().0 - self.lsn.0) as usize;
                if self.input.len() < pad {
                    return Ok(None);
                }
                self.consume(pad);
            }
            if self.lsn.is_aligned(XLOG_BLCKSZ as u64) {
                if !self.read_page_header()? {
                    return Ok(None);
                }
                continue;
            }
            let room = self.room_on_page();
            match &mut self.state {
                State::NewRecord => {
                    // Records are 8-byte aligned and page headers are a
                    // multiple of 8, so xl_tot_len is on this page.
                    if self.input.len() < 4 {
                        return Ok(None);
                    }
                    let total = u32::from_le_bytes(self.input[..4].try_into().expect("4 bytes"));
                    if total == 0 {
                        return Err(WalDecodeError::EndOfWal {
                            lsn: self.lsn,
                            detail: "record length is 0".into(),
                        });
                    }
                    check_record_header(
                        self.lsn,
                        &XLogRecord {
                            xl_tot_len: total,
                            ..XLogRecord::default()
                        },
                    )?;
                    self.state = State::Record {
                        start: self.lsn,
                        total,
                        buf: BytesMut::with_capacity((total as usize).min(RECORD_BUF_INITIAL)),
                    };
                }
                State::Record { start, total, buf } => {
                    let want = *total as usize - buf.len();
                    let n = want.min(room).min(self.input.len());
                    if n == 0 {
                        return Ok(None);
                    }
                    let had_header = buf.len() >= XLOG_SIZE_OF_XLOG_RECORD;
                    buf.extend_from_slice(&self.input[..n]);
                    if !had_header && buf.len() >= XLOG_SIZE_OF_XLOG_RECORD {
                        // Check the header before waiting for a long record's
                        // other pages, as PostgreSQL does.
                        let hdr = XLogRecord::from_bytes(buf).expect("24 bytes");
                        check_header(*start, &hdr, self.prev_record)?;
                    }
                    self.consume(n);
                    if n == want {
                        return self.finish_record().map(Some);
                    }
                }
                State::SkipContinuation { remaining } => {
                    let n = (*remaining as usize).min(room).min(self.input.len());
                    if n == 0 {
                        return Ok(None);
                    }
                    *remaining -= n as u32;
                    let done = *remaining == 0;
                    self.consume(n);
                    if done {
                        self.state = State::NewRecord;
                    }
                }
                State::SkipToSegmentEnd { .. } | State::Failed(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }

    /// Reads and checks the page header at `self.lsn` (a page start) and
    /// updates the state for what the page starts with. Returns false when
    /// more input is needed.
    fn read_page_header(&mut self) -> Result<bool, WalDecodeError> {
        let page = self.lsn;
        let bad = |detail: String| WalDecodeError::InvalidPageHeader { lsn: page, detail };
        if self.input.len() < XLOG_SIZE_OF_XLOG_SHORT_PHD {
            return Ok(false);
        }
        let hdr = XLogPageHeaderData::from_bytes(&self.input).expect("enough bytes");
        if self.input[..XLOG_SIZE_OF_XLOG_SHORT_PHD]
            .iter()
            .all(|&b| b == 0)
        {
            return Err(WalDecodeError::EndOfWal {
                lsn: page,
                detail: "zeroed page header".into(),
            });
        }
        if hdr.xlp_magic != XLOG_PAGE_MAGIC {
            return Err(bad(format!(
                "invalid magic number {:04X} (PostgreSQL 15 writes {XLOG_PAGE_MAGIC:04X})",
                hdr.xlp_magic
            )));
        }
        if hdr.xlp_info & !XLP_ALL_FLAGS != 0 {
            return Err(bad(format!("invalid info bits {:04X}", hdr.xlp_info)));
        }
        if hdr.xlp_pageaddr != page.0 {
            return Err(bad(format!(
                "unexpected page address {}",
                Lsn(hdr.xlp_pageaddr)
            )));
        }
        let at_segment_start = segment_offset(page, self.seg_size) == 0;
        if at_segment_start && !hdr.is_long() {
            return Err(bad(format!(
                "invalid info bits {:04X}: the first page of a segment has a long header",
                hdr.xlp_info
            )));
        }
        if hdr.xlp_info & XLP_LONG_HEADER != 0 {
            if self.input.len() < XLOG_SIZE_OF_XLOG_LONG_PHD {
                return Ok(false);
            }
            let long = XLogLongPageHeaderData::from_bytes(&self.input).expect("enough bytes");
            if long.xlp_seg_size as usize != self.seg_size {
                return Err(bad(format!(
                    "WAL segment size {} in the page header, the decoder expects {}",
                    long.xlp_seg_size, self.seg_size
                )));
            }
            if long.xlp_xlog_blcksz as usize != XLOG_BLCKSZ {
                return Err(bad(format!(
                    "WAL page size {} in the page header, expected {XLOG_BLCKSZ}",
                    long.xlp_xlog_blcksz
                )));
            }
            match self.sysid {
                Some(s) if s != long.xlp_sysid => {
                    return Err(bad(format!(
                        "system identifier {} differs from {s} seen earlier in the stream",
                        long.xlp_sysid
                    )))
                }
                _ => self.sysid = Some(long.xlp_sysid),
            }
        }
        let contrecord = hdr.xlp_info & XLP_FIRST_IS_CONTRECORD != 0;
        let overwrite = hdr.xlp_info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0;
        match &self.state {
            State::Record { start, total, buf } => {
                if overwrite {
                    // The record's continuation was lost in a crash and
                    // PostgreSQL wrote XLOG_OVERWRITE_CONTRECORD here instead:
                    // forget the partial record.
                    self.aborted_record = Some(*start);
                    self.state = State::NewRecord;
                } else if !contrecord {
                    return Err(bad(format!(
                        "there is no contrecord flag, but the record at {start} continues here"
                    )));
                } else if hdr.xlp_rem_len as usize != *total as usize - buf.len() {
                    return Err(bad(format!(
                        "invalid contrecord length {}: the record at {start} has {} bytes left",
                        hdr.xlp_rem_len,
                        *total as usize - buf.len()
                    )));
                }
            }
            State::SkipContinuation { remaining } => {
                if overwrite {
                    self.state = State::NewRecord;
                } else if !contrecord || hdr.xlp_rem_len != *remaining {
                    return Err(bad(format!(
                        "invalid contrecord length {} (flags {:04X}): {} bytes of the skipped record are left",
                        hdr.xlp_rem_len, hdr.xlp_info, remaining
                    )));
                }
            }
            State::NewRecord => {
                if contrecord && !overwrite {
                    if self.prev_record.is_some() || self.aborted_record.is_some() {
                        return Err(bad(format!(
                            "contrecord flag set (xlp_rem_len {}) where a new record starts",
                            hdr.xlp_rem_len
                        )));
                    }
                    // The stream starts in the middle of a record: skip it.
                    if hdr.xlp_rem_len == 0 {
                        return Err(bad("contrecord flag set with xlp_rem_len 0".into()));
                    }
                    self.state = State::SkipContinuation {
                        remaining: hdr.xlp_rem_len,
                    };
                }
            }
            State::SkipToSegmentEnd { .. } | State::Failed(_) => unreachable!("not read here"),
        }
        self.consume(hdr.size());
        Ok(true)
    }

    /// Checks the complete record in `State::Record` and returns it with its
    /// end LSN.
    fn finish_record(&mut self) -> Result<(Lsn, Bytes), WalDecodeError> {
        let State::Record { start, buf, .. } = std::mem::replace(&mut self.state, State::NewRecord)
        else {
            unreachable!("called in State::Record")
        };
        let rec = buf.freeze();
        let hdr = XLogRecord::from_bytes(&rec).expect("xl_tot_len >= 24");
        let computed = xlog_record_crc(&rec);
        if computed != hdr.xl_crc {
            return Err(WalDecodeError::BadCrc {
                lsn: start,
                stored: hdr.xl_crc,
                computed,
            });
        }
        let info = hdr.xl_info & XLR_RMGR_INFO_MASK;
        let mut end = self.lsn.align();
        if hdr.xl_rmid == RM_XLOG_ID && info == XLOG_SWITCH {
            // The rest of the segment is unused; PostgreSQL's EndRecPtr is
            // the next segment's start.
            end = self.lsn.align_up(self.seg_size as u64);
            self.state = State::SkipToSegmentEnd { until: end };
        }
        if let Some(aborted) = self.aborted_record.take() {
            // PostgreSQL writes XLOG_OVERWRITE_CONTRECORD, whose main data
            // starts with the aborted record's LSN, right where the
            // continuation should have been.
            let decoded = decode_wal_record(start, end, rec.clone())?;
            let named = decoded
                .main_data
                .get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            if hdr.xl_rmid != RM_XLOG_ID
                || info != XLOG_OVERWRITE_CONTRECORD
                || named != Some(aborted.0)
            {
                return Err(WalDecodeError::InvalidRecord {
                    lsn: start,
                    detail: format!(
                        "the page is flagged XLP_FIRST_IS_OVERWRITE_CONTRECORD, but this is not an XLOG_OVERWRITE_CONTRECORD record for the record at {aborted}"
                    ),
                });
            }
        }
        self.prev_record = Some(start);
        Ok((end, rec))
    }
}

/// Checks of a record header read in full: length, rmgr id and prev-link
/// (`ValidXLogRecordHeader`).
fn check_header(start: Lsn, hdr: &XLogRecord, prev: Option<Lsn>) -> Result<(), WalDecodeError> {
    check_record_header(start, hdr)?;
    if let Some(prev) = prev {
        if hdr.xl_prev != prev.0 {
            return Err(WalDecodeError::InvalidRecord {
                lsn: start,
                detail: format!(
                    "record with incorrect prev-link {}, expected {prev}",
                    Lsn(hdr.xl_prev)
                ),
            });
        }
    }
    Ok(())
}

/// Decodes every complete record in `bytes`, a WAL stream starting at
/// `start_lsn` with 16 MiB segments, stopping quietly at the first error,
/// at the end of the WAL (zeros) or at a record cut off by the end of
/// `bytes`. For tests and tools; use [`try_decode_all`] to see errors.
pub fn decode_all(start_lsn: Lsn, bytes: &[u8]) -> Vec<DecodedWALRecord> {
    match try_decode_all(start_lsn, bytes, WAL_SEGMENT_SIZE) {
        Ok((records, _)) => records,
        Err((records, _)) => records,
    }
}

/// Decodes every complete record in `bytes`, a WAL stream starting at
/// `start_lsn` with `seg_size`-byte segments. Returns the records and where
/// the WAL ends: zeros ([`WalDecodeError::EndOfWal`]) or the end of `bytes`
/// (a last record may be cut off). Any other error is returned with the
/// records decoded before it.
#[allow(clippy::type_complexity)]
pub fn try_decode_all(
    start_lsn: Lsn,
    bytes: &[u8],
    seg_size: usize,
) -> Result<(Vec<DecodedWALRecord>, Lsn), (Vec<DecodedWALRecord>, WalDecodeError)> {
    let mut decoder = WalStreamDecoder::with_segment_size(start_lsn, seg_size);
    decoder.feed_bytes(bytes);
    let mut records = Vec::new();
    loop {
        match decoder.poll_decode_record() {
            Ok(Some(rec)) => records.push(rec),
            Ok(None) => {
                let end = records.last().map_or(start_lsn, |r| r.end_lsn);
                return Ok((records, end));
            }
            Err(WalDecodeError::EndOfWal { .. }) => {
                let end = records.last().map_or(start_lsn, |r| r.end_lsn);
                return Ok((records, end));
            }
            Err(e) => return Err((records, e)),
        }
    }
}

#[cfg(test)]
mod tests;
