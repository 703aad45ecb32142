//! The page service's COPY commands:
//!
//! * `basebackup TENANT TIMELINE [LSN] [--gzip]`: CopyOut of the base
//!   backup tar (see [`crate::basebackup`]);
//! * `import basebackup TENANT TIMELINE START_LSN END_LSN`: CopyIn of a
//!   `pg_basebackup -Ft` tar, creating the timeline;
//! * `import wal TENANT TIMELINE START_LSN END_LSN`: CopyIn of WAL (from
//!   the start of the segment holding `START_LSN`) into a timeline.
//!
//! A failure part-way through a CopyOut is an ErrorResponse instead of
//! CopyDone, so the client never takes a truncated archive for a whole one.
//! A failed import reads the rest of the client's COPY (so the session
//! stays in step) and then answers with the error; nothing half-imported is
//! readable (see [`crate::walingest::import_stream`]).

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pq_proto::{
    BeMessage, CopyInReader, SQLSTATE_INTERNAL_ERROR, SQLSTATE_SYNTAX_ERROR,
    SQLSTATE_UNDEFINED_OBJECT,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use utils::id::TimelineId;
use utils::lsn::Lsn;

use super::commands::{active_timeline, CommandEnv, Flow, TimelineArgs};
use super::connection::PgConn;
use super::PageServiceError;
use crate::basebackup::{self, BasebackupError};
use crate::tenant::bootstrap::{read_wal_source, ScratchDir, ScratchKind};
use crate::tenant::timeline::pg_read::PgReadError;
use crate::tenant::timeline::read::PageReconstructError;
use crate::walingest::{import_stream, IngestError};

/// Arguments of `basebackup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasebackupArgs {
    /// The timeline.
    pub timeline: TimelineArgs,
    /// The LSN (default: the last record LSN).
    pub lsn: Option<Lsn>,
    /// Compress the tar with gzip.
    pub gzip: bool,
}

/// Arguments of `import basebackup` and `import wal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportArgs {
    /// The timeline (created by `import basebackup`).
    pub timeline: TimelineArgs,
    /// Where the backup or the WAL starts.
    pub start: Lsn,
    /// The backup's end; the LSN the WAL import runs to.
    pub end: Lsn,
}

fn syntax(message: String) -> PageServiceError {
    PageServiceError::command(SQLSTATE_SYNTAX_ERROR, "command", message)
}

fn parse_lsn(name: &str, what: &str, s: &str) -> Result<Lsn, PageServiceError> {
    s.parse()
        .map_err(|e| syntax(format!("{name}: invalid {what} {s:?} (expected X/Y): {e}")))
}

impl BasebackupArgs {
    /// Parses `TENANT TIMELINE [LSN] [--gzip]`.
    pub fn parse(
        args: &[&str],
        timeline: impl Fn(&[&str]) -> Result<TimelineArgs, PageServiceError>,
    ) -> Result<Self, PageServiceError> {
        let gzip = args.last() == Some(&"--gzip");
        let args = if gzip { &args[..args.len() - 1] } else { args };
        let (ids, lsn) = match args {
            [t, tl] => ([*t, *tl], None),
            [t, tl, lsn] => ([*t, *tl], Some(parse_lsn("basebackup", "LSN", lsn)?)),
            _ => {
                return Err(syntax(format!(
                    "basebackup takes TENANT_ID TIMELINE_ID [LSN] [--gzip], got {} arguments",
                    args.len() + usize::from(gzip)
                )))
            }
        };
        Ok(BasebackupArgs {
            timeline: timeline(&ids)?,
            lsn,
            gzip,
        })
    }
}

impl ImportArgs {
    /// Parses `TENANT TIMELINE START_LSN END_LSN` of `import KIND`.
    pub fn parse(
        kind: &str,
        args: &[&str],
        timeline: impl Fn(&[&str]) -> Result<TimelineArgs, PageServiceError>,
    ) -> Result<Self, PageServiceError> {
        let name = format!("import {kind}");
        let [t, tl, start, end] = args else {
            return Err(syntax(format!(
                "{name} takes TENANT_ID TIMELINE_ID START_LSN END_LSN, got {} arguments",
                args.len()
            )));
        };
        let start = parse_lsn(&name, "START_LSN", start)?;
        let end = parse_lsn(&name, "END_LSN", end)?;
        if end < start {
            return Err(syntax(format!(
                "{name}: END_LSN {end} is before START_LSN {start}"
            )));
        }
        Ok(ImportArgs {
            timeline: timeline(&[t, tl])?,
            start,
            end,
        })
    }
}

fn read_error(e: BasebackupError) -> PageServiceError {
    use crate::basebackup::control::ControlError;
    let msg = e.to_string();
    match e {
        BasebackupError::Cancelled => PageServiceError::ShuttingDown,
        BasebackupError::Control(ControlError::Unaligned(_)) => syntax(msg),
        BasebackupError::Read(PgReadError::Reconstruct(
            PageReconstructError::BelowGcCutoff { .. } | PageReconstructError::LsnTimeout { .. },
        )) => PageServiceError::command(SQLSTATE_UNDEFINED_OBJECT, "lsn", msg),
        _ => PageServiceError::command(SQLSTATE_INTERNAL_ERROR, "internal", msg),
    }
}

/// `basebackup`: the tar as CopyOut.
pub async fn handle_basebackup(
    conn: &mut PgConn,
    args: BasebackupArgs,
    env: &CommandEnv<'_>,
) -> Result<Flow, PageServiceError> {
    let tl = active_timeline(env, args.timeline)?;
    let (lsn, prev) = basebackup::resolve_lsn(&tl, args.lsn, env.conf.wait_lsn_timeout)
        .await
        .map_err(read_error)?;
    let mut rx = basebackup::stream(tl, lsn, prev, args.gzip);
    let idle = env.conf.page_service_idle_timeout;
    let mut out = conn.copy_out().await?;
    loop {
        let chunk = tokio::select! {
            _ = env.cancel.cancelled() => return Err(PageServiceError::ShuttingDown),
            c = rx.recv() => c,
        };
        match chunk {
            None => break,
            Some(Ok(bytes)) => {
                let written = tokio::time::timeout(idle, out.write_all(&bytes)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(PageServiceError::Connection(e.into())),
                    Err(_) => {
                        return Err(PageServiceError::Connection(
                            io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("the client read nothing for {idle:?}"),
                            )
                            .into(),
                        ))
                    }
                }
            }
            Some(Err(e)) => {
                return Err(PageServiceError::command(
                    SQLSTATE_INTERNAL_ERROR,
                    "internal",
                    format!("base backup at {lsn} failed part-way; discard what was received: {e}"),
                ))
            }
        }
    }
    out.flush()
        .await
        .map_err(|e| PageServiceError::Connection(e.into()))?;
    out.finish().await?;
    conn.write(&BeMessage::CommandComplete("BASEBACKUP"));
    Ok(Flow::Continue)
}

fn import_error(e: IngestError) -> PageServiceError {
    PageServiceError::command(SQLSTATE_INTERNAL_ERROR, "import", e.to_string())
}

/// Reads and drops the rest of a COPY from the client (bounded by the idle
/// timeout per read), so that an error answer arrives after it.
async fn drain(reader: &mut CopyInReader<'_, TcpStream>, idle: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(idle, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
    }
}

/// A `Read` over chunks sent by the async side (for the tar unpacker).
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(c) => self.chunk = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Reads `reader` to its end (CopyDone), each read within `idle`, sending
/// the chunks to `tx` until the receiver goes away (then just draining).
async fn pump(
    reader: &mut CopyInReader<'_, TcpStream>,
    tx: mpsc::Sender<Bytes>,
    idle: Duration,
) -> Result<(), String> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match tokio::time::timeout(idle, reader.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(format!("reading the COPY data failed: {e}")),
            Err(_) => return Err(format!("the client sent nothing for {idle:?}")),
        };
        if n == 0 {
            return Ok(());
        }
        if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
            // The unpacker stopped (with an error it reports): keep the
            // session in step by reading the rest.
            drain(reader, idle).await;
            return Ok(());
        }
    }
}

/// `import basebackup`: unpacks the CopyIn tar into a scratch directory,
/// checks it, and creates the timeline from it.
pub async fn handle_import_basebackup(
    conn: &mut PgConn,
    args: ImportArgs,
    env: &CommandEnv<'_>,
) -> Result<Flow, PageServiceError> {
    let tenant = env.tenants.get(args.timeline.tenant_id)?;
    tenant.check_active()?;
    let timeline_id: TimelineId = args.timeline.timeline_id;
    if tenant.get_timeline(timeline_id).is_ok() {
        return Err(PageServiceError::command(
            SQLSTATE_INTERNAL_ERROR,
            "exists",
            format!("timeline {timeline_id} already exists; import into a new timeline id"),
        ));
    }
    let scratch = Arc::new(
        ScratchDir::new(ScratchKind::Import, args.timeline.tenant_id, timeline_id).map_err(
            |e| PageServiceError::command(SQLSTATE_INTERNAL_ERROR, "import", format!("{e:#}")),
        )?,
    );
    let (tx, rx) = mpsc::channel(8);
    let (start, end) = (args.start, args.end);
    let dir = scratch.0.clone();
    let unpack = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)
            .map_err(|e| IngestError::Import(format!("cannot create {}: {e}", dir.display())))?;
        let reader = ChannelReader {
            rx,
            chunk: Bytes::new(),
        };
        import_stream::unpack_basebackup(reader, &dir, start, end)
    });
    let idle = env.conf.page_service_idle_timeout;
    let mut reader = conn.copy_in().await?;
    let pumped = pump(&mut reader, tx, idle).await;
    let complete = reader.is_done();
    let unpacked = unpack
        .await
        .map_err(|e| import_error(IngestError::Import(format!("unpack task failed: {e}"))))?;
    pumped.map_err(|e| import_error(IngestError::Import(e)))?;
    unpacked.map_err(import_error)?;
    if !complete {
        return Err(import_error(IngestError::Import(
            "the COPY ended without CopyDone: the tar may be incomplete".into(),
        )));
    }
    tenant
        .import_basebackup(timeline_id, scratch.0.clone(), start, end)
        .await?;
    drop(scratch);
    tracing::info!(tenant_id = %args.timeline.tenant_id, %timeline_id, %start, %end, "imported base backup");
    conn.write(&BeMessage::CommandComplete("IMPORT"));
    Ok(Flow::Continue)
}

/// `import wal`: ingests the CopyIn WAL into an existing timeline up to the
/// end LSN, then reads (and ignores) the rest of the COPY.
pub async fn handle_import_wal(
    conn: &mut PgConn,
    args: ImportArgs,
    env: &CommandEnv<'_>,
) -> Result<Flow, PageServiceError> {
    let tl = active_timeline(env, args.timeline)?;
    let _gate = tl
        .gate
        .enter()
        .map_err(|_| PageServiceError::ShuttingDown)?;
    let source = read_wal_source(tl.path()).map_err(|e| {
        PageServiceError::command(SQLSTATE_INTERNAL_ERROR, "import", format!("{e:#}"))
    })?;
    if let Some(source) = source {
        return Err(PageServiceError::command(
            SQLSTATE_INTERNAL_ERROR,
            "import",
            format!(
                "timeline {} streams WAL from {}; clear its WAL source before importing WAL",
                args.timeline.timeline_id,
                source.masked()
            ),
        ));
    }
    let idle = env.conf.page_service_idle_timeout;
    let mut reader = conn.copy_in().await?;
    let result = {
        let timed = IdleReader {
            inner: &mut reader,
            idle,
            sleep: None,
        };
        import_stream::import_wal(&tl, timed, args.start, args.end, env.cancel).await
    };
    drain(&mut reader, idle).await;
    let reached = result.map_err(import_error)?;
    tracing::info!(tenant_id = %args.timeline.tenant_id, timeline_id = %args.timeline.timeline_id, %reached, "imported WAL");
    conn.write(&BeMessage::CommandComplete("IMPORT"));
    Ok(Flow::Continue)
}

/// An `AsyncRead` that fails when the inner reader yields nothing for
/// `idle`.
struct IdleReader<'r, R> {
    inner: &'r mut R,
    idle: Duration,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for IdleReader<'_, R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = &mut *self;
        match std::pin::Pin::new(&mut *this.inner).poll_read(cx, buf) {
            std::task::Poll::Ready(r) => {
                this.sleep = None;
                std::task::Poll::Ready(r)
            }
            std::task::Poll::Pending => {
                let idle = this.idle;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match std::future::Future::poll(sleep.as_mut(), cx) {
                    std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client sent nothing for {idle:?}"),
                    ))),
                    std::task::Poll::Pending => std::task::Poll::Pending,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tl(args: &[&str]) -> Result<TimelineArgs, PageServiceError> {
        Ok(TimelineArgs {
            tenant_id: args[0].parse().map_err(|_| syntax("tenant".into()))?,
            timeline_id: args[1].parse().map_err(|_| syntax("timeline".into()))?,
        })
    }

    const T: &str = "11223344556677881122334455667788";
    const TL: &str = "aabbccddeeff00112233445566778899";

    #[test]
    fn parses_basebackup() {
        let a = BasebackupArgs::parse(&[T, TL], tl).unwrap();
        assert_eq!((a.lsn, a.gzip), (None, false));
        let a = BasebackupArgs::parse(&[T, TL, "0/16B3748", "--gzip"], tl).unwrap();
        assert_eq!((a.lsn, a.gzip), (Some(Lsn(0x16B_3748)), true));
        let a = BasebackupArgs::parse(&[T, TL, "--gzip"], tl).unwrap();
        assert_eq!((a.lsn, a.gzip), (None, true));
        for bad in [&[T][..], &[T, TL, "zz"], &[T, TL, "0/1", "x"]] {
            assert!(BasebackupArgs::parse(bad, tl).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_import() {
        let a = ImportArgs::parse("wal", &[T, TL, "0/100", "0/200"], tl).unwrap();
        assert_eq!((a.start, a.end), (Lsn(0x100), Lsn(0x200)));
        let e = ImportArgs::parse("wal", &[T, TL, "0/200", "0/100"], tl).unwrap_err();
        assert!(e.to_string().contains("before START_LSN"), "{e}");
        let e = ImportArgs::parse("basebackup", &[T, TL, "0/200"], tl).unwrap_err();
        assert!(e.to_string().contains("takes TENANT_ID"), "{e}");
        let e = ImportArgs::parse("basebackup", &[T, TL, "x", "0/200"], tl).unwrap_err();
        assert!(e.to_string().contains("START_LSN"), "{e}");
    }

    #[test]
    fn sqlstates_of_read_errors() {
        let e = read_error(BasebackupError::Cancelled);
        assert!(matches!(e, PageServiceError::ShuttingDown));
        let e = read_error(BasebackupError::Io(io::Error::other("x")));
        assert!(
            matches!(e, PageServiceError::Command { code, .. } if code == SQLSTATE_INTERNAL_ERROR)
        );
    }
}
