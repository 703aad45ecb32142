//! PostgreSQL 15 formats as Rust types (DESIGN.md section 2): WAL pages and
//! records (`waldecoder`, `xlog_utils`), decoded records with their block
//! references (`walrecord`), resource manager record bodies (`records`),
//! `pg_control` (`controlfile`), data pages and their checksum (`page`), and
//! the constants they share (`pg_constants`). Nothing here knows about
//! tenants or timelines.
#![deny(missing_docs)]

pub mod controlfile;
pub mod page;
pub mod pg_constants;
pub mod records;
pub mod waldecoder;
pub mod walrecord;
pub mod xlog_utils;
