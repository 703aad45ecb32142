use proptest::prelude::*;

use super::*;

fn lsns(r: u64, n: u64) -> RequestLsns {
    RequestLsns {
        request_lsn: Lsn(r),
        not_modified_since: Lsn(n),
    }
}

const REL: RelTag = RelTag {
    spcnode: 1663,
    dbnode: 5,
    relnode: 16384,
    forknum: 0,
};

fn encoded(req: &PagestreamRequest) -> BytesMut {
    let mut b = BytesMut::new();
    req.encode(&mut b);
    b
}

#[test]
fn request_layout_is_big_endian_as_documented() {
    let req = PagestreamRequest::GetPage {
        lsns: lsns(0x0102_0304_0506_0708, 0x10),
        rel: REL,
        blkno: 7,
    };
    let b = encoded(&req);
    assert_eq!(b.len(), 34);
    assert_eq!(b[0], 2);
    assert_eq!(&b[1..9], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&b[9..17], &[0, 0, 0, 0, 0, 0, 0, 0x10]);
    assert_eq!(&b[17..21], &1663u32.to_be_bytes());
    assert_eq!(&b[21..25], &5u32.to_be_bytes());
    assert_eq!(&b[25..29], &16384u32.to_be_bytes());
    assert_eq!(b[29], 0);
    assert_eq!(&b[30..34], &7u32.to_be_bytes());
    assert_eq!(PagestreamRequest::parse(&b).unwrap(), req);

    let slru = PagestreamRequest::GetSlruSegment {
        lsns: lsns(u64::MAX, 1),
        kind: SlruKind::MultiXactMembers,
        segno: 0x12,
    };
    let b = encoded(&slru);
    assert_eq!((b.len(), b[0], b[17]), (22, 4, 2));
    assert_eq!(PagestreamRequest::parse(&b).unwrap(), slru);
    let db = PagestreamRequest::DbSize {
        lsns: lsns(9, 9),
        dbnode: 5,
    };
    assert_eq!(encoded(&db).len(), 21);
    assert_eq!(PagestreamRequest::parse(&encoded(&db)).unwrap(), db);
}

#[test]
fn bad_requests_are_errors() {
    assert_eq!(PagestreamRequest::parse(&[]), Err(RequestParseError::Empty));
    assert_eq!(
        PagestreamRequest::parse(&[9; 30]),
        Err(RequestParseError::UnknownTag(9))
    );
    let good = encoded(&PagestreamRequest::Exists {
        lsns: lsns(1, 1),
        rel: REL,
    });
    assert!(matches!(
        PagestreamRequest::parse(&good[..good.len() - 1]),
        Err(RequestParseError::WrongLength { .. })
    ));
    let mut long = good.clone();
    long.put_u8(0);
    assert!(matches!(
        PagestreamRequest::parse(&long),
        Err(RequestParseError::WrongLength { .. })
    ));
    let mut bad_fork = good.clone();
    bad_fork[29] = 4;
    assert!(matches!(
        PagestreamRequest::parse(&bad_fork),
        Err(RequestParseError::Invalid(_))
    ));
    let mut zero_rel = good.clone();
    zero_rel[25..29].fill(0);
    assert!(matches!(
        PagestreamRequest::parse(&zero_rel),
        Err(RequestParseError::Invalid(_))
    ));
    let mut bad_blk = encoded(&PagestreamRequest::GetPage {
        lsns: lsns(1, 1),
        rel: REL,
        blkno: 0,
    });
    bad_blk[30..34].fill(0xff);
    assert!(matches!(
        PagestreamRequest::parse(&bad_blk),
        Err(RequestParseError::Invalid(_))
    ));
    let mut bad_kind = encoded(&PagestreamRequest::GetSlruSegment {
        lsns: lsns(1, 1),
        kind: SlruKind::Clog,
        segno: 0,
    });
    bad_kind[17] = 3;
    assert!(matches!(
        PagestreamRequest::parse(&bad_kind),
        Err(RequestParseError::Invalid(_))
    ));
}

#[test]
fn responses_round_trip() {
    let cases = vec![
        PagestreamResponse::Exists(true),
        PagestreamResponse::Exists(false),
        PagestreamResponse::Nblocks(77),
        PagestreamResponse::GetPage(Bytes::from(vec![3u8; BLCKSZ])),
        PagestreamResponse::Error("relation 1663/5/16384 does not exist".into()),
        PagestreamResponse::DbSize(123_456),
        PagestreamResponse::GetSlruSegment(Bytes::from(vec![1u8; 2 * BLCKSZ])),
        PagestreamResponse::GetSlruSegment(Bytes::new()),
    ];
    for r in cases {
        let mut b = BytesMut::new();
        r.encode(&mut b);
        assert_eq!(PagestreamResponse::parse(b.freeze()).unwrap(), r);
    }
    let mut b = BytesMut::new();
    PagestreamResponse::GetSlruSegment(Bytes::from(vec![1u8; BLCKSZ])).encode(&mut b);
    assert_eq!(&b[..5], &[105, 0, 0, 0, 1]);
    assert!(PagestreamResponse::parse(Bytes::from_static(&[102, 1, 2])).is_err());
    assert!(PagestreamResponse::parse(Bytes::from_static(&[103, b'x'])).is_err());
    assert!(PagestreamResponse::parse(Bytes::from_static(&[105, 0xff, 0xff, 0xff, 0xff])).is_err());
}

fn any_rel() -> impl Strategy<Value = RelTag> {
    (1..=u32::MAX, any::<u32>(), 1..=u32::MAX, 0..=MAX_FORKNUM).prop_map(
        |(spcnode, dbnode, relnode, forknum)| RelTag {
            spcnode,
            dbnode,
            relnode,
            forknum,
        },
    )
}

fn any_request() -> impl Strategy<Value = PagestreamRequest> {
    let l = (any::<u64>(), any::<u64>()).prop_map(|(a, b)| lsns(a, b));
    prop_oneof![
        (l.clone(), any_rel()).prop_map(|(lsns, rel)| PagestreamRequest::Exists { lsns, rel }),
        (l.clone(), any_rel()).prop_map(|(lsns, rel)| PagestreamRequest::Nblocks { lsns, rel }),
        (l.clone(), any_rel(), 0..u32::MAX)
            .prop_map(|(lsns, rel, blkno)| PagestreamRequest::GetPage { lsns, rel, blkno }),
        (l.clone(), any::<u32>())
            .prop_map(|(lsns, dbnode)| PagestreamRequest::DbSize { lsns, dbnode }),
        (
            l,
            prop::sample::select(SlruKind::ALL.to_vec()),
            any::<u32>()
        )
            .prop_map(|(lsns, kind, segno)| PagestreamRequest::GetSlruSegment {
                lsns,
                kind,
                segno
            }),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(req in any_request()) {
        prop_assert_eq!(PagestreamRequest::parse(&encoded(&req)).unwrap(), req);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = PagestreamRequest::parse(&bytes);
        let _ = PagestreamResponse::parse(Bytes::from(bytes));
    }
}
