//! napi-rs set-up, and llama.cpp's shared libraries and ggml's CPU variants (staged by
//! corral-core's build script) copied into the package's native/ folder, beside the addon,
//! which finds them through its `$ORIGIN` run path.

include!("../core/stage_runtime.rs");

fn main() {
    napi_build::setup();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../core/stage_runtime.rs");
    stage_runtime(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("native"));
}
