//! One llama context: a KV cache over a model, decoded into batch by batch.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use crate::batch::Batch;
use crate::error::EngineError;
use crate::model::Model;

/// Whether attention uses flash attention (in a context, or in a vision
/// encoder). On the CPU, llama.cpp's `Auto` turns it on; it changes speed
/// and memory, not results beyond rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FlashAttention {
    /// llama.cpp decides per device (the default).
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off. A quantized KV cache needs it on.
    Off,
}

impl FlashAttention {
    pub(crate) fn raw(self) -> sys::llama_flash_attn_type {
        match self {
            Self::Auto => sys::LLAMA_FLASH_ATTN_TYPE_AUTO,
            Self::On => sys::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            Self::Off => sys::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }
    }
}

/// The element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (llama.cpp's default).
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit blocks of 32.
    Q8_0,
    /// 4-bit blocks of 32.
    Q4_0,
}

impl KvType {
    fn raw(self) -> sys::ggml_type {
        match self {
            Self::F32 => sys::GGML_TYPE_F32,
            Self::F16 => sys::GGML_TYPE_F16,
            Self::Bf16 => sys::GGML_TYPE_BF16,
            Self::Q8_0 => sys::GGML_TYPE_Q8_0,
            Self::Q4_0 => sys::GGML_TYPE_Q4_0,
        }
    }
}

/// How a context is made. Unset fields keep llama.cpp's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextParams {
    /// Tokens the KV cache holds (llama.cpp rounds it up to a multiple of 256).
    pub n_ctx: u32,
    /// Most tokens one decode call takes.
    pub n_batch: u32,
    /// Tokens computed in one pass (at most `n_batch`).
    pub n_ubatch: u32,
    /// Threads for single-token decodes.
    pub threads: u32,
    /// Threads for batches.
    pub threads_batch: u32,
    /// Flash attention.
    pub flash_attention: FlashAttention,
    /// The KV cache's type for both K and V; `None` keeps llama.cpp's (F16).
    pub kv_type: Option<KvType>,
}

impl Default for ContextParams {
    fn default() -> Self {
        Self {
            n_ctx: 4096,
            n_batch: 2048,
            n_ubatch: 512,
            threads: 4,
            threads_batch: 4,
            flash_attention: FlashAttention::Auto,
            kv_type: None,
        }
    }
}

impl ContextParams {
    fn check(&self) -> Result<(), EngineError> {
        let invalid = |name, message: &str| EngineError::Invalid {
            name,
            message: message.to_owned(),
        };
        if self.n_ctx == 0 || self.n_batch == 0 || self.n_ubatch == 0 {
            return Err(invalid(
                "context sizes",
                "n_ctx, n_batch and n_ubatch must be at least 1",
            ));
        }
        if i32::try_from(self.n_batch).is_err() || i32::try_from(self.n_ctx).is_err() {
            return Err(invalid("context sizes", "must fit in an i32"));
        }
        if self.threads == 0
            || self.threads_batch == 0
            || i32::try_from(self.threads.max(self.threads_batch)).is_err()
        {
            return Err(invalid("threads", "must be between 1 and i32::MAX"));
        }
        Ok(())
    }
}

/// A llama context: one KV cache over a [`Model`], which it keeps alive.
/// `Send`, not `Sync`: one thread uses it at a time, through `&mut`.
pub struct Context {
    raw: NonNull<sys::llama_context>,
    model: Model,
    /// Whether the last successful decode left logits for its last token.
    logits: bool,
}

// SAFETY: a llama context has no thread affinity (its thread pool is made
// per compute call, or is OpenMP's, per calling thread); every call that
// mutates it takes `&mut self`, so one thread at a time uses it. It points
// into its model, which `model` keeps alive for as long as the context.
unsafe impl Send for Context {}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("n_ctx", &self.n_ctx())
            .field("n_batch", &self.n_batch())
            .field("n_ubatch", &self.n_ubatch())
            .finish_non_exhaustive()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: made by `llama_init_from_model`, freed once, here; its
        // model is still alive (`self.model` drops after this).
        unsafe { sys::llama_free(self.raw.as_ptr()) };
    }
}

/// Asks the caller's stop check; never unwinds into C (a panic stops).
///
/// # Safety
///
/// `data` points at a `&(dyn Fn() -> bool + Sync)` that outlives the native
/// call during which llama.cpp calls this (on one of its compute threads).
unsafe extern "C" fn should_abort(data: *mut c_void) -> bool {
    // SAFETY: the caller's contract; the closure is `Sync`, so calling it
    // from a compute thread through a shared reference is allowed.
    let stop = unsafe { &*data.cast::<&(dyn Fn() -> bool + Sync)>() };
    catch_unwind(AssertUnwindSafe(stop)).unwrap_or(true)
}

impl Context {
    /// Creates a context over `model`.
    ///
    /// # Errors
    ///
    /// [`EngineError::Invalid`] for sizes llama.cpp would refuse or abort
    /// on; [`EngineError::Context`] when llama.cpp cannot make it (memory).
    pub fn new(model: &Model, params: &ContextParams) -> Result<Self, EngineError> {
        params.check()?;
        // SAFETY: returns a struct by value; no preconditions.
        let mut raw_params = unsafe { sys::llama_context_default_params() };
        raw_params.n_ctx = params.n_ctx;
        raw_params.n_batch = params.n_batch;
        raw_params.n_ubatch = params.n_ubatch.min(params.n_batch);
        raw_params.n_threads = i32::try_from(params.threads).unwrap_or(1);
        raw_params.n_threads_batch = i32::try_from(params.threads_batch).unwrap_or(1);
        raw_params.flash_attn_type = params.flash_attention.raw();
        raw_params.no_perf = false;
        if let Some(kind) = params.kv_type {
            raw_params.type_k = kind.raw();
            raw_params.type_v = kind.raw();
        }
        let raw = {
            let _one_at_a_time = model.creating();
            // SAFETY: a live model (the clone kept below keeps it so);
            // parameters checked above. llama.cpp returns null on failure.
            unsafe { sys::llama_init_from_model(model.raw(), raw_params) }
        };
        let raw = NonNull::new(raw).ok_or(EngineError::Context)?;
        Ok(Self {
            raw,
            model: model.clone(),
            logits: false,
        })
    }

    pub(crate) fn raw(&mut self) -> *mut sys::llama_context {
        self.raw.as_ptr()
    }

    /// The model this context runs.
    #[must_use]
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Tokens the KV cache holds.
    #[must_use]
    pub fn n_ctx(&self) -> u32 {
        // SAFETY: a live context; a plain query.
        unsafe { sys::llama_n_ctx(self.raw.as_ptr()) }
    }

    /// Most tokens one decode call takes.
    #[must_use]
    pub fn n_batch(&self) -> u32 {
        // SAFETY: a live context; a plain query.
        unsafe { sys::llama_n_batch(self.raw.as_ptr()) }
    }

    /// Tokens computed in one pass.
    #[must_use]
    pub fn n_ubatch(&self) -> u32 {
        // SAFETY: a live context; a plain query.
        unsafe { sys::llama_n_ubatch(self.raw.as_ptr()) }
    }

    /// Whether the last decode left logits to sample from (its last token
    /// asked for them, and nothing was decoded or removed since).
    #[must_use]
    pub fn has_logits(&self) -> bool {
        self.logits
    }

    /// Decodes `batch` into the KV cache. `stop` is asked between compute
    /// steps (CPU backends); when it returns `true` the decode stops with
    /// [`EngineError::Interrupted`]. The batches computed before the stop
    /// stay in the KV cache: remove them with [`remove_from`](Self::remove_from).
    ///
    /// # Errors
    ///
    /// [`EngineError::Invalid`] for an empty batch or one over `n_batch`;
    /// [`EngineError::NoKvSlot`] when the cache is full;
    /// [`EngineError::Interrupted`]; [`EngineError::Decode`] otherwise.
    pub fn decode(
        &mut self,
        batch: &Batch,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<(), EngineError> {
        if batch.is_empty() || batch.len() > self.n_batch() as usize {
            return Err(EngineError::Invalid {
                name: "batch",
                message: format!(
                    "holds {} tokens; a decode takes 1 to {}",
                    batch.len(),
                    self.n_batch()
                ),
            });
        }
        self.logits = false;
        // SAFETY: a live context and a batch whose arrays hold `n_tokens`
        // valid entries; llama.cpp validates token ids and positions and
        // returns an error code for bad ones.
        let code = self.with_stop(stop, |ctx| unsafe { sys::llama_decode(ctx, batch.raw()) });
        decode_result(code)?;
        self.logits = batch.last_has_logits();
        Ok(())
    }

    /// Runs `call` with `stop` installed as llama.cpp's abort callback, and
    /// removes it after.
    pub(crate) fn with_stop<R>(
        &mut self,
        stop: &(dyn Fn() -> bool + Sync),
        call: impl FnOnce(*mut sys::llama_context) -> R,
    ) -> R {
        /// Removes the callback even if `call` unwinds.
        struct Reset(*mut sys::llama_context);
        impl Drop for Reset {
            fn drop(&mut self) {
                // SAFETY: a live context; null removes the callback.
                unsafe { sys::llama_set_abort_callback(self.0, None, std::ptr::null_mut()) };
            }
        }
        let ctx = self.raw();
        let mut stop = stop;
        // SAFETY: `stop` (a reference on this stack frame) outlives `call`,
        // and `Reset` removes the pointer before the frame ends, so llama.cpp
        // never calls `should_abort` with a dangling pointer.
        unsafe {
            sys::llama_set_abort_callback(ctx, Some(should_abort), (&raw mut stop).cast());
        }
        let _reset = Reset(ctx);
        call(ctx)
    }

    /// Marks the logits as gone (an image decode leaves none to sample).
    pub(crate) fn forget_logits(&mut self) {
        self.logits = false;
    }

    /// Removes every position from `pos` on from the KV cache; returns
    /// whether llama.cpp could (a partial removal can fail for some caches,
    /// never for a plain transformer's).
    pub fn remove_from(&mut self, pos: u32) -> bool {
        self.logits = false;
        let Ok(pos) = i32::try_from(pos) else {
            return true;
        };
        // SAFETY: a live context; its memory lives as long as it. Removing a
        // range of sequence 0 (p1 = -1: to the end) is always allowed.
        unsafe {
            let memory = sys::llama_get_memory(self.raw.as_ptr());
            sys::llama_memory_seq_rm(memory, 0, pos, -1)
        }
    }

    /// Empties the KV cache.
    pub fn clear(&mut self) {
        self.logits = false;
        // SAFETY: a live context; clearing (data too) is always allowed.
        unsafe {
            let memory = sys::llama_get_memory(self.raw.as_ptr());
            sys::llama_memory_clear(memory, true);
        }
    }

    /// The logits of the last decoded token, one per vocabulary entry.
    pub(crate) fn last_logits(&mut self) -> Result<&[f32], EngineError> {
        if !self.logits {
            return Err(EngineError::Sample("the last decode left no logits"));
        }
        let n_vocab = usize::try_from(self.model.vocab().n_tokens()).unwrap_or(0);
        // SAFETY: a live context whose last decode asked logits for its last
        // token (tracked in `self.logits`), so index -1 is valid.
        let row = unsafe { sys::llama_get_logits_ith(self.raw(), -1) };
        if row.is_null() {
            return Err(EngineError::Sample("llama.cpp returned no logits"));
        }
        // SAFETY: llama.cpp's logits row holds `n_vocab` floats and stays
        // valid until the next decode, which needs `&mut self` (borrowed by
        // the returned slice).
        Ok(unsafe { std::slice::from_raw_parts(row, n_vocab) })
    }
}

/// `llama_decode`'s return code as a result (llama.h documents 0, 1, 2, -1).
pub(crate) fn decode_result(code: i32) -> Result<(), EngineError> {
    match code {
        0 => Ok(()),
        1 => Err(EngineError::NoKvSlot),
        2 => Err(EngineError::Interrupted),
        code => Err(EngineError::Decode(code)),
    }
}
