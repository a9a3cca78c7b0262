//! What can go wrong at the engine layer. smolvlm turns these into its own
//! typed errors, which name the file, image or option involved.

use std::path::PathBuf;

/// A call into llama.cpp or mtmd failed, or was refused before crossing
/// because llama.cpp would have aborted on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A path cannot be handed to llama.cpp: it is not UTF-8 or holds a NUL.
    #[error("path '{}' cannot be passed to llama.cpp (not UTF-8, or it holds a NUL byte)", .0.display())]
    Path(PathBuf),
    /// Text for llama.cpp holds a NUL byte.
    #[error("text holds a NUL byte, which cannot cross into C")]
    Nul,
    /// The caller's progress callback stopped a load.
    #[error("the load was stopped by its progress callback")]
    LoadStopped,
    /// llama.cpp refused the text model (its log says why).
    #[error("llama.cpp could not load the text model")]
    ModelLoad,
    /// mtmd refused the projector (its log says why).
    #[error("mtmd could not load the projector")]
    VisionLoad,
    /// llama.cpp could not create a context (out of memory, or parameters it refuses).
    #[error("llama.cpp could not create a context")]
    Context,
    /// A parameter is out of the range llama.cpp accepts.
    #[error("invalid {name}: {message}")]
    Invalid {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A batch holds as many tokens as it can.
    #[error("the batch is full ({capacity} tokens)")]
    BatchFull {
        /// Its capacity.
        capacity: usize,
    },
    /// The KV cache has no room for the batch.
    #[error("the KV cache has no slot for the batch")]
    NoKvSlot,
    /// The caller's stop check (or an encoder layer observer) asked to stop.
    #[error("stopped on request")]
    Interrupted,
    /// `llama_decode` failed with this code.
    #[error("llama_decode failed with code {0}")]
    Decode(i32),
    /// mtmd failed to encode an image chunk, with this code.
    #[error("mtmd failed to encode an image chunk (code {0})")]
    Encode(i32),
    /// mtmd could not tokenize the prompt with its images.
    #[error("mtmd could not tokenize the prompt: {0}")]
    Tokenize(&'static str),
    /// A token id is not in the vocabulary.
    #[error("token {token} is not in the vocabulary of {n_vocab} tokens")]
    Token {
        /// The token id.
        token: i32,
        /// The vocabulary size.
        n_vocab: i32,
    },
    /// llama.cpp refused a grammar.
    #[error("llama.cpp refuses the grammar")]
    Grammar,
    /// llama.cpp could not turn a JSON schema into a grammar.
    #[error("llama.cpp cannot convert the JSON schema to a grammar (status {0})")]
    JsonSchema(i32),
    /// Sampling could not pick a token.
    #[error("sampling failed: {0}")]
    Sample(&'static str),
    /// An RGB buffer does not hold width × height × 3 bytes.
    #[error("an RGB buffer of {len} bytes cannot be a {width}x{height} image")]
    Bitmap {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes given.
        len: usize,
    },
    /// A context and a vision encoder of different models were used together.
    #[error("the context and the vision encoder belong to different models")]
    ModelMismatch,
}
