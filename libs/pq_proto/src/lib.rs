//! PostgreSQL wire protocol for the page server.
//!
//! Today this is the client side of physical replication: the walreceiver
//! (`pageserver/src/walreceiver/`) uses [`ReplicationConnection`] to stream WAL
//! from an unmodified PostgreSQL 15 primary as a standby would, holding WAL on
//! the primary with a physical slot and reporting progress with standby status
//! updates. The page service's server side will live here later.
//!
//! Message encoding and the md5 / SCRAM-SHA-256 computations come from
//! `postgres-protocol`; framing (with a [`MAX_MESSAGE_SIZE`] cap checked before
//! allocation), decoding, timeouts and cancellation are ours. There is no TLS.
//!
//! Passwords appear only inside [`ConnConfig`]; log or return
//! [`ConnConfig::masked`], and no [`ReplError`] ever contains one.
#![deny(missing_docs)]

mod backend;
mod config;
mod connection;
mod error;
mod replication;

pub use backend::MAX_MESSAGE_SIZE;
pub use config::{ConnConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HOST, DEFAULT_PORT};
pub use connection::DEFAULT_REQUEST_TIMEOUT;
pub use error::ReplError;
pub use replication::{
    from_pg_timestamp, to_pg_timestamp, IdentifySystem, NextTimeline, ReplicationConnection,
    ReplicationMessage, ReplicationStream, DEFAULT_IDLE_TIMEOUT,
};
