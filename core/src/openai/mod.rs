//! OpenAI's vocabulary, read in one place for every binding: generation, embedding and rerank
//! options (`max_tokens`, `response_format`, `tool_choice`, `normalize`, ...), chat messages
//! and tools, from JSON values, spelt the way the calling binding spells them (see
//! [`Dialect`]); and the OpenAI-shaped results built from corral's.
//!
//! A binding converts its own values to `serde_json::Value` (numbers through [`number`], so
//! NaN never becomes `null`) and calls [`generate_options`], [`messages`] or [`tools`]. A
//! value of the wrong JSON type fails with [`Error::invalid_type`], a bad value of the right
//! type with `invalid_argument`; both name what was wrong as the caller spelt it.

mod embed;
mod messages;
mod options;
mod results;

pub use embed::{embed_options, embeddings_response, rerank_options, rerank_result};
pub use messages::{messages, tools};
pub use options::{adapters, generate_option_names, generate_options, tool_choice};
pub use results::{assistant_message, chunk, completion, finish_reason, logprobs, usage, Output, ResponseKind, ResponseMeta};

use serde_json::Value;

use crate::error::{Error, Result};

/// How a binding spells options and what its numbers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// snake_case keywords (`max_tokens`), `timeout` in seconds, `int` and `float` kept
    /// apart (a float where an integer belongs is a type error).
    Python,
    /// camelCase options (`maxTokens`), `timeout` in milliseconds, one number type (a whole
    /// number counts as an integer).
    Node,
}

impl Dialect {
    /// A name from corral's table (snake_case) as this dialect spells it.
    pub fn name(self, snake: &str) -> String {
        match self {
            Dialect::Python => snake.to_string(),
            Dialect::Node => {
                let mut out = String::with_capacity(snake.len());
                let mut upper = false;
                for c in snake.chars() {
                    match c {
                        '_' => upper = true,
                        c if upper => {
                            out.extend(c.to_uppercase());
                            upper = false;
                        }
                        c => out.push(c),
                    }
                }
                out
            }
        }
    }

    /// The path of `key` inside `parent`: `messages[0]["role"]` or `messages[0].role`.
    fn field(self, parent: &str, snake: &str) -> String {
        match self {
            Dialect::Python => format!("{parent}[{snake:?}]"),
            Dialect::Node => format!("{parent}.{}", self.name(snake)),
        }
    }

    /// What the caller calls a JSON type (Python's type names, or JavaScript's).
    fn type_name(self, value: &Value) -> &'static str {
        match (self, value) {
            (Dialect::Python, Value::Null) => "None",
            (Dialect::Python, Value::Bool(_)) => "bool",
            (Dialect::Python, Value::Number(n)) if n.is_f64() => "float",
            (Dialect::Python, Value::Number(_)) => "int",
            (Dialect::Python, Value::String(_)) => "str",
            (Dialect::Python, Value::Array(_)) => "list",
            (Dialect::Python, Value::Object(_)) => "dict",
            (Dialect::Node, Value::Null) => "null",
            (Dialect::Node, Value::Bool(_)) => "a boolean",
            (Dialect::Node, Value::Number(_)) => "a number",
            (Dialect::Node, Value::String(_)) => "a string",
            (Dialect::Node, Value::Array(_)) => "an array",
            (Dialect::Node, Value::Object(_)) => "an object",
        }
    }

    /// The caller's words for a list, a mapping, text and an integer.
    fn words(self) -> Words {
        match self {
            Dialect::Python => {
                Words { list: "a list", object: "a dict", text: "a str", integer: "an int", float: "a float", boolean: "a bool" }
            }
            Dialect::Node => Words {
                list: "an array",
                object: "an object",
                text: "a string",
                integer: "a whole number",
                float: "a number",
                boolean: "a boolean",
            },
        }
    }

    fn wrong_type(self, name: &str, expected: &str, value: &Value) -> Error {
        Error::invalid_type(format!("{name} must be {expected}, got {}", self.type_name(value)))
    }

    /// A non-negative integer within `u32`.
    fn uint(self, name: &str, value: &Value) -> Result<u32> {
        let out_of_range = || Error::invalid_argument(format!("{name} must be between 0 and {}, got {value}", u32::MAX));
        let Value::Number(n) = value else { return Err(self.wrong_type(name, self.words().integer, value)) };
        if let Some(i) = n.as_i64() {
            return crate::checked_u32(name, i);
        }
        if n.is_u64() {
            return Err(out_of_range());
        }
        let f = n.as_f64().unwrap_or(f64::NAN);
        match self {
            Dialect::Python => Err(self.wrong_type(name, self.words().integer, value)),
            Dialect::Node if f.fract() != 0.0 => Err(Error::invalid_argument(format!("{name} must be a whole number, got {f}"))),
            Dialect::Node if (0.0..=f64::from(u32::MAX)).contains(&f) => Ok(f as u32),
            Dialect::Node => Err(out_of_range()),
        }
    }

    /// A float option; values beyond `f32` become infinite, which `validate` rejects.
    fn float(self, name: &str, value: &Value) -> Result<f32> {
        match value {
            Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN) as f32),
            _ => Err(self.wrong_type(name, self.words().float, value)),
        }
    }

    fn boolean(self, name: &str, value: &Value) -> Result<bool> {
        value.as_bool().ok_or_else(|| self.wrong_type(name, self.words().boolean, value))
    }

    fn text(self, name: &str, value: &Value) -> Result<String> {
        value.as_str().map(str::to_string).ok_or_else(|| self.wrong_type(name, self.words().text, value))
    }
}

struct Words {
    list: &'static str,
    object: &'static str,
    text: &'static str,
    integer: &'static str,
    float: &'static str,
    boolean: &'static str,
}

/// A binding's number as JSON: a non-finite one (which JSON cannot hold, and serde_json would
/// silently turn into `null`) is an `invalid_argument` error naming `path`.
pub fn number(path: &str, value: f64) -> Result<Value> {
    serde_json::Number::from_f64(value)
        .map(Value::Number)
        .ok_or_else(|| Error::invalid_argument(format!("{path} must be a finite number, got {value}")))
}

#[cfg(test)]
mod tests;
