//! Pruning: deleting blobs no manifest names and temporary files nobody will finish.
//!
//! The rules are in the table of the parent module's docs.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::{Store, StoreError, TEMP_PREFIX};
use crate::digest::BlobDigest;

/// How old files must be before [`Store::prune`] deletes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PruneOptions {
    /// An unreferenced blob younger than this is kept: its manifest may be about to be
    /// written. Default 1 hour (Ollama's `layerPruneGracePeriod`).
    pub blob_grace: Duration,
    /// A temporary or partial file untouched for this long belongs to a write or pull that
    /// stopped, and is deleted. Default 24 hours.
    pub stale_after: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            blob_grace: Duration::from_secs(60 * 60),
            stale_after: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// What [`Store::prune`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// The unused blobs deleted, sorted.
    pub removed_blobs: Vec<BlobDigest>,
    /// The stale temporary and partial files deleted, sorted.
    pub removed_temp_files: Vec<PathBuf>,
    /// The bytes freed by both.
    pub freed_bytes: u64,
}

/// What a file under `blobs/` is.
enum BlobFile {
    /// `sha256-<hex>`.
    Blob(BlobDigest),
    /// `sha256-<hex>-*` (`-partial`, `-partial-<n>`, `-hlpartial` and its `.parts` sidecar and
    /// `.lock` file): part of a pull of that blob.
    Partial(BlobDigest),
    /// Ours (`.tmp-*`) or Ollama's (`sha256-<not a digest>`).
    Temp,
    /// Not ours: never touched.
    Other,
}

/// Classifies a file name under `blobs/`.
fn classify(name: &str) -> BlobFile {
    if let Some(digest) = BlobDigest::from_file_name(name) {
        return BlobFile::Blob(digest);
    }
    if name.starts_with(TEMP_PREFIX) {
        return BlobFile::Temp;
    }
    if let Some(rest) = name.strip_prefix(BlobDigest::FILE_PREFIX) {
        // `sha256-<hex>-<anything>`: Ollama's `-partial`, `-partial-<n>` or our `-hlpartial`.
        let partial = rest
            .get(..64)
            .filter(|_| rest[64..].starts_with('-'))
            .and_then(|hex| BlobDigest::from_file_name(&format!("sha256-{hex}")));
        return match partial {
            Some(digest) => BlobFile::Partial(digest),
            None => BlobFile::Temp,
        };
    }
    BlobFile::Other
}

/// Every digest the manifests name. A manifest that does not parse protects every
/// `sha256:<hex>` in its text; one that cannot be read at all stops the prune, since what
/// it protects is unknown.
fn referenced(store: &Store) -> Result<HashSet<BlobDigest>, StoreError> {
    let mut used = HashSet::new();
    for name in store.manifest_names()? {
        match store.read_manifest_exact(&name) {
            Ok(stored) => used.extend(stored.manifest.digests()),
            // Deleted meanwhile: it protects nothing.
            Err(StoreError::ModelNotFound { .. }) => {}
            Err(StoreError::BadManifest { path, .. }) => {
                let text = fs::read(&path).map_err(StoreError::io("read", &path))?;
                used.extend(digests_in_text(&String::from_utf8_lossy(&text)));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(used)
}

/// Every `sha256:<64 hex>` in `text`.
fn digests_in_text(text: &str) -> impl Iterator<Item = BlobDigest> + '_ {
    text.match_indices(BlobDigest::PREFIX)
        .filter_map(|(at, _)| {
            let end = at + BlobDigest::PREFIX.len() + 64;
            text.get(at..end).and_then(|s| BlobDigest::parse(s).ok())
        })
}

/// How long ago `modified` was (zero for times in the future).
fn age(now: SystemTime, modified: SystemTime) -> Duration {
    now.duration_since(modified).unwrap_or(Duration::ZERO)
}

/// A file under `blobs/` with its size and age.
struct Entry {
    path: PathBuf,
    size: u64,
    age: Duration,
}

/// See [`Store::prune`].
pub(super) fn prune(store: &Store, options: &PruneOptions) -> Result<PruneReport, StoreError> {
    let used = referenced(store)?;
    let dir = store.blobs_dir();
    let now = SystemTime::now();
    let mut report = PruneReport::default();
    let mut partials: BTreeMap<BlobDigest, Vec<Entry>> = BTreeMap::new();
    let mut temps = Vec::new();
    let entries = fs::read_dir(&dir).map_err(StoreError::io("read directory", &dir))?;
    for entry in entries {
        let entry = entry.map_err(StoreError::io("read directory", &dir))?;
        let path = entry.path();
        // A file deleted meanwhile (another prune, a finished pull) is skipped.
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let modified = meta.modified().map_err(StoreError::io("stat", &path))?;
        let file = Entry {
            age: age(now, modified),
            size: meta.len(),
            path: path.clone(),
        };
        match classify(file_name) {
            BlobFile::Blob(digest) => {
                if !used.contains(&digest) && file.age >= options.blob_grace {
                    remove(&file)?;
                    report.removed_blobs.push(digest);
                    report.freed_bytes += file.size;
                }
            }
            BlobFile::Partial(digest) => partials.entry(digest).or_default().push(file),
            BlobFile::Temp => temps.push(file),
            BlobFile::Other => {}
        }
    }
    // A pull's files go together: all of them are stale, or none is deleted.
    for files in partials.into_values() {
        if files.iter().all(|f| f.age >= options.stale_after) {
            temps.extend(files);
        }
    }
    for file in temps {
        if file.age >= options.stale_after {
            remove(&file)?;
            report.removed_temp_files.push(file.path);
            report.freed_bytes += file.size;
        }
    }
    report.removed_blobs.sort();
    report.removed_temp_files.sort();
    Ok(report)
}

/// See [`Store::remove_unused_blobs`].
pub(super) fn remove_unused(
    store: &Store,
    candidates: &[BlobDigest],
) -> Result<PruneReport, StoreError> {
    let used = referenced(store)?;
    let mut report = PruneReport::default();
    for digest in candidates {
        if used.contains(digest) || report.removed_blobs.contains(digest) {
            continue;
        }
        let path = store.blob_path(digest);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        remove(&Entry {
            path,
            size: meta.len(),
            age: Duration::ZERO,
        })?;
        report.removed_blobs.push(*digest);
        report.freed_bytes += meta.len();
    }
    report.removed_blobs.sort();
    Ok(report)
}

/// Deletes one file; one already gone is fine.
fn remove(file: &Entry) -> Result<(), StoreError> {
    match fs::remove_file(&file.path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(StoreError::io("delete", &file.path)(e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_names() {
        let d = BlobDigest::of_bytes(b"x");
        assert!(matches!(classify(&d.file_name()), BlobFile::Blob(x) if x == d));
        assert!(
            matches!(classify(&format!("{}-partial", d.file_name())), BlobFile::Partial(x) if x == d)
        );
        assert!(
            matches!(classify(&format!("{}-partial-3", d.file_name())), BlobFile::Partial(x) if x == d)
        );
        assert!(
            matches!(classify(&format!("{}-hlpartial", d.file_name())), BlobFile::Partial(x) if x == d)
        );
        assert!(matches!(classify(".tmp-abc"), BlobFile::Temp));
        assert!(matches!(classify("sha256-1234567"), BlobFile::Temp));
        assert!(matches!(classify("README"), BlobFile::Other));
        assert!(matches!(classify(".DS_Store"), BlobFile::Other));
    }

    #[test]
    fn finds_digests_in_broken_text() {
        let a = BlobDigest::of_bytes(b"a");
        let b = BlobDigest::of_bytes(b"b");
        let text = format!("{{\"x\":\"{a}\", garbage {b}, sha256:short, sha256:");
        let found: Vec<_> = digests_in_text(&text).collect();
        assert_eq!(found, vec![a, b]);
    }
}
