//! LoRA adapters: loaded with the model or later, chosen per request, never mixed in a decode,
//! never sharing cached prefixes across sets; bad adapter files are typed errors.

#[path = "support/models.rs"]
mod models;

use corral::{AdapterChoice, AdapterFile, ErrorKind, GenerateOptions, Model, ModelOptions};
use models::{default_model, greedy, test_adapter};

const PROMPT: &str = "The old lighthouse keeper opened the door and saw";

fn with_adapters() -> Model {
    let adapters =
        vec![AdapterFile { name: "a".into(), path: test_adapter('a') }, AdapterFile { name: "b".into(), path: test_adapter('b') }];
    Model::load(default_model(), ModelOptions { context_length: Some(2048), adapters, ..Default::default() }).unwrap()
}

fn using(adapters: &[(&str, f32)], max_tokens: u32) -> GenerateOptions {
    let adapters = adapters.iter().map(|&(name, scale)| AdapterChoice { name: name.into(), scale }).collect();
    GenerateOptions { adapters, logprobs: Some(0), ..greedy(max_tokens) }
}

/// The generated text and each token's log-probability.
fn run(model: &Model, options: &GenerateOptions) -> (String, Vec<f32>) {
    let done = model.complete(PROMPT, options).unwrap();
    (done.text.clone(), done.logprobs.iter().map(|l| l.token.logprob).collect())
}

/// Adapter sets: none, each alone, both at half scale.
const SETS: [&[(&str, f32)]; 4] = [&[], &[("a", 1.0)], &[("b", 1.0)], &[("a", 0.5), ("b", 0.5)]];

/// Each of SETS run alone, then `copies` requests of each set at once (in SETS order) on an
/// empty cache.
fn alone_then_together(model: &Model, copies: usize) -> (Vec<(String, Vec<f32>)>, Vec<(String, Vec<f32>)>) {
    let solo: Vec<_> = SETS.iter().map(|set| run(model, &using(set, 32))).collect();
    model.clear_cache().unwrap();
    let together = std::thread::scope(|scope| {
        let handles: Vec<_> = SETS
            .iter()
            .flat_map(|set| std::iter::repeat_n(set, copies))
            .map(|set| scope.spawn(move || run(model, &using(set, 32))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    (solo, together)
}

#[test]
fn scale_zero_is_the_base_model_and_scale_one_changes_it() {
    let model = with_adapters();
    let base = run(&model, &using(&[], 24));
    assert_eq!(run(&model, &using(&[("a", 0.0)], 24)), base, "scale 0 must be the base model exactly");
    let a = run(&model, &using(&[("a", 1.0)], 24));
    assert_ne!(a.1, base.1, "scale 1 must change the logits");
    let b = run(&model, &using(&[("b", 1.0)], 24));
    assert_ne!(b.1, a.1);
    // Both at once differ from each alone; the order they are named in does not matter.
    let both = run(&model, &using(&[("a", 1.0), ("b", 0.5)], 24));
    assert_eq!(run(&model, &using(&[("b", 0.5), ("a", 1.0)], 24)), both);
    assert_ne!(both.1, a.1);
    // Going back to the base model after adapters gives the base output again.
    assert_eq!(run(&model, &using(&[], 24)), base);
}

#[test]
fn concurrent_requests_with_different_adapters_match_their_solo_runs() {
    let model = with_adapters();
    let (solo, together) = alone_then_together(&model, 2);
    // Requests with different sets never share a decode; the two of one set do, and
    // llama.cpp's f32 kernels of the adapters' matrices depend on the batch: log-probabilities
    // agree within the README's batching tolerance, and a text may take the other branch of a
    // near tie (compared up to there).
    for (i, result) in together.iter().enumerate() {
        let expected = &solo[i / 2];
        let same = result.0.chars().zip(expected.0.chars()).take_while(|(x, y)| x == y).count();
        assert!(same >= 20, "set {:?}: {:?} vs {:?} solo", SETS[i / 2], result.0, expected.0);
        for (x, y) in result.1.iter().zip(&expected.1) {
            assert!((x - y).abs() < 0.2, "set {:?}: logprob {x} vs {y} solo", SETS[i / 2]);
            if (x - y).abs() > 1e-3 {
                break; // the two runs may pick different tokens from here
            }
        }
    }
}

#[test]
fn one_request_per_adapter_set_runs_bit_for_bit_as_alone() {
    let model = with_adapters();
    let (solo, together) = alone_then_together(&model, 1);
    assert_eq!(together, solo);
}

#[test]
fn cached_prefixes_are_kept_per_adapter_set() {
    let model = with_adapters();
    let first = model.complete(PROMPT, &using(&[], 4)).unwrap();
    assert_eq!(first.usage.cached_tokens, 0);
    // The same prompt with an adapter cannot reuse the base model's cells.
    assert_eq!(model.complete(PROMPT, &using(&[("a", 1.0)], 4)).unwrap().usage.cached_tokens, 0);
    assert!(model.complete(PROMPT, &using(&[("a", 1.0)], 4)).unwrap().usage.cached_tokens > 0);
    assert!(model.complete(PROMPT, &using(&[], 4)).unwrap().usage.cached_tokens > 0);
    // A session that changes adapters recomputes its history.
    let session = model.session().unwrap();
    session.complete(PROMPT, &using(&[("b", 1.0)], 4)).unwrap();
    let again = session.complete(PROMPT, &using(&[("b", 1.0)], 4)).unwrap();
    assert!(again.usage.cached_tokens > 0);
    assert_eq!(session.complete(PROMPT, &using(&[("b", 0.5)], 4)).unwrap().usage.cached_tokens, 0);
}

#[test]
fn a_saved_session_keeps_its_adapter_set() {
    let model = with_adapters();
    let session = model.session().unwrap();
    let options = using(&[("a", 1.0)], 8);
    let first = session.complete(PROMPT, &options).unwrap();
    let state = session.state().unwrap();
    let next_prompt = format!("{PROMPT}{}", first.text);
    let expected = session.complete(&next_prompt, &options).unwrap();
    let restored = model.session_from_state(&state).unwrap();
    let resumed = restored.complete(&next_prompt, &options).unwrap();
    assert_eq!(resumed.text, expected.text);
    assert!(resumed.usage.cached_tokens > 0);
    // Restored into a model without that adapter, the session recomputes (and still works).
    let plain = Model::load(default_model(), ModelOptions { context_length: Some(2048), ..Default::default() }).unwrap();
    let elsewhere = plain.session_from_state(&state).unwrap();
    assert_eq!(elsewhere.complete(&next_prompt, &greedy(4)).unwrap().usage.cached_tokens, 0);
}

#[test]
fn adapters_come_and_go_while_the_model_serves() {
    let model = Model::load(default_model(), ModelOptions { context_length: Some(2048), ..Default::default() }).unwrap();
    assert!(model.adapters().is_empty());
    let unknown = model.complete(PROMPT, &using(&[("a", 1.0)], 4)).unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::InvalidArgument);
    model.load_adapter("a", test_adapter('a')).unwrap();
    assert_eq!(model.adapters(), vec!["a".to_string()]);
    assert_eq!(model.load_adapter("a", test_adapter('b')).unwrap_err().kind(), ErrorKind::InvalidArgument);
    // A stream running with the adapter finishes with it after the adapter is removed.
    let stream = model.complete_stream(PROMPT, &using(&[("a", 1.0)], 16)).unwrap();
    model.remove_adapter("a").unwrap();
    let done = stream.collect_completion().unwrap();
    assert_eq!(done.usage.completion_tokens, 16);
    assert_eq!(model.complete(PROMPT, &using(&[("a", 1.0)], 4)).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(model.remove_adapter("a").unwrap_err().kind(), ErrorKind::InvalidArgument);
    for bad in [f32::NAN, f32::INFINITY, 1000.0] {
        model.load_adapter("b", test_adapter('b')).ok();
        assert_eq!(model.complete(PROMPT, &using(&[("b", bad)], 4)).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
    assert_eq!(model.complete(PROMPT, &using(&[("b", 1.0), ("b", 0.5)], 4)).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(model.load_adapter("", test_adapter('b')).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn bad_adapter_files_are_typed_errors_and_the_model_keeps_serving() {
    let model = Model::load(default_model(), ModelOptions { context_length: Some(1024), ..Default::default() }).unwrap();
    let dir = std::env::temp_dir().join(format!("corral-adapters-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = model.load_adapter("x", dir.join("missing.gguf")).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::ModelNotFound);
    let random = dir.join("random.gguf");
    std::fs::write(&random, (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<u8>>()).unwrap();
    assert_eq!(model.load_adapter("x", &random).unwrap_err().kind(), ErrorKind::InvalidModel);
    let bytes = std::fs::read(test_adapter('a')).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(model.load_adapter("x", &truncated).unwrap_err().kind(), ErrorKind::InvalidModel);
    // A whole model is not an adapter; an adapter of another architecture is refused.
    let not_adapter = model.load_adapter("x", default_model()).unwrap_err();
    assert!(not_adapter.to_string().contains("not a LoRA adapter"), "{not_adapter}");
    let embedder = Model::load(models::embedding_model(), ModelOptions::default()).unwrap();
    let other = embedder.load_adapter("x", test_adapter('a')).unwrap_err();
    assert_eq!(other.kind(), ErrorKind::InvalidModel);
    assert!(other.to_string().contains("architecture"), "{other}");
    // Wrong shapes: the adapter's lora_b of one layer is cut to fewer rows (a hand-edited header).
    let shapes = dir.join("shapes.gguf");
    std::fs::write(&shapes, reshape_first_lora_b(&bytes)).unwrap();
    let wrong = model.load_adapter("x", &shapes).unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::InvalidModel, "{wrong}");
    // Every truncation and seeded byte changes in the header and tensor table: a typed error
    // (or, where the change is harmless, a loaded adapter), never a crash.
    // The tensor data: 30 layers of rank-8 pairs for attn_q (576 x 576) and attn_v (576 -> 192), f32.
    let data_start = bytes.len() - 30 * (8 * 576 * 3 + 8 * 192) * 4;
    for cut in [0, 4, 8, 24, 100, 1000, data_start / 2, data_start, bytes.len() - 1] {
        std::fs::write(&truncated, &bytes[..cut.min(bytes.len() - 1)]).unwrap();
        let e = model.load_adapter("x", &truncated).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidModel, "cut at {cut}: {e}");
    }
    let mutated = dir.join("mutated.gguf");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..60 {
        let mut copy = bytes.clone();
        for _ in 0..1 + round % 4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed % data_start as u64) as usize;
            copy[at] = (seed >> 32) as u8;
        }
        std::fs::write(&mutated, &copy).unwrap();
        match model.load_adapter("m", &mutated) {
            Ok(()) => model.remove_adapter("m").unwrap(),
            Err(e) => assert!(matches!(e.kind(), ErrorKind::InvalidModel | ErrorKind::InvalidArgument), "round {round}: {e}"),
        }
    }
    assert!(model.adapters().is_empty());
    assert_eq!(model.complete(PROMPT, &greedy(4)).unwrap().usage.completion_tokens, 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The adapter with its first `lora_b` tensor declared with one row less (its data offset and
/// the file stay valid: the tensor just no longer matches the model).
fn reshape_first_lora_b(bytes: &[u8]) -> Vec<u8> {
    let name = b"blk.0.attn_q.weight.lora_b";
    let at = bytes.windows(name.len()).position(|w| w == name).expect("the adapter has the tensor") + name.len();
    let mut out = bytes.to_vec();
    // n_dims (u32), then ne[0] (u64) = rank, ne[1] (u64) = rows.
    let rows_at = at + 4 + 8;
    let rows = u64::from_le_bytes(out[rows_at..rows_at + 8].try_into().unwrap());
    out[rows_at..rows_at + 8].copy_from_slice(&(rows - 32).to_le_bytes());
    out
}
