//! The benchmark's pagestream client, its load loop, and the loopback
//! "floor" server that answers every request with an 8 KiB page at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use pageserver_api::pagestream::{PagestreamRequest, PagestreamResponse, RequestLsns};
use pageserver_api::value::BLCKSZ;
use pq_proto::{BeMessage, FrontendMessage, ServerConnection, StartupPacket};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Rel;

/// Limit for connecting and for any single response.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest backend message the client accepts.
const MAX_FRAME: usize = 1 << 20;

/// One pagestream connection.
pub struct Client {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Client {
    /// Connects, authenticates (`token` as the password when asked) and
    /// starts `pagestream_v2`.
    pub async fn connect(
        addr: &str,
        token: Option<&str>,
        tenant: &str,
        timeline: &str,
    ) -> anyhow::Result<Client> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr} timed out"))?
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut c = Client {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
        };
        postgres_protocol::message::frontend::startup_message(
            [("user", "pagebench"), ("database", "postgres")],
            &mut c.wbuf,
        )?;
        c.flush().await?;
        loop {
            let (tag, body) = c.recv_frame().await?;
            match tag {
                b'R' if body.len() >= 4 && (&body[..4]).get_i32() == 3 => {
                    let Some(token) = token else {
                        bail!("the page service asks for a password: pass --token");
                    };
                    postgres_protocol::message::frontend::password_message(
                        token.as_bytes(),
                        &mut c.wbuf,
                    )?;
                    c.flush().await?;
                }
                b'E' => bail!("page service refused us: {}", error_text(&body)),
                b'Z' => break,
                _ => {}
            }
        }
        let query = format!("pagestream_v2 {tenant} {timeline}");
        postgres_protocol::message::frontend::query(&query, &mut c.wbuf)?;
        c.flush().await?;
        let (tag, body) = c.recv_frame().await?;
        match tag {
            b'W' => Ok(c),
            b'E' => bail!("{query} failed: {}", error_text(&body)),
            other => bail!("{query}: unexpected message {:?}", other as char),
        }
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(IO_TIMEOUT, self.stream.write_all(&self.wbuf))
            .await
            .context("write timed out")??;
        self.wbuf.clear();
        Ok(())
    }

    /// Queues a request; [`Client::send_queued`] writes the queue.
    pub fn queue(&mut self, req: &PagestreamRequest) {
        self.wbuf.extend_from_slice(b"d\0\0\0\0");
        let at = self.wbuf.len() - 4;
        req.encode(&mut self.wbuf);
        let len = (self.wbuf.len() - at) as u32;
        self.wbuf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Writes queued requests.
    pub async fn send_queued(&mut self) -> anyhow::Result<()> {
        self.flush().await
    }

    async fn recv_frame(&mut self) -> anyhow::Result<(u8, bytes::Bytes)> {
        loop {
            if self.rbuf.len() >= 5 {
                let len =
                    u32::from_be_bytes([self.rbuf[1], self.rbuf[2], self.rbuf[3], self.rbuf[4]])
                        as usize;
                if !(4..=MAX_FRAME).contains(&len) {
                    bail!("bad frame length {len} from the page service");
                }
                if self.rbuf.len() > len {
                    let mut f = self.rbuf.split_to(len + 1);
                    let tag = f[0];
                    f.advance(5);
                    return Ok((tag, f.freeze()));
                }
                self.rbuf.reserve(len + 1 - self.rbuf.len());
            }
            let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read_buf(&mut self.rbuf))
                .await
                .context("no response within 60 s")??;
            if n == 0 {
                bail!("the page service closed the connection");
            }
        }
    }

    /// Reads the next response.
    pub async fn recv(&mut self) -> anyhow::Result<PagestreamResponse> {
        let (tag, body) = self.recv_frame().await?;
        match tag {
            b'd' => Ok(PagestreamResponse::parse(body)?),
            b'E' => bail!("stream ended: {}", error_text(&body)),
            other => bail!("unexpected message {:?} in the stream", other as char),
        }
    }
}

fn error_text(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .filter(|f| f.first() == Some(&b'M'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .next()
        .unwrap_or_else(|| "unknown error".into())
}

/// What one connection measured.
#[derive(Default)]
pub struct ConnStats {
    /// Latency of every answered request, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Error responses.
    pub errors: u64,
    /// First error message, for the report.
    pub first_error: Option<String>,
}

/// How long (or how much) to run.
#[derive(Clone, Copy)]
pub struct Load {
    /// Requests in flight per connection.
    pub depth: usize,
    /// Stop sending after this long...
    pub duration: Duration,
    /// ...or after this many requests per connection.
    pub requests: Option<u64>,
}

fn random_request(rng: &mut impl Rng, rels: &[Rel]) -> PagestreamRequest {
    let rel = &rels[rng.gen_range(0..rels.len())];
    PagestreamRequest::GetPage {
        lsns: RequestLsns {
            request_lsn: utils::lsn::Lsn::MAX,
            not_modified_since: utils::lsn::Lsn(0),
        },
        rel: rel.tag,
        blkno: rng.gen_range(0..rel.nblocks),
    }
}

/// Drives one connection: keeps `depth` GetPage requests of random blocks
/// in flight until the load is done.
pub async fn drive(mut client: Client, rels: Vec<Rel>, load: Load) -> anyhow::Result<ConnStats> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut stats = ConnStats::default();
    let mut sent_at = std::collections::VecDeque::with_capacity(load.depth);
    let start = Instant::now();
    let mut sent = 0u64;
    let more =
        |sent: u64| load.requests.is_none_or(|n| sent < n) && start.elapsed() < load.duration;
    while sent_at.len() < load.depth && more(sent) {
        client.queue(&random_request(&mut rng, &rels));
        sent_at.push_back(Instant::now());
        sent += 1;
    }
    client.send_queued().await?;
    while let Some(t) = sent_at.pop_front() {
        let resp = client.recv().await?;
        stats
            .latencies_us
            .push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        match resp {
            PagestreamResponse::GetPage(_) => {}
            PagestreamResponse::Error(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(e);
            }
            other => bail!("unexpected response {other:?}"),
        }
        if more(sent) {
            client.queue(&random_request(&mut rng, &rels));
            sent_at.push_back(Instant::now());
            sent += 1;
            client.send_queued().await?;
        }
    }
    Ok(stats)
}

/// Asks the page service for a relation's size.
pub async fn nblocks(client: &mut Client, rel: pageserver_api::key::RelTag) -> anyhow::Result<u32> {
    client.queue(&PagestreamRequest::Nblocks {
        lsns: RequestLsns {
            request_lsn: utils::lsn::Lsn::MAX,
            not_modified_since: utils::lsn::Lsn(0),
        },
        rel,
    });
    client.send_queued().await?;
    match client.recv().await? {
        PagestreamResponse::Nblocks(n) => Ok(n),
        PagestreamResponse::Error(e) => bail!("Nblocks of {rel} failed: {e}"),
        other => bail!("unexpected response {other:?}"),
    }
}

/// The loopback floor: a server that answers every CopyData with a GetPage
/// response of zeroes, flushing when no request is buffered, as the page
/// service does. Returns its address; stops when `cancel` fires.
pub async fn start_floor_server(
    cancel: CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let conns = tasks.clone();
    tasks.spawn(async move {
        loop {
            let socket = tokio::select! {
                _ = cancel.cancelled() => break,
                a = listener.accept() => match a {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            let _ = socket.set_nodelay(true);
            let cancel = cancel.clone();
            conns.spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    r = floor_connection(socket) => {
                        if let Err(e) = r {
                            eprintln!("floor server connection failed: {e}");
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

async fn floor_connection(socket: TcpStream) -> anyhow::Result<()> {
    let mut conn = ServerConnection::new(socket, MAX_FRAME, IO_TIMEOUT);
    match conn.read_startup().await? {
        Some(StartupPacket::Startup { .. }) => {}
        _ => return Ok(()),
    }
    conn.write(&BeMessage::AuthenticationOk);
    conn.write(&BeMessage::ReadyForQuery);
    conn.flush().await?;
    let mut page = BytesMut::new();
    PagestreamResponse::GetPage(bytes::Bytes::from_static(&[0u8; BLCKSZ])).encode(&mut page);
    loop {
        let Some(msg) = conn.read_message().await? else {
            return Ok(());
        };
        match msg {
            FrontendMessage::Query(_) => {
                conn.write(&BeMessage::CopyBothResponse);
                conn.flush().await?;
            }
            FrontendMessage::CopyData(_) => {
                conn.write(&BeMessage::CopyData(&page));
                while let Some(FrontendMessage::CopyData(_)) = conn.next_buffered()? {
                    conn.write(&BeMessage::CopyData(&page));
                }
                conn.flush().await?;
            }
            _ => return Ok(()),
        }
    }
}
