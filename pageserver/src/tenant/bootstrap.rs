//! Bootstrap of a root timeline: `initdb` in a temporary directory, imported
//! at its checkpoint LSN. The timeline directory is assembled under a
//! temporary name and renamed into place once its layers and metadata are
//! durable, so a crash leaves the whole timeline or nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pageserver_api::models::TenantState;
use pq_proto::ConnConfig;
use tokio_util::sync::CancellationToken;
use utils::crashsafe;
use utils::id::{TenantId, TimelineId};
use utils::lsn::Lsn;

use super::metadata::TimelineMetadata;
use super::timeline::layers::LayerManager;
use super::timeline::{SharedTenantConf, Timeline};
use crate::config::METADATA_FILE;
use crate::walingest::import::import_datadir;

/// A command for PostgreSQL binary `name` of the distribution, run as the
/// `postgres` OS user when we are root, and dying with the page server, so
/// a crashed node leaves no `initdb` writing into a directory start-up removes.
pub fn pg_command(pg_distrib_dir: &Path, name: &str) -> anyhow::Result<Command> {
    utils::pg_user::pg_command(&pg_distrib_dir.join("bin").join(name), true)
}

/// Gives `dir` to the `postgres` OS user when running as root.
pub fn hand_over_dir(dir: &Path) -> anyhow::Result<()> {
    utils::pg_user::hand_over(dir, false)
}

/// Runs `initdb` into `datadir` (created here).
pub fn run_initdb(pg_distrib_dir: &Path, datadir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(datadir)
        .with_context(|| format!("cannot create {}", datadir.display()))?;
    hand_over_dir(datadir)?;
    let out = pg_command(pg_distrib_dir, "initdb")?
        .args(["-D"])
        .arg(datadir)
        .args([
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
            "--no-sync",
        ])
        .env_remove("PGDATA")
        .output()
        .with_context(|| format!("cannot run initdb from {}", pg_distrib_dir.display()))?;
    if !out.status.success() {
        bail!(
            "initdb failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Where `pg_control` says the last checkpoint record starts: a data
/// directory is consistent as of that LSN after a clean shutdown.
pub fn checkpoint_lsn(datadir: &Path) -> anyhow::Result<Lsn> {
    let path = datadir.join("global").join("pg_control");
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let control = postgres_ffi::controlfile::ControlFileData::decode(&bytes)
        .with_context(|| format!("invalid {}", path.display()))?;
    Ok(control.checkpoint)
}

/// Runs `pg_basebackup` from `source` into `datadir` (created here), WAL
/// left out (the walreceiver streams it). Returns the backup's WAL range:
/// the start (its checkpoint's redo point) and the end, from which on the
/// copied files are consistent.
pub fn run_basebackup(
    pg_distrib_dir: &Path,
    source: &ConnConfig,
    datadir: &Path,
) -> anyhow::Result<(Lsn, Lsn)> {
    std::fs::create_dir_all(datadir)
        .with_context(|| format!("cannot create {}", datadir.display()))?;
    hand_over_dir(datadir)?;
    let mut cmd = pg_command(pg_distrib_dir, "pg_basebackup")?;
    cmd.arg("-D")
        .arg(datadir)
        .args([
            "-h",
            &source.host,
            "-p",
            &source.port.to_string(),
            "-U",
            &source.user,
        ])
        .args(["-X", "none", "-c", "fast", "--no-sync", "--no-password"])
        .env_remove("PGPASSWORD");
    if let Some(password) = &source.password {
        // In the environment, not on the command line where ps shows it.
        cmd.env("PGPASSWORD", password);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run pg_basebackup from {}", pg_distrib_dir.display()))?;
    if !out.status.success() {
        bail!(
            "pg_basebackup from {} failed ({}): {}",
            source.masked(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let manifest_path = datadir.join("backup_manifest");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&manifest_path)
            .with_context(|| format!("cannot read {}", manifest_path.display()))?,
    )
    .with_context(|| format!("invalid {}", manifest_path.display()))?;
    let range = manifest["WAL-Ranges"]
        .as_array()
        .and_then(|r| r.last())
        .with_context(|| format!("{} has no WAL-Ranges", manifest_path.display()))?;
    let lsn = |field: &str| -> anyhow::Result<Lsn> {
        range[field]
            .as_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("{} has no valid {field}", manifest_path.display()))
    };
    Ok((lsn("Start-LSN")?, lsn("End-LSN")?))
}

/// How a new root timeline gets its initial data.
pub enum InitialData<'a> {
    /// A fresh `initdb` cluster.
    Initdb,
    /// A base backup of a running primary, then WAL streamed from it.
    BaseBackup(&'a ConnConfig),
    /// A data directory already on disk (an imported tar), consistent
    /// from `start` once WAL up to `end` is applied.
    Datadir {
        /// The data directory.
        path: &'a Path,
        /// Where its WAL starts (the backup's start).
        start: Lsn,
        /// Below this LSN reads are refused.
        end: Lsn,
    },
}

/// Creates the timeline directory `path` holding `initdb`'s cluster or a
/// base backup. Blocking.
pub fn bootstrap_timeline(
    pg_distrib_dir: &Path,
    (tenant_id, timeline_id): (TenantId, TimelineId),
    path: &Path,
    tenant_conf: SharedTenantConf,
    pg_version: u32,
    initial: InitialData<'_>,
) -> anyhow::Result<()> {
    let tmp = crashsafe::path_with_suffix(path, crashsafe::TEMP_SUFFIX);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir(&tmp)?;
    let metadata = TimelineMetadata::new_root(pg_version);
    crashsafe::overwrite(&tmp.join(METADATA_FILE), &metadata.to_bytes())?;
    // PostgreSQL binaries write the cluster in the system's temporary
    // directory: under root they run as another user, who may not be able
    // to reach into the work directory.
    let scratch = ScratchDir::new(ScratchKind::Pgdata, tenant_id, timeline_id)?;
    let mut datadir = scratch.0.clone();
    let (lsn, readable_from) = match initial {
        InitialData::Datadir { path, start, end } => {
            datadir = path.to_path_buf();
            (start, end)
        }
        InitialData::Initdb => {
            run_initdb(pg_distrib_dir, &datadir)?;
            let lsn = checkpoint_lsn(&datadir)?;
            (lsn, lsn)
        }
        InitialData::BaseBackup(source) => {
            let range = run_basebackup(pg_distrib_dir, source, &datadir)?;
            write_wal_source(&tmp, Some(source))?;
            range
        }
    };
    {
        let tl = Arc::new(Timeline::new(
            tenant_id,
            timeline_id,
            tmp.clone(),
            metadata,
            LayerManager::default(),
            TenantState::Active,
            tenant_conf,
            &CancellationToken::new(),
        ));
        let stats = import_datadir(&tl, &datadir, lsn)?;
        tl.checkpoint_blocking()?;
        // Files copied from a running primary are consistent only once WAL
        // up to the backup's end is applied: reads below it are refused.
        tl.set_initial_lsns(lsn, readable_from)?;
        tracing::info!(%tenant_id, %timeline_id, %lsn, %readable_from, ?stats, "imported initial data");
    }
    drop(scratch);
    fail::fail_point!("timeline-create-before-rename", |_| Err(anyhow::anyhow!(
        "failpoint timeline-create-before-rename"
    )));
    crashsafe::rename(&tmp, path)?;
    Ok(())
}

/// A scratch directory in the system's temporary directory, removed when
/// dropped (on success and on every error path). A process killed while
/// holding one leaves it behind: [`remove_stale_scratch_dirs`] removes it
/// at the next start.
pub struct ScratchDir(pub PathBuf);

/// What a scratch directory holds.
#[derive(Debug, Clone, Copy)]
pub enum ScratchKind {
    /// A cluster from `initdb` or `pg_basebackup`, to import.
    Pgdata,
    /// A base backup streamed in with `import basebackup`.
    Import,
}

impl ScratchKind {
    const ALL: [ScratchKind; 2] = [ScratchKind::Pgdata, ScratchKind::Import];

    /// The name prefix of this kind's directories.
    fn prefix(self) -> &'static str {
        match self {
            ScratchKind::Pgdata => "pageserver-pgdata-",
            ScratchKind::Import => "pageserver-import-",
        }
    }
}

impl ScratchDir {
    /// A fresh (absent) directory for `kind` of work on a timeline, named
    /// `{prefix}{tenant}-{timeline}-{pid}` after this process.
    pub fn new(
        kind: ScratchKind,
        tenant_id: TenantId,
        timeline_id: TimelineId,
    ) -> anyhow::Result<ScratchDir> {
        let name = format!(
            "{}{tenant_id}-{timeline_id}-{}",
            kind.prefix(),
            std::process::id()
        );
        let path = std::env::temp_dir().join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(ScratchDir(path))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove {}: {e}", self.0.display());
            }
        }
    }
}

/// The process that made scratch directory `name`, when `name` is one.
fn scratch_owner(name: &str) -> Option<u32> {
    let rest = ScratchKind::ALL
        .iter()
        .find_map(|kind| name.strip_prefix(kind.prefix()))?;
    let (ids, pid) = rest.rsplit_once('-')?;
    let (tenant, timeline) = ids.split_once('-')?;
    tenant.parse::<TenantId>().ok()?;
    timeline.parse::<TimelineId>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` exists. Without `/proc` every process counts as
/// alive (nothing is removed on its account).
fn process_exists(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Whether `entry` is a directory this process may remove: root removes
/// any (its `initdb` directories belong to the `postgres` user); another
/// user only its own, as the temporary directory's sticky bit wants. Not
/// when it is gone or cannot be looked at.
fn removable(entry: &std::fs::DirEntry) -> bool {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid();
    entry
        .metadata()
        .is_ok_and(|meta| meta.is_dir() && (uid.is_root() || meta.uid() == uid.as_raw()))
}

/// How long a stale scratch directory may keep filling up while it is
/// removed: the programs its process started (`initdb` and the `postgres`
/// it runs) die with it, but may write a few more files first.
const STALE_REMOVAL_PATIENCE: Duration = Duration::from_secs(10);

/// Removes the scratch directories in `tmp` whose process is gone: a node
/// killed during a bootstrap or an import would otherwise leave a whole
/// cluster there for good. Directories of running processes (another page
/// server of this machine at work) stay; so does one whose process id was
/// given to another process since, until that one ends too, and, unless we
/// are root, one of another user. Returns the number removed; a directory
/// that cannot be removed is logged and kept. Blocking: it may take up to
/// [`STALE_REMOVAL_PATIENCE`] per directory.
pub fn remove_stale_scratch_dirs(tmp: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(tmp)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(scratch_owner) else {
            continue;
        };
        if pid == std::process::id() || process_exists(pid) || !removable(&entry) {
            continue;
        }
        match remove_filling_dir(&entry.path(), STALE_REMOVAL_PATIENCE) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "cannot remove scratch directory {} of ended process {pid}: {e}",
                entry.path().display()
            ),
        }
    }
    Ok(removed)
}

/// Removes `dir` and everything in it, again while files keep appearing
/// in it (the removal then finds it not empty), for at most `patience`.
fn remove_filling_dir(dir: &Path, patience: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        match std::fs::remove_dir_all(dir) {
            Err(e)
                if e.kind() == std::io::ErrorKind::DirectoryNotEmpty
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// File in a timeline directory holding its WAL source connection string
/// (with the password: readable by the owner only).
pub const WAL_SOURCE_FILE: &str = "wal_source";

/// Stores (or with `None` removes) a timeline's WAL source, durably.
pub fn write_wal_source(timeline_dir: &Path, source: Option<&ConnConfig>) -> std::io::Result<()> {
    let path = timeline_dir.join(WAL_SOURCE_FILE);
    match source {
        Some(cfg) => {
            crashsafe::overwrite(&path, cfg.to_connstr().as_bytes())?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        }
        None => match std::fs::remove_file(&path) {
            Ok(()) => crashsafe::fsync_dir(timeline_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        },
    }
}

/// A timeline's stored WAL source, if any.
pub fn read_wal_source(timeline_dir: &Path) -> anyhow::Result<Option<ConnConfig>> {
    let path = timeline_dir.join(WAL_SOURCE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            ConnConfig::parse(text.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(tmp: &Path, name: &str) -> PathBuf {
        let dir = tmp.join(name);
        std::fs::create_dir_all(dir.join("base")).unwrap();
        std::fs::write(dir.join("base").join("PG_VERSION"), b"15\n").unwrap();
        dir
    }

    #[test]
    fn stale_scratch_dirs_of_ended_processes_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let ended = child.id();
        child.wait().unwrap();
        let (t, tl) = (TenantId::generate(), TimelineId::generate());
        let ours = std::process::id();
        let stale = [
            make(tmp.path(), &format!("pageserver-pgdata-{t}-{tl}-{ended}")),
            make(tmp.path(), &format!("pageserver-import-{t}-{tl}-{ended}")),
        ];
        let kept = [
            // This process is alive.
            make(tmp.path(), &format!("pageserver-pgdata-{t}-{tl}-{ours}")),
            // Not a scratch directory's name.
            make(tmp.path(), &format!("pageserver-pgdata-{t}-{ended}")),
            make(tmp.path(), &format!("pageserver-other-{t}-{tl}-{ended}")),
            make(tmp.path(), &format!("pageserver-pgdata-{t}-{tl}-x{ended}")),
        ];
        // A file with a scratch directory's name is not touched either.
        let file = tmp
            .path()
            .join(format!("pageserver-import-{tl}-{t}-{ended}"));
        std::fs::write(&file, b"x").unwrap();

        assert_eq!(remove_stale_scratch_dirs(tmp.path()).unwrap(), 2);
        for dir in &stale {
            assert!(!dir.exists(), "{} should be gone", dir.display());
        }
        for dir in &kept {
            assert!(
                dir.join("base").join("PG_VERSION").exists(),
                "{} should stay",
                dir.display()
            );
        }
        assert!(file.exists());
        // Nothing left to remove.
        assert_eq!(remove_stale_scratch_dirs(tmp.path()).unwrap(), 0);
    }

    #[test]
    fn a_directory_still_filling_up_is_removed_once_the_writer_stops() {
        let tmp = tempfile::tempdir().unwrap();
        // A removal racing the writer fails only now and then: several
        // rounds make a removal that gives up at once fail this test.
        for round in 0..5 {
            let dir = make(tmp.path(), "filling");
            let writer = {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    // Files keep coming for a while, as from a dying initdb.
                    let until = Instant::now() + Duration::from_millis(200);
                    let mut n = 0;
                    while Instant::now() < until {
                        let _ = std::fs::create_dir_all(dir.join("base"));
                        let _ = std::fs::write(dir.join("base").join(n.to_string()), b"x");
                        n += 1;
                    }
                })
            };
            std::thread::sleep(Duration::from_millis(20));
            let result = remove_filling_dir(&dir, Duration::from_secs(10));
            writer.join().unwrap();
            // The writer may have recreated it after the last removal; what
            // matters is that the removal did not give up while it wrote.
            assert!(result.is_ok(), "round {round}: {result:?}");
            let _ = std::fs::remove_dir_all(&dir);
        }
        // With nothing writing, it goes at once, whatever the patience.
        let full = make(tmp.path(), "full");
        assert!(remove_filling_dir(&full, Duration::ZERO).is_ok());
        assert!(!full.exists());
    }

    #[test]
    fn scratch_dir_names_parse_back_to_their_process() {
        let (t, tl) = (TenantId::generate(), TimelineId::generate());
        for kind in ScratchKind::ALL {
            let dir = ScratchDir::new(kind, t, tl).unwrap();
            let name = dir.0.file_name().unwrap().to_str().unwrap().to_owned();
            assert_eq!(scratch_owner(&name), Some(std::process::id()), "{name}");
        }
        assert_eq!(scratch_owner("pageserver-pgdata-"), None);
        assert_eq!(scratch_owner(&format!("pageserver-pgdata-{t}-{tl}-")), None);
    }
}
