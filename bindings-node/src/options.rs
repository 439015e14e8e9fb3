//! Load and generation options as JS objects. Every field is optional: `undefined` (or `null`)
//! keeps the core default from `Default::default()`, the only place defaults live. Load
//! options are a `#[napi(object)]` struct whose numbers arrive as `f64` and are checked here,
//! so `-1`, `1.5` or `NaN` for an integer option is an `invalid_argument` error instead of
//! napi's silent wrap-around to `u32`. Generation options arrive as JSON and are read by
//! corral-core (`corral::openai::generate_options`, camelCase, `timeout` in milliseconds).

use std::collections::BTreeMap;

use corral::openai::Dialect;
use napi::Either;
use napi_derive::napi;

use crate::error::{invalid_argument, OrThrow};

/// How to load a model (see `ModelOptions` in corral-core for each field).
#[napi(object)]
#[derive(Default)]
pub struct LoadOptions {
    /// KV cache size in tokens, shared by all concurrent requests, or `'auto'`: the largest
    /// that fits in the memory available to the process (up to the trained context). Default:
    /// the model's trained context, capped at 4096.
    #[napi(ts_type = "number | 'auto'")]
    pub context_length: Option<Either<f64, String>>,
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
    /// LoRA adapters to load with the model: name -> path of a LoRA GGUF made for this
    /// model. Requests choose them with the `adapters` generation option; more can be loaded
    /// later with `loadAdapter`.
    #[napi(ts_type = "Record<string, string>")]
    pub adapters: Option<BTreeMap<String, String>>,
    /// RPC workers (`'host:port'`, each running `corral-rpc-server` or `serveRpc`) that hold
    /// part of the model's layers. Default: none, the whole model runs in this process. A worker
    /// that is down or refuses fails the load with `worker_unavailable`; one lost later fails
    /// every request on the model with it. Private networks only: the protocol has no
    /// authentication.
    pub rpc_servers: Option<Vec<String>>,
    /// How the layers are shared out with `rpcServers`: one weight per worker, then one for
    /// this process (`[1, 1, 2]`: half the layers stay here, a quarter on each worker).
    /// Default: equal shares.
    pub rpc_split: Option<Vec<f64>>,
}

/// An integer option: finite, whole and within `u32`.
fn uint(name: &str, value: Option<f64>) -> napi::Result<Option<u32>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && v.fract() == 0.0 => corral::checked_u32(name, v as i64).or_throw().map(Some),
        Some(v) => Err(invalid_argument(format!("{name} must be a whole number, got {v}"))),
    }
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
        let (context_length, auto_context_length) = match &self.context_length {
            None => (None, false),
            Some(Either::A(tokens)) => (uint("contextLength", Some(*tokens))?, false),
            Some(Either::B(text)) if text == "auto" => (None, true),
            Some(Either::B(text)) => return Err(invalid_argument(format!("contextLength must be a number or 'auto', got {text:?}"))),
        };
        // A newer core may add options: those keep their defaults until exposed here.
        #[allow(clippy::needless_update)]
        let options = corral::ModelOptions {
            context_length: context_length.or(d.context_length),
            auto_context_length,
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
            adapters: match &self.adapters {
                None => d.adapters.clone(),
                Some(adapters) => {
                    adapters.iter().map(|(name, path)| corral::AdapterFile { name: name.clone(), path: path.into() }).collect()
                }
            },
            rpc_servers: self.rpc_servers.clone().unwrap_or(d.rpc_servers.clone()),
            // corral-core checks the weights (count, finite, not negative); a weight too large
            // for f32 becomes infinite and is refused there.
            rpc_split: match &self.rpc_split {
                None => d.rpc_split.clone(),
                Some(weights) => weights.iter().map(|&w| w as f32).collect(),
            },
            ..d
        };
        Ok(options)
    }
}

/// Core generation options from the JS ones (absent or null: all defaults), validated so a bad
/// option fails the call itself, before any work is queued.
pub(crate) fn generate_options(options: Option<&serde_json::Value>) -> napi::Result<corral::GenerateOptions> {
    corral::openai::generate_options(options.unwrap_or(&serde_json::Value::Null), Dialect::Node).or_throw()
}
