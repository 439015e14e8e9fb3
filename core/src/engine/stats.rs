//! What an engine counts over its life: requests, prompt, cached and generated tokens,
//! pre-emptions (`Model::stats()` in every language).

use std::sync::atomic::{AtomicU64, Ordering};

/// Totals over the life of a model's engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub requests: u64,
    /// Prompt tokens of all requests.
    pub prompt_tokens: u64,
    /// Prompt tokens reused from sessions or the prefix cache (cache hits).
    pub cached_tokens: u64,
    pub generated_tokens: u64,
    /// Generation decodes stopped part-way so that a new request's prompt went first
    /// (their tokens were decoded again right after).
    pub preemptions: u64,
}

#[derive(Default)]
pub(crate) struct StatsCounters {
    pub(super) requests: AtomicU64,
    pub(super) prompt_tokens: AtomicU64,
    pub(super) cached_tokens: AtomicU64,
    pub(super) generated_tokens: AtomicU64,
    pub(super) preemptions: AtomicU64,
}

impl StatsCounters {
    pub fn snapshot(&self) -> EngineStats {
        EngineStats {
            requests: self.requests.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            cached_tokens: self.cached_tokens.load(Ordering::Relaxed),
            generated_tokens: self.generated_tokens.load(Ordering::Relaxed),
            preemptions: self.preemptions.load(Ordering::Relaxed),
        }
    }
}
