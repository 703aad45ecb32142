//! Transaction rmgr records (`access/xact.h`, parsing as in `xactdesc.c`).
//!
//! Commit / abort / commit-prepared / abort-prepared body (`xl_xact_commit`,
//! `xl_xact_abort`); every part after `xact_time` is present only when its
//! flag is set, in this order, with no padding between parts:
//!
//! | size        | part                         | present if                         |
//! |-------------|------------------------------|------------------------------------|
//! | 8           | `xact_time` (TimestampTz)    | always                             |
//! | 4           | `xinfo` (u32)                | `xl_info & XLOG_XACT_HAS_INFO`     |
//! | 8           | `dbId`, `tsId`               | `XACT_XINFO_HAS_DBINFO`            |
//! | 4 + 4n      | `nsubxacts`, xids            | `XACT_XINFO_HAS_SUBXACTS`          |
//! | 4 + 12n     | `nrels`, RelFileNodes        | `XACT_XINFO_HAS_RELFILENODES`      |
//! | 4 + 12n     | `nitems`, (kind, dboid, objoid) | `XACT_XINFO_HAS_DROPPED_STATS`  |
//! | 4 + 16n     | `nmsgs`, inval messages      | `XACT_XINFO_HAS_INVALS` (commit only) |
//! | 4           | twophase xid                 | `XACT_XINFO_HAS_TWOPHASE`          |
//! | len + 1     | GID, NUL-terminated          | `HAS_TWOPHASE` and `HAS_GID`       |
//! | 16          | origin lsn, origin timestamp (unaligned) | `XACT_XINFO_HAS_ORIGIN` |
//!
//! Prepare body: the two-phase state file without its trailing CRC. Its
//! header `xl_xact_prepare` (72 bytes): 0 `magic`, 4 `total_len` (file length
//! incl. the 4-byte CRC), 8 `xid`, 12 `database`, 16 `prepared_at`, 24
//! `owner`, 28 `nsubxacts`, 32 `ncommitrels`, 36 `nabortrels`, 40
//! `ncommitstats`, 44 `nabortstats`, 48 `ninvalmsgs`, 52 `initfileinval`
//! (bool), 54 `gidlen` (u16, incl. NUL), 56 `origin_lsn`, 64
//! `origin_timestamp`. Then the GID (`gidlen` bytes, MAXALIGNed), then
//! `nsubxacts` xids (MAXALIGNed), then further arrays and rmgr records.
//!
//! Assignment body (`xl_xact_assignment`): 0 `xtop`, 4 `nsubxacts` (int),
//! 8 subxids.

use utils::lsn::Lsn;

use super::reader::BodyReader;
use super::{name, RecordError, RelFileNode};
use crate::pg_constants::{
    maxalign, GIDSIZE, RM_XACT_ID, SIZEOF_SHARED_INVAL_MESSAGE, TWOPHASE_MAGIC,
    XACT_XINFO_HAS_DBINFO, XACT_XINFO_HAS_DROPPED_STATS, XACT_XINFO_HAS_GID, XACT_XINFO_HAS_INVALS,
    XACT_XINFO_HAS_ORIGIN, XACT_XINFO_HAS_RELFILENODES, XACT_XINFO_HAS_SUBXACTS,
    XACT_XINFO_HAS_TWOPHASE, XLOG_XACT_ABORT, XLOG_XACT_ABORT_PREPARED, XLOG_XACT_ASSIGNMENT,
    XLOG_XACT_COMMIT, XLOG_XACT_COMMIT_PREPARED, XLOG_XACT_HAS_INFO, XLOG_XACT_INVALIDATIONS,
    XLOG_XACT_OPMASK, XLOG_XACT_PREPARE,
};

/// Size of `xl_xact_prepare`.
pub const SIZEOF_XACT_PREPARE: usize = 72;

/// A decoded Transaction rmgr record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XactRecord {
    /// `XLOG_XACT_COMMIT`: the record's `xl_xid` committed.
    Commit(XactCompletion),
    /// `XLOG_XACT_ABORT`: the record's `xl_xid` aborted.
    Abort(XactCompletion),
    /// `XLOG_XACT_COMMIT_PREPARED`: `twophase_xid` committed.
    CommitPrepared(XactCompletion),
    /// `XLOG_XACT_ABORT_PREPARED`: `twophase_xid` aborted.
    AbortPrepared(XactCompletion),
    /// `XLOG_XACT_PREPARE`.
    Prepare(XactPrepare),
    /// `XLOG_XACT_ASSIGNMENT`.
    Assignment(XactAssignment),
}

/// One dropped statistics entry (`xl_xact_stats_item`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XactStatsItem {
    /// Statistics kind.
    pub kind: i32,
    /// Database OID.
    pub db_oid: u32,
    /// Object OID.
    pub obj_oid: u32,
}

/// Replication origin of a commit/abort (`xl_xact_origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XactOrigin {
    /// LSN of the transaction at the origin.
    pub lsn: Lsn,
    /// Commit time at the origin (TimestampTz).
    pub timestamp: i64,
}

/// Parsed commit or abort (`xl_xact_parsed_commit` / `_abort`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XactCompletion {
    /// Commit/abort time: microseconds since 2000-01-01 00:00 UTC.
    pub xact_time: i64,
    /// `XACT_XINFO_*` and `XACT_COMPLETION_*` bits (0 without `HAS_INFO`).
    pub xinfo: u32,
    /// Database of the transaction (0 without `XACT_XINFO_HAS_DBINFO`).
    pub db_id: u32,
    /// Tablespace of that database (0 without dbinfo).
    pub ts_id: u32,
    /// Subtransactions that commit or abort with it.
    pub subxacts: Vec<u32>,
    /// Relations whose files are dropped by this commit or abort.
    pub dropped_rels: Vec<RelFileNode>,
    /// Statistics entries dropped.
    pub dropped_stats: Vec<XactStatsItem>,
    /// Shared invalidation messages, raw 16 bytes each (commit only).
    pub inval_msgs: Vec<[u8; SIZEOF_SHARED_INVAL_MESSAGE]>,
    /// Xid of the prepared transaction (commit/abort prepared).
    pub twophase_xid: Option<u32>,
    /// GID of the prepared transaction (only logged with `wal_level=logical`).
    pub twophase_gid: Option<String>,
    /// Replication origin, if the session had one.
    pub origin: Option<XactOrigin>,
}

impl XactCompletion {
    /// The top-level xid this record completes: the prepared transaction's
    /// xid for commit/abort prepared, else the record's `xl_xid`.
    pub fn xid(&self, record_xid: u32) -> u32 {
        self.twophase_xid.unwrap_or(record_xid)
    }

    /// Whether an `XACT_XINFO_*` / `XACT_COMPLETION_*` bit is set.
    pub fn has(&self, xinfo_bit: u32) -> bool {
        self.xinfo & xinfo_bit != 0
    }
}

/// Header of a PREPARE record (`xl_xact_prepare`), its GID and subxacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XactPrepare {
    /// Xid of the prepared transaction.
    pub xid: u32,
    /// Database OID.
    pub database: u32,
    /// Prepare time (TimestampTz).
    pub prepared_at: i64,
    /// Role OID of the owner.
    pub owner: u32,
    /// Global transaction identifier.
    pub gid: String,
    /// Subtransaction xids.
    pub subxacts: Vec<u32>,
    /// Length of the two-phase state file (body plus 4-byte CRC).
    pub total_len: u32,
}

/// Subtransaction ids assigned to a top-level transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XactAssignment {
    /// Top-level xid.
    pub xtop: u32,
    /// Assigned subtransaction xids.
    pub subxacts: Vec<u32>,
}

/// Decode; `None` for records that need no native handling.
pub(crate) fn decode(info: u8, data: &[u8]) -> Result<Option<XactRecord>, RecordError> {
    let rmgr = name(RM_XACT_ID);
    let op = info & XLOG_XACT_OPMASK;
    let has_info = info & XLOG_XACT_HAS_INFO != 0;
    let mut r = BodyReader::new(rmgr, info, data);
    let rec = match op {
        XLOG_XACT_COMMIT => XactRecord::Commit(parse_completion(&mut r, has_info, true)?),
        XLOG_XACT_ABORT => XactRecord::Abort(parse_completion(&mut r, has_info, false)?),
        XLOG_XACT_COMMIT_PREPARED => {
            XactRecord::CommitPrepared(parse_prepared_completion(&mut r, has_info, true)?)
        }
        XLOG_XACT_ABORT_PREPARED => {
            XactRecord::AbortPrepared(parse_prepared_completion(&mut r, has_info, false)?)
        }
        XLOG_XACT_PREPARE => XactRecord::Prepare(parse_prepare(&mut r, data.len())?),
        XLOG_XACT_ASSIGNMENT => {
            let xtop = r.u32("xtop")?;
            let n = r.count("nsubxacts", 4)?;
            let subxacts = r.u32_vec(n, "subxacts")?;
            r.finish("xl_xact_assignment")?;
            XactRecord::Assignment(XactAssignment { xtop, subxacts })
        }
        XLOG_XACT_INVALIDATIONS => return Ok(None),
        _ => return Err(RecordError::UnknownInfo { rmgr, info }),
    };
    Ok(Some(rec))
}

fn parse_prepared_completion(
    r: &mut BodyReader<'_>,
    has_info: bool,
    is_commit: bool,
) -> Result<XactCompletion, RecordError> {
    let parsed = parse_completion(r, has_info, is_commit)?;
    if parsed.twophase_xid.is_none() {
        return Err(r.error("prepared commit/abort without XACT_XINFO_HAS_TWOPHASE"));
    }
    Ok(parsed)
}

fn parse_completion(
    r: &mut BodyReader<'_>,
    has_info: bool,
    is_commit: bool,
) -> Result<XactCompletion, RecordError> {
    let mut p = XactCompletion {
        xact_time: r.i64("xact_time")?,
        ..Default::default()
    };
    if has_info {
        p.xinfo = r.u32("xinfo")?;
    }
    if p.has(XACT_XINFO_HAS_DBINFO) {
        p.db_id = r.u32("dbId")?;
        p.ts_id = r.u32("tsId")?;
    }
    if p.has(XACT_XINFO_HAS_SUBXACTS) {
        let n = r.count("nsubxacts", 4)?;
        p.subxacts = r.u32_vec(n, "subxacts")?;
    }
    if p.has(XACT_XINFO_HAS_RELFILENODES) {
        let n = r.count("nrels", RelFileNode::SIZE)?;
        p.dropped_rels = (0..n)
            .map(|_| RelFileNode::read(r, "xnodes"))
            .collect::<Result<_, _>>()?;
    }
    if p.has(XACT_XINFO_HAS_DROPPED_STATS) {
        let n = r.count("nitems (dropped stats)", 12)?;
        p.dropped_stats = (0..n)
            .map(|_| {
                Ok(XactStatsItem {
                    kind: r.i32("stats kind")?,
                    db_oid: r.u32("stats dboid")?,
                    obj_oid: r.u32("stats objoid")?,
                })
            })
            .collect::<Result<_, RecordError>>()?;
    }
    if is_commit && p.has(XACT_XINFO_HAS_INVALS) {
        let n = r.count("nmsgs (invalidations)", SIZEOF_SHARED_INVAL_MESSAGE)?;
        p.inval_msgs = (0..n)
            .map(|_| {
                let mut m = [0u8; SIZEOF_SHARED_INVAL_MESSAGE];
                m.copy_from_slice(r.bytes(SIZEOF_SHARED_INVAL_MESSAGE, "inval msg")?);
                Ok(m)
            })
            .collect::<Result<_, RecordError>>()?;
    }
    if p.has(XACT_XINFO_HAS_TWOPHASE) {
        p.twophase_xid = Some(r.u32("twophase xid")?);
        if p.has(XACT_XINFO_HAS_GID) {
            p.twophase_gid = Some(r.cstring("twophase gid")?);
        }
    }
    if p.has(XACT_XINFO_HAS_ORIGIN) {
        p.origin = Some(XactOrigin {
            lsn: Lsn(r.u64("origin_lsn")?),
            timestamp: r.i64("origin_timestamp")?,
        });
    }
    let what = if is_commit {
        "xl_xact_commit"
    } else {
        "xl_xact_abort"
    };
    r.finish(what)?;
    Ok(p)
}

fn parse_prepare(r: &mut BodyReader<'_>, body_len: usize) -> Result<XactPrepare, RecordError> {
    let magic = r.u32("magic")?;
    if magic != TWOPHASE_MAGIC {
        return Err(r.error(format!(
            "two-phase magic is {magic:#010x}, expected {TWOPHASE_MAGIC:#010x}"
        )));
    }
    let total_len = r.u32("total_len")?;
    if u64::from(total_len) != body_len as u64 + 4 {
        return Err(r.error(format!(
            "total_len is {total_len} but the body is {body_len} bytes (expected body + 4-byte CRC)"
        )));
    }
    let xid = r.u32("xid")?;
    let database = r.u32("database")?;
    let prepared_at = r.i64("prepared_at")?;
    let owner = r.u32("owner")?;
    let nsubxacts = r.i32("nsubxacts")?;
    r.skip(20, "ncommitrels..ninvalmsgs")?;
    r.skip(2, "initfileinval")?;
    let gidlen = usize::from(r.u16("gidlen")?);
    r.skip(16, "origin_lsn, origin_timestamp")?;
    if gidlen == 0 || gidlen > GIDSIZE {
        return Err(r.error(format!("gidlen is {gidlen}, expected 1..={GIDSIZE}")));
    }
    let gid_area = r.bytes(maxalign(gidlen), "gid")?;
    let gid_bytes = &gid_area[..gidlen];
    let Some(nul) = gid_bytes.iter().position(|&b| b == 0) else {
        return Err(r.error("gid has no NUL terminator within gidlen"));
    };
    let gid = String::from_utf8_lossy(&gid_bytes[..nul]).into_owned();
    let n = r.check_count("nsubxacts", i64::from(nsubxacts), 4)?;
    let subxacts = r.u32_vec(n, "subxacts")?;
    Ok(XactPrepare {
        xid,
        database,
        prepared_at,
        owner,
        gid,
        subxacts,
        total_len,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pg_constants::{
        RM_XACT_ID, XACT_COMPLETION_FORCE_SYNC_COMMIT, XACT_XINFO_HAS_AE_LOCKS,
    };
    use crate::records::{decode_rmgr_record, RmgrRecord};

    fn put32(b: &mut Vec<u8>, v: u32) {
        b.extend_from_slice(&v.to_le_bytes());
    }

    /// A commit body with every part:
    /// xact_time=777 | xinfo | dbinfo (5, 1663) | 2 subxacts (801, 802) |
    /// 1 rel (1663/5/16384) | 1 stats item (2, 5, 16384) | 1 inval msg
    /// (16 x 0xEE) | twophase xid 800 | gid "g1\0" | origin (lsn 0x10, ts 9).
    pub(crate) fn full_commit_body() -> Vec<u8> {
        let xinfo = XACT_XINFO_HAS_DBINFO
            | XACT_XINFO_HAS_SUBXACTS
            | XACT_XINFO_HAS_RELFILENODES
            | XACT_XINFO_HAS_DROPPED_STATS
            | XACT_XINFO_HAS_INVALS
            | XACT_XINFO_HAS_TWOPHASE
            | XACT_XINFO_HAS_GID
            | XACT_XINFO_HAS_ORIGIN
            | XACT_XINFO_HAS_AE_LOCKS
            | XACT_COMPLETION_FORCE_SYNC_COMMIT;
        let mut b = 777i64.to_le_bytes().to_vec();
        put32(&mut b, xinfo);
        put32(&mut b, 5);
        put32(&mut b, 1663);
        put32(&mut b, 2);
        put32(&mut b, 801);
        put32(&mut b, 802);
        put32(&mut b, 1);
        for v in [1663, 5, 16384] {
            put32(&mut b, v);
        }
        put32(&mut b, 1);
        for v in [2, 5, 16384] {
            put32(&mut b, v);
        }
        put32(&mut b, 1);
        b.extend_from_slice(&[0xEE; 16]);
        put32(&mut b, 800);
        b.extend_from_slice(b"g1\0");
        b.extend_from_slice(&0x10u64.to_le_bytes());
        b.extend_from_slice(&9i64.to_le_bytes());
        b
    }

    fn decode_xact(info: u8, body: &[u8]) -> Result<XactRecord, RecordError> {
        match decode_rmgr_record(RM_XACT_ID, info, body)? {
            RmgrRecord::Xact(x) => Ok(x),
            other => panic!("not an xact record: {other:?}"),
        }
    }

    #[test]
    fn commit_with_every_part() {
        let body = full_commit_body();
        let XactRecord::CommitPrepared(c) = decode_xact(0x30 | 0x80, &body).unwrap() else {
            panic!("wrong variant")
        };
        assert_eq!(c.xact_time, 777);
        assert!(c.has(XACT_COMPLETION_FORCE_SYNC_COMMIT));
        assert_eq!((c.db_id, c.ts_id), (5, 1663));
        assert_eq!(c.subxacts, vec![801, 802]);
        assert_eq!(
            c.dropped_rels,
            vec![RelFileNode {
                spc_node: 1663,
                db_node: 5,
                rel_node: 16384
            }]
        );
        assert_eq!(
            c.dropped_stats,
            vec![XactStatsItem {
                kind: 2,
                db_oid: 5,
                obj_oid: 16384
            }]
        );
        assert_eq!(c.inval_msgs, vec![[0xEE; 16]]);
        assert_eq!(c.twophase_xid, Some(800));
        assert_eq!(c.twophase_gid.as_deref(), Some("g1"));
        assert_eq!(
            c.origin,
            Some(XactOrigin {
                lsn: Lsn(0x10),
                timestamp: 9
            })
        );
        assert_eq!(c.xid(123), 800);
        // The same body as a plain commit is fine too.
        assert!(matches!(
            decode_xact(0x80, &body).unwrap(),
            XactRecord::Commit(_)
        ));
    }

    #[test]
    fn minimal_commit_and_abort() {
        // xact_time only, no XLOG_XACT_HAS_INFO.
        let body = 42i64.to_le_bytes();
        let XactRecord::Commit(c) = decode_xact(0x00, &body).unwrap() else {
            panic!()
        };
        assert_eq!(
            c,
            XactCompletion {
                xact_time: 42,
                ..Default::default()
            }
        );
        assert_eq!(c.xid(123), 123);
        assert!(matches!(
            decode_xact(0x20, &body).unwrap(),
            XactRecord::Abort(_)
        ));
    }

    #[test]
    fn abort_ignores_invals_flag_like_postgres() {
        // xact_time | xinfo=SUBXACTS|INVALS | 1 subxact (9): abort has no
        // inval part, so the body ends after the subxacts.
        let mut b = 1i64.to_le_bytes().to_vec();
        put32(&mut b, XACT_XINFO_HAS_SUBXACTS | XACT_XINFO_HAS_INVALS);
        put32(&mut b, 1);
        put32(&mut b, 9);
        let XactRecord::Abort(a) = decode_xact(0xA0, &b).unwrap() else {
            panic!()
        };
        assert_eq!(a.subxacts, vec![9]);
        assert!(a.inval_msgs.is_empty());
        // As a commit the invals part is missing: an error.
        assert!(decode_xact(0x80, &b).is_err());
    }

    #[test]
    fn commit_errors() {
        // Negative subxact count.
        let mut b = 1i64.to_le_bytes().to_vec();
        put32(&mut b, XACT_XINFO_HAS_SUBXACTS);
        b.extend_from_slice(&(-1i32).to_le_bytes());
        let err = decode_xact(0x80, &b).unwrap_err();
        assert!(err.to_string().contains("nsubxacts is negative"), "{err}");
        // Count larger than the body.
        let mut b = 1i64.to_le_bytes().to_vec();
        put32(&mut b, XACT_XINFO_HAS_SUBXACTS);
        put32(&mut b, 1_000_000);
        let err = decode_xact(0x80, &b).unwrap_err();
        assert!(err.to_string().contains("Transaction"), "{err}");
        // Trailing garbage.
        let mut b = 1i64.to_le_bytes().to_vec();
        b.push(0);
        assert!(decode_xact(0x00, &b).is_err());
        // GID without terminator.
        let mut b = 1i64.to_le_bytes().to_vec();
        put32(&mut b, XACT_XINFO_HAS_TWOPHASE | XACT_XINFO_HAS_GID);
        put32(&mut b, 5);
        b.extend_from_slice(b"abc");
        assert!(decode_xact(0x80, &b)
            .unwrap_err()
            .to_string()
            .contains("NUL"));
        // Commit prepared without twophase xid.
        let err = decode_xact(0x30, &1i64.to_le_bytes()).unwrap_err();
        assert!(err.to_string().contains("TWOPHASE"), "{err}");
        // Unknown opcode 0x70.
        assert_eq!(
            decode_xact(0x70, &[]),
            Err(RecordError::UnknownInfo {
                rmgr: "Transaction",
                info: 0x70
            })
        );
    }

    /// A PREPARE body: the 72-byte header (magic, total_len = body + 4,
    /// xid 900, database 5, prepared_at 1234, owner 10, nsubxacts, the other
    /// counts 0, gidlen = len+1), the GID padded to 8, the subxacts padded
    /// to 8, then a 4-byte end sentinel standing in for the rmgr records.
    pub(crate) fn prepare_body(gid: &str, subxacts: &[u32]) -> Vec<u8> {
        let mut b = Vec::new();
        put32(&mut b, TWOPHASE_MAGIC);
        put32(&mut b, 0); // total_len, patched below
        put32(&mut b, 900);
        put32(&mut b, 5);
        b.extend_from_slice(&1234i64.to_le_bytes());
        put32(&mut b, 10);
        put32(&mut b, subxacts.len() as u32);
        b.extend_from_slice(&[0; 20]);
        b.extend_from_slice(&[0, 0]); // initfileinval + padding
        b.extend_from_slice(&(gid.len() as u16 + 1).to_le_bytes());
        b.extend_from_slice(&[0; 16]);
        assert_eq!(b.len(), SIZEOF_XACT_PREPARE);
        b.extend_from_slice(gid.as_bytes());
        b.resize(SIZEOF_XACT_PREPARE + maxalign(gid.len() + 1), 0);
        for &x in subxacts {
            put32(&mut b, x);
        }
        b.resize(maxalign(b.len()), 0);
        put32(&mut b, 0x1234_5678);
        let total = b.len() as u32 + 4;
        b[4..8].copy_from_slice(&total.to_le_bytes());
        b
    }

    #[test]
    fn prepare_header_gid_and_subxacts() {
        let body = prepare_body("my_gid", &[901, 902, 903]);
        let XactRecord::Prepare(p) = decode_xact(0x10, &body).unwrap() else {
            panic!()
        };
        assert_eq!(p.xid, 900);
        assert_eq!(p.database, 5);
        assert_eq!(p.prepared_at, 1234);
        assert_eq!(p.owner, 10);
        assert_eq!(p.gid, "my_gid");
        assert_eq!(p.subxacts, vec![901, 902, 903]);
        assert_eq!(p.total_len as usize, body.len() + 4);

        let mut bad_magic = body.clone();
        bad_magic[0] ^= 1;
        assert!(decode_xact(0x10, &bad_magic)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut bad_gidlen = body.clone();
        bad_gidlen[54..56].copy_from_slice(&0u16.to_le_bytes());
        assert!(decode_xact(0x10, &bad_gidlen).is_err());
    }

    #[test]
    fn assignment() {
        let mut b = Vec::new();
        for v in [700u32, 2, 701, 702] {
            put32(&mut b, v);
        }
        assert_eq!(
            decode_xact(0x50, &b).unwrap(),
            XactRecord::Assignment(XactAssignment {
                xtop: 700,
                subxacts: vec![701, 702]
            })
        );
        assert!(decode_xact(0x50, &b[..12]).is_err());
    }

    #[test]
    fn invalidations_need_no_handling() {
        assert_eq!(
            decode_rmgr_record(RM_XACT_ID, 0x60, &[1, 2, 3]).unwrap(),
            RmgrRecord::Other {
                rmid: RM_XACT_ID,
                info: 0x60
            }
        );
    }
}
