//! Logs: llama.cpp's and corral's lines to one JS callback. Silent unless a callback is set
//! (or the `CORRAL_LOG` environment variable names a level; see corral-core's `log`).

use std::sync::Arc;

use corral::log::LogLevel;
use napi::bindgen_prelude::FnArgs;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

use crate::error::invalid_argument;

type LogArgs = FnArgs<(String, String, String)>;

/// Sends log lines at `level` (`debug`, `info`, `warn`, `error`; default `info`) and above to
/// `callback(level, source, message)`, where `source` is `llama.cpp` or `corral`. `null`
/// removes the callback. One callback per process: a new one replaces the previous.
#[napi(catch_unwind)]
pub fn set_log_callback(
    // Called from llama.cpp's and the engine's threads; weak, so a logger never keeps Node alive.
    #[napi(ts_arg_type = "((level: string, source: string, message: string) => void) | undefined | null")] callback: Option<
        ThreadsafeFunction<LogArgs, (), LogArgs, Status, false, true>,
    >,
    level: Option<String>,
) -> napi::Result<()> {
    let level = match level.as_deref() {
        None => LogLevel::Info,
        Some(name) => {
            LogLevel::parse(name).ok_or_else(|| invalid_argument(format!("unknown log level {name:?} (use debug, info, warn or error)")))?
        }
    };
    let sink: Option<corral::log::LogCallback> = callback.map(|callback| {
        Arc::new(move |level: LogLevel, source: &str, message: &str| {
            let args = (level.as_str().to_string(), source.to_string(), message.to_string());
            // Non-blocking: a log line must never stall llama.cpp or the engine.
            callback.call(args.into(), ThreadsafeFunctionCallMode::NonBlocking);
        }) as corral::log::LogCallback
    });
    corral::log::set_log_callback(sink, level);
    Ok(())
}
