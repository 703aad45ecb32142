//! An exclusive lock on a work directory, so that two processes never use the
//! same one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use std::fs::TryLockError;

/// Holds the lock until dropped (or the process exits, even by `kill -9`:
/// the kernel releases `flock` locks with the file descriptor).
#[derive(Debug)]
pub struct LockFile {
    _file: File,
    path: PathBuf,
}

impl LockFile {
    /// The locked file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the exclusive lock on `path`, creating the file, and writes our pid
/// into it. Fails at once, naming the file, when another process holds it.
pub fn lock_exclusive(path: &Path) -> anyhow::Result<LockFile> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open lock file {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            anyhow::bail!(
                "{} is locked by another process (pid {}); is a page server already running in this work directory?",
                path.display(),
                holder.trim()
            )
        }
        Err(TryLockError::Error(e)) => anyhow::bail!("cannot lock {}: {e}", path.display()),
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    file.sync_all()?;
    Ok(LockFile {
        _file: file,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_until_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pageserver.pid");
        let first = lock_exclusive(&path).unwrap();
        let err = lock_exclusive(&path).unwrap_err().to_string();
        assert!(err.contains("locked by another process"), "{err}");
        drop(first);
        lock_exclusive(&path).unwrap();
    }
}
