//! The embedding engine: pooled vectors and rerank scores (`Model::embed`, `Model::rerank`).
//!
//! Pooled output needs a context created for it (llama.cpp fixes the pooling type at creation),
//! so embeddings run on a second context over the same weights, on a thread of their own that
//! starts with the first call. Each decode packs many texts, one sequence each, taking a text
//! from every waiting call in turn, so a small call is not stuck behind a large one. Every text
//! sits whole in one micro-batch (non-causal models need it, and a pooled sequence split
//! across micro-batches would pool only its last part). Decodes take the cores like the
//! generation engine's (engine/cores.rs), so embedding and generation on one model alternate
//! decode by decode instead of spinning against each other.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_sys_2 as sys;

use crate::embed::Pooling;
use crate::error::{Error, ErrorKind, Result};
use crate::llama::context::{raw_model, Batch, Context, ContextConfig, ContextSize};
use crate::stream::CancelHandle;

/// Most texts one decode carries (llama.cpp allows 256 sequences per context).
const MAX_SEQUENCES: u32 = 64;

pub(crate) struct EmbedRequest {
    pub texts: Vec<Vec<LlamaToken>>,
    pub pooling: Pooling,
    pub reply: SyncSender<Result<Vec<Vec<f32>>>>,
    pub cancel: CancelHandle,
    pub deadline: Option<Instant>,
}

/// How the embedding contexts are sized.
#[derive(Clone, Copy)]
pub(crate) struct EmbedConfig {
    /// Most tokens of one text; also the size of the one micro-batch a decode is.
    pub max_tokens: u32,
    /// Tokens a decode packs texts up to (a single longer text still goes alone).
    pub tokens_per_decode: u32,
    pub threads: u32,
    pub flash_attention: Option<bool>,
    /// Layers on RPC workers: decodes run guarded (a lost worker fails them).
    pub remote: bool,
}

/// The running embedding engine of a model.
pub(crate) struct Embedder {
    pub requests: Sender<EmbedRequest>,
    pub thread: std::thread::JoinHandle<()>,
    /// Set by `Model::close`: the engine fails what is queued with `closed` and stops.
    pub closing: Arc<AtomicBool>,
}

pub(crate) fn spawn(model: Arc<LlamaModel>, config: EmbedConfig) -> Result<Embedder> {
    let (tx, rx) = std::sync::mpsc::channel::<EmbedRequest>();
    let closing = Arc::new(AtomicBool::new(false));
    let closing_seen = closing.clone();
    let thread = std::thread::Builder::new()
        .name("corral-embed".into())
        .spawn(move || {
            let serving = || serve(&model, config, &rx, &closing_seen);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(serving));
            if result.is_err() {
                crate::log::emit(crate::log::LogLevel::Error, "corral", "embedding thread panicked");
                for req in rx.try_iter() {
                    let _ = req.reply.try_send(Err(Error::internal("the embedding thread panicked")));
                }
            }
        })
        .map_err(|e| Error::with_source(ErrorKind::Internal, "cannot start the embedding thread", e))?;
    Ok(Embedder { requests: tx, thread, closing })
}

/// A call in progress: its texts handed out so far and the vectors back so far.
struct Pending {
    request: EmbedRequest,
    next_text: usize,
    vectors: Vec<Option<Vec<f32>>>,
    done: usize,
}

impl Pending {
    fn new(request: EmbedRequest) -> Self {
        let n = request.texts.len();
        Pending { request, next_text: 0, vectors: vec![None; n], done: 0 }
    }

    fn fail(self, error: Error) {
        let _ = self.request.reply.try_send(Err(error));
    }
}

/// The context for one pooling type, and what one of its outputs holds.
struct PooledContext<'m> {
    pooling: Pooling,
    ctx: Context<'m>,
    output_len: usize,
    batch: Batch,
}

fn serve(model: &LlamaModel, config: EmbedConfig, requests: &Receiver<EmbedRequest>, closing: &AtomicBool) {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut current: Option<PooledContext<'_>> = None;
    loop {
        if queue.is_empty() {
            match requests.recv() {
                Ok(req) => queue.push_back(Pending::new(req)),
                Err(_) => return,
            }
        }
        queue.extend(requests.try_iter().map(Pending::new));
        if closing.load(Ordering::Acquire) {
            queue.drain(..).for_each(|p| p.fail(Error::closed()));
            return;
        }
        retire_stopped(&mut queue);
        let Some(pooling) = queue.front().map(|p| p.request.pooling) else { continue };
        if current.as_ref().is_none_or(|c| c.pooling != pooling) {
            // Free the old context first: two at once would hold both KV caches.
            current = None;
            match create(model, config, pooling) {
                Ok(c) => current = Some(c),
                Err(e) => {
                    let (failed, kept): (Vec<_>, Vec<_>) = queue.drain(..).partition(|p| p.request.pooling == pooling);
                    queue.extend(kept);
                    failed.into_iter().for_each(|p| p.fail(e.clone()));
                    continue;
                }
            }
        }
        let pooled = current.as_mut().expect("created above");
        decode_round(pooled, config, &mut queue);
        // Hand out finished calls.
        let mut i = 0;
        while i < queue.len() {
            if queue[i].done == queue[i].vectors.len() {
                let p = queue.remove(i).expect("index in range");
                let vectors = p.vectors.into_iter().map(|v| v.expect("every text done")).collect();
                let _ = p.request.reply.try_send(Ok(vectors));
            } else {
                i += 1;
            }
        }
    }
}

/// Ends the calls that were cancelled or ran past their deadline.
fn retire_stopped(queue: &mut VecDeque<Pending>) {
    let now = Instant::now();
    let mut i = 0;
    while i < queue.len() {
        let request = &queue[i].request;
        let error = if request.cancel.is_cancelled() {
            Some(Error::new(ErrorKind::Cancelled, "the embedding call was cancelled"))
        } else if request.deadline.is_some_and(|d| now >= d) {
            Some(Error::new(ErrorKind::DeadlineExceeded, "the embedding call ran past its timeout"))
        } else {
            None
        };
        match error {
            Some(e) => queue.remove(i).expect("index in range").fail(e),
            None => i += 1,
        }
    }
}

fn create(model: &LlamaModel, config: EmbedConfig, pooling: Pooling) -> Result<PooledContext<'_>> {
    let raw = raw_model(model);
    // SAFETY: a live model.
    let output_len = unsafe {
        match pooling {
            Pooling::Rank => sys::llama_model_n_cls_out(raw) as usize,
            _ => sys::llama_model_n_embd_out(raw).max(0) as usize,
        }
    };
    if output_len == 0 {
        return Err(Error::new(ErrorKind::InvalidModel, "the model's pooled output has no values"));
    }
    let mut ctx = Context::new(
        model,
        &ContextConfig {
            size: ContextSize {
                n_ctx: config.max_tokens,
                batch_size: config.max_tokens,
                max_sequences: MAX_SEQUENCES,
                threads: config.threads,
                flash_attention: config.flash_attention,
            },
            ubatch_size: Some(config.max_tokens),
            abort: None,
            guarded: config.remote,
            pooling: Some(pooling.to_llama()),
        },
    )?;
    check_first_embedding(model, &mut ctx, output_len, config.threads)?;
    Ok(PooledContext { pooling, ctx, output_len, batch: Batch::new(config.max_tokens as usize) })
}

/// The embedding context's first decode (`guarded_first_decode`): shapes in the file that only
/// bite when pooling fail here, as `invalid_model`, instead of aborting at the first call.
fn check_first_embedding(model: &LlamaModel, ctx: &mut Context<'_>, output_len: usize, threads: u32) -> Result<()> {
    let invalid = |what: String| Error::new(ErrorKind::InvalidModel, format!("llama.cpp cannot embed with this model: {what}"));
    match crate::engine::guarded_first_decode(model, ctx, threads) {
        crate::llama::guard::GuardedDecode::Asserted(message) => {
            return Err(match crate::backend::rpc::lost_worker(&message) {
                Some(endpoint) => crate::backend::rpc::lost_error(endpoint),
                None => invalid(message),
            })
        }
        crate::llama::guard::GuardedDecode::Returned(0) => {
            if ctx.pooled(0, output_len).is_none() {
                return Err(invalid("its first decode gives no pooled output".into()));
            }
        }
        crate::llama::guard::GuardedDecode::Returned(code) => {
            let detail = crate::log::take_last_llama_error().unwrap_or_else(|| format!("llama_decode returned {code}"));
            return Err(invalid(detail));
        }
    }
    ctx.clear();
    Ok(())
}

/// Packs texts of waiting calls (those with this context's pooling) into one decode and
/// stores their vectors.
fn decode_round(pooled: &mut PooledContext<'_>, config: EmbedConfig, queue: &mut VecDeque<Pending>) {
    let budget = config.max_tokens as usize;
    let packing_budget = config.tokens_per_decode.min(config.max_tokens) as usize;
    pooled.batch.clear();
    // (queue index, text index) of each sequence in the batch.
    let mut plan: Vec<(usize, usize)> = Vec::new();
    let mut tokens = 0usize;
    // One text per call per turn, until the batch is full or no call has texts left.
    'fill: loop {
        let mut added_any = false;
        for (q, pending) in queue.iter_mut().enumerate() {
            if pending.request.pooling != pooled.pooling || pending.next_text >= pending.request.texts.len() {
                continue;
            }
            let text = &pending.request.texts[pending.next_text];
            let full = if plan.is_empty() { tokens + text.len() > budget } else { tokens + text.len() > packing_budget };
            if plan.len() == MAX_SEQUENCES as usize || full {
                break 'fill;
            }
            let seq = plan.len() as i32;
            for (p, &token) in text.iter().enumerate() {
                pooled.batch.add(token, p as i32, seq, true);
            }
            tokens += text.len();
            plan.push((q, pending.next_text));
            pending.next_text += 1;
            added_any = true;
        }
        if !added_any {
            break;
        }
    }
    if plan.is_empty() {
        return;
    }
    let decoded = {
        let _cores = crate::engine::cores::take(config.threads as usize);
        pooled.ctx.decode(&pooled.batch)
    };
    let mut failed: Vec<(usize, Error)> = Vec::new();
    match decoded {
        Ok(()) => {
            for (seq, &(q, t)) in plan.iter().enumerate() {
                match pooled.ctx.pooled(seq as i32, pooled.output_len) {
                    Some(v) if v.iter().all(|x| x.is_finite()) => {
                        let pending = &mut queue[q];
                        pending.vectors[t] = Some(v.to_vec());
                        pending.done += 1;
                    }
                    Some(_) => failed.push((q, Error::new(ErrorKind::DecodeFailed, format!("text {t} gave a non-finite value")))),
                    None => failed.push((q, Error::new(ErrorKind::DecodeFailed, format!("llama.cpp gave no vector for text {t}")))),
                }
            }
        }
        Err(e) => {
            let error = pooled.ctx.decode_error(e);
            for &(q, _) in &plan {
                failed.push((q, Error::new(error.kind(), error.message())));
            }
        }
    }
    pooled.ctx.clear();
    // Fail each call once, removing from the back so the indices stay valid.
    failed.sort_by_key(|&(q, _)| std::cmp::Reverse(q));
    failed.dedup_by_key(|(q, _)| *q);
    for (q, error) in failed {
        queue.remove(q).expect("index in range").fail(error);
    }
}
