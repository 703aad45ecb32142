//! CLOG and MultiXact rmgr records (`access/clog.h`, `access/multixact.h`):
//! the SLRU pages the page server zeroes and truncates, and multixact
//! creation whose members it writes.
//!
//! Bodies:
//!
//! * `CLOG_ZEROPAGE`, `XLOG_MULTIXACT_ZERO_OFF_PAGE`,
//!   `XLOG_MULTIXACT_ZERO_MEM_PAGE`: the page number, a C `int` (4 bytes).
//! * `CLOG_TRUNCATE` (`xl_clog_truncate`, 12 bytes): 0 `pageno` (int), 4
//!   `oldestXact`, 8 `oldestXactDb`.
//! * `XLOG_MULTIXACT_CREATE_ID` (`xl_multixact_create`, 12 + 8n bytes): 0
//!   `mid`, 4 `moff`, 8 `nmembers` (int), then per member 0 `xid`, 4
//!   `status` (`MultiXactStatus` enum, 4 bytes).
//! * `XLOG_MULTIXACT_TRUNCATE_ID` (`xl_multixact_truncate`, 20 bytes): 0
//!   `oldestMultiDB`, 4 `startTruncOff`, 8 `endTruncOff`, 12
//!   `startTruncMemb`, 16 `endTruncMemb`.

use super::reader::BodyReader;
use super::{name, rmgr_info, RecordError};
use crate::pg_constants::{
    CLOG_TRUNCATE, CLOG_ZEROPAGE, MAX_MULTIXACT_STATUS, RM_CLOG_ID, RM_MULTIXACT_ID,
    XLOG_MULTIXACT_CREATE_ID, XLOG_MULTIXACT_TRUNCATE_ID, XLOG_MULTIXACT_ZERO_MEM_PAGE,
    XLOG_MULTIXACT_ZERO_OFF_PAGE,
};

/// A decoded CLOG rmgr record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClogRecord {
    /// Zero CLOG page `pageno`.
    ZeroPage {
        /// CLOG page number.
        pageno: u32,
    },
    /// Remove CLOG segments before the one holding `pageno`.
    Truncate(ClogTruncate),
}

/// `xl_clog_truncate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClogTruncate {
    /// First page to keep.
    pub pageno: u32,
    /// New oldest xid.
    pub oldest_xact: u32,
    /// Database holding it.
    pub oldest_xact_db: u32,
}

/// A decoded MultiXact rmgr record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiXactRecord {
    /// Zero page `pageno` of `pg_multixact/offsets`.
    ZeroOffsetsPage {
        /// Offsets page number.
        pageno: u32,
    },
    /// Zero page `pageno` of `pg_multixact/members`.
    ZeroMembersPage {
        /// Members page number.
        pageno: u32,
    },
    /// A multixact was created.
    Create(MultiXactCreate),
    /// The multixact SLRUs were truncated.
    Truncate(MultiXactTruncate),
}

/// `MultiXactStatus`: how a member holds the tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MultiXactStatus {
    /// `FOR KEY SHARE`.
    ForKeyShare = 0,
    /// `FOR SHARE`.
    ForShare = 1,
    /// `FOR NO KEY UPDATE`.
    ForNoKeyUpdate = 2,
    /// `FOR UPDATE`.
    ForUpdate = 3,
    /// Update that does not touch key columns.
    NoKeyUpdate = 4,
    /// Update or delete.
    Update = 5,
}

impl MultiXactStatus {
    /// Map the raw value; `None` above `MaxMultiXactStatus`.
    pub fn from_u32(v: u32) -> Option<MultiXactStatus> {
        Some(match v {
            0 => MultiXactStatus::ForKeyShare,
            1 => MultiXactStatus::ForShare,
            2 => MultiXactStatus::ForNoKeyUpdate,
            3 => MultiXactStatus::ForUpdate,
            4 => MultiXactStatus::NoKeyUpdate,
            5 => MultiXactStatus::Update,
            _ => return None,
        })
    }
}

/// One member of a multixact (`MultiXactMember`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiXactMember {
    /// Member xid.
    pub xid: u32,
    /// Lock/update mode.
    pub status: MultiXactStatus,
}

/// `xl_multixact_create` with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiXactCreate {
    /// The new multixact id.
    pub mid: u32,
    /// Its first member's offset in `pg_multixact/members`.
    pub moff: u32,
    /// Members, stored at offsets `moff..moff + members.len()`.
    pub members: Vec<MultiXactMember>,
}

/// `xl_multixact_truncate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiXactTruncate {
    /// Database holding the new oldest multixact.
    pub oldest_multi_db: u32,
    /// Start of the removed offsets range (multixact ids).
    pub start_trunc_off: u32,
    /// End (exclusive) of the removed offsets range: the new oldest multi.
    pub end_trunc_off: u32,
    /// Start of the removed members range (member offsets).
    pub start_trunc_memb: u32,
    /// End (exclusive) of the removed members range.
    pub end_trunc_memb: u32,
}

pub(crate) fn decode_clog(info: u8, data: &[u8]) -> Result<ClogRecord, RecordError> {
    let rmgr = name(RM_CLOG_ID);
    let mut r = BodyReader::new(rmgr, info, data);
    let rec = match rmgr_info(info) {
        CLOG_ZEROPAGE => ClogRecord::ZeroPage {
            pageno: r.pageno("pageno")?,
        },
        CLOG_TRUNCATE => ClogRecord::Truncate(ClogTruncate {
            pageno: r.pageno("pageno")?,
            oldest_xact: r.u32("oldestXact")?,
            oldest_xact_db: r.u32("oldestXactDb")?,
        }),
        _ => return Err(RecordError::UnknownInfo { rmgr, info }),
    };
    r.finish("CLOG record")?;
    Ok(rec)
}

pub(crate) fn decode_multixact(info: u8, data: &[u8]) -> Result<MultiXactRecord, RecordError> {
    let rmgr = name(RM_MULTIXACT_ID);
    let mut r = BodyReader::new(rmgr, info, data);
    let rec = match rmgr_info(info) {
        XLOG_MULTIXACT_ZERO_OFF_PAGE => MultiXactRecord::ZeroOffsetsPage {
            pageno: r.pageno("pageno")?,
        },
        XLOG_MULTIXACT_ZERO_MEM_PAGE => MultiXactRecord::ZeroMembersPage {
            pageno: r.pageno("pageno")?,
        },
        XLOG_MULTIXACT_CREATE_ID => {
            let mid = r.u32("mid")?;
            let moff = r.u32("moff")?;
            let n = r.count("nmembers", 8)?;
            let mut members = Vec::with_capacity(n);
            for _ in 0..n {
                let xid = r.u32("member xid")?;
                let raw = r.u32("member status")?;
                let status = MultiXactStatus::from_u32(raw).ok_or_else(|| {
                    r.error(format!(
                        "member status {raw} of multixact {mid} exceeds {MAX_MULTIXACT_STATUS}"
                    ))
                })?;
                members.push(MultiXactMember { xid, status });
            }
            MultiXactRecord::Create(MultiXactCreate { mid, moff, members })
        }
        XLOG_MULTIXACT_TRUNCATE_ID => MultiXactRecord::Truncate(MultiXactTruncate {
            oldest_multi_db: r.u32("oldestMultiDB")?,
            start_trunc_off: r.u32("startTruncOff")?,
            end_trunc_off: r.u32("endTruncOff")?,
            start_trunc_memb: r.u32("startTruncMemb")?,
            end_trunc_memb: r.u32("endTruncMemb")?,
        }),
        _ => return Err(RecordError::UnknownInfo { rmgr, info }),
    };
    r.finish("MultiXact record")?;
    Ok(rec)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::records::{decode_rmgr_record, RmgrRecord};

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn clog_zeropage_and_truncate() {
        assert_eq!(
            decode_rmgr_record(RM_CLOG_ID, 0x00, &words(&[3])).unwrap(),
            RmgrRecord::Clog(ClogRecord::ZeroPage { pageno: 3 })
        );
        // pageno 2 | oldestXact 70000 | oldestXactDb 5
        assert_eq!(
            decode_clog(0x10, &words(&[2, 70000, 5])).unwrap(),
            ClogRecord::Truncate(ClogTruncate {
                pageno: 2,
                oldest_xact: 70000,
                oldest_xact_db: 5
            })
        );
        let err = decode_clog(0x00, &words(&[u32::MAX])).unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
        assert!(decode_clog(0x00, &words(&[1, 2])).is_err());
        assert!(decode_clog(0x10, &words(&[1, 2])).is_err());
    }

    /// Multixact 7 at offset 12 with members (700, ForShare) and
    /// (701, NoKeyUpdate): mid | moff | nmembers=2 | xid,status | xid,status.
    pub(crate) fn create_body() -> Vec<u8> {
        words(&[7, 12, 2, 700, 1, 701, 4])
    }

    #[test]
    fn multixact_records() {
        assert_eq!(
            decode_multixact(0x00, &words(&[1])).unwrap(),
            MultiXactRecord::ZeroOffsetsPage { pageno: 1 }
        );
        assert_eq!(
            decode_multixact(0x10, &words(&[2])).unwrap(),
            MultiXactRecord::ZeroMembersPage { pageno: 2 }
        );
        assert_eq!(
            decode_multixact(0x20, &create_body()).unwrap(),
            MultiXactRecord::Create(MultiXactCreate {
                mid: 7,
                moff: 12,
                members: vec![
                    MultiXactMember {
                        xid: 700,
                        status: MultiXactStatus::ForShare
                    },
                    MultiXactMember {
                        xid: 701,
                        status: MultiXactStatus::NoKeyUpdate
                    },
                ]
            })
        );
        assert_eq!(
            decode_multixact(0x30, &words(&[5, 1, 100, 0, 300])).unwrap(),
            MultiXactRecord::Truncate(MultiXactTruncate {
                oldest_multi_db: 5,
                start_trunc_off: 1,
                end_trunc_off: 100,
                start_trunc_memb: 0,
                end_trunc_memb: 300
            })
        );
    }

    #[test]
    fn multixact_errors() {
        let err = decode_multixact(0x20, &words(&[7, 12, 1, 700, 6])).unwrap_err();
        assert!(err.to_string().contains("status 6"), "{err}");
        // nmembers larger than the body.
        assert!(decode_multixact(0x20, &words(&[7, 12, 3, 700, 1])).is_err());
        // Trailing bytes.
        assert!(decode_multixact(0x20, &words(&[7, 12, 0, 1])).is_err());
        assert!(matches!(
            decode_multixact(0x40, &[]),
            Err(RecordError::UnknownInfo {
                rmgr: "MultiXact",
                ..
            })
        ));
    }
}
