//! corral's chat-template renderer must produce byte for byte what Hugging Face's
//! `apply_chat_template` (Python jinja2) produces, on a corpus of real model templates.
//!
//! Data in tests/data/chat_templates/: the templates (`<name>.jinja`), `cases.json` (message
//! sets, and which apply to each template) and `expected/`, written by
//! `scripts/render-chat-templates.py` with jinja2 (`--check` there diffs it). An expected
//! `<template>__<case>.txt` is the exact rendering; `<template>__<case>.error.json` means the
//! template fails: corral must then fail with `TemplateError`, containing the message when the
//! template called `raise_exception`. `«strftime_now(FORMAT)»` in an expected text stands for
//! today's date (UTC), which corral's `strftime_now` prints there.
//!
//! A case marked `"known_difference": "<reason>"` in cases.json is rendered and reported but
//! does not fail the test. No model file is needed.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use corral::{ChatTemplate, ErrorKind, Message, ToolCall};
use serde_json::Value;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/chat_templates")
}

fn str_field<'a>(v: &'a Value, key: &str, what: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("{what}: missing string field {key:?}"))
}

fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn message(v: &Value) -> Message {
    let tool_calls = v
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolCall {
                    id: str_field(c, "id", "tool call").to_string(),
                    name: str_field(c, "name", "tool call").to_string(),
                    arguments: str_field(c, "arguments", "tool call").to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        role: str_field(v, "role", "message").to_string(),
        content: opt_str(v, "content"),
        tool_calls,
        tool_call_id: opt_str(v, "tool_call_id"),
        name: opt_str(v, "name"),
    }
}

enum Expected {
    Text(String),
    /// `message` is Some when the template itself called raise_exception.
    Error {
        message: Option<String>,
        description: String,
    },
}

fn expected(dir: &Path, stem: &str) -> Result<Expected, String> {
    let text = dir.join(format!("{stem}.txt"));
    let error = dir.join(format!("{stem}.error.json"));
    match (text.exists(), error.exists()) {
        (true, false) => std::fs::read_to_string(&text).map(Expected::Text).map_err(|e| format!("{}: {e}", text.display())),
        (false, true) => {
            let raw = std::fs::read_to_string(&error).map_err(|e| format!("{}: {e}", error.display()))?;
            let v: Value = serde_json::from_str(&raw).map_err(|e| format!("{}: {e}", error.display()))?;
            let jinja_message = str_field(&v, "message", "error file").to_string();
            let raised = v.get("raised").and_then(Value::as_bool).unwrap_or(false);
            Ok(if raised {
                Expected::Error { description: format!("raise_exception({jinja_message:?})"), message: Some(jinja_message) }
            } else {
                let kind = v.get("type").and_then(Value::as_str).unwrap_or("error");
                Expected::Error { message: None, description: format!("jinja2 {kind}: {jinja_message}") }
            })
        }
        (false, false) => Err(format!("no expected file for {stem}: run scripts/render-chat-templates.py")),
        (true, true) => Err(format!("both {stem}.txt and {stem}.error.json exist: run scripts/render-chat-templates.py")),
    }
}

/// `strftime` in UTC by GNU `date`: an oracle independent of corral's `strftime_now`.
fn format_date(unix_secs: u64, format: &str) -> String {
    let output = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{unix_secs}"), &format!("+{format}")])
        .env("LC_ALL", "C")
        .output()
        .expect("run date");
    assert!(output.status.success(), "date failed for {format:?}");
    String::from_utf8(output.stdout).unwrap().trim_end_matches('\n').to_string()
}

/// The expected text with each `«strftime_now(FORMAT)»` replaced by the date at `unix_secs`.
fn with_date(expected: &str, unix_secs: u64) -> String {
    const OPEN: &str = "«strftime_now(";
    const CLOSE: &str = ")»";
    let mut out = String::new();
    let mut rest = expected;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let Some(end) = after.find(CLOSE) else { break };
        out.push_str(&rest[..start]);
        out.push_str(&format_date(unix_secs, &after[..end]));
        rest = &after[end + CLOSE.len()..];
    }
    out.push_str(rest);
    out
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Where `actual` first departs from `expected`, with context, escaped so whitespace shows.
fn describe_difference(expected: &str, actual: &str) -> String {
    let common = expected
        .char_indices()
        .zip(actual.chars())
        .find(|((_, e), a)| e != a)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| expected.len().min(actual.len()));
    let line = expected[..common].matches('\n').count() + 1;
    let column = common - expected[..common].rfind('\n').map_or(0, |p| p + 1) + 1;
    let window = |s: &str| {
        let mut from = common.saturating_sub(60);
        while !s.is_char_boundary(from) {
            from -= 1;
        }
        let mut to = (common + 60).min(s.len());
        while !s.is_char_boundary(to) {
            to += 1;
        }
        let (before, after) = if common <= s.len() { (&s[from..common], &s[common..to]) } else { (&s[from..], "") };
        format!("{before:?} ⟨HERE⟩ {after:?}")
    };
    format!(
        "first difference at byte {common} (line {line}, column {column}); expected {} bytes, got {}\n      expected: {}\n      corral:   {}",
        expected.len(),
        actual.len(),
        window(expected),
        window(actual),
    )
}

/// Checks one pair; `Err` carries the failure's description.
fn check(template: &ChatTemplate, messages: &[Message], generation: bool, tools: &[Value], want: &Expected) -> Result<(), String> {
    let before = now();
    let got = template.render(messages, generation, tools);
    let after = now();
    match (want, got) {
        (Expected::Text(text), Ok(actual)) => {
            let expected = with_date(text, before);
            if actual == expected || (text.contains("«strftime_now(") && actual == with_date(text, after)) {
                Ok(())
            } else {
                Err(describe_difference(&expected, &actual))
            }
        }
        (Expected::Text(_), Err(e)) => Err(format!("jinja2 renders it, corral fails: [{:?}] {}", e.kind(), e.message())),
        (Expected::Error { description, .. }, Ok(actual)) => {
            Err(format!("jinja2 fails ({description}), corral renders {} bytes: {:?}", actual.len(), truncate(&actual, 200)))
        }
        (Expected::Error { message, description }, Err(e)) => {
            if e.kind() != ErrorKind::TemplateError {
                Err(format!("jinja2 fails ({description}); corral fails with kind {:?}, not TemplateError: {}", e.kind(), e.message()))
            } else if let Some(m) = message.as_deref().filter(|m| !e.message().contains(*m)) {
                Err(format!("raise_exception message {m:?} missing from corral's error: {}", e.message()))
            } else {
                Ok(())
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[test]
fn renders_like_hugging_face_jinja2() {
    let dir = data_dir();
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).expect("cases.json")).expect("cases.json is JSON");
    let cases = spec.get("cases").and_then(Value::as_object).expect("cases.json: cases");
    let tool_sets = spec.get("tool_sets").and_then(Value::as_object).expect("cases.json: tool_sets");
    let templates = spec.get("templates").and_then(Value::as_array).expect("cases.json: templates");
    let expected_dir = dir.join("expected");

    let (mut passed, mut failures, mut known, mut now_matching) = (0usize, Vec::new(), Vec::new(), Vec::new());
    for t in templates {
        let name = str_field(t, "name", "template");
        let source = std::fs::read_to_string(dir.join(format!("{name}.jinja"))).unwrap_or_else(|e| panic!("{name}.jinja: {e}"));
        let compiled = ChatTemplate::new(&source, str_field(t, "bos_token", name).to_string(), str_field(t, "eos_token", name).to_string());
        for entry in t.get("cases").and_then(Value::as_array).unwrap_or_else(|| panic!("{name}: cases")) {
            let (case_name, known_difference) = match entry {
                Value::String(s) => (s.as_str(), None),
                _ => (str_field(entry, "case", name), opt_str(entry, "known_difference")),
            };
            let pair = format!("{name} × {case_name}");
            let case = cases.get(case_name).unwrap_or_else(|| panic!("{pair}: no case {case_name:?} in cases.json"));
            let messages: Vec<Message> = case["messages"].as_array().expect("messages").iter().map(message).collect();
            let generation = case["add_generation_prompt"].as_bool().expect("add_generation_prompt");
            let tools: Vec<Value> = match case.get("tools").and_then(Value::as_str) {
                Some(set) => tool_sets.get(set).and_then(Value::as_array).unwrap_or_else(|| panic!("{pair}: no tool set {set:?}")).clone(),
                None => Vec::new(),
            };
            let result = expected(&expected_dir, &format!("{name}__{case_name}")).and_then(|want| match &compiled {
                Ok(template) => check(template, &messages, generation, &tools, &want),
                Err(e) => Err(format!("corral cannot compile the template: [{:?}] {}", e.kind(), e.message())),
            });
            match (result, known_difference) {
                (Ok(()), None) => passed += 1,
                (Ok(()), Some(reason)) => now_matching.push(format!("{pair} (marked: {reason})")),
                (Err(e), None) => failures.push(format!("{pair}: {e}")),
                (Err(e), Some(reason)) => known.push(format!("{pair}: {reason}\n      {e}")),
            }
        }
    }

    let total = passed + failures.len() + known.len() + now_matching.len();
    println!("chat templates: {} templates, {total} (template, case) pairs", templates.len());
    for k in &known {
        println!("known difference (skipped): {k}");
    }
    for m in &now_matching {
        println!("known difference now matches jinja2, remove its mark in cases.json: {m}");
    }
    println!(
        "{passed} matched jinja2, {} failed, {} known differences, {} marked but now matching",
        failures.len(),
        known.len(),
        now_matching.len()
    );
    assert!(failures.is_empty(), "{} (template, case) pairs differ from jinja2:\n  {}", failures.len(), failures.join("\n  "));
}

#[test]
fn date_marker_substitution() {
    // 2023-11-14T22:13:20Z
    assert_eq!(with_date("Today: «strftime_now(%d %b %Y)».", 1_700_000_000), "Today: 14 Nov 2023.");
    assert_eq!(with_date("«strftime_now(%Y-%m-%d)»|«strftime_now(%B %d, %Y)»", 1_700_000_000), "2023-11-14|November 14, 2023");
}
