//! GGUF header bytes: corral::fuzzing::gguf_header (the header reader, then the hyperparameter checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = corral::fuzzing::gguf_header(data);
});
