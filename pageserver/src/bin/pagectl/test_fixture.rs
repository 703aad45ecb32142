//! A small page server work directory with real files, for the tests:
//! `WORKDIR/tenants/TENANT/{config,timelines/TIMELINE/}` holding a metadata
//! file, an L0 delta layer and an image layer.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use pageserver::tenant::metadata::TimelineMetadata;
use pageserver::tenant::storage_layer::layer_file::LayerWriter;
use pageserver_api::key::{rel_block_key, rel_size_key, Key, RelTag};
use pageserver_api::value::{NativeRecord, Value};
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

/// The tenant of the fixture.
pub const TENANT: TenantId = TenantId::from_bytes([0x11; 16]);
/// The timeline of the fixture.
pub const TIMELINE: TimelineId = TimelineId::from_bytes([0x22; 16]);
/// The relation whose blocks the layers hold.
pub const REL: RelTag = RelTag {
    spcnode: 1663,
    dbnode: 5,
    relnode: 16384,
    forknum: 0,
};

/// A work directory with one tenant and one timeline.
pub struct Fixture {
    /// Keeps the directory alive.
    _tmp: tempfile::TempDir,
    /// The work directory.
    pub workdir: PathBuf,
    /// `WORKDIR/tenants/TENANT`.
    pub tenant_dir: PathBuf,
    /// `WORKDIR/tenants/TENANT/timelines/TIMELINE`.
    pub timeline_dir: PathBuf,
    /// What the metadata file holds.
    pub metadata: TimelineMetadata,
    /// The L0 delta layer: 3 images and 2 records.
    pub delta_layer: PathBuf,
    /// The image layer: 2 images at LSN 0x30.
    pub image_layer: PathBuf,
}

/// A page image whose bytes depend on `seed`.
fn page(seed: u8) -> Value {
    Value::Image((0..8192u32).map(|i| (i as u8) ^ seed).collect())
}

/// Writes a layer file of `values` (sorted) into `dir`; returns its path.
pub fn write_layer(
    dir: &Path,
    (tenant, timeline): (TenantId, TimelineId),
    is_delta: bool,
    keys: Range<Key>,
    lsns: Range<Lsn>,
    values: &[(Key, Lsn, Value)],
) -> PathBuf {
    let mut w = LayerWriter::new(dir, tenant, timeline, is_delta, keys.start, lsns).unwrap();
    for (i, (key, lsn, value)) in values.iter().enumerate() {
        // Compress every other value, to cover both blob forms.
        w.put(*key, *lsn, &value.ser(), i % 2 == 0).unwrap();
    }
    w.finish(keys.end).unwrap().1
}

impl Fixture {
    /// Builds the directory.
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let workdir = tmp.path().join("workdir");
        let tenant_dir = workdir.join("tenants").join(TENANT.to_string());
        let timeline_dir = tenant_dir.join("timelines").join(TIMELINE.to_string());
        fs::create_dir_all(&timeline_dir).unwrap();
        fs::write(workdir.join("pageserver.toml"), "").unwrap();
        fs::write(tenant_dir.join("config"), "").unwrap();

        let metadata = TimelineMetadata {
            disk_consistent_lsn: Lsn(0x40),
            prev_record_lsn: Some(Lsn(0x38)),
            ancestor_timeline: None,
            ancestor_lsn: Lsn(0),
            latest_gc_cutoff_lsn: Lsn(0),
            initdb_lsn: Lsn(0x10),
            pg_version: 15,
            lsn_history: vec![(1_700_000_000, Lsn(0x40))],
        };
        fs::write(timeline_dir.join("metadata"), metadata.to_bytes()).unwrap();

        let ids = (TENANT, TIMELINE);
        let (b0, b3, size) = (
            rel_block_key(REL, 0),
            rel_block_key(REL, 3),
            rel_size_key(REL),
        );
        let delta_layer = write_layer(
            &timeline_dir,
            ids,
            true,
            Key::MIN..Key::MAX,
            Lsn(0x10)..Lsn(0x30),
            &[
                (b0, Lsn(0x10), page(1)),
                (b0, Lsn(0x20), page(2)),
                (b3, Lsn(0x18), page(3)),
                (size, Lsn(0x10), NativeRecord::RelSizeSet(1).into()),
                (size, Lsn(0x18), NativeRecord::RelSizeExtend(4).into()),
            ],
        );
        let image_layer = write_layer(
            &timeline_dir,
            ids,
            false,
            b0..size.next(),
            Lsn(0x30)..Lsn(0x31),
            &[
                (b0, Lsn(0x30), page(4)),
                (
                    size,
                    Lsn(0x30),
                    Value::Image(4u32.to_le_bytes().to_vec().into()),
                ),
            ],
        );
        Fixture {
            _tmp: tmp,
            workdir,
            tenant_dir,
            timeline_dir,
            metadata,
            delta_layer,
            image_layer,
        }
    }

    /// Flips the bits of the byte at `offset` of `path`.
    pub fn flip_byte(&self, path: &Path, offset: usize) {
        let mut bytes = fs::read(path).unwrap();
        bytes[offset] ^= 0xff;
        fs::write(path, bytes).unwrap();
    }
}
