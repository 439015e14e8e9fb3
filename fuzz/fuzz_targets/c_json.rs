//! MESSAGES-JSON [NUL TOOLS-JSON]: the C ABI's JSON entry point,
//! `corral_model_apply_chat_template_json` (corral-c: the messages JSON and tools JSON parsing
//! every `*_json` function shares, then the chat template), on one model loaded at the first
//! input: `$CORRAL_FUZZ_MODEL`, default models/SmolLM2-135M-Instruct.Q4_1.gguf (the C ABI checks
//! its model argument before it parses anything). An input of odd length renders with a
//! tool-aware template (Qwen 2.5's) given as Jinja source, an even one with the model's own
//! (SmolLM2's, which knows no tools: corral describes them in a system message).
//! A panic inside corral-c is caught by its panic boundary as CORRAL_ERR_PANIC, but libfuzzer-sys's
//! panic hook aborts first, so it is reported as a crash.
#![no_main]

use std::ffi::CString;
use std::sync::OnceLock;

use corral_c::{corral_model, corral_model_apply_chat_template_json, corral_model_load, corral_status, corral_string_free};
use libfuzzer_sys::fuzz_target;

const TOOL_TEMPLATE: &str = include_str!("../../core/tests/data/chat_templates/Qwen-Qwen2.5-7B-Instruct.jinja");

struct Model(*mut corral_model);
// SAFETY: corral_model is thread-safe (include/corral.h); the fuzzer calls from one thread anyway.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

fn model() -> *const corral_model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = std::env::var("CORRAL_FUZZ_MODEL").unwrap_or_else(|_| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
            let c_path = CString::new(path.clone()).expect("model path without NUL");
            let mut model = std::ptr::null_mut();
            // SAFETY: a NUL-terminated path, NULL params (defaults), a valid out-pointer.
            let status = unsafe { corral_model_load(c_path.as_ptr(), std::ptr::null(), &mut model) };
            // Setup, not a finding: without the model nothing here can run.
            if status != corral_status::CORRAL_OK {
                eprintln!("c_json: cannot load the model {path} (status {status:?}); set CORRAL_FUZZ_MODEL");
                std::process::exit(2);
            }
            Model(model)
        })
        .0
}

fuzz_target!(|data: &[u8]| {
    let model = model();
    let (messages, tools) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(messages) = CString::new(messages) else { return };
    let Ok(tools) = tools.map(CString::new).transpose() else { return };
    let template = (data.len() % 2 == 1).then(|| CString::new(TOOL_TEMPLATE).expect("template without NUL"));
    let mut prompt = std::ptr::null_mut();
    // SAFETY: a loaded model, NUL-terminated strings or NULL, a valid out-pointer.
    let status = unsafe {
        corral_model_apply_chat_template_json(
            model,
            messages.as_ptr(),
            true,
            tools.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
            template.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
            &mut prompt,
        )
    };
    assert_ne!(status, corral_status::CORRAL_ERR_PANIC, "corral-c caught a panic");
    if status == corral_status::CORRAL_OK {
        // SAFETY: the string corral handed out, freed once.
        unsafe { corral_string_free(prompt) };
    }
});
