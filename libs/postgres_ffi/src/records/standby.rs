//! Standby rmgr records (`storage/standbydefs.h`). Only `XLOG_RUNNING_XACTS`
//! is parsed: it tells which transactions were running, useful to start
//! tracking transactions at a point mid-WAL.
//!
//! `xl_running_xacts` (24 bytes + 4 per xid): 0 `xcnt` (int), 4 `subxcnt`
//! (int), 8 `subxid_overflow` (bool), 3 bytes padding, 12 `nextXid`, 16
//! `oldestRunningXid`, 20 `latestCompletedXid`, 24 `xcnt` top-level xids
//! followed by `subxcnt` subtransaction xids.

use super::reader::BodyReader;
use super::{name, rmgr_info, RecordError};
use crate::pg_constants::{
    RM_STANDBY_ID, XLOG_INVALIDATIONS, XLOG_RUNNING_XACTS, XLOG_STANDBY_LOCK,
};

/// A decoded Standby rmgr record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandbyRecord {
    /// Snapshot of running transactions.
    RunningXacts(RunningXacts),
}

/// `xl_running_xacts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningXacts {
    /// Running subxids were not all recorded.
    pub subxid_overflow: bool,
    /// Next xid to be assigned.
    pub next_xid: u32,
    /// Oldest running xid.
    pub oldest_running_xid: u32,
    /// Latest completed xid.
    pub latest_completed_xid: u32,
    /// Running top-level xids.
    pub xids: Vec<u32>,
    /// Running subtransaction xids.
    pub subxids: Vec<u32>,
}

/// Decode; `None` for records that need no native handling.
pub(crate) fn decode(info: u8, data: &[u8]) -> Result<Option<StandbyRecord>, RecordError> {
    let rmgr = name(RM_STANDBY_ID);
    match rmgr_info(info) {
        XLOG_RUNNING_XACTS => {}
        XLOG_STANDBY_LOCK | XLOG_INVALIDATIONS => return Ok(None),
        _ => return Err(RecordError::UnknownInfo { rmgr, info }),
    }
    let mut r = BodyReader::new(rmgr, info, data);
    let xcnt = r.i32("xcnt")?;
    let subxcnt = r.i32("subxcnt")?;
    let subxid_overflow = r.bool("subxid_overflow")?;
    r.skip(3, "padding")?;
    let next_xid = r.u32("nextXid")?;
    let oldest_running_xid = r.u32("oldestRunningXid")?;
    let latest_completed_xid = r.u32("latestCompletedXid")?;
    let nx = r.check_count("xcnt", i64::from(xcnt), 4)?;
    let xids = r.u32_vec(nx, "xids")?;
    let nsub = r.check_count("subxcnt", i64::from(subxcnt), 4)?;
    let subxids = r.u32_vec(nsub, "subxids")?;
    r.finish("xl_running_xacts")?;
    Ok(Some(StandbyRecord::RunningXacts(RunningXacts {
        subxid_overflow,
        next_xid,
        oldest_running_xid,
        latest_completed_xid,
        xids,
        subxids,
    })))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::records::{decode_rmgr_record, RmgrRecord};

    /// xcnt 2 | subxcnt 1 | overflow 0 + pad | nextXid 810 |
    /// oldestRunning 805 | latestCompleted 809 | xids 805, 807 | subxid 808.
    pub(crate) fn running_xacts_body() -> Vec<u8> {
        let mut b = Vec::new();
        for v in [2u32, 1, 0, 810, 805, 809, 805, 807, 808] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn running_xacts() {
        let rec = decode_rmgr_record(RM_STANDBY_ID, 0x10, &running_xacts_body()).unwrap();
        assert_eq!(
            rec,
            RmgrRecord::Standby(StandbyRecord::RunningXacts(RunningXacts {
                subxid_overflow: false,
                next_xid: 810,
                oldest_running_xid: 805,
                latest_completed_xid: 809,
                xids: vec![805, 807],
                subxids: vec![808],
            }))
        );
        let mut neg = running_xacts_body();
        neg[0..4].copy_from_slice(&(-2i32).to_le_bytes());
        assert!(decode(0x10, &neg).is_err());
        assert_eq!(decode(0x00, &[1, 2]).unwrap(), None);
        assert!(decode(0x30, &[]).is_err());
    }
}
