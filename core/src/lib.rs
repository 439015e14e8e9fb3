//! corral: run GGUF language models in-process.
//!
//! ```no_run
//! use corral::{Model, ModelOptions, GenerateOptions, Message};
//! let model = Model::load("model.gguf", ModelOptions::default())?;
//! let options = GenerateOptions { max_tokens: Some(64), temperature: 0.0, ..Default::default() };
//! for chunk in model.chat_stream(&[Message::new("user", "Hi!")], &options)? {
//!     print!("{}", chunk?.text);
//! }
//! # Ok::<(), corral::Error>(())
//! ```

mod adapter;
mod backend;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench;
mod chat;
mod embed;
mod engine;
mod error;
mod fit;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod llama;
pub mod log;
mod model;
pub mod openai;
mod options;
mod quantize;
mod state;
mod stream;

pub use adapter::{AdapterChoice, AdapterFile};
pub use backend::rpc::{serve_rpc, RPC_DEFAULT_PORT};
pub use backend::{cpu_variant, supports_gpu_offload, CpuVariant};
pub use chat::tools::{ToolCallDelta, ToolChoice, ToolFormat};
pub use chat::{ChatTemplate, Message, ToolCall};
pub use embed::{EmbedOptions, Embeddings, Pooling, RerankOptions, RerankResult};
pub use engine::EngineStats;
pub use error::{Error, ErrorKind, Result};
pub use fit::{estimate_memory, MemoryEstimate};
pub use model::session::Session;
pub use model::{default_threads, Model, ModelInfo, Prompt, SpecialToken};
pub use options::{checked_u32, Constraint, GenerateOptions, KvFullPolicy, ModelOptions, ProgressCallback, MAX_TOP_LOGPROBS};
pub use quantize::quantize;
pub use stream::{CancelHandle, Chunk, Completion, FinishReason, Logprob, Poll, Stream, TokenLogprob, Usage};

/// corral's version (from Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
