//! TEMPLATE [NUL CONVERSATION-JSON]: corral::fuzzing::chat_template (compile, then a bounded render).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = corral::fuzzing::chat_template(data);
});
