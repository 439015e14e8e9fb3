//! Embeddings and reranking on a `corral_model`: `corral_model_embed`, `corral_model_rerank`,
//! their params and the caller-freed result structs.

use std::ffi::c_char;
use std::time::Duration;

use corral::{EmbedOptions, Pooling, RerankOptions};

use crate::boundary::{fill_out, free_slice, guard_void, on_handle, owned_slice, str_array_arg, try_arg, try_opt_arg, try_str};
use crate::error::corral_status::*;
use crate::error::{corral_status, fail, set_error};
use crate::model::corral_model;

/// How a text's token vectors become one vector (`corral_embed_params.pooling`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum corral_pooling {
    /// The model's own (its GGUF's `pooling_type`; mean for chat models).
    CORRAL_POOLING_MODEL = -1,
    CORRAL_POOLING_MEAN = 0,
    CORRAL_POOLING_CLS = 1,
    CORRAL_POOLING_LAST = 2,
}

/// Options of corral_model_embed; start from corral_embed_default_params().
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct corral_embed_params {
    /// Scale each vector to unit length (default true).
    pub normalize: bool,
    /// Cut texts longer than the model takes instead of failing with
    /// CORRAL_ERR_CONTEXT_OVERFLOW (default false).
    pub truncate: bool,
    /// A corral_pooling value (default CORRAL_POOLING_MODEL).
    pub pooling: i32,
    /// Fail with CORRAL_ERR_DEADLINE_EXCEEDED past this many milliseconds (0: no limit).
    pub timeout_ms: u32,
}

/// The vectors of one corral_model_embed call: `count` rows of `dimensions` floats in `data`,
/// row after row, in the order of the texts. Release with corral_embeddings_free.
#[repr(C)]
#[derive(Debug)]
pub struct corral_embeddings {
    pub data: *mut f32,
    pub count: usize,
    pub dimensions: usize,
    /// Tokens evaluated, special tokens included.
    pub prompt_tokens: u32,
}

/// Options of corral_model_rerank; start from corral_rerank_default_params().
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct corral_rerank_params {
    /// Keep only the best `top_n` documents (0: all).
    pub top_n: u32,
    /// Cut a query plus document longer than the model takes (default false).
    pub truncate: bool,
    /// Fail with CORRAL_ERR_DEADLINE_EXCEEDED past this many milliseconds (0: no limit).
    pub timeout_ms: u32,
}

/// One document's relevance to the query.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct corral_rerank_result {
    /// The document's position in the `documents` array passed in.
    pub index: usize,
    /// Relevance in [0, 1].
    pub score: f32,
}

/// The results of one corral_model_rerank call, best first. Release with
/// corral_rerank_results_free.
#[repr(C)]
#[derive(Debug)]
pub struct corral_rerank_results {
    pub results: *mut corral_rerank_result,
    pub count: usize,
}

/// Default embedding options (the same defaults as every corral binding).
#[no_mangle]
pub extern "C" fn corral_embed_default_params() -> corral_embed_params {
    let d = EmbedOptions::default();
    corral_embed_params {
        normalize: d.normalize,
        truncate: d.truncate,
        pooling: corral_pooling::CORRAL_POOLING_MODEL as i32,
        timeout_ms: 0,
    }
}

/// Default rerank options.
#[no_mangle]
pub extern "C" fn corral_rerank_default_params() -> corral_rerank_params {
    corral_rerank_params { top_n: 0, truncate: RerankOptions::default().truncate, timeout_ms: 0 }
}

fn timeout(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms.into()))
}

fn embed_options(params: &corral_embed_params) -> Result<EmbedOptions, corral_status> {
    let pooling = match params.pooling {
        -1 => None,
        0 => Some(Pooling::Mean),
        1 => Some(Pooling::Cls),
        2 => Some(Pooling::Last),
        other => return Err(set_error(CORRAL_ERR_INVALID_ARGUMENT, &format!("pooling must be a corral_pooling value, got {other}"))),
    };
    Ok(EmbedOptions { normalize: params.normalize, truncate: params.truncate, pooling, timeout: timeout(params.timeout_ms), cancel: None })
}

/// Embeds `count` NUL-terminated UTF-8 texts, batched with every other call on the model.
/// `params` may be NULL (defaults). On CORRAL_OK, `*out` holds `count` vectors (none for
/// count 0); release it with corral_embeddings_free. Errors: CORRAL_ERR_NULL_ARGUMENT,
/// CORRAL_ERR_INVALID_UTF8, CORRAL_ERR_INVALID_ARGUMENT (an empty text, a bad pooling),
/// CORRAL_ERR_CONTEXT_OVERFLOW (a text longer than the model takes, unless truncate),
/// CORRAL_ERR_DEADLINE_EXCEEDED, CORRAL_ERR_DECODE_FAILED, CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_embed(
    model: *const corral_model,
    texts: *const *const c_char,
    count: usize,
    params: *const corral_embed_params,
    out: *mut corral_embeddings,
) -> corral_status {
    fill_out!(model, out, |m| {
        // SAFETY: the caller's array of `count` strings (corral.h).
        let texts = unsafe { str_array_arg(texts, count, "texts") }?;
        let options = embed_options(try_opt_arg!(params).unwrap_or(&corral_embed_default_params()))?;
        let embeddings = m.model.embed(&texts, &options).map_err(fail)?;
        let dimensions = embeddings.vectors.first().map_or(0, Vec::len);
        let (data, _) = owned_slice(embeddings.vectors.concat());
        Ok(corral_embeddings { data, count: embeddings.vectors.len(), dimensions, prompt_tokens: embeddings.prompt_tokens })
    })
}

/// Frees the vectors of an embeddings struct filled by corral_model_embed and zeroes it (NULL
/// is ignored; freeing twice is harmless).
#[no_mangle]
pub unsafe extern "C" fn corral_embeddings_free(embeddings: *mut corral_embeddings) {
    guard_void(|| {
        if let Some(e) = try_opt_arg!(embeddings) {
            // SAFETY: NULL or the floats corral_model_embed handed out (owned_slice) with
            // count * dimensions of them; reset right after, so never freed twice.
            unsafe { free_slice(e.data, e.count * e.dimensions) };
            *e = corral_embeddings { data: std::ptr::null_mut(), count: 0, dimensions: 0, prompt_tokens: 0 };
        }
    });
}

/// Scores `count` documents against `query` with a reranker (a GGUF whose pooling is rank):
/// on CORRAL_OK `*out` holds the results, best first (at most `top_n`); release it with
/// corral_rerank_results_free. `params` may be NULL. Errors: CORRAL_ERR_NULL_ARGUMENT,
/// CORRAL_ERR_INVALID_UTF8, CORRAL_ERR_INVALID_ARGUMENT (an empty query or document),
/// CORRAL_ERR_UNSUPPORTED (the model is not a reranker), CORRAL_ERR_CONTEXT_OVERFLOW,
/// CORRAL_ERR_DEADLINE_EXCEEDED, CORRAL_ERR_DECODE_FAILED, CORRAL_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn corral_model_rerank(
    model: *const corral_model,
    query: *const c_char,
    documents: *const *const c_char,
    count: usize,
    params: *const corral_rerank_params,
    out: *mut corral_rerank_results,
) -> corral_status {
    on_handle!(model, |m| {
        let query = try_str!(query);
        let out = try_arg!(out);
        // SAFETY: the caller's array of `count` strings (corral.h).
        let documents = unsafe { str_array_arg(documents, count, "documents") }?;
        let params = try_opt_arg!(params).copied().unwrap_or_else(|| corral_rerank_default_params());
        let options = RerankOptions {
            top_n: (params.top_n > 0).then_some(params.top_n as usize),
            truncate: params.truncate,
            timeout: timeout(params.timeout_ms),
            cancel: None,
        };
        let ranked = m.model.rerank(query, &documents, &options).map_err(fail)?;
        let (results, count) = owned_slice(ranked.iter().map(|r| corral_rerank_result { index: r.index, score: r.score }).collect());
        *out = corral_rerank_results { results, count };
        Ok(())
    })
}

/// Frees the results filled by corral_model_rerank and zeroes the struct (NULL is ignored;
/// freeing twice is harmless).
#[no_mangle]
pub unsafe extern "C" fn corral_rerank_results_free(results: *mut corral_rerank_results) {
    guard_void(|| {
        if let Some(r) = try_opt_arg!(results) {
            // SAFETY: NULL or the array corral_model_rerank handed out (owned_slice) with
            // `count` entries; reset right after, so never freed twice.
            unsafe { free_slice(r.results, r.count) };
            *r = corral_rerank_results { results: std::ptr::null_mut(), count: 0 };
        }
    });
}
