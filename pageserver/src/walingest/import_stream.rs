//! Imports from streams sent by a client (the page service's `import
//! basebackup` and `import wal` commands): a `pg_basebackup -Ft` tar,
//! unpacked and checked before a timeline is created from it, and WAL
//! bytes ingested into an existing timeline up to an end LSN.
//!
//! Nothing half-imported is readable: a timeline created from a base backup
//! refuses reads below the backup's end LSN until WAL up to it has been
//! imported (or streamed), and a tar that is incomplete or inconsistent
//! creates no timeline at all.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use postgres_ffi::controlfile::{ControlFileData, DbState};
use postgres_ffi::pg_constants::WAL_SEGMENT_SIZE;
use postgres_ffi::waldecoder::WalStreamDecoder;
use postgres_ffi::xlog_utils::segment_lsn;
use postgres_ffi::xlog_utils::segment_number;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;
use utils::lsn::Lsn;

use super::{ingest_bytes, IngestError, WalIngest};
use crate::tenant::timeline::Timeline;

fn import_err(msg: impl Into<String>) -> IngestError {
    IngestError::Import(msg.into())
}

/// Unpacks a `pg_basebackup -Ft` tar (or a tar of a cleanly shut down data
/// directory) from `reader` into the empty directory `dest`, and checks
/// that it is a PostgreSQL 15 data directory consistent from `start` once
/// WAL up to `end` is applied: its `backup_label` starts at `start` (or,
/// without one, it was shut down cleanly with its checkpoint at `start`,
/// and `end` equals `start`). Blocking.
pub fn unpack_basebackup(
    reader: impl Read,
    dest: &Path,
    start: Lsn,
    end: Lsn,
) -> Result<(), IngestError> {
    if end < start {
        return Err(import_err(format!(
            "end LSN {end} is before start LSN {start}"
        )));
    }
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(false);
    archive.set_overwrite(false);
    for entry in archive
        .entries()
        .map_err(|e| import_err(format!("not a tar stream: {e}")))?
    {
        let mut entry = entry.map_err(|e| import_err(format!("malformed tar: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| import_err(format!("malformed tar entry name: {e}")))?
            .into_owned();
        // `unpack_in` refuses names that would escape `dest`.
        let inside = entry
            .unpack_in(dest)
            .map_err(|e| import_err(format!("cannot unpack {}: {e}", path.display())))?;
        if !inside {
            return Err(import_err(format!(
                "tar entry {} points outside the data directory",
                path.display()
            )));
        }
    }
    check_datadir(dest, start, end)
}

/// The start LSN named by a `backup_label` (`START WAL LOCATION: X/Y ...`).
fn backup_label_start(text: &str) -> Option<Lsn> {
    text.lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|lsn| lsn.parse().ok())
}

fn check_datadir(dir: &Path, start: Lsn, end: Lsn) -> Result<(), IngestError> {
    let version = std::fs::read_to_string(dir.join("PG_VERSION")).map_err(|_| {
        import_err("the tar has no PG_VERSION: it is not a complete data directory")
    })?;
    if version.trim() != "15" {
        return Err(import_err(format!(
            "the tar holds a PostgreSQL {} data directory; only 15 is supported",
            version.trim()
        )));
    }
    let control = std::fs::read(dir.join("global").join("pg_control")).map_err(|_| {
        import_err("the tar has no global/pg_control: it is not a complete data directory")
    })?;
    let control = ControlFileData::decode(&control)
        .map_err(|e| import_err(format!("global/pg_control in the tar is invalid: {e}")))?;
    match std::fs::read_to_string(dir.join("backup_label")) {
        Ok(label) => {
            let label_start = backup_label_start(&label)
                .ok_or_else(|| import_err("backup_label has no START WAL LOCATION"))?;
            if label_start != start {
                return Err(import_err(format!(
                    "the backup starts at {label_start} (backup_label), not at the given start LSN {start}"
                )));
            }
        }
        Err(_) => {
            if control.state != DbState::Shutdowned || control.checkpoint != start || end != start {
                return Err(import_err(format!(
                    "the tar has no backup_label, so it must be a cleanly shut down cluster whose checkpoint is the start LSN, with end = start; its state is {:?} with checkpoint {} (given start {start}, end {end})",
                    control.state, control.checkpoint
                )));
            }
        }
    }
    Ok(())
}

/// Reads WAL from `reader` and ingests it into `tl` until its last record
/// LSN reaches `end`; returns the LSN reached, made durable.
///
/// The stream starts at the beginning of the WAL segment holding `start`
/// (so that segment files can be sent as they are), and `start` must not
/// be past the timeline's last record LSN (no gap). Records the timeline
/// already has are skipped. A stream that ends before `end` is an error
/// (what came is kept, but reads below a base backup's end stay refused).
pub async fn import_wal(
    tl: &Arc<Timeline>,
    mut reader: impl AsyncRead + Unpin,
    start: Lsn,
    end: Lsn,
    cancel: &CancellationToken,
) -> Result<Lsn, IngestError> {
    let last = tl.last_record_lsn();
    if start > last {
        return Err(import_err(format!(
            "WAL import starts at {start}, after the timeline's last record LSN {last}: the WAL in between is missing"
        )));
    }
    if end < start {
        return Err(import_err(format!(
            "end LSN {end} is before start LSN {start}"
        )));
    }
    // The decoder starts at the last record LSN, a record boundary; bytes
    // of the stream before it are read and dropped.
    let seg_start = segment_lsn(segment_number(start, WAL_SEGMENT_SIZE), 0, WAL_SEGMENT_SIZE);
    let mut skip = last.0 - seg_start.0;
    let mut decoder = WalStreamDecoder::new(last);
    let ingest = Arc::new(Mutex::new(WalIngest::default()));
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = seg_start;
    while tl.last_record_lsn() < end {
        let n = tokio::select! {
            _ = cancel.cancelled() => return Err(import_err("WAL import cancelled: the server is shutting down")),
            n = reader.read(&mut buf) => n.map_err(|e| import_err(format!("reading the WAL stream failed: {e}")))?,
        };
        if n == 0 {
            return Err(import_err(format!(
                "the WAL stream ended at {received} (last record {}), before the end LSN {end}",
                tl.last_record_lsn()
            )));
        }
        received += n as u64;
        let mut data = &buf[..n];
        if skip > 0 {
            let k = (skip as usize).min(data.len());
            data = &data[k..];
            skip -= k as u64;
        }
        if !data.is_empty() {
            ingest_bytes(tl, &ingest, &mut decoder, data).await?;
        }
    }
    let flushing = tl.clone();
    tokio::task::spawn_blocking(move || flushing.checkpoint_blocking())
        .await
        .map_err(|e| import_err(format!("flush task failed: {e}")))?
        .map_err(|e| import_err(format!("flushing the imported WAL failed: {e:#}")))?;
    Ok(tl.last_record_lsn())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_label_parsing() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n";
        assert_eq!(backup_label_start(label), Some(Lsn(0x200_0028)));
        assert_eq!(backup_label_start("nothing here"), None);
        assert_eq!(backup_label_start("START WAL LOCATION: zz"), None);
    }

    #[test]
    fn tars_that_are_not_data_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_cksum();
        b.append_data(&mut h, "PG_VERSION", &b"14\n"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let err = unpack_basebackup(&tar[..], dir.path(), Lsn(8), Lsn(8)).unwrap_err();
        assert!(err.to_string().contains("only 15"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let err = unpack_basebackup(
            &b"garbage that is not a tar"[..],
            dir.path(),
            Lsn(8),
            Lsn(8),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("tar") || err.to_string().contains("PG_VERSION"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let err = unpack_basebackup(&tar[..], dir.path(), Lsn(16), Lsn(8)).unwrap_err();
        assert!(err.to_string().contains("before start"), "{err}");
    }
}
