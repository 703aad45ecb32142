//! The `pagestream_v2` wire format: requests a compute (or the benchmark
//! tool) sends inside CopyData frames, and the page server's responses.
//!
//! All integers are big-endian. See `docs/page_service.md` for the protocol
//! around these messages (LSN semantics, errors, pipelining).
//!
//! Request (common header, 17 bytes): `tag u8, request_lsn u64,
//! not_modified_since u64`, then by tag:
//!
//! | tag | request          | body                                                   |
//! |-----|------------------|--------------------------------------------------------|
//! | 0   | Exists           | spcnode u32, dbnode u32, relnode u32, forknum u8       |
//! | 1   | Nblocks          | spcnode u32, dbnode u32, relnode u32, forknum u8       |
//! | 2   | GetPage          | spcnode u32, dbnode u32, relnode u32, forknum u8, blkno u32 |
//! | 3   | DbSize           | dbnode u32 (tablespace 1663)                           |
//! | 4   | GetSlruSegment   | kind u8 (0 clog, 1 multixact offsets, 2 members), segno u32 |
//!
//! Response: `tag u8`, then by tag: 100 Exists `u8` (0/1); 101 Nblocks
//! `u32`; 102 GetPage 8192 bytes; 103 Error NUL-terminated UTF-8 message;
//! 104 DbSize `i64` bytes; 105 GetSlruSegment `u32` page count, then the pages.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use utils::lsn::Lsn;

use crate::key::{RelTag, SlruKind, MAX_FORKNUM};
use crate::value::BLCKSZ;

/// Tablespace of [`PagestreamRequest::DbSize`] databases (`pg_default`).
pub const DEFAULT_TABLESPACE: u32 = 1663;
/// Largest request frame a server needs to accept (requests are at most 30
/// bytes; anything far larger is a broken client).
pub const MAX_REQUEST_SIZE: usize = 1 << 20;
/// Length of the header every request starts with.
pub const REQUEST_HEADER_LEN: usize = 17;

/// Request tags.
pub mod tag {
    /// Exists request.
    pub const EXISTS: u8 = 0;
    /// Nblocks request.
    pub const NBLOCKS: u8 = 1;
    /// GetPage request.
    pub const GET_PAGE: u8 = 2;
    /// DbSize request.
    pub const DB_SIZE: u8 = 3;
    /// GetSlruSegment request.
    pub const GET_SLRU_SEGMENT: u8 = 4;
    /// Exists response.
    pub const EXISTS_RESPONSE: u8 = 100;
    /// Nblocks response.
    pub const NBLOCKS_RESPONSE: u8 = 101;
    /// GetPage response.
    pub const GET_PAGE_RESPONSE: u8 = 102;
    /// Error response.
    pub const ERROR_RESPONSE: u8 = 103;
    /// DbSize response.
    pub const DB_SIZE_RESPONSE: u8 = 104;
    /// GetSlruSegment response.
    pub const GET_SLRU_SEGMENT_RESPONSE: u8 = 105;
}

/// The two LSNs every request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLsns {
    /// The LSN to read at; `Lsn::MAX` means "the latest ingested".
    pub request_lsn: Lsn,
    /// The page has not changed since this LSN: the server waits only for
    /// it to be ingested. Must be `<= request_lsn`.
    pub not_modified_since: Lsn,
}

/// A decoded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagestreamRequest {
    /// Does a relation fork exist?
    Exists {
        /// LSNs.
        lsns: RequestLsns,
        /// The relation fork.
        rel: RelTag,
    },
    /// Size of a relation fork in blocks.
    Nblocks {
        /// LSNs.
        lsns: RequestLsns,
        /// The relation fork.
        rel: RelTag,
    },
    /// One block of a relation fork.
    GetPage {
        /// LSNs.
        lsns: RequestLsns,
        /// The relation fork.
        rel: RelTag,
        /// Block number.
        blkno: u32,
    },
    /// Sum of the stored sizes of a database's relations, in bytes.
    DbSize {
        /// LSNs.
        lsns: RequestLsns,
        /// Database OID (tablespace [`DEFAULT_TABLESPACE`]).
        dbnode: u32,
    },
    /// A whole SLRU segment.
    GetSlruSegment {
        /// LSNs.
        lsns: RequestLsns,
        /// Which SLRU.
        kind: SlruKind,
        /// Segment number.
        segno: u32,
    },
}

/// Why a request frame does not decode. The server answers it with an
/// Error response and goes on with the next request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestParseError {
    /// The frame is shorter than its tag's layout.
    #[error("request of type {tag} is {len} bytes, expected {expected}")]
    WrongLength {
        /// The tag.
        tag: u8,
        /// The frame's length.
        len: usize,
        /// The layout's length.
        expected: usize,
    },
    /// The tag is not a request type.
    #[error("unknown request type {0}; known: 0 Exists, 1 Nblocks, 2 GetPage, 3 DbSize, 4 GetSlruSegment")]
    UnknownTag(u8),
    /// The frame is empty.
    #[error("empty request")]
    Empty,
    /// A field is out of range.
    #[error("invalid request: {0}")]
    Invalid(String),
}

fn body_len(tag: u8) -> Option<usize> {
    Some(match tag {
        tag::EXISTS | tag::NBLOCKS => 13,
        tag::GET_PAGE => 17,
        tag::DB_SIZE => 4,
        tag::GET_SLRU_SEGMENT => 5,
        _ => return None,
    })
}

fn get_rel(b: &mut &[u8]) -> Result<RelTag, RequestParseError> {
    let rel = RelTag {
        spcnode: b.get_u32(),
        dbnode: b.get_u32(),
        relnode: b.get_u32(),
        forknum: b.get_u8(),
    };
    if rel.spcnode == 0 || rel.relnode == 0 || rel.forknum > MAX_FORKNUM {
        return Err(RequestParseError::Invalid(format!(
            "relation {}/{}/{} fork {}: spcnode and relnode must not be 0, forknum at most {MAX_FORKNUM}",
            rel.spcnode, rel.dbnode, rel.relnode, rel.forknum
        )));
    }
    Ok(rel)
}

fn put_rel(buf: &mut BytesMut, rel: &RelTag) {
    buf.put_u32(rel.spcnode);
    buf.put_u32(rel.dbnode);
    buf.put_u32(rel.relnode);
    buf.put_u8(rel.forknum);
}

impl PagestreamRequest {
    /// Decodes a request from a CopyData body. Never panics.
    pub fn parse(frame: &[u8]) -> Result<Self, RequestParseError> {
        let &tag = frame.first().ok_or(RequestParseError::Empty)?;
        let body = body_len(tag).ok_or(RequestParseError::UnknownTag(tag))?;
        let expected = REQUEST_HEADER_LEN + body;
        if frame.len() != expected {
            return Err(RequestParseError::WrongLength {
                tag,
                len: frame.len(),
                expected,
            });
        }
        let mut b = &frame[1..];
        let lsns = RequestLsns {
            request_lsn: Lsn(b.get_u64()),
            not_modified_since: Lsn(b.get_u64()),
        };
        Ok(match tag {
            tag::EXISTS => PagestreamRequest::Exists {
                lsns,
                rel: get_rel(&mut b)?,
            },
            tag::NBLOCKS => PagestreamRequest::Nblocks {
                lsns,
                rel: get_rel(&mut b)?,
            },
            tag::GET_PAGE => {
                let rel = get_rel(&mut b)?;
                let blkno = b.get_u32();
                if blkno == u32::MAX {
                    return Err(RequestParseError::Invalid(
                        "block number 0xFFFFFFFF is not a valid block".into(),
                    ));
                }
                PagestreamRequest::GetPage { lsns, rel, blkno }
            }
            tag::DB_SIZE => PagestreamRequest::DbSize {
                lsns,
                dbnode: b.get_u32(),
            },
            tag::GET_SLRU_SEGMENT => {
                let kind = match b.get_u8() {
                    0 => SlruKind::Clog,
                    1 => SlruKind::MultiXactOffsets,
                    2 => SlruKind::MultiXactMembers,
                    k => {
                        return Err(RequestParseError::Invalid(format!(
                            "unknown SLRU kind {k}; known: 0 clog, 1 multixact offsets, 2 multixact members"
                        )))
                    }
                };
                PagestreamRequest::GetSlruSegment {
                    lsns,
                    kind,
                    segno: b.get_u32(),
                }
            }
            _ => unreachable!("body_len knows only these tags"),
        })
    }

    /// The request's LSNs.
    pub fn lsns(&self) -> RequestLsns {
        match self {
            PagestreamRequest::Exists { lsns, .. }
            | PagestreamRequest::Nblocks { lsns, .. }
            | PagestreamRequest::GetPage { lsns, .. }
            | PagestreamRequest::DbSize { lsns, .. }
            | PagestreamRequest::GetSlruSegment { lsns, .. } => *lsns,
        }
    }

    /// The request type's name (a metrics label).
    pub fn type_name(&self) -> &'static str {
        match self {
            PagestreamRequest::Exists { .. } => "exists",
            PagestreamRequest::Nblocks { .. } => "nblocks",
            PagestreamRequest::GetPage { .. } => "get_page",
            PagestreamRequest::DbSize { .. } => "db_size",
            PagestreamRequest::GetSlruSegment { .. } => "get_slru_segment",
        }
    }

    /// Appends the encoded request (a CopyData body) to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        let (tag, lsns) = match self {
            PagestreamRequest::Exists { lsns, .. } => (tag::EXISTS, lsns),
            PagestreamRequest::Nblocks { lsns, .. } => (tag::NBLOCKS, lsns),
            PagestreamRequest::GetPage { lsns, .. } => (tag::GET_PAGE, lsns),
            PagestreamRequest::DbSize { lsns, .. } => (tag::DB_SIZE, lsns),
            PagestreamRequest::GetSlruSegment { lsns, .. } => (tag::GET_SLRU_SEGMENT, lsns),
        };
        buf.put_u8(tag);
        buf.put_u64(lsns.request_lsn.0);
        buf.put_u64(lsns.not_modified_since.0);
        match self {
            PagestreamRequest::Exists { rel, .. } | PagestreamRequest::Nblocks { rel, .. } => {
                put_rel(buf, rel)
            }
            PagestreamRequest::GetPage { rel, blkno, .. } => {
                put_rel(buf, rel);
                buf.put_u32(*blkno);
            }
            PagestreamRequest::DbSize { dbnode, .. } => buf.put_u32(*dbnode),
            PagestreamRequest::GetSlruSegment { kind, segno, .. } => {
                buf.put_u8(*kind as u8);
                buf.put_u32(*segno);
            }
        }
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagestreamResponse {
    /// Whether the relation fork exists.
    Exists(bool),
    /// Size in blocks.
    Nblocks(u32),
    /// One page, [`BLCKSZ`] bytes.
    GetPage(Bytes),
    /// The request failed; the stream goes on.
    Error(String),
    /// Database size in bytes.
    DbSize(i64),
    /// The segment's pages, a multiple of [`BLCKSZ`] bytes.
    GetSlruSegment(Bytes),
}

/// Why a response does not decode (client side).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pagestream response: {0}")]
pub struct ResponseParseError(pub String);

impl PagestreamResponse {
    /// Appends the encoded response (a CopyData body) to `buf`. A GetPage or
    /// GetSlruSegment of the wrong size is encoded as given; the server
    /// checks sizes before it builds the response.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            PagestreamResponse::Exists(e) => {
                buf.put_u8(tag::EXISTS_RESPONSE);
                buf.put_u8(u8::from(*e));
            }
            PagestreamResponse::Nblocks(n) => {
                buf.put_u8(tag::NBLOCKS_RESPONSE);
                buf.put_u32(*n);
            }
            PagestreamResponse::GetPage(page) => {
                buf.put_u8(tag::GET_PAGE_RESPONSE);
                buf.extend_from_slice(page);
            }
            PagestreamResponse::Error(msg) => {
                buf.put_u8(tag::ERROR_RESPONSE);
                buf.extend(msg.bytes().filter(|b| *b != 0));
                buf.put_u8(0);
            }
            PagestreamResponse::DbSize(n) => {
                buf.put_u8(tag::DB_SIZE_RESPONSE);
                buf.put_i64(*n);
            }
            PagestreamResponse::GetSlruSegment(pages) => {
                buf.put_u8(tag::GET_SLRU_SEGMENT_RESPONSE);
                buf.put_u32((pages.len() / BLCKSZ) as u32);
                buf.extend_from_slice(pages);
            }
        }
    }

    /// Decodes a response from a CopyData body. Never panics.
    pub fn parse(frame: Bytes) -> Result<Self, ResponseParseError> {
        let err = |m: &str| ResponseParseError(m.to_string());
        let Some(&t) = frame.first() else {
            return Err(err("empty"));
        };
        let body = frame.slice(1..);
        let exact = |n: usize| {
            if body.len() == n {
                Ok(())
            } else {
                Err(ResponseParseError(format!(
                    "response {t} has {} body bytes, expected {n}",
                    body.len()
                )))
            }
        };
        Ok(match t {
            tag::EXISTS_RESPONSE => {
                exact(1)?;
                PagestreamResponse::Exists(body[0] != 0)
            }
            tag::NBLOCKS_RESPONSE => {
                exact(4)?;
                PagestreamResponse::Nblocks((&body[..]).get_u32())
            }
            tag::GET_PAGE_RESPONSE => {
                exact(BLCKSZ)?;
                PagestreamResponse::GetPage(body)
            }
            tag::ERROR_RESPONSE => {
                let Some((&0, msg)) = body.split_last() else {
                    return Err(err("error message without terminating NUL"));
                };
                PagestreamResponse::Error(String::from_utf8_lossy(msg).into_owned())
            }
            tag::DB_SIZE_RESPONSE => {
                exact(8)?;
                PagestreamResponse::DbSize((&body[..]).get_i64())
            }
            tag::GET_SLRU_SEGMENT_RESPONSE => {
                if body.len() < 4 {
                    return Err(err("SLRU segment response without page count"));
                }
                let n = (&body[..4]).get_u32() as usize;
                exact(4 + n.saturating_mul(BLCKSZ))?;
                PagestreamResponse::GetSlruSegment(body.slice(4..))
            }
            other => return Err(ResponseParseError(format!("unknown response type {other}"))),
        })
    }
}

#[cfg(test)]
mod tests;
