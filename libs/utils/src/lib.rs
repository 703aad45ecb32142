//! Building blocks shared by every binary of the project.
//!
//! This crate sits at the bottom of the dependency graph (DESIGN.md section 2):
//! identifiers ([`id::TenantId`], [`id::TimelineId`]), log sequence numbers
//! ([`lsn::Lsn`]), JWT validation ([`auth`]), the one crash-safe file helper
//! ([`crashsafe`]), slow drops moved off the caller's thread
//! ([`deferred_drop`]), task lifetimes ([`gate`]), the work directory lock
//! ([`lock_file`]), log set-up ([`logging`]) and running PostgreSQL
//! binaries as their own OS user ([`pg_user`]). It knows nothing about tenants'
//! data or PostgreSQL formats.
#![deny(missing_docs)]

pub mod auth;
pub mod crashsafe;
pub mod deferred_drop;
pub mod file_map;
pub mod gate;
pub mod generation;
pub mod id;
pub mod lock_file;
pub mod logging;
pub mod lsn;
pub mod pg_user;
