//! Framing and decoding of the messages a PostgreSQL server sends.
//!
//! `postgres-protocol` encodes our frontend messages, but its backend decoder
//! lacks `CopyBothResponse` (which replication needs) and reads field lists
//! through `fallible-iterator`; the few messages a client needs are decoded
//! here instead, with every length checked, so malformed input is a
//! [`ReplError::Protocol`] and never a panic.

use bytes::{Buf, Bytes, BytesMut};

use crate::ReplError;

/// Largest message body we accept (64 MiB). Checked from the header before any
/// buffer is grown for the body. Walsenders send at most 128 KiB of WAL per
/// message, so this only stops a broken or hostile peer.
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// One backend message: its type byte and body (without the length word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub tag: u8,
    pub body: Bytes,
}

/// Splits one complete frame off the front of `buf`.
///
/// `Ok(None)` means more bytes are needed; the buffer is then reserved up to
/// the frame's size (which has been checked against `max_body`).
pub(crate) fn try_split_frame(
    buf: &mut BytesMut,
    max_body: usize,
) -> Result<Option<Frame>, ReplError> {
    split_frame(buf, max_body).map_err(ReplError::Protocol)
}

/// Splits one complete frame (type byte, length word, body), sent by
/// either side, off the front of `buf`: the framing both directions share.
/// `Ok(None)`: more bytes are needed (the buffer is then reserved for the
/// frame, whose size was checked against `max_body` first). The error is
/// the protocol violation, described.
pub(crate) fn split_frame(buf: &mut BytesMut, max_body: usize) -> Result<Option<Frame>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(format!(
            "message of type {} has invalid length {len} (less than 4)",
            tag_name(tag)
        ));
    }
    if len - 4 > max_body {
        return Err(format!(
            "message of type {} announces {} bytes, more than the limit of {max_body} bytes",
            tag_name(tag),
            len - 4
        ));
    }
    let total = len + 1;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    frame.advance(5);
    Ok(Some(Frame {
        tag,
        body: frame.freeze(),
    }))
}

/// A printable form of a message type byte for error messages.
pub(crate) fn tag_name(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", tag as char)
    } else {
        format!("0x{tag:02x}")
    }
}

/// Fields of an `ErrorResponse` or `NoticeResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServerNotice {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
}

impl ServerNotice {
    /// The error as a [`ReplError::Server`].
    pub fn into_error(self) -> ReplError {
        ReplError::Server {
            code: self.code,
            message: self.message,
            severity: self.severity,
            detail: self.detail,
        }
    }
}

/// The backend messages a client acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackendMessage {
    AuthenticationOk,
    AuthenticationCleartextPassword,
    AuthenticationMd5Password([u8; 4]),
    AuthenticationSasl(Vec<String>),
    AuthenticationSaslContinue(Bytes),
    AuthenticationSaslFinal(Bytes),
    /// Any other authentication request (Kerberos, GSS, SSPI, ...), by code.
    AuthenticationOther(i32),
    ParameterStatus {
        name: String,
        value: String,
    },
    BackendKeyData,
    ReadyForQuery,
    RowDescription,
    DataRow(Vec<Option<Bytes>>),
    CommandComplete,
    EmptyQueryResponse,
    ErrorResponse(ServerNotice),
    NoticeResponse(ServerNotice),
    CopyInResponse,
    CopyOutResponse,
    CopyBothResponse,
    CopyData(Bytes),
    CopyDone,
    NotificationResponse,
    NegotiateProtocolVersion,
    /// A message a client never expects here (e.g. `ParseComplete`).
    Unexpected(u8),
}

impl BackendMessage {
    /// The message's protocol name, for error messages (never its contents).
    pub fn name(&self) -> &'static str {
        match self {
            BackendMessage::AuthenticationOk => "AuthenticationOk",
            BackendMessage::AuthenticationCleartextPassword => "AuthenticationCleartextPassword",
            BackendMessage::AuthenticationMd5Password(_) => "AuthenticationMD5Password",
            BackendMessage::AuthenticationSasl(_) => "AuthenticationSASL",
            BackendMessage::AuthenticationSaslContinue(_) => "AuthenticationSASLContinue",
            BackendMessage::AuthenticationSaslFinal(_) => "AuthenticationSASLFinal",
            BackendMessage::AuthenticationOther(_) => "Authentication",
            BackendMessage::ParameterStatus { .. } => "ParameterStatus",
            BackendMessage::BackendKeyData => "BackendKeyData",
            BackendMessage::ReadyForQuery => "ReadyForQuery",
            BackendMessage::RowDescription => "RowDescription",
            BackendMessage::DataRow(_) => "DataRow",
            BackendMessage::CommandComplete => "CommandComplete",
            BackendMessage::EmptyQueryResponse => "EmptyQueryResponse",
            BackendMessage::ErrorResponse(_) => "ErrorResponse",
            BackendMessage::NoticeResponse(_) => "NoticeResponse",
            BackendMessage::CopyInResponse => "CopyInResponse",
            BackendMessage::CopyOutResponse => "CopyOutResponse",
            BackendMessage::CopyBothResponse => "CopyBothResponse",
            BackendMessage::CopyData(_) => "CopyData",
            BackendMessage::CopyDone => "CopyDone",
            BackendMessage::NotificationResponse => "NotificationResponse",
            BackendMessage::NegotiateProtocolVersion => "NegotiateProtocolVersion",
            BackendMessage::Unexpected(_) => "message",
        }
    }
}

/// A bounds-checked reader over a message body.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn err(&self, why: &str) -> ReplError {
        ReplError::Protocol(format!("malformed {} message: {why}", self.what))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ReplError> {
        if self.buf.len() < n {
            return Err(self.err("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ReplError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, ReplError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, ReplError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstr(&mut self) -> Result<String, ReplError> {
        let end = self
            .buf
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.err("string without terminating NUL"))?;
        let s = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    fn finish(&self) -> Result<(), ReplError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

/// Decodes one frame.
pub(crate) fn decode(frame: Frame) -> Result<BackendMessage, ReplError> {
    let body = &frame.body[..];
    let msg = match frame.tag {
        b'R' => {
            let mut r = Reader {
                buf: body,
                what: "Authentication",
            };
            match r.i32()? {
                0 => {
                    r.finish()?;
                    BackendMessage::AuthenticationOk
                }
                3 => {
                    r.finish()?;
                    BackendMessage::AuthenticationCleartextPassword
                }
                5 => {
                    let salt = r.take(4)?;
                    r.finish()?;
                    BackendMessage::AuthenticationMd5Password([salt[0], salt[1], salt[2], salt[3]])
                }
                10 => {
                    let mut mechanisms = Vec::new();
                    loop {
                        let m = r.cstr()?;
                        if m.is_empty() {
                            break;
                        }
                        mechanisms.push(m);
                    }
                    r.finish()?;
                    BackendMessage::AuthenticationSasl(mechanisms)
                }
                11 => BackendMessage::AuthenticationSaslContinue(frame.body.slice(4..)),
                12 => BackendMessage::AuthenticationSaslFinal(frame.body.slice(4..)),
                other => BackendMessage::AuthenticationOther(other),
            }
        }
        b'S' => {
            let mut r = Reader {
                buf: body,
                what: "ParameterStatus",
            };
            let name = r.cstr()?;
            let value = r.cstr()?;
            r.finish()?;
            BackendMessage::ParameterStatus { name, value }
        }
        b'K' => BackendMessage::BackendKeyData,
        b'Z' => {
            let mut r = Reader {
                buf: body,
                what: "ReadyForQuery",
            };
            r.u8()?;
            r.finish()?;
            BackendMessage::ReadyForQuery
        }
        b'T' => BackendMessage::RowDescription,
        b'D' => decode_data_row(&frame.body)?,
        b'C' => BackendMessage::CommandComplete,
        b'I' => BackendMessage::EmptyQueryResponse,
        b'E' => BackendMessage::ErrorResponse(decode_notice(body, "ErrorResponse")?),
        b'N' => BackendMessage::NoticeResponse(decode_notice(body, "NoticeResponse")?),
        b'G' => BackendMessage::CopyInResponse,
        b'H' => BackendMessage::CopyOutResponse,
        b'W' => BackendMessage::CopyBothResponse,
        b'd' => BackendMessage::CopyData(frame.body),
        b'c' => BackendMessage::CopyDone,
        b'A' => BackendMessage::NotificationResponse,
        b'v' => BackendMessage::NegotiateProtocolVersion,
        other => BackendMessage::Unexpected(other),
    };
    Ok(msg)
}

fn decode_data_row(body: &Bytes) -> Result<BackendMessage, ReplError> {
    let mut r = Reader {
        buf: body,
        what: "DataRow",
    };
    let n = r.i16()?;
    if n < 0 {
        return Err(r.err("negative column count"));
    }
    let mut cols = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = r.i32()?;
        if len == -1 {
            cols.push(None);
        } else if len < 0 {
            return Err(r.err("negative column length"));
        } else {
            let start = body.len() - r.buf.len();
            r.take(len as usize)?;
            cols.push(Some(body.slice(start..start + len as usize)));
        }
    }
    r.finish()?;
    Ok(BackendMessage::DataRow(cols))
}

fn decode_notice(body: &[u8], what: &'static str) -> Result<ServerNotice, ReplError> {
    let mut r = Reader { buf: body, what };
    let mut n = ServerNotice::default();
    let mut localized_severity = String::new();
    loop {
        let field = r.u8()?;
        if field == 0 {
            break;
        }
        let value = r.cstr()?;
        match field {
            b'S' => localized_severity = value,
            b'V' => n.severity = value,
            b'C' => n.code = value,
            b'M' => n.message = value,
            b'D' => n.detail = Some(value),
            _ => {}
        }
    }
    r.finish()?;
    if n.severity.is_empty() {
        n.severity = localized_severity;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&[tag]);
        b.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn split_waits_for_whole_frame() {
        let full = frame(b'd', b"hello");
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(try_split_frame(&mut part, 100).unwrap(), None, "cut {cut}");
        }
        let mut buf = full.clone();
        buf.extend_from_slice(&frame(b'c', b""));
        let f = try_split_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!((f.tag, &f.body[..]), (b'd', &b"hello"[..]));
        let f = try_split_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!((f.tag, f.body.len()), (b'c', 0));
        assert!(buf.is_empty());
    }

    #[test]
    fn split_rejects_bad_lengths_before_allocating() {
        let mut buf = BytesMut::from(&[b'd', 0, 0, 0, 3][..]);
        assert!(matches!(
            try_split_frame(&mut buf, 100),
            Err(ReplError::Protocol(_))
        ));
        let mut buf = BytesMut::from(&[b'd', 0xff, 0xff, 0xff, 0xff][..]);
        let cap = buf.capacity();
        let e = try_split_frame(&mut buf, MAX_MESSAGE_SIZE).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn decodes_error_fields() {
        let body = b"SFEHLER\0VERROR\0C42710\0Mreplication slot \"s\" already exists\0Dmore\0\0";
        let f = try_split_frame(&mut frame(b'E', body), 1000)
            .unwrap()
            .unwrap();
        let BackendMessage::ErrorResponse(n) = decode(f).unwrap() else {
            panic!()
        };
        assert_eq!(n.severity, "ERROR");
        assert_eq!(n.code, "42710");
        assert_eq!(n.detail.as_deref(), Some("more"));
        let e = n.into_error();
        assert_eq!(e.sqlstate(), Some("42710"));
        assert!(e.to_string().contains("already exists"));
    }

    #[test]
    fn decodes_data_row_and_sasl() {
        let mut body = vec![0, 3];
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(b"ab");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        let f = try_split_frame(&mut frame(b'D', &body), 1000)
            .unwrap()
            .unwrap();
        assert_eq!(
            decode(f).unwrap(),
            BackendMessage::DataRow(vec![
                Some(Bytes::from_static(b"ab")),
                None,
                Some(Bytes::new())
            ])
        );
        let mut body = 10i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let f = try_split_frame(&mut frame(b'R', &body), 1000)
            .unwrap()
            .unwrap();
        assert_eq!(
            decode(f).unwrap(),
            BackendMessage::AuthenticationSasl(vec![
                "SCRAM-SHA-256-PLUS".into(),
                "SCRAM-SHA-256".into()
            ])
        );
    }

    #[test]
    fn malformed_bodies_are_protocol_errors() {
        let cases: &[(u8, &[u8])] = &[
            (b'D', &[0]),
            (b'D', &[0, 1, 0, 0, 0, 5, b'x']),
            (b'D', &[0, 1, 0xff, 0xff, 0xff, 0xfe]),
            (b'D', &[0xff, 0xff]),
            (b'D', &[0, 0, 9]),
            (b'E', b"Cxx"),
            (b'E', b"Cxx\0"),
            (b'R', &[0, 0]),
            (b'R', &[0, 0, 0, 5, 1, 2]),
            (b'R', &[0, 0, 0, 10, b'a']),
            (b'S', b"name\0"),
            (b'Z', b""),
        ];
        for (tag, body) in cases {
            let f = try_split_frame(&mut frame(*tag, body), 1000)
                .unwrap()
                .unwrap();
            assert!(
                matches!(decode(f), Err(ReplError::Protocol(_))),
                "{} {body:?}",
                tag_name(*tag)
            );
        }
    }
}
