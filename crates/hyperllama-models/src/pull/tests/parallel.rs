//! Parallel range requests: splitting, progress, resuming parts, falling back to one stream.

use super::super::download::BlobFiles;
use super::super::parts::{PartsState, Sidecar};
use super::super::*;
use super::server::{
    assert_no_partials, assert_pulled, parallel, pull, pull_events, setup_with, test_model,
    TestModel,
};

/// The plan a parallel test pull makes for the model's weights.
fn weights_plan(model: &TestModel) -> PartsState {
    let size = model.blobs[0].1.len() as u64;
    PartsState::plan(model.weights, size, 4, 0).expect("plan")
}

/// Leaves a parallel download of the weights on disk as `state` says: the done bytes of each
/// part at their offsets, zeros elsewhere, and the sidecar.
fn leave_parts(store: &Store, model: &TestModel, state: &PartsState) {
    let weights = &model.blobs[0].1;
    let mut bytes = vec![0u8; weights.len()];
    for part in &state.parts {
        let range = part.start as usize..part.next() as usize;
        bytes[range.clone()].copy_from_slice(&weights[range]);
    }
    let files = BlobFiles::new(store, &model.weights);
    std::fs::write(&files.partial, bytes).expect("partial");
    state.save(&files.sidecar).expect("sidecar");
}

#[tokio::test]
async fn large_blob_is_fetched_in_parts_with_aggregated_progress() {
    let (_dir, store, registry, puller) = setup_with(parallel).await;
    let model = test_model(30);
    registry.serve("library/big", "latest", &model);
    let (result, events) = pull_events(&puller, "big").await;
    result.expect("pull");
    assert_pulled(&store, "big", &model);
    let size = model.blobs[0].1.len();
    assert_eq!(registry.served(&model.weights), size);
    let mut requests = registry.requests(&model.weights.to_string());
    requests.sort();
    let mut expected: Vec<String> = weights_plan(&model)
        .parts
        .iter()
        .map(|p| {
            format!(
                "/v2/library/big/blobs/{} bytes={}-{}",
                model.weights,
                p.start,
                p.end - 1
            )
        })
        .collect();
    expected.sort();
    assert_eq!(requests, expected);
    // Progress counts every part's bytes, only grows, and ends complete.
    let completed: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            PullEvent::Pulling {
                digest, completed, ..
            } if *digest == model.weights => Some(*completed),
            _ => None,
        })
        .collect();
    assert!(completed.windows(2).all(|w| w[0] <= w[1]), "{completed:?}");
    assert_eq!(completed.last().copied(), Some(size as u64));
    // The small template blob is below the threshold: one plain request.
    let template = model.blobs[1].0.to_string();
    assert_eq!(registry.requests(&template).len(), 1);
    assert!(registry.requests(&template)[0].ends_with(" -"));
}

#[tokio::test]
async fn cut_part_resumes_only_its_missing_bytes() {
    let (_dir, store, registry, puller) = setup_with(parallel).await;
    let model = test_model(31);
    registry.serve("library/cutpart", "latest", &model);
    let second = weights_plan(&model).parts[1];
    registry.with(|s| s.faults.cut_range = Some((second.start as usize, 1000)));
    let (result, _) = pull(&puller, "cutpart").await;
    result.expect("pull");
    assert_pulled(&store, "cutpart", &model);
    let size = model.blobs[0].1.len();
    let served = registry.served(&model.weights);
    assert!(served < 2 * size, "served {served} of {size}");
    assert_eq!(served, size, "the bytes before the cut were kept");
    let retry = format!("bytes={}-{}", second.start + 1000, second.end - 1);
    assert!(
        registry
            .requests(&model.weights.to_string())
            .iter()
            .any(|l| l.ends_with(&retry)),
        "{:?}",
        registry.requests("/blobs/")
    );
}

#[tokio::test]
async fn resumes_each_part_from_the_sidecar() {
    let (_dir, store, registry, puller) = setup_with(parallel).await;
    let model = test_model(32);
    registry.serve("library/resumeparts", "latest", &model);
    let mut state = weights_plan(&model);
    let half = (state.parts[1].end - state.parts[1].start) / 2;
    let lens: Vec<u64> = state.parts.iter().map(|p| p.end - p.start).collect();
    state.parts[0].done = lens[0];
    state.parts[1].done = half;
    state.parts[3].done = lens[3];
    leave_parts(&store, &model, &state);
    let (result, _) = pull(&puller, "resumeparts").await;
    result.expect("pull");
    assert_pulled(&store, "resumeparts", &model);
    let missing = (lens[1] - half + lens[2]) as usize;
    assert_eq!(registry.served(&model.weights), missing);
    let mut requests = registry.requests(&model.weights.to_string());
    requests.sort();
    let expected = [
        format!(
            "bytes={}-{}",
            state.parts[1].start + half,
            state.parts[1].end - 1
        ),
        format!("bytes={}-{}", state.parts[2].start, state.parts[2].end - 1),
    ];
    assert_eq!(requests.len(), 2, "{requests:?}");
    for (request, range) in requests.iter().zip(&expected) {
        assert!(request.ends_with(range.as_str()), "{request} vs {range}");
    }
}

#[tokio::test]
async fn failed_parts_leave_a_sidecar_to_resume_from() {
    let (_dir, store, registry, puller) = setup_with(|c| {
        parallel(c);
        c.max_retries = 0;
    })
    .await;
    let model = test_model(33);
    registry.serve("library/again", "latest", &model);
    let second = weights_plan(&model).parts[1];
    registry.with(|s| s.faults.cut_range = Some((second.start as usize, 700)));
    let (result, _) = pull(&puller, "again").await;
    assert!(
        matches!(
            result,
            Err(PullError::Http { .. } | PullError::Status { status: 502, .. })
        ),
        "{result:?}"
    );
    let files = BlobFiles::new(&store, &model.weights);
    let size = model.blobs[0].1.len() as u64;
    match PartsState::load(&files.sidecar, &model.weights, size, files.partial_len()) {
        Sidecar::Usable(state) => {
            assert_eq!(state.parts[1].done, 700, "{state:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!files.lock.exists(), "the lock file goes with the lock");
    let served_before = registry.served(&model.weights);
    let (result, _) = pull(&puller, "again").await;
    result.expect("second pull");
    assert_pulled(&store, "again", &model);
    assert!(
        registry.served(&model.weights) - served_before <= (size as usize) - 700,
        "the second pull fetched only what was missing"
    );
}

#[tokio::test]
async fn server_ignoring_ranges_gets_one_stream() {
    let (_dir, store, registry, puller) = setup_with(parallel).await;
    let model = test_model(34);
    registry.serve("library/noranges", "latest", &model);
    registry.with(|s| s.faults.ignore_range = true);
    let (result, _) = pull(&puller, "noranges").await;
    result.expect("pull");
    assert_pulled(&store, "noranges", &model);
    // The probe's whole-blob answer was the download.
    assert_eq!(registry.requests(&model.weights.to_string()).len(), 1);
    assert_eq!(registry.served(&model.weights), model.blobs[0].1.len());
}

#[tokio::test]
async fn sidecar_resume_falls_back_when_ranges_stop_working() {
    let (_dir, store, registry, puller) = setup_with(parallel).await;
    let model = test_model(35);
    registry.serve("library/fallback", "latest", &model);
    let mut state = weights_plan(&model);
    state.parts[2].done = 100;
    leave_parts(&store, &model, &state);
    registry.with(|s| s.faults.ignore_range = true);
    let (result, _) = pull(&puller, "fallback").await;
    result.expect("pull");
    assert_pulled(&store, "fallback", &model);
}

#[tokio::test]
async fn unusable_sidecar_starts_over() {
    let (_dir, store, registry, puller) = setup_with(parallel).await;
    let model = test_model(36);
    registry.serve("library/garbled", "latest", &model);
    let files = BlobFiles::new(&store, &model.weights);
    std::fs::write(&files.partial, vec![7u8; model.blobs[0].1.len()]).expect("partial");
    std::fs::write(&files.sidecar, b"{\"parts\": 3}").expect("sidecar");
    let (result, _) = pull(&puller, "garbled").await;
    result.expect("pull");
    assert_pulled(&store, "garbled", &model);
    assert_eq!(registry.served(&model.weights), model.blobs[0].1.len());
}

#[tokio::test]
async fn parts_follow_redirects() {
    let (_dir, store, registry, puller) = setup_with(parallel).await;
    let model = test_model(37);
    registry.serve("library/cdnparts", "latest", &model);
    registry.with(|s| s.faults.redirect = true);
    let (result, _) = pull(&puller, "cdnparts").await;
    result.expect("pull");
    assert_pulled(&store, "cdnparts", &model);
    let cdn = registry.requests(&format!("/cdn/{}", model.weights));
    assert_eq!(cdn.len(), 4, "{cdn:?}");
    assert!(cdn.iter().all(|l| l.contains(" bytes=")), "{cdn:?}");
}

#[tokio::test]
async fn wrong_digest_in_parts_leaves_nothing() {
    let (_dir, store, registry, puller) = setup_with(parallel).await;
    let model = test_model(38);
    registry.serve("library/badparts", "latest", &model);
    registry.with(|s| {
        if let Some(b) = s.blobs.get_mut(&model.weights.to_string()) {
            b[5000] ^= 0xff;
        }
    });
    let (result, _) = pull(&puller, "badparts").await;
    assert!(
        matches!(result, Err(PullError::DigestMismatch { .. })),
        "{result:?}"
    );
    assert!(!store.has_blob(&model.weights));
    assert_no_partials(&store);
}
