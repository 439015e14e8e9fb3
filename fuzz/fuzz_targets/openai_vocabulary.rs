//! JSON: corral::fuzzing::openai_vocabulary (generation options, messages, tools and
//! tool_choice as the Python and Node bindings hand them to corral-core).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = corral::fuzzing::openai_vocabulary(data);
});
