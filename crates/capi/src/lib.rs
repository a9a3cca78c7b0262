//! The C ABI of smolvlm: caption images with SmolVLM in-process from C, C++,
//! Swift, C#, Electron or anything else that calls C.
//!
//! The header is `crates/capi/include/smolvlm.h`, generated from this file by
//! cbindgen and committed (`tests/header.rs` fails when it is stale; run it
//! with `SMOLVLM_BLESS=1` to rewrite it). `cargo build --release --workspace`
//! leaves `libsmolvlm_capi.so` and `libsmolvlm_capi.a` in `target/release/`.
//!
//! The rules, also written in the header:
//! - Handles are opaque. Every handle a function returns is freed with its
//!   own `_free` function, exactly once; every `_free` accepts `NULL`.
//! - A call that can fail takes `smolvlm_error **err` as its last argument.
//!   On failure it returns `NULL` (or `false`) and, if `err` is not `NULL`,
//!   stores a new error there that the caller frees with
//!   `smolvlm_error_free`. On success it stores `NULL` there.
//! - No panic crosses the boundary: one becomes an error of kind `panic`.
//! - Threads: a model may be shared by any number of threads; a session is
//!   used by one call at a time (it may move between threads): a second
//!   call on a session that is busy, from another thread or from one of its
//!   own callbacks, fails at once with kind `session_busy`. Options may be
//!   changed from any thread at any time: a caption copies them when it
//!   starts. A cancel flag may be set from any thread. A session keeps its
//!   model alive: `smolvlm_model_free` may come before `smolvlm_session_free`.
//! - Callbacks (`on_text`, progress) run on the thread of the call that was
//!   given them, before it returns. They may set cancel flags and call into
//!   other sessions, but not into their own (it is busy). They must return
//!   normally: a C++ exception, a `longjmp` or a thread exit out of a
//!   callback skips the library's frames and is undefined behaviour.
//! - Text is UTF-8 without NUL bytes: a NUL the model generates is dropped,
//!   from the returned string and the streamed pieces alike.
#![deny(missing_docs)]
// The C names are the ABI: `smolvlm_model`, not `SmolvlmModel`.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use smolvlm::{CancelToken, GenerationOptions, LoadOptions, Model, ModelFiles, Session};

/// The prompt used when a caption call is given `NULL` for its prompt.
pub const DEFAULT_PROMPT: &str = smolvlm::DEFAULT_PROMPT;

/// A loaded model pair (text model and vision projector). Thread-safe.
#[derive(Debug)]
pub struct smolvlm_model {
    model: Model,
}

/// A captioning session: its own KV cache and vision encoder. One call at a
/// time: a call on a busy session fails with kind `session_busy`.
#[derive(Debug)]
pub struct smolvlm_session {
    /// Locked for the whole of a call, with `try_lock`: a second call (a
    /// callback's, or another thread's) is refused, never a second `&mut`.
    session: Mutex<Session>,
}

/// Generation options for the `_with` caption calls: an opaque builder.
/// Setters and captions may run on any threads at once: a caption copies
/// the options when it starts.
#[derive(Debug)]
pub struct smolvlm_options {
    inner: Mutex<Options>,
}

/// What an options handle holds.
#[derive(Debug, Clone, Default)]
struct Options {
    generation: GenerationOptions,
    progress: Progress,
}

/// A progress callback with its user pointer.
#[derive(Debug, Clone, Copy)]
struct Progress {
    call: smolvlm_progress_fn,
    user: *mut c_void,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            call: None,
            user: std::ptr::null_mut(),
        }
    }
}

/// Where the vision encoder is in a caption, told to a progress callback:
/// encode `encode` of `encodes` (the image's tiles, then its overview) of
/// image `image` of `images`, with `layer` of its `layers` encoder layers
/// done (0 when the encode begins). `fraction` is how much of this image's
/// encoding is done, from 0 to 1. A full-grid photo at real scale is 13
/// encodes of 12 layers, a few seconds each encode on 2 cores: a progress
/// bar drawn from these moves every fraction of a second.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct smolvlm_progress {
    /// The image being encoded, from 1.
    pub image: usize,
    /// Images this call encodes.
    pub images: usize,
    /// The encode within the image, from 1.
    pub encode: usize,
    /// Encodes of this image: its tiles plus the overview (a video: one
    /// per frame).
    pub encodes: usize,
    /// Encoder layers done in this encode.
    pub layer: usize,
    /// Layers of the encoder (0 if unknown).
    pub layers: usize,
    /// This image's encoding done, from 0 to 1.
    pub fraction: f32,
}

/// Called as the vision encoder moves (see `smolvlm_progress`), on the
/// thread of the caption call; `progress` is valid only during the call.
/// To stop the caption from here, set the options' cancel flag
/// (`smolvlm_cancel_set`): it takes effect within one encoder layer.
pub type smolvlm_progress_fn =
    Option<unsafe extern "C" fn(progress: *const smolvlm_progress, user: *mut c_void)>;

/// A cancel flag: set it from any thread to stop the captions that hold it.
#[derive(Debug)]
pub struct smolvlm_cancel {
    token: CancelToken,
}

/// What went wrong: a stable kind, a message, and whether a retry may succeed.
#[derive(Debug)]
pub struct smolvlm_error {
    kind: CString,
    message: CString,
    transient: bool,
}

/// Called with each piece of generated text as soon as it is complete
/// UTF-8: `piece` points at `len` bytes followed by a NUL byte, valid only
/// during the call. `user` is the pointer given to the caption call.
pub type smolvlm_text_fn =
    Option<unsafe extern "C" fn(piece: *const c_char, len: usize, user: *mut c_void)>;

impl smolvlm_error {
    fn new(kind: &str, message: &str, transient: bool) -> Self {
        Self {
            kind: c_string(kind),
            message: c_string(message),
            transient,
        }
    }

    fn invalid(message: &str) -> Self {
        Self::new("invalid_argument", message, false)
    }
}

impl From<smolvlm::Error> for smolvlm_error {
    fn from(e: smolvlm::Error) -> Self {
        Self::new(e.kind(), &e.to_string(), e.is_transient())
    }
}

/// `text` as a C string, with any NUL bytes (which C strings cannot hold)
/// dropped.
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "")).unwrap_or_default()
}

/// A streamed piece as `on_text` gets it: its bytes without NULs (as
/// [`c_string`] drops them from the returned text, so the pieces add up to
/// it), then a NUL. Returns the length before that NUL.
fn c_piece(piece: &str, buffer: &mut Vec<u8>) -> usize {
    buffer.clear();
    buffer.extend(piece.bytes().filter(|&b| b != 0));
    let len = buffer.len();
    buffer.push(0);
    len
}

/// Runs `body`, turning an error or a panic into `fail` plus an error stored
/// in `*err`, and storing `NULL` there on success.
///
/// # Safety
///
/// `err` is `NULL` or valid for one pointer write.
unsafe fn guard<T>(
    err: *mut *mut smolvlm_error,
    fail: T,
    body: impl FnOnce() -> Result<T, smolvlm_error>,
) -> T {
    let (value, error) = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => (value, None),
        Ok(Err(error)) => (fail, Some(error)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            (fail, Some(smolvlm_error::new("panic", &message, false)))
        }
    };
    if !err.is_null() {
        // SAFETY: the caller guarantees `err` is valid for a write.
        unsafe { *err = error.map_or(std::ptr::null_mut(), |e| Box::into_raw(Box::new(e))) };
    }
    value
}

/// Reads a C string argument as UTF-8.
///
/// # Safety
///
/// `ptr` is `NULL` or points at a NUL-terminated string.
unsafe fn text_arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, smolvlm_error> {
    if ptr.is_null() {
        return Err(smolvlm_error::invalid(&format!("{name} is NULL")));
    }
    // SAFETY: not NULL, and the caller guarantees it is NUL-terminated.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| smolvlm_error::invalid(&format!("{name} is not UTF-8")))
}

/// Like [`text_arg`], with `default` for `NULL`.
///
/// # Safety
///
/// As [`text_arg`].
unsafe fn text_or<'a>(
    ptr: *const c_char,
    name: &str,
    default: &'a str,
) -> Result<&'a str, smolvlm_error> {
    if ptr.is_null() {
        Ok(default)
    } else {
        // SAFETY: as this function's contract.
        unsafe { text_arg(ptr, name) }
    }
}

/// A handle argument as a reference.
///
/// # Safety
///
/// `ptr` is `NULL` or a live handle of this type.
unsafe fn handle<'a, T>(ptr: *const T, name: &str) -> Result<&'a T, smolvlm_error> {
    // SAFETY: the caller guarantees a live handle or NULL.
    unsafe { ptr.as_ref() }.ok_or_else(|| smolvlm_error::invalid(&format!("{name} is NULL")))
}

fn into_raw<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Frees a handle made by [`into_raw`]; `NULL` is ignored.
///
/// # Safety
///
/// `ptr` is `NULL` or a handle of this type not yet freed.
unsafe fn free<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: made by `into_raw` and not freed before (the contract).
        let owned = unsafe { Box::from_raw(ptr) };
        // Dropping frees llama.cpp memory; a panic there must not unwind into C.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(owned)));
    }
}

/// The library's version, a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn smolvlm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Loads a model pair from two GGUF files: the text model and its vision
/// projector (mmproj). `threads <= 0` uses every core.
///
/// # Safety
///
/// The paths are NUL-terminated strings; `err` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_model_load(
    model_path: *const c_char,
    mmproj_path: *const c_char,
    threads: c_int,
    err: *mut *mut smolvlm_error,
) -> *mut smolvlm_model {
    // SAFETY: `err` as this function's contract; the closure reads only
    // the caller's strings.
    unsafe {
        guard(err, std::ptr::null_mut(), || {
            let model = text_arg(model_path, "model_path")?;
            let mmproj = text_arg(mmproj_path, "mmproj_path")?;
            let mut options = LoadOptions::default();
            if let Ok(threads @ 1..) = u32::try_from(threads) {
                options = options.with_threads(threads);
            }
            let model = Model::load(&ModelFiles::new(model, mmproj), &options)?;
            Ok(into_raw(smolvlm_model { model }))
        })
    }
}

/// Loads a model by preset name (`SmolVLM-256M-Instruct`) or Hugging Face
/// Hub repo (`owner/name[@revision][:quantization]`), downloading it into
/// the Hugging Face cache on first use. `NULL` names the default preset.
/// The Hub settings come from the environment (`HF_HOME`, `HF_ENDPOINT`,
/// `HF_TOKEN`, `HF_HUB_OFFLINE`). `threads <= 0` uses every core.
///
/// # Safety
///
/// `source` is `NULL` or a NUL-terminated string; `err` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_model_from_pretrained(
    source: *const c_char,
    threads: c_int,
    err: *mut *mut smolvlm_error,
) -> *mut smolvlm_model {
    // SAFETY: as this function's contract.
    unsafe {
        guard(err, std::ptr::null_mut(), || {
            let source = match text_or(source, "source", "")? {
                "" => smolvlm::ModelSource::default(),
                name => smolvlm::ModelSource::parse(name).map_err(smolvlm::Error::from)?,
            };
            let mut options = LoadOptions::default();
            if let Ok(threads @ 1..) = u32::try_from(threads) {
                options = options.with_threads(threads);
            }
            let hub = smolvlm::HubOptions::from_env();
            let model = Model::from_source(&source, &hub, &options)?;
            Ok(into_raw(smolvlm_model { model }))
        })
    }
}

/// Frees a model handle. Sessions made from it stay usable: each keeps the
/// model alive until it is freed. `NULL` is ignored.
///
/// # Safety
///
/// `m` is `NULL` or a model handle not yet freed.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_model_free(m: *mut smolvlm_model) {
    // SAFETY: as this function's contract.
    unsafe { free(m) }
}

/// Opens a session of `model`: its own KV cache and vision encoder, for one
/// thread at a time. Open one per thread that captions at once.
///
/// # Safety
///
/// `model` is `NULL` or a live model handle; `err` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_session_new(
    model: *mut smolvlm_model,
    err: *mut *mut smolvlm_error,
) -> *mut smolvlm_session {
    // SAFETY: as this function's contract.
    unsafe {
        guard(err, std::ptr::null_mut(), || {
            let model = handle(model, "model")?;
            let session = model.model.session()?;
            Ok(into_raw(smolvlm_session {
                session: Mutex::new(session),
            }))
        })
    }
}

/// Frees a session. `NULL` is ignored.
///
/// # Safety
///
/// `s` is `NULL` or a session handle not yet freed, in use by no other thread.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_session_free(s: *mut smolvlm_session) {
    // SAFETY: as this function's contract.
    unsafe { free(s) }
}

/// New generation options: greedy, the library's default length, no
/// deadline, no cancel flag.
#[no_mangle]
pub extern "C" fn smolvlm_options_new() -> *mut smolvlm_options {
    into_raw(smolvlm_options {
        inner: Mutex::new(Options::default()),
    })
}

/// Frees options. `NULL` is ignored. Captions already started with them are
/// not affected.
///
/// # Safety
///
/// `o` is `NULL` or an options handle not yet freed.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_options_free(o: *mut smolvlm_options) {
    // SAFETY: as this function's contract.
    unsafe { free(o) }
}

/// Applies `change` to the options behind `o`, if any.
///
/// # Safety
///
/// `o` is `NULL` or a live options handle (used by any threads: the change
/// is made under the handle's lock).
unsafe fn set(o: *mut smolvlm_options, change: impl FnOnce(&mut Options)) {
    // SAFETY: as this function's contract; only a shared reference is made.
    if let Some(o) = unsafe { o.cast_const().as_ref() } {
        let _ = catch_unwind(AssertUnwindSafe(|| change(&mut lock(&o.inner))));
    }
}

/// A lock that a panic elsewhere did not leave unusable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Applies `change` to the generation options behind `o`, if any.
///
/// # Safety
///
/// As [`set`].
unsafe fn set_generation(
    o: *mut smolvlm_options,
    change: impl FnOnce(GenerationOptions) -> GenerationOptions,
) {
    // SAFETY: as this function's contract.
    unsafe {
        set(o, |opts| {
            opts.generation = change(opts.generation.clone());
        });
    }
}

/// The most tokens to generate (must be at least 1; checked when captioning).
///
/// # Safety
///
/// `o` is `NULL` (ignored) or a live options handle.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_options_set_max_tokens(o: *mut smolvlm_options, max_tokens: u32) {
    // SAFETY: as this function's contract.
    unsafe { set_generation(o, |opts| opts.with_max_tokens(max_tokens)) }
}

/// Sampling temperature; 0 (the default) is greedy and deterministic.
///
/// # Safety
///
/// `o` is `NULL` (ignored) or a live options handle.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_options_set_temperature(
    o: *mut smolvlm_options,
    temperature: f32,
) {
    // SAFETY: as this function's contract.
    unsafe { set_generation(o, |opts| opts.with_temperature(temperature)) }
}

/// The sampling seed: the same seed and inputs give the same text.
///
/// # Safety
///
/// `o` is `NULL` (ignored) or a live options handle.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_options_set_seed(o: *mut smolvlm_options, seed: u32) {
    // SAFETY: as this function's contract.
    unsafe { set_generation(o, |opts| opts.with_seed(seed)) }
}

/// A deadline per caption, in milliseconds from the call's start; the
/// caption then fails with kind `deadline_exceeded`.
///
/// # Safety
///
/// `o` is `NULL` (ignored) or a live options handle.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_options_set_timeout_ms(o: *mut smolvlm_options, timeout_ms: u64) {
    // SAFETY: as this function's contract.
    unsafe {
        set_generation(o, |opts| {
            opts.with_deadline(Duration::from_millis(timeout_ms))
        })
    }
}

/// Captions with these options stop, with kind `cancelled`, once `cancel`
/// is set. The options keep their own reference: `cancel` may be freed first.
///
/// # Safety
///
/// `o` is `NULL` (ignored) or a live options handle; `cancel` is `NULL`
/// (ignored) or a live cancel handle.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_options_set_cancel(
    o: *mut smolvlm_options,
    cancel: *const smolvlm_cancel,
) {
    // SAFETY: as this function's contract.
    if let Some(cancel) = unsafe { cancel.as_ref() } {
        let token = cancel.token.clone();
        // SAFETY: as this function's contract.
        unsafe { set_generation(o, |opts| opts.with_cancel(token)) }
    }
}

/// Captions with these options call `on_progress` (if not `NULL`) with
/// `user` as the vision encoder moves: at the start of each encode and
/// after each encoder layer. `NULL` removes the callback.
///
/// # Safety
///
/// `o` is `NULL` (ignored) or a live options handle; `on_progress`, if not
/// `NULL`, may be called with `user` during any caption with these options.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_options_set_progress(
    o: *mut smolvlm_options,
    on_progress: smolvlm_progress_fn,
    user: *mut c_void,
) {
    // SAFETY: as this function's contract.
    unsafe {
        set(o, |opts| {
            opts.progress = Progress {
                call: on_progress,
                user,
            };
        });
    }
}

/// A new cancel flag, not set.
#[no_mangle]
pub extern "C" fn smolvlm_cancel_new() -> *mut smolvlm_cancel {
    into_raw(smolvlm_cancel {
        token: CancelToken::new(),
    })
}

/// Sets the flag: every caption holding it stops at its next check (between
/// generated tokens, and between the stages of an image). Safe from any
/// thread, at any time, any number of times.
///
/// # Safety
///
/// `c` is `NULL` (ignored) or a live cancel handle.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_cancel_set(c: *const smolvlm_cancel) {
    // SAFETY: as this function's contract.
    if let Some(c) = unsafe { c.as_ref() } {
        c.token.cancel();
    }
}

/// Whether the flag is set. `NULL` is not set.
///
/// # Safety
///
/// `c` is `NULL` or a live cancel handle.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_cancel_is_set(c: *const smolvlm_cancel) -> bool {
    // SAFETY: as this function's contract.
    unsafe { c.as_ref() }.is_some_and(|c| c.token.is_cancelled())
}

/// Frees a cancel flag. Options holding it keep their own reference.
///
/// # Safety
///
/// `c` is `NULL` or a cancel handle not yet freed.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_cancel_free(c: *mut smolvlm_cancel) {
    // SAFETY: as this function's contract.
    unsafe { free(c) }
}

/// The image (or video) a caption call reads.
enum Image<'a> {
    Path(&'a Path),
    Bytes(&'a [u8]),
    Rgb(image::RgbImage),
    Video(smolvlm::video::Video),
}

/// The common body of every caption call.
///
/// # Safety
///
/// `s` is `NULL` or a live session used by no other thread; `prompt` is
/// `NULL` or NUL-terminated; `on_text`, if given, may be called with
/// `user`, and `progress`'s callback with its own user pointer.
unsafe fn caption(
    s: *mut smolvlm_session,
    image: impl FnOnce() -> Result<Image<'static>, smolvlm_error>,
    prompt: *const c_char,
    options: &GenerationOptions,
    progress: Progress,
    on_text: smolvlm_text_fn,
    user: *mut c_void,
) -> Result<*mut c_char, smolvlm_error> {
    // SAFETY: as this function's contract; only a shared reference is made.
    let handle = unsafe { handle(s.cast_const(), "session") }?;
    let mut session = match handle.session.try_lock() {
        Ok(session) => session,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => {
            return Err(smolvlm_error::new(
                "session_busy",
                "the session is busy with another call (from another thread, or from a callback of its own call)",
                true,
            ))
        }
    };
    // SAFETY: as this function's contract.
    let prompt = unsafe { text_or(prompt, "prompt", DEFAULT_PROMPT) }?;
    let image = image()?;
    let mut buffer = Vec::new();
    let observer = |event: smolvlm::Progress<'_>| match event {
        smolvlm::Progress::Text(piece) => {
            if let Some(on_text) = on_text {
                let len = c_piece(piece, &mut buffer);
                if len > 0 {
                    // SAFETY: the caller vouches for the callback and its
                    // `user`; `buffer` holds `len` bytes and a NUL, alive
                    // for the call.
                    unsafe { on_text(buffer.as_ptr().cast(), len, user) };
                }
            }
        }
        smolvlm::Progress::Encoding(at) => {
            if let Some(on_progress) = progress.call {
                let report = smolvlm_progress {
                    image: at.image,
                    images: at.images,
                    encode: at.encode,
                    encodes: at.encodes,
                    layer: at.layer,
                    layers: at.layers,
                    fraction: at.image_fraction(),
                };
                // SAFETY: the caller vouches for the callback and its user
                // pointer; `report` is alive for the call.
                unsafe { on_progress(&raw const report, progress.user) };
            }
        }
        _ => {}
    };
    let caption = match &image {
        Image::Path(path) => session.caption_observed(*path, prompt, options, observer),
        Image::Bytes(bytes) => session.caption_observed(*bytes, prompt, options, observer),
        Image::Rgb(rgb) => session.caption_observed(rgb, prompt, options, observer),
        Image::Video(video) => session.ask_video_observed(video, prompt, options, observer),
    }?;
    Ok(c_string(&caption.text).into_raw())
}

/// The body of the `_with` calls: options from their handle, errors and
/// panics into `*err`.
///
/// # Safety
///
/// As [`caption`] and [`options_or_default`]; `err` is `NULL` or writable.
#[allow(clippy::too_many_arguments)]
unsafe fn caption_with(
    err: *mut *mut smolvlm_error,
    s: *mut smolvlm_session,
    image: impl FnOnce() -> Result<Image<'static>, smolvlm_error>,
    prompt: *const c_char,
    options: *const smolvlm_options,
    on_text: smolvlm_text_fn,
    user: *mut c_void,
) -> *mut c_char {
    // SAFETY: as this function's contract.
    unsafe {
        guard(err, std::ptr::null_mut(), || {
            let Options {
                generation,
                progress,
            } = options_or_default(options);
            caption(s, image, prompt, &generation, progress, on_text, user)
        })
    }
}

/// A copy of the options behind a handle, taken under its lock, or the
/// defaults for `NULL`: a caption reads its copy, whatever other threads
/// set meanwhile.
///
/// # Safety
///
/// `o` is `NULL` or a live options handle.
unsafe fn options_or_default(o: *const smolvlm_options) -> Options {
    // SAFETY: as this function's contract.
    unsafe { o.as_ref() }.map_or_else(Options::default, |o| lock(&o.inner).clone())
}

/// Captions an image file; returns the text, to be freed with
/// `smolvlm_string_free`. `prompt` is the user's instruction (`NULL`:
/// "Describe this image."); `max_tokens <= 0` uses the library's default.
/// Greedy, so the same inputs give the same text.
///
/// # Safety
///
/// `s` is a live session used by no other thread; the strings are
/// NUL-terminated (`prompt` may be `NULL`); `err` is `NULL` or writable.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_caption_file(
    s: *mut smolvlm_session,
    image_path: *const c_char,
    prompt: *const c_char,
    max_tokens: c_int,
    err: *mut *mut smolvlm_error,
) -> *mut c_char {
    let mut options = GenerationOptions::default();
    if let Ok(n @ 1..) = u32::try_from(max_tokens) {
        options = options.with_max_tokens(n);
    }
    // SAFETY: as this function's contract.
    unsafe {
        guard(err, std::ptr::null_mut(), || {
            caption(
                s,
                || Ok(Image::Path(Path::new(text_arg(image_path, "image_path")?))),
                prompt,
                &options,
                Progress::default(),
                None,
                std::ptr::null_mut(),
            )
        })
    }
}

/// Captions an image file with options (`NULL`: the defaults), calling
/// `on_text` (if not `NULL`) with each piece of text as it is generated.
/// Returns the whole text, to be freed with `smolvlm_string_free`.
///
/// # Safety
///
/// As `smolvlm_caption_file`; `options` is `NULL` or a live options handle;
/// `on_text`, if not `NULL`, may be called with `user` on this thread
/// before this call returns.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_caption_file_with(
    s: *mut smolvlm_session,
    image_path: *const c_char,
    prompt: *const c_char,
    options: *const smolvlm_options,
    on_text: smolvlm_text_fn,
    user: *mut c_void,
    err: *mut *mut smolvlm_error,
) -> *mut c_char {
    // SAFETY: as this function's contract; the image path is read only
    // during the call.
    unsafe {
        caption_with(
            err,
            s,
            || Ok(Image::Path(Path::new(text_arg(image_path, "image_path")?))),
            prompt,
            options,
            on_text,
            user,
        )
    }
}

/// Captions an encoded image in memory (PNG, JPEG, GIF, BMP, WebP or TIFF):
/// `len` bytes at `data`, read only during the call. Otherwise as
/// `smolvlm_caption_file_with`.
///
/// # Safety
///
/// As `smolvlm_caption_file_with`; `data` is readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_caption_bytes_with(
    s: *mut smolvlm_session,
    data: *const u8,
    len: usize,
    prompt: *const c_char,
    options: *const smolvlm_options,
    on_text: smolvlm_text_fn,
    user: *mut c_void,
    err: *mut *mut smolvlm_error,
) -> *mut c_char {
    // SAFETY: as this function's contract.
    unsafe {
        caption_with(
            err,
            s,
            || {
                if data.is_null() {
                    return Err(smolvlm_error::invalid("data is NULL"));
                }
                // SAFETY: readable for `len` bytes (the contract), and only
                // read before this call returns.
                Ok(Image::Bytes(std::slice::from_raw_parts(data, len)))
            },
            prompt,
            options,
            on_text,
            user,
        )
    }
}

/// Captions decoded pixels: `height` rows of `width` packed RGB pixels (3
/// bytes each, no padding) at `rgb`, copied during the call. Otherwise as
/// `smolvlm_caption_file_with`.
///
/// # Safety
///
/// As `smolvlm_caption_file_with`; `rgb` is readable for `width * height * 3`
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_caption_rgb_with(
    s: *mut smolvlm_session,
    rgb: *const u8,
    width: u32,
    height: u32,
    prompt: *const c_char,
    options: *const smolvlm_options,
    on_text: smolvlm_text_fn,
    user: *mut c_void,
    err: *mut *mut smolvlm_error,
) -> *mut c_char {
    // SAFETY: as this function's contract.
    unsafe {
        caption_with(
            err,
            s,
            || {
                if rgb.is_null() {
                    return Err(smolvlm_error::invalid("rgb is NULL"));
                }
                let len = (width as usize)
                    .checked_mul(height as usize)
                    .and_then(|n| n.checked_mul(3))
                    .ok_or_else(|| smolvlm_error::invalid("width * height * 3 overflows"))?;
                // SAFETY: readable for `width * height * 3` bytes (the
                // contract); copied here.
                let pixels = std::slice::from_raw_parts(rgb, len).to_vec();
                let image = image::RgbImage::from_raw(width, height, pixels)
                    .ok_or_else(|| smolvlm_error::invalid("the pixel buffer size"))?;
                Ok(Image::Rgb(image))
            },
            prompt,
            options,
            on_text,
            user,
        )
    }
}

/// Answers about a video file, as SmolVLM2 sees one: frames sampled as its
/// processor samples them (one per second, at most 64, fewer when they
/// would not fit the context), each one overview image after its time. An
/// animated GIF, WebP or APNG is read by the library; an MP4, WebM, MOV,
/// MKV or AVI needs the `ffmpeg` and `ffprobe` programs on PATH (without
/// them: an error of kind `video_tool_missing` that says what to install).
/// A progress callback in `options` is told each frame's encode. Otherwise
/// as `smolvlm_caption_file_with`.
///
/// # Safety
///
/// As `smolvlm_caption_file_with`.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_caption_video_file(
    s: *mut smolvlm_session,
    video_path: *const c_char,
    prompt: *const c_char,
    options: *const smolvlm_options,
    on_text: smolvlm_text_fn,
    user: *mut c_void,
    err: *mut *mut smolvlm_error,
) -> *mut c_char {
    // SAFETY: as this function's contract; the path is read only during
    // the call.
    unsafe {
        caption_with(
            err,
            s,
            || {
                let path = text_arg(video_path, "video_path")?;
                Ok(Image::Video(smolvlm::video::Video::file(path)))
            },
            prompt,
            options,
            on_text,
            user,
        )
    }
}

/// One image's result in `smolvlm_caption_files`, valid only during the
/// callback it is passed to.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct smolvlm_batch_result {
    /// The image's place in `paths`, from 0.
    pub index: usize,
    /// The caption (NUL-terminated), or `NULL` when `error` is set.
    pub text: *const c_char,
    /// Why there is no caption, or `NULL`. Read it with the
    /// `smolvlm_error_*` functions; do not free it.
    pub error: *const smolvlm_error,
    /// The index of an earlier image with the same pixels (once prepared)
    /// whose caption this is a copy of (it was not encoded again), or
    /// `SIZE_MAX` when it is not a copy.
    pub duplicate_of: usize,
    /// Image tokens in the prompt (0 on error).
    pub image_tokens: usize,
    /// Seconds the caption took (0 for a copy or on error).
    pub seconds: f64,
}

/// Called once per image by `smolvlm_caption_files`, on its calling thread.
pub type smolvlm_batch_fn =
    Option<unsafe extern "C" fn(result: *const smolvlm_batch_result, user: *mut c_void)>;

/// Reads a C array of `n` paths.
///
/// # Safety
///
/// `paths` is readable for `n` pointers, each `NULL` or NUL-terminated.
unsafe fn path_args(paths: *const *const c_char, n: usize) -> Result<Vec<PathBuf>, smolvlm_error> {
    if paths.is_null() {
        return Err(smolvlm_error::invalid("paths is NULL"));
    }
    // SAFETY: readable for `n` pointers (the contract).
    let pointers = unsafe { std::slice::from_raw_parts(paths, n) };
    pointers
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            if p.is_null() {
                return Err(smolvlm_error::invalid(&format!("paths[{i}] is NULL")));
            }
            // SAFETY: not NULL, and NUL-terminated (the contract).
            let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
            path_from_bytes(bytes)
                .ok_or_else(|| smolvlm_error::invalid(&format!("paths[{i}] is not UTF-8")))
        })
        .collect()
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> Option<PathBuf> {
    std::str::from_utf8(bytes).ok().map(PathBuf::from)
}

/// Captions `n` image files with the library's batch engine: the next
/// images are read and resized on another thread while `sessions` sessions
/// (at least 1; each on the model's threads) caption, each image is asked
/// `prompt` (`NULL`: "Describe this image."), and an image whose pixels
/// equal an earlier one's is answered with a copy of its caption, not
/// encoded again. `on_result` is called once per image on this thread: in
/// the order of `paths` when `ordered`, else as each finishes. A bad image
/// is its result's error; the run goes on.
///
/// `options` (`NULL`: the defaults) gives the generation settings; its
/// timeout applies to each image, and its cancel flag stops the run: the
/// images in flight end with an error of kind `cancelled`, and the images
/// not yet started get no callback. Its progress callback is not called.
///
/// Returns the number of results passed to `on_result`, or -1 with `*err`
/// set when the run could not start (a `NULL` or non-UTF-8 path on
/// Windows, a session that cannot be opened, bad options).
///
/// # Safety
///
/// `m` is a live model; `paths` is readable for `n` pointers to
/// NUL-terminated strings; `prompt` is `NULL` or NUL-terminated; `options`
/// is `NULL` or a live options handle; `on_result`, if not `NULL`, may be
/// called with `user` on this thread before this call returns; `err` is
/// `NULL` or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn smolvlm_caption_files(
    m: *const smolvlm_model,
    paths: *const *const c_char,
    n: usize,
    prompt: *const c_char,
    options: *const smolvlm_options,
    sessions: usize,
    ordered: bool,
    on_result: smolvlm_batch_fn,
    user: *mut c_void,
    err: *mut *mut smolvlm_error,
) -> i64 {
    // SAFETY: as this function's contract.
    unsafe {
        guard(err, -1, || {
            let model = &handle(m, "model")?.model;
            let paths = path_args(paths, n)?;
            let prompt = text_or(prompt, "prompt", DEFAULT_PROMPT)?;
            let Options { generation, .. } = options_or_default(options);
            let order = if ordered {
                smolvlm::batch::Order::Input
            } else {
                smolvlm::batch::Order::Completion
            };
            let run = smolvlm::batch::Batch::new(model)
                .with_prompt(prompt)
                .with_generation(generation)
                .with_sessions(sessions)
                .with_order(order)
                .run(
                    paths
                        .into_iter()
                        .enumerate()
                        .map(|(i, path)| smolvlm::batch::Input::image(i, path)),
                )?;
            let mut reported: i64 = 0;
            for done in run {
                report(&done, on_result, user);
                reported += 1;
            }
            Ok(reported)
        })
    }
}

/// Passes one image's result to the caller's callback.
///
/// # Safety
///
/// `on_result`, if not `NULL`, may be called with `user`.
unsafe fn report(
    done: &smolvlm::batch::Done<usize>,
    on_result: smolvlm_batch_fn,
    user: *mut c_void,
) {
    let Some(on_result) = on_result else {
        return;
    };
    let answer = match &done.outcome {
        Err(e) => Err(e),
        Ok(answers) => match answers.first() {
            Some(answer) => answer.result.as_ref(),
            None => return,
        },
    };
    let (text, error) = match answer {
        Ok(caption) => (Some(c_string(&caption.text)), None),
        Err(e) => (
            None,
            Some(smolvlm_error::new(
                e.kind(),
                &e.to_string(),
                e.is_transient(),
            )),
        ),
    };
    let caption = answer.ok();
    let result = smolvlm_batch_result {
        index: done.index,
        text: text.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
        error: error.as_ref().map_or(std::ptr::null(), std::ptr::from_ref),
        duplicate_of: done.duplicate_of.unwrap_or(usize::MAX),
        image_tokens: caption.map_or(0, |c| c.image_tokens),
        seconds: caption.map_or(0.0, |c| c.timings.total.as_secs_f64()),
    };
    // SAFETY: the caller vouches for the callback and `user`; `result`,
    // the text and the error live until it returns.
    unsafe { on_result(&raw const result, user) };
}

/// Frees a string returned by this library. `NULL` is ignored.
///
/// # Safety
///
/// `s` is `NULL` or a string this library returned, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: made by `CString::into_raw` here and not freed before.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// The error's message, for people: valid until the error is freed.
/// `NULL` gives an empty string.
///
/// # Safety
///
/// `err` is `NULL` or a live error.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_error_message(err: *const smolvlm_error) -> *const c_char {
    // SAFETY: as this function's contract.
    unsafe { err.as_ref() }.map_or(c"".as_ptr(), |e| e.message.as_ptr())
}

/// The error's kind, for programs: a stable snake_case name, the same the
/// Rust library's `Error::kind` and the CLI's records use (`image_decode`,
/// `image_truncated`, `file_not_found`, `cancelled`, `deadline_exceeded`,
/// `prompt_too_long`, ...), plus `invalid_argument` (a `NULL` or non-UTF-8
/// argument) and `panic` (a bug in this library, reported instead of
/// crossing into C). Valid until the error is freed; `NULL` gives "".
///
/// # Safety
///
/// `err` is `NULL` or a live error.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_error_kind(err: *const smolvlm_error) -> *const c_char {
    // SAFETY: as this function's contract.
    unsafe { err.as_ref() }.map_or(c"".as_ptr(), |e| e.kind.as_ptr())
}

/// Whether the same call may succeed later unchanged: a deadline, a cancel,
/// a file that could not be read, out of memory. False for a bad input.
///
/// # Safety
///
/// `err` is `NULL` or a live error.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_error_is_transient(err: *const smolvlm_error) -> bool {
    // SAFETY: as this function's contract.
    unsafe { err.as_ref() }.is_some_and(|e| e.transient)
}

/// Frees an error. `NULL` is ignored.
///
/// # Safety
///
/// `err` is `NULL` or an error not yet freed.
#[no_mangle]
pub unsafe extern "C" fn smolvlm_error_free(err: *mut smolvlm_error) {
    // SAFETY: as this function's contract.
    unsafe { free(err) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn returned_and_streamed_text_agree_on_nul_bytes() {
        let text = "a\0b\0";
        let returned = c_string(text);
        let mut buffer = Vec::new();
        let len = c_piece(text, &mut buffer);
        assert_eq!(returned.as_bytes(), b"ab");
        assert_eq!((len, buffer.as_slice()), (2, b"ab\0".as_slice()));
        // A piece of NULs only is nothing to stream.
        assert_eq!(c_piece("\0", &mut buffer), 0);
    }

    #[test]
    fn a_panic_becomes_an_error_of_kind_panic_and_never_crosses_into_c() {
        let mut err: *mut smolvlm_error = std::ptr::null_mut();
        // SAFETY: `err` is a valid place for one pointer.
        let value = unsafe {
            guard(&raw mut err, -1, || -> Result<i32, smolvlm_error> {
                panic!("a bug in the library")
            })
        };
        assert_eq!(value, -1);
        assert!(!err.is_null());
        // SAFETY: a live error from `guard`, freed once below.
        let (kind, message) = unsafe {
            (
                CStr::from_ptr(smolvlm_error_kind(err))
                    .to_str()
                    .unwrap()
                    .to_owned(),
                CStr::from_ptr(smolvlm_error_message(err))
                    .to_str()
                    .unwrap()
                    .to_owned(),
            )
        };
        assert_eq!(kind, "panic");
        assert!(message.contains("a bug in the library"), "{message}");
        // SAFETY: as above.
        unsafe { smolvlm_error_free(err) };
        // A success stores NULL.
        // SAFETY: as above.
        let ok = unsafe { guard(&raw mut err, -1, || Ok(7)) };
        assert_eq!((ok, err.is_null()), (7, true));
    }
}
