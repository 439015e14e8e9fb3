//! Bytes: corral::fuzzing::session_state (a saved session state, as `session_from_state`
//! reads it before llama.cpp sees its KV bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(difference) = corral::fuzzing::session_state(data) {
        panic!("{difference}");
    }
});
