//! Constants of PostgreSQL 15's on-disk and WAL formats, taken from the server
//! headers of PostgreSQL 15 (x86_64 build: little-endian, `MAXALIGN` 8).
//!
//! Names follow the C names so they can be found in the PostgreSQL sources;
//! the header each group comes from is given in its section comment.

// ---------------------------------------------------------------------------
// Build-time sizes (pg_config.h, pg_config_manual.h)
// ---------------------------------------------------------------------------

/// Size of a data page (`BLCKSZ`).
pub const BLCKSZ: usize = 8192;
/// Blocks per segment file of a relation fork (`RELSEG_SIZE`, 1 GiB of pages).
pub const RELSEG_SIZE: u32 = 131_072;
/// Size of a WAL page (`XLOG_BLCKSZ`).
pub const XLOG_BLCKSZ: usize = 8192;
/// Default (and our only supported) WAL segment size, 16 MiB.
pub const WAL_SEGMENT_SIZE: usize = 16 * 1024 * 1024;
/// `MAXIMUM_ALIGNOF` on x86_64.
pub const MAXIMUM_ALIGNOF: usize = 8;
/// `NAMEDATALEN`: width of catalog name fields.
pub const NAMEDATALEN: u32 = 64;
/// `INDEX_MAX_KEYS`: max number of columns of an index.
pub const INDEX_MAX_KEYS: u32 = 32;
/// `TOAST_MAX_CHUNK_SIZE` for 8 KiB pages.
pub const TOAST_MAX_CHUNK_SIZE: u32 = 1996;
/// `LOBLKSIZE`: chunk size in `pg_largeobject` (BLCKSZ / 4).
pub const LOBLKSIZE: u32 = 2048;
/// `GIDSIZE`: maximum length of a two-phase transaction identifier incl. NUL.
pub const GIDSIZE: usize = 200;

/// Round `len` up to a multiple of [`MAXIMUM_ALIGNOF`] (`MAXALIGN`).
pub const fn maxalign(len: usize) -> usize {
    (len + MAXIMUM_ALIGNOF - 1) & !(MAXIMUM_ALIGNOF - 1)
}

// ---------------------------------------------------------------------------
// Versions (pg_control.h, catversion.h, bufpage.h, xlog_internal.h)
// ---------------------------------------------------------------------------

/// `PG_CONTROL_VERSION` of PostgreSQL 15.
pub const PG_CONTROL_VERSION: u32 = 1300;
/// `CATALOG_VERSION_NO` of PostgreSQL 15.
pub const CATALOG_VERSION_NO: u32 = 202_209_061;
/// Major version number, as written in `PG_VERSION` files.
pub const PG_MAJORVERSION: &str = "15";
/// `PG_CONTROL_FILE_SIZE`: physical size of `global/pg_control`.
pub const PG_CONTROL_FILE_SIZE: usize = 8192;
/// `PG_CONTROL_MAX_SAFE_SIZE`: the used part of `pg_control` must fit this.
pub const PG_CONTROL_MAX_SAFE_SIZE: usize = 512;
/// `FLOATFORMAT_VALUE` stored in `pg_control` to check float compatibility.
pub const FLOATFORMAT_VALUE: f64 = 1_234_567.0;
/// `MOCK_AUTH_NONCE_LEN`.
pub const MOCK_AUTH_NONCE_LEN: usize = 32;
/// `PG_PAGE_LAYOUT_VERSION`.
pub const PG_PAGE_LAYOUT_VERSION: u8 = 4;
/// `PG_DATA_CHECKSUM_VERSION`: value of `data_checksum_version` when on.
pub const PG_DATA_CHECKSUM_VERSION: u32 = 1;
/// `XLOG_PAGE_MAGIC` of PostgreSQL 15 WAL pages.
pub const XLOG_PAGE_MAGIC: u16 = 0xD110;

// ---------------------------------------------------------------------------
// Fork numbers (common/relpath.h)
// ---------------------------------------------------------------------------

/// Main data fork.
pub const MAIN_FORKNUM: u8 = 0;
/// Free space map fork (`_fsm`).
pub const FSM_FORKNUM: u8 = 1;
/// Visibility map fork (`_vm`).
pub const VISIBILITYMAP_FORKNUM: u8 = 2;
/// Init fork of unlogged relations (`_init`).
pub const INIT_FORKNUM: u8 = 3;
/// Highest valid fork number (`MAX_FORKNUM`).
pub const MAX_FORKNUM: u8 = INIT_FORKNUM;

// ---------------------------------------------------------------------------
// Resource manager ids (access/rmgrlist.h)
// ---------------------------------------------------------------------------

/// XLOG (checkpoints, FPIs, switch, parameter changes).
pub const RM_XLOG_ID: u8 = 0;
/// Transaction (commit, abort, prepare, assignment).
pub const RM_XACT_ID: u8 = 1;
/// Storage (relation create/truncate).
pub const RM_SMGR_ID: u8 = 2;
/// CLOG (commit log page zeroing and truncation).
pub const RM_CLOG_ID: u8 = 3;
/// Database (create/drop database).
pub const RM_DBASE_ID: u8 = 4;
/// Tablespace (create/drop tablespace).
pub const RM_TBLSPC_ID: u8 = 5;
/// MultiXact.
pub const RM_MULTIXACT_ID: u8 = 6;
/// Relation mapper (`pg_filenode.map` updates).
pub const RM_RELMAP_ID: u8 = 7;
/// Standby (running xacts, locks, invalidations).
pub const RM_STANDBY_ID: u8 = 8;
/// Heap2.
pub const RM_HEAP2_ID: u8 = 9;
/// Heap.
pub const RM_HEAP_ID: u8 = 10;
/// B-tree.
pub const RM_BTREE_ID: u8 = 11;
/// Hash index.
pub const RM_HASH_ID: u8 = 12;
/// GIN index.
pub const RM_GIN_ID: u8 = 13;
/// GiST index.
pub const RM_GIST_ID: u8 = 14;
/// Sequence.
pub const RM_SEQ_ID: u8 = 15;
/// SP-GiST index.
pub const RM_SPGIST_ID: u8 = 16;
/// BRIN index.
pub const RM_BRIN_ID: u8 = 17;
/// Commit timestamps.
pub const RM_COMMIT_TS_ID: u8 = 18;
/// Replication origins.
pub const RM_REPLORIGIN_ID: u8 = 19;
/// Generic WAL.
pub const RM_GENERIC_ID: u8 = 20;
/// Logical decoding messages.
pub const RM_LOGICALMSG_ID: u8 = 21;
/// Highest built-in resource manager id (`RM_MAX_BUILTIN_ID`).
pub const RM_MAX_BUILTIN_ID: u8 = RM_LOGICALMSG_ID;
/// Lowest id of custom resource managers (`RM_MIN_CUSTOM_ID`).
pub const RM_MIN_CUSTOM_ID: u8 = 128;

/// Name of a built-in resource manager as `pg_waldump` prints it, or `None`.
pub fn rmgr_name(rmid: u8) -> Option<&'static str> {
    const NAMES: [&str; 22] = [
        "XLOG",
        "Transaction",
        "Storage",
        "CLOG",
        "Database",
        "Tablespace",
        "MultiXact",
        "RelMap",
        "Standby",
        "Heap2",
        "Heap",
        "Btree",
        "Hash",
        "Gin",
        "Gist",
        "Sequence",
        "SPGist",
        "BRIN",
        "CommitTs",
        "ReplicationOrigin",
        "Generic",
        "LogicalMessage",
    ];
    NAMES.get(usize::from(rmid)).copied()
}

// ---------------------------------------------------------------------------
// WAL record header bits (access/xlogrecord.h)
// ---------------------------------------------------------------------------

/// Low bits of `xl_info` reserved for the WAL machinery.
pub const XLR_INFO_MASK: u8 = 0x0F;
/// High bits of `xl_info` that the resource manager uses for its opcode.
pub const XLR_RMGR_INFO_MASK: u8 = 0xF0;
/// `xl_info` bit: record touches relation files outside the block refs.
pub const XLR_SPECIAL_REL_UPDATE: u8 = 0x01;
/// `xl_info` bit: every block of the record carries an image for checking.
pub const XLR_CHECK_CONSISTENCY: u8 = 0x02;
/// Highest block reference id plus one (`XLR_MAX_BLOCK_ID`).
pub const XLR_MAX_BLOCK_ID: u8 = 32;
/// Block id marking a main-data header with a 1-byte length.
pub const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
/// Block id marking a main-data header with a 4-byte length.
pub const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
/// Block id marking a replication origin id.
pub const XLR_BLOCK_ID_ORIGIN: u8 = 253;
/// Block id marking the top-level xid of a subtransaction record.
pub const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
/// `fork_flags` mask for the fork number.
pub const BKPBLOCK_FORK_MASK: u8 = 0x0F;
/// `fork_flags` bit: block carries an image.
pub const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
/// `fork_flags` bit: block carries rmgr data.
pub const BKPBLOCK_HAS_DATA: u8 = 0x20;
/// `fork_flags` bit: redo re-initialises the page.
pub const BKPBLOCK_WILL_INIT: u8 = 0x40;
/// `fork_flags` bit: relation is the same as the previous block's.
pub const BKPBLOCK_SAME_REL: u8 = 0x80;
/// `bimg_info` bit: image has a hole.
pub const BKPIMAGE_HAS_HOLE: u8 = 0x01;
/// `bimg_info` bit: image must be restored during redo.
pub const BKPIMAGE_APPLY: u8 = 0x02;
/// `bimg_info` bit: image compressed with pglz.
pub const BKPIMAGE_COMPRESS_PGLZ: u8 = 0x04;
/// `bimg_info` bit: image compressed with LZ4.
pub const BKPIMAGE_COMPRESS_LZ4: u8 = 0x08;
/// `bimg_info` bit: image compressed with zstd.
pub const BKPIMAGE_COMPRESS_ZSTD: u8 = 0x10;

// ---------------------------------------------------------------------------
// XLOG rmgr info codes (catalog/pg_control.h)
// ---------------------------------------------------------------------------

/// Shutdown checkpoint; body is a `CheckPoint`.
pub const XLOG_CHECKPOINT_SHUTDOWN: u8 = 0x00;
/// Online checkpoint; body is a `CheckPoint`.
pub const XLOG_CHECKPOINT_ONLINE: u8 = 0x10;
/// No-op record.
pub const XLOG_NOOP: u8 = 0x20;
/// Next OID allocation; body is an `Oid`.
pub const XLOG_NEXTOID: u8 = 0x30;
/// WAL segment switch; no body.
pub const XLOG_SWITCH: u8 = 0x40;
/// End of an online backup.
pub const XLOG_BACKUP_END: u8 = 0x50;
/// Parameter change; body is `xl_parameter_change`.
pub const XLOG_PARAMETER_CHANGE: u8 = 0x60;
/// Named restore point.
pub const XLOG_RESTORE_POINT: u8 = 0x70;
/// `full_page_writes` change.
pub const XLOG_FPW_CHANGE: u8 = 0x80;
/// End of recovery; body is `xl_end_of_recovery`.
pub const XLOG_END_OF_RECOVERY: u8 = 0x90;
/// Full-page image written because of a hint-bit change.
pub const XLOG_FPI_FOR_HINT: u8 = 0xA0;
/// Full-page image(s).
pub const XLOG_FPI: u8 = 0xB0;
/// Overwrite of an unfinished continuation record.
pub const XLOG_OVERWRITE_CONTRECORD: u8 = 0xD0;

// ---------------------------------------------------------------------------
// Transaction rmgr (access/xact.h)
// ---------------------------------------------------------------------------

/// Commit.
pub const XLOG_XACT_COMMIT: u8 = 0x00;
/// Prepare of a two-phase transaction.
pub const XLOG_XACT_PREPARE: u8 = 0x10;
/// Abort.
pub const XLOG_XACT_ABORT: u8 = 0x20;
/// Commit of a prepared transaction.
pub const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
/// Abort of a prepared transaction.
pub const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
/// Assignment of subtransaction ids to a top-level transaction.
pub const XLOG_XACT_ASSIGNMENT: u8 = 0x50;
/// Cache invalidations (logical decoding only).
pub const XLOG_XACT_INVALIDATIONS: u8 = 0x60;
/// Mask of the opcode within `xl_info`.
pub const XLOG_XACT_OPMASK: u8 = 0x70;
/// `xl_info` bit: the body has an `xl_xact_xinfo` field.
pub const XLOG_XACT_HAS_INFO: u8 = 0x80;

/// xinfo bit: `xl_xact_dbinfo` follows.
pub const XACT_XINFO_HAS_DBINFO: u32 = 1 << 0;
/// xinfo bit: `xl_xact_subxacts` follows.
pub const XACT_XINFO_HAS_SUBXACTS: u32 = 1 << 1;
/// xinfo bit: `xl_xact_relfilenodes` (relations to drop) follows.
pub const XACT_XINFO_HAS_RELFILENODES: u32 = 1 << 2;
/// xinfo bit: `xl_xact_invals` follows (commit only).
pub const XACT_XINFO_HAS_INVALS: u32 = 1 << 3;
/// xinfo bit: `xl_xact_twophase` follows.
pub const XACT_XINFO_HAS_TWOPHASE: u32 = 1 << 4;
/// xinfo bit: `xl_xact_origin` follows.
pub const XACT_XINFO_HAS_ORIGIN: u32 = 1 << 5;
/// xinfo bit: access-exclusive locks were held.
pub const XACT_XINFO_HAS_AE_LOCKS: u32 = 1 << 6;
/// xinfo bit: the two-phase GID follows the twophase xid.
pub const XACT_XINFO_HAS_GID: u32 = 1 << 7;
/// xinfo bit: `xl_xact_stats_items` (dropped statistics) follows.
pub const XACT_XINFO_HAS_DROPPED_STATS: u32 = 1 << 8;
/// xinfo bit: standby should send feedback on apply.
pub const XACT_COMPLETION_APPLY_FEEDBACK: u32 = 1 << 29;
/// xinfo bit: relcache init file must be invalidated.
pub const XACT_COMPLETION_UPDATE_RELCACHE_FILE: u32 = 1 << 30;
/// xinfo bit: commit was synchronous.
pub const XACT_COMPLETION_FORCE_SYNC_COMMIT: u32 = 1 << 31;

/// `TWOPHASE_MAGIC`: first word of a two-phase state file / PREPARE body.
pub const TWOPHASE_MAGIC: u32 = 0x57F9_4534;
/// Size of `SharedInvalidationMessage`.
pub const SIZEOF_SHARED_INVAL_MESSAGE: usize = 16;

// ---------------------------------------------------------------------------
// CLOG (access/clog.h, access/transam/clog.c)
// ---------------------------------------------------------------------------

/// Zero a CLOG page; body is the `int` page number.
pub const CLOG_ZEROPAGE: u8 = 0x00;
/// Truncate CLOG; body is `xl_clog_truncate`.
pub const CLOG_TRUNCATE: u8 = 0x10;
/// CLOG status: in progress.
pub const TRANSACTION_STATUS_IN_PROGRESS: u8 = 0x00;
/// CLOG status: committed.
pub const TRANSACTION_STATUS_COMMITTED: u8 = 0x01;
/// CLOG status: aborted.
pub const TRANSACTION_STATUS_ABORTED: u8 = 0x02;
/// CLOG status: sub-committed.
pub const TRANSACTION_STATUS_SUB_COMMITTED: u8 = 0x03;
/// Bits of status per transaction.
pub const CLOG_BITS_PER_XACT: u32 = 2;
/// Transactions per CLOG byte.
pub const CLOG_XACTS_PER_BYTE: u32 = 4;
/// Transactions per CLOG page.
pub const CLOG_XACTS_PER_PAGE: u32 = BLCKSZ as u32 * CLOG_XACTS_PER_BYTE;
/// Mask of one transaction's status bits.
pub const CLOG_XACT_BITMASK: u8 = (1 << CLOG_BITS_PER_XACT) - 1;
/// Pages per SLRU segment file (`SLRU_PAGES_PER_SEGMENT`).
pub const SLRU_PAGES_PER_SEGMENT: u32 = 32;

/// CLOG page holding `xid`'s status (`TransactionIdToPage`).
pub const fn clog_xid_to_page(xid: u32) -> u32 {
    xid / CLOG_XACTS_PER_PAGE
}

/// Byte within its CLOG page holding `xid`'s status (`TransactionIdToByte`).
pub const fn clog_xid_to_byte(xid: u32) -> usize {
    ((xid % CLOG_XACTS_PER_PAGE) / CLOG_XACTS_PER_BYTE) as usize
}

/// Bit shift of `xid`'s status within its CLOG byte.
pub const fn clog_xid_to_bshift(xid: u32) -> u32 {
    (xid % CLOG_XACTS_PER_BYTE) * CLOG_BITS_PER_XACT
}

// ---------------------------------------------------------------------------
// MultiXact (access/multixact.h, access/transam/multixact.c)
// ---------------------------------------------------------------------------

/// Zero a page of `pg_multixact/offsets`; body is the `int` page number.
pub const XLOG_MULTIXACT_ZERO_OFF_PAGE: u8 = 0x00;
/// Zero a page of `pg_multixact/members`; body is the `int` page number.
pub const XLOG_MULTIXACT_ZERO_MEM_PAGE: u8 = 0x10;
/// Create a multixact; body is `xl_multixact_create` plus members.
pub const XLOG_MULTIXACT_CREATE_ID: u8 = 0x20;
/// Truncate the multixact SLRUs; body is `xl_multixact_truncate`.
pub const XLOG_MULTIXACT_TRUNCATE_ID: u8 = 0x30;
/// `FirstMultiXactId`.
pub const FIRST_MULTIXACT_ID: u32 = 1;
/// `MaxMultiXactStatus`: highest valid member status.
pub const MAX_MULTIXACT_STATUS: u32 = 5;
/// `MULTIXACT_OFFSETS_PER_PAGE`: 4-byte offsets per page.
pub const MULTIXACT_OFFSETS_PER_PAGE: u32 = BLCKSZ as u32 / 4;
/// `MXACT_MEMBER_BITS_PER_XACT`: status bits per member.
pub const MXACT_MEMBER_BITS_PER_XACT: u32 = 8;
/// `MXACT_MEMBER_FLAGS_PER_BYTE`.
pub const MXACT_MEMBER_FLAGS_PER_BYTE: u32 = 1;
/// `MXACT_MEMBER_XACT_BITMASK`.
pub const MXACT_MEMBER_XACT_BITMASK: u32 = (1 << MXACT_MEMBER_BITS_PER_XACT) - 1;
/// `MULTIXACT_FLAGBYTES_PER_GROUP`: flag bytes at the start of a group.
pub const MULTIXACT_FLAGBYTES_PER_GROUP: u32 = 4;
/// `MULTIXACT_MEMBERS_PER_MEMBERGROUP`.
pub const MULTIXACT_MEMBERS_PER_MEMBERGROUP: u32 =
    MULTIXACT_FLAGBYTES_PER_GROUP * MXACT_MEMBER_FLAGS_PER_BYTE;
/// `MULTIXACT_MEMBERGROUP_SIZE`: 4 flag bytes then 4 xids, 20 bytes.
pub const MULTIXACT_MEMBERGROUP_SIZE: u32 =
    4 * MULTIXACT_MEMBERS_PER_MEMBERGROUP + MULTIXACT_FLAGBYTES_PER_GROUP;
/// `MULTIXACT_MEMBERGROUPS_PER_PAGE` (409; the last 12 bytes are unused).
pub const MULTIXACT_MEMBERGROUPS_PER_PAGE: u32 = BLCKSZ as u32 / MULTIXACT_MEMBERGROUP_SIZE;
/// `MULTIXACT_MEMBERS_PER_PAGE` (1636).
pub const MULTIXACT_MEMBERS_PER_PAGE: u32 =
    MULTIXACT_MEMBERGROUPS_PER_PAGE * MULTIXACT_MEMBERS_PER_MEMBERGROUP;

/// Offsets page holding `multi`'s starting offset (`MultiXactIdToOffsetPage`).
pub const fn mx_offset_page(multi: u32) -> u32 {
    multi / MULTIXACT_OFFSETS_PER_PAGE
}

/// Index of `multi` within its offsets page (`MultiXactIdToOffsetEntry`).
pub const fn mx_offset_entry(multi: u32) -> usize {
    (multi % MULTIXACT_OFFSETS_PER_PAGE) as usize
}

/// Members page holding member `offset` (`MXOffsetToMemberPage`).
pub const fn mx_member_page(offset: u32) -> u32 {
    offset / MULTIXACT_MEMBERS_PER_PAGE
}

/// Byte offset of the flag byte of member `offset` within its page
/// (`MXOffsetToFlagsOffset`).
pub const fn mx_member_flags_offset(offset: u32) -> usize {
    let group = (offset / MULTIXACT_MEMBERS_PER_MEMBERGROUP) % MULTIXACT_MEMBERGROUPS_PER_PAGE;
    (group * MULTIXACT_MEMBERGROUP_SIZE) as usize
}

/// Bit shift of member `offset`'s status within its flag word
/// (`MXOffsetToFlagsBitShift`).
pub const fn mx_member_flags_bitshift(offset: u32) -> u32 {
    (offset % MULTIXACT_MEMBERS_PER_MEMBERGROUP) * MXACT_MEMBER_BITS_PER_XACT
}

/// Byte offset of member `offset`'s xid within its page
/// (`MXOffsetToMemberOffset`).
pub const fn mx_member_xid_offset(offset: u32) -> usize {
    mx_member_flags_offset(offset)
        + MULTIXACT_FLAGBYTES_PER_GROUP as usize
        + (offset % MULTIXACT_MEMBERS_PER_MEMBERGROUP) as usize * 4
}

// ---------------------------------------------------------------------------
// Storage, database, tablespace, relmap rmgrs
// (catalog/storage_xlog.h, commands/dbcommands_xlog.h, commands/tablespace.h,
// utils/relmapper.h, utils/cache/relmapper.c)
// ---------------------------------------------------------------------------

/// Create a relation fork; body is `xl_smgr_create`.
pub const XLOG_SMGR_CREATE: u8 = 0x10;
/// Truncate a relation; body is `xl_smgr_truncate`.
pub const XLOG_SMGR_TRUNCATE: u8 = 0x20;
/// `xl_smgr_truncate.flags`: truncate the main fork.
pub const SMGR_TRUNCATE_HEAP: u32 = 0x0001;
/// `xl_smgr_truncate.flags`: truncate the visibility map.
pub const SMGR_TRUNCATE_VM: u32 = 0x0002;
/// `xl_smgr_truncate.flags`: truncate the free space map.
pub const SMGR_TRUNCATE_FSM: u32 = 0x0004;
/// `xl_smgr_truncate.flags`: all of the above.
pub const SMGR_TRUNCATE_ALL: u32 = SMGR_TRUNCATE_HEAP | SMGR_TRUNCATE_VM | SMGR_TRUNCATE_FSM;

/// Create a database by copying the template's directory.
pub const XLOG_DBASE_CREATE_FILE_COPY: u8 = 0x00;
/// Create a database whose contents are WAL-logged block by block.
pub const XLOG_DBASE_CREATE_WAL_LOG: u8 = 0x10;
/// Drop a database.
pub const XLOG_DBASE_DROP: u8 = 0x20;

/// Create a tablespace.
pub const XLOG_TBLSPC_CREATE: u8 = 0x00;
/// Drop a tablespace.
pub const XLOG_TBLSPC_DROP: u8 = 0x10;

/// Rewrite of a `pg_filenode.map` file.
pub const XLOG_RELMAP_UPDATE: u8 = 0x00;
/// Size of a `pg_filenode.map` file in PostgreSQL 15.
pub const RELMAPPER_FILESIZE: usize = 512;
/// `RELMAPPER_FILEMAGIC`: first word of a `pg_filenode.map` file.
pub const RELMAPPER_FILEMAGIC: u32 = 0x0059_2717;
/// `MAX_MAPPINGS` of a PostgreSQL 15 relmap file (62 * 8 + 16 = 512).
pub const RELMAPPER_MAX_MAPPINGS: usize = 62;
/// File name of relation maps.
pub const RELMAPPER_FILENAME: &str = "pg_filenode.map";

// ---------------------------------------------------------------------------
// Standby rmgr (storage/standbydefs.h)
// ---------------------------------------------------------------------------

/// Access-exclusive locks held.
pub const XLOG_STANDBY_LOCK: u8 = 0x00;
/// Snapshot of running transactions.
pub const XLOG_RUNNING_XACTS: u8 = 0x10;
/// Cache invalidations.
pub const XLOG_INVALIDATIONS: u8 = 0x20;

// ---------------------------------------------------------------------------
// Heap and Heap2 rmgrs (access/heapam_xlog.h)
// ---------------------------------------------------------------------------

/// Heap insert.
pub const XLOG_HEAP_INSERT: u8 = 0x00;
/// Heap delete.
pub const XLOG_HEAP_DELETE: u8 = 0x10;
/// Heap (non-HOT) update.
pub const XLOG_HEAP_UPDATE: u8 = 0x20;
/// `TRUNCATE` of heap relations (logical decoding only).
pub const XLOG_HEAP_TRUNCATE: u8 = 0x30;
/// HOT update.
pub const XLOG_HEAP_HOT_UPDATE: u8 = 0x40;
/// Speculative insert confirmation.
pub const XLOG_HEAP_CONFIRM: u8 = 0x50;
/// Row lock.
pub const XLOG_HEAP_LOCK: u8 = 0x60;
/// In-place update.
pub const XLOG_HEAP_INPLACE: u8 = 0x70;
/// Mask of the heap opcode within `xl_info`.
pub const XLOG_HEAP_OPMASK: u8 = 0x70;
/// `xl_info` bit: the page is (re)initialised.
pub const XLOG_HEAP_INIT_PAGE: u8 = 0x80;

/// Heap2 logical rewrite mapping.
pub const XLOG_HEAP2_REWRITE: u8 = 0x00;
/// Heap2 prune.
pub const XLOG_HEAP2_PRUNE: u8 = 0x10;
/// Heap2 vacuum.
pub const XLOG_HEAP2_VACUUM: u8 = 0x20;
/// Heap2 freeze page.
pub const XLOG_HEAP2_FREEZE_PAGE: u8 = 0x30;
/// Heap2 set visibility-map bits.
pub const XLOG_HEAP2_VISIBLE: u8 = 0x40;
/// Heap2 multi-insert.
pub const XLOG_HEAP2_MULTI_INSERT: u8 = 0x50;
/// Heap2 lock of an updated tuple version.
pub const XLOG_HEAP2_LOCK_UPDATED: u8 = 0x60;
/// Heap2 new combo CID (logical decoding only).
pub const XLOG_HEAP2_NEW_CID: u8 = 0x70;

/// Insert/multi-insert flag: the all-visible VM bit of the page was cleared.
pub const XLH_INSERT_ALL_VISIBLE_CLEARED: u8 = 1 << 0;
/// Insert flag: last insert of a multi-insert.
pub const XLH_INSERT_LAST_IN_MULTI: u8 = 1 << 1;
/// Insert flag: speculative insert.
pub const XLH_INSERT_IS_SPECULATIVE: u8 = 1 << 2;
/// Insert flag: the record contains the new tuple.
pub const XLH_INSERT_CONTAINS_NEW_TUPLE: u8 = 1 << 3;
/// Insert flag: insert into a TOAST relation.
pub const XLH_INSERT_ON_TOAST_RELATION: u8 = 1 << 4;
/// Multi-insert flag: the page was marked all-frozen.
pub const XLH_INSERT_ALL_FROZEN_SET: u8 = 1 << 5;
/// Update flag: VM bits of the old tuple's page were cleared.
pub const XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED: u8 = 1 << 0;
/// Update flag: VM bits of the new tuple's page were cleared.
pub const XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED: u8 = 1 << 1;
/// Delete flag: VM bits of the page were cleared.
pub const XLH_DELETE_ALL_VISIBLE_CLEARED: u8 = 1 << 0;
/// Lock flag: the all-frozen VM bit of the page was cleared.
pub const XLH_LOCK_ALL_FROZEN_CLEARED: u8 = 0x01;

/// VM bit: all tuples on the heap page are visible to all.
pub const VISIBILITYMAP_ALL_VISIBLE: u8 = 0x01;
/// VM bit: all tuples on the heap page are frozen.
pub const VISIBILITYMAP_ALL_FROZEN: u8 = 0x02;
/// Both VM bits.
pub const VISIBILITYMAP_VALID_BITS: u8 = 0x03;
/// Bytes of VM bitmap per VM page (`MAPSIZE`).
pub const VM_MAPSIZE: usize = BLCKSZ - maxalign(SIZE_OF_PAGE_HEADER_DATA);
/// VM bits per heap block.
pub const VM_BITS_PER_HEAPBLOCK: u32 = 2;
/// Heap blocks covered by one VM byte.
pub const VM_HEAPBLOCKS_PER_BYTE: u32 = 4;
/// Heap blocks covered by one VM page (`HEAPBLOCKS_PER_PAGE`).
pub const VM_HEAPBLOCKS_PER_PAGE: u32 = VM_MAPSIZE as u32 * VM_HEAPBLOCKS_PER_BYTE;

// ---------------------------------------------------------------------------
// Pages (storage/bufpage.h)
// ---------------------------------------------------------------------------

/// `SizeOfPageHeaderData`.
pub const SIZE_OF_PAGE_HEADER_DATA: usize = 24;
/// `pd_flags`: there are unused line pointers.
pub const PD_HAS_FREE_LINES: u16 = 0x0001;
/// `pd_flags`: not enough free space for a new tuple.
pub const PD_PAGE_FULL: u16 = 0x0002;
/// `pd_flags`: all tuples on the page are visible to everyone.
pub const PD_ALL_VISIBLE: u16 = 0x0004;
/// `pd_flags`: all valid bits.
pub const PD_VALID_FLAG_BITS: u16 = 0x0007;

// ---------------------------------------------------------------------------
// Transaction ids and OIDs (access/transam.h, catalog/*.h)
// ---------------------------------------------------------------------------

/// `InvalidTransactionId`.
pub const INVALID_TRANSACTION_ID: u32 = 0;
/// `BootstrapTransactionId`.
pub const BOOTSTRAP_TRANSACTION_ID: u32 = 1;
/// `FrozenTransactionId`.
pub const FROZEN_TRANSACTION_ID: u32 = 2;
/// `FirstNormalTransactionId`.
pub const FIRST_NORMAL_TRANSACTION_ID: u32 = 3;
/// `MaxTransactionId`.
pub const MAX_TRANSACTION_ID: u32 = 0xFFFF_FFFF;
/// `InvalidOid`.
pub const INVALID_OID: u32 = 0;
/// `FirstGenbkiObjectId`.
pub const FIRST_GENBKI_OBJECT_ID: u32 = 10_000;
/// `FirstUnpinnedObjectId`.
pub const FIRST_UNPINNED_OBJECT_ID: u32 = 12_000;
/// `FirstNormalObjectId`: first OID handed out after initdb.
pub const FIRST_NORMAL_OBJECT_ID: u32 = 16_384;
/// OID of tablespace `pg_default` (`DEFAULTTABLESPACE_OID`).
pub const DEFAULTTABLESPACE_OID: u32 = 1663;
/// OID of tablespace `pg_global` (`GLOBALTABLESPACE_OID`).
pub const GLOBALTABLESPACE_OID: u32 = 1664;
/// OID of database `template1`.
pub const TEMPLATE1_DB_OID: u32 = 1;
/// OID of database `template0`.
pub const TEMPLATE0_DB_OID: u32 = 4;
/// OID of database `postgres`.
pub const POSTGRES_DB_OID: u32 = 5;

// ---------------------------------------------------------------------------
// wal_level values (access/xlog.h)
// ---------------------------------------------------------------------------

/// `WAL_LEVEL_MINIMAL`.
pub const WAL_LEVEL_MINIMAL: i32 = 0;
/// `WAL_LEVEL_REPLICA`.
pub const WAL_LEVEL_REPLICA: i32 = 1;
/// `WAL_LEVEL_LOGICAL`.
pub const WAL_LEVEL_LOGICAL: i32 = 2;

// ---------------------------------------------------------------------------
// Data directory layout
// ---------------------------------------------------------------------------

/// Directory of CLOG segments.
pub const PG_XACT_DIR: &str = "pg_xact";
/// Directory of multixact SLRUs.
pub const PG_MULTIXACT_DIR: &str = "pg_multixact";
/// Directory of multixact offsets segments.
pub const PG_MULTIXACT_OFFSETS_DIR: &str = "pg_multixact/offsets";
/// Directory of multixact members segments.
pub const PG_MULTIXACT_MEMBERS_DIR: &str = "pg_multixact/members";
/// Directory of two-phase state files.
pub const PG_TWOPHASE_DIR: &str = "pg_twophase";
/// Directory of WAL segments.
pub const PG_WAL_DIR: &str = "pg_wal";
/// Path of the control file within a data directory.
pub const PG_CONTROL_FILE_PATH: &str = "global/pg_control";
/// Directory of tablespace symlinks.
pub const PG_TBLSPC_DIR: &str = "pg_tblspc";
/// Per-version subdirectory inside a tablespace (`TABLESPACE_VERSION_DIRECTORY`).
pub const TABLESPACE_VERSION_DIRECTORY: &str = "PG_15_202209061";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_sizes_match_postgres() {
        assert_eq!(CLOG_XACTS_PER_PAGE, 32768);
        assert_eq!(CLOG_XACT_BITMASK, 3);
        assert_eq!(MULTIXACT_OFFSETS_PER_PAGE, 2048);
        assert_eq!(MULTIXACT_MEMBERGROUP_SIZE, 20);
        assert_eq!(MULTIXACT_MEMBERGROUPS_PER_PAGE, 409);
        assert_eq!(MULTIXACT_MEMBERS_PER_PAGE, 1636);
        assert_eq!(VM_MAPSIZE, 8168);
        assert_eq!(VM_HEAPBLOCKS_PER_PAGE, 32672);
        assert_eq!(RELMAPPER_FILESIZE, 16 + RELMAPPER_MAX_MAPPINGS * 8);
        assert_eq!(
            TABLESPACE_VERSION_DIRECTORY,
            format!("PG_{PG_MAJORVERSION}_{CATALOG_VERSION_NO}")
        );
        assert_eq!(maxalign(0), 0);
        assert_eq!(maxalign(1), 8);
        assert_eq!(maxalign(72), 72);
        assert_eq!(maxalign(73), 80);
    }

    #[test]
    fn slru_addressing() {
        assert_eq!(clog_xid_to_page(32767), 0);
        assert_eq!(clog_xid_to_page(32768), 1);
        assert_eq!(clog_xid_to_byte(32768 + 7), 1);
        assert_eq!(clog_xid_to_bshift(7), 6);
        // Member 1636 is the first one of page 1; member 5 is in group 1,
        // slot 1: flags at 20, xid at 20 + 4 + 4.
        assert_eq!(mx_member_page(1635), 0);
        assert_eq!(mx_member_page(1636), 1);
        assert_eq!(mx_member_flags_offset(1636), 0);
        assert_eq!(mx_member_flags_offset(5), 20);
        assert_eq!(mx_member_flags_bitshift(5), 8);
        assert_eq!(mx_member_xid_offset(5), 28);
        assert_eq!(mx_offset_page(2048), 1);
        assert_eq!(mx_offset_entry(2049), 1);
    }

    #[test]
    fn rmgr_names_follow_rmgrlist() {
        assert_eq!(rmgr_name(RM_XLOG_ID), Some("XLOG"));
        assert_eq!(rmgr_name(RM_HEAP_ID), Some("Heap"));
        assert_eq!(rmgr_name(RM_LOGICALMSG_ID), Some("LogicalMessage"));
        assert_eq!(rmgr_name(RM_LOGICALMSG_ID + 1), None);
    }
}
