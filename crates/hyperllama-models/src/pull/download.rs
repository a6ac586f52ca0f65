//! Downloading one blob: under its lock, resumable, in parallel parts or one stream, verified,
//! then published through the store.
//!
//! # Invariants
//!
//! - The partial and sidecar files of a blob are touched only while holding its
//!   [`BlobLock`], and the blob is reported present only when the store has it.
//! - A partial file whose layout is unknown (a sidecar that cannot be used) is deleted before
//!   anything else is written, then the sidecar; never the other way round.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::lock::BlobLock;
use super::parallel::Probe;
use super::parts::{PartsState, Sidecar, PARTS_SUFFIX};
use super::{http_error, is_transient, PullError, PullEvent, Puller};
use crate::digest::{BlobDigest, DigestWriter};
use crate::store::Store;

/// The suffix of partial downloads (see the module docs of `pull` for why not `-partial`).
pub(crate) const PARTIAL_SUFFIX: &str = "-hlpartial";
/// The suffix of lock files, after the partial file's name.
const LOCK_SUFFIX: &str = ".lock";

/// How an attempt ended.
enum Attempt {
    /// The partial file now holds `size` bytes.
    Complete,
    /// The attempt failed after writing `progress` bytes.
    Failed { error: PullError, progress: u64 },
}

/// The files of one blob's download, next to the blob in `blobs/`.
#[derive(Clone, Debug)]
pub(super) struct BlobFiles {
    /// `sha256-<hex>-hlpartial`: the bytes downloaded so far.
    pub(super) partial: PathBuf,
    /// `sha256-<hex>-hlpartial.parts`: the parts of a parallel download.
    pub(super) sidecar: PathBuf,
    /// `sha256-<hex>-hlpartial.lock`: the cross-process lock.
    pub(super) lock: PathBuf,
}

impl BlobFiles {
    /// The files of `digest`'s download in `store`.
    pub(super) fn new(store: &Store, digest: &BlobDigest) -> Self {
        let partial = format!("{}{PARTIAL_SUFFIX}", digest.file_name());
        let dir = store.blobs_dir();
        BlobFiles {
            sidecar: dir.join(format!("{partial}{PARTS_SUFFIX}")),
            lock: dir.join(format!("{partial}{LOCK_SUFFIX}")),
            partial: dir.join(partial),
        }
    }

    /// The partial file's length, if it exists.
    pub(super) fn partial_len(&self) -> Option<u64> {
        std::fs::metadata(&self.partial).ok().map(|m| m.len())
    }

    /// How many bytes of the blob (`size` bytes) the partial files hold, as far as a reader
    /// without the lock can tell.
    fn on_disk(&self, digest: &BlobDigest, size: u64) -> u64 {
        match PartsState::load(&self.sidecar, digest, size, self.partial_len()) {
            Sidecar::Usable(state) => state.completed(),
            Sidecar::Absent => self.partial_len().unwrap_or(0).min(size),
            Sidecar::Unusable => 0,
        }
    }

    /// Deletes the partial file, then the sidecar (see the invariants).
    fn discard(&self) -> Result<(), PullError> {
        remove_if_present(&self.partial)?;
        remove_if_present(&self.sidecar)
    }
}

impl Puller {
    /// Makes the blob present: nothing to do if the store has it, else download (resuming
    /// what is on disk), verify and publish.
    pub(super) async fn fetch_blob(
        &self,
        url: &str,
        digest: &BlobDigest,
        size: u64,
        progress: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<(), PullError> {
        let mutex = self.blob_lock(digest);
        let _guard = match mutex.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                progress(PullEvent::Waiting { digest: *digest });
                mutex.lock().await
            }
        };
        if self.reuse_present(digest, size, progress)? {
            return Ok(());
        }
        let files = BlobFiles::new(&self.store, digest);
        // While another puller downloads, report its progress as it shows on disk.
        let mut seen = None;
        let lock = BlobLock::acquire(&files.lock, || {
            if seen.is_none() {
                progress(PullEvent::Waiting { digest: *digest });
            }
            let completed = files.on_disk(digest, size);
            if seen != Some(completed) {
                seen = Some(completed);
                progress(PullEvent::Pulling {
                    digest: *digest,
                    total: size,
                    completed,
                });
            }
        })
        .await?;
        // Shared with the blocking writes of a parallel download, which may outlive it.
        let lock = Arc::new(lock);
        // Another puller may have finished it while this one waited.
        if self.reuse_present(digest, size, progress)? {
            return Ok(());
        }
        self.download(url, digest, size, &files, &lock, progress)
            .await?;
        progress(PullEvent::Verifying { digest: *digest });
        self.verify_and_publish(&files, digest).await
    }

    /// If the store has the blob: touches it (so that a prune before the manifest is written
    /// keeps it), reports it complete and returns `true`.
    fn reuse_present(
        &self,
        digest: &BlobDigest,
        size: u64,
        progress: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<bool, PullError> {
        if !self.store.has_blob(digest) {
            return Ok(false);
        }
        self.store.touch_blob(digest).map_err(PullError::Store)?;
        progress(PullEvent::Pulling {
            digest: *digest,
            total: size,
            completed: size,
        });
        Ok(true)
    }

    /// Fills the partial file with the whole blob: in parts (resumed from the sidecar, or new
    /// if the blob is large and the server answers range requests), else in one stream.
    async fn download(
        &self,
        url: &str,
        digest: &BlobDigest,
        size: u64,
        files: &BlobFiles,
        lock: &Arc<BlobLock>,
        progress: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<(), PullError> {
        let mut single_first = None;
        let plan = match PartsState::load(&files.sidecar, digest, size, files.partial_len()) {
            Sidecar::Usable(state) => Some((state, None)),
            Sidecar::Unusable => {
                files.discard()?;
                None
            }
            Sidecar::Absent => None,
        };
        let plan = match plan {
            Some(plan) => Some(plan),
            None => match self.probe(url, digest, size, files).await? {
                Probe::Parts { state, first } => Some((state, Some(first))),
                Probe::Single(response) => {
                    single_first = response;
                    None
                }
            },
        };
        if let Some((state, first)) = plan {
            match self
                .download_parts(url, files, lock, state, first, &mut *progress)
                .await
            {
                Err(PullError::RangesUnsupported { .. }) => files.discard()?,
                other => return other,
            }
        }
        self.download_single(url, digest, size, &files.partial, single_first, progress)
            .await
    }

    /// Downloads in one stream, resuming from the partial file's length, with retries.
    /// `first` is an answer already received for the whole blob.
    async fn download_single(
        &self,
        url: &str,
        digest: &BlobDigest,
        size: u64,
        partial: &Path,
        mut first: Option<reqwest::Response>,
        progress: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<(), PullError> {
        let mut failures = 0;
        loop {
            match self
                .attempt(url, digest, size, partial, first.take(), &mut *progress)
                .await
            {
                Attempt::Complete => return Ok(()),
                Attempt::Failed { error, progress } => {
                    if progress > 0 {
                        failures = 0;
                    }
                    if !is_transient(&error) || failures >= self.config.max_retries {
                        return Err(error);
                    }
                    failures += 1;
                    tokio::time::sleep(self.backoff(failures)).await;
                }
            }
        }
    }

    /// One request: from the partial file's length to the end (`response`, if given, is the
    /// answer to a request already sent).
    async fn attempt(
        &self,
        url: &str,
        digest: &BlobDigest,
        size: u64,
        partial: &Path,
        response: Option<reqwest::Response>,
        progress: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Attempt {
        let failed = |error| Attempt::Failed { error, progress: 0 };
        let mut offset = match tokio::fs::metadata(partial).await {
            Ok(meta) => meta.len(),
            Err(_) => 0,
        };
        if offset > size {
            offset = 0;
        }
        if offset == size {
            return Attempt::Complete;
        }
        let response = match response {
            Some(response) => response,
            None => {
                let mut request = self.client.get(url);
                if offset > 0 {
                    request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
                }
                match request.send().await {
                    Ok(r) => r,
                    Err(source) => return failed(http_error(url, source)),
                }
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return failed(PullError::BlobNotFound { digest: *digest });
        }
        if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            // Our partial file is not a prefix the server knows: start over.
            let _ = tokio::fs::remove_file(partial).await;
            return failed(PullError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return failed(PullError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        // A 200 to a range request is the whole blob: start over.
        let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT;
        if !resumed {
            offset = 0;
        }
        let mut file = match tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(partial)
            .await
        {
            Ok(f) => f,
            Err(source) => return failed(io_error("open", partial, source)),
        };
        let mut stream = response.bytes_stream();
        let mut completed = offset;
        progress(PullEvent::Pulling {
            digest: *digest,
            total: size,
            completed,
        });
        let stall = self.config.stall_timeout;
        let error = loop {
            let next = match tokio::time::timeout(stall, stream.next()).await {
                Err(_) => {
                    break PullError::Stalled {
                        url: url.to_owned(),
                        stalled: stall,
                    }
                }
                Ok(next) => next,
            };
            let chunk = match next {
                None => {
                    break PullError::Status {
                        // The body ended early without an error: treat as a cut connection.
                        url: url.to_owned(),
                        status: 502,
                    };
                }
                Some(Err(source)) => break http_error(url, source),
                Some(Ok(chunk)) => chunk,
            };
            let len = chunk.len() as u64;
            if completed + len > size {
                let _ = tokio::fs::remove_file(partial).await;
                return failed(PullError::TooLarge {
                    digest: *digest,
                    size,
                });
            }
            if let Err(source) = file.write_all(&chunk).await {
                return failed(io_error("write", partial, source));
            }
            completed += len;
            progress(PullEvent::Pulling {
                digest: *digest,
                total: size,
                completed,
            });
            if completed == size {
                return match file.sync_all().await {
                    Ok(()) => Attempt::Complete,
                    Err(source) => failed(io_error("sync", partial, source)),
                };
            }
        };
        // Keep what arrived: it is synced on the next attempt's completion.
        let _ = file.flush().await;
        Attempt::Failed {
            error,
            progress: completed - offset,
        }
    }

    /// Hashes the finished partial file; a match becomes the blob, a mismatch is deleted.
    /// The sidecar goes after the hash matched (a full partial file needs none) or after
    /// the partial file was deleted.
    async fn verify_and_publish(
        &self,
        files: &BlobFiles,
        digest: &BlobDigest,
    ) -> Result<(), PullError> {
        let store = self.store.clone();
        let BlobFiles {
            partial, sidecar, ..
        } = files.clone();
        let digest = *digest;
        tokio::task::spawn_blocking(move || {
            let mut hasher = DigestWriter::new();
            let mut file =
                std::fs::File::open(&partial).map_err(|e| io_error("open", &partial, e))?;
            std::io::copy(&mut file, &mut hasher).map_err(|e| io_error("read", &partial, e))?;
            let actual = hasher.finish();
            let temp = tempfile::TempPath::try_from_path(&partial)
                .map_err(|e| io_error("resolve", &partial, e))?;
            if actual != digest {
                drop(temp); // Deletes the partial file.
                remove_if_present(&sidecar)?;
                return Err(PullError::DigestMismatch {
                    expected: digest,
                    actual,
                });
            }
            remove_if_present(&sidecar)?;
            store.publish_blob(temp, &digest).map_err(PullError::Store)
        })
        .await
        .map_err(PullError::Task)?
    }
}

/// Deletes a file; one already gone is fine.
fn remove_if_present(path: &Path) -> Result<(), PullError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("delete", path, e)),
        _ => Ok(()),
    }
}

/// A [`PullError::Io`].
pub(super) fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> PullError {
    PullError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
