//! The page server library: configuration, HTTP API, tenants and their
//! timelines, background work and metrics. `main.rs` wires them into a
//! process (DESIGN.md sections 2 and 6).

pub mod background;
pub mod basebackup;
pub mod config;
pub mod http;
pub mod metrics;
pub mod page_service;
pub mod tenant;
pub mod walingest;
pub mod walreceiver;
