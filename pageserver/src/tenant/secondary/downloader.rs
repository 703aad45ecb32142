//! The secondary side: one download pass (heatmap, then each timeline's
//! index, then the layers both name, then removal of local layers no longer
//! named), and the adoption of downloaded layers by an attach.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use utils::generation::Generation;
use utils::id::TimelineId;

use super::SecondaryTenant;
use crate::metrics;
use crate::tenant::remote::download;
use crate::tenant::remote::heatmap::download_heatmap;
use crate::tenant::remote::index::{IndexPart, LayerFileMetadata};
use crate::tenant::storage_layer::LayerName;

/// CRC32C of a local file (blocking).
pub fn file_crc32c(path: &Path) -> std::io::Result<u32> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = 0u32;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
}

/// Whether the local file at `path` is the object `meta` describes (size,
/// then CRC32C). Blocking.
pub fn matches_remote(path: &Path, meta: &LayerFileMetadata) -> std::io::Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == meta.file_size => Ok(file_crc32c(path)? == meta.crc32c),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Moves the layers of `warm` (a secondary location's timeline directory)
/// that `index` names, and whose size and CRC32C match it, into
/// `timeline_dir`, so an attach starts with them resident. Returns (layers,
/// bytes) adopted; the rest stays in `warm` for the caller to remove.
/// Blocking.
pub fn adopt_warm_layers(
    warm: &Path,
    timeline_dir: &Path,
    index: &IndexPart,
) -> std::io::Result<(u64, u64)> {
    if !warm.is_dir() {
        return Ok((0, 0));
    }
    let (mut layers, mut bytes) = (0, 0);
    for (name, meta) in &index.layers {
        let src = warm.join(name);
        if !matches_remote(&src, meta)? {
            continue;
        }
        std::fs::rename(&src, timeline_dir.join(name))?;
        layers += 1;
        bytes += meta.file_size;
    }
    if layers > 0 {
        utils::crashsafe::fsync_dir(timeline_dir)?;
        utils::crashsafe::fsync_dir(warm)?;
    }
    Ok((layers, bytes))
}

/// One layer the pass wants locally.
struct Wanted {
    timeline_id: TimelineId,
    name: LayerName,
    meta: LayerFileMetadata,
}

impl SecondaryTenant {
    /// One download pass; see the module documentation.
    pub(super) async fn download_pass(&self) -> Result<(), String> {
        fail::fail_point!("secondary-download-pass", |_| Err(
            "failpoint secondary-download-pass".to_string()
        ));
        let storage = &self.remote.storage;
        let heatmap = download_heatmap(storage, &self.tenant_id, &self.cancel)
            .await
            .map_err(|e| format!("cannot read the heatmap of tenant {}: {e}", self.tenant_id))?;
        let Some(heatmap) = heatmap else {
            // No attached node wrote one yet: nothing to follow, keep what we have.
            return Ok(());
        };
        let mut wanted = Vec::new();
        for timeline in &heatmap.timelines {
            let found = download::download_index(
                storage,
                &self.tenant_id,
                &timeline.timeline_id,
                Generation(u32::MAX),
                &self.cancel,
            )
            .await
            .map_err(|e| {
                format!(
                    "cannot read the index of timeline {}: {e}",
                    timeline.timeline_id
                )
            })?;
            let Some((index, _)) = found else { continue };
            for layer in &timeline.layers {
                // Only what the index names (with the index's metadata):
                // a layer not in an index yet is picked up by a later pass.
                let Some(meta) = index.layers.get(&layer.name) else {
                    continue;
                };
                wanted.push(Wanted {
                    timeline_id: timeline.timeline_id,
                    name: layer.name.parse().expect("checked when parsed"),
                    meta: *meta,
                });
            }
        }
        self.status_mut(|s| {
            s.heatmap_generation = Some(heatmap.generation.0);
            s.layers_total = wanted.len() as u64;
            s.bytes_total = wanted.iter().map(|w| w.meta.file_size).sum();
        });
        self.remove_unwanted(&wanted).await?;

        let (mut have_layers, mut have_bytes) = (0u64, 0u64);
        let mut failures = Vec::new();
        for w in &wanted {
            if self.cancel.is_cancelled() {
                return Err("cancelled".to_string());
            }
            match self.ensure_layer(w).await {
                Ok(()) => {
                    have_layers += 1;
                    have_bytes += w.meta.file_size;
                    self.status_mut(|s| {
                        s.layers_downloaded = have_layers;
                        s.bytes_downloaded = have_bytes;
                    });
                }
                Err(e) => failures.push(e),
            }
        }
        self.status_mut(|s| {
            s.layers_downloaded = have_layers;
            s.bytes_downloaded = have_bytes;
        });
        match failures.len() {
            0 => Ok(()),
            n => Err(format!(
                "{n} layers failed to download, first: {}",
                failures[0]
            )),
        }
    }

    /// Makes one wanted layer present locally and checked.
    async fn ensure_layer(&self, w: &Wanted) -> Result<(), String> {
        let key = (w.timeline_id, w.name.clone());
        let dir = self.dir.join(w.timeline_id.to_string());
        let local = dir.join(w.name.to_string());
        if self.verified.lock().expect("lock poisoned").get(&key) == Some(&w.meta) && local.exists()
        {
            return Ok(());
        }
        let (path, meta) = (local.clone(), w.meta);
        let present = tokio::task::spawn_blocking(move || {
            utils::crashsafe::create_dir_all(&dir)?;
            matches_remote(&path, &meta)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot check {}: {e}", local.display()))?;
        if !present {
            let len = download::download_layer(
                &self.remote.storage,
                &self.tenant_id,
                &w.timeline_id,
                &w.name,
                &w.meta,
                &local,
                &self.cancel,
            )
            .await
            .map_err(|e| {
                self.remote.health.failure(&e.to_string());
                format!("layer {} of timeline {}: {e}", w.name, w.timeline_id)
            })?;
            self.remote.health.success();
            metrics::SECONDARY_LAYERS_DOWNLOADED.inc();
            metrics::SECONDARY_BYTES_DOWNLOADED.inc_by(len);
        }
        self.verified
            .lock()
            .expect("lock poisoned")
            .insert(key, w.meta);
        Ok(())
    }

    /// Removes local timelines and layers the pass does not want.
    async fn remove_unwanted(&self, wanted: &[Wanted]) -> Result<(), String> {
        let mut keep: HashMap<TimelineId, HashSet<String>> = HashMap::new();
        for w in wanted {
            keep.entry(w.timeline_id)
                .or_default()
                .insert(w.name.to_string());
        }
        let dir = self.dir.clone();
        let removed = tokio::task::spawn_blocking(move || remove_unwanted_blocking(&dir, &keep))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot clean {}: {e}", self.dir.display()))?;
        if !removed.is_empty() {
            let mut verified = self.verified.lock().expect("lock poisoned");
            verified.retain(|(tl, name), _| {
                wanted
                    .iter()
                    .any(|w| w.timeline_id == *tl && w.name == *name)
            });
            tracing::info!(
                "removed {} local layers the heatmap no longer names",
                removed.len()
            );
        }
        Ok(())
    }
}

fn remove_unwanted_blocking(
    dir: &Path,
    keep: &HashMap<TimelineId, HashSet<String>>,
) -> std::io::Result<Vec<String>> {
    let mut removed = Vec::new();
    utils::crashsafe::remove_temporaries(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(files) = name.parse::<TimelineId>().ok().and_then(|id| keep.get(&id)) else {
            utils::crashsafe::remove_dir_all(&entry.path())?;
            removed.push(name);
            continue;
        };
        for file in std::fs::read_dir(entry.path())? {
            let file = file?;
            let file_name = file.file_name().to_string_lossy().to_string();
            if !files.contains(&file_name) {
                std::fs::remove_file(file.path())?;
                removed.push(format!("{name}/{file_name}"));
            }
        }
        utils::crashsafe::fsync_dir(&entry.path())?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::metadata::TimelineMetadata;

    #[test]
    fn adoption_takes_only_matching_layers() {
        let tmp = tempfile::tempdir().unwrap();
        let (warm, tl) = (tmp.path().join("warm"), tmp.path().join("tl"));
        std::fs::create_dir_all(&warm).unwrap();
        std::fs::create_dir_all(&tl).unwrap();
        let good = b"good layer bytes".to_vec();
        let bad = b"corrupt layer by".to_vec();
        let names: Vec<String> = (0..3)
            .map(|i| {
                LayerName {
                    key_range: pageserver_api::key::Key::MIN..pageserver_api::key::Key::MAX,
                    lsn_range: utils::lsn::Lsn(0x10 * (i + 1))..utils::lsn::Lsn(0x10 * (i + 2)),
                    is_delta: true,
                }
                .to_string()
            })
            .collect();
        let meta = LayerFileMetadata {
            file_size: good.len() as u64,
            generation: Generation(1),
            crc32c: crc32c::crc32c(&good),
        };
        std::fs::write(warm.join(&names[0]), &good).unwrap();
        // Same size, other bytes: refused by the CRC.
        std::fs::write(warm.join(&names[1]), &bad).unwrap();
        // names[2] is not local at all.
        let index = IndexPart {
            version: crate::tenant::remote::index::INDEX_PART_VERSION,
            layers: names.iter().map(|n| (n.clone(), meta)).collect(),
            metadata: TimelineMetadata::new_root(15),
            wal_source_connstr: None,
        };
        assert_eq!(
            adopt_warm_layers(&warm, &tl, &index).unwrap(),
            (1, good.len() as u64)
        );
        assert!(tl.join(&names[0]).exists());
        assert!(!tl.join(&names[1]).exists() && warm.join(&names[1]).exists());
        assert_eq!(file_crc32c(&tl.join(&names[0])).unwrap(), meta.crc32c);
        // A missing warm directory adopts nothing.
        assert_eq!(
            adopt_warm_layers(&tmp.path().join("none"), &tl, &index).unwrap(),
            (0, 0)
        );
    }

    #[test]
    fn clean_up_keeps_only_wanted() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (TimelineId::generate(), TimelineId::generate());
        for tl in [a, b] {
            let d = tmp.path().join(tl.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("keep"), b"1").unwrap();
            std::fs::write(d.join("drop"), b"1").unwrap();
        }
        let keep = HashMap::from([(a, HashSet::from(["keep".to_string()]))]);
        let mut removed = remove_unwanted_blocking(tmp.path(), &keep).unwrap();
        removed.sort();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(tmp.path().join(a.to_string()).join("keep").exists());
        assert!(!tmp.path().join(a.to_string()).join("drop").exists());
        assert!(!tmp.path().join(b.to_string()).exists());
    }
}
