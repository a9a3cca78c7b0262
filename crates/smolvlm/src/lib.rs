//! Run SmolVLM vision-language models inside your process through
//! llama.cpp's `mtmd` multimodal API: no server, no port, no HTTP and no
//! JPEG round-trip. The model is loaded once, and images go to mtmd as raw
//! RGB.
//!
//! Load a (model, mmproj) GGUF pair once as a [`Model`] (cheap to clone,
//! `Send + Sync`), open one [`Session`] per worker thread, and caption:
//!
//! ```no_run
//! use smolvlm::{GenerationOptions, LoadOptions, Model, ModelFiles};
//!
//! let model = Model::load(
//!     &ModelFiles::new("SmolVLM-256M-Instruct-Q8_0.gguf", "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf"),
//!     &LoadOptions::default(),
//! )?;
//! let mut session = model.session()?;
//! let options = GenerationOptions::default().with_max_tokens(64);
//! let caption = session.caption(std::path::Path::new("photo.jpg"), "Describe this image.", &options)?;
//! println!("{} ({} image tokens, {} tiles)", caption.text, caption.image_tokens, caption.tiles);
//! # Ok::<(), smolvlm::Error>(())
//! ```
//!
//! Where to read on:
//! - the sections below: loading, the types, prompts, cancellation,
//!   logging, GPU builds and the limitations;
//! - [`guide::models`]: presets, Hub repos, the cache, offline use and the
//!   pair checks;
//! - [`image`]: how an image is decoded, planned into tiles and resized
//!   before mtmd sees it, and the token budget.
//!
#![doc = include_str!("../docs/library.md")]
#![deny(missing_docs)]
// Every call into llama.cpp, and so every `unsafe` block, is in smolvlm-engine.
#![forbid(unsafe_code)]

pub mod batch;
mod conversation;
mod error;
mod generation;
pub mod gguf;
mod hub;
pub mod image;
mod model;
mod options;
mod pair;
mod preset;
mod prompt;
mod session;
mod source;
mod text;
pub mod video;
mod worker;

pub use crate::conversation::{Conversation, Message, Part, Role};
pub use crate::error::{
    kind_is_transient, CaptionError, Error, FileRole, ImageError, LoadError, Result, Stage,
};
pub use crate::generation::{CancelToken, GenerationOptions};
pub use crate::hub::{DownloadEvent, HubError, HubOptions, HubPair, DEFAULT_ENDPOINT};
pub use crate::image::ImageInput;
pub use crate::model::{Model, ModelFiles, ModelInfo};
pub use crate::options::{FlashAttention, KvCacheType, LoadOptions};
pub use crate::preset::{
    FileSelector, Miss, NoMatch, Preset, Quantization, RepoGgufs, DEFAULT_PRESET,
    DEFAULT_QUANTIZATION,
};
pub use crate::prompt::{Prompt, DEFAULT_PROMPT, FALLBACK_CHAT_TEMPLATE, MEDIA_MARKER};
pub use crate::session::{
    Caption, EncodeProgress, FinishReason, Progress, Session, Timings, TokenCount, VideoReport,
};
pub use crate::source::{HubRepo, ModelSource, ResolvedModel};
pub use crate::worker::{Event, Job, JobImage, Request, SubmitError, Worker};

/// Reference pages that are prose, not code.
pub mod guide {
    #[doc = include_str!("../docs/models.md")]
    pub mod models {}
}

/// Compiles the README's Rust examples as doctests, so they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
