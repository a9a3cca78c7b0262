//! The native half of the `smolvlm` Python package (`smolvlm._native`).
//!
//! The Python half (`python/smolvlm/`) turns paths, bytes, PIL images and
//! numpy arrays into `Image`s and holds the docstrings users read; this
//! module loads models, runs captions with the GIL released, and maps the
//! library's errors onto typed exceptions carrying the error's `kind`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use smolvlm::batch::{Batch, Input, Order};
use smolvlm::image::ImageOptions;
use smolvlm::{
    CancelToken, CaptionError, Error, GenerationOptions, HubOptions, ImageInput, JobImage,
    LoadOptions, ModelFiles, ModelSource, Session,
};

// The old wrapper's configuration, shared with the CLI's `--config`.
#[path = "../../cli/config.rs"]
#[allow(dead_code)]
mod config;

create_exception!(
    _native,
    SmolVLMError,
    PyException,
    "Base of every smolvlm error; `kind` names it."
);
create_exception!(
    _native,
    LoadError,
    SmolVLMError,
    "A model pair could not be loaded."
);
create_exception!(
    _native,
    HubError,
    SmolVLMError,
    "A model could not be found or downloaded."
);
create_exception!(
    _native,
    ImageError,
    SmolVLMError,
    "An image could not be used."
);
create_exception!(
    _native,
    VideoError,
    SmolVLMError,
    "A video could not be used (unreadable, undecodable, no ffmpeg for an MP4)."
);
create_exception!(_native, CaptionError_, SmolVLMError, "A caption failed.");
create_exception!(
    _native,
    Cancelled,
    CaptionError_,
    "A caption was cancelled."
);
create_exception!(
    _native,
    ConfigError,
    SmolVLMError,
    "The old configuration is not valid."
);

/// The library's error as the matching Python exception, with `kind`.
fn to_py(error: &Error) -> PyErr {
    let message = error.to_string();
    let err = match error {
        Error::Load(_) => LoadError::new_err(message),
        Error::Hub(_) => HubError::new_err(message),
        Error::Image(_) => ImageError::new_err(message),
        Error::Video(_) => VideoError::new_err(message),
        Error::Caption(CaptionError::Cancelled { .. }) => Cancelled::new_err(message),
        Error::Caption(_) => CaptionError_::new_err(message),
        _ => SmolVLMError::new_err(message),
    };
    Python::attach(|py| {
        let value = err.value(py);
        let _ = value.setattr("kind", error.kind());
        let _ = value.setattr("transient", error.is_transient());
    });
    err
}

/// An image, owned, ready to travel to a captioning thread.
#[pyclass(module = "smolvlm._native", frozen)]
#[derive(Clone)]
struct Image {
    inner: JobImage,
}

#[pymethods]
impl Image {
    /// An image file.
    #[staticmethod]
    fn path(path: PathBuf) -> Self {
        Self {
            inner: JobImage::Path(path),
        }
    }

    /// An encoded image (PNG, JPEG, GIF, BMP, WebP, TIFF).
    #[staticmethod]
    fn encoded(data: Vec<u8>) -> Self {
        Self {
            inner: JobImage::Bytes(data),
        }
    }

    /// Packed RGB pixels, `height` rows of `width`.
    #[staticmethod]
    fn rgb(width: u32, height: u32, pixels: Vec<u8>) -> PyResult<Self> {
        let rgb = packed(width, height, 3, pixels, image::RgbImage::from_raw)?;
        Ok(Self {
            inner: JobImage::Rgb(rgb),
        })
    }

    /// Packed RGBA pixels, `height` rows of `width`: the alpha is composited
    /// onto the image options' background (white by default), as for an
    /// image file with alpha.
    #[staticmethod]
    fn rgba(width: u32, height: u32, pixels: Vec<u8>) -> PyResult<Self> {
        let rgba = packed(width, height, 4, pixels, image::RgbaImage::from_raw)?;
        Ok(Self {
            inner: JobImage::Dynamic(image::DynamicImage::ImageRgba8(rgba)),
        })
    }
}

/// Pixels of `channels` bytes each, or the library's typed error (an
/// `ImageError` with `kind` "image_buffer_size").
fn packed<T>(
    width: u32,
    height: u32,
    channels: usize,
    pixels: Vec<u8>,
    from_raw: impl FnOnce(u32, u32, Vec<u8>) -> Option<T>,
) -> PyResult<T> {
    let actual = pixels.len();
    from_raw(width, height, pixels).ok_or_else(|| {
        to_py(&Error::from(smolvlm::ImageError::BufferSize {
            width,
            height,
            expected: (width as usize)
                .saturating_mul(height as usize)
                .saturating_mul(channels),
            actual,
        }))
    })
}

impl Image {
    fn input(&self) -> ImageInput<'_> {
        match &self.inner {
            JobImage::Path(path) => ImageInput::Path(path),
            JobImage::Bytes(bytes) => ImageInput::Bytes(bytes),
            JobImage::Rgb(rgb) => ImageInput::Rgb(rgb),
            JobImage::Dynamic(image) => ImageInput::Dynamic(image),
            _ => ImageInput::Bytes(&[]),
        }
    }
}

/// A video as Python hands it over: a path (a file, or a folder of frames)
/// or encoded bytes.
#[derive(FromPyObject)]
enum VideoArg {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

impl VideoArg {
    fn into_video(
        self,
        sample_fps: Option<f64>,
        max_frames: Option<usize>,
        frame_rate: Option<f64>,
    ) -> PyResult<smolvlm::video::Video> {
        let mut video = match self {
            Self::Bytes(bytes) => smolvlm::video::Video::bytes(bytes),
            Self::Path(path) if path.is_dir() => {
                let fps = frame_rate.ok_or_else(|| {
                    to_py(&Error::InvalidOption {
                        name: "frame_rate",
                        message: format!(
                            "'{}' is a folder of frames: give its frame rate",
                            path.display()
                        ),
                    })
                })?;
                smolvlm::video::Video::frames_in(path, fps)
            }
            Self::Path(path) => smolvlm::video::Video::file(path),
        };
        if let Some(fps) = sample_fps {
            video = video.with_fps(fps);
        }
        if let Some(n) = max_frames {
            video = video.with_max_frames(n);
        }
        Ok(video)
    }
}

/// What a video of a prompt showed the model.
#[pyclass(module = "smolvlm._native", frozen, get_all)]
#[derive(Clone)]
struct VideoReport {
    /// Frames shown to the model.
    frames: usize,
    /// Frames SmolVLM2's sampling rule chose, before any cut to fit the context.
    sampled: usize,
    /// The video's duration in seconds.
    seconds: f64,
    /// The time of each frame shown, in seconds.
    timestamps: Vec<f64>,
}

/// One caption's result.
#[pyclass(module = "smolvlm._native", frozen, get_all)]
#[derive(Clone)]
struct Caption {
    /// The generated text.
    text: String,
    /// The generated token ids.
    tokens: Vec<i32>,
    /// Tokens in the prompt, image tokens included.
    prompt_tokens: usize,
    /// Image embedding tokens.
    image_tokens: usize,
    /// Grid tiles (the overview not counted).
    tiles: usize,
    /// Why generation ended: "end_of_text", "max_tokens", "stop", "context_full".
    finish: String,
    /// Seconds per stage: decode, resize, tokenize, encode, prefill, generate, total.
    timings: HashMap<String, f64>,
    /// Images in the prompt.
    images: usize,
    /// Of those, how many were encoded (the others were in the session's cache).
    images_encoded: usize,
    /// Prompt tokens reused from the session's cache instead of evaluated.
    cached_tokens: usize,
    /// Video frames in the prompt.
    frames: usize,
    /// Each video of the prompt: frames shown and sampled, duration, times.
    videos: Vec<VideoReport>,
    /// In `caption_many`'s results: the index of an earlier image with the
    /// same pixels (once prepared) whose caption this is a copy of; it was
    /// not encoded again.
    duplicate_of: Option<usize>,
}

#[pymethods]
impl Caption {
    fn __repr__(&self) -> String {
        format!(
            "Caption(text={:?}, tokens={}, image_tokens={}, tiles={}, finish={:?})",
            self.text,
            self.tokens.len(),
            self.image_tokens,
            self.tiles,
            self.finish
        )
    }
}

impl From<smolvlm::Caption> for Caption {
    fn from(c: smolvlm::Caption) -> Self {
        let t = c.timings;
        let timings = [
            ("decode", t.decode),
            ("resize", t.resize),
            ("tokenize", t.tokenize),
            ("encode", t.encode),
            ("prefill", t.prefill),
            ("generate", t.generate),
            ("total", t.total),
        ]
        .into_iter()
        .map(|(k, d)| (k.to_owned(), d.as_secs_f64()))
        .collect();
        let finish = match c.finish {
            smolvlm::FinishReason::EndOfText => "end_of_text",
            smolvlm::FinishReason::MaxTokens => "max_tokens",
            smolvlm::FinishReason::Stop => "stop",
            smolvlm::FinishReason::ContextFull => "context_full",
            _ => "other",
        };
        Self {
            text: c.text,
            tokens: c.tokens,
            prompt_tokens: c.prompt_tokens,
            image_tokens: c.image_tokens,
            tiles: c.tiles,
            finish: finish.to_owned(),
            timings,
            images: c.images,
            images_encoded: c.images_encoded,
            cached_tokens: c.cached_tokens,
            frames: c.frames,
            videos: c
                .videos
                .iter()
                .map(|v| VideoReport {
                    frames: v.frames,
                    sampled: v.sampled,
                    seconds: v.seconds,
                    timestamps: v.timestamps.clone(),
                })
                .collect(),
            duplicate_of: None,
        }
    }
}

/// The model and its idle sessions, shared with streaming threads.
struct Shared {
    model: smolvlm::Model,
    idle: Mutex<Vec<Session>>,
    image_options: Mutex<ImageOptions>,
}

impl Shared {
    fn image_options(&self) -> ImageOptions {
        self.image_options
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// An idle session (or a new one), set to the current image shaping.
    fn take_session(&self) -> smolvlm::Result<Session> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut session = match idle {
            Some(session) => session,
            None => self.model.session()?,
        };
        session.set_image_options(self.image_options());
        Ok(session)
    }

    /// Runs `f` on an idle session (or a new one), then keeps the session.
    fn with_session<T>(
        &self,
        f: impl FnOnce(&mut Session) -> smolvlm::Result<T>,
    ) -> smolvlm::Result<T> {
        let mut session = self.take_session()?;
        let result = f(&mut session);
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(session);
        result
    }
}

/// A loaded model pair.
#[pyclass(module = "smolvlm._native", frozen)]
struct Model {
    shared: Arc<Shared>,
}

fn load_options(threads: Option<u32>, max_tiles: Option<u32>) -> LoadOptions {
    let mut options = LoadOptions::default().with_max_tiles(max_tiles);
    if let Some(threads) = threads.filter(|t| *t > 0) {
        options = options.with_threads(threads);
    }
    options
}

#[allow(clippy::too_many_arguments)]
fn generation(
    max_tokens: Option<u32>,
    temperature: f32,
    seed: u32,
    stop: Vec<String>,
    timeout: Option<f64>,
) -> PyResult<GenerationOptions> {
    let mut options = GenerationOptions::default()
        .with_temperature(temperature)
        .with_seed(seed)
        .with_stop(stop);
    if let Some(n) = max_tokens {
        options = options.with_max_tokens(n);
    }
    if let Some(seconds) = timeout {
        let deadline = Duration::try_from_secs_f64(seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                to_py(&Error::InvalidOption {
                    name: "timeout",
                    message: format!("must be a positive number of seconds, got {seconds}"),
                })
            })?;
        options = options.with_deadline(deadline);
    }
    Ok(options)
}

impl Model {
    fn from_model(model: smolvlm::Model) -> Self {
        Self {
            shared: Arc::new(Shared {
                model,
                idle: Mutex::new(Vec::new()),
                image_options: Mutex::new(ImageOptions::default()),
            }),
        }
    }
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (model_path, mmproj_path, threads=None, max_tiles=None))]
    fn new(
        py: Python<'_>,
        model_path: PathBuf,
        mmproj_path: PathBuf,
        threads: Option<u32>,
        max_tiles: Option<u32>,
    ) -> PyResult<Self> {
        let options = load_options(threads, max_tiles);
        let files = ModelFiles::new(model_path, mmproj_path);
        let model = py
            .detach(|| smolvlm::Model::load(&files, &options))
            .map_err(|e| to_py(&e))?;
        Ok(Self::from_model(model))
    }

    #[staticmethod]
    #[pyo3(signature = (name_or_repo=None, offline=false, threads=None, max_tiles=None))]
    fn from_pretrained(
        py: Python<'_>,
        name_or_repo: Option<String>,
        offline: bool,
        threads: Option<u32>,
        max_tiles: Option<u32>,
    ) -> PyResult<Self> {
        let source = match name_or_repo.as_deref() {
            None | Some("") => ModelSource::default(),
            Some(name) => ModelSource::parse(name).map_err(|e| to_py(&e.into()))?,
        };
        let mut hub = HubOptions::from_env();
        if offline {
            hub = hub.with_offline(true);
        }
        let options = load_options(threads, max_tiles);
        let model = py
            .detach(|| smolvlm::Model::from_source(&source, &hub, &options))
            .map_err(|e| to_py(&e))?;
        Ok(Self::from_model(model))
    }

    /// How images are shaped before tiling, for every later call: trim
    /// uniform borders (`smart_crop`), stretch to an aspect ratio
    /// (`stretch_to=(w, h)`), as the old configuration's `image_processing`.
    #[pyo3(signature = (smart_crop=false, stretch_to=None))]
    fn set_image_shaping(&self, smart_crop: bool, stretch_to: Option<(u32, u32)>) {
        *self
            .shared
            .image_options
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = ImageOptions::default()
            .with_smart_crop(smart_crop)
            .with_stretch_to(stretch_to);
    }

    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let info = self.shared.model.info();
        let dict = PyDict::new(py);
        dict.set_item("model_path", info.files.model.display().to_string())?;
        dict.set_item("mmproj_path", info.files.mmproj.display().to_string())?;
        dict.set_item("architecture", info.architecture)?;
        dict.set_item("parameters", info.parameters)?;
        dict.set_item("context_length", info.context_length)?;
        dict.set_item("vocab_size", info.vocab_size)?;
        dict.set_item("embedding_size", info.embedding_size)?;
        dict.set_item("projector", info.projector)?;
        dict.set_item("tile_size", info.tile_size)?;
        dict.set_item("longest_edge", info.longest_edge)?;
        dict.set_item("tokens_per_tile", info.tokens_per_tile)?;
        dict.set_item("has_chat_template", info.has_chat_template)?;
        dict.set_item("backend", info.backend)?;
        dict.set_item("gpu_offload", info.gpu_offload)?;
        dict.set_item("threads", info.threads)?;
        dict.set_item("vision_threads", info.vision_threads)?;
        dict.set_item("context_size", info.context_size)?;
        Ok(dict)
    }

    #[pyo3(signature = (image, prompt, max_tokens=None, temperature=0.0, seed=0, stop=Vec::new(), timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn caption(
        &self,
        py: Python<'_>,
        image: Image,
        prompt: String,
        max_tokens: Option<u32>,
        temperature: f32,
        seed: u32,
        stop: Vec<String>,
        timeout: Option<f64>,
    ) -> PyResult<Caption> {
        let options = generation(max_tokens, temperature, seed, stop, timeout)?;
        let shared = Arc::clone(&self.shared);
        py.detach(move || {
            shared.with_session(|s| s.caption(image.input(), prompt.as_str(), &options))
        })
        .map(Caption::from)
        .map_err(|e| to_py(&e))
    }

    #[pyo3(signature = (images, prompt, max_tokens=None, temperature=0.0, seed=0, stop=Vec::new(), timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn ask(
        &self,
        py: Python<'_>,
        images: Vec<Image>,
        prompt: String,
        max_tokens: Option<u32>,
        temperature: f32,
        seed: u32,
        stop: Vec<String>,
        timeout: Option<f64>,
    ) -> PyResult<Caption> {
        let options = generation(max_tokens, temperature, seed, stop, timeout)?;
        let shared = Arc::clone(&self.shared);
        py.detach(move || {
            let inputs: Vec<ImageInput<'_>> = images.iter().map(Image::input).collect();
            shared.with_session(|s| s.ask(&inputs, prompt.as_str(), &options))
        })
        .map(Caption::from)
        .map_err(|e| to_py(&e))
    }

    /// One answer about a video (a file, encoded bytes, or a folder of
    /// frames at `frame_rate`), sampled as SmolVLM2's processor samples it.
    #[pyo3(signature = (video, prompt, max_tokens=None, temperature=0.0, seed=0, stop=Vec::new(), timeout=None, sample_fps=None, max_frames=None, frame_rate=None))]
    #[allow(clippy::too_many_arguments)]
    fn ask_video(
        &self,
        py: Python<'_>,
        video: VideoArg,
        prompt: String,
        max_tokens: Option<u32>,
        temperature: f32,
        seed: u32,
        stop: Vec<String>,
        timeout: Option<f64>,
        sample_fps: Option<f64>,
        max_frames: Option<usize>,
        frame_rate: Option<f64>,
    ) -> PyResult<Caption> {
        let options = generation(max_tokens, temperature, seed, stop, timeout)?;
        let video = video.into_video(sample_fps, max_frames, frame_rate)?;
        let shared = Arc::clone(&self.shared);
        py.detach(move || shared.with_session(|s| s.ask_video(&video, prompt.as_str(), &options)))
            .map(Caption::from)
            .map_err(|e| to_py(&e))
    }

    #[pyo3(signature = (system=None))]
    fn chat(&self, system: Option<String>) -> Chat {
        let mut conversation = smolvlm::Conversation::new();
        if let Some(system) = &system {
            conversation.system(system.clone());
        }
        Chat {
            shared: Arc::clone(&self.shared),
            state: Mutex::new(ChatState {
                session: None,
                conversation,
                system,
            }),
        }
    }

    #[pyo3(signature = (image, prompt, max_tokens=None, temperature=0.0, seed=0, stop=Vec::new(), timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn stream(
        &self,
        image: Image,
        prompt: String,
        max_tokens: Option<u32>,
        temperature: f32,
        seed: u32,
        stop: Vec<String>,
        timeout: Option<f64>,
    ) -> PyResult<Stream> {
        let cancel = CancelToken::new();
        let options =
            generation(max_tokens, temperature, seed, stop, timeout)?.with_cancel(cancel.clone());
        let shared = Arc::clone(&self.shared);
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("smolvlm-stream".to_owned())
            .spawn(move || {
                let pieces = tx.clone();
                let result = shared.with_session(|s| {
                    s.caption_streaming(image.input(), prompt.as_str(), &options, |piece| {
                        if !piece.is_empty() {
                            let _ = pieces.send(Item::Piece(piece.to_owned()));
                        }
                    })
                });
                let _ = tx.send(Item::Done(Box::new(result)));
            })
            .map_err(|e| to_py(&Error::Internal(format!("cannot start a thread: {e}"))))?;
        Ok(Stream {
            rx: Mutex::new(rx),
            cancel,
            caption: Mutex::new(None),
        })
    }

    #[pyo3(signature = (images, prompt, max_tokens=None, temperature=0.0, seed=0, stop=Vec::new(), timeout=None, parallel=1, keys=None))]
    #[allow(clippy::too_many_arguments)]
    fn caption_many(
        &self,
        py: Python<'_>,
        images: Vec<Image>,
        prompt: String,
        max_tokens: Option<u32>,
        temperature: f32,
        seed: u32,
        stop: Vec<String>,
        timeout: Option<f64>,
        parallel: usize,
        keys: Option<Vec<usize>>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let options = generation(max_tokens, temperature, seed, stop, timeout)?;
        let keys = keys.unwrap_or_else(|| (0..images.len()).collect());
        if keys.len() != images.len() {
            return Err(PyValueError::new_err(format!(
                "{} keys for {} images",
                keys.len(),
                images.len()
            )));
        }
        let shared = Arc::clone(&self.shared);
        let inputs: Vec<Input<usize>> = keys
            .into_iter()
            .zip(images)
            .map(|(key, image)| Input::image(key, image.inner))
            .collect();
        let results = py
            .detach(move || batch(&shared, inputs, prompt, options, parallel.max(1)))
            .map_err(|e| to_py(&e))?;
        results
            .into_iter()
            .map(|(result, duplicate_of)| match result {
                Ok(caption) => {
                    let mut caption = Caption::from(caption);
                    caption.duplicate_of = duplicate_of;
                    Ok(Py::new(py, caption)?.into_any())
                }
                Err(error) => Ok(to_py(&error).into_value(py).into_any()),
            })
            .collect()
    }
}

/// One image's caption (or error), and the key of the identical image it
/// copies.
type Captioned = (smolvlm::Result<smolvlm::Caption>, Option<usize>);

/// The batch path: the library's batch engine on the model's idle sessions
/// (kept for the next call), results in input order.
///
/// # Errors
///
/// Only when a session cannot be opened; each image's own failure is its
/// result.
fn batch(
    shared: &Shared,
    inputs: Vec<Input<usize>>,
    prompt: String,
    options: GenerationOptions,
    parallel: usize,
) -> smolvlm::Result<Vec<Captioned>> {
    let sessions: Vec<Session> = {
        let mut idle = shared.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let keep = idle.len().saturating_sub(parallel);
        idle.split_off(keep)
    };
    let n = inputs.len();
    let mut run = Batch::new(&shared.model)
        .with_prompt(prompt)
        .with_generation(options)
        .with_image_options(shared.image_options())
        .with_sessions(parallel)
        .with_open_sessions(sessions)
        .with_order(Order::Input)
        .run(inputs)?;
    let mut results = Vec::with_capacity(n);
    for done in run.by_ref() {
        let result = match done.outcome {
            Err(error) => Err(error),
            Ok(mut answers) => answers.pop().map_or_else(
                || Err(Error::Internal("an image was not captioned".to_owned())),
                |answer| answer.result,
            ),
        };
        results.push((result, done.duplicate_of));
    }
    shared
        .idle
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(run.into_sessions());
    Ok(results)
}

enum Item {
    Piece(String),
    Done(Box<smolvlm::Result<smolvlm::Caption>>),
}

/// The text of one caption as it is generated: iterate it for the pieces;
/// `caption` holds the whole result once it is exhausted. Closing it (or
/// dropping it) cancels the caption.
#[pyclass(module = "smolvlm._native", frozen)]
struct Stream {
    rx: Mutex<Receiver<Item>>,
    cancel: CancelToken,
    caption: Mutex<Option<Caption>>,
}

#[pymethods]
impl Stream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let item = py.detach(|| {
            self.rx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recv()
        });
        match item {
            Ok(Item::Piece(piece)) => Ok(Some(piece)),
            Ok(Item::Done(done)) => match *done {
                Ok(caption) => {
                    *self.caption.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Caption::from(caption));
                    Ok(None)
                }
                Err(error) => Err(to_py(&error)),
            },
            // Exhausted before: stop again.
            Err(_) => Ok(None),
        }
    }

    /// Stops the caption; the iteration then raises `Cancelled`.
    fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The whole result, once the iteration has ended; else `None`.
    #[getter]
    fn caption(&self) -> Option<Caption> {
        self.caption
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A conversation with its own session: follow-ups evaluate only their own
/// turn, and its images are not encoded again.
#[pyclass(module = "smolvlm._native", frozen)]
struct Chat {
    shared: Arc<Shared>,
    state: Mutex<ChatState>,
}

struct ChatState {
    /// Taken from the model's idle sessions on the first message and kept:
    /// it holds the conversation in its KV cache.
    session: Option<Session>,
    conversation: smolvlm::Conversation,
    system: Option<String>,
}

#[pymethods]
impl Chat {
    /// Sends a user message (images first, then the text) and returns the
    /// answer, which joins the conversation. On an error the message is
    /// dropped and the conversation is as it was.
    #[pyo3(signature = (text, images=Vec::new(), max_tokens=None, temperature=0.0, seed=0, stop=Vec::new(), timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        text: String,
        images: Vec<Image>,
        max_tokens: Option<u32>,
        temperature: f32,
        seed: u32,
        stop: Vec<String>,
        timeout: Option<f64>,
    ) -> PyResult<Caption> {
        let options = generation(max_tokens, temperature, seed, stop, timeout)?;
        let shared = Arc::clone(&self.shared);
        let state = &self.state;
        py.detach(move || {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let state = &mut *state;
            let session = match state.session.take() {
                Some(mut session) => {
                    session.set_image_options(shared.image_options());
                    session
                }
                None => shared.take_session()?,
            };
            let session = state.session.insert(session);
            let mut message = smolvlm::Message::user();
            for image in images {
                message = message.image(image.inner);
            }
            state.conversation.push(message.text(text));
            let answer = session.reply(&mut state.conversation, &options);
            if answer.is_err() {
                state.conversation.pop();
            }
            answer
        })
        .map(Caption::from)
        .map_err(|e| to_py(&e))
    }

    /// Starts over (the system message stays). Waits for a reply in
    /// progress on another thread, with the GIL released.
    fn reset(&self, py: Python<'_>) {
        py.detach(|| {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.conversation.clear();
            if let Some(system) = state.system.clone() {
                state.conversation.system(system);
            }
            if let Some(session) = state.session.as_mut() {
                session.forget();
            }
        });
    }

    /// The turns so far: (role, text, number of images). Waits for a reply
    /// in progress on another thread, with the GIL released.
    fn history(&self, py: Python<'_>) -> Vec<(String, String, usize)> {
        py.detach(|| self.history_now())
    }
}

impl Chat {
    fn history_now(&self) -> Vec<(String, String, usize)> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .conversation
            .messages()
            .iter()
            .map(|m| {
                let role = match m.role() {
                    smolvlm::Role::System => "system",
                    smolvlm::Role::User => "user",
                    _ => "assistant",
                };
                let mut text = String::new();
                let mut images = 0;
                for part in m.parts() {
                    match part {
                        smolvlm::Part::Text(t) => text.push_str(t.as_str()),
                        _ => images += 1,
                    }
                }
                (role.to_owned(), text, images)
            })
            .collect()
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        // The session goes back to the model's idle ones, emptied.
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut session) = state.session.take() {
            session.forget();
            self.shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(session);
        }
    }
}

/// Parses the old wrapper's configuration (JSON, or TOML with `toml=True`):
/// returns `(model, timeout, smart_crop, stretch_to, warnings)`, or raises
/// `ConfigError` naming the bad key, exactly as `smolvlm caption --config`.
#[pyfunction]
#[pyo3(signature = (text, toml=false))]
#[allow(clippy::type_complexity)]
fn parse_legacy_config(
    text: &str,
    toml: bool,
) -> PyResult<(
    Option<String>,
    Option<f64>,
    Option<bool>,
    Option<(u32, u32)>,
    Vec<String>,
)> {
    let config = config::LegacyConfig::parse(text, toml).map_err(ConfigError::new_err)?;
    Ok((
        config.smolvlm_version.clone(),
        config.timeout,
        config.smart_crop(),
        config.stretch_to(),
        config.warnings(),
    ))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Model>()?;
    m.add_class::<Image>()?;
    m.add_class::<Caption>()?;
    m.add_class::<VideoReport>()?;
    m.add_class::<Stream>()?;
    m.add_class::<Chat>()?;
    m.add_function(wrap_pyfunction!(parse_legacy_config, m)?)?;
    m.add("SmolVLMError", py.get_type::<SmolVLMError>())?;
    m.add("LoadError", py.get_type::<LoadError>())?;
    m.add("HubError", py.get_type::<HubError>())?;
    m.add("ImageError", py.get_type::<ImageError>())?;
    m.add("VideoError", py.get_type::<VideoError>())?;
    m.add("CaptionError", py.get_type::<CaptionError_>())?;
    m.add("Cancelled", py.get_type::<Cancelled>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("DEFAULT_PROMPT", smolvlm::DEFAULT_PROMPT)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
