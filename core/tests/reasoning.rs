//! Thinking models: a reply's `<think>...</think>` comes back as `reasoning`, apart from the
//! answer, in results, streams and OpenAI shapes; `reasoning_budget` closes the block. No
//! thinking model is reachable offline: a grammar scripts the default model's output.

#[path = "support/models.rs"]
mod models;

use std::sync::OnceLock;

use corral::{Constraint, ErrorKind, GenerateOptions, Message, Model, ModelOptions};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| models::load(ModelOptions { context_length: Some(1024), threads: Some(2), ..Default::default() }))
}

fn scripted(grammar: &str) -> GenerateOptions {
    GenerateOptions { constraint: Some(Constraint::Grammar(grammar.into())), ..models::greedy(48) }
}

const THINK_THEN_ANSWER: &str = r#"root ::= "<think>" "I should add two and two." "</think>" "\n\nFour.""#;

/// A template whose generation prompt opens the reasoning block (as DeepSeek-R1's does).
const OPENING_TEMPLATE: &str =
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: <think>\n{% endif %}";

#[test]
fn reasoning_is_split_from_the_answer() {
    let user = [Message::new("user", "What is two plus two?")];
    let reply = model().chat(&user, &scripted(THINK_THEN_ANSWER)).unwrap();
    assert_eq!(reply.reasoning, "I should add two and two.");
    assert_eq!(reply.text, "Four.");

    let mut streamed = (String::new(), String::new());
    for chunk in model().chat_stream(&user, &scripted(THINK_THEN_ANSWER)).unwrap() {
        let chunk = chunk.unwrap();
        streamed.0.push_str(&chunk.reasoning);
        streamed.1.push_str(&chunk.text);
    }
    assert_eq!(streamed, (reply.reasoning.clone(), reply.text.clone()));

    let meta = corral::openai::ResponseMeta::new(corral::openai::ResponseKind::Chat, "m");
    let output = corral::openai::Output { text: &reply.text, reasoning: &reply.reasoning, tool_calls: &[] };
    let openai = corral::openai::completion(&meta, output, reply.finish_reason, serde_json::Value::Null, serde_json::Value::Null);
    assert_eq!(openai["choices"][0]["message"]["reasoning_content"], "I should add two and two.");
    assert_eq!(openai["choices"][0]["message"]["content"], "Four.");

    // Without a <think> block nothing is taken out; completions are never split.
    let plain = model().chat(&user, &scripted(r#"root ::= "Four.""#)).unwrap();
    assert_eq!((plain.reasoning.as_str(), plain.text.as_str()), ("", "Four."));
    let raw = model().complete("Q: 2+2?", &scripted(THINK_THEN_ANSWER)).unwrap();
    assert!(raw.reasoning.is_empty() && raw.text.starts_with("<think>"));
}

#[test]
fn a_prompt_that_opens_the_block_starts_the_reply_in_reasoning() {
    let options = GenerateOptions { template: Some(OPENING_TEMPLATE.into()), ..scripted(r#"root ::= "plan first" "</think>" "answer""#) };
    let reply = model().chat(&[Message::new("user", "Go")], &options).unwrap();
    assert_eq!((reply.reasoning.as_str(), reply.text.as_str()), ("plan first", "answer"));
}

#[test]
fn a_reasoning_budget_closes_the_block() {
    let options =
        GenerateOptions { template: Some(OPENING_TEMPLATE.into()), reasoning_budget: Some(6), ignore_eos: true, ..models::greedy(24) };
    let reply = model().chat(&[Message::new("user", "Tell me a story about a cat.")], &options).unwrap();
    let reasoning_tokens = model().tokenize(&reply.reasoning, false, false).unwrap().len();
    assert!(!reply.reasoning.is_empty() && reasoning_tokens <= 8, "{reasoning_tokens} tokens: {:?}", reply.reasoning);
    assert!(!reply.text.is_empty(), "the answer follows the closed block");
    assert!(!reply.text.contains("</think>"));

    // 0 turns thinking off where the template can: it sees `enable_thinking = false`.
    let switch = "{% if enable_thinking is defined and enable_thinking is false %}no thinking{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}";
    let with = |budget| GenerateOptions { template: Some(switch.into()), reasoning_budget: budget, ..models::greedy(1) };
    let off = model().chat(&[Message::new("user", "Hi")], &with(Some(0))).unwrap();
    let on = model().chat(&[Message::new("user", "Hi")], &with(None)).unwrap();
    assert!(off.usage.prompt_tokens > on.usage.prompt_tokens);

    let err = model().complete("Hi", &GenerateOptions { reasoning_budget: Some(4), ..models::greedy(2) }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}
