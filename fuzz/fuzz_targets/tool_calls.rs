//! SELECTOR MODEL-OUTPUT: corral::fuzzing::tool_calls (the streaming tool-call parser, tool_choice, tool specs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = corral::fuzzing::tool_calls(data);
});
