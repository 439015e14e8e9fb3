//! The engine: one thread per loaded model that owns the llama context and serves every
//! request of that model. The context borrows the model and is not `Sync` (llama-cpp-2 marks
//! it `Send`): nothing may use it from two threads at once, so one thread holds it for life.
//!
//! The context is created with `max_sequences` sequences over one unified KV cache. Each engine
//! step puts the next token of every generating sequence, plus a bounded chunk of pending
//! prompt tokens, into a single `llama_decode` batch (continuous batching): requests join and
//! leave between steps. Sequences ("slots") keep their KV after a request ends, so a session's
//! next turn, or any request whose prompt starts with tokens some slot already holds, reuses
//! that prefix (copied between sequences when needed) instead of recomputing it.

pub(crate) mod cores;
pub(crate) mod embed;
pub(crate) mod preempt;
mod request;
mod sampling;
mod score;
mod state;
mod stats;

use request::{fail, finish, on_token, Active};
pub(crate) use request::{Command, GenerateRequest, ReasoningLimit, ScoreRequest};
pub(crate) use sampling::build_sampler;
use sampling::{log_softmax_at, sample, token_logprobs};
pub(crate) use state::SequenceState;
pub use stats::EngineStats;
pub(crate) use stats::StatsCounters;

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::llama::context::{Batch, Context, ContextConfig, ContextSize, DecodeFailure};

use crate::adapter::AdapterSet;
use crate::engine::preempt::Preemption;
use crate::error::{Error, ErrorKind, Result};
use crate::options::KvFullPolicy;
use crate::stream::{Chunk, Event, FinishReason, StopMatcher, Usage, Utf8Decoder};
use std::sync::atomic::Ordering;

/// Chunks buffered per stream before the engine pauses that sequence (backpressure).
pub(crate) const STREAM_BUFFER: usize = 32;

pub(crate) struct EngineConfig {
    pub max_queued: u32,
    pub on_kv_full: KvFullPolicy,
    pub stats: Arc<StatsCounters>,
    /// The generation context's.
    pub size: ContextSize,
    pub preemption: Arc<Preemption>,
    /// Layers on RPC workers: decodes run guarded (a lost worker fails them).
    pub remote: bool,
}

struct Slot {
    seq_id: i32,
    /// Tokens whose KV this sequence holds, at positions 0..len.
    cached: Vec<LlamaToken>,
    /// The session this sequence belongs to while that session lives.
    owner: Option<u64>,
    /// The key of the adapter set its cached tokens were computed with ("" = none).
    adapters: String,
    active: Option<Active>,
    last_used: Instant,
}

/// Starts the engine thread; returns once the context exists (or failed to be created).
pub(crate) fn spawn(model: Arc<LlamaModel>, config: EngineConfig, commands: Receiver<Command>) -> Result<std::thread::JoinHandle<()>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<()>>(1);
    let handle = std::thread::Builder::new()
        .name("corral-engine".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&model, &config, &commands, &ready_tx)));
            if result.is_err() {
                let _ = ready_tx.try_send(Err(Error::internal("the engine thread panicked")));
                crate::log::emit(crate::log::LogLevel::Error, "corral", "engine thread panicked");
            }
        })
        .map_err(|e| Error::with_source(ErrorKind::Internal, "cannot start the engine thread", e))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(Error::internal("the engine thread exited during start-up"))
        }
    }
}

fn create_context<'m>(model: &'m LlamaModel, config: &EngineConfig) -> Result<Context<'m>> {
    let (callback, data) = crate::engine::preempt::abort_callback(&config.preemption);
    Context::new(
        model,
        &ContextConfig { size: config.size, ubatch_size: None, pooling: None, abort: Some((callback, data)), guarded: config.remote },
    )
}

/// Decodes one token (BOS, or token 0) on one thread with llama.cpp's asserts caught, then
/// sets the context back to `threads`. A new context does this before any request: a value in
/// the file that only bites when computing (a norm epsilon, a shape) then fails the load
/// instead of aborting the process at the first request.
pub(crate) fn guarded_first_decode(model: &LlamaModel, ctx: &mut Context<'_>, threads: u32) -> crate::llama::guard::GuardedDecode {
    let vocab = model.vocab();
    let token = Some(vocab.bos().0).filter(|t| (0..vocab.n_tokens()).contains(t)).unwrap_or(0);
    let mut batch = Batch::new(1);
    batch.add(LlamaToken(token), 0, 0, true);
    ctx.set_threads(1);
    // SAFETY: a live context used by this thread only, running one thread.
    let outcome = unsafe { crate::llama::guard::decode(ctx.raw(), batch.raw()) };
    ctx.set_threads(threads);
    outcome
}

/// The generation context's first decode (`guarded_first_decode`); NaN logits fail it too.
fn check_first_decode(model: &LlamaModel, ctx: &mut Context<'_>, threads: u32) -> Result<()> {
    let invalid = |what: String| Error::new(ErrorKind::InvalidModel, format!("llama.cpp cannot run this model: {what}"));
    match guarded_first_decode(model, ctx, threads) {
        crate::llama::guard::GuardedDecode::Asserted(message) => {
            return Err(match crate::backend::rpc::lost_worker(&message) {
                Some(endpoint) => crate::backend::rpc::lost_error(endpoint),
                None => invalid(message),
            })
        }
        crate::llama::guard::GuardedDecode::Returned(0) => {
            if ctx.logits(0).iter().any(|x| x.is_nan()) {
                return Err(invalid("its first decode computes NaN logits".into()));
            }
        }
        // Not a generation model (an encoder, say): the requests themselves will say so.
        crate::llama::guard::GuardedDecode::Returned(_) => {}
    }
    ctx.clear();
    Ok(())
}

fn run(model: &LlamaModel, config: &EngineConfig, commands: &Receiver<Command>, ready: &SyncSender<Result<()>>) {
    let ctx = match create_context(model, config).and_then(|mut ctx| {
        check_first_decode(model, &mut ctx, config.size.threads)?;
        Ok(ctx)
    }) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    // llama.cpp rolls back KV cells, not recurrent state: such models are never pre-empted.
    let preemption = (!model.is_recurrent() && !model.is_hybrid()).then(|| config.preemption.clone());
    let mut engine = Engine {
        model,
        // llama.cpp rounds the KV size up; the requested length is the limit callers see.
        n_ctx: (config.size.n_ctx as usize).min(ctx.n_ctx() as usize),
        batch_size: config.size.batch_size as usize,
        threads: config.size.threads as usize,
        ctx,
        slots: (0..config.size.max_sequences as i32)
            .map(|seq_id| Slot {
                seq_id,
                cached: Vec::new(),
                owner: None,
                adapters: String::new(),
                active: None,
                last_used: Instant::now(),
            })
            .collect(),
        queue: VecDeque::new(),
        max_queued: config.max_queued as usize,
        on_kv_full: config.on_kv_full,
        stats: config.stats.clone(),
        batch: Batch::new(config.size.batch_size as usize + config.size.max_sequences as usize),
        prefill_cursor: 0,
        cores: None,
        preemption,
        preempted_last: false,
        applied: Arc::default(),
        wanted: Arc::default(),
        steps_on_applied: 0,
    };
    engine.serve(commands);
}

struct Engine<'m> {
    model: &'m LlamaModel,
    ctx: Context<'m>,
    n_ctx: usize,
    batch_size: usize,
    /// ggml threads per decode: the cores each decode takes (engine/cores.rs).
    threads: usize,
    slots: Vec<Slot>,
    queue: VecDeque<GenerateRequest>,
    max_queued: usize,
    on_kv_full: KvFullPolicy,
    stats: Arc<StatsCounters>,
    batch: Batch,
    /// Round-robin start for prompt chunks, so no long prompt starves another.
    prefill_cursor: usize,
    /// The cores this engine took for its last decode. It keeps them until its next decode or
    /// until it waits: the sampling, hand-out and admission between decodes use a core too, and
    /// another model's decode running meanwhile would oversubscribe the cores (engine/cores.rs).
    cores: Option<crate::engine::cores::CoreShare<'static>>,
    /// Set when the context calls back to `preemption` (declared after `ctx`: dropped after it).
    preemption: Option<Arc<Preemption>>,
    /// The last generation decode was stopped for a new request: the next one runs to the end.
    preempted_last: bool,
    /// The adapter set the context applies, and the one this step's decode runs with: requests
    /// with other sets wait for a later step (crate::adapter).
    applied: Arc<AdapterSet>,
    wanted: Arc<AdapterSet>,
    /// Steps run in a row with `applied` while requests with other sets waited.
    steps_on_applied: u32,
}

/// Steps one adapter set runs in a row while requests with another wait: switching costs
/// llama.cpp a new graph plan, about one decode.
const ADAPTER_SET_STEPS: u32 = 4;

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The prompt tokens `req` can reuse from `slot`'s cache: none if computed with other adapters.
fn reusable(slot: &Slot, req: &GenerateRequest) -> usize {
    if slot.adapters == req.adapters.key {
        common_prefix(&slot.cached, &req.prompt)
    } else {
        0
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl<'m> Engine<'m> {
    fn serve(&mut self, commands: &Receiver<Command>) {
        loop {
            // Hand out what the last step produced first: a sequence whose chunk was just
            // delivered is runnable again, and must not be mistaken for a blocked one.
            self.deliver_and_retire();
            let busy = self.slots.iter().any(|s| s.active.is_some());
            // Wait for work when idle; when every active sequence is blocked on a slow
            // consumer, wait briefly so its reader can drain.
            let idle = !busy && self.queue.is_empty();
            let blocked = busy && !self.has_runnable_work();
            if idle || blocked {
                // Another model may decode while this one waits.
                self.cores = None;
            }
            let first = if idle {
                match commands.recv() {
                    Ok(cmd) => Some(cmd),
                    Err(_) => return self.shutdown(),
                }
            } else if blocked {
                match commands.recv_timeout(Duration::from_millis(2)) {
                    Ok(cmd) => Some(cmd),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return self.shutdown(),
                }
            } else {
                None
            };
            let mut pending: Vec<Command> = first.into_iter().collect();
            pending.extend(commands.try_iter());
            for cmd in pending {
                match cmd {
                    Command::Generate(req) => {
                        if let Some(p) = &self.preemption {
                            p.taken();
                        }
                        if self.queue.len() >= self.max_queued {
                            let _ = req.events.try_send(Event::Error(Error::new(
                                ErrorKind::Busy,
                                format!("the request queue is full ({} waiting)", self.max_queued),
                            )));
                        } else {
                            self.queue.push_back(req);
                        }
                    }
                    Command::Score(req) => {
                        let result = self.score(&req);
                        let _ = req.reply.send(result);
                    }
                    Command::SaveSession { session, reply } => {
                        let _ = reply.send(self.save_session(session));
                    }
                    Command::RestoreSession { session, state, reply } => {
                        let _ = reply.send(self.restore_session(session, state));
                    }
                    Command::ReleaseSession(id) => {
                        for slot in self.slots.iter_mut().filter(|s| s.owner == Some(id)) {
                            slot.owner = None;
                        }
                    }
                    Command::ClearCache => {
                        for slot in self.slots.iter_mut().filter(|s| s.active.is_none()) {
                            self.ctx.remove(slot.seq_id, None, None);
                            slot.cached.clear();
                        }
                    }
                    Command::Shutdown => return self.shutdown(),
                }
            }
            self.deliver_and_retire();
            self.admit();
            self.step();
        }
    }

    fn shutdown(&mut self) {
        for req in self.queue.drain(..) {
            let _ = req.events.try_send(Event::Error(Error::closed()));
        }
        for slot in &mut self.slots {
            if let Some(active) = slot.active.take() {
                if !active.finished {
                    let _ = active.request.events.try_send(Event::Error(Error::closed()));
                }
            }
        }
    }

    fn has_runnable_work(&self) -> bool {
        self.slots.iter().filter_map(|s| s.active.as_ref()).any(|a| !a.finished && !a.paused())
    }

    /// Handles cancellation and deadlines, pushes undelivered output, frees finished slots.
    fn deliver_and_retire(&mut self) {
        for slot in &mut self.slots {
            let Some(active) = slot.active.as_mut() else { continue };
            if !active.finished {
                if active.request.cancel.is_cancelled() {
                    finish(active, FinishReason::Cancelled);
                } else if active.request.options.timeout.is_some_and(|t| active.request.submitted.elapsed() >= t) {
                    fail(active, Error::new(ErrorKind::DeadlineExceeded, "the request ran past its timeout"));
                }
            }
            let deliver_now = active.request.stream || active.finished;
            if let Some(event) = active.undelivered.take_if(|_| deliver_now) {
                match active.request.events.try_send(event) {
                    Ok(()) => {}
                    Err(TrySendError::Full(event)) => active.undelivered = Some(event),
                    // The consumer is gone: nothing more to deliver.
                    Err(TrySendError::Disconnected(_)) => active.finished = true,
                }
            }
            if active.finished && active.undelivered.is_none() {
                slot.active = None;
                slot.last_used = Instant::now();
            }
        }
    }

    /// Moves queued requests onto free sequences, reusing the longest cached prefix.
    fn admit(&mut self) {
        while let Some(req) = self.queue.front() {
            if req.cancel.is_cancelled() {
                let req = self.queue.pop_front().expect("front exists");
                let _ = req.events.try_send(Event::Chunk(Chunk {
                    text: String::new(),
                    tokens: Vec::new(),
                    finish_reason: Some(FinishReason::Cancelled),
                    usage: Some(Usage { prompt_tokens: req.prompt.len() as u32, ..Usage::default() }),
                    logprobs: Vec::new(),
                    tool_calls: Vec::new(),
                    reasoning: String::new(),
                }));
                continue;
            }
            let Some(target) = self.choose_slot(req) else { break };
            if !self.kv_room_for(target, req) {
                match self.on_kv_full {
                    KvFullPolicy::Wait if self.slots.iter().any(|s| s.active.is_some()) => break,
                    KvFullPolicy::Wait => {} // nothing running to wait for: try anyway
                    KvFullPolicy::Error => {
                        let req = self.queue.pop_front().expect("front exists");
                        let _ = req.events.try_send(Event::Error(Error::new(
                            ErrorKind::ContextOverflow,
                            format!("the KV cache has no room for a {}-token prompt while other requests run", req.prompt.len()),
                        )));
                        continue;
                    }
                }
            }
            let req = self.queue.pop_front().expect("front exists");
            self.start(target, req);
        }
    }

    /// Whether the prompt fits in the KV cells left by running requests, after dropping the
    /// cached prefixes of idle sequences (which `start` and KV pressure relief do on demand).
    fn kv_room_for(&self, target: usize, req: &GenerateRequest) -> bool {
        let in_use: usize = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| s.active.is_some() && *i != target)
            .map(|(_, s)| s.cached.len() + s.active.as_ref().map_or(0, |a| a.request.prompt.len().saturating_sub(a.prompt_done)))
            .sum();
        in_use + req.prompt.len() + 1 <= self.n_ctx
    }

    fn choose_slot(&self, req: &GenerateRequest) -> Option<usize> {
        let free = |s: &&Slot| s.active.is_none();
        if let Some(session) = req.session {
            if let Some(i) = self.slots.iter().position(|s| s.active.is_none() && s.owner == Some(session)) {
                return Some(i);
            }
        }
        // Prefer sequences no live session is keeping, then the longest shared prefix,
        // then the least recently used.
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| free(s))
            .max_by_key(|(_, s)| (s.owner.is_none(), reusable(s, req), std::cmp::Reverse(s.last_used)))
            .map(|(i, _)| i)
    }

    fn start(&mut self, target: usize, mut req: GenerateRequest) {
        let prompt_len = req.prompt.len();
        // At least one prompt token is always evaluated, to get logits for the first sample.
        let max_reuse = prompt_len.saturating_sub(1);
        let own = reusable(&self.slots[target], &req).min(max_reuse);
        let best_other = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != target)
            .map(|(i, s)| (i, reusable(s, &req).min(max_reuse)))
            .max_by_key(|&(_, n)| n);
        let seq = self.slots[target].seq_id;
        let mut reuse = own;
        match best_other {
            Some((source, n)) if n > own => {
                let src_seq = self.slots[source].seq_id;
                self.ctx.remove(seq, None, None);
                self.ctx.copy(src_seq, seq, n as u32);
                reuse = n;
            }
            _ => {
                // Drop what follows the shared prefix; models that cannot trim (recurrent)
                // start over.
                if !self.ctx.remove(seq, Some(own as u32), None) {
                    self.ctx.remove(seq, None, None);
                    reuse = 0;
                }
            }
        }
        let slot = &mut self.slots[target];
        slot.cached.clear();
        slot.cached.extend_from_slice(&req.prompt[..reuse]);
        slot.adapters.clone_from(&req.adapters.key);
        if let Some(session) = req.session {
            slot.owner = Some(session);
        } else if slot.owner.is_some() {
            slot.owner = None;
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.prompt_tokens.fetch_add(prompt_len as u64, Ordering::Relaxed);
        self.stats.cached_tokens.fetch_add(reuse as u64, Ordering::Relaxed);
        let sampler = build_sampler(self.model, &req.options);
        let grammar = req.grammar.take();
        let reasoning = req.reasoning_limit.take().map(request::ReasoningTracker::new);
        let stop = StopMatcher::new(req.options.stop.clone());
        slot.active = Some(Active {
            sampler,
            grammar,
            prompt_done: reuse,
            cached_tokens: reuse,
            next_token: None,
            generated: 0,
            decoder: Utf8Decoder::default(),
            stop,
            undelivered: None,
            finished: false,
            reasoning,
            times: request::Timeline::admitted_now(),
            request: req,
        });
        if self.slots[target].active.as_ref().is_some_and(|a| a.request.options.max_tokens == Some(0)) {
            let active = self.slots[target].active.as_mut().expect("just set");
            finish(active, FinishReason::Length);
        }
    }

    /// One engine step. Prompts go first, in a decode of their own, when sequences are also
    /// generating: a request joining a busy engine then gets its first token after its
    /// prompt's decode, not after one that also carries every other sequence's next token.
    /// The generating sequences lose nothing: their tokens take one decode either way.
    fn step(&mut self) {
        self.wanted = self.choose_adapter_set();
        let wanted = &self.wanted.key;
        let runnable = |a: &&Active| !a.finished && !a.paused() && a.request.adapters.key == *wanted;
        let active = || self.slots.iter().filter_map(|s| s.active.as_ref()).filter(runnable);
        let generating = active().any(|a| a.next_token.is_some());
        let prefilling = active().any(|a| a.next_token.is_none() && a.prompt_done < a.request.prompt.len());
        if generating && prefilling {
            self.decode_round(false, true);
            // First tokens go out now, not after the generation round.
            self.deliver_and_retire();
            self.decode_round(true, false);
        } else {
            self.decode_round(true, true);
        }
    }

    /// Decodes the next token of generating sequences and/or chunks of pending prompts.
    fn decode_round(&mut self, generation: bool, prompts: bool) {
        self.batch.clear();
        // (slot index, batch index of its logits, tokens added)
        let mut plan: Vec<(usize, Option<i32>, usize)> = Vec::new();
        let mut n = 0usize;
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(active) = slot.active.as_ref() else { continue };
            if !generation || active.finished || active.paused() || active.request.adapters.key != self.wanted.key {
                continue;
            }
            if let Some(token) = active.next_token {
                let pos = slot.cached.len() as i32;
                if self.batch.add(token, pos, slot.seq_id, true) {
                    plan.push((i, Some(n as i32), 1));
                    n += 1;
                }
            }
        }
        // Prompt chunks share what is left of the batch, round-robin across sequences.
        let count = if prompts { self.slots.len() } else { 0 };
        for k in 0..count {
            let i = (self.prefill_cursor + k) % count;
            let budget = self.batch_size.saturating_sub(n);
            if budget == 0 {
                break;
            }
            let slot = &self.slots[i];
            let Some(active) = slot.active.as_ref() else { continue };
            if active.finished
                || active.next_token.is_some()
                || active.prompt_done >= active.request.prompt.len()
                || active.request.adapters.key != self.wanted.key
            {
                continue;
            }
            let prompt = &active.request.prompt;
            let end = (active.prompt_done + budget).min(prompt.len());
            let mut logits_at = None;
            // Only the tokens that made it into the batch count as decoded (and then cached).
            let mut added = 0;
            for (p, &token) in prompt.iter().enumerate().take(end).skip(active.prompt_done) {
                let last = p + 1 == prompt.len();
                if !self.batch.add(token, p as i32, slot.seq_id, last) {
                    break;
                }
                if last {
                    logits_at = Some(n as i32);
                }
                n += 1;
                added += 1;
            }
            if added > 0 {
                plan.push((i, logits_at, added));
            }
        }
        if prompts {
            self.prefill_cursor = (self.prefill_cursor + 1) % self.slots.len().max(1);
        }
        if n == 0 {
            return;
        }
        // A decode of generation tokens alone may give way to a request that can start now.
        let generation_only = plan.iter().all(|&(i, _, _)| self.slots[i].active.as_ref().is_some_and(|a| a.next_token.is_some()));
        // llama.cpp rolls back only the ubatch it stopped in: the whole decode must be one.
        let preemptible = generation_only
            && n <= self.ctx.n_ubatch() as usize
            && !self.preempted_last
            && self.queue.is_empty()
            && self.slots.iter().any(|s| s.active.is_none());
        let armed = preemptible && self.preemption.as_ref().inspect(|p| p.arm()).is_some();
        let decoded = self.decode_batch();
        let stopped = armed && self.preemption.as_ref().is_some_and(|p| p.disarm());
        if generation_only {
            // llama.cpp removed the aborted tokens' cells: the plan is simply not applied, and
            // the same tokens go in the next generation decode.
            self.preempted_last = stopped && matches!(decoded, Err(DecodeFailure::Aborted));
            if self.preempted_last {
                self.stats.preemptions.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        match decoded {
            Ok(()) => {}
            Err(DecodeFailure::NoKvSlot) => return self.relieve_kv_pressure(&plan),
            Err(e) => {
                let error = self.ctx.decode_error(e);
                for &(i, _, _) in &plan {
                    if let Some(active) = self.slots[i].active.as_mut() {
                        fail(active, Error::new(error.kind(), error.message()));
                    }
                    let seq = self.slots[i].seq_id;
                    self.ctx.remove(seq, None, None);
                    self.slots[i].cached.clear();
                }
                return;
            }
        }
        let now = Instant::now();
        for (i, logits_at, added) in plan {
            let n_ctx = self.n_ctx;
            let slot = &mut self.slots[i];
            let Some(active) = slot.active.as_mut() else { continue };
            if let Some(token) = active.next_token.take() {
                slot.cached.push(token);
            } else {
                let from = active.prompt_done;
                slot.cached.extend_from_slice(&active.request.prompt[from..from + added]);
                active.prompt_done += added;
                if active.prompt_done == active.request.prompt.len() {
                    active.times.prompt_finished = Some(now);
                }
            }
            let Some(index) = logits_at else { continue };
            // A spent reasoning budget feeds the closing tag instead of sampling.
            let forced = active.reasoning.as_mut().and_then(|r| r.forced.pop_front());
            let token = match forced {
                Some(token) => {
                    active.sampler.accept(token);
                    token
                }
                None => sample(self.model, &self.ctx, index, active),
            };
            self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
            let logprobs = active
                .request
                .options
                .logprobs
                .map(|top| vec![token_logprobs(self.model, self.ctx.logits(index), token, top as usize)])
                .unwrap_or_default();
            on_token(self.model, active, token, logprobs, slot.cached.len(), n_ctx, now);
        }
    }

    /// Decodes the batch once this engine's share of the cores is free (engine/cores.rs).
    fn decode_batch(&mut self) -> std::result::Result<(), DecodeFailure> {
        // Give the cores back before asking again, so that another model waiting has its turn.
        self.cores = None;
        self.cores = Some(crate::engine::cores::take(self.threads));
        if self.applied.key != self.wanted.key {
            self.wanted.apply(self.ctx.raw());
            self.applied = self.wanted.clone();
        }
        self.ctx.decode(&self.batch)
    }

    /// The adapter set of this step's decode: the one applied while its requests have work,
    /// for at most ADAPTER_SET_STEPS steps in a row when requests with other sets wait; then
    /// the next set in key order, so every set gets its turn.
    fn choose_adapter_set(&mut self) -> Arc<AdapterSet> {
        // The usual case, every step: all runnable requests share the applied set.
        let runnable = || self.slots.iter().filter_map(|s| s.active.as_ref()).filter(|a| !a.finished && !a.paused());
        if runnable().all(|a| a.request.adapters.key == self.applied.key) {
            return self.applied.clone();
        }
        let mut sets: Vec<&Arc<AdapterSet>> = self
            .slots
            .iter()
            .filter_map(|s| s.active.as_ref())
            .filter(|a| !a.finished && !a.paused())
            .map(|a| &a.request.adapters)
            .collect();
        sets.sort_by(|a, b| a.key.cmp(&b.key));
        sets.dedup_by(|a, b| a.key == b.key);
        let current = sets.iter().position(|s| s.key == self.applied.key);
        let chosen = match current {
            Some(i) if sets.len() == 1 || self.steps_on_applied < ADAPTER_SET_STEPS => {
                self.steps_on_applied += 1;
                sets[i]
            }
            _ => {
                self.steps_on_applied = 1;
                let next = sets.iter().position(|s| s.key > self.applied.key).unwrap_or(0);
                match sets.get(next) {
                    Some(set) => set,
                    None => return self.applied.clone(),
                }
            }
        };
        chosen.clone()
    }

    /// The unified KV cache is full: drop cached prefixes nobody is using; if that frees
    /// nothing, fail the newest request so the others can go on.
    fn relieve_kv_pressure(&mut self, plan: &[(usize, Option<i32>, usize)]) {
        let mut evicted = false;
        for slot in self.slots.iter_mut().filter(|s| s.active.is_none() && !s.cached.is_empty()) {
            self.ctx.remove(slot.seq_id, None, None);
            slot.cached.clear();
            slot.owner = None;
            evicted = true;
        }
        if evicted {
            return;
        }
        let newest = plan
            .iter()
            .filter_map(|&(i, _, _)| self.slots[i].active.as_ref().map(|a| (i, a.times.admitted)))
            .max_by_key(|&(_, t)| t)
            .map(|(i, _)| i);
        if let Some(i) = newest {
            let seq = self.slots[i].seq_id;
            if let Some(active) = self.slots[i].active.as_mut() {
                fail(
                    active,
                    Error::new(
                        ErrorKind::ContextOverflow,
                        format!("the KV cache is full ({} tokens shared by all requests); retry later or load the model with a larger context_length", self.n_ctx),
                    ),
                );
            }
            self.ctx.remove(seq, None, None);
            self.slots[i].cached.clear();
        }
    }
}
