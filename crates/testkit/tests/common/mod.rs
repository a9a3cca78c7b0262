//! What the testkit's llama.cpp tests share: loading a pair, and tokenizing
//! the prompt llama-mtmd-cli renders, through smolvlm's engine layer. Its
//! logs go to `tracing`, which these tests do not subscribe to.

#![allow(dead_code)]

use image::RgbImage;
use smolvlm_engine::{
    default_marker, Bitmap, ChunkKind, Chunks, Model, ModelParams, Vision, VisionParams,
};
use smolvlm_testkit::TinyModel;

/// Loads the pair's text model.
pub fn load_model(pair: &TinyModel) -> Model {
    Model::load(&pair.model, &ModelParams::default(), &mut |_| true)
        .unwrap_or_else(|e| panic!("{} loads: {e}", pair.model.display()))
}

/// The vision encoder parameters llama-mtmd-cli uses on 2 threads, CPU.
pub fn vision_params() -> VisionParams {
    VisionParams {
        use_gpu: false,
        threads: 2,
        ..VisionParams::default()
    }
}

/// Loads the pair's projector for `model`.
pub fn load_vision(pair: &TinyModel, model: &Model) -> Vision {
    Vision::load(model, &pair.mmproj, &vision_params(), &mut |_| true)
        .unwrap_or_else(|e| panic!("{} loads: {e}", pair.mmproj.display()))
}

/// The prompt llama-mtmd-cli renders for `-p "Describe this image."` and one image.
pub fn prompt() -> String {
    format!(
        "<|im_start|>User: {}Describe this image.<end_of_utterance>\nAssistant:",
        default_marker()
    )
}

/// Tokenizes [`prompt`] with `img`.
pub fn tokenize(vision: &Vision, img: &RgbImage) -> Chunks {
    let bitmap = Bitmap::from_rgb(img.width(), img.height(), img.as_raw()).unwrap();
    vision
        .tokenize(&prompt(), &[&bitmap], true)
        .expect("mtmd tokenize")
}

/// The text tokens of the chunks, in order, and the size of each image chunk.
pub fn layout(chunks: &Chunks) -> (Vec<i32>, Vec<usize>) {
    let mut text = Vec::new();
    let mut images = Vec::new();
    for chunk in chunks.iter() {
        match chunk.kind() {
            ChunkKind::Text => text.extend(chunk.text_tokens().iter().map(|t| t.0)),
            ChunkKind::Image => images.push(chunk.n_tokens()),
            other => panic!("unexpected {other:?} chunk"),
        }
    }
    (text, images)
}
