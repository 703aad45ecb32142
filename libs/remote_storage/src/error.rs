//! The crate's one error type, its coarse kinds, and how `object_store` errors
//! are sorted into "worth retrying" and "not".
//!
//! Callers match on [`RemoteStorageError::kind`] (retry later? report a missing
//! object? stop because we are shutting down?), and show the message, which
//! always names the object path (or the prefix of a listing) and the operation.

use std::error::Error as StdError;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use crate::config::ConfigError;
use crate::path::InvalidPathError;

/// Boxed underlying error, kept as the `source` of our errors.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The operations of [`crate::GenericRemoteStorage`], used in errors and as the
/// `op` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `upload`
    Upload,
    /// `download` (whole object)
    Download,
    /// `download_range`
    DownloadRange,
    /// `list`
    List,
    /// `delete_objects`
    Delete,
    /// `copy`
    Copy,
    /// `head` / `exists`
    Head,
}

impl Op {
    /// Every operation, for pre-creating metric series.
    pub const ALL: [Op; 7] = [
        Op::Upload,
        Op::Download,
        Op::DownloadRange,
        Op::List,
        Op::Delete,
        Op::Copy,
        Op::Head,
    ];

    /// Lowercase name, the metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Upload => "upload",
            Op::Download => "download",
            Op::DownloadRange => "download_range",
            Op::List => "list",
            Op::Delete => "delete",
            Op::Copy => "copy",
            Op::Head => "head",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Coarse classification of a [`RemoteStorageError`]: what the caller should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request itself is wrong (bad path, bad range, bad config): fix the caller.
    InvalidInput,
    /// The object does not exist.
    NotFound,
    /// The bytes read do not match their checksum: the object (or the read) is corrupt.
    Corrupt,
    /// The caller's cancellation token fired.
    Cancelled,
    /// Every attempt ran into the per-request timeout.
    Timeout,
    /// A transient failure (5xx, connection error, injected fault) outlasted the retries.
    Transient,
    /// A failure retrying cannot fix (permission denied, precondition, bad request).
    Permanent,
}

impl ErrorKind {
    /// Every kind, for pre-creating metric series.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::Corrupt,
        ErrorKind::Cancelled,
        ErrorKind::Timeout,
        ErrorKind::Transient,
        ErrorKind::Permanent,
    ];

    /// Lowercase name, the metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
        }
    }
}

/// Where the expected checksum of a [`RemoteStorageError::ChecksumMismatch`]
/// came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumSource {
    /// Stored with the object at upload (S3 metadata or local side file).
    Stored,
    /// Given by the caller (e.g. from `index_part`).
    Caller,
}

impl fmt::Display for ChecksumSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChecksumSource::Stored => "stored with the object",
            ChecksumSource::Caller => "expected by the caller",
        })
    }
}

/// An operation on remote storage failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteStorageError {
    /// A key was rejected before any request was made.
    #[error(transparent)]
    InvalidPath(#[from] InvalidPathError),
    /// The storage could not be built from its configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `download_range` was given an empty or reversed range.
    #[error("invalid range {}..{} for {path}: the end must be greater than the start", .range.start, .range.end)]
    InvalidRange {
        /// The object.
        path: String,
        /// The requested range.
        range: Range<u64>,
    },
    /// `download_range` asked for bytes past the end of the object.
    #[error("range {}..{} of {path} is past the end of the object ({size} bytes)", .range.start, .range.end)]
    RangeOutOfBounds {
        /// The object.
        path: String,
        /// The requested range.
        range: Range<u64>,
        /// The object's size.
        size: u64,
    },
    /// The object (or, for `copy`, the source) does not exist.
    #[error("remote object {path} not found")]
    NotFound {
        /// The missing object.
        path: String,
    },
    /// The downloaded bytes do not match their CRC32C.
    #[error(
        "checksum mismatch for {path}: CRC32C {expected:08x} {source_of_expected}, but the \
         downloaded bytes have {actual:08x}; the remote object is corrupt"
    )]
    ChecksumMismatch {
        /// The object.
        path: String,
        /// The checksum the bytes should have.
        expected: u32,
        /// The checksum the bytes have.
        actual: u32,
        /// Where `expected` came from.
        source_of_expected: ChecksumSource,
    },
    /// The caller's cancellation token fired before the operation finished.
    #[error("{op} of {path} cancelled")]
    Cancelled {
        /// The operation.
        op: Op,
        /// The object or prefix.
        path: String,
    },
    /// Every attempt ran past the per-request timeout.
    #[error("{op} of {path} timed out ({attempts} attempts of {timeout:?} each)")]
    Timeout {
        /// The operation.
        op: Op,
        /// The object or prefix.
        path: String,
        /// The per-request timeout.
        timeout: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// Transient failures (server errors, connection errors) outlasted the retries.
    #[error("{op} of {path} failed after {attempts} attempts: {source}")]
    Transient {
        /// The operation.
        op: Op,
        /// The object or prefix.
        path: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        source: BoxError,
    },
    /// A failure retrying cannot fix.
    #[error("{op} of {path} failed: {source}")]
    Permanent {
        /// The operation.
        op: Op,
        /// The object or prefix.
        path: String,
        /// The failure.
        source: BoxError,
    },
}

impl RemoteStorageError {
    /// The coarse kind, for deciding what to do and for metrics.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RemoteStorageError::InvalidPath(_)
            | RemoteStorageError::Config(_)
            | RemoteStorageError::InvalidRange { .. }
            | RemoteStorageError::RangeOutOfBounds { .. } => ErrorKind::InvalidInput,
            RemoteStorageError::NotFound { .. } => ErrorKind::NotFound,
            RemoteStorageError::ChecksumMismatch { .. } => ErrorKind::Corrupt,
            RemoteStorageError::Cancelled { .. } => ErrorKind::Cancelled,
            RemoteStorageError::Timeout { .. } => ErrorKind::Timeout,
            RemoteStorageError::Transient { .. } => ErrorKind::Transient,
            RemoteStorageError::Permanent { .. } => ErrorKind::Permanent,
        }
    }

    /// True for [`ErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// True for [`ErrorKind::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.kind() == ErrorKind::Cancelled
    }
}

/// How one failed attempt should be treated by the retry loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptClass {
    /// Not there: report, never retry.
    NotFound,
    /// Worth another attempt.
    Transient,
    /// Retrying cannot help.
    Permanent,
}

/// Sorts an `object_store` error. `object_store` itself is configured not to
/// retry, so every transient failure reaches us and is retried (and counted)
/// here, uniformly across backends.
///
/// * `NotFound` is not found, except S3's `NoSuchBucket`, which is permanent
///   (the configuration names a bucket that does not exist); permission, authentication, precondition,
///   conflict, "not supported" and path errors are permanent.
/// * `Generic` errors are transient when their cause chain holds a transport
///   error (`object_store::client::HttpError`: connect, request, timeout,
///   interrupted), an injected fault of the testing wrapper, or an I/O error
///   of a transient kind; or when the HTTP status is 5xx, 408 or 429. The
///   status is read from the message, because `object_store` does not export
///   the error type that carries it. Everything else is permanent.
pub(crate) fn classify(err: &object_store::Error) -> AttemptClass {
    use object_store::Error as E;
    match err {
        // A missing bucket is a configuration problem, not a missing object.
        E::NotFound { source, .. } if source.to_string().contains("NoSuchBucket") => {
            AttemptClass::Permanent
        }
        E::NotFound { .. } => AttemptClass::NotFound,
        E::Generic { source, .. } => classify_chain(source.as_ref()),
        E::JoinError { .. } => AttemptClass::Transient,
        _ => AttemptClass::Permanent,
    }
}

fn classify_chain(top: &(dyn StdError + 'static)) -> AttemptClass {
    let mut current: Option<&(dyn StdError + 'static)> = Some(top);
    while let Some(err) = current {
        if err.is::<object_store::client::HttpError>() {
            return AttemptClass::Transient;
        }
        #[cfg(feature = "testing")]
        if err.is::<crate::fault::InjectedFault>() {
            return AttemptClass::Transient;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return match io.kind() {
                K::TimedOut
                | K::Interrupted
                | K::WouldBlock
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::ConnectionRefused
                | K::BrokenPipe
                | K::UnexpectedEof => AttemptClass::Transient,
                K::NotFound => AttemptClass::NotFound,
                _ => AttemptClass::Permanent,
            };
        }
        current = err.source();
    }
    match http_status_in(&top.to_string()) {
        Some(status) if status >= 500 || status == 408 || status == 429 => AttemptClass::Transient,
        _ => AttemptClass::Permanent,
    }
}

/// Finds the status in `object_store`'s "... status code: 503 Service
/// Unavailable ..." messages.
fn http_status_in(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status code: ")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    match digits.len() {
        3 => digits.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Msg(String);

    fn generic(source: BoxError) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source,
        }
    }

    #[test]
    fn classifies_object_store_errors() {
        let nf = object_store::Error::NotFound {
            path: "a".into(),
            source: Box::new(Msg("gone".into())),
        };
        assert_eq!(classify(&nf), AttemptClass::NotFound);
        let no_bucket = object_store::Error::NotFound {
            path: "a".into(),
            source: Box::new(Msg("404 Not Found: <Code>NoSuchBucket</Code>".into())),
        };
        assert_eq!(classify(&no_bucket), AttemptClass::Permanent);
        let denied = object_store::Error::PermissionDenied {
            path: "a".into(),
            source: Box::new(Msg("no".into())),
        };
        assert_eq!(classify(&denied), AttemptClass::Permanent);
        let pre = object_store::Error::Precondition {
            path: "a".into(),
            source: Box::new(Msg("etag".into())),
        };
        assert_eq!(classify(&pre), AttemptClass::Permanent);

        for (msg, class) in [
            (
                "Error performing PUT http://x in 1ms - Server returned non-2xx status code: 503 Service Unavailable: ",
                AttemptClass::Transient,
            ),
            ("Server returned non-2xx status code: 500 Internal Server Error", AttemptClass::Transient),
            ("Server returned non-2xx status code: 429 Too Many Requests", AttemptClass::Transient),
            ("Server returned non-2xx status code: 400 Bad Request", AttemptClass::Permanent),
            ("Server returned non-2xx status code: 416 Range Not Satisfiable", AttemptClass::Permanent),
            ("something odd", AttemptClass::Permanent),
        ] {
            assert_eq!(classify(&generic(Box::new(Msg(msg.into())))), class, "{msg}");
        }

        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(classify(&generic(Box::new(reset))), AttemptClass::Transient);
        let denied = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        assert_eq!(
            classify(&generic(Box::new(denied))),
            AttemptClass::Permanent
        );
    }

    #[test]
    fn messages_name_the_object() {
        let e = RemoteStorageError::Timeout {
            op: Op::Download,
            path: "tenants/t/x".into(),
            timeout: Duration::from_secs(1),
            attempts: 3,
        };
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(e.to_string().contains("download of tenants/t/x"), "{e}");
        let e = RemoteStorageError::ChecksumMismatch {
            path: "l".into(),
            expected: 1,
            actual: 2,
            source_of_expected: ChecksumSource::Stored,
        };
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(
            e.to_string().contains("00000001 stored with the object"),
            "{e}"
        );
    }
}
