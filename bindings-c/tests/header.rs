//! The committed C header must equal what cbindgen generates from the sources, and its version
//! macros must match Cargo.toml. Regenerate with CORRAL_BLESS=1.

use std::path::PathBuf;

fn generate() -> String {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let (major, minor, patch) = (
        env!("CARGO_PKG_VERSION_MAJOR").parse::<u32>().unwrap(),
        env!("CARGO_PKG_VERSION_MINOR").parse::<u32>().unwrap(),
        env!("CARGO_PKG_VERSION_PATCH").parse::<u32>().unwrap(),
    );
    config.after_includes = Some(format!(
        "\n#define CORRAL_VERSION \"{major}.{minor}.{patch}\"\n#define CORRAL_VERSION_MAJOR {major}\n#define CORRAL_VERSION_MINOR {minor}\n#define CORRAL_VERSION_PATCH {patch}\n/* MAJOR * 10000 + MINOR * 100 + PATCH */\n#define CORRAL_VERSION_NUMBER {}\n",
        major * 10000 + minor * 100 + patch
    ));
    // lib.rs alone: cbindgen follows its `mod` declarations to every other file (giving those
    // files too would declare each function twice).
    let builder = cbindgen::Builder::new().with_config(config).with_src(crate_dir.join("src/lib.rs"));
    let mut out = Vec::new();
    builder.generate().expect("cbindgen generates the header").write(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn committed_header_matches_the_sources() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/corral.h");
    let fresh = generate();
    if std::env::var_os("CORRAL_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == fresh, "include/corral.h is stale: run CORRAL_BLESS=1 cargo test --release -p corral-c --test header");
}

#[test]
fn version_macros_match_cargo_toml() {
    let header = generate();
    let number = |name: &str| -> u32 {
        let line = header.lines().find(|l| l.starts_with(&format!("#define {name} "))).unwrap_or_else(|| panic!("{name} missing"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (major, minor, patch) = (number("CORRAL_VERSION_MAJOR"), number("CORRAL_VERSION_MINOR"), number("CORRAL_VERSION_PATCH"));
    let cargo: Vec<u32> = env!("CARGO_PKG_VERSION").split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(vec![major, minor, patch], cargo);
    assert_eq!(number("CORRAL_VERSION_NUMBER"), cargo[0] * 10000 + cargo[1] * 100 + cargo[2]);
    assert!(header.contains(&format!("#define CORRAL_VERSION \"{}\"", env!("CARGO_PKG_VERSION"))));
}

/// Each function is declared once (C compilers warn on redundant declarations).
#[test]
fn every_function_is_declared_once() {
    let header = generate();
    let mut seen = std::collections::HashSet::new();
    for line in header.lines() {
        if let Some(name) = line.split('(').next().and_then(|head| head.split_whitespace().last()) {
            if line.contains('(') && name.trim_start_matches('*').starts_with("corral_") && line.trim_end().ends_with([',', ';', '(']) {
                let name = name.trim_start_matches('*');
                if !line.trim_start().starts_with("typedef") {
                    assert!(seen.insert(name.to_string()), "{name} is declared twice");
                }
            }
        }
    }
    assert_eq!(seen, exported_functions(), "the header declares exactly the crate's exported functions");
}

/// The names of the `extern "C"` functions in bindings-c/src.
fn exported_functions() -> std::collections::HashSet<String> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut names = std::collections::HashSet::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            if let Some((_, rest)) = line.split_once("extern \"C\" fn ") {
                if line.starts_with("pub ") {
                    names.insert(rest.split('(').next().unwrap().trim().to_string());
                }
            }
        }
    }
    names
}
