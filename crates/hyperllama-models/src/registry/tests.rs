use super::*;

use std::io::Cursor;

use crate::gguf::{GgmlType, GgufBuilder};
use crate::manifest::{media_type, Layer, Manifest, ModelConfig, CONFIG_MEDIA_TYPE};

/// A store and an index in one temporary directory.
struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    registry: Registry,
}

/// A fresh store and index.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("models")).expect("store");
    let registry = Registry::open(&dir.path().join("index.db"))
        .await
        .expect("open index");
    Fixture {
        dir,
        store,
        registry,
    }
}

/// A small GGUF model of `arch`, with a Q4_K_M file type and one 64×32 F32 tensor.
fn gguf(arch: &str) -> GgufBuilder {
    GgufBuilder::new(3)
        .kv("general.architecture", arch)
        .kv("general.file_type", 15u32)
        .kv(format!("{arch}.context_length"), 2048u32)
        .kv(format!("{arch}.embedding_length"), 64u32)
        .tensor(
            "token_embd.weight",
            vec![64, 32],
            GgmlType::F32,
            vec![0; 64 * 32 * 4],
        )
}

/// Stores bytes as a blob and returns its layer.
fn blob(store: &Store, media: &str, bytes: &[u8]) -> Layer {
    let stored = store
        .write_blob_from_reader(&mut Cursor::new(bytes.to_vec()), None)
        .expect("blob");
    Layer::new(media, stored.digest, stored.size)
}

/// Writes a model made of `weights` (GGUF bytes) and extra layers under `name`.
fn put_model(store: &Store, name: &str, weights: &[u8], extra: Vec<Layer>) -> ModelName {
    let config = ModelConfig {
        model_format: "gguf".into(),
        model_family: "fallback-family".into(),
        file_type: "F16".into(),
        ..ModelConfig::default()
    };
    let config = blob(store, CONFIG_MEDIA_TYPE, &config.to_json());
    let mut layers = vec![blob(store, media_type::MODEL, weights)];
    layers.extend(extra);
    let name = ModelName::parse(name).expect("name");
    store
        .write_manifest(&name, &Manifest::new(config, layers))
        .expect("manifest");
    name
}

/// Parses a name the test knows is valid.
fn name(s: &str) -> ModelName {
    ModelName::parse(s).expect("valid name")
}

#[tokio::test]
async fn indexes_gguf_metadata_and_capabilities() {
    let f = fixture().await;
    let template =
        "{% for m in messages %}{{ m.content }}{% endfor %}{% if tools %}{{ tools }}{% endif %}";
    let weights = gguf("llama")
        .kv("tokenizer.chat_template", template)
        .to_bytes();
    put_model(&f.store, "chat:1b", &weights, vec![]);
    let report = f.registry.sync(&f.store).await.expect("sync");
    assert_eq!(report.added, vec![name("chat:1b")]);
    let r = f
        .registry
        .get(&name("chat:1b"))
        .await
        .expect("get")
        .expect("indexed");
    assert_eq!(r.architecture.as_deref(), Some("llama"));
    assert_eq!(r.parameter_count, Some(64 * 32));
    assert_eq!(r.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!(r.context_length, Some(2048));
    assert_eq!(r.embedding_length, Some(64));
    assert!(r.has_chat_template);
    assert_eq!(r.capabilities.names(), vec!["completion", "tools"]);
    assert_eq!(r.index_error, None);
    let stored = f.store.read_manifest(&name("chat:1b")).expect("manifest");
    assert_eq!(r.digest, stored.digest);
    assert_eq!(r.size, stored.manifest.total_size());
    assert_eq!(r.last_used_at, None);
}

#[tokio::test]
async fn embedding_vision_and_thinking() {
    let f = fixture().await;
    let bert = gguf("bert").kv("bert.pooling_type", 1u32).to_bytes();
    put_model(&f.store, "embed", &bert, vec![]);
    let nomic = gguf("nomic-bert").to_bytes();
    put_model(&f.store, "nomic", &nomic, vec![]);
    let think = gguf("qwen3")
        .kv("tokenizer.chat_template", "{{ '<think>' }}{{ messages }}")
        .to_bytes();
    let projector = blob(&f.store, media_type::PROJECTOR, b"mmproj");
    put_model(&f.store, "vl", &think, vec![projector]);
    let gemma = gguf("gemma3")
        .kv("gemma3.vision.block_count", 4u32)
        .to_bytes();
    put_model(&f.store, "gemma", &gemma, vec![]);
    f.registry.sync(&f.store).await.expect("sync");
    let caps = |n: &'static str| {
        let registry = f.registry.clone();
        async move {
            registry
                .get(&name(n))
                .await
                .expect("get")
                .expect("indexed")
                .capabilities
                .names()
        }
    };
    assert_eq!(caps("embed").await, vec!["embedding"]);
    assert_eq!(caps("nomic").await, vec!["embedding"]);
    assert_eq!(caps("vl").await, vec!["completion", "thinking", "vision"]);
    assert_eq!(caps("gemma").await, vec!["completion", "vision"]);
}

#[tokio::test]
async fn ollama_template_layer_counts() {
    let f = fixture().await;
    let template = blob(
        &f.store,
        media_type::TEMPLATE,
        b"{{- if .Tools }}{{ range .Tools }}{{ . }}{{ end }}{{ end }}{{ .Prompt }}",
    );
    put_model(&f.store, "go", &gguf("llama").to_bytes(), vec![template]);
    f.registry.sync(&f.store).await.expect("sync");
    let r = f
        .registry
        .get(&name("go"))
        .await
        .expect("get")
        .expect("indexed");
    assert!(r.has_chat_template);
    assert!(r.capabilities.tools);
}

#[tokio::test]
async fn corrupt_weights_are_indexed_with_an_error() {
    let f = fixture().await;
    put_model(&f.store, "broken", b"GGUF\x03\x00\x00\x00truncated", vec![]);
    f.registry.sync(&f.store).await.expect("sync");
    let r = f
        .registry
        .get(&name("broken"))
        .await
        .expect("get")
        .expect("indexed");
    assert!(
        r.index_error
            .as_deref()
            .is_some_and(|e| e.contains("truncated")),
        "{r:?}"
    );
    // What the config says is used instead.
    assert_eq!(r.architecture.as_deref(), Some("fallback-family"));
    assert_eq!(r.quantization.as_deref(), Some("F16"));
    assert_eq!(r.capabilities.names(), vec!["completion"]);
}

#[tokio::test]
async fn sync_notices_changes_made_behind_its_back() {
    let f = fixture().await;
    put_model(&f.store, "a", &gguf("llama").to_bytes(), vec![]);
    put_model(&f.store, "b", &gguf("llama").to_bytes(), vec![]);
    let first = f.registry.sync(&f.store).await.expect("sync");
    assert_eq!(first.added, vec![name("a"), name("b")]);
    assert_eq!(
        f.registry.sync(&f.store).await.expect("sync"),
        SyncReport::default()
    );

    let used_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert!(f
        .registry
        .touch_last_used(&name("a"), used_at)
        .await
        .expect("touch"));
    let created = f
        .registry
        .get(&name("a"))
        .await
        .expect("get")
        .expect("a")
        .created_at;

    // Replaced (as by `ollama pull` of a new version), deleted, and added.
    put_model(&f.store, "a", &gguf("qwen3").to_bytes(), vec![]);
    f.store.delete_manifest(&name("b")).expect("delete");
    put_model(&f.store, "c", &gguf("llama").to_bytes(), vec![]);
    let report = f.registry.sync(&f.store).await.expect("sync");
    assert_eq!(report.added, vec![name("c")]);
    assert_eq!(report.updated, vec![name("a")]);
    assert_eq!(report.removed, vec![name("b")]);
    let a = f.registry.get(&name("a")).await.expect("get").expect("a");
    assert_eq!(a.architecture.as_deref(), Some("qwen3"));
    assert_eq!(a.last_used_at, Some(used_at));
    assert_eq!(a.created_at, created);
    let names: Vec<_> = f
        .registry
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec![name("a"), name("c")]);
}

#[tokio::test]
async fn broken_manifests_are_reported_not_indexed() {
    let f = fixture().await;
    put_model(&f.store, "ok", &gguf("llama").to_bytes(), vec![]);
    f.registry.sync(&f.store).await.expect("sync");
    let path = f.store.manifest_path(&name("ok"));
    std::fs::write(&path, b"{\"schemaVersion\":").expect("corrupt");
    let report = f.registry.sync(&f.store).await.expect("sync");
    assert_eq!(report.broken.len(), 1);
    assert!(
        report.broken[0].1.starts_with("invalid manifest"),
        "{report:?}"
    );
    assert!(f.registry.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn lookups_ignore_case_and_remove_works() {
    let f = fixture().await;
    put_model(
        &f.store,
        "hf.co/User/Repo:Q4_K_M",
        &gguf("llama").to_bytes(),
        vec![],
    );
    f.registry.sync(&f.store).await.expect("sync");
    let r = f
        .registry
        .get(&name("hf.co/user/repo:q4_k_m"))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(r.name, name("hf.co/User/Repo:Q4_K_M"));
    assert!(!f
        .registry
        .touch_last_used(&name("nope"), SystemTime::now())
        .await
        .expect("touch"));
    assert!(f
        .registry
        .remove(&name("HF.CO/user/repo:Q4_K_M"))
        .await
        .expect("remove"));
    assert!(!f
        .registry
        .remove(&name("hf.co/user/repo:Q4_K_M"))
        .await
        .expect("remove again"));
    assert!(f.registry.get(&r.name).await.expect("get").is_none());
}

#[tokio::test]
async fn index_one_model() {
    let f = fixture().await;
    let n = put_model(&f.store, "new", &gguf("llama").to_bytes(), vec![]);
    let r = f.registry.index(&f.store, &n).await.expect("index");
    assert_eq!(r.name, n);
    assert!(matches!(
        f.registry.index(&f.store, &name("missing")).await,
        Err(RegistryError::Store(StoreError::ModelNotFound { .. }))
    ));
}

#[tokio::test]
async fn deleted_or_corrupt_database_is_rebuilt() {
    let f = fixture().await;
    put_model(&f.store, "a", &gguf("llama").to_bytes(), vec![]);
    f.registry.sync(&f.store).await.expect("sync");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&f.registry.pool)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    f.registry.close().await;

    let db = f.dir.path().join("index.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let reopened = Registry::open(&db).await.expect("recreated");
    assert!(reopened.list().await.expect("list").is_empty());
    let report = reopened
        .rebuild_from_store(&f.store)
        .await
        .expect("rebuild");
    assert_eq!(report.added, vec![name("a")]);
    let again = reopened
        .rebuild_from_store(&f.store)
        .await
        .expect("rebuild");
    assert_eq!(again.updated, vec![name("a")]);
    reopened.close().await;
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_replaced() {
    let f = fixture().await;
    put_model(&f.store, "a", &gguf("llama").to_bytes(), vec![]);
    // A path SQLite never opened, so no connection can write back over the garbage.
    let db = f.dir.path().join("garbage.db");
    std::fs::write(&db, vec![0xAB; 8192]).expect("garbage");
    let recovered = Registry::open(&db).await.expect("recovered");
    let report = recovered.sync(&f.store).await.expect("sync");
    assert_eq!(report.added, vec![name("a")]);
}

#[test]
fn times_round_trip() {
    for t in [
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_millis(1_234),
        UNIX_EPOCH - Duration::from_millis(5),
    ] {
        assert_eq!(from_millis(millis(t)), t);
    }
}
