//! The page service: a libpq-protocol server on `listen_pg_addr` through
//! which computes (and tools) read pages (DESIGN.md section 5).
//!
//! * `mod.rs` (this file): the listener, connection tasks and shutdown, and
//!   the one error type of the page service with its mapping to
//!   ErrorResponse fields.
//! * [`connection`]: startup, authentication, the simple-query loop.
//! * [`commands`]: parsing of commands and the dispatcher, the extension
//!   point for `basebackup` and `import`.
//! * [`pagestream`]: `pagestream_v2`, pipelined page requests.
//!
//! The wire format is documented in `docs/page_service.md`; its messages are
//! in `pageserver_api::pagestream`, the libpq framing in `pq_proto`.

pub mod commands;
pub mod connection;
pub mod copy_commands;
pub mod pagestream;

use std::sync::Arc;

use pq_proto::ServerError;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utils::auth::JwtAuth;

use crate::config::PageServerConf;
use crate::metrics;
use crate::tenant::errors::TenantError;
use crate::tenant::mgr::TenantManager;

/// What every connection of the page service needs.
#[derive(Clone)]
pub struct PageServiceState {
    /// The node's configuration.
    pub conf: Arc<PageServerConf>,
    /// The node's tenants.
    pub tenants: Arc<TenantManager>,
    /// Token validation when `pg_auth_type = "JWT"`, else `None`.
    pub auth: Option<Arc<JwtAuth>>,
}

/// Why a page service command or connection failed.
///
/// [`PageServiceError::Command`] ends one command: the client gets an
/// ErrorResponse and ReadyForQuery, and the connection stays usable. The
/// other variants end the connection.
#[derive(Debug, thiserror::Error)]
pub enum PageServiceError {
    /// The command was refused or failed; the session goes on.
    #[error("{message}")]
    Command {
        /// SQLSTATE for the ErrorResponse.
        code: &'static str,
        /// Error message (names the tenant, timeline or LSN involved).
        message: String,
        /// Metrics label (`command`, `permission`, `not_found`, ...).
        kind: &'static str,
    },
    /// The client broke the protocol, the connection failed, or the client
    /// was idle too long: the connection closes (after a FATAL
    /// ErrorResponse when the framing allows one).
    #[error(transparent)]
    Connection(#[from] ServerError),
    /// Authentication failed: FATAL ErrorResponse, then the connection
    /// closes.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The page server or the timeline is shutting down.
    #[error("page server is shutting down")]
    ShuttingDown,
}

impl PageServiceError {
    /// A refused command with the given SQLSTATE.
    pub fn command(code: &'static str, kind: &'static str, message: impl Into<String>) -> Self {
        PageServiceError::Command {
            code,
            message: message.into(),
            kind,
        }
    }
}

impl From<TenantError> for PageServiceError {
    fn from(e: TenantError) -> Self {
        use pq_proto::{SQLSTATE_SYSTEM_ERROR, SQLSTATE_UNDEFINED_OBJECT};
        match e {
            TenantError::ShuttingDown => PageServiceError::ShuttingDown,
            TenantError::TenantNotFound(_) | TenantError::TimelineNotFound(..) => {
                PageServiceError::command(SQLSTATE_UNDEFINED_OBJECT, "not_found", e.to_string())
            }
            other => {
                PageServiceError::command(SQLSTATE_SYSTEM_ERROR, "unavailable", other.to_string())
            }
        }
    }
}

/// Binds the page service's address (so that start-up fails early when it is
/// taken).
pub async fn bind(conf: &PageServerConf) -> anyhow::Result<TcpListener> {
    TcpListener::bind(conf.listen_pg_addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for the page service on {}: {e}",
            conf.listen_pg_addr
        )
    })
}

/// Accepts connections until `cancel` fires, then cancels every connection
/// and waits for their tasks. Run it as a tracked task; it returns once no
/// connection task is left.
pub async fn serve(listener: TcpListener, state: PageServiceState, cancel: CancellationToken) {
    metrics::init_page_service_metrics();
    let connections = TaskTracker::new();
    tracing::info!(
        "page service listening on {}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                let state = state.clone();
                let conn_cancel = cancel.child_token();
                connections.spawn(async move {
                    metrics::PAGE_SERVICE_CONNECTIONS.inc();
                    connection::run(socket, peer, state, conn_cancel).await;
                    metrics::PAGE_SERVICE_CONNECTIONS.dec();
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!("page service cannot accept a connection: {e}");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                }
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    tracing::info!("page service stopped");
}
