//! Per-record ingest: block images, then the record's native effects.

use bytes::{Bytes, BytesMut};
use pageserver_api::key::{
    rel_block_key, relmap_file_key, slru_block_key, twophase_file_key, RelTag, SlruKind,
    CHECKPOINT_KEY, CONTROLFILE_KEY, FSM_FORKNUM, MAIN_FORKNUM, VISIBILITYMAP_FORKNUM,
};
use pageserver_api::value::{ClogStatus, NativeRecord, Value, CLOG_XACTS_PER_PAGE};
use postgres_ffi::controlfile::{CheckPoint, ControlFileData};
use postgres_ffi::page::{page_is_new, page_set_checksum, page_set_lsn};
use postgres_ffi::pg_constants::WAL_SEGMENT_SIZE;
use postgres_ffi::walrecord::DecodedWALRecord;
use postgres_ffi::xlog_utils::{is_valid_wal_segment_size, page_header_size_at};
use utils::lsn::Lsn;

use super::state::{read_latest, IngestState};
use super::IngestError;
use crate::tenant::timeline::write::TimelineWriter;
use crate::tenant::timeline::Timeline;
use postgres_ffi::pg_constants::{
    MULTIXACT_FLAGBYTES_PER_GROUP, MULTIXACT_MEMBERGROUPS_PER_PAGE, MULTIXACT_MEMBERGROUP_SIZE,
    MULTIXACT_MEMBERS_PER_MEMBERGROUP, MULTIXACT_MEMBERS_PER_PAGE, MULTIXACT_OFFSETS_PER_PAGE,
    SLRU_PAGES_PER_SEGMENT,
};

/// Ingest state of one timeline: caches plus the checkpoint data that
/// `pg_control` will be generated from.
#[derive(Default)]
pub struct WalIngest {
    pub(super) state: IngestState,
    checkpoint: Option<CheckPoint>,
    checkpoint_dirty: bool,
    /// From the stored `pg_control`: data checksums on, WAL segment size.
    control: Option<(bool, usize)>,
}

/// Segment and page within it of SLRU page `pageno` (counting from the
/// SLRU's start).
pub fn slru_page_key(pageno: u32) -> (u32, u32) {
    (
        pageno / SLRU_PAGES_PER_SEGMENT,
        pageno % SLRU_PAGES_PER_SEGMENT,
    )
}

impl WalIngest {
    /// Forgets cached state (after an error; it is read again from storage).
    pub fn reset(&mut self) {
        *self = WalIngest::default();
    }

    /// Data checksums on, and the WAL segment size, from the stored
    /// `pg_control` (off and the default size when there is none).
    fn control(&mut self, tl: &Timeline) -> Result<(bool, usize), IngestError> {
        if let Some(v) = self.control {
            return Ok(v);
        }
        let v = match read_latest(tl, CONTROLFILE_KEY)? {
            Some(bytes) => {
                let c = ControlFileData::decode(&bytes)
                    .map_err(|e| IngestError::Corrupt(format!("stored pg_control: {e}")))?
                    .compat;
                (c.data_checksum_version != 0, c.xlog_seg_size as usize)
            }
            None => (false, WAL_SEGMENT_SIZE),
        };
        self.control = Some(v);
        Ok(v)
    }

    fn data_checksums(&mut self, tl: &Timeline) -> Result<bool, IngestError> {
        Ok(self.control(tl)?.0)
    }

    /// The checkpoint data as of the last record (from the stored
    /// checkpoint, else from `pg_control`).
    fn checkpoint(&mut self, tl: &Timeline) -> Result<&mut CheckPoint, IngestError> {
        if self.checkpoint.is_none() {
            let cp = match read_latest(tl, CHECKPOINT_KEY)? {
                Some(b) => CheckPoint::decode(&b)
                    .map_err(|e| IngestError::Corrupt(format!("stored checkpoint: {e}")))?,
                None => match read_latest(tl, CONTROLFILE_KEY)? {
                    Some(b) => {
                        ControlFileData::decode(&b)
                            .map_err(|e| IngestError::Corrupt(format!("stored pg_control: {e}")))?
                            .checkpoint_copy
                    }
                    None => CheckPoint::default(),
                },
            };
            self.checkpoint = Some(cp);
        }
        Ok(self.checkpoint.as_mut().expect("set above"))
    }

    pub(super) fn update_checkpoint(
        &mut self,
        tl: &Timeline,
        f: impl FnOnce(&mut CheckPoint),
    ) -> Result<(), IngestError> {
        let cp = self.checkpoint(tl)?;
        let before = *cp;
        f(cp);
        if *cp != before {
            self.checkpoint_dirty = true;
        }
        Ok(())
    }

    /// Raises the checkpoint's next xid above `xid` (modulo 2^32, keeping
    /// the epoch), as replay does.
    fn observe_xid(&mut self, tl: &Timeline, xid: u32) -> Result<(), IngestError> {
        if xid < 3 {
            return Ok(());
        }
        self.update_checkpoint(tl, |cp| {
            let next = cp.next_xid_xid();
            // `xid` follows `next` in modulo-2^32 order: it is newer.
            if (xid.wrapping_sub(next) as i32) >= 0 {
                let mut epoch = cp.next_xid_epoch();
                let new = xid.wrapping_add(1);
                if new < next {
                    epoch += 1;
                }
                let new = if new < 3 { 3 } else { new };
                cp.next_xid = (u64::from(epoch) << 32) | u64::from(new);
            }
        })
    }

    /// Stores every block image of `rec`, growing relations as needed.
    fn ingest_blocks(
        &mut self,
        tl: &Timeline,
        rec: &DecodedWALRecord,
        rmgr: &str,
    ) -> Result<(), IngestError> {
        let checksums = if rec.blocks.iter().any(|b| b.image.is_some()) {
            self.data_checksums(tl)?
        } else {
            false
        };
        for blk in &rec.blocks {
            if blk.forknum == FSM_FORKNUM || blk.forknum == VISIBILITYMAP_FORKNUM {
                continue;
            }
            let rel = RelTag {
                spcnode: blk.spcnode,
                dbnode: blk.dbnode,
                relnode: blk.relnode,
                forknum: blk.forknum,
            };
            let Some(image) = &blk.image else {
                return Err(IngestError::MissingImage {
                    lsn: rec.lsn,
                    rmgr: rmgr.to_string(),
                    rel: rel.to_string(),
                    blkno: blk.blkno,
                });
            };
            let mut page = BytesMut::from(&image[..]);
            if !page_is_new(&page) {
                page_set_lsn(&mut page, rec.end_lsn);
                if checksums {
                    page_set_checksum(&mut page, blk.blkno);
                }
            }
            self.state.create_rel(tl, rel)?;
            let size = self.state.rel_size(tl, rel)?.unwrap_or(0);
            if blk.blkno >= size {
                self.state.set_rel_size(rel, blk.blkno + 1);
            }
            self.state
                .pending
                .put(rel_block_key(rel, blk.blkno), Value::Image(page.freeze()));
        }
        Ok(())
    }

    /// Sets the CLOG status of `xids` (grouped by page), with the commit
    /// timestamp on commits.
    pub(super) fn set_clog_status(
        &mut self,
        tl: &Timeline,
        xids: &[u32],
        status: ClogStatus,
        commit_ts: Option<i64>,
    ) -> Result<(), IngestError> {
        let mut by_page: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
        for xid in xids {
            by_page
                .entry(xid / CLOG_XACTS_PER_PAGE)
                .or_default()
                .push(*xid);
        }
        for (pageno, xids) in by_page {
            let (segno, blkno) = slru_page_key(pageno);
            // A page PostgreSQL never zeroed here (e.g. before our history) starts zeroed.
            let key = slru_block_key(SlruKind::Clog, segno, blkno);
            if self
                .state
                .slru_segment_size(tl, SlruKind::Clog, segno)?
                .is_none_or(|s| s <= blkno)
            {
                self.state
                    .extend_slru_segment(tl, SlruKind::Clog, segno, blkno)?;
                if read_latest(tl, key)?.is_none() {
                    self.state
                        .pending
                        .push_record(tl, key, NativeRecord::SlruZeroPage)?;
                }
            }
            let rec = NativeRecord::ClogSetStatus {
                xids,
                status,
                commit_ts,
            };
            self.state.pending.push_record(tl, key, rec)?;
        }
        Ok(())
    }

    /// Zeroes an SLRU page (CLOG or multixact), creating its segment.
    pub(super) fn zero_slru_page(
        &mut self,
        tl: &Timeline,
        kind: SlruKind,
        pageno: u32,
    ) -> Result<(), IngestError> {
        let (segno, blkno) = slru_page_key(pageno);
        self.state.extend_slru_segment(tl, kind, segno, blkno)?;
        self.state.pending.put(
            slru_block_key(kind, segno, blkno),
            Value::Record(NativeRecord::SlruZeroPage),
        );
        Ok(())
    }

    /// Removes SLRU segments wholly before page `cutoff_page`.
    pub(super) fn truncate_slru(
        &mut self,
        tl: &Timeline,
        kind: SlruKind,
        cutoff_page: u32,
    ) -> Result<(), IngestError> {
        let cutoff_seg = cutoff_page / SLRU_PAGES_PER_SEGMENT;
        for segno in self.state.slru_segments(tl, kind)? {
            if segno < cutoff_seg {
                self.state.drop_slru_segment(tl, kind, segno)?;
            }
        }
        Ok(())
    }

    /// Records a multixact: its offset and its members with their statuses.
    pub(super) fn create_multixact(
        &mut self,
        tl: &Timeline,
        mid: u32,
        moff: u32,
        members: &[(u32, u8)],
    ) -> Result<(), IngestError> {
        let pageno = mid / MULTIXACT_OFFSETS_PER_PAGE;
        let (segno, blkno) = slru_page_key(pageno);
        let entry = (mid % MULTIXACT_OFFSETS_PER_PAGE) * 4;
        self.slru_write(
            tl,
            SlruKind::MultiXactOffsets,
            (segno, blkno),
            entry,
            moff.to_le_bytes().to_vec(),
        )?;
        for (i, (xid, status)) in members.iter().enumerate() {
            let off = moff.wrapping_add(i as u32);
            let pageno = off / MULTIXACT_MEMBERS_PER_PAGE;
            let (segno, blkno) = slru_page_key(pageno);
            let group = (off / MULTIXACT_MEMBERS_PER_MEMBERGROUP) % MULTIXACT_MEMBERGROUPS_PER_PAGE;
            let in_group = off % MULTIXACT_MEMBERS_PER_MEMBERGROUP;
            let base = group * MULTIXACT_MEMBERGROUP_SIZE;
            let page = (segno, blkno);
            self.slru_write(
                tl,
                SlruKind::MultiXactMembers,
                page,
                base + in_group,
                vec![*status],
            )?;
            let at = base + MULTIXACT_FLAGBYTES_PER_GROUP + in_group * 4;
            self.slru_write(
                tl,
                SlruKind::MultiXactMembers,
                page,
                at,
                xid.to_le_bytes().to_vec(),
            )?;
            self.observe_xid(tl, *xid)?;
        }
        let next_multi = mid.wrapping_add(1).max(1);
        let next_off = moff.wrapping_add(members.len() as u32);
        self.update_checkpoint(tl, |cp| {
            if (next_multi.wrapping_sub(cp.next_multi) as i32) > 0 {
                cp.next_multi = next_multi;
            }
            if (next_off.wrapping_sub(cp.next_multi_offset) as i32) > 0 {
                cp.next_multi_offset = next_off;
            }
        })
    }

    /// Several writes to one SLRU page in one record merge into one value:
    /// the page as pending so far plus this write.
    fn slru_write(
        &mut self,
        tl: &Timeline,
        kind: SlruKind,
        (segno, blkno): (u32, u32),
        offset: u32,
        bytes: Vec<u8>,
    ) -> Result<(), IngestError> {
        let key = slru_block_key(kind, segno, blkno);
        let write = NativeRecord::SlruWrite {
            offset: offset as u16,
            bytes,
        };
        self.state.pending.push_record(tl, key, write)
    }

    /// Stores a relmap file.
    pub(super) fn put_relmap(
        &mut self,
        tl: &Timeline,
        spcnode: u32,
        dbnode: u32,
        data: Bytes,
    ) -> Result<(), IngestError> {
        self.state.ensure_db(tl, spcnode, dbnode)?;
        self.state
            .pending
            .put(relmap_file_key(spcnode, dbnode), Value::Image(data));
        Ok(())
    }

    /// Stores or removes a two-phase state file.
    pub(super) fn twophase(
        &mut self,
        tl: &Timeline,
        xid: u32,
        content: Option<Bytes>,
    ) -> Result<(), IngestError> {
        match content {
            Some(data) => {
                self.state.twophase_dir_edit(tl, xid, true)?;
                self.state
                    .pending
                    .put(twophase_file_key(xid), Value::Image(data));
            }
            None => self.state.twophase_dir_edit(tl, xid, false)?,
        }
        Ok(())
    }

    /// Ingests one decoded record and publishes its end LSN. Records at or
    /// below the last record LSN (sent again after a reconnect) are skipped.
    pub fn ingest_record(
        &mut self,
        tl: &Timeline,
        writer: &mut TimelineWriter<'_>,
        rec: &DecodedWALRecord,
    ) -> Result<(), IngestError> {
        if rec.end_lsn <= tl.last_record_lsn() {
            return Ok(());
        }
        let rmgr = super::records::rmgr_name(rec.xl_rmid);
        self.ingest_blocks(tl, rec, rmgr)?;
        self.observe_xid(tl, rec.xl_xid)?;
        super::records::apply(self, tl, writer, rec)?;
        self.state.stage_dirs();
        if std::mem::take(&mut self.checkpoint_dirty) {
            let cp = self.checkpoint(tl)?.encode();
            self.state
                .pending
                .put(CHECKPOINT_KEY, Value::Image(Bytes::copy_from_slice(&cp)));
        }
        self.state.pending.write(writer, rec.end_lsn)?;
        // Under the write lock, with the record's LSN: see `LogicalSize`.
        tl.logical_size_tracker()
            .add_delta(self.state.take_size_delta());
        // Before the record's LSN is published: see `RelSizeCache`.
        tl.rel_size_cache()
            .changed(rec.end_lsn, self.state.take_rel_changes());
        // A record that ends at a page boundary is followed by a page header
        // that holds no record: PostgreSQL reports the position after it as
        // its insert LSN (`pg_current_wal_lsn()`), so we publish that too, or
        // a read at that LSN would wait for the next record.
        let (_, seg_size) = self.control(tl)?;
        let visible = if is_valid_wal_segment_size(seg_size) {
            rec.end_lsn + page_header_size_at(rec.end_lsn, seg_size) as u64
        } else {
            rec.end_lsn
        };
        writer.finish_write(visible)?;
        Ok(())
    }

    /// Replaces the checkpoint data (a checkpoint record), keeping the
    /// counters that only grow at their highest.
    pub(super) fn set_checkpoint(
        &mut self,
        tl: &Timeline,
        new: CheckPoint,
    ) -> Result<(), IngestError> {
        self.update_checkpoint(tl, |cp| {
            let keep_xid = (cp.next_xid_xid().wrapping_sub(new.next_xid_xid()) as i32) > 0;
            let old = *cp;
            *cp = new;
            if keep_xid {
                cp.next_xid = old.next_xid;
            }
        })
    }

    /// Records new WAL-relevant settings of the primary in the stored
    /// `pg_control` (a generated control file must carry them).
    pub(super) fn set_wal_parameters(
        &mut self,
        tl: &Timeline,
        params: postgres_ffi::controlfile::WalParameters,
    ) -> Result<(), IngestError> {
        let Some(bytes) = read_latest(tl, CONTROLFILE_KEY)? else {
            return Ok(());
        };
        let mut control = ControlFileData::decode(&bytes)
            .map_err(|e| IngestError::Corrupt(format!("stored pg_control: {e}")))?;
        control.params = params;
        self.state.pending.put(
            CONTROLFILE_KEY,
            Value::Image(Bytes::copy_from_slice(&control.encode())),
        );
        Ok(())
    }

    /// Sets the next OID.
    pub(super) fn set_next_oid(&mut self, tl: &Timeline, oid: u32) -> Result<(), IngestError> {
        self.update_checkpoint(tl, |cp| cp.next_oid = oid)
    }

    /// Relation size after a truncate of the main fork.
    pub(super) fn truncate_rel(
        &mut self,
        tl: &Timeline,
        rel: RelTag,
        nblocks: u32,
    ) -> Result<(), IngestError> {
        if self.state.rel_size(tl, rel)?.is_some() {
            self.state.set_rel_size(rel, nblocks);
        }
        Ok(())
    }

    /// A relation fork created by `smgrcreate` (free space and visibility
    /// map forks are not kept).
    pub(super) fn create_rel(&mut self, tl: &Timeline, rel: RelTag) -> Result<(), IngestError> {
        if rel.forknum != FSM_FORKNUM && rel.forknum != VISIBILITYMAP_FORKNUM {
            self.state.create_rel(tl, rel)?;
        }
        Ok(())
    }

    /// Drops every fork of a relation.
    pub(super) fn drop_relation(
        &mut self,
        tl: &Timeline,
        spcnode: u32,
        dbnode: u32,
        relnode: u32,
    ) -> Result<(), IngestError> {
        for forknum in [MAIN_FORKNUM, pageserver_api::key::INIT_FORKNUM] {
            self.state.drop_rel(
                tl,
                RelTag {
                    spcnode,
                    dbnode,
                    relnode,
                    forknum,
                },
            )?;
        }
        Ok(())
    }

    /// `CREATE DATABASE ... STRATEGY FILE_COPY`: copies every relation of
    /// the template database as of the last record, then the relmap file.
    pub(super) fn copy_database(
        &mut self,
        tl: &Timeline,
        writer: &mut TimelineWriter<'_>,
        lsn: Lsn,
        src: (u32, u32),
        dst: (u32, u32),
    ) -> Result<(), IngestError> {
        self.state.ensure_db(tl, dst.0, dst.1)?;
        for rel in self.state.rels_of_db(tl, src.0, src.1)? {
            let nblocks = self.state.rel_size(tl, rel)?.unwrap_or(0);
            let new = RelTag {
                spcnode: dst.0,
                dbnode: dst.1,
                ..rel
            };
            self.state.create_rel(tl, new)?;
            for blkno in 0..nblocks {
                let img = tl.get_latest_blocking(rel_block_key(rel, blkno))?;
                let mut page = BytesMut::from(&img[..]);
                if !page_is_new(&page) {
                    page_set_lsn(&mut page, lsn);
                    if self.data_checksums(tl)? {
                        page_set_checksum(&mut page, blkno);
                    }
                }
                // Written directly: a database can be larger than memory.
                writer.put(rel_block_key(new, blkno), lsn, &Value::Image(page.freeze()))?;
            }
            self.state.set_rel_size(new, nblocks);
        }
        if let Some(map) = read_latest(tl, relmap_file_key(src.0, src.1))? {
            self.state
                .pending
                .put(relmap_file_key(dst.0, dst.1), Value::Image(map));
        }
        Ok(())
    }
}
