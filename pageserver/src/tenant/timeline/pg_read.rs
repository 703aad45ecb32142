//! PostgreSQL objects of a timeline as of an LSN: databases, relations and
//! their sizes, relation pages, SLRU segments, two-phase files, relmaps.
//!
//! These are the reads that the page service, base backups and size
//! accounting share. All of them are blocking (they may read layer files)
//! and expect the LSN to be ingested already (see [`Timeline::wait_lsn`]).

use bytes::{Bytes, BytesMut};
use pageserver_api::key::{
    rel_block_key, rel_dir_key, rel_size_key, relmap_file_key, slru_block_key, slru_dir_key,
    slru_segment_size_key, twophase_file_key, Key, RelTag, SlruKind, DBDIR_KEY, TWOPHASEDIR_KEY,
};
use pageserver_api::value::{DirEntry, DirKind, Directory, BLCKSZ};
use utils::lsn::Lsn;

use super::read::PageReconstructError;
use super::Timeline;

/// An all-zeroes page: what PostgreSQL reads for a block that was extended
/// but never written.
pub static ZERO_PAGE: [u8; BLCKSZ] = [0u8; BLCKSZ];

/// Why a PostgreSQL object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PgReadError {
    /// The underlying value could not be produced.
    #[error(transparent)]
    Reconstruct(#[from] PageReconstructError),
    /// The relation does not exist at the LSN.
    #[error("relation {rel} does not exist at LSN {lsn}")]
    NoRelation {
        /// The relation.
        rel: RelTag,
        /// The LSN asked for.
        lsn: Lsn,
    },
    /// The block is past the relation's end.
    #[error("block {blkno} of relation {rel} is past its end ({nblocks} blocks) at LSN {lsn}")]
    PastEnd {
        /// The relation.
        rel: RelTag,
        /// The block asked for.
        blkno: u32,
        /// The relation's size.
        nblocks: u32,
        /// The LSN asked for.
        lsn: Lsn,
    },
    /// The SLRU segment does not exist at the LSN.
    #[error("{kind} segment {segno:04X} does not exist at LSN {lsn}")]
    NoSlruSegment {
        /// The SLRU.
        kind: SlruKind,
        /// The segment number.
        segno: u32,
        /// The LSN asked for.
        lsn: Lsn,
    },
    /// A stored directory or size does not decode.
    #[error("stored value of key {key} is invalid: {reason}")]
    Corrupt {
        /// The key.
        key: Key,
        /// What is wrong.
        reason: String,
    },
}

impl PgReadError {
    /// Whether the error says the object is absent (rather than unreadable).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            PgReadError::NoRelation { .. } | PgReadError::NoSlruSegment { .. }
        )
    }
}

/// `Ok(None)` where the key has no value.
fn optional(r: Result<Bytes, PageReconstructError>) -> Result<Option<Bytes>, PgReadError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(PageReconstructError::MissingKey { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn decode_u32(key: Key, v: &[u8]) -> Result<u32, PgReadError> {
    v.try_into()
        .map(u32::from_le_bytes)
        .map_err(|_| PgReadError::Corrupt {
            key,
            reason: format!("a size is 4 bytes, this one {}", v.len()),
        })
}

impl Timeline {
    fn directory(&self, key: Key, kind: DirKind, lsn: Lsn) -> Result<Directory, PgReadError> {
        match optional(self.get_blocking(key, lsn))? {
            None => Ok(Directory::new(kind)),
            Some(v) => {
                let dir = Directory::decode(&v).map_err(|e| PgReadError::Corrupt {
                    key,
                    reason: e.to_string(),
                })?;
                if dir.kind() != kind {
                    return Err(PgReadError::Corrupt {
                        key,
                        reason: format!("a {:?} directory where {kind:?} was expected", dir.kind()),
                    });
                }
                Ok(dir)
            }
        }
    }

    /// Databases as `(spcnode, dbnode)`, the global "database" (0) included.
    pub fn list_dbs(&self, lsn: Lsn) -> Result<Vec<(u32, u32)>, PgReadError> {
        Ok(self
            .directory(DBDIR_KEY, DirKind::Db, lsn)?
            .iter()
            .filter_map(|e| match e {
                DirEntry::Db { spcnode, dbnode } => Some((*spcnode, *dbnode)),
                _ => None,
            })
            .collect())
    }

    /// Relation forks of one database.
    pub fn list_rels(
        &self,
        spcnode: u32,
        dbnode: u32,
        lsn: Lsn,
    ) -> Result<Vec<RelTag>, PgReadError> {
        Ok(self
            .directory(rel_dir_key(spcnode, dbnode), DirKind::Rel, lsn)?
            .rels(spcnode, dbnode)
            .collect())
    }

    /// Whether the relation fork exists.
    pub fn rel_exists(&self, rel: RelTag, lsn: Lsn) -> Result<bool, PgReadError> {
        Ok(self.rel_size_if_exists(rel, lsn)?.is_some())
    }

    /// Size of an existing relation fork in blocks.
    pub fn rel_size(&self, rel: RelTag, lsn: Lsn) -> Result<u32, PgReadError> {
        self.rel_size_if_exists(rel, lsn)?
            .ok_or(PgReadError::NoRelation { rel, lsn })
    }

    /// Size of a relation fork, `None` if it does not exist: from the
    /// relation size cache when it knows, else from storage (remembered).
    fn rel_size_if_exists(&self, rel: RelTag, lsn: Lsn) -> Result<Option<u32>, PgReadError> {
        if let Some(size) = self.rel_size_cache().get(rel, lsn) {
            return Ok(size);
        }
        let exists = self
            .directory(rel_dir_key(rel.spcnode, rel.dbnode), DirKind::Rel, lsn)?
            .contains(&DirEntry::Rel {
                relnode: rel.relnode,
                forknum: rel.forknum,
            });
        let size = if exists {
            Some(self.stored_rel_size(rel, lsn)?)
        } else {
            None
        };
        self.rel_size_cache().remember(rel, lsn, size);
        Ok(size)
    }

    /// The stored size of a relation known to exist, such as one from
    /// [`Timeline::list_rels`] (0 when never set).
    pub fn stored_rel_size(&self, rel: RelTag, lsn: Lsn) -> Result<u32, PgReadError> {
        let key = rel_size_key(rel);
        optional(self.get_blocking(key, lsn))?
            .map(|v| decode_u32(key, &v))
            .transpose()
            .map(|s| s.unwrap_or(0))
    }

    /// Total size in bytes of the relations of one database.
    pub fn db_size(&self, spcnode: u32, dbnode: u32, lsn: Lsn) -> Result<u64, PgReadError> {
        let mut total = 0u64;
        for rel in self.list_rels(spcnode, dbnode, lsn)? {
            total += u64::from(self.stored_rel_size(rel, lsn)?) * BLCKSZ as u64;
        }
        Ok(total)
    }

    /// Sum of the sizes of every relation of every database, in bytes: the
    /// timeline's logical size at `lsn`.
    pub fn logical_size(&self, lsn: Lsn) -> Result<u64, PgReadError> {
        let mut total = 0;
        for (spcnode, dbnode) in self.list_dbs(lsn)? {
            total += self.db_size(spcnode, dbnode, lsn)?;
        }
        Ok(total)
    }

    /// Block `blkno` of a relation fork: its stored image, or zeroes for a
    /// block that was extended but never written. An error past the end.
    /// Goes through the image cache (the page service's GetPage).
    pub fn rel_page(&self, rel: RelTag, blkno: u32, lsn: Lsn) -> Result<Bytes, PgReadError> {
        let nblocks = self.rel_size(rel, lsn)?;
        if blkno >= nblocks {
            return Err(PgReadError::PastEnd {
                rel,
                blkno,
                nblocks,
                lsn,
            });
        }
        Ok(
            optional(self.get_page_cached(rel_block_key(rel, blkno), lsn))?
                .unwrap_or_else(|| Bytes::from_static(&ZERO_PAGE)),
        )
    }

    /// [`Timeline::rel_page`] when memory alone answers it: the relation
    /// size is in the relation size cache, the block is within it, and the
    /// image is in the image cache. `None` otherwise (including every error
    /// case, left to `rel_page` to report). `lsn` must be ingested.
    pub fn cached_rel_page(&self, rel: RelTag, blkno: u32, lsn: Lsn) -> Option<Bytes> {
        match self.rel_size_cache().get(rel, lsn) {
            Some(Some(nblocks)) if blkno < nblocks => {}
            _ => return None,
        }
        self.cached_page(rel_block_key(rel, blkno), lsn)
    }

    /// Like [`Timeline::rel_page`] for a block known to be within the
    /// relation (skips the size check, and the image cache: for
    /// whole-relation scans).
    pub fn rel_page_within(&self, rel: RelTag, blkno: u32, lsn: Lsn) -> Result<Bytes, PgReadError> {
        Ok(optional(self.get_blocking(rel_block_key(rel, blkno), lsn))?
            .unwrap_or_else(|| Bytes::from_static(&ZERO_PAGE)))
    }

    /// Segments of an SLRU, in order.
    pub fn slru_segments(&self, kind: SlruKind, lsn: Lsn) -> Result<Vec<u32>, PgReadError> {
        Ok(self
            .directory(slru_dir_key(kind), DirKind::SlruSegment, lsn)?
            .iter()
            .filter_map(|e| match e {
                DirEntry::SlruSegment(s) => Some(*s),
                _ => None,
            })
            .collect())
    }

    /// The whole content of an SLRU segment (its pages in order; pages never
    /// written are zeroes).
    pub fn slru_segment(&self, kind: SlruKind, segno: u32, lsn: Lsn) -> Result<Bytes, PgReadError> {
        let exists = self
            .directory(slru_dir_key(kind), DirKind::SlruSegment, lsn)?
            .contains(&DirEntry::SlruSegment(segno));
        if !exists {
            return Err(PgReadError::NoSlruSegment { kind, segno, lsn });
        }
        let key = slru_segment_size_key(kind, segno);
        let pages = optional(self.get_blocking(key, lsn))?
            .map(|v| decode_u32(key, &v))
            .transpose()?
            .unwrap_or(0);
        let mut out = BytesMut::with_capacity(pages as usize * BLCKSZ);
        for blk in 0..pages {
            let key = slru_block_key(kind, segno, blk);
            match optional(self.get_blocking(key, lsn))? {
                // A CLOG page value may carry a commit timestamp trailer
                // after the PostgreSQL page: only the page is returned.
                Some(page) if page.len() >= BLCKSZ => out.extend_from_slice(&page[..BLCKSZ]),
                Some(page) => {
                    return Err(PgReadError::Corrupt {
                        key,
                        reason: format!("an SLRU page is {BLCKSZ} bytes, this one {}", page.len()),
                    })
                }
                None => out.extend_from_slice(&ZERO_PAGE),
            }
        }
        Ok(out.freeze())
    }

    /// Transaction ids of the prepared transactions.
    pub fn twophase_xids(&self, lsn: Lsn) -> Result<Vec<u32>, PgReadError> {
        Ok(self
            .directory(TWOPHASEDIR_KEY, DirKind::TwoPhase, lsn)?
            .iter()
            .filter_map(|e| match e {
                DirEntry::TwoPhase(xid) => Some(*xid),
                _ => None,
            })
            .collect())
    }

    /// The state file of a prepared transaction.
    pub fn twophase_file(&self, xid: u32, lsn: Lsn) -> Result<Bytes, PgReadError> {
        Ok(self.get_blocking(twophase_file_key(xid), lsn)?)
    }

    /// The `pg_filenode.map` of a database (or of `global`), if stored.
    pub fn relmap_file(
        &self,
        spcnode: u32,
        dbnode: u32,
        lsn: Lsn,
    ) -> Result<Option<Bytes>, PgReadError> {
        optional(self.get_blocking(relmap_file_key(spcnode, dbnode), lsn))
    }

    /// A value that may be absent (`pg_control`, the checkpoint).
    pub fn get_optional(&self, key: Key, lsn: Lsn) -> Result<Option<Bytes>, PgReadError> {
        optional(self.get_blocking(key, lsn))
    }
}
