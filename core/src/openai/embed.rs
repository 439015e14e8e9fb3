//! Embedding and rerank options (`normalize`, `truncate`, `pooling`, `timeout`, `top_n`) and
//! OpenAI's embeddings response, for every binding.

use serde_json::{json, Map, Value};

use super::options::timeout;
use super::Dialect;
use crate::embed::{EmbedOptions, Embeddings, Pooling, RerankOptions, RerankResult};
use crate::error::{Error, Result};

const EMBED_OPTIONS: &[&str] = &["normalize", "truncate", "pooling", "timeout"];
const RERANK_OPTIONS: &[&str] = &["top_n", "truncate", "timeout"];

/// The entries of an options object (null: none), each checked against `names`.
fn entries<'v>(value: &'v Value, dialect: Dialect, what: &str, names: &[&'static str]) -> Result<Vec<(&'static str, &'v str, &'v Value)>> {
    let map = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Object(map) => map,
        other => return Err(dialect.wrong_type(&format!("{what} options"), dialect.words().object, other)),
    };
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(key, v)| match names.iter().find(|n| dialect.name(n) == *key) {
            Some(name) => Ok((*name, key.as_str(), v)),
            None => Err(unknown(dialect, what, key, names)),
        })
        .collect()
}

fn unknown(dialect: Dialect, what: &str, key: &str, names: &[&str]) -> Error {
    let accepted = names.iter().map(|n| dialect.name(n)).collect::<Vec<_>>().join(", ");
    match dialect {
        Dialect::Python => Error::invalid_type(format!("unexpected keyword argument {key:?}; {what} accepts: {accepted}")),
        Dialect::Node => Error::invalid_type(format!("unknown {what} option {key:?}; {what} accepts: {accepted}")),
    }
}

/// A timeout above zero, named as the caller spelt it.
fn positive_timeout(dialect: Dialect, name: &str, value: &Value) -> Result<std::time::Duration> {
    let t = timeout(dialect, name, value)?;
    if t.is_zero() {
        return Err(Error::invalid_argument(format!("{name} must be positive")));
    }
    Ok(t)
}

/// `embed` options from an object of them (null: all defaults).
pub fn embed_options(value: &Value, dialect: Dialect) -> Result<EmbedOptions> {
    let mut options = EmbedOptions::default();
    for (option, name, value) in entries(value, dialect, "embed", EMBED_OPTIONS)? {
        match option {
            "normalize" => options.normalize = dialect.boolean(name, value)?,
            "truncate" => options.truncate = dialect.boolean(name, value)?,
            "pooling" => options.pooling = Some(Pooling::from_name(&dialect.text(name, value)?)?),
            "timeout" => options.timeout = Some(positive_timeout(dialect, name, value)?),
            other => return Err(Error::internal(format!("embed option {other:?} has no reader"))),
        }
    }
    Ok(options)
}

/// `rerank` options from an object of them (null: all defaults).
pub fn rerank_options(value: &Value, dialect: Dialect) -> Result<RerankOptions> {
    let mut options = RerankOptions::default();
    for (option, name, value) in entries(value, dialect, "rerank", RERANK_OPTIONS)? {
        match option {
            "top_n" => match dialect.uint(name, value)? {
                0 => return Err(Error::invalid_argument(format!("{name} must be at least 1"))),
                n => options.top_n = Some(n as usize),
            },
            "truncate" => options.truncate = dialect.boolean(name, value)?,
            "timeout" => options.timeout = Some(positive_timeout(dialect, name, value)?),
            other => return Err(Error::internal(format!("rerank option {other:?} has no reader"))),
        }
    }
    Ok(options)
}

/// OpenAI's embeddings response: `{"object": "list", "data": [{"object": "embedding",
/// "index", "embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}`.
pub fn embeddings_response(embeddings: &Embeddings, model: &str) -> Value {
    let data: Vec<Value> = embeddings
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| json!({"object": "embedding", "index": index, "embedding": vector}))
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": embeddings.prompt_tokens, "total_tokens": embeddings.prompt_tokens},
    })
}

/// A rerank result as every binding hands it out: `{"index", "score", "document"}`.
pub fn rerank_result(result: &RerankResult) -> Value {
    let mut map = Map::new();
    map.insert("index".into(), json!(result.index));
    map.insert("score".into(), json!(result.score));
    map.insert("document".into(), json!(result.document));
    Value::Object(map)
}
