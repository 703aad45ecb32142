use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::backend::{decode, try_split_frame, BackendMessage as Decoded};

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![tag];
    b.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    b.extend_from_slice(body);
    b
}

fn pair(cap: usize) -> (ServerConnection<DuplexStream>, DuplexStream) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (ServerConnection::new(a, cap, Duration::from_secs(5)), b)
}

/// Reads every complete backend frame the client side has received.
async fn client_frames(client: &mut DuplexStream, want: usize) -> Vec<Decoded> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    while out.len() < want {
        if let Some(f) = try_split_frame(&mut buf, 1 << 20).unwrap() {
            out.push(decode(f).unwrap());
            continue;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), client.read_buf(&mut buf))
            .await
            .expect("server output")
            .unwrap();
        assert!(n > 0, "server closed early");
    }
    out
}

#[tokio::test]
async fn startup_with_ssl_refusal_then_messages() {
    let (mut conn, mut client) = pair(1024);
    let mut ssl = 8u32.to_be_bytes().to_vec();
    ssl.extend_from_slice(&((1234u32 << 16) | 5679).to_be_bytes());
    client.write_all(&ssl).await.unwrap();
    assert_eq!(
        conn.read_startup().await.unwrap(),
        Some(StartupPacket::SslRequest)
    );
    conn.refuse_encryption().await.unwrap();
    let mut b = [0u8; 1];
    client.read_exact(&mut b).await.unwrap();
    assert_eq!(b[0], b'N');

    let body = b"user\0u\0\0";
    let mut startup = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&(3u32 << 16).to_be_bytes());
    startup.extend_from_slice(body);
    // Pipelined: the startup packet and two messages in one write.
    startup.extend_from_slice(&frame(b'Q', b"select 1\0"));
    startup.extend_from_slice(&frame(b'X', b""));
    client.write_all(&startup).await.unwrap();
    let p = conn.read_startup().await.unwrap().unwrap();
    assert_eq!(p.param("user"), Some("u"));
    assert_eq!(
        conn.read_message().await.unwrap(),
        Some(FrontendMessage::Query("select 1".into()))
    );
    assert_eq!(
        conn.next_buffered().unwrap(),
        Some(FrontendMessage::Terminate)
    );
    drop(client);
    assert_eq!(conn.read_message().await.unwrap(), None);
}

#[tokio::test]
async fn eof_inside_a_message_is_an_error() {
    let (mut conn, mut client) = pair(1024);
    client.write_all(&frame(b'Q', b"abc\0")[..4]).await.unwrap();
    drop(client);
    assert!(matches!(
        conn.read_message().await,
        Err(ServerError::UnexpectedEof)
    ));
}

#[tokio::test]
async fn oversized_frame_is_refused() {
    let (mut conn, mut client) = pair(16);
    client.write_all(&frame(b'd', &[0; 17])).await.unwrap();
    let e = conn.read_message().await.unwrap_err();
    assert!(matches!(e, ServerError::Protocol(_)), "{e}");
}

#[tokio::test]
async fn idle_timeout_and_cancellation() {
    let (mut conn, _client) = pair(16);
    let cancel = CancellationToken::new();
    let e = conn
        .read_message_within(Duration::from_millis(20), &cancel)
        .await
        .unwrap_err();
    assert!(matches!(e, ServerError::IdleTimeout(_)), "{e}");
    cancel.cancel();
    let e = conn
        .read_message_within(Duration::from_secs(60), &cancel)
        .await
        .unwrap_err();
    assert!(matches!(e, ServerError::Cancelled), "{e}");
}

#[tokio::test]
async fn copy_out_frames_writes() {
    let (mut conn, mut client) = pair(16);
    let big = vec![7u8; COPY_OUT_CHUNK + 10];
    {
        let mut w = conn.copy_out().await.unwrap();
        w.write_all(b"hello").await.unwrap();
        w.write_all(&big).await.unwrap();
        w.flush().await.unwrap();
        w.finish().await.unwrap();
    }
    let frames = client_frames(&mut client, 5).await;
    assert_eq!(frames[0], Decoded::CopyOutResponse);
    assert_eq!(frames[1], Decoded::CopyData(Bytes::from_static(b"hello")));
    let (Decoded::CopyData(a), Decoded::CopyData(b)) = (&frames[2], &frames[3]) else {
        panic!("{frames:?}")
    };
    assert_eq!(
        a.len(),
        COPY_OUT_CHUNK,
        "writes are split at the chunk size"
    );
    assert_eq!(b.len(), 10);
    assert_eq!(frames[4], Decoded::CopyDone);
}

#[tokio::test]
async fn copy_out_writes_through_when_the_buffer_fills() {
    let (a, mut client) = tokio::io::duplex(4096);
    let mut conn = ServerConnection::new(a, 16, Duration::from_secs(5));
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        all.len()
    });
    {
        let mut w = conn.copy_out().await.unwrap();
        for _ in 0..100 {
            w.write_all(&[1u8; 10_000]).await.unwrap();
        }
        w.finish().await.unwrap();
    }
    drop(conn);
    let total = reader.await.unwrap();
    // CopyOutResponse (8) + 100 frames of 5 + 10000 + CopyDone (5).
    assert_eq!(total, 8 + 100 * 10_005 + 5);
}

async fn copy_in_with(input: Vec<u8>, cap: usize, close: bool) -> (io::Result<Vec<u8>>, bool) {
    let (mut conn, mut client) = pair(cap);
    client.write_all(&input).await.unwrap();
    if close {
        // EOF for the server; the client still reads what the server sends.
        client.shutdown().await.unwrap();
    }
    let mut r = conn.copy_in().await.unwrap();
    let mut out = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut out))
        .await
        .expect("copy in finishes");
    let done = r.is_done();
    (res.map(|_| out), done)
}

#[tokio::test]
async fn copy_in_reads_until_copy_done() {
    let mut input = frame(b'd', b"abc");
    input.extend(frame(b'H', b""));
    input.extend(frame(b'd', b""));
    input.extend(frame(b'd', &[9; 100]));
    input.extend(frame(b'c', b""));
    input.extend(frame(b'Q', b"after\0"));
    let (res, done) = copy_in_with(input, 1000, false).await;
    let data = res.unwrap();
    assert!(done);
    assert_eq!(&data[..3], b"abc");
    assert_eq!(data.len(), 103);
}

#[tokio::test]
async fn copy_in_errors() {
    let mut fail = frame(b'd', b"abc");
    fail.extend(frame(b'f', b"client gave up\0"));
    let (res, _) = copy_in_with(fail, 1000, false).await;
    let e = res.unwrap_err();
    assert!(e.to_string().contains("client gave up"), "{e}");

    let (res, done) = copy_in_with(frame(b'd', &[0; 101]), 100, false).await;
    assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidData);
    assert!(!done);

    let (res, _) = copy_in_with(frame(b'Q', b"x\0"), 100, false).await;
    assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidData);

    let (res, _) = copy_in_with(frame(b'd', b"abc"), 100, true).await;
    assert_eq!(res.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn flush_times_out_when_the_client_does_not_read() {
    let (a, _client) = tokio::io::duplex(64);
    let mut conn = ServerConnection::new(a, 16, Duration::from_millis(50));
    conn.write(&BeMessage::CopyData(&[0; 1000]));
    let e = conn.flush().await.unwrap_err();
    assert!(matches!(e, ServerError::WriteTimeout(_)), "{e}");
}
