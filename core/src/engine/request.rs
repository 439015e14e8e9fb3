//! A request's life in the engine: what callers send (`Command`), the state of a generation
//! on its sequence (`Active`), and what happens to each sampled token: text, stop strings,
//! limits, the chunks handed to the stream, the final usage figures.

use std::sync::mpsc::SyncSender;
use std::time::Instant;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::ms;
use crate::error::{Error, Result};
use crate::options::GenerateOptions;
use crate::stream::{CancelHandle, Chunk, Event, FinishReason, Logprob, StopMatcher, Usage, Utf8Decoder};

pub(crate) struct GenerateRequest {
    pub prompt: Vec<LlamaToken>,
    pub options: GenerateOptions,
    pub session: Option<u64>,
    pub events: SyncSender<Event>,
    pub cancel: CancelHandle,
    pub submitted: Instant,
    /// Deliver chunks as they come. When false the engine sends one final chunk with the whole
    /// text, sparing the caller a thread wake-up per token (which costs generation speed when
    /// every core runs llama.cpp).
    pub stream: bool,
    /// The output constraint's grammar sampler, built (and so checked) on the caller's thread.
    pub grammar: Option<LlamaSampler>,
    /// A chat's `reasoning_budget`: how its `<think>` block is closed when the budget runs out.
    pub reasoning_limit: Option<ReasoningLimit>,
    /// The LoRA adapters it runs with (crate::adapter).
    pub adapters: std::sync::Arc<crate::adapter::AdapterSet>,
}

/// Caps a reply's reasoning: after `budget` tokens inside `<think>`, the engine feeds the model
/// `close` (`</think>` and a blank line) instead of sampling, and the answer follows.
pub(crate) struct ReasoningLimit {
    pub budget: u32,
    /// The prompt already opened the block.
    pub opened: bool,
    pub close: Vec<LlamaToken>,
}

/// Where a capped reply's reasoning stands.
pub(super) struct ReasoningTracker {
    limit: ReasoningLimit,
    inside: bool,
    done: bool,
    used: u32,
    /// The last few characters generated, to see tags split across tokens.
    tail: String,
    /// Tokens to feed instead of sampling (the closing tag).
    pub(super) forced: std::collections::VecDeque<LlamaToken>,
}

impl ReasoningTracker {
    pub(super) fn new(limit: ReasoningLimit) -> Self {
        let inside = limit.opened;
        ReasoningTracker { limit, inside, done: false, used: 0, tail: String::new(), forced: Default::default() }
    }

    /// Follows one generated token's text; closes the block when the budget is spent.
    fn on_text(&mut self, text: &str) {
        if self.done {
            return;
        }
        self.tail.push_str(text);
        if !self.inside && self.tail.contains(crate::chat::reasoning::OPEN) {
            self.inside = true;
            self.tail.clear();
            return;
        }
        if self.inside && self.tail.contains(crate::chat::reasoning::CLOSE) {
            self.done = true;
            return;
        }
        if self.tail.len() > 32 {
            let cut = self.tail.len() - 16;
            let cut = (cut..self.tail.len()).find(|&i| self.tail.is_char_boundary(i)).unwrap_or(self.tail.len());
            self.tail.drain(..cut);
        }
        if self.inside {
            self.used += 1;
            if self.used >= self.limit.budget {
                self.forced.extend(self.limit.close.iter().copied());
                self.done = true;
            }
        }
    }
}

pub(crate) struct ScoreRequest {
    pub tokens: Vec<LlamaToken>,
    pub reply: SyncSender<Result<Vec<f32>>>,
    pub cancel: CancelHandle,
}

pub(crate) enum Command {
    Generate(GenerateRequest),
    Score(ScoreRequest),
    /// The session ended: its sequence may be reused by anyone.
    ReleaseSession(u64),
    /// The tokens and KV cells of a session's sequence (`Session::state`).
    SaveSession {
        session: u64,
        reply: SyncSender<Result<super::SequenceState>>,
    },
    /// Puts a saved sequence back, owned by a new session.
    RestoreSession {
        session: u64,
        state: super::SequenceState,
        reply: SyncSender<Result<()>>,
    },
    /// Drop every cached prefix not in use by a running request.
    ClearCache,
    Shutdown,
}

/// A generation in progress on one sequence.
pub(super) struct Active {
    pub(super) request: GenerateRequest,
    pub(super) sampler: LlamaSampler,
    pub(super) grammar: Option<LlamaSampler>,
    /// Prompt tokens already in the KV cache.
    pub(super) prompt_done: usize,
    pub(super) cached_tokens: usize,
    /// Sampled but not yet evaluated.
    pub(super) next_token: Option<LlamaToken>,
    pub(super) generated: u32,
    pub(super) decoder: Utf8Decoder,
    pub(super) stop: StopMatcher,
    /// Output the consumer has not taken yet. New text is appended to it; a streaming
    /// sequence pauses while it is set (the consumer is behind: backpressure).
    pub(super) undelivered: Option<Event>,
    /// Set once the final chunk (or error) is queued: the slot frees when it is delivered.
    pub(super) finished: bool,
    /// Follows `<think>` when the request capped its reasoning.
    pub(super) reasoning: Option<ReasoningTracker>,
    pub(super) times: Timeline,
}

/// When a request reached each stage, for its `Usage`.
pub(super) struct Timeline {
    pub(super) admitted: Instant,
    pub(super) prompt_finished: Option<Instant>,
    pub(super) first_token: Option<Instant>,
    pub(super) last_token: Option<Instant>,
}

impl Timeline {
    pub(super) fn admitted_now() -> Self {
        Timeline { admitted: Instant::now(), prompt_finished: None, first_token: None, last_token: None }
    }

    fn token_at(&mut self, now: Instant) {
        self.first_token.get_or_insert(now);
        self.last_token = Some(now);
    }
}

/// Handles one sampled token: end of generation, text, stop strings, limits.
pub(super) fn on_token(
    model: &LlamaModel,
    active: &mut Active,
    token: LlamaToken,
    logprobs: Vec<Logprob>,
    kv_len: usize,
    n_ctx: usize,
    now: Instant,
) {
    active.times.token_at(now);
    if model.vocab().is_eog(token) && !active.request.options.ignore_eos {
        return finish(active, FinishReason::Stop);
    }
    active.generated += 1;
    let piece = match crate::llama::vocab::piece(model, token, false) {
        Ok(piece) => piece,
        Err(e) => return fail(active, e),
    };
    let text = active.decoder.push(&piece);
    if let Some(tracker) = active.reasoning.as_mut() {
        tracker.on_text(&text);
    }
    let (text, stopped) = active.stop.push(&text);
    push_chunk(
        active,
        Chunk { text, tokens: vec![token.0], finish_reason: None, usage: None, logprobs, tool_calls: Vec::new(), reasoning: String::new() },
    );
    if stopped {
        return finish(active, FinishReason::Stop);
    }
    let at_limit = active.request.options.max_tokens.is_some_and(|m| active.generated >= m);
    // The next token would need a KV cell beyond the context window.
    let context_full = kv_len + 1 >= n_ctx;
    if at_limit || context_full {
        return finish(active, FinishReason::Length);
    }
    active.next_token = Some(token);
}

impl Active {
    pub(super) fn paused(&self) -> bool {
        self.request.stream && self.undelivered.is_some()
    }
}

/// Queues output, appending to what the consumer has not taken yet (never reordering).
pub(super) fn push_chunk(active: &mut Active, chunk: Chunk) {
    match active.undelivered.as_mut() {
        Some(Event::Chunk(pending)) => {
            pending.text.push_str(&chunk.text);
            pending.tokens.extend_from_slice(&chunk.tokens);
            pending.logprobs.extend(chunk.logprobs);
            pending.finish_reason = chunk.finish_reason;
            pending.usage = chunk.usage;
        }
        Some(Event::Error(_)) => {}
        None => active.undelivered = Some(Event::Chunk(chunk)),
    }
}

pub(super) fn usage(active: &Active) -> Usage {
    let r = &active.request;
    let prompt_tokens = r.prompt.len() as u32;
    let evaluated = prompt_tokens.saturating_sub(active.cached_tokens as u32);
    let times = &active.times;
    let prompt_end = times.prompt_finished.unwrap_or_else(Instant::now);
    let prompt_ms = ms(prompt_end.saturating_duration_since(times.admitted));
    let generation_ms = match (times.first_token, times.last_token) {
        (Some(a), Some(b)) => ms(b.saturating_duration_since(a)),
        _ => 0.0,
    };
    let per_s = |n: f64, ms: f64| if ms > 0.0 { n * 1000.0 / ms } else { 0.0 };
    Usage {
        prompt_tokens,
        completion_tokens: active.generated,
        cached_tokens: active.cached_tokens as u32,
        queue_ms: ms(times.admitted.saturating_duration_since(r.submitted)),
        time_to_first_token_ms: times.first_token.map(|t| ms(t.saturating_duration_since(r.submitted))).unwrap_or(0.0),
        prompt_ms,
        generation_ms,
        prompt_tokens_per_s: per_s(evaluated as f64, prompt_ms),
        generation_tokens_per_s: per_s(active.generated.saturating_sub(1) as f64, generation_ms),
    }
}

pub(super) fn finish(active: &mut Active, reason: FinishReason) {
    let mut text = String::new();
    if reason != FinishReason::Cancelled {
        text = active.decoder.finish();
        let (safe, _) = active.stop.push(&text);
        text = safe;
        if reason != FinishReason::Stop {
            text.push_str(&active.stop.finish());
        }
    }
    active.finished = true;
    active.next_token = None;
    let usage = usage(active);
    push_chunk(
        active,
        Chunk {
            text,
            tokens: Vec::new(),
            finish_reason: Some(reason),
            usage: Some(usage),
            logprobs: Vec::new(),
            tool_calls: Vec::new(),
            reasoning: String::new(),
        },
    );
}

pub(super) fn fail(active: &mut Active, error: Error) {
    active.finished = true;
    active.next_token = None;
    active.undelivered = Some(Event::Error(error));
}
