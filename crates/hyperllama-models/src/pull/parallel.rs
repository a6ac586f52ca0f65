//! Parallel downloads: one blob in several HTTP range requests at once, each written at its
//! offset of the partial file (as Ollama's `blobDownload` does), with every part's progress
//! kept in the sidecar so that an interrupted download resumes each part where it stopped.
//!
//! The parts run as futures of the pulling task (no spawned tasks), so dropping the pull
//! cancels them. They report written bytes over a channel; the driver turns those into
//! progress events and, at most every [`SAVE_EVERY`], syncs the partial file and saves the
//! sidecar. File writes run on the blocking pool.
//!
//! # Invariants
//!
//! - `done[i]` counts only bytes already written at their offsets of part `i`; it is read
//!   for the sidecar before the file is synced, so the sidecar never counts unsynced data.
//! - A part writes only inside its own range, and only bytes from a `206` answer whose
//!   `Content-Range` starts where the part's missing bytes start.
//! - The blob's lock is released only after every write and sidecar save of the download
//!   has finished, even when the download is dropped while one runs on the blocking pool.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use tokio::sync::mpsc;

use super::download::{io_error, BlobFiles};
use super::lock::BlobLock;
use super::parts::{Part, PartsState};
use super::{http_error, is_transient, PullError, PullEvent, Puller};
use crate::digest::BlobDigest;

/// How often the sidecar is saved while parts make progress.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Bytes a part collects before writing them.
const WRITE_BUF: usize = 1 << 20;

/// What the first range request of a new download found.
#[derive(Debug)]
pub(super) enum Probe {
    /// The server answers range requests: download `state`'s parts, the first missing one
    /// from `first`.
    Parts {
        /// The plan, counting the partial file's prefix.
        state: PartsState,
        /// The first part with missing bytes and the `206` answer for them.
        first: (usize, reqwest::Response),
    },
    /// Download in one stream: the blob is small, or the server answered the probe with the
    /// whole blob (`Some`, to be streamed as the download).
    Single(Option<reqwest::Response>),
}

/// The partial file with the blob's lock: a write or save still running on the blocking pool
/// after the download was dropped keeps the lock until it is done, so the next holder never
/// sees it land.
struct LockedFile {
    /// The partial file.
    file: File,
    /// Held, never read.
    _lock: Arc<BlobLock>,
}

/// One part's download: where its bytes come from and go.
struct PartJob<'a> {
    /// The blob URL.
    url: &'a str,
    /// The blob.
    digest: BlobDigest,
    /// The partial file's path (for errors).
    partial: &'a Path,
    /// The partial file, shared by all parts.
    file: Arc<LockedFile>,
    /// The part's index.
    idx: usize,
    /// The part's range.
    part: Part,
    /// Every part's written bytes.
    done: Arc<[AtomicU64]>,
    /// Receives the number of bytes of each write.
    written: mpsc::UnboundedSender<u64>,
}

impl PartJob<'_> {
    /// The offset of the part's first missing byte.
    fn next(&self) -> u64 {
        self.part.start + self.done[self.idx].load(Ordering::Acquire)
    }
}

impl Puller {
    /// Decides how to download a blob that has no usable sidecar, sending the first range
    /// request when the blob is large enough to split.
    pub(super) async fn probe(
        &self,
        url: &str,
        digest: &BlobDigest,
        size: u64,
        files: &BlobFiles,
    ) -> Result<Probe, PullError> {
        if size < self.config.parallel_threshold {
            return Ok(Probe::Single(None));
        }
        let prefix = files.partial_len().filter(|&len| len <= size).unwrap_or(0);
        let Some(state) = PartsState::plan(*digest, size, self.config.n_parts, prefix) else {
            return Ok(Probe::Single(None));
        };
        let Some(idx) = state.parts.iter().position(|p| !p.is_done()) else {
            return Ok(Probe::Single(None));
        };
        let part = state.parts[idx];
        let mut failures = 0;
        let response = loop {
            match self.send_range(url, digest, part).await {
                Ok(response) => break response,
                Err(e) if is_transient(&e) && failures < self.config.max_retries => {
                    failures += 1;
                    tokio::time::sleep(self.backoff(failures)).await;
                }
                Err(e) => return Err(e),
            }
        };
        if response.status() == StatusCode::PARTIAL_CONTENT {
            Ok(Probe::Parts {
                state,
                first: (idx, response),
            })
        } else {
            Ok(Probe::Single(Some(response)))
        }
    }

    /// Downloads every missing byte of `state`'s parts concurrently. `first` is a `206`
    /// answer already received for part `first.0`. Returns when all parts are on disk and
    /// synced, or with the first error a part could not retry past; the sidecar is saved
    /// either way.
    pub(super) async fn download_parts(
        &self,
        url: &str,
        files: &BlobFiles,
        lock: &Arc<BlobLock>,
        mut state: PartsState,
        mut first: Option<(usize, reqwest::Response)>,
        progress: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<(), PullError> {
        let partial = &files.partial;
        let file = File::options()
            .create(true)
            .write(true)
            .truncate(false)
            .open(partial)
            .map_err(|e| io_error("open", partial, e))?;
        let file = Arc::new(LockedFile {
            file,
            _lock: Arc::clone(lock),
        });
        // The sidecar comes first: from here on the file is not a prefix of the blob.
        save(&file, &state, files).await?;
        file.file
            .set_len(state.size)
            .map_err(|e| io_error("extend", partial, e))?;
        let done: Arc<[AtomicU64]> = state.parts.iter().map(|p| AtomicU64::new(p.done)).collect();
        let (written, mut written_rx) = mpsc::unbounded_channel();
        let mut jobs = Vec::new();
        for (idx, part) in state.parts.iter().enumerate() {
            if part.is_done() {
                continue;
            }
            let response = match first.take() {
                Some((i, response)) if i == idx => Some(response),
                other => {
                    first = other;
                    None
                }
            };
            let job = PartJob {
                url,
                digest: state.digest,
                partial,
                file: Arc::clone(&file),
                idx,
                part: *part,
                done: Arc::clone(&done),
                written: written.clone(),
            };
            jobs.push(self.fetch_part(job, response));
        }
        drop(written);
        let (digest, total) = (state.digest, state.size);
        let mut completed = state.completed();
        progress(PullEvent::Pulling {
            digest,
            total,
            completed,
        });
        let all = futures_util::future::try_join_all(jobs);
        tokio::pin!(all);
        let mut last_save = Instant::now();
        let result = loop {
            tokio::select! {
                result = &mut all => break result,
                Some(n) = written_rx.recv() => {
                    completed += n;
                    progress(PullEvent::Pulling { digest, total, completed });
                    if last_save.elapsed() >= SAVE_EVERY {
                        snapshot(&mut state, &done);
                        save(&file, &state, files).await?;
                        last_save = Instant::now();
                    }
                }
            }
        };
        while let Ok(n) = written_rx.try_recv() {
            completed += n;
        }
        progress(PullEvent::Pulling {
            digest,
            total,
            completed,
        });
        snapshot(&mut state, &done);
        let saved = save(&file, &state, files).await;
        result?;
        saved
    }

    /// Downloads one part's missing bytes, retrying on its own: a failed attempt that wrote
    /// something resets the count of failures.
    async fn fetch_part(
        &self,
        job: PartJob<'_>,
        mut first: Option<reqwest::Response>,
    ) -> Result<(), PullError> {
        let mut failures = 0;
        loop {
            let from = job.next();
            if from >= job.part.end {
                return Ok(());
            }
            let error = match self.part_attempt(&job, first.take()).await {
                Ok(()) => continue,
                Err(error) => error,
            };
            if job.next() > from {
                failures = 0;
            }
            if !is_transient(&error) || failures >= self.config.max_retries {
                return Err(error);
            }
            failures += 1;
            tokio::time::sleep(self.backoff(failures)).await;
        }
    }

    /// One request for a part's missing bytes (`response`, if given, is the answer to it);
    /// whatever arrives before a failure is written.
    async fn part_attempt(
        &self,
        job: &PartJob<'_>,
        response: Option<reqwest::Response>,
    ) -> Result<(), PullError> {
        let mut at = job.next();
        let end = job.part.end;
        let response = match response {
            Some(response) => response,
            None => {
                let missing = Part {
                    done: at - job.part.start,
                    ..job.part
                };
                self.send_range(job.url, &job.digest, missing).await?
            }
        };
        if response.status() != StatusCode::PARTIAL_CONTENT {
            return Err(PullError::RangesUnsupported {
                url: job.url.to_owned(),
            });
        }
        let mut stream = response.bytes_stream();
        let mut buf = Vec::with_capacity(WRITE_BUF);
        let stall = self.config.stall_timeout;
        let outcome = loop {
            let chunk = match tokio::time::timeout(stall, stream.next()).await {
                Err(_) => {
                    break Err(PullError::Stalled {
                        url: job.url.to_owned(),
                        stalled: stall,
                    })
                }
                // The body ended early without an error: treat as a cut connection.
                Ok(None) => {
                    break Err(PullError::Status {
                        url: job.url.to_owned(),
                        status: 502,
                    })
                }
                Ok(Some(Err(source))) => break Err(http_error(job.url, source)),
                Ok(Some(Ok(chunk))) => chunk,
            };
            // A server may send past the part's end; those bytes belong to the next part.
            let room = end - at - buf.len() as u64;
            let take = usize::try_from(room).map_or(chunk.len(), |room| room.min(chunk.len()));
            buf.extend_from_slice(&chunk[..take]);
            let finished = at + buf.len() as u64 == end;
            if buf.len() >= WRITE_BUF || finished {
                buf = write_part(job, &mut at, buf).await?;
            }
            if finished {
                break Ok(());
            }
        };
        // What arrived before a failure is valid: keep it.
        if !buf.is_empty() {
            write_part(job, &mut at, buf).await?;
        }
        outcome
    }

    /// Requests the missing bytes of `part`. A `206` must start where asked; `200` (a server
    /// that ignores `Range`) is returned for the caller to judge.
    async fn send_range(
        &self,
        url: &str,
        digest: &BlobDigest,
        part: Part,
    ) -> Result<reqwest::Response, PullError> {
        let start = part.next();
        let last = part.end.saturating_sub(1);
        let response = self
            .client
            .get(url)
            .header(reqwest::header::RANGE, format!("bytes={start}-{last}"))
            .send()
            .await
            .map_err(|source| http_error(url, source))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(PullError::BlobNotFound { digest: *digest });
        }
        if status == StatusCode::PARTIAL_CONTENT {
            let content_range = response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok());
            if content_range.and_then(range_start) != Some(start) {
                return Err(PullError::BadRange {
                    url: url.to_owned(),
                    start,
                    content_range: content_range.map(str::to_owned),
                });
            }
            return Ok(response);
        }
        if status != StatusCode::OK {
            return Err(PullError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        Ok(response)
    }
}

/// The first byte of a `Content-Range: bytes <first>-<last>/<size>` header.
fn range_start(content_range: &str) -> Option<u64> {
    let (first, _) = content_range.strip_prefix("bytes ")?.split_once('-')?;
    first.trim().parse().ok()
}

/// Writes `buf` at `*at`, advances `*at` and the part's count, and reports the bytes.
/// Returns the emptied buffer for reuse.
async fn write_part(job: &PartJob<'_>, at: &mut u64, buf: Vec<u8>) -> Result<Vec<u8>, PullError> {
    let file = Arc::clone(&job.file);
    let offset = *at;
    let mut buf =
        tokio::task::spawn_blocking(move || write_all_at(&file.file, &buf, offset).map(|()| buf))
            .await
            .map_err(PullError::Task)?
            .map_err(|e| io_error("write", job.partial, e))?;
    let n = buf.len() as u64;
    *at += n;
    job.done[job.idx].fetch_add(n, Ordering::Release);
    // The driver is gone only when the download is being dropped.
    let _ = job.written.send(n);
    buf.clear();
    Ok(buf)
}

/// Copies the parts' counts into `state`.
fn snapshot(state: &mut PartsState, done: &[AtomicU64]) {
    for (part, done) in state.parts.iter_mut().zip(done) {
        part.done = done.load(Ordering::Acquire);
    }
}

/// Syncs the partial file, then saves `state` (taken before the sync) as the sidecar.
async fn save(
    file: &Arc<LockedFile>,
    state: &PartsState,
    files: &BlobFiles,
) -> Result<(), PullError> {
    let file = Arc::clone(file);
    let state = state.clone();
    let files = files.clone();
    tokio::task::spawn_blocking(move || {
        file.file
            .sync_data()
            .map_err(|e| io_error("sync", &files.partial, e))?;
        state.save(&files.sidecar)
    })
    .await
    .map_err(PullError::Task)?
}

/// Writes all of `buf` at `offset` without moving a shared cursor.
#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

/// Writes all of `buf` at `offset` (Windows' positioned writes move the cursor, which no
/// one else uses).
#[cfg(windows)]
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::range_start;

    #[test]
    fn parses_content_range() {
        assert_eq!(range_start("bytes 100-199/1000"), Some(100));
        assert_eq!(range_start("bytes 0-0/*"), Some(0));
        assert_eq!(range_start("bytes */1000"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }
}
