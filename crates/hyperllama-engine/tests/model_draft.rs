//! Speculative decoding with a draft model, against the real test models: SmolLM2 drafting
//! for itself (so nearly every draft is accepted), several sequences drafting in one batch,
//! and a draft model with another vocabulary refused.
//!
//! Every test is named `model_*` so that nextest runs them one at a time (see
//! `.config/nextest.toml`).

mod common;

use std::sync::Arc;

use common::{collect_logprobs, load, test_threads, tie_gap, TopLogprobs, GEMMA3, SMOLLM2};
use hyperllama_core::sampling::SamplingParams;
use hyperllama_core::{SeqId, TokenId};
use hyperllama_engine::chat::ChatFormatter;
use hyperllama_engine::drafter::{DraftWant, ModelDrafter};
use hyperllama_engine::llama::ContextOptions;
use hyperllama_engine::{Completion, Engine, EngineConfig, Error, GenerateRequest, Model};
use hyperllama_models::template::ChatMessage;

fn prompt(model: &Model, text: &str) -> Vec<TokenId> {
    let f = ChatFormatter::for_model(model).expect("template compiles");
    f.tokenize(model, &[ChatMessage::new("user", text)], None)
        .expect("tokenizes")
}

const PROMPTS: [&str; 3] = [
    "What is the capital of France? Answer in two sentences.",
    "Write a short poem about the sea.",
    "Explain in a few sentences why the sky is blue.",
];

/// Runs `prompts` at once, greedy, with top-5 log-probabilities; `draft` as the draft model
/// (`None`: speculation off).
fn run(
    model: &Arc<Model>,
    draft: Option<&Arc<Model>>,
    prompts: &[Vec<TokenId>],
) -> Vec<(Vec<TokenId>, TopLogprobs, Completion)> {
    let mut cfg = EngineConfig::new(1024, 4);
    cfg.n_threads = test_threads();
    cfg.speculative = draft.is_some();
    cfg.draft_model = draft.cloned();
    let e = Engine::start(Arc::clone(model), cfg).expect("engine starts");
    let rxs: Vec<_> = prompts
        .iter()
        .map(|p| {
            e.submit(GenerateRequest {
                prompt: p.clone(),
                sampling: SamplingParams::greedy(),
                num_predict: Some(48),
                stop: Vec::new(),
                ignore_eos: false,
                logprobs: Some(5),
                constraint: None,
            })
            .expect("submitted")
        })
        .collect();
    rxs.into_iter().map(collect_logprobs).collect()
}

/// SmolLM2 as its own draft model: alone, each answer is token for token the answer without
/// speculation, with drafts verified and nearly all accepted. Three sequences drafting in
/// the same steps: every token is the argmax of the logits the run computed (verification
/// is exact), and an answer may leave the plain one only at a near tie of the plain run
/// (llama.cpp's batch-composition-dependent rounding; see docs/fidelity.md).
#[test]
fn model_a_draft_model_keeps_the_greedy_output_and_is_accepted() {
    let model = load(SMOLLM2);
    let draft = load(SMOLLM2);
    let prompts: Vec<Vec<TokenId>> = PROMPTS.iter().map(|p| prompt(&model, p)).collect();
    let mut plain = Vec::new();
    for p in &prompts {
        let alone = run(&model, None, std::slice::from_ref(p)).remove(0);
        assert_eq!(alone.2.n_drafted, 0);
        let (tokens, _, done) = run(&model, Some(&draft), std::slice::from_ref(p)).remove(0);
        assert_eq!(tokens, alone.0, "speculation changed a lone greedy answer");
        let rate = done.acceptance_rate().expect("drafts were verified");
        eprintln!(
            "alone: drafted {}, accepted {} ({rate:.3})",
            done.n_drafted, done.n_accepted
        );
        assert!(done.n_drafted > 0 && rate > 0.9, "{done:?}");
        plain.push(alone);
    }
    for ((tokens, top, done), (plain_tokens, plain_top, _)) in
        run(&model, Some(&draft), &prompts).iter().zip(&plain)
    {
        eprintln!(
            "batched: drafted {}, accepted {}",
            done.n_drafted, done.n_accepted
        );
        // In a batch the draft model's own batch-dependent rounding can part from the
        // target's at a near tie, and a long draft (up to 16 tokens) then loses its tail:
        // most drafts still hold, far fewer than alone.
        assert!(
            done.n_drafted > 0 && done.acceptance_rate() > Some(0.4),
            "{done:?}"
        );
        for (j, t) in tokens.iter().enumerate() {
            assert_eq!(*t, top[j][0].0, "token {j} is not the argmax");
        }
        if let Some(i) = tokens.iter().zip(plain_tokens).position(|(a, b)| a != b) {
            assert!(
                tie_gap(&plain_top[i], plain_tokens[i], tokens[i]) < 0.5,
                "a clear greedy choice changed at token {i}"
            );
        } else {
            assert_eq!(tokens.len(), plain_tokens.len());
        }
    }
}

/// The drafter itself: three sequences catch up in one decode and then draft one position
/// per decode for all of them; what it drafts equals what it drafts for each alone; a
/// sequence that moved on recomputes only its new tokens; sequences the engine no longer has
/// lose their slots; a want beyond the slots gets no draft.
#[test]
fn model_the_drafter_batches_sequences_and_keeps_only_what_matches() {
    let model = load(SMOLLM2);
    let prompts: Vec<Vec<TokenId>> = PROMPTS.iter().map(|p| prompt(&model, p)).collect();
    let opts = ContextOptions {
        n_kv_cells: 1024,
        n_slots: 3,
        n_batch: 512,
        n_ubatch: 512,
        n_threads: test_threads(),
        swa_full: true,
        kv_streams: false,
        fill_gaps: false,
        pad_chunks: 0,
        warm_up: false,
    };
    let k = 4;
    let wants: Vec<DraftWant<'_>> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| DraftWant {
            seq: SeqId(i as u64 + 1),
            tokens: p,
            k,
            min_ngram: hyperllama_core::spec::NGRAM_MIN,
        })
        .collect();
    let mut d = ModelDrafter::new(&model, &opts).expect("drafter");
    let drafts = d.propose(&wants);
    assert!(drafts.iter().all(|x| x.len() == k), "{drafts:?}");
    assert_eq!(
        d.n_decodes(),
        k as u64,
        "one catch-up decode, then one per position"
    );
    for (w, batched) in wants.iter().zip(&drafts) {
        let mut alone = ModelDrafter::new(&model, &opts).expect("drafter");
        assert_eq!(&alone.propose(std::slice::from_ref(w))[0], batched);
        assert_eq!(d.n_held(w.seq), Some(w.tokens.len() + k - 1));
    }

    // Sequence 1 accepted two drafts and sampled another token; 2 and 3 wait.
    let mut moved = prompts[0].clone();
    moved.extend_from_slice(&drafts[0][..2]);
    moved.push(if drafts[0][2] == 42 { 43 } else { 42 });
    let before = d.n_decodes();
    let again = d.propose(&[DraftWant {
        seq: SeqId(1),
        tokens: &moved,
        k: 2,
        min_ngram: hyperllama_core::spec::NGRAM_MIN,
    }]);
    assert_eq!(again[0].len(), 2);
    assert_eq!(
        d.n_decodes() - before,
        2,
        "one catch-up decode, one draft position"
    );
    assert_eq!(d.n_held(SeqId(1)), Some(moved.len() + 1));
    assert_eq!(d.n_held(SeqId(2)), Some(prompts[1].len() + k - 1), "kept");

    // A fourth sequence takes the least recently used slot of a sequence not drafting now.
    let fourth = DraftWant {
        seq: SeqId(4),
        tokens: &prompts[2],
        k: 1,
        min_ngram: hyperllama_core::spec::NGRAM_MIN,
    };
    let first = DraftWant {
        seq: SeqId(1),
        tokens: &moved,
        k: 1,
        min_ngram: hyperllama_core::spec::NGRAM_MIN,
    };
    let out = d.propose(&[fourth, first]);
    assert_eq!(out[0], drafts[2][..1], "same tokens, same greedy guess");
    assert_eq!(out[1].len(), 1);
    assert!(d.n_held(SeqId(4)).is_some());
    assert_eq!(
        [2, 3]
            .iter()
            .filter(|&&s| d.n_held(SeqId(s)).is_some())
            .count(),
        1,
        "one of the waiting sequences gave up its slot"
    );

    // More wants than slots: the extra one gets nothing; sequences gone free their slots.
    let many: Vec<DraftWant<'_>> = (10..14)
        .map(|s| DraftWant {
            seq: SeqId(s),
            tokens: &prompts[0],
            k: 1,
            min_ngram: hyperllama_core::spec::NGRAM_MIN,
        })
        .collect();
    let out = d.propose(&many);
    assert_eq!(out.iter().filter(|x| x.is_empty()).count(), 1, "{out:?}");
    d.release(&|_| false);
    assert!((1..14).all(|s| d.n_held(SeqId(s)).is_none()));
}

/// A draft model with another vocabulary (Gemma 3's 262k tokens for SmolLM2's 49k) is
/// refused when the engine starts, with both files named.
#[test]
fn model_a_draft_model_with_another_vocabulary_is_refused() {
    let model = load(SMOLLM2);
    let draft = load(GEMMA3);
    let mut cfg = EngineConfig::new(256, 1);
    cfg.n_threads = test_threads();
    cfg.draft_model = Some(draft);
    let err = Engine::start(model, cfg).expect_err("refused");
    let msg = err.to_string();
    assert!(matches!(err, Error::DraftMismatch { .. }), "{msg}");
    assert!(msg.contains(GEMMA3) && msg.contains(SMOLLM2), "{msg}");
    assert!(msg.contains("vocabulary has 262144 tokens"), "{msg}");
}

/// The drafter's KV cells are not shared between sequences: an idle sequence's draft KV is
/// dropped to make room for a drafting one, and a sequence that cannot fit gets no draft
/// (and costs no decode).
#[test]
fn model_the_drafter_makes_room_in_its_kv_cells() {
    let model = load(SMOLLM2);
    let opts = ContextOptions {
        n_kv_cells: 256,
        n_slots: 2,
        n_batch: 512,
        n_ubatch: 512,
        n_threads: test_threads(),
        swa_full: true,
        kv_streams: false,
        fill_gaps: false,
        pad_chunks: 0,
        warm_up: false,
    };
    let mut d = ModelDrafter::new(&model, &opts).expect("drafter");
    let cells = d.n_cells();
    let base = prompt(&model, PROMPTS[1]);
    let long = |n: usize| base.iter().copied().cycle().take(n).collect::<Vec<_>>();
    let (a, b, huge) = (long(cells * 3 / 5), long(cells * 3 / 5), long(cells + 1));
    let want = |seq: u64, tokens| DraftWant {
        seq: SeqId(seq),
        tokens,
        k: 2,
        min_ngram: hyperllama_core::spec::NGRAM_MIN,
    };
    assert_eq!(d.propose(&[want(1, &a)])[0].len(), 2);
    assert_eq!(d.propose(&[want(2, &b)])[0].len(), 2);
    assert_eq!(d.n_held(SeqId(1)), None, "the idle sequence made room");
    assert_eq!(d.n_held(SeqId(2)), Some(b.len() + 1));
    let before = d.n_decodes();
    assert!(d.propose(&[want(3, &huge)])[0].is_empty());
    assert_eq!(d.n_decodes(), before, "nothing computed");
}
