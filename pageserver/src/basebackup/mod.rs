//! Base backups: a tar of a complete PostgreSQL 15 data directory as of an
//! LSN, which an unmodified `postgres` starts on at once (DESIGN.md
//! sections 1 and 5).
//!
//! The tar holds every stored relation fork (FSM and visibility map forks
//! are never stored; PostgreSQL recreates the first and treats a missing
//! second as "nothing all-visible"), the SLRUs (`pg_xact`, multixacts),
//! relmaps, prepared transactions, `PG_VERSION` files, the empty
//! directories a data directory needs, default configuration files, and a
//! generated `pg_control` plus WAL segment holding a shutdown checkpoint at
//! the LSN (see [`control`]).
//!
//! The archive is produced by a blocking task and streamed through a
//! bounded channel, so memory stays small whatever the database size, and
//! a consumer that goes away stops the producer.

pub mod control;
mod tar;

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pageserver_api::key::{RelTag, SlruKind, CHECKPOINT_KEY, CONTROLFILE_KEY, FSM_FORKNUM};
use pageserver_api::value::BLCKSZ;
use postgres_ffi::controlfile::{CheckPoint, ControlFileData};
use postgres_ffi::pg_constants::{GLOBALTABLESPACE_OID, RELSEG_SIZE};
use tokio::sync::mpsc;
use utils::lsn::Lsn;

use self::control::ControlError;
use self::tar::TarWriter;
use crate::tenant::timeline::pg_read::PgReadError;
use crate::tenant::timeline::read::PageReconstructError;
use crate::tenant::timeline::Timeline;

/// Why a base backup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BasebackupError {
    /// Stored data could not be read (names the key, layer or LSN).
    #[error(transparent)]
    Read(#[from] PgReadError),
    /// The timeline has no `pg_control`, so it holds no PostgreSQL cluster.
    #[error("timeline {timeline} has no pg_control at LSN {lsn}: it was not created by initdb or an import, so it holds no PostgreSQL data directory")]
    NoControlFile {
        /// The timeline.
        timeline: String,
        /// The LSN asked for.
        lsn: Lsn,
    },
    /// A stored control file or checkpoint does not decode.
    #[error("stored {what} of timeline {timeline} is invalid: {detail}")]
    BadControl {
        /// `pg_control` or the checkpoint.
        what: &'static str,
        /// The timeline.
        timeline: String,
        /// The decoder's message.
        detail: String,
    },
    /// `pg_control` could not be generated for the LSN.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Writing the archive failed, or its reader went away.
    #[error("writing the base backup failed: {0}")]
    Io(#[from] io::Error),
    /// The timeline is shutting down.
    #[error("timeline is shutting down")]
    Cancelled,
}

impl From<PageReconstructError> for BasebackupError {
    fn from(e: PageReconstructError) -> Self {
        BasebackupError::Read(PgReadError::Reconstruct(e))
    }
}

/// What a base backup holds, for logs and responses.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct BasebackupStats {
    /// The LSN the data directory is as of.
    pub lsn: Lsn,
    /// Where the compute's WAL will continue (end of the checkpoint record).
    pub wal_start_lsn: Lsn,
    /// Relation forks written.
    pub relations: u64,
    /// Relation pages written.
    pub pages: u64,
    /// SLRU segments written.
    pub slru_segments: u64,
}

/// Picks the LSN of a base backup: `requested`, waited for (at most
/// `timeout`), or the last record LSN. Returns it with the start of the
/// record ending there when known. Refuses LSNs below the GC cutoff.
pub async fn resolve_lsn(
    tl: &Timeline,
    requested: Option<Lsn>,
    timeout: Duration,
) -> Result<(Lsn, Option<Lsn>), BasebackupError> {
    let lsn = match requested {
        Some(lsn) => {
            if !lsn.is_aligned(8) {
                return Err(ControlError::Unaligned(lsn).into());
            }
            tl.wait_lsn(lsn, timeout).await?;
            lsn
        }
        None => tl.last_record_lsn(),
    };
    let cutoff = tl.gc_cutoff_lsn();
    if lsn < cutoff {
        return Err(PageReconstructError::BelowGcCutoff {
            lsn,
            cutoff,
            timeline: format!("{}/{}", tl.tenant_id, tl.timeline_id),
        }
        .into());
    }
    let rec = tl.record_lsn();
    Ok((lsn, if rec.last == lsn { rec.prev } else { None }))
}

/// Streams a base backup of `tl` at `lsn` (from [`resolve_lsn`]): returns
/// a receiver of archive chunks, gzip-compressed when `gzip`. A failure
/// part-way arrives as an `Err` item, after which nothing more comes; the
/// archive must then be discarded. Dropping the receiver stops the work.
pub fn stream(
    tl: Arc<Timeline>,
    lsn: Lsn,
    prev: Option<Lsn>,
    gzip: bool,
) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(4);
    let guard = tl.gate.enter();
    tokio::task::spawn_blocking(move || {
        let Ok(_guard) = guard else {
            let _ = tx.blocking_send(Err(io::Error::other("timeline is shutting down")));
            return;
        };
        let out = ChannelWriter {
            tx: tx.clone(),
            buf: BytesMut::new(),
        };
        let result = if gzip {
            let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            write(&tl, lsn, prev, gz).and_then(|(gz, stats)| Ok((gz.finish()?, stats)))
        } else {
            write(&tl, lsn, prev, out)
        };
        match result.and_then(|(mut out, stats)| {
            out.flush()?;
            Ok(stats)
        }) {
            Ok(stats) => tracing::info!(
                tenant_id = %tl.tenant_id,
                timeline_id = %tl.timeline_id,
                ?stats,
                "base backup sent"
            ),
            Err(e) => {
                tracing::info!(tenant_id = %tl.tenant_id, timeline_id = %tl.timeline_id, "base backup at {lsn} failed: {e}");
                let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
            }
        }
    });
    rx
}

/// Bytes per chunk sent to the consumer.
const CHUNK: usize = 256 * 1024;

/// A `Write` that hands full chunks to an async consumer.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the base backup's reader went away",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Directories every PostgreSQL 15 data directory has, in tar order.
const DIRECTORIES: &[&str] = &[
    "global",
    "base",
    "pg_commit_ts",
    "pg_dynshmem",
    "pg_logical",
    "pg_logical/mappings",
    "pg_logical/snapshots",
    "pg_multixact",
    "pg_multixact/members",
    "pg_multixact/offsets",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat",
    "pg_stat_tmp",
    "pg_subtrans",
    "pg_tblspc",
    "pg_twophase",
    "pg_wal",
    "pg_wal/archive_status",
    "pg_xact",
];

/// `postgresql.conf` of a base backup: what WAL ingest needs of a compute
/// whose WAL streams back into a timeline (DESIGN.md section 1).
const POSTGRESQL_CONF: &str = "\
# Written by the page server's base backup. A compute streaming its WAL back
# into a timeline needs these settings: every record that touches a block
# must carry the block's image.
wal_level = replica
full_page_writes = on
wal_consistency_checking = 'all'
max_wal_senders = 10
max_replication_slots = 10
";

/// `pg_hba.conf`: `initdb`'s default (trust for local and loopback
/// connections, replication included). Replace it for anything exposed.
const PG_HBA_CONF: &str = "\
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
host    replication     all             ::1/128                 trust
";

const PG_IDENT_CONF: &str = "# MAPNAME       SYSTEM-USERNAME         PG-USERNAME\n";

const POSTGRESQL_AUTO_CONF: &str =
    "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n";

/// File name of a relation fork's segment: `RELNODE[_fork][.SEGNO]`.
fn relfile_name(rel: &RelTag, segno: u32) -> String {
    let fork = match rel.forknum {
        0 => "",
        1 => "_fsm",
        2 => "_vm",
        _ => "_init",
    };
    if segno == 0 {
        format!("{}{fork}", rel.relnode)
    } else {
        format!("{}{fork}.{segno}", rel.relnode)
    }
}

fn db_path(spcnode: u32, dbnode: u32) -> String {
    if spcnode == GLOBALTABLESPACE_OID {
        "global".to_string()
    } else {
        format!("base/{dbnode}")
    }
}

fn slru_path(kind: SlruKind) -> &'static str {
    match kind {
        SlruKind::Clog => "pg_xact",
        SlruKind::MultiXactOffsets => "pg_multixact/offsets",
        SlruKind::MultiXactMembers => "pg_multixact/members",
    }
}

/// Writes a base backup of `tl` at `lsn` to `out` (blocking), with GC of
/// the timeline paused so that nothing the backup reads is removed.
pub fn write<W: Write>(
    tl: &Timeline,
    lsn: Lsn,
    prev: Option<Lsn>,
    out: W,
) -> Result<(W, BasebackupStats), BasebackupError> {
    tl.with_gc_paused(|| Builder::new(tl, lsn, out).build(prev))
}

struct Builder<'a, W: Write> {
    tl: &'a Timeline,
    lsn: Lsn,
    tar: TarWriter<W>,
    stats: BasebackupStats,
}

impl<'a, W: Write> Builder<'a, W> {
    fn new(tl: &'a Timeline, lsn: Lsn, out: W) -> Self {
        Self {
            tl,
            lsn,
            tar: TarWriter::new(out),
            stats: BasebackupStats {
                lsn,
                ..Default::default()
            },
        }
    }

    fn timeline_name(&self) -> String {
        format!("{}/{}", self.tl.tenant_id, self.tl.timeline_id)
    }

    fn check_cancelled(&self) -> Result<(), BasebackupError> {
        if self.tl.cancel.is_cancelled() {
            return Err(BasebackupError::Cancelled);
        }
        Ok(())
    }

    /// Reads and checks what `pg_control` is generated from, before any
    /// byte is written.
    fn control_inputs(&self) -> Result<(ControlFileData, CheckPoint), BasebackupError> {
        let cutoff = self.tl.gc_cutoff_lsn();
        if self.lsn < cutoff {
            return Err(PageReconstructError::BelowGcCutoff {
                lsn: self.lsn,
                cutoff,
                timeline: self.timeline_name(),
            }
            .into());
        }
        let bad = |what, detail: String| BasebackupError::BadControl {
            what,
            timeline: self.timeline_name(),
            detail,
        };
        let stored = self
            .tl
            .get_optional(CONTROLFILE_KEY, self.lsn)?
            .ok_or_else(|| BasebackupError::NoControlFile {
                timeline: self.timeline_name(),
                lsn: self.lsn,
            })?;
        let stored =
            ControlFileData::decode(&stored).map_err(|e| bad("pg_control", e.to_string()))?;
        let checkpoint = match self.tl.get_optional(CHECKPOINT_KEY, self.lsn)? {
            Some(b) => CheckPoint::decode(&b).map_err(|e| bad("checkpoint", e.to_string()))?,
            None => stored.checkpoint_copy,
        };
        Ok((stored, checkpoint))
    }

    fn build(mut self, prev: Option<Lsn>) -> Result<(W, BasebackupStats), BasebackupError> {
        let (stored, checkpoint) = self.control_inputs()?;
        let generated = control::generate(&stored, &checkpoint, self.lsn, prev)?;
        self.stats.wal_start_lsn = generated.end_lsn;

        for dir in DIRECTORIES {
            self.tar.dir(dir)?;
        }
        let version = format!("{}\n", self.tl.metadata().pg_version);
        self.tar.file("PG_VERSION", version.as_bytes())?;
        self.tar
            .file("postgresql.conf", POSTGRESQL_CONF.as_bytes())?;
        self.tar
            .file("postgresql.auto.conf", POSTGRESQL_AUTO_CONF.as_bytes())?;
        self.tar.file("pg_hba.conf", PG_HBA_CONF.as_bytes())?;
        self.tar.file("pg_ident.conf", PG_IDENT_CONF.as_bytes())?;

        for (spcnode, dbnode) in self.tl.list_dbs(self.lsn)? {
            self.database(spcnode, dbnode, version.as_bytes())?;
        }
        for kind in [
            SlruKind::Clog,
            SlruKind::MultiXactOffsets,
            SlruKind::MultiXactMembers,
        ] {
            for segno in self.tl.slru_segments(kind, self.lsn)? {
                self.check_cancelled()?;
                let data = self.tl.slru_segment(kind, segno, self.lsn)?;
                self.tar
                    .file(&format!("{}/{segno:04X}", slru_path(kind)), &data)?;
                self.stats.slru_segments += 1;
            }
        }
        for xid in self.tl.twophase_xids(self.lsn)? {
            let data = self.tl.twophase_file(xid, self.lsn)?;
            self.tar.file(&format!("pg_twophase/{xid:08X}"), &data)?;
        }
        self.tar.file("global/pg_control", &generated.pg_control)?;
        for (name, content) in &generated.wal_segments {
            self.tar.file(&format!("pg_wal/{name}"), content)?;
        }
        let out = self.tar.finish()?;
        Ok((out, self.stats))
    }

    fn database(
        &mut self,
        spcnode: u32,
        dbnode: u32,
        version: &[u8],
    ) -> Result<(), BasebackupError> {
        let path = db_path(spcnode, dbnode);
        if spcnode != GLOBALTABLESPACE_OID {
            self.tar.dir(&path)?;
            self.tar.file(&format!("{path}/PG_VERSION"), version)?;
        }
        if let Some(map) = self.tl.relmap_file(spcnode, dbnode, self.lsn)? {
            self.tar.file(&format!("{path}/pg_filenode.map"), &map)?;
        }
        for rel in self.tl.list_rels(spcnode, dbnode, self.lsn)? {
            if rel.forknum == FSM_FORKNUM {
                continue;
            }
            self.check_cancelled()?;
            self.relation(&path, rel)?;
        }
        Ok(())
    }

    fn relation(&mut self, dir: &str, rel: RelTag) -> Result<(), BasebackupError> {
        let nblocks = self.tl.stored_rel_size(rel, self.lsn)?;
        self.stats.relations += 1;
        let segments = nblocks.div_ceil(RELSEG_SIZE).max(1);
        for segno in 0..segments {
            let first = segno * RELSEG_SIZE;
            let last = nblocks.min(first + RELSEG_SIZE);
            let name = format!("{dir}/{}", relfile_name(&rel, segno));
            self.tar
                .begin_file(&name, u64::from(last - first) * BLCKSZ as u64)?;
            for blkno in first..last {
                let page = self.tl.rel_page_within(rel, blkno, self.lsn)?;
                self.tar.body(&page)?;
            }
            self.tar.end_file()?;
            self.stats.pages += u64::from(last - first);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_file_names() {
        let rel = |forknum| RelTag {
            spcnode: 1663,
            dbnode: 5,
            relnode: 16384,
            forknum,
        };
        assert_eq!(relfile_name(&rel(0), 0), "16384");
        assert_eq!(relfile_name(&rel(0), 2), "16384.2");
        assert_eq!(relfile_name(&rel(2), 0), "16384_vm");
        assert_eq!(relfile_name(&rel(3), 1), "16384_init.1");
        assert_eq!(db_path(1664, 0), "global");
        assert_eq!(db_path(1663, 5), "base/5");
    }
}
