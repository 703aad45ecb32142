//! Delta and image layer files (being written).
