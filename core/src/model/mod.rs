//! A loaded model: metadata, tokenizer, chat template, and the handle to its engine.

pub(crate) mod gguf;
pub(crate) mod hparams;
pub(crate) mod prompt;
pub(crate) mod session;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use serde_json::Value;

use crate::adapter::{Adapter, AdapterSet};
use crate::chat::tools::{ToolCallParser, ToolChoice, ToolFormat};
use crate::chat::{ChatTemplate, Message};
use crate::engine::embed::{EmbedConfig, EmbedRequest, Embedder};
use crate::engine::preempt::Preemption;
use crate::engine::{self, Command, EngineConfig, EngineStats, GenerateRequest, ScoreRequest, StatsCounters};
use crate::error::{Error, ErrorKind, Result};
use crate::llama::context::ContextSize;
pub use crate::model::prompt::Prompt;
use crate::model::session::Session;
use crate::options::{Constraint, GenerateOptions, ModelOptions};
use crate::stream::{CancelHandle, Completion, Stream};
use llama_cpp_2::sampling::LlamaSampler;

/// `complete`, `complete_stream`, `chat` and `chat_stream`: the shorthands for `generate` and
/// `generate_stream` with a text or a conversation, the same on `Model` and `Session` (each
/// has its own `generate*`).
macro_rules! generate_shorthands {
    () => {
        /// Streams a completion of a raw prompt: `generate_stream(Prompt::Text(prompt), ...)`.
        pub fn complete_stream(&self, prompt: &str, options: &GenerateOptions) -> Result<Stream> {
            self.generate_stream(prompt, options)
        }

        /// Completes a raw prompt: `generate(Prompt::Text(prompt), ...)`.
        pub fn complete(&self, prompt: &str, options: &GenerateOptions) -> Result<Completion> {
            self.generate(prompt, options)
        }

        /// Streams the assistant's reply to a conversation, using the model's chat template.
        pub fn chat_stream(&self, messages: &[Message], options: &GenerateOptions) -> Result<Stream> {
            self.generate_stream(messages, options)
        }

        /// The assistant's reply to a conversation, using the model's chat template.
        pub fn chat(&self, messages: &[Message], options: &GenerateOptions) -> Result<Completion> {
            self.generate(messages, options)
        }
    };
}
pub(crate) use generate_shorthands;

/// A special token: its id and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialToken {
    pub id: i32,
    pub text: String,
}

/// What a model is, from its GGUF metadata and llama.cpp.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// `general.architecture`, e.g. `llama`, `qwen2`, `gemma3`.
    pub architecture: String,
    /// `general.name`, or the file name.
    pub name: String,
    /// Number of parameters.
    pub parameters: u64,
    /// Size of the GGUF file in bytes.
    pub size_bytes: u64,
    /// Quantization (`general.file_type`), e.g. `Q4_1`, `Q4_K_M`, `F16`.
    pub quantization: String,
    /// The context length the model was trained with.
    pub context_length_trained: u32,
    /// The context length (KV cache size) this model was loaded with.
    pub context_length: u32,
    pub embedding_length: u32,
    pub layers: u32,
    pub vocab_size: u32,
    pub bos_token: Option<SpecialToken>,
    pub eos_token: Option<SpecialToken>,
    pub eot_token: Option<SpecialToken>,
    /// Whether prompts get a BOS token (from the tokenizer metadata).
    pub add_bos_token: bool,
    /// The chat template in use (the GGUF's or the one passed at load), if any.
    pub chat_template: Option<String>,
    /// Every GGUF metadata key with its typed value.
    pub metadata: BTreeMap<String, Value>,
}

pub(crate) struct ModelInner {
    llama: RwLock<Option<Arc<LlamaModel>>>,
    info: ModelInfo,
    template: Option<ChatTemplate>,
    commands: Mutex<Option<Sender<Command>>>,
    engine: Mutex<Option<std::thread::JoinHandle<()>>>,
    closed: AtomicBool,
    next_session: AtomicU64,
    stats: Arc<StatsCounters>,
    preemption: Arc<Preemption>,
    /// The embedding engine, started by the first `embed` or `rerank` (engine/embed.rs).
    embedder: Mutex<Option<Embedder>>,
    embed_config: EmbedConfig,
    /// False for encoder-only models (BERT and the like): they embed but cannot generate.
    generates: bool,
    /// The model file's identity in saved session states, computed on first use.
    identity: std::sync::OnceLock<u64>,
    /// LoRA adapters by name (crate::adapter).
    adapters: Mutex<BTreeMap<String, Arc<Adapter>>>,
    /// The RPC workers holding some of the layers (crate::backend::rpc).
    _rpc_workers: Option<crate::backend::rpc::Workers>,
}

/// A loaded model. Cheap to clone, `Send + Sync`: share it between threads; every clone
/// talks to the same engine, which batches their requests together.
#[derive(Clone)]
pub struct Model {
    pub(crate) inner: Arc<ModelInner>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("name", &self.inner.info.name).finish_non_exhaustive()
    }
}

/// Number of physical cores available to this process (threads beyond that only spin).
pub fn default_threads() -> u32 {
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut cores = std::collections::HashSet::new();
    if let Ok(entries) = std::fs::read_dir("/sys/devices/system/cpu") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with("cpu") || !name[3..].chars().all(|c| c.is_ascii_digit()) || name.len() == 3 {
                continue;
            }
            let topo = entry.path().join("topology");
            let read = |f: &str| std::fs::read_to_string(topo.join(f)).ok().map(|s| s.trim().to_string());
            if let (Some(pkg), Some(core)) = (read("physical_package_id"), read("core_id")) {
                cores.insert((pkg, core));
            }
        }
    }
    let physical = if cores.is_empty() { logical } else { cores.len() };
    physical.min(logical).max(1) as u32
}

/// The longest prompt a template may render for a context of `context_length` tokens: no
/// tokenizer has tokens of more than a few dozen bytes, so anything longer cannot fit.
fn max_prompt_bytes(context_length: u32) -> usize {
    const MAX_BYTES_PER_TOKEN: usize = 256;
    (context_length as usize).saturating_mul(MAX_BYTES_PER_TOKEN).max(1 << 20)
}

fn special_token(model: &LlamaModel, token: LlamaToken) -> Option<SpecialToken> {
    let vocab = model.vocab();
    if token.0 < 0 || token.0 >= vocab.n_tokens() {
        return None;
    }
    let text = vocab.text(token).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
    Some(SpecialToken { id: token.0, text })
}

/// llama.cpp's reason for refusing to load `path`, as corral's error.
pub(crate) fn load_error(path: &Path, detail: &str) -> Error {
    let kind = if detail.contains("unknown model architecture") || detail.contains("unsupported model architecture") {
        ErrorKind::UnsupportedArchitecture
    } else {
        ErrorKind::InvalidModel
    };
    Error::new(kind, format!("llama.cpp cannot load {}: {detail}", path.display()))
}

/// The layers placed on RPC workers and each worker device's share of them, from the weights
/// of `rpc_split` (one per worker, then this process's; empty: equal shares). llama.cpp keeps
/// the first layers here and offloads the rest.
fn rpc_layer_split(header: &crate::model::gguf::GgufHeader, workers: &crate::backend::rpc::Workers, weights: &[f32]) -> (u32, Vec<f32>) {
    let layers = header
        .get_str("general.architecture")
        .and_then(|arch| header.get_u64(&format!("{arch}.block_count")))
        .unwrap_or(0)
        .min(u64::from(u32::MAX - 1)) as u32;
    let equal = vec![1.0; workers.per_worker.len() + 1];
    let weights = if weights.is_empty() { &equal[..] } else { weights };
    let (remote, local) = weights.split_at(weights.len() - 1);
    let total: f32 = weights.iter().sum();
    let local_layers = ((layers as f32) * local[0] / total).round() as u32;
    // With no layer here, the output layer goes to the last worker too (llama.cpp offloads it
    // when asked for one layer more than the model has).
    let offloaded = if local_layers == 0 { layers + 1 } else { layers - local_layers.min(layers) };
    let split = remote.iter().zip(&workers.per_worker).flat_map(|(&w, &n)| std::iter::repeat_n(w / n.max(1) as f32, n)).collect();
    (offloaded, split)
}

/// Reads and checks a model file's header and hyperparameters before llama.cpp sees it.
pub(crate) fn check_file(path: &Path) -> Result<crate::model::gguf::GgufHeader> {
    let header = crate::model::gguf::read_header(path)?;
    crate::model::hparams::check(&header)
        .map_err(|problem| Error::new(ErrorKind::InvalidModel, format!("{}: not a usable model: {problem}", path.display())))?;
    Ok(header)
}

impl Model {
    /// Loads a GGUF model and starts its engine. Options that cannot fit in the memory left to
    /// the process fail with `insufficient_memory` before anything is allocated
    /// ([`crate::estimate_memory`] says what they take).
    pub fn load(path: impl AsRef<Path>, options: ModelOptions) -> Result<Model> {
        let path = path.as_ref();
        options.validate()?;
        let header = check_file(path)?;
        crate::backend::backend()?;
        let context_length = crate::fit::plan_load(path, &header, &options)?;

        let workers = match options.rpc_servers.is_empty() {
            true => None,
            false => Some(crate::backend::rpc::connect(&options.rpc_servers)?),
        };
        let (gpu_layers, tensor_split) = match &workers {
            Some(workers) => rpc_layer_split(&header, workers, &options.rpc_split),
            None => (options.gpu_layers, Vec::new()),
        };
        let cancelled = std::cell::Cell::new(false);
        let mut progress = options.on_progress.clone().map(|progress| {
            let cancelled = &cancelled;
            move |p: f32| {
                // A panicking callback counts as a cancellation; it must not unwind into C++.
                let keep_going = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| progress(p))).unwrap_or(false);
                cancelled.set(cancelled.get() || !keep_going);
                keep_going
            }
        });
        let params = crate::llama::model::LoadParams {
            gpu_layers,
            use_mmap: options.use_mmap,
            use_mlock: options.use_mlock,
            devices: workers.as_ref().map_or(&[], |w| &w.devices),
            tensor_split: &tensor_split,
            progress: progress.as_mut().map(|p| p as &mut dyn FnMut(f32) -> bool),
        };
        crate::log::clear_last_llama_error();
        let loaded = crate::llama::model::load(path, params);
        drop(progress);
        let llama = loaded.map_err(|()| {
            if cancelled.get() {
                return Error::new(ErrorKind::Cancelled, "model loading was cancelled by the progress callback");
            }
            let detail = crate::llama::guard::take_assert_message().or_else(crate::log::take_last_llama_error);
            match detail.as_deref().and_then(crate::backend::rpc::lost_worker) {
                Some(endpoint) => crate::backend::rpc::lost_error(endpoint),
                None => load_error(path, &detail.unwrap_or_else(|| "llama_model_load_from_file failed".into())),
            }
        })?;
        let llama = Arc::new(llama);

        let trained = llama.n_ctx_train();
        let vocab = llama.vocab();
        let chat_template = options.chat_template.clone().or_else(|| header.get_str("tokenizer.chat_template").map(str::to_string));
        let bos_token = special_token(&llama, vocab.bos());
        let eos_token = special_token(&llama, vocab.eos());
        let eot_token = special_token(&llama, vocab.eot());
        let template = match &chat_template {
            Some(source) => Some(
                ChatTemplate::new(
                    source,
                    bos_token.as_ref().map(|t| t.text.clone()).unwrap_or_default(),
                    eos_token.as_ref().map(|t| t.text.clone()).unwrap_or_default(),
                )?
                .with_max_prompt_bytes(max_prompt_bytes(context_length)),
            ),
            None => None,
        };
        let info = ModelInfo {
            architecture: header.get_str("general.architecture").unwrap_or("unknown").to_string(),
            name: header
                .get_str("general.name")
                .map(str::to_string)
                .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()),
            parameters: llama.n_params(),
            size_bytes: header.file_size,
            quantization: crate::quantize::file_type_name(header.get_u64("general.file_type")),
            context_length_trained: trained,
            context_length,
            embedding_length: llama.n_embd().max(0) as u32,
            layers: llama.n_layer(),
            vocab_size: vocab.n_tokens().max(0) as u32,
            bos_token,
            eos_token,
            eot_token,
            add_bos_token: vocab.should_add_bos(),
            chat_template,
            metadata: header.metadata,
        };

        let (tx, rx) = std::sync::mpsc::channel();
        let stats = Arc::new(StatsCounters::default());
        let preemption = Arc::new(Preemption::default());
        let threads = options.threads.unwrap_or_else(default_threads);
        let generates = crate::embed::is_causal(&info);
        let max_tokens = crate::embed::max_tokens(&info);
        // Causal models keep logits for every token a decode packs: pack fewer.
        let tokens_per_decode = if generates { crate::embed::CAUSAL_TOKENS_PER_DECODE } else { max_tokens };
        let remote = workers.is_some();
        let embed_config = EmbedConfig { max_tokens, tokens_per_decode, threads, flash_attention: options.flash_attention, remote };
        let config = EngineConfig {
            max_queued: options.max_queued,
            on_kv_full: options.on_kv_full,
            stats: stats.clone(),
            size: ContextSize {
                n_ctx: context_length,
                batch_size: options.batch_size,
                max_sequences: options.max_sequences,
                threads,
                flash_attention: options.flash_attention,
            },
            preemption: preemption.clone(),
            remote,
        };
        let mut adapters = BTreeMap::new();
        for file in &options.adapters {
            if adapters.contains_key(&file.name) {
                return Err(Error::invalid_argument(format!("adapter name {:?} is given twice", file.name)));
            }
            let adapter = crate::adapter::load(&llama, &info.architecture, &file.name, &file.path)?;
            adapters.insert(file.name.clone(), Arc::new(adapter));
        }
        let handle = engine::spawn(llama.clone(), config, rx)?;
        Ok(Model {
            inner: Arc::new(ModelInner {
                llama: RwLock::new(Some(llama)),
                info,
                template,
                commands: Mutex::new(Some(tx)),
                engine: Mutex::new(Some(handle)),
                closed: AtomicBool::new(false),
                next_session: AtomicU64::new(1),
                stats,
                preemption,
                embedder: Mutex::new(None),
                embed_config,
                generates,
                identity: std::sync::OnceLock::new(),
                adapters: Mutex::new(adapters),
                _rpc_workers: workers,
            }),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    pub(crate) fn llama(&self) -> Result<Arc<LlamaModel>> {
        self.inner.llama.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or_else(Error::closed)
    }

    /// Tokenizes text. `add_special` adds BOS/EOS as the model's metadata asks; `parse_special`
    /// turns special-token text (e.g. `<|im_start|>`) into control tokens instead of plain text.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<i32>> {
        let llama = self.llama()?;
        Ok(crate::llama::vocab::tokenize(&llama, text, add_special, parse_special)?.into_iter().map(|t| t.0).collect())
    }

    /// Turns tokens back into text. Control tokens (BOS, EOS, ...) render as nothing unless
    /// `render_special` is set.
    pub fn detokenize(&self, tokens: &[i32], render_special: bool) -> Result<String> {
        let llama = self.llama()?;
        let n_vocab = llama.vocab().n_tokens();
        if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t >= n_vocab) {
            return Err(Error::invalid_argument(format!("token id {bad} is out of range (vocabulary of {n_vocab})")));
        }
        if tokens.is_empty() {
            return Ok(String::new());
        }
        let tokens: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t)).collect();
        let bytes = crate::llama::vocab::detokenize(&llama, &tokens, false, render_special)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Renders messages with the chat template into a prompt string. `tools` (OpenAI function
    /// definitions) are given to the template; `template` picks one of the model's named
    /// templates (`tokenizer.chat_template.<name>`) or is Jinja source for this call.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        tools: &[Value],
        template: Option<&str>,
    ) -> Result<String> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        check_messages(messages)?;
        crate::chat::tools::tool_specs(tools)?;
        let template = self.chat_template_for(template, !tools.is_empty())?;
        template.render(&messages_for(&template, messages), add_generation_prompt, tools)
    }

    /// The template a chat call uses: the one asked for, else the model's `tool_use` template
    /// when tools are given and it has one (as Hugging Face does), else its default.
    fn chat_template_for(&self, template: Option<&str>, with_tools: bool) -> Result<Cow<'_, ChatTemplate>> {
        let named = |name: &str| self.inner.info.metadata.get(&format!("tokenizer.chat_template.{name}")).and_then(Value::as_str);
        let source = match template {
            Some(t) if t.trim().is_empty() => return Err(Error::invalid_argument("template is empty")),
            Some(t) => Some(named(t).unwrap_or(t)),
            None if with_tools => named("tool_use"),
            None => None,
        };
        if let Some(source) = source {
            let (bos, eos) = self.special_token_texts();
            let template = ChatTemplate::new(source, bos, eos)?.with_max_prompt_bytes(max_prompt_bytes(self.inner.info.context_length));
            return Ok(Cow::Owned(template));
        }
        self.inner.template.as_ref().map(Cow::Borrowed).ok_or_else(|| {
            Error::new(
                ErrorKind::NoChatTemplate,
                format!(
                    "model {:?} has no chat template (tokenizer.chat_template); pass one with the chat_template option or use complete()",
                    self.inner.info.name
                ),
            )
        })
    }

    fn special_token_texts(&self) -> (String, String) {
        let text = |t: &Option<SpecialToken>| t.as_ref().map(|t| t.text.clone()).unwrap_or_default();
        (text(&self.inner.info.bos_token), text(&self.inner.info.eos_token))
    }

    /// Tokenizes a completion prompt the way llama.cpp does by default.
    pub(crate) fn prompt_tokens(&self, prompt: &str, parse_special: bool) -> Result<Vec<LlamaToken>> {
        Ok(self.tokenize(prompt, true, parse_special)?.into_iter().map(LlamaToken).collect())
    }

    /// Renders and tokenizes a chat request. With tools it also picks the model's tool-call
    /// format, the grammar that enforces `tool_choice`, and the parser for the reply.
    pub(crate) fn prepare_chat(&self, messages: &[Message], options: &GenerateOptions) -> Result<PreparedChat> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        check_messages(messages)?;
        // The rest of the options are checked by `submit`.
        let specs = crate::chat::tools::tool_specs(&options.tools)?;
        let template = self.chat_template_for(options.template.as_deref(), !specs.is_empty())?;
        let mut options = options.clone();
        let messages = messages_for(&template, messages);
        let messages = messages.as_ref();
        // A budget of 0 turns thinking off in templates that can (Qwen3's `enable_thinking`).
        let thinking = (options.reasoning_budget == Some(0)).then_some(false);
        let (rendered, parser) = if specs.is_empty() || options.tool_choice == ToolChoice::None {
            (template.render_with_thinking(messages, true, &options.tools, thinking)?, None)
        } else {
            let mut format = ToolFormat::detect(template.source());
            // A template that never looks at `tools` cannot show them to the model.
            if !template.source().contains("tools") {
                format = ToolFormat::Generic;
            }
            let rendered = if format == ToolFormat::Generic {
                let prompt = crate::chat::tools::generic_tool_prompt(&options.tools, &options.tool_choice);
                template.render_with_thinking(&crate::chat::tools::with_generic_tool_prompt(messages, &prompt), true, &[], thinking)?
            } else {
                template.render_with_thinking(messages, true, &options.tools, thinking)?
            };
            if let Some(grammar) = crate::chat::tools::tool_grammar(format, &specs, &options.tool_choice)? {
                if options.constraint.is_some() {
                    return Err(Error::invalid_argument(
                        "tool_choice forces a tool call, which cannot be combined with a grammar or response format",
                    ));
                }
                options.constraint = Some(Constraint::Grammar(grammar));
            }
            (rendered, Some(ToolCallParser::new(format)))
        };
        let bos_text = self.inner.info.bos_token.as_ref().map(|t| t.text.as_str()).unwrap_or("");
        let template_adds_bos = !bos_text.is_empty() && rendered.starts_with(bos_text);
        let add_bos = self.inner.info.add_bos_token && !template_adds_bos;
        let tokens = self.tokenize(&rendered, add_bos, true)?.into_iter().map(LlamaToken).collect();
        let reasoning_opened = crate::chat::reasoning::ReasoningSplitter::prompt_opens_reasoning(&rendered);
        Ok(PreparedChat { tokens, options, parser, reasoning_opened })
    }

    pub(crate) fn submit(&self, prompt: Vec<LlamaToken>, options: &GenerateOptions, session: Option<u64>, stream: bool) -> Result<Stream> {
        self.submit_with(prompt, options, session, stream, None)
    }

    fn submit_with(
        &self,
        prompt: Vec<LlamaToken>,
        options: &GenerateOptions,
        session: Option<u64>,
        stream: bool,
        reasoning_limit: Option<engine::ReasoningLimit>,
    ) -> Result<Stream> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        self.check_generates()?;
        options.validate()?;
        if prompt.is_empty() {
            return Err(Error::invalid_argument("the prompt is empty"));
        }
        let n_ctx = self.inner.info.context_length as usize;
        if prompt.len() >= n_ctx {
            return Err(Error::new(
                ErrorKind::ContextOverflow,
                format!("the prompt has {} tokens but the context holds {n_ctx} (prompt and output together)", prompt.len()),
            ));
        }
        let adapters = Arc::new(self.adapter_set(&options.adapters)?);
        let grammar = self.compile_constraint(options)?;
        let (tx, rx) = sync_channel(engine::STREAM_BUFFER);
        let cancel = CancelHandle::default();
        let request = GenerateRequest {
            prompt,
            options: options.clone(),
            session,
            events: tx,
            cancel: cancel.clone(),
            submitted: Instant::now(),
            stream,
            grammar,
            reasoning_limit,
            adapters,
        };
        self.send(Command::Generate(request))?;
        // Counted after the send: the engine, stopped for it, finds it in its channel.
        self.inner.preemption.submitted();
        Ok(Stream::new(rx, cancel, self.inner.clone()))
    }

    /// Turns the request's constraint into GBNF and builds llama.cpp's grammar sampler for it,
    /// once: a bad grammar or schema fails here, before generation starts, and the engine
    /// uses the sampler as built.
    pub(crate) fn compile_constraint(&self, options: &GenerateOptions) -> Result<Option<LlamaSampler>> {
        let grammar = match &options.constraint {
            None => return Ok(None),
            Some(Constraint::Grammar(g)) => g.clone(),
            Some(Constraint::JsonSchema(schema)) => crate::chat::schema::json_schema_grammar(schema)?,
            Some(Constraint::JsonObject) => crate::chat::schema::json_schema_grammar(r#"{"type": "object"}"#)?,
        };
        let llama = self.llama()?;
        crate::log::clear_last_llama_error();
        let sampler = LlamaSampler::grammar(&llama, &grammar, "root").map_err(|e| {
            let detail = crate::log::take_last_llama_error().unwrap_or_else(|| e.to_string());
            Error::new(ErrorKind::InvalidGrammar, format!("invalid grammar: {detail}"))
        })?;
        Ok(Some(sampler))
    }

    fn check_generates(&self) -> Result<()> {
        if self.inner.generates {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Unsupported,
                format!("{} is an encoder-only model: it embeds but cannot generate", self.inner.info.name),
            ))
        }
    }

    /// Hands a request to the embedding engine, starting it on first use.
    pub(crate) fn send_embed(&self, request: EmbedRequest) -> Result<()> {
        let mut embedder = self.inner.embedder.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_closed() {
            return Err(Error::closed());
        }
        if embedder.is_none() {
            *embedder = Some(engine::embed::spawn(self.llama()?, self.inner.embed_config)?);
        }
        let sender = &embedder.as_ref().expect("started above").requests;
        sender.send(request).map_err(|_| Error::internal("the embedding engine stopped"))
    }

    /// Identifies the model file in saved session states: its size, parameter count and every
    /// metadata key and value (vocabulary included), hashed.
    pub(crate) fn identity(&self) -> u64 {
        *self.inner.identity.get_or_init(|| {
            let info = &self.inner.info;
            let metadata = serde_json::to_vec(&info.metadata).unwrap_or_default();
            let seed = crate::state::fnv1a(&info.size_bytes.to_le_bytes(), crate::state::FNV_OFFSET);
            crate::state::fnv1a(&metadata, crate::state::fnv1a(&info.parameters.to_le_bytes(), seed))
        })
    }

    pub(crate) fn send(&self, command: Command) -> Result<()> {
        let commands = self.inner.commands.lock().unwrap_or_else(|e| e.into_inner());
        commands.as_ref().ok_or_else(Error::closed)?.send(command).map_err(|_| Error::closed())
    }

    /// Streams what the model generates from `prompt`: the one generation path, which
    /// `complete*`, `chat*` and sessions all take. `session` keeps the KV cache of that
    /// session's earlier calls; `stream` asks the engine for each token as it comes.
    pub(crate) fn submit_prompt(
        &self,
        prompt: Prompt<'_>,
        options: &GenerateOptions,
        session: Option<u64>,
        stream: bool,
    ) -> Result<Stream> {
        self.check_generates()?;
        match prompt {
            Prompt::Text(text) => {
                options.check_for_completion()?;
                let tokens = self.prompt_tokens(text, options.parse_special)?;
                self.submit(tokens, options, session, stream)
            }
            Prompt::Tokens(tokens) => {
                options.check_for_completion()?;
                self.submit(self.checked_tokens(tokens)?, options, session, stream)
            }
            Prompt::Messages(messages) => {
                let chat = self.prepare_chat(messages, options)?;
                let reasoning = crate::chat::reasoning::ReasoningSplitter::new(chat.reasoning_opened);
                // A grammar decides every token itself: a budget cannot close the block then.
                let limit = match chat.options.reasoning_budget {
                    Some(budget) if budget > 0 && chat.options.constraint.is_none() => Some(engine::ReasoningLimit {
                        budget,
                        opened: chat.reasoning_opened,
                        close: self
                            .tokenize(&format!("{}\n\n", crate::chat::reasoning::CLOSE), false, true)?
                            .into_iter()
                            .map(LlamaToken)
                            .collect(),
                    }),
                    _ => None,
                };
                let stream = self.submit_with(chat.tokens, &chat.options, session, stream, limit)?;
                Ok(stream.with_tool_parser(chat.parser).with_reasoning(Some(reasoning)))
            }
        }
    }

    /// Streams the model's output for a prompt: text, token ids or a conversation.
    pub fn generate_stream<'a>(&self, prompt: impl Into<Prompt<'a>>, options: &GenerateOptions) -> Result<Stream> {
        self.submit_prompt(prompt.into(), options, None, true)
    }

    /// The model's whole output for a prompt: text, token ids or a conversation.
    pub fn generate<'a>(&self, prompt: impl Into<Prompt<'a>>, options: &GenerateOptions) -> Result<Completion> {
        self.submit_prompt(prompt.into(), options, None, false)?.collect_completion()
    }

    fn checked_tokens(&self, tokens: &[i32]) -> Result<Vec<LlamaToken>> {
        let n_vocab = self.llama()?.vocab().n_tokens();
        if let Some(bad) = tokens.iter().find(|&&t| t < 0 || t >= n_vocab) {
            return Err(Error::invalid_argument(format!("token id {bad} is out of range (vocabulary of {n_vocab})")));
        }
        Ok(tokens.iter().map(|&t| LlamaToken(t)).collect())
    }

    generate_shorthands!();

    /// A session: a conversation whose KV cache is kept between calls, so each call only
    /// evaluates what is new since the previous one.
    pub fn session(&self) -> Result<Session> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        Ok(Session::new(self.clone(), self.inner.next_session.fetch_add(1, Ordering::Relaxed)))
    }

    pub(crate) fn release_session(&self, id: u64) {
        let _ = self.send(Command::ReleaseSession(id));
    }

    /// Loads a LoRA adapter for this model under `name`, for requests to choose
    /// (`GenerateOptions::adapters`) from now on. A file that is not a LoRA adapter of this
    /// model is `invalid_model`; the model keeps serving either way.
    pub fn load_adapter(&self, name: &str, path: impl AsRef<Path>) -> Result<()> {
        crate::adapter::check_name(name)?;
        if self.inner.adapters.lock().unwrap_or_else(|e| e.into_inner()).contains_key(name) {
            return Err(Error::invalid_argument(format!("an adapter named {name:?} is already loaded: remove it first")));
        }
        let adapter = Arc::new(crate::adapter::load(&self.llama()?, &self.inner.info.architecture, name, path.as_ref())?);
        let mut adapters = self.inner.adapters.lock().unwrap_or_else(|e| e.into_inner());
        if adapters.contains_key(name) {
            return Err(Error::invalid_argument(format!("an adapter named {name:?} is already loaded: remove it first")));
        }
        adapters.insert(name.to_string(), adapter);
        Ok(())
    }

    /// Unloads an adapter: new requests can no longer choose it; requests already running with
    /// it finish with it (its memory is freed after them).
    pub fn remove_adapter(&self, name: &str) -> Result<()> {
        let removed = self.inner.adapters.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        removed.map(drop).ok_or_else(|| Error::invalid_argument(format!("no adapter named {name:?} is loaded")))
    }

    /// The names of the loaded adapters, sorted.
    pub fn adapters(&self) -> Vec<String> {
        self.inner.adapters.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    fn adapter_set(&self, choices: &[crate::adapter::AdapterChoice]) -> Result<AdapterSet> {
        if choices.is_empty() {
            return Ok(AdapterSet::default());
        }
        let adapters = self.inner.adapters.lock().unwrap_or_else(|e| e.into_inner());
        AdapterSet::resolve(choices, |name| adapters.get(name).cloned())
    }

    /// Request, token and prefix-cache totals since the model was loaded.
    pub fn stats(&self) -> EngineStats {
        self.inner.stats.snapshot()
    }

    /// Drops the KV of every idle sequence (cached prefixes and idle sessions' history).
    pub fn clear_cache(&self) -> Result<()> {
        self.send(Command::ClearCache)
    }

    /// Log-probability of each token given all before it (`tokens.len() - 1` values).
    pub fn score(&self, tokens: &[i32]) -> Result<Vec<f32>> {
        self.check_generates()?;
        let tokens = self.checked_tokens(tokens)?;
        if tokens.len() < 2 {
            return Err(Error::invalid_argument("scoring needs at least two tokens"));
        }
        let (tx, rx) = sync_channel(1);
        self.send(Command::Score(ScoreRequest { tokens, reply: tx, cancel: CancelHandle::default() }))?;
        rx.recv().map_err(|_| Error::closed())?
    }

    /// Stops the engine and frees the model's memory once nothing else uses it. Running and
    /// queued requests end with a `closed` error. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }
}

/// The messages as `template` can render them: tool calls spelled out as text when the
/// template has no notion of them.
fn messages_for<'a>(template: &ChatTemplate, messages: &'a [Message]) -> Cow<'a, [Message]> {
    let uses_tools = messages.iter().any(|m| !m.tool_calls.is_empty() || m.content.is_none());
    if uses_tools && !template.source().contains("tool_calls") {
        Cow::Owned(crate::chat::tools::without_tool_calls(messages))
    } else {
        Cow::Borrowed(messages)
    }
}

/// A chat request ready for the engine.
pub(crate) struct PreparedChat {
    tokens: Vec<LlamaToken>,
    options: GenerateOptions,
    parser: Option<ToolCallParser>,
    /// The rendered prompt leaves a `<think>` block open: the reply starts as reasoning.
    reasoning_opened: bool,
}

fn check_messages(messages: &[Message]) -> Result<()> {
    for (i, m) in messages.iter().enumerate() {
        if m.role.is_empty() {
            return Err(Error::invalid_argument(format!("messages[{i}].role is empty")));
        }
    }
    Ok(())
}

impl ModelInner {
    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(commands) = self.commands.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = commands.send(Command::Shutdown);
        }
        if let Some(handle) = self.engine.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        // The embedding engine ends after its current decode; queued calls fail with `closed`.
        if let Some(Embedder { requests, thread, closing }) = self.embedder.lock().unwrap_or_else(|e| e.into_inner()).take() {
            closing.store(true, Ordering::Release);
            drop(requests);
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
        // Adapters keep the llama model alive (llama.cpp frees them through it).
        self.adapters.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.llama.write().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Drop for ModelInner {
    fn drop(&mut self) {
        self.close();
    }
}
