//! Tool calls, per-call templates and structured chat output on the real default model.

#[path = "support/models.rs"]
mod models;

use std::sync::OnceLock;

use corral::{Constraint, ErrorKind, FinishReason, GenerateOptions, Message, Model, ModelOptions, ToolCall, ToolChoice};
use serde_json::{json, Value};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = models::default_model();
        Model::load(path, ModelOptions { context_length: Some(4096), threads: Some(2), ..Default::default() })
            .expect("the default model loads")
    })
}

fn weather_tools() -> Vec<Value> {
    vec![
        json!({"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
            }, "required": ["city", "unit"]}
        }}),
        json!({"type": "function", "function": {
            "name": "get_time",
            "description": "Current time in a timezone",
            "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}
        }}),
    ]
}

fn ask() -> Vec<Message> {
    vec![Message::new("user", "What is the weather in Paris right now?")]
}

fn options(choice: ToolChoice) -> GenerateOptions {
    GenerateOptions { max_tokens: Some(96), temperature: 0.0, tools: weather_tools(), tool_choice: choice, ..Default::default() }
}

fn check_call(call: &ToolCall) -> Value {
    assert!(call.id.starts_with("call_"), "{call:?}");
    let arguments: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|e| panic!("{e}: {call:?}"));
    match call.name.as_str() {
        "get_weather" => {
            assert!(arguments["city"].is_string(), "{arguments}");
            assert!(["celsius", "fahrenheit"].contains(&arguments["unit"].as_str().unwrap_or("")), "{arguments}");
        }
        "get_time" => assert!(arguments["timezone"].is_string(), "{arguments}"),
        other => panic!("unknown tool {other}"),
    }
    arguments
}

#[test]
fn required_tool_call_is_parsed_with_valid_arguments() {
    let done = model().chat(&ask(), &options(ToolChoice::Required)).unwrap();
    assert_eq!(done.finish_reason, FinishReason::ToolCalls, "{done:?}");
    assert_eq!(done.tool_calls.len(), 1, "{done:?}");
    check_call(&done.tool_calls[0]);
    assert!(done.text.trim().is_empty(), "the call is not text: {:?}", done.text);
}

#[test]
fn a_named_tool_is_the_one_called() {
    let done = model().chat(&ask(), &options(ToolChoice::Function("get_time".into()))).unwrap();
    assert_eq!(done.finish_reason, FinishReason::ToolCalls);
    assert_eq!(done.tool_calls[0].name, "get_time");
    check_call(&done.tool_calls[0]);
}

#[test]
fn streamed_deltas_add_up_to_the_call() {
    let mut stream = model().chat_stream(&ask(), &options(ToolChoice::Required)).unwrap();
    let mut deltas = Vec::new();
    let mut finish = None;
    for chunk in &mut stream {
        let chunk = chunk.unwrap();
        deltas.extend(chunk.tool_calls);
        finish = chunk.finish_reason.or(finish);
    }
    assert_eq!(finish, Some(FinishReason::ToolCalls));
    let calls = stream.tool_calls().to_vec();
    assert_eq!(calls.len(), 1);
    assert_eq!(deltas[0].id.as_deref(), Some(calls[0].id.as_str()));
    assert_eq!(deltas[0].name.as_deref(), Some(calls[0].name.as_str()));
    let arguments: String = deltas.iter().map(|d| d.arguments.as_str()).collect();
    assert_eq!(arguments, calls[0].arguments);
    assert!(deltas.len() > 2, "arguments stream in pieces: {deltas:?}");
}

#[test]
fn tool_choice_none_and_auto_answer_without_breaking() {
    let done = model().chat(&ask(), &options(ToolChoice::None)).unwrap();
    assert!(done.tool_calls.is_empty());
    assert_ne!(done.finish_reason, FinishReason::ToolCalls);
    assert!(!done.text.is_empty());
    // Auto lets the model choose; whatever it chose must be well-formed.
    let done = model().chat(&ask(), &options(ToolChoice::Auto)).unwrap();
    if done.finish_reason == FinishReason::ToolCalls {
        done.tool_calls.iter().for_each(|c| {
            check_call(c);
        });
    } else {
        assert!(done.tool_calls.is_empty() && !done.text.is_empty(), "{done:?}");
    }
}

/// A Qwen-2.5-style template: the model's own `<tool_call>` format, constrained and parsed.
const HERMES_TEMPLATE: &str = r#"{%- if tools %}<|im_start|>system
You may call functions. <tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>
Return calls as <tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == "tool" %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% elif message.tool_calls %}<|im_start|>assistant
{%- for call in message.tool_calls %}
<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"#;

#[test]
fn a_template_with_its_own_format_gets_calls_in_that_format() {
    let mut opts = options(ToolChoice::Required);
    opts.template = Some(HERMES_TEMPLATE.into());
    let done = model().chat(&ask(), &opts).unwrap();
    assert_eq!(done.finish_reason, FinishReason::ToolCalls, "{done:?}");
    check_call(&done.tool_calls[0]);
}

#[test]
fn tool_results_render_as_the_template_says() {
    let call = ToolCall { id: "call_1".into(), name: "get_weather".into(), arguments: r#"{"city": "Paris", "unit": "celsius"}"#.into() };
    let messages = vec![
        Message::new("user", "Weather in Paris?"),
        Message { role: "assistant".into(), content: None, tool_calls: vec![call], ..Default::default() },
        Message {
            role: "tool".into(),
            content: Some("18 C, sunny".into()),
            tool_call_id: Some("call_1".into()),
            name: Some("get_weather".into()),
            ..Default::default()
        },
    ];
    let prompt = model().apply_chat_template(&messages, true, &weather_tools(), Some(HERMES_TEMPLATE)).unwrap();
    assert!(prompt.contains(r#"{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}"#), "{prompt}");
    assert!(prompt.contains("<tool_response>\n18 C, sunny\n</tool_response>"), "{prompt}");
    assert!(prompt.contains(r#""name": "get_time""#), "tools are rendered: {prompt}");
    assert!(prompt.ends_with("<|im_start|>assistant\n"));
    // The conversation goes on after the tool result.
    let done = model()
        .chat(
            &messages,
            &GenerateOptions {
                max_tokens: Some(16),
                temperature: 0.0,
                tools: weather_tools(),
                tool_choice: ToolChoice::None,
                template: Some(HERMES_TEMPLATE.into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(done.usage.completion_tokens > 0);
}

#[test]
fn a_per_call_template_replaces_the_models() {
    let template =
        "{% for m in messages %}[{{ m.role | upper }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[ASSISTANT]{% endif %}";
    let prompt = model().apply_chat_template(&[Message::new("user", "hi")], true, &[], Some(template)).unwrap();
    assert_eq!(prompt, "[USER] hi\n[ASSISTANT]");
    let e = model().apply_chat_template(&[], true, &[], Some("{% for %}")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TemplateError);
}

#[test]
fn bad_tool_requests_fail_before_generation() {
    let mut bad = options(ToolChoice::Function("nope".into()));
    assert_eq!(model().chat(&ask(), &bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
    bad.tool_choice = ToolChoice::Required;
    bad.tools = vec![json!({"type": "function", "function": {"parameters": {}}})];
    assert_eq!(model().chat(&ask(), &bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let mut both = options(ToolChoice::Required);
    both.constraint = Some(Constraint::JsonObject);
    assert_eq!(model().chat(&ask(), &both).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let completion = GenerateOptions { tools: weather_tools(), ..Default::default() };
    assert_eq!(model().complete("Hi", &completion).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let empty_template = GenerateOptions { template: Some("  ".into()), ..Default::default() };
    assert_eq!(model().chat(&ask(), &empty_template).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let impossible = json!({"type": "number", "minimum": 5, "maximum": 4.5});
    let impossible = GenerateOptions { constraint: Some(Constraint::JsonSchema(impossible.to_string())), ..Default::default() };
    assert_eq!(model().chat(&ask(), &impossible).unwrap_err().kind(), ErrorKind::InvalidGrammar);
    let no_name = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]});
    assert_eq!(Message::from_openai(&no_name).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let no_content = json!({"role": "user"});
    assert_eq!(Message::from_openai(&no_content).unwrap_err().kind(), ErrorKind::InvalidArgument);
    // The model is fine afterwards.
    assert!(model().chat(&ask(), &GenerateOptions { max_tokens: Some(4), ..Default::default() }).is_ok());
}

#[test]
fn json_schema_chat_output_validates() {
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 3}
    }, "required": ["name", "age", "tags"], "additionalProperties": false});
    let opts = GenerateOptions {
        max_tokens: Some(128),
        temperature: 0.7,
        seed: Some(3),
        constraint: Some(Constraint::JsonSchema(schema.to_string())),
        ..Default::default()
    };
    let done = model().chat(&[Message::new("user", "Describe a person as JSON.")], &opts).unwrap();
    let value: Value = serde_json::from_str(&done.text).unwrap_or_else(|e| panic!("{e}: {}", done.text));
    let age = value["age"].as_i64().expect("age is an integer");
    assert!((0..=150).contains(&age));
    assert!(!value["name"].as_str().unwrap().is_empty());
    assert!(value["tags"].as_array().unwrap().iter().all(|t| t == "a" || t == "b"));
}
