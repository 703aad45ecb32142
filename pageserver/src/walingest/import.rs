//! Imports a PostgreSQL 15 data directory (from `initdb` or a base backup)
//! into an empty timeline at one LSN: relation files as page images (FSM
//! and visibility map forks are left out, see `mod.rs`), SLRU segments,
//! relmap files, two-phase state files and `pg_control`.

use std::fs;
use std::io::Read;
use std::path::Path;

use bytes::Bytes;
use pageserver_api::key::{
    rel_block_key, relmap_file_key, slru_block_key, twophase_file_key, Key, RelTag, SlruKind,
    CONTROLFILE_KEY, FSM_FORKNUM, INIT_FORKNUM, MAIN_FORKNUM, VISIBILITYMAP_FORKNUM,
};
use pageserver_api::value::{Value, BLCKSZ};
use utils::lsn::Lsn;

use postgres_ffi::pg_constants::{DEFAULTTABLESPACE_OID, GLOBALTABLESPACE_OID, RELSEG_SIZE};

use super::state::IngestState;
use super::IngestError;
use crate::tenant::timeline::write::TimelineWriter;
use crate::tenant::timeline::Timeline;

/// What an import stored.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ImportStats {
    /// Relation forks imported.
    pub relations: usize,
    /// Relation pages imported.
    pub pages: u64,
    /// SLRU pages imported.
    pub slru_pages: u64,
    /// Databases found.
    pub databases: usize,
}

/// A relation file name: `RELNODE[_fork][.SEGNO]`. `None` for other files
/// (temporary relations, `pg_internal.init`, ...).
fn parse_relfile_name(name: &str) -> Option<(u32, u8, u32)> {
    let (stem, segno) = match name.split_once('.') {
        Some((stem, seg)) => (stem, seg.parse::<u32>().ok()?),
        None => (name, 0),
    };
    let (relnode, fork) = match stem.split_once('_') {
        Some((rel, "fsm")) => (rel, FSM_FORKNUM),
        Some((rel, "vm")) => (rel, VISIBILITYMAP_FORKNUM),
        Some((rel, "init")) => (rel, INIT_FORKNUM),
        Some(_) => return None,
        None => (stem, MAIN_FORKNUM),
    };
    if relnode.is_empty() || !relnode.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let relnode = relnode.parse::<u32>().ok().filter(|r| *r != 0)?;
    Some((relnode, fork, segno))
}

struct Importer<'a, 'w> {
    tl: &'a Timeline,
    writer: &'a mut TimelineWriter<'w>,
    state: IngestState,
    lsn: Lsn,
    stats: ImportStats,
}

impl Importer<'_, '_> {
    fn io(path: &Path, e: std::io::Error) -> IngestError {
        IngestError::Import(format!("cannot read {}: {e}", path.display()))
    }

    /// Reads a file in whole pages, calling `f` with each page and its number.
    /// A trailing partial page (a base backup racing an extension) is dropped.
    fn for_each_page(
        path: &Path,
        mut f: impl FnMut(u32, &[u8]) -> Result<(), IngestError>,
    ) -> Result<u32, IngestError> {
        let mut file = fs::File::open(path).map_err(|e| Self::io(path, e))?;
        let mut buf = vec![0u8; BLCKSZ];
        let mut blkno = 0u32;
        loop {
            let mut filled = 0;
            while filled < BLCKSZ {
                let n = file
                    .read(&mut buf[filled..])
                    .map_err(|e| Self::io(path, e))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled < BLCKSZ {
                if filled > 0 {
                    tracing::info!(
                        "ignoring {filled} bytes after the last whole page of {}",
                        path.display()
                    );
                }
                return Ok(blkno);
            }
            f(blkno, &buf)?;
            blkno += 1;
        }
    }

    /// Stores every whole page of the file at `path` under `key_of(page
    /// number)`; returns the number of pages.
    fn put_pages(&mut self, path: &Path, key_of: impl Fn(u32) -> Key) -> Result<u32, IngestError> {
        let (lsn, writer) = (self.lsn, &mut *self.writer);
        Self::for_each_page(path, |blk, page| {
            writer.put(
                key_of(blk),
                lsn,
                &Value::Image(Bytes::copy_from_slice(page)),
            )?;
            Ok(())
        })
    }

    fn import_relfile(
        &mut self,
        path: &Path,
        spcnode: u32,
        dbnode: u32,
        relnode: u32,
        forknum: u8,
        segno: u32,
    ) -> Result<(), IngestError> {
        let rel = RelTag {
            spcnode,
            dbnode,
            relnode,
            forknum,
        };
        if self.state.create_rel(self.tl, rel)? {
            self.stats.relations += 1;
        }
        let first = segno.checked_mul(RELSEG_SIZE).ok_or_else(|| {
            IngestError::Import(format!("segment number of {} is too large", path.display()))
        })?;
        let nblocks = self.put_pages(path, |blk| rel_block_key(rel, first + blk))?;
        self.stats.pages += u64::from(nblocks);
        if nblocks > 0 {
            let size = self.state.rel_size(self.tl, rel)?.unwrap_or(0);
            self.state.set_rel_size(rel, size.max(first + nblocks));
        }
        Ok(())
    }

    fn import_db_dir(&mut self, dir: &Path, spcnode: u32, dbnode: u32) -> Result<(), IngestError> {
        self.state.ensure_db(self.tl, spcnode, dbnode)?;
        self.stats.databases += 1;
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map_err(|e| Self::io(dir, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| Self::io(dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "pg_filenode.map" {
                let data = fs::read(&path).map_err(|e| Self::io(&path, e))?;
                self.writer.put(
                    relmap_file_key(spcnode, dbnode),
                    self.lsn,
                    &Value::Image(Bytes::from(data)),
                )?;
                continue;
            }
            match parse_relfile_name(&name) {
                // The free space map and visibility map are not kept: PostgreSQL
                // rebuilds the first and treats a missing second as "nothing
                // all-visible", so neither can ever be stale.
                Some((_, FSM_FORKNUM | VISIBILITYMAP_FORKNUM, _)) => {}
                Some((relnode, fork, segno)) => {
                    self.import_relfile(&path, spcnode, dbnode, relnode, fork, segno)?
                }
                None => tracing::debug!("import skips {}", path.display()),
            }
        }
        Ok(())
    }

    fn import_slru(&mut self, dir: &Path, kind: SlruKind) -> Result<(), IngestError> {
        let Ok(entries) = fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries {
            let entry = entry.map_err(|e| Self::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(segno) = (name.len() >= 4 && name.bytes().all(|c| c.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(&name, 16).ok())
                .flatten()
            else {
                continue;
            };
            let pages = self.put_pages(&entry.path(), |blk| slru_block_key(kind, segno, blk))?;
            self.stats.slru_pages += u64::from(pages);
            if pages > 0 {
                self.state
                    .extend_slru_segment(self.tl, kind, segno, pages - 1)?;
            }
        }
        Ok(())
    }

    fn import_twophase(&mut self, dir: &Path) -> Result<(), IngestError> {
        let Ok(entries) = fs::read_dir(dir) else {
            return Ok(());
        };
        for entry in entries {
            let entry = entry.map_err(|e| Self::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(xid) = u32::from_str_radix(&name, 16) else {
                continue;
            };
            let data = fs::read(entry.path()).map_err(|e| Self::io(&entry.path(), e))?;
            self.writer.put(
                twophase_file_key(xid),
                self.lsn,
                &Value::Image(Bytes::from(data)),
            )?;
            self.state.twophase_dir_edit(self.tl, xid, true)?;
        }
        Ok(())
    }
}

/// Imports `datadir` into `tl`, which must be empty, at `lsn`, and
/// publishes `lsn` as the last record LSN. Blocking.
pub fn import_datadir(tl: &Timeline, datadir: &Path, lsn: Lsn) -> Result<ImportStats, IngestError> {
    let tblspc = datadir.join("pg_tblspc");
    if fs::read_dir(&tblspc).is_ok_and(|mut d| d.next().is_some()) {
        return Err(IngestError::Import(format!(
            "{} is not empty: tablespaces other than pg_default and pg_global are not supported",
            tblspc.display()
        )));
    }
    let control = datadir.join("global").join("pg_control");
    let control_bytes = fs::read(&control).map_err(|e| Importer::io(&control, e))?;
    let mut writer = tl.writer();
    let mut imp = Importer {
        tl,
        writer: &mut writer,
        state: IngestState::default(),
        lsn,
        stats: ImportStats::default(),
    };
    imp.writer.put(
        CONTROLFILE_KEY,
        lsn,
        &Value::Image(Bytes::from(control_bytes)),
    )?;
    imp.import_db_dir(&datadir.join("global"), GLOBALTABLESPACE_OID, 0)?;
    let base = datadir.join("base");
    let mut dbs: Vec<u32> = fs::read_dir(&base)
        .map_err(|e| Importer::io(&base, e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    dbs.sort();
    for db in dbs {
        imp.import_db_dir(&base.join(db.to_string()), DEFAULTTABLESPACE_OID, db)?;
    }
    imp.import_slru(&datadir.join("pg_xact"), SlruKind::Clog)?;
    imp.import_slru(
        &datadir.join("pg_multixact").join("offsets"),
        SlruKind::MultiXactOffsets,
    )?;
    imp.import_slru(
        &datadir.join("pg_multixact").join("members"),
        SlruKind::MultiXactMembers,
    )?;
    imp.import_twophase(&datadir.join("pg_twophase"))?;
    imp.state.stage_dirs();
    let stats = imp.stats.clone();
    let size_delta = imp.state.take_size_delta();
    imp.state.pending.write(&mut writer, lsn)?;
    tl.logical_size_tracker().add_delta(size_delta);
    writer.finish_write(lsn)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_file_names() {
        assert_eq!(parse_relfile_name("16384"), Some((16384, MAIN_FORKNUM, 0)));
        assert_eq!(
            parse_relfile_name("16384.2"),
            Some((16384, MAIN_FORKNUM, 2))
        );
        assert_eq!(
            parse_relfile_name("16384_fsm"),
            Some((16384, FSM_FORKNUM, 0))
        );
        assert_eq!(
            parse_relfile_name("16384_vm.1"),
            Some((16384, VISIBILITYMAP_FORKNUM, 1))
        );
        assert_eq!(
            parse_relfile_name("16384_init"),
            Some((16384, INIT_FORKNUM, 0))
        );
        for bad in [
            "pg_filenode.map",
            "PG_VERSION",
            "t3_16384",
            "16384_xyz",
            "0",
            "",
            "1.x",
            "pg_internal.init",
        ] {
            assert_eq!(parse_relfile_name(bad), None, "{bad}");
        }
    }
}
