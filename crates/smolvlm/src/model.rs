//! The shared, loaded model pair: text decoder plus vision projector.

use std::ffi::CString;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::{MtmdContext, MtmdContextParams};
use llama_cpp_2::{send_logs_to_tracing, LogOptions};

use crate::error::{Error, LoadError, Result};
use crate::image::{ImageOptions, Preprocessor, VisionParams};
use crate::pair::{check_pair, PairMeta};
use crate::prompt::MEDIA_MARKER;
use crate::session::Session;

/// Where a model pair lives on disk.
///
/// ```
/// let files = smolvlm::ModelFiles::new("SmolVLM-256M-Instruct-Q8_0.gguf", "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf");
/// assert!(files.model.ends_with("SmolVLM-256M-Instruct-Q8_0.gguf"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The text decoder GGUF.
    pub model: PathBuf,
    /// The vision projector GGUF (`mmproj`).
    pub mmproj: PathBuf,
}

impl ModelFiles {
    /// Names a (model, mmproj) pair.
    pub fn new(model: impl Into<PathBuf>, mmproj: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            mmproj: mmproj.into(),
        }
    }
}

/// How a model pair is loaded and how its sessions are sized.
///
/// ```
/// let options = smolvlm::LoadOptions::default().with_threads(2).with_context_size(4096);
/// assert_eq!(options.context_size(), 4096);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    threads: Option<NonZeroU32>,
    gpu_layers: u32,
    vision_gpu: bool,
    context_size: u32,
    batch_size: u32,
    max_tiles: Option<u32>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            threads: None,
            // Offload everything when built with a GPU backend; ignored on CPU builds.
            gpu_layers: u32::MAX,
            vision_gpu: true,
            context_size: 4096,
            batch_size: 2048,
            max_tiles: None,
        }
    }
}

impl LoadOptions {
    /// CPU threads for text decoding and image encoding (default: all available cores).
    #[must_use]
    pub fn with_threads(mut self, threads: u32) -> Self {
        self.threads = NonZeroU32::new(threads);
        self
    }

    /// Text-model layers to offload to the GPU (default: all). Has no effect on CPU builds.
    #[must_use]
    pub fn with_gpu_layers(mut self, layers: u32) -> Self {
        self.gpu_layers = layers;
        self
    }

    /// Whether the vision encoder runs on the GPU (default: yes, where there is one).
    #[must_use]
    pub fn with_vision_gpu(mut self, on: bool) -> Self {
        self.vision_gpu = on;
        self
    }

    /// Tokens each session's context holds: prompt, image and generated text (default 4096).
    /// llama.cpp rounds it up to a multiple of 256.
    #[must_use]
    pub fn with_context_size(mut self, tokens: u32) -> Self {
        self.context_size = tokens;
        self
    }

    /// Tokens evaluated per decode call (default 2048); must cover the largest image chunk.
    #[must_use]
    pub fn with_batch_size(mut self, tokens: u32) -> Self {
        self.batch_size = tokens;
        self
    }

    /// The token budget: at most this many tiles per image (plus the overview
    /// idefics3 always adds). Fewer tiles mean faster captions and less
    /// detail. `None` (default) lets the model tile at its full longest edge.
    ///
    /// mtmd applies a budget per vision context, so it is a load option: with
    /// one set, mtmd sizes images by pixel count instead of by longest edge,
    /// and images are prepared to match.
    #[must_use]
    pub fn with_max_tiles(mut self, tiles: Option<u32>) -> Self {
        self.max_tiles = tiles;
        self
    }

    /// The tile budget, if any.
    #[must_use]
    pub fn max_tiles(&self) -> Option<u32> {
        self.max_tiles
    }

    /// The thread count that will be used.
    #[must_use]
    pub fn threads(&self) -> u32 {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            NonZeroU32::get,
        )
    }

    /// The session context size.
    #[must_use]
    pub fn context_size(&self) -> u32 {
        self.context_size
    }

    /// The decode batch size.
    #[must_use]
    pub fn batch_size(&self) -> u32 {
        self.batch_size
    }

    fn validate(&self) -> Result<()> {
        if self.context_size < 64 {
            return Err(Error::invalid("context_size", "must be at least 64 tokens"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("batch_size", "must be at least 1 token"));
        }
        if self.max_tiles == Some(0) {
            return Err(Error::invalid("max_tiles", "must be at least 1"));
        }
        if i32::try_from(self.threads()).is_err() {
            return Err(Error::invalid("threads", "is too large"));
        }
        Ok(())
    }
}

/// What a loaded model is: the successor of the old server's info/health endpoint.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelInfo {
    /// The files loaded.
    pub files: ModelFiles,
    /// Text model architecture (`llama` for SmolVLM).
    pub architecture: String,
    /// Text model parameter count.
    pub parameters: u64,
    /// Context length the text model was trained with.
    pub context_length: u32,
    /// Vocabulary size.
    pub vocab_size: u32,
    /// Text model embedding size.
    pub embedding_size: u32,
    /// Projector type (`idefics3` for SmolVLM).
    pub projector: String,
    /// Side of one image tile in pixels.
    pub tile_size: u32,
    /// Longest image edge the preprocessor resizes to, if the mmproj sets one.
    pub longest_edge: Option<u32>,
    /// Image tokens one tile costs.
    pub tokens_per_tile: u32,
    /// Whether the text model carries a chat template (otherwise a built-in SmolVLM one is used).
    pub has_chat_template: bool,
    /// The compute devices llama.cpp sees, e.g. `["CPU"]`.
    pub backend: Vec<String>,
    /// Whether this build can offload to a GPU.
    pub gpu_offload: bool,
    /// Threads used for decoding and encoding.
    pub threads: u32,
    /// Session context size.
    pub context_size: u32,
}

/// A loaded (model, mmproj) pair. Cheap to clone, `Send + Sync`: load it once
/// and share it; each worker thread opens its own [`Session`].
///
/// ```no_run
/// use smolvlm::{GenerationOptions, LoadOptions, Model, ModelFiles};
///
/// let model = Model::load(
///     &ModelFiles::new("SmolVLM-256M-Instruct-Q8_0.gguf", "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf"),
///     &LoadOptions::default(),
/// )?;
/// let mut session = model.session()?;
/// let caption = session.caption(std::path::Path::new("photo.jpg"), "Describe this image.", &GenerationOptions::default())?;
/// println!("{}", caption.text);
/// # Ok::<(), smolvlm::Error>(())
/// ```
#[derive(Clone)]
pub struct Model {
    inner: Arc<Inner>,
}

// Field order is drop order: the mtmd context keeps pointers into the text
// model, so it must be freed first.
struct Inner {
    mtmd: Mutex<MtmdContext>,
    llama: LlamaModel,
    /// llama.cpp's context constructor mutates the model, so sessions are
    /// created one at a time.
    new_context: Mutex<()>,
    chat_template: Option<String>,
    meta: PairMeta,
    files: ModelFiles,
    options: LoadOptions,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("files", &self.inner.files)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// llama.cpp's backend is process-wide and may be initialised only once;
/// smolvlm does it on first load and routes llama.cpp's logs into `tracing`
/// (silent unless the application installs a subscriber).
pub(crate) fn backend() -> Result<&'static LlamaBackend, LoadError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LoadError::Backend(e.clone()))
}

impl Model {
    /// Loads a model pair after checking, from GGUF metadata alone, that the
    /// files exist, are complete, are each of the right kind and belong together.
    ///
    /// # Errors
    ///
    /// [`LoadError`] naming the file and what is wrong with it; [`Error::InvalidOption`]
    /// for out-of-range options.
    pub fn load(files: &ModelFiles, options: &LoadOptions) -> Result<Self> {
        let _span = tracing::info_span!("load", model = %files.model.display()).entered();
        let started = Instant::now();
        options.validate()?;
        let meta = check_pair(&files.model, &files.mmproj)?;
        let backend = backend()?;
        let (model_path, mmproj_path) = (utf8(&files.model)?, utf8(&files.mmproj)?);

        let params = LlamaModelParams::default().with_n_gpu_layers(options.gpu_layers);
        let llama = LlamaModel::load_from_file(backend, model_path, &params).map_err(|_| {
            LoadError::ModelLoad {
                path: files.model.clone(),
            }
        })?;
        let mtmd_params = MtmdContextParams {
            use_gpu: options.vision_gpu,
            print_timings: false,
            n_threads: i32::try_from(options.threads()).unwrap_or(1),
            media_marker: CString::new(MEDIA_MARKER).unwrap_or_default(),
            image_min_tokens: -1,
            image_max_tokens: options
                .max_tiles
                .and_then(|t| t.checked_mul(meta.tokens_per_tile()))
                .and_then(|t| i32::try_from(t).ok())
                .unwrap_or(-1),
        };
        let mtmd =
            MtmdContext::init_from_file(mmproj_path, &llama, &mtmd_params).map_err(|_| {
                LoadError::ProjectorLoad {
                    path: files.mmproj.clone(),
                }
            })?;
        let chat_template = llama
            .chat_template(None)
            .ok()
            .and_then(|t| t.to_string().ok());
        tracing::debug!(elapsed = ?started.elapsed(), "model pair loaded");
        Ok(Self {
            inner: Arc::new(Inner {
                mtmd: Mutex::new(mtmd),
                llama,
                new_context: Mutex::new(()),
                chat_template,
                meta,
                files: files.clone(),
                options: options.clone(),
            }),
        })
    }

    /// Opens a session: one llama context (one KV cache) for one worker thread.
    ///
    /// # Errors
    ///
    /// [`Error::Session`] if llama.cpp cannot allocate the context.
    pub fn session(&self) -> Result<Session<'_>> {
        Session::new(self)
    }

    /// What this model is and how it runs.
    #[must_use]
    pub fn info(&self) -> ModelInfo {
        let inner = &*self.inner;
        let devices = llama_cpp_2::list_llama_ggml_backend_devices()
            .into_iter()
            .map(|d| {
                if d.description.is_empty() {
                    d.name
                } else {
                    format!("{} ({})", d.name, d.description)
                }
            })
            .collect();
        let to_u32 = |v: i64| u32::try_from(v).unwrap_or(0);
        ModelInfo {
            files: inner.files.clone(),
            architecture: inner.meta.architecture.clone(),
            parameters: inner.llama.n_params(),
            context_length: inner.llama.n_ctx_train(),
            vocab_size: to_u32(i64::from(inner.llama.n_vocab())),
            embedding_size: to_u32(i64::from(inner.llama.n_embd())),
            projector: inner.meta.projector.clone(),
            tile_size: inner.meta.tile_size,
            longest_edge: inner.meta.longest_edge,
            tokens_per_tile: inner.meta.tokens_per_tile(),
            has_chat_template: inner.chat_template.is_some(),
            backend: devices,
            gpu_offload: backend().is_ok_and(LlamaBackend::supports_gpu_offload)
                && inner.options.gpu_layers > 0,
            threads: inner.options.threads(),
            context_size: inner.options.context_size,
        }
    }

    /// The vision projector's tiling parameters, for a
    /// [`Preprocessor`](crate::image::Preprocessor) that prepares images for this model.
    #[must_use]
    pub fn vision(&self) -> VisionParams {
        let meta = &self.inner.meta;
        let merged_patch = meta.patch_size * meta.scale_factor;
        VisionParams {
            tile_size: meta.tile_size,
            longest_edge: meta.longest_edge,
            tokens_per_tile: meta.tokens_per_tile(),
            pixels_per_token: merged_patch * merged_patch,
            max_tiles: self.inner.options.max_tiles,
        }
    }

    /// A preprocessor that prepares images for this model, on any thread.
    #[must_use]
    pub fn preprocessor(&self, options: ImageOptions) -> Preprocessor {
        Preprocessor::new(self.vision(), options)
    }

    pub(crate) fn llama(&self) -> &LlamaModel {
        &self.inner.llama
    }

    pub(crate) fn options(&self) -> &LoadOptions {
        &self.inner.options
    }

    pub(crate) fn chat_template(&self) -> Option<&str> {
        self.inner.chat_template.as_deref()
    }

    pub(crate) fn is_tiled(&self) -> bool {
        self.inner.meta.projector == "idefics3"
    }

    /// Exclusive use of the vision context: mtmd's encoder writes into
    /// buffers owned by the context, so encodes cannot overlap.
    pub(crate) fn mtmd(&self) -> MutexGuard<'_, MtmdContext> {
        // A panic while holding the lock leaves the context as valid as
        // before the call that panicked; recover rather than poison callers.
        self.inner
            .mtmd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn context_lock(&self) -> MutexGuard<'_, ()> {
        self.inner
            .new_context
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn utf8(path: &Path) -> Result<&str, LoadError> {
    path.to_str().ok_or_else(|| LoadError::NonUtf8Path {
        path: path.to_path_buf(),
    })
}
