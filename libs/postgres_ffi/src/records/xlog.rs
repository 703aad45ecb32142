//! XLOG rmgr records (`catalog/pg_control.h`, `access/xlog_internal.h`).
//!
//! Bodies:
//!
//! * `XLOG_CHECKPOINT_SHUTDOWN` / `_ONLINE`: a `CheckPoint`, 88 bytes (layout
//!   in [`crate::controlfile`]).
//! * `XLOG_NEXTOID`: one `Oid` (4 bytes).
//! * `XLOG_SWITCH`, `XLOG_FPI`, `XLOG_FPI_FOR_HINT`: no body of interest
//!   (the images are block references); the body is not inspected.
//! * `XLOG_PARAMETER_CHANGE` (`xl_parameter_change`, 28 bytes): 0
//!   `MaxConnections`, 4 `max_worker_processes`, 8 `max_wal_senders`, 12
//!   `max_prepared_xacts`, 16 `max_locks_per_xact`, 20 `wal_level` (all
//!   `int`), 24 `wal_log_hints`, 25 `track_commit_timestamp` (bool), 2 bytes
//!   padding.
//! * `XLOG_END_OF_RECOVERY` (`xl_end_of_recovery`, 16 bytes): 0 `end_time`
//!   (TimestampTz), 8 `ThisTimeLineID`, 12 `PrevTimeLineID`.
//! * `XLOG_OVERWRITE_CONTRECORD` (`xl_overwrite_contrecord`, 16 bytes): 0
//!   `overwritten_lsn`, 8 `overwrite_time` (TimestampTz).
//!
//! `XLOG_NOOP`, `XLOG_BACKUP_END`, `XLOG_RESTORE_POINT` and
//! `XLOG_FPW_CHANGE` need no native handling.

use utils::lsn::Lsn;

use super::reader::BodyReader;
use super::{name, rmgr_info, RecordError};
use crate::controlfile::{CheckPoint, WalParameters, SIZEOF_CHECKPOINT};
use crate::pg_constants::{
    RM_XLOG_ID, XLOG_BACKUP_END, XLOG_CHECKPOINT_ONLINE, XLOG_CHECKPOINT_SHUTDOWN,
    XLOG_END_OF_RECOVERY, XLOG_FPI, XLOG_FPI_FOR_HINT, XLOG_FPW_CHANGE, XLOG_NEXTOID, XLOG_NOOP,
    XLOG_OVERWRITE_CONTRECORD, XLOG_PARAMETER_CHANGE, XLOG_RESTORE_POINT, XLOG_SWITCH,
};

/// Size of `xl_parameter_change`.
pub const SIZEOF_PARAMETER_CHANGE: usize = 28;

/// A decoded XLOG rmgr record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XlogRecord {
    /// Shutdown checkpoint.
    CheckpointShutdown(CheckPoint),
    /// Online checkpoint.
    CheckpointOnline(CheckPoint),
    /// OIDs up to this value were handed out.
    NextOid(u32),
    /// The rest of the WAL segment is unused.
    Switch,
    /// WAL-relevant settings changed.
    ParameterChange(WalParameters),
    /// Recovery ended without an end-of-recovery checkpoint.
    EndOfRecovery(EndOfRecovery),
    /// Full-page image(s) in the block references.
    Fpi,
    /// Full-page image written for a hint-bit change.
    FpiForHint,
    /// An unfinished continuation record was overwritten.
    OverwriteContrecord(OverwriteContrecord),
}

/// `xl_end_of_recovery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndOfRecovery {
    /// Time recovery ended (TimestampTz).
    pub end_time: i64,
    /// New timeline.
    pub this_timeline_id: u32,
    /// Timeline forked from.
    pub prev_timeline_id: u32,
}

/// `xl_overwrite_contrecord`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverwriteContrecord {
    /// Start of the record that was abandoned.
    pub overwritten_lsn: Lsn,
    /// When it was overwritten (TimestampTz).
    pub overwrite_time: i64,
}

/// Decode; `None` for records that need no native handling.
pub(crate) fn decode(info: u8, data: &[u8]) -> Result<Option<XlogRecord>, RecordError> {
    let rmgr = name(RM_XLOG_ID);
    let mut r = BodyReader::new(rmgr, info, data);
    let rec = match rmgr_info(info) {
        op @ (XLOG_CHECKPOINT_SHUTDOWN | XLOG_CHECKPOINT_ONLINE) => {
            let cp = CheckPoint::decode(data).map_err(|_| {
                r.error(format!(
                    "checkpoint body is {} bytes, expected {SIZEOF_CHECKPOINT}",
                    data.len()
                ))
            })?;
            if op == XLOG_CHECKPOINT_SHUTDOWN {
                XlogRecord::CheckpointShutdown(cp)
            } else {
                XlogRecord::CheckpointOnline(cp)
            }
        }
        XLOG_NEXTOID => {
            let oid = r.u32("nextOid")?;
            r.finish("nextOid")?;
            XlogRecord::NextOid(oid)
        }
        XLOG_SWITCH => XlogRecord::Switch,
        XLOG_FPI => XlogRecord::Fpi,
        XLOG_FPI_FOR_HINT => XlogRecord::FpiForHint,
        XLOG_PARAMETER_CHANGE => {
            let p = WalParameters {
                max_connections: r.i32("MaxConnections")?,
                max_worker_processes: r.i32("max_worker_processes")?,
                max_wal_senders: r.i32("max_wal_senders")?,
                max_prepared_xacts: r.i32("max_prepared_xacts")?,
                max_locks_per_xact: r.i32("max_locks_per_xact")?,
                wal_level: r.i32("wal_level")?,
                wal_log_hints: r.bool("wal_log_hints")?,
                track_commit_timestamp: r.bool("track_commit_timestamp")?,
            };
            r.skip(2, "xl_parameter_change padding")?;
            r.finish("xl_parameter_change")?;
            XlogRecord::ParameterChange(p)
        }
        XLOG_END_OF_RECOVERY => {
            let e = EndOfRecovery {
                end_time: r.i64("end_time")?,
                this_timeline_id: r.u32("ThisTimeLineID")?,
                prev_timeline_id: r.u32("PrevTimeLineID")?,
            };
            r.finish("xl_end_of_recovery")?;
            XlogRecord::EndOfRecovery(e)
        }
        XLOG_OVERWRITE_CONTRECORD => {
            let o = OverwriteContrecord {
                overwritten_lsn: Lsn(r.u64("overwritten_lsn")?),
                overwrite_time: r.i64("overwrite_time")?,
            };
            r.finish("xl_overwrite_contrecord")?;
            XlogRecord::OverwriteContrecord(o)
        }
        XLOG_NOOP | XLOG_BACKUP_END | XLOG_RESTORE_POINT | XLOG_FPW_CHANGE => return Ok(None),
        _ => return Err(RecordError::UnknownInfo { rmgr, info }),
    };
    Ok(Some(rec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg_constants::{RM_XLOG_ID, WAL_LEVEL_LOGICAL};
    use crate::records::{decode_rmgr_record, RmgrRecord};

    fn decode_xlog(info: u8, body: &[u8]) -> Result<RmgrRecord, RecordError> {
        decode_rmgr_record(RM_XLOG_ID, info, body)
    }

    #[test]
    fn checkpoints() {
        let cp = CheckPoint {
            redo: Lsn(0x0100_0028),
            this_timeline_id: 1,
            prev_timeline_id: 1,
            full_page_writes: true,
            next_xid: 740,
            next_oid: 24576,
            ..Default::default()
        };
        let body = cp.encode();
        assert_eq!(
            decode_xlog(0x00, &body).unwrap(),
            RmgrRecord::Xlog(XlogRecord::CheckpointShutdown(cp))
        );
        // Low info bits (XLR_INFO_MASK) are ignored.
        assert_eq!(
            decode_xlog(0x10 | 0x02, &body).unwrap(),
            RmgrRecord::Xlog(XlogRecord::CheckpointOnline(cp))
        );
        let err = decode_xlog(0x10, &body[..80]).unwrap_err();
        assert!(err.to_string().contains("expected 88"), "{err}");
    }

    #[test]
    fn nextoid_switch_fpi() {
        assert_eq!(
            decode_xlog(0x30, &16384u32.to_le_bytes()).unwrap(),
            RmgrRecord::Xlog(XlogRecord::NextOid(16384))
        );
        assert!(decode_xlog(0x30, &[1, 2, 3]).is_err());
        assert!(decode_xlog(0x30, &[1, 2, 3, 4, 5]).is_err());
        assert_eq!(
            decode_xlog(0x40, &[]).unwrap(),
            RmgrRecord::Xlog(XlogRecord::Switch)
        );
        assert_eq!(
            decode_xlog(0xB0, &[]).unwrap(),
            RmgrRecord::Xlog(XlogRecord::Fpi)
        );
        assert_eq!(
            decode_xlog(0xA0, &[]).unwrap(),
            RmgrRecord::Xlog(XlogRecord::FpiForHint)
        );
        assert_eq!(
            decode_xlog(0x70, b"name").unwrap(),
            RmgrRecord::Other {
                rmid: RM_XLOG_ID,
                info: 0x70
            }
        );
        assert!(matches!(
            decode_xlog(0xC0, &[]),
            Err(RecordError::UnknownInfo { .. })
        ));
    }

    #[test]
    fn parameter_change() {
        // 100, 8, 10, 5, 64, wal_level 2, wal_log_hints 1, track_commit_ts 0,
        // 2 bytes padding.
        let mut b = Vec::new();
        for v in [100i32, 8, 10, 5, 64, WAL_LEVEL_LOGICAL] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&[1, 0, 0, 0]);
        assert_eq!(b.len(), SIZEOF_PARAMETER_CHANGE);
        let RmgrRecord::Xlog(XlogRecord::ParameterChange(p)) = decode_xlog(0x60, &b).unwrap()
        else {
            panic!()
        };
        assert_eq!(p.max_connections, 100);
        assert_eq!(p.max_locks_per_xact, 64);
        assert_eq!(p.wal_level, WAL_LEVEL_LOGICAL);
        assert!(p.wal_log_hints);
        assert!(!p.track_commit_timestamp);
        assert!(decode_xlog(0x60, &b[..26]).is_err());
    }

    #[test]
    fn end_of_recovery_and_overwrite() {
        let mut b = 55i64.to_le_bytes().to_vec();
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            decode_xlog(0x90, &b).unwrap(),
            RmgrRecord::Xlog(XlogRecord::EndOfRecovery(EndOfRecovery {
                end_time: 55,
                this_timeline_id: 2,
                prev_timeline_id: 1
            }))
        );
        let mut b = 0x0200_0010u64.to_le_bytes().to_vec();
        b.extend_from_slice(&66i64.to_le_bytes());
        assert_eq!(
            decode_xlog(0xD0, &b).unwrap(),
            RmgrRecord::Xlog(XlogRecord::OverwriteContrecord(OverwriteContrecord {
                overwritten_lsn: Lsn(0x0200_0010),
                overwrite_time: 66
            }))
        );
        assert!(decode_xlog(0xD0, &b[..15]).is_err());
    }
}
