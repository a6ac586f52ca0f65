use super::*;

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use crate::manifest::{media_type, Layer, CONFIG_MEDIA_TYPE};

/// A store in a fresh temporary directory.
fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("models")).expect("open store");
    (dir, store)
}

/// Stores `bytes` as a blob.
fn put_blob(store: &Store, bytes: &[u8]) -> StoredBlob {
    store
        .write_blob_from_reader(&mut Cursor::new(bytes.to_vec()), None)
        .expect("write blob")
}

/// A manifest over a config blob and one model blob, both stored; `seed` makes it unique.
fn test_manifest(store: &Store, seed: &str) -> Manifest {
    let config = put_blob(
        store,
        format!("{{\"model_format\":\"gguf\",\"seed\":\"{seed}\"}}").as_bytes(),
    );
    let model = put_blob(store, format!("GGUF weights {seed}").as_bytes());
    Manifest::new(
        Layer::new(CONFIG_MEDIA_TYPE, config.digest, config.size),
        vec![Layer::new(media_type::MODEL, model.digest, model.size)],
    )
}

/// Parses a name the test knows is valid.
fn name(s: &str) -> ModelName {
    ModelName::parse(s).expect("valid name")
}

/// The file names in a directory, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Sets a file's modification time to `ago` before now.
fn age_file(path: &Path, ago: Duration) {
    let file = File::options().append(true).open(path).expect("open");
    file.set_modified(SystemTime::now() - ago)
        .expect("set mtime");
}

/// A reader that fails after yielding some bytes.
struct FailingReader(usize);

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "cut"));
        }
        let n = self.0.min(buf.len());
        buf[..n].fill(7);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn open_creates_layout() {
    let (_dir, store) = test_store();
    assert!(store.blobs_dir().is_dir());
    assert!(store.manifests_dir().is_dir());
}

#[test]
fn blob_written_under_its_digest() {
    let (_dir, store) = test_store();
    let blob = put_blob(&store, b"hello");
    assert_eq!(blob.digest, BlobDigest::of_bytes(b"hello"));
    assert_eq!(blob.size, 5);
    assert!(blob.created);
    assert!(store.has_blob(&blob.digest));
    assert_eq!(
        fs::read(store.blob_path(&blob.digest)).expect("read"),
        b"hello"
    );
    assert_eq!(store.blob_size(&blob.digest).expect("size"), 5);
    assert_eq!(files_in(&store.blobs_dir()), vec![blob.digest.file_name()]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(store.blob_path(&blob.digest))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
    assert!(!put_blob(&store, b"hello").created);
}

#[test]
fn digest_mismatch_leaves_nothing() {
    let (_dir, store) = test_store();
    let expected = BlobDigest::of_bytes(b"other");
    let err = store
        .write_blob_from_reader(&mut Cursor::new(b"hello".to_vec()), Some(&expected))
        .expect_err("mismatch");
    match err {
        StoreError::DigestMismatch {
            expected: e,
            actual,
        } => {
            assert_eq!(e, expected);
            assert_eq!(actual, BlobDigest::of_bytes(b"hello"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(files_in(&store.blobs_dir()).is_empty());
}

#[test]
fn failed_read_leaves_nothing() {
    let (_dir, store) = test_store();
    let err = store
        .write_blob_from_reader(&mut FailingReader(3 << 20), None)
        .expect_err("read fails");
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(files_in(&store.blobs_dir()).is_empty());
}

#[test]
fn present_expected_blob_is_not_read_again() {
    let (_dir, store) = test_store();
    let blob = put_blob(&store, b"data");
    age_file(&store.blob_path(&blob.digest), Duration::from_secs(7200));
    let again = store
        .write_blob_from_reader(&mut FailingReader(0), Some(&blob.digest))
        .expect("not read");
    assert_eq!(
        again,
        StoredBlob {
            created: false,
            ..blob
        }
    );
    // Touched, so a prune now keeps it for the grace period.
    let report = store.prune(&PruneOptions::default()).expect("prune");
    assert!(report.removed_blobs.is_empty());
}

#[test]
fn concurrent_writers_of_one_blob() {
    let (_dir, store) = test_store();
    let store = Arc::new(store);
    let content: Arc<Vec<u8>> = Arc::new((0..3_000_000u32).map(|i| (i % 251) as u8).collect());
    let digest = BlobDigest::of_bytes(&content);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            let content = Arc::clone(&content);
            std::thread::spawn(move || {
                store.write_blob_from_reader(&mut Cursor::new(content.as_slice()), Some(&digest))
            })
        })
        .collect();
    for t in threads {
        let blob = t.join().expect("thread").expect("write");
        assert_eq!(blob.digest, digest);
    }
    assert_eq!(fs::read(store.blob_path(&digest)).expect("read"), *content);
    assert_eq!(files_in(&store.blobs_dir()), vec![digest.file_name()]);
}

#[test]
fn import_copies_once() {
    let (dir, store) = test_store();
    let src = dir.path().join("model.gguf");
    fs::write(&src, b"GGUF....").expect("write");
    let first = store.import_file(&src).expect("import");
    assert!(first.created);
    assert_eq!(first.digest, BlobDigest::of_bytes(b"GGUF...."));
    assert_eq!(fs::read(&src).expect("source kept"), b"GGUF....");
    let second = store.import_file(&src).expect("import again");
    assert!(!second.created);
    let missing = store
        .import_file(&dir.path().join("nope.gguf"))
        .expect_err("missing");
    assert!(
        matches!(missing, StoreError::Io { op: "open", .. }),
        "{missing:?}"
    );
}

#[test]
fn manifest_round_trip_and_digest() {
    let (_dir, store) = test_store();
    let m = test_manifest(&store, "a");
    let n = name("llama3:8b");
    let digest = store.write_manifest(&n, &m).expect("write");
    let path = store
        .root()
        .join("manifests/registry.ollama.ai/library/llama3/8b");
    let bytes = fs::read(&path).expect("manifest file");
    assert_eq!(bytes, m.to_json());
    assert_eq!(digest, BlobDigest::of_bytes(&bytes));
    let stored = store.read_manifest(&n).expect("read");
    assert_eq!(stored.manifest, m);
    assert_eq!(stored.digest, digest);
    assert_eq!(stored.name, n);
    // Nothing but the manifest in its directory (no temporary file left).
    assert_eq!(
        files_in(path.parent().expect("parent")),
        vec!["8b".to_owned()]
    );
}

#[test]
fn manifest_needs_its_blobs() {
    let (_dir, store) = test_store();
    let mut m = test_manifest(&store, "a");
    let absent = BlobDigest::of_bytes(b"absent");
    m.layers.push(Layer::new(media_type::TEMPLATE, absent, 6));
    let err = store
        .write_manifest(&name("x"), &m)
        .expect_err("missing blob");
    assert!(matches!(err, StoreError::MissingBlob { digest, .. } if digest == absent));
    assert!(store.manifest_names().expect("names").is_empty());
}

#[test]
fn raw_bytes_are_kept() {
    let (_dir, store) = test_store();
    let m = test_manifest(&store, "a");
    let mut raw = m.to_json();
    raw.pop(); // the registry sends no trailing newline
    let n = name("hf.co/user/repo:Q4_K_M");
    store.write_manifest_bytes(&n, &raw).expect("write");
    assert_eq!(store.read_manifest_bytes(&n).expect("read"), raw);
    assert_eq!(
        store.read_manifest(&n).expect("read").digest,
        BlobDigest::of_bytes(&raw)
    );
    let bad = store.write_manifest_bytes(&n, b"{").expect_err("invalid");
    assert!(matches!(bad, StoreError::BadManifest { .. }));
    assert_eq!(store.read_manifest_bytes(&n).expect("kept"), raw);
}

#[test]
fn missing_model_is_typed() {
    let (_dir, store) = test_store();
    let err = store.read_manifest(&name("nope")).expect_err("missing");
    assert!(matches!(&err, StoreError::ModelNotFound { name: n } if **n == name("nope")));
    assert_eq!(err.to_string(), "model 'nope:latest' not found");
    assert!(matches!(
        store.delete_manifest(&name("nope")),
        Err(StoreError::ModelNotFound { .. })
    ));
    assert!(matches!(
        store.copy(&name("nope"), &name("x")),
        Err(StoreError::ModelNotFound { .. })
    ));
}

#[test]
fn names_match_ignoring_case() {
    let (_dir, store) = test_store();
    let m = test_manifest(&store, "a");
    store
        .write_manifest(&name("Llama3:Latest"), &m)
        .expect("write");
    let stored = store
        .read_manifest(&name("llama3"))
        .expect("found ignoring case");
    assert_eq!(stored.name, name("Llama3:Latest"));
    // Writing with other casing replaces the stored manifest instead of adding one.
    let m2 = test_manifest(&store, "b");
    store
        .write_manifest(&name("LLAMA3:latest"), &m2)
        .expect("write");
    let names = store.manifest_names().expect("names");
    assert_eq!(names, vec![name("Llama3:Latest")]);
    assert_eq!(
        store.read_manifest(&name("llama3")).expect("read").manifest,
        m2
    );
}

#[test]
fn listing_tolerates_strays_and_reports_broken() {
    let (_dir, store) = test_store();
    let m = test_manifest(&store, "a");
    store.write_manifest(&name("b-model"), &m).expect("write");
    store
        .write_manifest(&name("a-model:v1"), &m)
        .expect("write");
    store
        .write_manifest(&name("hf.co/u/r:Q8_0"), &m)
        .expect("write");
    let top = store.manifests_dir();
    fs::write(top.join("README"), "not a manifest").expect("stray");
    fs::write(top.join("registry.ollama.ai/library/.DS_Store"), "x").expect("stray");
    fs::create_dir_all(top.join("h/n/m/t/deeper")).expect("deep dir");
    fs::write(top.join("h/n/m/t/deeper/file"), "x").expect("deep file");
    fs::write(top.join("registry.ollama.ai/library/b-model/.tmp-123"), "x").expect("temp");
    fs::create_dir_all(top.join("registry.ollama.ai/library/bad")).expect("dir");
    fs::write(
        top.join("registry.ollama.ai/library/bad/latest"),
        "{not json",
    )
    .expect("broken");
    let list = store.list_manifests().expect("list");
    let names: Vec<String> = list
        .manifests
        .iter()
        .map(|s| s.name.display_shortest())
        .collect();
    assert_eq!(
        names,
        vec!["hf.co/u/r:Q8_0", "a-model:v1", "b-model:latest"]
    );
    assert_eq!(list.broken.len(), 1);
    assert_eq!(list.broken[0].name, name("bad"));
    assert!(matches!(
        list.broken[0].error,
        StoreError::BadManifest { .. }
    ));
    assert!(list
        .manifests
        .iter()
        .all(|s| s.digest == BlobDigest::of_bytes(&m.to_json())));
}

#[test]
fn delete_keeps_blobs_and_prunes_directories() {
    let (_dir, store) = test_store();
    let m = test_manifest(&store, "a");
    store
        .write_manifest(&name("hf.co/u/r:Q8_0"), &m)
        .expect("write");
    store.write_manifest(&name("x"), &m).expect("write");
    let deleted = store
        .delete_manifest(&name("HF.co/U/R:q8_0"))
        .expect("delete");
    assert_eq!(deleted.map(|d| d.manifest), Some(m.clone()));
    assert!(!store.manifests_dir().join("hf.co").exists());
    assert!(store
        .manifests_dir()
        .join("registry.ollama.ai/library/x")
        .is_dir());
    assert!(m.digests().all(|d| store.has_blob(&d)));
    // A broken manifest can be deleted too.
    let bad = store.manifest_path(&name("bad"));
    fs::create_dir_all(bad.parent().expect("parent")).expect("dir");
    fs::write(&bad, "garbage").expect("write");
    assert_eq!(store.delete_manifest(&name("bad")).expect("delete"), None);
    assert!(!bad.exists());
}

#[test]
fn copy_is_byte_for_byte() {
    let (_dir, store) = test_store();
    let m = test_manifest(&store, "a");
    let mut raw = m.to_json();
    raw.pop();
    store
        .write_manifest_bytes(&name("src"), &raw)
        .expect("write");
    let written = store.copy(&name("SRC"), &name("me/dst:v2")).expect("copy");
    assert_eq!(written, name("me/dst:v2"));
    assert_eq!(
        store.read_manifest_bytes(&name("me/dst:v2")).expect("read"),
        raw
    );
}

#[test]
fn prune_removes_only_unused_old_blobs() {
    let (_dir, store) = test_store();
    let kept = test_manifest(&store, "kept");
    store.write_manifest(&name("kept"), &kept).expect("write");
    let gone = test_manifest(&store, "gone");
    store.write_manifest(&name("gone"), &gone).expect("write");
    let young = put_blob(&store, b"young orphan");
    let shared = test_manifest(&store, "kept");
    assert_eq!(shared, kept);
    store.delete_manifest(&name("gone")).expect("delete");
    let hour = Duration::from_secs(3600);
    for d in kept.digests().chain(gone.digests()) {
        age_file(&store.blob_path(&d), 2 * hour);
    }
    let report = store.prune(&PruneOptions::default()).expect("prune");
    let mut expected: Vec<_> = gone.digests().collect();
    expected.sort();
    assert_eq!(report.removed_blobs, expected);
    assert!(kept.digests().all(|d| store.has_blob(&d)));
    assert!(store.has_blob(&young.digest));
    assert!(report.freed_bytes > 0);
}

#[test]
fn prune_respects_broken_manifests() {
    let (_dir, store) = test_store();
    let m = test_manifest(&store, "a");
    let mut text = String::from_utf8(m.to_json()).expect("utf-8");
    text.truncate(text.len() - 5); // cut: no longer valid JSON
    let path = store.manifest_path(&name("cut"));
    fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    fs::write(&path, &text).expect("write");
    let zero = PruneOptions {
        blob_grace: Duration::ZERO,
        stale_after: Duration::ZERO,
    };
    let report = store.prune(&zero).expect("prune");
    assert!(report.removed_blobs.is_empty(), "{report:?}");
    assert!(m.digests().all(|d| store.has_blob(&d)));
}

#[test]
fn prune_cleans_stale_temporaries_but_not_live_pulls() {
    let (_dir, store) = test_store();
    let blobs = store.blobs_dir();
    let day = Duration::from_secs(24 * 3600);
    let live = BlobDigest::of_bytes(b"live").file_name();
    let dead = BlobDigest::of_bytes(b"dead").file_name();
    let mixed = BlobDigest::of_bytes(b"mixed").file_name();
    let files = [
        (format!("{live}-partial"), Duration::ZERO),
        (format!("{live}-partial-0"), Duration::ZERO),
        (format!("{dead}-partial"), 2 * day),
        (format!("{dead}-partial-0"), 2 * day),
        (format!("{mixed}-partial"), 2 * day),
        (format!("{mixed}-partial-0"), Duration::from_secs(5)),
        (".tmp-old".to_owned(), 2 * day),
        (".tmp-new".to_owned(), Duration::ZERO),
        ("sha256-123456".to_owned(), 2 * day),
        ("unrelated.txt".to_owned(), 10 * day),
    ];
    for (file, ago) in &files {
        fs::write(blobs.join(file), b"x").expect("write");
        age_file(&blobs.join(file), *ago);
    }
    fs::create_dir(blobs.join("subdir")).expect("dir");
    let report = store.prune(&PruneOptions::default()).expect("prune");
    let mut removed: Vec<String> = report
        .removed_temp_files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    removed.sort();
    let mut expected = vec![
        format!("{dead}-partial"),
        format!("{dead}-partial-0"),
        ".tmp-old".to_owned(),
        "sha256-123456".to_owned(),
    ];
    expected.sort();
    assert_eq!(removed, expected);
    let left = files_in(&blobs);
    for keep in [
        format!("{live}-partial"),
        format!("{mixed}-partial"),
        ".tmp-new".into(),
        "unrelated.txt".into(),
        "subdir".into(),
    ] {
        assert!(left.contains(&keep), "{keep} should be kept: {left:?}");
    }
}

#[test]
fn reads_an_ollama_folder() {
    // The layout and bytes Ollama itself leaves: a compact manifest as pulled.
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let config = br#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"135M","file_type":"Q4_1","architecture":"amd64","os":"linux"}"#;
    let weights = b"GGUF fake weights";
    fs::create_dir_all(root.join("blobs")).expect("blobs");
    let cd = BlobDigest::of_bytes(config);
    let wd = BlobDigest::of_bytes(weights);
    fs::write(
        root.join("blobs").join(format!("sha256-{}", cd.hex())),
        config,
    )
    .expect("config");
    fs::write(
        root.join("blobs").join(format!("sha256-{}", wd.hex())),
        weights,
    )
    .expect("weights");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"{wd}","size":{}}}]}}"#,
        config.len(),
        weights.len()
    );
    let mpath = root.join("manifests/registry.ollama.ai/library/smollm2/135m");
    fs::create_dir_all(mpath.parent().expect("parent")).expect("dirs");
    fs::write(&mpath, &manifest).expect("manifest");
    let store = Store::open(root).expect("open");
    let list = store.list_manifests().expect("list");
    assert_eq!(list.manifests.len(), 1);
    let stored = &list.manifests[0];
    assert_eq!(stored.name.display_shortest(), "smollm2:135m");
    assert_eq!(stored.digest, BlobDigest::of_bytes(manifest.as_bytes()));
    assert_eq!(
        stored.manifest.total_size(),
        (config.len() + weights.len()) as u64
    );
    let model = stored.manifest.model_layer().expect("model layer");
    assert_eq!(
        fs::read(store.blob_path(&model.digest)).expect("blob"),
        weights
    );
}

#[test]
fn error_messages_do_not_repeat_their_source() {
    let err = StoreError::Io {
        op: "write",
        path: PathBuf::from("/m/blobs/x"),
        source: io::Error::new(io::ErrorKind::StorageFull, "No space left on device"),
    };
    assert_eq!(err.to_string(), "cannot write /m/blobs/x");
    let bad = StoreError::BadManifest {
        path: PathBuf::from("/m/manifests/a"),
        source: ManifestError::SchemaVersion(1),
    };
    assert_eq!(bad.to_string(), "invalid manifest /m/manifests/a");
}
