//! The native effects of each resource manager's records (everything that
//! is not a block image).

use bytes::Bytes;
use pageserver_api::key::{RelTag, SlruKind, MAIN_FORKNUM};
use pageserver_api::value::ClogStatus;
use postgres_ffi::pg_constants::{
    MULTIXACT_MEMBERS_PER_PAGE, MULTIXACT_OFFSETS_PER_PAGE, SMGR_TRUNCATE_HEAP,
};
use postgres_ffi::records::{
    decode_rmgr_record, ClogRecord, DbaseRecord, MultiXactRecord, RmgrRecord, SmgrRecord,
    TblspcRecord, XactCompletion, XactRecord, XlogRecord,
};
use postgres_ffi::walrecord::DecodedWALRecord;

use super::ingest::WalIngest;
use super::IngestError;
use crate::tenant::timeline::write::TimelineWriter;
use crate::tenant::timeline::Timeline;

/// `pg_waldump`'s name of a resource manager.
pub fn rmgr_name(rmid: u8) -> &'static str {
    postgres_ffi::pg_constants::rmgr_name(rmid).unwrap_or("unknown rmgr")
}

fn rel(spcnode: u32, dbnode: u32, relnode: u32, forknum: u8) -> RelTag {
    RelTag {
        spcnode,
        dbnode,
        relnode,
        forknum,
    }
}

/// Applies the native effects of `rec`.
pub fn apply(
    ing: &mut WalIngest,
    tl: &Timeline,
    writer: &mut TimelineWriter<'_>,
    rec: &DecodedWALRecord,
) -> Result<(), IngestError> {
    let body = decode_rmgr_record(rec.xl_rmid, rec.xl_info, &rec.main_data)
        .map_err(|e| IngestError::Wal(format!("record at {}: {e}", rec.lsn)))?;
    match body {
        RmgrRecord::Xact(x) => apply_xact(ing, tl, rec, x),
        RmgrRecord::Clog(ClogRecord::ZeroPage { pageno }) => {
            ing.zero_slru_page(tl, SlruKind::Clog, pageno)
        }
        RmgrRecord::Clog(ClogRecord::Truncate(t)) => {
            ing.truncate_slru(tl, SlruKind::Clog, t.pageno)?;
            ing.update_checkpoint(tl, |cp| {
                cp.oldest_xid = t.oldest_xact;
                cp.oldest_xid_db = t.oldest_xact_db;
            })
        }
        RmgrRecord::MultiXact(m) => match m {
            MultiXactRecord::ZeroOffsetsPage { pageno } => {
                ing.zero_slru_page(tl, SlruKind::MultiXactOffsets, pageno)
            }
            MultiXactRecord::ZeroMembersPage { pageno } => {
                ing.zero_slru_page(tl, SlruKind::MultiXactMembers, pageno)
            }
            MultiXactRecord::Create(c) => {
                let members: Vec<(u32, u8)> =
                    c.members.iter().map(|m| (m.xid, m.status as u8)).collect();
                ing.create_multixact(tl, c.mid, c.moff, &members)
            }
            MultiXactRecord::Truncate(t) => {
                ing.truncate_slru(
                    tl,
                    SlruKind::MultiXactOffsets,
                    t.end_trunc_off / MULTIXACT_OFFSETS_PER_PAGE,
                )?;
                ing.truncate_slru(
                    tl,
                    SlruKind::MultiXactMembers,
                    t.end_trunc_memb / MULTIXACT_MEMBERS_PER_PAGE,
                )?;
                ing.update_checkpoint(tl, |cp| {
                    cp.oldest_multi = t.end_trunc_off;
                    cp.oldest_multi_db = t.oldest_multi_db;
                })
            }
        },
        RmgrRecord::Smgr(SmgrRecord::Create { rnode, fork }) => {
            ing.create_rel(tl, rel(rnode.spc_node, rnode.db_node, rnode.rel_node, fork))
        }
        RmgrRecord::Smgr(SmgrRecord::Truncate {
            blkno,
            rnode,
            flags,
        }) => {
            if flags & SMGR_TRUNCATE_HEAP != 0 {
                let main = rel(rnode.spc_node, rnode.db_node, rnode.rel_node, MAIN_FORKNUM);
                ing.truncate_rel(tl, main, blkno)?;
            }
            Ok(())
        }
        RmgrRecord::Dbase(d) => match d {
            DbaseRecord::CreateFileCopy {
                db_id,
                tablespace_id,
                src_db_id,
                src_tablespace_id,
            } => ing.copy_database(
                tl,
                writer,
                rec.end_lsn,
                (src_tablespace_id, src_db_id),
                (tablespace_id, db_id),
            ),
            DbaseRecord::CreateWalLog {
                db_id,
                tablespace_id,
            } => ing.state.ensure_db(tl, tablespace_id, db_id),
            DbaseRecord::Drop {
                db_id,
                tablespace_ids,
            } => {
                for ts in tablespace_ids {
                    ing.state.drop_db(tl, ts, db_id)?;
                }
                Ok(())
            }
        },
        RmgrRecord::Tblspc(TblspcRecord::Create { ts_id, path }) => {
            tracing::info!(tenant_id = %tl.tenant_id, timeline_id = %tl.timeline_id, "tablespace {ts_id} created at {path}: its relations are stored, base backups will not include it");
            Ok(())
        }
        RmgrRecord::Tblspc(TblspcRecord::Drop { .. }) => Ok(()),
        RmgrRecord::Relmap(u) => ing.put_relmap(tl, u.tsid, u.dbid, Bytes::from(u.data)),
        RmgrRecord::Xlog(x) => match x {
            XlogRecord::CheckpointShutdown(cp) | XlogRecord::CheckpointOnline(cp) => {
                ing.set_checkpoint(tl, cp)
            }
            XlogRecord::NextOid(oid) => ing.set_next_oid(tl, oid),
            XlogRecord::ParameterChange(params) => ing.set_wal_parameters(tl, params),
            XlogRecord::EndOfRecovery(e) => ing.update_checkpoint(tl, |cp| {
                cp.this_timeline_id = e.this_timeline_id;
                cp.prev_timeline_id = e.prev_timeline_id;
            }),
            XlogRecord::Switch
            | XlogRecord::Fpi
            | XlogRecord::FpiForHint
            | XlogRecord::OverwriteContrecord(_) => Ok(()),
        },
        // Heap records' visibility map changes need nothing: the map is not kept.
        RmgrRecord::Heap(_) | RmgrRecord::Standby(_) | RmgrRecord::Other { .. } => Ok(()),
    }
}

fn apply_xact(
    ing: &mut WalIngest,
    tl: &Timeline,
    rec: &DecodedWALRecord,
    x: XactRecord,
) -> Result<(), IngestError> {
    let finish = |ing: &mut WalIngest,
                  c: &XactCompletion,
                  xid: u32,
                  commit: bool|
     -> Result<(), IngestError> {
        let mut xids = vec![xid];
        xids.extend_from_slice(&c.subxacts);
        let (status, ts) = if commit {
            (ClogStatus::Committed, Some(c.xact_time))
        } else {
            (ClogStatus::Aborted, None)
        };
        ing.set_clog_status(tl, &xids, status, ts)?;
        if commit {
            ing.state.record_commit(tl, rec.end_lsn, c.xact_time)?;
        }
        for r in &c.dropped_rels {
            ing.drop_relation(tl, r.spc_node, r.db_node, r.rel_node)?;
        }
        Ok(())
    };
    match x {
        XactRecord::Commit(c) => finish(ing, &c, rec.xl_xid, true),
        XactRecord::Abort(c) => finish(ing, &c, rec.xl_xid, false),
        XactRecord::CommitPrepared(ref c) | XactRecord::AbortPrepared(ref c) => {
            let commit = matches!(x, XactRecord::CommitPrepared(_));
            let xid = c.twophase_xid.ok_or_else(|| {
                IngestError::Wal(format!(
                    "prepared transaction end at {} names no xid",
                    rec.lsn
                ))
            })?;
            finish(ing, c, xid, commit)?;
            ing.twophase(tl, xid, None)
        }
        XactRecord::Prepare(p) => {
            // The state file is the record's data followed by its CRC32C.
            let mut file = rec.main_data.to_vec();
            let crc = crc32c::crc32c(&file);
            file.extend_from_slice(&crc.to_le_bytes());
            ing.twophase(tl, p.xid, Some(Bytes::from(file)))
        }
        XactRecord::Assignment(_) => Ok(()),
    }
}
