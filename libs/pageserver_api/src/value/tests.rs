//! Tests of values, native records and directories.

use super::*;
use crate::key::{
    rel_block_key, rel_dir_key, rel_size_key, slru_block_key, slru_dir_key, slru_segment_size_key,
    twophase_file_key, RelTag, DBDIR_KEY, TWOPHASEDIR_KEY,
};
use proptest::prelude::*;

const REL: RelTag = RelTag {
    spcnode: 1663,
    dbnode: 5,
    relnode: 1259,
    forknum: 0,
};

fn clog_key() -> Key {
    slru_block_key(SlruKind::Clog, 0, 3)
}

fn clog(xids: &[u32], status: ClogStatus, commit_ts: Option<i64>) -> NativeRecord {
    NativeRecord::ClogSetStatus {
        xids: xids.to_vec(),
        status,
        commit_ts,
    }
}

fn rel_entry(relnode: u32, forknum: u8) -> DirEntry {
    DirEntry::Rel { relnode, forknum }
}

#[test]
fn clog_set_status_sets_two_bits_per_xid() {
    let page = Bytes::from(vec![0u8; BLCKSZ]);
    let recs = [
        clog(&[1, 6, 32767], ClogStatus::SubCommitted, None),
        clog(&[1, 6], ClogStatus::Committed, None),
        clog(&[32768 * 3 + 5], ClogStatus::Aborted, None),
    ];
    let out = reconstruct(clog_key(), Some(page), &recs).unwrap();
    assert_eq!(out.len(), BLCKSZ);
    assert_eq!(out[0], 0b0000_0100, "xid 1: bits 2-3 = COMMITTED");
    assert_eq!(out[1], 0b0001_1000, "xid 6 COMMITTED, xid 5 ABORTED");
    assert_eq!(out[BLCKSZ - 1], 0b1100_0000, "xid 32767 SUB_COMMITTED");
    assert_eq!(out.iter().filter(|b| **b != 0).count(), 3);
    assert_eq!(clog_page_xid_status(&out, 6), Some(ClogStatus::Committed));
    assert_eq!(clog_page_xid_status(&out, 5), Some(ClogStatus::Aborted));
    assert_eq!(clog_page_xid_status(&out, 7), Some(ClogStatus::InProgress));
    assert_eq!(clog_page_commit_ts(&out), None);
    assert_eq!(clog_page_xid_status(&out[..10], 6), None);
}

#[test]
fn clog_commit_ts_trailer_only_rises() {
    let mut recs = vec![
        NativeRecord::SlruZeroPage,
        clog(&[2], ClogStatus::Committed, Some(100)),
    ];
    let out = reconstruct(clog_key(), None, &recs).unwrap();
    assert_eq!(out.len(), BLCKSZ + CLOG_TRAILER_SIZE);
    assert_eq!(clog_page_commit_ts(&out), Some(100));
    assert_eq!(clog_page_without_trailer(&out).len(), BLCKSZ);
    recs.push(clog(&[3], ClogStatus::Committed, Some(50)));
    recs.push(clog(&[4], ClogStatus::Aborted, None));
    let out = reconstruct(clog_key(), None, &recs).unwrap();
    assert_eq!(clog_page_commit_ts(&out), Some(100));
    recs.push(clog(&[5], ClogStatus::Committed, Some(-7 + 300)));
    let out = reconstruct(clog_key(), None, &recs).unwrap();
    assert_eq!(clog_page_commit_ts(&out), Some(293));
    assert_eq!(clog_page_xid_status(&out, 4), Some(ClogStatus::Aborted));
    // A zero-page record resets the trailer too.
    recs.push(NativeRecord::SlruZeroPage);
    let out = reconstruct(clog_key(), None, &recs).unwrap();
    assert_eq!(&out[..], &[0u8; BLCKSZ][..]);
}

#[test]
fn clog_record_on_a_bad_page_names_the_key() {
    let base = Bytes::from(vec![0u8; 100]);
    let err = reconstruct(
        clog_key(),
        Some(base),
        &[clog(&[1], ClogStatus::Committed, None)],
    )
    .unwrap_err();
    assert!(matches!(err, ApplyError::BadValue { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&clog_key().to_string()) && msg.contains("100 bytes"),
        "{msg}"
    );
}

#[test]
fn slru_zero_page_initialises_any_slru_page() {
    let key = slru_block_key(SlruKind::MultiXactMembers, 7, 1);
    let out = reconstruct(
        key,
        Some(Bytes::from_static(b"junk")),
        &[NativeRecord::SlruZeroPage],
    );
    assert_eq!(out.unwrap(), Bytes::from(vec![0u8; BLCKSZ]));
    let err = reconstruct(rel_block_key(REL, 0), None, &[NativeRecord::SlruZeroPage]);
    assert!(matches!(err, Err(ApplyError::WrongKey { .. })));
}

#[test]
fn size_set_and_extend() {
    for key in [rel_size_key(REL), slru_segment_size_key(SlruKind::Clog, 2)] {
        let recs = [NativeRecord::RelSizeSet(10), NativeRecord::RelSizeExtend(5)];
        assert_eq!(
            reconstruct(key, None, &recs).unwrap(),
            &10u32.to_le_bytes()[..]
        );
        let base = Bytes::copy_from_slice(&3u32.to_le_bytes());
        let recs = [NativeRecord::RelSizeExtend(20)];
        assert_eq!(
            reconstruct(key, Some(base), &recs).unwrap(),
            &20u32.to_le_bytes()[..]
        );
        let err = reconstruct(key, None, &recs).unwrap_err();
        assert!(matches!(err, ApplyError::NoBase { .. }), "{err}");
        let err = reconstruct(key, Some(Bytes::from_static(b"abc")), &recs).unwrap_err();
        assert!(err.to_string().contains("3 bytes"), "{err}");
    }
    let err = reconstruct(rel_block_key(REL, 0), None, &[NativeRecord::RelSizeSet(1)]);
    assert!(matches!(err, Err(ApplyError::WrongKey { .. })));
}

#[test]
fn directory_edits_are_idempotent() {
    let key = rel_dir_key(1663, 5);
    let recs = [
        NativeRecord::DirInit(DirKind::Rel),
        NativeRecord::DirAdd(rel_entry(20, 0)),
        NativeRecord::DirAdd(rel_entry(10, 1)),
        NativeRecord::DirAdd(rel_entry(20, 0)),
        NativeRecord::DirRemove(rel_entry(30, 0)),
        NativeRecord::DirAdd(rel_entry(10, 0)),
        NativeRecord::DirRemove(rel_entry(10, 1)),
    ];
    let out = reconstruct(key, None, &recs).unwrap();
    let dir = Directory::decode(&out).unwrap();
    assert_eq!(dir.kind(), DirKind::Rel);
    let entries: Vec<_> = dir.iter().copied().collect();
    assert_eq!(entries, [rel_entry(10, 0), rel_entry(20, 0)]);
    // Continuing from the image gives the same as replaying everything.
    let more = [NativeRecord::DirRemove(rel_entry(20, 0))];
    let out = reconstruct(key, Some(out), &more).unwrap();
    assert_eq!(Directory::decode(&out).unwrap().len(), 1);
    // An empty directory image is the same as DirInit.
    let empty = Directory::new(DirKind::Db);
    assert_eq!(Directory::from_value(&empty.to_value()), Ok(empty.clone()));
    let init = Value::Record(NativeRecord::DirInit(DirKind::Db));
    assert_eq!(Directory::from_value(&init), Ok(empty));
    let add = Value::Record(NativeRecord::DirAdd(DirEntry::TwoPhase(1)));
    assert_eq!(
        Directory::from_value(&add),
        Err(ValueError::NotComplete("directory-add"))
    );
}

#[test]
fn directory_edits_of_the_wrong_kind_are_errors() {
    let mut dir = Directory::new(DirKind::SlruSegment);
    assert_eq!(
        dir.insert(DirEntry::TwoPhase(5)),
        Err(DirError::WrongKind {
            dir: DirKind::SlruSegment,
            entry: DirEntry::TwoPhase(5)
        })
    );
    assert_eq!(dir.insert(DirEntry::SlruSegment(5)), Ok(true));
    assert_eq!(dir.insert(DirEntry::SlruSegment(5)), Ok(false));
    assert_eq!(dir.remove(&DirEntry::SlruSegment(6)), Ok(false));
    let key = slru_dir_key(SlruKind::Clog);
    let base = Bytes::from(dir.encode());
    let wrong = [NativeRecord::DirAdd(DirEntry::TwoPhase(5))];
    let err = reconstruct(key, Some(base.clone()), &wrong).unwrap_err();
    assert!(matches!(err, ApplyError::WrongKey { .. }), "{err}");
    // A directory of another kind stored under the key.
    let err = reconstruct(
        TWOPHASEDIR_KEY,
        Some(base),
        &[NativeRecord::DirAdd(DirEntry::TwoPhase(5))],
    )
    .unwrap_err();
    assert!(err.to_string().contains("SLRU segment directory"), "{err}");
    // Invalid entries and non-directory values.
    let err = reconstruct(
        DBDIR_KEY,
        None,
        &[
            NativeRecord::DirInit(DirKind::Db),
            NativeRecord::DirAdd(DirEntry::Db {
                spcnode: 0,
                dbnode: 1,
            }),
        ],
    )
    .unwrap_err();
    assert!(matches!(err, ApplyError::Directory { .. }), "{err}");
    let err = reconstruct(
        DBDIR_KEY,
        Some(Bytes::from_static(b"not a directory")),
        &[NativeRecord::DirRemove(DirEntry::Db {
            spcnode: 1663,
            dbnode: 1,
        })],
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    let err = reconstruct(DBDIR_KEY, None, &[NativeRecord::DirInit(DirKind::Rel)]);
    assert!(matches!(err, Err(ApplyError::WrongKey { .. })));
}

#[test]
fn directory_decode_rejects_malformed_images() {
    let mut dir = Directory::new(DirKind::TwoPhase);
    dir.insert(DirEntry::TwoPhase(1)).unwrap();
    dir.insert(DirEntry::TwoPhase(2)).unwrap();
    let good = dir.encode();
    assert_eq!(good, [3, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]);
    let mut unsorted = good.clone();
    unsorted[5..9].copy_from_slice(&3u32.to_le_bytes());
    let mut dup = good.clone();
    dup[5..9].copy_from_slice(&2u32.to_le_bytes());
    let mut zero = good.clone();
    zero[5..9].copy_from_slice(&0u32.to_le_bytes());
    let mut huge = good.clone();
    huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut trailing = good.clone();
    trailing.push(0);
    let mut kind = good.clone();
    kind[0] = 9;
    for bad in [
        unsorted,
        dup,
        zero,
        huge,
        trailing,
        kind,
        good[..12].to_vec(),
        vec![],
    ] {
        assert!(Directory::decode(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn reconstruct_needs_a_start_and_a_valid_key() {
    let base = Bytes::from_static(b"page");
    assert_eq!(reconstruct(REL_KEY, Some(base.clone()), &[]), Ok(base));
    assert_eq!(
        reconstruct(REL_KEY, None, &[]),
        Err(ApplyError::NoValue { key: REL_KEY })
    );
    let bad_key = Key {
        field1: 9,
        ..Key::MIN
    };
    let err = reconstruct(bad_key, None, &[NativeRecord::SlruZeroPage]).unwrap_err();
    assert_eq!(err, ApplyError::InvalidKey(KeyError::Unknown(bad_key)));
    let err = reconstruct(
        twophase_file_key(9),
        None,
        &[NativeRecord::RelSizeExtend(1)],
    )
    .unwrap_err();
    assert!(err.to_string().contains("two-phase file of xid 9"), "{err}");
}

const REL_KEY: Key = rel_block_key(REL, 0);

#[test]
fn image_pages_need_the_exact_prefix() {
    let image = Value::Image(Bytes::from_static(b"page")).ser();
    assert_eq!(Value::serialized_image_page(&image), Some(&b"page"[..]));
    assert_eq!(Value::serialized_image_page(&image[..8]), None);
    assert_eq!(Value::serialized_image_page(&image[..12]), None);
    let mut longer = image.clone();
    longer.push(0);
    assert_eq!(Value::serialized_image_page(&longer), None);
    let mut record = image.clone();
    record[0] = 1;
    assert_eq!(Value::serialized_image_page(&record), None);
    let empty = Value::Image(Bytes::new()).ser();
    assert_eq!(Value::serialized_image_page(&empty), Some(&b""[..]));
}

#[test]
fn will_init() {
    assert!(Value::Image(Bytes::new()).will_init());
    assert_eq!(Value::Image(Bytes::new()).ser()[0], Value::IMAGE_TAG);
    assert_ne!(
        Value::from(NativeRecord::SlruZeroPage).ser()[0],
        Value::IMAGE_TAG
    );
    assert!(Value::is_serialized_image(
        &Value::Image(Bytes::new()).ser()
    ));
    assert!(!Value::is_serialized_image(
        &Value::from(NativeRecord::RelSizeSet(1)).ser()
    ));
    assert!(!Value::is_serialized_image(&[]));
    assert!(Value::from(NativeRecord::SlruZeroPage).will_init());
    assert!(Value::from(NativeRecord::RelSizeSet(1)).will_init());
    assert!(Value::from(NativeRecord::DirInit(DirKind::Rel)).will_init());
    assert!(!Value::from(NativeRecord::RelSizeExtend(1)).will_init());
    assert!(!Value::from(clog(&[], ClogStatus::Committed, None)).will_init());
    assert!(!Value::from(NativeRecord::DirAdd(DirEntry::TwoPhase(1))).will_init());
    assert!(!Value::from(NativeRecord::DirRemove(DirEntry::TwoPhase(1))).will_init());
}

#[test]
fn des_shared_slices_images_and_checks_like_des() {
    let buf = Bytes::from(Value::Image(Bytes::from_static(b"page")).ser());
    let Ok(Value::Image(img)) = Value::des_shared(&buf) else {
        panic!("an image");
    };
    assert_eq!(&img[..], b"page");
    assert_eq!(img.as_ptr(), buf[9..].as_ptr(), "a slice, not a copy");
    // A length that does not match is the same error as des gives.
    for bad in [&buf[..buf.len() - 1], &buf[..5]] {
        let bad = Bytes::copy_from_slice(bad);
        assert_eq!(Value::des_shared(&bad), Value::des(&bad));
        assert!(Value::des_shared(&bad).is_err());
    }
    let mut long = buf.to_vec();
    long.push(0);
    let long = Bytes::from(long);
    assert_eq!(Value::des_shared(&long), Value::des(&long));
    assert!(Value::des_shared(&long).is_err());
}

#[test]
fn des_rejects_malformed_input() {
    assert!(matches!(Value::des(&[]), Err(ValueError::Truncated { .. })));
    assert_eq!(
        Value::des(&[99]),
        Err(ValueError::UnknownTag {
            what: "value",
            tag: 99
        })
    );
    assert_eq!(
        Value::des(&[TAG_SLRU_ZERO_PAGE, 0]),
        Err(ValueError::TrailingBytes(1))
    );
    let mut huge_image = vec![TAG_IMAGE];
    huge_image.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        Value::des(&huge_image),
        Err(ValueError::Truncated { .. })
    ));
    let mut huge_count = vec![TAG_CLOG_SET_STATUS, 1, 0];
    huge_count.extend_from_slice(&u32::MAX.to_le_bytes());
    huge_count.extend_from_slice(&[0; 8]);
    assert_eq!(
        Value::des(&huge_count),
        Err(ValueError::Count {
            what: "CLOG xid",
            count: u32::MAX,
            have: 8
        })
    );
    assert!(Value::des(&[TAG_CLOG_SET_STATUS, 4, 0, 0, 0, 0, 0]).is_err());
    assert!(Value::des(&[TAG_CLOG_SET_STATUS, 1, 2, 0, 0, 0, 0]).is_err());
    assert!(Value::des(&[TAG_DIR_INIT, 4]).is_err());
}

fn any_entry() -> impl Strategy<Value = DirEntry> {
    prop_oneof![
        (any::<u32>(), any::<u8>()).prop_map(|(relnode, forknum)| rel_entry(relnode, forknum)),
        (any::<u32>(), any::<u32>()).prop_map(|(spcnode, dbnode)| DirEntry::Db { spcnode, dbnode }),
        any::<u32>().prop_map(DirEntry::SlruSegment),
        any::<u32>().prop_map(DirEntry::TwoPhase),
    ]
}

fn any_status() -> impl Strategy<Value = ClogStatus> {
    (0u8..4).prop_map(ClogStatus::from_bits)
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Value::Image(b.into())),
        (
            prop::collection::vec(any::<u32>(), 0..50),
            any_status(),
            any::<Option<i64>>()
        )
            .prop_map(|(xids, status, commit_ts)| NativeRecord::ClogSetStatus {
                xids,
                status,
                commit_ts
            }
            .into()),
        Just(NativeRecord::SlruZeroPage.into()),
        any::<u32>().prop_map(|n| NativeRecord::RelSizeSet(n).into()),
        any::<u32>().prop_map(|n| NativeRecord::RelSizeExtend(n).into()),
        prop::sample::select(DirKind::ALL.to_vec()).prop_map(|k| NativeRecord::DirInit(k).into()),
        any_entry().prop_map(|e| NativeRecord::DirAdd(e).into()),
        any_entry().prop_map(|e| NativeRecord::DirRemove(e).into()),
    ]
}

/// Valid relation entries from a small space, so edits collide.
fn small_rel_entry() -> impl Strategy<Value = DirEntry> {
    (1u32..8, 0..=MAX_FORKNUM).prop_map(|(r, f)| rel_entry(r, f))
}

proptest! {
    #[test]
    fn ser_des_round_trip(v in any_value()) {
        let bytes = v.ser();
        prop_assert_eq!(Value::des(&bytes), Ok(v.clone()));
        prop_assert_eq!(Value::des_shared(&Bytes::from(bytes.clone())), Ok(v.clone()));
        let mut appended = vec![1, 2, 3];
        v.ser_into(&mut appended);
        prop_assert_eq!(&appended[3..], &bytes[..]);
        // Exactly the images split into prefix and page, which join again.
        let page = Value::serialized_image_page(&bytes);
        match &v {
            Value::Image(b) => prop_assert_eq!(page, Some(&b[..])),
            Value::Record(_) => prop_assert_eq!(page, None),
        }
        if let Some(page) = page {
            let mut joined = Value::serialized_image_prefix(page.len()).to_vec();
            joined.extend_from_slice(page);
            prop_assert_eq!(joined, bytes);
        }
    }

    #[test]
    fn only_exact_image_forms_have_a_page(
        page in proptest::collection::vec(any::<u8>(), 0..40),
        at in 0..Value::IMAGE_PREFIX_LEN,
        flip in 1..=255u8,
    ) {
        let mut bytes = Value::serialized_image_prefix(page.len()).to_vec();
        bytes.extend_from_slice(&page);
        prop_assert_eq!(Value::serialized_image_page(&bytes), Some(&page[..]));
        prop_assert_eq!(Value::des(&bytes), Ok(Value::Image(Bytes::from(page.clone()))));
        bytes[at] ^= flip;
        prop_assert_eq!(Value::serialized_image_page(&bytes), None);
    }

    #[test]
    fn truncated_or_extended_input_is_an_error(v in any_value(), extra in any::<u8>()) {
        let bytes = v.ser();
        for len in 0..bytes.len() {
            prop_assert!(Value::des(&bytes[..len]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(extra);
        prop_assert_eq!(Value::des(&longer), Err(ValueError::TrailingBytes(1)));
    }

    #[test]
    fn random_bytes_never_panic_in_des(
        tag in 0u8..10,
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut input = vec![tag];
        input.extend_from_slice(&bytes);
        for buf in [&bytes[..], &input[..]] {
            // The encoding is canonical: whatever decodes encodes back.
            if let Ok(v) = Value::des(buf) {
                prop_assert_eq!(v.ser(), buf.to_vec());
            }
            if let Ok(d) = Directory::decode(buf) {
                prop_assert_eq!(d.encode(), buf.to_vec());
            }
        }
    }

    #[test]
    fn directory_edits_match_a_set(
        edits in prop::collection::vec((any::<bool>(), small_rel_entry()), 0..40),
        split in any::<prop::sample::Index>(),
    ) {
        let key = rel_dir_key(1663, 5);
        let mut model = BTreeSet::new();
        let mut recs = vec![NativeRecord::DirInit(DirKind::Rel)];
        for (add, e) in &edits {
            if *add {
                model.insert(*e);
                recs.push(NativeRecord::DirAdd(*e));
            } else {
                model.remove(e);
                recs.push(NativeRecord::DirRemove(*e));
            }
        }
        let out = reconstruct(key, None, &recs).unwrap();
        let dir = Directory::decode(&out).unwrap();
        prop_assert_eq!(dir.iter().copied().collect::<BTreeSet<_>>(), model);
        // Materialising an image half way changes nothing.
        let at = split.index(recs.len());
        let mid = reconstruct(key, None, &recs[..at.max(1)]).unwrap();
        prop_assert_eq!(reconstruct(key, Some(mid), &recs[at.max(1)..]).unwrap(), out);
    }

    #[test]
    fn clog_last_status_wins(
        sets in prop::collection::vec(
            (prop::collection::vec(0u32..200, 0..10), any_status()), 0..20),
    ) {
        let mut model = [ClogStatus::InProgress; 200];
        let mut recs = vec![NativeRecord::SlruZeroPage];
        for (xids, status) in &sets {
            for x in xids {
                model[*x as usize] = *status;
            }
            recs.push(clog(xids, *status, None));
        }
        let out = reconstruct(clog_key(), None, &recs).unwrap();
        for (xid, status) in model.iter().enumerate() {
            prop_assert_eq!(clog_page_xid_status(&out, xid as u32), Some(*status));
        }
    }
}

#[test]
fn slru_write_patches_a_page() {
    use crate::key::{slru_block_key, SlruKind};
    let key = slru_block_key(SlruKind::MultiXactOffsets, 0, 3);
    let recs = [
        NativeRecord::SlruZeroPage,
        NativeRecord::SlruWrite {
            offset: 8,
            bytes: vec![1, 2, 3, 4],
        },
        NativeRecord::SlruWrite {
            offset: 8190,
            bytes: vec![9, 9],
        },
    ];
    let page = reconstruct(key, None, &recs).unwrap();
    assert_eq!(&page[8..12], &[1, 2, 3, 4]);
    assert_eq!(&page[8190..], &[9, 9]);
    assert_eq!(page.iter().map(|b| u32::from(*b)).sum::<u32>(), 28);
    for rec in &recs[1..] {
        let v = Value::Record(rec.clone());
        assert_eq!(Value::des(&v.ser()).unwrap(), v);
    }
    // Writes leaving the page, or on keys that are not SLRU pages, are errors.
    let out = NativeRecord::SlruWrite {
        offset: 8191,
        bytes: vec![1, 2],
    };
    assert!(Value::des(&Value::Record(out.clone()).ser()).is_err());
    assert!(reconstruct(key, Some(Bytes::from(vec![0; 8192])), &[out]).is_err());
    let rel = crate::key::rel_size_key(crate::key::RelTag {
        spcnode: 1663,
        dbnode: 1,
        relnode: 2,
        forknum: 0,
    });
    assert!(reconstruct(rel, Some(Bytes::from(vec![0; 4])), &recs[1..2]).is_err());
}
