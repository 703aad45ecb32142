//! A client connection: TCP, startup, authentication and the simple query
//! protocol, with a timeout and the caller's cancellation token on every wait.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::backend::{decode, tag_name, try_split_frame, BackendMessage, MAX_MESSAGE_SIZE};
use crate::{ConnConfig, ReplError};

/// Default limit for one request/response exchange (a query and its results,
/// sending a status update).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `fut` under a time limit, giving up early when `cancel` fires.
pub(crate) async fn with_limits<T>(
    cancel: &CancellationToken,
    limit: Duration,
    what: impl FnOnce() -> String,
    fut: impl Future<Output = Result<T, ReplError>>,
) -> Result<T, ReplError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(ReplError::Cancelled),
        res = tokio::time::timeout(limit, fut) => match res {
            Ok(res) => res,
            Err(_) => Err(ReplError::Timeout { what: what(), after: limit }),
        },
    }
}

/// Socket plus read and write buffers.
pub(crate) struct Io {
    stream: TcpStream,
    rbuf: BytesMut,
    /// Encoded messages waiting for [`Io::flush`].
    pub wbuf: BytesMut,
}

impl Io {
    /// Reads and decodes one message. Cancel-safe: bytes already read stay in
    /// the buffer, so dropping this future loses nothing.
    pub async fn read_message(&mut self) -> Result<BackendMessage, ReplError> {
        loop {
            if let Some(frame) = try_split_frame(&mut self.rbuf, MAX_MESSAGE_SIZE)? {
                return decode(frame);
            }
            let n = self.stream.read_buf(&mut self.rbuf).await?;
            if n == 0 {
                return Err(ReplError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                )));
            }
        }
    }

    /// Writes out everything in `wbuf`.
    pub async fn flush(&mut self) -> Result<(), ReplError> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        self.stream.flush().await?;
        Ok(())
    }
}

/// Encoding our own messages fails only on a NUL inside a string.
pub(crate) fn encode_err(e: std::io::Error) -> ReplError {
    ReplError::Config(format!("cannot encode message: {e}"))
}

/// An authenticated connection, ready for queries.
pub(crate) struct PgConnection {
    pub io: Io,
    pub cancel: CancellationToken,
    pub request_timeout: Duration,
    /// Set once an exchange failed midway; the connection must not be reused.
    pub broken: Option<String>,
    pub server_params: HashMap<String, String>,
    /// `host:port`, for messages.
    pub peer: String,
}

impl PgConnection {
    /// Connects, authenticates and waits for the server to be ready, all
    /// within `cfg.connect_timeout`.
    pub async fn connect(
        cfg: &ConnConfig,
        replication: bool,
        cancel: &CancellationToken,
    ) -> Result<Self, ReplError> {
        let peer = format!("{}:{}", cfg.host, cfg.port);
        let masked = cfg.masked();
        debug!(connstr = %masked, replication, "connecting to PostgreSQL");
        let (io, server_params) = with_limits(
            cancel,
            cfg.connect_timeout,
            || format!("connecting to {masked}"),
            startup(cfg, replication, &peer),
        )
        .await?;
        Ok(PgConnection {
            io,
            cancel: cancel.clone(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            broken: None,
            server_params,
            peer,
        })
    }

    /// Fails if an earlier exchange left the connection in an unknown state.
    pub fn check_usable(&self) -> Result<(), ReplError> {
        match &self.broken {
            Some(why) => Err(ReplError::Protocol(format!(
                "connection to {} is unusable after an earlier error ({why}); reconnect",
                self.peer
            ))),
            None => Ok(()),
        }
    }

    /// Remembers that an exchange failed midway (anything but a clean server
    /// error leaves unread or unsent bytes behind).
    pub fn note_failure<T>(&mut self, res: Result<T, ReplError>) -> Result<T, ReplError> {
        if let Err(e) = &res {
            if !matches!(e, ReplError::Server { .. }) {
                self.broken.get_or_insert_with(|| e.to_string());
            }
        }
        res
    }

    /// Runs `sql` with the simple query protocol and returns every row of every
    /// result, as text. The first server error is returned after the server
    /// is ready again, so the connection stays usable.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ReplError> {
        self.check_usable()?;
        frontend::query(sql, &mut self.io.wbuf).map_err(encode_err)?;
        let peer = self.peer.clone();
        let what = || format!("running a query on {peer}");
        let res = with_limits(
            &self.cancel,
            self.request_timeout,
            what,
            run_simple_query(&mut self.io, &mut self.server_params),
        )
        .await;
        self.note_failure(res)
    }
}

async fn run_simple_query(
    io: &mut Io,
    params: &mut HashMap<String, String>,
) -> Result<Vec<Vec<Option<String>>>, ReplError> {
    io.flush().await?;
    let mut rows = Vec::new();
    let mut error = None;
    let mut in_copy_out = false;
    loop {
        match io.read_message().await? {
            BackendMessage::DataRow(cols) => {
                let row = cols
                    .into_iter()
                    .map(|c| {
                        c.map(|b| {
                            String::from_utf8(b.to_vec()).map_err(|_| {
                                ReplError::Protocol("column value is not valid UTF-8".into())
                            })
                        })
                        .transpose()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                rows.push(row);
            }
            BackendMessage::ReadyForQuery => break,
            BackendMessage::ErrorResponse(n) => {
                error.get_or_insert(n);
            }
            BackendMessage::ParameterStatus { name, value } => {
                params.insert(name, value);
            }
            BackendMessage::CopyInResponse => {
                frontend::copy_fail(
                    "COPY FROM STDIN is not supported by this client",
                    &mut io.wbuf,
                )
                .map_err(encode_err)?;
                io.flush().await?;
            }
            BackendMessage::CopyOutResponse => in_copy_out = true,
            BackendMessage::CopyData(_) if in_copy_out => {}
            BackendMessage::CopyDone if in_copy_out => in_copy_out = false,
            BackendMessage::RowDescription
            | BackendMessage::CommandComplete
            | BackendMessage::EmptyQueryResponse
            | BackendMessage::NoticeResponse(_)
            | BackendMessage::NotificationResponse => {}
            other => return Err(unexpected("a query", &other)),
        }
    }
    match error {
        Some(n) => Err(n.into_error()),
        None => Ok(rows),
    }
}

/// A protocol error for a message that makes no sense at this point.
pub(crate) fn unexpected(during: &str, msg: &BackendMessage) -> ReplError {
    let name = match msg {
        BackendMessage::Unexpected(tag) => format!("message of type {}", tag_name(*tag)),
        other => other.name().to_string(),
    };
    ReplError::Protocol(format!("unexpected {name} from server during {during}"))
}

/// TCP connect, startup message, authentication, then parameters until
/// `ReadyForQuery`.
async fn startup(
    cfg: &ConnConfig,
    replication: bool,
    peer: &str,
) -> Result<(Io, HashMap<String, String>), ReplError> {
    let stream = TcpStream::connect((cfg.host.as_str(), cfg.port))
        .await
        .map_err(|e| {
            ReplError::Io(std::io::Error::new(
                e.kind(),
                format!("connecting to {peer}: {e}"),
            ))
        })?;
    stream.set_nodelay(true)?;
    let mut io = Io {
        stream,
        rbuf: BytesMut::with_capacity(16 * 1024),
        wbuf: BytesMut::with_capacity(1024),
    };

    let mut params: Vec<(&str, &str)> = vec![("user", &cfg.user), ("client_encoding", "UTF8")];
    if let Some(db) = &cfg.dbname {
        params.push(("database", db));
    }
    if let Some(app) = &cfg.application_name {
        params.push(("application_name", app));
    }
    if replication {
        params.push(("replication", "true"));
    }
    frontend::startup_message(params, &mut io.wbuf).map_err(encode_err)?;
    io.flush().await?;

    authenticate(&mut io, cfg).await?;

    let mut server_params = HashMap::new();
    loop {
        match io.read_message().await? {
            BackendMessage::ParameterStatus { name, value } => {
                server_params.insert(name, value);
            }
            BackendMessage::ReadyForQuery => break,
            BackendMessage::ErrorResponse(n) => return Err(n.into_error()),
            BackendMessage::BackendKeyData
            | BackendMessage::NoticeResponse(_)
            | BackendMessage::NegotiateProtocolVersion => {}
            other => return Err(unexpected("connection startup", &other)),
        }
    }
    Ok((io, server_params))
}

/// Answers the server's authentication requests until `AuthenticationOk`.
async fn authenticate(io: &mut Io, cfg: &ConnConfig) -> Result<(), ReplError> {
    let password = || {
        cfg.password.as_deref().ok_or_else(|| {
            ReplError::Auth(format!(
                "the server requires a password for user \"{}\" but the connection string has none",
                cfg.user
            ))
        })
    };
    let mut scram: Option<ScramSha256> = None;
    loop {
        match io.read_message().await? {
            BackendMessage::AuthenticationOk => return Ok(()),
            BackendMessage::AuthenticationCleartextPassword => {
                frontend::password_message(password()?.as_bytes(), &mut io.wbuf)
                    .map_err(encode_err)?;
            }
            BackendMessage::AuthenticationMd5Password(salt) => {
                let hash = md5_hash(cfg.user.as_bytes(), password()?.as_bytes(), salt);
                frontend::password_message(hash.as_bytes(), &mut io.wbuf).map_err(encode_err)?;
            }
            BackendMessage::AuthenticationSasl(mechanisms) => {
                if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
                    return Err(ReplError::Auth(format!(
                        "the server offers SASL mechanisms {mechanisms:?}; only SCRAM-SHA-256 is supported"
                    )));
                }
                // No TLS, so no channel binding: gs2 header "n,,".
                let s = ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut io.wbuf)
                    .map_err(encode_err)?;
                scram = Some(s);
            }
            BackendMessage::AuthenticationSaslContinue(data) => {
                let s = scram.as_mut().ok_or_else(|| {
                    ReplError::Protocol("SASLContinue without a SASL exchange".into())
                })?;
                s.update(&data)
                    .map_err(|e| ReplError::Auth(format!("SCRAM-SHA-256 exchange failed: {e}")))?;
                frontend::sasl_response(s.message(), &mut io.wbuf).map_err(encode_err)?;
            }
            BackendMessage::AuthenticationSaslFinal(data) => {
                let s = scram.as_mut().ok_or_else(|| {
                    ReplError::Protocol("SASLFinal without a SASL exchange".into())
                })?;
                s.finish(&data).map_err(|e| {
                    ReplError::Auth(format!(
                        "SCRAM-SHA-256 server signature check failed (is this the right server?): {e}"
                    ))
                })?;
                continue;
            }
            BackendMessage::AuthenticationOther(code) => {
                return Err(ReplError::Auth(format!(
                    "the server asks for authentication method {code} ({}); supported are trust, password, md5 and scram-sha-256",
                    auth_method_name(code)
                )));
            }
            BackendMessage::ErrorResponse(n) if n.code.starts_with("28") => {
                return Err(ReplError::Auth(format!(
                    "{} {}: {}",
                    n.severity, n.code, n.message
                )));
            }
            BackendMessage::ErrorResponse(n) => return Err(n.into_error()),
            BackendMessage::NoticeResponse(_) | BackendMessage::NegotiateProtocolVersion => {
                continue
            }
            other => return Err(unexpected("authentication", &other)),
        }
        io.flush().await?;
    }
}

fn auth_method_name(code: i32) -> &'static str {
    match code {
        2 => "Kerberos V5",
        6 => "SCM credentials",
        7 | 8 => "GSSAPI",
        9 => "SSPI",
        _ => "unknown",
    }
}
