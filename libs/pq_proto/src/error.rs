//! The error types of this crate: [`ReplError`] for the replication client,
//! [`ServerError`] for the server side.

use std::time::Duration;

/// Why a replication (or plain) connection operation failed.
///
/// No variant ever carries the password: messages are built from the masked
/// connection string, the user name and what the server said.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    /// The TCP connection failed or broke (connect refused, reset, EOF).
    #[error("I/O error on PostgreSQL connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that does not follow the protocol (malformed or
    /// oversized frame, unexpected message), or the connection is unusable
    /// after an earlier failure. Reconnect.
    #[error("PostgreSQL protocol error: {0}")]
    Protocol(String),
    /// The server answered with an `ErrorResponse` (outside authentication).
    #[error("PostgreSQL server error: {severity} {code}: {message}{}", detail.as_ref().map(|d| format!(" (detail: {d})")).unwrap_or_default())]
    Server {
        /// SQLSTATE, e.g. `42710` for an object that already exists.
        code: String,
        /// The server's primary message.
        message: String,
        /// `ERROR`, `FATAL` or `PANIC`.
        severity: String,
        /// The server's detail message, if any.
        detail: Option<String>,
    },
    /// Authentication failed: wrong password (SQLSTATE class 28 from the server),
    /// a password needed but not configured, or an unsupported method.
    #[error("PostgreSQL authentication failed: {0}")]
    Auth(String),
    /// A network operation took longer than its limit.
    #[error("timed out after {after:?} while {what}")]
    Timeout {
        /// The operation that timed out, e.g. `connecting to 127.0.0.1:5432`.
        what: String,
        /// The limit that was exceeded.
        after: Duration,
    },
    /// The caller's cancellation token fired.
    #[error("cancelled")]
    Cancelled,
    /// The connection string or an argument is invalid; nothing was sent.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ReplError {
    /// The SQLSTATE of a [`ReplError::Server`] error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ReplError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether reconnecting later may help (network trouble, timeouts, server
    /// errors such as a restarting server); false for bad configuration or
    /// credentials and for cancellation.
    pub fn is_transient(&self) -> bool {
        match self {
            ReplError::Io(_)
            | ReplError::Timeout { .. }
            | ReplError::Protocol(_)
            | ReplError::Server { .. } => true,
            ReplError::Auth(_) | ReplError::Config(_) | ReplError::Cancelled => false,
        }
    }
}

/// Why a server-side connection operation failed (the page service's side
/// of the protocol). Carries no client secrets: passwords are never part of
/// a message.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TCP connection failed or broke.
    #[error("I/O error on client connection: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent something that does not follow the protocol
    /// (malformed or oversized frame, unexpected message).
    #[error("protocol violation by client: {0}")]
    Protocol(String),
    /// The client closed the connection in the middle of a message or of a
    /// COPY stream.
    #[error("client closed the connection unexpectedly")]
    UnexpectedEof,
    /// The client sent nothing for longer than the idle limit.
    #[error("client sent nothing for {0:?}, closing the idle connection")]
    IdleTimeout(Duration),
    /// Writing to the client took longer than the limit (the client does not
    /// read its responses).
    #[error("client did not accept output for {0:?}")]
    WriteTimeout(Duration),
    /// The client aborted its COPY stream with CopyFail.
    #[error("client aborted COPY: {0}")]
    CopyFail(String),
    /// The server is shutting down (the caller's cancellation token fired).
    #[error("server is shutting down")]
    Cancelled,
}
