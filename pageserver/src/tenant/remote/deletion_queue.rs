//! The node's deletion queue: remote objects go away only through here.
//!
//! Each push is a *deletion list* file in `WORKDIR/deletion/` (written crash
//! safely before the push returns), so deletions resume after a crash. The
//! worker executes lists in order, after validating the generation they were
//! made under: a list is executed only when no tenant manifest of a higher
//! generation exists in remote storage (single-node mode has no controller,
//! so the check is local to this node plus a listing; see
//! `docs/remote_storage.md`). A list from a stale generation is dropped: the
//! objects it names may be needed by the newer attachment. Pushes from an
//! `AttachedStale` tenant are refused up front.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use remote_storage::{GenericRemoteStorage, ListMode, RemotePath};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utils::generation::Generation;
use utils::id::TenantId;

use super::{download, RemoteHealth, TenantAttachment};
use crate::metrics;

const LIST_SUFFIX: &str = ".list";
/// Pause after a push before the worker runs, so that pushes batch up.
const BATCH_DELAY: Duration = Duration::from_millis(200);

/// One persisted deletion list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionList {
    /// The tenant whose objects these are.
    pub tenant_id: TenantId,
    /// The generation the deletion was decided under.
    pub generation: Generation,
    /// Objects to delete.
    #[serde(default)]
    pub objects: Vec<String>,
    /// Prefixes under which every object is deleted (tenant and timeline
    /// deletion).
    #[serde(default)]
    pub prefixes: Vec<String>,
}

/// What happened to a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOutcome {
    /// Objects deleted.
    Executed,
    /// A newer generation exists: nothing deleted.
    Refused,
}

/// The queue; see the module documentation.
pub struct DeletionQueue {
    dir: PathBuf,
    storage: GenericRemoteStorage,
    health: Arc<RemoteHealth>,
    next_seq: AtomicU64,
    pushed: Notify,
}

impl DeletionQueue {
    /// Opens (creating) the queue directory; lists already there are kept
    /// and executed by the worker.
    pub fn open(
        dir: PathBuf,
        storage: GenericRemoteStorage,
        health: Arc<RemoteHealth>,
    ) -> std::io::Result<DeletionQueue> {
        utils::crashsafe::create_dir_all(&dir)?;
        utils::crashsafe::remove_temporaries(&dir)?;
        let next = pending_lists(&dir)?.last().map_or(0, |(seq, _)| seq + 1);
        Ok(DeletionQueue {
            dir,
            storage,
            health,
            next_seq: AtomicU64::new(next),
            pushed: Notify::new(),
        })
    }

    /// Lists waiting in the queue.
    pub fn pending(&self) -> usize {
        pending_lists(&self.dir).map_or(0, |l| l.len())
    }

    async fn push(&self, list: DeletionList) -> std::io::Result<()> {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.join(format!("{seq:016x}{LIST_SUFFIX}"));
        let body = serde_json::to_vec(&list).expect("a deletion list serializes");
        tokio::task::spawn_blocking(move || utils::crashsafe::overwrite(&path, &body))
            .await
            .map_err(std::io::Error::other)??;
        self.pushed.notify_one();
        Ok(())
    }

    /// Queues the deletion of objects of `tenant_id`, unless the tenant is
    /// attached as stale (then the objects stay; they may be needed).
    pub async fn push_objects(
        &self,
        tenant_id: TenantId,
        attachment: &TenantAttachment,
        objects: Vec<RemotePath>,
    ) -> std::io::Result<()> {
        if attachment.is_stale() {
            tracing::info!(%tenant_id, "attached as stale: not deleting {} remote objects", objects.len());
            metrics::DELETION_QUEUE_OBJECTS
                .with_label_values(&["refused"])
                .inc_by(objects.len() as u64);
            return Ok(());
        }
        self.push(DeletionList {
            tenant_id,
            generation: attachment.generation(),
            objects: objects.iter().map(|p| p.to_string()).collect(),
            prefixes: Vec::new(),
        })
        .await
    }

    /// Queues the deletion of everything under `prefix` (tenant or timeline
    /// deletion) decided under `generation`.
    pub async fn push_prefix(
        &self,
        tenant_id: TenantId,
        generation: Generation,
        prefix: RemotePath,
    ) -> std::io::Result<()> {
        self.push(DeletionList {
            tenant_id,
            generation,
            objects: Vec::new(),
            prefixes: vec![prefix.to_string()],
        })
        .await
    }

    /// Runs the worker until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut attempt = 0u32;
        loop {
            let notified = self.pushed.notified();
            match self.process_all(&cancel).await {
                Ok(()) => attempt = 0,
                Err(_) if cancel.is_cancelled() => break,
                Err(e) => {
                    self.health.failure(&e);
                    let delay = super::backoff(attempt);
                    attempt += 1;
                    tracing::warn!("deletion queue: {e}; retrying in {delay:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = cancel.cancelled() => break,
                    }
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                _ = cancel.cancelled() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(BATCH_DELAY) => {}
                _ = cancel.cancelled() => break,
            }
        }
    }

    /// Executes every pending list, oldest first; stops at the first failure.
    pub async fn process_all(&self, cancel: &CancellationToken) -> Result<(), String> {
        let dir = self.dir.clone();
        let lists = tokio::task::spawn_blocking(move || pending_lists(&dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot list {}: {e}", self.dir.display()))?;
        // Consecutive lists of one tenant and generation are merged into one
        // validation and as few delete requests as the batch limit allows.
        let mut batch: Option<DeletionList> = None;
        let mut batch_files: Vec<PathBuf> = Vec::new();
        for (_, path) in lists {
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let list = match serde_json::from_slice::<DeletionList>(&bytes) {
                Ok(list) => list,
                Err(e) => {
                    tracing::error!("dropping unreadable deletion list {}: {e}", path.display());
                    self.remove_files(vec![path]).await?;
                    continue;
                }
            };
            match &mut batch {
                Some(b) if b.tenant_id == list.tenant_id && b.generation == list.generation => {
                    b.objects.extend(list.objects);
                    b.prefixes.extend(list.prefixes);
                }
                _ => {
                    if let Some(b) = batch.take() {
                        self.execute(&b, cancel).await?;
                        self.health.success();
                        self.remove_files(std::mem::take(&mut batch_files)).await?;
                    }
                    batch = Some(list);
                }
            }
            batch_files.push(path);
        }
        if let Some(b) = batch {
            self.execute(&b, cancel).await?;
            self.health.success();
            self.remove_files(batch_files).await?;
        }
        Ok(())
    }

    async fn remove_files(&self, files: Vec<PathBuf>) -> Result<(), String> {
        tokio::task::spawn_blocking(move || {
            for f in &files {
                remove_durably(f).map_err(|e| format!("cannot remove {}: {e}", f.display()))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Validates the list's generation, then deletes its objects.
    pub async fn execute(
        &self,
        list: &DeletionList,
        cancel: &CancellationToken,
    ) -> Result<ListOutcome, String> {
        let listing = download::list_tenant(&self.storage, &list.tenant_id, cancel)
            .await
            .map_err(|e| e.to_string())?;
        let count = list.objects.len() + list.prefixes.len();
        if let Some(newer) = listing.manifests.iter().find(|g| **g > list.generation) {
            tracing::warn!(tenant_id = %list.tenant_id, "not deleting {count} remote objects/prefixes decided under generation {}: generation {newer} exists, ours is stale", list.generation);
            metrics::DELETION_QUEUE_OBJECTS
                .with_label_values(&["refused"])
                .inc_by(count as u64);
            return Ok(ListOutcome::Refused);
        }
        let mut paths = Vec::new();
        for o in &list.objects {
            paths.push(RemotePath::new(o).map_err(|e| e.to_string())?);
        }
        for prefix in &list.prefixes {
            let prefix = RemotePath::new(prefix).map_err(|e| e.to_string())?;
            let found = self
                .storage
                .list(Some(&prefix), ListMode::Recursive, cancel)
                .await
                .map_err(|e| e.to_string())?;
            paths.extend(found.keys());
        }
        fail::fail_point!("deletion-queue-before-delete", |_| Err(
            "failpoint deletion-queue-before-delete".to_string()
        ));
        self.storage
            .delete_objects(&paths, cancel)
            .await
            .map_err(|e| e.to_string())?;
        metrics::DELETION_QUEUE_OBJECTS
            .with_label_values(&["deleted"])
            .inc_by(paths.len() as u64);
        tracing::info!(tenant_id = %list.tenant_id, "deleted {} remote objects", paths.len());
        // The objects are gone, the list is not: a crash here runs it again.
        fail::fail_point!("deletion-queue-after-delete", |_| Err(
            "failpoint deletion-queue-after-delete".to_string()
        ));
        Ok(ListOutcome::Executed)
    }
}

fn remove_durably(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        utils::crashsafe::fsync_dir(dir)?;
    }
    Ok(())
}

/// The lists in `dir`, by sequence number.
fn pending_lists(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut lists = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(LIST_SUFFIX))
            .and_then(|n| u64::from_str_radix(n, 16).ok())
        else {
            continue;
        };
        lists.push((seq, entry.path()));
    }
    lists.sort();
    Ok(lists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use remote_storage::RemoteStorageConfig;

    fn storage(dir: &Path) -> GenericRemoteStorage {
        GenericRemoteStorage::from_config(&RemoteStorageConfig::local_fs(dir).unwrap()).unwrap()
    }

    async fn put(s: &GenericRemoteStorage, key: &str) -> RemotePath {
        let p = RemotePath::new(key).unwrap();
        s.upload(&p, Bytes::from_static(b"x"), &CancellationToken::new())
            .await
            .unwrap();
        p
    }

    #[tokio::test]
    async fn lists_persist_and_resume_after_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let s = storage(&tmp.path().join("remote"));
        let t = TenantId::generate();
        let a = put(&s, &format!("tenants/{t}/timelines/x/a-00000001")).await;
        let b = put(&s, &format!("tenants/{t}/timelines/x/b-00000001")).await;
        let cancel = CancellationToken::new();
        let qdir = tmp.path().join("deletion");
        {
            let q = DeletionQueue::open(qdir.clone(), s.clone(), Default::default()).unwrap();
            let att = TenantAttachment::new(Generation(1), false);
            q.push_objects(t, &att, vec![a.clone()]).await.unwrap();
            q.push_objects(t, &att, vec![b.clone()]).await.unwrap();
            assert_eq!(q.pending(), 2);
            // "Crash": dropped without running the worker.
        }
        assert!(s.exists(&a, &cancel).await.unwrap());
        let q = DeletionQueue::open(qdir.clone(), s.clone(), Default::default()).unwrap();
        assert_eq!(q.pending(), 2);
        q.process_all(&cancel).await.unwrap();
        assert_eq!(q.pending(), 0);
        assert!(!s.exists(&a, &cancel).await.unwrap());
        assert!(!s.exists(&b, &cancel).await.unwrap());
        // Sequence numbers continue after a restart.
        let att = TenantAttachment::new(Generation(1), false);
        q.push_objects(t, &att, vec![a.clone()]).await.unwrap();
        let q2 = DeletionQueue::open(qdir, s.clone(), Default::default()).unwrap();
        assert_eq!(q2.next_seq.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn stale_generations_never_delete() {
        let tmp = tempfile::tempdir().unwrap();
        let s = storage(&tmp.path().join("remote"));
        let t = TenantId::generate();
        let a = put(&s, &format!("tenants/{t}/timelines/x/a-00000001")).await;
        put(&s, &format!("tenants/{t}/tenant-manifest-00000002.json")).await;
        let cancel = CancellationToken::new();
        let q = DeletionQueue::open(tmp.path().join("deletion"), s.clone(), Default::default())
            .unwrap();
        // Generation 1 while 2 exists: refused.
        q.push_objects(
            t,
            &TenantAttachment::new(Generation(1), false),
            vec![a.clone()],
        )
        .await
        .unwrap();
        q.process_all(&cancel).await.unwrap();
        assert!(s.exists(&a, &cancel).await.unwrap());
        // Attached as stale: never even queued.
        q.push_objects(
            t,
            &TenantAttachment::new(Generation(2), true),
            vec![a.clone()],
        )
        .await
        .unwrap();
        assert_eq!(q.pending(), 0);
        // The current generation deletes.
        q.push_objects(
            t,
            &TenantAttachment::new(Generation(2), false),
            vec![a.clone()],
        )
        .await
        .unwrap();
        q.process_all(&cancel).await.unwrap();
        assert!(!s.exists(&a, &cancel).await.unwrap());
    }
}
