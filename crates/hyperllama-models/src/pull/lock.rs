//! The cross-process lock of one blob's download: an exclusive advisory lock (`flock` on
//! Unix, `LockFileEx` on Windows, through [`File::try_lock`]) on
//! `blobs/sha256-<hex>-hlpartial.lock`.
//!
//! The lock file is created on demand and deleted by its holder just before unlocking, so a
//! finished pull leaves nothing behind. Deleting a lock file others may have opened is safe
//! because every acquirer checks, once it holds the lock, that the path still names the file
//! it locked; if not (the holder deleted it meanwhile), it starts over with the file now at
//! the path.
//!
//! # Invariants
//!
//! - At most one [`BlobLock`] of a given path exists at a time across all processes: it is
//!   returned only while its file is locked and is the file at the path.
//! - A [`BlobLock`] deletes its file before releasing the lock, never after.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::download::io_error;
use super::PullError;

/// The first delay between two tries of a taken lock; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(10);
/// The longest delay between two tries of a taken lock.
const MAX_POLL: Duration = Duration::from_millis(250);

/// A held blob lock; dropping it deletes the lock file and releases the lock.
#[derive(Debug)]
pub(super) struct BlobLock {
    /// The locked file (the lock goes with the file handle).
    file: File,
    /// Its path.
    path: PathBuf,
}

impl BlobLock {
    /// Takes the lock at `path`, calling `on_wait` each time it finds the lock taken (before
    /// sleeping until the next try). Waits as long as the other holder keeps it; a crashed
    /// holder's lock is released by the operating system.
    pub(super) async fn acquire(path: &Path, mut on_wait: impl FnMut()) -> Result<Self, PullError> {
        let mut poll = FIRST_POLL;
        loop {
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| io_error("create the lock file", path, e))?;
            loop {
                match file.try_lock() {
                    Ok(()) => break,
                    Err(TryLockError::WouldBlock) => {
                        on_wait();
                        tokio::time::sleep(poll).await;
                        poll = (poll * 2).min(MAX_POLL);
                    }
                    Err(TryLockError::Error(e)) => return Err(io_error("lock", path, e)),
                }
            }
            if is_file_at(&file, path)? {
                return Ok(BlobLock {
                    file,
                    path: path.to_path_buf(),
                });
            }
            // The previous holder deleted the file we locked: lock the one at the path now.
        }
    }
}

impl Drop for BlobLock {
    fn drop(&mut self) {
        // Deleted while still locked, so nobody can lock this file and think it current.
        let _ = std::fs::remove_file(&self.path);
        // Closing the file would release the lock too; this says so.
        let _ = self.file.unlock();
    }
}

/// Whether `path` still names `file`.
#[cfg(unix)]
fn is_file_at(file: &File, path: &Path) -> Result<bool, PullError> {
    use std::os::unix::fs::MetadataExt;
    let held = file.metadata().map_err(|e| io_error("stat", path, e))?;
    match std::fs::metadata(path) {
        Ok(at_path) => Ok(at_path.dev() == held.dev() && at_path.ino() == held.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("stat", path, e)),
    }
}

/// Whether `path` still names `file`. On Windows an open file cannot be deleted, so it does.
#[cfg(not(unix))]
fn is_file_at(_file: &File, _path: &Path) -> Result<bool, PullError> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_acquirer_waits_and_the_file_is_removed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.lock");
        let first = BlobLock::acquire(&path, || panic!("free lock waited"))
            .await
            .expect("first");
        let mut n_waits = 0;
        let second = BlobLock::acquire(&path, || n_waits += 1);
        let release = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(first);
        };
        let (second, ()) = tokio::join!(second, release);
        let second = second.expect("second");
        assert!(n_waits >= 1);
        assert!(path.exists());
        drop(second);
        assert!(!path.exists());
    }
}
