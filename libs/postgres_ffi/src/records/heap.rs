//! Heap and Heap2 records, read only as far as the visibility map needs
//! (`access/heapam_xlog.h`). Heap changes clear VM bits of the heap page
//! without registering the VM page in the record, so the page server must
//! clear them itself; `XLOG_HEAP2_VISIBLE` sets them (and does register the
//! VM page as block 0).
//!
//! Fixed prefixes read (the rest of the main data, e.g. old-tuple data for
//! logical decoding or multi-insert offsets, is not inspected):
//!
//! * `XLOG_HEAP_INSERT` (`xl_heap_insert`, 3 bytes): 0 `offnum` (u16), 2 `flags`.
//! * `XLOG_HEAP_DELETE` (`xl_heap_delete`, 8 bytes): 0 `xmax`, 4 `offnum`,
//!   6 `infobits_set`, 7 `flags`.
//! * `XLOG_HEAP_UPDATE` / `XLOG_HEAP_HOT_UPDATE` (`xl_heap_update`, 14
//!   bytes): 0 `old_xmax`, 4 `old_offnum`, 6 `old_infobits_set`, 7 `flags`, 8
//!   `new_xmax`, 12 `new_offnum`.
//! * `XLOG_HEAP_LOCK` (`xl_heap_lock`, 8 bytes): 0 `locking_xid`, 4
//!   `offnum`, 6 `infobits_set`, 7 `flags`.
//! * `XLOG_HEAP2_MULTI_INSERT` (`xl_heap_multi_insert`, 4 bytes + offsets):
//!   0 `flags`, 1 padding, 2 `ntuples` (u16).
//! * `XLOG_HEAP2_LOCK_UPDATED` (`xl_heap_lock_updated`, 8 bytes): 0 `xmax`,
//!   4 `offnum`, 6 `infobits_set`, 7 `flags`.
//! * `XLOG_HEAP2_VISIBLE` (`xl_heap_visible`, 5 bytes): 0 `cutoff_xid`, 4
//!   `flags` (VM bits to set).

use super::reader::BodyReader;
use super::{name, RecordError};
use crate::pg_constants::{
    RM_HEAP2_ID, RM_HEAP_ID, VISIBILITYMAP_ALL_FROZEN, VISIBILITYMAP_VALID_BITS,
    XLH_DELETE_ALL_VISIBLE_CLEARED, XLH_INSERT_ALL_VISIBLE_CLEARED, XLH_LOCK_ALL_FROZEN_CLEARED,
    XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED, XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED, XLOG_HEAP2_FREEZE_PAGE,
    XLOG_HEAP2_LOCK_UPDATED, XLOG_HEAP2_MULTI_INSERT, XLOG_HEAP2_NEW_CID, XLOG_HEAP2_PRUNE,
    XLOG_HEAP2_REWRITE, XLOG_HEAP2_VACUUM, XLOG_HEAP2_VISIBLE, XLOG_HEAP_CONFIRM, XLOG_HEAP_DELETE,
    XLOG_HEAP_HOT_UPDATE, XLOG_HEAP_INPLACE, XLOG_HEAP_INSERT, XLOG_HEAP_LOCK, XLOG_HEAP_OPMASK,
    XLOG_HEAP_TRUNCATE, XLOG_HEAP_UPDATE,
};

/// A Heap or Heap2 record that affects visibility-map bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapRecord {
    /// `XLOG_HEAP_INSERT` into block ref 0.
    Insert {
        /// Offset of the new tuple.
        offnum: u16,
        /// `XLH_INSERT_*` flags.
        flags: u8,
    },
    /// `XLOG_HEAP_DELETE` in block ref 0.
    Delete {
        /// Xmax set on the tuple.
        xmax: u32,
        /// Offset of the deleted tuple.
        offnum: u16,
        /// `XLH_DELETE_*` flags.
        flags: u8,
    },
    /// `XLOG_HEAP_UPDATE` or `XLOG_HEAP_HOT_UPDATE`: new tuple in block ref 0,
    /// old tuple in block ref 1 (or block ref 0 when both are on one page).
    Update {
        /// HOT update.
        hot: bool,
        /// Xmax set on the old tuple.
        old_xmax: u32,
        /// Offset of the old tuple.
        old_offnum: u16,
        /// Xmax of the new tuple.
        new_xmax: u32,
        /// Offset of the new tuple.
        new_offnum: u16,
        /// `XLH_UPDATE_*` flags.
        flags: u8,
    },
    /// `XLOG_HEAP_LOCK` in block ref 0.
    Lock {
        /// Locking xid or multixact.
        locking_xid: u32,
        /// Offset of the locked tuple.
        offnum: u16,
        /// `XLH_LOCK_*` flags.
        flags: u8,
    },
    /// `XLOG_HEAP2_LOCK_UPDATED` in block ref 0.
    LockUpdated {
        /// Xmax set on the tuple version.
        xmax: u32,
        /// Offset of the tuple.
        offnum: u16,
        /// `XLH_LOCK_*` flags.
        flags: u8,
    },
    /// `XLOG_HEAP2_MULTI_INSERT` into block ref 0.
    MultiInsert {
        /// Number of tuples inserted.
        ntuples: u16,
        /// `XLH_INSERT_*` flags.
        flags: u8,
    },
    /// `XLOG_HEAP2_VISIBLE`: set `flags` VM bits for the heap page of block
    /// ref 1 (block ref 0 is the VM page itself).
    Visible {
        /// Conflict horizon for hot standby.
        cutoff_xid: u32,
        /// `VISIBILITYMAP_*` bits set.
        flags: u8,
    },
}

/// VM bits a heap record clears, per heap page it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmClearing {
    /// Bits cleared for the heap page of block ref 0 (the new tuple's page).
    pub block0_bits: u8,
    /// Bits cleared for the old tuple's page of an update: block ref 1 if the
    /// record has one, else block ref 0.
    pub old_block_bits: u8,
}

impl HeapRecord {
    /// Which VM bits this record clears, as heap redo does with
    /// `visibilitymap_clear`: both bits for inserts, deletes and updates,
    /// only `VISIBILITYMAP_ALL_FROZEN` for row locks. `Visible` clears none.
    pub fn vm_clearing(&self) -> VmClearing {
        let both = |set: bool| if set { VISIBILITYMAP_VALID_BITS } else { 0 };
        match *self {
            HeapRecord::Insert { flags, .. } | HeapRecord::MultiInsert { flags, .. } => {
                VmClearing {
                    block0_bits: both(flags & XLH_INSERT_ALL_VISIBLE_CLEARED != 0),
                    old_block_bits: 0,
                }
            }
            HeapRecord::Delete { flags, .. } => VmClearing {
                block0_bits: both(flags & XLH_DELETE_ALL_VISIBLE_CLEARED != 0),
                old_block_bits: 0,
            },
            HeapRecord::Update { flags, .. } => VmClearing {
                block0_bits: both(flags & XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED != 0),
                old_block_bits: both(flags & XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED != 0),
            },
            HeapRecord::Lock { flags, .. } | HeapRecord::LockUpdated { flags, .. } => VmClearing {
                block0_bits: if flags & XLH_LOCK_ALL_FROZEN_CLEARED != 0 {
                    VISIBILITYMAP_ALL_FROZEN
                } else {
                    0
                },
                old_block_bits: 0,
            },
            HeapRecord::Visible { .. } => VmClearing::default(),
        }
    }
}

/// Decode a Heap rmgr body; `None` for records without VM effects.
pub(crate) fn decode_heap(info: u8, data: &[u8]) -> Result<Option<HeapRecord>, RecordError> {
    let rmgr = name(RM_HEAP_ID);
    let mut r = BodyReader::new(rmgr, info, data);
    let rec = match info & XLOG_HEAP_OPMASK {
        XLOG_HEAP_INSERT => HeapRecord::Insert {
            offnum: r.u16("offnum")?,
            flags: r.u8("flags")?,
        },
        XLOG_HEAP_DELETE => {
            let xmax = r.u32("xmax")?;
            let offnum = r.u16("offnum")?;
            r.skip(1, "infobits_set")?;
            HeapRecord::Delete {
                xmax,
                offnum,
                flags: r.u8("flags")?,
            }
        }
        op @ (XLOG_HEAP_UPDATE | XLOG_HEAP_HOT_UPDATE) => {
            let old_xmax = r.u32("old_xmax")?;
            let old_offnum = r.u16("old_offnum")?;
            r.skip(1, "old_infobits_set")?;
            let flags = r.u8("flags")?;
            HeapRecord::Update {
                hot: op == XLOG_HEAP_HOT_UPDATE,
                old_xmax,
                old_offnum,
                flags,
                new_xmax: r.u32("new_xmax")?,
                new_offnum: r.u16("new_offnum")?,
            }
        }
        XLOG_HEAP_LOCK => {
            let locking_xid = r.u32("locking_xid")?;
            let offnum = r.u16("offnum")?;
            r.skip(1, "infobits_set")?;
            HeapRecord::Lock {
                locking_xid,
                offnum,
                flags: r.u8("flags")?,
            }
        }
        XLOG_HEAP_TRUNCATE | XLOG_HEAP_CONFIRM | XLOG_HEAP_INPLACE => return Ok(None),
        _ => unreachable!("XLOG_HEAP_OPMASK leaves 8 opcodes, all handled"),
    };
    Ok(Some(rec))
}

/// Decode a Heap2 rmgr body; `None` for records without VM effects.
pub(crate) fn decode_heap2(info: u8, data: &[u8]) -> Result<Option<HeapRecord>, RecordError> {
    let rmgr = name(RM_HEAP2_ID);
    let mut r = BodyReader::new(rmgr, info, data);
    let rec = match info & XLOG_HEAP_OPMASK {
        XLOG_HEAP2_MULTI_INSERT => {
            let flags = r.u8("flags")?;
            r.skip(1, "padding")?;
            HeapRecord::MultiInsert {
                flags,
                ntuples: r.u16("ntuples")?,
            }
        }
        XLOG_HEAP2_LOCK_UPDATED => {
            let xmax = r.u32("xmax")?;
            let offnum = r.u16("offnum")?;
            r.skip(1, "infobits_set")?;
            HeapRecord::LockUpdated {
                xmax,
                offnum,
                flags: r.u8("flags")?,
            }
        }
        XLOG_HEAP2_VISIBLE => HeapRecord::Visible {
            cutoff_xid: r.u32("cutoff_xid")?,
            flags: r.u8("flags")?,
        },
        XLOG_HEAP2_REWRITE
        | XLOG_HEAP2_PRUNE
        | XLOG_HEAP2_VACUUM
        | XLOG_HEAP2_FREEZE_PAGE
        | XLOG_HEAP2_NEW_CID => return Ok(None),
        _ => unreachable!("XLOG_HEAP_OPMASK leaves 8 opcodes, all handled"),
    };
    Ok(Some(rec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg_constants::{VISIBILITYMAP_ALL_VISIBLE, XLOG_HEAP_INIT_PAGE};
    use crate::records::{decode_rmgr_record, RmgrRecord};

    fn heap(info: u8, body: &[u8]) -> HeapRecord {
        match decode_rmgr_record(RM_HEAP_ID, info, body).unwrap() {
            RmgrRecord::Heap(h) => h,
            other => panic!("{other:?}"),
        }
    }

    fn heap2(info: u8, body: &[u8]) -> HeapRecord {
        match decode_rmgr_record(RM_HEAP2_ID, info, body).unwrap() {
            RmgrRecord::Heap(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn insert_and_multi_insert() {
        // offnum 3 | flags ALL_VISIBLE_CLEARED; INIT_PAGE bit is ignored.
        let rec = heap(XLOG_HEAP_INIT_PAGE, &[3, 0, 0x01]);
        assert_eq!(
            rec,
            HeapRecord::Insert {
                offnum: 3,
                flags: 1
            }
        );
        assert_eq!(rec.vm_clearing().block0_bits, VISIBILITYMAP_VALID_BITS);
        assert_eq!(
            heap(0x00, &[3, 0, 0x08]).vm_clearing(),
            VmClearing::default()
        );
        // flags | pad | ntuples=2 | offsets 1, 2 (not inspected)
        let rec = heap2(0x50, &[0x01, 0, 2, 0, 1, 0, 2, 0]);
        assert_eq!(
            rec,
            HeapRecord::MultiInsert {
                ntuples: 2,
                flags: 1
            }
        );
        assert_eq!(rec.vm_clearing().block0_bits, VISIBILITYMAP_VALID_BITS);
        assert!(decode_rmgr_record(RM_HEAP_ID, 0x00, &[3, 0]).is_err());
    }

    #[test]
    fn delete_update_lock() {
        // xmax 700 | offnum 4 | infobits | flags 1
        let mut d = 700u32.to_le_bytes().to_vec();
        d.extend_from_slice(&[4, 0, 0x10, 0x01]);
        let rec = heap(0x10, &d);
        assert_eq!(
            rec,
            HeapRecord::Delete {
                xmax: 700,
                offnum: 4,
                flags: 1
            }
        );
        assert_eq!(rec.vm_clearing().block0_bits, VISIBILITYMAP_VALID_BITS);

        // old_xmax 700 | old_offnum 4 | infobits | flags OLD_CLEARED |
        // new_xmax 0 | new_offnum 9
        let mut u = 700u32.to_le_bytes().to_vec();
        u.extend_from_slice(&[4, 0, 0, 0x01, 0, 0, 0, 0, 9, 0]);
        let rec = heap(0x40, &u);
        assert_eq!(
            rec,
            HeapRecord::Update {
                hot: true,
                old_xmax: 700,
                old_offnum: 4,
                new_xmax: 0,
                new_offnum: 9,
                flags: 1
            }
        );
        assert_eq!(
            rec.vm_clearing(),
            VmClearing {
                block0_bits: 0,
                old_block_bits: VISIBILITYMAP_VALID_BITS
            }
        );
        u[7] = 0x02;
        assert_eq!(
            heap(0x20, &u).vm_clearing(),
            VmClearing {
                block0_bits: VISIBILITYMAP_VALID_BITS,
                old_block_bits: 0
            }
        );
        assert!(decode_rmgr_record(RM_HEAP_ID, 0x20, &u[..13]).is_err());

        let mut l = 700u32.to_le_bytes().to_vec();
        l.extend_from_slice(&[4, 0, 0, 0x01]);
        assert_eq!(
            heap(0x60, &l).vm_clearing().block0_bits,
            VISIBILITYMAP_ALL_FROZEN
        );
        assert_eq!(
            heap2(0x60, &l).vm_clearing().block0_bits,
            VISIBILITYMAP_ALL_FROZEN
        );
    }

    #[test]
    fn visible_and_others() {
        let mut v = 1234u32.to_le_bytes().to_vec();
        v.push(VISIBILITYMAP_ALL_VISIBLE);
        let rec = heap2(0x40, &v);
        assert_eq!(
            rec,
            HeapRecord::Visible {
                cutoff_xid: 1234,
                flags: VISIBILITYMAP_ALL_VISIBLE
            }
        );
        assert_eq!(rec.vm_clearing(), VmClearing::default());
        assert!(decode_rmgr_record(RM_HEAP2_ID, 0x40, &v[..4]).is_err());
        for (rmid, info) in [(RM_HEAP_ID, 0x30), (RM_HEAP_ID, 0x70), (RM_HEAP2_ID, 0x10)] {
            assert_eq!(
                decode_rmgr_record(rmid, info, &[]).unwrap(),
                RmgrRecord::Other { rmid, info }
            );
        }
    }
}
