//! A session's sequence taken out of the KV cache (`Session::state`) and put back into one
//! (`Model::session_from_state`): its tokens and llama.cpp's bytes for their cells. The file
//! format and its checks live in `crate::state`; here the engine reads and writes its context.

use llama_cpp_2::token::LlamaToken;
use llama_cpp_sys_2 as sys;

use super::Engine;
use crate::error::{Error, ErrorKind, Result};

/// A sequence's tokens and llama.cpp's bytes for their KV cells.
pub(crate) struct SequenceState {
    pub tokens: Vec<LlamaToken>,
    pub data: Vec<u8>,
    /// The key of the adapter set the cells were computed with (crate::adapter).
    pub adapters: String,
}

impl Engine<'_> {
    /// The state of the session's most recently used idle sequence.
    pub(super) fn save_session(&mut self, session: u64) -> Result<SequenceState> {
        if self.slots.iter().any(|s| s.owner == Some(session) && s.active.is_some()) {
            return Err(Error::new(ErrorKind::Busy, "the session is generating: save it between calls"));
        }
        let Some(slot) = self.slots.iter().filter(|s| s.owner == Some(session)).max_by_key(|s| s.last_used) else {
            // Nothing evaluated yet (or the cache was cleared): an empty state.
            return Ok(SequenceState { tokens: Vec::new(), data: Vec::new(), adapters: String::new() });
        };
        if slot.cached.is_empty() {
            return Ok(SequenceState { tokens: Vec::new(), data: Vec::new(), adapters: String::new() });
        }
        let (seq, tokens, adapters) = (slot.seq_id, slot.cached.clone(), slot.adapters.clone());
        self.ctx.check_workers()?;
        let ctx = self.ctx.raw();
        // SAFETY: this engine's live context, used by this thread only.
        let size = unsafe { sys::llama_state_seq_get_size(ctx, seq) };
        let mut data = vec![0u8; size];
        // SAFETY: `data` holds `size` bytes, what llama.cpp asked for. Asserts (a worker lost
        // meanwhile) become exceptions, which llama_state_seq_get_data catches.
        let written =
            crate::llama::guard::catching_asserts(|| unsafe { sys::llama_state_seq_get_data(ctx, data.as_mut_ptr(), data.len(), seq) });
        if written == 0 || written > size {
            return Err(Error::internal("llama.cpp could not write the session's KV cache"));
        }
        data.truncate(written);
        Ok(SequenceState { tokens, data, adapters })
    }

    /// Puts a saved sequence on a free sequence owned by `session`. llama.cpp checks the bytes
    /// (and returns 0 for anything it cannot read, its asserts caught); then the cells it
    /// restored must be exactly the saved tokens' positions.
    pub(super) fn restore_session(&mut self, session: u64, state: SequenceState) -> Result<()> {
        if state.tokens.is_empty() {
            return Ok(());
        }
        let Some(target) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_none())
            .max_by_key(|(_, s)| (s.owner.is_none(), std::cmp::Reverse(s.last_used)))
            .map(|(i, _)| i)
        else {
            return Err(Error::new(ErrorKind::Busy, "no free sequence to restore the session on"));
        };
        let seq = self.slots[target].seq_id;
        self.ctx.remove(seq, None, None);
        self.slots[target].cached.clear();
        self.slots[target].owner = None;
        // Make room: the restored cells need as many free cells as tokens. Idle sequences give
        // up their cache, least recently used first, as under KV pressure.
        while self.slots.iter().map(|s| s.cached.len()).sum::<usize>() + state.tokens.len() > self.n_ctx {
            let Some(victim) = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, s)| *i != target && s.active.is_none() && !s.cached.is_empty())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i)
            else {
                return Err(Error::new(
                    ErrorKind::ContextOverflow,
                    format!("the KV cache has no room for the session's {} tokens while other requests run", state.tokens.len()),
                ));
            };
            let victim_seq = self.slots[victim].seq_id;
            self.ctx.remove(victim_seq, None, None);
            self.slots[victim].cached.clear();
        }
        self.ctx.check_workers()?;
        let ctx = self.ctx.raw();
        crate::log::clear_last_llama_error();
        // SAFETY: this engine's live context, used by this thread only; `data` is read within
        // its length. Asserts become exceptions, which llama_state_seq_set_data catches.
        let read = crate::llama::guard::catching_asserts(|| unsafe {
            sys::llama_state_seq_set_data(ctx, state.data.as_ptr(), state.data.len(), seq)
        });
        // SAFETY: as above.
        let restored_up_to = unsafe { sys::llama_memory_seq_pos_max(sys::llama_get_memory(ctx), seq) };
        if read == 0 || read != state.data.len() || restored_up_to + 1 != state.tokens.len() as i32 {
            self.ctx.remove(seq, None, None);
            let detail = crate::log::take_last_llama_error().unwrap_or_else(|| "its cells do not match its tokens".into());
            return Err(Error::new(ErrorKind::InvalidState, format!("llama.cpp cannot restore this session state: {detail}")));
        }
        let slot = &mut self.slots[target];
        slot.cached = state.tokens;
        slot.adapters = state.adapters;
        slot.owner = Some(session);
        slot.last_used = std::time::Instant::now();
        Ok(())
    }
}
