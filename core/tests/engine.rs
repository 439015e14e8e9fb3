//! End-to-end tests of the core on the real default model (fetched by scripts/fetch-model.sh).

#[path = "support/models.rs"]
mod models;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use corral::{ErrorKind, FinishReason, GenerateOptions, Message, Model, ModelOptions};

fn model_path() -> PathBuf {
    models::default_model()
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        Model::load(model_path(), ModelOptions { context_length: Some(8192), threads: Some(2), ..Default::default() })
            .expect("the default model loads")
    })
}

/// A model of the test's own. llama.cpp's numerics depend on how tokens are batched together, so
/// tests that compare two generations token for token must not share an engine with other
/// tests, and clear the prefix cache between the runs they compare.
fn private_model() -> Model {
    Model::load(model_path(), ModelOptions { context_length: Some(2048), threads: Some(2), ..Default::default() }).unwrap()
}

fn greedy(max_tokens: u32) -> GenerateOptions {
    GenerateOptions { max_tokens: Some(max_tokens), temperature: 0.0, ..Default::default() }
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corral-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The default model with one byte string replaced by another of the same length
/// (so every offset in the file stays valid).
fn patched_model(name: &str, from: &[u8], to: &[u8]) -> PathBuf {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(model_path()).unwrap();
    let header_end = 4 << 20;
    let at = bytes[..header_end].windows(from.len()).position(|w| w == from).expect("pattern in header");
    bytes[at..at + to.len()].copy_from_slice(to);
    temp_file(name, &bytes)
}

fn load_err(path: &std::path::Path) -> corral::Error {
    Model::load(path, ModelOptions { context_length: Some(256), ..Default::default() }).expect_err("load must fail")
}

#[test]
fn metadata_matches_the_gguf() {
    let info = model().info();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.quantization, "Q4_1");
    assert_eq!(info.layers, 30);
    assert_eq!(info.embedding_length, 576);
    assert_eq!(info.vocab_size, 49152);
    assert_eq!(info.context_length_trained, 8192);
    assert_eq!(info.context_length, 8192);
    assert_eq!(info.size_bytes, std::fs::metadata(model_path()).unwrap().len());
    assert!((130_000_000..140_000_000).contains(&info.parameters), "{}", info.parameters);
    assert!(info.chat_template.as_deref().unwrap().contains("<|im_start|>"));
    assert_eq!(info.eos_token.as_ref().unwrap().text, "<|im_end|>");
    assert_eq!(info.metadata["general.architecture"], "llama");
    assert_eq!(info.metadata["tokenizer.ggml.tokens"].as_array().unwrap().len(), 49152);
    assert!(!info.add_bos_token);
}

#[test]
fn tokenize_round_trips_unicode() {
    let m = model();
    for text in ["Hello, world!", "naïve café 😀🎉 emoji", "日本語のテキストと中文", "  leading spaces\n\ttabs", ""] {
        let ids = m.tokenize(text, true, false).unwrap();
        assert_eq!(m.detokenize(&ids, false).unwrap(), text, "round trip of {text:?}");
    }
}

#[test]
fn special_token_text_is_not_parsed_unless_asked() {
    let m = model();
    let plain = m.tokenize("<|im_start|>", false, false).unwrap();
    let parsed = m.tokenize("<|im_start|>", false, true).unwrap();
    assert_eq!(parsed.len(), 1);
    assert!(plain.len() > 1, "user text must not become a control token: {plain:?}");
}

#[test]
fn detokenize_rejects_out_of_range_ids() {
    let e = model().detokenize(&[1, -5], false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = model().detokenize(&[49152], false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn greedy_is_deterministic_and_seeded_sampling_repeats() {
    let m = &private_model();
    let a = m.complete("The capital of France is", &greedy(12)).unwrap();
    m.clear_cache().unwrap();
    let b = m.complete("The capital of France is", &greedy(12)).unwrap();
    assert_eq!(a.text, b.text);
    assert_eq!(a.tokens, b.tokens);
    assert!(a.text.contains("Paris"), "{:?}", a.text);
    let seeded = GenerateOptions { max_tokens: Some(16), temperature: 0.9, seed: Some(42), ..Default::default() };
    let c = m.complete("Once upon a time", &seeded).unwrap();
    m.clear_cache().unwrap();
    let d = m.complete("Once upon a time", &seeded).unwrap();
    assert_eq!(c.tokens, d.tokens);
}

#[test]
fn max_tokens_and_finish_reason_length() {
    let out = model().complete("Count: one, two, three,", &greedy(5)).unwrap();
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert_eq!(out.usage.completion_tokens, 5);
    assert_eq!(out.tokens.len(), 5);
    let none = model().complete("Hello", &greedy(0)).unwrap();
    assert_eq!(none.finish_reason, FinishReason::Length);
    assert_eq!(none.text, "");
}

#[test]
fn stop_strings_end_generation_and_are_not_emitted() {
    let m = &private_model();
    let full = m.complete("The capital of France is", &greedy(24)).unwrap();
    m.clear_cache().unwrap();
    // Stop at a string that spans token boundaries in the greedy output.
    let at = full.text.find("Paris").expect("Paris in greedy output");
    let stop = "ari".to_string();
    let out = m.complete("The capital of France is", &GenerateOptions { stop: vec![stop.clone()], ..greedy(24) }).unwrap();
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.text, full.text[..at + 1]);
    assert!(!out.text.contains(&stop));
}

#[test]
fn streamed_chunks_are_complete_utf8_and_add_up() {
    let m = model();
    let messages = [Message::new("user", "Write three emoji and a Chinese greeting: 😀 你好")];
    let options = GenerateOptions { max_tokens: Some(48), temperature: 0.0, ..Default::default() };
    let mut text = String::new();
    let mut tokens = Vec::new();
    let mut finished = None;
    for chunk in m.chat_stream(&messages, &options).unwrap() {
        let chunk = chunk.unwrap();
        text.push_str(&chunk.text);
        tokens.extend(chunk.tokens);
        finished = chunk.finish_reason.or(finished);
    }
    assert!(finished.is_some());
    assert!(text.chars().any(|c| !c.is_ascii()), "expected non-ASCII output: {text:?}");
    assert!(!text.contains('\u{FFFD}'), "{text:?}");
    // Chunks concatenate to the detokenized tokens (minus a trailing EOG, which renders empty).
    assert_eq!(text, m.detokenize(&tokens, false).unwrap());
}

#[test]
fn chat_uses_the_template_and_stops_at_end_of_turn() {
    let out = private_model().chat(&[Message::new("user", "What is 2+2? Answer with just the number.")], &greedy(64)).unwrap();
    assert!(!out.text.contains("<|im_end|>"));
    assert_eq!(out.finish_reason, FinishReason::Stop, "{:?}", out.text);
    let rendered = model().apply_chat_template(&[Message::new("user", "Hi")], true, &[], None).unwrap();
    assert!(rendered.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"), "{rendered:?}");
}

#[test]
fn session_reuses_the_previous_turn() {
    let m = model();
    let session = m.session().unwrap();
    let mut messages = vec![Message::new("user", "Name a color.")];
    let first = session.chat(&messages, &greedy(16)).unwrap();
    messages.push(Message::new("assistant", first.text.clone()));
    messages.push(Message::new("user", "Name another one."));
    let second = session.chat(&messages, &greedy(16)).unwrap();
    // Everything up to the first reply is reused; only the new turn is evaluated.
    assert!(
        second.usage.cached_tokens >= first.usage.prompt_tokens,
        "cached {} of {}, first prompt {}",
        second.usage.cached_tokens,
        second.usage.prompt_tokens,
        first.usage.prompt_tokens
    );
    session.close();
    let e = session.chat(&messages, &greedy(4)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
}

#[test]
fn cancel_during_generation_and_model_stays_usable() {
    let m = model();
    let options = GenerateOptions { ignore_eos: true, ..greedy(400) };
    let mut stream = m.complete_stream("Once upon a time, in a land far away,", &options).unwrap();
    let first = stream.next().unwrap().unwrap();
    assert!(first.finish_reason.is_none());
    stream.cancel();
    let mut last = None;
    let mut after = 0;
    for chunk in stream.by_ref() {
        let chunk = chunk.unwrap();
        after += 1;
        last = chunk.finish_reason.or(last);
    }
    assert_eq!(last, Some(FinishReason::Cancelled));
    assert!(after <= corral_stream_buffer() + 2, "{after} chunks after cancel");
    assert!(m.complete("The capital of France is", &greedy(4)).unwrap().text.contains("Paris"));
}

fn corral_stream_buffer() -> usize {
    32
}

#[test]
fn cancel_during_prompt_processing() {
    // A separate model with small prompt chunks so the prompt takes many engine steps; one
    // thread, so that the other tests running meanwhile do not starve it.
    let options = ModelOptions { context_length: Some(4096), batch_size: 32, max_sequences: 2, threads: Some(1), ..Default::default() };
    let m = Model::load(model_path(), options).unwrap();
    let long_prompt = "The quick brown fox jumps over the lazy dog. ".repeat(300);
    let stream = m.complete_stream(&long_prompt, &greedy(8)).unwrap();
    let cancel = stream.cancel_handle();
    std::thread::sleep(Duration::from_millis(100));
    let cancelled = Instant::now();
    cancel.cancel();
    let out = stream.collect_completion().unwrap();
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert_eq!(out.usage.completion_tokens, 0);
    // The prompt (~3,000 tokens, about 100 chunks) is abandoned after the chunk in progress.
    assert!(cancelled.elapsed() < Duration::from_secs(3), "cancel took {:?}", cancelled.elapsed());
    // Generation after a cancel works.
    assert_eq!(m.complete("Hello", &greedy(3)).unwrap().usage.completion_tokens, 3);
}

#[test]
fn prompt_longer_than_the_context_is_a_typed_error() {
    let m = Model::load(model_path(), ModelOptions { context_length: Some(64), ..Default::default() }).unwrap();
    let e = m.complete(&"word ".repeat(200), &greedy(4)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ContextOverflow);
    // Output stops with `length` when the context fills up.
    let out = m.complete("Once upon a time", &greedy(500)).unwrap();
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert!(out.usage.prompt_tokens + out.usage.completion_tokens <= 64);
}

#[test]
fn invalid_sampling_options_are_rejected() {
    let m = model();
    let cases: Vec<GenerateOptions> = vec![
        GenerateOptions { temperature: f32::NAN, ..greedy(4) },
        GenerateOptions { temperature: -1.0, ..greedy(4) },
        GenerateOptions { top_p: 0.0, ..greedy(4) },
        GenerateOptions { top_p: 1.5, ..greedy(4) },
        GenerateOptions { min_p: -0.1, ..greedy(4) },
        GenerateOptions { repeat_penalty: 0.0, ..greedy(4) },
        GenerateOptions { frequency_penalty: f32::INFINITY, ..greedy(4) },
        GenerateOptions { stop: vec![String::new()], ..greedy(4) },
    ];
    for options in cases {
        let e = m.complete("Hi", &options).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{options:?}");
    }
    assert_eq!(corral::checked_u32("max_tokens", -1).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn bad_model_files_are_typed_errors() {
    assert_eq!(load_err(std::path::Path::new("/nonexistent/model.gguf")).kind(), ErrorKind::ModelNotFound);
    assert_eq!(load_err(&std::env::temp_dir()).kind(), ErrorKind::ModelNotFound);
    assert_eq!(load_err(&temp_file("empty.gguf", b"")).kind(), ErrorKind::InvalidModel);
    let random: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    assert_eq!(load_err(&temp_file("random.gguf", &random)).kind(), ErrorKind::InvalidModel);
    let real = std::fs::read(model_path()).unwrap();
    let mut bad_magic = real[..4096].to_vec();
    bad_magic[0] = b'X';
    assert_eq!(load_err(&temp_file("magic.gguf", &bad_magic)).kind(), ErrorKind::InvalidModel);
    let mut bad_version = real[..4096].to_vec();
    bad_version[4] = 99;
    assert_eq!(load_err(&temp_file("version.gguf", &bad_version)).kind(), ErrorKind::InvalidModel);
    // Truncated in the header, in the metadata, in the tensor table and in the tensor data.
    for cut in [6, 20, 1_000, 2_000_000, 3_500_000, real.len() / 2, real.len() - 1] {
        let e = load_err(&temp_file(&format!("cut{cut}.gguf"), &real[..cut]));
        assert_eq!(e.kind(), ErrorKind::InvalidModel, "cut at {cut}: {e}");
    }
}

#[test]
fn unsupported_architecture_is_its_own_error() {
    let path = patched_model("arch.gguf", b"\x05\x00\x00\x00\x00\x00\x00\x00llama", b"\x05\x00\x00\x00\x00\x00\x00\x00lxama");
    let e = load_err(&path);
    assert_eq!(e.kind(), ErrorKind::UnsupportedArchitecture, "{e}");
}

#[test]
fn model_without_chat_template_refuses_chat() {
    let path = patched_model("base.gguf", b"tokenizer.chat_template", b"tokenizer.chat_templatX");
    let m = Model::load(&path, ModelOptions { context_length: Some(256), ..Default::default() }).unwrap();
    let e = m.chat(&[Message::new("user", "Hi")], &greedy(4)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoChatTemplate);
    assert_eq!(m.apply_chat_template(&[], true, &[], None).unwrap_err().kind(), ErrorKind::NoChatTemplate);
    // A template given at load time works.
    let with = Model::load(
        &path,
        ModelOptions {
            context_length: Some(256),
            chat_template: Some(
                "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n".into(),
            ),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(with.chat(&[Message::new("user", "Hi")], &greedy(4)).is_ok());
    // A template that raises is a template error carrying its message.
    let raising = Model::load(
        &path,
        ModelOptions {
            context_length: Some(256),
            chat_template: Some("{{ raise_exception('no system role') }}".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let e = raising.chat(&[Message::new("user", "Hi")], &greedy(4)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TemplateError);
    assert!(e.message().contains("no system role"));
}

#[test]
fn progress_callback_reports_and_can_cancel() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let m = Model::load(
        model_path(),
        ModelOptions {
            context_length: Some(256),
            on_progress: Some(std::sync::Arc::new(move |p| {
                s.lock().unwrap().push(p);
                true
            })),
            ..Default::default()
        },
    );
    assert!(m.is_ok());
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 2 && *seen.last().unwrap() >= 0.99, "{seen:?}");
    let e = Model::load(
        model_path(),
        ModelOptions { context_length: Some(256), on_progress: Some(std::sync::Arc::new(|_| false)), ..Default::default() },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
}

#[test]
fn concurrent_requests_share_one_model() {
    let m = model().clone();
    let expected = m.complete("The capital of France is", &greedy(8)).unwrap().text;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || m.complete("The capital of France is", &greedy(8)).unwrap().text)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), expected);
    }
}

#[test]
fn closed_model_refuses_work() {
    let m = Model::load(model_path(), ModelOptions { context_length: Some(256), ..Default::default() }).unwrap();
    let session = m.session().unwrap();
    m.close();
    m.close();
    assert_eq!(m.complete("Hi", &greedy(2)).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(m.tokenize("Hi", true, false).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(session.complete("Hi", &greedy(2)).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn scoring_gives_log_probabilities() {
    let m = model();
    let tokens = m.tokenize("The capital of France is Paris.", true, false).unwrap();
    let logprobs = m.score(&tokens).unwrap();
    assert_eq!(logprobs.len(), tokens.len() - 1);
    assert!(logprobs.iter().all(|&l| l <= 0.0 && l.is_finite()));
    let ppl = (-logprobs.iter().sum::<f32>() / logprobs.len() as f32).exp();
    assert!(ppl > 1.0 && ppl < 1000.0, "{ppl}");
}

#[test]
fn json_schema_constrains_output() {
    let m = model();
    let schema = r#"{"type":"object","properties":{"name":{"type":"string","maxLength":20},"age":{"type":"integer","minimum":0,"maximum":150},"color":{"enum":["red","green","blue"]}},"required":["name","age","color"]}"#;
    let options = GenerateOptions { constraint: Some(corral::Constraint::JsonSchema(schema.into())), ..greedy(80) };
    let out = m.chat(&[Message::new("user", "Describe a person as JSON.")], &options).unwrap();
    let value: serde_json::Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("{e}: {:?}", out.text));
    assert!(value["name"].is_string() && value["age"].is_u64(), "{value}");
    assert!(["red", "green", "blue"].contains(&value["color"].as_str().unwrap()));
    let object = m.complete("A JSON object:", &GenerateOptions { constraint: Some(corral::Constraint::JsonObject), ..greedy(40) }).unwrap();
    if object.finish_reason == FinishReason::Stop {
        assert!(serde_json::from_str::<serde_json::Value>(&object.text).unwrap().is_object());
    }
}

#[test]
fn gbnf_grammar_constrains_output_and_bad_grammars_are_typed_errors() {
    let m = model();
    let yes_no = GenerateOptions { constraint: Some(corral::Constraint::Grammar(r#"root ::= "yes" | "no""#.into())), ..greedy(8) };
    let out = m.chat(&[Message::new("user", "Is the sky blue?")], &yes_no).unwrap();
    assert!(out.text == "yes" || out.text == "no", "{:?}", out.text);
    for bad in [
        corral::Constraint::Grammar("root ::= (".into()),
        corral::Constraint::Grammar("nothing here".into()),
        corral::Constraint::JsonSchema("{not json".into()),
        corral::Constraint::JsonSchema("42".into()),
    ] {
        let e = m.complete("x", &GenerateOptions { constraint: Some(bad.clone()), ..greedy(4) }).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidGrammar, "{bad:?}: {e}");
    }
    assert!(m.complete("Hello", &greedy(2)).is_ok());
}

#[test]
fn logprobs_report_the_chosen_token_and_alternatives() {
    let out = model().complete("The capital of France is", &GenerateOptions { logprobs: Some(3), ..greedy(4) }).unwrap();
    assert_eq!(out.logprobs.len(), out.tokens.len());
    for (lp, &token) in out.logprobs.iter().zip(&out.tokens) {
        assert_eq!(lp.token.token, token);
        assert_eq!(lp.top.len(), 3);
        assert!(lp.token.logprob <= 0.0);
        // Greedy picks the most likely token.
        assert_eq!(lp.top[0].token, token);
        assert!(lp.top[0].logprob >= lp.top[1].logprob && lp.top[1].logprob >= lp.top[2].logprob);
    }
    let e = model().complete("x", &GenerateOptions { logprobs: Some(50), ..greedy(2) }).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}
