//! `Session`: a conversation that keeps its KV cache between calls.

use std::sync::Arc;

use napi_derive::napi;

use crate::blocking;

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

crate::stream::generation_methods!(NativeSession, String, "string", |s, p, o| s.complete_stream(p, o), |s, p, o| s.complete(p, o));

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
