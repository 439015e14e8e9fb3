//! `Model::embed` and `Model::rerank` on real GGUF files: the MiniLM embedding model and the
//! test-only reranker built by scripts/fetch-embedding-models.sh, and the default chat model.

#[path = "support/models.rs"]
mod models;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use corral::{CancelHandle, EmbedOptions, ErrorKind, GenerateOptions, Model, ModelOptions, Pooling, RerankOptions};

fn load(path: PathBuf) -> Model {
    Model::load(path, ModelOptions { threads: Some(2), ..Default::default() }).expect("the model loads")
}

fn minilm() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| load(models::embedding_model()))
}

fn reranker() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| load(models::reranker_model()))
}

fn chat_model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| load(models::default_model()))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("Sentence number {i} talks about {} and {}.", ["cats", "rivers", "bread", "engines"][i % 4], i * 7)).collect()
}

#[test]
fn minilm_vectors_are_unit_length_and_match_known_similarity() {
    let model = minilm();
    let e = model.embed(&["A man is eating food.", "A man is eating a piece of bread."], &EmbedOptions::default()).unwrap();
    assert_eq!(e.vectors.len(), 2);
    for v in &e.vectors {
        assert_eq!(v.len(), 384);
        assert!(v.iter().all(|x| x.is_finite()));
        let norm = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
    // A float32 numpy forward pass of the same weights gives 0.7553.
    let similarity = cosine(&e.vectors[0], &e.vectors[1]);
    assert!((similarity - 0.7553).abs() < 0.003, "cosine {similarity}");
    assert!(e.prompt_tokens >= 16, "[CLS] and [SEP] count: {}", e.prompt_tokens);
}

#[test]
fn a_batch_equals_the_same_texts_one_by_one() {
    let model = minilm();
    let texts = texts(64);
    let batched = model.embed(&texts, &EmbedOptions::default()).unwrap().vectors;
    for (text, vector) in texts.iter().zip(&batched) {
        let alone = &model.embed(&[text], &EmbedOptions::default()).unwrap().vectors[0];
        assert!(cosine(alone, vector) >= 0.9999, "{text}");
    }
}

#[test]
fn concurrent_calls_share_the_engine() {
    let model = minilm();
    let expected = model.embed(&texts(12), &EmbedOptions::default()).unwrap().vectors;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| model.embed(&texts(12), &EmbedOptions::default()).unwrap().vectors)).collect();
        for handle in handles {
            for (a, b) in handle.join().unwrap().iter().zip(&expected) {
                assert!(cosine(a, b) >= 0.9999);
            }
        }
    });
}

#[test]
fn bad_inputs_get_typed_errors_and_the_model_keeps_serving() {
    let model = minilm();
    let none: [&str; 0] = [];
    assert!(model.embed(&none, &EmbedOptions::default()).unwrap().vectors.is_empty());
    assert_eq!(model.embed(&["ok", ""], &EmbedOptions::default()).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let long = "word ".repeat(2000);
    let err = model.embed(&[&long], &EmbedOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextOverflow, "{err}");
    let cut = model.embed(&[&long], &EmbedOptions { truncate: true, ..Default::default() }).unwrap();
    assert_eq!(cut.prompt_tokens, 512);
    let cancel = CancelHandle::default();
    cancel.cancel();
    let err = model.embed(&texts(4), &EmbedOptions { cancel: Some(cancel), ..Default::default() }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    let err = model.embed(&texts(4), &EmbedOptions { timeout: Some(Duration::from_nanos(1)), ..Default::default() }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    let err = model.embed(&["x"], &EmbedOptions { pooling: Some(Pooling::Rank), ..Default::default() }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // An encoder cannot generate, nor rank without a head.
    assert_eq!(model.complete("hello", &GenerateOptions::default()).unwrap_err().kind(), ErrorKind::Unsupported);
    let chat = model.chat(&[corral::Message::new("user", "hi")], &GenerateOptions::default()).unwrap_err();
    assert_eq!(chat.kind(), ErrorKind::Unsupported);
    let zero = EmbedOptions { timeout: Some(Duration::ZERO), ..Default::default() };
    assert_eq!(model.embed(&["x"], &zero).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(model.rerank("q", &["d"], &RerankOptions::default()).unwrap_err().kind(), ErrorKind::Unsupported);
    assert_eq!(model.embed(&["still serving"], &EmbedOptions::default()).unwrap().vectors[0].len(), 384);
}

#[test]
fn pooling_and_normalize_options_change_the_vectors() {
    let model = minilm();
    let text = ["The river floods every spring."];
    let mean = &model.embed(&text, &EmbedOptions::default()).unwrap().vectors[0];
    let cls = &model.embed(&text, &EmbedOptions { pooling: Some(Pooling::Cls), ..Default::default() }).unwrap().vectors[0];
    assert!(cosine(mean, cls) < 0.999);
    let raw = &model.embed(&text, &EmbedOptions { normalize: false, ..Default::default() }).unwrap().vectors[0];
    let norm = raw.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() > 0.01, "mean pooling of MiniLM is not unit length: {norm}");
    assert!(cosine(raw, mean) > 0.99999);
}

// The test reranker's head is seeded random weights: these tests check the mechanics (one score
// per document, order, top_n, batching), not ranking quality.
#[test]
fn rerank_scores_every_document_in_order() {
    let model = reranker();
    let documents = ["A man is eating food.", "The sky is blue.", "Bread is baked.", "Engines need oil.", "Cats sleep a lot."];
    let results = model.rerank("What do people eat?", &documents, &RerankOptions::default()).unwrap();
    assert_eq!(results.len(), documents.len());
    let mut seen: Vec<usize> = results.iter().map(|r| r.index).collect();
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    for pair in results.windows(2) {
        assert!(pair[0].score >= pair[1].score);
    }
    for r in &results {
        assert!((0.0..=1.0).contains(&r.score));
        assert_eq!(r.document, documents[r.index]);
        let alone = model.rerank("What do people eat?", &[documents[r.index]], &RerankOptions::default()).unwrap();
        // The reranker is F16, on ggml's own kernels, whose summation order depends on the
        // batch's width: on AVX-512 CPUs scores alone and batched differ by up to about 1.1e-4.
        assert!((alone[0].score - r.score).abs() < 1e-3, "{}: {} alone, {} batched", r.index, alone[0].score, r.score);
    }
    let top = model.rerank("What do people eat?", &documents, &RerankOptions { top_n: Some(2), ..Default::default() }).unwrap();
    assert_eq!(top, results[..2]);
    assert_eq!(
        model.rerank("q", &["d"], &RerankOptions { top_n: Some(0), ..Default::default() }).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(model.rerank("", &["d"], &RerankOptions::default()).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let long = "word ".repeat(600);
    assert_eq!(model.rerank("q", &[&long], &RerankOptions::default()).unwrap_err().kind(), ErrorKind::ContextOverflow);
    assert_eq!(model.rerank("q", &[&long], &RerankOptions { truncate: true, ..Default::default() }).unwrap().len(), 1);
    // Its vectors are the mean of its tokens.
    assert_eq!(model.embed(&["text"], &EmbedOptions::default()).unwrap().vectors[0].len(), 384);
}

#[test]
fn a_chat_model_embeds_while_it_generates() {
    let model = chat_model();
    std::thread::scope(|scope| {
        let generation =
            scope.spawn(|| model.complete("Once upon a time", &GenerateOptions { max_tokens: Some(32), ..Default::default() }));
        let e = model.embed(&texts(16), &EmbedOptions::default()).unwrap();
        assert_eq!(e.vectors.len(), 16);
        assert!(e.vectors.iter().all(|v| v.len() == 576 && v.iter().all(|x| x.is_finite())));
        assert!(generation.join().unwrap().is_ok());
    });
    let err = model.rerank("q", &["d"], &RerankOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
}

#[test]
fn closing_the_model_ends_embedding_calls() {
    let model = load(models::embedding_model());
    model.embed(&["warm"], &EmbedOptions::default()).unwrap();
    model.close();
    assert_eq!(model.embed(&["x"], &EmbedOptions::default()).unwrap_err().kind(), ErrorKind::Closed);
}
