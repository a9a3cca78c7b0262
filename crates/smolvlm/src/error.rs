//! Error types: one small enum per operation, composed into [`Error`].
//!
//! Every variant names the thing that was wrong (which file, which option,
//! which stage) and, where there is one, what to do about it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::gguf::GgufError;
use crate::hub::HubError;

/// Which file of a model pair a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// The text decoder (`model.gguf`).
    Model,
    /// The vision projector (`mmproj.gguf`).
    Mmproj,
}

impl fmt::Display for FileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Model => "text model",
            Self::Mmproj => "mmproj (vision projector)",
        })
    }
}

/// Loading a model pair failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The caller's progress callback asked to stop the load.
    #[error("loading '{path}' was cancelled")]
    Cancelled {
        /// The file being loaded.
        path: PathBuf,
    },
    /// A file of the pair does not exist.
    #[error("{role} file '{path}' does not exist")]
    FileNotFound {
        /// The missing path.
        path: PathBuf,
        /// Which file of the pair it was meant to be.
        role: FileRole,
    },
    /// A file exists but is not a readable, complete GGUF file.
    #[error("{role} file '{path}' is not a usable GGUF file: {source}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// Which file of the pair it was meant to be.
        role: FileRole,
        /// What is wrong with it.
        #[source]
        source: GgufError,
    },
    /// The file is a GGUF of the other kind (a text model given as mmproj, or the reverse).
    #[error("'{path}' was given as the {expected} but it is a {found} (architecture '{architecture}'): swap --model and --mmproj?")]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// What it was given as.
        expected: FileRole,
        /// What it is.
        found: FileRole,
        /// Its `general.architecture`.
        architecture: String,
    },
    /// The mmproj's projector is not one this library drives.
    #[error("mmproj '{path}' has projector type '{projector}'; smolvlm supports: {supported}")]
    UnsupportedProjector {
        /// The mmproj file.
        path: PathBuf,
        /// Its `clip.projector_type`.
        projector: String,
        /// The supported projector types, comma-separated.
        supported: &'static str,
    },
    /// The two files do not belong together.
    #[error("mmproj '{mmproj}' projects to {mmproj_embd} dims but model '{model}' embeds {model_embd}: they are not a pair")]
    NotAPair {
        /// The text model.
        model: PathBuf,
        /// The mmproj.
        mmproj: PathBuf,
        /// The text model's embedding size.
        model_embd: u64,
        /// The mmproj's output size.
        mmproj_embd: u64,
    },
    /// A path cannot be handed to llama.cpp (it is not valid UTF-8).
    #[error("path '{}' is not valid UTF-8, which llama.cpp requires", path.display())]
    NonUtf8Path {
        /// The path.
        path: PathBuf,
    },
    /// llama.cpp refused the text model after our checks passed.
    #[error("llama.cpp failed to load the text model '{path}' (set RUST_LOG=llama_cpp=debug for its log)")]
    ModelLoad {
        /// The text model.
        path: PathBuf,
    },
    /// mtmd refused the mmproj after our checks passed.
    #[error("mtmd failed to load the mmproj '{path}' (set RUST_LOG=llama_cpp=debug for its log)")]
    ProjectorLoad {
        /// The mmproj.
        path: PathBuf,
    },
}

/// Turning an input into an RGB image failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The image has no pixels.
    #[error("image {width}x{height} has no pixels")]
    Empty {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The image file could not be read.
    #[error("cannot read image '{path}': {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The image could not be decoded.
    #[error("cannot decode image {origin}: {source}")]
    Decode {
        /// Where it came from: a quoted path, or "from memory".
        origin: String,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// The file or buffer holds no bytes at all.
    #[error("image {origin} is empty (0 bytes)")]
    NoData {
        /// Where it came from: a quoted path, or "from memory".
        origin: String,
    },
    /// mtmd's own loader (stb_image) could not decode the image.
    #[error("mtmd's loader could not decode image {origin}")]
    MtmdLoad {
        /// Where it came from: a quoted path, or "from memory".
        origin: String,
    },
    /// The file ends before the image does (an interrupted copy or download).
    #[error("image {origin} is truncated: it ends before the image data does")]
    Truncated {
        /// Where it came from: a quoted path, or "from memory".
        origin: String,
    },
    /// The bytes are not in an image format smolvlm decodes.
    #[error("image {origin} is not in a supported format (JPEG, PNG, WebP, GIF, BMP, TIFF)")]
    UnknownFormat {
        /// Where it came from: a quoted path, or "from memory".
        origin: String,
    },
    /// The image is larger than the decoding limits allow.
    #[error("image {origin} is {width}x{height}, over the limits ({}x{} px, {} pixels); raise them in ImageOptions::with_limits", limits.max_width, limits.max_height, limits.max_pixels)]
    TooLarge {
        /// Where it came from: a quoted path, or "from memory".
        origin: String,
        /// Width in the header (0 when the decoder refused before telling).
        width: u32,
        /// Height in the header (0 when the decoder refused before telling).
        height: u32,
        /// The limits in force.
        limits: crate::image::DecodeLimits,
    },
    /// A conversation's image is not what it was when the conversation
    /// first read it: its file was changed since, and the session had to
    /// read it again. Answering about the new pixels as if they were the
    /// image of the earlier turns would mislead.
    #[error("image {origin} changed since the conversation first read it: start a new conversation (or give the image as pixels)")]
    Changed {
        /// Where it came from: a quoted path, or "from memory".
        origin: String,
    },
    /// Resizing failed (an internal error: please report it).
    #[error("resize failed: {0}")]
    Resize(String),
    /// A raw RGB buffer does not match its stated size.
    #[error("RGB buffer holds {actual} bytes but {width}x{height}x3 needs {expected}")]
    BufferSize {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
}

/// A stage of one caption, used to say where work stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Waiting in a [`Worker`](crate::Worker)'s queue.
    Queued,
    /// Building the prompt and tokenizing text and image.
    Tokenize,
    /// Encoding an image in the vision encoder (one encode per tile and the
    /// overview, layer by layer).
    Encode,
    /// Evaluating the prompt in the text decoder: its text, and the image
    /// embeddings the encoder produced.
    Prefill,
    /// Sampling new tokens.
    Generate,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Queued => "queued",
            Self::Tokenize => "tokenize",
            Self::Encode => "encode",
            Self::Prefill => "prefill",
            Self::Generate => "generate",
        })
    }
}

/// Captioning one image failed. The session stays usable after any of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptionError {
    /// The caller's [`CancelToken`](crate::CancelToken) was cancelled.
    #[error("cancelled during {stage}")]
    Cancelled {
        /// Where work stopped.
        stage: Stage,
    },
    /// The per-image deadline passed.
    #[error("deadline of {deadline:?} exceeded during {stage}")]
    DeadlineExceeded {
        /// The deadline that was set.
        deadline: Duration,
        /// Where work stopped.
        stage: Stage,
    },
    /// Prompt plus image do not fit in the session's context.
    #[error("prompt needs {tokens} tokens (image {image_tokens}) but the context holds {n_ctx}: use a larger context_size or fewer tiles")]
    PromptTooLong {
        /// Tokens the prompt needs, image included.
        tokens: usize,
        /// Of which image tokens.
        image_tokens: usize,
        /// The session's context size.
        n_ctx: u32,
    },
    /// One image chunk is larger than one decode pass, for a projector whose
    /// image must be decoded in one pass (a non-causal one; never SmolVLM's
    /// idefics3, whose chunks mtmd splits by the batch size). llama.cpp
    /// would abort.
    #[error("an image chunk has {tokens} tokens but one decode pass holds {n_batch}: this projector needs a batch_size and ubatch_size of at least {tokens}")]
    BatchTooSmall {
        /// Tokens in the largest image chunk.
        tokens: usize,
        /// The session's batch size.
        n_batch: u32,
    },
    /// A raw prompt must contain the media marker once per image, in order.
    #[error("raw prompt must contain the media marker '{marker}' once per image ({expected}), found {found}")]
    Marker {
        /// The marker expected.
        marker: &'static str,
        /// How many were found.
        found: usize,
        /// How many images were given.
        expected: usize,
    },
    /// The chat template could not be rendered.
    #[error("cannot render the chat template: {0} (pass a raw prompt instead)")]
    Template(String),
    /// The chat template changes, repeats or drops a message's text,
    /// so the user's text cannot be kept apart from the template's special
    /// tokens: parsing them in the whole text would let a user type a
    /// control token. Refused rather than made unsafe.
    #[error("the chat template rewrites the prompt's text ({why}), so the user's text cannot be tokenized apart from the template's control tokens: use a template that inserts each text as given, or a raw prompt")]
    TemplateRewritesText {
        /// What the template did.
        why: &'static str,
    },
    /// The prompt contains a NUL byte, which cannot cross into C.
    #[error("prompt contains a NUL byte")]
    NulInPrompt,
    /// The output was to be JSON (a schema was given) but does not parse:
    /// generation ended first (`max_tokens`, a stop string, a full context).
    #[error("the output is not complete JSON ({message}); generation ended with {finish:?}: raise max_tokens")]
    IncompleteJson {
        /// What was generated.
        text: String,
        /// Why generation ended.
        finish: crate::FinishReason,
        /// The JSON parser's complaint.
        message: String,
    },
    /// A video does not fit the context even at one frame (its text and one
    /// frame's image tokens, the rest of the prompt, and room for the
    /// answer).
    #[error("the prompt needs {tokens} tokens at one frame per video ({answer} of them kept for the answer), but the context holds {n_ctx}: use a larger context_size, a shorter prompt or fewer max_tokens")]
    VideoTooLong {
        /// Tokens needed: the prompt at one frame per video, and the answer.
        tokens: usize,
        /// Of which the room kept for the answer (`max_tokens`).
        answer: usize,
        /// The session's context size.
        n_ctx: u32,
    },
    /// The output is JSON but does not follow the schema it was generated
    /// under (llama.cpp's grammar does not express every keyword).
    #[error("the output does not follow the JSON schema: {message}")]
    SchemaMismatch {
        /// What was generated.
        text: String,
        /// The first way it breaks the schema.
        message: String,
    },
    /// mtmd could not tokenize or preprocess the prompt and image.
    #[error("mtmd failed to tokenize the prompt and image: {0}")]
    Tokenize(String),
    /// llama.cpp or mtmd failed while evaluating the prompt or a token.
    #[error("evaluation failed during {stage} (llama.cpp code {code})")]
    Eval {
        /// Where it failed.
        stage: Stage,
        /// The code llama.cpp returned.
        code: i32,
    },
}

/// The crate's error: every fallible call returns it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading the model pair failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// An input image could not be used.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Captioning failed.
    #[error(transparent)]
    Caption(#[from] CaptionError),
    /// The model could not be found, downloaded or verified on the Hub or in its cache.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// A video could not be read.
    #[error(transparent)]
    Video(#[from] crate::video::VideoError),
    /// A session (llama context) could not be created.
    #[error(
        "llama.cpp could not create a context of {n_ctx} tokens (batch {n_batch}): out of memory?"
    )]
    Session {
        /// Requested context size.
        n_ctx: u32,
        /// Requested batch size.
        n_batch: u32,
    },
    /// A bug in smolvlm, reported instead of a panic or a hang (a worker
    /// thread that panicked, say). Please report it.
    #[error("internal error (a bug in smolvlm): {0}")]
    Internal(String),
    /// An option is out of range.
    #[error("invalid option {name}: {message}")]
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// Why it is invalid.
        message: String,
    },
}

impl Error {
    /// Shorthand for an [`Error::InvalidOption`].
    pub(crate) fn invalid(name: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidOption {
            name,
            message: message.into(),
        }
    }

    /// A short, stable, machine-readable name for the error's kind, for logs and records.
    ///
    /// ```
    /// let err = smolvlm::Error::from(smolvlm::ImageError::Empty { width: 0, height: 3 });
    /// assert_eq!(err.kind(), "image_empty");
    /// ```
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Load(e) => match e {
                LoadError::Cancelled { .. } => "load_cancelled",
                LoadError::FileNotFound { .. } => "file_not_found",
                LoadError::Gguf { .. } => "not_gguf",
                LoadError::WrongKind { .. } => "wrong_kind",
                LoadError::UnsupportedProjector { .. } => "unsupported_projector",
                LoadError::NotAPair { .. } => "not_a_pair",
                LoadError::NonUtf8Path { .. } => "non_utf8_path",
                LoadError::ModelLoad { .. } => "model_load",
                LoadError::ProjectorLoad { .. } => "projector_load",
            },
            Self::Image(e) => match e {
                ImageError::Empty { .. } => "image_empty",
                ImageError::Read { .. } => "image_read",
                ImageError::Decode { .. } => "image_decode",
                ImageError::BufferSize { .. } => "image_buffer_size",
                ImageError::UnknownFormat { .. } => "image_format",
                ImageError::NoData { .. } => "image_no_data",
                ImageError::Truncated { .. } => "image_truncated",
                ImageError::MtmdLoad { .. } => "image_mtmd_load",
                ImageError::TooLarge { .. } => "image_too_large",
                ImageError::Resize(_) => "image_resize",
                ImageError::Changed { .. } => "image_changed",
            },
            Self::Caption(e) => match e {
                CaptionError::Cancelled { .. } => "cancelled",
                CaptionError::DeadlineExceeded { .. } => "deadline_exceeded",
                CaptionError::PromptTooLong { .. } => "prompt_too_long",
                CaptionError::BatchTooSmall { .. } => "batch_too_small",
                CaptionError::Marker { .. } => "marker",
                CaptionError::Template(_) => "template",
                CaptionError::TemplateRewritesText { .. } => "template_rewrites_text",
                CaptionError::NulInPrompt => "nul_in_prompt",
                CaptionError::Tokenize(_) => "tokenize",
                CaptionError::IncompleteJson { .. } => "incomplete_json",
                CaptionError::SchemaMismatch { .. } => "schema_mismatch",
                CaptionError::VideoTooLong { .. } => "video_too_long",
                CaptionError::Eval { .. } => "eval",
            },
            Self::Hub(e) => e.kind(),
            Self::Video(e) => e.kind(),
            Self::Session { .. } => "session",
            Self::InvalidOption { .. } => "invalid_option",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether the same call, unchanged, may succeed later: the failure came
    /// from the moment, not from the input.
    ///
    /// Transient: a deadline that passed (a busy machine), a cancel, a
    /// context that could not be created (out of memory), an evaluation that
    /// llama.cpp could not finish, an image file that could not be read (its
    /// bytes were never seen), and a Hub transfer that broke off.
    ///
    /// Every other error is final: the image is bad (not an image, truncated,
    /// empty, too large, undecodable), or the model and options do not fit it
    /// (a prompt too long, a bad template), and the same call would fail the
    /// same way. `smolvlm caption` retries transient errors on resume, and
    /// final ones only with `--retry-errors`.
    ///
    /// The classification is by [`kind`](Self::kind): see [`kind_is_transient`]
    /// for a kind stored as a string.
    ///
    /// ```
    /// use smolvlm::{CaptionError, Error, ImageError, Stage};
    /// let late = Error::from(CaptionError::DeadlineExceeded {
    ///     deadline: std::time::Duration::from_secs(1),
    ///     stage: Stage::Prefill,
    /// });
    /// assert!(late.is_transient());
    /// let bad = Error::from(ImageError::Empty { width: 0, height: 3 });
    /// assert!(!bad.is_transient());
    /// ```
    #[must_use]
    pub fn is_transient(&self) -> bool {
        kind_is_transient(self.kind())
    }
}

/// Whether an error of this [`Error::kind`] is transient (see
/// [`Error::is_transient`]), for a kind kept as a string, such as in a
/// record file. An unknown kind is final.
///
/// ```
/// assert!(smolvlm::kind_is_transient("deadline_exceeded"));
/// assert!(!smolvlm::kind_is_transient("image_truncated"));
/// ```
#[must_use]
pub fn kind_is_transient(kind: &str) -> bool {
    matches!(
        kind,
        "cancelled"
            | "load_cancelled"
            | "deadline_exceeded"
            | "eval"
            | "session"
            | "image_read"
            | "video_read"
            | "video_temp_file"
            | "hub_network"
            | "hub_download"
    )
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn of_image(e: ImageError) -> Error {
        Error::from(e)
    }

    #[test]
    fn errors_of_the_moment_are_transient() {
        let transient = [
            Error::from(CaptionError::Cancelled {
                stage: Stage::Generate,
            }),
            Error::from(CaptionError::DeadlineExceeded {
                deadline: Duration::from_secs(1),
                stage: Stage::Prefill,
            }),
            Error::from(CaptionError::Eval {
                stage: Stage::Prefill,
                code: -3,
            }),
            Error::Session {
                n_ctx: 4096,
                n_batch: 512,
            },
            of_image(ImageError::Read {
                path: PathBuf::from("a.jpg"),
                source: std::io::Error::other("stale file handle"),
            }),
            Error::from(HubError::Network {
                repo: "r".to_owned(),
                url: "u".to_owned(),
                message: "reset".to_owned(),
            }),
            Error::from(HubError::Download {
                repo: "r".to_owned(),
                file: "f".to_owned(),
                message: "cut".to_owned(),
            }),
        ];
        for e in &transient {
            assert!(e.is_transient(), "{}: {e}", e.kind());
            assert!(kind_is_transient(e.kind()), "{}", e.kind());
        }
    }

    #[test]
    fn bad_images_and_misfits_are_final() {
        let origin = || "'a.jpg'".to_owned();
        let last = Error::from(CaptionError::PromptTooLong {
            tokens: 9,
            image_tokens: 8,
            n_ctx: 4,
        });
        let finals = [
            of_image(ImageError::Empty {
                width: 0,
                height: 1,
            }),
            of_image(ImageError::NoData { origin: origin() }),
            of_image(ImageError::Truncated { origin: origin() }),
            of_image(ImageError::UnknownFormat { origin: origin() }),
            of_image(ImageError::MtmdLoad { origin: origin() }),
            of_image(ImageError::Decode {
                origin: origin(),
                source: image::ImageError::IoError(std::io::Error::other("bad huffman code")),
            }),
            of_image(ImageError::TooLarge {
                origin: origin(),
                width: 1,
                height: 1,
                limits: crate::image::DecodeLimits::default(),
            }),
            of_image(ImageError::BufferSize {
                width: 1,
                height: 1,
                expected: 3,
                actual: 2,
            }),
            Error::from(CaptionError::Template("x".to_owned())),
            Error::from(CaptionError::TemplateRewritesText { why: "x" }),
            Error::from(CaptionError::Tokenize("x".to_owned())),
            Error::invalid("max_tokens", "0"),
            last,
        ];
        for e in &finals {
            assert!(!e.is_transient(), "{}: {e}", e.kind());
        }
        // Kinds the library does not know, such as the CLI's own, are final.
        assert!(!kind_is_transient("sidecar_conflict"));
        assert!(!kind_is_transient(""));
    }
}
