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

/// Core's options with the token's cancel handle attached.
fn cancel_handle(cancel: Option<&CancelToken>) -> Option<corral::CancelHandle> {
    cancel.map(|token| {
        let handle = corral::CancelHandle::default();
        token.register(handle.clone());
        handle
    })
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
        let mut options = corral::openai::embed_options(options.as_ref().unwrap_or(&serde_json::Value::Null), Dialect::Node).or_throw()?;
        options.cancel = cancel_handle(cancel);
        let model = self.inner.clone();
        let embeddings = blocking(move || model.embed(&texts, &options)).await?;
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
        let mut options = corral::openai::rerank_options(options.as_ref().unwrap_or(&serde_json::Value::Null), Dialect::Node).or_throw()?;
        options.cancel = cancel_handle(cancel);
        let model = self.inner.clone();
        let results = blocking(move || model.rerank(&query, &documents, &options)).await?;
        Ok(results.into_iter().map(|r| RerankResult { index: r.index as u32, score: r.score as f64, document: r.document }).collect())
    }
}
