//! Logging: llama.cpp's and corral's own messages go to `tracing` (target `llama.cpp` or
//! `corral`) and to one optional process-wide callback, which the bindings use to bridge into
//! Python `logging`, a JS callback or a C function pointer. Silent unless the host asks, or
//! unless the `CORRAL_LOG` environment variable names a level (then lines go to stderr).

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CStr};
use std::sync::{Arc, OnceLock, RwLock};

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    pub fn parse(name: &str) -> Option<LogLevel> {
        match name.trim().to_ascii_lowercase().as_str() {
            "debug" | "trace" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            _ => None,
        }
    }
}

/// A log sink: `(level, source, message)`; `source` is `"llama.cpp"` or `"corral"`.
pub type LogCallback = Arc<dyn Fn(LogLevel, &str, &str) + Send + Sync>;

struct Sink {
    min_level: LogLevel,
    callback: LogCallback,
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

static LLAMA_LOG_ROUTED: OnceLock<()> = OnceLock::new();

/// Routes llama.cpp's log into corral's log before anything can print to stderr.
pub(crate) fn ensure_logging() {
    LLAMA_LOG_ROUTED.get_or_init(|| {
        install_env_logger();
        // SAFETY: the callback is a plain function that never unwinds; null user data.
        unsafe {
            llama_cpp_sys_2::llama_log_set(Some(llama_log_callback), std::ptr::null_mut());
            llama_cpp_sys_2::ggml_log_set(Some(llama_log_callback), std::ptr::null_mut());
        }
    });
}

/// Installs (or with `None` removes) the process-wide log callback. Lines below `min_level` are
/// dropped before formatting. Replaces any previous callback, including the `CORRAL_LOG` one.
pub fn set_log_callback(callback: Option<LogCallback>, min_level: LogLevel) {
    ensure_logging();
    let mut sink = SINK.write().unwrap_or_else(|e| e.into_inner());
    *sink = callback.map(|callback| Sink { min_level, callback });
}

fn install_env_logger() {
    if let Some(level) = std::env::var("CORRAL_LOG").ok().as_deref().and_then(LogLevel::parse) {
        let mut sink = SINK.write().unwrap_or_else(|e| e.into_inner());
        if sink.is_none() {
            *sink = Some(Sink {
                min_level: level,
                callback: Arc::new(|level, source, message| {
                    eprintln!("[{source} {}] {message}", level.as_str());
                }),
            });
        }
    }
}

/// Emits one line to tracing and to the callback.
pub(crate) fn emit(level: LogLevel, source: &str, message: &str) {
    match level {
        LogLevel::Debug => tracing::debug!(target: "corral", source, "{message}"),
        LogLevel::Info => tracing::info!(target: "corral", source, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "corral", source, "{message}"),
        LogLevel::Error => tracing::error!(target: "corral", source, "{message}"),
    }
    // The callback runs without the lock held: it may log, or replace the callback itself.
    let callback = {
        let sink = SINK.read().unwrap_or_else(|e| e.into_inner());
        sink.as_ref().filter(|sink| level >= sink.min_level).map(|sink| sink.callback.clone())
    };
    if let Some(callback) = callback {
        // A panicking user callback must not unwind into llama.cpp.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(level, source, message)));
    }
}

thread_local! {
    /// A partial llama.cpp line (llama.cpp logs some lines in pieces with level CONT).
    static PARTIAL_LINE: RefCell<(LogLevel, String)> = const { RefCell::new((LogLevel::Info, String::new())) };
    /// The last error-level line llama.cpp logged on this thread: llama.cpp reports most
    /// failures (e.g. "unknown model architecture") only through its log.
    static LAST_LLAMA_ERROR: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Set while llama.cpp reports an abort corral asked for (engine/preempt.rs): its error and
    /// warning lines then go out at debug level and are not taken as the cause of a failure.
    static QUIET_LLAMA: Cell<bool> = const { Cell::new(false) };
}

/// Turns the quiet mode for llama.cpp's lines on the current thread on or off.
pub(crate) fn quiet_llama_on_this_thread(quiet: bool) {
    QUIET_LLAMA.with(|q| q.set(quiet));
}

/// Clears, then later takes, the last llama.cpp error logged on the current thread.
pub(crate) fn clear_last_llama_error() {
    LAST_LLAMA_ERROR.with(|e| e.borrow_mut().clear());
}

/// The error lines llama.cpp logged on this thread since the last clear, most specific
/// (earliest) first.
pub(crate) fn take_last_llama_error() -> Option<String> {
    let lines = LAST_LLAMA_ERROR.with(|e| std::mem::take(&mut *e.borrow_mut()));
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// The callback registered with `llama_log_set` and `ggml_log_set`.
pub(crate) unsafe extern "C" fn llama_log_callback(level: u32, text: *const c_char, _user: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for the duration of the call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let level = match level {
        llama_cpp_sys_2::GGML_LOG_LEVEL_DEBUG => Some(LogLevel::Debug),
        llama_cpp_sys_2::GGML_LOG_LEVEL_INFO => Some(LogLevel::Info),
        llama_cpp_sys_2::GGML_LOG_LEVEL_WARN => Some(LogLevel::Warn),
        llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR => Some(LogLevel::Error),
        _ => None, // CONT or NONE: continue the current line
    };
    let _ = std::panic::catch_unwind(|| {
        PARTIAL_LINE.with(|partial| {
            let mut partial = partial.borrow_mut();
            if let Some(level) = level {
                partial.0 = level;
            }
            partial.1.push_str(&text);
            if partial.1.ends_with('\n') {
                let line = std::mem::take(&mut partial.1);
                let line = line.trim_end();
                let level = if QUIET_LLAMA.with(Cell::get) { LogLevel::Debug } else { partial.0 };
                if level == LogLevel::Error {
                    LAST_LLAMA_ERROR.with(|e| {
                        let mut lines = e.borrow_mut();
                        if lines.len() < 8 {
                            lines.push(line.to_string());
                        }
                    });
                }
                emit(level, "llama.cpp", line);
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A callback that replaces the callback (a host re-configuring its logging from inside a
    /// log line) must not deadlock.
    #[test]
    fn a_callback_may_replace_the_callback() {
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        set_log_callback(
            Some(Arc::new(|_, _, _| {
                SEEN.fetch_add(1, Ordering::SeqCst);
                set_log_callback(Some(Arc::new(|_, _, _| {})), LogLevel::Error);
            })),
            LogLevel::Debug,
        );
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        std::thread::spawn(move || {
            emit(LogLevel::Warn, "corral", "first");
            emit(LogLevel::Warn, "corral", "second: the replacement ignores warnings");
            flag.store(true, Ordering::SeqCst);
        });
        let started = std::time::Instant::now();
        while !done.load(Ordering::SeqCst) {
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "emit deadlocked");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(SEEN.load(Ordering::SeqCst), 1);
        set_log_callback(None, LogLevel::Error);
    }
}
