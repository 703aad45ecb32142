use std::fs;

use pageserver_api::key::{rel_block_key, Key};
use pageserver_api::value::Value;
use utils::lsn::Lsn;

use super::*;
use crate::test_fixture::{write_layer, Fixture, REL, TENANT, TIMELINE};

/// Verifies `dir`, checking that every finding was also streamed.
fn verify(dir: &Path) -> VerifyReport {
    let mut streamed = Vec::new();
    let report = verify_dir(dir, &mut |f| streamed.push(f.clone())).expect("a data directory");
    assert_eq!(streamed, report.findings);
    report
}

/// The single failure of the report.
fn single_failure(report: &VerifyReport) -> (Checked, PathBuf, String) {
    let failures: Vec<&Finding> = report.failures().collect();
    assert_eq!(failures.len(), 1, "{:#?}", report.findings);
    match failures[0] {
        Finding::Failed { what, path, error } => (*what, path.clone(), error.clone()),
        _ => unreachable!(),
    }
}

/// Writes a one-value delta layer with the given header ids into `dir`.
fn write_foreign_layer(dir: &Path, ids: (TenantId, TimelineId)) -> PathBuf {
    let key = rel_block_key(REL, 7);
    let value = Value::Image(vec![7u8; 100].into());
    write_layer(
        dir,
        ids,
        true,
        key..key.next(),
        Lsn(0x30)..Lsn(0x40),
        &[(key, Lsn(0x30), value)],
    )
}

#[test]
fn clean_directories_verify_at_every_level() {
    let fx = Fixture::new();
    for dir in [&fx.workdir, &fx.tenant_dir, &fx.timeline_dir] {
        let report = verify(dir);
        assert!(report.is_ok(), "{dir:?}: {:#?}", report.findings);
        assert_eq!((report.layer_files(), report.metadata_files()), (2, 1));
        assert_eq!(
            report.summary_line(),
            "verified 2 layer files, 1 metadata files, 0 failures"
        );
        let ok: Vec<&Path> = report
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::Ok { path, .. } => Some(path.as_path()),
                _ => None,
            })
            .collect();
        assert_eq!(ok.len(), 3, "{:#?}", report.findings);
        for layer in [&fx.delta_layer, &fx.image_layer] {
            let name = layer.file_name().unwrap();
            assert!(ok.iter().any(|p| p.file_name() == Some(name)), "{layer:?}");
        }
    }
}

#[test]
fn temporary_files_are_ignored_and_strays_reported() {
    let fx = Fixture::new();
    let tl = &fx.timeline_dir;
    // Garbage under temporary names, as a crash would leave it.
    fs::write(tl.join("000000.___temp"), b"half a layer").unwrap();
    fs::write(tl.join("metadata.___temp"), b"half a metadata").unwrap();
    fs::write(tl.join("ephemeral-12-3.___temp"), b"wal").unwrap();
    fs::write(tl.join("ephemeral-12-4"), b"wal").unwrap();
    let timelines = fx.tenant_dir.join(TIMELINES_DIR);
    fs::create_dir(timelines.join(format!("{}.___deleted", TimelineId::generate()))).unwrap();
    // Strays.
    fs::write(tl.join("notes.txt"), b"hello").unwrap();
    fs::create_dir(timelines.join("not-a-timeline")).unwrap();

    let report = verify(&fx.workdir);
    assert!(report.is_ok(), "{:#?}", report.findings);
    assert_eq!(
        report.summary_line(),
        "verified 2 layer files, 1 metadata files, 0 failures"
    );
    let mut unexpected: Vec<String> = report
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::Unexpected { path, .. } => {
                Some(path.file_name().unwrap().to_string_lossy().into_owned())
            }
            _ => None,
        })
        .collect();
    unexpected.sort();
    assert_eq!(unexpected, ["not-a-timeline", "notes.txt"]);
    let text: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    assert!(
        text.iter()
            .any(|l| l.starts_with("UNEXPECTED  ") && l.contains("notes.txt")),
        "{text:#?}"
    );
}

#[test]
fn a_flipped_byte_anywhere_in_a_layer_fails_naming_the_file() {
    let fx = Fixture::new();
    let size = fs::metadata(&fx.image_layer).unwrap().len() as usize;
    let name = fx
        .image_layer
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // Header, first value blob (header is 99 bytes), last value, index,
    // file CRC, end magic.
    for offset in [
        3,
        60,
        120,
        size - 101,
        size - 100,
        size - 40,
        size - 10,
        size - 1,
    ] {
        fx.flip_byte(&fx.image_layer, offset);
        let report = verify(&fx.timeline_dir);
        let (what, path, error) = single_failure(&report);
        assert_eq!(what, Checked::Layer);
        assert_eq!(
            path.file_name(),
            fx.image_layer.file_name(),
            "offset {offset}"
        );
        assert!(error.contains(&name), "offset {offset}: {error}");
        assert!(error.contains("corrupt"), "offset {offset}: {error}");
        assert_eq!(
            report.summary_line(),
            "verified 2 layer files, 1 metadata files, 1 failures"
        );
        let line = report.failures().next().unwrap().to_string();
        assert!(line.starts_with("FAILED      layer file "), "{line}");
        // Flip it back: verifies again.
        fx.flip_byte(&fx.image_layer, offset);
        assert!(verify(&fx.timeline_dir).is_ok(), "offset {offset} restored");
    }
}

#[test]
fn corrupt_or_missing_metadata_fails() {
    let fx = Fixture::new();
    let metadata = fx.timeline_dir.join(METADATA_FILE);
    fx.flip_byte(&metadata, 30);
    let (what, path, error) = single_failure(&verify(&fx.tenant_dir));
    assert_eq!(what, Checked::Metadata);
    assert_eq!(path.file_name(), metadata.file_name());
    assert!(
        error.contains("metadata file") && error.contains("checksum"),
        "{error}"
    );

    fs::remove_file(&metadata).unwrap();
    let report = verify(&fx.workdir);
    let (what, _, error) = single_failure(&report);
    assert_eq!(what, Checked::Metadata);
    assert!(error.contains("has no `metadata` file"), "{error}");
    assert_eq!(report.layer_files(), 2);
}

#[test]
fn layers_of_another_timeline_or_tenant_fail() {
    let fx = Fixture::new();
    let other = write_foreign_layer(&fx.timeline_dir, (TENANT, TimelineId::generate()));
    for dir in [&fx.workdir, &fx.timeline_dir] {
        let (_, path, error) = single_failure(&verify(dir));
        assert_eq!(path.file_name(), other.file_name());
        assert!(error.contains("directory of timeline"), "{error}");
    }
    fs::remove_file(&other).unwrap();

    let other = write_foreign_layer(&fx.timeline_dir, (TenantId::generate(), TIMELINE));
    for dir in [&fx.workdir, &fx.tenant_dir, &fx.timeline_dir] {
        let (_, path, error) = single_failure(&verify(dir));
        assert_eq!(path.file_name(), other.file_name());
        assert!(error.contains("directory of tenant"), "{error}");
    }
}

#[test]
fn a_renamed_layer_fails() {
    let fx = Fixture::new();
    // A valid layer name, but not the one the header describes.
    let wrong = fx
        .timeline_dir
        .join(format!("{}-{}__{:016X}", Key::MIN, Key::MAX, 0x31));
    fs::rename(&fx.image_layer, &wrong).unwrap();
    let (_, path, error) = single_failure(&verify(&fx.timeline_dir));
    assert_eq!(path, wrong);
    assert!(error.contains("but the file is named"), "{error}");
}

#[test]
fn directories_without_page_server_data_are_usage_errors() {
    let fx = Fixture::new();
    let empty = tempfile::tempdir().unwrap();
    for dir in [
        empty.path().to_owned(),
        empty.path().join("missing"),
        fx.delta_layer.clone(),
        fx.tenant_dir.join(TIMELINES_DIR),
    ] {
        let err = verify_dir(&dir, &mut |_| {}).expect_err("not a data directory");
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn the_remote_index_copy_is_checked() {
    use pageserver::tenant::remote::index::IndexPart;
    use utils::generation::Generation;
    let fx = Fixture::new();
    let index = IndexPart::new(Vec::new(), fx.metadata.clone());
    LocalIndexCopy::write(&fx.timeline_dir, Generation::FIRST, &index).unwrap();
    let report = verify(&fx.workdir);
    assert!(report.is_ok(), "{:#?}", report.findings);
    assert!(
        !report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Unexpected { .. })),
        "{:#?}",
        report.findings
    );
    assert_eq!(
        report.summary_line(),
        "verified 2 layer files, 1 metadata files, 1 remote index copies, 0 failures"
    );
    // A damaged copy fails, naming the file.
    let copy = fx.timeline_dir.join(LOCAL_INDEX_COPY);
    fs::write(&copy, b"{\"generation\": ").unwrap();
    let (what, path, error) = single_failure(&verify(&fx.workdir));
    assert_eq!((what, path), (Checked::IndexCopy, copy.clone()));
    assert!(error.contains(&copy.display().to_string()), "{error}");
}
