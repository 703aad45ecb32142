//! Bodies (`main_data`) of the PostgreSQL 15 WAL records whose effects the
//! page server derives natively instead of from block images (DESIGN.md
//! section 1): transaction status, SLRU pages, relation and database
//! lifecycle, relmap updates, checkpoint fields, and visibility-map bits
//! that heap records clear without logging the VM page.
//!
//! [`decode_rmgr_record`] dispatches on the resource manager id and the
//! rmgr bits of `xl_info`; records that need no native handling come back as
//! [`RmgrRecord::Other`]. A body that does not match its layout is a
//! [`RecordError`] naming the rmgr and the problem, never a panic. Each
//! submodule documents the byte layout (x86_64) of the bodies it parses.

pub mod heap;
mod reader;
pub mod slru;
pub mod standby;
pub mod storage;
#[cfg(test)]
pub(crate) mod test_cluster;
#[cfg(test)]
mod tests_real_pg;
pub mod xact;
pub mod xlog;

use thiserror::Error;

use crate::pg_constants::{
    rmgr_name, RM_CLOG_ID, RM_DBASE_ID, RM_HEAP2_ID, RM_HEAP_ID, RM_MULTIXACT_ID, RM_RELMAP_ID,
    RM_SMGR_ID, RM_STANDBY_ID, RM_TBLSPC_ID, RM_XACT_ID, RM_XLOG_ID, XLR_RMGR_INFO_MASK,
};

pub use heap::HeapRecord;
pub use slru::{ClogRecord, MultiXactRecord};
pub use standby::{RunningXacts, StandbyRecord};
pub use storage::{DbaseRecord, RelmapUpdate, SmgrRecord, TblspcRecord};
pub use xact::{XactCompletion, XactRecord};
pub use xlog::XlogRecord;

/// A body that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// The body does not match the layout its info code announces.
    #[error("malformed {rmgr} WAL record (info {info:#04x}): {problem}")]
    Malformed {
        /// Resource manager name as `pg_waldump` prints it.
        rmgr: &'static str,
        /// `xl_info` of the record.
        info: u8,
        /// What is wrong.
        problem: String,
    },
    /// The info code is not one PostgreSQL 15 writes for this rmgr.
    #[error(
        "{rmgr} WAL record has unknown info code {info:#04x}; \
         is the WAL from PostgreSQL 15?"
    )]
    UnknownInfo {
        /// Resource manager name.
        rmgr: &'static str,
        /// `xl_info` of the record.
        info: u8,
    },
}

/// Physical identity of a relation (`RelFileNode`: 12 bytes, `spcNode`,
/// `dbNode`, `relNode`, each a `u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RelFileNode {
    /// Tablespace OID.
    pub spc_node: u32,
    /// Database OID (0 for shared relations).
    pub db_node: u32,
    /// Relation file number.
    pub rel_node: u32,
}

impl RelFileNode {
    /// Size on disk and in WAL.
    pub const SIZE: usize = 12;

    pub(crate) fn read(r: &mut reader::BodyReader<'_>, field: &str) -> Result<Self, RecordError> {
        Ok(RelFileNode {
            spc_node: r.u32(field)?,
            db_node: r.u32(field)?,
            rel_node: r.u32(field)?,
        })
    }
}

/// A decoded record body.
#[derive(Debug, Clone, PartialEq)]
pub enum RmgrRecord {
    /// XLOG rmgr.
    Xlog(XlogRecord),
    /// Transaction rmgr.
    Xact(XactRecord),
    /// Storage rmgr.
    Smgr(SmgrRecord),
    /// CLOG rmgr.
    Clog(ClogRecord),
    /// Database rmgr.
    Dbase(DbaseRecord),
    /// Tablespace rmgr.
    Tblspc(TblspcRecord),
    /// MultiXact rmgr.
    MultiXact(MultiXactRecord),
    /// RelMap rmgr.
    Relmap(RelmapUpdate),
    /// Standby rmgr.
    Standby(StandbyRecord),
    /// Heap or Heap2 record that clears or sets visibility-map bits.
    Heap(HeapRecord),
    /// A record that needs no native handling (its blocks carry images).
    Other {
        /// Resource manager id.
        rmid: u8,
        /// `xl_info`.
        info: u8,
    },
}

/// Decode the body of a record of resource manager `rmid` with `xl_info`
/// `info` (the full byte; the low `XLR_INFO_MASK` bits are ignored).
pub fn decode_rmgr_record(rmid: u8, info: u8, main_data: &[u8]) -> Result<RmgrRecord, RecordError> {
    let other = Ok(RmgrRecord::Other { rmid, info });
    let decoded = match rmid {
        RM_XLOG_ID => xlog::decode(info, main_data)?.map(RmgrRecord::Xlog),
        RM_XACT_ID => xact::decode(info, main_data)?.map(RmgrRecord::Xact),
        RM_SMGR_ID => Some(RmgrRecord::Smgr(storage::decode_smgr(info, main_data)?)),
        RM_CLOG_ID => Some(RmgrRecord::Clog(slru::decode_clog(info, main_data)?)),
        RM_DBASE_ID => Some(RmgrRecord::Dbase(storage::decode_dbase(info, main_data)?)),
        RM_TBLSPC_ID => Some(RmgrRecord::Tblspc(storage::decode_tblspc(info, main_data)?)),
        RM_MULTIXACT_ID => Some(RmgrRecord::MultiXact(slru::decode_multixact(
            info, main_data,
        )?)),
        RM_RELMAP_ID => Some(RmgrRecord::Relmap(storage::decode_relmap(info, main_data)?)),
        RM_STANDBY_ID => standby::decode(info, main_data)?.map(RmgrRecord::Standby),
        RM_HEAP_ID => heap::decode_heap(info, main_data)?.map(RmgrRecord::Heap),
        RM_HEAP2_ID => heap::decode_heap2(info, main_data)?.map(RmgrRecord::Heap),
        _ => None,
    };
    match decoded {
        Some(rec) => Ok(rec),
        None => other,
    }
}

/// Rmgr opcode bits of `xl_info`.
pub(crate) fn rmgr_info(info: u8) -> u8 {
    info & XLR_RMGR_INFO_MASK
}

/// `pg_waldump` name of a built-in rmgr, for error messages.
pub(crate) fn name(rmid: u8) -> &'static str {
    rmgr_name(rmid).unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_rmgrs_and_index_records_are_other() {
        for rmid in [11u8, 12, 15, 21, 22, 128, 255] {
            assert_eq!(
                decode_rmgr_record(rmid, 0x10, &[1, 2, 3]),
                Ok(RmgrRecord::Other { rmid, info: 0x10 })
            );
        }
    }

    #[test]
    fn error_messages_name_the_rmgr() {
        let err = decode_rmgr_record(RM_CLOG_ID, 0x00, &[1]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("CLOG"), "{msg}");
        assert!(msg.contains("pageno"), "{msg}");
        let err = decode_rmgr_record(RM_CLOG_ID, 0x70, &[]).unwrap_err();
        assert_eq!(
            err,
            RecordError::UnknownInfo {
                rmgr: "CLOG",
                info: 0x70
            }
        );
    }

    proptest::proptest! {
        /// Arbitrary bytes under any rmgr and info code decode or fail
        /// cleanly; they never panic.
        #[test]
        fn arbitrary_bodies_never_panic(
            rmid in 0u8..24,
            info in proptest::prelude::any::<u8>(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
        ) {
            let _ = decode_rmgr_record(rmid, info, &body);
        }
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        // Every prefix of every body that some parser accepts must decode
        // or fail cleanly.
        let bodies: Vec<(u8, u8, Vec<u8>)> = vec![
            (RM_XACT_ID, 0x80, xact::tests::full_commit_body()),
            (RM_XACT_ID, 0x10, xact::tests::prepare_body("g", &[5, 6])),
            (RM_MULTIXACT_ID, 0x20, slru::tests::create_body()),
            (RM_XLOG_ID, 0x00, vec![0; 88]),
            (RM_RELMAP_ID, 0x00, storage::tests::relmap_body()),
            (RM_STANDBY_ID, 0x10, standby::tests::running_xacts_body()),
        ];
        for (rmid, info, body) in bodies {
            assert!(decode_rmgr_record(rmid, info, &body).is_ok());
            for cut in 0..body.len() {
                let res = decode_rmgr_record(rmid, info, &body[..cut]);
                let err = res.expect_err("a truncated body must be rejected");
                assert!(err.to_string().contains(name(rmid)), "{err}");
            }
        }
    }
}
