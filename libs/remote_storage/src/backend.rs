//! Building the `object_store` client of a configured backend.
//!
//! `object_store`'s own retries are switched off and its HTTP client has no
//! total timeout: [`crate::retry`] does both, the same way for every backend,
//! so that every attempt is counted and every wait can be cancelled.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::checksum::ChecksumPlacement;
use crate::config::{BackendConfig, ConfigError, RemoteStorageConfig, S3Config};
use crate::error::RemoteStorageError;

/// Longest wait for a TCP/TLS connection, within the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A ready client plus what the storage needs to know about it.
pub(crate) struct Backend {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) placement: ChecksumPlacement,
    /// For logs and `Debug`: `local_fs:/path` or `s3://bucket/prefix`.
    pub(crate) description: String,
}

/// Builds the client for `config` (creating the local directory when missing).
pub(crate) fn build(config: &RemoteStorageConfig) -> Result<Backend, RemoteStorageError> {
    config.validate()?;
    match &config.backend {
        BackendConfig::LocalFs { local_path } => {
            std::fs::create_dir_all(local_path).map_err(|e| {
                ConfigError(format!(
                    "cannot create local_path {}: {e}",
                    local_path.display()
                ))
            })?;
            let store = LocalFileSystem::new_with_prefix(local_path)
                .map_err(|e| {
                    ConfigError(format!(
                        "cannot use local_path {}: {e}",
                        local_path.display()
                    ))
                })?
                .with_automatic_cleanup(true)
                .with_fsync(true);
            Ok(Backend {
                store: Arc::new(store),
                placement: ChecksumPlacement::SideFile,
                description: format!("local_fs:{}", local_path.display()),
            })
        }
        BackendConfig::AwsS3(s3) => build_s3(config, s3),
    }
}

fn build_s3(config: &RemoteStorageConfig, s3: &S3Config) -> Result<Backend, RemoteStorageError> {
    let client_options = ClientOptions::new()
        .with_allow_http(s3.allow_http)
        .with_connect_timeout(config.timeout.min(MAX_CONNECT_TIMEOUT))
        // The per-attempt timeout of crate::retry bounds the whole request,
        // body included; a second, competing timeout here would report
        // timeouts as transport errors.
        .with_timeout_disabled();
    let retry = RetryConfig {
        max_retries: 0,
        retry_timeout: config.timeout,
        ..RetryConfig::default()
    };
    // `from_env` picks up AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    // AWS_SESSION_TOKEN and the rest of the standard AWS environment; the
    // explicit settings below take precedence.
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&s3.bucket_name)
        .with_region(&s3.bucket_region)
        .with_client_options(client_options)
        .with_retry(retry)
        .with_checksum_algorithm(Checksum::SHA256);
    if let Some(endpoint) = &s3.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    if let (Some(key_id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
        builder = builder
            .with_access_key_id(key_id)
            .with_secret_access_key(secret);
    }
    let store = builder.build().map_err(|e| {
        ConfigError(format!(
            "cannot build the S3 client for bucket {}: {e}",
            s3.bucket_name
        ))
    })?;
    let description = format!(
        "s3://{}/{}",
        s3.bucket_name,
        s3.prefix_in_bucket.as_deref().unwrap_or("")
    );
    let store: Arc<dyn ObjectStore> = match &s3.prefix_in_bucket {
        Some(prefix) => Arc::new(PrefixStore::new(store, prefix.as_str())),
        None => Arc::new(store),
    };
    Ok(Backend {
        store,
        placement: ChecksumPlacement::ObjectMetadata,
        description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_fs_creates_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("a/b");
        let backend = build(&RemoteStorageConfig::local_fs(&root).unwrap()).unwrap();
        assert!(root.is_dir());
        assert_eq!(backend.placement, ChecksumPlacement::SideFile);
        assert!(backend.description.contains("a/b"));
    }

    #[test]
    fn local_fs_reports_an_unusable_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = build(&RemoteStorageConfig::local_fs(file.join("sub")).unwrap())
            .err()
            .expect("a path under a file cannot be a directory");
        assert!(
            err.to_string().contains("cannot create local_path"),
            "{err}"
        );
    }

    #[test]
    fn s3_builds_without_network() {
        let config = RemoteStorageConfig::new(BackendConfig::AwsS3(S3Config {
            bucket_name: "layers".into(),
            bucket_region: "us-east-1".into(),
            prefix_in_bucket: Some("ps".into()),
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            allow_http: true,
        }))
        .unwrap();
        let backend = build(&config).unwrap();
        assert_eq!(backend.placement, ChecksumPlacement::ObjectMetadata);
        assert_eq!(backend.description, "s3://layers/ps");
    }
}
