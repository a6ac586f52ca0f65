//! Pulling models from a registry: the protocol registry.ollama.ai and Hugging Face's `hf.co`
//! endpoint both speak (Docker distribution v2, as Ollama's `server/images.go` and
//! `server/download.go` use it).
//!
//! 1. `GET <base>/v2/<namespace>/<model>/manifests/<tag>` with
//!    `Accept: application/vnd.docker.distribution.manifest.v2+json`.
//! 2. For each blob the store lacks: take the blob's cross-process lock (below), then
//!    `GET <base>/v2/<namespace>/<model>/blobs/<digest>`, following redirects (the registry
//!    answers with a 307 to a CDN URL), into `blobs/sha256-<hex>-hlpartial`.
//!    - One stream, resumed from the partial file's length with a `Range` request, for blobs
//!      below [`PullConfig::parallel_threshold`] and for servers that ignore `Range`.
//!    - [`PullConfig::n_parts`] concurrent range requests for larger blobs (as Ollama's
//!      `blobDownload`), each written at its offset. Each part's progress is kept in the
//!      sidecar file `sha256-<hex>-hlpartial.parts` (JSON, replaced atomically), so an
//!      interrupted download resumes every part from what is on disk. The first part's
//!      request doubles as the probe: a `206` answer starts the other parts, a `200` answer
//!      is streamed as the single download.
//! 3. `verifying sha256 digest`: the finished file is hashed; only a match is renamed to
//!    `blobs/sha256-<hex>`. A mismatch deletes the partial file.
//! 4. `writing manifest`: the registry's manifest bytes are written as received, last, so
//!    the model digest equals the registry's.
//!
//! This module owns the HTTP side and the partial, sidecar and lock files; the store owns
//! everything visible. The base URL of each registry host is configuration ([`PullConfig`]),
//! so tests can point any host at a server on 127.0.0.1; it never reads environment variables.
//!
//! Partial files are named `-hlpartial`, not Ollama's `-partial`: Ollama's partial file is
//! preallocated to the full size and described by `-partial-<n>` JSON files in its own
//! format, so resuming one would be wrong, and Ollama would misread ours. The store's prune
//! treats all of them as a pull in progress until untouched for a day.
//!
//! Concurrent pulls of one blob: within a [`Puller`] an in-process mutex serialises them;
//! across pullers and processes an exclusive advisory lock (`flock` through
//! [`std::fs::File::try_lock`]) on `sha256-<hex>-hlpartial.lock` does. A pull that finds either
//! taken reports [`PullEvent::Waiting`], waits (polling the file lock), and then finds the blob
//! present (every present blob is verified) or takes over the partial download. The lock
//! holder deletes the lock file before unlocking; a waiter that then locks a deleted file
//! notices (the path no longer names the inode it locked) and starts over, so two pullers
//! never both hold the lock of one blob.
//!
//! Retries: connection errors, cut connections, HTTP 5xx and stalls (no byte for
//! [`PullConfig::stall_timeout`]) are retried with exponential backoff up to
//! [`PullConfig::max_retries`] times in a row; an attempt that made progress resets the count.
//! In a parallel download each part retries on its own, from its own progress. 404 and other
//! 4xx answers are not retried.
//!
//! Not done yet: registry authentication (tokens, ed25519 challenges) and push.
//!
//! # Invariants
//!
//! - Nothing becomes visible in the store before its SHA-256 is verified, and the manifest is
//!   written only after every blob it names is present.
//! - Without a sidecar, a partial file only ever holds a prefix of the blob as the server sent
//!   it; a server that ignores `Range` makes the download start over, never appends a second
//!   copy. With a sidecar, each part's range of the partial file starts with at least the
//!   sidecar's `done` bytes of that range: the sidecar is written only after the data it
//!   counts was synced, it is written before the first byte outside the prefix, and it is
//!   removed only after the partial file was verified or deleted. (After a power loss an
//!   unsynced tail may be garbage, which verification catches.)
//! - One blob is downloaded by at most one puller at a time, in this process or any other
//!   using the same store: the download happens only while holding the blob's lock file.
mod download;
mod lock;
mod parallel;
mod parts;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::digest::BlobDigest;
use crate::manifest::{ManifestError, MANIFEST_MEDIA_TYPE};
use crate::name::ModelName;
use crate::store::{Store, StoreError, StoredManifest};

/// What went wrong during a pull.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PullError {
    /// The registry has no such model or tag (HTTP 404 on the manifest).
    #[error("model '{}' not found in the registry", name.display_shortest())]
    ManifestNotFound {
        /// The name pulled.
        name: Box<ModelName>,
    },
    /// The registry has no such blob (HTTP 404 on a blob).
    #[error("blob {digest} not found in the registry")]
    BlobNotFound {
        /// The blob.
        digest: BlobDigest,
    },
    /// The registry answered with an error status.
    #[error("registry answered HTTP {status} for {url}")]
    Status {
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The request failed (connection, TLS, cut body...).
    #[error("request to {url} failed")]
    Http {
        /// The request URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// No byte arrived for the stall timeout.
    #[error("download from {url} stalled for {stalled:?}")]
    Stalled {
        /// The request URL.
        url: String,
        /// How long nothing arrived.
        stalled: Duration,
    },
    /// The server sent more bytes than the manifest announced.
    #[error("blob {digest} is larger than the {size} bytes the manifest announces")]
    TooLarge {
        /// The blob.
        digest: BlobDigest,
        /// The announced size.
        size: u64,
    },
    /// The downloaded bytes do not hash to the blob's digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest in the manifest.
        expected: BlobDigest,
        /// The digest of what was downloaded.
        actual: BlobDigest,
    },
    /// The manifest the registry sent is not valid.
    #[error("the registry sent an invalid manifest for '{}'", name.display_shortest())]
    BadManifest {
        /// The name pulled.
        name: Box<ModelName>,
        /// Why it is invalid.
        #[source]
        source: ManifestError,
    },
    /// The base URL uses plain http but [`PullConfig::insecure`] is off.
    #[error("refusing plain http to {url} (allow it with insecure)")]
    Insecure {
        /// The base URL.
        url: String,
    },
    /// A local file operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store refused an operation.
    #[error("model store operation failed")]
    Store(#[source] StoreError),
    /// A range request was answered with a range other than the one asked for.
    #[error("{url} answered the range request for bytes from {start} with another range")]
    BadRange {
        /// The request URL.
        url: String,
        /// The first byte asked for.
        start: u64,
        /// The `Content-Range` header received, if any.
        content_range: Option<String>,
    },
    /// A server that answered range requests before answered one with the whole blob. The
    /// download then falls back to one stream; this error only escapes if that fails too.
    #[error("{url} stopped answering range requests")]
    RangesUnsupported {
        /// The request URL.
        url: String,
    },
    /// A blocking task panicked or was cancelled.
    #[error("pull task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// How to reach registries and how patient to be.
#[derive(Clone, Debug)]
pub struct PullConfig {
    /// Base URLs by registry host (`registry.ollama.ai` → `https://registry.ollama.ai`). A host
    /// not listed is reached at `https://<host>`.
    pub registries: HashMap<String, String>,
    /// Allows plain `http://` base URLs, and turns `https://<host>` defaults into `http://`
    /// (Ollama's `--insecure`).
    pub insecure: bool,
    /// How long a download may receive nothing before it is retried.
    pub stall_timeout: Duration,
    /// Consecutive failed attempts (without progress) before giving up.
    pub max_retries: u32,
    /// The first backoff delay; each further retry doubles it, up to `max_backoff`.
    pub backoff: Duration,
    /// The longest backoff delay.
    pub max_backoff: Duration,
    /// Connection timeout per request.
    pub connect_timeout: Duration,
    /// Blobs of at least this many bytes are downloaded in [`PullConfig::n_parts`] parallel
    /// range requests, when the server answers them. Default 64 MiB.
    pub parallel_threshold: u64,
    /// How many range requests a large blob is split into (1 turns parallel downloads off).
    /// Default 8.
    pub n_parts: usize,
}

impl Default for PullConfig {
    fn default() -> Self {
        let registries = [
            ("registry.ollama.ai", "https://registry.ollama.ai"),
            ("hf.co", "https://hf.co"),
        ]
        .into_iter()
        .map(|(h, u)| (h.to_owned(), u.to_owned()))
        .collect();
        PullConfig {
            registries,
            insecure: false,
            stall_timeout: Duration::from_secs(30),
            max_retries: 6,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            parallel_threshold: 64 << 20,
            n_parts: 8,
        }
    }
}

impl PullConfig {
    /// The base URL of `host`'s registry, without a trailing slash.
    pub fn base_url(&self, host: &str) -> Result<String, PullError> {
        let url = match self.registries.get(host) {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.insecure => format!("http://{host}"),
            None => format!("https://{host}"),
        };
        if url.starts_with("http://") && !self.insecure {
            return Err(PullError::Insecure { url });
        }
        Ok(url)
    }
}

/// One step of a pull, as Ollama's progress stream reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullEvent {
    /// Fetching the manifest.
    PullingManifest,
    /// Downloading (or found) a blob: `completed` of `total` bytes.
    Pulling {
        /// The blob.
        digest: BlobDigest,
        /// Its size.
        total: u64,
        /// Bytes present so far.
        completed: u64,
    },
    /// Another pull (in this process or another one) is downloading the blob; this one waits
    /// for it to finish, then uses its result.
    Waiting {
        /// The blob.
        digest: BlobDigest,
    },
    /// Hashing a downloaded blob.
    Verifying {
        /// The blob.
        digest: BlobDigest,
    },
    /// Writing the manifest.
    WritingManifest,
    /// Done.
    Success,
}

impl PullEvent {
    /// The `status` text of Ollama's progress stream.
    pub fn status(&self) -> String {
        match self {
            PullEvent::PullingManifest => "pulling manifest".to_owned(),
            PullEvent::Pulling { digest, .. } => format!("pulling {}", digest.short()),
            PullEvent::Waiting { digest } => {
                format!("waiting for another download of {}", digest.short())
            }
            PullEvent::Verifying { .. } => "verifying sha256 digest".to_owned(),
            PullEvent::WritingManifest => "writing manifest".to_owned(),
            PullEvent::Success => "success".to_owned(),
        }
    }
}

/// Pulls models into a store. Share one (it is cheap to clone) so that concurrent pulls of the
/// same blob download it once.
#[derive(Clone, Debug)]
pub struct Puller {
    store: Store,
    config: Arc<PullConfig>,
    client: reqwest::Client,
    /// One lock per blob being downloaded (the file lock serialises pullers; this keeps the
    /// tasks of one puller from polling it against each other).
    in_flight: Arc<Mutex<HashMap<BlobDigest, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Puller {
    /// A puller for `store`.
    pub fn new(store: Store, config: PullConfig) -> Result<Self, PullError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("hyperllama/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| PullError::Http {
                url: String::new(),
                source,
            })?;
        Ok(Puller {
            store,
            config: Arc::new(config),
            client,
            in_flight: Arc::default(),
        })
    }

    /// Pulls `name`: manifest, missing blobs, verification, then the manifest is written.
    /// `progress` receives Ollama's progress events.
    pub async fn pull(
        &self,
        name: &ModelName,
        progress: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<StoredManifest, PullError> {
        let base = self.config.base_url(name.host())?;
        progress(PullEvent::PullingManifest);
        let url = format!("{base}/v2/{}/manifests/{}", name.repository(), name.tag());
        let bytes = self.fetch_manifest(name, &url).await?;
        let manifest = crate::manifest::Manifest::from_json(&bytes).map_err(|source| {
            PullError::BadManifest {
                name: Box::new(name.clone()),
                source,
            }
        })?;
        // Layers first, then the config, as Ollama does.
        let mut layers: Vec<_> = manifest.layers.iter().collect();
        layers.push(&manifest.config);
        for layer in layers {
            let blob_url = format!("{base}/v2/{}/blobs/{}", name.repository(), layer.digest);
            self.fetch_blob(&blob_url, &layer.digest, layer.size, progress)
                .await?;
        }
        progress(PullEvent::WritingManifest);
        let store = self.store.clone();
        let name = name.clone();
        let stored = tokio::task::spawn_blocking(move || {
            store.write_manifest_bytes(&name, &bytes)?;
            store.read_manifest(&name)
        })
        .await
        .map_err(PullError::Task)?
        .map_err(PullError::Store)?;
        progress(PullEvent::Success);
        Ok(stored)
    }

    /// Fetches the manifest bytes, retrying transient failures.
    async fn fetch_manifest(&self, name: &ModelName, url: &str) -> Result<Vec<u8>, PullError> {
        let mut failures = 0;
        loop {
            let result = async {
                let response = self
                    .client
                    .get(url)
                    .header(reqwest::header::ACCEPT, MANIFEST_MEDIA_TYPE)
                    .send()
                    .await
                    .map_err(|source| http_error(url, source))?;
                let status = response.status();
                if status == reqwest::StatusCode::NOT_FOUND {
                    return Err(PullError::ManifestNotFound {
                        name: Box::new(name.clone()),
                    });
                }
                if !status.is_success() {
                    return Err(PullError::Status {
                        url: url.to_owned(),
                        status: status.as_u16(),
                    });
                }
                let body = tokio::time::timeout(self.config.stall_timeout, response.bytes())
                    .await
                    .map_err(|_| PullError::Stalled {
                        url: url.to_owned(),
                        stalled: self.config.stall_timeout,
                    })?
                    .map_err(|source| http_error(url, source))?;
                Ok(body.to_vec())
            }
            .await;
            match result {
                Err(e) if is_transient(&e) && failures < self.config.max_retries => {
                    failures += 1;
                    tokio::time::sleep(self.backoff(failures)).await;
                }
                other => return other,
            }
        }
    }

    /// The delay before retry number `failures` (1-based).
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.config
            .backoff
            .saturating_mul(factor)
            .min(self.config.max_backoff)
    }

    /// The lock of one blob's download.
    fn blob_lock(&self, digest: &BlobDigest) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(*digest).or_default())
    }
}

/// An [`PullError::Http`] for `url`.
fn http_error(url: &str, source: reqwest::Error) -> PullError {
    PullError::Http {
        url: url.to_owned(),
        source,
    }
}

/// Whether a failed attempt is worth retrying.
fn is_transient(error: &PullError) -> bool {
    match error {
        PullError::Http { .. } | PullError::Stalled { .. } => true,
        PullError::Status { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}
