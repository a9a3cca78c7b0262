//! smolvlm's engine layer: the one safe binding over llama.cpp's C API, as
//! `llama-cpp-sys-2` generates it, for exactly what smolvlm uses.
//!
//! Every `unsafe` block of smolvlm lives in this crate, each with the
//! argument that makes it sound in a `// SAFETY:` comment. The rest of
//! smolvlm speaks only these types:
//!
//! - [`Model`]: a loaded text model (weights and vocabulary). Cheap to clone,
//!   `Send + Sync`; [`Vocab`] tokenizes with it.
//! - [`Context`]: one llama context (one KV cache) over a model, with its
//!   [`Batch`] of tokens to decode. `Send`, not `Sync`.
//! - [`Sampler`]: a sampler chain (grammar, penalties, top-k/p, min-p,
//!   temperature, greedy or seeded), with the sampled token checked.
//! - [`Vision`]: one mtmd context (the vision encoder) over a model, which
//!   tokenizes a prompt with [`Bitmap`]s into [`Chunks`] and evaluates an
//!   image [`Chunk`] into a [`Context`]: the encode observed layer by layer
//!   (and stoppable there), the decode stoppable between its passes.
//!
//! Handles own what they point to and free it on drop; none hands out a raw
//! pointer. Whatever another handle needs alive (a context needs its model,
//! a vision encoder the text model it projects into) it keeps alive itself,
//! by holding a [`Model`] clone.
//!
//! Threads. A [`Model`] is shared; llama.cpp creates contexts and vision
//! encoders from it one at a time, which the model serialises. A [`Context`]
//! or [`Vision`] is used through `&mut` by one thread at a time and may move
//! between threads. The compiler checks these claims:
//!
//! ```
//! fn send_sync<T: Send + Sync>() {}
//! fn send<T: Send>() {}
//! send_sync::<smolvlm_engine::Model>();
//! send_sync::<smolvlm_engine::Bitmap>();
//! send::<smolvlm_engine::Context>();
//! send::<smolvlm_engine::Vision>();
//! send::<smolvlm_engine::Sampler>();
//! send::<smolvlm_engine::Batch>();
//! send::<smolvlm_engine::Chunks>();
//! ```
//!
//! ```compile_fail
//! fn sync<T: Sync>() {}
//! sync::<smolvlm_engine::Context>();
//! ```
//!
//! ```compile_fail
//! fn sync<T: Sync>() {}
//! sync::<smolvlm_engine::Vision>();
//! ```
//!
//! Callbacks never unwind into C: a panic in one is caught at the
//! trampoline, stops the native operation, and is resumed once the native
//! call has returned (or, where the callback runs on a compute thread, turns
//! into a stop).
//!
//! llama.cpp aborts the process (`GGML_ASSERT`) on some misuse; each call
//! here checks what it can before crossing (sizes, token ids, chunk kinds,
//! a context and a vision encoder of the same model) and returns an
//! [`EngineError`] instead.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod backend;
mod batch;
mod callback;
mod context;
mod error;
mod log;
mod model;
mod sampler;
mod vision;
mod vocab;

pub use crate::backend::{devices, supports_gpu_offload, Device, DeviceKind};
pub use crate::batch::Batch;
pub use crate::context::{Context, ContextParams, FlashAttention, KvType};
pub use crate::error::EngineError;
pub use crate::model::{Model, ModelParams};
pub use crate::sampler::{json_schema_to_grammar, Sampler};
pub use crate::vision::{
    default_marker, Bitmap, Chunk, ChunkKind, Chunks, ImageEval, Vision, VisionParams,
};
pub use crate::vocab::{Token, Vocab};

/// The crate's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

// Pinned at compile time: what may be shared and what may move.
const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Model>();
    send_sync::<Bitmap>();
    send::<Context>();
    send::<Vision>();
    send::<Sampler>();
    send::<Batch>();
    send::<Chunks>();
};
