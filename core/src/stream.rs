//! What a generation produces: streamed chunks, the final result, usage figures, and the
//! text plumbing between tokens and chunks (UTF-8 hold-back, stop strings).

use crate::chat::reasoning::ReasoningSplitter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use crate::chat::tools::{ToolCallDelta, ToolCallParser};
use crate::chat::ToolCall;
use crate::error::{Error, Result};

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens` reached, or the context window is full.
    Length,
    /// Cancelled by the caller.
    Cancelled,
    /// The model called tools (see `Completion::tool_calls`).
    ToolCalls,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
            FinishReason::ToolCalls => "tool_calls",
        }
    }
}

/// Token counts and timings of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Tokens in the prompt (including any reused from the cache).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Prompt tokens whose KV was reused from a session or the prefix cache (not recomputed).
    pub cached_tokens: u32,
    /// Time spent waiting for the engine to admit the request.
    pub queue_ms: f64,
    /// From submission to the first generated token.
    pub time_to_first_token_ms: f64,
    /// Time evaluating the prompt.
    pub prompt_ms: f64,
    /// Time from the first to the last generated token.
    pub generation_ms: f64,
    /// Evaluated (non-cached) prompt tokens per second.
    pub prompt_tokens_per_s: f64,
    /// Generated tokens per second (after the first).
    pub generation_tokens_per_s: f64,
}

/// A token's log-probability under the model (before sampling filters).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: i32,
    pub text: String,
    pub logprob: f32,
}

/// A generated token with its log-probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct Logprob {
    pub token: TokenLogprob,
    pub top: Vec<TokenLogprob>,
}

impl TokenLogprob {
    fn to_openai(&self) -> serde_json::Value {
        serde_json::json!({"token": self.text, "logprob": self.logprob, "bytes": self.text.as_bytes()})
    }
}

impl Logprob {
    /// OpenAI's shape (an entry of `choices[].logprobs.content`).
    pub fn to_openai(&self) -> serde_json::Value {
        let mut entry = self.token.to_openai();
        entry["top_logprobs"] = self.top.iter().map(TokenLogprob::to_openai).collect();
        entry
    }
}

/// One piece of streamed output. The last chunk of a stream carries `finish_reason` and `usage`
/// (its text may be empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Always complete UTF-8 characters; a character split across tokens is held back.
    pub text: String,
    /// The tokens this chunk came from.
    pub tokens: Vec<i32>,
    pub finish_reason: Option<FinishReason>,
    pub usage: Option<Usage>,
    /// One entry per token of `tokens` when `logprobs` was requested.
    pub logprobs: Vec<Logprob>,
    /// Tool-call progress when the request offered tools (the call's text is not in `text`).
    pub tool_calls: Vec<ToolCallDelta>,
    /// Reasoning (`<think>...</think>`) in this chunk, apart from `text` (chat only).
    pub reasoning: String,
}

/// A whole generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<i32>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub logprobs: Vec<Logprob>,
    /// The tools the model called (then `finish_reason` is `ToolCalls`).
    pub tool_calls: Vec<ToolCall>,
    /// The model's reasoning before its answer (`<think>...</think>`), apart from `text`;
    /// empty when it gave none.
    pub reasoning: String,
}

pub(crate) enum Event {
    Chunk(Chunk),
    Error(Error),
}

/// A `Send + Sync` handle that cancels a running generation from any thread.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(pub(crate) Arc<AtomicBool>);

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A running generation. Iterate it for chunks; drop it (or call [`Stream::cancel`]) to stop.
pub struct Stream {
    events: Receiver<Event>,
    cancel: CancelHandle,
    done: bool,
    /// Separates tool calls from text when the request offered tools.
    tool_parser: Option<ToolCallParser>,
    /// Complete tool calls, handed out with the final chunk.
    tool_calls: Vec<ToolCall>,
    /// Separates reasoning from the answer (chat replies).
    reasoning: Option<ReasoningSplitter>,
    /// Keeps the model (and its engine) alive while the stream is.
    _model: Arc<dyn Send + Sync>,
}

/// The result of waiting for a chunk with a time limit.
#[derive(Debug)]
pub enum Poll {
    Chunk(Chunk),
    Pending,
    Finished,
}

impl Stream {
    pub(crate) fn new(events: Receiver<Event>, cancel: CancelHandle, model: Arc<dyn Send + Sync>) -> Self {
        Stream { events, cancel, done: false, tool_parser: None, tool_calls: Vec::new(), reasoning: None, _model: model }
    }

    pub(crate) fn with_tool_parser(mut self, parser: Option<ToolCallParser>) -> Self {
        self.tool_parser = parser;
        self
    }

    pub(crate) fn with_reasoning(mut self, splitter: Option<ReasoningSplitter>) -> Self {
        self.reasoning = splitter;
        self
    }

    /// Complete tool calls so far: all of them once the stream has ended.
    pub fn tool_calls(&self) -> &[ToolCall] {
        &self.tool_calls
    }

    /// Asks the engine to stop; the stream then ends with `FinishReason::Cancelled`.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// Stops the generation (unless it has ended) and waits until the engine has let go of the
    /// request: within one token, or one prompt chunk. Dropping a stream cancels without
    /// waiting; after `close` the request's tokens are all in `Model::stats()` and its sequence
    /// is free for the next request.
    pub fn close(mut self) {
        if self.done {
            return;
        }
        self.cancel.cancel();
        while !self.done {
            match self.events.recv() {
                Ok(Event::Chunk(chunk)) => self.done = chunk.finish_reason.is_some(),
                Ok(Event::Error(_)) | Err(_) => self.done = true,
            }
        }
    }

    /// Waits for the next chunk; `None` once the stream has ended.
    pub fn next_chunk(&mut self) -> Option<Result<Chunk>> {
        loop {
            match self.poll(Duration::from_secs(3600)) {
                Ok(Poll::Chunk(chunk)) => return Some(Ok(chunk)),
                Ok(Poll::Pending) => continue,
                Ok(Poll::Finished) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Waits at most `timeout` for the next chunk (bindings use this to stay interruptible).
    pub fn poll(&mut self, timeout: Duration) -> Result<Poll> {
        if self.done {
            return Ok(Poll::Finished);
        }
        match self.events.recv_timeout(timeout) {
            Ok(Event::Chunk(mut chunk)) => {
                if chunk.finish_reason.is_some() {
                    self.done = true;
                }
                // Reasoning first: tool calls are part of the answer.
                if let Some(splitter) = &mut self.reasoning {
                    let (mut reasoning, mut answer) = splitter.push(&chunk.text);
                    if chunk.finish_reason.is_some() {
                        let (r, a) = splitter.finish();
                        reasoning.push_str(&r);
                        answer.push_str(&a);
                    }
                    chunk.reasoning = reasoning;
                    chunk.text = answer;
                }
                if let Some(parser) = &mut self.tool_parser {
                    let (text, mut deltas) = parser.push(&chunk.text);
                    chunk.text = text;
                    if chunk.finish_reason.is_some() {
                        let (rest, more, calls) = parser.finish();
                        chunk.text.push_str(&rest);
                        deltas.extend(more);
                        if !calls.is_empty() && chunk.finish_reason == Some(FinishReason::Stop) {
                            chunk.finish_reason = Some(FinishReason::ToolCalls);
                        }
                        self.tool_calls = calls;
                    }
                    chunk.tool_calls = deltas;
                }
                Ok(Poll::Chunk(chunk))
            }
            Ok(Event::Error(e)) => {
                self.done = true;
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => Ok(Poll::Pending),
            Err(RecvTimeoutError::Disconnected) => {
                self.done = true;
                Err(Error::closed())
            }
        }
    }

    /// Consumes the stream into one result.
    pub fn collect_completion(mut self) -> Result<Completion> {
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut tokens = Vec::new();
        let mut logprobs = Vec::new();
        while let Some(chunk) = self.next_chunk() {
            let chunk = chunk?;
            text.push_str(&chunk.text);
            reasoning.push_str(&chunk.reasoning);
            tokens.extend_from_slice(&chunk.tokens);
            logprobs.extend(chunk.logprobs);
            if let Some(finish_reason) = chunk.finish_reason {
                let tool_calls = std::mem::take(&mut self.tool_calls);
                return Ok(Completion {
                    text,
                    tokens,
                    finish_reason,
                    usage: chunk.usage.unwrap_or_default(),
                    logprobs,
                    tool_calls,
                    reasoning,
                });
            }
        }
        Err(Error::internal("the stream ended without a final chunk"))
    }
}

impl Iterator for Stream {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.done {
            self.cancel.cancel();
        }
    }
}

/// Turns token bytes into text that is always complete UTF-8: an incomplete trailing character
/// is held back until the next token completes it; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub(crate) struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: the prefix up to `valid` is valid UTF-8 by definition.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        None => {
                            // Incomplete character at the end: keep it for the next token.
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is held back at the end of generation, with invalid bytes replaced.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

/// Holds back text that might be the start of a stop string, and cuts the output at the first
/// complete stop string.
#[derive(Debug, Default)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher { stops, pending: String::new() }
    }

    /// Returns the text that is safe to emit, and whether a stop string was found.
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.pending.push_str(text);
        let first_stop = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min();
        if let Some(at) = first_stop {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a prefix of some stop string.
        let keep_from = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let suffix = &self.pending[i..];
                self.stops.iter().any(|s| s.starts_with(suffix))
            })
            .unwrap_or(self.pending.len());
        let out = self.pending[..keep_from].to_string();
        self.pending.drain(..keep_from);
        (out, false)
    }

    /// Text held back when generation ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_decoder_holds_back_split_characters() {
        let mut d = Utf8Decoder::default();
        let bytes = "a😀b".as_bytes();
        assert_eq!(d.push(&bytes[..2]), "a");
        assert_eq!(d.push(&bytes[2..4]), "");
        assert_eq!(d.push(&bytes[4..]), "😀b");
        assert_eq!(d.push(&[0xff, b'x']), "\u{FFFD}x");
        assert_eq!(d.push(&[0xe4]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }

    #[test]
    fn stop_matcher_matches_across_pushes_and_never_emits_the_stop() {
        let mut m = StopMatcher::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(m.push("hello E"), ("hello ".into(), false));
        assert_eq!(m.push("N"), ("".into(), false));
        assert_eq!(m.push("X then"), ("ENX then".into(), false));
        assert_eq!(m.push(" more\n"), (" more".into(), false));
        assert_eq!(m.push("\nafter"), ("".into(), true));
        let mut m = StopMatcher::new(vec!["é!".into()]);
        assert_eq!(m.push("caf"), ("caf".into(), false));
        assert_eq!(m.push("é"), ("".into(), false));
        assert_eq!(m.finish(), "é");
    }
}
