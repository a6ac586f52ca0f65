//! The model store: content-addressed blobs and named manifests in Ollama's folder layout.
//!
//! ```text
//! <root>/
//!   blobs/sha256-<64 hex>                      # content, named by its SHA-256
//!   manifests/<host>/<namespace>/<model>/<tag> # Docker v2 manifest naming the blobs
//! ```
//!
//! This module owns every file under the root: writing blobs so that only verified content
//! becomes visible, writing manifests atomically, listing, copying and deleting them, and
//! pruning unused blobs and stale temporary files. It is what Ollama's `manifest` package and
//! `server/images.go` do on disk, so the root may be an Ollama models folder. It knows nothing
//! about the network (see [`crate::pull`]), the SQLite index or GGUF contents, and it never
//! reads environment variables: the caller passes the root.
//!
//! File names under `blobs/` and what [`Store::prune`] does with them:
//!
//! | name                               | what                                  | pruned when |
//! |------------------------------------|---------------------------------------|-------------|
//! | `sha256-<hex>`                     | a verified blob                       | no manifest refers to it and it is older than [`PruneOptions::blob_grace`] |
//! | `sha256-<hex>-partial`, `-partial-<n>`, `-hlpartial`, `-hlpartial.parts`, `-hlpartial.lock` | a pull in progress (Ollama's, ours) | all files of that digest untouched for [`PruneOptions::stale_after`] |
//! | `.tmp-*`                           | a blob being written by this module   | untouched for [`PruneOptions::stale_after`] |
//! | other `sha256-*`                   | temporary files Ollama left behind    | untouched for [`PruneOptions::stale_after`] |
//! | anything else                      | not ours                              | never |
//!
//! A pull in progress writes to its partial files at least every few seconds (its stall
//! timeout is far below a day), so the default `stale_after` of 24 hours never removes a
//! live pull's files; it removes those of a pull that stopped a day ago, which then starts
//! that blob over. The blob grace period (1 hour, as Ollama's `layerPruneGracePeriod`)
//! protects blobs written by a `create` or `pull` whose manifest is not written yet;
//! writers that reuse an existing blob touch it ([`Store::touch_blob`]) for the same reason.
//!
//! # Invariants
//!
//! - A file named `blobs/sha256-<hex>` exists only with content whose SHA-256 is `<hex>`:
//!   blobs are written to a temporary file in `blobs/`, synced, verified, then renamed. Two
//!   writers of the same blob both rename identical content, so neither can corrupt it.
//! - A manifest is written last, after every blob it names is present, atomically
//!   (temporary file, sync, rename, sync of the directory): readers see the old manifest or
//!   the new one, never a partial one.
//! - Nothing in this module deletes a blob that a readable manifest names; a manifest that
//!   cannot be parsed still protects every `sha256:<hex>` its text contains.
//! - Unrelated files and directories under the root are ignored, never deleted (except the
//!   stale temporary files in the table above).

mod prune;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::digest::{BlobDigest, DigestWriter};
use crate::manifest::{Manifest, ManifestError};
use crate::name::{ModelName, MANIFESTS_DIR};

pub use prune::{PruneOptions, PruneReport};

/// The directory under the root that holds the blobs.
pub const BLOBS_DIR: &str = "blobs";
/// The prefix of temporary files this module creates.
const TEMP_PREFIX: &str = ".tmp-";
/// The buffer size for streaming blobs.
const COPY_BUF: usize = 1 << 20;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done, e.g. `write` or `rename`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No manifest has this name.
    #[error("model '{}' not found", name.display_shortest())]
    ModelNotFound {
        /// The name looked up (boxed to keep the error small).
        name: Box<ModelName>,
    },
    /// The blob is not in the store.
    #[error("blob {digest} not found")]
    BlobNotFound {
        /// Its digest.
        digest: BlobDigest,
    },
    /// Content did not hash to the digest it was announced with.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The announced digest.
        expected: BlobDigest,
        /// The digest of the bytes received.
        actual: BlobDigest,
    },
    /// A manifest names a blob the store lacks, so it was not written.
    #[error("manifest for '{}' names blob {digest}, which is not in the store", name.display_shortest())]
    MissingBlob {
        /// The manifest's name (boxed to keep the error small).
        name: Box<ModelName>,
        /// The missing blob.
        digest: BlobDigest,
    },
    /// A manifest file is not a valid manifest.
    #[error("invalid manifest {}", path.display())]
    BadManifest {
        /// The manifest file.
        path: PathBuf,
        /// Why it is invalid.
        #[source]
        source: ManifestError,
    },
}

impl StoreError {
    /// An [`StoreError::Io`] builder for `map_err`.
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
        move |source| StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A blob that [`Store::write_blob_from_reader`] or [`Store::import_file`] stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its digest.
    pub digest: BlobDigest,
    /// Its size in bytes.
    pub size: u64,
    /// `false` when the store already had it (Ollama's "using existing layer").
    pub created: bool,
}

/// A manifest read from the store.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredManifest {
    /// Its name, with the casing found on disk.
    pub name: ModelName,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The SHA-256 of the manifest file's bytes (Ollama's model digest in `list`).
    pub digest: BlobDigest,
    /// The manifest file's modification time (Ollama's `modified_at`).
    pub modified: SystemTime,
}

/// A file under `manifests/` at a valid name's path that could not be read as a manifest.
#[derive(Debug)]
pub struct BrokenManifest {
    /// The name its path spells.
    pub name: ModelName,
    /// Why it could not be read.
    pub error: StoreError,
}

/// Everything [`Store::list_manifests`] found.
#[derive(Debug, Default)]
pub struct ManifestList {
    /// The readable manifests, sorted by name.
    pub manifests: Vec<StoredManifest>,
    /// The manifest files that could not be read or parsed, sorted by name.
    pub broken: Vec<BrokenManifest>,
}

/// A model store rooted at a directory (see the module docs for the layout).
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating `root/blobs` and `root/manifests` if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let store = Store { root: root.into() };
        for dir in [store.blobs_dir(), store.manifests_dir()] {
            fs::create_dir_all(&dir).map_err(StoreError::io("create directory", &dir))?;
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/blobs`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join(BLOBS_DIR)
    }

    /// `root/manifests`.
    pub fn manifests_dir(&self) -> PathBuf {
        self.root.join(MANIFESTS_DIR)
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &BlobDigest) -> PathBuf {
        self.blobs_dir().join(digest.file_name())
    }

    /// Where the manifest of `name` lives, exactly as spelled (whether or not it exists).
    pub fn manifest_path(&self, name: &ModelName) -> PathBuf {
        self.root.join(name.manifest_path())
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, digest: &BlobDigest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a present blob.
    pub fn blob_size(&self, digest: &BlobDigest) -> Result<u64, StoreError> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound { digest: *digest })
            }
            Err(e) => Err(StoreError::io("stat", &path)(e)),
        }
    }

    /// Sets a present blob's modification time to now, so that [`Store::prune`] leaves it
    /// alone for the grace period while a manifest that will name it is being made.
    pub fn touch_blob(&self, digest: &BlobDigest) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        let file = File::options()
            .append(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::BlobNotFound { digest: *digest },
                _ => StoreError::io("open", &path)(e),
            })?;
        file.set_modified(SystemTime::now())
            .map_err(StoreError::io("touch", &path))
    }

    /// Streams `reader` into a new blob and returns its digest.
    ///
    /// The bytes go to a temporary file in `blobs/` while being hashed; the file is synced,
    /// its digest checked against `expected` (if given), and only then renamed to
    /// `sha256-<hex>`. On any error the temporary file is removed and nothing becomes
    /// visible. When `expected` is given and that blob is already present, the reader is not
    /// read at all and the blob is touched.
    pub fn write_blob_from_reader(
        &self,
        reader: &mut dyn Read,
        expected: Option<&BlobDigest>,
    ) -> Result<StoredBlob, StoreError> {
        if let Some(expected) = expected {
            if let Some(existing) = self.existing_blob(expected)? {
                return Ok(existing);
            }
        }
        let blobs = self.blobs_dir();
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&blobs)
            .map_err(StoreError::io("create a temporary file in", &blobs))?;
        let temp_path = temp.path().to_path_buf();
        let mut hasher = DigestWriter::new();
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("read the source of", &temp_path)(e)),
            };
            hasher.update(&buf[..n]);
            temp.write_all(&buf[..n])
                .map_err(StoreError::io("write", &temp_path))?;
        }
        temp.as_file()
            .sync_all()
            .map_err(StoreError::io("sync", &temp_path))?;
        let size = hasher.n_bytes();
        let actual = hasher.finish();
        if let Some(expected) = expected {
            if *expected != actual {
                return Err(StoreError::DigestMismatch {
                    expected: *expected,
                    actual,
                });
            }
        }
        let created = !self.has_blob(&actual);
        self.publish_blob(temp.into_temp_path(), &actual)?;
        Ok(StoredBlob {
            digest: actual,
            size,
            created,
        })
    }

    /// Adds the file at `path` as a blob (copying it; the source is left alone).
    ///
    /// The file is hashed first; a blob already present is only touched, so importing a
    /// multi-gigabyte model twice copies it once. The copy is hashed again while written,
    /// so a source changed in between is refused with [`StoreError::DigestMismatch`].
    pub fn import_file(&self, path: &Path) -> Result<StoredBlob, StoreError> {
        let open = || File::open(path).map_err(StoreError::io("open", path));
        let mut hasher = DigestWriter::new();
        io::copy(&mut open()?, &mut hasher).map_err(StoreError::io("read", path))?;
        let digest = hasher.finish();
        self.write_blob_from_reader(&mut open()?, Some(&digest))
    }

    /// The blob, touched, if present.
    fn existing_blob(&self, digest: &BlobDigest) -> Result<Option<StoredBlob>, StoreError> {
        match self.touch_blob(digest) {
            Ok(()) => Ok(Some(StoredBlob {
                digest: *digest,
                size: self.blob_size(digest)?,
                created: false,
            })),
            Err(StoreError::BlobNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes a verified temporary file the blob `digest`: permissions as Ollama's (0644),
    /// atomic rename, then a sync of `blobs/` so the rename survives a crash.
    pub(crate) fn publish_blob(
        &self,
        temp: tempfile::TempPath,
        digest: &BlobDigest,
    ) -> Result<(), StoreError> {
        set_readable(&temp)?;
        let dest = self.blob_path(digest);
        temp.persist(&dest)
            .map_err(|e| StoreError::io("rename a temporary file to", &dest)(e.error))?;
        sync_dir(&self.blobs_dir())
    }

    /// The name under which `name` is stored: `name` itself if its manifest exists, else the
    /// stored name equal to it ignoring ASCII case (as Ollama's `getExistingName`), else
    /// `name` unchanged.
    pub fn resolve(&self, name: &ModelName) -> Result<ModelName, StoreError> {
        if self.manifest_path(name).is_file() {
            return Ok(name.clone());
        }
        Ok(self
            .manifest_names()?
            .into_iter()
            .find(|stored| stored.eq_ignore_case(name))
            .unwrap_or_else(|| name.clone()))
    }

    /// Reads the manifest of `name` (looked up as [`Store::resolve`] does).
    pub fn read_manifest(&self, name: &ModelName) -> Result<StoredManifest, StoreError> {
        let name = self.resolve(name)?;
        self.read_manifest_exact(&name)
    }

    /// The raw bytes of the manifest of `name` (looked up as [`Store::resolve`] does).
    pub fn read_manifest_bytes(&self, name: &ModelName) -> Result<Vec<u8>, StoreError> {
        let name = self.resolve(name)?;
        self.read_bytes_of(&name).map(|(bytes, _)| bytes)
    }

    /// The manifest file's bytes and modification time.
    fn read_bytes_of(&self, name: &ModelName) -> Result<(Vec<u8>, SystemTime), StoreError> {
        let path = self.manifest_path(name);
        let not_found = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => StoreError::ModelNotFound {
                name: Box::new(name.clone()),
            },
            _ => StoreError::io("read", &path)(e),
        };
        let mut file = File::open(&path).map_err(not_found)?;
        let meta = file.metadata().map_err(StoreError::io("stat", &path))?;
        if !meta.is_file() {
            return Err(StoreError::ModelNotFound {
                name: Box::new(name.clone()),
            });
        }
        let modified = meta.modified().map_err(StoreError::io("stat", &path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(StoreError::io("read", &path))?;
        Ok((bytes, modified))
    }

    /// Reads the manifest at exactly `name`'s path.
    fn read_manifest_exact(&self, name: &ModelName) -> Result<StoredManifest, StoreError> {
        let (bytes, modified) = self.read_bytes_of(name)?;
        let manifest = Manifest::from_json(&bytes).map_err(|source| StoreError::BadManifest {
            path: self.manifest_path(name),
            source,
        })?;
        Ok(StoredManifest {
            name: name.clone(),
            manifest,
            digest: BlobDigest::of_bytes(&bytes),
            modified,
        })
    }

    /// Writes `manifest` as `name`, in Ollama's encoding, and returns the manifest digest.
    ///
    /// Every blob it names must be present ([`StoreError::MissingBlob`] otherwise). A name
    /// stored with other casing is overwritten in place, as Ollama does.
    pub fn write_manifest(
        &self,
        name: &ModelName,
        manifest: &Manifest,
    ) -> Result<BlobDigest, StoreError> {
        self.write_checked(name, manifest, &manifest.to_json())
    }

    /// Writes manifest bytes as received (a pull keeps the registry's bytes, so the model
    /// digest matches the registry's), after parsing them and checking their blobs.
    pub fn write_manifest_bytes(
        &self,
        name: &ModelName,
        bytes: &[u8],
    ) -> Result<BlobDigest, StoreError> {
        let manifest = Manifest::from_json(bytes).map_err(|source| StoreError::BadManifest {
            path: self.manifest_path(name),
            source,
        })?;
        self.write_checked(name, &manifest, bytes)
    }

    /// Checks the blobs of `manifest`, then writes `bytes` atomically.
    fn write_checked(
        &self,
        name: &ModelName,
        manifest: &Manifest,
        bytes: &[u8],
    ) -> Result<BlobDigest, StoreError> {
        if let Some(digest) = manifest.digests().find(|d| !self.has_blob(d)) {
            return Err(StoreError::MissingBlob {
                name: Box::new(name.clone()),
                digest,
            });
        }
        let name = self.resolve(name)?;
        let path = self.manifest_path(&name);
        write_atomic(&path, bytes)?;
        Ok(BlobDigest::of_bytes(bytes))
    }

    /// Copies the manifest of `src` to `dst` byte for byte (Ollama's `cp`); the blobs are
    /// shared. Returns the name written.
    pub fn copy(&self, src: &ModelName, dst: &ModelName) -> Result<ModelName, StoreError> {
        let bytes = self.read_manifest_bytes(src)?;
        self.write_manifest_bytes(dst, &bytes)?;
        self.resolve(dst)
    }

    /// Deletes the manifest of `name` and the directories it leaves empty; its blobs stay
    /// until [`Store::prune`]. Returns what was deleted (the manifest is parsed first when
    /// possible; a broken manifest is deleted all the same and reported as `None`).
    pub fn delete_manifest(&self, name: &ModelName) -> Result<Option<StoredManifest>, StoreError> {
        let name = self.resolve(name)?;
        let stored = match self.read_manifest_exact(&name) {
            Ok(stored) => Some(stored),
            Err(StoreError::BadManifest { .. }) => None,
            Err(e) => return Err(e),
        };
        let path = self.manifest_path(&name);
        fs::remove_file(&path).map_err(StoreError::io("delete", &path))?;
        self.remove_empty_parents(&path);
        Ok(stored)
    }

    /// Removes empty directories from `path`'s parent up to (not including) `manifests/`.
    /// Failures are ignored: a directory another writer just filled stays.
    fn remove_empty_parents(&self, path: &Path) {
        let top = self.manifests_dir();
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == top || !d.starts_with(&top) || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    /// The names of every file at a valid manifest path, sorted. Files and directories at
    /// other depths or with invalid names are skipped.
    pub fn manifest_names(&self) -> Result<Vec<ModelName>, StoreError> {
        let top = self.manifests_dir();
        let mut names = Vec::new();
        let mut stack = vec![(top.clone(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound && depth > 0 => continue,
                Err(e) => return Err(StoreError::io("read directory", &dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(StoreError::io("read directory", &dir))?;
                let path = entry.path();
                // `metadata` follows symbolic links, as Ollama's `os.Stat` does.
                let Ok(meta) = fs::metadata(&path) else {
                    continue;
                };
                if depth < 3 && meta.is_dir() {
                    stack.push((path, depth + 1));
                } else if depth == 3 && meta.is_file() {
                    let rel = path.strip_prefix(&top).unwrap_or(&path);
                    if let Ok(name) = ModelName::from_manifest_path(rel) {
                        names.push(name);
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Reads every manifest. Unreadable or invalid ones are reported in
    /// [`ManifestList::broken`]; only failing to walk `manifests/` itself is an error.
    pub fn list_manifests(&self) -> Result<ManifestList, StoreError> {
        let mut list = ManifestList::default();
        for name in self.manifest_names()? {
            match self.read_manifest_exact(&name) {
                Ok(stored) => list.manifests.push(stored),
                // Deleted between the walk and the read: not there, not broken.
                Err(StoreError::ModelNotFound { .. }) => {}
                Err(error) => list.broken.push(BrokenManifest { name, error }),
            }
        }
        Ok(list)
    }

    /// Deletes those of `candidates` (the blobs of a manifest just deleted) that no manifest
    /// names, at once and whatever their age, as Ollama's `rm` does; blobs another manifest
    /// uses stay. A create that is about to reuse one of them fails cleanly at
    /// [`Store::write_manifest`] ([`StoreError::MissingBlob`]) rather than writing a manifest
    /// with a hole.
    pub fn remove_unused_blobs(
        &self,
        candidates: &[BlobDigest],
    ) -> Result<PruneReport, StoreError> {
        prune::remove_unused(self, candidates)
    }

    /// Deletes unused blobs and stale temporary files (see the module docs for the rules).
    pub fn prune(&self, options: &PruneOptions) -> Result<PruneReport, StoreError> {
        prune::prune(self, options)
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced,
/// renamed over `path`, then the directory synced. Creates missing parent directories.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))?;
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(StoreError::io("create a temporary file in", dir))?;
    temp.write_all(bytes)
        .map_err(StoreError::io("write", temp.path()))?;
    temp.as_file()
        .sync_all()
        .map_err(StoreError::io("sync", temp.path()))?;
    let temp = temp.into_temp_path();
    set_readable(&temp)?;
    temp.persist(path)
        .map_err(|e| StoreError::io("rename a temporary file to", path)(e.error))?;
    sync_dir(dir)
}

/// Gives a new file Ollama's mode 0644 (temporary files start as 0600).
fn set_readable(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644))
            .map_err(StoreError::io("set permissions of", path))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Syncs a directory so that a rename in it survives a crash (a no-op where directories
/// cannot be opened, as on Windows).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(StoreError::io("sync directory", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
