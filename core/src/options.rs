//! Options for loading a model and for generating text. Defaults live here only: every
//! binding starts from `Default::default()` and overrides what the caller set.

use std::time::Duration;

pub use crate::adapter::{AdapterChoice, AdapterFile};
pub use crate::chat::tools::ToolChoice;
use crate::error::{Error, Result};

/// How to load a model and size its engine.
#[derive(Clone)]
pub struct ModelOptions {
    /// Tokens of KV cache shared by all sequences of the model (prompt + output of every
    /// running request and cached prefix). Default: the model's trained context, capped at 4096.
    pub context_length: Option<u32>,
    /// Pick the largest context that fits in the memory available to the process, up to the
    /// model's trained context (instead of `context_length`).
    pub auto_context_length: bool,
    /// Threads for generation and prompt processing. Default: the number of physical cores.
    pub threads: Option<u32>,
    /// Layers to offload to a GPU (0 = CPU only; needs a GPU feature at build time).
    pub gpu_layers: u32,
    /// Map the file instead of reading it (default true).
    pub use_mmap: bool,
    /// Lock the model's memory so it cannot be swapped out (default false).
    pub use_mlock: bool,
    /// How many sequences the engine can run at once (concurrent requests and cached prefixes).
    pub max_sequences: u32,
    /// Most prompt tokens evaluated per engine step (the prompt-processing chunk).
    pub batch_size: u32,
    /// Flash attention: `None` lets llama.cpp decide (auto).
    pub flash_attention: Option<bool>,
    /// A Jinja chat template that replaces the one in the GGUF.
    pub chat_template: Option<String>,
    /// Called with load progress in [0, 1]; return `false` to cancel loading.
    pub on_progress: Option<ProgressCallback>,
    /// Requests that may wait for a free sequence; beyond that new requests fail with `busy`.
    pub max_queued: u32,
    /// What a request does when its prompt does not fit in the free KV cache right now.
    pub on_kv_full: KvFullPolicy,
    /// LoRA adapters to load with the model; requests choose them by name
    /// (`GenerateOptions::adapters`). More can be added later with `Model::load_adapter`.
    pub adapters: Vec<AdapterFile>,
    /// RPC workers (`host:port`, each running `corral rpc-server`) that hold part of the
    /// model's layers; empty: the whole model runs in this process. Private networks only:
    /// the protocol has no authentication.
    pub rpc_servers: Vec<String>,
    /// How the layers are shared out with `rpc_servers`: one weight per worker, then one for
    /// this process (`[1.0, 1.0, 2.0]`: half the layers stay here, a quarter on each worker).
    /// Empty: equal shares.
    pub rpc_split: Vec<f32>,
}

/// What happens to a request whose prompt does not fit in the KV cache left free by the
/// requests already running (after dropping idle cached prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvFullPolicy {
    /// Wait in the queue until running requests finish (default).
    #[default]
    Wait,
    /// Fail at once with `context_overflow`.
    Error,
}

pub type ProgressCallback = std::sync::Arc<dyn Fn(f32) -> bool + Send + Sync>;

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            context_length: None,
            auto_context_length: false,
            threads: None,
            gpu_layers: 0,
            use_mmap: true,
            use_mlock: false,
            max_sequences: 8,
            batch_size: 512,
            flash_attention: None,
            chat_template: None,
            on_progress: None,
            max_queued: 1024,
            on_kv_full: KvFullPolicy::Wait,
            adapters: Vec::new(),
            rpc_servers: Vec::new(),
            rpc_split: Vec::new(),
        }
    }
}

impl std::fmt::Debug for ModelOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelOptions")
            .field("context_length", &self.context_length)
            .field("auto_context_length", &self.auto_context_length)
            .field("threads", &self.threads)
            .field("gpu_layers", &self.gpu_layers)
            .field("use_mmap", &self.use_mmap)
            .field("use_mlock", &self.use_mlock)
            .field("max_sequences", &self.max_sequences)
            .field("batch_size", &self.batch_size)
            .field("flash_attention", &self.flash_attention)
            .field("chat_template", &self.chat_template.as_ref().map(|_| "<custom>"))
            .field("on_progress", &self.on_progress.as_ref().map(|_| "<callback>"))
            .field("max_queued", &self.max_queued)
            .field("on_kv_full", &self.on_kv_full)
            .field("adapters", &self.adapters)
            .field("rpc_servers", &self.rpc_servers)
            .field("rpc_split", &self.rpc_split)
            .finish()
    }
}

/// The longest context corral accepts (16M tokens, beyond any model's training).
pub const MAX_CONTEXT_LENGTH: u32 = 1 << 24;

/// The context length when none is given: the trained one, at most 4096 tokens.
pub(crate) fn default_context_length(trained: u32) -> u32 {
    trained.clamp(1, 4096)
}

impl ModelOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.context_length == Some(0) {
            return Err(Error::invalid_argument("context_length must be at least 1"));
        }
        // llama.cpp keeps host bookkeeping per KV cell even before any allocation: a context
        // of billions of tokens would take minutes and gigabytes just to be sized.
        if self.context_length.is_some_and(|n| n > MAX_CONTEXT_LENGTH) {
            return Err(Error::invalid_argument(format!("context_length must be at most {MAX_CONTEXT_LENGTH}")));
        }
        if self.auto_context_length && self.context_length.is_some() {
            return Err(Error::invalid_argument("context_length is either a number of tokens or \"auto\", not both"));
        }
        if self.threads == Some(0) || self.threads.is_some_and(|t| t > 1024) {
            return Err(Error::invalid_argument("threads must be between 1 and 1024"));
        }
        if !(1..=256).contains(&self.max_sequences) {
            return Err(Error::invalid_argument("max_sequences must be between 1 and 256"));
        }
        if !(1..=65536).contains(&self.batch_size) {
            return Err(Error::invalid_argument("batch_size must be between 1 and 65536"));
        }
        self.validate_rpc()
    }

    fn validate_rpc(&self) -> Result<()> {
        use crate::backend::rpc::{check_endpoint, MAX_SERVERS};
        if self.rpc_servers.len() > MAX_SERVERS {
            return Err(Error::invalid_argument(format!("rpc_servers names at most {MAX_SERVERS} workers")));
        }
        for (i, endpoint) in self.rpc_servers.iter().enumerate() {
            check_endpoint(endpoint)?;
            if self.rpc_servers[..i].contains(endpoint) {
                return Err(Error::invalid_argument(format!("rpc_servers names {endpoint} twice")));
            }
        }
        if self.auto_context_length && !self.rpc_servers.is_empty() {
            return Err(Error::invalid_argument(
                "context_length=\"auto\" measures this process's memory only: give a number with rpc_servers",
            ));
        }
        if self.rpc_split.is_empty() {
            return Ok(());
        }
        if self.rpc_split.len() != self.rpc_servers.len() + 1 || self.rpc_servers.is_empty() {
            return Err(Error::invalid_argument(format!(
                "rpc_split has {} weights: it needs one per RPC worker ({}) and one for this process",
                self.rpc_split.len(),
                self.rpc_servers.len()
            )));
        }
        if self.rpc_split.iter().any(|w| !w.is_finite() || *w < 0.0) || self.rpc_split.iter().sum::<f32>() <= 0.0 {
            return Err(Error::invalid_argument("rpc_split weights must be finite, non-negative and not all zero"));
        }
        Ok(())
    }
}

/// Sampling and stopping options for one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens to generate; `None` = until an end-of-generation token or the context is full.
    pub max_tokens: Option<u32>,
    /// 0 = greedy (deterministic).
    pub temperature: f32,
    /// 0 = disabled.
    pub top_k: u32,
    /// In (0, 1]; 1 = disabled.
    pub top_p: f32,
    /// In [0, 1]; 0 = disabled.
    pub min_p: f32,
    /// > 0; 1 = disabled.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub repeat_last_n: u32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// Fixed seed for reproducible sampling; `None` = random.
    pub seed: Option<u32>,
    /// Strings that end generation; matched across token boundaries and never emitted.
    pub stop: Vec<String>,
    /// Parse special-token text (e.g. `<|im_start|>`) in the prompt as control tokens.
    /// Off by default so user text cannot inject control tokens; chat prompts set it.
    pub parse_special: bool,
    /// Keep generating past end-of-generation tokens (for benchmarks and raw completion).
    pub ignore_eos: bool,
    /// Give up after this long (the request fails with `deadline_exceeded`).
    pub timeout: Option<Duration>,
    /// Constrain the output: a GBNF grammar or a JSON schema (compiled to a grammar by
    /// llama.cpp's json-schema-to-grammar). Invalid ones fail with `invalid_grammar` before
    /// generation starts.
    pub constraint: Option<Constraint>,
    /// Report each generated token's log-probability and this many most likely alternatives
    /// (0-20) in `Chunk::logprobs`.
    pub logprobs: Option<u32>,
    /// Chat only: tools the model may call (OpenAI's function format, as JSON values). The
    /// template renders them and calls come back parsed in `tool_calls`.
    pub tools: Vec<serde_json::Value>,
    /// Chat only: whether and which tool the model may call.
    pub tool_choice: ToolChoice,
    /// Chat only: the chat template for this call: the name of one of the model's named
    /// templates (`tokenizer.chat_template.<name>`, e.g. `tool_use`) or Jinja source.
    pub template: Option<String>,
    /// Chat only: most tokens of reasoning (`<think>...</think>`) before the answer; then the
    /// block is closed for the model. `Some(0)` turns thinking off where the template has
    /// `enable_thinking` (Qwen3). `None`: no limit.
    pub reasoning_budget: Option<u32>,
    /// LoRA adapters (loaded on the model) and their scales for this request; empty = the
    /// base model.
    pub adapters: Vec<AdapterChoice>,
}

/// A constraint on generated text.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// GBNF grammar text (llama.cpp's format) with a `root` rule.
    Grammar(String),
    /// A JSON schema (as JSON text): the output is a JSON value valid against it.
    JsonSchema(String),
    /// Any JSON object (OpenAI's `{"type": "json_object"}`).
    JsonObject,
}

/// Most alternatives `logprobs` may ask for (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u32 = 20;

impl Default for GenerateOptions {
    fn default() -> Self {
        // llama.cpp's own sampling defaults.
        GenerateOptions {
            max_tokens: None,
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
            stop: Vec::new(),
            parse_special: false,
            ignore_eos: false,
            timeout: None,
            constraint: None,
            logprobs: None,
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            template: None,
            reasoning_budget: None,
            adapters: Vec::new(),
        }
    }
}

impl GenerateOptions {
    pub fn validate(&self) -> Result<()> {
        let finite = |name: &str, v: f32| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(Error::invalid_argument(format!("{name} must be a finite number, got {v}")))
            }
        };
        finite("temperature", self.temperature)?;
        if self.temperature < 0.0 {
            return Err(Error::invalid_argument(format!("temperature must be >= 0, got {}", self.temperature)));
        }
        finite("top_p", self.top_p)?;
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid_argument(format!("top_p must be in (0, 1], got {}", self.top_p)));
        }
        finite("min_p", self.min_p)?;
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(Error::invalid_argument(format!("min_p must be in [0, 1], got {}", self.min_p)));
        }
        finite("repeat_penalty", self.repeat_penalty)?;
        if self.repeat_penalty <= 0.0 {
            return Err(Error::invalid_argument(format!("repeat_penalty must be > 0, got {}", self.repeat_penalty)));
        }
        finite("frequency_penalty", self.frequency_penalty)?;
        finite("presence_penalty", self.presence_penalty)?;
        if let Some(i) = self.stop.iter().position(String::is_empty) {
            return Err(Error::invalid_argument(format!("stop[{i}] is empty: stop strings must not be empty")));
        }
        if self.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
            return Err(Error::invalid_argument(format!("logprobs alternatives must be at most {MAX_TOP_LOGPROBS}")));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid_argument("timeout must be positive"));
        }
        Ok(())
    }
}

impl GenerateOptions {
    /// Tools and templates shape a chat prompt: a raw completion has none.
    pub(crate) fn check_for_completion(&self) -> Result<()> {
        if !self.tools.is_empty() || self.template.is_some() || self.reasoning_budget.is_some() {
            return Err(Error::invalid_argument("tools, template and reasoning_budget apply to chat, not to completion of a raw prompt"));
        }
        Ok(())
    }
}

/// Converts a caller's integer (bindings receive signed numbers) into a `u32` option value.
pub fn checked_u32(name: &str, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::invalid_argument(format!("{name} must be between 0 and {}, got {value}", u32::MAX)))
}
