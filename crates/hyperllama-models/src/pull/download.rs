//! Downloading one blob: resumable, verified, then published through the store.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{http_error, is_transient, PullError, PullEvent, Puller};
use crate::digest::{BlobDigest, DigestWriter};

/// The suffix of partial downloads (see the module docs of `pull` for why not `-partial`).
pub(crate) const PARTIAL_SUFFIX: &str = "-hlpartial";

/// How an attempt ended.
enum Attempt {
    /// The partial file now holds `size` bytes.
    Complete,
    /// The attempt failed after writing `progress` bytes.
    Failed { error: PullError, progress: u64 },
}

impl Puller {
    /// Makes the blob present: nothing to do if the store has it, else download (resuming
    /// a partial file), verify and publish.
    pub(super) async fn fetch_blob(
        &self,
        url: &str,
        digest: &BlobDigest,
        size: u64,
        progress: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<(), PullError> {
        let lock = self.blob_lock(digest);
        let _guard = lock.lock().await;
        if self.store.has_blob(digest) {
            // Touched so that a prune before the manifest is written keeps it.
            self.store.touch_blob(digest).map_err(PullError::Store)?;
            progress(PullEvent::Pulling {
                digest: *digest,
                total: size,
                completed: size,
            });
            return Ok(());
        }
        let partial = self
            .store
            .blobs_dir()
            .join(format!("{}{PARTIAL_SUFFIX}", digest.file_name()));
        let mut failures = 0;
        loop {
            match self
                .attempt(url, digest, size, &partial, &mut *progress)
                .await
            {
                Attempt::Complete => break,
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
        progress(PullEvent::Verifying { digest: *digest });
        self.verify_and_publish(&partial, digest).await
    }

    /// One request: from the partial file's length to the end.
    async fn attempt(
        &self,
        url: &str,
        digest: &BlobDigest,
        size: u64,
        partial: &Path,
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
        let mut request = self.client.get(url);
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(source) => return failed(http_error(url, source)),
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
    async fn verify_and_publish(
        &self,
        partial: &Path,
        digest: &BlobDigest,
    ) -> Result<(), PullError> {
        let store = self.store.clone();
        let partial: PathBuf = partial.to_path_buf();
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
                // Dropping `temp` deletes the partial file.
                return Err(PullError::DigestMismatch {
                    expected: digest,
                    actual,
                });
            }
            store.publish_blob(temp, &digest).map_err(PullError::Store)
        })
        .await
        .map_err(PullError::Task)?
    }
}

/// A [`PullError::Io`].
fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> PullError {
    PullError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
