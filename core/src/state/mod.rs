//! Saved sessions: `Session::state` / `Session::save` write a session's tokens and KV cells
//! with a fingerprint of what they fit; `Model::session_from_state` / `Model::load_session`
//! check the fingerprint and put them back, so the next turn evaluates only what is new.
//!
//! A state is untrusted input. Its layout, all integers little-endian:
//!
//! ```text
//! "CORRALSS"  u32 format version
//! u64 model identity (FNV-1a of the GGUF's size, metadata and parameter count)
//! u32 context length, u32 layers, u32 embedding length
//! u32 length + KV cache type ("f16"), u32 length + adapter set ("" for none)
//! u32 token count, i32 tokens
//! u64 length + llama.cpp's sequence bytes
//! u64 FNV-1a of everything before
//! ```
//!
//! The reader checks every length against what is left, the checksum, then each fingerprint
//! field against the model, naming what differs; llama.cpp then checks its own bytes.

use std::path::Path;
use std::sync::mpsc::sync_channel;

use llama_cpp_2::token::LlamaToken;

use crate::engine::{Command, SequenceState};
use crate::error::{Error, ErrorKind, Result};
use crate::model::session::Session;
use crate::model::Model;

const MAGIC: &[u8; 8] = b"CORRALSS";
const FORMAT_VERSION: u32 = 1;
/// corral's KV cache is llama.cpp's default, f16 keys and values.
const KV_CACHE_TYPE: &str = "f16";
/// The longest text field a state may have (KV type, adapter set).
const MAX_FIELD: u32 = 4096;

/// What a state fits: the model and the configuration its KV cells were computed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub model_identity: u64,
    pub context_length: u32,
    pub layers: u32,
    pub embedding_length: u32,
    pub kv_cache_type: String,
    pub adapters: String,
}

/// A decoded state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedState {
    pub fingerprint: Fingerprint,
    pub tokens: Vec<i32>,
    pub data: Vec<u8>,
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike std's hasher).
pub(crate) fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

pub(crate) fn encode(state: &SavedState) -> Vec<u8> {
    let f = &state.fingerprint;
    let mut out = Vec::with_capacity(state.data.len() + state.tokens.len() * 4 + 128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&f.model_identity.to_le_bytes());
    for n in [f.context_length, f.layers, f.embedding_length] {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for text in [&f.kv_cache_type, &f.adapters] {
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&(state.tokens.len() as u32).to_le_bytes());
    for t in &state.tokens {
        out.extend_from_slice(&t.to_le_bytes());
    }
    out.extend_from_slice(&(state.data.len() as u64).to_le_bytes());
    out.extend_from_slice(&state.data);
    let checksum = fnv1a(&out, FNV_OFFSET);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidState, format!("not a valid corral session state: {what}"))
}

/// Reads fields off the front of a byte slice, each bounded by what is left.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(corrupt(format!("it ends inside its {what} (truncated?)")));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    fn text(&mut self, what: &str) -> Result<String> {
        let len = self.u32(what)?;
        if len > MAX_FIELD {
            return Err(corrupt(format!("its {what} is {len} bytes long")));
        }
        String::from_utf8(self.take(len as usize, what)?.to_vec()).map_err(|_| corrupt(format!("its {what} is not UTF-8")))
    }
}

/// Decodes a state, checking its structure and checksum (not yet that it fits a model).
pub(crate) fn decode(bytes: &[u8]) -> Result<SavedState> {
    if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("it does not start with corral's marker"));
    }
    let (body, checksum) = bytes.split_at(bytes.len() - 8);
    if fnv1a(body, FNV_OFFSET) != u64::from_le_bytes(checksum.try_into().expect("8 bytes")) {
        return Err(corrupt("its checksum does not match (corrupted or truncated)"));
    }
    let mut r = Reader { bytes: &body[MAGIC.len()..] };
    let version = r.u32("format version")?;
    if version != FORMAT_VERSION {
        return Err(corrupt(format!("format version {version}; this corral reads version {FORMAT_VERSION}")));
    }
    let fingerprint = Fingerprint {
        model_identity: r.u64("model identity")?,
        context_length: r.u32("context length")?,
        layers: r.u32("layer count")?,
        embedding_length: r.u32("embedding length")?,
        kv_cache_type: r.text("KV cache type")?,
        adapters: r.text("adapter set")?,
    };
    let n_tokens = r.u32("token count")? as usize;
    if n_tokens > fingerprint.context_length as usize {
        return Err(corrupt(format!("{n_tokens} tokens in a context of {}", fingerprint.context_length)));
    }
    let tokens = r.take(n_tokens * 4, "tokens")?.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    let data_len = r.u64("KV data length")?;
    let data = r.take(usize::try_from(data_len).unwrap_or(usize::MAX), "KV data")?.to_vec();
    if !r.bytes.is_empty() {
        return Err(corrupt(format!("{} bytes follow its KV data", r.bytes.len())));
    }
    Ok(SavedState { fingerprint, tokens, data })
}

/// Names the first field in which a state's fingerprint differs from the model's.
fn check_fits(saved: &Fingerprint, model: &Fingerprint) -> Result<()> {
    let differs = |what: &str, saved: &dyn std::fmt::Display, here: &dyn std::fmt::Display| {
        Err(Error::new(ErrorKind::InvalidState, format!("the session state was saved with {what} {saved}; this model has {here}")))
    };
    if saved.model_identity != model.model_identity {
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!(
                "the session state was saved from another model file (identity {:016x}, this one {:016x})",
                saved.model_identity, model.model_identity
            ),
        ));
    }
    if saved.context_length != model.context_length {
        return differs("context_length", &saved.context_length, &model.context_length);
    }
    if saved.layers != model.layers || saved.embedding_length != model.embedding_length {
        return differs(
            "shape",
            &format!("{}x{}", saved.layers, saved.embedding_length),
            &format!("{}x{}", model.layers, model.embedding_length),
        );
    }
    if saved.kv_cache_type != model.kv_cache_type {
        return differs("KV cache type", &saved.kv_cache_type, &model.kv_cache_type);
    }
    Ok(())
}

impl Model {
    /// What a state saved from this model now carries.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        let info = self.info();
        Fingerprint {
            model_identity: self.identity(),
            context_length: info.context_length,
            layers: info.layers,
            embedding_length: info.embedding_length,
            kv_cache_type: KV_CACHE_TYPE.into(),
            adapters: String::new(),
        }
    }

    /// A new session that continues a saved one (`Session::state`): its next call evaluates
    /// only what follows the saved tokens. A state from another model or configuration, or a
    /// corrupt one, is `invalid_state`.
    pub fn session_from_state(&self, state: &[u8]) -> Result<Session> {
        let saved = decode(state)?;
        check_fits(&saved.fingerprint, &self.fingerprint())?;
        let n_vocab = self.info().vocab_size as i32;
        if let Some(bad) = saved.tokens.iter().find(|&&t| !(0..n_vocab).contains(&t)) {
            return Err(corrupt(format!("token id {bad} is outside the vocabulary")));
        }
        let session = self.session()?;
        let tokens = saved.tokens.into_iter().map(LlamaToken).collect();
        let (reply, result) = sync_channel(1);
        let state = SequenceState { tokens, data: saved.data, adapters: saved.fingerprint.adapters };
        self.send(Command::RestoreSession { session: session.id(), state, reply })?;
        result.recv().map_err(|_| Error::closed())??;
        Ok(session)
    }

    /// `session_from_state` with the state read from a file (`Session::save`).
    pub fn load_session(&self, path: impl AsRef<Path>) -> Result<Session> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::with_source(ErrorKind::InvalidArgument, format!("cannot read the session state {}", path.display()), e))?;
        self.session_from_state(&bytes)
    }
}

impl Session {
    /// The session's tokens and KV cache with a fingerprint of the model and configuration
    /// they fit; give it to `Model::session_from_state`, in this process or another. Fails
    /// with `busy` while the session is generating.
    pub fn state(&self) -> Result<Vec<u8>> {
        self.check()?;
        let model = self.model();
        let (reply, result) = sync_channel(1);
        model.send(Command::SaveSession { session: self.id(), reply })?;
        let sequence = result.recv().map_err(|_| Error::closed())??;
        let tokens = sequence.tokens.iter().map(|t| t.0).collect();
        // The adapter set travels with the cells: a restored session reuses them with the
        // same adapters (same files, same scales), and recomputes them with any other.
        let fingerprint = Fingerprint { adapters: sequence.adapters, ..model.fingerprint() };
        Ok(encode(&SavedState { fingerprint, tokens, data: sequence.data }))
    }

    /// Writes `state()` to a file (through a temporary file, so a crash leaves no torn state).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let state = self.state()?;
        let mut partial = path.as_os_str().to_owned();
        partial.push(".part");
        let write = std::fs::write(&partial, &state).and_then(|()| std::fs::rename(&partial, path));
        write.map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            Error::with_source(ErrorKind::InvalidArgument, format!("cannot write the session state {}", path.display()), e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedState {
        SavedState {
            fingerprint: Fingerprint {
                model_identity: 42,
                context_length: 512,
                layers: 30,
                embedding_length: 576,
                kv_cache_type: "f16".into(),
                adapters: String::new(),
            },
            tokens: vec![1, 2, 3],
            data: vec![9; 100],
        }
    }

    #[test]
    fn the_fuzz_seed_is_this_format() {
        let seed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/session_state/valid.bin")).unwrap();
        let state = decode(&seed).unwrap();
        assert_eq!((state.tokens.as_slice(), state.data.len(), state.fingerprint.context_length), ([1, 2, 3].as_slice(), 16, 64));
        assert_eq!(encode(&state), seed);
    }

    #[test]
    fn a_state_round_trips() {
        assert_eq!(decode(&encode(&sample())).unwrap(), sample());
    }

    #[test]
    fn every_truncation_and_bit_flip_is_invalid_state() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert_eq!(decode(&bytes[..len]).unwrap_err().kind(), ErrorKind::InvalidState, "truncated to {len}");
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            assert_eq!(decode(&flipped).unwrap_err().kind(), ErrorKind::InvalidState, "byte {i} flipped");
        }
    }

    #[test]
    fn a_mismatch_names_what_differs() {
        let saved = sample().fingerprint;
        let mut here = saved.clone();
        here.context_length = 1024;
        assert!(check_fits(&saved, &here).unwrap_err().message().contains("context_length 512"));
        here = saved.clone();
        here.model_identity = 7;
        assert!(check_fits(&saved, &here).unwrap_err().message().contains("another model"));
        assert!(check_fits(&saved, &saved).is_ok());
    }
}
