//! Fit before loading: what a model will take in memory with given load options, worked out
//! by llama.cpp itself without reading a weight, and whether that fits in the memory left to
//! this process.
//!
//! llama.cpp can load a model with `no_alloc`: it reads the metadata and places every tensor
//! in its buffer type (plain CPU, mapped from the file, or a buffer the CPU backend repacks
//! for its kernels) but allocates nothing, and a context on such a model sizes its KV cache and
//! reserves its compute graphs the same way. `Model::load` runs this first: options that
//! cannot fit fail with `insufficient_memory` before anything is allocated, and
//! `auto_context_length` picks the largest context that fits.

mod available;

use std::ffi::CString;
use std::path::Path;
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use crate::error::{Error, ErrorKind, Result};
use crate::llama::context::{context_params, create_raw, ContextConfig, ContextSize};
use crate::model::gguf::GgufHeader;
use crate::options::ModelOptions;

/// What a model takes in memory with given load options (estimated, in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The context length (KV cache tokens) the figures are for: the one asked for, the
    /// default, or what `auto_context_length` picked.
    pub context_length: u32,
    /// The weights: the file's tensors, plus the copies the CPU backend repacks for its kernels.
    pub weights_bytes: u64,
    /// Of `weights_bytes`, what is mapped from the file (the kernel can page it back in from
    /// disk, so it does not count against the memory limit, though it is resident when in use).
    pub mapped_weights_bytes: u64,
    /// The KV cache for `context_length` tokens.
    pub kv_cache_bytes: u64,
    /// Compute buffers and the logits of one engine step.
    pub compute_bytes: u64,
    /// corral's and llama.cpp's own code and tables.
    pub overhead_bytes: u64,
    /// All of the above: the expected resident size of the loaded model.
    pub total_bytes: u64,
    /// Memory this process can still take (the tighter of its cgroup's limit and the machine's
    /// available memory); `None` where the system does not say.
    pub available_bytes: Option<u64>,
}

impl MemoryEstimate {
    /// What must fit in memory: everything but the mapped weights, which the kernel can drop
    /// and read again (slowly) when memory is short.
    pub fn required_bytes(&self) -> u64 {
        self.total_bytes - self.mapped_weights_bytes
    }

    /// Whether the required memory fits in what is available (true where nothing is known).
    pub fn fits(&self) -> bool {
        self.available_bytes.is_none_or(|available| self.required_bytes() <= available)
    }
}

/// The code of libllama, the CPU variant and corral, their tables and thread stacks: what a
/// process holding a small model has resident beyond llama.cpp's buffers (measured with the
/// default model; it does not grow with the model).
const OVERHEAD_BYTES: u64 = 40 << 20;

/// Contexts `auto_context_length` picks from are multiples of this (and at least this, unless
/// the model was trained on fewer tokens).
const AUTO_CONTEXT_STEP: u32 = 256;

/// Estimates what loading `path` with `options` takes, without loading its weights.
/// `auto_context_length` is resolved as `Model::load` would resolve it now.
pub fn estimate_memory(path: impl AsRef<Path>, options: &ModelOptions) -> Result<MemoryEstimate> {
    let path = path.as_ref();
    options.validate()?;
    if !options.rpc_servers.is_empty() {
        return Err(Error::invalid_argument("estimate_memory measures a model held in this process: it takes no rpc_servers"));
    }
    crate::model::check_file(path)?;
    let dry = DryModel::load(path, options)?;
    dry.plan(options, available::available_bytes())
}

/// Resolves the context length `Model::load` uses and checks that it fits, or fails with
/// `insufficient_memory`. The dry run costs about as much as reading the tokenizer (0.1 s for
/// the default model), so it is skipped where a generous bound from the metadata fits twice
/// over in the memory available.
pub(crate) fn plan_load(path: &Path, header: &GgufHeader, options: &ModelOptions) -> Result<u32> {
    let available = available::available_bytes();
    let trained = header
        .get_str("general.architecture")
        .and_then(|arch| header.get_u64(&format!("{arch}.context_length")))
        .map(|n| n.clamp(1, u64::from(crate::options::MAX_CONTEXT_LENGTH)) as u32);
    let wanted = match (options.auto_context_length, options.context_length, trained) {
        (true, _, Some(trained)) => Some(trained),
        (false, Some(n), _) => Some(n),
        (false, None, Some(trained)) => Some(crate::options::default_context_length(trained)),
        _ => None,
    };
    if !options.rpc_servers.is_empty() {
        // Most of the model lives on the RPC workers: this process's share is not measured.
        return Ok(wanted.unwrap_or_else(|| crate::options::default_context_length(u32::MAX)));
    }
    if let (Some(n_ctx), Some(available)) = (wanted, available) {
        if upper_bound(header, n_ctx, options).is_some_and(|bound| bound.saturating_mul(2) <= available) {
            return Ok(n_ctx);
        }
    }
    let dry = DryModel::load(path, options)?;
    let estimate = dry.plan(options, available)?;
    if !estimate.fits() {
        return Err(insufficient(path, &estimate));
    }
    Ok(estimate.context_length)
}

/// More than a load of `header`'s model with a context of `n_ctx` can take: the file twice
/// (mapped, and repacked copies), an f32 KV cache as wide as the widest layer, attention scores
/// for a whole micro-batch against the whole context, the widest activations, and the logits.
/// `None` where the metadata lacks a size.
fn upper_bound(header: &GgufHeader, n_ctx: u32, options: &ModelOptions) -> Option<u64> {
    let shape = crate::model::hparams::shape_bounds(header)?;
    let n_ctx = u64::from(n_ctx);
    let ubatch = u64::from(options.batch_size.min(512));
    let kv = shape.layers.checked_mul(n_ctx)?.checked_mul(shape.kv_width)?.checked_mul(2 * 4)?;
    let scores = ubatch.checked_mul(n_ctx)?.checked_mul(shape.heads)?;
    let activations = ubatch.checked_mul(16)?.checked_mul(shape.kv_width.max(shape.feed_forward))?;
    let logits = shape.vocab.checked_mul(u64::from(options.max_sequences).max(ubatch))?;
    let compute = scores.checked_add(activations)?.checked_add(logits)?.checked_mul(4)?;
    header.file_size.checked_mul(2)?.checked_add(kv)?.checked_add(compute)?.checked_add(OVERHEAD_BYTES)
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

fn insufficient(path: &Path, e: &MemoryEstimate) -> Error {
    Error::new(
        ErrorKind::InsufficientMemory,
        format!(
            "{} needs about {} MiB with a context of {} tokens (weights {} MiB, of which {} MiB mapped from the file; \
             KV cache {} MiB; compute {} MiB) but this process has {} MiB available: use a smaller context_length or \
             max_sequences, or context_length=\"auto\"",
            path.display(),
            mib(e.required_bytes()),
            e.context_length,
            mib(e.weights_bytes),
            mib(e.mapped_weights_bytes),
            mib(e.kv_cache_bytes),
            mib(e.compute_bytes),
            e.available_bytes.map(mib).unwrap_or(0),
        ),
    )
}

/// A model loaded with `no_alloc`: metadata and tensor placement, no weights.
struct DryModel {
    raw: NonNull<sys::llama_model>,
    use_mmap: bool,
}

impl Drop for DryModel {
    fn drop(&mut self) {
        // SAFETY: loaded by llama_model_load_from_file, freed once.
        unsafe { sys::llama_model_free(self.raw.as_ptr()) }
    }
}

impl DryModel {
    /// The file must have passed corral's checks (`model::check_file`).
    fn load(path: &Path, options: &ModelOptions) -> Result<DryModel> {
        crate::backend::backend()?;
        let c_path =
            CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::invalid_argument("the model path contains a NUL byte"))?;
        // SAFETY: plain data.
        let mut params = unsafe { sys::llama_model_default_params() };
        params.n_gpu_layers = options.gpu_layers.min(i32::MAX as u32) as i32;
        // llama.cpp's dry run maps nothing (it asserts so); the plain CPU buffers it sizes are
        // what a mapped load maps.
        params.load_mode = sys::LLAMA_LOAD_MODE_NONE;
        params.no_alloc = true;
        crate::log::clear_last_llama_error();
        // SAFETY: a NUL-terminated path and parameters llama.cpp copies.
        let raw = crate::llama::guard::catching_asserts(|| unsafe { sys::llama_model_load_from_file(c_path.as_ptr(), params) });
        let raw = NonNull::new(raw).ok_or_else(|| {
            let detail = crate::llama::guard::take_assert_message()
                .or_else(crate::log::take_last_llama_error)
                .unwrap_or_else(|| "llama_model_load_from_file failed".into());
            crate::model::load_error(path, &detail)
        })?;
        // The mapping only exists when llama.cpp maps the file (it cannot with no mmap support).
        // SAFETY: plain query.
        let use_mmap = options.use_mmap && unsafe { sys::llama_supports_mmap() };
        Ok(DryModel { raw, use_mmap })
    }

    fn trained_context(&self) -> u32 {
        // SAFETY: a live model.
        (unsafe { sys::llama_model_n_ctx_train(self.raw.as_ptr()) }).clamp(1, crate::options::MAX_CONTEXT_LENGTH as i32) as u32
    }

    fn vocab_size(&self) -> u64 {
        // SAFETY: a live model and its vocabulary.
        (unsafe { sys::llama_vocab_n_tokens(sys::llama_model_get_vocab(self.raw.as_ptr())) }).max(0) as u64
    }

    /// The estimate for the options, with `auto_context_length` resolved against `available`.
    fn plan(&self, options: &ModelOptions, available: Option<u64>) -> Result<MemoryEstimate> {
        let trained = self.trained_context();
        if !options.auto_context_length {
            let n_ctx = options.context_length.unwrap_or_else(|| crate::options::default_context_length(trained));
            return self.measure(n_ctx, options, available);
        }
        // The largest context up to the trained length whose whole estimate (mapped weights
        // included) fits, else the largest whose required memory fits, else the smallest.
        let smallest = trained.min(AUTO_CONTEXT_STEP);
        let at_most = self.measure(trained, options, available)?;
        if available.is_none_or(|a| at_most.total_bytes <= a) {
            return Ok(at_most);
        }
        let floor = self.measure(smallest, options, available)?;
        let Some(available) = available else { return Ok(at_most) };
        let fits_whole = |e: &MemoryEstimate| e.total_bytes <= available;
        let test: &dyn Fn(&MemoryEstimate) -> bool = if fits_whole(&floor) { &fits_whole } else { &|e: &MemoryEstimate| e.fits() };
        if !test(&floor) {
            return Ok(floor);
        }
        // Binary search over multiples of the step: `low` fits, `high` does not.
        let (mut low, mut low_estimate, mut high) = (smallest, floor, trained);
        while high - low > AUTO_CONTEXT_STEP {
            let middle = (low + (high - low) / 2) / AUTO_CONTEXT_STEP * AUTO_CONTEXT_STEP;
            let middle = middle.max(low + AUTO_CONTEXT_STEP);
            if middle >= high {
                break;
            }
            let estimate = self.measure(middle, options, Some(available))?;
            if test(&estimate) {
                (low, low_estimate) = (middle, estimate);
            } else {
                high = middle;
            }
        }
        Ok(low_estimate)
    }

    /// llama.cpp's figures for a generation context of `n_ctx` tokens made as the engine makes
    /// it, sized for generation: one output per sequence per step (longer scoring requests
    /// take more compute memory while they run).
    fn measure(&self, n_ctx: u32, options: &ModelOptions, available: Option<u64>) -> Result<MemoryEstimate> {
        let config = ContextConfig {
            size: ContextSize {
                n_ctx,
                batch_size: options.batch_size,
                max_sequences: options.max_sequences,
                threads: 1,
                flash_attention: options.flash_attention,
            },
            ubatch_size: None,
            pooling: None,
            abort: None,
            guarded: false,
        };
        let mut params = context_params(&config);
        params.n_outputs_max = options.max_sequences;
        // SAFETY: a live model.
        let context = unsafe { create_raw(self.raw.as_ptr(), params)? };
        let (mut model_cpu, mut model_other, mut kv, mut compute) = (0usize, 0usize, 0usize, 0usize);
        // SAFETY: a live context and four outputs.
        let read = unsafe { corral_memory_breakdown(context.as_ptr(), &mut model_cpu, &mut model_other, &mut kv, &mut compute) };
        // SAFETY: created above, freed once.
        unsafe { sys::llama_free(context.as_ptr()) };
        if !read {
            return Err(Error::internal("llama.cpp could not report its memory breakdown"));
        }
        // The logits of one step: a float per vocabulary entry per sequence.
        let logits = self.vocab_size() * u64::from(options.max_sequences) * 4;
        // A mapped load maps every tensor of the file and reads them all (the repacked ones too,
        // to repack them); without mmap only the plain CPU buffers hold file data.
        // SAFETY: a live model.
        let file_tensors = unsafe { sys::llama_model_size(self.raw.as_ptr()) };
        let (weights, mapped) = if self.use_mmap {
            (file_tensors + model_other as u64, if options.use_mlock { 0 } else { file_tensors })
        } else {
            ((model_cpu + model_other) as u64, 0)
        };
        let compute = compute as u64 + logits;
        let total = weights + kv as u64 + compute + OVERHEAD_BYTES;
        Ok(MemoryEstimate {
            context_length: n_ctx,
            weights_bytes: weights,
            mapped_weights_bytes: mapped,
            kv_cache_bytes: kv as u64,
            compute_bytes: compute,
            overhead_bytes: OVERHEAD_BYTES,
            total_bytes: total,
            available_bytes: available,
        })
    }
}

extern "C" {
    /// native/memory_breakdown.cpp
    fn corral_memory_breakdown(
        ctx: *const sys::llama_context,
        model_cpu: *mut usize,
        model_other: *mut usize,
        context: *mut usize,
        compute: *mut usize,
    ) -> bool;
}
