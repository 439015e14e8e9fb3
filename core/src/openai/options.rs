//! Generation options: the table of names, their types and OpenAI's shapes
//! (`response_format`, `tool_choice`, the `logprobs`/`top_logprobs` pair). Every default is
//! `GenerateOptions::default()`'s: an option left out, or given as null, keeps it.

use std::time::Duration;

use serde_json::{Map, Value};

use super::Dialect;
use crate::chat::tools::ToolChoice;
use crate::error::{Error, Result};
use crate::options::{Constraint, GenerateOptions};

/// Every generation option (snake_case), and the one dialect that alone has it, if any.
const OPTIONS: &[(&str, Option<Dialect>)] = &[
    ("max_tokens", None),
    ("temperature", None),
    ("top_k", None),
    ("top_p", None),
    ("min_p", None),
    ("repeat_penalty", None),
    ("repeat_last_n", None),
    ("frequency_penalty", None),
    ("presence_penalty", None),
    ("seed", None),
    ("stop", None),
    ("timeout", None),
    ("ignore_eos", None),
    ("parse_special", None),
    ("grammar", None),
    // Node's shorthands for `response_format`: a schema (JSON text or an object), any object.
    ("json_schema", Some(Dialect::Node)),
    ("json_object", Some(Dialect::Node)),
    ("response_format", None),
    ("logprobs", None),
    ("top_logprobs", None),
    ("tools", None),
    ("tool_choice", None),
    ("template", None),
    ("reasoning_budget", None),
    ("adapters", None),
];

/// The generation options a dialect accepts, as it spells them.
pub fn generate_option_names(dialect: Dialect) -> Vec<String> {
    OPTIONS.iter().filter(|(_, only)| only.is_none_or(|d| d == dialect)).map(|(name, _)| dialect.name(name)).collect()
}

/// The table's name of `key` as `dialect` spells it, if it has that option.
fn lookup(dialect: Dialect, key: &str) -> Option<&'static str> {
    OPTIONS.iter().filter(|(_, only)| only.is_none_or(|d| d == dialect)).map(|(name, _)| *name).find(|name| dialect.name(name) == key)
}

/// `adapters`: `[{"name": str, "scale": number (default 1)}, ...]`.
pub fn adapters(dialect: Dialect, name: &str, value: &Value) -> Result<Vec<crate::adapter::AdapterChoice>> {
    let Value::Array(items) = value else { return Err(dialect.wrong_type(name, dialect.words().list, value)) };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let what = format!("{name}[{i}]");
            let Value::Object(fields) = item else { return Err(dialect.wrong_type(&what, dialect.words().object, item)) };
            if let Some(unknown) = fields.keys().find(|k| *k != "name" && *k != "scale") {
                return Err(Error::invalid_argument(format!("{what} has an unknown key {unknown:?} (name, scale)")));
            }
            let adapter = fields.get("name").ok_or_else(|| Error::invalid_argument(format!("{what} needs a name")))?;
            let scale = match fields.get("scale") {
                None | Some(Value::Null) => 1.0,
                Some(scale) => dialect.float(&format!("{what}.scale"), scale)?,
            };
            Ok(crate::adapter::AdapterChoice { name: dialect.text(&format!("{what}.name"), adapter)?, scale })
        })
        .collect()
}

/// Generation options from an object of them (null: all defaults), validated.
pub fn generate_options(value: &Value, dialect: Dialect) -> Result<GenerateOptions> {
    let empty = Map::new();
    let map = match value {
        Value::Null => &empty,
        Value::Object(map) => map,
        other => return Err(dialect.wrong_type("generation options", dialect.words().object, other)),
    };
    let mut options = GenerateOptions::default();
    // Each constraint given, with the name it was given by: at most one may constrain.
    let mut constraints: Vec<(&str, Constraint)> = Vec::new();
    let (mut logprobs, mut alternatives, mut top_logprobs) = (false, None, None);
    for (key, value) in map {
        let Some(option) = lookup(dialect, key) else { return Err(unknown(dialect, key)) };
        if value.is_null() {
            continue;
        }
        let name = key.as_str();
        match option {
            "max_tokens" => options.max_tokens = Some(dialect.uint(name, value)?),
            "temperature" => options.temperature = dialect.float(name, value)?,
            "top_k" => options.top_k = dialect.uint(name, value)?,
            "top_p" => options.top_p = dialect.float(name, value)?,
            "min_p" => options.min_p = dialect.float(name, value)?,
            "repeat_penalty" => options.repeat_penalty = dialect.float(name, value)?,
            "repeat_last_n" => options.repeat_last_n = dialect.uint(name, value)?,
            "frequency_penalty" => options.frequency_penalty = dialect.float(name, value)?,
            "presence_penalty" => options.presence_penalty = dialect.float(name, value)?,
            "seed" => options.seed = Some(dialect.uint(name, value)?),
            "stop" => options.stop = stop(dialect, name, value)?,
            "timeout" => options.timeout = Some(timeout(dialect, name, value)?),
            "ignore_eos" => options.ignore_eos = dialect.boolean(name, value)?,
            "parse_special" => options.parse_special = dialect.boolean(name, value)?,
            "grammar" => constraints.push((name, Constraint::Grammar(dialect.text(name, value)?))),
            "json_schema" => constraints.push((name, json_schema(dialect, name, value)?)),
            "json_object" => {
                if dialect.boolean(name, value)? {
                    constraints.push((name, Constraint::JsonObject));
                }
            }
            "response_format" => constraints.extend(response_format(dialect, name, value)?.map(|c| (name, c))),
            "logprobs" => match (dialect, value) {
                (_, Value::Bool(on)) => logprobs = *on,
                (Dialect::Node, Value::Number(_)) => alternatives = Some(dialect.uint(name, value)?),
                (Dialect::Node, other) => return Err(dialect.wrong_type(name, "a boolean or a number", other)),
                (Dialect::Python, other) => return Err(dialect.wrong_type(name, "a bool", other)),
            },
            "top_logprobs" => top_logprobs = Some(dialect.uint(name, value)?),
            "tools" => options.tools = super::tools(value, dialect, name)?,
            "tool_choice" => options.tool_choice = tool_choice(value, dialect, name)?,
            "template" => options.template = Some(dialect.text(name, value)?),
            "reasoning_budget" => options.reasoning_budget = Some(dialect.uint(name, value)?),
            "adapters" => options.adapters = adapters(dialect, name, value)?,
            other => return Err(Error::internal(format!("generation option {other:?} has no reader"))),
        }
    }
    if let [(first, _), (second, _), ..] = constraints.as_slice() {
        return Err(Error::invalid_argument(format!("{first} and {second} exclude each other: give one")));
    }
    options.constraint = constraints.pop().map(|(_, c)| c);
    // OpenAI's pair: `logprobs: true` turns them on, `top_logprobs: N` adds alternatives; a
    // number of alternatives in `logprobs` itself (Node) wins.
    options.logprobs = alternatives.or(top_logprobs).or(logprobs.then_some(0));
    // Fail here, before anything is submitted, rather than from the engine.
    options.validate()?;
    Ok(options)
}

fn unknown(dialect: Dialect, key: &str) -> Error {
    let accepted = generate_option_names(dialect).join(", ");
    match dialect {
        Dialect::Python => Error::invalid_type(format!("unexpected keyword argument {key:?}; generation accepts: {accepted}")),
        Dialect::Node => Error::invalid_type(format!("unknown generation option {key:?}; generation accepts: {accepted}")),
    }
}

/// One stop string, or a list of them.
fn stop(dialect: Dialect, name: &str, value: &Value) -> Result<Vec<String>> {
    let words = dialect.words();
    match value {
        Value::String(one) => Ok(vec![one.clone()]),
        Value::Array(many) => many.iter().enumerate().map(|(i, item)| dialect.text(&format!("{name}[{i}]"), item)).collect(),
        other => Err(dialect.wrong_type(name, &format!("{} or {} of them", words.text, words.list), other)),
    }
}

/// A positive duration, in the dialect's unit.
pub(super) fn timeout(dialect: Dialect, name: &str, value: &Value) -> Result<Duration> {
    let (per_second, unit) = match dialect {
        Dialect::Python => (1.0, "seconds"),
        Dialect::Node => (1000.0, "milliseconds"),
    };
    let Some(amount) = value.as_f64().filter(|_| value.is_number()) else {
        return Err(dialect.wrong_type(name, &format!("a number of {unit}"), value));
    };
    Duration::try_from_secs_f64(amount / per_second)
        .map_err(|_| Error::invalid_argument(format!("{name} must be a positive number of {unit}, got {amount}")))
}

/// A JSON schema: JSON text, or the schema itself.
fn json_schema(dialect: Dialect, name: &str, value: &Value) -> Result<Constraint> {
    match value {
        Value::String(text) => Ok(Constraint::JsonSchema(text.clone())),
        Value::Object(_) => Ok(Constraint::JsonSchema(value.to_string())),
        other => Err(dialect.wrong_type(name, &format!("{} (JSON text) or {}", dialect.words().text, dialect.words().object), other)),
    }
}

/// OpenAI's `response_format`: `{"type": "text"}` (no constraint), `{"type": "json_object"}`
/// (with llama-cpp-python's optional `"schema"`) or `{"type": "json_schema", "json_schema":
/// {"name": ..., "schema": {...}}}`.
fn response_format(dialect: Dialect, name: &str, value: &Value) -> Result<Option<Constraint>> {
    let shape = format!("{name} must be {{\"type\": \"text\" | \"json_object\" | \"json_schema\", ...}}");
    if !value.is_object() {
        return Err(Error::invalid_type(format!("{shape}, got {}", dialect.type_name(value))));
    }
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(match value.get("schema") {
            Some(schema) if !schema.is_null() => Constraint::JsonSchema(schema.to_string()),
            _ => Constraint::JsonObject,
        })),
        Some("json_schema") => match value.get("json_schema").and_then(|s| s.get("schema")) {
            Some(schema) if !schema.is_null() => Ok(Some(Constraint::JsonSchema(schema.to_string()))),
            _ => Err(Error::invalid_argument(format!("{name} json_schema needs {{\"json_schema\": {{\"schema\": {{...}}}}}}"))),
        },
        _ => Err(Error::invalid_argument(shape)),
    }
}

/// OpenAI's `tool_choice`: `"auto"`, `"none"`, `"required"` or `{"type": "function",
/// "function": {"name": ...}}`.
pub fn tool_choice(value: &Value, dialect: Dialect, name: &str) -> Result<ToolChoice> {
    let shape = format!("{name} must be \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}");
    match value {
        Value::String(text) => match text.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(Error::invalid_argument(format!("{shape}, got {other:?}"))),
        },
        Value::Object(_) => match value.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
            Some(function) if !function.is_empty() => Ok(ToolChoice::Function(function.to_string())),
            _ => Err(Error::invalid_argument(shape)),
        },
        other => Err(Error::invalid_type(format!("{shape}, got {}", dialect.type_name(other)))),
    }
}
