//! Load and generation options as JS objects. Every field is optional: `undefined` (or `null`)
//! keeps the core default from `Default::default()`, the only place defaults live. Numbers
//! arrive as `f64` and are checked here, so `-1`, `1.5` or `NaN` for an integer option is an
//! `invalid_argument` error instead of napi's silent wrap-around to `u32`.

use std::time::Duration;

use napi::bindgen_prelude::Either;
use napi_derive::napi;

use crate::error::{invalid_argument, OrThrow};

/// How to load a model (see `ModelOptions` in corral-core for each field).
#[napi(object)]
#[derive(Default)]
pub struct LoadOptions {
    /// KV cache size in tokens, shared by all concurrent requests. Default: the model's
    /// trained context, capped at 4096.
    pub context_length: Option<f64>,
    /// Threads for prompt processing and generation. Default: physical cores.
    pub threads: Option<f64>,
    /// Layers to offload to a GPU (0 = CPU only).
    pub gpu_layers: Option<f64>,
    pub use_mmap: Option<bool>,
    pub use_mlock: Option<bool>,
    /// Requests the engine runs at once (and cached prefixes it keeps).
    pub max_sequences: Option<f64>,
    /// Most prompt tokens evaluated per engine step.
    pub batch_size: Option<f64>,
    /// `undefined` lets llama.cpp decide.
    pub flash_attention: Option<bool>,
    /// A Jinja chat template that replaces the model's own.
    pub chat_template: Option<String>,
    /// Requests that may wait for a free sequence; beyond that new ones fail with `busy`.
    pub max_queued: Option<f64>,
    /// When a prompt does not fit in the KV cache left free by running requests: `wait`
    /// (default) until they finish, or `error` at once with `context_overflow`.
    #[napi(ts_type = "'wait' | 'error'")]
    pub on_kv_full: Option<String>,
}

/// Sampling and stopping options of one request (see `GenerateOptions` in corral-core).
#[napi(object)]
#[derive(Default)]
pub struct GenerateOptions {
    /// Most tokens to generate. Default: until end of generation or a full context.
    pub max_tokens: Option<f64>,
    /// 0 = greedy.
    pub temperature: Option<f64>,
    /// 0 = disabled.
    pub top_k: Option<f64>,
    /// In (0, 1]; 1 = disabled.
    pub top_p: Option<f64>,
    /// In [0, 1]; 0 = disabled.
    pub min_p: Option<f64>,
    /// > 0; 1 = disabled.
    pub repeat_penalty: Option<f64>,
    /// How many recent tokens the penalties look at.
    pub repeat_last_n: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    /// Fixed seed for reproducible sampling. Default: random.
    pub seed: Option<f64>,
    /// Strings that end generation (never part of the output).
    pub stop: Option<Either<String, Vec<String>>>,
    /// Milliseconds before the request fails with `deadline_exceeded`.
    pub timeout: Option<f64>,
    /// Keep generating past end-of-generation tokens.
    pub ignore_eos: Option<bool>,
    /// Parse special-token text in a raw prompt as control tokens (chat always does).
    pub parse_special: Option<bool>,
    /// Constrain the output with a GBNF grammar (llama.cpp's format, with a `root` rule).
    pub grammar: Option<String>,
    /// Constrain the output to JSON valid against this JSON schema (JSON text; the TS layer
    /// also takes an object).
    pub json_schema: Option<String>,
    /// Constrain the output to any JSON object.
    pub json_object: Option<bool>,
    /// Report each generated token's log-probability with this many most likely
    /// alternatives (0-20) in `logprobs`.
    pub logprobs: Option<f64>,
    /// Chat only: JSON text of OpenAI's `tools` array (the TS layer takes the array).
    pub tools_json: Option<String>,
    /// Chat only: `auto` (default), `none`, `required`, or the name of the function to call.
    pub tool_choice: Option<String>,
    /// Chat only: one of the model's named templates (e.g. `tool_use`) or Jinja source.
    pub template: Option<String>,
}

/// An integer option: finite, whole and within `u32`.
pub(crate) fn uint(name: &str, value: Option<f64>) -> napi::Result<Option<u32>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && v.fract() == 0.0 => corral::checked_u32(name, v as i64).or_throw().map(Some),
        Some(v) => Err(invalid_argument(format!("{name} must be a whole number, got {v}"))),
    }
}

/// A float option; range checks are the core's (`GenerateOptions::validate`).
fn float(value: Option<f64>, default: f32) -> f32 {
    value.map_or(default, |v| v as f32)
}

impl LoadOptions {
    pub(crate) fn to_core(&self) -> napi::Result<corral::ModelOptions> {
        let d = corral::ModelOptions::default();
        let on_kv_full = match self.on_kv_full.as_deref() {
            None => d.on_kv_full,
            Some("wait") => corral::KvFullPolicy::Wait,
            Some("error") => corral::KvFullPolicy::Error,
            Some(other) => return Err(invalid_argument(format!("onKvFull must be 'wait' or 'error', got {other:?}"))),
        };
        // A newer core may add options: those keep their defaults until exposed here.
        #[allow(clippy::needless_update)]
        let options = corral::ModelOptions {
            context_length: uint("contextLength", self.context_length)?.or(d.context_length),
            threads: uint("threads", self.threads)?.or(d.threads),
            gpu_layers: uint("gpuLayers", self.gpu_layers)?.unwrap_or(d.gpu_layers),
            use_mmap: self.use_mmap.unwrap_or(d.use_mmap),
            use_mlock: self.use_mlock.unwrap_or(d.use_mlock),
            max_sequences: uint("maxSequences", self.max_sequences)?.unwrap_or(d.max_sequences),
            batch_size: uint("batchSize", self.batch_size)?.unwrap_or(d.batch_size),
            flash_attention: self.flash_attention.or(d.flash_attention),
            chat_template: self.chat_template.clone().or(d.chat_template.clone()),
            on_progress: None,
            max_queued: uint("maxQueued", self.max_queued)?.unwrap_or(d.max_queued),
            on_kv_full,
            ..d
        };
        Ok(options)
    }
}

impl GenerateOptions {
    pub(crate) fn to_core(&self) -> napi::Result<corral::GenerateOptions> {
        let d = corral::GenerateOptions::default();
        let timeout = match self.timeout {
            None => d.timeout,
            Some(ms) if ms.is_finite() && ms >= 0.0 => Some(Duration::from_secs_f64(ms / 1000.0)),
            Some(ms) => return Err(invalid_argument(format!("timeout must be a positive number of milliseconds, got {ms}"))),
        };
        let stop = match &self.stop {
            None => d.stop,
            Some(Either::A(one)) => vec![one.clone()],
            Some(Either::B(many)) => many.clone(),
        };
        let constraint = match (&self.grammar, &self.json_schema, self.json_object.unwrap_or(false)) {
            (None, None, false) => d.constraint.clone(),
            (Some(grammar), None, false) => Some(corral::Constraint::Grammar(grammar.clone())),
            (None, Some(schema), false) => Some(corral::Constraint::JsonSchema(schema.clone())),
            (None, None, true) => Some(corral::Constraint::JsonObject),
            _ => return Err(invalid_argument("grammar, jsonSchema and jsonObject exclude each other: give one")),
        };
        // A newer core may add options: those keep their defaults until exposed here.
        #[allow(clippy::needless_update)]
        let options = corral::GenerateOptions {
            max_tokens: uint("maxTokens", self.max_tokens)?.or(d.max_tokens),
            temperature: float(self.temperature, d.temperature),
            top_k: uint("topK", self.top_k)?.unwrap_or(d.top_k),
            top_p: float(self.top_p, d.top_p),
            min_p: float(self.min_p, d.min_p),
            repeat_penalty: float(self.repeat_penalty, d.repeat_penalty),
            repeat_last_n: uint("repeatLastN", self.repeat_last_n)?.unwrap_or(d.repeat_last_n),
            frequency_penalty: float(self.frequency_penalty, d.frequency_penalty),
            presence_penalty: float(self.presence_penalty, d.presence_penalty),
            seed: uint("seed", self.seed)?.or(d.seed),
            stop,
            parse_special: self.parse_special.unwrap_or(d.parse_special),
            ignore_eos: self.ignore_eos.unwrap_or(d.ignore_eos),
            timeout,
            constraint,
            logprobs: uint("logprobs", self.logprobs)?.or(d.logprobs),
            tools: crate::model::core_tools(self.tools_json.as_deref())?,
            tool_choice: match self.tool_choice.as_deref() {
                None | Some("auto") => corral::ToolChoice::Auto,
                Some("none") => corral::ToolChoice::None,
                Some("required") => corral::ToolChoice::Required,
                Some("") => return Err(invalid_argument("toolChoice is empty")),
                Some(name) => corral::ToolChoice::Function(name.to_string()),
            },
            template: self.template.clone(),
            ..d
        };
        // Validate now so a bad option fails the call itself, before any work is queued.
        options.validate().or_throw()?;
        Ok(options)
    }
}

/// Converts optional JS options (absent = all defaults).
pub(crate) fn generate_options(options: Option<&GenerateOptions>) -> napi::Result<corral::GenerateOptions> {
    match options {
        Some(options) => options.to_core(),
        None => Ok(corral::GenerateOptions::default()),
    }
}
