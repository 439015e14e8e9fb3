//! A strict reader for the GGUF container header.
//!
//! corral validates every model file itself before llama.cpp sees it, so a missing, empty,
//! random or truncated file becomes a precise typed error instead of whatever llama.cpp
//! happens to do with it. The same pass yields every metadata key/value with its real type
//! (llama.cpp's own metadata API only returns strings and summarises arrays).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};

const GGUF_MAGIC: [u8; 4] = *b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// What the header of a valid GGUF file says.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub metadata: BTreeMap<String, Value>,
    pub file_size: u64,
}

impl GgufHeader {
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.metadata.get(key).and_then(Value::as_u64)
    }
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidModel, format!("{}: not a valid GGUF model: {what}", path.display()))
}

/// Reads and validates the header, metadata and tensor table of a GGUF file.
pub fn read_header(path: &Path) -> Result<GgufHeader> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::new(ErrorKind::ModelNotFound, format!("model file not found: {}", path.display())))
        }
        Err(e) => return Err(Error::with_source(ErrorKind::ModelNotFound, format!("cannot access model file {}", path.display()), e)),
    };
    if meta.is_dir() {
        return Err(Error::new(ErrorKind::ModelNotFound, format!("model path is a directory, not a GGUF file: {}", path.display())));
    }
    let file = File::open(path).map_err(|e| Error::with_source(ErrorKind::ModelNotFound, format!("cannot open {}", path.display()), e))?;
    let file_size = meta.len();
    if file_size == 0 {
        return Err(invalid(path, "the file is empty"));
    }
    let mut reader = Reader { inner: BufReader::with_capacity(1 << 16, file), pos: 0, size: file_size };
    parse(&mut reader).map_err(|e| invalid(path, e))
}

pub(crate) struct Reader<R> {
    pub(crate) inner: R,
    pub(crate) pos: u64,
    pub(crate) size: u64,
}

pub(crate) type ParseResult<T> = std::result::Result<T, String>;

impl<R: Read> Reader<R> {
    fn bytes(&mut self, n: u64) -> ParseResult<Vec<u8>> {
        if n > self.size.saturating_sub(self.pos) {
            return Err(format!("truncated: needs {n} bytes at offset {} but the file has {} bytes", self.pos, self.size));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner.read_exact(&mut buf).map_err(|e| format!("read error at offset {}: {e}", self.pos))?;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self) -> ParseResult<[u8; N]> {
        let v = self.bytes(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&v);
        Ok(out)
    }

    fn u32(&mut self) -> ParseResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> ParseResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> ParseResult<String> {
        let len = self.u64()?;
        let raw = self.bytes(len)?;
        String::from_utf8(raw).map_err(|_| format!("invalid UTF-8 string near offset {}", self.pos))
    }

    fn value(&mut self, value_type: u32, depth: u32) -> ParseResult<Value> {
        Ok(match value_type {
            0 => Value::from(self.array::<1>()?[0]),
            1 => Value::from(self.array::<1>()?[0] as i8),
            2 => Value::from(u16::from_le_bytes(self.array()?)),
            3 => Value::from(i16::from_le_bytes(self.array()?)),
            4 => Value::from(self.u32()?),
            5 => Value::from(i32::from_le_bytes(self.array()?)),
            6 => float(f32::from_le_bytes(self.array()?) as f64),
            7 => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("invalid bool value {b}")),
            },
            8 => Value::String(self.string()?),
            9 => {
                if depth > 0 {
                    return Err("nested arrays are not supported".into());
                }
                let item_type = self.u32()?;
                let count = self.u64()?;
                // Each element takes at least one byte: a count beyond the remaining file is corrupt.
                if count > self.size.saturating_sub(self.pos) {
                    return Err(format!("array of {count} elements exceeds the file size"));
                }
                let mut items = Vec::with_capacity(count.min(1 << 20) as usize);
                for _ in 0..count {
                    items.push(self.value(item_type, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::from(self.u64()?),
            11 => Value::from(i64::from_le_bytes(self.array()?)),
            12 => float(f64::from_le_bytes(self.array()?)),
            other => return Err(format!("unknown metadata value type {other}")),
        })
    }
}

fn float(x: f64) -> Value {
    serde_json::Number::from_f64(x).map(Value::Number).unwrap_or(Value::Null)
}

pub(crate) fn parse<R: Read>(r: &mut Reader<R>) -> ParseResult<GgufHeader> {
    let magic: [u8; 4] = r.array().map_err(|_| "the file is too short to be GGUF".to_string())?;
    if magic != GGUF_MAGIC {
        return Err(format!("bad magic {magic:02x?} (expected \"GGUF\")"));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(format!("unsupported GGUF version {version} (supported: 2, 3)"));
    }
    let tensor_count = r.u64()?;
    let kv_count = r.u64()?;
    if tensor_count > r.size || kv_count > r.size {
        return Err(format!("implausible counts: {tensor_count} tensors, {kv_count} metadata entries"));
    }
    let mut metadata = BTreeMap::new();
    for _ in 0..kv_count {
        let key = r.string()?;
        let value_type = r.u32()?;
        let value = r.value(value_type, 0)?;
        metadata.insert(key, value);
    }
    let alignment = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(DEFAULT_ALIGNMENT);
    if alignment == 0 || !alignment.is_power_of_two() {
        return Err(format!("invalid general.alignment {alignment}"));
    }
    let mut max_offset = 0u64;
    for _ in 0..tensor_count {
        let name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims > 8 {
            return Err(format!("tensor {name:?} has {n_dims} dimensions"));
        }
        for _ in 0..n_dims {
            r.u64()?;
        }
        let _tensor_type = r.u32()?;
        let offset = r.u64()?;
        if offset % alignment != 0 {
            return Err(format!("tensor {name:?} data offset {offset} is not aligned to {alignment}"));
        }
        max_offset = max_offset.max(offset);
    }
    let data_start = r.pos.div_ceil(alignment) * alignment;
    if tensor_count > 0 && data_start.saturating_add(max_offset) >= r.size {
        return Err(format!(
            "truncated: tensor data should extend past offset {} but the file has {} bytes",
            data_start.saturating_add(max_offset),
            r.size
        ));
    }
    Ok(GgufHeader { metadata, file_size: r.size })
}
