//! WAL ingest (DESIGN.md section 1): decoded PostgreSQL 15 WAL records
//! become keys and values, without running any PostgreSQL redo code.
//!
//! * Every block reference carries the page image as it stood after the
//!   change (the WAL source runs with `full_page_writes = on` and
//!   `wal_consistency_checking = 'all'`); the image is stored at the
//!   record's end LSN with `pd_lsn` set and the checksum recomputed when
//!   the cluster has data checksums. A block reference without an image is
//!   an error naming the record and the settings required.
//! * What is not in block images is derived natively: transaction status
//!   (CLOG), multixacts, relation and database create/drop/truncate, relmap
//!   updates, two-phase state files and checkpoint data.
//! * The free space map and visibility map forks are not kept (neither in
//!   ingest nor in imports nor in base backups): PostgreSQL rebuilds the
//!   free space map as it goes and reads a missing visibility map as
//!   "nothing is all-visible", so they can never be stale.
//!
//! `import.rs` loads a data directory (initdb output or a base backup);
//! `state.rs` caches relation sizes and directories between records.

pub mod import;
pub mod import_stream;
pub mod ingest;
pub mod records;
pub mod state;

pub use ingest::WalIngest;

use std::sync::{Arc, Mutex};

use postgres_ffi::waldecoder::WalStreamDecoder;

use crate::tenant::timeline::read::PageReconstructError;
use crate::tenant::timeline::write::WriteError;

/// Why ingest or import stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A record references a block without an image of it.
    #[error("WAL record at {lsn} ({rmgr}) changes block {blkno} of relation {rel} without a full page image: the WAL source must run with full_page_writes = on and wal_consistency_checking = 'all'")]
    MissingImage {
        /// Start LSN of the record.
        lsn: utils::lsn::Lsn,
        /// Resource manager name.
        rmgr: String,
        /// The relation.
        rel: String,
        /// The block.
        blkno: u32,
    },
    /// The WAL or a record in it does not decode.
    #[error("invalid WAL: {0}")]
    Wal(String),
    /// Stored state that ingest reads is not what it wrote.
    #[error("corrupt stored state: {0}")]
    Corrupt(String),
    /// A data directory cannot be imported.
    #[error("import failed: {0}")]
    Import(String),
    /// Writing to the timeline failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading from the timeline failed.
    #[error(transparent)]
    Read(#[from] PageReconstructError),
    /// Native records do not apply to the stored value.
    #[error(transparent)]
    Apply(#[from] pageserver_api::value::ApplyError),
}

impl IngestError {
    /// Whether retrying (after a reconnect) may succeed: I/O trouble, not
    /// WAL that cannot be ingested.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IngestError::Write(WriteError::Io { .. })
                | IngestError::Read(PageReconstructError::Io(_) | PageReconstructError::Cancelled)
        )
    }
}

/// Feeds `data` to `decoder` and ingests the records it completes, off the
/// async executor.
pub async fn ingest_bytes(
    tl: &Arc<crate::tenant::timeline::Timeline>,
    ingest: &Arc<Mutex<WalIngest>>,
    decoder: &mut WalStreamDecoder,
    data: &[u8],
) -> Result<(), IngestError> {
    let labels = [tl.tenant_id.to_string(), tl.timeline_id.to_string()];
    crate::metrics::WAL_INGEST_BYTES
        .with_label_values(&[&labels[0], &labels[1]])
        .inc_by(data.len() as u64);
    decoder.feed_bytes(data);
    let mut records = Vec::new();
    while let Some(rec) = decoder
        .poll_decode_record()
        .map_err(|e| IngestError::Wal(e.to_string()))?
    {
        records.push(rec);
    }
    if records.is_empty() {
        return Ok(());
    }
    crate::metrics::WAL_INGEST_RECORDS
        .with_label_values(&[&labels[0], &labels[1]])
        .inc_by(records.len() as u64);
    let (tl, ingest) = (tl.clone(), ingest.clone());
    tokio::task::spawn_blocking(move || {
        let mut ingest = ingest.lock().expect("ingest lock poisoned");
        let mut writer = tl.writer();
        for record in &records {
            ingest.ingest_record(&tl, &mut writer, record)?;
        }
        Ok::<_, IngestError>(())
    })
    .await
    .map_err(|e| IngestError::Wal(format!("ingest task failed: {e}")))?
}
