//! Shared helpers: one loaded tiny model per test binary, images, options.

use std::path::PathBuf;
use std::sync::OnceLock;

use smolvlm::{GenerationOptions, LoadOptions, Model, ModelFiles};
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
