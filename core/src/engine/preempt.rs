//! Pre-emption: a request that arrives while the engine decodes the next token of running
//! sequences stops that decode, so that its prompt goes first instead of waiting the decode out.
//!
//! llama.cpp checks an abort callback between the nodes of the graph it computes (CPU backend,
//! every few microseconds). When the callback says stop, `llama_decode` returns 2 and removes the
//! aborted ubatch's positions from the KV cache, so the cache is as before the call. The engine
//! then decodes the new prompt and afterwards the same generation tokens again. The decode that
//! runs to the end is the one that counts; its tokens may land in other cells than the stopped
//! one's (the new prompt takes the freed ones), which moves results only as batching does
//! (README, "Concurrency and numerics").
//!
//! Only the CPU backend checks the callback: decodes fully offloaded to a GPU are not stopped.
//!
//! Only decodes of generation tokens alone are armed (prompt chunks are too costly to redo), only
//! when the arriving request can start at once, and never twice in a row, so a stream of arrivals
//! cannot starve running sequences. Models with recurrent state are never armed: llama.cpp can
//! roll back KV cells, not a recurrent state already advanced.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Shared by a model's submitters and its engine thread. Requests are counted, not flagged, so
/// that one sent just before the engine arms still stops the decode, and one the engine already
/// took does not stop a later one.
#[derive(Debug, Default)]
pub(crate) struct Preemption {
    /// Generate commands sent to the engine (counted after the send).
    submitted: AtomicU64,
    /// Generate commands the engine has taken from its channel (engine thread only).
    taken: AtomicU64,
    armed: AtomicBool,
    fired: AtomicBool,
}

impl Preemption {
    /// A Generate command is in the engine's channel.
    pub fn submitted(&self) {
        self.submitted.fetch_add(1, Ordering::SeqCst);
    }

    /// The engine took a Generate command from its channel.
    pub fn taken(&self) {
        self.taken.fetch_add(1, Ordering::Relaxed);
    }

    /// The engine is about to run a decode that may be stopped.
    pub fn arm(&self) {
        self.fired.store(false, Ordering::Relaxed);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// The decode returned (on the thread that ran it): whether it was told to stop.
    pub fn disarm(&self) -> bool {
        self.armed.store(false, Ordering::SeqCst);
        // `should_abort` quieted llama.cpp's report of the stop on this thread; it is over.
        crate::log::quiet_llama_on_this_thread(false);
        self.fired.swap(false, Ordering::Relaxed)
    }

    /// Armed, and a request waits in the channel.
    fn stop_requested(&self) -> bool {
        let stop = self.armed.load(Ordering::Relaxed) && self.submitted.load(Ordering::SeqCst) > self.taken.load(Ordering::Relaxed);
        if stop {
            self.fired.store(true, Ordering::Relaxed);
        }
        stop
    }
}

/// llama.cpp calls this on the decoding thread between graph nodes; `true` stops the decode.
unsafe extern "C" fn should_abort(data: *mut c_void) -> bool {
    // SAFETY: `data` is the `Preemption` given with `abort_callback`; the engine keeps that Arc
    // alive for as long as the context exists.
    let preemption = unsafe { &*(data as *const Preemption) };
    let stop = preemption.stop_requested();
    if stop {
        // llama.cpp logs the abort and the rollback as errors and warnings: expected here.
        crate::log::quiet_llama_on_this_thread(true);
    }
    stop
}

/// The abort callback and its data for a context that `preemption` may stop (given at the
/// context's creation, `llama/context.rs`). The `Arc` must outlive the context.
pub(crate) fn abort_callback(preemption: &Arc<Preemption>) -> (unsafe extern "C" fn(*mut c_void) -> bool, *mut c_void) {
    (should_abort, Arc::as_ptr(preemption) as *mut c_void)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::context::{Batch, Context, ContextConfig, ContextSize, DecodeFailure};
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::token::LlamaToken;

    fn test_model() -> LlamaModel {
        let path = std::env::var_os("CORRAL_TEST_MODEL")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf"));
        LlamaModel::load_from_file(crate::backend::backend().unwrap(), path, &LlamaModelParams::default()).unwrap()
    }

    fn context<'m>(model: &'m LlamaModel, preemption: Option<&Arc<Preemption>>) -> Context<'m> {
        let config = ContextConfig {
            size: ContextSize { n_ctx: 512, batch_size: 512, max_sequences: 1, threads: 2, flash_attention: None },
            ubatch_size: None,
            pooling: None,
            abort: preemption.map(abort_callback),
            guarded: false,
        };
        Context::new(model, &config).unwrap()
    }

    fn decode(ctx: &mut Context<'_>, tokens: &[LlamaToken], first_pos: i32) -> Result<Vec<f32>, DecodeFailure> {
        let mut batch = Batch::new(64);
        for (i, &t) in tokens.iter().enumerate() {
            assert!(batch.add(t, first_pos + i as i32, 0, i + 1 == tokens.len()));
        }
        ctx.decode(&batch)?;
        Ok(ctx.logits(tokens.len() as i32 - 1).to_vec())
    }

    fn tokens(model: &LlamaModel, text: &str, bos: bool) -> Vec<LlamaToken> {
        crate::llama::vocab::tokenize(model, text, bos, false).unwrap()
    }

    /// A stopped decode leaves the context as before it: decoding the same token afterwards
    /// gives the logits of a context that was never stopped, bit for bit.
    #[test]
    fn a_stopped_decode_is_rolled_back_and_can_be_repeated() {
        let model = test_model();
        let prompt = tokens(&model, "The capital of France is", true);
        let next = tokens(&model, " Paris", false);
        let at = prompt.len() as i32;

        let mut plain = context(&model, None);
        decode(&mut plain, &prompt, 0).unwrap();
        let expected = decode(&mut plain, &next, at).unwrap();

        let preemption = Arc::new(Preemption::default());
        let mut ctx = context(&model, Some(&preemption));
        decode(&mut ctx, &prompt, 0).unwrap();
        preemption.submitted();
        preemption.arm();
        let stopped = decode(&mut ctx, &next, at);
        assert_eq!(stopped, Err(DecodeFailure::Aborted));
        assert!(preemption.disarm());
        preemption.taken();
        // Not armed: runs to the end, at the same position (a cell left behind would clash).
        assert_eq!(decode(&mut ctx, &next, at).unwrap(), expected);
    }

    #[test]
    fn a_waiting_request_stops_only_an_armed_decode() {
        let p = Preemption::default();
        p.submitted();
        assert!(!p.stop_requested(), "not armed");
        p.arm();
        assert!(p.stop_requested(), "sent before the decode, not yet taken: stops it");
        assert!(p.disarm());
        assert!(!p.disarm(), "disarming resets");
        p.taken();
        p.arm();
        assert!(!p.stop_requested(), "taken already: nothing waits");
        assert!(!p.disarm());
        // Taken before its sender counted it: no stop for it, then or later.
        p.taken();
        p.arm();
        assert!(!p.stop_requested());
        p.submitted();
        assert!(!p.stop_requested());
        p.submitted();
        assert!(p.stop_requested(), "a new one waits");
        assert!(p.disarm());
    }
}
