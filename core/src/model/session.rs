//! Sessions: conversations that keep their KV cache between calls.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::chat::Message;
use crate::error::{Error, Result};
use crate::model::{generate_shorthands, Model, Prompt};
use crate::options::GenerateOptions;
use crate::stream::{Completion, Stream};

/// A conversation bound to one engine sequence while it lives. Each call passes the whole
/// prompt (or the whole message list); the tokens it shares with what the session already
/// evaluated are reused, so a multi-turn chat only processes the new turn. Safe to share:
/// concurrent calls on one session simply run on separate sequences.
pub struct Session {
    model: Model,
    id: u64,
    closed: AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).field("closed", &self.is_closed()).finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(model: Model, id: u64) -> Self {
        Session { model, id, closed: AtomicBool::new(false) }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(crate::ErrorKind::Closed, "the session has been closed"));
        }
        Ok(())
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Streams the output for a prompt (text, token ids or the whole conversation so far),
    /// reusing what this session evaluated before.
    pub fn generate_stream<'a>(&self, prompt: impl Into<Prompt<'a>>, options: &GenerateOptions) -> Result<Stream> {
        self.check()?;
        self.model.submit_prompt(prompt.into(), options, Some(self.id), true)
    }

    /// The whole output for a prompt, reusing what this session evaluated before.
    pub fn generate<'a>(&self, prompt: impl Into<Prompt<'a>>, options: &GenerateOptions) -> Result<Completion> {
        self.check()?;
        self.model.submit_prompt(prompt.into(), options, Some(self.id), false)?.collect_completion()
    }

    generate_shorthands!();

    /// Releases the session's sequence for other requests. Idempotent.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.model.release_session(self.id);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}
