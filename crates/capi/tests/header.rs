//! The committed C header is what cbindgen makes of the code now. When the
//! ABI changes, regenerate it:
//! `SMOLVLM_BLESS=1 cargo test --release --workspace --test header`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

#[test]
fn the_committed_header_matches_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .unwrap()
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = dir.join("include/smolvlm.h");
    if std::env::var_os("SMOLVLM_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale; regenerate it with SMOLVLM_BLESS=1 cargo test --release --workspace --test header",
        path.display()
    );
    for name in [
        "smolvlm_model *smolvlm_model_load(",
        "smolvlm_session *smolvlm_session_new(",
        "char *smolvlm_caption_file(",
        "const char *smolvlm_error_message(",
        "void smolvlm_error_free(",
        "void smolvlm_string_free(",
        "void smolvlm_session_free(",
        "void smolvlm_model_free(",
    ] {
        assert!(generated.contains(name), "the header lacks `{name}`");
    }
}
