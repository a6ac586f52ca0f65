//! Model-level scheduling with SmolLM2: shared first loads, keep-alive expiry on a paused
//! clock, least-recently-used eviction, and a discarded (stopped) engine loaded afresh.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{store_with_model, test_config, MODEL};
use hyperllama_models::name::ModelName;
use hyperllama_server::options::KeepAlive;
use hyperllama_server::residency::Residency;

fn name(s: &str) -> ModelName {
    ModelName::parse(s).expect("valid name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_residency_concurrent_first_requests_load_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_model(dir.path());
    let residency = Residency::new(test_config(dir.path()), store);
    let smol = name(MODEL);
    let (a, b) = tokio::join!(
        residency.acquire(&smol, None, None),
        residency.acquire(&smol, None, None)
    );
    let (a, b) = (a.expect("lease a"), b.expect("lease b"));
    let (ma, mb) = (a.model().expect("model a"), b.model().expect("model b"));
    assert!(Arc::ptr_eq(ma, mb), "one load, one engine");
    let n_loaders = [&a, &b]
        .iter()
        .filter(|l| l.load_duration > Duration::ZERO)
        .count();
    assert_eq!(n_loaders, 1, "exactly one request reports the load");
    let snapshot = residency.snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].n_active, 2);
    drop((a, b));
    assert_eq!(residency.snapshot()[0].n_active, 0);
    residency.shutdown().await;
    assert!(residency.snapshot().is_empty());
    assert!(residency.engine_stats(&smol).is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn model_residency_keep_alive_expires_on_a_paused_clock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_model(dir.path());
    let mut cfg = test_config(dir.path());
    cfg.default_keep_alive = Some(Duration::from_secs(60));
    let residency = Residency::new(cfg, store);
    let smol = name(MODEL);
    let lease = residency.acquire(&smol, None, None).await.expect("lease");
    tokio::time::pause();
    drop(lease);
    let snapshot = residency.snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].expires_in, Some(Duration::from_secs(60)));

    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(residency.engine_stats(&smol).is_some(), "not yet expired");
    tokio::time::advance(Duration::from_secs(2)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // `engine_stats` does not reap: the background task has unloaded the model.
    assert!(residency.engine_stats(&smol).is_none(), "expired");
    assert!(residency.snapshot().is_empty());

    // A negative keep_alive keeps it forever.
    tokio::time::resume();
    let lease = residency
        .acquire(&smol, None, Some(KeepAlive::Forever))
        .await
        .expect("lease");
    tokio::time::pause();
    drop(lease);
    tokio::time::advance(Duration::from_secs(365 * 24 * 3600)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let snapshot = residency.snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].expires_in, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_residency_evicts_the_least_recently_used_idle_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_model(dir.path());
    store.copy(&name(MODEL), &name("smol2")).expect("copied");
    store.copy(&name(MODEL), &name("smol3")).expect("copied");
    let mut cfg = test_config(dir.path());
    cfg.max_loaded_models = 2;
    cfg.default_num_ctx = 256;
    let residency = Residency::new(cfg, store);
    let names = |r: &Residency| -> Vec<String> {
        let mut v: Vec<String> = r
            .snapshot()
            .iter()
            .map(|m| m.resolved.name.display_shortest())
            .collect();
        v.sort();
        v
    };
    drop(
        residency
            .acquire(&name(MODEL), None, None)
            .await
            .expect("smol"),
    );
    let held = residency
        .acquire(&name("smol2"), None, None)
        .await
        .expect("smol2");
    // smol is the least recently used idle model: it goes.
    drop(
        residency
            .acquire(&name("smol3"), None, None)
            .await
            .expect("smol3"),
    );
    assert_eq!(names(&residency), ["smol2:latest", "smol3:latest"]);
    // smol2 is in use: smol3 goes even though smol2 is older.
    drop(
        residency
            .acquire(&name(MODEL), None, None)
            .await
            .expect("smol"),
    );
    assert_eq!(names(&residency), ["smol2:latest", "smol:latest"]);
    drop(held);
    // A lease on a model that is not in the store is a 404.
    let err = residency
        .acquire(&name("missing"), None, None)
        .await
        .expect_err("not in the store");
    assert_eq!(err.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_residency_a_discarded_engine_is_loaded_afresh_and_a_newer_load_stays() {
    // What happens to a stopped engine: the request that finds it discards it, the next
    // request loads the model again while the first still holds the old engine, and a late
    // discard through the old lease leaves the new load alone.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_model(dir.path());
    let residency = Residency::new(test_config(dir.path()), store);
    let smol = name(MODEL);
    let old = residency.acquire(&smol, None, None).await.expect("lease");
    old.discard();
    let new = residency.acquire(&smol, None, None).await.expect("lease");
    assert!(new.load_duration > Duration::ZERO, "loaded again");
    let (m_old, m_new) = (old.model().expect("old"), new.model().expect("new"));
    assert!(!Arc::ptr_eq(m_old, m_new), "another engine");
    assert!(m_old.engine().is_some(), "the old lease keeps its engine");
    let snapshot = residency.snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].n_active, 1, "the old lease no longer counts");

    old.discard();
    drop(old);
    let again = residency.acquire(&smol, None, None).await.expect("lease");
    assert_eq!(again.load_duration, Duration::ZERO, "the newer load stayed");
    assert!(Arc::ptr_eq(again.model().expect("model"), m_new));
    assert_eq!(residency.snapshot()[0].n_active, 2);
    drop((new, again));
    residency.shutdown().await;
    assert!(residency.snapshot().is_empty());
}
