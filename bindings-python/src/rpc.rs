//! `serve_rpc`: this process as an RPC worker that holds part of the layers of models loaded
//! elsewhere with `rpc_servers` (the load keywords are read in options.rs).

use std::sync::{mpsc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::error::{invalid_argument, invalid_type, to_py_err, type_name, OrRaise};
use crate::options::u32_arg;

/// How long the caller waits for the server before checking for Ctrl-C.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

const DEFAULT_HOST: &str = "127.0.0.1";
// The text signature below spells the default port out: keep it core's.
const _: () = assert!(corral::RPC_DEFAULT_PORT == 50052);

/// Serves this machine's CPU to corral processes that load models with
/// `rpc_servers=["host:port", ...]`, with `threads` threads (None: the physical cores). Blocks
/// for good: it raises WorkerUnavailableError when it cannot listen (address in use), and
/// KeyboardInterrupt on Ctrl-C, though the server, which cannot be stopped, goes on until the
/// process ends. The protocol has no authentication: listen on a private network only (a
/// host other than loopback is warned about on stderr).
#[pyfunction]
#[pyo3(signature = (host=None, port=None, threads=None), text_signature = "(host='127.0.0.1', port=50052, threads=None)")]
pub fn serve_rpc(
    py: Python<'_>,
    host: Option<Bound<'_, PyAny>>,
    port: Option<Bound<'_, PyAny>>,
    threads: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let host = match host {
        None => DEFAULT_HOST.to_string(),
        Some(host) if host.is_instance_of::<PyString>() => host.extract()?,
        Some(host) => return Err(invalid_type(py, format!("host must be a str, got {}", type_name(&host)))),
    };
    let port = match port {
        None => corral::RPC_DEFAULT_PORT,
        Some(port) => {
            let number = u32_arg(py, "port", &port)?;
            u16::try_from(number)
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| invalid_argument(py, format!("port must be from 1 to 65535, got {number}")))?
        }
    };
    let threads = threads.map(|t| u32_arg(py, "threads", &t)).transpose()?.unwrap_or_else(corral::default_threads);
    if threads == 0 {
        return Err(invalid_argument(py, "threads must be at least 1"));
    }
    // ggml's server loop never returns while it serves and cannot be interrupted: it runs on
    // its own thread, so that this one can wait in slices and raise KeyboardInterrupt.
    let (done, outcome) = mpsc::channel();
    // A Mutex only to make the receiver shareable with the detached closure.
    let outcome = Mutex::new(outcome);
    std::thread::Builder::new()
        .name("corral-rpc-server".into())
        .spawn(move || {
            let _ = done.send(corral::serve_rpc(&host, port, threads));
        })
        .map_err(|e| to_py_err(py, corral::Error::new(corral::ErrorKind::Internal, format!("cannot start the RPC server thread: {e}"))))?;
    loop {
        let waited = py.detach(|| outcome.lock().unwrap_or_else(PoisonError::into_inner).recv_timeout(POLL_INTERVAL));
        py.check_signals()?;
        match waited {
            Ok(served) => return served.or_raise(py),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(to_py_err(py, corral::Error::new(corral::ErrorKind::Internal, "the RPC server thread ended without a result")));
            }
        }
    }
}
