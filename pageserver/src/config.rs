//! The page server's configuration: `WORKDIR/pageserver.toml`, overridden by
//! `-c key=value` arguments, parsed into typed structs that refuse unknown
//! keys and contradictory settings at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pageserver_api::tenant_config::TenantConfig;
use serde::{Deserialize, Serialize};
use utils::id::{TenantId, TimelineId};
use utils::logging::LogFormat;

/// Name of the configuration file inside the work directory.
pub const CONFIG_FILE_NAME: &str = "pageserver.toml";
/// Name of the lock file inside the work directory.
pub const LOCK_FILE_NAME: &str = "pageserver.pid";
/// Directory of tenants inside the work directory.
pub const TENANTS_DIR: &str = "tenants";
/// Directory of timelines inside a tenant directory.
pub const TIMELINES_DIR: &str = "timelines";
/// A tenant's configuration file inside its directory.
pub const TENANT_CONFIG_FILE: &str = "config";
/// A timeline's metadata file inside its directory.
pub const METADATA_FILE: &str = "metadata";

/// How callers of an interface prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthType {
    /// Everyone is allowed everything: only for trusted networks (the
    /// default on loopback addresses only, see `auth_type_for`).
    Trust,
    /// A JWT signed by a key in `auth_validation_public_key_path`.
    #[serde(rename = "JWT")]
    Jwt,
}

/// Settings as written in `pageserver.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PageServerConfigFile {
    /// This node's id, unique in the cluster.
    pub id: u64,
    /// Address of the HTTP API.
    #[serde(default = "defaults::listen_http_addr")]
    pub listen_http_addr: String,
    /// Address of the libpq page service.
    #[serde(default = "defaults::listen_pg_addr")]
    pub listen_pg_addr: String,
    /// Authentication of the HTTP API; unset, see [`auth_type_for`].
    #[serde(default)]
    pub http_auth_type: Option<AuthType>,
    /// Authentication of the page service; unset, see [`auth_type_for`].
    #[serde(default)]
    pub pg_auth_type: Option<AuthType>,
    /// Ed25519 public key (PEM file, or directory of them) that validates JWTs;
    /// relative paths are relative to the work directory.
    #[serde(default)]
    pub auth_validation_public_key_path: Option<PathBuf>,
    /// Largest HTTP request body accepted; larger ones get 413.
    #[serde(default = "defaults::max_request_body_bytes")]
    pub max_request_body_bytes: u64,
    /// Log line format: "plain" or "json".
    #[serde(default)]
    pub log_format: LogFormat,
    /// Pause between runs of the node housekeeping loop.
    #[serde(default = "defaults::housekeeping_period", with = "humantime_serde")]
    pub housekeeping_period: Duration,
    /// A background loop whose heartbeat is older than this makes
    /// `/liveness` answer 503.
    #[serde(default = "defaults::heartbeat_limit", with = "humantime_serde")]
    pub liveness_heartbeat_limit: Duration,
    /// Longest wait for tasks to finish on shutdown before exiting anyway.
    #[serde(default = "defaults::shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// A page service connection that sends nothing for this long is closed
    /// (while no request of it is being processed).
    #[serde(
        default = "defaults::page_service_idle_timeout",
        with = "humantime_serde"
    )]
    pub page_service_idle_timeout: Duration,
    /// Longest wait of a page service request for its LSN to be ingested;
    /// then the request gets an error.
    #[serde(default = "defaults::wait_lsn_timeout", with = "humantime_serde")]
    pub wait_lsn_timeout: Duration,
    /// Requests of one `pagestream_v2` connection processed at once; more
    /// are left unread until earlier ones are answered.
    #[serde(default = "defaults::page_service_pipeline_depth")]
    pub page_service_pipeline_depth: usize,
    /// PostgreSQL 15 installation whose `bin/` holds `initdb` and
    /// `pg_basebackup`.
    #[serde(default = "defaults::pg_distrib_dir")]
    pub pg_distrib_dir: PathBuf,
    /// Defaults for every tenant's settings; tenants override them.
    #[serde(default)]
    pub tenant_config: TenantConfig,
    /// Object storage, the durable home of every timeline (DESIGN.md
    /// section 4). Default: a local directory `WORKDIR/remote_storage`.
    #[serde(default)]
    pub remote_storage: Option<remote_storage::RemoteStorageConfig>,
    /// When the work directory's file system is fuller than this percentage,
    /// resident layer files are evicted, least recently read first (they
    /// stay in remote storage). Off when unset.
    #[serde(default)]
    pub max_disk_usage_pct: Option<u8>,
    /// How often an attached tenant uploads its heatmap (the layers it
    /// keeps resident) for secondary locations; "0s" turns it off.
    #[serde(default = "defaults::heatmap_upload_period", with = "humantime_serde")]
    pub heatmap_upload_period: Duration,
    /// How often a secondary location downloads the heatmap and the layers
    /// it names.
    #[serde(
        default = "defaults::secondary_download_interval",
        with = "humantime_serde"
    )]
    pub secondary_download_interval: Duration,
    /// Test builds: faults injected into object storage from start-up (as
    /// `PUT /v1/remote_storage/faults` sets them later), e.g.
    /// `{ unreachable_for_ms = 8000 }`.
    #[cfg(feature = "testing")]
    #[serde(default)]
    pub remote_storage_faults: Option<remote_storage::fault::FaultConfig>,
}

mod defaults {
    use std::time::Duration;
    pub fn listen_http_addr() -> String {
        "127.0.0.1:9898".to_string()
    }
    pub fn listen_pg_addr() -> String {
        "127.0.0.1:64000".to_string()
    }
    pub fn max_request_body_bytes() -> u64 {
        1024 * 1024
    }
    pub fn housekeeping_period() -> Duration {
        Duration::from_secs(10)
    }
    pub fn heartbeat_limit() -> Duration {
        Duration::from_secs(120)
    }
    pub fn pg_distrib_dir() -> std::path::PathBuf {
        "/usr/lib/postgresql/15".into()
    }
    pub fn shutdown_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn page_service_idle_timeout() -> Duration {
        Duration::from_secs(600)
    }
    pub fn wait_lsn_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn page_service_pipeline_depth() -> usize {
        32
    }
    pub fn heatmap_upload_period() -> Duration {
        Duration::from_secs(60)
    }
    pub fn secondary_download_interval() -> Duration {
        Duration::from_secs(60)
    }
}

/// Largest accepted `page_service_pipeline_depth`.
pub const MAX_PIPELINE_DEPTH: usize = 1024;

/// The validated configuration the process runs with.
#[derive(Debug, Clone)]
pub struct PageServerConf {
    /// The work directory (absolute).
    pub workdir: PathBuf,
    /// Node id.
    pub id: u64,
    /// Parsed HTTP address.
    pub listen_http_addr: SocketAddr,
    /// Parsed page service address.
    pub listen_pg_addr: SocketAddr,
    /// HTTP authentication.
    pub http_auth_type: AuthType,
    /// Page service authentication.
    pub pg_auth_type: AuthType,
    /// Absolute path of the JWT public key(s), when any interface uses JWT.
    pub auth_validation_public_key_path: Option<PathBuf>,
    /// HTTP body cap.
    pub max_request_body_bytes: u64,
    /// Log format.
    pub log_format: LogFormat,
    /// Housekeeping loop period.
    pub housekeeping_period: Duration,
    /// Liveness heartbeat limit.
    pub liveness_heartbeat_limit: Duration,
    /// Shutdown wait limit.
    pub shutdown_timeout: Duration,
    /// Idle limit of page service connections.
    pub page_service_idle_timeout: Duration,
    /// Wait limit of page service requests for their LSN.
    pub wait_lsn_timeout: Duration,
    /// Requests processed at once per `pagestream_v2` connection.
    pub page_service_pipeline_depth: usize,
    /// PostgreSQL 15 installation (absolute).
    pub pg_distrib_dir: PathBuf,
    /// Node defaults for tenant settings, complete (every field set).
    pub default_tenant_config: TenantConfig,
    /// Object storage.
    pub remote_storage: remote_storage::RemoteStorageConfig,
    /// Disk usage (percent) above which layers are evicted.
    pub max_disk_usage_pct: Option<u8>,
    /// Period of heatmap uploads (zero: off).
    pub heatmap_upload_period: Duration,
    /// Period of secondary locations' download passes.
    pub secondary_download_interval: Duration,
    /// Faults injected into object storage from start-up (test builds).
    #[cfg(feature = "testing")]
    pub remote_storage_faults: Option<remote_storage::fault::FaultConfig>,
}

/// Directory of the default local remote storage inside the work directory.
pub const DEFAULT_REMOTE_STORAGE_DIR: &str = "remote_storage";
/// Directory of the persisted deletion queue inside the work directory.
pub const DELETION_QUEUE_DIR: &str = "deletion";

/// The authentication of the interface listening on `addr`, given as
/// `configured` under `key`. Unset, it is [`AuthType::Trust`] on a loopback
/// address, where only this machine's users can connect, and an error on any
/// other: the default denies, and serving a network without authentication
/// has to be asked for by name.
fn auth_type_for(
    key: &str,
    configured: Option<AuthType>,
    addr_key: &str,
    addr: SocketAddr,
) -> anyhow::Result<AuthType> {
    match configured {
        Some(auth) => Ok(auth),
        None if addr.ip().is_loopback() => Ok(AuthType::Trust),
        None => anyhow::bail!(
            "{addr_key} = \"{addr}\" is not a loopback address and {key} is not set: set {key} = \"JWT\" (with auth_validation_public_key_path), or {key} = \"Trust\" to serve that network without authentication"
        ),
    }
}

/// The text `pageserver --init` writes: every setting with its default and a
/// comment, so operators see what they can change.
pub fn default_config_text(id: u64) -> String {
    let t = TenantConfig::builtin_defaults();
    let dur = |d: Option<Duration>| humantime::format_duration(d.unwrap_or_default()).to_string();
    format!(
        r#"# Page server configuration. Every key is optional except `id`;
# unknown keys are an error. Override any key on the command line with
# `-c key=value`.

# This node's id, unique in the cluster.
id = {id}

# HTTP API (control plane, health, metrics).
listen_http_addr = "127.0.0.1:9898"
# libpq page service (compute nodes).
listen_pg_addr = "127.0.0.1:64000"

# "Trust" (no authentication) or "JWT" (EdDSA-signed tokens), per interface.
# Unset, an interface on a loopback address trusts its callers, and the page
# server refuses to start with an interface on any other address: serving a
# network without authentication must be chosen by setting "Trust".
# http_auth_type = "JWT"
# pg_auth_type = "JWT"
# Ed25519 public key in PEM form, or a directory of them; needed for JWT.
# auth_validation_public_key_path = "auth_public_key.pem"

# Largest accepted HTTP request body, in bytes.
max_request_body_bytes = 1048576
# "plain" or "json".
log_format = "plain"
# Node housekeeping (disk check, state metrics) period, and the heartbeat age
# after which /liveness reports 503.
housekeeping_period = "10s"
liveness_heartbeat_limit = "2m"
# How long shutdown waits for tasks before exiting anyway.
shutdown_timeout = "30s"
# Page service: close connections idle this long; a request waits at most
# wait_lsn_timeout for its LSN to arrive; pagestream_v2 requests processed at
# once per connection (1 to 1024).
page_service_idle_timeout = "10m"
wait_lsn_timeout = "1m"
page_service_pipeline_depth = 32
# PostgreSQL 15 installation: bin/initdb bootstraps new timelines.
pg_distrib_dir = "/usr/lib/postgresql/15"

# Object storage, the durable home of every timeline. Default: the local
# directory WORKDIR/remote_storage. For S3 or an S3-compatible server:
# remote_storage = {{ backend = {{ kind = "aws_s3", bucket_name = "layers", bucket_region = "eu-west-1", endpoint = "http://127.0.0.1:5000", allow_http = true }} }}
# Evict resident layer files, least recently read first, above this disk usage (percent).
# max_disk_usage_pct = 90
# Secondary locations: an attached tenant uploads its heatmap (the layers it
# keeps resident) this often ("0s": never); a secondary location downloads
# the heatmap and those layers this often.
heatmap_upload_period = "1m"
secondary_download_interval = "1m"

# Defaults for every tenant; a tenant may override each of them.
[tenant_config]
checkpoint_distance = {checkpoint_distance}
checkpoint_timeout = "{checkpoint_timeout}"
compaction_target_size = {compaction_target_size}
compaction_period = "{compaction_period}"
compaction_threshold = {compaction_threshold}
gc_horizon = {gc_horizon}
gc_period = "{gc_period}"
image_creation_threshold = {image_creation_threshold}
pitr_interval = "{pitr_interval}"
"#,
        checkpoint_distance = t.checkpoint_distance.unwrap_or_default(),
        checkpoint_timeout = dur(t.checkpoint_timeout),
        compaction_target_size = t.compaction_target_size.unwrap_or_default(),
        compaction_period = dur(t.compaction_period),
        compaction_threshold = t.compaction_threshold.unwrap_or_default(),
        gc_horizon = t.gc_horizon.unwrap_or_default(),
        gc_period = dur(t.gc_period),
        image_creation_threshold = t.image_creation_threshold.unwrap_or_default(),
        pitr_interval = dur(t.pitr_interval),
    )
}

/// Applies `key=value` overrides to the TOML text. `value` is read as a TOML
/// value (`5`, `"x"`, `true`, `{ a = 1 }`); text that is not valid TOML is
/// taken as a string. Dotted keys reach into tables (`tenant_config.gc_horizon=1`).
pub fn apply_overrides(text: &str, overrides: &[String]) -> anyhow::Result<String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| anyhow::anyhow!("configuration is not valid TOML: {e}"))?;
    for item in overrides {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("override {item:?} is not of the form key=value"))?;
        let key = key.trim();
        if key.is_empty() || key.split('.').any(|k| k.trim().is_empty()) {
            anyhow::bail!("override {item:?} has an empty key");
        }
        let value: toml_edit::Value = match value.trim().parse::<toml_edit::Value>() {
            Ok(v) => v,
            Err(_) => toml_edit::Value::from(value.trim()),
        };
        let parts: Vec<&str> = key.split('.').map(str::trim).collect();
        let (last, tables) = parts.split_last().expect("split yields at least one part");
        let mut table = doc.as_table_mut();
        for part in tables {
            let entry = table
                .entry(part)
                .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
            table = entry
                .as_table_mut()
                .ok_or_else(|| anyhow::anyhow!("override {item:?}: {part:?} is not a table"))?;
        }
        table.insert(last, toml_edit::Item::Value(value));
    }
    Ok(doc.to_string())
}

impl PageServerConf {
    /// Reads and validates the configuration of `workdir`, with overrides.
    pub fn load(workdir: &Path, overrides: &[String]) -> anyhow::Result<Self> {
        let path = workdir.join(CONFIG_FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {}: {e}; run `pageserver --workdir {} --init` to create it",
                path.display(),
                workdir.display()
            )
        })?;
        Self::parse(workdir, &text, overrides)
            .map_err(|e| anyhow::anyhow!("invalid configuration {}: {e}", path.display()))
    }

    /// Parses and validates configuration text for `workdir`.
    pub fn parse(workdir: &Path, text: &str, overrides: &[String]) -> anyhow::Result<Self> {
        let text = apply_overrides(text, overrides)?;
        let file: PageServerConfigFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
        Self::from_file(workdir, file)
    }

    fn from_file(workdir: &Path, f: PageServerConfigFile) -> anyhow::Result<Self> {
        let addr = |key: &str, v: &str| -> anyhow::Result<SocketAddr> {
            v.parse().map_err(|e| {
                anyhow::anyhow!(
                    "{key} = {v:?} is not an IP address with a port (like 127.0.0.1:9898): {e}"
                )
            })
        };
        let listen_http_addr = addr("listen_http_addr", &f.listen_http_addr)?;
        let listen_pg_addr = addr("listen_pg_addr", &f.listen_pg_addr)?;
        if listen_http_addr == listen_pg_addr && listen_http_addr.port() != 0 {
            anyhow::bail!("listen_http_addr and listen_pg_addr are both {listen_http_addr}");
        }
        let http_auth_type = auth_type_for(
            "http_auth_type",
            f.http_auth_type,
            "listen_http_addr",
            listen_http_addr,
        )?;
        let pg_auth_type = auth_type_for(
            "pg_auth_type",
            f.pg_auth_type,
            "listen_pg_addr",
            listen_pg_addr,
        )?;
        let needs_key = http_auth_type == AuthType::Jwt || pg_auth_type == AuthType::Jwt;
        let key_path = f.auth_validation_public_key_path.map(|p| workdir.join(p));
        if needs_key && key_path.is_none() {
            anyhow::bail!("http_auth_type or pg_auth_type is JWT, so auth_validation_public_key_path must be set");
        }
        if !f.pg_distrib_dir.is_dir() && !workdir.join(&f.pg_distrib_dir).is_dir() {
            anyhow::bail!(
                "pg_distrib_dir = {:?} is not a directory; install PostgreSQL 15 or point it at one",
                f.pg_distrib_dir
            );
        }
        if f.max_request_body_bytes == 0 {
            anyhow::bail!("max_request_body_bytes must be greater than 0");
        }
        if f.housekeeping_period.is_zero() {
            anyhow::bail!("housekeeping_period must be greater than 0");
        }
        if f.liveness_heartbeat_limit <= f.housekeeping_period {
            anyhow::bail!(
                "liveness_heartbeat_limit ({}) must be longer than housekeeping_period ({})",
                humantime::format_duration(f.liveness_heartbeat_limit),
                humantime::format_duration(f.housekeeping_period)
            );
        }
        if f.page_service_idle_timeout.is_zero() {
            anyhow::bail!("page_service_idle_timeout must be greater than 0");
        }
        if f.wait_lsn_timeout.is_zero() {
            anyhow::bail!("wait_lsn_timeout must be greater than 0");
        }
        if !(1..=MAX_PIPELINE_DEPTH).contains(&f.page_service_pipeline_depth) {
            anyhow::bail!(
                "page_service_pipeline_depth = {} is out of range: 1 to {MAX_PIPELINE_DEPTH}",
                f.page_service_pipeline_depth
            );
        }
        f.tenant_config
            .validate()
            .map_err(|e| anyhow::anyhow!("[tenant_config]: {e}"))?;
        if let Some(pct) = f.max_disk_usage_pct {
            if pct == 0 || pct > 100 {
                anyhow::bail!("max_disk_usage_pct must be 1 to 100, got {pct}");
            }
        }
        #[cfg(feature = "testing")]
        if let Some(faults) = &f.remote_storage_faults {
            faults
                .validate()
                .map_err(|e| anyhow::anyhow!("remote_storage_faults: {e}"))?;
        }
        if f.secondary_download_interval.is_zero() {
            anyhow::bail!("secondary_download_interval must be greater than 0");
        }
        let remote_storage = match f.remote_storage {
            Some(c) => c,
            None => remote_storage::RemoteStorageConfig::local_fs(
                workdir.join(DEFAULT_REMOTE_STORAGE_DIR),
            )
            .map_err(|e| anyhow::anyhow!("default remote storage: {e}"))?,
        };
        Ok(PageServerConf {
            workdir: workdir.to_path_buf(),
            id: f.id,
            listen_http_addr,
            listen_pg_addr,
            http_auth_type,
            pg_auth_type,
            auth_validation_public_key_path: key_path,
            max_request_body_bytes: f.max_request_body_bytes,
            log_format: f.log_format,
            housekeeping_period: f.housekeeping_period,
            liveness_heartbeat_limit: f.liveness_heartbeat_limit,
            shutdown_timeout: f.shutdown_timeout,
            page_service_idle_timeout: f.page_service_idle_timeout,
            wait_lsn_timeout: f.wait_lsn_timeout,
            page_service_pipeline_depth: f.page_service_pipeline_depth,
            pg_distrib_dir: workdir.join(&f.pg_distrib_dir),
            default_tenant_config: f
                .tenant_config
                .merged_over(&TenantConfig::builtin_defaults()),
            remote_storage,
            max_disk_usage_pct: f.max_disk_usage_pct,
            heatmap_upload_period: f.heatmap_upload_period,
            secondary_download_interval: f.secondary_download_interval,
            #[cfg(feature = "testing")]
            remote_storage_faults: f.remote_storage_faults,
        })
    }

    /// `WORKDIR/tenants`.
    pub fn tenants_path(&self) -> PathBuf {
        self.workdir.join(TENANTS_DIR)
    }

    /// `WORKDIR/tenants/TENANT`.
    pub fn tenant_path(&self, tenant_id: &TenantId) -> PathBuf {
        self.tenants_path().join(tenant_id.to_string())
    }

    /// `WORKDIR/tenants/TENANT/timelines`.
    pub fn timelines_path(&self, tenant_id: &TenantId) -> PathBuf {
        self.tenant_path(tenant_id).join(TIMELINES_DIR)
    }

    /// `WORKDIR/tenants/TENANT/timelines/TIMELINE`.
    pub fn timeline_path(&self, tenant_id: &TenantId, timeline_id: &TimelineId) -> PathBuf {
        self.timelines_path(tenant_id).join(timeline_id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, overrides: &[&str]) -> anyhow::Result<PageServerConf> {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        PageServerConf::parse(Path::new("/w"), text, &o)
    }

    #[test]
    fn default_text_parses_to_defaults() {
        let conf = parse(&default_config_text(7), &[]).unwrap();
        assert_eq!(conf.id, 7);
        assert_eq!(conf.listen_http_addr.to_string(), "127.0.0.1:9898");
        assert_eq!(conf.listen_pg_addr.to_string(), "127.0.0.1:64000");
        assert_eq!(conf.default_tenant_config, TenantConfig::builtin_defaults());
        assert_eq!(conf.page_service_idle_timeout, Duration::from_secs(600));
        assert_eq!(conf.wait_lsn_timeout, Duration::from_secs(60));
        assert_eq!(conf.page_service_pipeline_depth, 32);
        assert_eq!(conf.heatmap_upload_period, Duration::from_secs(60));
        assert_eq!(conf.secondary_download_interval, Duration::from_secs(60));
        assert_eq!(conf.http_auth_type, AuthType::Trust);
        assert_eq!(conf.pg_auth_type, AuthType::Trust);
        let conf = parse("id = 1", &[]).unwrap();
        assert_eq!(conf.wait_lsn_timeout, Duration::from_secs(60));
    }

    #[test]
    fn trust_beyond_loopback_must_be_chosen() {
        // Unset on loopback addresses: trust.
        for (http, pg) in [("127.0.0.1:1", "127.0.0.1:2"), ("[::1]:1", "127.0.0.2:2")] {
            let conf = parse(
                "id = 1",
                &[
                    &format!("listen_http_addr=\"{http}\""),
                    &format!("listen_pg_addr=\"{pg}\""),
                ],
            )
            .unwrap();
            assert_eq!(conf.http_auth_type, AuthType::Trust, "{http}");
            assert_eq!(conf.pg_auth_type, AuthType::Trust, "{pg}");
        }
        // Unset on any other address: refused, naming both keys.
        for (addr_key, addr, key) in [
            ("listen_http_addr", "0.0.0.0:9898", "http_auth_type"),
            ("listen_http_addr", "192.0.2.1:9898", "http_auth_type"),
            ("listen_pg_addr", "[::]:64000", "pg_auth_type"),
        ] {
            let e = parse("id = 1", &[&format!("{addr_key}=\"{addr}\"")])
                .unwrap_err()
                .to_string();
            assert!(e.contains(addr_key) && e.contains(key), "{addr}: {e}");
            // Chosen by name, either way.
            let conf = parse(
                "id = 1",
                &[
                    &format!("{addr_key}=\"{addr}\""),
                    &format!("{key}=\"Trust\""),
                ],
            )
            .unwrap();
            assert_eq!(
                (conf.http_auth_type, conf.pg_auth_type),
                (AuthType::Trust, AuthType::Trust)
            );
            let conf = parse(
                "id = 1",
                &[
                    &format!("{addr_key}=\"{addr}\""),
                    &format!("{key}=\"JWT\""),
                    "auth_validation_public_key_path=key.pem",
                ],
            )
            .unwrap();
            let chosen = if key == "http_auth_type" {
                conf.http_auth_type
            } else {
                conf.pg_auth_type
            };
            assert_eq!(chosen, AuthType::Jwt, "{addr}");
        }
    }

    #[test]
    fn page_service_settings_are_validated() {
        let conf = parse(
            "id = 1",
            &["wait_lsn_timeout=\"2s\"", "page_service_pipeline_depth=1"],
        )
        .unwrap();
        assert_eq!(conf.wait_lsn_timeout, Duration::from_secs(2));
        assert_eq!(conf.page_service_pipeline_depth, 1);
        for (o, key) in [
            ("wait_lsn_timeout=\"0s\"", "wait_lsn_timeout"),
            (
                "page_service_idle_timeout=\"0s\"",
                "page_service_idle_timeout",
            ),
            (
                "page_service_pipeline_depth=0",
                "page_service_pipeline_depth",
            ),
            (
                "page_service_pipeline_depth=5000",
                "page_service_pipeline_depth",
            ),
            ("wait_lsn_timeout=\"soon\"", "soon"),
            (
                "secondary_download_interval=\"0s\"",
                "secondary_download_interval",
            ),
        ] {
            let e = parse("id = 1", &[o]).unwrap_err().to_string();
            assert!(e.contains(key), "{o}: {e}");
        }
    }

    #[test]
    fn overrides_apply() {
        let conf = parse(
            "id = 1",
            &[
                "listen_http_addr=127.0.0.1:1234",
                "http_auth_type=\"JWT\"",
                "auth_validation_public_key_path=key.pem",
                "tenant_config.gc_horizon=5",
                "id=9",
            ],
        )
        .unwrap();
        assert_eq!(conf.id, 9);
        assert_eq!(conf.listen_http_addr.port(), 1234);
        assert_eq!(conf.http_auth_type, AuthType::Jwt);
        assert_eq!(
            conf.auth_validation_public_key_path,
            Some(PathBuf::from("/w/key.pem"))
        );
        assert_eq!(conf.default_tenant_config.gc_horizon, Some(5));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse("id = 1\nbogus_key = 3", &[]).unwrap_err().to_string();
        assert!(e.contains("bogus_key"), "{e}");
        let e = parse("id = 1\n[tenant_config]\nnope = 1", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let e = parse("", &[]).unwrap_err().to_string();
        assert!(e.contains("id"), "{e}");
        let e = parse("id = 1", &["listen_http_addr=nowhere"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_http_addr"), "{e}");
        let e = parse("id = 1", &["http_auth_type=\"JWT\""])
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth_validation_public_key_path"), "{e}");
        let e = parse("id = 1", &["tenant_config.compaction_threshold=1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("compaction_threshold"), "{e}");
        let e = parse("id = 1", &["noequals"]).unwrap_err().to_string();
        assert!(e.contains("key=value"), "{e}");
        let e = parse("id = 1", &["http_auth_type=\"Basic\""])
            .unwrap_err()
            .to_string();
        assert!(e.contains("Basic"), "{e}");
        let e = parse("id = [", &[]).unwrap_err().to_string();
        assert!(e.contains("TOML"), "{e}");
    }
}
