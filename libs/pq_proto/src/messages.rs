//! Encoding of the messages a PostgreSQL server sends (the server side's
//! half that `postgres-protocol` does not provide).
//!
//! Every message is appended to a `BytesMut` with its type byte and length
//! word; nothing here does I/O.

use bytes::{BufMut, BytesMut};

/// Type OID of `text` in a [`RowField`].
pub const TEXT_OID: u32 = 25;
/// Type OID of `int8` in a [`RowField`].
pub const INT8_OID: u32 = 20;

/// A column of a [`BeMessage::RowDescription`] (text format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowField<'a> {
    /// Column name.
    pub name: &'a str,
    /// Type OID, e.g. [`TEXT_OID`].
    pub type_oid: u32,
}

/// Fields of an `ErrorResponse` or `NoticeResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    /// `ERROR`, `FATAL` (the server closes the connection after it) or, for
    /// notices, `NOTICE`/`WARNING`/`INFO`.
    pub severity: &'a str,
    /// SQLSTATE, e.g. [`SQLSTATE_INTERNAL_ERROR`].
    pub code: &'a str,
    /// The primary message.
    pub message: &'a str,
    /// An optional detail line.
    pub detail: Option<&'a str>,
}

/// SQLSTATE `XX000`: internal error.
pub const SQLSTATE_INTERNAL_ERROR: &str = "XX000";
/// SQLSTATE `08P01`: protocol violation.
pub const SQLSTATE_PROTOCOL_VIOLATION: &str = "08P01";
/// SQLSTATE `28000`: invalid authorization specification (bad credentials).
pub const SQLSTATE_INVALID_AUTHORIZATION: &str = "28000";
/// SQLSTATE `28P01`: invalid password.
pub const SQLSTATE_INVALID_PASSWORD: &str = "28P01";
/// SQLSTATE `42501`: insufficient privilege.
pub const SQLSTATE_INSUFFICIENT_PRIVILEGE: &str = "42501";
/// SQLSTATE `42601`: syntax error (an unknown or malformed command).
pub const SQLSTATE_SYNTAX_ERROR: &str = "42601";
/// SQLSTATE `0A000`: feature not supported.
pub const SQLSTATE_FEATURE_NOT_SUPPORTED: &str = "0A000";
/// SQLSTATE `57P01`: the server is shutting down.
pub const SQLSTATE_ADMIN_SHUTDOWN: &str = "57P01";
/// SQLSTATE `57014`: query cancelled (used for timeouts).
pub const SQLSTATE_QUERY_CANCELED: &str = "57014";
/// SQLSTATE `58000`: system error (an object the command needs is unusable).
pub const SQLSTATE_SYSTEM_ERROR: &str = "58000";
/// SQLSTATE `42704`: undefined object (no such tenant or timeline).
pub const SQLSTATE_UNDEFINED_OBJECT: &str = "42704";

/// The backend messages this server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeMessage<'a> {
    /// `R` 0: authentication succeeded.
    AuthenticationOk,
    /// `R` 3: send the password in clear text.
    AuthenticationCleartextPassword,
    /// `S`: a run-time parameter's value.
    ParameterStatus {
        /// Parameter name.
        name: &'a str,
        /// Its value.
        value: &'a str,
    },
    /// `K`: the key a CancelRequest must present.
    BackendKeyData {
        /// Process id (any number identifying the connection).
        process_id: i32,
        /// Secret key.
        secret_key: i32,
    },
    /// `Z` with status `I`: ready for the next query, no transaction open.
    ReadyForQuery,
    /// `T`: columns of the rows that follow.
    RowDescription(&'a [RowField<'a>]),
    /// `D`: one row; `None` is SQL NULL.
    DataRow(&'a [Option<&'a [u8]>]),
    /// `C`: a command finished, with its tag (e.g. `SELECT 1`).
    CommandComplete(&'a str),
    /// `I`: the query string was empty.
    EmptyQueryResponse,
    /// `E`: an error.
    ErrorResponse(ErrorFields<'a>),
    /// `N`: a notice.
    NoticeResponse(ErrorFields<'a>),
    /// `G`: the server is ready to receive COPY data (binary, no columns).
    CopyInResponse,
    /// `H`: the server will send COPY data (binary, no columns).
    CopyOutResponse,
    /// `W`: COPY in both directions (binary, no columns).
    CopyBothResponse,
    /// `d`: a chunk of COPY data.
    CopyData(&'a [u8]),
    /// `c`: end of the server's COPY data.
    CopyDone,
}

/// The single byte that refuses an SSLRequest or GSSENCRequest; the client
/// then continues in clear text.
pub const ENCRYPTION_REFUSED: u8 = b'N';

/// Appends a framed message: tag, length word patched after `body` wrote.
fn framed(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_u32(0);
    body(buf);
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends `s` and a NUL; NUL bytes inside `s` are dropped (they cannot be
/// represented and would corrupt the framing).
fn put_cstr(buf: &mut BytesMut, s: &str) {
    if s.as_bytes().contains(&0) {
        buf.extend(s.bytes().filter(|b| *b != 0));
    } else {
        buf.extend_from_slice(s.as_bytes());
    }
    buf.put_u8(0);
}

fn copy_response(buf: &mut BytesMut, tag: u8) {
    framed(buf, tag, |b| {
        b.put_u8(1); // binary
        b.put_i16(0); // no columns
    });
}

fn error_fields(buf: &mut BytesMut, f: &ErrorFields<'_>) {
    buf.put_u8(b'S');
    put_cstr(buf, f.severity);
    buf.put_u8(b'V');
    put_cstr(buf, f.severity);
    buf.put_u8(b'C');
    put_cstr(buf, f.code);
    buf.put_u8(b'M');
    put_cstr(buf, f.message);
    if let Some(d) = f.detail {
        buf.put_u8(b'D');
        put_cstr(buf, d);
    }
    buf.put_u8(0);
}

impl BeMessage<'_> {
    /// Appends the encoded message to `buf`.
    pub fn write(&self, buf: &mut BytesMut) {
        match self {
            BeMessage::AuthenticationOk => framed(buf, b'R', |b| b.put_i32(0)),
            BeMessage::AuthenticationCleartextPassword => framed(buf, b'R', |b| b.put_i32(3)),
            BeMessage::ParameterStatus { name, value } => framed(buf, b'S', |b| {
                put_cstr(b, name);
                put_cstr(b, value);
            }),
            BeMessage::BackendKeyData {
                process_id,
                secret_key,
            } => framed(buf, b'K', |b| {
                b.put_i32(*process_id);
                b.put_i32(*secret_key);
            }),
            BeMessage::ReadyForQuery => framed(buf, b'Z', |b| b.put_u8(b'I')),
            BeMessage::RowDescription(fields) => framed(buf, b'T', |b| {
                b.put_i16(fields.len() as i16);
                for f in fields.iter() {
                    put_cstr(b, f.name);
                    b.put_i32(0); // table oid
                    b.put_i16(0); // column number
                    b.put_u32(f.type_oid);
                    b.put_i16(-1); // variable size
                    b.put_i32(-1); // type modifier
                    b.put_i16(0); // text format
                }
            }),
            BeMessage::DataRow(cols) => framed(buf, b'D', |b| {
                b.put_i16(cols.len() as i16);
                for c in cols.iter() {
                    match c {
                        Some(v) => {
                            b.put_i32(v.len() as i32);
                            b.extend_from_slice(v);
                        }
                        None => b.put_i32(-1),
                    }
                }
            }),
            BeMessage::CommandComplete(tag) => framed(buf, b'C', |b| put_cstr(b, tag)),
            BeMessage::EmptyQueryResponse => framed(buf, b'I', |_| {}),
            BeMessage::ErrorResponse(f) => framed(buf, b'E', |b| error_fields(b, f)),
            BeMessage::NoticeResponse(f) => framed(buf, b'N', |b| error_fields(b, f)),
            BeMessage::CopyInResponse => copy_response(buf, b'G'),
            BeMessage::CopyOutResponse => copy_response(buf, b'H'),
            BeMessage::CopyBothResponse => copy_response(buf, b'W'),
            BeMessage::CopyData(data) => framed(buf, b'd', |b| b.extend_from_slice(data)),
            BeMessage::CopyDone => framed(buf, b'c', |_| {}),
        }
    }
}

/// Appends a CopyData message whose body `body` writes (no intermediate
/// buffer: for large pagestream responses).
pub fn write_copy_data_with(buf: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    framed(buf, b'd', body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{decode, try_split_frame, BackendMessage as Decoded};
    use bytes::Bytes;

    /// Encodes with this module and decodes with the client-side decoder.
    fn round(msg: BeMessage<'_>) -> Decoded {
        let mut buf = BytesMut::new();
        msg.write(&mut buf);
        let frame = try_split_frame(&mut buf, 1 << 20).unwrap().unwrap();
        assert!(buf.is_empty(), "exactly one frame");
        decode(frame).unwrap()
    }

    #[test]
    fn messages_decode_as_a_client_reads_them() {
        assert_eq!(
            round(BeMessage::AuthenticationOk),
            Decoded::AuthenticationOk
        );
        assert_eq!(
            round(BeMessage::AuthenticationCleartextPassword),
            Decoded::AuthenticationCleartextPassword
        );
        assert_eq!(
            round(BeMessage::ParameterStatus {
                name: "server_version",
                value: "15"
            }),
            Decoded::ParameterStatus {
                name: "server_version".into(),
                value: "15".into()
            }
        );
        assert_eq!(
            round(BeMessage::BackendKeyData {
                process_id: 1,
                secret_key: 2
            }),
            Decoded::BackendKeyData
        );
        assert_eq!(round(BeMessage::ReadyForQuery), Decoded::ReadyForQuery);
        assert_eq!(
            round(BeMessage::RowDescription(&[RowField {
                name: "x",
                type_oid: TEXT_OID
            }])),
            Decoded::RowDescription
        );
        assert_eq!(
            round(BeMessage::DataRow(&[Some(b"ab"), None])),
            Decoded::DataRow(vec![Some(Bytes::from_static(b"ab")), None])
        );
        assert_eq!(
            round(BeMessage::CommandComplete("SELECT 1")),
            Decoded::CommandComplete
        );
        let Decoded::ErrorResponse(n) = round(BeMessage::ErrorResponse(ErrorFields {
            severity: "ERROR",
            code: SQLSTATE_INSUFFICIENT_PRIVILEGE,
            message: "no\0pe",
            detail: Some("d"),
        })) else {
            panic!("not an error")
        };
        assert_eq!(
            (n.severity.as_str(), n.code.as_str(), n.message.as_str()),
            ("ERROR", "42501", "nope")
        );
        assert_eq!(n.detail.as_deref(), Some("d"));
        assert!(matches!(
            round(BeMessage::NoticeResponse(ErrorFields {
                severity: "NOTICE",
                code: "00000",
                message: "hi",
                detail: None
            })),
            Decoded::NoticeResponse(_)
        ));
        assert_eq!(
            round(BeMessage::CopyBothResponse),
            Decoded::CopyBothResponse
        );
        assert_eq!(round(BeMessage::CopyInResponse), Decoded::CopyInResponse);
        assert_eq!(round(BeMessage::CopyOutResponse), Decoded::CopyOutResponse);
        assert_eq!(
            round(BeMessage::CopyData(b"xyz")),
            Decoded::CopyData(Bytes::from_static(b"xyz"))
        );
        assert_eq!(round(BeMessage::CopyDone), Decoded::CopyDone);
        assert_eq!(
            round(BeMessage::EmptyQueryResponse),
            Decoded::EmptyQueryResponse
        );
    }

    #[test]
    fn copy_data_with_matches_copy_data() {
        let mut a = BytesMut::new();
        BeMessage::CopyData(b"hello").write(&mut a);
        let mut b = BytesMut::new();
        write_copy_data_with(&mut b, |buf| buf.extend_from_slice(b"hello"));
        assert_eq!(a, b);
        assert_eq!(&a[..5], &[b'd', 0, 0, 0, 9]);
    }
}
