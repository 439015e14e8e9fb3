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
    // Every source file of the crate, in a fixed order (lib.rs first, then by name).
    let mut sources: Vec<PathBuf> = std::fs::read_dir(crate_dir.join("src"))
        .expect("bindings-c/src")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    sources.sort_by_key(|path| (path.file_name().unwrap() != "lib.rs", path.clone()));
    let mut builder = cbindgen::Builder::new().with_config(config);
    for source in sources {
        builder = builder.with_src(source);
    }
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
