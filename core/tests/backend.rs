//! Without any ggml CPU library, loading a model is a clear, typed error, not a crash. (Its own
//! test binary: the backend is chosen once per process.)

use std::path::PathBuf;

#[test]
fn no_cpu_backend_is_a_typed_error_naming_the_folder() {
    let empty = std::env::temp_dir().join(format!("corral-no-backends-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    std::env::set_var("CORRAL_BACKEND_DIR", &empty);
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let error = corral::Model::load(&model, corral::ModelOptions::default()).unwrap_err();
    assert_eq!(error.kind(), corral::ErrorKind::Internal);
    assert!(error.message().contains("no llama.cpp CPU backend"), "{}", error.message());
    assert!(error.message().contains(&empty.display().to_string()), "{}", error.message());
    assert!(corral::cpu_variant().is_err(), "the failure is kept for the process");
    std::fs::remove_dir_all(&empty).unwrap();
}
