//! [`RemotePath`]: a validated, relative object key.
//!
//! Every key that reaches object storage goes through [`RemotePath::new`], so the
//! rest of the crate (and the page server) never has to think about `..`,
//! absolute paths, empty segments or characters that some backends mangle.
//! The rules are the intersection of what S3, the local filesystem backend of
//! `object_store` and our own bookkeeping accept:
//!
//! * not empty, at most [`MAX_PATH_LEN`] bytes;
//! * relative: no leading `/`, and no trailing `/` (a key names an object, not a
//!   folder);
//! * `/`-separated segments, none of them empty, `.` or `..`;
//! * no ASCII control characters and none of ``\ { } ^ % ` [ ] " < > ~ # |``
//!   (characters AWS advises against in keys, which `object_store` would
//!   percent-encode, so the stored key would differ from the one we were given);
//! * the first segment is not [`RESERVED_PREFIX`], where the local filesystem
//!   backend keeps its checksum side files.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest key accepted, in bytes (the S3 limit is 1024, and a configured
/// `prefix_in_bucket` is added in front of ours).
pub const MAX_PATH_LEN: usize = 900;

/// First path segment reserved for the storage's own bookkeeping (checksum side
/// files of the local filesystem backend). Keys may not start with it.
pub const RESERVED_PREFIX: &str = ".crc32c";

/// Characters rejected anywhere in a key, besides ASCII control characters.
const FORBIDDEN_CHARS: &[char] = &[
    '\\', '{', '}', '^', '%', '`', '[', ']', '"', '<', '>', '~', '#', '|',
];

/// A key was rejected by [`RemotePath::new`] (or one of the helpers that build
/// keys). The message names the key and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid remote path {path:?}: {reason}")]
pub struct InvalidPathError {
    /// The rejected key, as given.
    pub path: String,
    /// Which rule it broke.
    pub reason: String,
}

impl InvalidPathError {
    fn new(path: &str, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}

/// A validated, relative object key such as
/// `tenants/TENANT/timelines/TIMELINE/index_part.json-00000001`.
///
/// Ordered and hashed by its string, so sorted keys sort like S3 lists them.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RemotePath(String);

impl RemotePath {
    /// Validates `path` (see the module documentation for the rules).
    pub fn new(path: &str) -> Result<Self, InvalidPathError> {
        validate(path)?;
        Ok(Self(path.to_string()))
    }

    /// The key as a string, exactly as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Appends `rest` (one segment or several joined by `/`), validating the
    /// result: `tenants`.join("T/timelines") is `tenants/T/timelines`.
    pub fn join(&self, rest: &str) -> Result<Self, InvalidPathError> {
        let joined = format!("{}/{}", self.0, rest);
        // Name the part that was added when it alone is at fault.
        if rest.is_empty() || rest.starts_with('/') {
            return Err(InvalidPathError::new(
                &joined,
                format!("cannot join {rest:?}: it must be a non-empty relative path"),
            ));
        }
        Self::new(&joined)
    }

    /// The key without its last segment, or `None` for a single-segment key.
    pub fn parent(&self) -> Option<RemotePath> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| RemotePath(parent.to_string()))
    }

    /// The last segment (the "file name").
    pub fn file_name(&self) -> &str {
        self.0.rsplit_once('/').map_or(self.0.as_str(), |(_, f)| f)
    }

    /// The segments, first to last.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// True when `prefix` is a whole-segment prefix of this key (or equal to it):
    /// `a/b` starts with `a` but not with `a/b/c` and `ab/c` does not start with `a`.
    /// This is the prefix rule [`crate::GenericRemoteStorage::list`] uses.
    pub fn starts_with(&self, prefix: &RemotePath) -> bool {
        match self.0.strip_prefix(prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// This key relative to `prefix` (see [`Self::starts_with`]), or `None` when
    /// `prefix` is not a prefix or equals the key.
    pub fn strip_prefix(&self, prefix: &RemotePath) -> Option<&str> {
        self.0
            .strip_prefix(prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
    }

    /// The `object_store` path for this key. Validation guarantees the string
    /// needs no encoding, so the stored key is exactly [`Self::as_str`].
    pub(crate) fn to_object_path(&self) -> object_store::path::Path {
        // Only fails on empty, `.` or `..` segments or control characters,
        // which `validate` rejected.
        object_store::path::Path::parse(&self.0)
            .expect("a validated RemotePath is a valid object_store path")
    }

    /// Converts a key returned by a listing back into a [`RemotePath`].
    pub(crate) fn from_object_path(
        path: &object_store::path::Path,
    ) -> Result<Self, InvalidPathError> {
        Self::new(path.as_ref())
    }
}

fn validate(path: &str) -> Result<(), InvalidPathError> {
    if path.is_empty() {
        return Err(InvalidPathError::new(path, "it is empty"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(InvalidPathError::new(
            path,
            format!(
                "it is {} bytes long, the limit is {MAX_PATH_LEN}",
                path.len()
            ),
        ));
    }
    if path.starts_with('/') {
        return Err(InvalidPathError::new(
            path,
            "it starts with '/': keys are relative to the storage root",
        ));
    }
    if path.ends_with('/') {
        return Err(InvalidPathError::new(
            path,
            "it ends with '/': a key names an object, not a folder",
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_ascii_control() || FORBIDDEN_CHARS.contains(c))
    {
        return Err(InvalidPathError::new(
            path,
            format!("it contains the character {c:?}, which object keys may not contain"),
        ));
    }
    for (i, segment) in path.split('/').enumerate() {
        match segment {
            "" => {
                return Err(InvalidPathError::new(
                    path,
                    "it has an empty segment ('//')",
                ))
            }
            "." | ".." => {
                return Err(InvalidPathError::new(
                    path,
                    format!("it has a {segment:?} segment; keys cannot navigate"),
                ))
            }
            RESERVED_PREFIX if i == 0 => {
                return Err(InvalidPathError::new(
                    path,
                    format!("the first segment {RESERVED_PREFIX:?} is reserved for checksums"),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemotePath({:?})", self.0)
    }
}

impl FromStr for RemotePath {
    type Err = InvalidPathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for RemotePath {
    type Error = InvalidPathError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        validate(&s)?;
        Ok(Self(s))
    }
}

impl From<RemotePath> for String {
    fn from(p: RemotePath) -> Self {
        p.0
    }
}

impl AsRef<str> for RemotePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RemotePath {
        RemotePath::new(s).unwrap()
    }

    #[test]
    fn accepts_layout_keys() {
        for key in [
            "a",
            "tenants/0123abcd/tenant-manifest-00000001.json",
            "tenants/t/timelines/tl/index_part.json-0000000a",
            "tenants/t/timelines/tl/000000000000000000000000000000000000-FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF__0000000001696070-00000000016960E9-00000001",
            ".hidden/ok",
            "x/.crc32c",
            "spaces are fine/and=this+too",
        ] {
            assert_eq!(p(key).as_str(), key);
            assert_eq!(p(key).to_object_path().as_ref(), key);
        }
    }

    #[test]
    fn rejects_bad_keys_naming_them() {
        let cases = [
            ("", "empty"),
            ("/abs", "starts with '/'"),
            ("dir/", "ends with '/'"),
            ("a//b", "empty segment"),
            ("a/../b", "\"..\" segment"),
            ("..", "\"..\" segment"),
            ("./a", "\".\" segment"),
            ("a/b#1", "'#'"),
            ("a\nb", "'\\n'"),
            ("a%2Fb", "'%'"),
            (".crc32c/x", "reserved"),
        ];
        for (key, needle) in cases {
            let err = RemotePath::new(key).unwrap_err();
            assert_eq!(err.path, key);
            let msg = err.to_string();
            assert!(msg.contains(needle), "{key:?}: {msg}");
            assert!(
                msg.contains(&format!("{key:?}")),
                "message names the key: {msg}"
            );
        }
        let long = "a".repeat(MAX_PATH_LEN + 1);
        assert!(RemotePath::new(&long).unwrap_err().reason.contains("limit"));
        assert!(RemotePath::new(&"a".repeat(MAX_PATH_LEN)).is_ok());
    }

    #[test]
    fn join_parent_file_name() {
        let base = p("tenants/t1");
        let joined = base.join("timelines/tl").unwrap();
        assert_eq!(joined.as_str(), "tenants/t1/timelines/tl");
        assert_eq!(joined.file_name(), "tl");
        assert_eq!(joined.parent().unwrap().as_str(), "tenants/t1/timelines");
        assert_eq!(p("top").parent(), None);
        assert_eq!(p("top").file_name(), "top");
        assert_eq!(
            joined.segments().collect::<Vec<_>>(),
            ["tenants", "t1", "timelines", "tl"]
        );
        for bad in ["", "/x", "../x", "x/", "a//b"] {
            let err = base.join(bad).unwrap_err();
            assert!(err.path.starts_with("tenants/t1/"), "{err}");
        }
    }

    #[test]
    fn prefixes_are_whole_segments() {
        let key = p("a/bc/d");
        assert!(key.starts_with(&p("a")));
        assert!(key.starts_with(&p("a/bc")));
        assert!(key.starts_with(&p("a/bc/d")));
        assert!(!key.starts_with(&p("a/b")));
        assert!(!key.starts_with(&p("a/bc/d/e")));
        assert_eq!(key.strip_prefix(&p("a")), Some("bc/d"));
        assert_eq!(key.strip_prefix(&p("a/b")), None);
        assert_eq!(key.strip_prefix(&p("a/bc/d")), None);
    }

    #[test]
    fn serde_validates() {
        let key: RemotePath = serde_json::from_str("\"a/b\"").unwrap();
        assert_eq!(key, p("a/b"));
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"a/b\"");
        let err = serde_json::from_str::<RemotePath>("\"a/../b\"").unwrap_err();
        assert!(err.to_string().contains("a/../b"), "{err}");
        assert_eq!("x/y".parse::<RemotePath>().unwrap(), p("x/y"));
    }
}
