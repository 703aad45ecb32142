//! The layer map (being written).
