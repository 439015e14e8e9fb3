//! `Session`: a conversation that keeps its KV cache between calls.

use std::sync::Arc;

use napi_derive::napi;

use crate::blocking;
use crate::chat;
use crate::options::generate_options;
use crate::stream::{completion, CancelToken, Completion, TokenStream};

/// A session (wrapped by `Session` in the TS layer). Dropping it releases its sequence.
#[napi]
pub struct NativeSession {
    inner: Arc<corral::Session>,
}

impl NativeSession {
    pub(crate) fn new(session: corral::Session) -> Self {
        NativeSession { inner: Arc::new(session) }
    }
}

#[napi]
impl NativeSession {
    /// The session's tokens and KV cache with a fingerprint of what they fit
    /// (`corral::Session::state`).
    #[napi(catch_unwind)]
    pub async fn state(&self) -> napi::Result<napi::bindgen_prelude::Buffer> {
        let session = self.inner.clone();
        blocking(move || session.state()).await.map(Into::into)
    }

    /// Writes `state()` to a file.
    #[napi(catch_unwind)]
    pub async fn save(&self, path: String) -> napi::Result<()> {
        let session = self.inner.clone();
        blocking(move || session.save(&path)).await
    }

    #[napi(catch_unwind)]
    pub async fn complete(
        &self,
        prompt: String,
        #[napi(ts_arg_type = "object | undefined | null")] options: Option<serde_json::Value>,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<Completion> {
        let options = generate_options(options.as_ref())?;
        completion(self.inner.clone(), prompt, options, cancel.cloned(), |s, p, o| s.complete_stream(p, o), |s, p, o| s.complete(p, o))
            .await
    }

    #[napi(catch_unwind)]
    pub async fn chat(
        &self,
        #[napi(ts_arg_type = "Array<object>")] messages: serde_json::Value,
        #[napi(ts_arg_type = "object | undefined | null")] options: Option<serde_json::Value>,
        cancel: Option<&CancelToken>,
    ) -> napi::Result<Completion> {
        let options = generate_options(options.as_ref())?;
        let messages = chat::messages(&messages)?;
        completion(self.inner.clone(), messages, options, cancel.cloned(), |s, ms, o| s.chat_stream(ms, o), |s, ms, o| s.chat(ms, o)).await
    }

    #[napi(catch_unwind)]
    pub fn complete_stream(
        &self,
        prompt: String,
        #[napi(ts_arg_type = "object | undefined | null")] options: Option<serde_json::Value>,
    ) -> napi::Result<TokenStream> {
        let options = generate_options(options.as_ref())?;
        Ok(TokenStream::start(self.inner.clone(), prompt, options, |s, p, o| s.complete_stream(p, o)))
    }

    #[napi(catch_unwind)]
    pub fn chat_stream(
        &self,
        #[napi(ts_arg_type = "Array<object>")] messages: serde_json::Value,
        #[napi(ts_arg_type = "object | undefined | null")] options: Option<serde_json::Value>,
    ) -> napi::Result<TokenStream> {
        let options = generate_options(options.as_ref())?;
        let messages = chat::messages(&messages)?;
        Ok(TokenStream::start(self.inner.clone(), messages, options, |s, ms, o| s.chat_stream(ms, o)))
    }

    #[napi(getter, catch_unwind)]
    pub fn closed(&self) -> bool {
        self.inner.is_closed() || self.inner.model().is_closed()
    }

    /// Releases the session's sequence for other requests. Idempotent.
    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.inner.close();
    }
}
