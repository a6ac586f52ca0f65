//! Removing a model: what Ollama's `ollama rm` and `DELETE /api/delete` do on the local store.
//!
//! [`remove_model`] deletes the manifest, then those of its blobs that no other manifest names.
//! It knows nothing about the SQLite index: the caller removes the model's row afterwards
//! ([`crate::registry::Registry::remove`]).
//!
//! # Invariants
//!
//! - A blob that another readable manifest names is never deleted (and a manifest that cannot
//!   be parsed protects every digest in its text, see [`Store::prune`]).
//! - The manifest goes first: if deleting blobs fails, the model is gone and what is left is
//!   only unreferenced blobs, which a later prune collects.

use crate::digest::BlobDigest;
use crate::name::ModelName;
use crate::store::{Store, StoreError};

/// What [`remove_model`] deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoveReport {
    /// The name removed, casing as it was stored.
    pub name: ModelName,
    /// The blobs deleted because nothing else used them.
    pub removed_blobs: Vec<BlobDigest>,
    /// The bytes freed.
    pub freed_bytes: u64,
}

/// Deletes the model `name` (looked up ignoring ASCII case) and its unused blobs.
pub fn remove_model(store: &Store, name: &ModelName) -> Result<RemoveReport, StoreError> {
    let stored_name = store.resolve(name)?;
    if !store.manifest_path(&stored_name).is_file() {
        return Err(StoreError::ModelNotFound {
            name: Box::new(name.clone()),
        });
    }
    let deleted = store.delete_manifest(&stored_name)?;
    let candidates: Vec<BlobDigest> = deleted
        .map(|stored| stored.manifest.digests().collect())
        .unwrap_or_default();
    let report = store.remove_unused_blobs(&candidates)?;
    Ok(RemoveReport {
        name: stored_name,
        removed_blobs: report.removed_blobs,
        freed_bytes: report.freed_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{media_type, Layer, Manifest, CONFIG_MEDIA_TYPE};

    fn put(store: &Store, bytes: &[u8]) -> Layer {
        let blob = store
            .write_blob_from_reader(&mut &bytes[..], None)
            .expect("blob written");
        Layer::new(media_type::MODEL, blob.digest, blob.size)
    }

    fn model(store: &Store, name: &str, weights: &Layer, extra: &[u8]) -> ModelName {
        let name = ModelName::parse(name).expect("valid name");
        let mut config = put(store, extra);
        config.media_type = CONFIG_MEDIA_TYPE.to_owned();
        store
            .write_manifest(&name, &Manifest::new(config, vec![weights.clone()]))
            .expect("manifest written");
        name
    }

    #[test]
    fn keeps_shared_blobs_until_the_last_user_goes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let weights = put(&store, b"weights");
        let a = model(&store, "a", &weights, b"config a");
        let b = model(&store, "b", &weights, b"config b");

        let report = remove_model(&store, &a).expect("a removed");
        assert_eq!(
            report.removed_blobs,
            vec![BlobDigest::of_bytes(b"config a")]
        );
        assert!(store.has_blob(&weights.digest), "b still uses the weights");

        let upper = ModelName::parse("B").expect("valid name");
        let report = remove_model(&store, &upper).expect("b removed, case ignored");
        assert_eq!(report.name, b);
        assert!(report.removed_blobs.contains(&weights.digest));
        assert!(!store.has_blob(&weights.digest));
        assert!(store.manifest_names().expect("listed").is_empty());
    }

    #[test]
    fn a_missing_model_is_not_found() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let err = remove_model(&store, &ModelName::parse("nope").expect("valid"))
            .expect_err("nothing to remove");
        assert!(matches!(err, StoreError::ModelNotFound { .. }), "{err}");
    }
}
