//! Quantization: llama.cpp's file types by name (`general.file_type`), and `quantize`, which
//! rewrites a GGUF model in another of them with llama.cpp's own quantizer.

use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// llama.cpp's `llama_ftype` values and their names.
const FILE_TYPES: &[(u32, &str)] = &[
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (7, "Q8_0"),
    (8, "Q5_0"),
    (9, "Q5_1"),
    (10, "Q2_K"),
    (11, "Q3_K_S"),
    (12, "Q3_K_M"),
    (13, "Q3_K_L"),
    (14, "Q4_K_S"),
    (15, "Q4_K_M"),
    (16, "Q5_K_S"),
    (17, "Q5_K_M"),
    (18, "Q6_K"),
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (22, "IQ3_XS"),
    (23, "IQ3_XXS"),
    (24, "IQ1_S"),
    (25, "IQ4_NL"),
    (26, "IQ3_S"),
    (27, "IQ3_M"),
    (28, "IQ2_S"),
    (29, "IQ2_M"),
    (30, "IQ4_XS"),
    (31, "IQ1_M"),
    (32, "BF16"),
    (36, "TQ1_0"),
    (37, "TQ2_0"),
    (38, "MXFP4_MOE"),
];

/// The types `quantize` writes: those that need no importance matrix (F32, F16 and BF16
/// dequantize; F32 keeps each weight as ggml's dequantization computes it).
const QUANTIZE_TO: &[&str] = &[
    "F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0", "Q3_K_L", "Q3_K_M",
    "Q3_K_S", "Q2_K",
];

/// The name of a `general.file_type` value (`Q4_K_M`), or `unknown`.
pub(crate) fn file_type_name(file_type: Option<u64>) -> String {
    file_type.and_then(|t| FILE_TYPES.iter().find(|(id, _)| u64::from(*id) == t)).map_or("unknown", |(_, name)| name).to_string()
}

/// Writes `input` as a GGUF of `file_type` (`"Q4_K_M"`, `"Q6_K"`, `"Q8_0"`, ...: llama.cpp's
/// names) at `output`, with llama.cpp's quantizer on `threads` threads (0: all). Quantized
/// tensors are requantized when the input is already quantized (at some cost in accuracy). The
/// input is checked as `Model::load` checks it first; the output appears only when complete.
pub fn quantize(input: impl AsRef<Path>, output: impl AsRef<Path>, file_type: &str, threads: u32) -> Result<()> {
    let (input, output) = (input.as_ref(), output.as_ref());
    let Some(&(ftype, _)) = FILE_TYPES.iter().find(|(_, name)| name.eq_ignore_ascii_case(file_type) && QUANTIZE_TO.contains(name)) else {
        return Err(Error::invalid_argument(format!("cannot quantize to {file_type:?}; choose one of {}", QUANTIZE_TO.join(", "))));
    };
    let header = crate::model::gguf::read_header(input)?;
    crate::model::hparams::check(&header)
        .map_err(|problem| Error::new(ErrorKind::InvalidModel, format!("{}: not a usable model: {problem}", input.display())))?;
    crate::backend::backend()?;
    let path_text = |p: &Path, what: &str| {
        p.to_str()
            .and_then(|s| std::ffi::CString::new(s).ok())
            .ok_or_else(|| Error::invalid_argument(format!("the {what} path {} is not valid UTF-8 text", p.display())))
    };
    let mut partial = output.as_os_str().to_owned();
    partial.push(".part");
    let partial = std::path::PathBuf::from(partial);
    let (c_input, c_partial) = (path_text(input, "input")?, path_text(&partial, "output")?);
    // SAFETY: plain data.
    let mut params = unsafe { llama_cpp_sys_2::llama_model_quantize_default_params() };
    params.ftype = ftype as _;
    params.nthread = threads as i32;
    params.allow_requantize = true;
    crate::log::clear_last_llama_error();
    // SAFETY: NUL-terminated paths and parameters that outlive the call; llama.cpp catches its
    // own exceptions (and, with the guard, its asserts) and returns non-zero.
    let status = crate::llama::guard::catching_asserts(|| unsafe {
        llama_cpp_sys_2::llama_model_quantize(c_input.as_ptr(), c_partial.as_ptr(), &params)
    });
    if status != 0 {
        let _ = std::fs::remove_file(&partial);
        let detail = crate::llama::guard::take_assert_message()
            .or_else(crate::log::take_last_llama_error)
            .unwrap_or_else(|| format!("llama_model_quantize returned {status}"));
        return Err(Error::new(ErrorKind::InvalidModel, format!("llama.cpp cannot quantize {}: {detail}", input.display())));
    }
    std::fs::rename(&partial, output).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        Error::with_source(ErrorKind::InvalidArgument, format!("cannot write {}", output.display()), e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        assert_eq!(file_type_name(Some(15)), "Q4_K_M");
        assert_eq!(file_type_name(Some(999)), "unknown");
        assert_eq!(file_type_name(None), "unknown");
        let err = quantize("/nonexistent.gguf", "/tmp/x.gguf", "IQ2_XXS", 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        let err = quantize("/nonexistent.gguf", "/tmp/x.gguf", "q4_k_m", 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModelNotFound, "{err}");
    }
}
