//! One layer of a timeline's layer map, resident on local disk or not.
//!
//! A layer is known by its name (key and LSN ranges). It is *resident* when
//! its file is on local disk and open; otherwise it is only in remote
//! storage, named by the index with its generation and CRC32C, and the
//! first read downloads it ([`crate::tenant::timeline::Timeline::layer_reader`]).
//! Concurrent readers of a non-resident layer share one download: they wait
//! on the layer's download lock, then find it resident.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::tenant::remote::index::LayerFileMetadata;
use crate::tenant::storage_layer::layer_file::LayerReader;
use crate::tenant::storage_layer::{LayerName, PersistentLayerDesc};

/// A layer of the map; see the module documentation.
#[derive(Debug)]
pub struct Layer {
    /// What the layer holds.
    pub desc: Arc<PersistentLayerDesc>,
    path: PathBuf,
    /// The remote object, once uploaded (or when known from the index).
    remote: Mutex<Option<LayerFileMetadata>>,
    /// The open file, when resident.
    reader: Mutex<Option<Arc<LayerReader>>>,
    /// Held while the layer downloads or is evicted.
    download: Mutex<()>,
    /// Unix seconds of the last read.
    last_access: AtomicU64,
}

impl Layer {
    /// A resident layer from an open file.
    pub fn resident(reader: Arc<LayerReader>) -> Layer {
        Layer {
            desc: Arc::new(reader.desc().clone()),
            path: reader.path().to_path_buf(),
            remote: Mutex::new(None),
            reader: Mutex::new(Some(reader)),
            download: Mutex::new(()),
            last_access: AtomicU64::new(super::unix_now()),
        }
    }

    /// A layer only in remote storage, to be downloaded into `dir`.
    pub fn remote_only(dir: &Path, name: &LayerName, meta: LayerFileMetadata) -> Layer {
        Layer {
            desc: Arc::new(PersistentLayerDesc {
                key_range: name.key_range.clone(),
                lsn_range: name.lsn_range.clone(),
                is_delta: name.is_delta,
                file_size: meta.file_size,
            }),
            path: dir.join(name.to_string()),
            remote: Mutex::new(Some(meta)),
            reader: Mutex::new(None),
            download: Mutex::new(()),
            last_access: AtomicU64::new(super::unix_now()),
        }
    }

    /// The layer's name.
    pub fn name(&self) -> LayerName {
        self.desc.layer_name()
    }

    /// The local file (present when resident).
    pub fn local_path(&self) -> &Path {
        &self.path
    }

    /// The remote object's metadata, once uploaded.
    pub fn remote(&self) -> Option<LayerFileMetadata> {
        *self.remote.lock().expect("layer lock poisoned")
    }

    /// Records that the layer is in remote storage as `meta`.
    pub fn set_remote(&self, meta: LayerFileMetadata) {
        *self.remote.lock().expect("layer lock poisoned") = Some(meta);
    }

    /// The open reader when resident; records the access.
    pub fn resident_reader(&self) -> Option<Arc<LayerReader>> {
        let r = self.reader.lock().expect("layer lock poisoned").clone();
        if r.is_some() {
            self.last_access.store(super::unix_now(), Ordering::Relaxed);
        }
        r
    }

    /// Whether the file is on local disk.
    pub fn is_resident(&self) -> bool {
        self.reader.lock().expect("layer lock poisoned").is_some()
    }

    /// Unix seconds of the last read.
    pub fn last_access(&self) -> u64 {
        self.last_access.load(Ordering::Relaxed)
    }

    /// The download lock; held while downloading or evicting.
    pub(crate) fn lock_download(&self) -> MutexGuard<'_, ()> {
        self.download.lock().expect("layer download lock poisoned")
    }

    /// Installs the reader of a downloaded file (download lock held).
    pub(crate) fn set_resident(&self, reader: Arc<LayerReader>) {
        self.last_access.store(super::unix_now(), Ordering::Relaxed);
        *self.reader.lock().expect("layer lock poisoned") = Some(reader);
    }

    /// Drops the reader and removes the local file (download lock held).
    /// Readers that hold the old reader keep reading the unlinked file.
    pub(crate) fn drop_local(&self) -> std::io::Result<()> {
        *self.reader.lock().expect("layer lock poisoned") = None;
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Evicts the local file if the layer is resident and in remote storage.
    /// Returns whether it was evicted.
    pub fn evict(&self) -> std::io::Result<bool> {
        let _guard = self.lock_download();
        if self.remote().is_none() || !self.is_resident() {
            return Ok(false);
        }
        self.drop_local()?;
        crate::metrics::LAYER_EVICTIONS.inc();
        Ok(true)
    }
}
