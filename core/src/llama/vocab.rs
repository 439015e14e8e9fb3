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

/// Text to tokens; `add_special` adds BOS/EOS as the model asks, `parse_special` reads
/// special-token text as control tokens.
pub(crate) fn tokenize(model: &LlamaModel, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<LlamaToken>> {
    let len = i32::try_from(text.len()).map_err(|_| Error::invalid_argument("text is too long to tokenize"))?;
    // A token covers at least one byte, plus BOS and EOS.
    let mut tokens: Vec<llama_token> = vec![0; text.len() + 2];
    let mut n = 0;
    for _ in 0..2 {
        // SAFETY: `tokens` holds `tokens.len()` entries; the text outlives the call.
        let status = unsafe {
            corral_guarded_tokenize(
                raw_vocab(model),
                text.as_ptr().cast(),
                len,
                tokens.as_mut_ptr(),
                tokens.len() as i32,
                add_special,
                parse_special,
                &mut n,
            )
        };
        if status != 0 {
            return Err(broken("tokenize this text"));
        }
        if n >= 0 {
            break;
        }
        if n == i32::MIN {
            return Err(Error::invalid_argument("text is too long to tokenize"));
        }
        tokens.resize((-n) as usize, 0);
    }
    tokens.truncate(n.max(0) as usize);
    Ok(tokens.into_iter().map(LlamaToken).collect())
}

/// One token's bytes (special tokens as nothing unless `special`).
pub(crate) fn piece(model: &LlamaModel, token: LlamaToken, special: bool) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 32];
    for _ in 0..2 {
        let mut n = 0;
        // SAFETY: `buf` holds `buf.len()` bytes.
        let status = unsafe {
            corral_guarded_token_to_piece(raw_vocab(model), token.0, buf.as_mut_ptr().cast(), buf.len() as i32, 0, special, &mut n)
        };
        if status != 0 {
            return Err(broken(&format!("render token {}", token.0)));
        }
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        buf.resize((-n) as usize, 0);
    }
    Err(broken(&format!("render token {}", token.0)))
}

/// Tokens back to bytes.
pub(crate) fn detokenize(model: &LlamaModel, tokens: &[LlamaToken], remove_special: bool, unparse_special: bool) -> Result<Vec<u8>> {
    let n_tokens = i32::try_from(tokens.len()).map_err(|_| Error::invalid_argument("too many tokens"))?;
    let ids: Vec<llama_token> = tokens.iter().map(|t| t.0).collect();
    let mut buf = vec![0u8; tokens.len() * 8 + 16];
    for _ in 0..2 {
        let mut n = 0;
        let max = i32::try_from(buf.len()).map_err(|_| Error::invalid_argument("too many tokens"))?;
        // SAFETY: `ids` and `buf` hold the lengths passed.
        let status = unsafe {
            corral_guarded_detokenize(
                raw_vocab(model),
                ids.as_ptr(),
                n_tokens,
                buf.as_mut_ptr().cast(),
                max,
                remove_special,
                unparse_special,
                &mut n,
            )
        };
        if status != 0 {
            return Err(broken("render these tokens"));
        }
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        buf.resize((-n) as usize, 0);
    }
    Err(broken("render these tokens"))
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
