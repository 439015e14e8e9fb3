//! `corral::quantize`: K-quant files made from the default model with llama.cpp's quantizer,
//! loaded and run; bad requests and bad inputs are typed errors.

#[path = "support/models.rs"]
mod models;

use corral::{ErrorKind, Model, ModelOptions};

#[test]
fn k_quant_files_from_the_default_model_load_and_generate() {
    let dir = std::env::temp_dir().join(format!("corral-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file_type in ["Q4_K_M", "Q6_K"] {
        let out = dir.join(format!("smollm2-{file_type}.gguf"));
        corral::quantize(models::default_model(), &out, file_type, 2).unwrap();
        let model = Model::load(&out, ModelOptions { context_length: Some(512), threads: Some(2), ..Default::default() }).unwrap();
        assert_eq!(model.info().quantization, file_type);
        let reply = model.complete("The capital of France is", &models::greedy(8)).unwrap();
        assert!(reply.usage.completion_tokens > 0, "{file_type}");
    }
    let err = corral::quantize(models::default_model(), dir.join("x.gguf"), "IQ2_XXS", 2).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let random = dir.join("random.gguf");
    std::fs::write(&random, b"GGUF not really a model at all").unwrap();
    assert_eq!(corral::quantize(&random, dir.join("y.gguf"), "Q8_0", 2).unwrap_err().kind(), ErrorKind::InvalidModel);
    assert!(!dir.join("y.gguf").exists() && !dir.join("y.gguf.part").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
