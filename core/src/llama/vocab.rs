//! The model's tokenizer, called so that a malformed vocabulary in a file gives an error
//! instead of aborting: llama.cpp's vocabulary code throws C++ exceptions (`.at()` on its
//! tables) that would otherwise unwind into Rust. Every tokenization in corral goes here.

use std::ffi::c_char;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_sys_2::{llama_token, llama_vocab};

use crate::error::{Error, ErrorKind, Result};

extern "C" {
    fn corral_guarded_tokenize(
        vocab: *const llama_vocab,
        text: *const c_char,
        text_len: i32,
        tokens: *mut llama_token,
        n_tokens_max: i32,
        add_special: bool,
        parse_special: bool,
        result: *mut i32,
    ) -> i32;
    fn corral_guarded_token_to_piece(
        vocab: *const llama_vocab,
        token: llama_token,
        buf: *mut c_char,
        length: i32,
        lstrip: i32,
        special: bool,
        result: *mut i32,
    ) -> i32;
    fn corral_guarded_detokenize(
        vocab: *const llama_vocab,
        tokens: *const llama_token,
        n_tokens: i32,
        text: *mut c_char,
        text_len_max: i32,
        remove_special: bool,
        unparse_special: bool,
        result: *mut i32,
    ) -> i32;
}

fn raw_vocab(model: &LlamaModel) -> *const llama_vocab {
    // SAFETY: a live model.
    unsafe { llama_cpp_sys_2::llama_model_get_vocab(crate::llama::context::raw_model(model)) }
}

fn broken(what: &str) -> Error {
    let detail = crate::llama::guard::take_assert_message().unwrap_or_default();
    Error::new(ErrorKind::InvalidModel, format!("the model's vocabulary cannot {what}: {detail}"))
}

/// Runs one of the guarded calls above, which fills `buf` and sets its `result` to the count
/// written, or to minus the count needed when `buf` is too small: then it runs once more with
/// that much room. `what` names the work for errors ("tokenize this text").
fn fill<T: Copy + Default>(mut buf: Vec<T>, what: &str, mut call: impl FnMut(&mut [T], i32, &mut i32) -> i32) -> Result<Vec<T>> {
    for _ in 0..2 {
        let room = i32::try_from(buf.len()).map_err(|_| Error::invalid_argument(format!("too long to {what}")))?;
        let mut n = 0;
        if call(&mut buf, room, &mut n) != 0 {
            return Err(broken(what));
        }
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        // i32::MIN: the count does not fit an i32.
        let needed = n.checked_neg().ok_or_else(|| Error::invalid_argument(format!("too long to {what}")))?;
        buf.resize(needed as usize, T::default());
    }
    Err(broken(what))
}

/// Text to tokens; `add_special` adds BOS/EOS as the model asks, `parse_special` reads
/// special-token text as control tokens.
pub(crate) fn tokenize(model: &LlamaModel, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<LlamaToken>> {
    let len = i32::try_from(text.len()).map_err(|_| Error::invalid_argument("text is too long to tokenize"))?;
    // A token covers at least one byte, plus BOS and EOS.
    let tokens = fill(vec![0; text.len() + 2], "tokenize this text", |tokens: &mut [llama_token], room, n| {
        // SAFETY: `tokens` holds `room` entries; the text outlives the call.
        unsafe {
            corral_guarded_tokenize(raw_vocab(model), text.as_ptr().cast(), len, tokens.as_mut_ptr(), room, add_special, parse_special, n)
        }
    })?;
    Ok(tokens.into_iter().map(LlamaToken).collect())
}

/// One token's bytes (special tokens as nothing unless `special`).
pub(crate) fn piece(model: &LlamaModel, token: LlamaToken, special: bool) -> Result<Vec<u8>> {
    fill(vec![0u8; 32], &format!("render token {}", token.0), |buf, room, n| {
        // SAFETY: `buf` holds `room` bytes.
        unsafe { corral_guarded_token_to_piece(raw_vocab(model), token.0, buf.as_mut_ptr().cast(), room, 0, special, n) }
    })
}

/// Tokens back to bytes.
pub(crate) fn detokenize(model: &LlamaModel, tokens: &[LlamaToken], remove_special: bool, unparse_special: bool) -> Result<Vec<u8>> {
    let n_tokens = i32::try_from(tokens.len()).map_err(|_| Error::invalid_argument("too many tokens"))?;
    let ids: Vec<llama_token> = tokens.iter().map(|t| t.0).collect();
    fill(vec![0u8; tokens.len() * 8 + 16], "render these tokens", |buf, room, n| {
        // SAFETY: `ids` holds `n_tokens` entries and `buf` `room` bytes.
        unsafe {
            corral_guarded_detokenize(
                raw_vocab(model),
                ids.as_ptr(),
                n_tokens,
                buf.as_mut_ptr().cast(),
                room,
                remove_special,
                unparse_special,
                n,
            )
        }
    })
}

/// The BOS, EOS and SEP tokens the tokenizer adds around texts (each `None` where it adds none
/// or the file's id is out of range), for joining a query and a document the way llama.cpp does.
pub(crate) fn pair_specials(model: &LlamaModel) -> (Option<llama_token>, Option<llama_token>, Option<llama_token>) {
    use llama_cpp_sys_2 as sys;
    let vocab = raw_vocab(model);
    // SAFETY: a live model's vocabulary; these read plain fields.
    let (n_tokens, bos, eos, sep, add_bos, add_eos, add_sep) = unsafe {
        (
            sys::llama_vocab_n_tokens(vocab),
            sys::llama_vocab_bos(vocab),
            sys::llama_vocab_eos(vocab),
            sys::llama_vocab_sep(vocab),
            sys::llama_vocab_get_add_bos(vocab),
            sys::llama_vocab_get_add_eos(vocab),
            sys::llama_vocab_get_add_sep(vocab),
        )
    };
    let valid = |added: bool, token: llama_token| (added && (0..n_tokens).contains(&token)).then_some(token);
    (valid(add_bos, bos), valid(add_eos, eos), valid(add_sep, sep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_grows_once_to_the_size_asked_for() {
        let mut calls = 0;
        let out = fill(vec![0u8; 2], "test", |buf, room, n| {
            calls += 1;
            if room < 5 {
                *n = -5;
            } else {
                buf[..5].copy_from_slice(b"hello");
                *n = 5;
            }
            0
        })
        .unwrap();
        assert_eq!((out.as_slice(), calls), (&b"hello"[..], 2));
    }

    #[test]
    fn fill_turns_every_failure_into_a_typed_error() {
        // A count too large for an i32 (llama.cpp reports i32::MIN).
        let too_long = fill(vec![0u8; 4], "test", |_, _, n| {
            *n = i32::MIN;
            0
        });
        assert_eq!(too_long.unwrap_err().kind(), ErrorKind::InvalidArgument);
        // Still too small after growing as asked: a broken vocabulary, not an endless loop.
        let never_enough = fill(vec![0u8; 4], "test", |_, room, n| {
            *n = -(room + 1);
            0
        });
        assert_eq!(never_enough.unwrap_err().kind(), ErrorKind::InvalidModel);
        // The guarded call caught an exception.
        let threw = fill(vec![0u8; 4], "test", |_, _, _| 1);
        assert_eq!(threw.unwrap_err().kind(), ErrorKind::InvalidModel);
    }
}
