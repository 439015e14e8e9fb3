//! `Model`: load, tokenizer, chat template, generation, sessions.

use std::collections::BTreeMap;
use std::sync::Arc;

use napi::bindgen_prelude::Either;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

use crate::blocking;
use crate::chat;
use crate::error::OrThrow;
use crate::options::LoadOptions;
use crate::session::NativeSession;
use crate::stream::CancelToken;

/// A special token: its id and its text.
#[napi(object)]
pub struct SpecialToken {
    pub id: i32,
    pub text: String,
}

fn special(token: &Option<corral::SpecialToken>) -> Option<SpecialToken> {
    token.as_ref().map(|t| SpecialToken { id: t.id, text: t.text.clone() })
}

/// What a model is, from its GGUF metadata and llama.cpp.
#[napi(object)]
pub struct ModelInfo {
    /// `general.architecture`, e.g. `llama`, `qwen2`.
    pub architecture: String,
    pub name: String,
    pub parameters: f64,
    pub size_bytes: f64,
    /// e.g. `Q4_1`, `Q4_K_M`, `F16`.
    pub quantization: String,
    pub context_length_trained: u32,
    /// The KV cache size this model was loaded with.
    pub context_length: u32,
    pub embedding_length: u32,
    pub layers: u32,
    pub vocab_size: u32,
    pub bos_token: Option<SpecialToken>,
    pub eos_token: Option<SpecialToken>,
    pub eot_token: Option<SpecialToken>,
    pub add_bos_token: bool,
    pub chat_template: Option<String>,
    /// Every GGUF metadata key with its typed value.
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// Request, token and prefix-cache totals since the model was loaded.
#[napi(object)]
pub struct EngineStats {
    pub requests: f64,
    /// Prompt tokens of all requests.
    pub prompt_tokens: f64,
    /// Prompt tokens reused from sessions or the prefix cache (cache hits).
    pub cached_tokens: f64,
    pub generated_tokens: f64,
    /// Generation decodes stopped part-way so that a new request's prompt went first
    /// (their tokens were decoded again right after).
    pub preemptions: f64,
}

crate::stream::generation_methods!(
    NativeModel,
    Either<String, Vec<i32>>,
    "string | Array<number>",
    |m, p, o| m.generate_stream(chat::prompt(p), o),
    |m, p, o| m.generate(chat::prompt(p), o)
);

/// A loaded model (wrapped by `Model` in the TS layer). Dropping it (garbage collection)
/// frees the model once no session or stream uses it.
#[napi]
pub struct NativeModel {
    pub(crate) inner: corral::Model,
}

#[napi]
impl NativeModel {
    /// Loads a GGUF model on a blocking-pool thread. `onProgress` receives load progress in
    /// [0, 1] (from the loading thread, through a threadsafe function); `cancel` stops loading.
    #[napi(catch_unwind)]
    pub async fn load(
        path: String,
        options: Option<LoadOptions>,
        // Callable from the loading thread; weak: it never keeps Node alive by itself.
        #[napi(ts_arg_type = "((progress: number) => void) | undefined | null")] on_progress: Option<
            ThreadsafeFunction<f64, (), f64, Status, false, true>,
        >,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<NativeModel> {
        let mut core_options = options.unwrap_or_default().to_core()?;
        let cancel = cancel.cloned().unwrap_or_default();
        let token = cancel.clone();
        // llama.cpp polls this callback while it reads tensors: returning false aborts loading.
        core_options.on_progress = Some(Arc::new(move |p: f32| {
            if let Some(progress) = &on_progress {
                progress.call(f64::from(p), ThreadsafeFunctionCallMode::NonBlocking);
            }
            !token.cancelled()
        }));
        blocking(move || {
            let cancelled = || corral::Error::new(corral::ErrorKind::Cancelled, "model loading was cancelled");
            if cancel.cancelled() {
                return Err(cancelled());
            }
            let model = corral::Model::load(&path, core_options).map_err(|e| if cancel.cancelled() { cancelled() } else { e })?;
            if cancel.cancelled() {
                model.close();
                return Err(cancelled());
            }
            Ok(NativeModel { inner: model })
        })
        .await
    }

    #[napi(catch_unwind)]
    pub fn info(&self) -> ModelInfo {
        let i = self.inner.info();
        ModelInfo {
            architecture: i.architecture.clone(),
            name: i.name.clone(),
            parameters: i.parameters as f64,
            size_bytes: i.size_bytes as f64,
            quantization: i.quantization.clone(),
            context_length_trained: i.context_length_trained,
            context_length: i.context_length,
            embedding_length: i.embedding_length,
            layers: i.layers,
            vocab_size: i.vocab_size,
            bos_token: special(&i.bos_token),
            eos_token: special(&i.eos_token),
            eot_token: special(&i.eot_token),
            add_bos_token: i.add_bos_token,
            chat_template: i.chat_template.clone(),
            metadata: i.metadata.clone(),
        }
    }

    #[napi(getter, catch_unwind)]
    pub fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Tokenizes text (cheap: runs on the calling thread).
    #[napi(catch_unwind)]
    pub fn tokenize(&self, text: String, add_special: Option<bool>, parse_special: Option<bool>) -> napi::Result<Vec<i32>> {
        self.inner.tokenize(&text, add_special.unwrap_or(true), parse_special.unwrap_or(false)).or_throw()
    }

    #[napi(catch_unwind)]
    pub fn detokenize(&self, tokens: Vec<i32>, render_special: Option<bool>) -> napi::Result<String> {
        self.inner.detokenize(&tokens, render_special.unwrap_or(false)).or_throw()
    }

    #[napi(catch_unwind)]
    pub fn apply_chat_template(
        &self,
        #[napi(ts_arg_type = "Array<object>")] messages: serde_json::Value,
        add_generation_prompt: Option<bool>,
        #[napi(ts_arg_type = "Array<object> | undefined | null")] tools: Option<serde_json::Value>,
        template: Option<String>,
    ) -> napi::Result<String> {
        self.inner
            .apply_chat_template(
                &chat::messages(&messages)?,
                add_generation_prompt.unwrap_or(true),
                &chat::tools(tools.as_ref())?,
                template.as_deref(),
            )
            .or_throw()
    }

    /// A conversation that keeps its KV cache between calls.
    #[napi(catch_unwind)]
    pub fn session(&self) -> napi::Result<NativeSession> {
        self.inner.session().or_throw().map(NativeSession::new)
    }

    /// A session continuing a saved one (`NativeSession.state`).
    #[napi(catch_unwind)]
    pub async fn session_from_state(&self, state: napi::bindgen_prelude::Buffer) -> napi::Result<NativeSession> {
        let model = self.inner.clone();
        let state = state.to_vec();
        blocking(move || model.session_from_state(&state)).await.map(NativeSession::new)
    }

    /// `sessionFromState` with the state read from a file (`NativeSession.save`).
    #[napi(catch_unwind)]
    pub async fn load_session(&self, path: String) -> napi::Result<NativeSession> {
        let model = self.inner.clone();
        blocking(move || model.load_session(&path)).await.map(NativeSession::new)
    }

    /// Log-probability of each token given those before it.
    #[napi(catch_unwind)]
    pub async fn score(&self, tokens: Vec<i32>) -> napi::Result<Vec<f64>> {
        let model = self.inner.clone();
        blocking(move || model.score(&tokens)).await.map(|v| v.into_iter().map(f64::from).collect())
    }

    #[napi(catch_unwind)]
    pub fn stats(&self) -> EngineStats {
        let s = self.inner.stats();
        EngineStats {
            requests: s.requests as f64,
            prompt_tokens: s.prompt_tokens as f64,
            cached_tokens: s.cached_tokens as f64,
            generated_tokens: s.generated_tokens as f64,
            preemptions: s.preemptions as f64,
        }
    }

    /// Loads a LoRA adapter of this model under `name` (on a blocking-pool thread): requests
    /// choose it with the `adapters` generation option from then on.
    #[napi(catch_unwind)]
    pub async fn load_adapter(&self, name: String, path: String) -> napi::Result<()> {
        let model = self.inner.clone();
        blocking(move || model.load_adapter(&name, &path)).await
    }

    /// Unloads an adapter: new requests can no longer choose it (running ones finish with it).
    #[napi(catch_unwind)]
    pub fn remove_adapter(&self, name: String) -> napi::Result<()> {
        self.inner.remove_adapter(&name).or_throw()
    }

    /// The names of the loaded adapters, sorted.
    #[napi(catch_unwind)]
    pub fn adapters(&self) -> Vec<String> {
        self.inner.adapters()
    }

    /// Drops every cached prefix not in use.
    #[napi(catch_unwind)]
    pub fn clear_cache(&self) -> napi::Result<()> {
        self.inner.clear_cache().or_throw()
    }

    /// Stops the engine (running requests fail with `closed`) and frees the model once no
    /// session or stream holds it. Joins the engine thread, so it runs off the event loop.
    #[napi(catch_unwind)]
    pub async fn close(&self) -> napi::Result<()> {
        let model = self.inner.clone();
        blocking(move || {
            model.close();
            Ok(())
        })
        .await
    }
}
