//! Shared helpers: one loaded tiny model per test binary, images, options.

use std::path::PathBuf;
use std::sync::OnceLock;

use smolvlm::{GenerationOptions, LoadOptions, Model, ModelFiles, Session};
use smolvlm_testkit::{tiny_model, tiny_model_with, TinyModelSpec};

/// Tokens generated per caption in tests: enough to tell images apart.
pub const MAX_TOKENS: u32 = 16;

/// The prompt llama-mtmd-cli renders for `-p "Describe this image."`.
pub const MTMD_CLI_PROMPT: &str =
    "<|im_start|>User: <__media__>Describe this image.<end_of_utterance>\nAssistant:";

pub fn files() -> ModelFiles {
    let pair = tiny_model();
    ModelFiles::new(pair.model, pair.mmproj)
}

pub fn files_with(spec: &TinyModelSpec) -> ModelFiles {
    let pair = tiny_model_with(spec);
    ModelFiles::new(pair.model, pair.mmproj)
}

/// The tiny pair with 2 text heads of 32 dims (1 KV head): a quantized KV
/// cache needs a head size its 32-value blocks divide, and the default pair's
/// heads have 16.
pub fn wide_heads() -> TinyModelSpec {
    TinyModelSpec {
        text_heads: 2,
        text_kv_heads: 1,
        ..TinyModelSpec::default()
    }
}

pub fn load(options: &LoadOptions) -> Model {
    Model::load(&files(), options).unwrap()
}

/// The tiny model with 2 threads, loaded once per test binary.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| load(&LoadOptions::default().with_threads(2)))
}

pub fn greedy() -> GenerationOptions {
    GenerationOptions::default().with_max_tokens(MAX_TOKENS)
}

/// A session of [`model`], after an error or any other use, must caption
/// exactly as a fresh one does.
pub fn assert_captions_like_a_fresh_session(session: &mut Session, img: &image::RgbImage) {
    let after = session
        .caption(img, "Describe this image.", &greedy())
        .unwrap();
    let fresh = model()
        .session()
        .unwrap()
        .caption(img, "Describe this image.", &greedy())
        .unwrap();
    assert_eq!(after.tokens, fresh.tokens);
}

/// A fresh temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "smolvlm-test-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process's outcome, for assertion messages.
pub fn dump(out: &std::process::Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
