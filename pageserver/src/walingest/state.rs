//! What ingest knows between records: relation sizes and directories,
//! cached from storage on first use and written back as whole images.
//!
//! Every value written by one WAL record goes through [`Pending`], keyed by
//! storage key, so that two changes to one key in one record (which share
//! an LSN, and so would replace each other in storage) are merged first.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use pageserver_api::commit_ts::LastCommitTs;
use pageserver_api::key::{
    rel_dir_key, rel_size_key, slru_dir_key, slru_segment_size_key, Key, RelTag, SlruKind,
    DBDIR_KEY, LAST_COMMIT_TS_KEY, TWOPHASEDIR_KEY,
};
use pageserver_api::value::{
    reconstruct, DirEntry, DirKind, Directory, NativeRecord, Value, BLCKSZ,
};
use utils::lsn::Lsn;

use super::IngestError;
use crate::tenant::timeline::read::PageReconstructError;
use crate::tenant::timeline::write::TimelineWriter;
use crate::tenant::timeline::Timeline;

/// Values of the record being ingested, by key.
#[derive(Default)]
pub struct Pending {
    values: BTreeMap<Key, Value>,
}

impl Pending {
    /// Sets the value of `key` for this record (a later set replaces it).
    pub fn put(&mut self, key: Key, value: Value) {
        self.values.insert(key, value);
    }

    /// Adds a native record for `key`. A second change to one key in one
    /// WAL record is merged with the first into an image, since both would
    /// share an LSN.
    pub fn push_record(
        &mut self,
        tl: &Timeline,
        key: Key,
        rec: NativeRecord,
    ) -> Result<(), IngestError> {
        let merged = match self.values.remove(&key) {
            None => Value::Record(rec),
            Some(Value::Image(img)) => Value::Image(reconstruct(key, Some(img), &[rec])?),
            Some(Value::Record(prev)) => {
                let base = if prev.will_init() {
                    None
                } else {
                    read_latest(tl, key)?
                };
                Value::Image(reconstruct(key, base, &[prev, rec])?)
            }
        };
        self.values.insert(key, merged);
        Ok(())
    }

    /// Writes everything at `lsn`.
    pub fn write(&mut self, writer: &mut TimelineWriter<'_>, lsn: Lsn) -> Result<(), IngestError> {
        for (key, value) in std::mem::take(&mut self.values) {
            writer.put(key, lsn, &value)?;
        }
        Ok(())
    }
}

/// Cached relation sizes and directories of one timeline.
#[derive(Default)]
pub struct IngestState {
    /// `None`: the relation is known not to exist.
    rel_sizes: HashMap<RelTag, Option<u32>>,
    /// Relation size changes of the current record, for the timeline's
    /// relation size cache.
    rel_changes: Vec<(RelTag, Option<u32>)>,
    /// Change of the logical size (bytes of all relations) by the writes
    /// staged since the last [`IngestState::take_size_delta`].
    size_delta: i64,
    /// The stored [`LAST_COMMIT_TS_KEY`] value, once read (`Some(None)`:
    /// no commit so far).
    last_commit: Option<Option<LastCommitTs>>,
    slru_sizes: HashMap<(SlruKind, u32), Option<u32>>,
    dirs: HashMap<Key, Directory>,
    dirty_dirs: Vec<Key>,
    /// Writes of the current record.
    pub pending: Pending,
}

/// A stored value as of the timeline's last record, or `None` if the key has none.
pub(super) fn read_latest(tl: &Timeline, key: Key) -> Result<Option<Bytes>, IngestError> {
    match tl.get_latest_blocking(key) {
        Ok(v) => Ok(Some(v)),
        Err(PageReconstructError::MissingKey { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn decode_size(key: Key, v: &[u8]) -> Result<u32, IngestError> {
    v.try_into().map(u32::from_le_bytes).map_err(|_| {
        IngestError::Corrupt(format!(
            "size value of key {key} is {} bytes, not 4",
            v.len()
        ))
    })
}

impl IngestState {
    /// Size of `rel` in blocks, `None` if it does not exist.
    pub fn rel_size(&mut self, tl: &Timeline, rel: RelTag) -> Result<Option<u32>, IngestError> {
        if let Some(size) = self.rel_sizes.get(&rel) {
            return Ok(*size);
        }
        let key = rel_size_key(rel);
        let exists = self
            .dir(tl, rel_dir_key(rel.spcnode, rel.dbnode), DirKind::Rel)?
            .contains(&DirEntry::Rel {
                relnode: rel.relnode,
                forknum: rel.forknum,
            });
        let size = if exists {
            Some(
                read_latest(tl, key)?
                    .map(|v| decode_size(key, &v))
                    .transpose()?
                    .unwrap_or(0),
            )
        } else {
            None
        };
        self.rel_sizes.insert(rel, size);
        Ok(size)
    }

    /// Sets the size of an existing relation whose size the caller has
    /// read first (through [`IngestState::rel_size`] or
    /// [`IngestState::create_rel`]), so that the change of the logical size
    /// is known.
    pub fn set_rel_size(&mut self, rel: RelTag, nblocks: u32) {
        debug_assert!(
            self.rel_sizes.contains_key(&rel),
            "size of {rel} set without reading it first"
        );
        let old = self.rel_sizes.get(&rel).copied().flatten().unwrap_or(0);
        self.size_delta += (i64::from(nblocks) - i64::from(old)) * BLCKSZ as i64;
        self.rel_sizes.insert(rel, Some(nblocks));
        self.rel_changes.push((rel, Some(nblocks)));
        self.pending.put(
            rel_size_key(rel),
            Value::Image(Bytes::copy_from_slice(&nblocks.to_le_bytes())),
        );
    }

    /// Creates `rel` (empty) unless it exists. True if it was created.
    pub fn create_rel(&mut self, tl: &Timeline, rel: RelTag) -> Result<bool, IngestError> {
        if self.rel_size(tl, rel)?.is_some() {
            return Ok(false);
        }
        self.ensure_db(tl, rel.spcnode, rel.dbnode)?;
        self.dir_edit(
            tl,
            rel_dir_key(rel.spcnode, rel.dbnode),
            DirKind::Rel,
            |d| {
                d.insert(DirEntry::Rel {
                    relnode: rel.relnode,
                    forknum: rel.forknum,
                })
            },
        )?;
        self.set_rel_size(rel, 0);
        Ok(true)
    }

    /// Removes `rel` from its database's directory (its blocks stay in
    /// history for reads at older LSNs).
    pub fn drop_rel(&mut self, tl: &Timeline, rel: RelTag) -> Result<(), IngestError> {
        if self.rel_size(tl, rel)?.is_none() {
            return Ok(());
        }
        self.dir_edit(
            tl,
            rel_dir_key(rel.spcnode, rel.dbnode),
            DirKind::Rel,
            |d| {
                d.remove(&DirEntry::Rel {
                    relnode: rel.relnode,
                    forknum: rel.forknum,
                })
            },
        )?;
        self.set_rel_size(rel, 0);
        self.rel_sizes.insert(rel, None);
        self.rel_changes.push((rel, None));
        Ok(())
    }

    /// Relation size changes (`None`: dropped) since the last call, in order.
    pub fn take_rel_changes(&mut self) -> Vec<(RelTag, Option<u32>)> {
        std::mem::take(&mut self.rel_changes)
    }

    /// The change of the logical size in bytes since the last call.
    pub fn take_size_delta(&mut self) -> i64 {
        std::mem::take(&mut self.size_delta)
    }

    /// Records a commit at `lsn` (the commit record's end) with timestamp
    /// `ts`: stages the new [`LAST_COMMIT_TS_KEY`] value, whose running
    /// maximum continues the stored one (read through the ancestor on a
    /// fresh branch).
    pub fn record_commit(&mut self, tl: &Timeline, lsn: Lsn, ts: i64) -> Result<(), IngestError> {
        let prev = match self.last_commit {
            Some(prev) => prev,
            None => read_latest(tl, LAST_COMMIT_TS_KEY)?
                .map(|v| LastCommitTs::decode(&v))
                .transpose()
                .map_err(|e| {
                    IngestError::Corrupt(format!(
                        "last commit timestamp of {}: {e}",
                        tl.timeline_id
                    ))
                })?,
        };
        let next = LastCommitTs::next(prev, lsn, ts);
        self.last_commit = Some(Some(next));
        self.pending.put(
            LAST_COMMIT_TS_KEY,
            Value::Image(Bytes::copy_from_slice(&next.encode())),
        );
        Ok(())
    }

    /// Makes sure the database is in the database directory, with a relation directory.
    pub fn ensure_db(
        &mut self,
        tl: &Timeline,
        spcnode: u32,
        dbnode: u32,
    ) -> Result<(), IngestError> {
        let entry = DirEntry::Db { spcnode, dbnode };
        if self.dir(tl, DBDIR_KEY, DirKind::Db)?.contains(&entry) {
            return Ok(());
        }
        self.dir_edit(tl, DBDIR_KEY, DirKind::Db, |d| d.insert(entry))?;
        // A new relation directory, unless one survived a drop.
        self.dir(tl, rel_dir_key(spcnode, dbnode), DirKind::Rel)?;
        self.mark_dirty(rel_dir_key(spcnode, dbnode));
        Ok(())
    }

    /// Removes a database and every relation in it.
    pub fn drop_db(
        &mut self,
        tl: &Timeline,
        spcnode: u32,
        dbnode: u32,
    ) -> Result<Vec<RelTag>, IngestError> {
        let rels = self.rels_of_db(tl, spcnode, dbnode)?;
        for rel in &rels {
            self.drop_rel(tl, *rel)?;
        }
        self.dir_edit(tl, DBDIR_KEY, DirKind::Db, |d| {
            d.remove(&DirEntry::Db { spcnode, dbnode })
        })?;
        Ok(rels)
    }

    /// Relations of a database.
    pub fn rels_of_db(
        &mut self,
        tl: &Timeline,
        spcnode: u32,
        dbnode: u32,
    ) -> Result<Vec<RelTag>, IngestError> {
        Ok(self
            .dir(tl, rel_dir_key(spcnode, dbnode), DirKind::Rel)?
            .rels(spcnode, dbnode)
            .collect())
    }

    /// Size of an SLRU segment in pages, `None` if it does not exist.
    pub fn slru_segment_size(
        &mut self,
        tl: &Timeline,
        kind: SlruKind,
        segno: u32,
    ) -> Result<Option<u32>, IngestError> {
        if let Some(size) = self.slru_sizes.get(&(kind, segno)) {
            return Ok(*size);
        }
        let exists = self
            .dir(tl, slru_dir_key(kind), DirKind::SlruSegment)?
            .contains(&DirEntry::SlruSegment(segno));
        let key = slru_segment_size_key(kind, segno);
        let size = if exists {
            Some(
                read_latest(tl, key)?
                    .map(|v| decode_size(key, &v))
                    .transpose()?
                    .unwrap_or(0),
            )
        } else {
            None
        };
        self.slru_sizes.insert((kind, segno), size);
        Ok(size)
    }

    /// Records that page `blkno` of an SLRU segment exists (creating the segment).
    pub fn extend_slru_segment(
        &mut self,
        tl: &Timeline,
        kind: SlruKind,
        segno: u32,
        blkno: u32,
    ) -> Result<(), IngestError> {
        let size = self.slru_segment_size(tl, kind, segno)?;
        if size.is_none() {
            self.dir_edit(tl, slru_dir_key(kind), DirKind::SlruSegment, |d| {
                d.insert(DirEntry::SlruSegment(segno))
            })?;
        }
        if size.is_none_or(|s| s <= blkno) {
            self.slru_sizes.insert((kind, segno), Some(blkno + 1));
            self.pending.put(
                slru_segment_size_key(kind, segno),
                Value::Image(Bytes::copy_from_slice(&(blkno + 1).to_le_bytes())),
            );
        }
        Ok(())
    }

    /// Removes an SLRU segment from its directory.
    pub fn drop_slru_segment(
        &mut self,
        tl: &Timeline,
        kind: SlruKind,
        segno: u32,
    ) -> Result<(), IngestError> {
        self.dir_edit(tl, slru_dir_key(kind), DirKind::SlruSegment, |d| {
            d.remove(&DirEntry::SlruSegment(segno))
        })?;
        self.slru_sizes.insert((kind, segno), None);
        Ok(())
    }

    /// Segments of an SLRU.
    pub fn slru_segments(
        &mut self,
        tl: &Timeline,
        kind: SlruKind,
    ) -> Result<Vec<u32>, IngestError> {
        Ok(self
            .dir(tl, slru_dir_key(kind), DirKind::SlruSegment)?
            .iter()
            .filter_map(|e| match e {
                DirEntry::SlruSegment(s) => Some(*s),
                _ => None,
            })
            .collect())
    }

    /// Adds or removes a two-phase state file entry.
    pub fn twophase_dir_edit(
        &mut self,
        tl: &Timeline,
        xid: u32,
        add: bool,
    ) -> Result<(), IngestError> {
        self.dir_edit(tl, TWOPHASEDIR_KEY, DirKind::TwoPhase, |d| {
            if add {
                d.insert(DirEntry::TwoPhase(xid))
            } else {
                d.remove(&DirEntry::TwoPhase(xid))
            }
        })
    }

    /// The directory under `key` (cached; an absent one starts empty).
    fn dir(
        &mut self,
        tl: &Timeline,
        key: Key,
        kind: DirKind,
    ) -> Result<&mut Directory, IngestError> {
        use std::collections::hash_map::Entry;
        match self.dirs.entry(key) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let dir = match read_latest(tl, key)? {
                    Some(v) => Directory::decode(&v).map_err(|err| {
                        IngestError::Corrupt(format!(
                            "directory under key {key} does not decode: {err}"
                        ))
                    })?,
                    None => Directory::new(kind),
                };
                Ok(e.insert(dir))
            }
        }
    }

    fn dir_edit<E: std::fmt::Display>(
        &mut self,
        tl: &Timeline,
        key: Key,
        kind: DirKind,
        f: impl FnOnce(&mut Directory) -> Result<bool, E>,
    ) -> Result<(), IngestError> {
        let dir = self.dir(tl, key, kind)?;
        if f(dir).map_err(|e| IngestError::Corrupt(format!("directory under key {key}: {e}")))? {
            self.mark_dirty(key);
        }
        Ok(())
    }

    fn mark_dirty(&mut self, key: Key) {
        if !self.dirty_dirs.contains(&key) {
            self.dirty_dirs.push(key);
        }
    }

    /// Moves changed directories into the pending writes.
    pub fn stage_dirs(&mut self) {
        for key in std::mem::take(&mut self.dirty_dirs) {
            let dir = &self.dirs[&key];
            self.pending
                .put(key, Value::Image(Bytes::from(dir.encode())));
        }
    }
}
