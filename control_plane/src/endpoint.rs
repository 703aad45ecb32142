//! Compute endpoints: a stock PostgreSQL 15 started on a base backup of a
//! timeline (DESIGN.md sections 1 and 5).
//!
//! A read-write endpoint starts on the timeline's latest LSN and becomes
//! the timeline's WAL source, so its writes stream back into the branch;
//! stopping it waits until the page server has everything it wrote, so the
//! next start (from a fresh base backup) sees every committed row. A
//! read-only endpoint starts as a hot standby at a fixed past LSN, with no
//! WAL source. The data directory is rebuilt at every start: the page
//! server, not the compute, holds the data.
//!
//! State lives in `WORKDIR/endpoints/NAME/endpoint.toml`. When `cplane`
//! runs as root the data directory is in the system temporary directory
//! (PostgreSQL runs as the `postgres` OS user, who may not reach the work
//! directory).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pageserver_api::models::TimelineInfo;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utils::crashsafe;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;
use utils::pg_user::{hand_over, pg_command};

use crate::local_env::LocalEnv;
use crate::pageserver::PageServerNode;

const ENDPOINT_FILE: &str = "endpoint.toml";
const LOG_FILE: &str = "postgres.log";
/// How long a stop waits for the page server to ingest the compute's WAL.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// One compute endpoint, as stored in its `endpoint.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Its name (letters, digits, `-`, `_`).
    pub name: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The timeline it runs on.
    pub timeline_id: TimelineId,
    /// The page server holding the timeline.
    pub pageserver_id: u64,
    /// Port PostgreSQL listens on (127.0.0.1).
    pub port: u16,
    /// A past LSN for a read-only endpoint; `None` for read-write.
    pub lsn: Option<Lsn>,
    /// Database user `cplane` and the walreceiver connect as.
    pub pg_user: String,
    /// The data directory.
    pub pgdata: PathBuf,
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if !ok {
        bail!("endpoint name {name:?} must be 1-63 letters, digits, '-' or '_'");
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Directory holding endpoint `name`'s state.
fn endpoint_dir(env: &LocalEnv, name: &str) -> PathBuf {
    env.base_dir.join("endpoints").join(name)
}

impl Endpoint {
    /// Registers a new endpoint (nothing starts yet). The timeline must
    /// exist; a read-only endpoint's LSN must be within its history.
    pub fn create(
        env: &LocalEnv,
        node: &PageServerNode<'_>,
        name: &str,
        (tenant_id, timeline_id): (TenantId, TimelineId),
        lsn: Option<Lsn>,
        port: Option<u16>,
        pg_user: &str,
    ) -> anyhow::Result<Endpoint> {
        validate_name(name)?;
        let dir = endpoint_dir(env, name);
        if dir.join(ENDPOINT_FILE).exists() {
            bail!("endpoint {name} already exists");
        }
        let info: TimelineInfo =
            node.get(&format!("/v1/tenant/{tenant_id}/timeline/{timeline_id}"))?;
        if let Some(lsn) = lsn {
            if lsn > info.last_record_lsn {
                bail!(
                    "LSN {lsn} is ahead of timeline {timeline_id}'s last record LSN {}",
                    info.last_record_lsn
                );
            }
        }
        let pgdata = if nix::unistd::geteuid().is_root() {
            // A random suffix keeps environments on one machine apart.
            let suffix: u32 = rand::random();
            std::env::temp_dir().join(format!("cplane-endpoint-{name}-{suffix:08x}"))
        } else {
            dir.join("pgdata")
        };
        let ep = Endpoint {
            name: name.to_string(),
            tenant_id,
            timeline_id,
            pageserver_id: node.id(),
            port: match port {
                Some(p) => p,
                None => free_port()?,
            },
            lsn,
            pg_user: pg_user.to_string(),
            pgdata,
        };
        crashsafe::create_dir_all(&dir)?;
        ep.save(env)?;
        Ok(ep)
    }

    fn save(&self, env: &LocalEnv) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(self)?;
        crashsafe::overwrite(
            &endpoint_dir(env, &self.name).join(ENDPOINT_FILE),
            text.as_bytes(),
        )?;
        Ok(())
    }

    /// Loads endpoint `name`.
    pub fn load(env: &LocalEnv, name: &str) -> anyhow::Result<Endpoint> {
        validate_name(name)?;
        let path = endpoint_dir(env, name).join(ENDPOINT_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no endpoint {name} (cannot read {})", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))
    }

    /// Every endpoint of the environment, by name.
    pub fn list(env: &LocalEnv) -> anyhow::Result<Vec<Endpoint>> {
        let dir = env.base_dir.join("endpoints");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            out.push(Endpoint::load(env, &name)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The libpq URI of the running compute.
    pub fn connstr(&self, dbname: &str) -> String {
        format!(
            "postgresql://{}@127.0.0.1:{}/{dbname}",
            self.pg_user, self.port
        )
    }

    fn log_path(&self, env: &LocalEnv) -> PathBuf {
        endpoint_dir(env, &self.name).join(LOG_FILE)
    }

    fn pg_bin(env: &LocalEnv, name: &str) -> PathBuf {
        env.pg_distrib_dir.join("bin").join(name)
    }

    /// Whether a postmaster is running on the data directory.
    pub fn is_running(&self, env: &LocalEnv) -> bool {
        self.pgdata.join("postmaster.pid").exists()
            && pg_command(&Self::pg_bin(env, "pg_ctl"), false)
                .ok()
                .and_then(|mut c| c.arg("status").arg("-D").arg(&self.pgdata).output().ok())
                .is_some_and(|o| o.status.success())
    }

    /// Fetches a base backup, unpacks it, configures and starts PostgreSQL;
    /// a read-write endpoint then becomes the timeline's WAL source.
    pub fn start(&self, env: &LocalEnv, node: &PageServerNode<'_>) -> anyhow::Result<()> {
        if self.is_running(env) {
            bail!(
                "endpoint {} is already running on port {}",
                self.name,
                self.port
            );
        }
        let timeline_path = format!(
            "/v1/tenant/{}/timeline/{}",
            self.tenant_id, self.timeline_id
        );
        if self.lsn.is_none() {
            self.check_sole_writer(env, node)?;
        }
        if self.pgdata.exists() {
            std::fs::remove_dir_all(&self.pgdata)
                .with_context(|| format!("cannot remove {}", self.pgdata.display()))?;
        }
        crashsafe::create_dir_all(&self.pgdata)?;
        set_mode(&self.pgdata, 0o700)?;
        let query = match self.lsn {
            Some(lsn) => format!("?lsn={lsn}"),
            None => String::new(),
        };
        let resp = node.get_stream(&format!("{timeline_path}/basebackup{query}"))?;
        let lsn = resp
            .headers()
            .get("x-basebackup-lsn")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        tar::Archive::new(resp)
            .unpack(&self.pgdata)
            .with_context(|| {
                format!(
                    "cannot unpack the base backup into {}",
                    self.pgdata.display()
                )
            })?;
        self.configure()?;
        hand_over(&self.pgdata, true)?;
        let log = self.log_path(env);
        if !log.exists() {
            std::fs::File::create(&log)?;
        }
        // The log is in the work directory, which the postgres OS user may
        // not reach: pg_ctl writes it through its inherited stdout instead.
        let log_file = std::fs::File::options().append(true).open(&log)?;
        let out = pg_command(&Self::pg_bin(env, "pg_ctl"), false)?
            .args(["-D"])
            .arg(&self.pgdata)
            .args(["-w", "-t", "120", "start"])
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .status()
            .context("cannot run pg_ctl")?;
        if !out.success() {
            bail!(
                "PostgreSQL of endpoint {} did not start ({out}); see {}",
                self.name,
                log.display()
            );
        }
        if self.lsn.is_none() {
            let _: TimelineInfo = node.put(
                &format!("{timeline_path}/wal_source"),
                &json!({ "wal_source_connstr": self.connstr("postgres") }),
            )?;
        }
        println!(
            "endpoint {} started at LSN {lsn} ({}), {}",
            self.name,
            if self.lsn.is_some() {
                "read-only"
            } else {
                "read-write"
            },
            self.connstr("postgres")
        );
        Ok(())
    }

    /// Refuses to start a second writer for one timeline: the timeline's
    /// WAL source must be unset or be this endpoint.
    fn check_sole_writer(&self, env: &LocalEnv, node: &PageServerNode<'_>) -> anyhow::Result<()> {
        for other in Endpoint::list(env)? {
            if other.name != self.name
                && other.lsn.is_none()
                && other.timeline_id == self.timeline_id
                && other.is_running(env)
            {
                bail!(
                    "endpoint {} already writes to timeline {}; stop it first",
                    other.name,
                    self.timeline_id
                );
            }
        }
        let info: TimelineInfo = node.get(&format!(
            "/v1/tenant/{}/timeline/{}",
            self.tenant_id, self.timeline_id
        ))?;
        if let Some(src) = info.wal_source_connstr {
            if src != self.connstr("postgres") {
                bail!(
                    "timeline {} streams WAL from {src}; a compute writing to it would fork its history. Clear its WAL source first",
                    self.timeline_id
                );
            }
        }
        Ok(())
    }

    /// Appends what this endpoint needs to the base backup's configuration.
    fn configure(&self) -> anyhow::Result<()> {
        use std::io::Write;
        let mut conf = std::fs::File::options()
            .append(true)
            .open(self.pgdata.join("postgresql.conf"))
            .context("the base backup has no postgresql.conf")?;
        writeln!(conf, "\n# Added by cplane for endpoint {}", self.name)?;
        writeln!(conf, "listen_addresses = '127.0.0.1'")?;
        writeln!(conf, "port = {}", self.port)?;
        writeln!(conf, "unix_socket_directories = ''")?;
        writeln!(conf, "shared_buffers = 32MB")?;
        if self.lsn.is_some() {
            writeln!(conf, "hot_standby = on")?;
            std::fs::File::create(self.pgdata.join("standby.signal"))?;
        }
        Ok(())
    }

    /// Stops PostgreSQL (fast shutdown). For a read-write endpoint, waits
    /// until the page server has ingested the shutdown checkpoint, so the
    /// next start sees every committed row, then clears the WAL source.
    pub fn stop(
        &self,
        env: &LocalEnv,
        node: &PageServerNode<'_>,
        immediate: bool,
    ) -> anyhow::Result<()> {
        if !self.is_running(env) {
            println!("endpoint {} is not running", self.name);
            return Ok(());
        }
        let mode = if immediate { "immediate" } else { "fast" };
        let status = pg_command(&Self::pg_bin(env, "pg_ctl"), false)?
            .args(["-D"])
            .arg(&self.pgdata)
            .args(["-m", mode, "-w", "-t", "120", "stop"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot run pg_ctl")?;
        if !status.success() {
            bail!("pg_ctl stop of endpoint {} failed ({status})", self.name);
        }
        if self.lsn.is_none() {
            let timeline_path = format!(
                "/v1/tenant/{}/timeline/{}",
                self.tenant_id, self.timeline_id
            );
            if !immediate {
                let checkpoint = checkpoint_location(&self.pgdata)?;
                self.wait_ingested(node, &timeline_path, checkpoint)?;
            }
            let _: TimelineInfo = node.put(
                &format!("{timeline_path}/wal_source"),
                &json!({ "wal_source_connstr": null, "keep_slot": true }),
            )?;
        }
        println!("endpoint {} stopped", self.name);
        Ok(())
    }

    /// Waits until the timeline has ingested the record at `lsn`.
    fn wait_ingested(
        &self,
        node: &PageServerNode<'_>,
        timeline_path: &str,
        lsn: Lsn,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            let info: TimelineInfo = node.get(timeline_path)?;
            if info.last_record_lsn > lsn {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "timeline {} reached only {} of the compute's final checkpoint at {lsn} within {CATCH_UP_TIMEOUT:?}; its writes after that point are not in the timeline",
                    self.timeline_id,
                    info.last_record_lsn
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the endpoint if running and removes it.
    pub fn remove(&self, env: &LocalEnv, node: &PageServerNode<'_>) -> anyhow::Result<()> {
        self.stop(env, node, false)?;
        if self.pgdata.exists() {
            std::fs::remove_dir_all(&self.pgdata)?;
        }
        std::fs::remove_dir_all(endpoint_dir(env, &self.name))?;
        Ok(())
    }
}

/// The shutdown checkpoint location in a stopped data directory's `pg_control`.
fn checkpoint_location(pgdata: &Path) -> anyhow::Result<Lsn> {
    let path = pgdata.join("global").join("pg_control");
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let control = postgres_ffi::controlfile::ControlFileData::decode(&bytes)
        .with_context(|| format!("invalid {}", path.display()))?;
    Ok(control.checkpoint)
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}
