//! Stages llama.cpp's shared libraries and ggml's CPU variant libraries, which every corral
//! package ships beside its own binary, in one folder: `$OUT_DIR/runtime`. Dependent crates
//! read it as `DEP_CORRAL_RUNTIME_DIR` (the Python and Node bindings copy it into their
//! packages); scripts/build-capi.sh finds it in cargo's build-script output.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let backends = PathBuf::from(std::env::var("DEP_LLAMA_BACKENDS_DIR").expect(
        "llama-cpp-sys-2 must be built with `dynamic-backends` (set in the workspace Cargo.toml)",
    ));
    // llama-cpp-sys-2 installs llama.cpp into its OUT_DIR: lib/ holds the shared libraries.
    let libs = backends.parent().expect("backends folder has a parent").join("lib");
    let runtime = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("runtime");
    let _ = std::fs::remove_dir_all(&runtime);
    std::fs::create_dir_all(&runtime).unwrap();
    let mut staged = 0;
    for (dir, wanted) in [(&libs, is_soname as fn(&str) -> bool), (&backends, is_module)] {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if wanted(&name) {
                // Staged again whenever llama-cpp-sys-2 rebuilds one of them.
                println!("cargo:rerun-if-changed={}", path.display());
                // Follow the version symlinks: packages hold real files named by soname.
                std::fs::copy(&path, runtime.join(&name))
                    .unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
                staged += 1;
            }
        }
    }
    assert!(staged > 0, "no llama.cpp libraries found in {} or {}", libs.display(), backends.display());
    println!("cargo:rustc-env=CORRAL_BUILD_BACKEND_DIR={}", backends.display());
    println!("cargo:runtime_dir={}", runtime.display());
}

/// `libllama.so.0`: the name the dynamic loader asks for (not `libllama.so` or `.so.0.0.1`).
fn is_soname(name: &str) -> bool {
    name.starts_with("lib")
        && name.split_once(".so.").is_some_and(|(_, version)| !version.is_empty() && !version.contains('.'))
}

/// `libggml-cpu-haswell.so`: backend modules, which ggml opens by path.
fn is_module(name: &str) -> bool {
    name.starts_with("lib") && name.ends_with(".so")
}
