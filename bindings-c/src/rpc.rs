//! Serving this machine's CPU to models spread over RPC workers (core's `serve_rpc`).

use std::ffi::c_char;

use crate::boundary::{guard, try_str};
use crate::error::{corral_status, fail};

/// corral_serve_rpc's port when given 0: llama.cpp's default RPC port.
pub const CORRAL_RPC_DEFAULT_PORT: u16 = corral::RPC_DEFAULT_PORT;

/// Serves this machine's CPU to corral processes whose models name it in
/// corral_model_params.rpc_servers (llama.cpp's RPC server, one client at a time). Listens on
/// `host` (e.g. "127.0.0.1"; any other address prints a warning: the protocol has no
/// authentication, use it on private networks only) and `port` (0 = CORRAL_RPC_DEFAULT_PORT)
/// with `threads` threads (0 = the physical cores). Never returns while serving; returns
/// CORRAL_ERR_WORKER_UNAVAILABLE when it cannot listen, CORRAL_ERR_INVALID_ARGUMENT for a
/// malformed host.
#[no_mangle]
pub unsafe extern "C" fn corral_serve_rpc(host: *const c_char, port: u16, threads: u32) -> corral_status {
    guard(|| {
        let host = try_str!(host);
        let port = if port == 0 { CORRAL_RPC_DEFAULT_PORT } else { port };
        let threads = if threads == 0 { corral::default_threads() } else { threads };
        corral::serve_rpc(host, port, threads).map_err(fail)
    })
}
