//! Scoring: the log-probability of each token of a given text (`Model::score`), computed on a
//! free sequence in chunks between generation steps.

use super::{log_softmax_at, Engine, ScoreRequest};
use crate::error::{Error, ErrorKind, Result};
use crate::llama::context::DecodeFailure;

impl Engine<'_> {
    /// Scores a token sequence: log-probability of each token given those before it.
    pub(super) fn score(&mut self, req: &ScoreRequest) -> Result<Vec<f32>> {
        let tokens = &req.tokens;
        if tokens.len() > self.n_ctx {
            return Err(Error::new(
                ErrorKind::ContextOverflow,
                format!("{} tokens do not fit in the context of {} tokens", tokens.len(), self.n_ctx),
            ));
        }
        let Some(target) = self.slots.iter().position(|s| s.active.is_none()) else {
            return Err(Error::new(ErrorKind::Busy, "no free sequence to score on"));
        };
        // Scores are the base model's.
        self.wanted = std::sync::Arc::default();
        let seq = self.slots[target].seq_id;
        self.ctx.remove(seq, None, None);
        self.slots[target].cached.clear();
        self.slots[target].owner = None;
        let mut logprobs = Vec::with_capacity(tokens.len().saturating_sub(1));
        let chunk = self.batch_size.min(128);
        let mut start = 0;
        while start + 1 < tokens.len() {
            if req.cancel.is_cancelled() {
                self.ctx.remove(seq, None, None);
                return Err(Error::new(ErrorKind::Cancelled, "scoring was cancelled"));
            }
            let end = (start + chunk).min(tokens.len() - 1);
            self.batch.clear();
            for (p, &t) in tokens.iter().enumerate().take(end).skip(start) {
                if !self.batch.add(t, p as i32, seq, true) {
                    return Err(Error::internal("the scoring chunk does not fit the batch"));
                }
            }
            if let Err(e) = self.decode_batch() {
                self.ctx.remove(seq, None, None);
                return Err(match e {
                    DecodeFailure::NoKvSlot => Error::new(ErrorKind::ContextOverflow, format!("llama_decode failed: {e}")),
                    _ => self.ctx.decode_error(e),
                });
            }
            for (k, p) in (start..end).enumerate() {
                let logits = self.ctx.logits(k as i32);
                logprobs.push(log_softmax_at(logits, tokens[p + 1].0 as usize));
            }
            start = end;
        }
        self.ctx.remove(seq, None, None);
        Ok(logprobs)
    }
}
