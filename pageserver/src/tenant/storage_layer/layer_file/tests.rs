use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use pageserver_api::key::Key;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use utils::crashsafe;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::*;
use crate::tenant::storage_layer::{LayerName, PersistentLayerDesc};

const TENANT: TenantId = TenantId::from_bytes([0x11; 16]);
const TIMELINE: TimelineId = TimelineId::from_bytes([0x22; 16]);

fn key(n: u32) -> Key {
    Key {
        field2: 1663,
        field3: 5,
        field4: 16384,
        field6: n,
        ..Key::MIN
    }
}

/// One value as put: key, lsn, value, compression asked for.
type Put = (Key, Lsn, Vec<u8>, bool);

fn write_layer(
    dir: &Path,
    is_delta: bool,
    key_start: Key,
    lsn_range: Range<Lsn>,
    puts: &[Put],
    key_end: Key,
) -> (PersistentLayerDesc, PathBuf) {
    let mut w = LayerWriter::new(dir, TENANT, TIMELINE, is_delta, key_start, lsn_range).unwrap();
    for (k, l, v, c) in puts {
        w.put(*k, *l, v, *c).unwrap();
    }
    assert_eq!(w.num_values(), puts.len());
    w.finish(key_end).unwrap()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Iterating `r` gives exactly the values of `puts`, in order.
fn assert_holds_in_order(r: &LayerReader, puts: &[Put]) {
    let values: Vec<_> = r.iter_values().map(|v| v.unwrap()).collect();
    assert_eq!(values.len(), puts.len());
    for ((k, l, v), (pk, pl, pv, _)) in values.iter().zip(puts) {
        assert_eq!((k, l, &v[..]), (pk, pl, &pv[..]));
    }
}

/// What `get_values` must return according to the input.
fn expected_values(puts: &[Put], k: Key, lsns: &Range<Lsn>) -> Vec<(Lsn, Bytes)> {
    let mut v: Vec<(Lsn, Bytes)> = puts
        .iter()
        .filter(|(pk, pl, _, _)| *pk == k && lsns.contains(pl))
        .map(|(_, l, v, _)| (*l, Bytes::copy_from_slice(v)))
        .collect();
    v.reverse();
    v
}

/// Checks everything a reader says against the input.
fn check_reader(
    path: &Path,
    desc: &PersistentLayerDesc,
    puts: &[Put],
    probe_keys: &[Key],
    lsn_probes: &[Range<Lsn>],
) {
    let r = LayerReader::open(path).unwrap();
    assert_eq!(r.desc(), desc);
    assert_eq!(r.path(), path);
    assert_eq!((r.tenant_id(), r.timeline_id()), (TENANT, TIMELINE));
    assert_eq!(desc.file_size, fs::metadata(path).unwrap().len());
    let name: LayerName = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
    assert_eq!(name, desc.layer_name());
    assert_eq!(r.num_values(), puts.len());
    let entries: Vec<(Key, Lsn)> = r.index_entries().collect();
    assert_eq!(entries, puts.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>());
    for &k in probe_keys {
        for lsns in lsn_probes {
            let want = expected_values(puts, k, lsns);
            assert_eq!(
                r.get_values(k, lsns.clone()).unwrap(),
                want,
                "key {k} lsns {lsns:?}"
            );
        }
    }
    let want: Vec<(Key, Lsn, Bytes)> = puts
        .iter()
        .map(|(k, l, v, _)| (*k, *l, Bytes::copy_from_slice(v)))
        .collect();
    let all: Vec<_> = r.iter_values().collect::<Result<_, _>>().unwrap();
    assert_eq!(all, want);
    for chunk in [1, 64, 10_000] {
        let all: Vec<_> = r
            .iter_values_chunked(chunk)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(all, want, "chunk size {chunk}");
    }
    r.verify().unwrap();
}

fn value_strategy() -> impl Strategy<Value = (Vec<u8>, bool)> {
    prop_oneof![
        // Random bytes: compression does not pay.
        (
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>()
        ),
        // Runs of one byte: compress well.
        (any::<u8>(), 0usize..9000, any::<bool>()).prop_map(|(b, n, c)| (vec![b; n], c)),
    ]
}

fn lsn_probes(lo: u64, hi: u64, cuts: &[u64]) -> Vec<Range<Lsn>> {
    let mut probes = vec![
        Lsn(0)..Lsn(u64::MAX),
        Lsn(lo)..Lsn(hi),
        Lsn(hi)..Lsn(u64::MAX),
        Lsn(5)..Lsn(5),
    ];
    for &c in cuts {
        probes.push(Lsn(lo)..Lsn(c));
        probes.push(Lsn(c)..Lsn(hi));
        probes.push(Lsn(c)..Lsn(c + 1));
    }
    probes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn delta_round_trip(
        input in proptest::collection::btree_map((0u32..20, 100u64..200), value_strategy(), 0..60),
        cuts in proptest::collection::vec(100u64..200, 3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let puts: Vec<Put> = input
            .into_iter()
            .map(|((k, l), (v, c))| (key(k), Lsn(l), v, c))
            .collect();
        let lsns = Lsn(100)..Lsn(200);
        let (desc, path) = write_layer(dir.path(), true, key(0), lsns, &puts, key(20));
        prop_assert!(desc.is_delta);
        prop_assert_eq!(desc.key_range.clone(), key(0)..key(20));
        prop_assert_eq!(desc.lsn_range.clone(), Lsn(100)..Lsn(200));
        let probe_keys: Vec<Key> = (0..21).map(key).collect();
        check_reader(&path, &desc, &puts, &probe_keys, &lsn_probes(100, 200, &cuts));
        prop_assert_eq!(dir_names(dir.path()), vec![desc.layer_name().to_string()]);
    }

    #[test]
    fn image_round_trip(
        input in proptest::collection::btree_map(0u32..500, value_strategy(), 0..60),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let lsn = Lsn(0x5000);
        let puts: Vec<Put> = input.into_iter().map(|(k, (v, c))| (key(k), lsn, v, c)).collect();
        let lsns = lsn..Lsn(0x5001);
        let (desc, path) = write_layer(dir.path(), false, Key::MIN, lsns, &puts, Key::MAX);
        prop_assert!(!desc.is_delta);
        prop_assert_eq!(desc.image_lsn(), lsn);
        let probe_keys: Vec<Key> = (0..501).map(key).chain([Key::MIN]).collect();
        let probes = lsn_probes(0x5000, 0x5001, &[0x4fff, 0x5000]);
        check_reader(&path, &desc, &puts, &probe_keys, &probes);
    }
}

/// A small delta layer with raw, compressed and empty values, and its input.
fn small_delta(dir: &Path) -> (PathBuf, Vec<Put>) {
    let puts: Vec<Put> = vec![
        (key(1), Lsn(0x10), b"first".to_vec(), false),
        (key(1), Lsn(0x18), vec![7u8; 200], true),
        (key(2), Lsn(0x11), Vec::new(), true),
        (key(3), Lsn(0x12), b"not worth compressing".to_vec(), true),
        (key(3), Lsn(0x1f), vec![0u8; 300], true),
    ];
    let (_, path) = write_layer(dir, true, key(0), Lsn(0x10)..Lsn(0x20), &puts, key(4));
    (path, puts)
}

/// A small image layer.
fn small_image(dir: &Path) -> (PathBuf, Vec<Put>) {
    let lsn = Lsn(0x40);
    let puts: Vec<Put> = vec![
        (key(5), lsn, vec![1u8; 8192], true),
        (key(6), lsn, b"page".to_vec(), true),
        (key(9), lsn, b"raw page".to_vec(), false),
    ];
    let (_, path) = write_layer(dir, false, key(5), lsn..Lsn(0x41), &puts, key(10));
    (path, puts)
}

/// Reads a damaged file every way; nothing may return data different from
/// `puts`, and at least verify must fail. Returns the errors seen.
fn read_damaged(path: &Path, puts: &[Put]) -> Vec<LayerError> {
    let mut errors = Vec::new();
    let r = match LayerReader::open(path) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let entries: Vec<(Key, Lsn)> = r.index_entries().collect();
    assert_eq!(entries, puts.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>());
    for (k, _, _, _) in puts {
        let all = Lsn(0)..Lsn(u64::MAX);
        match r.get_values(*k, all.clone()) {
            Ok(v) => assert_eq!(v, expected_values(puts, *k, &all), "wrong data for {k}"),
            Err(e) => errors.push(e),
        }
    }
    for (i, item) in r.iter_values().enumerate() {
        match item {
            Ok((k, l, v)) => assert_eq!((k, l, &v[..]), (puts[i].0, puts[i].1, &puts[i].2[..])),
            Err(e) => errors.push(e),
        }
    }
    // As compaction reads: from a map of the file, raw.
    let map = r
        .map_cached()
        .unwrap()
        .expect("just written: in the page cache");
    for (i, item) in r
        .iter_raw_keys_mapped(Key::MIN..Key::MAX, Some(&map))
        .enumerate()
    {
        match item {
            Ok((k, l, raw)) => {
                let v = decode_stored(raw.flags, raw.stored).unwrap();
                assert_eq!((k, l, &v[..]), (puts[i].0, puts[i].1, &puts[i].2[..]));
            }
            Err(e) => errors.push(e),
        }
    }
    match r.verify() {
        Ok(()) => panic!("verify accepted a damaged file {}", path.display()),
        Err(e) => errors.push(e),
    }
    errors
}

fn assert_names_file(errors: &[LayerError], path: &Path, file_len: u64) {
    assert!(!errors.is_empty());
    for e in errors {
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        match e {
            LayerError::Corrupt { offset, .. } => {
                assert!(*offset <= file_len, "{msg}");
                assert!(msg.contains(&format!("offset {offset}")), "{msg}");
            }
            other => panic!("expected a corruption error, got {other}"),
        }
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let damaged_dir = tempfile::tempdir().unwrap();
    for (path, puts) in [small_delta(dir.path()), small_image(dir.path())] {
        let good = fs::read(&path).unwrap();
        let damaged = damaged_dir.path().join(path.file_name().unwrap());
        for pos in 0..good.len() {
            for mask in [0xffu8, 0x01, 0x80] {
                let mut bytes = good.clone();
                bytes[pos] ^= mask;
                fs::write(&damaged, &bytes).unwrap();
                let errors = read_damaged(&damaged, &puts);
                assert_names_file(&errors, &damaged, good.len() as u64);
            }
        }
        fs::write(&damaged, &good).unwrap();
        LayerReader::open(&damaged).unwrap().verify().unwrap();
    }
}

#[test]
fn every_truncation_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let damaged_dir = tempfile::tempdir().unwrap();
    for (path, _) in [small_delta(dir.path()), small_image(dir.path())] {
        let good = fs::read(&path).unwrap();
        let damaged = damaged_dir.path().join(path.file_name().unwrap());
        for len in 0..good.len() {
            fs::write(&damaged, &good[..len]).unwrap();
            let err = LayerReader::open(&damaged).unwrap_err();
            assert_names_file(&[err], &damaged, len as u64);
        }
    }
}

#[test]
fn file_name_must_match_header() {
    let dir = tempfile::tempdir().unwrap();
    let (path, puts) = small_delta(dir.path());
    // A name that is not a layer name is not checked (e.g. a download in progress).
    let other = dir.path().join("download.partial");
    fs::copy(&path, &other).unwrap();
    assert_eq!(LayerReader::open(&other).unwrap().num_values(), puts.len());
    let wrong = LayerName {
        key_range: key(0)..key(5),
        lsn_range: Lsn(0x10)..Lsn(0x20),
        is_delta: true,
    };
    let wrong_path = dir.path().join(wrong.to_string());
    fs::rename(&other, &wrong_path).unwrap();
    let err = LayerReader::open(&wrong_path).unwrap_err();
    assert!(
        matches!(err, LayerError::Corrupt { offset: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&wrong.to_string()));
}

#[test]
fn not_a_layer_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk");
    fs::write(&path, vec![0x5a; 4096]).unwrap();
    let err = LayerReader::open(&path).unwrap_err();
    assert!(
        err.to_string().contains("junk") && err.to_string().contains("offset 0"),
        "{err}"
    );
    let missing = dir.path().join("missing");
    let err = LayerReader::open(&missing).unwrap_err();
    assert!(
        matches!(err, LayerError::Io { .. }) && err.to_string().contains("missing"),
        "{err}"
    );
}

#[test]
fn writer_misuse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let misuse = |r: Result<LayerWriter, LayerError>| match r {
        Err(LayerError::Misuse(msg)) => msg,
        Err(other) => panic!("expected misuse, got {other}"),
        Ok(_) => panic!("expected misuse"),
    };
    misuse(LayerWriter::new(
        d,
        TENANT,
        TIMELINE,
        true,
        key(0),
        Lsn(5)..Lsn(5),
    ));
    misuse(LayerWriter::new(
        d,
        TENANT,
        TIMELINE,
        false,
        key(0),
        Lsn(5)..Lsn(7),
    ));
    misuse(LayerWriter::new(
        d,
        TENANT,
        TIMELINE,
        false,
        key(0),
        Lsn(u64::MAX)..Lsn(u64::MAX),
    ));
    misuse(LayerWriter::new(
        d,
        TENANT,
        TIMELINE,
        true,
        Key::MAX,
        Lsn(5)..Lsn(7),
    ));

    let mut w = LayerWriter::new(d, TENANT, TIMELINE, true, key(10), Lsn(0x10)..Lsn(0x20)).unwrap();
    w.put(key(11), Lsn(0x15), b"a", false).unwrap();
    let size = w.bytes_written();
    let bad_puts = [
        (key(9), Lsn(0x16)),   // before the start key
        (key(11), Lsn(0x15)),  // duplicate
        (key(11), Lsn(0x14)),  // LSN going back
        (key(10), Lsn(0x18)),  // key going back
        (key(12), Lsn(0x20)),  // LSN at the exclusive end
        (key(12), Lsn(0x0f)),  // LSN before the start
        (Key::MAX, Lsn(0x18)), // no value can live at Key::MAX
    ];
    for (k, l) in bad_puts {
        match w.put(k, l, b"b", true) {
            Err(LayerError::Misuse(msg)) => {
                assert!(msg.contains(&d.display().to_string()), "{msg}")
            }
            other => panic!("{k} {l}: expected misuse, got {other:?}"),
        }
    }
    // Misuse changed nothing: the writer goes on.
    assert_eq!((w.num_values(), w.bytes_written()), (1, size));
    w.put(key(11), Lsn(0x16), b"c", false).unwrap();

    let mut img =
        LayerWriter::new(d, TENANT, TIMELINE, false, key(0), Lsn(0x30)..Lsn(0x31)).unwrap();
    img.put(key(3), Lsn(0x30), b"x", true).unwrap();
    for (k, l) in [
        (key(4), Lsn(0x31)),
        (key(3), Lsn(0x30)),
        (key(2), Lsn(0x30)),
    ] {
        assert!(
            matches!(img.put(k, l, b"y", false), Err(LayerError::Misuse(_))),
            "{k} {l}"
        );
    }
    match img.finish(key(3)) {
        Err(LayerError::Misuse(msg)) => assert!(msg.contains("end key"), "{msg}"),
        other => panic!("expected misuse, got {other:?}"),
    }
    // The failed finish left nothing behind; the delta writer still works.
    let (desc, path) = w.finish(key(12)).unwrap();
    assert_eq!(dir_names(d), vec![desc.layer_name().to_string()]);
    let r = LayerReader::open(&path).unwrap();
    let got = r.get_values(key(11), Lsn(0)..Lsn(0x100)).unwrap();
    assert_eq!(
        got,
        vec![
            (Lsn(0x16), Bytes::from_static(b"c")),
            (Lsn(0x15), Bytes::from_static(b"a"))
        ]
    );
}

#[test]
fn empty_layer_and_end_key_checks() {
    let dir = tempfile::tempdir().unwrap();
    let w = LayerWriter::new(dir.path(), TENANT, TIMELINE, true, key(3), Lsn(1)..Lsn(2)).unwrap();
    assert!(matches!(w.finish(key(3)), Err(LayerError::Misuse(_))));
    assert!(dir_names(dir.path()).is_empty());
    let (desc, path) = write_layer(dir.path(), false, key(3), Lsn(1)..Lsn(2), &[], key(4));
    check_reader(&path, &desc, &[], &[key(3)], &[Lsn(0)..Lsn(9)]);
}

#[test]
fn dropped_writer_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut w =
        LayerWriter::new(dir.path(), TENANT, TIMELINE, true, Key::MIN, Lsn(1)..Lsn(9)).unwrap();
    w.put(key(1), Lsn(2), &[3u8; 5000], true).unwrap();
    let names = dir_names(dir.path());
    assert_eq!(names.len(), 1);
    assert!(
        crashsafe::is_temporary(&dir.path().join(&names[0])),
        "{names:?}"
    );
    // Two writers at once get different temporary files.
    let w2 =
        LayerWriter::new(dir.path(), TENANT, TIMELINE, true, Key::MIN, Lsn(1)..Lsn(9)).unwrap();
    assert_eq!(dir_names(dir.path()).len(), 2);
    drop(w);
    drop(w2);
    assert!(dir_names(dir.path()).is_empty());
}

#[test]
fn large_values_and_compression() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let random: Vec<u8> = (0..1_500_000).map(|_| rng.gen()).collect();
    let lsn = Lsn(0x100);
    let puts: Vec<Put> = vec![
        (key(1), lsn, vec![9u8; 8192], true),
        (key(2), lsn, random, true),
        // Over the compression limit: stored raw although compressible.
        (key(3), lsn, vec![1u8; MAX_COMPRESSIBLE_VALUE + 1], true),
        (key(4), lsn, vec![2u8; 8192], false),
    ];
    let (desc, path) = write_layer(dir.path(), false, key(1), lsn..Lsn(0x101), &puts, key(5));
    // Only the compressible page within the limit got smaller.
    let raw_total = puts.iter().map(|p| p.2.len() as u64).sum::<u64>();
    assert!(desc.file_size < raw_total - 7000, "{}", desc.file_size);
    assert!(desc.file_size > raw_total - 8192, "{}", desc.file_size);
    let keys: Vec<Key> = (0..6).map(key).collect();
    check_reader(&path, &desc, &puts, &keys, &[lsn..Lsn(0x101)]);
    assert_no_space_reserved_beyond_the_end(&path);
}

/// The disk space reserved ahead of the writes (8 MiB at a time) was
/// returned when the file was finished.
pub(crate) fn assert_no_space_reserved_beyond_the_end(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).unwrap();
    let allocated = meta.blocks() * 512;
    assert!(
        allocated < meta.len() + (1 << 20),
        "{}: {allocated} bytes allocated for {} bytes",
        path.display(),
        meta.len()
    );
}

#[test]
fn reader_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LayerReader>();
    assert_send_sync::<LayerError>();
    let dir = tempfile::tempdir().unwrap();
    let (path, puts) = small_delta(dir.path());
    let r = LayerReader::open(&path).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for (k, _, _, _) in &puts {
                    let all = Lsn(0)..Lsn(u64::MAX);
                    assert_eq!(
                        r.get_values(*k, all.clone()).unwrap(),
                        expected_values(&puts, *k, &all)
                    );
                }
            });
        }
    });
}

#[cfg(feature = "testing")]
#[test]
fn failpoint_before_rename_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let only = dir.path().file_name().unwrap().to_str().unwrap().to_owned();
    // Scoped to this test's directory so that parallel tests are unaffected.
    fail::cfg("layer-writer-before-rename", &format!("return({only})")).unwrap();
    let mut w =
        LayerWriter::new(dir.path(), TENANT, TIMELINE, true, Key::MIN, Lsn(1)..Lsn(9)).unwrap();
    w.put(key(1), Lsn(2), b"v", false).unwrap();
    let res = w.finish(key(2));
    fail::remove("layer-writer-before-rename");
    let err = res.unwrap_err();
    assert!(err.to_string().contains("failpoint"), "{err}");
    assert!(dir_names(dir.path()).is_empty());
}

#[test]
fn raw_copy_keeps_values_and_their_compression() {
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let lsns = Lsn(0x10)..Lsn(0x100);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let puts: Vec<Put> = (0..50u32)
        .map(|i| {
            let compressible = i % 2 == 0;
            let v: Vec<u8> = if compressible {
                vec![i as u8; 4000]
            } else {
                (0..4000).map(|_| rng.gen()).collect()
            };
            (key(i), Lsn(0x20 + u64::from(i)), v, true)
        })
        .collect();
    let (_, src) = write_layer(src_dir.path(), true, key(0), lsns.clone(), &puts, key(50));
    let reader = LayerReader::open(&src).unwrap();
    let mut w =
        LayerWriter::new(dst_dir.path(), TENANT, TIMELINE, true, key(0), lsns.clone()).unwrap();
    let mut compressed = 0;
    for item in reader.iter_raw() {
        let (k, l, raw) = item.unwrap();
        compressed += usize::from(raw.is_compressed());
        w.put_raw(k, l, &raw).unwrap();
    }
    assert_eq!(
        compressed, 25,
        "only the compressible half is stored compressed"
    );
    let (desc, copy) = w.finish(key(50)).unwrap();
    assert_eq!(desc.file_size, fs::metadata(&src).unwrap().len());
    let copy = LayerReader::open(&copy).unwrap();
    copy.verify().unwrap();
    assert_holds_in_order(&copy, &puts);
    // Read from a map, by key range, the values are the same; a map of
    // another (smaller) file is not used.
    let other = LayerReader::open(&small_delta(dst_dir.path()).0).unwrap();
    let maps = [
        reader.map_cached().unwrap(),
        other.map_cached().unwrap(),
        None,
    ];
    assert!(maps[0].is_some() && maps[1].is_some());
    for map in &maps {
        let mapped: Vec<_> = [key(0)..key(20), key(20)..key(50)]
            .into_iter()
            .flat_map(|keys| reader.iter_raw_keys_mapped(keys, map.as_ref()))
            .map(|v| v.unwrap())
            .collect();
        let read: Vec<_> = reader.iter_raw().map(|v| v.unwrap()).collect();
        assert_eq!(mapped, read);
    }
    // Raw copies obey the same ordering rules as puts.
    let mut w = LayerWriter::new(dst_dir.path(), TENANT, TIMELINE, true, key(0), lsns).unwrap();
    let (k, l, raw) = reader.iter_raw().nth(3).unwrap().unwrap();
    w.put_raw(k, l, &raw).unwrap();
    assert!(matches!(w.put_raw(k, l, &raw), Err(LayerError::Misuse(_))));
}

/// An L0 layer file made in place from an in-memory layer: values in
/// arrival order (not key order), and a gap where a replaced value was.
fn in_place_l0(dir: &Path) -> (PathBuf, Vec<Put>) {
    use crate::tenant::storage_layer::inmemory_layer::InMemoryLayer;
    let layer = std::sync::Arc::new(InMemoryLayer::create(dir, Lsn(0x10)).unwrap());
    let arrivals: Vec<(Key, Lsn, Vec<u8>)> = vec![
        (key(3), Lsn(0x10), b"third key".to_vec()),
        (key(1), Lsn(0x10), b"replaced below".to_vec()),
        (key(1), Lsn(0x10), b"first key".to_vec()),
        (key(2), Lsn(0x11), Vec::new()),
        (key(1), Lsn(0x12), vec![9u8; 40]),
    ];
    for (k, l, v) in &arrivals {
        layer.put(*k, *l, v, false).unwrap();
    }
    layer.freeze(Lsn(0x20));
    let path = layer.finish(dir, TENANT, TIMELINE).unwrap();
    let mut puts: Vec<Put> = arrivals[2..]
        .iter()
        .chain(&arrivals[..1])
        .map(|(k, l, v)| (*k, *l, v.clone(), false))
        .collect();
    puts.sort();
    (path, puts)
}

#[test]
fn in_place_l0_reads_and_every_flipped_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let damaged_dir = tempfile::tempdir().unwrap();
    let (path, puts) = in_place_l0(dir.path());
    let r = LayerReader::open(&path).unwrap();
    r.verify().unwrap();
    assert_eq!(r.desc().key_range, Key::MIN..Key::MAX);
    let all = Lsn(0)..Lsn(u64::MAX);
    for (k, _, _, _) in &puts {
        assert_eq!(
            r.get_values(*k, all.clone()).unwrap(),
            expected_values(&puts, *k, &all)
        );
    }
    flip_every_byte(&fs::read(&path).unwrap(), &path, &puts, damaged_dir.path());
}

/// Every byte of `good` (the content of a file named like `path` holding
/// `puts`) flipped in turn, in a copy in `damaged_dir`: every damage is
/// detected and named.
fn flip_every_byte(good: &[u8], path: &Path, puts: &[Put], damaged_dir: &Path) {
    let damaged = damaged_dir.join(path.file_name().unwrap());
    for pos in 0..good.len() {
        let mut bytes = good.to_vec();
        bytes[pos] ^= 0x41;
        fs::write(&damaged, &bytes).unwrap();
        let errors = read_damaged(&damaged, puts);
        assert_names_file(&errors, &damaged, good.len() as u64);
    }
}

/// Rewrites a version 2 file whose blobs are in index order as version 1
/// (index entries without lengths), with every checksum recomputed.
fn as_version_1(v2: &[u8]) -> Vec<u8> {
    let footer = v2.len() - FOOTER_SIZE;
    let index_offset = u64_at(v2, footer) as usize;
    let count = u64_at(v2, footer + 8) as usize;
    let mut out = v2[..index_offset].to_vec();
    out[8..10].copy_from_slice(&1u16.to_le_bytes());
    let crc = crc32c::crc32c(&out[..HEADER_CRC_OFFSET]);
    out[HEADER_CRC_OFFSET..HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
    let mut index = Vec::new();
    for i in 0..count {
        let at = index_offset + i * INDEX_ENTRY_SIZE;
        index.extend_from_slice(&v2[at..at + INDEX_ENTRY_SIZE_V1]);
    }
    out.extend_from_slice(&index);
    out.extend_from_slice(&crc32c::crc32c(&index).to_le_bytes());
    out.extend_from_slice(&(index_offset as u64).to_le_bytes());
    out.extend_from_slice(&(count as u64).to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&MAGIC);
    out
}

#[test]
fn version_1_files_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let damaged_dir = tempfile::tempdir().unwrap();
    for (path, puts) in [small_delta(dir.path()), small_image(dir.path())] {
        let v1 = as_version_1(&fs::read(&path).unwrap());
        fs::write(&path, &v1).unwrap();
        let r = LayerReader::open(&path).unwrap();
        r.verify().unwrap();
        assert_holds_in_order(&r, &puts);
        flip_every_byte(&v1, &path, &puts, damaged_dir.path());
    }
    // A later version is refused by name.
    let (path, _) = small_delta(dir.path());
    let later = with_version(&fs::read(&path).unwrap(), FORMAT_VERSION + 1);
    fs::write(&path, &later).unwrap();
    let err = LayerReader::open(&path).unwrap_err().to_string();
    let want = format!("unsupported format version {}", FORMAT_VERSION + 1);
    assert!(err.contains(&want), "{err}");
}

/// `file` with its header's format version set to `version`, header and
/// file checksums recomputed.
fn with_version(file: &[u8], version: u16) -> Vec<u8> {
    let mut out = file.to_vec();
    out[8..10].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&out[..HEADER_CRC_OFFSET]);
    out[HEADER_CRC_OFFSET..HEADER_SIZE].copy_from_slice(&crc.to_le_bytes());
    let file_crc_at = out.len() - FOOTER_SIZE + FOOTER_CRC_OFFSET;
    let crc = crc32c::crc32c(&out[..file_crc_at]);
    out[file_crc_at..file_crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Serialized page images of every kind a layer file stores: compressed,
/// incompressible, not to be compressed, empty; and values that only look
/// like images (a wrong length), which are stored whole.
fn image_puts() -> Vec<Put> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let image = |page: Vec<u8>| pageserver_api::value::Value::Image(Bytes::from(page)).ser();
    let random: Vec<u8> = (0..600).map(|_| rng.gen()).collect();
    let mut wrong_length = image(vec![5u8; 100]);
    wrong_length.push(0);
    vec![
        (key(1), Lsn(0x10), image(vec![3u8; 700]), true),
        (key(1), Lsn(0x11), image(random), true),
        (key(2), Lsn(0x12), image(vec![4u8; 300]), false),
        (key(3), Lsn(0x13), image(Vec::new()), true),
        (key(4), Lsn(0x14), wrong_length, true),
    ]
}

/// A delta layer of [`image_puts`] in `dir`.
fn image_puts_layer(dir: &Path) -> (PersistentLayerDesc, PathBuf, Vec<Put>) {
    let puts = image_puts();
    let (desc, path) = write_layer(dir, true, key(0), IMAGE_PUTS_LSNS, &puts, key(5));
    (desc, path, puts)
}

const IMAGE_PUTS_LSNS: Range<Lsn> = Lsn(0x10)..Lsn(0x20);

/// A delta layer in `dir` of values copied as stored.
fn raw_copy(dir: &Path, values: impl Iterator<Item = (Key, Lsn, RawValue)>) -> PathBuf {
    let mut w = LayerWriter::new(dir, TENANT, TIMELINE, true, key(0), IMAGE_PUTS_LSNS).unwrap();
    for (k, l, raw) in values {
        w.put_raw(k, l, &raw).unwrap();
    }
    w.finish(key(5)).unwrap().1
}

#[test]
fn page_images_are_stored_as_their_page() {
    let dir = tempfile::tempdir().unwrap();
    let damaged_dir = tempfile::tempdir().unwrap();
    let (desc, path, puts) = image_puts_layer(dir.path());
    let r = LayerReader::open(&path).unwrap();
    r.verify().unwrap();
    assert_holds_in_order(&r, &puts);
    // (page image, compressed) of each blob, in put order.
    let forms: Vec<(bool, bool)> = r
        .iter_raw()
        .map(|v| v.unwrap().2)
        .map(|raw| (raw.is_page_image(), raw.is_compressed()))
        .collect();
    assert_eq!(
        forms,
        vec![
            (true, true),
            (true, false),
            (true, false),
            (true, false),
            (false, true)
        ]
    );
    let keys: Vec<Key> = (0..6).map(key).collect();
    check_reader(&path, &desc, &puts, &keys, &[IMAGE_PUTS_LSNS]);
    // A raw copy keeps them as they are.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = raw_copy(copy_dir.path(), r.iter_raw().map(|v| v.unwrap()));
    assert_eq!(fs::read(&copy).unwrap(), fs::read(&path).unwrap());
    flip_every_byte(&fs::read(&path).unwrap(), &path, &puts, damaged_dir.path());
}

/// Rewrites the file at `path` as format version 2 and checks that it
/// reads as `puts`; returns its bytes.
fn rewrite_as_version_2(path: &Path, puts: &[Put]) -> Vec<u8> {
    let v2 = with_version(&fs::read(path).unwrap(), 2);
    fs::write(path, &v2).unwrap();
    let r = LayerReader::open(path).unwrap();
    r.verify().unwrap();
    assert_holds_in_order(&r, puts);
    v2
}

#[test]
fn version_2_files_are_read_and_know_no_page_images() {
    let dir = tempfile::tempdir().unwrap();
    let damaged_dir = tempfile::tempdir().unwrap();
    for (path, puts) in [small_delta(dir.path()), small_image(dir.path())] {
        let v2 = rewrite_as_version_2(&path, &puts);
        flip_every_byte(&v2, &path, &puts, damaged_dir.path());
    }
    // Images stored whole, as version 2 writers did, read as they are.
    let whole_dir = tempfile::tempdir().unwrap();
    let puts = image_puts();
    let whole = puts.iter().map(|(k, l, v, _)| {
        let raw = RawValue {
            flags: 0,
            stored: Bytes::from(v.clone()),
            crc: blob_crc(0, v),
        };
        (*k, *l, raw)
    });
    rewrite_as_version_2(&raw_copy(whole_dir.path(), whole), &puts);
    // A page image blob in a version 2 file is damage, named as such.
    let (_, path, _) = image_puts_layer(dir.path());
    fs::write(&path, with_version(&fs::read(&path).unwrap(), 2)).unwrap();
    let err = LayerReader::open(&path)
        .unwrap()
        .get_values(key(2), Lsn(0)..Lsn(0x20))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown flags 0x02"), "{err}");
}

/// A read for a page stops at the newest image: older versions of the key
/// are not checked or decompressed (a damaged one is found by `verify` and
/// by reads that reach it).
#[test]
fn reads_to_the_newest_image_leave_older_versions_alone() {
    use pageserver_api::value::{NativeRecord, Value};
    let dir = tempfile::tempdir().unwrap();
    let image = |b: u8| Value::Image(Bytes::from(vec![b; 3000])).ser();
    let record = |n: u32| Value::Record(NativeRecord::RelSizeSet(n)).ser();
    let puts: Vec<Put> = vec![
        (key(1), Lsn(0x10), image(1), true),
        (key(1), Lsn(0x11), record(7), false),
        (key(1), Lsn(0x12), image(2), true),
        (key(1), Lsn(0x13), record(8), false),
        (key(2), Lsn(0x10), record(9), false),
    ];
    let (_, path) = write_layer(
        dir.path(),
        true,
        key(0),
        Lsn(0x10)..Lsn(0x20),
        &puts,
        key(3),
    );
    let lsns = |v: Vec<(Lsn, Bytes)>| v.into_iter().map(|(l, _)| l).collect::<Vec<_>>();
    let all = Lsn(0)..Lsn(0x20);
    // Damage the oldest version's stored bytes (the first blob).
    let mut bytes = fs::read(&path).unwrap();
    bytes[HEADER_SIZE + BLOB_HEADER_SIZE + 10] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let r = LayerReader::open(&path).unwrap();
    let got = r.get_values_to_image(key(1), all.clone()).unwrap();
    assert_eq!(lsns(got.clone()), vec![Lsn(0x13), Lsn(0x12)]);
    assert_eq!(&got[1].1[..], &image(2)[..]);
    // Below the newer image the damaged one is reached and reported.
    let err = r
        .get_values_to_image(key(1), Lsn(0)..Lsn(0x12))
        .unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert!(r.get_values(key(1), all.clone()).is_err());
    assert!(r.verify().is_err());
    // Without an image every version comes back.
    let got = r.get_values_to_image(key(2), all.clone()).unwrap();
    assert_eq!(lsns(got), vec![Lsn(0x10)]);
    let got = r.get_values_to_image(key(1), Lsn(0x11)..Lsn(0x12)).unwrap();
    assert_eq!(lsns(got), vec![Lsn(0x11)]);
}
