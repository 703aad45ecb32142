//! One page service connection: startup (encryption requests refused),
//! authentication (trust, or a JWT sent as a cleartext password), then
//! simple queries, each dispatched to a command until the client leaves,
//! idles too long, or the node shuts down.

use std::net::SocketAddr;
use std::time::Duration;

use pq_proto::{
    BeMessage, ErrorFields, FrontendMessage, ServerConnection, ServerError, StartupPacket,
    SQLSTATE_ADMIN_SHUTDOWN, SQLSTATE_FEATURE_NOT_SUPPORTED, SQLSTATE_INVALID_AUTHORIZATION,
    SQLSTATE_PROTOCOL_VIOLATION,
};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utils::auth::Claims;

use super::commands::{self, CommandEnv};
use super::{PageServiceError, PageServiceState};
use crate::config::AuthType;
use crate::metrics;

/// The connection type commands work on.
pub type PgConn = ServerConnection<TcpStream>;

/// Largest frame a client may send outside pagestream (queries, passwords,
/// COPY data); commands may change it for their duration.
pub const MAX_FRAME_SIZE: usize = 1 << 20;
/// Longest wait for the client during startup and authentication.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest time the client may take to accept our output.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Encryption requests answered before the StartupMessage must come.
const MAX_ENCRYPTION_REQUESTS: usize = 2;

/// What the session knows about its client after startup.
pub struct Session {
    /// The client's claims when JWT authentication is on.
    pub claims: Option<Claims>,
    /// The `user` startup parameter, for logs.
    pub user: String,
}

/// Serves one connection to its end; never returns an error (problems are
/// reported to the client and logged).
pub async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    state: PageServiceState,
    cancel: CancellationToken,
) {
    let span = tracing::info_span!("page_service_conn", %peer);
    async move {
        let mut conn = ServerConnection::new(socket, MAX_FRAME_SIZE, WRITE_TIMEOUT);
        let result = async {
            let Some(session) = startup(&mut conn, &state, &cancel).await? else {
                return Ok(());
            };
            tracing::debug!(user = %session.user, "session started");
            query_loop(&mut conn, &state, &session, &cancel).await
        }
        .await;
        if let Err(e) = result {
            end_with_error(&mut conn, e).await;
        }
    }
    .instrument(span)
    .await
}

/// Best-effort FATAL ErrorResponse for an error that ends the connection.
async fn end_with_error(conn: &mut PgConn, e: PageServiceError) {
    let (code, kind) = match &e {
        PageServiceError::Connection(ServerError::Protocol(_)) => {
            (SQLSTATE_PROTOCOL_VIOLATION, Some("protocol"))
        }
        PageServiceError::Connection(ServerError::IdleTimeout(_)) => ("57P05", None),
        PageServiceError::Connection(_) => {
            // The socket broke or the client vanished: nobody to tell.
            tracing::info!("connection ended: {e}");
            return;
        }
        PageServiceError::Auth(_) => (SQLSTATE_INVALID_AUTHORIZATION, Some("auth")),
        PageServiceError::ShuttingDown => (SQLSTATE_ADMIN_SHUTDOWN, None),
        PageServiceError::Command { code, kind, .. } => (*code, Some(*kind)),
    };
    if let Some(kind) = kind {
        metrics::PAGE_SERVICE_ERRORS
            .with_label_values(&[kind])
            .inc();
    }
    tracing::info!("closing connection: {e}");
    let message = e.to_string();
    conn.write(&BeMessage::ErrorResponse(ErrorFields {
        severity: "FATAL",
        code,
        message: &message,
        detail: None,
    }));
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.flush()).await;
}

async fn read_startup_within(
    conn: &mut PgConn,
    cancel: &CancellationToken,
) -> Result<Option<StartupPacket>, PageServiceError> {
    tokio::select! {
        _ = cancel.cancelled() => Err(PageServiceError::ShuttingDown),
        r = tokio::time::timeout(STARTUP_TIMEOUT, conn.read_startup()) => {
            Ok(r.map_err(|_| ServerError::IdleTimeout(STARTUP_TIMEOUT))??)
        }
    }
}

/// Startup phase up to ReadyForQuery. `Ok(None)`: the client left (or only
/// wanted to cancel a query), nothing more to do.
async fn startup(
    conn: &mut PgConn,
    state: &PageServiceState,
    cancel: &CancellationToken,
) -> Result<Option<Session>, PageServiceError> {
    let mut refused = 0;
    let packet = loop {
        match read_startup_within(conn, cancel).await? {
            None => return Ok(None),
            Some(StartupPacket::SslRequest | StartupPacket::GssEncRequest)
                if refused < MAX_ENCRYPTION_REQUESTS =>
            {
                refused += 1;
                conn.refuse_encryption().await?;
            }
            Some(StartupPacket::SslRequest | StartupPacket::GssEncRequest) => {
                return Err(ServerError::Protocol("too many encryption requests".into()).into())
            }
            Some(StartupPacket::CancelRequest { .. }) => {
                // Requests are bounded by timeouts; there is nothing to cancel.
                tracing::debug!("ignoring CancelRequest");
                return Ok(None);
            }
            Some(p @ StartupPacket::Startup { .. }) => break p,
        }
    };
    let user = packet.param("user").unwrap_or_default().to_string();
    let claims = match state.conf.pg_auth_type {
        AuthType::Trust => None,
        AuthType::Jwt => Some(authenticate(conn, state, cancel).await?),
    };
    conn.write(&BeMessage::AuthenticationOk);
    for (name, value) in [
        ("server_version", "15.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ] {
        conn.write(&BeMessage::ParameterStatus { name, value });
    }
    conn.write(&BeMessage::BackendKeyData {
        process_id: std::process::id() as i32,
        secret_key: rand::random(),
    });
    conn.write(&BeMessage::ReadyForQuery);
    conn.flush().await?;
    Ok(Some(Session { claims, user }))
}

/// Asks for a cleartext password and validates it as a JWT.
async fn authenticate(
    conn: &mut PgConn,
    state: &PageServiceState,
    cancel: &CancellationToken,
) -> Result<Claims, PageServiceError> {
    let auth = state
        .auth
        .as_ref()
        .ok_or_else(|| PageServiceError::Auth("JWT auth is on but no key is loaded".into()))?;
    conn.write(&BeMessage::AuthenticationCleartextPassword);
    conn.flush().await?;
    let msg = conn.read_message_within(STARTUP_TIMEOUT, cancel).await;
    let token = match msg {
        Err(ServerError::Cancelled) => return Err(PageServiceError::ShuttingDown),
        Err(e) => return Err(e.into()),
        Ok(None) => return Err(ServerError::UnexpectedEof.into()),
        Ok(Some(FrontendMessage::Password(p))) => p,
        Ok(Some(other)) => {
            return Err(ServerError::Protocol(format!(
                "expected a password message (the JWT), got {}",
                other.name()
            ))
            .into())
        }
    };
    let token = std::str::from_utf8(&token)
        .map_err(|_| PageServiceError::Auth("the password (a JWT) is not UTF-8".into()))?;
    auth.decode(token.trim()).map_err(|e| {
        PageServiceError::Auth(format!(
            "{e}; send a JWT signed by the control plane as the password"
        ))
    })
}

/// Reads queries and runs commands until the client leaves.
async fn query_loop(
    conn: &mut PgConn,
    state: &PageServiceState,
    session: &Session,
    cancel: &CancellationToken,
) -> Result<(), PageServiceError> {
    let env = CommandEnv {
        conf: &state.conf,
        tenants: &state.tenants,
        claims: session.claims.as_ref(),
        cancel,
    };
    loop {
        let msg = match conn
            .read_message_within(state.conf.page_service_idle_timeout, cancel)
            .await
        {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(ServerError::Cancelled) => return Err(PageServiceError::ShuttingDown),
            Err(e) => return Err(e.into()),
        };
        match msg {
            FrontendMessage::Query(q) => {
                match commands::dispatch(conn, &q, &env).await {
                    Ok(commands::Flow::Continue) => {}
                    Ok(commands::Flow::Close) => return Ok(()),
                    Err(PageServiceError::Command {
                        code,
                        message,
                        kind,
                    }) => {
                        metrics::PAGE_SERVICE_ERRORS
                            .with_label_values(&[kind])
                            .inc();
                        tracing::info!("command refused: {message}");
                        conn.write(&BeMessage::ErrorResponse(ErrorFields {
                            severity: "ERROR",
                            code,
                            message: &message,
                            detail: None,
                        }));
                    }
                    Err(e) => return Err(e),
                }
                conn.write(&BeMessage::ReadyForQuery);
                conn.flush().await?;
            }
            FrontendMessage::Terminate => return Ok(()),
            FrontendMessage::Sync | FrontendMessage::Flush => {
                conn.write(&BeMessage::ReadyForQuery);
                conn.flush().await?;
            }
            other => {
                // Extended-protocol messages and stray COPY messages: refuse,
                // stay usable (the framing is intact).
                metrics::PAGE_SERVICE_ERRORS
                    .with_label_values(&["protocol"])
                    .inc();
                let message = format!(
                    "{} is not supported here; the page service speaks the simple query protocol",
                    other.name()
                );
                conn.write(&BeMessage::ErrorResponse(ErrorFields {
                    severity: "ERROR",
                    code: SQLSTATE_FEATURE_NOT_SUPPORTED,
                    message: &message,
                    detail: None,
                }));
                conn.write(&BeMessage::ReadyForQuery);
                conn.flush().await?;
            }
        }
    }
}
