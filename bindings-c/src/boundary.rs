//! The FFI boundary (rustls-ffi's `panic.rs` and `ffi.rs`): the panic guard every entry point
//! runs in, and the checks that turn the raw arguments of an entry point into Rust values.
//!
//! The unsafe code of the crate is here. Each helper states what its caller must guarantee;
//! the `try_*!` macros are used only in the bodies of `unsafe extern "C"` entry points, whose
//! contract (documented in `include/corral.h`) is exactly that guarantee: a pointer argument is
//! NULL or valid (aligned, initialised, not freed) for the duration of the call, a string is
//! NUL-terminated, an array pointer covers the number of elements passed with it, and a handle
//! passed to a `_free` function came from corral and is not used afterwards.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::corral_status::*;
use crate::error::{corral_status, null, set_error};

/// Runs an FFI body: a Rust panic becomes CORRAL_ERR_PANIC, never an abort.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), corral_status>) -> corral_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CORRAL_OK,
        Ok(Err(status)) => status,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_error(CORRAL_ERR_PANIC, &format!("internal error (panic): {what}"))
        }
    }
}

/// Like `guard` for functions that cannot report a status (frees, cancels): swallows panics.
pub(crate) fn guard_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

// ---------------------------------------------------------------------------------------------
// Arguments in.

/// A pointer argument: `*const T` reads as `&T`; `*mut T`, an out-parameter (written only on
/// success), as `&mut T`.
pub(crate) trait PtrArg<'a> {
    type Target;

    /// None for NULL.
    ///
    /// # Safety
    /// The pointer is NULL or valid for `'a`: for reads of a `T` (`*const T`), or for writes of a
    /// `T` with nothing else accessing it meanwhile (`*mut T`).
    unsafe fn get(self) -> Option<Self::Target>;
}

impl<'a, T: 'a> PtrArg<'a> for *const T {
    type Target = &'a T;

    unsafe fn get(self) -> Option<&'a T> {
        // SAFETY: the caller guarantees a non-NULL pointer is valid for 'a; as_ref checks NULL.
        unsafe { self.as_ref() }
    }
}

impl<'a, T: 'a> PtrArg<'a> for *mut T {
    type Target = &'a mut T;

    unsafe fn get(self) -> Option<&'a mut T> {
        // SAFETY: the caller guarantees a non-NULL pointer is valid and exclusive for 'a.
        unsafe { self.as_mut() }
    }
}

/// A required pointer argument.
///
/// # Safety
/// As for `PtrArg::get`.
pub(crate) unsafe fn ptr_arg<'a, P: PtrArg<'a>>(ptr: P, name: &str) -> Result<P::Target, corral_status> {
    // SAFETY: the caller's guarantee, passed on.
    unsafe { ptr.get() }.ok_or_else(|| null(name))
}

/// A required NUL-terminated UTF-8 string.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays unchanged for `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, corral_status> {
    if ptr.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL, and the caller guarantees NUL termination and lifetime.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| set_error(CORRAL_ERR_INVALID_UTF8, &format!("argument `{name}` is not valid UTF-8")))
}

/// A string argument that may be NULL.
///
/// # Safety
/// As for `str_arg`.
pub(crate) unsafe fn opt_str_arg<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>, corral_status> {
    if ptr.is_null() {
        Ok(None)
    } else {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { str_arg(ptr, name) }.map(Some)
    }
}

/// An array argument of `len` elements: may be NULL only when `len` is 0.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `len` consecutive `T`s for `'a`.
pub(crate) unsafe fn slice_arg<'a, T>(ptr: *const T, len: usize, name: &str) -> Result<&'a [T], corral_status> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL, and the caller guarantees `len` valid elements for 'a.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The body of the required-argument macros below (`try_arg!`, `try_str!`): the check
/// `$check($ptr, $name)`, its error returned through `?`. The name in the error message
/// defaults to the expression's text.
macro_rules! required_arg {
    ($check:ident, $ptr:expr) => {
        $crate::boundary::required_arg!($check, $ptr, stringify!($ptr))
    };
    ($check:ident, $ptr:expr, $name:expr) => {
        // SAFETY: used only in `unsafe extern "C"` entry points, whose callers guarantee that a
        // non-NULL pointer argument is valid for the call (see the module documentation):
        // out-parameters are the caller's, for this call only; strings in are NUL-terminated
        // (corral.h).
        unsafe { $crate::boundary::$check($ptr, $name) }?
    };
}

/// `&T` from a required pointer argument, `&mut T` from a required out-parameter; returns
/// CORRAL_ERR_NULL_ARGUMENT (through `?`) for NULL.
macro_rules! try_arg {
    ($($arg:tt)+) => {
        $crate::boundary::required_arg!(ptr_arg, $($arg)+)
    };
}

/// `Option<&T>` (`Option<&mut T>`) from a pointer argument (an out-parameter) that may be NULL.
macro_rules! try_opt_arg {
    ($ptr:expr) => {
        // SAFETY: as for `try_arg!`.
        unsafe { $crate::boundary::PtrArg::get($ptr) }
    };
}

/// `&str` from a required string argument: CORRAL_ERR_NULL_ARGUMENT, CORRAL_ERR_INVALID_UTF8.
macro_rules! try_str {
    ($($arg:tt)+) => {
        $crate::boundary::required_arg!(str_arg, $($arg)+)
    };
}

/// `Option<&str>` from a string argument that may be NULL: CORRAL_ERR_INVALID_UTF8.
macro_rules! try_opt_str {
    ($ptr:expr, $name:expr) => {
        // SAFETY: as for `try_str!`.
        unsafe { $crate::boundary::opt_str_arg($ptr, $name) }?
    };
}

/// `&[T]` from an array argument and its length: CORRAL_ERR_NULL_ARGUMENT for NULL with a
/// length above 0.
macro_rules! try_slice {
    ($ptr:expr, $len:expr, $name:expr) => {
        // SAFETY: as for `try_arg!`; the caller passes `len` elements.
        unsafe { $crate::boundary::slice_arg($ptr, $len, $name) }?
    };
}

/// `count` strings from a C array of them: CORRAL_ERR_NULL_ARGUMENT for a NULL array (with a
/// count above 0) or item, CORRAL_ERR_INVALID_UTF8; errors name the item (`texts[2]`).
///
/// # Safety
/// `array` is NULL (with `count` 0) or points to `count` pointers, each NULL or a
/// NUL-terminated string, all valid for `'a` (corral.h's convention for arguments).
pub(crate) unsafe fn str_array_arg<'a>(array: *const *const c_char, count: usize, name: &str) -> Result<Vec<&'a str>, corral_status> {
    let pointers = try_slice!(array, count, name);
    pointers.iter().enumerate().map(|(i, &p)| Ok(try_str!(p, &format!("{name}[{i}]")))).collect()
}

/// The body of an entry point on a handle: in the panic guard, the handle is checked
/// (`try_arg!`: CORRAL_ERR_NULL_ARGUMENT for NULL, named as written or by `$name`) and given to
/// `$body`.
macro_rules! on_handle {
    ($handle:ident, $body:expr) => {
        $crate::boundary::on_handle!($handle, stringify!($handle), $body)
    };
    ($handle:expr, $name:expr, $body:expr) => {
        $crate::boundary::guard(|| $crate::boundary::run_on($crate::boundary::try_arg!($handle, $name), $body))
    };
}

/// The end of `on_handle!`: `body(handle)`.
pub(crate) fn run_on<H: ?Sized, R>(handle: &H, body: impl FnOnce(&H) -> R) -> R {
    body(handle)
}

/// The body of an entry point that fills one out-parameter from a handle (or another first
/// argument): in the panic guard, the handle (`try_arg!`; or the expression given, such as
/// `try_str!(path)`) and then the out-parameter are checked, and what `$body` makes from the
/// first is written to `*out`, only on success.
macro_rules! fill_out {
    ($handle:ident, $out:ident, $body:expr) => {
        $crate::boundary::fill_out!($crate::boundary::try_arg!($handle), $out, $body)
    };
    ($first:expr, $out:ident, $body:expr) => {
        $crate::boundary::guard(|| $crate::boundary::fill($first, $crate::boundary::try_arg!($out), $body))
    };
}

/// The end of `fill_out!`: `*out` gets `body(first)` on success.
pub(crate) fn fill<H: ?Sized, T>(first: &H, out: &mut T, body: impl FnOnce(&H) -> Result<T, corral_status>) -> Result<(), corral_status> {
    *out = body(first)?;
    Ok(())
}

/// A required out-parameter pair for an array handed to the caller: where its pointer goes and
/// where its length goes (`try_out_slice!`).
pub(crate) struct OutSlice<'a, T> {
    pub(crate) ptr: &'a mut *mut T,
    pub(crate) len: &'a mut usize,
}

impl<T> OutSlice<'_, T> {
    /// Hands `values` to the caller, who gives them back to `free_slice` (through the matching
    /// `_free` function).
    pub(crate) fn set(self, values: Vec<T>) -> Result<(), corral_status> {
        (*self.ptr, *self.len) = owned_slice(values);
        Ok(())
    }
}

/// An `OutSlice` from two required out-parameters, the pointer's and the length's, checked in
/// that order: CORRAL_ERR_NULL_ARGUMENT for NULL.
macro_rules! try_out_slice {
    ($ptr:ident, $len:ident) => {
        $crate::boundary::OutSlice { ptr: $crate::boundary::try_arg!($ptr), len: $crate::boundary::try_arg!($len) }
    };
}

pub(crate) use {fill_out, on_handle, required_arg, try_arg, try_opt_arg, try_opt_str, try_out_slice, try_slice, try_str};

// ---------------------------------------------------------------------------------------------
// Ownership out and back.

/// Hands a handle to the caller, who gives it back to `free_handle` exactly once.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back a handle made by `into_handle`; None for NULL.
///
/// # Safety
/// `ptr` is NULL or came from `into_handle::<T>`, was not freed before, and is not used after.
pub(crate) unsafe fn free_handle<T>(ptr: *mut T) -> Option<Box<T>> {
    // SAFETY: the caller guarantees a live pointer from Box::into_raw, given back once.
    (!ptr.is_null()).then(|| unsafe { Box::from_raw(ptr) })
}

/// A string owned by the caller, who releases it with `free_string` (corral_string_free).
/// Interior NULs cannot be represented in a C string: they are dropped.
pub(crate) fn owned_string(s: &str) -> *mut c_char {
    CString::new(s.replace('\0', "")).unwrap_or_default().into_raw()
}

/// Releases a string made by `owned_string` or `CString::into_raw`; NULL is ignored.
///
/// # Safety
/// `ptr` is NULL or came from `CString::into_raw` in this library, was not freed before, and is
/// not used after.
pub(crate) unsafe fn free_string(ptr: *mut c_char) {
    if !ptr.is_null() {
        // SAFETY: the caller guarantees a live pointer from CString::into_raw, given back once.
        drop(unsafe { CString::from_raw(ptr) });
    }
}

/// An array owned by the caller: its pointer and length, to give back to `free_slice`.
pub(crate) fn owned_slice<T>(values: Vec<T>) -> (*mut T, usize) {
    let boxed = values.into_boxed_slice();
    let len = boxed.len();
    (Box::into_raw(boxed).cast(), len)
}

/// Releases an array made by `owned_slice`; NULL is ignored.
///
/// # Safety
/// `ptr` is NULL or came from `owned_slice` with this `len`, was not freed before, and is not
/// used after.
pub(crate) unsafe fn free_slice<T>(ptr: *mut T, len: usize) {
    if !ptr.is_null() {
        // SAFETY: the caller guarantees a live boxed slice of `len` elements, given back once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
    }
}
