//! CRC32C checksums of whole objects: computed at upload, stored with the
//! object, verified at download.
//!
//! What is verified where:
//!
//! * **Every backend**: `upload` computes the CRC32C of the body and returns
//!   it in [`crate::UploadReceipt`]; the caller records it (the page server's
//!   `index_part` lists each layer's checksum) and can later ask
//!   [`crate::GenericRemoteStorage::download_verified`] to check the bytes
//!   against it. This is the end-to-end check, and it works for objects whose
//!   stored checksum is missing.
//! * **S3**: the CRC32C is also stored as user metadata
//!   (`x-amz-meta-crc32c`, 8 hex digits) in the same PUT, so it is atomic with
//!   the body and follows the object through `copy`. A plain `download` reads
//!   it from the GET response and checks the bytes. In transit, the PUT
//!   carries `x-amz-checksum-sha256` (object_store's checksum option) and a
//!   SigV4 signature over the payload's SHA-256, which AWS S3 verifies before
//!   storing the object. Test servers may not: moto (used by our tests)
//!   accepts both without checking them. object_store does not verify
//!   checksums of GET responses, which is why our CRC32C check exists.
//! * **Local filesystem**: `object_store`'s local backend has no object
//!   metadata, so the CRC32C goes to a side file `.crc32c/<key>` under the
//!   same root (keys may not start with `.crc32c`, and listings hide it). On
//!   upload the old side file is deleted first, then the object is written,
//!   then the side file: a crash in between leaves an object without a stored
//!   checksum (downloads are then unverified unless the caller passes one),
//!   never one with a wrong checksum.
//! * **Range reads** are never verified: a CRC32C covers the whole object.
//!   Callers that need verified ranges download the whole object once.

use object_store::{Attribute, AttributeValue, Attributes};

use crate::error::{ChecksumSource, RemoteStorageError};
use crate::path::{RemotePath, RESERVED_PREFIX};

/// User metadata key of the stored checksum (`x-amz-meta-crc32c` on S3).
pub(crate) const METADATA_KEY: &str = "crc32c";

/// Where a backend keeps the checksum of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumPlacement {
    /// In the object's user metadata, written atomically with the body (S3).
    ObjectMetadata,
    /// In a side file `.crc32c/<key>` next to the objects (local filesystem).
    SideFile,
}

/// CRC32C (Castagnoli) of `bytes`, the checksum this crate stores and checks.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// The text form stored: 8 lowercase hex digits.
pub(crate) fn encode(crc: u32) -> String {
    format!("{crc:08x}")
}

/// Parses the text form; `None` for anything that is not exactly 8 hex digits.
pub(crate) fn decode(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.len() != 8 {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

/// The attributes that store `crc` as object metadata.
pub(crate) fn metadata_attributes(crc: u32) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata(METADATA_KEY.into()),
        AttributeValue::from(encode(crc)),
    );
    attributes
}

/// The checksum stored in `attributes`, if any. A value that does not parse is
/// reported as a mismatch-worthy corruption by the caller.
pub(crate) fn from_attributes(attributes: &Attributes) -> Option<Result<u32, String>> {
    attributes
        .get(&Attribute::Metadata(METADATA_KEY.into()))
        .map(|value| decode(value).ok_or_else(|| value.to_string()))
}

/// The side file holding the checksum of `path` on the local filesystem.
pub(crate) fn side_file(path: &RemotePath) -> object_store::path::Path {
    object_store::path::Path::parse(format!("{RESERVED_PREFIX}/{}", path.as_str()))
        .expect("a validated RemotePath under the reserved prefix is a valid path")
}

/// True for keys of the storage's own bookkeeping, hidden from listings.
pub(crate) fn is_reserved(location: &object_store::path::Path) -> bool {
    location.as_ref() == RESERVED_PREFIX
        || location
            .as_ref()
            .strip_prefix(RESERVED_PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Checks the CRC32C `actual` of downloaded bytes against the stored checksum
/// and the caller's, naming `path` on a mismatch.
pub(crate) fn verify(
    path: &RemotePath,
    actual: u32,
    stored: Option<u32>,
    expected_by_caller: Option<u32>,
) -> Result<(), RemoteStorageError> {
    let checks = [
        (stored, ChecksumSource::Stored),
        (expected_by_caller, ChecksumSource::Caller),
    ];
    for (expected, source_of_expected) in checks {
        if let Some(expected) = expected {
            if expected != actual {
                return Err(RemoteStorageError::ChecksumMismatch {
                    path: path.to_string(),
                    expected,
                    actual,
                    source_of_expected,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn crc32c_is_castagnoli() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn text_form_round_trips() {
        for crc in [0, 1, 0xe306_9283, u32::MAX] {
            assert_eq!(decode(&encode(crc)), Some(crc));
        }
        assert_eq!(encode(1), "00000001");
        for bad in ["", "1", "zzzzzzzz", "123456789", "-0000001"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        let attrs = metadata_attributes(0xabcd);
        assert_eq!(from_attributes(&attrs), Some(Ok(0xabcd)));
        assert_eq!(from_attributes(&Attributes::new()), None);
    }

    #[test]
    fn side_files_are_reserved() {
        let key = RemotePath::new("tenants/t/layer").unwrap();
        let side = side_file(&key);
        assert_eq!(side.as_ref(), ".crc32c/tenants/t/layer");
        assert!(is_reserved(&side));
        assert!(is_reserved(&object_store::path::Path::from(".crc32c")));
        assert!(!is_reserved(&object_store::path::Path::from(".crc32cx/a")));
        assert!(!is_reserved(&key.to_object_path()));
    }

    #[test]
    fn verify_names_the_source() {
        let key = RemotePath::new("a").unwrap();
        verify(&key, 5, Some(5), Some(5)).unwrap();
        verify(&key, 5, None, None).unwrap();
        let e = verify(&key, 5, Some(6), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("stored with the object"), "{e}");
        let e = verify(&key, 5, Some(5), Some(7)).unwrap_err();
        assert!(e.to_string().contains("expected by the caller"), "{e}");
    }
}
