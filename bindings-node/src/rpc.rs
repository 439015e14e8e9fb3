//! `serveRpc`: this process as an RPC worker (ggml's RPC server serving its CPU) for models
//! loaded elsewhere with `rpcServers`.

use napi::tokio::sync::oneshot;
use napi_derive::napi;

use crate::error::{internal, invalid_argument, to_napi};

/// Where and how `serveRpc` serves.
#[napi(object)]
#[derive(Default)]
pub struct RpcServerOptions {
    /// The address to listen on. Default: `127.0.0.1` (this host only). Anything else is
    /// reachable by others, and the protocol has no authentication: private networks only.
    pub host: Option<String>,
    /// Default: 50052.
    pub port: Option<f64>,
    /// Threads computing the layers it holds. Default: physical cores.
    pub threads: Option<f64>,
}

/// A whole number from 1 to `max`, named in the error otherwise.
fn positive(name: &str, value: f64, max: u32) -> napi::Result<u32> {
    if value.is_finite() && value.fract() == 0.0 && value >= 1.0 && value <= f64::from(max) {
        return Ok(value as u32);
    }
    let range = if max == u32::MAX { "a whole number above 0".to_string() } else { format!("a whole number from 1 to {max}") };
    Err(invalid_argument(format!("{name} must be {range}, got {value}")))
}

/// Serves this process's CPU to RPC clients until the process ends. The server runs on a
/// thread of its own, not napi's blocking pool: it never returns, and a pool thread held
/// forever could stall the pool's shutdown when Node exits. The promise rejects when the
/// server cannot listen (address in use or not this host's); otherwise it never settles.
#[napi(catch_unwind)]
pub async fn serve_rpc(options: Option<RpcServerOptions>) -> napi::Result<()> {
    let options = options.unwrap_or_default();
    let host = options.host.unwrap_or_else(|| "127.0.0.1".to_string());
    let port = positive("port", options.port.unwrap_or(f64::from(corral::RPC_DEFAULT_PORT)), u16::MAX.into())? as u16;
    let threads = match options.threads {
        None => corral::default_threads(),
        Some(threads) => positive("threads", threads, u32::MAX)?,
    };
    let (failed, failure) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("corral-rpc-{port}"))
        .spawn(move || {
            let error = match corral::serve_rpc(&host, port, threads) {
                Err(error) => to_napi(error),
                Ok(()) => internal("the RPC server stopped"),
            };
            // The receiver is gone only when Node is shutting down: nothing left to tell.
            let _ = failed.send(error);
        })
        .map_err(|e| internal(format!("cannot start the RPC server thread: {e}")))?;
    match failure.await {
        Ok(error) => Err(error),
        // The thread ended without a word: it panicked.
        Err(_) => Err(internal("the RPC server thread failed")),
    }
}
