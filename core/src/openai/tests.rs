use serde_json::{json, Value};

use super::*;
use crate::{Constraint, ErrorKind, GenerateOptions, ToolChoice};

fn python(value: Value) -> Result<GenerateOptions> {
    generate_options(&value, Dialect::Python)
}

fn node(value: Value) -> Result<GenerateOptions> {
    generate_options(&value, Dialect::Node)
}

/// The error's message, asserting it is a type error (or a value error when `wrong_type` is false).
fn failure(result: Result<impl std::fmt::Debug>, wrong_type: bool) -> String {
    let error = result.expect_err("an error");
    assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");
    assert_eq!(error.is_wrong_type(), wrong_type, "{error}");
    error.message().to_string()
}

#[test]
fn names_per_dialect() {
    assert_eq!(Dialect::Node.name("max_tokens"), "maxTokens");
    assert_eq!(Dialect::Node.name("response_format"), "responseFormat");
    assert_eq!(Dialect::Python.name("max_tokens"), "max_tokens");
    let python_names = generate_option_names(Dialect::Python);
    assert!(python_names.contains(&"top_logprobs".to_string()) && !python_names.contains(&"json_schema".to_string()));
    let node_names = generate_option_names(Dialect::Node);
    assert!(node_names.contains(&"jsonObject".to_string()) && node_names.contains(&"toolChoice".to_string()));
}

#[test]
fn defaults_come_from_core() {
    assert_eq!(python(json!({})).unwrap(), GenerateOptions::default());
    assert_eq!(node(Value::Null).unwrap(), GenerateOptions::default());
    // null (Python's None) keeps the default.
    assert_eq!(python(json!({"temperature": null, "stop": null})).unwrap(), GenerateOptions::default());
}

#[test]
fn each_dialect_reads_its_spelling() {
    let p = python(json!({"max_tokens": 5, "top_k": 3, "temperature": 0, "stop": "x", "timeout": 1.5, "ignore_eos": true})).unwrap();
    assert_eq!((p.max_tokens, p.top_k, p.temperature, p.stop.clone()), (Some(5), 3, 0.0, vec!["x".to_string()]));
    assert_eq!(p.timeout, Some(std::time::Duration::from_millis(1500)));
    assert!(p.ignore_eos);
    let n = node(json!({"maxTokens": 5.0, "topK": 3, "temperature": 0, "stop": ["x", "y"], "timeout": 1500, "ignoreEos": true})).unwrap();
    assert_eq!((n.max_tokens, n.top_k, n.stop.len()), (Some(5), 3, 2));
    assert_eq!(n.timeout, Some(std::time::Duration::from_millis(1500)));
    // Each dialect refuses the other's spelling.
    assert!(failure(python(json!({"maxTokens": 5})), true).contains("\"maxTokens\""));
    assert!(failure(node(json!({"max_tokens": 5})), true).contains("\"max_tokens\""));
    assert!(failure(python(json!({"json_object": true})), true).contains("generation accepts: max_tokens"));
}

#[test]
fn unknown_keys_are_rejected_even_when_null() {
    let message = failure(python(json!({"max_token": null})), true);
    assert!(message.contains("unexpected keyword argument \"max_token\"") && message.contains("top_logprobs"), "{message}");
    assert!(failure(node(json!({"maxToken": 5})), true).contains("unknown generation option \"maxToken\""));
}

#[test]
fn wrong_types_are_type_errors() {
    for bad in [
        json!({"max_tokens": "x"}),
        json!({"max_tokens": true}),
        json!({"max_tokens": 1.5}),
        json!({"max_tokens": 2.0}),
        json!({"temperature": "hot"}),
        json!({"temperature": false}),
        json!({"stop": 5}),
        json!({"stop": ["ok", 5]}),
        json!({"ignore_eos": 1}),
        json!({"timeout": "1s"}),
        json!({"timeout": true}),
        json!({"grammar": 42}),
        json!({"logprobs": 3}),
        json!({"tools": "get_weather"}),
        json!({"tool_choice": 5}),
        json!({"response_format": "json"}),
        json!("fast"),
        json!([1]),
    ] {
        failure(python(bad), true);
    }
    for bad in
        [json!({"maxTokens": "5"}), json!({"seed": true}), json!({"logprobs": "yes"}), json!({"jsonSchema": 5}), json!({"toolChoice": []})]
    {
        failure(node(bad), true);
    }
    assert_eq!(failure(python(json!({"max_tokens": 1.5})), true), "max_tokens must be an int, got float");
    assert_eq!(failure(node(json!({"stop": 7})), true), "stop must be a string or an array of them, got a number");
}

#[test]
fn bad_values_are_value_errors() {
    for bad in [
        json!({"max_tokens": -1}),
        json!({"max_tokens": 1_u64 << 40}),
        json!({"seed": u64::MAX}),
        json!({"temperature": -0.5}),
        json!({"temperature": 1e300}),
        json!({"top_p": 1.5}),
        json!({"top_p": 0}),
        json!({"min_p": -0.1}),
        json!({"repeat_penalty": 0}),
        json!({"stop": ""}),
        json!({"stop": ["ok", ""]}),
        json!({"timeout": 0}),
        json!({"timeout": -1}),
        json!({"timeout": 1e300}),
        json!({"top_logprobs": 21}),
        json!({"grammar": "root ::= \"a\"", "response_format": {"type": "json_object"}}),
        json!({"response_format": {"type": "yaml"}}),
        json!({"response_format": {"type": "json_schema"}}),
        json!({"tool_choice": "sometimes"}),
        json!({"tool_choice": {"type": "function", "function": {"name": ""}}}),
    ] {
        failure(python(bad), false);
    }
    for bad in [
        json!({"maxTokens": 1.5}),
        json!({"topK": -3}),
        json!({"seed": 1_099_511_627_776.0}),
        json!({"logprobs": 21}),
        json!({"logprobs": -1}),
        json!({"grammar": "root ::= \"a\"", "jsonObject": true}),
        json!({"jsonSchema": "{}", "responseFormat": {"type": "json_object"}}),
        json!({"toolChoice": "sometimes"}),
    ] {
        failure(node(bad), false);
    }
    assert_eq!(failure(node(json!({"maxTokens": 1.5})), false), "maxTokens must be a whole number, got 1.5");
    assert_eq!(failure(node(json!({"grammar": "g", "jsonObject": true})), false), "grammar and jsonObject exclude each other: give one");
}

#[test]
fn non_finite_numbers_never_become_null() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let error = number("temperature", bad).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert!(error.message().starts_with("temperature must be a finite number"), "{error}");
    }
    assert_eq!(number("temperature", 0.5).unwrap(), json!(0.5));
}

#[test]
fn constraints_and_logprobs() {
    let schema = json!({"type": "object"});
    let format = |f: Value| python(json!({"response_format": f})).unwrap().constraint;
    assert_eq!(format(json!({"type": "text"})), None);
    assert_eq!(format(json!({"type": "json_object"})), Some(Constraint::JsonObject));
    // llama-cpp-python's schema inside json_object.
    assert_eq!(format(json!({"type": "json_object", "schema": schema})), Some(Constraint::JsonSchema(schema.to_string())));
    let named = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}});
    assert_eq!(format(named), Some(Constraint::JsonSchema(schema.to_string())));
    // `text` constrains nothing, so it goes with a grammar.
    assert!(python(json!({"grammar": "root ::= \"a\"", "response_format": {"type": "text"}})).unwrap().constraint.is_some());
    assert_eq!(node(json!({"jsonSchema": schema})).unwrap().constraint, Some(Constraint::JsonSchema(schema.to_string())));
    assert_eq!(node(json!({"jsonSchema": "{}"})).unwrap().constraint, Some(Constraint::JsonSchema("{}".into())));
    assert_eq!(node(json!({"jsonObject": false, "grammar": "g"})).unwrap().constraint, Some(Constraint::Grammar("g".into())));

    assert_eq!(python(json!({"logprobs": true})).unwrap().logprobs, Some(0));
    assert_eq!(python(json!({"logprobs": false})).unwrap().logprobs, None);
    assert_eq!(python(json!({"logprobs": true, "top_logprobs": 3})).unwrap().logprobs, Some(3));
    assert_eq!(python(json!({"top_logprobs": 2})).unwrap().logprobs, Some(2));
    assert_eq!(node(json!({"logprobs": 4, "topLogprobs": 1})).unwrap().logprobs, Some(4));
    assert_eq!(node(json!({"logprobs": true, "topLogprobs": 1})).unwrap().logprobs, Some(1));
}

#[test]
fn tools_and_tool_choice() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let o = python(json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "f"}}})).unwrap();
    assert_eq!((o.tools.len(), o.tool_choice), (1, ToolChoice::Function("f".into())));
    assert_eq!(node(json!({"tools": tools, "toolChoice": "required"})).unwrap().tool_choice, ToolChoice::Required);
    assert_eq!(ToolChoice::parse("none").unwrap(), ToolChoice::None);
    failure(ToolChoice::parse("sometimes"), false);
}

#[test]
fn messages_per_dialect() {
    let python_messages = json!([
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]},
        {"role": "tool", "content": "ok", "tool_call_id": "1", "name": "f"},
    ]);
    let m = messages(&python_messages, Dialect::Python).unwrap();
    assert_eq!(m[0].content.as_deref(), Some("ab"));
    assert_eq!((m[1].content.clone(), m[1].tool_calls[0].arguments.as_str()), (None, "{\"x\":1}"));
    assert_eq!((m[2].tool_call_id.as_deref(), m[2].name.as_deref()), (Some("1"), Some("f")));

    let node_messages = json!([
        {"role": "assistant", "toolCalls": [{"id": "1", "name": "f", "arguments": "{}"}]},
        {"role": "tool", "content": "ok", "toolCallId": "1"},
    ]);
    let m = messages(&node_messages, Dialect::Node).unwrap();
    assert_eq!(m[0].tool_calls[0], crate::ToolCall { id: "1".into(), name: "f".into(), arguments: "{}".into() });
    assert_eq!(m[1].tool_call_id.as_deref(), Some("1"));
    // The flat shape is Node's (its results' `toolCalls`), not Python's.
    failure(messages(&json!([{"role": "assistant", "tool_calls": [{"name": "f"}]}]), Dialect::Python), false);
}

#[test]
fn bad_messages() {
    for (bad, wrong_type) in [
        (json!("Hi"), true),
        (json!({"role": "user", "content": "Hi"}), true),
        (json!(["Hi"]), true),
        (json!([["user", "Hi"]]), true),
        (json!([{"role": 1, "content": "Hi"}]), true),
        (json!([{"role": "user", "content": 5}]), true),
        (json!([{"role": "user", "content": [{"type": "text", "text": 5}]}]), true),
        (json!([{"role": "user", "content": ["Hi"]}]), true),
        (json!([{"role": "assistant", "content": null, "tool_calls": {}}]), true),
        (json!([{"role": "tool", "content": "ok", "tool_call_id": 5}]), true),
        (json!([{"content": "Hi"}]), false),
        (json!([{"role": "user"}]), false),
        (json!([{"role": "user", "content": null}]), false),
        (json!([{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]), false),
        (json!([{"role": "assistant", "tool_calls": [{"id": "1"}]}]), false),
    ] {
        failure(messages(&bad, Dialect::Python), wrong_type);
    }
    assert_eq!(
        failure(messages(&json!([{"role": "user", "content": 5}]), Dialect::Node), true),
        "messages[0].content must be a string or an array of text parts, got a number"
    );
    assert_eq!(failure(messages(&json!([null]), Dialect::Node), true), "messages[0] must be an object, got null");
    assert_eq!(failure(messages(&json!([{"role": 1}]), Dialect::Python), true), "messages[0][\"role\"] must be a str, got int");
    assert_eq!(failure(tools(&json!({}), Dialect::Python, "tools"), true), "tools must be a list of tool dicts, got dict");
}

#[test]
fn embed_and_rerank_options_in_both_dialects() {
    use crate::embed::Pooling;
    let p = super::embed_options(&json!({"normalize": false, "pooling": "cls", "timeout": 2}), Dialect::Python).unwrap();
    assert!(!p.normalize && !p.truncate);
    assert_eq!(p.pooling, Some(Pooling::Cls));
    assert_eq!(p.timeout, Some(std::time::Duration::from_secs(2)));
    let n = super::rerank_options(&json!({"topN": 3, "truncate": true, "timeout": 500}), Dialect::Node).unwrap();
    assert_eq!(n.top_n, Some(3));
    assert!(n.truncate);
    assert_eq!(n.timeout, Some(std::time::Duration::from_millis(500)));
    assert!(super::embed_options(&json!({"top_n": 3}), Dialect::Python).unwrap_err().is_wrong_type());
    assert!(super::embed_options(&json!({"normalize": 1}), Dialect::Python).unwrap_err().is_wrong_type());
    assert_eq!(super::embed_options(&json!({"pooling": "max"}), Dialect::Node).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert!(super::embed_options(&Value::Null, Dialect::Node).unwrap().normalize);
}

#[test]
fn embeddings_response_has_openai_shape() {
    let e = crate::embed::Embeddings { vectors: vec![vec![0.5, 0.25], vec![1.0, 0.0]], prompt_tokens: 7 };
    let r = super::embeddings_response(&e, "m");
    assert_eq!(r["object"], "list");
    assert_eq!(r["data"][1]["index"], 1);
    assert_eq!(r["data"][0]["embedding"], json!([0.5, 0.25]));
    assert_eq!(r["data"][0]["object"], "embedding");
    assert_eq!(r["usage"]["prompt_tokens"], 7);
    assert_eq!(r["model"], "m");
}
