//! The plan and progress of a parallel download, and its sidecar file
//! `blobs/sha256-<hex>-hlpartial.parts`:
//!
//! ```json
//! {"digest":"sha256:…","size":1000,"parts":[{"start":0,"end":500,"done":120},{"start":500,"end":1000,"done":0}]}
//! ```
//!
//! Part `i` covers bytes `start..end` of the blob; the first `done` of them are in the partial
//! file at the same offsets. The sidecar is replaced atomically (temporary file, sync,
//! rename), and only after the data it counts was synced (see `pull`'s invariants).
//!
//! # Invariants
//!
//! - A [`PartsState`] that [`PartsState::plan`] made or [`PartsState::load`] accepted has at
//!   least two parts, which cover `0..size` in order without gaps or overlaps, and
//!   `done <= end - start` for each.
//! - [`PartsState::load`] accepts a sidecar only if it is for this digest and size and the
//!   partial file is long enough to hold every part's `done` bytes.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::PullError;
use crate::digest::BlobDigest;

/// The suffix of the sidecar, after the partial file's name.
pub(super) const PARTS_SUFFIX: &str = ".parts";

/// One range of the blob and how much of it is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Part {
    /// The first byte.
    pub(super) start: u64,
    /// One past the last byte.
    pub(super) end: u64,
    /// How many bytes from `start` are on disk.
    pub(super) done: u64,
}

impl Part {
    /// The offset of the first byte still missing.
    pub(super) fn next(&self) -> u64 {
        self.start + self.done
    }

    /// Whether every byte of the part is on disk.
    pub(super) fn is_done(&self) -> bool {
        self.next() >= self.end
    }
}

/// A parallel download's parts (the sidecar's content).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PartsState {
    /// The blob.
    pub(super) digest: BlobDigest,
    /// Its size.
    pub(super) size: u64,
    /// The parts, in order.
    pub(super) parts: Vec<Part>,
}

/// What [`PartsState::load`] found.
#[derive(Debug)]
pub(super) enum Sidecar {
    /// No sidecar: the partial file, if any, is a prefix of the blob.
    Absent,
    /// A sidecar that does not describe this download: the partial file's layout is unknown.
    Unusable,
    /// A sidecar to resume from.
    Usable(PartsState),
}

impl PartsState {
    /// Splits a blob of `size` bytes into `n_parts` near-equal parts, of which the first
    /// `prefix` bytes are on disk. `None` when that gives fewer than two parts.
    pub(super) fn plan(digest: BlobDigest, size: u64, n_parts: usize, prefix: u64) -> Option<Self> {
        let n = u64::try_from(n_parts).unwrap_or(u64::MAX).min(size);
        if n < 2 {
            return None;
        }
        let boundary = |i: u64| {
            let at = u128::from(size) * u128::from(i) / u128::from(n);
            // `at <= size`, so it fits.
            u64::try_from(at).unwrap_or(size)
        };
        let parts = (0..n)
            .map(|i| {
                let (start, end) = (boundary(i), boundary(i + 1));
                let done = prefix.clamp(start, end) - start;
                Part { start, end, done }
            })
            .collect();
        Some(PartsState {
            digest,
            size,
            parts,
        })
    }

    /// The bytes on disk.
    pub(super) fn completed(&self) -> u64 {
        self.parts.iter().map(|p| p.done).sum()
    }

    /// Whether this state fits the invariants for `digest`, `size` and a partial file of
    /// `partial_len` bytes.
    fn fits(&self, digest: &BlobDigest, size: u64, partial_len: u64) -> bool {
        let mut expected_start = 0;
        let parts_fit = self.parts.iter().all(|p| {
            let fits = p.start == expected_start
                && p.start < p.end
                && p.done <= p.end - p.start
                && (p.done == 0 || p.next() <= partial_len);
            expected_start = p.end;
            fits
        });
        self.digest == *digest
            && self.size == size
            && self.parts.len() >= 2
            && parts_fit
            && expected_start == size
            && partial_len <= size
    }

    /// Reads the sidecar at `path` for a download of `digest` (`size` bytes) whose partial file
    /// has `partial_len` bytes (`None`: no partial file).
    pub(super) fn load(
        path: &Path,
        digest: &BlobDigest,
        size: u64,
        partial_len: Option<u64>,
    ) -> Sidecar {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Sidecar::Absent,
            Err(_) => return Sidecar::Unusable,
        };
        match serde_json::from_slice::<PartsState>(&bytes) {
            Ok(state) if state.fits(digest, size, partial_len.unwrap_or(0)) => {
                Sidecar::Usable(state)
            }
            _ => Sidecar::Unusable,
        }
    }

    /// Replaces the sidecar at `path` atomically. The caller has synced the data it counts.
    pub(super) fn save(&self, path: &Path) -> Result<(), PullError> {
        let json = serde_json::to_vec(self)
            .map_err(|e| super::download::io_error("encode", path, io::Error::other(e)))?;
        crate::store::write_atomic(path, &json).map_err(PullError::Store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> BlobDigest {
        BlobDigest::of_bytes(b"x")
    }

    #[test]
    fn plan_covers_the_blob_and_counts_the_prefix() {
        let state = PartsState::plan(digest(), 10, 3, 4).expect("plan");
        let ranges: Vec<_> = state
            .parts
            .iter()
            .map(|p| (p.start, p.end, p.done))
            .collect();
        assert_eq!(ranges, vec![(0, 3, 3), (3, 6, 1), (6, 10, 0)]);
        assert_eq!(state.completed(), 4);
        assert!(state.fits(&digest(), 10, 4));
        assert!(!state.fits(&digest(), 10, 3), "partial file too short");
        assert!(state.fits(&digest(), 10, 10));
        assert!(!state.fits(&digest(), 11, 10), "other size");
    }

    #[test]
    fn plan_needs_two_parts() {
        assert!(PartsState::plan(digest(), 1, 8, 0).is_none());
        assert!(PartsState::plan(digest(), 100, 1, 0).is_none());
        assert_eq!(
            PartsState::plan(digest(), 3, 8, 0)
                .expect("plan")
                .parts
                .len(),
            3
        );
    }

    #[test]
    fn plan_handles_huge_sizes() {
        let state = PartsState::plan(digest(), u64::MAX, 7, 0).expect("plan");
        assert_eq!(state.parts.last().map(|p| p.end), Some(u64::MAX));
        assert!(state.fits(&digest(), u64::MAX, 0));
    }

    #[test]
    fn load_accepts_only_matching_sidecars() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s.parts");
        assert!(matches!(
            PartsState::load(&path, &digest(), 10, None),
            Sidecar::Absent
        ));
        let mut state = PartsState::plan(digest(), 10, 2, 0).expect("plan");
        state.parts[1].done = 2;
        state.save(&path).expect("save");
        match PartsState::load(&path, &digest(), 10, Some(10)) {
            Sidecar::Usable(loaded) => assert_eq!(loaded, state),
            other => panic!("{other:?}"),
        }
        for (size, len) in [(10, Some(6)), (10, None), (12, Some(10))] {
            assert!(matches!(
                PartsState::load(&path, &digest(), size, len),
                Sidecar::Unusable
            ));
        }
        let other = BlobDigest::of_bytes(b"y");
        assert!(matches!(
            PartsState::load(&path, &other, 10, Some(10)),
            Sidecar::Unusable
        ));
        std::fs::write(&path, b"{not json").expect("write");
        assert!(matches!(
            PartsState::load(&path, &digest(), 10, Some(10)),
            Sidecar::Unusable
        ));
    }
}
