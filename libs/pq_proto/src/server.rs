//! The server side of a client connection: buffered, cancel-safe reads of
//! frontend messages with a frame cap, buffered writes of backend messages,
//! and COPY adapters for commands that stream bytes.
//!
//! [`ServerConnection`] does no policy: authentication, commands and
//! timeouts on waits for the client belong to the caller (the page service).
//! Every read method is cancel-safe (bytes already read stay buffered), so a
//! caller can wrap it in `tokio::select!` with a timeout and a cancellation
//! token; [`ServerConnection::read_message_within`] does exactly that.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::frontend::{try_split_message, try_split_startup, FrontendMessage, StartupPacket};
use crate::messages::{write_copy_data_with, BeMessage, ENCRYPTION_REFUSED};
use crate::ServerError;

/// Largest CopyData frame [`CopyOutWriter`] sends; larger writes are split.
pub const COPY_OUT_CHUNK: usize = 64 * 1024;
/// Output buffered by [`CopyOutWriter`] before it writes to the socket.
const COPY_OUT_HIGH_WATER: usize = 256 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// One client connection of a server.
pub struct ServerConnection<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_message_size: usize,
    write_timeout: Duration,
}

impl<S> std::fmt::Debug for ServerConnection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConnection")
            .field("buffered_in", &self.rbuf.len())
            .field("buffered_out", &self.wbuf.len())
            .field("max_message_size", &self.max_message_size)
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ServerConnection<S> {
    /// Wraps `stream`. Frames with a body over `max_message_size` bytes are a
    /// protocol error (checked before the body is buffered); a flush that
    /// cannot finish within `write_timeout` fails.
    pub fn new(stream: S, max_message_size: usize, write_timeout: Duration) -> Self {
        ServerConnection {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            max_message_size,
            write_timeout,
        }
    }

    /// The current frame cap.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Changes the frame cap (e.g. a smaller one inside a request stream).
    pub fn set_max_message_size(&mut self, max: usize) {
        self.max_message_size = max;
    }

    /// Reads more bytes from the socket into the read buffer (for callers
    /// that interleave reading with other work and take messages with
    /// [`ServerConnection::next_buffered`]); false at EOF. Cancel-safe.
    pub async fn read_more(&mut self) -> Result<bool, ServerError> {
        self.rbuf.reserve(READ_CHUNK);
        Ok(self.stream.read_buf(&mut self.rbuf).await? > 0)
    }

    /// Reads one startup-phase packet. `Ok(None)` if the client closed the
    /// connection before sending anything more. Cancel-safe.
    pub async fn read_startup(&mut self) -> Result<Option<StartupPacket>, ServerError> {
        loop {
            if let Some(p) = try_split_startup(&mut self.rbuf)? {
                return Ok(Some(p));
            }
            if !self.read_more().await? {
                return if self.rbuf.is_empty() {
                    Ok(None)
                } else {
                    Err(ServerError::UnexpectedEof)
                };
            }
        }
    }

    /// Answers an SSLRequest or GSSENCRequest with "not supported"; the
    /// client then sends its StartupMessage in clear text. Flushes.
    pub async fn refuse_encryption(&mut self) -> Result<(), ServerError> {
        self.wbuf.extend_from_slice(&[ENCRYPTION_REFUSED]);
        self.flush().await
    }

    /// A message already complete in the read buffer, without any I/O.
    pub fn next_buffered(&mut self) -> Result<Option<FrontendMessage>, ServerError> {
        try_split_message(&mut self.rbuf, self.max_message_size)
    }

    /// Reads one message. `Ok(None)` if the client closed the connection at
    /// a message boundary. Cancel-safe.
    pub async fn read_message(&mut self) -> Result<Option<FrontendMessage>, ServerError> {
        loop {
            if let Some(m) = self.next_buffered()? {
                return Ok(Some(m));
            }
            if !self.read_more().await? {
                return if self.rbuf.is_empty() {
                    Ok(None)
                } else {
                    Err(ServerError::UnexpectedEof)
                };
            }
        }
    }

    /// [`ServerConnection::read_message`] that gives up after `idle` with
    /// [`ServerError::IdleTimeout`], or when `cancel` fires with
    /// [`ServerError::Cancelled`].
    pub async fn read_message_within(
        &mut self,
        idle: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<FrontendMessage>, ServerError> {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(ServerError::Cancelled),
            r = tokio::time::timeout(idle, self.read_message()) => {
                r.map_err(|_| ServerError::IdleTimeout(idle))?
            }
        }
    }

    /// Buffers a message; [`ServerConnection::flush`] sends it.
    pub fn write(&mut self, msg: &BeMessage<'_>) {
        msg.write(&mut self.wbuf);
    }

    /// The output buffer, for encoders that write messages in place.
    pub fn output(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    /// Bytes buffered for output.
    pub fn pending_output(&self) -> usize {
        self.wbuf.len()
    }

    /// Sends everything buffered, within the write timeout. Cancel-safe in
    /// the sense that unsent bytes stay buffered.
    pub async fn flush(&mut self) -> Result<(), ServerError> {
        let limit = self.write_timeout;
        let fut = async {
            while !self.wbuf.is_empty() {
                let n = self.stream.write_buf(&mut self.wbuf).await?;
                if n == 0 {
                    return Err(ServerError::Io(io::ErrorKind::WriteZero.into()));
                }
            }
            self.stream.flush().await?;
            Ok(())
        };
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| ServerError::WriteTimeout(limit))?
    }

    /// Starts a COPY to the client: sends CopyOutResponse and returns a
    /// writer whose bytes go out as CopyData. Finish with
    /// [`CopyOutWriter::finish`].
    pub async fn copy_out(&mut self) -> Result<CopyOutWriter<'_, S>, ServerError> {
        self.write(&BeMessage::CopyOutResponse);
        self.flush().await?;
        Ok(CopyOutWriter { conn: self })
    }

    /// Starts a COPY from the client: sends CopyInResponse and returns a
    /// reader of the CopyData bytes, which ends at CopyDone.
    pub async fn copy_in(&mut self) -> Result<CopyInReader<'_, S>, ServerError> {
        self.write(&BeMessage::CopyInResponse);
        self.flush().await?;
        Ok(CopyInReader {
            conn: self,
            chunk: Bytes::new(),
            done: false,
        })
    }

    /// Polls the socket for more input into the read buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut tmp = [0u8; READ_CHUNK];
        let mut rb = ReadBuf::new(&mut tmp);
        ready!(Pin::new(&mut self.stream).poll_read(cx, &mut rb))?;
        self.rbuf.extend_from_slice(rb.filled());
        Poll::Ready(Ok(!rb.filled().is_empty()))
    }

    /// Polls writing the output buffer out, down to `keep` bytes or fewer.
    fn poll_drain(&mut self, cx: &mut Context<'_>, keep: usize) -> Poll<io::Result<()>> {
        while self.wbuf.len() > keep {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

/// An [`AsyncWrite`] that frames everything written as CopyData (after
/// [`ServerConnection::copy_out`] sent CopyOutResponse).
///
/// Output is buffered up to a few hundred KiB; `flush` sends it. There is no
/// timeout inside: wrap the whole copy in one (and a cancellation check).
/// End the stream with [`CopyOutWriter::finish`], which sends CopyDone; a
/// writer dropped without `finish` leaves the client inside the COPY, so the
/// caller should then send an ErrorResponse.
pub struct CopyOutWriter<'a, S> {
    conn: &'a mut ServerConnection<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> CopyOutWriter<'_, S> {
    /// Sends CopyDone and flushes (within the connection's write timeout).
    pub async fn finish(self) -> Result<(), ServerError> {
        self.conn.write(&BeMessage::CopyDone);
        self.conn.flush().await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for CopyOutWriter<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let conn = &mut *self.get_mut().conn;
        if conn.wbuf.len() >= COPY_OUT_HIGH_WATER {
            ready!(conn.poll_drain(cx, 0))?;
        }
        let n = data.len().min(COPY_OUT_CHUNK);
        write_copy_data_with(&mut conn.wbuf, |b| b.extend_from_slice(&data[..n]));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let conn = &mut *self.get_mut().conn;
        ready!(conn.poll_drain(cx, 0))?;
        Pin::new(&mut conn.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection outlives the COPY: shutting down only flushes.
        self.poll_flush(cx)
    }
}

/// An [`AsyncRead`] over the CopyData of a COPY from the client (after
/// [`ServerConnection::copy_in`] sent CopyInResponse).
///
/// Yields the CopyData bytes in order and EOF at CopyDone. CopyFail is an
/// error of kind `Other` wrapping [`ServerError::CopyFail`]; any other
/// message (except Flush and Sync, which are ignored as PostgreSQL does), a
/// frame over the connection's cap, or EOF before CopyDone is an
/// `InvalidData`/`UnexpectedEof` error. No timeout inside: wrap the reads
/// in one.
pub struct CopyInReader<'a, S> {
    conn: &'a mut ServerConnection<S>,
    chunk: Bytes,
    done: bool,
}

impl<S> CopyInReader<'_, S> {
    /// Whether CopyDone was received (the stream ended cleanly).
    pub fn is_done(&self) -> bool {
        self.done
    }
}

fn io_error(e: ServerError) -> io::Error {
    let kind = match &e {
        ServerError::Io(io) => io.kind(),
        ServerError::UnexpectedEof => io::ErrorKind::UnexpectedEof,
        ServerError::Protocol(_) => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for CopyInReader<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.chunk.is_empty() {
                let n = this.chunk.len().min(out.remaining());
                out.put_slice(&this.chunk.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.done || out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match this.conn.next_buffered().map_err(io_error)? {
                Some(FrontendMessage::CopyData(data)) => this.chunk = data,
                Some(FrontendMessage::CopyDone) => this.done = true,
                Some(FrontendMessage::CopyFail(reason)) => {
                    return Poll::Ready(Err(io_error(ServerError::CopyFail(reason))))
                }
                Some(FrontendMessage::Flush | FrontendMessage::Sync) => {}
                Some(other) => {
                    return Poll::Ready(Err(io_error(ServerError::Protocol(format!(
                        "{} inside a COPY from the client",
                        other.name()
                    )))))
                }
                None => {
                    if !ready!(this.conn.poll_fill(cx))? {
                        return Poll::Ready(Err(io_error(ServerError::UnexpectedEof)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
