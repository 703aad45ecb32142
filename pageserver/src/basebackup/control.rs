//! The generated part of a base backup: a `pg_control` saying "cleanly shut
//! down at LSN", and the WAL segment(s) holding that shutdown checkpoint
//! record, so that a stock PostgreSQL 15 starts on the data directory
//! without replaying any other WAL.
//!
//! PostgreSQL's start-up reads the checkpoint record that `pg_control`
//! points at (validating the segment's long page header, the page header of
//! the record's page and the record's CRC), sees a shutdown checkpoint whose
//! redo pointer is the record itself, and so skips recovery. New WAL then
//! starts right after the record, on the same page.

use std::time::{SystemTime, UNIX_EPOCH};

use postgres_ffi::controlfile::{CheckPoint, ControlFileData, DbState, RecoveryPoints};
use postgres_ffi::pg_constants::{
    RM_XLOG_ID, XLOG_BLCKSZ, XLOG_CHECKPOINT_SHUTDOWN, XLOG_PAGE_MAGIC,
};
use postgres_ffi::xlog_utils::{
    encode_wal_record, is_valid_wal_segment_size, page_header_size_at, segment_lsn, segment_number,
    segment_offset, xlog_file_name, WalPageWriter, XLogLongPageHeaderData, XLogPageHeaderData,
    XLP_LONG_HEADER,
};
use utils::lsn::Lsn;

/// The timeline id written into generated WAL and `pg_control`. Every
/// compute starts on a fresh data directory, so it is always 1.
pub const COMPUTE_TLI: u32 = 1;

/// `pg_control` and WAL for a data directory as of one LSN.
#[derive(Debug)]
pub struct GeneratedControl {
    /// The `global/pg_control` file (8 KiB).
    pub pg_control: Vec<u8>,
    /// WAL segment files as `(file name, content)`; usually one.
    pub wal_segments: Vec<(String, Vec<u8>)>,
    /// Where the checkpoint record starts (`pg_control`'s checkpoint and
    /// redo location).
    pub checkpoint_lsn: Lsn,
    /// The end of the checkpoint record: where the compute's WAL continues.
    pub end_lsn: Lsn,
}

/// Why `pg_control` could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The stored control file has a WAL segment size we cannot lay out.
    #[error("stored pg_control has an invalid WAL segment size of {0} bytes")]
    SegmentSize(u32),
    /// The LSN is not 8-byte aligned, so no record can start there.
    #[error("LSN {0} is not 8-byte aligned; a base backup must be taken at a record boundary")]
    Unaligned(Lsn),
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Generates `pg_control` and WAL for a base backup at `lsn`.
///
/// `stored` is the control file kept for the timeline (from `initdb` or an
/// import: identity, settings and build constants), `checkpoint` the
/// checkpoint data as of `lsn` (next xid, oid, multixact, ...), and `prev`
/// the start of the record that ends at `lsn` when known (it becomes the
/// checkpoint record's `xl_prev`; 0 otherwise, which PostgreSQL accepts for
/// a record read at a known location).
pub fn generate(
    stored: &ControlFileData,
    checkpoint: &CheckPoint,
    lsn: Lsn,
    prev: Option<Lsn>,
) -> Result<GeneratedControl, ControlError> {
    let seg_size = stored.compat.xlog_seg_size as usize;
    if !is_valid_wal_segment_size(seg_size) {
        return Err(ControlError::SegmentSize(stored.compat.xlog_seg_size));
    }
    if !lsn.is_aligned(8) {
        return Err(ControlError::Unaligned(lsn));
    }
    // No record starts inside a page header: at a page start the record
    // goes after the header, where PostgreSQL would put it.
    let record_lsn = lsn + page_header_size_at(lsn, seg_size) as u64;
    let now = unix_now();
    let mut cp = *checkpoint;
    cp.redo = record_lsn;
    cp.this_timeline_id = COMPUTE_TLI;
    cp.prev_timeline_id = COMPUTE_TLI;
    cp.full_page_writes = true;
    cp.time = now;
    // A shutdown checkpoint has no running transactions.
    cp.oldest_active_xid = 0;

    let prev = prev.filter(|p| *p < record_lsn).unwrap_or(Lsn(0));
    let record = encode_wal_record(RM_XLOG_ID, XLOG_CHECKPOINT_SHUTDOWN, 0, prev, &cp.encode());
    let mut writer =
        WalPageWriter::new(record_lsn, COMPUTE_TLI, stored.system_identifier, seg_size);
    let (start, end_lsn) = writer.append_record(&record);
    debug_assert_eq!(start, record_lsn);
    let wal = writer.into_bytes();

    // Lay the written bytes into zero-filled segments, each with its long
    // header, plus a short header on the record's page when the writer
    // started in the middle of it.
    let mut wal_segments = Vec::new();
    let first_seg = segment_number(record_lsn, seg_size);
    let last_seg = segment_number(Lsn(record_lsn.0 + wal.len() as u64 - 1), seg_size);
    for segno in first_seg..=last_seg {
        let seg_start = segment_lsn(segno, 0, seg_size);
        let mut content = vec![0u8; seg_size];
        let long = XLogLongPageHeaderData {
            std: page_header(seg_start, XLP_LONG_HEADER),
            xlp_sysid: stored.system_identifier,
            xlp_seg_size: seg_size as u32,
            xlp_xlog_blcksz: XLOG_BLCKSZ as u32,
        };
        content[..long.encode().len()].copy_from_slice(&long.encode());
        if segno == first_seg {
            let page_start = Lsn(record_lsn.0 - record_lsn.0 % XLOG_BLCKSZ as u64);
            let off = segment_offset(page_start, seg_size);
            if off != 0 {
                let short = page_header(page_start, 0).encode();
                content[off..off + short.len()].copy_from_slice(&short);
            }
        }
        // The part of `wal` that falls into this segment.
        let from = seg_start.0.max(record_lsn.0);
        let to = (seg_start.0 + seg_size as u64).min(record_lsn.0 + wal.len() as u64);
        let src = &wal[(from - record_lsn.0) as usize..(to - record_lsn.0) as usize];
        let dst = (from - seg_start.0) as usize;
        content[dst..dst + src.len()].copy_from_slice(src);
        wal_segments.push((xlog_file_name(COMPUTE_TLI, segno, seg_size), content));
    }

    let mut control = stored.clone();
    control.state = DbState::Shutdowned;
    control.time = now;
    control.checkpoint = record_lsn;
    control.checkpoint_copy = cp;
    control.recovery = RecoveryPoints::default();
    control.unlogged_lsn = control.unlogged_lsn.max(Lsn(1000));
    Ok(GeneratedControl {
        pg_control: control.encode().to_vec(),
        wal_segments,
        checkpoint_lsn: record_lsn,
        end_lsn,
    })
}

fn page_header(page: Lsn, info: u16) -> XLogPageHeaderData {
    XLogPageHeaderData {
        xlp_magic: XLOG_PAGE_MAGIC,
        xlp_info: info,
        xlp_tli: COMPUTE_TLI,
        xlp_pageaddr: page.0,
        xlp_rem_len: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_ffi::controlfile::WalParameters;
    use postgres_ffi::pg_constants::PG_CONTROL_FILE_SIZE;
    use postgres_ffi::waldecoder::WalStreamDecoder;
    use postgres_ffi::xlog_utils::XLOG_SIZE_OF_XLOG_SHORT_PHD;

    const SEG: usize = 16 << 20;

    fn stored() -> ControlFileData {
        let cp = CheckPoint {
            next_xid: 1000,
            next_oid: 20000,
            next_multi: 1,
            oldest_xid: 3,
            oldest_xid_db: 1,
            oldest_multi: 1,
            oldest_multi_db: 1,
            ..CheckPoint::default()
        };
        let mut c = ControlFileData::new_pg15(
            0x1234_5678,
            Lsn(0x100_0028),
            cp,
            WalParameters::default(),
            1,
        );
        c.compat.xlog_seg_size = SEG as u32;
        c
    }

    /// Decodes the generated segment(s) from the checkpoint record's page
    /// and returns the record found at the checkpoint location.
    fn decode(g: &GeneratedControl) -> (Lsn, Lsn) {
        let mut stream = Vec::new();
        for (_, seg) in &g.wal_segments {
            stream.extend_from_slice(seg);
        }
        let first = postgres_ffi::xlog_utils::parse_xlog_file_name(&g.wal_segments[0].0, SEG)
            .expect("segment file name")
            .1;
        let base = segment_lsn(first, 0, SEG);
        // Start at the page when the record follows its header (so the
        // header is checked too), else at the record.
        let page = Lsn(g.checkpoint_lsn.0 - g.checkpoint_lsn.0 % XLOG_BLCKSZ as u64);
        let from = if g.checkpoint_lsn.0 - page.0 <= 40 {
            page
        } else {
            g.checkpoint_lsn
        };
        let mut d = WalStreamDecoder::new(from);
        d.feed_bytes(&stream[(from.0 - base.0) as usize..]);
        let rec = d.poll_decode_record().expect("decodes").expect("a record");
        assert_eq!(rec.xl_rmid, RM_XLOG_ID);
        (rec.lsn, rec.end_lsn)
    }

    #[test]
    fn checkpoint_record_in_the_middle_of_a_page() {
        let lsn = Lsn(0x0300_1230);
        let g = generate(
            &stored(),
            &stored().checkpoint_copy,
            lsn,
            Some(Lsn(0x0300_1100)),
        )
        .unwrap();
        assert_eq!(g.checkpoint_lsn, lsn);
        assert_eq!(g.wal_segments.len(), 1);
        assert_eq!(g.wal_segments[0].0, "000000010000000000000003");
        let (start, end) = decode(&g);
        assert_eq!(start, lsn);
        assert_eq!(end, g.end_lsn);
        let c = ControlFileData::decode(&g.pg_control).unwrap();
        assert_eq!(g.pg_control.len(), PG_CONTROL_FILE_SIZE);
        assert_eq!(c.state, DbState::Shutdowned);
        assert_eq!(c.checkpoint, lsn);
        assert_eq!(c.checkpoint_copy.redo, lsn);
        assert_eq!(c.checkpoint_copy.next_xid, 1000);
        assert_eq!(c.checkpoint_copy.next_oid, 20000);
        assert_eq!(c.system_identifier, 0x1234_5678);
    }

    #[test]
    fn checkpoint_record_after_a_page_header() {
        let page = Lsn(0x0300_4000);
        let g = generate(&stored(), &stored().checkpoint_copy, page, None).unwrap();
        assert_eq!(g.checkpoint_lsn, page + XLOG_SIZE_OF_XLOG_SHORT_PHD as u64);
        assert_eq!(decode(&g).0, g.checkpoint_lsn);
        // The same LSN as PostgreSQL reports it (after the header) gives
        // the same layout.
        let g2 = generate(&stored(), &stored().checkpoint_copy, g.checkpoint_lsn, None).unwrap();
        assert_eq!(g2.checkpoint_lsn, g.checkpoint_lsn);
    }

    #[test]
    fn checkpoint_record_at_a_segment_start_and_across_segments() {
        let seg_start = Lsn(0x0400_0000);
        let g = generate(&stored(), &stored().checkpoint_copy, seg_start, None).unwrap();
        assert_eq!(g.checkpoint_lsn, seg_start + 40);
        assert_eq!(decode(&g).0, g.checkpoint_lsn);

        let near_end = Lsn(0x0400_0000 - 48);
        let g = generate(&stored(), &stored().checkpoint_copy, near_end, None).unwrap();
        assert_eq!(g.wal_segments.len(), 2);
        assert_eq!(g.wal_segments[1].0, "000000010000000000000004");
        let (start, end) = decode(&g);
        assert_eq!((start, end), (near_end, g.end_lsn));
        assert!(g.end_lsn > Lsn(0x0400_0000));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut s = stored();
        assert!(matches!(
            generate(&s, &s.checkpoint_copy, Lsn(0x0300_1231), None),
            Err(ControlError::Unaligned(_))
        ));
        s.compat.xlog_seg_size = 12345;
        assert!(matches!(
            generate(&s, &s.checkpoint_copy, Lsn(0x0300_1230), None),
            Err(ControlError::SegmentSize(12345))
        ));
    }
}
