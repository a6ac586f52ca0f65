//! Pull tests against a registry served on 127.0.0.1 (`server`): one-stream downloads here,
//! parallel range requests in `parallel`, pullers competing for a blob in `concurrent`.

mod concurrent;
mod parallel;
mod server;

use super::*;
use server::{assert_no_partials, assert_pulled, pull, setup, test_model};

#[tokio::test]
async fn pulls_a_model_with_ollama_progress() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(1);
    registry.serve("library/tiny", "latest", &model);
    let (result, events) = pull(&puller, "tiny").await;
    let stored = result.expect("pull");
    assert_eq!(stored.digest, BlobDigest::of_bytes(&model.manifest));
    assert_pulled(&store, "tiny", &model);
    assert_eq!(events.first().map(String::as_str), Some("pulling manifest"));
    assert!(events.contains(&format!("pulling {}", model.weights.short())));
    assert!(events.contains(&"verifying sha256 digest".to_owned()));
    let tail: Vec<&str> = events.iter().rev().take(2).map(String::as_str).collect();
    assert_eq!(tail, vec!["success", "writing manifest"]);
    // The result is a real GGUF the reader accepts.
    let file = crate::gguf::read_file(&store.blob_path(&model.weights)).expect("gguf");
    assert_eq!(file.architecture(), Some("llama"));
    // A second pull downloads nothing.
    let blob_requests = registry.requests("/blobs/").len();
    let (again, _) = pull(&puller, "tiny:latest").await;
    again.expect("pull again");
    assert_eq!(registry.requests("/blobs/").len(), blob_requests);
}

#[tokio::test]
async fn hugging_face_names_use_their_registry() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(2);
    registry.serve("bartowski/Tiny-GGUF", "Q4_K_M", &model);
    let (result, _) = pull(&puller, "hf.co/bartowski/Tiny-GGUF:Q4_K_M").await;
    result.expect("pull");
    assert_pulled(&store, "hf.co/bartowski/Tiny-GGUF:Q4_K_M", &model);
}

#[tokio::test]
async fn missing_manifest_is_not_found() {
    let (_dir, store, _registry, puller) = setup().await;
    let (result, _) = pull(&puller, "nope:1b").await;
    let err = result.expect_err("404");
    assert!(matches!(err, PullError::ManifestNotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "model 'nope:1b' not found in the registry");
    assert!(store.manifest_names().expect("names").is_empty());
}

#[tokio::test]
async fn wrong_digest_leaves_nothing_visible() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(3);
    registry.serve("library/bad", "latest", &model);
    registry.with(|s| {
        if let Some(b) = s.blobs.get_mut(&model.weights.to_string()) {
            b[100] ^= 0xff;
        }
    });
    let (result, _) = pull(&puller, "bad").await;
    match result.expect_err("mismatch") {
        PullError::DigestMismatch { expected, .. } => assert_eq!(expected, model.weights),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!store.has_blob(&model.weights));
    assert!(store.manifest_names().expect("names").is_empty());
    assert_no_partials(&store);
}

#[tokio::test]
async fn cut_connection_resumes_with_range() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(4);
    registry.serve("library/cut", "latest", &model);
    registry.with(|s| s.faults.cut_after = Some(5000));
    let (result, _) = pull(&puller, "cut").await;
    result.expect("pull");
    assert_pulled(&store, "cut", &model);
    assert!(
        registry
            .requests("/blobs/")
            .iter()
            .any(|l| l.ends_with("bytes=5000-")),
        "{:?}",
        registry.requests("/blobs/")
    );
}

#[tokio::test]
async fn resumes_a_partial_file_left_on_disk() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(5);
    registry.serve("library/resume", "latest", &model);
    let partial = store
        .blobs_dir()
        .join(format!("{}-hlpartial", model.weights.file_name()));
    std::fs::write(&partial, &model.blobs[0].1[..7000]).expect("partial");
    let (result, _) = pull(&puller, "resume").await;
    result.expect("pull");
    assert_pulled(&store, "resume", &model);
    let weights_requests = registry.requests(&model.weights.to_string());
    assert_eq!(weights_requests.len(), 1);
    assert!(weights_requests[0].ends_with("bytes=7000-"));
}

#[tokio::test]
async fn server_ignoring_range_starts_over() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(6);
    registry.serve("library/norange", "latest", &model);
    registry.with(|s| s.faults.ignore_range = true);
    let partial = store
        .blobs_dir()
        .join(format!("{}-hlpartial", model.weights.file_name()));
    std::fs::write(&partial, &model.blobs[0].1[..7000]).expect("partial");
    let (result, _) = pull(&puller, "norange").await;
    result.expect("pull");
    assert_pulled(&store, "norange", &model);
}

#[tokio::test]
async fn follows_redirects() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(7);
    registry.serve("library/moved", "latest", &model);
    registry.with(|s| s.faults.redirect = true);
    let (result, _) = pull(&puller, "moved").await;
    result.expect("pull");
    assert_pulled(&store, "moved", &model);
    assert_eq!(registry.requests("/cdn/").len(), model.blobs.len());
}

#[tokio::test]
async fn stalled_server_is_retried() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(8);
    registry.serve("library/slow", "latest", &model);
    registry.with(|s| s.faults.stall = Some(Duration::from_secs(2)));
    let (result, _) = pull(&puller, "slow").await;
    result.expect("pull");
    assert_pulled(&store, "slow", &model);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(9);
    registry.serve("library/flaky", "latest", &model);
    registry.with(|s| s.faults.n_errors = 2);
    let (result, _) = pull(&puller, "flaky").await;
    result.expect("pull after two 500s");
    assert_pulled(&store, "flaky", &model);

    let other = test_model(10);
    registry.serve("library/down", "latest", &other);
    registry.with(|s| s.faults.n_errors = 100);
    let (result, _) = pull(&puller, "down").await;
    assert!(
        matches!(result, Err(PullError::Status { status: 500, .. })),
        "{result:?}"
    );
    assert!(store
        .read_manifest(&ModelName::parse("down").expect("name"))
        .is_err());
}

#[tokio::test]
async fn concurrent_pulls_download_once() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(11);
    registry.serve("library/same", "latest", &model);
    registry.with(|s| s.faults.throttle = Some(Duration::from_millis(3)));
    let (a, b) = tokio::join!(pull(&puller, "same"), pull(&puller, "same:latest"));
    a.0.expect("first");
    b.0.expect("second");
    assert_pulled(&store, "same", &model);
    assert_eq!(registry.requests(&model.weights.to_string()).len(), 1);
    let waiting = PullEvent::Waiting {
        digest: model.weights,
    }
    .status();
    assert!(
        a.1.contains(&waiting) != b.1.contains(&waiting),
        "exactly one waited: {:?} {:?}",
        a.1,
        b.1
    );
}

#[tokio::test]
async fn plain_http_needs_insecure() {
    let (_dir, store, registry, _puller) = setup().await;
    let config = PullConfig {
        registries: [(
            "registry.ollama.ai".to_owned(),
            format!("http://{}", registry.addr),
        )]
        .into(),
        ..PullConfig::default()
    };
    let puller = Puller::new(store, config).expect("puller");
    let (result, events) = pull(&puller, "tiny").await;
    assert!(
        matches!(result, Err(PullError::Insecure { .. })),
        "{result:?}"
    );
    assert!(events.is_empty());
    assert_eq!(
        PullConfig::default().base_url("hf.co").expect("url"),
        "https://hf.co"
    );
    assert_eq!(
        PullConfig::default()
            .base_url("example.com:5000")
            .expect("url"),
        "https://example.com:5000"
    );
}
