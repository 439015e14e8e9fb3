fn main() {
    // llama.cpp's shared libraries: beside the program when it is installed with them, else
    // where corral-core's build staged them (running it from target/).
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN");
    if let Ok(runtime) = std::env::var("DEP_CORRAL_RUNTIME_DIR") {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{runtime}");
    }
}
