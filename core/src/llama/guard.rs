//! Turns llama.cpp's asserts into errors where llama.cpp can unwind from them (see
//! `core/native/abort_guard.cpp`): model loading, context creation, and a one-thread decode.
//! corral's own checks (model/hparams.rs) come first and name the bad value; this guard catches
//! the asserts nobody foresaw.

use std::ffi::c_char;
use std::sync::Once;

extern "C" {
    fn corral_ggml_abort_handler(message: *const c_char);
    fn corral_abort_guard_enter();
    fn corral_abort_guard_leave();
    fn corral_abort_guard_take_message(out: *mut c_char, capacity: usize) -> usize;
    fn corral_guarded_decode(ctx: *mut llama_cpp_sys_2::llama_context, batch: *const llama_cpp_sys_2::llama_batch) -> i32;
    fn corral_guarded_synchronize(ctx: *mut llama_cpp_sys_2::llama_context) -> i32;
}

/// What `corral_guarded_decode` returns when an assert fired.
const ASSERTED: i32 = i32::MIN;

static INSTALL: Once = Once::new();

/// Makes corral's handler ggml's abort callback (once per process).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        // SAFETY: the handler is a plain C function that lives as long as the process.
        unsafe {
            llama_cpp_sys_2::ggml_set_abort_callback(Some(corral_ggml_abort_handler));
        }
    });
}

/// Runs `f`, a call into llama.cpp that catches C++ exceptions itself (model loading, context
/// creation), with asserts on this thread thrown as exceptions instead of aborting.
pub(crate) fn catching_asserts<T>(f: impl FnOnce() -> T) -> T {
    install();
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            // SAFETY: balances the enter below, on the same thread.
            unsafe { corral_abort_guard_leave() }
        }
    }
    // SAFETY: only moves a thread-local counter.
    unsafe { corral_abort_guard_enter() };
    let _scope = Scope;
    f()
}

/// The message of the last assert caught on this thread, if any (and forgets it).
pub(crate) fn take_assert_message() -> Option<String> {
    let mut buf = vec![0 as c_char; 2048];
    // SAFETY: writes at most buf.len() bytes, NUL-terminated.
    let n = unsafe { corral_abort_guard_take_message(buf.as_mut_ptr(), buf.len()) };
    if n == 0 {
        return None;
    }
    // SAFETY: NUL-terminated by corral_abort_guard_take_message.
    let message = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
    Some(without_build_path(&message).to_string())
}

/// `/build/.../llama-model.cpp:1422: GGML_ASSERT(...)` as `llama-model.cpp:1422: GGML_ASSERT(...)`.
fn without_build_path(message: &str) -> &str {
    match message.split_once(": ") {
        Some((location, _)) if location.contains('/') => {
            let file_start = location.rfind('/').map_or(0, |i| i + 1);
            &message[file_start..]
        }
        _ => message,
    }
}

/// The outcome of a guarded decode.
pub(crate) enum GuardedDecode {
    /// llama_decode's own return value.
    Returned(i32),
    /// An assert fired: the context must not be used again.
    Asserted(String),
}

/// `llama_decode` with asserts caught. The context must run one thread (see abort_guard.cpp).
///
/// # Safety
/// `ctx` is a live context used by no other thread; `batch` is a valid batch for it.
pub(crate) unsafe fn decode(ctx: *mut llama_cpp_sys_2::llama_context, batch: &llama_cpp_sys_2::llama_batch) -> GuardedDecode {
    install();
    // SAFETY: as the caller promised.
    let ret = unsafe { corral_guarded_decode(ctx, batch) };
    if ret == ASSERTED {
        GuardedDecode::Asserted(take_assert_message().unwrap_or_else(|| "llama.cpp assertion failed".into()))
    } else {
        GuardedDecode::Returned(ret)
    }
}

/// `llama_synchronize` with asserts caught: the message of the one that fired (a lost RPC
/// worker), if any.
///
/// # Safety
/// `ctx` is a live context used by no other thread.
pub(crate) unsafe fn synchronize(ctx: *mut llama_cpp_sys_2::llama_context) -> std::result::Result<(), String> {
    install();
    // SAFETY: as the caller promised.
    match unsafe { corral_guarded_synchronize(ctx) } {
        0 => Ok(()),
        _ => Err(take_assert_message().unwrap_or_else(|| "llama.cpp assertion failed".into())),
    }
}
