//! Puts llama.cpp's shared libraries and ggml's CPU variants (staged by corral-core's build
//! script) into the Python package, beside the extension module, which finds them through
//! its `$ORIGIN` run path. maturin then packs them into the wheel with the module.

// The step itself is shared with the Node binding's build script.
include!("../core/stage_runtime.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../core/stage_runtime.rs");
    stage_runtime(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python").join("corral"));
}
