//! Records that create, truncate and drop files: Storage (smgr), Database,
//! Tablespace, and RelMap (`catalog/storage_xlog.h`,
//! `commands/dbcommands_xlog.h`, `commands/tablespace.h`,
//! `utils/relmapper.h`).
//!
//! Bodies:
//!
//! * `XLOG_SMGR_CREATE` (`xl_smgr_create`, 16 bytes): 0 RelFileNode (12), 12
//!   `forkNum` (int).
//! * `XLOG_SMGR_TRUNCATE` (`xl_smgr_truncate`, 20 bytes): 0 `blkno`, 4
//!   RelFileNode, 16 `flags` (int, `SMGR_TRUNCATE_*`).
//! * `XLOG_DBASE_CREATE_FILE_COPY` (16 bytes): 0 `db_id`, 4
//!   `tablespace_id`, 8 `src_db_id`, 12 `src_tablespace_id`.
//! * `XLOG_DBASE_CREATE_WAL_LOG` (8 bytes): 0 `db_id`, 4 `tablespace_id`.
//! * `XLOG_DBASE_DROP` (8 + 4n bytes): 0 `db_id`, 4 `ntablespaces` (int),
//!   8 tablespace OIDs.
//! * `XLOG_TBLSPC_CREATE`: 0 `ts_id`, 4 NUL-terminated path.
//! * `XLOG_TBLSPC_DROP` (4 bytes): 0 `ts_id`.
//! * `XLOG_RELMAP_UPDATE` (12 + nbytes): 0 `dbid` (0 for the shared map), 4
//!   `tsid`, 8 `nbytes` (int, must be 512 in PostgreSQL 15), 12 the whole new
//!   `pg_filenode.map` contents.

use super::reader::BodyReader;
use super::{name, rmgr_info, RecordError, RelFileNode};
use crate::pg_constants::{
    MAX_FORKNUM, RELMAPPER_FILESIZE, RM_DBASE_ID, RM_RELMAP_ID, RM_SMGR_ID, RM_TBLSPC_ID,
    XLOG_DBASE_CREATE_FILE_COPY, XLOG_DBASE_CREATE_WAL_LOG, XLOG_DBASE_DROP, XLOG_RELMAP_UPDATE,
    XLOG_SMGR_CREATE, XLOG_SMGR_TRUNCATE, XLOG_TBLSPC_CREATE, XLOG_TBLSPC_DROP,
};

/// A decoded Storage rmgr record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmgrRecord {
    /// A relation fork file was created (empty).
    Create {
        /// The relation.
        rnode: RelFileNode,
        /// The fork (`MAIN_FORKNUM` ..= `INIT_FORKNUM`).
        fork: u8,
    },
    /// A relation was truncated to `blkno` blocks.
    Truncate {
        /// New size in blocks of the truncated forks' relation.
        blkno: u32,
        /// The relation.
        rnode: RelFileNode,
        /// Which forks (`SMGR_TRUNCATE_HEAP`, `_VM`, `_FSM`).
        flags: u32,
    },
}

/// A decoded Database rmgr record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbaseRecord {
    /// `CREATE DATABASE ... STRATEGY file_copy`: the source directory is
    /// copied as of this record.
    CreateFileCopy {
        /// New database OID.
        db_id: u32,
        /// Its tablespace.
        tablespace_id: u32,
        /// Template database OID.
        src_db_id: u32,
        /// Template's tablespace.
        src_tablespace_id: u32,
    },
    /// `CREATE DATABASE ... STRATEGY wal_log`: an empty directory; its
    /// contents follow as WAL-logged blocks.
    CreateWalLog {
        /// New database OID.
        db_id: u32,
        /// Its tablespace.
        tablespace_id: u32,
    },
    /// A database was dropped from these tablespaces.
    Drop {
        /// Dropped database OID.
        db_id: u32,
        /// Tablespaces whose directory of the database is removed.
        tablespace_ids: Vec<u32>,
    },
}

/// A decoded Tablespace rmgr record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TblspcRecord {
    /// A tablespace was created at `path`.
    Create {
        /// Tablespace OID.
        ts_id: u32,
        /// Location.
        path: String,
    },
    /// A tablespace was dropped.
    Drop {
        /// Tablespace OID.
        ts_id: u32,
    },
}

/// `xl_relmap_update`: the new contents of a `pg_filenode.map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelmapUpdate {
    /// Database OID, or 0 for the shared map in `global/`.
    pub dbid: u32,
    /// Tablespace of the database, or `GLOBALTABLESPACE_OID`.
    pub tsid: u32,
    /// The whole 512-byte file.
    pub data: Vec<u8>,
}

pub(crate) fn decode_smgr(info: u8, data: &[u8]) -> Result<SmgrRecord, RecordError> {
    let rmgr = name(RM_SMGR_ID);
    let mut r = BodyReader::new(rmgr, info, data);
    let rec = match rmgr_info(info) {
        XLOG_SMGR_CREATE => {
            let rnode = RelFileNode::read(&mut r, "rnode")?;
            let fork = r.i32("forkNum")?;
            let fork = u8::try_from(fork)
                .ok()
                .filter(|f| *f <= MAX_FORKNUM)
                .ok_or_else(|| r.error(format!("forkNum {fork} is not a valid fork")))?;
            SmgrRecord::Create { rnode, fork }
        }
        XLOG_SMGR_TRUNCATE => SmgrRecord::Truncate {
            blkno: r.u32("blkno")?,
            rnode: RelFileNode::read(&mut r, "rnode")?,
            flags: r.u32("flags")?,
        },
        _ => return Err(RecordError::UnknownInfo { rmgr, info }),
    };
    r.finish("Storage record")?;
    Ok(rec)
}

pub(crate) fn decode_dbase(info: u8, data: &[u8]) -> Result<DbaseRecord, RecordError> {
    let rmgr = name(RM_DBASE_ID);
    let mut r = BodyReader::new(rmgr, info, data);
    let rec = match rmgr_info(info) {
        XLOG_DBASE_CREATE_FILE_COPY => DbaseRecord::CreateFileCopy {
            db_id: r.u32("db_id")?,
            tablespace_id: r.u32("tablespace_id")?,
            src_db_id: r.u32("src_db_id")?,
            src_tablespace_id: r.u32("src_tablespace_id")?,
        },
        XLOG_DBASE_CREATE_WAL_LOG => DbaseRecord::CreateWalLog {
            db_id: r.u32("db_id")?,
            tablespace_id: r.u32("tablespace_id")?,
        },
        XLOG_DBASE_DROP => {
            let db_id = r.u32("db_id")?;
            let n = r.count("ntablespaces", 4)?;
            DbaseRecord::Drop {
                db_id,
                tablespace_ids: r.u32_vec(n, "tablespace_ids")?,
            }
        }
        _ => return Err(RecordError::UnknownInfo { rmgr, info }),
    };
    r.finish("Database record")?;
    Ok(rec)
}

pub(crate) fn decode_tblspc(info: u8, data: &[u8]) -> Result<TblspcRecord, RecordError> {
    let rmgr = name(RM_TBLSPC_ID);
    let mut r = BodyReader::new(rmgr, info, data);
    let rec = match rmgr_info(info) {
        XLOG_TBLSPC_CREATE => TblspcRecord::Create {
            ts_id: r.u32("ts_id")?,
            path: r.cstring("ts_path")?,
        },
        XLOG_TBLSPC_DROP => TblspcRecord::Drop {
            ts_id: r.u32("ts_id")?,
        },
        _ => return Err(RecordError::UnknownInfo { rmgr, info }),
    };
    r.finish("Tablespace record")?;
    Ok(rec)
}

pub(crate) fn decode_relmap(info: u8, data: &[u8]) -> Result<RelmapUpdate, RecordError> {
    let rmgr = name(RM_RELMAP_ID);
    if rmgr_info(info) != XLOG_RELMAP_UPDATE {
        return Err(RecordError::UnknownInfo { rmgr, info });
    }
    let mut r = BodyReader::new(rmgr, info, data);
    let dbid = r.u32("dbid")?;
    let tsid = r.u32("tsid")?;
    let nbytes = r.i32("nbytes")?;
    if usize::try_from(nbytes).ok() != Some(RELMAPPER_FILESIZE) {
        return Err(r.error(format!(
            "nbytes is {nbytes}, expected {RELMAPPER_FILESIZE} (PostgreSQL 15 relmap file size)"
        )));
    }
    let data = r.bytes(RELMAPPER_FILESIZE, "relmap data")?.to_vec();
    r.finish("xl_relmap_update")?;
    Ok(RelmapUpdate { dbid, tsid, data })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pg_constants::{RELMAPPER_FILEMAGIC, SMGR_TRUNCATE_ALL};
    use crate::records::{decode_rmgr_record, RmgrRecord};

    fn words(ws: &[u32]) -> Vec<u8> {
        ws.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    const REL: RelFileNode = RelFileNode {
        spc_node: 1663,
        db_node: 5,
        rel_node: 16384,
    };

    #[test]
    fn smgr_create_and_truncate() {
        // rnode 1663/5/16384 | forkNum 2 (VM)
        assert_eq!(
            decode_rmgr_record(RM_SMGR_ID, 0x10, &words(&[1663, 5, 16384, 2])).unwrap(),
            RmgrRecord::Smgr(SmgrRecord::Create {
                rnode: REL,
                fork: 2
            })
        );
        let err = decode_smgr(0x10, &words(&[1663, 5, 16384, 4])).unwrap_err();
        assert!(err.to_string().contains("forkNum 4"), "{err}");
        // blkno 10 | rnode | flags 7
        assert_eq!(
            decode_smgr(0x20, &words(&[10, 1663, 5, 16384, 7])).unwrap(),
            SmgrRecord::Truncate {
                blkno: 10,
                rnode: REL,
                flags: SMGR_TRUNCATE_ALL
            }
        );
        assert!(decode_smgr(0x20, &words(&[10, 1663, 5, 16384])).is_err());
        assert!(matches!(
            decode_smgr(0x30, &[]),
            Err(RecordError::UnknownInfo {
                rmgr: "Storage",
                ..
            })
        ));
    }

    #[test]
    fn dbase_records() {
        assert_eq!(
            decode_dbase(0x00, &words(&[16390, 1663, 1, 1663])).unwrap(),
            DbaseRecord::CreateFileCopy {
                db_id: 16390,
                tablespace_id: 1663,
                src_db_id: 1,
                src_tablespace_id: 1663
            }
        );
        assert_eq!(
            decode_dbase(0x10, &words(&[16391, 1663])).unwrap(),
            DbaseRecord::CreateWalLog {
                db_id: 16391,
                tablespace_id: 1663
            }
        );
        // db_id | ntablespaces=2 | 1663, 16400
        assert_eq!(
            decode_dbase(0x20, &words(&[16390, 2, 1663, 16400])).unwrap(),
            DbaseRecord::Drop {
                db_id: 16390,
                tablespace_ids: vec![1663, 16400]
            }
        );
        assert!(decode_dbase(0x20, &words(&[16390, 3, 1663, 16400])).is_err());
        assert!(decode_dbase(0x10, &words(&[16391])).is_err());
    }

    #[test]
    fn tblspc_records() {
        let mut b = words(&[16500]);
        b.extend_from_slice(b"/srv/ts1\0");
        assert_eq!(
            decode_tblspc(0x00, &b).unwrap(),
            TblspcRecord::Create {
                ts_id: 16500,
                path: "/srv/ts1".into()
            }
        );
        assert!(decode_tblspc(0x00, &b[..b.len() - 1]).is_err());
        assert_eq!(
            decode_tblspc(0x10, &words(&[16500])).unwrap(),
            TblspcRecord::Drop { ts_id: 16500 }
        );
    }

    /// dbid 5 | tsid 1663 | nbytes 512 | a 512-byte map starting with the magic.
    pub(crate) fn relmap_body() -> Vec<u8> {
        let mut b = words(&[5, 1663, 512, RELMAPPER_FILEMAGIC]);
        b.resize(12 + 512, 0x01);
        b
    }

    #[test]
    fn relmap_update() {
        let b = relmap_body();
        let rec = decode_relmap(0x00, &b).unwrap();
        assert_eq!((rec.dbid, rec.tsid), (5, 1663));
        assert_eq!(rec.data.len(), 512);
        assert_eq!(&rec.data[..4], &RELMAPPER_FILEMAGIC.to_le_bytes());
        let mut wrong = b.clone();
        wrong[8..12].copy_from_slice(&524i32.to_le_bytes());
        assert!(decode_relmap(0x00, &wrong)
            .unwrap_err()
            .to_string()
            .contains("nbytes is 524"));
        assert!(decode_relmap(0x00, &b[..100]).is_err());
        assert!(decode_relmap(0x10, &b).is_err());
    }
}
