//! The client against a scripted fake server: malformed and oversized frames,
//! WAL gaps, silence, and odd authentication requests must give clear errors,
//! never panics or hangs.

use std::future::Future;
use std::time::{Duration, Instant};

use pq_proto::{
    ConnConfig, ReplError, ReplicationConnection, ReplicationMessage, ReplicationStream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use utils::lsn::Lsn;

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![tag];
    b.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    b.extend_from_slice(body);
    b
}

fn auth_ok() -> Vec<u8> {
    frame(b'R', &0i32.to_be_bytes())
}

fn ready() -> Vec<u8> {
    frame(b'Z', b"I")
}

fn copy_both() -> Vec<u8> {
    frame(b'W', &[0, 0, 0])
}

fn xlogdata(start: u64, data: &[u8]) -> Vec<u8> {
    let mut b = vec![b'w'];
    b.extend_from_slice(&start.to_be_bytes());
    b.extend_from_slice(&(start + data.len() as u64).to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(data);
    frame(b'd', &b)
}

/// Reads the startup packet (untagged) from the client.
async fn read_startup(s: &mut TcpStream) -> Vec<u8> {
    let len = s.read_u32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
    body
}

/// Reads one tagged frame from the client.
async fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let tag = s.read_u8().await.unwrap();
    let len = s.read_u32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
    (tag, body)
}

/// Starts a one-connection fake server running `script`; returns a config
/// pointing at it.
async fn fake_server<F, Fut>(script: F) -> (ConnConfig, tokio::task::JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        script(s).await;
    });
    let cfg = ConnConfig::parse(&format!(
        "postgresql://walreceiver:Secr3tPw@127.0.0.1:{port}/postgres?connect_timeout=2"
    ))
    .unwrap();
    (cfg, task)
}

/// A server that accepts the login, answers START_REPLICATION with
/// CopyBothResponse, then writes `after` and keeps the socket open.
async fn streaming_server(after: Vec<u8>) -> (ConnConfig, tokio::task::JoinHandle<()>) {
    fake_server(move |mut s| async move {
        read_startup(&mut s).await;
        s.write_all(&[auth_ok(), ready()].concat()).await.unwrap();
        let (tag, _) = read_frame(&mut s).await;
        assert_eq!(tag, b'Q');
        s.write_all(&copy_both()).await.unwrap();
        s.write_all(&after).await.unwrap();
        // Hold the connection until the client goes away.
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
    })
    .await
}

async fn start_stream(cfg: &ConnConfig, cancel: &CancellationToken) -> ReplicationStream {
    let conn = ReplicationConnection::connect(cfg, cancel).await.unwrap();
    conn.start_physical(Some("slot"), Lsn(0x1000), 1)
        .await
        .unwrap()
}

#[tokio::test]
async fn oversized_frame_is_refused_before_allocation() {
    let (cfg, _task) = streaming_server(vec![b'd', 0x7f, 0xff, 0xff, 0xff]).await;
    let cancel = CancellationToken::new();
    let mut stream = start_stream(&cfg, &cancel).await;
    let e = stream.next_message().await.unwrap_err();
    assert!(
        matches!(e, ReplError::Protocol(ref m) if m.contains("limit")),
        "{e:?}"
    );
    // The stream refuses further use instead of reading garbage.
    let e = stream.next_message().await.unwrap_err();
    assert!(
        matches!(e, ReplError::Protocol(ref m) if m.contains("unusable")),
        "{e:?}"
    );
}

#[tokio::test]
async fn malformed_stream_messages_are_protocol_errors() {
    let cases: Vec<Vec<u8>> = vec![
        frame(b'd', b"w123"),           // short XLogData header
        frame(b'd', b"k"),              // short keepalive
        frame(b'd', b"?"),              // unknown replication message
        frame(b'd', b""),               // empty CopyData
        vec![b'd', 0, 0, 0, 2],         // length < 4
        frame(b'E', b"Mno terminator"), // broken ErrorResponse
        frame(b'T', &[0, 0]),           // RowDescription in copy mode
        xlogdata(0x2000, b"gap"),       // WAL gap: we asked for 0/1000
    ];
    for bytes in cases {
        let (cfg, _task) = streaming_server(bytes.clone()).await;
        let mut stream = start_stream(&cfg, &CancellationToken::new()).await;
        let e = stream.next_message().await.unwrap_err();
        assert!(matches!(e, ReplError::Protocol(_)), "{bytes:?}: {e:?}");
    }
}

#[tokio::test]
async fn contiguous_wal_then_copy_done() {
    let after = [
        xlogdata(0x1000, b"abc"),
        xlogdata(0x1003, b"defg"),
        frame(
            b'd',
            &[
                &[b'k'][..],
                &0x1007u64.to_be_bytes(),
                &5i64.to_be_bytes(),
                &[1],
            ]
            .concat(),
        ),
        frame(b'c', b""),
    ]
    .concat();
    let (cfg, _task) = streaming_server(after).await;
    let mut stream = start_stream(&cfg, &CancellationToken::new()).await;
    let m = stream.next_message().await.unwrap().unwrap();
    assert!(
        matches!(m, ReplicationMessage::XLogData { wal_start: Lsn(0x1000), ref data, .. } if &data[..] == b"abc")
    );
    stream.next_message().await.unwrap().unwrap();
    assert_eq!(stream.received_up_to(), Lsn(0x1007));
    let m = stream.next_message().await.unwrap().unwrap();
    assert_eq!(
        m,
        ReplicationMessage::Keepalive {
            wal_end: Lsn(0x1007),
            server_time: 5,
            reply_requested: true
        }
    );
    assert_eq!(stream.next_message().await.unwrap(), None);
    assert_eq!(stream.next_message().await.unwrap(), None);
    assert!(matches!(
        stream
            .send_standby_status(Lsn(1), Lsn(1), Lsn(1), false)
            .await,
        Err(ReplError::Protocol(_))
    ));
}

#[tokio::test]
async fn standby_status_wire_format() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (cfg, task) = fake_server(move |mut s| async move {
        read_startup(&mut s).await;
        s.write_all(&[auth_ok(), ready()].concat()).await.unwrap();
        let (_, query) = read_frame(&mut s).await;
        assert_eq!(
            query,
            b"START_REPLICATION SLOT slot PHYSICAL 0/1000 TIMELINE 1\0"
        );
        s.write_all(&copy_both()).await.unwrap();
        let status = read_frame(&mut s).await;
        tx.send(status).unwrap();
    })
    .await;
    let mut stream = start_stream(&cfg, &CancellationToken::new()).await;
    let before = pq_proto::to_pg_timestamp(std::time::SystemTime::now());
    stream
        .send_standby_status(Lsn(0x1_0000_0003), Lsn(0x2), Lsn(0x1), true)
        .await
        .unwrap();
    let (tag, body) = rx.await.unwrap();
    task.await.unwrap();
    assert_eq!(tag, b'd');
    assert_eq!(body.len(), 34);
    assert_eq!(body[0], b'r');
    assert_eq!(
        u64::from_be_bytes(body[1..9].try_into().unwrap()),
        0x1_0000_0003
    );
    assert_eq!(u64::from_be_bytes(body[9..17].try_into().unwrap()), 2);
    assert_eq!(u64::from_be_bytes(body[17..25].try_into().unwrap()), 1);
    let ts = i64::from_be_bytes(body[25..33].try_into().unwrap());
    assert!(ts >= before && ts - before < 60_000_000, "{ts} vs {before}");
    assert_eq!(body[33], 1);
}

#[tokio::test]
async fn silence_times_out_and_cancellation_stops_waiting() {
    let (cfg, _task) = streaming_server(Vec::new()).await;
    let cancel = CancellationToken::new();
    let mut stream = start_stream(&cfg, &cancel).await;
    stream.set_idle_timeout(Duration::from_millis(200));
    let e = stream.next_message().await.unwrap_err();
    assert!(matches!(e, ReplError::Timeout { .. }), "{e:?}");
    // A timeout leaves the stream usable; cancellation ends the wait.
    stream.set_idle_timeout(Duration::from_secs(60));
    let c = cancel.clone();
    let t = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.cancel();
    });
    let started = Instant::now();
    assert!(matches!(
        stream.next_message().await,
        Err(ReplError::Cancelled)
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    t.await.unwrap();
}

#[tokio::test]
async fn startup_that_never_answers_hits_connect_timeout() {
    let (cfg, _task) = fake_server(|mut s| async move {
        read_startup(&mut s).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let e = ReplicationConnection::connect(&cfg, &CancellationToken::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ReplError::Timeout { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("********") && !msg.contains("Secr3tPw"),
        "{msg}"
    );
}

#[tokio::test]
async fn authentication_edge_cases() {
    // Unsupported method (GSSAPI).
    let (cfg, _t) = fake_server(|mut s| async move {
        read_startup(&mut s).await;
        s.write_all(&frame(b'R', &7i32.to_be_bytes()))
            .await
            .unwrap();
        let _ = s.read_to_end(&mut Vec::new()).await;
    })
    .await;
    let e = ReplicationConnection::connect(&cfg, &CancellationToken::new())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, ReplError::Auth(ref m) if m.contains("GSSAPI")),
        "{e:?}"
    );

    // SASL without SCRAM-SHA-256.
    let (cfg, _t) = fake_server(|mut s| async move {
        read_startup(&mut s).await;
        let mut body = 10i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"OTHER\0\0");
        s.write_all(&frame(b'R', &body)).await.unwrap();
        let _ = s.read_to_end(&mut Vec::new()).await;
    })
    .await;
    let e = ReplicationConnection::connect(&cfg, &CancellationToken::new())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, ReplError::Auth(ref m) if m.contains("OTHER")),
        "{e:?}"
    );

    // The cleartext password goes out as sent, and a FATAL error at startup
    // that is not about authentication stays a server error.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (cfg, _t) = fake_server(move |mut s| async move {
        let startup = read_startup(&mut s).await;
        s.write_all(&frame(b'R', &3i32.to_be_bytes()))
            .await
            .unwrap();
        let pw = read_frame(&mut s).await;
        tx.send((startup, pw)).unwrap();
        s.write_all(
            &[
                auth_ok(),
                frame(b'E', b"SFATAL\0VFATAL\0C53300\0Mtoo many clients\0\0"),
            ]
            .concat(),
        )
        .await
        .unwrap();
    })
    .await;
    let e = ReplicationConnection::connect(&cfg, &CancellationToken::new())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, ReplError::Server { ref code, .. } if code == "53300"),
        "{e:?}"
    );
    let (startup, (tag, pw)) = rx.await.unwrap();
    assert_eq!((tag, pw.as_slice()), (b'p', &b"Secr3tPw\0"[..]));
    let startup = String::from_utf8_lossy(&startup).replace('\0', " ");
    assert!(
        startup.contains("user walreceiver") && startup.contains("replication true"),
        "{startup}"
    );

    // Garbage instead of an authentication request.
    let (cfg, _t) = fake_server(|mut s| async move {
        read_startup(&mut s).await;
        s.write_all(&frame(b'R', &[0, 0])).await.unwrap();
        let _ = s.read_to_end(&mut Vec::new()).await;
    })
    .await;
    let e = ReplicationConnection::connect(&cfg, &CancellationToken::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ReplError::Protocol(_)), "{e:?}");

    // The server hangs up mid-startup.
    let (cfg, _t) = fake_server(|mut s| async move {
        read_startup(&mut s).await;
    })
    .await;
    let e = ReplicationConnection::connect(&cfg, &CancellationToken::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, ReplError::Io(_)), "{e:?}");
}
