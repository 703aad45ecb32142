//! Decode the WAL of a real PostgreSQL 15 and compare with `pg_waldump`.
//!
//! The test runs a workload that produces every record kind we parse,
//! stops the server, lists the records with `pg_waldump` (LSN, rmgr,
//! length, description), reads each record from the segment files with a
//! minimal reader (page headers skipped, block headers walked only to find
//! where the main data starts), checks the record CRC, decodes *every*
//! record with [`decode_rmgr_record`], and compares the fields against the
//! description text `pg_waldump` printed for it.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use utils::lsn::Lsn;

use super::test_cluster::TestCluster;
use super::*;
use crate::controlfile::CheckPoint;
use crate::pg_constants::{
    BKPBLOCK_HAS_IMAGE, BKPBLOCK_SAME_REL, BKPIMAGE_COMPRESS_LZ4, BKPIMAGE_COMPRESS_PGLZ,
    BKPIMAGE_COMPRESS_ZSTD, BKPIMAGE_HAS_HOLE, DEFAULTTABLESPACE_OID, GLOBALTABLESPACE_OID,
    TABLESPACE_VERSION_DIRECTORY, WAL_SEGMENT_SIZE, XLOG_BLCKSZ, XLR_BLOCK_ID_DATA_LONG,
    XLR_BLOCK_ID_DATA_SHORT, XLR_BLOCK_ID_ORIGIN, XLR_BLOCK_ID_TOPLEVEL_XID, XLR_MAX_BLOCK_ID,
};
use crate::records::slru::MultiXactStatus;
use crate::records::xact::XactAssignment;

/// One line of `pg_waldump` output.
#[derive(Debug)]
struct DumpLine {
    rmgr: String,
    tot_len: u32,
    xid: u32,
    lsn: Lsn,
    /// Record identity as printed (e.g. `COMMIT`, `INSERT+INIT`).
    id: String,
    /// Description after the identity.
    desc: String,
}

fn parse_dump(out: &str) -> Vec<DumpLine> {
    out.lines()
        .filter(|l| l.starts_with("rmgr: "))
        .map(|l| {
            let field = |key: &str| -> &str {
                let start = l.find(key).unwrap_or_else(|| panic!("{key} in {l}")) + key.len();
                l[start..]
                    .trim_start()
                    .split([',', ' '])
                    .next()
                    .unwrap_or("")
            };
            let rmgr = field("rmgr:").to_string();
            let tot = l[l.find("len (rec/tot):").unwrap()..]
                .split('/')
                .nth(2)
                .unwrap()
                .trim_start()
                .split(',')
                .next()
                .unwrap();
            let desc_all = &l[l.find("desc: ").unwrap() + 6..];
            let (id, desc) = desc_all.split_once(' ').unwrap_or((desc_all, ""));
            DumpLine {
                rmgr,
                tot_len: tot.trim().parse().unwrap(),
                xid: field("tx:").parse().unwrap(),
                lsn: field("lsn:").parse().unwrap(),
                id: id.to_string(),
                desc: desc.to_string(),
            }
        })
        .collect()
}

/// Reads the logical WAL byte stream from segment files (timeline 1).
struct WalFiles {
    dir: PathBuf,
    segments: HashMap<u64, Vec<u8>>,
}

impl WalFiles {
    fn segment(&mut self, segno: u64) -> &[u8] {
        let dir = &self.dir;
        self.segments.entry(segno).or_insert_with(|| {
            let per_id = 0x1_0000_0000u64 / WAL_SEGMENT_SIZE as u64;
            let name = format!("{:08X}{:08X}{:08X}", 1, segno / per_id, segno % per_id);
            std::fs::read(dir.join(name)).expect("read WAL segment")
        })
    }

    /// `n` bytes of record data starting at `lsn`, skipping page headers
    /// (24 bytes, 40 at the start of a segment).
    fn read(&mut self, lsn: Lsn, n: usize) -> Vec<u8> {
        let (seg, page) = (WAL_SEGMENT_SIZE as u64, XLOG_BLCKSZ as u64);
        let mut pos = lsn.0;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if pos.is_multiple_of(page) {
                pos += if pos.is_multiple_of(seg) { 40 } else { 24 };
                continue;
            }
            let take = ((n - out.len()) as u64).min(page - pos % page) as usize;
            let off = (pos % seg) as usize;
            let data = self.segment(pos / seg);
            out.extend_from_slice(&data[off..off + take]);
            pos += take as u64;
        }
        out
    }

    /// (xl_tot_len, xl_xid, xl_info, xl_rmid, main_data) of the record at `lsn`.
    fn record(&mut self, lsn: Lsn) -> (u32, u32, u8, u8, Vec<u8>) {
        let hdr = self.read(lsn, 24);
        let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let tot_len = u32_at(&hdr, 0);
        let rec = self.read(lsn, tot_len as usize);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&rec[24..]), &rec[..20]);
        assert_eq!(crc, u32_at(&rec, 20), "CRC of record at {lsn}");

        let (mut pos, mut datatotal, mut main_len) = (24usize, 0usize, 0usize);
        let u16_at = |b: &[u8], at: usize| usize::from(u16::from_le_bytes([b[at], b[at + 1]]));
        while rec.len() - pos > datatotal {
            let id = rec[pos];
            pos += 1;
            match id {
                XLR_BLOCK_ID_DATA_SHORT => {
                    main_len = usize::from(rec[pos]);
                    datatotal += main_len;
                    pos += 1;
                }
                XLR_BLOCK_ID_DATA_LONG => {
                    main_len = u32_at(&rec, pos) as usize;
                    datatotal += main_len;
                    pos += 4;
                }
                XLR_BLOCK_ID_ORIGIN => pos += 2,
                XLR_BLOCK_ID_TOPLEVEL_XID => pos += 4,
                id if id < XLR_MAX_BLOCK_ID => {
                    let fork_flags = rec[pos];
                    datatotal += u16_at(&rec, pos + 1);
                    pos += 3;
                    if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
                        datatotal += u16_at(&rec, pos);
                        let bimg_info = rec[pos + 4];
                        pos += 5;
                        let compressed =
                            BKPIMAGE_COMPRESS_PGLZ | BKPIMAGE_COMPRESS_LZ4 | BKPIMAGE_COMPRESS_ZSTD;
                        if bimg_info & BKPIMAGE_HAS_HOLE != 0 && bimg_info & compressed != 0 {
                            pos += 2;
                        }
                    }
                    if fork_flags & BKPBLOCK_SAME_REL == 0 {
                        pos += 12;
                    }
                    pos += 4;
                }
                other => panic!("bad block id {other} in record at {lsn}"),
            }
        }
        assert_eq!(rec.len() - pos, datatotal, "record at {lsn}");
        let main = rec[rec.len() - main_len..].to_vec();
        (tot_len, u32_at(&rec, 4), rec[16], rec[17], main)
    }
}

/// `timestamptz_to_str` in UTC: "YYYY-MM-DD HH:MM:SS[.ffffff] UTC" (the
/// fraction, all six digits, only when non-zero).
fn timestamptz_to_str(ts: i64) -> String {
    const PG_EPOCH_UNIX: i64 = 946_684_800;
    let secs = ts.div_euclid(1_000_000) + PG_EPOCH_UNIX;
    let usec = ts.rem_euclid(1_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if usec != 0 {
        s.push_str(&format!(".{usec:06}"));
    }
    s + " UTC"
}

fn relpath(r: &RelFileNode, fork: u8) -> String {
    let base = if r.spc_node == GLOBALTABLESPACE_OID {
        format!("global/{}", r.rel_node)
    } else if r.spc_node == DEFAULTTABLESPACE_OID {
        format!("base/{}/{}", r.db_node, r.rel_node)
    } else {
        format!(
            "pg_tblspc/{}/{TABLESPACE_VERSION_DIRECTORY}/{}/{}",
            r.spc_node, r.db_node, r.rel_node
        )
    };
    base + ["", "_fsm", "_vm", "_init"][usize::from(fork)]
}

fn join(v: &[u32]) -> String {
    v.iter().map(|x| format!(" {x}")).collect()
}

fn inval_desc(m: &[u8; 16]) -> String {
    let at = |o: usize| u32::from_le_bytes(m[o..o + 4].try_into().unwrap());
    match m[0] as i8 {
        id if id >= 0 => format!(" catcache {id}"),
        -1 => format!(" catalog {}", at(8)),
        -2 => format!(" relcache {}", at(8)),
        -3 => " smgr".to_string(),
        -4 => format!(" relmap db {}", at(4)),
        -5 => format!(" snapshot {}", at(8)),
        id => format!(" unknown id {id}"),
    }
}

/// What the description must contain, or be.
enum Expect {
    Exact(String),
    Contains(Vec<String>),
    Lacks(Vec<String>, Vec<&'static str>),
}

fn completion_fragments(c: &XactCompletion, prefix: String, is_commit: bool) -> Expect {
    let mut must = vec![prefix + &timestamptz_to_str(c.xact_time)];
    let mut lacks = vec![];
    if c.dropped_rels.is_empty() {
        lacks.push("rels:");
    } else {
        let rels: String = c
            .dropped_rels
            .iter()
            .map(|r| format!(" {}", relpath(r, 0)))
            .collect();
        must.push(format!("; rels:{rels}"));
    }
    if c.subxacts.is_empty() {
        lacks.push("subxacts:");
    } else {
        must.push(format!("; subxacts:{}", join(&c.subxacts)));
    }
    if c.dropped_stats.is_empty() {
        lacks.push("dropped stats:");
    } else {
        let s: String = c
            .dropped_stats
            .iter()
            .map(|s| format!(" {}/{}/{}", s.kind, s.db_oid, s.obj_oid))
            .collect();
        must.push(format!("; dropped stats:{s}"));
    }
    if is_commit && !c.inval_msgs.is_empty() {
        let m: String = c.inval_msgs.iter().map(inval_desc).collect();
        must.push(format!("; inval msgs:{m}"));
    } else {
        lacks.push("inval msgs:");
    }
    Expect::Lacks(must, lacks)
}

fn mx_status(s: MultiXactStatus) -> &'static str {
    match s {
        MultiXactStatus::ForKeyShare => "keysh",
        MultiXactStatus::ForShare => "sh",
        MultiXactStatus::ForNoKeyUpdate => "fornokeyupd",
        MultiXactStatus::ForUpdate => "forupd",
        MultiXactStatus::NoKeyUpdate => "nokeyupd",
        MultiXactStatus::Update => "upd",
    }
}

fn checkpoint_desc(cp: &CheckPoint, online: bool) -> String {
    format!(
        "redo {}; tli {}; prev tli {}; fpw {}; xid {}:{}; oid {}; multi {}; offset {}; \
         oldest xid {} in DB {}; oldest multi {} in DB {}; \
         oldest/newest commit timestamp xid: {}/{}; oldest running xid {}; {}",
        cp.redo,
        cp.this_timeline_id,
        cp.prev_timeline_id,
        cp.full_page_writes,
        cp.next_xid_epoch(),
        cp.next_xid_xid(),
        cp.next_oid,
        cp.next_multi,
        cp.next_multi_offset,
        cp.oldest_xid,
        cp.oldest_xid_db,
        cp.oldest_multi,
        cp.oldest_multi_db,
        cp.oldest_commit_ts_xid,
        cp.newest_commit_ts_xid,
        cp.oldest_active_xid,
        if online { "online" } else { "shutdown" }
    )
}

/// The expected description of a decoded record, and a tag for coverage.
fn expect(rec: &RmgrRecord, line: &DumpLine) -> (Expect, Option<&'static str>) {
    let on = |b: bool| if b { "on" } else { "off" };
    match rec {
        RmgrRecord::Xact(x) => match x {
            XactRecord::Commit(c) => (completion_fragments(c, String::new(), true), Some("commit")),
            XactRecord::Abort(c) => (completion_fragments(c, String::new(), false), Some("abort")),
            XactRecord::CommitPrepared(c) => (
                completion_fragments(c, format!("{}: ", c.twophase_xid.unwrap()), true),
                Some("commit_prepared"),
            ),
            XactRecord::AbortPrepared(c) => (
                completion_fragments(c, format!("{}: ", c.twophase_xid.unwrap()), false),
                Some("abort_prepared"),
            ),
            XactRecord::Prepare(p) => {
                assert_eq!(p.xid, line.xid, "PREPARE xid at {}", line.lsn);
                (
                    Expect::Contains(vec![format!(
                        "gid {}: {}",
                        p.gid,
                        timestamptz_to_str(p.prepared_at)
                    )]),
                    Some("prepare"),
                )
            }
            XactRecord::Assignment(XactAssignment { xtop, subxacts }) => (
                Expect::Exact(format!("xtop {xtop}: subxacts:{}", join(subxacts))),
                Some("assignment"),
            ),
        },
        RmgrRecord::Clog(c) => match c {
            ClogRecord::ZeroPage { pageno } => {
                (Expect::Exact(format!("page {pageno}")), Some("clog_zero"))
            }
            ClogRecord::Truncate(t) => (
                Expect::Exact(format!("page {}; oldestXact {}", t.pageno, t.oldest_xact)),
                None,
            ),
        },
        RmgrRecord::MultiXact(m) => match m {
            MultiXactRecord::ZeroOffsetsPage { pageno }
            | MultiXactRecord::ZeroMembersPage { pageno } => {
                (Expect::Exact(pageno.to_string()), Some("multixact_zero"))
            }
            MultiXactRecord::Create(c) => {
                let members: String = c
                    .members
                    .iter()
                    .map(|m| format!(" {} ({})", m.xid, mx_status(m.status)))
                    .collect();
                (
                    Expect::Exact(format!(
                        "{} offset {} nmembers {}:{members} ",
                        c.mid,
                        c.moff,
                        c.members.len()
                    )),
                    Some("multixact_create"),
                )
            }
            MultiXactRecord::Truncate(_) => (Expect::Contains(vec![]), None),
        },
        RmgrRecord::Smgr(s) => match s {
            SmgrRecord::Create { rnode, fork } => {
                (Expect::Exact(relpath(rnode, *fork)), Some("smgr_create"))
            }
            SmgrRecord::Truncate {
                blkno,
                rnode,
                flags,
            } => (
                Expect::Exact(format!(
                    "{} to {blkno} blocks flags {flags}",
                    relpath(rnode, 0)
                )),
                Some("smgr_truncate"),
            ),
        },
        RmgrRecord::Dbase(d) => match d {
            DbaseRecord::CreateFileCopy {
                db_id,
                tablespace_id,
                src_db_id,
                src_tablespace_id,
            } => (
                Expect::Exact(format!(
                    "copy dir {src_tablespace_id}/{src_db_id} to {tablespace_id}/{db_id}"
                )),
                Some("dbase_file_copy"),
            ),
            DbaseRecord::CreateWalLog {
                db_id,
                tablespace_id,
            } => (
                Expect::Exact(format!("create dir {tablespace_id}/{db_id}")),
                Some("dbase_wal_log"),
            ),
            DbaseRecord::Drop {
                db_id,
                tablespace_ids,
            } => {
                let dirs: String = tablespace_ids
                    .iter()
                    .map(|t| format!(" {t}/{db_id}"))
                    .collect();
                let tag = if tablespace_ids.len() > 1 {
                    "dbase_drop_2ts"
                } else {
                    "dbase_drop"
                };
                (Expect::Exact(format!("dir{dirs}")), Some(tag))
            }
        },
        RmgrRecord::Tblspc(t) => match t {
            TblspcRecord::Create { ts_id, path } => (
                Expect::Exact(format!("{ts_id} \"{path}\"")),
                Some("tblspc_create"),
            ),
            TblspcRecord::Drop { ts_id } => (Expect::Exact(ts_id.to_string()), Some("tblspc_drop")),
        },
        RmgrRecord::Relmap(u) => (
            Expect::Exact(format!(
                "database {} tablespace {} size {}",
                u.dbid,
                u.tsid,
                u.data.len()
            )),
            Some("relmap"),
        ),
        RmgrRecord::Standby(StandbyRecord::RunningXacts(r)) => {
            let mut s = format!(
                "nextXid {} latestCompletedXid {} oldestRunningXid {}",
                r.next_xid, r.latest_completed_xid, r.oldest_running_xid
            );
            if !r.xids.is_empty() {
                s += &format!("; {} xacts:{}", r.xids.len(), join(&r.xids));
            }
            if r.subxid_overflow {
                s += "; subxid overflowed";
            }
            if !r.subxids.is_empty() {
                s += &format!("; {} subxacts:{}", r.subxids.len(), join(&r.subxids));
            }
            (Expect::Exact(s), Some("running_xacts"))
        }
        RmgrRecord::Xlog(x) => match x {
            XlogRecord::CheckpointShutdown(cp) => (
                Expect::Exact(checkpoint_desc(cp, false)),
                Some("checkpoint_shutdown"),
            ),
            XlogRecord::CheckpointOnline(cp) => (
                Expect::Exact(checkpoint_desc(cp, true)),
                Some("checkpoint_online"),
            ),
            XlogRecord::NextOid(oid) => (Expect::Exact(oid.to_string()), Some("nextoid")),
            XlogRecord::Switch => (Expect::Contains(vec![]), Some("switch")),
            XlogRecord::Fpi | XlogRecord::FpiForHint => (Expect::Contains(vec![]), Some("fpi")),
            XlogRecord::ParameterChange(p) => {
                let level = ["minimal", "replica", "logical"][p.wal_level as usize];
                (
                    Expect::Exact(format!(
                        "max_connections={} max_worker_processes={} max_wal_senders={} \
                         max_prepared_xacts={} max_locks_per_xact={} wal_level={level} \
                         wal_log_hints={} track_commit_timestamp={}",
                        p.max_connections,
                        p.max_worker_processes,
                        p.max_wal_senders,
                        p.max_prepared_xacts,
                        p.max_locks_per_xact,
                        on(p.wal_log_hints),
                        on(p.track_commit_timestamp)
                    )),
                    Some("parameter_change"),
                )
            }
            XlogRecord::EndOfRecovery(_) | XlogRecord::OverwriteContrecord(_) => {
                (Expect::Contains(vec![]), None)
            }
        },
        RmgrRecord::Heap(h) => {
            let frag = match *h {
                HeapRecord::Insert { offnum, flags } => format!("off {offnum} flags 0x{flags:02X}"),
                HeapRecord::Delete { offnum, flags, .. } => format!("off {offnum} flags 0x{flags:02X}"),
                HeapRecord::Update { old_offnum, old_xmax, flags, new_offnum, new_xmax, .. } => format!(
                    "off {old_offnum} xmax {old_xmax} flags 0x{flags:02X}\n; new off {new_offnum} xmax {new_xmax}"
                ),
                HeapRecord::Lock { offnum, locking_xid, flags } => {
                    format!("off {offnum}: xid {locking_xid}: flags 0x{flags:02X}")
                }
                HeapRecord::LockUpdated { offnum, xmax, flags } => {
                    format!("off {offnum}: xmax {xmax}: flags 0x{flags:02X}")
                }
                HeapRecord::MultiInsert { ntuples, flags } => format!("{ntuples} tuples flags 0x{flags:02X}"),
                HeapRecord::Visible { cutoff_xid, flags } => format!("cutoff xid {cutoff_xid} flags 0x{flags:02X}"),
            };
            let tag = match h {
                HeapRecord::Visible { .. } => "heap_visible",
                _ if h.vm_clearing() != heap::VmClearing::default() => "heap_vm_cleared",
                _ => "heap",
            };
            (
                Expect::Contains(frag.split('\n').map(String::from).collect()),
                Some(tag),
            )
        }
        RmgrRecord::Other { .. } => (Expect::Contains(vec![]), None),
    }
}

fn check(exp: &Expect, line: &DumpLine) {
    // Block references are appended after ", blkref #"; compare before them.
    let desc = line.desc.split(", blkref #").next().unwrap();
    match exp {
        Expect::Exact(s) => assert_eq!(desc, s, "record {} at {}", line.id, line.lsn),
        Expect::Contains(frags) => {
            for f in frags {
                assert!(
                    desc.contains(f.as_str()),
                    "record {} at {}: {desc:?} lacks {f:?}",
                    line.id,
                    line.lsn
                );
            }
        }
        Expect::Lacks(frags, absent) => {
            check(&Expect::Contains(frags.clone()), line);
            for a in absent {
                assert!(
                    !desc.contains(a),
                    "record {} at {}: {desc:?} has {a:?}",
                    line.id,
                    line.lsn
                );
            }
        }
    }
}

const WORKLOAD: &str = "
CREATE TABLE t(id int PRIMARY KEY, v text);
INSERT INTO t VALUES (1, 'a'), (2, 'b');
BEGIN; INSERT INTO t VALUES (3, 'c'); ABORT;
BEGIN; INSERT INTO t VALUES (4, 'd'); SAVEPOINT s1; INSERT INTO t VALUES (5, 'e');
  SAVEPOINT s2; INSERT INTO t VALUES (6, 'f'); ROLLBACK TO s2; COMMIT;
BEGIN; SELECT * FROM t WHERE id = 1 FOR SHARE; SAVEPOINT s; UPDATE t SET v = 'x' WHERE id = 1; COMMIT;
BEGIN; INSERT INTO t VALUES (7, 'g'); PREPARE TRANSACTION 'gid_one';
COMMIT PREPARED 'gid_one';
BEGIN; INSERT INTO t VALUES (8, 'h'); PREPARE TRANSACTION 'gid_two';
ROLLBACK PREPARED 'gid_two';
DO $$ BEGIN FOR i IN 100..170 LOOP
  BEGIN INSERT INTO t VALUES (i, 'z'); EXCEPTION WHEN others THEN NULL; END;
END LOOP; END $$;
VACUUM t;
UPDATE t SET v = 'y' WHERE id = 2;
DELETE FROM t WHERE id = 4;
CREATE DATABASE db_fc STRATEGY file_copy;
CREATE DATABASE db_wl STRATEGY wal_log;
DROP DATABASE db_fc;
BEGIN; CREATE TABLE t2(a int); INSERT INTO t2 VALUES (1); TRUNCATE t2; COMMIT;
TRUNCATE t;
DROP TABLE t2;
SELECT pg_switch_wal();
CHECKPOINT;
";

#[test]
fn decode_real_wal_matches_pg_waldump() {
    let Some(mut cluster) = TestCluster::init("decode_real_wal_matches_pg_waldump", &[]) else {
        return;
    };
    let ts_dir = cluster.server_owned_dir("ts1");
    cluster.start(
        "max_prepared_transactions = 5\nwal_level = logical\n\
         wal_consistency_checking = 'all'\nfull_page_writes = on\n\
         wal_keep_size = '1GB'",
    );
    cluster.psql("postgres", WORKLOAD);
    // A tablespace, and a database with files in two tablespaces.
    cluster.psql(
        "postgres",
        &format!(
            "CREATE TABLESPACE ts1 LOCATION '{}';\nCREATE DATABASE db2;",
            ts_dir.display()
        ),
    );
    cluster.psql("db2", "CREATE TABLE in_ts(a int) TABLESPACE ts1;");
    cluster.psql("postgres", "DROP DATABASE db2;\nDROP TABLESPACE ts1;");
    cluster.stop();

    let wal_dir = cluster.datadir.join("pg_wal");
    let mut segments: Vec<String> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    segments.sort();
    let out = TestCluster::run_tool(
        "pg_waldump",
        &[
            "-p",
            wal_dir.to_str().unwrap(),
            &segments[0],
            segments.last().unwrap(),
        ],
    );
    let lines = parse_dump(&String::from_utf8_lossy(&out.stdout));
    assert!(
        lines.len() > 1000,
        "pg_waldump listed only {} records: {}",
        lines.len(),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut wal = WalFiles {
        dir: wal_dir,
        segments: HashMap::new(),
    };
    let mut seen = BTreeSet::new();
    let mut gids = BTreeSet::new();
    for line in &lines {
        let (tot_len, xid, info, rmid, main) = wal.record(line.lsn);
        assert_eq!(tot_len, line.tot_len, "length of record at {}", line.lsn);
        assert_eq!(xid, line.xid);
        assert_eq!(name(rmid), line.rmgr, "rmgr of record at {}", line.lsn);
        let rec = decode_rmgr_record(rmid, info, &main)
            .unwrap_or_else(|e| panic!("record {} at {}: {e}", line.id, line.lsn));
        let (exp, tag) = expect(&rec, line);
        check(&exp, line);
        if let Some(tag) = tag {
            seen.insert(tag);
        }
        if let RmgrRecord::Xact(XactRecord::CommitPrepared(c) | XactRecord::AbortPrepared(c)) = &rec
        {
            gids.insert(
                c.twophase_gid
                    .clone()
                    .expect("wal_level=logical logs the GID"),
            );
        }
        if let RmgrRecord::Xact(XactRecord::Commit(c)) = &rec {
            if !c.subxacts.is_empty() {
                seen.insert("commit_with_subxacts");
            }
            if !c.dropped_rels.is_empty() {
                seen.insert("commit_with_dropped_rels");
            }
        }
    }
    let expected = [
        "abort",
        "abort_prepared",
        "assignment",
        "checkpoint_online",
        "checkpoint_shutdown",
        "clog_zero",
        "commit",
        "commit_prepared",
        "commit_with_dropped_rels",
        "commit_with_subxacts",
        "dbase_drop",
        "dbase_drop_2ts",
        "dbase_file_copy",
        "dbase_wal_log",
        "fpi",
        "heap",
        "heap_visible",
        "heap_vm_cleared",
        "multixact_create",
        "multixact_zero",
        "nextoid",
        "parameter_change",
        "prepare",
        "relmap",
        "running_xacts",
        "smgr_create",
        "smgr_truncate",
        "switch",
        "tblspc_create",
        "tblspc_drop",
    ];
    let missing: Vec<_> = expected.iter().filter(|t| !seen.contains(*t)).collect();
    assert!(missing.is_empty(), "no records of kinds {missing:?}");
    assert_eq!(
        gids,
        BTreeSet::from(["gid_one".to_string(), "gid_two".to_string()])
    );
}

#[test]
fn timestamp_formatting() {
    assert_eq!(timestamptz_to_str(0), "2000-01-01 00:00:00 UTC");
    assert_eq!(
        timestamptz_to_str(1_500_000),
        "2000-01-01 00:00:01.500000 UTC"
    );
    assert_eq!(timestamptz_to_str(-1), "1999-12-31 23:59:59.999999 UTC");
    // 2024-02-29 12:34:56.000123 UTC
    let ts = (1_709_210_096 - 946_684_800) * 1_000_000 + 123;
    assert_eq!(timestamptz_to_str(ts), "2024-02-29 12:34:56.000123 UTC");
}
