//! A loaded text model: weights, vocabulary and metadata.

use std::ffi::{c_void, CStr, CString};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use llama_cpp_sys_2 as sys;

use crate::callback::Observer;
use crate::error::EngineError;
use crate::vocab::Vocab;

/// How a text model is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelParams {
    /// Layers to offload to the GPU; `None` offloads all of them. Ignored by
    /// a build without a GPU backend or on a machine without a GPU.
    pub gpu_layers: Option<u32>,
    /// Map the file instead of reading it.
    pub mmap: bool,
    /// Lock the weights in memory.
    pub mlock: bool,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            gpu_layers: None,
            mmap: true,
            mlock: false,
        }
    }
}

/// A loaded text model. Cheap to clone (an `Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct Model {
    inner: Arc<Inner>,
}

struct Inner {
    raw: NonNull<sys::llama_model>,
    /// llama.cpp's context constructors (and mtmd's, which reads the text
    /// model) are not documented as safe to run at once on one model:
    /// contexts and vision encoders are created one at a time.
    create: Mutex<()>,
}

// SAFETY: a loaded `llama_model` is immutable except while a context or an
// mtmd context is created from it, which `create` serialises; llama.cpp's
// own server decodes on many contexts of one model at once. The pointer is
// freed once, by `Drop`, when the last clone (and so every context and
// vision encoder holding one) is gone.
unsafe impl Send for Inner {}
// SAFETY: as for `Send`: shared use only reads the model.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `llama_model_load_from_file`, and
        // this is the last owner: nothing uses it after.
        unsafe { sys::llama_model_free(self.raw.as_ptr()) };
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("description", &self.description())
            .finish_non_exhaustive()
    }
}

/// Tells the load's observer; never unwinds into C.
///
/// # Safety
///
/// `data` is the `Observer<f32>` its caller set up for the current native
/// call, on the thread making it, and nothing else accesses it meanwhile.
pub(crate) unsafe extern "C" fn on_progress(progress: f32, data: *mut c_void) -> bool {
    // SAFETY: the caller's contract.
    let observer = unsafe { &mut *data.cast::<Observer<'_, f32>>() };
    observer.ask(progress)
}

/// Runs a native load that reports progress through `on_progress` with the
/// user data this passes to `load`; resumes a panic of the callback once the
/// load has returned. Returns the load's result and whether it was stopped.
pub(crate) fn with_progress<R>(
    progress: &mut dyn FnMut(f32) -> bool,
    load: impl FnOnce(*mut c_void) -> R,
) -> (R, bool) {
    let mut observer = Observer::new(progress);
    let result = load((&raw mut observer).cast());
    (result, observer.finish())
}

/// A path as llama.cpp takes it: UTF-8, NUL-terminated.
pub(crate) fn c_path(path: &Path) -> Result<CString, EngineError> {
    path.to_str()
        .and_then(|p| CString::new(p).ok())
        .ok_or_else(|| EngineError::Path(path.to_path_buf()))
}

impl Model {
    /// Loads a GGUF text model. `progress` is called with the fraction
    /// loaded (0 to 1); returning `false` stops the load. A panic in it
    /// stops the load too, and is resumed here once llama.cpp has returned.
    ///
    /// # Errors
    ///
    /// [`EngineError::Path`], [`EngineError::LoadStopped`], or
    /// [`EngineError::ModelLoad`] when llama.cpp refuses the file.
    pub fn load(
        path: &Path,
        params: &ModelParams,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Self, EngineError> {
        crate::backend::init();
        let c_path = c_path(path)?;
        // SAFETY: returns a struct by value; no preconditions.
        let mut raw_params = unsafe { sys::llama_model_default_params() };
        raw_params.n_gpu_layers = params
            .gpu_layers
            .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
        raw_params.load_mode = match (params.mmap, params.mlock) {
            (false, false) => sys::LLAMA_LOAD_MODE_NONE,
            (true, false) => sys::LLAMA_LOAD_MODE_MMAP,
            (false, true) => sys::LLAMA_LOAD_MODE_MLOCK,
            (true, true) => sys::LLAMA_LOAD_MODE_MMAP_MLOCK,
        };
        raw_params.progress_callback = Some(on_progress);
        let (raw, stopped) = with_progress(progress, |data| {
            raw_params.progress_callback_user_data = data;
            // SAFETY: a NUL-terminated path; the progress user data is the
            // frame `with_progress` keeps alive for this call, which
            // `on_progress` expects. llama.cpp catches its own exceptions
            // here and returns null.
            unsafe { sys::llama_model_load_from_file(c_path.as_ptr(), raw_params) }
        });
        match NonNull::new(raw) {
            Some(raw) => Ok(Self {
                inner: Arc::new(Inner {
                    raw,
                    create: Mutex::new(()),
                }),
            }),
            None if stopped => Err(EngineError::LoadStopped),
            None => Err(EngineError::ModelLoad),
        }
    }

    pub(crate) fn raw(&self) -> *mut sys::llama_model {
        self.inner.raw.as_ptr()
    }

    /// Held while a context or vision encoder is created from this model.
    pub(crate) fn creating(&self) -> MutexGuard<'_, ()> {
        // A panic while it was held left nothing half-done on our side.
        self.inner
            .create
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `other` is this model (or a clone of it).
    #[must_use]
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The vocabulary.
    #[must_use]
    pub fn vocab(&self) -> Vocab<'_> {
        // SAFETY: a loaded model always has a vocabulary, owned by the model.
        let raw = unsafe { sys::llama_model_get_vocab(self.raw()) };
        match NonNull::new(raw.cast_mut()) {
            // SAFETY: the vocabulary lives as long as the model, which the
            // returned borrow keeps.
            Some(raw) => unsafe { Vocab::from_raw(raw) },
            None => unreachable_vocab(),
        }
    }

    /// Parameters in the model.
    #[must_use]
    pub fn n_params(&self) -> u64 {
        // SAFETY: a live model; a plain query.
        unsafe { sys::llama_model_n_params(self.raw()) }
    }

    /// The context length the model was trained with.
    #[must_use]
    pub fn n_ctx_train(&self) -> u32 {
        // SAFETY: a live model; a plain query.
        u32::try_from(unsafe { sys::llama_model_n_ctx_train(self.raw()) }).unwrap_or(0)
    }

    /// The embedding size.
    #[must_use]
    pub fn n_embd(&self) -> u32 {
        // SAFETY: a live model; a plain query.
        u32::try_from(unsafe { sys::llama_model_n_embd(self.raw()) }).unwrap_or(0)
    }

    /// The input embedding size (what a projector must produce).
    #[must_use]
    pub fn n_embd_inp(&self) -> u32 {
        // SAFETY: a live model; a plain query.
        u32::try_from(unsafe { sys::llama_model_n_embd_inp(self.raw()) }).unwrap_or(0)
    }

    /// Attention heads.
    #[must_use]
    pub fn n_head(&self) -> u32 {
        // SAFETY: a live model; a plain query.
        u32::try_from(unsafe { sys::llama_model_n_head(self.raw()) }).unwrap_or(0)
    }

    /// Key-value heads (fewer than `n_head` with grouped-query attention).
    #[must_use]
    pub fn n_head_kv(&self) -> u32 {
        // SAFETY: a live model; a plain query.
        u32::try_from(unsafe { sys::llama_model_n_head_kv(self.raw()) }).unwrap_or(0)
    }

    /// Layers.
    #[must_use]
    pub fn n_layer(&self) -> u32 {
        // SAFETY: a live model; a plain query.
        u32::try_from(unsafe { sys::llama_model_n_layer(self.raw()) }).unwrap_or(0)
    }

    /// llama.cpp's one-line description (`llama 135M Q8_0`).
    #[must_use]
    pub fn description(&self) -> String {
        let mut buf = [0u8; 256];
        // SAFETY: a live model; llama.cpp writes at most `buf.len()` bytes,
        // NUL included (snprintf).
        let n = unsafe { sys::llama_model_desc(self.raw(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return String::new();
        }
        CStr::from_bytes_until_nul(&buf)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The model's default chat template, if its GGUF carries one.
    #[must_use]
    pub fn chat_template(&self) -> Option<String> {
        // SAFETY: a live model; null asks for the default template. The
        // string is owned by the model and copied at once.
        let raw = unsafe { sys::llama_model_chat_template(self.raw(), std::ptr::null()) };
        if raw.is_null() {
            return None;
        }
        // SAFETY: non-null, NUL-terminated, owned by the live model.
        let text = unsafe { CStr::from_ptr(raw) };
        text.to_str().ok().map(str::to_owned)
    }
}

#[cold]
fn unreachable_vocab() -> ! {
    // llama.cpp's model always embeds its vocabulary (llama-model.cpp).
    unreachable!("llama.cpp returned no vocabulary for a loaded model")
}
