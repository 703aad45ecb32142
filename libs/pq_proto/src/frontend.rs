//! Decoding of the messages a PostgreSQL client sends to a server.
//!
//! `postgres-protocol` only encodes frontend messages, so the server side
//! decodes them here. Two framings exist: the startup phase (length word, then
//! a protocol code: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest)
//! and the regular one (type byte, then length word). In both, the length is
//! checked against a cap before any buffer grows for the body, and malformed
//! input is a [`ServerError::Protocol`], never a panic.

use bytes::{Buf, Bytes, BytesMut};

use crate::ServerError;

/// Largest startup-phase packet (PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET_SIZE: usize = 10_000;

/// Protocol code of StartupMessage for protocol version 3.0.
const PROTOCOL_V3: u32 = 3 << 16;
const CANCEL_REQUEST_CODE: u32 = (1234 << 16) | 5678;
const SSL_REQUEST_CODE: u32 = (1234 << 16) | 5679;
const GSSENC_REQUEST_CODE: u32 = (1234 << 16) | 5680;

/// A packet of the startup phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks for TLS; the server answers one byte, `S` or `N`.
    SslRequest,
    /// The client asks for GSSAPI encryption; answered like an SSL request.
    GssEncRequest,
    /// The client asks to cancel the query of another connection.
    CancelRequest {
        /// Process id from that connection's BackendKeyData.
        process_id: i32,
        /// Secret key from that connection's BackendKeyData.
        secret_key: i32,
    },
    /// The real start of a session (protocol 3.x).
    Startup {
        /// Minor protocol version the client speaks (0 for 3.0).
        minor_version: u16,
        /// Parameters in the order sent (`user`, `database`, `options`, ...).
        params: Vec<(String, String)>,
    },
}

impl StartupPacket {
    /// The value of a startup parameter, if sent.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            StartupPacket::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// A regular (post-startup) frontend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    /// `p`: a password (or, during SASL, a response); the bytes up to the NUL.
    Password(Bytes),
    /// `Q`: a simple query.
    Query(String),
    /// `d`: a chunk of a COPY stream.
    CopyData(Bytes),
    /// `c`: the client finished its COPY stream.
    CopyDone,
    /// `f`: the client aborts its COPY stream, with a reason.
    CopyFail(String),
    /// `S`: end of an extended-protocol batch.
    Sync,
    /// `H`: flush pending output (extended protocol).
    Flush,
    /// `X`: the client closes the session.
    Terminate,
    /// Any other well-framed message (Parse, Bind, Execute, ...), by type
    /// byte; this server does not implement it.
    Unsupported(u8),
}

impl FrontendMessage {
    /// The protocol name of the message (never its contents), for errors.
    pub fn name(&self) -> &'static str {
        match self {
            FrontendMessage::Password(_) => "PasswordMessage",
            FrontendMessage::Query(_) => "Query",
            FrontendMessage::CopyData(_) => "CopyData",
            FrontendMessage::CopyDone => "CopyDone",
            FrontendMessage::CopyFail(_) => "CopyFail",
            FrontendMessage::Sync => "Sync",
            FrontendMessage::Flush => "Flush",
            FrontendMessage::Terminate => "Terminate",
            FrontendMessage::Unsupported(_) => "unsupported message",
        }
    }
}

fn protocol(msg: String) -> ServerError {
    ServerError::Protocol(msg)
}

/// Splits one startup-phase packet off `buf`. `Ok(None)`: more bytes needed
/// (the buffer is then reserved for the packet, whose size was checked).
pub fn try_split_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, ServerError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len < 8 {
        return Err(protocol(format!(
            "startup packet has invalid length {len} (less than 8)"
        )));
    }
    if len > MAX_STARTUP_PACKET_SIZE {
        return Err(protocol(format!(
            "startup packet announces {len} bytes, more than the limit of {MAX_STARTUP_PACKET_SIZE}"
        )));
    }
    if buf.len() < len {
        buf.reserve(len - buf.len());
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    decode_startup(packet.freeze()).map(Some)
}

fn decode_startup(mut body: Bytes) -> Result<StartupPacket, ServerError> {
    let code = body.get_u32();
    match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            if !body.is_empty() {
                return Err(protocol("encryption request with trailing bytes".into()));
            }
            Ok(if code == SSL_REQUEST_CODE {
                StartupPacket::SslRequest
            } else {
                StartupPacket::GssEncRequest
            })
        }
        CANCEL_REQUEST_CODE => {
            if body.len() != 8 {
                return Err(protocol(format!(
                    "CancelRequest body is {} bytes, expected 8",
                    body.len() + 4
                )));
            }
            Ok(StartupPacket::CancelRequest {
                process_id: body.get_i32(),
                secret_key: body.get_i32(),
            })
        }
        c if c >> 16 == 3 => {
            let minor_version = (c & 0xffff) as u16;
            let mut params = Vec::new();
            let mut r = Reader::new(&body, "StartupMessage");
            loop {
                let name = r.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = r.cstr()?;
                params.push((name, value));
            }
            r.finish()?;
            Ok(StartupPacket::Startup {
                minor_version,
                params,
            })
        }
        c => Err(protocol(format!(
            "unsupported protocol version {}.{} (this server speaks {}.0)",
            c >> 16,
            c & 0xffff,
            PROTOCOL_V3 >> 16
        ))),
    }
}

/// Splits one regular message off `buf` and decodes it. `Ok(None)`: more
/// bytes needed (the buffer is then reserved for the frame, whose size was
/// checked against `max_body` first).
pub fn try_split_message(
    buf: &mut BytesMut,
    max_body: usize,
) -> Result<Option<FrontendMessage>, ServerError> {
    match crate::backend::split_frame(buf, max_body).map_err(protocol)? {
        Some(frame) => decode_message(frame.tag, frame.body).map(Some),
        None => Ok(None),
    }
}

fn decode_message(tag: u8, body: Bytes) -> Result<FrontendMessage, ServerError> {
    let no_body = |msg: FrontendMessage| {
        if body.is_empty() {
            Ok(msg)
        } else {
            Err(protocol(format!(
                "{} message has a body of {} bytes, expected none",
                msg.name(),
                body.len()
            )))
        }
    };
    match tag {
        b'p' => {
            // Cleartext passwords end with a NUL; SASL responses do not.
            let end = if body.last() == Some(&0) {
                body.len() - 1
            } else {
                body.len()
            };
            Ok(FrontendMessage::Password(body.slice(..end)))
        }
        b'Q' => {
            let mut r = Reader::new(&body, "Query");
            let q = r.cstr()?;
            r.finish()?;
            Ok(FrontendMessage::Query(q))
        }
        b'd' => Ok(FrontendMessage::CopyData(body)),
        b'c' => no_body(FrontendMessage::CopyDone),
        b'f' => {
            let mut r = Reader::new(&body, "CopyFail");
            let reason = r.cstr()?;
            r.finish()?;
            Ok(FrontendMessage::CopyFail(reason))
        }
        b'S' => no_body(FrontendMessage::Sync),
        b'H' => no_body(FrontendMessage::Flush),
        b'X' => no_body(FrontendMessage::Terminate),
        other => Ok(FrontendMessage::Unsupported(other)),
    }
}

/// A bounds-checked reader over a message body.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn err(&self, why: &str) -> ServerError {
        protocol(format!("malformed {} message: {why}", self.what))
    }

    fn cstr(&mut self) -> Result<String, ServerError> {
        let end = self
            .buf
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.err("string without terminating NUL"))?;
        let s = std::str::from_utf8(&self.buf[..end])
            .map_err(|_| self.err("string is not valid UTF-8"))?
            .to_owned();
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    fn finish(&self) -> Result<(), ServerError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tag_name;
    use proptest::prelude::*;

    fn frame(tag: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[tag]);
        b.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    fn startup_frame(code: u32, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    fn one(tag: u8, body: &[u8]) -> Result<FrontendMessage, ServerError> {
        try_split_message(&mut frame(tag, body), 1000).map(|m| m.expect("complete frame"))
    }

    #[test]
    fn startup_packets() {
        let mut buf = startup_frame(PROTOCOL_V3, b"user\0alice\0database\0db\0\0");
        let p = try_split_startup(&mut buf).unwrap().unwrap();
        assert_eq!(p.param("user"), Some("alice"));
        assert_eq!(p.param("database"), Some("db"));
        assert_eq!(p.param("options"), None);
        assert!(buf.is_empty());

        let mut buf = startup_frame(SSL_REQUEST_CODE, b"");
        buf.extend_from_slice(&startup_frame(GSSENC_REQUEST_CODE, b""));
        let mut cancel = 7i32.to_be_bytes().to_vec();
        cancel.extend_from_slice(&9i32.to_be_bytes());
        buf.extend_from_slice(&startup_frame(CANCEL_REQUEST_CODE, &cancel));
        assert_eq!(
            try_split_startup(&mut buf).unwrap(),
            Some(StartupPacket::SslRequest)
        );
        assert_eq!(
            try_split_startup(&mut buf).unwrap(),
            Some(StartupPacket::GssEncRequest)
        );
        assert_eq!(
            try_split_startup(&mut buf).unwrap(),
            Some(StartupPacket::CancelRequest {
                process_id: 7,
                secret_key: 9
            })
        );
        assert_eq!(try_split_startup(&mut buf).unwrap(), None);
    }

    #[test]
    fn startup_waits_for_whole_packet() {
        let full = startup_frame(PROTOCOL_V3, b"user\0u\0\0");
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(try_split_startup(&mut part).unwrap(), None, "cut {cut}");
        }
    }

    #[test]
    fn bad_startup_packets() {
        let cases: Vec<BytesMut> = vec![
            BytesMut::from(&[0, 0, 0, 4][..]),
            BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]),
            startup_frame(2 << 16, b""),
            startup_frame(PROTOCOL_V3, b"user\0alice"),
            startup_frame(PROTOCOL_V3, b"user\0alice\0\0extra"),
            startup_frame(PROTOCOL_V3, b"user\0\xff\xfe\0\0"),
            startup_frame(SSL_REQUEST_CODE, b"x"),
            startup_frame(CANCEL_REQUEST_CODE, b"1234"),
        ];
        for (i, mut buf) in cases.into_iter().enumerate() {
            let before = buf.clone();
            let cap = buf.capacity();
            assert!(
                matches!(try_split_startup(&mut buf), Err(ServerError::Protocol(_))),
                "{before:?}"
            );
            if i < 2 {
                // Rejected from the length word alone: nothing was reserved.
                assert_eq!(buf.capacity(), cap, "no allocation for a rejected packet");
            }
        }
    }

    #[test]
    fn regular_messages() {
        assert_eq!(
            one(b'Q', b"pagestream_v2 a b\0").unwrap(),
            FrontendMessage::Query("pagestream_v2 a b".into())
        );
        assert_eq!(
            one(b'p', b"secret\0").unwrap(),
            FrontendMessage::Password(Bytes::from_static(b"secret"))
        );
        assert_eq!(
            one(b'd', b"\x00\x01").unwrap(),
            FrontendMessage::CopyData(Bytes::from_static(b"\x00\x01"))
        );
        assert_eq!(one(b'c', b"").unwrap(), FrontendMessage::CopyDone);
        assert_eq!(
            one(b'f', b"boom\0").unwrap(),
            FrontendMessage::CopyFail("boom".into())
        );
        assert_eq!(one(b'S', b"").unwrap(), FrontendMessage::Sync);
        assert_eq!(one(b'H', b"").unwrap(), FrontendMessage::Flush);
        assert_eq!(one(b'X', b"").unwrap(), FrontendMessage::Terminate);
        assert_eq!(
            one(b'P', b"anything").unwrap(),
            FrontendMessage::Unsupported(b'P')
        );
    }

    #[test]
    fn malformed_messages() {
        let cases: &[(u8, &[u8])] = &[
            (b'Q', b"no nul"),
            (b'Q', b"a\0b"),
            (b'Q', b"\xff\0"),
            (b'c', b"x"),
            (b'X', b"x"),
            (b'S', b"x"),
            (b'f', b"reason"),
        ];
        for (tag, body) in cases {
            assert!(
                matches!(one(*tag, body), Err(ServerError::Protocol(_))),
                "{} {body:?}",
                tag_name(*tag)
            );
        }
    }

    #[test]
    fn frames_are_capped_before_allocating() {
        let mut buf = BytesMut::from(&[b'd', 0, 0, 0, 3][..]);
        assert!(matches!(
            try_split_message(&mut buf, 100),
            Err(ServerError::Protocol(_))
        ));
        let mut buf = BytesMut::from(&[b'd', 0xff, 0xff, 0xff, 0xff][..]);
        let cap = buf.capacity();
        let e = try_split_message(&mut buf, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
        assert_eq!(buf.capacity(), cap);
        // Exactly at the cap is fine.
        let mut buf = frame(b'd', &[7; 100]);
        assert!(try_split_message(&mut buf, 100).unwrap().is_some());
        let mut buf = frame(b'd', &[7; 101]);
        assert!(try_split_message(&mut buf, 100).is_err());
    }

    #[test]
    fn messages_wait_for_whole_frame_and_pipeline() {
        let mut full = frame(b'd', b"hello");
        full.extend_from_slice(&frame(b'c', b""));
        for cut in 0..6 + 4 {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(
                try_split_message(&mut part, 100).unwrap(),
                None,
                "cut {cut}"
            );
        }
        let mut buf = full.clone();
        assert!(matches!(
            try_split_message(&mut buf, 100).unwrap(),
            Some(FrontendMessage::CopyData(_))
        ));
        assert_eq!(
            try_split_message(&mut buf, 100).unwrap(),
            Some(FrontendMessage::CopyDone)
        );
        assert!(buf.is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = try_split_message(&mut buf, 128) {}
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = try_split_startup(&mut buf) {}
        }

        #[test]
        fn arbitrary_bodies_never_panic(tag in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = try_split_message(&mut frame(tag, &body), 128);
            let code = u32::from_be_bytes([tag, 0, 0, 0]) | u32::from(tag);
            let _ = try_split_startup(&mut startup_frame(code, &body));
            let _ = try_split_startup(&mut startup_frame(PROTOCOL_V3, &body));
            let _ = try_split_startup(&mut startup_frame(CANCEL_REQUEST_CODE, &body));
        }
    }
}
