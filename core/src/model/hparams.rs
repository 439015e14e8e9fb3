//! Checks a model's hyperparameters before llama.cpp sees them.
//!
//! llama.cpp trusts most of a GGUF's numbers: a layer count of 0 or over 512, a negative or
//! NaN norm epsilon, an odd rotary dimension or a head count that does not divide reach a
//! `GGML_ASSERT` (an abort of the whole process) at load or only at the first decode, or an
//! integer division by zero. corral refuses such files with `invalid_model` naming the key and
//! its value. The rules hold for every architecture: they read the `<arch>.*` keys that
//! llama.cpp's loader shares between architectures, and are the ranges its asserts demand.
//! `llama/guard.rs` catches whatever slips through at load, and a first decode at load time
//! (the engine) catches what would only bite when generating.

use serde_json::Value;

use crate::model::gguf::GgufHeader;

/// llama.cpp's `LLAMA_MAX_LAYERS`.
const MAX_LAYERS: u64 = 512;
/// llama.cpp's `LLAMA_MAX_EXPERTS`.
const MAX_EXPERTS: u64 = 1024;
/// Far above any real model, low enough that products of two stay far from overflow.
const MAX_WIDTH: u64 = 1 << 20;
const MAX_HEADS: u64 = 1 << 14;
const MAX_HEAD_DIM: u64 = 1 << 16;
/// Architectures without attention (llama.cpp's `llm_arch_is_recurrent`): no heads to count.
const RECURRENT: &[&str] = &["mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"];
/// Mixture-of-experts architectures whose loaders divide by the experts used per token.
const DIVIDES_BY_EXPERTS_USED: &[&str] = &["qwen3next", "rnd1", "mellum"];

/// Checks every hyperparameter corral knows to be dangerous; the error names the first bad one.
pub(crate) fn check(header: &GgufHeader) -> Result<(), String> {
    let Some(arch) = header.get_str("general.architecture") else {
        return Ok(()); // llama.cpp refuses a file without one itself.
    };
    let keys = Keys { header, prefix: format!("{arch}.") };
    check_numbers_are_finite(&keys)?;

    let layers = keys.uint("block_count")?;
    if let Some(layers) = layers {
        within(&keys.name("block_count"), layers, 1, MAX_LAYERS)?;
        if let Some(nextn) = keys.uint("nextn_predict_layers")? {
            within(&keys.name("nextn_predict_layers"), nextn, 0, layers)?;
        }
    }
    if let Some(n) = keys.uint("context_length")? {
        within(&keys.name("context_length"), n, 1, i32::MAX as u64)?;
    }
    let width = keys.uint("embedding_length")?;
    if let Some(width) = width {
        within(&keys.name("embedding_length"), width, 1, MAX_WIDTH)?;
    }
    for key in ["feed_forward_length", "expert_feed_forward_length", "expert_shared_feed_forward_length"] {
        for n in keys.per_layer(key)? {
            within(&keys.name(key), n, 0, MAX_WIDTH * 16)?;
        }
    }
    for key in ["attention.key_length", "attention.value_length", "attention.key_length_swa", "attention.value_length_swa"] {
        if let Some(n) = keys.uint(key)? {
            within(&keys.name(key), n, 1, MAX_HEAD_DIM)?;
        }
    }
    check_heads(&keys, arch, width)?;
    check_experts(&keys, arch)?;
    check_floats(&keys)?;
    check_tokenizer(header)?;
    Ok(())
}

/// The largest sizes a model's metadata declares, for a quick upper bound on its memory
/// (`fit`). Only for files that passed [`check`].
pub(crate) struct ShapeBounds {
    pub layers: u64,
    /// The widest of the embedding and the key/value rows of one layer.
    pub kv_width: u64,
    pub heads: u64,
    /// The widest feed-forward activation of one token (all experts used counted).
    pub feed_forward: u64,
    pub vocab: u64,
}

/// `None` where a size is missing or the architecture keeps other state (recurrent models).
pub(crate) fn shape_bounds(header: &GgufHeader) -> Option<ShapeBounds> {
    let arch = header.get_str("general.architecture")?;
    if RECURRENT.contains(&arch) {
        return None;
    }
    let keys = Keys { header, prefix: format!("{arch}.") };
    let max = |key: &str| keys.per_layer(key).ok().and_then(|values| values.into_iter().max());
    let layers = keys.uint("block_count").ok()??;
    let width = keys.uint("embedding_length").ok()??;
    let heads = max("attention.head_count").filter(|&h| h > 0)?;
    let kv_heads = max("attention.head_count_kv").unwrap_or(heads);
    let head_dim = ["attention.key_length", "attention.value_length", "attention.key_length_mla", "attention.value_length_mla"]
        .iter()
        .filter_map(|key| keys.uint(key).ok().flatten())
        .max()
        .unwrap_or(width / heads);
    let experts_used = max("expert_used_count").unwrap_or(1).max(1);
    let feed_forward = ["feed_forward_length", "expert_feed_forward_length", "expert_shared_feed_forward_length"]
        .iter()
        .filter_map(|key| max(key))
        .max()
        .unwrap_or(4 * width)
        .saturating_mul(experts_used);
    let vocab = header.metadata.get("tokenizer.ggml.tokens")?.as_array()?.len() as u64;
    Some(ShapeBounds { layers, kv_width: width.max(kv_heads.max(heads) * head_dim), heads, feed_forward, vocab })
}

struct Keys<'a> {
    header: &'a GgufHeader,
    prefix: String,
}

impl Keys<'_> {
    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.header.metadata.get(&self.name(key))
    }

    /// A count: absent, or a non-negative integer. Other types are left to llama.cpp's loader,
    /// which refuses a key of the wrong type.
    fn uint(&self, key: &str) -> Result<Option<u64>, String> {
        match self.get(key) {
            Some(value) => count(&self.name(key), value),
            None => Ok(None),
        }
    }

    /// A per-layer count: one value for every layer, or an array of them.
    fn per_layer(&self, key: &str) -> Result<Vec<u64>, String> {
        let name = self.name(key);
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|item| count(&name, item).map(Option::unwrap_or_default)).collect(),
            Some(value) => Ok(count(&name, value)?.into_iter().collect()),
        }
    }

    fn float(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }
}

fn count(name: &str, value: &Value) -> Result<Option<u64>, String> {
    match value {
        Value::Number(n) if n.is_u64() => Ok(n.as_u64()),
        Value::Number(n) if n.is_i64() => Err(format!("{name} is {n}: it must not be negative")),
        _ => Ok(None),
    }
}

fn within(name: &str, value: u64, low: u64, high: u64) -> Result<(), String> {
    if value < low || value > high {
        return Err(format!("{name} is {value}: it must be between {low} and {high}"));
    }
    Ok(())
}

/// GGUF floats that are NaN or infinite reach the metadata as JSON null (`crate::gguf`).
fn check_numbers_are_finite(keys: &Keys<'_>) -> Result<(), String> {
    for (name, value) in keys.header.metadata.range(keys.prefix.clone()..) {
        if !name.starts_with(&keys.prefix) {
            break;
        }
        let finite = match value {
            Value::Null => false,
            Value::Array(items) => !items.iter().any(Value::is_null),
            _ => true,
        };
        if !finite {
            return Err(format!("{name} is not a finite number (NaN or infinity)"));
        }
    }
    Ok(())
}

/// Head counts divide: the grouped-query ratio and the head size are integer divisions in
/// llama.cpp, and ggml asserts that K and V heads broadcast over the query heads.
fn check_heads(keys: &Keys<'_>, arch: &str, width: Option<u64>) -> Result<(), String> {
    let heads = keys.per_layer("attention.head_count")?;
    let kv_heads = keys.per_layer("attention.head_count_kv")?;
    let (head_name, kv_name) = (keys.name("attention.head_count"), keys.name("attention.head_count_kv"));
    for &n in &heads {
        within(&head_name, n, 0, MAX_HEADS)?;
    }
    // Hybrid models list 0 for their recurrent layers; a transformer has heads somewhere.
    if !heads.is_empty() && heads.iter().all(|&n| n == 0) && !RECURRENT.contains(&arch) {
        return Err(format!("{head_name} is 0: a {arch} model has attention heads"));
    }
    for (layer, &kv) in kv_heads.iter().enumerate() {
        // One value stands for every layer.
        let q = if heads.len() == 1 { heads[0] } else { heads.get(layer).copied().unwrap_or(0) };
        if heads.is_empty() {
            continue;
        }
        if kv > q {
            return Err(format!("{kv_name} is {kv} but {head_name} is {q}: a layer cannot have more key/value heads than query heads"));
        }
        if kv > 0 && q % kv != 0 {
            return Err(format!("{head_name} ({q}) is not a multiple of {kv_name} ({kv})"));
        }
    }
    // The head size llama.cpp derives when the file does not state it.
    let max_heads = heads.iter().copied().max().unwrap_or(0);
    let key_length = keys.uint("attention.key_length")?;
    let head_dim = match (key_length, width) {
        (Some(stated), _) => Some(stated),
        (None, Some(w)) if max_heads > 0 => {
            if w < max_heads {
                return Err(format!("{} ({w}) is smaller than {head_name} ({max_heads})", keys.name("embedding_length")));
            }
            Some(w / max_heads)
        }
        _ => None,
    };
    for (key, dim) in
        [("rope.dimension_count", head_dim), ("rope.dimension_count_swa", keys.uint("attention.key_length_swa")?.or(head_dim))]
    {
        if let Some(n) = keys.uint(key)? {
            let name = keys.name(key);
            if n % 2 != 0 {
                return Err(format!("{name} is {n}: rotary dimensions come in pairs"));
            }
            if let Some(dim) = dim {
                within(&name, n, 0, dim)?;
            }
        }
    }
    Ok(())
}

fn check_experts(keys: &Keys<'_>, arch: &str) -> Result<(), String> {
    let experts = keys.uint("expert_count")?.unwrap_or(0);
    let needs_experts = arch.contains("moe") || DIVIDES_BY_EXPERTS_USED.contains(&arch);
    within(&keys.name("expert_count"), experts, if needs_experts { 1 } else { 0 }, MAX_EXPERTS)?;
    let used_name = keys.name("expert_used_count");
    for used in keys.per_layer("expert_used_count")? {
        within(&used_name, used, if experts > 0 { 1 } else { 0 }, experts)?;
    }
    if experts > 0 && keys.per_layer("expert_used_count")?.is_empty() {
        return Err(format!("{} is {experts} but {used_name} is missing", keys.name("expert_count")));
    }
    let groups = keys.uint("expert_group_count")?.unwrap_or(0);
    if groups > 0 {
        let used_groups = keys.uint("expert_group_used_count")?.unwrap_or(0);
        if experts == 0 || groups >= experts || experts % groups != 0 || (groups > 1 && (used_groups == 0 || used_groups >= groups)) {
            return Err(format!(
                "{} is {groups} with {experts} experts and {used_groups} groups used: inconsistent",
                keys.name("expert_group_count")
            ));
        }
    }
    Ok(())
}

/// Norm epsilons feed `GGML_ASSERT(eps >= 0)` at the first decode; rope frequencies and scales
/// divide.
fn check_floats(keys: &Keys<'_>) -> Result<(), String> {
    for (name, value) in keys.header.metadata.range(keys.prefix.clone()..) {
        if !name.starts_with(&keys.prefix) {
            break;
        }
        if name.ends_with("epsilon") {
            if let Some(eps) = value.as_f64().filter(|eps| *eps < 0.0) {
                return Err(format!("{name} is {eps}: it must not be negative"));
            }
        }
    }
    for key in ["rope.freq_base", "rope.freq_base_swa"] {
        if let Some(base) = keys.float(key).filter(|base| *base <= 0.0) {
            return Err(format!("{} is {base}: it must be positive", keys.name(key)));
        }
    }
    for key in ["rope.scaling.factor", "rope.scale_linear", "attn_logit_softcapping", "final_logit_softcapping"] {
        if let Some(x) = keys.float(key).filter(|x| *x < 0.0) {
            return Err(format!("{} is {x}: it must not be negative", keys.name(key)));
        }
    }
    Ok(())
}

/// The vocabulary's parallel arrays have one entry per token: llama.cpp indexes them by token.
fn check_tokenizer(header: &GgufHeader) -> Result<(), String> {
    let Some(tokens) = header.metadata.get("tokenizer.ggml.tokens") else { return Ok(()) };
    let Some(tokens) = tokens.as_array() else { return Ok(()) };
    if tokens.is_empty() {
        return Err("tokenizer.ggml.tokens is empty".into());
    }
    if tokens.len() > i32::MAX as usize {
        return Err(format!("tokenizer.ggml.tokens has {} entries", tokens.len()));
    }
    for key in ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"] {
        if let Some(Value::Array(items)) = header.metadata.get(key) {
            if items.len() != tokens.len() {
                return Err(format!("{key} has {} entries for {} tokens", items.len(), tokens.len()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn header(pairs: &[(&str, Value)]) -> GgufHeader {
        let mut metadata: BTreeMap<String, Value> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        metadata.insert("general.architecture".into(), "llama".into());
        GgufHeader { metadata, file_size: 0 }
    }

    fn good() -> Vec<(&'static str, Value)> {
        vec![
            ("llama.block_count", 30.into()),
            ("llama.context_length", 8192.into()),
            ("llama.embedding_length", 576.into()),
            ("llama.feed_forward_length", 1536.into()),
            ("llama.attention.head_count", 9.into()),
            ("llama.attention.head_count_kv", 3.into()),
            ("llama.rope.dimension_count", 64.into()),
            ("llama.rope.freq_base", 100000.0.into()),
            ("llama.attention.layer_norm_rms_epsilon", 1e-5.into()),
        ]
    }

    fn with(key: &'static str, value: Value) -> Result<(), String> {
        let mut pairs = good();
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
        check(&header(&pairs))
    }

    #[test]
    fn a_real_models_values_pass() {
        check(&header(&good())).unwrap();
    }

    #[test]
    fn each_hostile_value_is_named() {
        for (key, value, says) in [
            ("llama.block_count", Value::from(0), "between 1 and 512"),
            ("llama.block_count", Value::from(513), "between 1 and 512"),
            ("llama.block_count", Value::from(-1), "negative"),
            ("llama.attention.layer_norm_rms_epsilon", Value::from(-1.0), "negative"),
            ("llama.attention.layer_norm_rms_epsilon", Value::Null, "finite"),
            ("llama.attention.head_count_kv", Value::from(2), "multiple"),
            ("llama.attention.head_count_kv", Value::from(10), "more key/value heads"),
            ("llama.rope.dimension_count", Value::from(63), "pairs"),
            ("llama.rope.dimension_count", Value::from(66), "between 0 and 64"),
            ("llama.rope.freq_base", Value::from(0.0), "positive"),
            ("llama.embedding_length", Value::from(0), "between 1"),
            ("llama.context_length", Value::from(0), "between 1"),
            ("llama.expert_count", Value::from(4), "missing"),
            ("llama.attention.head_count", Value::from(0), "has attention heads"),
        ] {
            let err = with(key, value.clone()).expect_err(&format!("{key} = {value}"));
            assert!(err.contains(key) && err.contains(says), "{key} = {value}: {err}");
        }
    }
}
