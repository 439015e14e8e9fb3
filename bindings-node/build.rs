//! napi-rs set-up, and llama.cpp's shared libraries and ggml's CPU variants (staged by
//! corral-core's build script) copied into the package's native/ folder, beside the addon,
//! which finds them through its `$ORIGIN` run path.

use std::path::PathBuf;

fn main() {
    napi_build::setup();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN");
    let runtime = PathBuf::from(std::env::var("DEP_CORRAL_RUNTIME_DIR").expect("corral-core exports its runtime folder"));
    println!("cargo:rerun-if-changed={}", runtime.display());
    let native = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("native");
    std::fs::create_dir_all(&native).unwrap();
    // Libraries from an earlier build that this one no longer has must not be shipped.
    for entry in std::fs::read_dir(&native).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("lib") && name.contains(".so") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    for entry in std::fs::read_dir(&runtime).unwrap().flatten() {
        std::fs::copy(entry.path(), native.join(entry.file_name())).unwrap();
    }
}
