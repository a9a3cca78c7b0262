//! The shared, loaded model pair: text decoder plus vision projector.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use smolvlm_engine as engine;

use crate::error::{Error, LoadError, Result};
use crate::image::{ImageOptions, Preprocessor, VisionParams};
use crate::options::LoadOptions;
use crate::pair::{check_pair, PairMeta};
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
    /// Threads of each session's text decoder.
    pub threads: u32,
    /// Threads of each session's vision encoder.
    pub vision_threads: u32,
    /// Session context size.
    pub context_size: u32,
}

/// A loaded (model, mmproj) pair. Cheap to clone, `Send + Sync`: load it once
/// and share it; each worker thread opens its own [`Session`].
///
/// The text weights are shared by every session. Each session has its own
/// vision encoder (mtmd context), so sessions never wait on one another; the
/// model keeps the encoder of a closed session for the next one.
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

struct Inner {
    /// A vision encoder no session holds: the one made at load (which proves
    /// the projector loads), then the last one a closed session gave back.
    spare_vision: Mutex<Option<engine::Vision>>,
    /// The text model; every context and vision encoder keeps it alive.
    text: engine::Model,
    /// Each token's bytes, made on first use (a grammar's UTF-8 check).
    token_bytes: OnceLock<Vec<Vec<u8>>>,
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

impl Model {
    /// Loads a model pair after checking, from GGUF metadata alone, that the
    /// files exist, are complete, are each of the right kind and belong together.
    ///
    /// # Errors
    ///
    /// [`LoadError`] naming the file and what is wrong with it; [`Error::InvalidOption`]
    /// for out-of-range options.
    pub fn load(files: &ModelFiles, options: &LoadOptions) -> Result<Self> {
        Self::load_observed(files, options, |_| true)
    }

    /// Like [`load`](Self::load), and calls `progress` as the pair loads,
    /// with the fraction done (`0.0` to `1.0`): the text model's weights,
    /// then the vision projector's, each weighted by its file size.
    /// Returning `false` stops the load, which then fails with
    /// [`LoadError::Cancelled`] naming the file being loaded: an app's
    /// cancel button. A panic in `progress` stops the load and is resumed
    /// once llama.cpp has returned.
    ///
    /// ```no_run
    /// use smolvlm::{LoadOptions, Model, ModelFiles};
    /// let files = ModelFiles::new("model.gguf", "mmproj.gguf");
    /// let model = Model::load_observed(&files, &LoadOptions::default(), |done| {
    ///     eprintln!("loading: {:.0} %", done * 100.0);
    ///     true // false cancels
    /// })?;
    /// # Ok::<(), smolvlm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load), and [`LoadError::Cancelled`].
    pub fn load_observed(
        files: &ModelFiles,
        options: &LoadOptions,
        mut progress: impl FnMut(f32) -> bool,
    ) -> Result<Self> {
        let _span = tracing::info_span!("load", model = %files.model.display()).entered();
        let started = Instant::now();
        options.validate()?;
        let meta = check_pair(&files.model, &files.mmproj)?;
        utf8(&files.model)?;
        utf8(&files.mmproj)?;

        // The bar moves through both files, each in proportion to its size.
        let size = |path: &Path| std::fs::metadata(path).map_or(1, |m| m.len().max(1)) as f64;
        let share = (size(&files.model) / (size(&files.model) + size(&files.mmproj))) as f32;
        let mut last = 0.0f32;
        let mut report = |done: f32| {
            // Never backwards, and never past 1.
            last = last.max(done.clamp(0.0, 1.0));
            progress(last)
        };
        let text = engine::Model::load(&files.model, &options.model_params(), &mut |done| {
            report(done * share)
        })
        .map_err(|e| match e {
            engine::EngineError::LoadStopped => LoadError::Cancelled {
                path: files.model.clone(),
            },
            _ => LoadError::ModelLoad {
                path: files.model.clone(),
            },
        })?;
        check_kv_blocks(&text, options)?;
        let vision = new_vision(&text, files, options, &meta, &mut |done| {
            report(share + done * (1.0 - share))
        })?;
        let chat_template = text.chat_template();
        tracing::debug!(elapsed = ?started.elapsed(), "model pair loaded");
        Ok(Self {
            inner: Arc::new(Inner {
                spare_vision: Mutex::new(Some(vision)),
                text,
                token_bytes: OnceLock::new(),
                chat_template,
                meta,
                files: files.clone(),
                options: options.clone(),
            }),
        })
    }

    /// Checks `options` against this model before any image is read: what
    /// [`GenerationOptions::validate`](crate::GenerationOptions::validate)
    /// checks, and that llama.cpp accepts the grammar or schema with this
    /// model's vocabulary. Every caption checks the same first; this lets a
    /// batch tool refuse bad options once, up front.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the option.
    pub fn check_generation(&self, options: &crate::GenerationOptions) -> Result<()> {
        options.validate()?;
        options.sampler(self.text()).map(|_| ())
    }

    /// Opens a session: one llama context (one KV cache) for one worker thread.
    ///
    /// # Errors
    ///
    /// [`Error::Session`] if llama.cpp cannot allocate the context, and
    /// [`LoadError::ProjectorLoad`] if a new vision encoder cannot be made.
    pub fn session(&self) -> Result<Session> {
        Session::new(self)
    }

    /// What this model is and how it runs.
    #[must_use]
    pub fn info(&self) -> ModelInfo {
        let inner = &*self.inner;
        let devices = engine::devices()
            .into_iter()
            .map(|d| {
                if d.description.is_empty() {
                    d.name
                } else {
                    format!("{} ({})", d.name, d.description)
                }
            })
            .collect();
        ModelInfo {
            files: inner.files.clone(),
            architecture: inner.meta.architecture.clone(),
            parameters: inner.text.n_params(),
            context_length: inner.text.n_ctx_train(),
            vocab_size: u32::try_from(inner.text.vocab().n_tokens()).unwrap_or(0),
            embedding_size: inner.text.n_embd(),
            projector: inner.meta.projector.clone(),
            tile_size: inner.meta.tile_size,
            longest_edge: inner.meta.longest_edge,
            tokens_per_tile: inner.meta.tokens_per_tile(),
            has_chat_template: inner.chat_template.is_some(),
            backend: devices,
            gpu_offload: engine::supports_gpu_offload() && inner.options.gpu_layers > 0,
            threads: inner.options.threads(),
            vision_threads: inner.options.vision_threads(),
            context_size: inner.options.context_size(),
        }
    }

    /// The vision projector's tiling parameters, for a
    /// [`Preprocessor`](crate::image::Preprocessor) that prepares images for this model.
    #[must_use]
    pub fn vision(&self) -> VisionParams {
        let meta = &self.inner.meta;
        let merged_patch = meta.patch_size.saturating_mul(meta.scale_factor);
        VisionParams {
            tile_size: meta.tile_size,
            longest_edge: meta.longest_edge,
            tokens_per_tile: meta.tokens_per_tile(),
            pixels_per_token: merged_patch.saturating_mul(merged_patch),
            max_tiles: self.inner.options.max_tiles(),
        }
    }

    /// A preprocessor that prepares images for this model, on any thread.
    #[must_use]
    pub fn preprocessor(&self, options: ImageOptions) -> Preprocessor {
        Preprocessor::new(self.vision(), options)
    }

    pub(crate) fn text(&self) -> &engine::Model {
        &self.inner.text
    }

    /// Each token's bytes as generation writes them, by token id.
    pub(crate) fn token_bytes(&self) -> &[Vec<u8>] {
        self.inner.token_bytes.get_or_init(|| {
            let vocab = self.inner.text.vocab();
            (0..vocab.n_tokens())
                .map(|id| {
                    let mut bytes = Vec::new();
                    // Every id below n_tokens is the vocabulary's.
                    let _ = vocab.token_to_piece_into(engine::Token(id), &mut bytes, false);
                    bytes
                })
                .collect()
        })
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

    /// Layers of the vision encoder (`clip.vision.block_count`): what one
    /// encode's progress counts to.
    pub(crate) fn vision_layers(&self) -> u32 {
        self.inner.meta.vision_layers
    }

    /// A vision encoder for a new session: the spare one, or a new one.
    pub(crate) fn take_vision(&self) -> Result<engine::Vision, LoadError> {
        let spare = lock(&self.inner.spare_vision).take();
        if let Some(vision) = spare {
            return Ok(vision);
        }
        let inner = &*self.inner;
        new_vision(
            &inner.text,
            &inner.files,
            &inner.options,
            &inner.meta,
            &mut |_| true,
        )
    }

    /// Keeps a closed session's vision encoder for the next session, unless
    /// one is kept already: a model holds at most one idle encoder.
    pub(crate) fn give_back_vision(&self, vision: engine::Vision) {
        let mut spare = lock(&self.inner.spare_vision);
        if spare.is_none() {
            *spare = Some(vision);
        }
    }
}

/// A panic while a lock is held leaves what it guards as valid as before:
/// recover rather than poison every later caller.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// llama.cpp refuses (as an allocation failure) a quantized KV cache whose
/// blocks do not divide an attention head; say why instead.
fn check_kv_blocks(text: &engine::Model, options: &LoadOptions) -> Result<()> {
    let block = options.kv_cache_type().block_size();
    let heads = text.n_head().max(1);
    let head_dim = text.n_embd() / heads;
    if !head_dim.is_multiple_of(block) {
        return Err(Error::invalid(
            "kv_cache_type",
            format!(
                "a {:?} cache stores blocks of {block} values, which do not divide this model's attention heads of {head_dim}: use F16, BF16 or F32",
                options.kv_cache_type()
            ),
        ));
    }
    Ok(())
}

/// One vision encoder (mtmd context) for the pair.
fn new_vision(
    text: &engine::Model,
    files: &ModelFiles,
    options: &LoadOptions,
    meta: &PairMeta,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<engine::Vision, LoadError> {
    let started = Instant::now();
    let image_max_tokens = options
        .max_tiles()
        .and_then(|t| t.checked_mul(meta.tokens_per_tile()));
    let vision = engine::Vision::load(
        text,
        &files.mmproj,
        &options.vision_params(image_max_tokens),
        progress,
    )
    .map_err(|e| match e {
        engine::EngineError::LoadStopped => LoadError::Cancelled {
            path: files.mmproj.clone(),
        },
        _ => LoadError::ProjectorLoad {
            path: files.mmproj.clone(),
        },
    })?;
    tracing::debug!(elapsed = ?started.elapsed(), "vision encoder loaded");
    Ok(vision)
}

fn utf8(path: &Path) -> Result<&str, LoadError> {
    path.to_str().ok_or_else(|| LoadError::NonUtf8Path {
        path: path.to_path_buf(),
    })
}
