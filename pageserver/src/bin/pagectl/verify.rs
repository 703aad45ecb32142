//! `pagectl verify`: checks every metadata and layer file below a timeline,
//! tenant or work directory, as far as a page server loading them would, and
//! more: the whole-file CRC and every value blob of every layer file.
//!
//! Per timeline directory: the `metadata` file must exist and pass its
//! checksum; every file named like a layer must open, [`LayerReader::verify`]
//! and carry in its header the tenant and timeline ids of the directories it
//! lies in; the local copy of the remote index (`remote_index.json`), when
//! present, must parse and pass the checks of a downloaded index. Temporary
//! files (`___temp`, `___deleted`) and ephemeral files of
//! in-memory layers are skipped; anything else is reported as unexpected,
//! which is not a failure (the page server ignores such files too).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use pageserver::config::{METADATA_FILE, TENANTS_DIR, TENANT_CONFIG_FILE, TIMELINES_DIR};
use pageserver::tenant::remote::index::{LocalIndexCopy, LOCAL_INDEX_COPY};
use pageserver::tenant::storage_layer::layer_file::LayerReader;
use pageserver::tenant::storage_layer::LayerName;
use utils::crashsafe;
use utils::id::{TenantId, TimelineId};

/// Name prefix of the ephemeral files of in-memory layers.
const EPHEMERAL_PREFIX: &str = "ephemeral-";

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// A delta or image layer file.
    Layer,
    /// A timeline `metadata` file.
    Metadata,
    /// A timeline's local copy of its remote index
    /// ([`LOCAL_INDEX_COPY`]).
    IndexCopy,
    /// A directory (that could not be listed).
    Directory,
}

/// The outcome for one file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A file that verified.
    Ok {
        /// Layer or metadata.
        what: Checked,
        /// The file.
        path: PathBuf,
    },
    /// A file that failed to verify, a metadata file that is missing, or a
    /// directory that could not be listed.
    Failed {
        /// What failed.
        what: Checked,
        /// The file or directory.
        path: PathBuf,
        /// Why; names the file (and for corruption, the offset).
        error: String,
    },
    /// An entry that does not belong where it is; not checked, not a failure.
    Unexpected {
        /// The entry.
        path: PathBuf,
        /// What was expected instead.
        reason: &'static str,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Ok { path, .. } => write!(f, "OK          {}", path.display()),
            Finding::Failed { error, .. } => write!(f, "FAILED      {error}"),
            Finding::Unexpected { path, reason } => {
                write!(f, "UNEXPECTED  {}: {reason}", path.display())
            }
        }
    }
}

/// Everything `pagectl verify` found, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// One entry per checked file, failed directory or unexpected entry.
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// Number of findings about files of this kind, verified or not.
    fn count(&self, kind: Checked) -> usize {
        self.findings
            .iter()
            .filter(|f| match f {
                Finding::Ok { what, .. } | Finding::Failed { what, .. } => *what == kind,
                Finding::Unexpected { .. } => false,
            })
            .count()
    }

    /// Layer files checked (verified or failed).
    pub fn layer_files(&self) -> usize {
        self.count(Checked::Layer)
    }

    /// Metadata files checked (verified, failed or missing).
    pub fn metadata_files(&self) -> usize {
        self.count(Checked::Metadata)
    }

    /// The failures.
    pub fn failures(&self) -> impl Iterator<Item = &Finding> + '_ {
        self.findings
            .iter()
            .filter(|f| matches!(f, Finding::Failed { .. }))
    }

    /// Whether nothing failed.
    pub fn is_ok(&self) -> bool {
        self.failures().next().is_none()
    }

    /// Local copies of remote indexes checked.
    pub fn index_copies(&self) -> usize {
        self.count(Checked::IndexCopy)
    }

    /// The last line `pagectl verify` prints (index copies only when there
    /// were some).
    pub fn summary_line(&self) -> String {
        let copies = match self.index_copies() {
            0 => String::new(),
            n => format!(", {n} remote index copies"),
        };
        format!(
            "verified {} layer files, {} metadata files{copies}, {} failures",
            self.layer_files(),
            self.metadata_files(),
            self.failures().count()
        )
    }
}

/// The directory given to `pagectl verify` holds no page server data: a
/// usage error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotADataDir(String);

impl fmt::Display for NotADataDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of directory `pagectl verify` was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Holds `tenants/`.
    Workdir,
    /// Holds `timelines/`.
    Tenant,
    /// Holds `metadata` and layer files.
    Timeline,
}

/// Verifies everything below `dir` (a timeline, tenant or work directory),
/// calling `on_finding` for each finding as it is made (so a long run shows
/// progress). Only a `dir` that is none of the three is an error.
pub fn verify_dir(
    dir: &Path,
    on_finding: &mut dyn FnMut(&Finding),
) -> Result<VerifyReport, NotADataDir> {
    let layout = classify(dir)?;
    // Ids come from directory names; resolve `.` and symlinks to see them.
    let abs = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let mut walk = Walk {
        report: VerifyReport::default(),
        on_finding,
    };
    match layout {
        Layout::Workdir => walk.workdir(dir),
        Layout::Tenant => walk.tenant(dir, parse_name(&abs)),
        Layout::Timeline => {
            let parent = abs.parent();
            let tenant_id = parent
                .filter(|p| p.file_name().is_some_and(|n| n == TIMELINES_DIR))
                .and_then(Path::parent)
                .and_then(parse_name);
            walk.timeline(dir, tenant_id, parse_name(&abs));
        }
    }
    Ok(walk.report)
}

/// Tells what kind of directory `dir` is.
fn classify(dir: &Path) -> Result<Layout, NotADataDir> {
    let meta = fs::metadata(dir)
        .map_err(|e| NotADataDir(format!("cannot read {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(NotADataDir(format!(
            "{} is not a directory; to check one layer file use `pagectl layer summary`",
            dir.display()
        )));
    }
    if dir.join(TENANTS_DIR).is_dir() {
        Ok(Layout::Workdir)
    } else if dir.join(TIMELINES_DIR).is_dir() {
        Ok(Layout::Tenant)
    } else if dir.join(METADATA_FILE).exists() || parse_name::<TimelineId>(dir).is_some() {
        Ok(Layout::Timeline)
    } else {
        Err(NotADataDir(format!(
            "{} is not a timeline directory (with a `{METADATA_FILE}` file), a tenant \
             directory (with `{TIMELINES_DIR}/`) or a page server work directory \
             (with `{TENANTS_DIR}/`)",
            dir.display()
        )))
    }
}

/// The id that is the last component of `path`, if it is one.
fn parse_name<T: std::str::FromStr>(path: &Path) -> Option<T> {
    path.file_name()?.to_str()?.parse().ok()
}

/// Whether the page server itself ignores (and cleans up) this entry.
fn is_ignored(path: &Path) -> bool {
    crashsafe::is_temporary(path)
        || path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(EPHEMERAL_PREFIX))
}

/// One directory entry.
struct Entry {
    name: String,
    path: PathBuf,
    is_dir: bool,
}

/// A verification in progress.
struct Walk<'a> {
    report: VerifyReport,
    on_finding: &'a mut dyn FnMut(&Finding),
}

impl Walk<'_> {
    fn push(&mut self, finding: Finding) {
        (self.on_finding)(&finding);
        self.report.findings.push(finding);
    }

    fn unexpected(&mut self, path: PathBuf, reason: &'static str) {
        self.push(Finding::Unexpected { path, reason });
    }

    /// The entries of `dir` sorted by name, without ignored ones; a failure
    /// if it cannot be listed. Entries with non-UTF-8 names are reported as
    /// unexpected.
    fn list(&mut self, dir: &Path) -> Option<Vec<Entry>> {
        let read = |dir: &Path| -> std::io::Result<Vec<(PathBuf, std::ffi::OsString)>> {
            fs::read_dir(dir)?
                .map(|e| e.map(|e| (e.path(), e.file_name())))
                .collect()
        };
        let mut raw = match read(dir) {
            Ok(raw) => raw,
            Err(e) => {
                self.push(Finding::Failed {
                    what: Checked::Directory,
                    path: dir.to_owned(),
                    error: format!("cannot list directory {}: {e}", dir.display()),
                });
                return None;
            }
        };
        raw.sort();
        let mut entries = Vec::with_capacity(raw.len());
        for (path, name) in raw {
            if is_ignored(&path) {
                continue;
            }
            match name.into_string() {
                Ok(name) => entries.push(Entry {
                    is_dir: path.is_dir(),
                    name,
                    path,
                }),
                Err(_) => self.unexpected(path, "name is not UTF-8"),
            }
        }
        Some(entries)
    }

    /// A work directory: every tenant in `tenants/`.
    fn workdir(&mut self, dir: &Path) {
        let Some(entries) = self.list(&dir.join(TENANTS_DIR)) else {
            return;
        };
        for e in entries {
            match e.name.parse::<TenantId>() {
                Ok(tenant_id) if e.is_dir => self.tenant(&e.path, Some(tenant_id)),
                _ => self.unexpected(e.path, "not a tenant directory (named by tenant id)"),
            }
        }
    }

    /// A tenant directory: its `config` and every timeline in `timelines/`.
    fn tenant(&mut self, dir: &Path, tenant_id: Option<TenantId>) {
        let Some(entries) = self.list(dir) else {
            return;
        };
        for e in entries {
            let expected = match e.name.as_str() {
                TENANT_CONFIG_FILE => !e.is_dir,
                TIMELINES_DIR => e.is_dir,
                _ => false,
            };
            if !expected {
                self.unexpected(
                    e.path,
                    "a tenant directory holds only `config` and `timelines/`",
                );
            }
        }
        let Some(entries) = self.list(&dir.join(TIMELINES_DIR)) else {
            return;
        };
        for e in entries {
            match e.name.parse::<TimelineId>() {
                Ok(timeline_id) if e.is_dir => self.timeline(&e.path, tenant_id, Some(timeline_id)),
                _ => self.unexpected(e.path, "not a timeline directory (named by timeline id)"),
            }
        }
    }

    /// A timeline directory: its metadata file, then every layer file.
    fn timeline(
        &mut self,
        dir: &Path,
        tenant_id: Option<TenantId>,
        timeline_id: Option<TimelineId>,
    ) {
        let Some(entries) = self.list(dir) else {
            return;
        };
        let metadata = dir.join(METADATA_FILE);
        if !entries.iter().any(|e| e.name == METADATA_FILE) {
            self.push(Finding::Failed {
                what: Checked::Metadata,
                error: format!(
                    "timeline directory {} has no `{METADATA_FILE}` file: the page server \
                     cannot load this timeline",
                    dir.display()
                ),
                path: metadata,
            });
        }
        for e in entries {
            if e.name == METADATA_FILE && !e.is_dir {
                self.metadata(e.path);
            } else if e.name.parse::<LayerName>().is_ok() && !e.is_dir {
                self.layer(e.path, tenant_id, timeline_id);
            } else if e.name == LOCAL_INDEX_COPY && !e.is_dir {
                let result = LocalIndexCopy::read(dir).map(|_| ());
                self.checked(Checked::IndexCopy, e.path, result);
            } else {
                self.unexpected(
                    e.path,
                    "not a layer file, the metadata file, the remote index copy or a temporary file",
                );
            }
        }
    }

    fn metadata(&mut self, path: PathBuf) {
        let result = crate::read_metadata(&path)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"));
        self.checked(Checked::Metadata, path, result);
    }

    fn layer(
        &mut self,
        path: PathBuf,
        tenant_id: Option<TenantId>,
        timeline_id: Option<TimelineId>,
    ) {
        let result = check_layer(&path, tenant_id, timeline_id);
        self.checked(Checked::Layer, path, result);
    }

    /// Records the outcome of checking `path`.
    fn checked(&mut self, what: Checked, path: PathBuf, result: Result<(), String>) {
        self.push(match result {
            Ok(()) => Finding::Ok { what, path },
            Err(error) => Finding::Failed { what, path, error },
        });
    }
}

/// Opens and verifies one layer file and checks its header ids against the
/// ids of the directories it lies in (where those are known).
fn check_layer(
    path: &Path,
    tenant_id: Option<TenantId>,
    timeline_id: Option<TimelineId>,
) -> Result<(), String> {
    let reader = LayerReader::open(path).map_err(|e| e.to_string())?;
    reader.verify().map_err(|e| e.to_string())?;
    if let Some(expected) = tenant_id.filter(|t| *t != reader.tenant_id()) {
        return Err(format!(
            "layer file {} belongs to tenant {} according to its header, but lies in the \
             directory of tenant {expected}",
            path.display(),
            reader.tenant_id()
        ));
    }
    if let Some(expected) = timeline_id.filter(|t| *t != reader.timeline_id()) {
        return Err(format!(
            "layer file {} belongs to timeline {} according to its header, but lies in the \
             directory of timeline {expected}",
            path.display(),
            reader.timeline_id()
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "verify/tests.rs"]
mod tests;
