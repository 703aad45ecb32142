//! PostgreSQL wire protocol for the page server.
//!
//! Two sides live here:
//!
//! * the client side of physical replication: the walreceiver
//!   (`pageserver/src/walreceiver/`) uses [`ReplicationConnection`] to stream
//!   WAL from an unmodified PostgreSQL 15 primary as a standby would, holding
//!   WAL on the primary with a physical slot and reporting progress with
//!   standby status updates;
//! * the server side the page service (`pageserver/src/page_service/`) is
//!   built on: [`ServerConnection`] decodes frontend messages
//!   ([`StartupPacket`], [`FrontendMessage`]) with a frame cap, encodes
//!   backend messages ([`BeMessage`]), and adapts COPY streams to
//!   `AsyncWrite` ([`CopyOutWriter`]) and `AsyncRead` ([`CopyInReader`]).
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
mod frontend;
mod messages;
mod replication;
mod server;

pub use backend::MAX_MESSAGE_SIZE;
pub use config::{ConnConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HOST, DEFAULT_PORT};
pub use connection::DEFAULT_REQUEST_TIMEOUT;
pub use error::{ReplError, ServerError};
pub use frontend::{
    try_split_message, try_split_startup, FrontendMessage, StartupPacket, MAX_STARTUP_PACKET_SIZE,
};
pub use messages::*;
pub use replication::{
    from_pg_timestamp, to_pg_timestamp, IdentifySystem, NextTimeline, ReplicationConnection,
    ReplicationMessage, ReplicationStream, DEFAULT_IDLE_TIMEOUT,
};
pub use server::{CopyInReader, CopyOutWriter, ServerConnection, COPY_OUT_CHUNK};
