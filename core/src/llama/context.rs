//! The llama context and batch an engine owns, created and driven through llama-cpp-sys-2.
//!
//! llama-cpp-2 keeps a context's pointer private and has no abort-callback setter; corral needs
//! both (pre-emption stops a decode through the abort callback, and the first decode at load
//! runs guarded against llama.cpp's asserts). So the engine makes its context itself, with the
//! callback in the creation parameters, and this module is the one place that handles the raw
//! pointers. The model itself stays llama-cpp-2's `LlamaModel`.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr::NonNull;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_sys_2 as sys;

use crate::error::{Error, ErrorKind, Result};

/// The `llama_model` behind `model`. llama-cpp-2 (pinned) declares `LlamaModel` as
/// `#[repr(transparent)]` over its non-null model pointer (itself a transparent wrapper of
/// `NonNull`), so the pointer is the model's whole layout.
pub(crate) fn raw_model(model: &LlamaModel) -> *mut sys::llama_model {
    // SAFETY: see above: a `LlamaModel` is exactly one non-null `*mut llama_model`.
    unsafe { *(model as *const LlamaModel).cast::<*mut sys::llama_model>() }
}

/// llama.cpp's flash-attention setting for corral's option (`None`: llama.cpp decides).
pub(crate) fn flash_attention_policy(flash_attention: Option<bool>) -> sys::llama_flash_attn_type {
    match flash_attention {
        None => sys::LLAMA_FLASH_ATTN_TYPE_AUTO,
        Some(true) => sys::LLAMA_FLASH_ATTN_TYPE_ENABLED,
        Some(false) => sys::LLAMA_FLASH_ATTN_TYPE_DISABLED,
    }
}

/// A context's size and compute settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContextSize {
    pub n_ctx: u32,
    /// Most tokens one decode takes.
    pub batch_size: u32,
    pub max_sequences: u32,
    pub threads: u32,
    pub flash_attention: Option<bool>,
}

/// How to make a context.
pub(crate) struct ContextConfig {
    pub size: ContextSize,
    /// Tokens per micro-batch (`None`: `batch_size`, at most 512).
    pub ubatch_size: Option<u32>,
    /// Pooled embeddings instead of logits, with this pooling (`None`: a generation context).
    pub pooling: Option<sys::llama_pooling_type>,
    /// llama.cpp calls this between graph operations; `true` stops the decode.
    pub abort: Option<(unsafe extern "C" fn(*mut c_void) -> bool, *mut c_void)>,
    /// Decode with llama.cpp's asserts caught (src/llama/guard.rs), with any number of
    /// threads: for a model with layers on RPC workers, where a lost worker raises on the
    /// calling thread between graph splits, while the CPU's worker threads are idle.
    pub guarded: bool,
}

/// llama.cpp's parameters for a context made as `config` says.
pub(crate) fn context_params(config: &ContextConfig) -> sys::llama_context_params {
    // SAFETY: plain data.
    let mut params = unsafe { sys::llama_context_default_params() };
    let size = &config.size;
    params.n_ctx = size.n_ctx;
    params.n_batch = size.batch_size;
    params.n_ubatch = config.ubatch_size.unwrap_or(size.batch_size.min(512));
    params.n_seq_max = size.max_sequences;
    params.kv_unified = true;
    params.n_threads = size.threads as i32;
    params.n_threads_batch = size.threads as i32;
    params.flash_attn_type = flash_attention_policy(size.flash_attention);
    if let Some(pooling) = config.pooling {
        params.embeddings = true;
        params.pooling_type = pooling;
    }
    if let Some((callback, data)) = config.abort {
        params.abort_callback = Some(callback);
        params.abort_callback_data = data;
    }
    params
}

/// Creates a llama context; llama.cpp's asserts while it builds the graphs (from the file's
/// shapes) become `invalid_model`. The caller frees it.
///
/// # Safety
/// `model` is a live llama model.
pub(crate) unsafe fn create_raw(model: *mut sys::llama_model, params: sys::llama_context_params) -> Result<NonNull<sys::llama_context>> {
    // Creating contexts concurrently is unsound (llama.cpp mutates the model meanwhile).
    let _guard = crate::backend::CONTEXT_CREATION.lock().unwrap_or_else(|e| e.into_inner());
    crate::log::clear_last_llama_error();
    // SAFETY: a live model (the caller's promise); llama.cpp copies the parameters.
    let raw = crate::llama::guard::catching_asserts(|| unsafe { sys::llama_init_from_model(model, params) });
    NonNull::new(raw).ok_or_else(|| {
        if let Some(assert) = crate::llama::guard::take_assert_message() {
            return Error::new(ErrorKind::InvalidModel, format!("llama.cpp rejects this model's shapes: {assert}"));
        }
        let detail = crate::log::take_last_llama_error().unwrap_or_else(|| "llama_init_from_model failed".into());
        Error::new(ErrorKind::Internal, format!("cannot create a llama context: {detail}"))
    })
}

/// Why a decode did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeFailure {
    /// No room in the KV cache for the batch (llama_decode returned 1).
    NoKvSlot,
    /// Stopped by the abort callback (2): llama.cpp removed the stopped ubatch's cells.
    Aborted,
    /// Any other failure, with llama_decode's return value.
    Failed(i32),
    /// A guarded decode raised (`Context::decode_error` says why): the context never decodes
    /// again.
    Broken,
}

impl std::fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeFailure::NoKvSlot => write!(f, "no KV cache slot for the batch"),
            DecodeFailure::Aborted => write!(f, "the decode was stopped"),
            DecodeFailure::Failed(code) => write!(f, "llama_decode returned {code}"),
            DecodeFailure::Broken => write!(f, "llama.cpp failed during a decode"),
        }
    }
}

/// A llama context over a model it borrows. Not `Sync`, and only ever used by its engine's
/// thread.
pub(crate) struct Context<'m> {
    raw: NonNull<sys::llama_context>,
    n_vocab: usize,
    guarded: bool,
    /// Why a guarded decode raised, once one has.
    broken: Option<String>,
    /// The worker threads of every decode (None: ggml starts and joins them each time).
    _thread_pool: Option<ThreadPool>,
    _model: PhantomData<&'m LlamaModel>,
}

/// A context's own ggml worker threads. Without one, ggml creates and joins `threads - 1`
/// threads for every graph: every generated token, with fresh stacks and thread-local buffers
/// (the kernels' scratch, malloc arenas). The workers sleep between decodes (polling level 0)
/// instead of spinning: the cores they would spin on may be lent to another engine or process
/// meanwhile (engine/cores.rs).
struct ThreadPool {
    raw: NonNull<sys::ggml_threadpool>,
    free: unsafe extern "C" fn(*mut sys::ggml_threadpool),
}

impl ThreadPool {
    /// A pool of `threads`, from the loaded CPU backend (its variant's entry points); None where
    /// there is nothing to gain (one thread) or the backend lacks them.
    fn new(threads: u32) -> Option<ThreadPool> {
        if threads < 2 {
            return None;
        }
        let reg = crate::backend::cpu_registration();
        let proc = |name: &std::ffi::CStr| crate::backend::proc_address(reg, name);
        let (Some(new), Some(free)) = (proc(c"ggml_threadpool_new"), proc(c"ggml_threadpool_free")) else {
            return None;
        };
        // SAFETY: the CPU backend's exports under these names, with ggml-cpu.h's signatures.
        let (new, free) = unsafe {
            (
                std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut sys::ggml_threadpool_params) -> *mut sys::ggml_threadpool>(
                    new,
                ),
                std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut sys::ggml_threadpool)>(free),
            )
        };
        // SAFETY: plain data.
        let mut params = unsafe { sys::ggml_threadpool_params_default(threads as i32) };
        params.poll = 0;
        // SAFETY: valid parameters; null when the threads cannot be started.
        let raw = NonNull::new(unsafe { new(&mut params) })?;
        Some(ThreadPool { raw, free })
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        // SAFETY: made by this backend's ggml_threadpool_new, freed once, after its context.
        unsafe { (self.free)(self.raw.as_ptr()) }
    }
}

impl<'m> Context<'m> {
    /// Creates a context with one unified KV cache shared by `max_sequences` sequences.
    /// llama.cpp's asserts while it builds the graphs (from the file's shapes) become
    /// `invalid_model`.
    pub(crate) fn new(model: &'m LlamaModel, config: &ContextConfig) -> Result<Self> {
        crate::backend::backend()?;
        // SAFETY: a live model.
        let raw = unsafe { create_raw(raw_model(model), context_params(config))? };
        let n_vocab = model.vocab().n_tokens().max(0) as usize;
        let thread_pool = ThreadPool::new(config.size.threads);
        if let Some(pool) = &thread_pool {
            // SAFETY: a live context and pool; the pool outlives the context (Drop).
            unsafe { sys::llama_attach_threadpool(raw.as_ptr(), pool.raw.as_ptr(), std::ptr::null_mut()) };
        }
        Ok(Context { raw, n_vocab, guarded: config.guarded, broken: None, _thread_pool: thread_pool, _model: PhantomData })
    }

    pub(crate) fn raw(&self) -> *mut sys::llama_context {
        self.raw.as_ptr()
    }

    /// The KV cache size in tokens (llama.cpp may round the requested size up).
    pub(crate) fn n_ctx(&self) -> u32 {
        // SAFETY: a live context.
        unsafe { sys::llama_n_ctx(self.raw()) }
    }

    pub(crate) fn n_ubatch(&self) -> u32 {
        // SAFETY: a live context.
        unsafe { sys::llama_n_ubatch(self.raw()) }
    }

    pub(crate) fn set_threads(&mut self, threads: u32) {
        // SAFETY: a live context.
        unsafe { sys::llama_set_n_threads(self.raw(), threads as i32, threads as i32) }
    }

    pub(crate) fn decode(&mut self, batch: &Batch) -> std::result::Result<(), DecodeFailure> {
        if self.broken.is_some() {
            return Err(DecodeFailure::Broken);
        }
        let returned = if self.guarded {
            // SAFETY: a live context used by this thread only, and a batch whose first
            // n_tokens entries are filled.
            match unsafe { crate::llama::guard::decode(self.raw(), &batch.raw) } {
                crate::llama::guard::GuardedDecode::Returned(code) => code,
                crate::llama::guard::GuardedDecode::Asserted(message) => {
                    self.broken = Some(message);
                    return Err(DecodeFailure::Broken);
                }
            }
        } else {
            // SAFETY: a live context and a batch whose first n_tokens entries are filled.
            unsafe { sys::llama_decode(self.raw(), batch.raw) }
        };
        match returned {
            0 => Ok(()),
            1 => Err(DecodeFailure::NoKvSlot),
            2 => Err(DecodeFailure::Aborted),
            code => Err(DecodeFailure::Failed(code)),
        }
    }

    /// Fails, and the context stays failed, once a guarded decode raised or (for a model with
    /// layers on RPC workers) a worker is found lost; for other models, always `Ok`. Before
    /// llama.cpp's state functions, which synchronize outside their own catch.
    pub(crate) fn check_workers(&mut self) -> Result<()> {
        if self.broken.is_none() && self.guarded {
            // SAFETY: a live context used by this thread only.
            if let Err(message) = unsafe { crate::llama::guard::synchronize(self.raw()) } {
                self.broken = Some(message);
            }
        }
        match self.broken {
            Some(_) => Err(self.decode_error(DecodeFailure::Broken)),
            None => Ok(()),
        }
    }

    /// The error of the requests of a failed decode: once a guarded decode raised,
    /// `worker_unavailable` for a lost RPC worker; else `decode_failed` with llama.cpp's reason.
    pub(crate) fn decode_error(&self, failure: DecodeFailure) -> Error {
        if let Some(message) = &self.broken {
            return match crate::backend::rpc::lost_worker(message) {
                Some(endpoint) => crate::backend::rpc::lost_error(endpoint),
                None => {
                    Error::new(ErrorKind::DecodeFailed, format!("llama.cpp failed during a decode; this model cannot run again: {message}"))
                }
            };
        }
        let detail = crate::log::take_last_llama_error().unwrap_or_else(|| failure.to_string());
        Error::new(ErrorKind::DecodeFailed, format!("llama_decode failed: {detail}"))
    }

    /// The logits of the batch entry `index` of the last decode (which asked for them); empty
    /// when llama.cpp has none.
    pub(crate) fn logits(&self, index: i32) -> &[f32] {
        // SAFETY: a live context; llama.cpp returns n_vocab floats or null.
        let logits = unsafe { sys::llama_get_logits_ith(self.raw(), index) };
        if logits.is_null() {
            return &[];
        }
        // SAFETY: n_vocab floats, valid until the next decode (which needs `&mut self`).
        unsafe { std::slice::from_raw_parts(logits, self.n_vocab) }
    }

    /// The pooled output of sequence `seq` of the last decode (`len` values: the embedding, or
    /// the rank head's scores); `None` when llama.cpp has none.
    pub(crate) fn pooled(&self, seq: i32, len: usize) -> Option<&[f32]> {
        // SAFETY: a live context; llama.cpp returns the sequence's pooled output or null.
        let values = unsafe { sys::llama_get_embeddings_seq(self.raw(), seq) };
        // SAFETY: `len` floats (n_embd_out, or n_cls_out for rank pooling), valid until the
        // next decode (which needs `&mut self`).
        (!values.is_null()).then(|| unsafe { std::slice::from_raw_parts(values, len) })
    }

    fn memory(&self) -> sys::llama_memory_t {
        // SAFETY: a live context.
        unsafe { sys::llama_get_memory(self.raw()) }
    }

    /// Removes sequence `seq`'s cells at positions `from..to` (`None`: from the start, to the
    /// end). False when the model's memory cannot remove part of a sequence (recurrent state).
    pub(crate) fn remove(&mut self, seq: i32, from: Option<u32>, to: Option<u32>) -> bool {
        let position = |p: Option<u32>| p.map_or(-1, |p| p.min(i32::MAX as u32) as i32);
        // SAFETY: a live context's memory.
        unsafe { sys::llama_memory_seq_rm(self.memory(), seq, position(from), position(to)) }
    }

    /// Copies sequence `source`'s cells at positions `0..len` to sequence `target`.
    pub(crate) fn copy(&mut self, source: i32, target: i32, len: u32) {
        // SAFETY: a live context's memory.
        unsafe { sys::llama_memory_seq_cp(self.memory(), source, target, 0, len.min(i32::MAX as u32) as i32) }
    }

    /// Empties the whole KV cache.
    pub(crate) fn clear(&mut self) {
        // SAFETY: a live context's memory.
        unsafe { sys::llama_memory_clear(self.memory(), true) }
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: created by llama_init_from_model, freed once. The thread pool, a field, is
        // freed after this.
        unsafe { sys::llama_free(self.raw()) }
    }
}

/// The tokens of one decode, each in one sequence.
pub(crate) struct Batch {
    raw: sys::llama_batch,
    capacity: usize,
}

// SAFETY: the batch owns its arrays; it moves to the engine thread and stays there.
unsafe impl Send for Batch {}

impl Batch {
    pub(crate) fn new(capacity: usize) -> Self {
        // SAFETY: allocates `capacity` entries of one sequence id each.
        let raw = unsafe { sys::llama_batch_init(capacity.max(1) as i32, 0, 1) };
        Batch { raw, capacity: capacity.max(1) }
    }

    pub(crate) fn raw(&self) -> &sys::llama_batch {
        &self.raw
    }

    pub(crate) fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.raw.n_tokens as usize
    }

    /// Adds `token` at `pos` of sequence `seq`; `logits`: compute its logits. False when full.
    pub(crate) fn add(&mut self, token: LlamaToken, pos: i32, seq: i32, logits: bool) -> bool {
        let i = self.len();
        if i >= self.capacity {
            return false;
        }
        // SAFETY: i < capacity, the size llama_batch_init allocated each array with.
        unsafe {
            *self.raw.token.add(i) = token.0;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = 1;
            *(*self.raw.seq_id.add(i)) = seq;
            *self.raw.logits.add(i) = logits as i8;
        }
        self.raw.n_tokens += 1;
        true
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init, freed once.
        unsafe { sys::llama_batch_free(self.raw) }
    }
}
