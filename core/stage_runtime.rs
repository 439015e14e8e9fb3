// The build-script step of the packaged bindings (`include!`d by bindings-node/build.rs and
// bindings-python/build.rs): llama.cpp's shared libraries and ggml's CPU variants, staged by
// corral-core's build script (DEP_CORRAL_RUNTIME_DIR), go into the package folder beside the
// binding's library, which finds them through its `$ORIGIN` run path.

/// Copies the runtime libraries into `package` (created if missing), after removing those of
/// an earlier build there: a library this build no longer has must not be shipped.
fn stage_runtime(package: &std::path::Path) {
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN");
    let runtime = std::path::PathBuf::from(std::env::var("DEP_CORRAL_RUNTIME_DIR").expect("corral-core exports its runtime folder"));
    println!("cargo:rerun-if-changed={}", runtime.display());
    std::fs::create_dir_all(package).unwrap();
    for entry in std::fs::read_dir(package).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("lib") && name.contains(".so") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    for entry in std::fs::read_dir(&runtime).unwrap().flatten() {
        std::fs::copy(entry.path(), package.join(entry.file_name())).unwrap();
    }
}
