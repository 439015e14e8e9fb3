//! `model.embed` and `model.rerank`: texts to vectors, documents scored against a query, on
//! napi's blocking pool. corral-core reads the options (`corral::openai::embed_options`).

use napi::bindgen_prelude::Float32Array;
use napi_derive::napi;

use corral::openai::Dialect;

use crate::blocking;
use crate::error::OrThrow;
use crate::model::NativeModel;
use crate::stream::CancelToken;

/// One document's relevance to the query.
#[napi(object)]
pub struct RerankResult {
    /// The document's position in the input.
    pub index: u32,
    /// Relevance in [0, 1].
    pub score: f64,
    pub document: String,
}

/// The body of `embed` and `rerank`: reads the Node options with corral-core's `read`, ties
/// them to `cancel` (through their `cancel` field, which `handle` reaches) and runs `call` with
/// them on the blocking pool.
async fn request<O: Send + 'static, T: Send + 'static>(
    model: &corral::Model,
    options: Option<serde_json::Value>,
    cancel: Option<&CancelToken>,
    read: fn(&serde_json::Value, Dialect) -> corral::Result<O>,
    handle: fn(&mut O) -> &mut Option<corral::CancelHandle>,
    call: impl FnOnce(&corral::Model, &O) -> corral::Result<T> + Send + 'static,
) -> napi::Result<T> {
    let mut options = read(options.as_ref().unwrap_or(&serde_json::Value::Null), Dialect::Node).or_throw()?;
    *handle(&mut options) = cancel.map(|token| {
        let handle = corral::CancelHandle::default();
        token.register(handle.clone());
        handle
    });
    let model = model.clone();
    blocking(move || call(&model, &options)).await
}

#[napi]
impl NativeModel {
    /// One vector per text; options `normalize`, `truncate`, `pooling`, `timeout` (ms).
    #[napi(catch_unwind, ts_return_type = "Promise<Float32Array[]>")]
    pub async fn embed(
        &self,
        texts: Vec<String>,
        options: Option<serde_json::Value>,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<Vec<Float32Array>> {
        let embed = move |model: &corral::Model, options: &_| model.embed(&texts, options);
        let embeddings = request(&self.inner, options, cancel, corral::openai::embed_options, |o| &mut o.cancel, embed).await?;
        Ok(embeddings.vectors.into_iter().map(Float32Array::new).collect())
    }

    /// Documents scored against the query, best first; options `topN`, `truncate`, `timeout`.
    #[napi(catch_unwind)]
    pub async fn rerank(
        &self,
        query: String,
        documents: Vec<String>,
        options: Option<serde_json::Value>,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<Vec<RerankResult>> {
        let rerank = move |model: &corral::Model, options: &_| model.rerank(&query, &documents, options);
        let results = request(&self.inner, options, cancel, corral::openai::rerank_options, |o| &mut o.cancel, rerank).await?;
        Ok(results.into_iter().map(|r| RerankResult { index: r.index as u32, score: r.score as f64, document: r.document }).collect())
    }
}
