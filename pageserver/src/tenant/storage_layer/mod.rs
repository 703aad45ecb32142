//! Layers: the in-memory layer receiving ingested values, immutable delta
//! and image layer files, and the layer map that finds them (DESIGN.md
//! section 3).

pub mod inmemory_layer;
pub mod layer_file;
pub mod layer_map;
pub mod layer_name;
pub mod page_cache;

use std::ops::Range;

use pageserver_api::key::Key;
use utils::lsn::Lsn;

pub use layer_name::LayerName;

/// What a layer file holds, known from its name and header alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PersistentLayerDesc {
    /// Keys `start..end` may have values in this layer.
    pub key_range: Range<Key>,
    /// Delta: values with LSN in `start..end`. Image: `lsn..lsn + 1`, the
    /// page versions as of `lsn`.
    pub lsn_range: Range<Lsn>,
    /// Delta (records and images at many LSNs) or image (one value per key).
    pub is_delta: bool,
    /// Size of the file in bytes.
    pub file_size: u64,
}

impl PersistentLayerDesc {
    /// The file name of this layer.
    pub fn layer_name(&self) -> LayerName {
        LayerName {
            key_range: self.key_range.clone(),
            lsn_range: self.lsn_range.clone(),
            is_delta: self.is_delta,
        }
    }

    /// Level 0: a delta layer straight from a flush, over the whole key space.
    pub fn is_l0(&self) -> bool {
        self.is_delta && self.key_range == (Key::MIN..Key::MAX)
    }

    /// The LSN of an image layer.
    pub fn image_lsn(&self) -> Lsn {
        debug_assert!(!self.is_delta);
        self.lsn_range.start
    }
}
