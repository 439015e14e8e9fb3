//! Saved sessions: a conversation's state saved, restored into a newly loaded model, and
//! continued as if it had never stopped; bad states are `invalid_state`.

#[path = "support/models.rs"]
mod models;

use std::path::PathBuf;

use corral::{ErrorKind, GenerateOptions, Model, ModelOptions};

fn model_path() -> PathBuf {
    models::default_model()
}

fn load(context_length: u32) -> Model {
    Model::load(
        model_path(),
        ModelOptions { context_length: Some(context_length), threads: Some(2), max_sequences: 2, ..Default::default() },
    )
    .unwrap()
}

/// About 1,000 tokens of text.
fn long_document() -> String {
    (0..60).map(|i| format!("Entry {i}: the harbour master logged {} ships and {} storms. ", i * 3 + 1, i % 7)).collect()
}

fn greedy(max_tokens: u32) -> GenerateOptions {
    GenerateOptions { max_tokens: Some(max_tokens), temperature: 0.0, ..Default::default() }
}

#[test]
fn a_restored_session_continues_where_it_stopped() {
    let document = long_document();
    let question = format!("{document}\nQuestion: how many ships did entry 12 log? Answer:");

    // The session that never stops.
    let original = load(2048);
    let session = original.session().unwrap();
    let first = session.complete(&document, &greedy(1)).unwrap();
    assert!(first.usage.prompt_tokens >= 900, "{} prompt tokens", first.usage.prompt_tokens);
    let state = session.state().unwrap();
    let expected = session.complete(&question, &greedy(16)).unwrap();
    let cold = {
        let fresh = load(2048);
        let s = fresh.session().unwrap();
        s.complete(&question, &greedy(16)).unwrap()
    };

    // Restored into another model instance (a new process would load the same way).
    let restored_model = load(2048);
    let restored = restored_model.session_from_state(&state).unwrap();
    let resumed = restored.complete(&question, &greedy(16)).unwrap();
    assert_eq!(resumed.usage.cached_tokens, first.usage.prompt_tokens, "every saved token is reused");
    assert_eq!(resumed.text, expected.text, "the same greedy continuation");
    let (warm, cold) = (resumed.usage.time_to_first_token_ms, cold.usage.time_to_first_token_ms);
    eprintln!("time to first token: restored {warm:.1} ms, cold {cold:.1} ms ({:.0}x)", cold / warm);
    assert!(cold > 5.0 * warm, "time to first token: restored {warm:.1} ms, cold {cold:.1} ms");

    // Through a file too.
    let path = std::env::temp_dir().join(format!("corral-state-{}.bin", std::process::id()));
    session.save(&path).unwrap();
    let from_file = restored_model.load_session(&path).unwrap();
    assert!(from_file.complete(&question, &greedy(4)).unwrap().usage.cached_tokens > 0);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn states_that_do_not_fit_or_are_damaged_are_invalid_state() {
    let model = load(1024);
    let session = model.session().unwrap();
    session.complete("The quick brown fox jumps over the lazy dog.", &greedy(2)).unwrap();
    let state = session.state().unwrap();

    let other_context = load(2048);
    let err = other_context.session_from_state(&state).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.message().contains("context_length 1024"), "{err}");

    for damaged in [&state[..state.len() / 2], &state[..0], b"CORRALSS garbage".as_slice()] {
        assert_eq!(model.session_from_state(damaged).unwrap_err().kind(), ErrorKind::InvalidState);
    }
    let mut flipped = state.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    assert_eq!(model.session_from_state(&flipped).unwrap_err().kind(), ErrorKind::InvalidState);
    let missing = model.load_session("/nonexistent/state.bin").unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::InvalidArgument);

    // The model keeps serving, and an empty session round-trips.
    let empty = model.session().unwrap().state().unwrap();
    let restored = model.session_from_state(&empty).unwrap();
    assert_eq!(restored.complete("Hello", &greedy(2)).unwrap().usage.cached_tokens, 0);
    assert!(model.complete("Hello", &greedy(2)).is_ok());
}
