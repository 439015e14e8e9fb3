//! Stages llama.cpp's shared libraries and ggml's CPU variant libraries, which every corral
//! package ships beside its own binary, in one folder: `$OUT_DIR/runtime`. Dependent crates
//! read it as `DEP_CORRAL_RUNTIME_DIR` (the Python and Node bindings copy it into their
//! packages); scripts/build-capi.sh finds it in cargo's build-script output.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let backends = PathBuf::from(
        std::env::var("DEP_LLAMA_BACKENDS_DIR")
            .expect("llama-cpp-sys-2 must be built with `dynamic-backends` (set in the workspace Cargo.toml)"),
    );
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
                std::fs::copy(&path, runtime.join(&name)).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
                staged += 1;
            }
        }
    }
    assert!(staged > 0, "no llama.cpp libraries found in {} or {}", libs.display(), backends.display());
    compile_native(&backends.parent().expect("backends folder has a parent").join("include"));
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        let cmake_build = backends.parent().expect("backends folder has a parent").join("build");
        relink_cpu_variants(&cmake_build, &runtime);
    }
    patch_rpc_backend(&backends.parent().expect("backends folder has a parent").join("build"), &runtime);
    // What packages ship (corral's kernels linked in), and ggml's variants as built, which
    // core/tests/kernel.rs compares them with.
    println!("cargo:rustc-env=CORRAL_BUILD_RUNTIME_DIR={}", runtime.display());
    println!("cargo:rustc-env=CORRAL_GGML_BACKEND_DIR={}", backends.display());
    println!("cargo:runtime_dir={}", runtime.display());
}

/// `native/abort_guard.cpp`: turns llama.cpp's asserts into errors (src/llama/guard.rs);
/// `native/memory_breakdown.cpp`: llama.cpp's memory figures (src/fit/mod.rs).
fn compile_native(llama_include: &Path) {
    println!("cargo:rerun-if-changed=native/abort_guard.cpp");
    println!("cargo:rerun-if-changed=native/memory_breakdown.cpp");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("native/abort_guard.cpp")
        .file("native/memory_breakdown.cpp")
        .include(llama_include)
        .warnings(true)
        .compile("corral_abort_guard");
}

/// `libllama.so.0`: the name the dynamic loader asks for (not `libllama.so` or `.so.0.0.1`).
fn is_soname(name: &str) -> bool {
    name.starts_with("lib") && name.split_once(".so.").is_some_and(|(_, version)| !version.is_empty() && !version.contains('.'))
}

/// `libggml-cpu-haswell.so`: backend modules, which ggml opens by path.
fn is_module(name: &str) -> bool {
    name.starts_with("lib") && name.ends_with(".so")
}

/// One of corral's kernels: it defines `symbol`, and ggml's own definition (in the variant's
/// object of `ggml_source`) is renamed to `renamed` so that corral's can hand cases back to it.
struct Kernel {
    source: &'static str,
    ggml_source: &'static str,
    symbol: &'static str,
    renamed: &'static str,
}

const KERNELS: [Kernel; 6] = [
    Kernel {
        source: "kernels/quant_gemm.cpp",
        ggml_source: "ggml-cpu/llamafile/sgemm.cpp",
        symbol: "llamafile_sgemm",
        renamed: "ggml_llamafile_sgemm",
    },
    Kernel {
        source: "kernels/k_quant_gate.cpp",
        ggml_source: "ggml-cpu/tiled/tiled.cpp",
        symbol: "ggml_compute_forward_mul_mat_tiled",
        renamed: "ggml_compute_forward_mul_mat_tiled_ggml",
    },
    Kernel {
        source: "kernels/quantize_q8_k.c",
        ggml_source: "ggml-cpu/arch/x86/quants.c",
        symbol: "quantize_row_q8_K",
        renamed: "ggml_quantize_row_q8_K",
    },
    Kernel {
        source: "kernels/flash_attention.cpp",
        ggml_source: "ggml-cpu/ops.cpp",
        symbol: "ggml_compute_forward_flash_attn_ext",
        renamed: "ggml_compute_forward_flash_attn_ext_ggml",
    },
    Kernel {
        source: "kernels/activations.cpp",
        ggml_source: "ggml-cpu/ops.cpp",
        symbol: "ggml_compute_forward_glu",
        renamed: "ggml_compute_forward_glu_ggml",
    },
    Kernel {
        source: "kernels/normalization.cpp",
        ggml_source: "ggml-cpu/ops.cpp",
        symbol: "ggml_compute_forward_rms_norm_mul_fused",
        renamed: "ggml_compute_forward_rms_norm_mul_fused_ggml",
    },
];

/// Headers the kernels share.
const KERNEL_HEADERS: [&str; 1] = ["kernels/simd_math.h"];

/// A ggml source that the variants carrying corral's kernels compile with one edit, so that
/// corral's kernels get the weights ggml would otherwise keep for its own code.
struct SourceEdit {
    source: &'static str,
    upstream: &'static str,
    edited: &'static str,
    /// What the edit removes (for the warning when upstream's text has changed).
    removes: &'static str,
}

const SOURCE_EDITS: [SourceEdit; 2] = [
    // ggml's CPU weight repacking copies Q4_0 and Q4_K weights into its own interleaved layouts
    // at load on every AVX2 CPU, and then computes them itself: the copies would never reach
    // corral's kernels. IQ4_NL is still repacked.
    SourceEdit {
        source: "ggml-cpu/repack.cpp",
        upstream: "    if (cur->type == GGML_TYPE_Q4_0) {\n        if (ggml_cpu_has_avx2() ||",
        edited: "    if (cur->type == GGML_TYPE_Q4_0 || cur->type == GGML_TYPE_Q4_K) {\n        return nullptr;  // corral: its kernels take Q4_0 and Q4_K\n    }\n    if (cur->type == GGML_TYPE_Q4_0) {\n        if (ggml_cpu_has_avx2() ||",
        removes: "the Q4_0 and Q4_K repack cases",
    },
    // On AMX CPUs (sapphirerapids) ggml's AMX buffer takes Q4_K, Q5_K and Q6_K weights at load,
    // repacked for its own code, which ran Q4_K_M prompts 7-11% and generation 0-7% slower than
    // corral's kernel. Q4_0, Q4_1, Q8_0 and IQ4_XS stay with AMX (on Q4_1 its decoding was
    // faster). Variants without AMX compile this code out either way.
    SourceEdit {
        source: "ggml-cpu/amx/amx.cpp",
        upstream: "            case GGML_TYPE_Q4_K:\n            case GGML_TYPE_Q5_K:\n            case GGML_TYPE_Q6_K:\n            case GGML_TYPE_IQ4_XS:\n                alignment = 256; // QK_K\n",
        edited: "            case GGML_TYPE_Q4_K:\n            case GGML_TYPE_Q5_K:\n            case GGML_TYPE_Q6_K:\n                return false;  // corral: its K-quant kernel takes them\n            case GGML_TYPE_IQ4_XS:\n                alignment = 256; // QK_K\n",
        removes: "the AMX buffer's K-quant cases",
    },
];

/// How one variant compiled one of the ggml sources a kernel replaces.
struct Compiled<'a> {
    kernel: &'a Kernel,
    command: &'a str,
    dir: &'a Path,
}

/// Replaces each staged `libggml-cpu-<variant>.so` built with AVX2 by the same objects plus
/// corral's kernels, ggml's versions of their functions renamed so that corral's wrap them.
fn relink_cpu_variants(cmake_build: &Path, runtime: &Path) {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    for kernel in &KERNELS {
        println!("cargo:rerun-if-changed={}", kernel.source);
    }
    for header in KERNEL_HEADERS {
        println!("cargo:rerun-if-changed={header}");
    }
    let work = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("relink");
    let _ = std::fs::remove_dir_all(&work);
    let Ok(commands) = std::fs::read_to_string(cmake_build.join("compile_commands.json")) else {
        println!("cargo:warning=no compile_commands.json in {}: CPU variants ship without corral's kernels", cmake_build.display());
        return;
    };
    let Ok(commands) = serde_json::from_str::<Vec<serde_json::Value>>(&commands) else {
        println!("cargo:warning=unreadable compile_commands.json: CPU variants ship without corral's kernels");
        return;
    };
    let mut variants: std::collections::BTreeMap<&str, Vec<Compiled>> = Default::default();
    let mut edits: std::collections::BTreeMap<&str, Vec<(&SourceEdit, &str, &Path)>> = Default::default();
    for entry in &commands {
        let (Some(command), Some(dir), Some(file)) = (entry["command"].as_str(), entry["directory"].as_str(), entry["file"].as_str())
        else {
            continue;
        };
        if !command.contains("-DGGML_AVX2") {
            continue;
        }
        let Some(variant) = variant_of(command) else { continue };
        for edit in SOURCE_EDITS.iter().filter(|e| file.ends_with(e.source)) {
            edits.entry(variant).or_default().push((edit, command, Path::new(dir)));
        }
        for kernel in KERNELS.iter().filter(|k| file.ends_with(k.ggml_source)) {
            variants.entry(variant).or_default().push(Compiled { kernel, command, dir: Path::new(dir) });
        }
    }
    for (variant, compiled) in &variants {
        let library = runtime.join(format!("libggml-cpu-{variant}.so"));
        if !library.exists() {
            continue;
        }
        let Some(edits) = edits.get(variant).filter(|e| compiled.len() == KERNELS.len() && e.len() == SOURCE_EDITS.len()) else {
            println!("cargo:warning=libggml-cpu-{variant}.so ships without corral's kernels: its sources were not all found");
            continue;
        };
        if let Err(e) = relink_variant(variant, compiled, edits, &manifest, &work.join(variant), &library) {
            println!("cargo:warning=libggml-cpu-{variant}.so ships without corral's kernels: {e}");
        }
    }
}

/// `ggml-cpu-haswell` from `... CMakeFiles/ggml-cpu-haswell.dir/...`.
fn variant_of(command: &str) -> Option<&str> {
    let start = command.find("CMakeFiles/ggml-cpu-")? + "CMakeFiles/ggml-cpu-".len();
    let len = command[start..].find(".dir/")?;
    Some(&command[start..start + len])
}

/// The variant's compile command split at its output: (everything before ` -o `, the object).
fn split_output(command: &str) -> Result<(&str, &str), String> {
    let output_at = command.rfind(" -o ").ok_or("unexpected compile command")?;
    Ok((&command[..output_at], command[output_at + 4..].split_whitespace().next().unwrap_or("")))
}

/// Compiles a ggml source with its edit applied, as the variant compiled the original.
fn compile_edited((edit, command, dir): (&SourceEdit, &str, &Path), work: &Path) -> Result<(String, String), String> {
    let (flags, ggml_object) = split_output(command)?;
    let source = command.rsplit(" -c ").next().ok_or("unexpected compile command")?.trim();
    println!("cargo:rerun-if-changed={source}");
    let text = std::fs::read_to_string(source).map_err(|e| format!("{source}: {e}"))?;
    if text.matches(edit.upstream).count() != 1 {
        return Err(format!("{source} no longer has {} that corral edits out", edit.removes));
    }
    let name = Path::new(source).file_name().and_then(|n| n.to_str()).ok_or("unexpected compile command")?;
    let edited = work.join(name);
    std::fs::write(&edited, text.replace(edit.upstream, edit.edited)).map_err(|e| e.to_string())?;
    let object = edited.with_extension("o");
    // The source's own folder first for its quoted includes, as beside the original.
    let folder = Path::new(source).parent().ok_or("unexpected compile command")?;
    run_shell(&format!("{flags} -iquote {} -o {} -c {}", quote(folder), quote(&object), quote(&edited)), dir)?;
    Ok((ggml_object.to_string(), quote(&object)))
}

fn relink_variant(
    variant: &str,
    compiled: &[Compiled],
    edits: &[(&SourceEdit, &str, &Path)],
    manifest: &Path,
    work: &Path,
    library: &Path,
) -> Result<(), String> {
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let objcopy = std::env::var("OBJCOPY").unwrap_or_else(|_| "objcopy".into());
    let nm = std::env::var("NM").unwrap_or_else(|_| "nm".into());
    // Each kernel compiled by the variant's compile command for the ggml source it replaces.
    // ggml object (as the link command names it) -> (its folder, its kernels, their objects).
    let mut by_object: std::collections::BTreeMap<&str, (&Path, Vec<&Kernel>, Vec<String>)> = Default::default();
    for Compiled { kernel, command, dir } in compiled {
        let (flags, ggml_object) = split_output(command)?;
        let stem = Path::new(kernel.source).file_stem().unwrap().to_str().unwrap();
        let kernel_object = work.join(format!("{stem}.o"));
        run_shell(&format!("{flags} -o {} -c {}", quote(&kernel_object), quote(&manifest.join(kernel.source))), dir)?;
        let entry = by_object.entry(ggml_object).or_insert_with(|| (dir, Vec::new(), Vec::new()));
        entry.1.push(kernel);
        entry.2.push(quote(&kernel_object));
    }
    // The ggml object with its functions renamed -> the renamed copy and corral's kernel objects.
    let mut swaps = Vec::new();
    for (ggml_object, (dir, kernels, kernel_objects)) in by_object {
        let name = Path::new(ggml_object).file_name().and_then(|n| n.to_str()).ok_or("unexpected compile command")?;
        let renamed = work.join(format!("ggml-{name}"));
        let mut objcopy_command = Command::new(&objcopy);
        for kernel in &kernels {
            objcopy_command.args(["--redefine-sym", &format!("{}={}", kernel.symbol, kernel.renamed)]);
        }
        let status = objcopy_command.arg(dir.join(ggml_object)).arg(&renamed).status().map_err(|e| format!("{objcopy}: {e}"))?;
        if !status.success() {
            return Err(format!("{objcopy} failed on {ggml_object}"));
        }
        // objcopy renames nothing, silently, when the object lacks the symbol: then the variant
        // would link with corral's kernel calling an undefined ggml function.
        let symbols = Command::new(&nm).arg("--defined-only").arg(&renamed).output().map_err(|e| format!("{nm}: {e}"))?;
        let symbols = String::from_utf8_lossy(&symbols.stdout);
        for kernel in &kernels {
            if !symbols.lines().any(|l| l.split_whitespace().last() == Some(kernel.renamed)) {
                return Err(format!("{ggml_object} does not define {}", kernel.symbol));
            }
        }
        swaps.push((ggml_object.to_string(), format!("{} {}", quote(&renamed), kernel_objects.join(" "))));
    }
    for &edit in edits {
        swaps.push(compile_edited(edit, work)?);
    }
    relink(compiled[0].dir, &format!("ggml-cpu-{variant}"), &swaps, work, library)
}

/// Runs CMake's link command for `target` (in the folder its compile commands ran in) with
/// the objects in `swaps` replaced, no build-folder run path (ggml-base is already loaded when
/// a backend module is), into the work folder, and copies the result over `library`.
fn relink(dir: &Path, target: &str, swaps: &[(String, String)], work: &Path, library: &Path) -> Result<(), String> {
    let link_file = dir.join(format!("CMakeFiles/{target}.dir/link.txt"));
    let link = std::fs::read_to_string(&link_file).map_err(|e| format!("{}: {e}", link_file.display()))?;
    let relinked = work.join(library.file_name().unwrap());
    let mut args = Vec::new();
    let mut words = link.split_whitespace();
    let mut swapped = 0;
    while let Some(word) = words.next() {
        if word == "-o" {
            words.next();
            args.push(format!("-o {}", quote(&relinked)));
        } else if let Some((_, replacement)) = swaps.iter().find(|(object, _)| word.trim_matches('"') == object) {
            args.push(replacement.clone());
            swapped += 1;
        } else if !word.starts_with("-Wl,-rpath,") {
            args.push(word.to_string());
        }
    }
    if swapped != swaps.len() {
        return Err(format!("not every replaced object was found in {}", link_file.display()));
    }
    run_shell(&args.join(" "), dir)?;
    std::fs::copy(&relinked, library).map_err(|e| format!("copy {}: {e}", relinked.display()))?;
    Ok(())
}

/// Where a worker lost during generation must surface: upstream's RPC client asserts on its
/// own dispatcher thread (no frame there can catch it: the host process aborts). corral
/// builds the module from upstream's source with these edits: the dispatcher thread marks the
/// connection lost and completes its messages; the thread that waits on them (a decode, a
/// load) then calls the handler corral installs (`corral_rpc_lost_handler`, see
/// core/src/backend/rpc.rs), which throws where corral catches (src/llama/guard.rs).
const RPC_PATCHES: &[(&str, &str, usize)] = &[
    (
        "    std::atomic_bool running;\n",
        "    std::atomic_bool running;\n    std::atomic_bool lost{false};\n    std::string endpoint;\n    void report_lost();\n",
        1,
    ),
    (
        "static void rpc_dispatcher_trampoline(rpc_dispatcher * dispatcher)\n",
        r#"extern "C" __attribute__((visibility("default"))) void (*corral_rpc_lost_handler)(const char * endpoint);
void (*corral_rpc_lost_handler)(const char * endpoint) = nullptr;

void rpc_dispatcher::report_lost() {
    if (corral_rpc_lost_handler != nullptr) {
        corral_rpc_lost_handler(endpoint.c_str());
        return;
    }
    GGML_ABORT("Remote RPC server %s crashed or returned malformed response", endpoint.c_str());
}

static void rpc_dispatcher_trampoline(rpc_dispatcher * dispatcher)
"#,
        1,
    ),
    // The two blocking sends with a reply.
    (
        "    auto future = msg->completion.get_future();\n    future.wait();\n}\n",
        "    auto future = msg->completion.get_future();\n    future.wait();\n    if (lost) {\n        report_lost();\n    }\n}\n",
        2,
    ),
    // The blocking send without a reply: freeing a buffer on a lost worker succeeds (models
    // and contexts are freed after the loss, possibly while an exception unwinds).
    (
        "    msg->output_size = 0;\n    GGML_ASSERT(queue.push(msg));\n    auto future = msg->completion.get_future();\n    future.wait();\n    if (lost) {",
        "    msg->output_size = 0;\n    GGML_ASSERT(queue.push(msg));\n    auto future = msg->completion.get_future();\n    future.wait();\n    if (lost && cmd != RPC_CMD_FREE_BUFFER) {",
        1,
    ),
    (
        "    ev->sf.wait();\n",
        "    ev->sf.wait();\n    if (lost) {\n        report_lost();\n    }\n",
        1,
    ),
    (
        "    msg->completion.get_future().wait();\n",
        "    msg->completion.get_future().wait();\n    if (lost) {\n        report_lost();\n    }\n",
        1,
    ),
    (
        "    LOG_DBG(\"[%s] connected to %s\\n\", __func__, endpoint.c_str());\n",
        "    LOG_DBG(\"[%s] connected to %s\\n\", __func__, endpoint.c_str());\n    this->endpoint = endpoint;\n",
        1,
    ),
    (
        "        if (msg_ptr->cmd != RPC_CMD_NONE) {\n            if (msg_ptr->output) {\n                bool status = send_rpc_cmd(sock, msg_ptr->cmd, msg_ptr->input.get(), msg_ptr->input_size, msg_ptr->output, msg_ptr->output_size);\n                RPC_STATUS_ASSERT(status);\n            } else {\n                bool status = send_rpc_cmd(sock, msg_ptr->cmd, msg_ptr->input.get(), msg_ptr->input_size);\n                RPC_STATUS_ASSERT(status);\n            }\n        }\n",
        "        if (msg_ptr->cmd != RPC_CMD_NONE && !lost) {\n            bool status = msg_ptr->output\n                ? send_rpc_cmd(sock, msg_ptr->cmd, msg_ptr->input.get(), msg_ptr->input_size, msg_ptr->output, msg_ptr->output_size)\n                : send_rpc_cmd(sock, msg_ptr->cmd, msg_ptr->input.get(), msg_ptr->input_size);\n            if (!status) {\n                lost = true;\n            }\n        }\n",
        1,
    ),
];

/// A host that writes to a worker that died gets SIGPIPE, which kills a process that has not
/// ignored it (C programs, unlike Python, Node and Rust ones): upstream's sends ask for an
/// error instead.
const RPC_TRANSPORT_PATCHES: &[(&str, &str, usize)] = &[(
    "send(fd, (const char *)data + bytes_sent, size_to_send, 0)",
    "send(fd, (const char *)data + bytes_sent, size_to_send, MSG_NOSIGNAL)",
    1,
)];

/// Rebuilds the staged `libggml-rpc.so` from upstream's sources with [`RPC_PATCHES`] and
/// [`RPC_TRANSPORT_PATCHES`].
fn patch_rpc_backend(cmake_build: &Path, runtime: &Path) {
    let library = runtime.join("libggml-rpc.so");
    if !library.exists() {
        println!("cargo:warning=llama.cpp was built without GGML_RPC: packages ship without the RPC backend");
        return;
    }
    let commands = std::fs::read_to_string(cmake_build.join("compile_commands.json")).expect("compile_commands.json");
    let commands: Vec<serde_json::Value> = serde_json::from_str(&commands).expect("compile_commands.json");
    let work = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("rpc");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let mut swaps = Vec::new();
    let mut link_dir = PathBuf::new();
    for (source_name, patches) in [("ggml-rpc.cpp", RPC_PATCHES), ("transport.cpp", RPC_TRANSPORT_PATCHES)] {
        let entry = commands
            .iter()
            .find(|e| e["file"].as_str().is_some_and(|f| f.ends_with(&format!("ggml-rpc/{source_name}"))))
            .unwrap_or_else(|| panic!("libggml-rpc.so is built but {source_name} is not in compile_commands.json"));
        let (command, dir, file) =
            (entry["command"].as_str().unwrap(), Path::new(entry["directory"].as_str().unwrap()), entry["file"].as_str().unwrap());
        let mut source = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (upstream, patched, count) in patches {
            let found = source.matches(upstream).count();
            assert_eq!(found, *count, "{source_name} changed upstream: {upstream:?} found {found} times, {count} expected (core/build.rs)");
            source = source.replace(upstream, patched);
        }
        let patched_source = work.join(source_name);
        std::fs::write(&patched_source, source).unwrap();
        // The module's own compile command, on the patched copy (which includes its headers
        // from upstream's folder).
        let output_at = command.rfind(" -o ").expect("unexpected compile command");
        let (flags, object) = (&command[..output_at], command[output_at + 4..].split_whitespace().next().unwrap_or(""));
        let upstream_dir = Path::new(file).parent().unwrap();
        let patched_object = work.join(source_name).with_extension("o");
        run_shell(&format!("{flags} -I{} -o {} -c {}", quote(upstream_dir), quote(&patched_object), quote(&patched_source)), dir)
            .unwrap_or_else(|e| panic!("building the RPC backend with corral's changes failed: {e}"));
        swaps.push((object.to_string(), quote(&patched_object)));
        link_dir = dir.to_path_buf();
    }
    if let Err(e) = relink(&link_dir, "ggml-rpc", &swaps, &work, &library) {
        panic!("building the RPC backend with corral's changes failed: {e}");
    }
}

fn run_shell(command: &str, dir: &Path) -> Result<(), String> {
    let output = Command::new("sh").arg("-c").arg(command).current_dir(dir).output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("`{command}` failed: {}", String::from_utf8_lossy(&output.stderr)))
    }
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
