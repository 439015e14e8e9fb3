//! JSON schema text: corral::fuzzing::json_schema (corral's number bounds + llama.cpp's json-schema-to-grammar).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = corral::fuzzing::json_schema(data);
});
