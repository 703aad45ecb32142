//! Configuration: which backend, and how patient to be with it.
//!
//! Parsed with serde (`deny_unknown_fields`) and validated while parsing, so a
//! config file with a typo or a contradiction is rejected at load time with a
//! message naming the field. In TOML:
//!
//! ```toml
//! [remote_storage]
//! timeout = "30s"
//! max_retries = 5
//! backend = { kind = "local_fs", local_path = "/data/remote" }
//! # or
//! # backend = { kind = "aws_s3", bucket_name = "layers", bucket_region = "eu-west-1",
//! #             prefix_in_bucket = "pageserver", endpoint = "http://127.0.0.1:5000",
//! #             allow_http = true }
//! ```

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::path::RemotePath;

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default number of retries after the first attempt of a transient failure.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// Default first backoff delay.
pub const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_millis(100);
/// Default cap on one backoff delay.
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(10);
/// Default number of requests in flight at once per storage.
pub const DEFAULT_CONCURRENCY_LIMIT: usize = 100;
/// Largest accepted `max_retries`.
pub const MAX_RETRIES_LIMIT: u32 = 100;

/// The remote storage a page server writes layers and indexes to.
///
/// Construct it by parsing (serde) or with [`RemoteStorageConfig::local_fs`] /
/// [`RemoteStorageConfig::new`]; either way it has passed [`Self::validate`].
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig", into = "RawConfig")]
pub struct RemoteStorageConfig {
    /// Where objects live.
    pub backend: BackendConfig,
    /// Limit on one request (one attempt); a slower attempt fails with a
    /// timeout and is retried.
    pub timeout: Duration,
    /// Retries after the first attempt, for transient failures only.
    pub max_retries: u32,
    /// First backoff delay; each retry doubles it (with jitter), up to
    /// `retry_max_delay`.
    pub retry_base_delay: Duration,
    /// Cap on one backoff delay.
    pub retry_max_delay: Duration,
    /// Requests in flight at once; further calls wait (cancellably).
    pub concurrency_limit: NonZeroUsize,
}

/// The backend and its location.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// Objects are files under a local directory (created when missing). The
    /// embedded default: a single node needs no object store server.
    LocalFs {
        /// Root directory of the objects.
        local_path: PathBuf,
    },
    /// An S3 bucket, on AWS or on an S3-compatible server (`endpoint`).
    AwsS3(S3Config),
}

/// Where and how to reach an S3 bucket.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name (3-63 characters: lowercase letters, digits, `.` and `-`).
    pub bucket_name: String,
    /// Region of the bucket, e.g. `eu-west-1`.
    pub bucket_region: String,
    /// Key prefix inside the bucket under which all our objects go, so one
    /// bucket can hold several deployments. Must be a valid [`RemotePath`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_in_bucket: Option<String>,
    /// URL of an S3-compatible server (`http://127.0.0.1:9000`); AWS when unset.
    /// Path-style requests are used with a custom endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Access key id; taken from `AWS_ACCESS_KEY_ID` (and the rest of the
    /// standard AWS environment) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Secret access key; taken from `AWS_SECRET_ACCESS_KEY` when unset. Given
    /// together with `access_key_id` or not at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// Allow plain `http://` endpoints (test servers on loopback). Must be set
    /// when `endpoint` is `http://`, and only then.
    #[serde(default)]
    pub allow_http: bool,
}

/// The configuration was rejected; the message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid remote storage config: {0}")]
pub struct ConfigError(pub String);

/// The shape on disk; [`RemoteStorageConfig`] is this after validation.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    backend: BackendConfig,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "default_max_retries")]
    max_retries: u32,
    #[serde(default = "default_retry_base_delay", with = "humantime_serde")]
    retry_base_delay: Duration,
    #[serde(default = "default_retry_max_delay", with = "humantime_serde")]
    retry_max_delay: Duration,
    #[serde(default = "default_concurrency_limit")]
    concurrency_limit: NonZeroUsize,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}
fn default_retry_base_delay() -> Duration {
    DEFAULT_RETRY_BASE_DELAY
}
fn default_retry_max_delay() -> Duration {
    DEFAULT_RETRY_MAX_DELAY
}
fn default_concurrency_limit() -> NonZeroUsize {
    NonZeroUsize::new(DEFAULT_CONCURRENCY_LIMIT).expect("non-zero constant")
}

impl TryFrom<RawConfig> for RemoteStorageConfig {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let config = RemoteStorageConfig {
            backend: raw.backend,
            timeout: raw.timeout,
            max_retries: raw.max_retries,
            retry_base_delay: raw.retry_base_delay,
            retry_max_delay: raw.retry_max_delay,
            concurrency_limit: raw.concurrency_limit,
        };
        config.validate()?;
        Ok(config)
    }
}

impl From<RemoteStorageConfig> for RawConfig {
    fn from(c: RemoteStorageConfig) -> Self {
        RawConfig {
            backend: c.backend,
            timeout: c.timeout,
            max_retries: c.max_retries,
            retry_base_delay: c.retry_base_delay,
            retry_max_delay: c.retry_max_delay,
            concurrency_limit: c.concurrency_limit,
        }
    }
}

impl RemoteStorageConfig {
    /// A validated config for `backend` with the default knobs.
    pub fn new(backend: BackendConfig) -> Result<Self, ConfigError> {
        let config = RemoteStorageConfig {
            backend,
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_base_delay: DEFAULT_RETRY_BASE_DELAY,
            retry_max_delay: DEFAULT_RETRY_MAX_DELAY,
            concurrency_limit: default_concurrency_limit(),
        };
        config.validate()?;
        Ok(config)
    }

    /// The embedded default: objects under `local_path`, default knobs.
    pub fn local_fs(local_path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        Self::new(BackendConfig::LocalFs {
            local_path: local_path.into(),
        })
    }

    /// Checks every field and the contradictions between them. Parsing calls
    /// this; call it again after changing fields by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |msg: String| Err(ConfigError(msg));
        if self.timeout.is_zero() {
            return err("timeout must be greater than zero".into());
        }
        if self.max_retries > MAX_RETRIES_LIMIT {
            return err(format!(
                "max_retries is {}, the limit is {MAX_RETRIES_LIMIT}",
                self.max_retries
            ));
        }
        if self.retry_base_delay.is_zero() {
            return err("retry_base_delay must be greater than zero".into());
        }
        if self.retry_base_delay > self.retry_max_delay {
            return err(format!(
                "retry_base_delay ({}) is larger than retry_max_delay ({}): raise retry_max_delay \
                 or lower retry_base_delay",
                humantime::format_duration(self.retry_base_delay),
                humantime::format_duration(self.retry_max_delay)
            ));
        }
        match &self.backend {
            BackendConfig::LocalFs { local_path } => {
                if local_path.as_os_str().is_empty() {
                    return err("backend.local_path is empty".into());
                }
                Ok(())
            }
            BackendConfig::AwsS3(s3) => s3.validate(),
        }
    }
}

impl S3Config {
    fn validate(&self) -> Result<(), ConfigError> {
        let err = |msg: String| Err(ConfigError(msg));
        let name = &self.bucket_name;
        let name_ok = (3..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
            && !name.starts_with(['.', '-'])
            && !name.ends_with(['.', '-']);
        if !name_ok {
            return err(format!(
                "backend.bucket_name {name:?} is not a valid bucket name (3-63 characters: \
                 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"
            ));
        }
        if self.bucket_region.trim().is_empty() {
            return err("backend.bucket_region is empty (e.g. \"eu-west-1\")".into());
        }
        if let Some(prefix) = &self.prefix_in_bucket {
            if let Err(e) = RemotePath::new(prefix) {
                return err(format!("backend.prefix_in_bucket: {e}"));
            }
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) => {
                return err(
                    "backend.access_key_id is set but secret_access_key is not: give both, or \
                     neither to use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
                        .into(),
                )
            }
            (None, Some(_)) => {
                return err(
                    "backend.secret_access_key is set but access_key_id is not: give both, or \
                     neither to use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
                        .into(),
                )
            }
            _ => {}
        }
        match &self.endpoint {
            None if self.allow_http => err(
                "backend.allow_http is set without an endpoint: AWS is always reached over \
                 https; allow_http is for an http:// endpoint"
                    .into(),
            ),
            None => Ok(()),
            Some(endpoint) => {
                let is_http = endpoint.starts_with("http://");
                let is_https = endpoint.starts_with("https://");
                let host = endpoint
                    .split_once("://")
                    .map_or("", |(_, rest)| rest.trim_end_matches('/'));
                if !(is_http || is_https) || host.is_empty() {
                    return err(format!(
                        "backend.endpoint {endpoint:?} is not an http:// or https:// URL"
                    ));
                }
                if is_http && !self.allow_http {
                    return err(format!(
                        "backend.endpoint {endpoint:?} is plain http but allow_http is false: \
                         set allow_http = true (test servers only) or use https"
                    ));
                }
                if is_https && self.allow_http {
                    return err(format!(
                        "backend.allow_http is set but endpoint {endpoint:?} is https: drop \
                         allow_http"
                    ));
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for RemoteStorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStorageConfig")
            .field("backend", &self.backend)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .field("concurrency_limit", &self.concurrency_limit)
            .finish()
    }
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendConfig::LocalFs { local_path } => f
                .debug_struct("LocalFs")
                .field("local_path", local_path)
                .finish(),
            BackendConfig::AwsS3(s3) => s3.fmt(f),
        }
    }
}

/// Never prints the secret access key.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsS3")
            .field("bucket_name", &self.bucket_name)
            .field("bucket_region", &self.bucket_region)
            .field("prefix_in_bucket", &self.prefix_in_bucket)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RemoteStorageConfig, String> {
        toml::from_str::<RemoteStorageConfig>(s).map_err(|e| e.to_string())
    }

    const S3: &str = r#"
        timeout = "5s"
        max_retries = 3
        retry_base_delay = "10ms"
        retry_max_delay = "1s"
        concurrency_limit = 8
        [backend]
        kind = "aws_s3"
        bucket_name = "layers"
        bucket_region = "us-east-1"
        prefix_in_bucket = "ps/1"
        endpoint = "http://127.0.0.1:5000"
        access_key_id = "AK"
        secret_access_key = "SECRET"
        allow_http = true
    "#;

    #[test]
    fn parses_local_fs_with_defaults() {
        let c = parse("backend = { kind = \"local_fs\", local_path = \"/tmp/x\" }").unwrap();
        assert_eq!(
            c.backend,
            BackendConfig::LocalFs {
                local_path: "/tmp/x".into()
            }
        );
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.max_retries, DEFAULT_MAX_RETRIES);
        assert_eq!(c.concurrency_limit.get(), DEFAULT_CONCURRENCY_LIMIT);
        assert_eq!(c, RemoteStorageConfig::local_fs("/tmp/x").unwrap());
    }

    #[test]
    fn parses_s3_and_round_trips() {
        let c = parse(S3).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.retry_base_delay, Duration::from_millis(10));
        assert_eq!(c.concurrency_limit.get(), 8);
        let BackendConfig::AwsS3(s3) = &c.backend else {
            panic!("not s3: {c:?}")
        };
        assert_eq!(s3.prefix_in_bucket.as_deref(), Some("ps/1"));
        assert!(s3.allow_http);
        let debug = format!("{c:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        let json = serde_json::to_string(&c).unwrap();
        let back: RemoteStorageConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn rejects_unknown_fields() {
        let e = parse("backend = { kind = \"local_fs\", local_path = \"/x\", bucket = 1 }")
            .unwrap_err();
        assert!(e.contains("bucket"), "{e}");
        let e = parse("tiemout = \"1s\"\nbackend = { kind = \"local_fs\", local_path = \"/x\" }")
            .unwrap_err();
        assert!(e.contains("tiemout"), "{e}");
        let e = parse("backend = { kind = \"gcs\" }").unwrap_err();
        assert!(e.contains("gcs"), "{e}");
    }

    #[test]
    fn rejects_contradictions() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "allow_http = true",
                "allow_http = false",
                "allow_http is false",
            ),
            (
                "endpoint = \"http://127.0.0.1:5000\"",
                "endpoint = \"https://s3.example\"",
                "drop allow_http",
            ),
            (
                "endpoint = \"http://127.0.0.1:5000\"",
                "endpoint = \"ftp://x\"",
                "not an http",
            ),
            (
                "secret_access_key = \"SECRET\"",
                "",
                "secret_access_key is not",
            ),
            ("access_key_id = \"AK\"", "", "access_key_id is not"),
            (
                "bucket_name = \"layers\"",
                "bucket_name = \"Layers\"",
                "bucket_name",
            ),
            (
                "bucket_name = \"layers\"",
                "bucket_name = \"ab\"",
                "bucket_name",
            ),
            (
                "bucket_region = \"us-east-1\"",
                "bucket_region = \" \"",
                "bucket_region",
            ),
            (
                "prefix_in_bucket = \"ps/1\"",
                "prefix_in_bucket = \"/ps\"",
                "prefix_in_bucket",
            ),
            ("timeout = \"5s\"", "timeout = \"0s\"", "timeout"),
            ("max_retries = 3", "max_retries = 1000", "max_retries"),
            (
                "retry_base_delay = \"10ms\"",
                "retry_base_delay = \"2s\"",
                "larger than",
            ),
            (
                "concurrency_limit = 8",
                "concurrency_limit = 0",
                "concurrency_limit",
            ),
        ];
        for (from, to, needle) in cases {
            assert!(S3.contains(from), "{from}");
            let e = parse(&S3.replace(from, to)).unwrap_err();
            assert!(e.contains(needle), "{from} -> {to}: {e}");
        }
        // allow_http without an endpoint is meaningless for AWS.
        let no_endpoint = S3.replace("endpoint = \"http://127.0.0.1:5000\"", "");
        let e = parse(&no_endpoint).unwrap_err();
        assert!(e.contains("without an endpoint"), "{e}");
        let aws = no_endpoint.replace("allow_http = true", "");
        assert!(parse(&aws).is_ok());
    }

    #[test]
    fn validate_catches_hand_edits() {
        let mut c = RemoteStorageConfig::local_fs("/x").unwrap();
        c.retry_max_delay = Duration::from_millis(1);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("retry_max_delay"));
        assert!(RemoteStorageConfig::local_fs("").is_err());
    }
}
