//! Values stored under keys: page images and native records (being written).
