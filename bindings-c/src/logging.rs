//! Routing llama.cpp's and corral's log lines to a C callback.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use corral::log::{set_log_callback, LogLevel};

use crate::boundary::guard_void;

/// A log line: level 1 = debug, 2 = info, 3 = warn, 4 = error; `source` is "llama.cpp" or
/// "corral". May be called from any thread; strings valid only during the call.
pub type corral_log_callback =
    Option<unsafe extern "C" fn(level: i32, source: *const c_char, message: *const c_char, user_data: *mut c_void)>;

/// Sends llama.cpp's and corral's log lines at `min_level` (1 debug .. 4 error) and above to
/// `callback`; NULL callback restores silence. `user_data` is passed back untouched; the
/// callback may run on any thread, concurrently. Process-wide.
#[no_mangle]
pub extern "C" fn corral_set_log_callback(callback: corral_log_callback, min_level: i32, user_data: *mut c_void) {
    guard_void(|| {
        let level = match min_level {
            i32::MIN..=1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            _ => LogLevel::Error,
        };
        let Some(callback) = callback else {
            set_log_callback(None, level);
            return;
        };
        // The pointer is only handed back to the caller's own callback.
        let user_data = user_data as usize;
        set_log_callback(
            Some(Arc::new(move |level, source, message| {
                let source = CString::new(source).unwrap_or_default();
                let message = CString::new(message.replace('\0', "")).unwrap_or_default();
                // SAFETY: a valid function pointer supplied by the caller, given strings that
                // live for the call, as corral_log_callback documents.
                unsafe { callback(level as i32, source.as_ptr(), message.as_ptr(), user_data as *mut c_void) };
            })),
            level,
        );
    });
}
