//! Pullers competing for the same blobs: separate [`Puller`]s in this process (separate file
//! handles, so the same `flock` the processes use) and a second process.

use std::process::{Command, Stdio};

use super::super::download::BlobFiles;
use super::super::*;
use super::server::{
    assert_pulled, parallel, pull, pull_events, setup_with, test_config, test_model, TestRegistry,
};

/// The environment variable that gives [`child_pull`] the registry's address.
const REGISTRY_VAR: &str = "HYPERLLAMA_TEST_PULL_REGISTRY";
/// The environment variable that gives [`child_pull`] the store's root.
const STORE_VAR: &str = "HYPERLLAMA_TEST_PULL_STORE";

/// The waiting status of `digest`.
fn waiting(digest: &BlobDigest) -> String {
    PullEvent::Waiting { digest: *digest }.status()
}

/// Polls until the registry has seen a request for `digest`.
async fn wait_for_request(registry: &TestRegistry, digest: &BlobDigest) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while registry.requests(&digest.to_string()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "nobody asked for {digest}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn separate_pullers_download_each_blob_once() {
    let (_dir, store, registry, first) = setup_with(parallel).await;
    let mut config = test_config(&format!("http://{}", registry.addr));
    parallel(&mut config);
    let second = Puller::new(store.clone(), config).expect("second puller");
    let model = test_model(40);
    registry.serve("library/shared", "latest", &model);
    registry.with(|s| s.faults.throttle = Some(Duration::from_millis(3)));
    let ((a, a_events), (b, b_events)) =
        tokio::join!(pull(&first, "shared"), pull(&second, "shared"));
    a.expect("first");
    b.expect("second");
    assert_pulled(&store, "shared", &model);
    for (digest, bytes) in &model.blobs {
        assert_eq!(registry.served(digest), bytes.len(), "{digest} served once");
    }
    let waited = waiting(&model.weights);
    assert!(
        a_events.contains(&waited) != b_events.contains(&waited),
        "exactly one waited: {a_events:?} {b_events:?}"
    );
}

#[tokio::test]
async fn waiter_takes_over_a_download_that_failed() {
    let (_dir, store, registry, first) = setup_with(|c| c.max_retries = 0).await;
    let mut config = test_config(&format!("http://{}", registry.addr));
    config.max_retries = 0;
    let second = Puller::new(store.clone(), config).expect("second puller");
    let model = test_model(41);
    registry.serve("library/handover", "latest", &model);
    registry.with(|s| {
        s.faults.throttle = Some(Duration::from_millis(3));
        s.faults.cut_after = Some(6000);
    });
    let ((a, _), (b, _)) = tokio::join!(pull(&first, "handover"), pull(&second, "handover"));
    // One of them had the cut and no retries left; the other resumed its partial file.
    assert!(a.is_err() != b.is_err(), "{a:?} {b:?}");
    assert_pulled(&store, "handover", &model);
    assert_eq!(
        registry.served(&model.weights),
        model.blobs[0].1.len(),
        "the waiter resumed from the failed pull's bytes"
    );
}

#[tokio::test]
async fn pulls_across_processes() {
    let (dir, store, registry, puller) = setup_with(|_| {}).await;
    let model = test_model(42);
    registry.serve("library/procs", "latest", &model);
    // About 17 KiB at 25 ms a KiB: the child holds the weights' lock for ~0.4 s.
    registry.with(|s| s.faults.throttle = Some(Duration::from_millis(25)));
    let exe = std::env::current_exe().expect("test binary");
    let child = Command::new(exe)
        .args([
            "--exact",
            "pull::tests::concurrent::child_pull",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(REGISTRY_VAR, registry.addr.to_string())
        .env(STORE_VAR, store.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    wait_for_request(&registry, &model.weights).await;
    let (result, full_events) = pull_events(&puller, "procs").await;
    let events: Vec<String> = full_events.iter().map(PullEvent::status).collect();
    // What the parent saw of the weights while waiting and after: the child's progress.
    let events_progress: Vec<u64> = full_events
        .iter()
        .filter_map(|e| match e {
            PullEvent::Pulling {
                digest, completed, ..
            } if *digest == model.weights => Some(*completed),
            _ => None,
        })
        .collect();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("child output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "child ran nothing:\n{stdout}");
    assert!(stdout.contains("child pulled"), "child skipped:\n{stdout}");
    result.expect("parent pull");
    let size = model.blobs[0].1.len() as u64;
    assert!(events.contains(&waiting(&model.weights)), "{events:?}");
    assert!(
        events_progress.iter().any(|&c| c > 0 && c < size),
        "the waiter reported the child's progress: {events_progress:?}"
    );
    assert_pulled(&store, "procs", &model);
    assert_eq!(registry.served(&model.weights), model.blobs[0].1.len());
    assert!(!BlobFiles::new(&store, &model.weights).lock.exists());
    drop(dir);
}

/// Not a test by itself: [`pulls_across_processes`] runs it in a child process, which pulls
/// the same model into the same store (it does nothing without the environment variables).
#[tokio::test]
#[ignore = "run by pulls_across_processes in a child process"]
async fn child_pull() {
    let (Ok(addr), Ok(root)) = (std::env::var(REGISTRY_VAR), std::env::var(STORE_VAR)) else {
        return;
    };
    let store = Store::open(root).expect("store");
    let puller = Puller::new(store, test_config(&format!("http://{addr}"))).expect("puller");
    let (result, events) = pull(&puller, "procs").await;
    result.expect("child pull");
    println!("child pulled: {events:?}");
}
