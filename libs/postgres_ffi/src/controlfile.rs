//! `global/pg_control` of PostgreSQL 15 (`ControlFileData` in
//! `catalog/pg_control.h`) and the `CheckPoint` struct that is both embedded in
//! it and the body of `XLOG_CHECKPOINT_SHUTDOWN` / `XLOG_CHECKPOINT_ONLINE`
//! records.
//!
//! The page server decodes the control file of an imported base backup and
//! generates one for every base backup it serves, so both directions are exact:
//! [`ControlFileData::encode`] writes the 8192-byte file PostgreSQL expects
//! (used part, CRC32C, zero padding), and `encode(decode(x)) == x` holds for
//! files written by PostgreSQL (their padding bytes are zero).
//!
//! Layout of `CheckPoint` (88 bytes, x86_64):
//!
//! | offset | size | field                                     |
//! |-------:|-----:|-------------------------------------------|
//! | 0      | 8    | `redo` (XLogRecPtr)                       |
//! | 8      | 4    | `ThisTimeLineID`                          |
//! | 12     | 4    | `PrevTimeLineID`                          |
//! | 16     | 1    | `fullPageWrites` (bool), 7 bytes padding  |
//! | 24     | 8    | `nextXid` (FullTransactionId: epoch<<32 \| xid) |
//! | 32     | 4    | `nextOid`                                 |
//! | 36     | 4    | `nextMulti`                               |
//! | 40     | 4    | `nextMultiOffset`                         |
//! | 44     | 4    | `oldestXid`                               |
//! | 48     | 4    | `oldestXidDB`                             |
//! | 52     | 4    | `oldestMulti`                             |
//! | 56     | 4    | `oldestMultiDB`, 4 bytes padding          |
//! | 64     | 8    | `time` (pg_time_t, seconds since 1970)    |
//! | 72     | 4    | `oldestCommitTsXid`                       |
//! | 76     | 4    | `newestCommitTsXid`                       |
//! | 80     | 4    | `oldestActiveXid`, 4 bytes padding        |
//!
//! Layout of `ControlFileData` (296 bytes; the CRC covers bytes 0..288):
//!
//! | offset | size | field                                   |
//! |-------:|-----:|-----------------------------------------|
//! | 0      | 8    | `system_identifier`                     |
//! | 8      | 4    | `pg_control_version` (1300)             |
//! | 12     | 4    | `catalog_version_no`                    |
//! | 16     | 4    | `state` (DBState), 4 bytes padding      |
//! | 24     | 8    | `time` (pg_time_t)                      |
//! | 32     | 8    | `checkPoint` (XLogRecPtr)               |
//! | 40     | 88   | `checkPointCopy` (CheckPoint)           |
//! | 128    | 8    | `unloggedLSN`                           |
//! | 136    | 8    | `minRecoveryPoint`                      |
//! | 144    | 4    | `minRecoveryPointTLI`, 4 bytes padding  |
//! | 152    | 8    | `backupStartPoint`                      |
//! | 160    | 8    | `backupEndPoint`                        |
//! | 168    | 1    | `backupEndRequired`, 3 bytes padding    |
//! | 172    | 4    | `wal_level`                             |
//! | 176    | 1    | `wal_log_hints`, 3 bytes padding        |
//! | 180    | 4    | `MaxConnections`                        |
//! | 184    | 4    | `max_worker_processes`                  |
//! | 188    | 4    | `max_wal_senders`                       |
//! | 192    | 4    | `max_prepared_xacts`                    |
//! | 196    | 4    | `max_locks_per_xact`                    |
//! | 200    | 1    | `track_commit_timestamp`, 3 bytes pad   |
//! | 204    | 4    | `maxAlign`                              |
//! | 208    | 8    | `floatFormat` (double 1234567.0)        |
//! | 216    | 4    | `blcksz`                                |
//! | 220    | 4    | `relseg_size`                           |
//! | 224    | 4    | `xlog_blcksz`                           |
//! | 228    | 4    | `xlog_seg_size`                         |
//! | 232    | 4    | `nameDataLen`                           |
//! | 236    | 4    | `indexMaxKeys`                          |
//! | 240    | 4    | `toast_max_chunk_size`                  |
//! | 244    | 4    | `loblksize`                             |
//! | 248    | 1    | `float8ByVal`, 3 bytes padding          |
//! | 252    | 4    | `data_checksum_version`                 |
//! | 256    | 32   | `mock_authentication_nonce`             |
//! | 288    | 4    | `crc` (CRC32C of bytes 0..288), 4 pad   |

use thiserror::Error;
use utils::lsn::Lsn;

use crate::pg_constants::{
    BLCKSZ, CATALOG_VERSION_NO, FLOATFORMAT_VALUE, INDEX_MAX_KEYS, LOBLKSIZE, MAXIMUM_ALIGNOF,
    MOCK_AUTH_NONCE_LEN, NAMEDATALEN, PG_CONTROL_FILE_SIZE, PG_CONTROL_VERSION, RELSEG_SIZE,
    TOAST_MAX_CHUNK_SIZE, WAL_SEGMENT_SIZE, XLOG_BLCKSZ,
};

/// `sizeof(CheckPoint)`.
pub const SIZEOF_CHECKPOINT: usize = 88;
/// `sizeof(ControlFileData)`.
pub const SIZEOF_CONTROLDATA: usize = 296;
/// Offset of the `crc` field; the CRC covers everything before it.
pub const OFFSETOF_CONTROLDATA_CRC: usize = 288;
/// Offset of `checkPointCopy` within `ControlFileData`.
const OFFSETOF_CHECKPOINT_COPY: usize = 40;

/// Errors decoding `pg_control` or a `CheckPoint`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControlFileError {
    /// The input is shorter than `sizeof(ControlFileData)`.
    #[error("pg_control is {len} bytes, expected at least {SIZEOF_CONTROLDATA}")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// `pg_control_version` is not the one of PostgreSQL 15.
    #[error(
        "pg_control version is {found}, expected {PG_CONTROL_VERSION} (PostgreSQL 15); \
         the data directory belongs to another PostgreSQL version"
    )]
    WrongVersion {
        /// Version found in the file.
        found: u32,
    },
    /// The stored CRC does not match the contents.
    #[error(
        "pg_control CRC mismatch: stored {stored:#010x}, computed {computed:#010x}; \
         the file is corrupt or incomplete"
    )]
    CrcMismatch {
        /// CRC stored in the file.
        stored: u32,
        /// CRC computed over bytes 0..288.
        computed: u32,
    },
    /// The `state` field holds no known `DBState`.
    #[error("pg_control has unknown database state {0}")]
    UnknownState(u32),
    /// A `CheckPoint` body has the wrong size.
    #[error("CheckPoint body is {len} bytes, expected {SIZEOF_CHECKPOINT}")]
    CheckPointSize {
        /// Length of the input.
        len: usize,
    },
}

/// Body of a checkpoint record, and the copy of the latest one in
/// `pg_control` (`CheckPoint` in `catalog/pg_control.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckPoint {
    /// REDO start point: next WAL position when the checkpoint began.
    pub redo: Lsn,
    /// Current timeline.
    pub this_timeline_id: u32,
    /// Previous timeline if this checkpoint starts a new one, else equal to
    /// `this_timeline_id`.
    pub prev_timeline_id: u32,
    /// `full_page_writes` setting.
    pub full_page_writes: bool,
    /// Next free transaction id with its epoch (`FullTransactionId`:
    /// epoch in the high 32 bits).
    pub next_xid: u64,
    /// Next free OID.
    pub next_oid: u32,
    /// Next free multixact id.
    pub next_multi: u32,
    /// Next free multixact member offset.
    pub next_multi_offset: u32,
    /// Cluster-wide minimum `datfrozenxid`.
    pub oldest_xid: u32,
    /// Database holding `oldest_xid`.
    pub oldest_xid_db: u32,
    /// Cluster-wide minimum `datminmxid`.
    pub oldest_multi: u32,
    /// Database holding `oldest_multi`.
    pub oldest_multi_db: u32,
    /// Time of the checkpoint, seconds since the Unix epoch.
    pub time: i64,
    /// Oldest xid with a valid commit timestamp.
    pub oldest_commit_ts_xid: u32,
    /// Newest xid with a valid commit timestamp.
    pub newest_commit_ts_xid: u32,
    /// Oldest running xid (online checkpoints with hot standby info only).
    pub oldest_active_xid: u32,
}

impl CheckPoint {
    /// Decode the 88-byte body of a checkpoint record.
    pub fn decode(buf: &[u8]) -> Result<CheckPoint, ControlFileError> {
        if buf.len() != SIZEOF_CHECKPOINT {
            return Err(ControlFileError::CheckPointSize { len: buf.len() });
        }
        Ok(Self::decode_at(buf, 0))
    }

    /// Encode into the 88-byte form (padding zeroed).
    pub fn encode(&self) -> [u8; SIZEOF_CHECKPOINT] {
        let mut buf = [0u8; SIZEOF_CHECKPOINT];
        self.encode_at(&mut buf, 0);
        buf
    }

    /// The 32-bit part of `next_xid`.
    pub fn next_xid_xid(&self) -> u32 {
        self.next_xid as u32
    }

    /// The epoch part of `next_xid`.
    pub fn next_xid_epoch(&self) -> u32 {
        (self.next_xid >> 32) as u32
    }

    /// Caller guarantees `buf.len() >= at + SIZEOF_CHECKPOINT`.
    fn decode_at(buf: &[u8], at: usize) -> CheckPoint {
        CheckPoint {
            redo: Lsn(get_u64(buf, at)),
            this_timeline_id: get_u32(buf, at + 8),
            prev_timeline_id: get_u32(buf, at + 12),
            full_page_writes: buf[at + 16] != 0,
            next_xid: get_u64(buf, at + 24),
            next_oid: get_u32(buf, at + 32),
            next_multi: get_u32(buf, at + 36),
            next_multi_offset: get_u32(buf, at + 40),
            oldest_xid: get_u32(buf, at + 44),
            oldest_xid_db: get_u32(buf, at + 48),
            oldest_multi: get_u32(buf, at + 52),
            oldest_multi_db: get_u32(buf, at + 56),
            time: get_u64(buf, at + 64) as i64,
            oldest_commit_ts_xid: get_u32(buf, at + 72),
            newest_commit_ts_xid: get_u32(buf, at + 76),
            oldest_active_xid: get_u32(buf, at + 80),
        }
    }

    fn encode_at(&self, buf: &mut [u8], at: usize) {
        put_u64(buf, at, self.redo.0);
        put_u32(buf, at + 8, self.this_timeline_id);
        put_u32(buf, at + 12, self.prev_timeline_id);
        buf[at + 16] = u8::from(self.full_page_writes);
        put_u64(buf, at + 24, self.next_xid);
        put_u32(buf, at + 32, self.next_oid);
        put_u32(buf, at + 36, self.next_multi);
        put_u32(buf, at + 40, self.next_multi_offset);
        put_u32(buf, at + 44, self.oldest_xid);
        put_u32(buf, at + 48, self.oldest_xid_db);
        put_u32(buf, at + 52, self.oldest_multi);
        put_u32(buf, at + 56, self.oldest_multi_db);
        put_u64(buf, at + 64, self.time as u64);
        put_u32(buf, at + 72, self.oldest_commit_ts_xid);
        put_u32(buf, at + 76, self.newest_commit_ts_xid);
        put_u32(buf, at + 80, self.oldest_active_xid);
    }
}

/// `DBState`: the cluster state recorded in `pg_control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum DbState {
    /// `DB_STARTUP`.
    Startup = 0,
    /// `DB_SHUTDOWNED`: cleanly shut down.
    Shutdowned = 1,
    /// `DB_SHUTDOWNED_IN_RECOVERY`: shut down while in recovery.
    ShutdownedInRecovery = 2,
    /// `DB_SHUTDOWNING`.
    Shutdowning = 3,
    /// `DB_IN_CRASH_RECOVERY`.
    InCrashRecovery = 4,
    /// `DB_IN_ARCHIVE_RECOVERY`.
    InArchiveRecovery = 5,
    /// `DB_IN_PRODUCTION`: running.
    InProduction = 6,
}

impl DbState {
    /// Map the raw value; `None` if unknown.
    pub fn from_u32(v: u32) -> Option<DbState> {
        Some(match v {
            0 => DbState::Startup,
            1 => DbState::Shutdowned,
            2 => DbState::ShutdownedInRecovery,
            3 => DbState::Shutdowning,
            4 => DbState::InCrashRecovery,
            5 => DbState::InArchiveRecovery,
            6 => DbState::InProduction,
            _ => return None,
        })
    }
}

/// Settings that decide whether WAL can be used for archiving or hot standby.
/// Stored in `pg_control` and in `XLOG_PARAMETER_CHANGE` records
/// (`xl_parameter_change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalParameters {
    /// `max_connections`.
    pub max_connections: i32,
    /// `max_worker_processes`.
    pub max_worker_processes: i32,
    /// `max_wal_senders`.
    pub max_wal_senders: i32,
    /// `max_prepared_transactions`.
    pub max_prepared_xacts: i32,
    /// `max_locks_per_transaction`.
    pub max_locks_per_xact: i32,
    /// `wal_level` (see `pg_constants::WAL_LEVEL_*`).
    pub wal_level: i32,
    /// `wal_log_hints`.
    pub wal_log_hints: bool,
    /// `track_commit_timestamp`.
    pub track_commit_timestamp: bool,
}

/// Minimum-recovery and backup fields of `pg_control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryPoints {
    /// `minRecoveryPoint`: recovery must reach this LSN before startup.
    pub min_recovery_point: Lsn,
    /// `minRecoveryPointTLI`.
    pub min_recovery_point_tli: u32,
    /// `backupStartPoint`: redo pointer of an unfinished backup, or 0.
    pub backup_start_point: Lsn,
    /// `backupEndPoint`: end of a backup taken from a standby, or 0.
    pub backup_end_point: Lsn,
    /// `backupEndRequired`: an end-of-backup record must be seen.
    pub backup_end_required: bool,
}

/// Build-compatibility fields of `pg_control`: a server refuses to start on
/// a data directory whose values differ from its own.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ControlCompat {
    /// `maxAlign`.
    pub max_align: u32,
    /// `floatFormat`: must be [`FLOATFORMAT_VALUE`].
    pub float_format: f64,
    /// `blcksz`.
    pub blcksz: u32,
    /// `relseg_size`.
    pub relseg_size: u32,
    /// `xlog_blcksz`.
    pub xlog_blcksz: u32,
    /// `xlog_seg_size`.
    pub xlog_seg_size: u32,
    /// `nameDataLen`.
    pub name_data_len: u32,
    /// `indexMaxKeys`.
    pub index_max_keys: u32,
    /// `toast_max_chunk_size`.
    pub toast_max_chunk_size: u32,
    /// `loblksize`.
    pub loblksize: u32,
    /// `float8ByVal`.
    pub float8_by_val: bool,
    /// `data_checksum_version`: 0 when data checksums are off.
    pub data_checksum_version: u32,
}

impl ControlCompat {
    /// The values of a default x86_64 PostgreSQL 15 build, with the given
    /// data checksum version.
    pub fn pg15_default(data_checksum_version: u32) -> ControlCompat {
        ControlCompat {
            max_align: MAXIMUM_ALIGNOF as u32,
            float_format: FLOATFORMAT_VALUE,
            blcksz: BLCKSZ as u32,
            relseg_size: RELSEG_SIZE,
            xlog_blcksz: XLOG_BLCKSZ as u32,
            xlog_seg_size: WAL_SEGMENT_SIZE as u32,
            name_data_len: NAMEDATALEN,
            index_max_keys: INDEX_MAX_KEYS,
            toast_max_chunk_size: TOAST_MAX_CHUNK_SIZE,
            loblksize: LOBLKSIZE,
            float8_by_val: true,
            data_checksum_version,
        }
    }
}

/// Contents of `global/pg_control` (`ControlFileData`), grouped.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlFileData {
    /// Unique system identifier, matched against WAL segment headers.
    pub system_identifier: u64,
    /// `pg_control_version` (always [`PG_CONTROL_VERSION`] after decode).
    pub pg_control_version: u32,
    /// `catalog_version_no`.
    pub catalog_version_no: u32,
    /// Cluster state.
    pub state: DbState,
    /// Time of the last update of `pg_control`, seconds since the Unix epoch.
    pub time: i64,
    /// LSN of the last checkpoint record.
    pub checkpoint: Lsn,
    /// Copy of the last checkpoint record.
    pub checkpoint_copy: CheckPoint,
    /// `unloggedLSN`: fake LSN counter for unlogged relations.
    pub unlogged_lsn: Lsn,
    /// Minimum recovery point and backup fields.
    pub recovery: RecoveryPoints,
    /// WAL-relevant settings.
    pub params: WalParameters,
    /// Build-compatibility fields.
    pub compat: ControlCompat,
    /// `mock_authentication_nonce`.
    pub mock_authentication_nonce: [u8; MOCK_AUTH_NONCE_LEN],
}

impl ControlFileData {
    /// Decode `pg_control` contents (at least 296 bytes; normally the whole
    /// 8192-byte file). Checks the version first (so a file of another
    /// PostgreSQL version gets a version error, as PostgreSQL reports it),
    /// then the CRC32C.
    pub fn decode(buf: &[u8]) -> Result<ControlFileData, ControlFileError> {
        if buf.len() < SIZEOF_CONTROLDATA {
            return Err(ControlFileError::TooShort { len: buf.len() });
        }
        let version = get_u32(buf, 8);
        if version != PG_CONTROL_VERSION {
            return Err(ControlFileError::WrongVersion { found: version });
        }
        let stored = get_u32(buf, OFFSETOF_CONTROLDATA_CRC);
        let computed = crc32c::crc32c(&buf[..OFFSETOF_CONTROLDATA_CRC]);
        if stored != computed {
            return Err(ControlFileError::CrcMismatch { stored, computed });
        }
        let raw_state = get_u32(buf, 16);
        let state =
            DbState::from_u32(raw_state).ok_or(ControlFileError::UnknownState(raw_state))?;
        let mut nonce = [0u8; MOCK_AUTH_NONCE_LEN];
        nonce.copy_from_slice(&buf[256..256 + MOCK_AUTH_NONCE_LEN]);
        Ok(ControlFileData {
            system_identifier: get_u64(buf, 0),
            pg_control_version: version,
            catalog_version_no: get_u32(buf, 12),
            state,
            time: get_u64(buf, 24) as i64,
            checkpoint: Lsn(get_u64(buf, 32)),
            checkpoint_copy: CheckPoint::decode_at(buf, OFFSETOF_CHECKPOINT_COPY),
            unlogged_lsn: Lsn(get_u64(buf, 128)),
            recovery: RecoveryPoints {
                min_recovery_point: Lsn(get_u64(buf, 136)),
                min_recovery_point_tli: get_u32(buf, 144),
                backup_start_point: Lsn(get_u64(buf, 152)),
                backup_end_point: Lsn(get_u64(buf, 160)),
                backup_end_required: buf[168] != 0,
            },
            params: WalParameters {
                wal_level: get_u32(buf, 172) as i32,
                wal_log_hints: buf[176] != 0,
                max_connections: get_u32(buf, 180) as i32,
                max_worker_processes: get_u32(buf, 184) as i32,
                max_wal_senders: get_u32(buf, 188) as i32,
                max_prepared_xacts: get_u32(buf, 192) as i32,
                max_locks_per_xact: get_u32(buf, 196) as i32,
                track_commit_timestamp: buf[200] != 0,
            },
            compat: ControlCompat {
                max_align: get_u32(buf, 204),
                float_format: f64::from_bits(get_u64(buf, 208)),
                blcksz: get_u32(buf, 216),
                relseg_size: get_u32(buf, 220),
                xlog_blcksz: get_u32(buf, 224),
                xlog_seg_size: get_u32(buf, 228),
                name_data_len: get_u32(buf, 232),
                index_max_keys: get_u32(buf, 236),
                toast_max_chunk_size: get_u32(buf, 240),
                loblksize: get_u32(buf, 244),
                float8_by_val: buf[248] != 0,
                data_checksum_version: get_u32(buf, 252),
            },
            mock_authentication_nonce: nonce,
        })
    }

    /// Encode into a complete 8192-byte `pg_control` file: the fields, the
    /// CRC32C of bytes 0..288 at offset 288, and zeros everywhere else.
    pub fn encode(&self) -> [u8; PG_CONTROL_FILE_SIZE] {
        let mut buf = [0u8; PG_CONTROL_FILE_SIZE];
        put_u64(&mut buf, 0, self.system_identifier);
        put_u32(&mut buf, 8, self.pg_control_version);
        put_u32(&mut buf, 12, self.catalog_version_no);
        put_u32(&mut buf, 16, self.state as u32);
        put_u64(&mut buf, 24, self.time as u64);
        put_u64(&mut buf, 32, self.checkpoint.0);
        self.checkpoint_copy
            .encode_at(&mut buf, OFFSETOF_CHECKPOINT_COPY);
        put_u64(&mut buf, 128, self.unlogged_lsn.0);

        let r = &self.recovery;
        put_u64(&mut buf, 136, r.min_recovery_point.0);
        put_u32(&mut buf, 144, r.min_recovery_point_tli);
        put_u64(&mut buf, 152, r.backup_start_point.0);
        put_u64(&mut buf, 160, r.backup_end_point.0);
        buf[168] = u8::from(r.backup_end_required);

        let p = &self.params;
        put_u32(&mut buf, 172, p.wal_level as u32);
        buf[176] = u8::from(p.wal_log_hints);
        put_u32(&mut buf, 180, p.max_connections as u32);
        put_u32(&mut buf, 184, p.max_worker_processes as u32);
        put_u32(&mut buf, 188, p.max_wal_senders as u32);
        put_u32(&mut buf, 192, p.max_prepared_xacts as u32);
        put_u32(&mut buf, 196, p.max_locks_per_xact as u32);
        buf[200] = u8::from(p.track_commit_timestamp);

        let c = &self.compat;
        put_u32(&mut buf, 204, c.max_align);
        put_u64(&mut buf, 208, c.float_format.to_bits());
        put_u32(&mut buf, 216, c.blcksz);
        put_u32(&mut buf, 220, c.relseg_size);
        put_u32(&mut buf, 224, c.xlog_blcksz);
        put_u32(&mut buf, 228, c.xlog_seg_size);
        put_u32(&mut buf, 232, c.name_data_len);
        put_u32(&mut buf, 236, c.index_max_keys);
        put_u32(&mut buf, 240, c.toast_max_chunk_size);
        put_u32(&mut buf, 244, c.loblksize);
        buf[248] = u8::from(c.float8_by_val);
        put_u32(&mut buf, 252, c.data_checksum_version);
        buf[256..256 + MOCK_AUTH_NONCE_LEN].copy_from_slice(&self.mock_authentication_nonce);

        let crc = crc32c::crc32c(&buf[..OFFSETOF_CONTROLDATA_CRC]);
        put_u32(&mut buf, OFFSETOF_CONTROLDATA_CRC, crc);
        buf
    }

    /// A control file for a new PostgreSQL 15 cluster state: version fields
    /// and build-compatibility fields of a default x86_64 build; the caller
    /// fills in identity, checkpoint and settings.
    pub fn new_pg15(
        system_identifier: u64,
        checkpoint: Lsn,
        checkpoint_copy: CheckPoint,
        params: WalParameters,
        data_checksum_version: u32,
    ) -> ControlFileData {
        ControlFileData {
            system_identifier,
            pg_control_version: PG_CONTROL_VERSION,
            catalog_version_no: CATALOG_VERSION_NO,
            state: DbState::Shutdowned,
            time: checkpoint_copy.time,
            checkpoint,
            checkpoint_copy,
            unlogged_lsn: Lsn(1000),
            recovery: RecoveryPoints::default(),
            params,
            compat: ControlCompat::pg15_default(data_checksum_version),
            mock_authentication_nonce: [0; MOCK_AUTH_NONCE_LEN],
        }
    }
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg_constants::{PG_CONTROL_FILE_PATH, WAL_LEVEL_REPLICA};
    use crate::records::test_cluster::TestCluster;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn sample_checkpoint() -> CheckPoint {
        CheckPoint {
            redo: Lsn(0x0000_0001_0203_0405),
            this_timeline_id: 3,
            prev_timeline_id: 2,
            full_page_writes: true,
            next_xid: (7u64 << 32) | 1234,
            next_oid: 16_400,
            next_multi: 9,
            next_multi_offset: 17,
            oldest_xid: 716,
            oldest_xid_db: 1,
            oldest_multi: 1,
            oldest_multi_db: 5,
            time: 1_700_000_000,
            oldest_commit_ts_xid: 11,
            newest_commit_ts_xid: 12,
            oldest_active_xid: 1233,
        }
    }

    #[test]
    fn checkpoint_layout_offsets() {
        let bytes = sample_checkpoint().encode();
        assert_eq!(bytes.len(), SIZEOF_CHECKPOINT);
        assert_eq!(&bytes[0..8], &0x0000_0001_0203_0405u64.to_le_bytes());
        assert_eq!(bytes[16], 1);
        assert_eq!(&bytes[17..24], &[0; 7], "padding after fullPageWrites");
        assert_eq!(&bytes[24..28], &1234u32.to_le_bytes());
        assert_eq!(
            &bytes[28..32],
            &7u32.to_le_bytes(),
            "epoch is the high word"
        );
        assert_eq!(&bytes[56..60], &5u32.to_le_bytes());
        assert_eq!(&bytes[64..72], &1_700_000_000i64.to_le_bytes());
        assert_eq!(&bytes[80..84], &1233u32.to_le_bytes());
        let cp = CheckPoint::decode(&bytes).unwrap();
        assert_eq!(cp, sample_checkpoint());
        assert_eq!(cp.next_xid_xid(), 1234);
        assert_eq!(cp.next_xid_epoch(), 7);
    }

    #[test]
    fn checkpoint_wrong_size_is_an_error() {
        let bytes = sample_checkpoint().encode();
        assert_eq!(
            CheckPoint::decode(&bytes[..87]),
            Err(ControlFileError::CheckPointSize { len: 87 })
        );
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(CheckPoint::decode(&long).is_err());
    }

    fn sample_control() -> ControlFileData {
        ControlFileData::new_pg15(
            0x1122_3344_5566_7788,
            Lsn(0x0100_0028),
            sample_checkpoint(),
            WalParameters {
                max_connections: 100,
                max_worker_processes: 8,
                max_wal_senders: 10,
                max_prepared_xacts: 5,
                max_locks_per_xact: 64,
                wal_level: WAL_LEVEL_REPLICA,
                wal_log_hints: true,
                track_commit_timestamp: false,
            },
            1,
        )
    }

    #[test]
    fn control_file_layout_and_crc() {
        let file = sample_control().encode();
        assert_eq!(file.len(), PG_CONTROL_FILE_SIZE);
        assert_eq!(&file[8..12], &PG_CONTROL_VERSION.to_le_bytes());
        assert_eq!(&file[12..16], &CATALOG_VERSION_NO.to_le_bytes());
        assert_eq!(&file[32..40], &0x0100_0028u64.to_le_bytes());
        assert_eq!(
            &file[40..40 + SIZEOF_CHECKPOINT],
            &sample_checkpoint().encode()
        );
        assert_eq!(&file[172..176], &WAL_LEVEL_REPLICA.to_le_bytes());
        assert_eq!(file[176], 1, "wal_log_hints");
        assert_eq!(&file[208..216], &FLOATFORMAT_VALUE.to_le_bytes());
        assert_eq!(&file[216..220], &8192u32.to_le_bytes());
        assert_eq!(&file[252..256], &1u32.to_le_bytes());
        let crc = crc32c::crc32c(&file[..288]);
        assert_eq!(&file[288..292], &crc.to_le_bytes());
        assert!(file[292..].iter().all(|&b| b == 0));
        assert_eq!(ControlFileData::decode(&file).unwrap(), sample_control());
    }

    #[test]
    fn control_file_errors() {
        let file = sample_control().encode();
        assert_eq!(
            ControlFileData::decode(&file[..100]),
            Err(ControlFileError::TooShort { len: 100 })
        );
        let mut bad = file;
        bad[100] ^= 1;
        assert!(matches!(
            ControlFileData::decode(&bad),
            Err(ControlFileError::CrcMismatch { .. })
        ));
        let mut v14 = file;
        v14[8..12].copy_from_slice(&1300u32.wrapping_sub(1).to_le_bytes());
        let err = ControlFileData::decode(&v14).unwrap_err();
        assert_eq!(err, ControlFileError::WrongVersion { found: 1299 });
        assert!(err.to_string().contains("PostgreSQL 15"));
        let mut state = sample_control();
        state.state = DbState::InProduction;
        let mut raw = state.encode();
        raw[16] = 9;
        let crc = crc32c::crc32c(&raw[..288]);
        raw[288..292].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            ControlFileData::decode(&raw),
            Err(ControlFileError::UnknownState(9))
        );
    }

    fn arb_checkpoint() -> impl Strategy<Value = CheckPoint> {
        (
            (any::<u64>(), any::<u32>(), any::<u32>(), any::<bool>()),
            (any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>()),
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
            (any::<i64>(), any::<u32>(), any::<u32>(), any::<u32>()),
        )
            .prop_map(|(a, b, c, d)| CheckPoint {
                redo: Lsn(a.0),
                this_timeline_id: a.1,
                prev_timeline_id: a.2,
                full_page_writes: a.3,
                next_xid: b.0,
                next_oid: b.1,
                next_multi: b.2,
                next_multi_offset: b.3,
                oldest_xid: c.0,
                oldest_xid_db: c.1,
                oldest_multi: c.2,
                oldest_multi_db: c.3,
                time: d.0,
                oldest_commit_ts_xid: d.1,
                newest_commit_ts_xid: d.2,
                oldest_active_xid: d.3,
            })
    }

    proptest! {
        #[test]
        fn checkpoint_roundtrip(cp in arb_checkpoint()) {
            prop_assert_eq!(CheckPoint::decode(&cp.encode()).unwrap(), cp);
        }

        #[test]
        fn control_file_roundtrip(
            cp in arb_checkpoint(),
            sysid in any::<u64>(),
            time in any::<i64>(),
            lsns in any::<(u64, u64, u64, u64, u64)>(),
            ints in any::<(i32, i32, i32, i32, i32, i32)>(),
            bools in any::<(bool, bool, bool, bool)>(),
            nonce in any::<[u8; 32]>(),
            state in 0u32..=6,
        ) {
            let mut c = ControlFileData::new_pg15(
                sysid,
                Lsn(lsns.0),
                cp,
                WalParameters {
                    max_connections: ints.0,
                    max_worker_processes: ints.1,
                    max_wal_senders: ints.2,
                    max_prepared_xacts: ints.3,
                    max_locks_per_xact: ints.4,
                    wal_level: ints.5,
                    wal_log_hints: bools.0,
                    track_commit_timestamp: bools.1,
                },
                u32::from(bools.2),
            );
            c.time = time;
            c.state = DbState::from_u32(state).unwrap();
            c.unlogged_lsn = Lsn(lsns.1);
            c.recovery.min_recovery_point = Lsn(lsns.2);
            c.recovery.backup_start_point = Lsn(lsns.3);
            c.recovery.backup_end_point = Lsn(lsns.4);
            c.recovery.backup_end_required = bools.3;
            c.mock_authentication_nonce = nonce;
            let bytes = c.encode();
            let back = ControlFileData::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &c);
            prop_assert_eq!(back.encode(), bytes);
        }
    }

    /// `pg_controldata` output as "label" -> "value".
    fn controldata(datadir: &std::path::Path) -> HashMap<String, String> {
        let out = TestCluster::run_tool("pg_controldata", &[datadir.to_str().unwrap()]);
        assert!(out.status.success(), "pg_controldata failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect()
    }

    #[test]
    fn decode_real_pg_control() {
        let Some(cluster) = TestCluster::init("decode_real_pg_control", &["--data-checksums"])
        else {
            return;
        };
        let raw = std::fs::read(cluster.datadir.join(PG_CONTROL_FILE_PATH)).unwrap();
        assert_eq!(raw.len(), PG_CONTROL_FILE_SIZE);
        let c = ControlFileData::decode(&raw).unwrap();
        assert_eq!(
            c.encode().as_slice(),
            raw.as_slice(),
            "encode(decode(x)) == x"
        );

        let pd = controldata(&cluster.datadir);
        let get = |k: &str| -> &str {
            pd.get(k)
                .unwrap_or_else(|| panic!("pg_controldata has no {k:?}"))
        };
        let cp = &c.checkpoint_copy;
        assert_eq!(
            get("pg_control version number"),
            c.pg_control_version.to_string()
        );
        assert_eq!(
            get("Catalog version number"),
            CATALOG_VERSION_NO.to_string()
        );
        assert_eq!(
            get("Database system identifier"),
            c.system_identifier.to_string()
        );
        assert_eq!(c.state, DbState::Shutdowned);
        assert_eq!(get("Database cluster state"), "shut down");
        assert_eq!(get("Latest checkpoint location"), c.checkpoint.to_string());
        assert_eq!(
            get("Latest checkpoint's REDO location"),
            cp.redo.to_string()
        );
        assert_eq!(
            get("Latest checkpoint's TimeLineID"),
            cp.this_timeline_id.to_string()
        );
        assert_eq!(
            get("Latest checkpoint's PrevTimeLineID"),
            cp.prev_timeline_id.to_string()
        );
        assert_eq!(
            get("Latest checkpoint's full_page_writes"),
            if cp.full_page_writes { "on" } else { "off" }
        );
        assert_eq!(
            get("Latest checkpoint's NextXID"),
            format!("{}:{}", cp.next_xid_epoch(), cp.next_xid_xid())
        );
        assert_eq!(get("Latest checkpoint's NextOID"), cp.next_oid.to_string());
        assert_eq!(
            get("Latest checkpoint's NextMultiXactId"),
            cp.next_multi.to_string()
        );
        assert_eq!(
            get("Latest checkpoint's NextMultiOffset"),
            cp.next_multi_offset.to_string()
        );
        assert_eq!(
            get("Latest checkpoint's oldestXID"),
            cp.oldest_xid.to_string()
        );
        assert_eq!(
            get("Latest checkpoint's oldestXID's DB"),
            cp.oldest_xid_db.to_string()
        );
        assert_eq!(
            get("Latest checkpoint's oldestActiveXID"),
            cp.oldest_active_xid.to_string()
        );
        assert_eq!(
            get("Latest checkpoint's oldestMultiXid"),
            cp.oldest_multi.to_string()
        );
        assert_eq!(
            get("Latest checkpoint's oldestMulti's DB"),
            cp.oldest_multi_db.to_string()
        );
        assert_eq!(
            get("Latest checkpoint's oldestCommitTsXid"),
            cp.oldest_commit_ts_xid.to_string()
        );
        assert_eq!(
            get("Latest checkpoint's newestCommitTsXid"),
            cp.newest_commit_ts_xid.to_string()
        );
        assert_eq!(
            get("Fake LSN counter for unlogged rels"),
            c.unlogged_lsn.to_string()
        );
        assert_eq!(
            get("Minimum recovery ending location"),
            c.recovery.min_recovery_point.to_string()
        );
        assert_eq!(
            get("max_connections setting"),
            c.params.max_connections.to_string()
        );
        assert_eq!(
            get("max_worker_processes setting"),
            c.params.max_worker_processes.to_string()
        );
        assert_eq!(
            get("max_wal_senders setting"),
            c.params.max_wal_senders.to_string()
        );
        assert_eq!(
            get("max_prepared_xacts setting"),
            c.params.max_prepared_xacts.to_string()
        );
        assert_eq!(
            get("max_locks_per_xact setting"),
            c.params.max_locks_per_xact.to_string()
        );
        assert_eq!(get("wal_level setting"), "replica");
        assert_eq!(c.params.wal_level, WAL_LEVEL_REPLICA);
        assert_eq!(
            get("Maximum data alignment"),
            c.compat.max_align.to_string()
        );
        assert_eq!(get("Database block size"), c.compat.blcksz.to_string());
        assert_eq!(
            get("Blocks per segment of large relation"),
            c.compat.relseg_size.to_string()
        );
        assert_eq!(get("WAL block size"), c.compat.xlog_blcksz.to_string());
        assert_eq!(
            get("Bytes per WAL segment"),
            c.compat.xlog_seg_size.to_string()
        );
        assert_eq!(
            get("Maximum length of identifiers"),
            c.compat.name_data_len.to_string()
        );
        assert_eq!(
            get("Maximum columns in an index"),
            c.compat.index_max_keys.to_string()
        );
        assert_eq!(
            get("Maximum size of a TOAST chunk"),
            c.compat.toast_max_chunk_size.to_string()
        );
        assert_eq!(
            get("Size of a large-object chunk"),
            c.compat.loblksize.to_string()
        );
        assert_eq!(get("Float8 argument passing"), "by value");
        assert_eq!(get("Data page checksum version"), "1");
        let nonce: String = c
            .mock_authentication_nonce
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(get("Mock authentication nonce"), nonce);
        assert_eq!(c.compat, ControlCompat::pg15_default(1));
    }
}
