//! Physical replication: replication commands and the CopyBoth WAL stream.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::frontend;
use tokio_util::sync::CancellationToken;
use utils::lsn::Lsn;

use crate::backend::BackendMessage;
use crate::connection::{encode_err, unexpected, with_limits, PgConnection};
use crate::{ConnConfig, ReplError};

/// Default limit on silence from the server while streaming (like PostgreSQL's
/// `wal_receiver_timeout`). A walsender sends keepalives at least every half
/// `wal_sender_timeout`, so a healthy but idle primary never hits it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Seconds from the Unix epoch to the PostgreSQL epoch, 2000-01-01 00:00 UTC.
const PG_EPOCH_OFFSET_SECS: u64 = 946_684_800;

/// A time as PostgreSQL's replication protocol sends it: microseconds since
/// 2000-01-01 00:00 UTC.
pub fn to_pg_timestamp(t: SystemTime) -> i64 {
    let pg_epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_OFFSET_SECS);
    match t.duration_since(pg_epoch) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// The inverse of [`to_pg_timestamp`].
pub fn from_pg_timestamp(micros: i64) -> SystemTime {
    let pg_epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_OFFSET_SECS);
    let d = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        pg_epoch + d
    } else {
        pg_epoch - d
    }
}

/// The answer to `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifySystem {
    /// The cluster's system identifier (a 64-bit number, as text).
    pub systemid: String,
    /// The server's current timeline.
    pub timeline: u32,
    /// The server's current WAL flush position.
    pub xlogpos: Lsn,
    /// The database, on a logical replication connection; `None` for physical.
    pub dbname: Option<String>,
}

/// Where the next timeline starts, sent by the server when it ends streaming
/// of a historic timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextTimeline {
    /// The timeline that follows the streamed one.
    pub timeline: u32,
    /// The LSN at which it branched off.
    pub start: Lsn,
}

/// A connection to a PostgreSQL server for replication commands (or, from
/// [`ReplicationConnection::connect_normal`], plain SQL).
///
/// Every exchange is limited by the request timeout (default
/// [`DEFAULT_REQUEST_TIMEOUT`](crate::DEFAULT_REQUEST_TIMEOUT)) and stops with
/// [`ReplError::Cancelled`] when the token given to `connect` fires. After
/// any failure other than a server error the connection refuses further use.
pub struct ReplicationConnection {
    conn: PgConnection,
    replication: bool,
}

/// Slot names PostgreSQL accepts: lower-case letters, digits and underscores,
/// at most 63 characters.
fn validate_slot_name(name: &str) -> Result<(), ReplError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ReplError::Config(format!(
            "invalid replication slot name {name:?}: use 1 to 63 characters from a-z, 0-9 and _"
        )))
    }
}

impl ReplicationConnection {
    /// Connects as a physical replication client (`replication=true`), with
    /// trust, cleartext password, md5 or SCRAM-SHA-256 authentication, within
    /// `cfg.connect_timeout`. The token is kept: cancelling it stops every
    /// later operation on this connection and its stream.
    pub async fn connect(cfg: &ConnConfig, cancel: &CancellationToken) -> Result<Self, ReplError> {
        Ok(ReplicationConnection {
            conn: PgConnection::connect(cfg, true, cancel).await?,
            replication: true,
        })
    }

    /// Connects as an ordinary client, for SQL through
    /// [`ReplicationConnection::simple_query`]; replication commands are
    /// refused with [`ReplError::Config`].
    pub async fn connect_normal(
        cfg: &ConnConfig,
        cancel: &CancellationToken,
    ) -> Result<Self, ReplError> {
        Ok(ReplicationConnection {
            conn: PgConnection::connect(cfg, false, cancel).await?,
            replication: false,
        })
    }

    /// Parameters the server reported (`server_version`, `integer_datetimes`, ...).
    pub fn server_params(&self) -> &HashMap<String, String> {
        &self.conn.server_params
    }

    /// The server's `server_version`, e.g. `15.8 (Debian 15.8-1)`.
    pub fn server_version(&self) -> Option<&str> {
        self.conn
            .server_params
            .get("server_version")
            .map(String::as_str)
    }

    /// Changes the limit for each request/response exchange.
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.conn.request_timeout = timeout;
    }

    fn require_replication(&self, command: &str) -> Result<(), ReplError> {
        if self.replication {
            Ok(())
        } else {
            Err(ReplError::Config(format!(
                "{command} needs a replication connection (ReplicationConnection::connect), not connect_normal"
            )))
        }
    }

    /// Runs SQL (or a replication command) with the simple query protocol;
    /// returns the rows of all results as text, `None` for NULL.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ReplError> {
        self.conn.simple_query(sql).await
    }

    /// `IDENTIFY_SYSTEM`: system id, current timeline and WAL flush position.
    pub async fn identify_system(&mut self) -> Result<IdentifySystem, ReplError> {
        self.require_replication("IDENTIFY_SYSTEM")?;
        let rows = self.conn.simple_query("IDENTIFY_SYSTEM").await?;
        let bad = |why: &str| ReplError::Protocol(format!("bad IDENTIFY_SYSTEM reply: {why}"));
        let [row] = rows.as_slice() else {
            return Err(bad(&format!("expected 1 row, got {}", rows.len())));
        };
        if row.len() < 4 {
            return Err(bad(&format!("expected 4 columns, got {}", row.len())));
        }
        let text = |i: usize, name: &str| {
            row[i]
                .clone()
                .ok_or_else(|| bad(&format!("{name} is NULL")))
        };
        let systemid = text(0, "systemid")?;
        let timeline = text(1, "timeline")?
            .parse::<u32>()
            .map_err(|_| bad("timeline is not a number"))?;
        let xlogpos = text(2, "xlogpos")?
            .parse::<Lsn>()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(IdentifySystem {
            systemid,
            timeline,
            xlogpos,
            dbname: row[3].clone(),
        })
    }

    /// `CREATE_REPLICATION_SLOT name PHYSICAL RESERVE_WAL`. Returns false
    /// when the slot already exists (SQLSTATE 42710). The name must match
    /// `[a-z0-9_]{1,63}`.
    pub async fn create_physical_slot_if_missing(&mut self, name: &str) -> Result<bool, ReplError> {
        validate_slot_name(name)?;
        self.require_replication("CREATE_REPLICATION_SLOT")?;
        let sql = format!("CREATE_REPLICATION_SLOT {name} PHYSICAL RESERVE_WAL");
        match self.conn.simple_query(&sql).await {
            Ok(_) => Ok(true),
            Err(e) if e.sqlstate() == Some("42710") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `DROP_REPLICATION_SLOT name WAIT`. Returns false when there is no such
    /// slot (SQLSTATE 42704).
    pub async fn drop_slot_if_exists(&mut self, name: &str) -> Result<bool, ReplError> {
        validate_slot_name(name)?;
        self.require_replication("DROP_REPLICATION_SLOT")?;
        let sql = format!("DROP_REPLICATION_SLOT {name} WAIT");
        match self.conn.simple_query(&sql).await {
            Ok(_) => Ok(true),
            Err(e) if e.sqlstate() == Some("42704") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `START_REPLICATION [SLOT s] PHYSICAL start TIMELINE timeline`: switches
    /// the connection into streaming (CopyBoth) mode.
    ///
    /// Errors the server raises before streaming (unknown slot, bad timeline)
    /// come from here; those it raises after entering copy mode (start ahead
    /// of its flush position, WAL already removed) come from the first
    /// [`ReplicationStream::next_message`].
    pub async fn start_physical(
        mut self,
        slot: Option<&str>,
        start: Lsn,
        timeline: u32,
    ) -> Result<ReplicationStream, ReplError> {
        if let Some(slot) = slot {
            validate_slot_name(slot)?;
        }
        if timeline == 0 {
            return Err(ReplError::Config("timeline must be at least 1".into()));
        }
        self.require_replication("START_REPLICATION")?;
        self.conn.check_usable()?;
        let slot_clause = slot.map(|s| format!("SLOT {s} ")).unwrap_or_default();
        let sql = format!("START_REPLICATION {slot_clause}PHYSICAL {start} TIMELINE {timeline}");
        frontend::query(&sql, &mut self.conn.io.wbuf).map_err(encode_err)?;
        let peer = self.conn.peer.clone();
        let io = &mut self.conn.io;
        let res = with_limits(
            &self.conn.cancel,
            self.conn.request_timeout,
            || format!("starting replication at {start} on {peer}"),
            async {
                io.flush().await?;
                let mut error = None;
                loop {
                    match io.read_message().await? {
                        BackendMessage::CopyBothResponse if error.is_none() => return Ok(()),
                        BackendMessage::ErrorResponse(n) => {
                            error.get_or_insert(n);
                        }
                        BackendMessage::ReadyForQuery => {
                            return Err(match error.take() {
                                Some(n) => n.into_error(),
                                None => ReplError::Protocol(
                                    "server finished START_REPLICATION without streaming".into(),
                                ),
                            });
                        }
                        BackendMessage::NoticeResponse(_)
                        | BackendMessage::ParameterStatus { .. }
                        | BackendMessage::RowDescription
                        | BackendMessage::CommandComplete => {}
                        other => return Err(unexpected("START_REPLICATION", &other)),
                    }
                }
            },
        )
        .await;
        self.conn.note_failure(res)?;
        Ok(ReplicationStream {
            conn: self.conn,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            next_lsn: start,
            server_done: false,
        })
    }

    /// Ends the session politely (Terminate), within the request timeout.
    pub async fn close(mut self) -> Result<(), ReplError> {
        frontend::terminate(&mut self.conn.io.wbuf);
        let io = &mut self.conn.io;
        with_limits(
            &self.conn.cancel,
            self.conn.request_timeout,
            || "closing the connection".to_string(),
            io.flush(),
        )
        .await
    }
}

/// One message of the physical replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// WAL bytes `data` starting at `wal_start`.
    XLogData {
        /// LSN of the first byte of `data`.
        wal_start: Lsn,
        /// The server's WAL end (flush position) when it sent this message;
        /// `wal_start + data.len()` is where this message's data ends.
        wal_end: Lsn,
        /// The server's clock, microseconds since 2000-01-01 (see
        /// [`from_pg_timestamp`]).
        server_time: i64,
        /// The WAL bytes.
        data: Bytes,
    },
    /// A keepalive: nothing new to send.
    Keepalive {
        /// The server's current WAL end.
        wal_end: Lsn,
        /// The server's clock, microseconds since 2000-01-01.
        server_time: i64,
        /// The server asks for a standby status update now; without one it
        /// disconnects after `wal_sender_timeout`.
        reply_requested: bool,
    },
}

/// Decodes the payload of a CopyData message in a physical stream.
fn parse_replication_message(mut b: Bytes) -> Result<ReplicationMessage, ReplError> {
    let Some(&kind) = b.first() else {
        return Err(ReplError::Protocol(
            "empty CopyData in replication stream".into(),
        ));
    };
    match kind {
        b'w' => {
            if b.len() < 25 {
                return Err(ReplError::Protocol(format!(
                    "XLogData message of {} bytes is shorter than its 25-byte header",
                    b.len()
                )));
            }
            b.advance(1);
            let wal_start = Lsn(b.get_u64());
            let wal_end = Lsn(b.get_u64());
            let server_time = b.get_i64();
            Ok(ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                server_time,
                data: b,
            })
        }
        b'k' => {
            if b.len() != 18 {
                return Err(ReplError::Protocol(format!(
                    "keepalive message has {} bytes, expected 18",
                    b.len()
                )));
            }
            b.advance(1);
            let wal_end = Lsn(b.get_u64());
            let server_time = b.get_i64();
            let reply_requested = match b.get_u8() {
                0 => false,
                1 => true,
                other => {
                    return Err(ReplError::Protocol(format!(
                        "keepalive reply flag is {other}, expected 0 or 1"
                    )))
                }
            };
            Ok(ReplicationMessage::Keepalive {
                wal_end,
                server_time,
                reply_requested,
            })
        }
        other => Err(ReplError::Protocol(format!(
            "unknown replication message type {}",
            crate::backend::tag_name(other)
        ))),
    }
}

/// A physical replication stream (CopyBoth), from
/// [`ReplicationConnection::start_physical`].
///
/// WAL arrives contiguously from the requested start; a gap is a
/// [`ReplError::Protocol`] error. [`ReplicationStream::next_message`] is
/// cancel-safe and waits at most the idle timeout.
pub struct ReplicationStream {
    conn: PgConnection,
    idle_timeout: Duration,
    /// Where the next XLogData must start.
    next_lsn: Lsn,
    /// The server sent CopyDone and we answered it.
    server_done: bool,
}

impl ReplicationStream {
    /// Changes how long [`ReplicationStream::next_message`] waits for any
    /// message (default [`DEFAULT_IDLE_TIMEOUT`]).
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        self.idle_timeout = timeout;
    }

    /// The end of the WAL received so far (the start LSN before any data):
    /// what to report as `write` once it is stored.
    pub fn received_up_to(&self) -> Lsn {
        self.next_lsn
    }

    /// Parameters the server reported at connect time.
    pub fn server_params(&self) -> &HashMap<String, String> {
        &self.conn.server_params
    }

    /// The next WAL data or keepalive; `None` once the server ends the copy
    /// (end of a historic timeline, or after [`ReplicationStream::finish`]
    /// was requested). Errors with [`ReplError::Cancelled`] when the token
    /// fires and [`ReplError::Timeout`] after the idle timeout; both leave the
    /// stream usable. Cancel-safe: dropping the future loses no data.
    pub async fn next_message(&mut self) -> Result<Option<ReplicationMessage>, ReplError> {
        self.conn.check_usable()?;
        if self.server_done {
            return Ok(None);
        }
        loop {
            let read = tokio::select! {
                biased;
                _ = self.conn.cancel.cancelled() => return Err(ReplError::Cancelled),
                r = tokio::time::timeout(self.idle_timeout, self.conn.io.read_message()) => r,
            };
            let msg = match read {
                Ok(r) => self.conn.note_failure(r)?,
                Err(_) => {
                    return Err(ReplError::Timeout {
                        what: format!("waiting for WAL or a keepalive from {}", self.conn.peer),
                        after: self.idle_timeout,
                    })
                }
            };
            match msg {
                BackendMessage::CopyData(payload) => {
                    let res =
                        parse_replication_message(payload).and_then(|m| self.check_contiguous(m));
                    return self.conn.note_failure(res).map(Some);
                }
                BackendMessage::CopyDone => {
                    self.server_done = true;
                    frontend::copy_done(&mut self.conn.io.wbuf);
                    let io = &mut self.conn.io;
                    let res = with_limits(
                        &self.conn.cancel,
                        self.conn.request_timeout,
                        || "answering the end of the replication stream".to_string(),
                        io.flush(),
                    )
                    .await;
                    self.conn.note_failure(res)?;
                    return Ok(None);
                }
                BackendMessage::ErrorResponse(n) => {
                    let e = n.into_error();
                    self.conn.broken = Some(e.to_string());
                    return Err(e);
                }
                // A walsender that stops with its server (all WAL sent and
                // confirmed) ends with CommandComplete and no CopyDone.
                BackendMessage::CommandComplete => {
                    self.server_done = true;
                    self.conn.broken = Some("the server ended the replication stream".into());
                    return Ok(None);
                }
                BackendMessage::NoticeResponse(_) | BackendMessage::ParameterStatus { .. } => {}
                other => {
                    let e = unexpected("replication streaming", &other);
                    return self.conn.note_failure(Err(e));
                }
            }
        }
    }

    fn check_contiguous(&mut self, m: ReplicationMessage) -> Result<ReplicationMessage, ReplError> {
        if let ReplicationMessage::XLogData {
            wal_start, data, ..
        } = &m
        {
            if *wal_start != self.next_lsn {
                return Err(ReplError::Protocol(format!(
                    "WAL gap: expected data at {}, server sent data at {wal_start}",
                    self.next_lsn
                )));
            }
            self.next_lsn = wal_start.checked_add(data.len() as u64).ok_or_else(|| {
                ReplError::Protocol(format!("XLogData at {wal_start} overflows the LSN range"))
            })?;
        }
        Ok(m)
    }

    /// Sends a standby status update ('r'): WAL written, flushed (durable; a
    /// slot's `restart_lsn` follows it) and applied up to the given LSNs, with
    /// the current time. `reply_requested` asks the server for a keepalive.
    pub async fn send_standby_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply_requested: bool,
    ) -> Result<(), ReplError> {
        self.conn.check_usable()?;
        if self.server_done {
            return Err(ReplError::Protocol(
                "cannot send a status update: the replication stream has ended".into(),
            ));
        }
        let mut body = BytesMut::with_capacity(34);
        body.put_u8(b'r');
        body.put_u64(write.0);
        body.put_u64(flush.0);
        body.put_u64(apply.0);
        body.put_i64(to_pg_timestamp(SystemTime::now()));
        body.put_u8(u8::from(reply_requested));
        frontend::CopyData::new(body.freeze())
            .map_err(encode_err)?
            .write(&mut self.conn.io.wbuf);
        let peer = self.conn.peer.clone();
        let io = &mut self.conn.io;
        let res = with_limits(
            &self.conn.cancel,
            self.conn.request_timeout,
            || format!("sending a standby status update to {peer}"),
            io.flush(),
        )
        .await;
        self.conn.note_failure(res)
    }

    /// Leaves streaming mode and returns the connection for more commands,
    /// with the next timeline when the server ended a historic timeline.
    /// WAL still in flight is discarded.
    pub async fn finish(
        mut self,
    ) -> Result<(ReplicationConnection, Option<NextTimeline>), ReplError> {
        self.conn.check_usable()?;
        let server_done = self.server_done;
        if !server_done {
            frontend::copy_done(&mut self.conn.io.wbuf);
        }
        let peer = self.conn.peer.clone();
        let io = &mut self.conn.io;
        let res = with_limits(
            &self.conn.cancel,
            self.conn.request_timeout,
            || format!("ending replication on {peer}"),
            async {
                io.flush().await?;
                if !server_done {
                    loop {
                        match io.read_message().await? {
                            BackendMessage::CopyDone => break,
                            BackendMessage::CopyData(_)
                            | BackendMessage::NoticeResponse(_)
                            | BackendMessage::ParameterStatus { .. } => {}
                            BackendMessage::ErrorResponse(n) => return Err(n.into_error()),
                            other => return Err(unexpected("the end of replication", &other)),
                        }
                    }
                }
                let mut next = None;
                let mut error = None;
                loop {
                    match io.read_message().await? {
                        BackendMessage::DataRow(cols) => next = Some(parse_next_timeline(&cols)?),
                        BackendMessage::ReadyForQuery => break,
                        BackendMessage::ErrorResponse(n) => {
                            error.get_or_insert(n);
                        }
                        BackendMessage::RowDescription
                        | BackendMessage::CommandComplete
                        | BackendMessage::NoticeResponse(_)
                        | BackendMessage::ParameterStatus { .. } => {}
                        other => return Err(unexpected("the end of replication", &other)),
                    }
                }
                match error {
                    Some(n) => Err(n.into_error()),
                    None => Ok(next),
                }
            },
        )
        .await;
        let next = self.conn.note_failure(res)?;
        Ok((
            ReplicationConnection {
                conn: self.conn,
                replication: true,
            },
            next,
        ))
    }
}

fn parse_next_timeline(cols: &[Option<Bytes>]) -> Result<NextTimeline, ReplError> {
    let bad = || ReplError::Protocol("bad next-timeline row at the end of replication".into());
    let text = |i: usize| -> Result<&str, ReplError> {
        cols.get(i)
            .and_then(|c| c.as_deref())
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(bad)
    };
    Ok(NextTimeline {
        timeline: text(0)?.parse().map_err(|_| bad())?,
        start: text(1)?.parse().map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names() {
        for ok in ["a", "pageserver_1", &"x".repeat(63)] {
            validate_slot_name(ok).unwrap();
        }
        for bad in ["", "A", "a-b", "a b", "x;DROP", &"x".repeat(64), "é"] {
            assert!(
                matches!(validate_slot_name(bad), Err(ReplError::Config(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn pg_timestamps() {
        let pg_epoch = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_OFFSET_SECS);
        assert_eq!(to_pg_timestamp(pg_epoch), 0);
        assert_eq!(
            to_pg_timestamp(pg_epoch + Duration::from_micros(1_500_000)),
            1_500_000
        );
        assert_eq!(to_pg_timestamp(UNIX_EPOCH), -946_684_800_000_000);
        for t in [0i64, 1, -1, 757_382_400_123_456] {
            assert_eq!(to_pg_timestamp(from_pg_timestamp(t)), t);
        }
    }

    #[test]
    fn parses_xlogdata_and_keepalive() {
        let mut b = BytesMut::new();
        b.put_u8(b'w');
        b.put_u64(0x1_0000_0028);
        b.put_u64(0x1_0000_1000);
        b.put_i64(42);
        b.put_slice(b"wal");
        assert_eq!(
            parse_replication_message(b.freeze()).unwrap(),
            ReplicationMessage::XLogData {
                wal_start: Lsn(0x1_0000_0028),
                wal_end: Lsn(0x1_0000_1000),
                server_time: 42,
                data: Bytes::from_static(b"wal"),
            }
        );
        let mut b = BytesMut::new();
        b.put_u8(b'k');
        b.put_u64(7);
        b.put_i64(-3);
        b.put_u8(1);
        assert_eq!(
            parse_replication_message(b.freeze()).unwrap(),
            ReplicationMessage::Keepalive {
                wal_end: Lsn(7),
                server_time: -3,
                reply_requested: true
            }
        );
    }

    #[test]
    fn malformed_replication_messages() {
        let mut long_k = vec![b'k'];
        long_k.extend_from_slice(&[0; 18]);
        let mut bad_flag = vec![b'k'];
        bad_flag.extend_from_slice(&[0; 16]);
        bad_flag.push(2);
        for bad in [
            &b""[..],
            &b"w"[..],
            &[b'w'; 24][..],
            &b"k"[..],
            &long_k[..],
            &bad_flag[..],
            &b"x123"[..],
        ] {
            assert!(
                matches!(
                    parse_replication_message(Bytes::copy_from_slice(bad)),
                    Err(ReplError::Protocol(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn next_timeline_row() {
        let row = [
            Some(Bytes::from_static(b"3")),
            Some(Bytes::from_static(b"0/3000060")),
        ];
        assert_eq!(
            parse_next_timeline(&row).unwrap(),
            NextTimeline {
                timeline: 3,
                start: Lsn(0x3000060)
            }
        );
        assert!(parse_next_timeline(&[None, None]).is_err());
        assert!(parse_next_timeline(&[Some(Bytes::from_static(b"x"))]).is_err());
    }
}
