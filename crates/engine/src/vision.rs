//! mtmd: the vision encoder, its bitmaps, and the chunks a prompt with
//! images tokenizes into.

use std::cell::Cell;
use std::ffi::{c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::path::Path;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use llama_cpp_sys_2 as sys;

use crate::callback::Observer;
use crate::context::{decode_result, Context, FlashAttention};
use crate::error::EngineError;
use crate::model::{c_path, with_progress, Model};
use crate::vocab::Token;

// stb_image.h (llama.cpp's vendor/stb), compiled into libmtmd by
// mtmd-helper.cpp with its symbols exported: the still-image decoder that
// `mtmd_helper_bitmap_init_from_buf` (and so llama-mtmd-cli) uses. Called
// directly because that helper, given bytes stb cannot decode, falls
// through to its video path, which starts ffprobe and ffmpeg processes: a
// library must not spawn processes on a corrupt image.
extern "C" {
    fn stbi_load_from_memory(
        buffer: *const u8,
        len: c_int,
        x: *mut c_int,
        y: *mut c_int,
        channels_in_file: *mut c_int,
        desired_channels: c_int,
    ) -> *mut u8;
    fn stbi_image_free(retval_from_stbi_load: *mut c_void);
}

/// The marker mtmd replaces with an image's chunks (`<__media__>`).
#[must_use]
pub fn default_marker() -> &'static str {
    // SAFETY: mtmd returns a pointer to a static NUL-terminated string.
    let marker = unsafe { CStr::from_ptr(sys::mtmd_default_marker()) };
    marker.to_str().unwrap_or("<__media__>")
}

/// How a vision encoder is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisionParams {
    /// Run the encoder on the GPU, where the build and machine have one.
    pub use_gpu: bool,
    /// CPU threads of the encoder.
    pub threads: u32,
    /// Flash attention in the encoder.
    pub flash_attention: FlashAttention,
    /// Run one encode at load, as mtmd does by default, so the first image
    /// does not pay for first-use costs (buffer allocation).
    pub warmup: bool,
    /// The most image tokens one image may cost (mtmd sizes images to
    /// fit); `None` keeps the projector's own.
    pub image_max_tokens: Option<u32>,
}

impl Default for VisionParams {
    fn default() -> Self {
        Self {
            use_gpu: true,
            threads: 4,
            flash_attention: FlashAttention::Auto,
            warmup: true,
            image_max_tokens: None,
        }
    }
}

/// A vision encoder (an mtmd context) for a [`Model`], which it keeps
/// alive. `Send`, not `Sync`: one thread encodes at a time, through `&mut`.
pub struct Vision {
    raw: NonNull<sys::mtmd_context>,
    /// Where mtmd's eval callback finds the current encode's observer. Boxed
    /// so its address, given to mtmd at init, never moves.
    hook: Box<EncodeHook>,
    model: Model,
    layers: u32,
}

// SAFETY: an mtmd context has no thread affinity; every call that mutates
// it (encode, decode) takes `&mut self`, and the ones that take `&self`
// (tokenize, queries) are documented thread-safe in mtmd.h. The hook's
// `Cell` is touched only by the thread holding `&mut self`. The context
// points into the text model, which `model` keeps alive.
unsafe impl Send for Vision {}

impl std::fmt::Debug for Vision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vision")
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

impl Drop for Vision {
    fn drop(&mut self) {
        // SAFETY: made by `mtmd_init_from_file`, freed once, here, before
        // the hook it points to (a field dropped after this) and before the
        // text model (kept alive by `self.model` until after).
        unsafe { sys::mtmd_free(self.raw.as_ptr()) };
    }
}

/// The observer of the encode in progress, if any.
struct EncodeHook {
    frame: Cell<*mut c_void>,
}

/// The encoder layer a graph node ends, from clip's node names
/// (`layer_out-N`, clip.cpp's `build_vit`).
fn layer_of(tensor: *const sys::ggml_tensor) -> Option<u32> {
    // SAFETY: ggml hands the callback a live tensor; its name is a
    // NUL-terminated array inside it.
    let name = unsafe { CStr::from_ptr((*tensor).name.as_ptr()) };
    name.to_str().ok()?.strip_prefix("layer_out-")?.parse().ok()
}

/// mtmd's eval callback (ggml's scheduler calls it on the thread running
/// the encode): asks to stop after each encoder layer, and tells the
/// current encode's observer. Never unwinds into C.
///
/// # Safety
///
/// `data` is the `EncodeHook` of a live `Vision`; its frame, when set,
/// points at an `Observer<u32>` on the stack of the encode in progress.
unsafe extern "C" fn on_eval(tensor: *mut sys::ggml_tensor, ask: bool, data: *mut c_void) -> bool {
    // SAFETY: the caller's contract.
    let hook = unsafe { &*data.cast::<EncodeHook>() };
    let frame = hook.frame.get();
    if frame.is_null() || tensor.is_null() {
        // No encode observed (mtmd's warm-up at init): no node is needed,
        // so the graph runs in one piece, as without a callback.
        return !ask;
    }
    let Some(layer) = layer_of(tensor) else {
        return !ask;
    };
    if ask {
        return true;
    }
    // SAFETY: set by `Vision::encode_observed` for the duration of the
    // encode, on this thread; nothing else touches it meanwhile.
    let observer = unsafe { &mut *frame.cast::<Observer<'_, u32>>() };
    observer.ask(layer + 1)
}

/// What evaluating one image chunk cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageEval {
    /// The next position after the chunk.
    pub n_past: i32,
    /// Time in the vision encoder.
    pub encode: Duration,
    /// Time decoding its embeddings in the text model.
    pub decode: Duration,
}

impl Vision {
    /// Loads the projector `mmproj` for `model`. `progress` is called as its
    /// weights load (0 to 1); returning `false` stops the load, and a panic
    /// in it stops the load and is resumed here after.
    ///
    /// # Errors
    ///
    /// [`EngineError::Path`], [`EngineError::Invalid`] (threads),
    /// [`EngineError::LoadStopped`], or [`EngineError::VisionLoad`] when
    /// mtmd refuses the file (not a projector, or not this model's).
    pub fn load(
        model: &Model,
        mmproj: &Path,
        params: &VisionParams,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Self, EngineError> {
        crate::backend::init();
        let path = c_path(mmproj)?;
        let threads = i32::try_from(params.threads)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| EngineError::Invalid {
                name: "vision threads",
                message: format!("{} is not between 1 and {}", params.threads, i32::MAX),
            })?;
        let hook = Box::new(EncodeHook {
            frame: Cell::new(std::ptr::null_mut()),
        });
        // SAFETY: returns a struct by value; no preconditions.
        let mut raw_params = unsafe { sys::mtmd_context_params_default() };
        raw_params.use_gpu = params.use_gpu;
        raw_params.print_timings = false;
        raw_params.n_threads = threads;
        raw_params.flash_attn_type = params.flash_attention.raw();
        raw_params.warmup = params.warmup;
        raw_params.image_min_tokens = -1;
        raw_params.image_max_tokens = params
            .image_max_tokens
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(-1);
        raw_params.cb_eval = Some(on_eval);
        raw_params.cb_eval_user_data = (&raw const *hook).cast_mut().cast();
        raw_params.progress_callback = Some(crate::model::on_progress);
        let (raw, stopped) = with_progress(progress, |data| {
            raw_params.progress_callback_user_data = data;
            let _one_at_a_time = model.creating();
            // SAFETY: a NUL-terminated path and a live text model (kept
            // alive by the clone stored below). The eval user data is the
            // boxed hook, which lives as long as the context; the progress
            // user data is the frame `with_progress` keeps alive for this
            // call. mtmd catches its exceptions and returns null.
            unsafe { sys::mtmd_init_from_file(path.as_ptr(), model.raw(), raw_params) }
        });
        let raw = match NonNull::new(raw) {
            Some(raw) => raw,
            None if stopped => return Err(EngineError::LoadStopped),
            None => return Err(EngineError::VisionLoad),
        };
        let vision = Self {
            raw,
            hook,
            model: model.clone(),
            layers: 0,
        };
        // SAFETY: a live context; a plain query.
        if !unsafe { sys::mtmd_support_vision(vision.raw.as_ptr()) } {
            return Err(EngineError::VisionLoad);
        }
        Ok(vision)
    }

    /// The model this encoder projects into.
    #[must_use]
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Tokenizes `text`, in which each [`default_marker`] stands for the
    /// next of `bitmaps`, into chunks: text tokens, and each image as mtmd
    /// lays it out (for SmolVLM's idefics3, one chunk per tile and one for
    /// the overview, each after its wrapper text). `parse_special` turns
    /// control tokens' text into those tokens.
    ///
    /// # Errors
    ///
    /// [`EngineError::Nul`]; [`EngineError::Tokenize`] when the markers and
    /// bitmaps do not match or mtmd cannot preprocess an image.
    pub fn tokenize(
        &self,
        text: &str,
        bitmaps: &[&Bitmap],
        parse_special: bool,
    ) -> Result<Chunks, EngineError> {
        let c_text = CString::new(text).map_err(|_| EngineError::Nul)?;
        let input = sys::mtmd_input_text {
            text: c_text.as_ptr(),
            text_len: text.len(),
            add_special: false,
            parse_special,
        };
        let raw_bitmaps: Vec<*const sys::mtmd_bitmap> = bitmaps
            .iter()
            .map(|b| b.raw.as_ptr().cast_const())
            .collect();
        // SAFETY: no preconditions; null only when out of memory.
        let chunks = NonNull::new(unsafe { sys::mtmd_input_chunks_init() })
            .ok_or(EngineError::Tokenize("mtmd could not allocate chunks"))?;
        let chunks = Chunks { raw: chunks };
        // SAFETY: a live context; `input` points at `c_text`, valid for
        // `text_len` bytes; `raw_bitmaps` holds `len` live bitmaps, borrowed
        // for the call; `chunks` is a live, empty list mtmd fills. mtmd
        // catches its exceptions (returning 2).
        let code = unsafe {
            sys::mtmd_tokenize(
                self.raw.as_ptr(),
                chunks.raw.as_ptr(),
                &raw const input,
                raw_bitmaps.as_ptr(),
                raw_bitmaps.len(),
            )
        };
        match code {
            0 => Ok(chunks),
            1 => Err(EngineError::Tokenize(
                "the number of markers differs from the number of images",
            )),
            _ => Err(EngineError::Tokenize("mtmd could not preprocess an image")),
        }
    }

    /// Encodes one image chunk and decodes its embeddings into `ctx` from
    /// position `n_past`, in passes of at most `n_batch` tokens.
    ///
    /// `on_layer`, if given, is told each encoder layer as it finishes (1,
    /// 2, …); returning `false` stops the encode there. Observing computes
    /// the encoder's graph one layer at a time; without an observer it runs
    /// in one piece, as in llama.cpp's tools. `stop` is asked between the
    /// decode's compute steps. A stopped chunk returns
    /// [`EngineError::Interrupted`] and its unfinished embeddings are never
    /// decoded; decode passes already done stay in the KV cache (remove
    /// them with [`Context::remove_from`]).
    ///
    /// # Errors
    ///
    /// [`EngineError::ModelMismatch`] for a context of another model;
    /// [`EngineError::Invalid`] for a text chunk, a batch size of 0, or a
    /// chunk that must be decoded in one pass but is larger than one;
    /// [`EngineError::Interrupted`]; [`EngineError::Encode`] and the decode
    /// errors of [`Context::decode`].
    pub fn eval_chunk(
        &mut self,
        ctx: &mut Context,
        chunk: &Chunk<'_>,
        n_past: i32,
        n_batch: u32,
        on_layer: Option<&mut dyn FnMut(u32) -> bool>,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<ImageEval, EngineError> {
        if !self.model.same_as(ctx.model()) {
            return Err(EngineError::ModelMismatch);
        }
        let n_batch = i32::try_from(n_batch)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| EngineError::Invalid {
                name: "n_batch",
                message: format!("{n_batch} is not between 1 and {}", i32::MAX),
            })?;
        if n_past < 0 {
            return Err(EngineError::Invalid {
                name: "n_past",
                message: format!("{n_past} is negative"),
            });
        }
        // A non-causal projector's image must be decoded in one pass; llama.cpp
        // asserts (aborts) otherwise. SmolVLM's idefics3 is causal.
        let one_pass = u32::try_from(n_batch).unwrap_or(0).min(ctx.n_ubatch());
        if self.needs_one_pass(chunk) && chunk.n_tokens() > one_pass as usize {
            return Err(EngineError::Invalid {
                name: "n_batch",
                message: format!(
                    "this projector decodes an image chunk of {} tokens in one pass, larger than {one_pass}",
                    chunk.n_tokens()
                ),
            });
        }
        let started = Instant::now();
        self.encode_observed(chunk, on_layer)?;
        let encode = started.elapsed();
        let started = Instant::now();
        // SAFETY: a live context; the encode above succeeded in full, so
        // mtmd's output buffer holds this chunk's embeddings.
        let embd = unsafe { sys::mtmd_get_output_embd(self.raw.as_ptr()) };
        if embd.is_null() {
            return Err(EngineError::Encode(-1));
        }
        let mut next = n_past;
        let vision = self.raw.as_ptr();
        let code = ctx.with_stop(stop, |lctx| {
            // SAFETY: both contexts are live and of the same model (checked
            // above, so the embeddings' width is the model's input width);
            // the chunk is an image chunk of this encoder (checked by
            // `encode_observed`), whose embeddings `embd` holds; `n_batch`
            // is positive. No post-decode callback.
            unsafe {
                sys::mtmd_helper_decode_image_chunk(
                    vision,
                    lctx,
                    chunk.raw.as_ptr(),
                    embd,
                    n_past,
                    0,
                    n_batch,
                    &raw mut next,
                    None,
                    std::ptr::null_mut(),
                )
            }
        });
        ctx.forget_logits();
        decode_result(code)?;
        Ok(ImageEval {
            n_past: next,
            encode,
            decode: started.elapsed(),
        })
    }

    /// Encodes one image chunk and returns the time it took, without
    /// decoding it: what one tile costs in the encoder.
    ///
    /// # Errors
    ///
    /// As the encode half of [`eval_chunk`](Self::eval_chunk).
    pub fn encode(
        &mut self,
        chunk: &Chunk<'_>,
        on_layer: Option<&mut dyn FnMut(u32) -> bool>,
    ) -> Result<Duration, EngineError> {
        let started = Instant::now();
        self.encode_observed(chunk, on_layer)?;
        Ok(started.elapsed())
    }

    /// Encoder layers, as counted by the last observed encode (0 before one).
    #[must_use]
    pub fn layers_seen(&self) -> u32 {
        self.layers
    }

    /// Whether this projector's image chunk must be decoded in one pass (a
    /// non-causal projector; SmolVLM's idefics3 is causal): then its tokens
    /// must fit one `n_ubatch`, which [`eval_chunk`](Self::eval_chunk)
    /// checks.
    #[must_use]
    pub fn needs_one_pass(&self, chunk: &Chunk<'_>) -> bool {
        // SAFETY: a live context and a live chunk; a plain query.
        unsafe { sys::mtmd_decode_use_non_causal(self.raw.as_ptr(), chunk.raw.as_ptr()) }
    }

    /// Runs mtmd's encode of an image chunk with `on_layer`, if any, as the
    /// observer.
    fn encode_observed(
        &mut self,
        chunk: &Chunk<'_>,
        on_layer: Option<&mut dyn FnMut(u32) -> bool>,
    ) -> Result<(), EngineError> {
        if chunk.kind() != ChunkKind::Image {
            return Err(EngineError::Invalid {
                name: "chunk",
                message: "only an image chunk can be encoded".to_owned(),
            });
        }
        let Some(on_layer) = on_layer else {
            // SAFETY: a live context and an image chunk (checked above); no
            // observer is hooked, so `on_eval` asks for no node. mtmd
            // catches its exceptions (returning 1).
            let code = unsafe { sys::mtmd_encode_chunk(self.raw.as_ptr(), chunk.raw.as_ptr()) };
            return if code == 0 {
                Ok(())
            } else {
                Err(EngineError::Encode(code))
            };
        };
        let mut last = 0;
        let mut counting = |layer: u32| {
            last = layer;
            on_layer(layer)
        };
        let mut observer = Observer::new(&mut counting);
        /// Unhooks the frame even if something unwinds.
        struct Unhook<'h>(&'h EncodeHook);
        impl Drop for Unhook<'_> {
            fn drop(&mut self) {
                self.0.frame.set(std::ptr::null_mut());
            }
        }
        let code = {
            self.hook.frame.set((&raw mut observer).cast());
            let _unhook = Unhook(&self.hook);
            // SAFETY: a live context and an image chunk (checked above).
            // The hook points at `observer`, alive until `_unhook` clears it
            // after this call; mtmd calls `on_eval` only during this call,
            // on this thread. mtmd catches its exceptions (returning 1).
            unsafe { sys::mtmd_encode_chunk(self.raw.as_ptr(), chunk.raw.as_ptr()) }
        };
        let stopped = observer.finish();
        // A stopped compute still returns success with unfinished output
        // (DESIGN.md): the flag decides, and nothing reads that output.
        if stopped {
            return Err(EngineError::Interrupted);
        }
        if code != 0 {
            return Err(EngineError::Encode(code));
        }
        if last > 0 {
            self.layers = last;
        }
        Ok(())
    }
}

/// An RGB image as mtmd takes it (mtmd keeps its own copy of the pixels).
pub struct Bitmap {
    raw: NonNull<sys::mtmd_bitmap>,
}

// SAFETY: a bitmap is owned, has no thread affinity and is never mutated
// after creation (no setter is exposed); mtmd reads it through const
// pointers, so sharing it between threads is sound.
unsafe impl Send for Bitmap {}
// SAFETY: as for `Send`.
unsafe impl Sync for Bitmap {}

impl std::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitmap")
            .field("width", &self.width())
            .field("height", &self.height())
            .finish()
    }
}

impl Drop for Bitmap {
    fn drop(&mut self) {
        // SAFETY: made by mtmd, freed once, here.
        unsafe { sys::mtmd_bitmap_free(self.raw.as_ptr()) };
    }
}

impl Bitmap {
    /// A bitmap of `width` × `height` RGB pixels, row by row.
    ///
    /// # Errors
    ///
    /// [`EngineError::Bitmap`] when `rgb` is not `width × height × 3` bytes
    /// or the image is empty.
    pub fn from_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Self, EngineError> {
        let expected = (width as usize)
            .checked_mul(height as usize)
            .and_then(|n| n.checked_mul(3));
        if width == 0 || height == 0 || expected != Some(rgb.len()) {
            return Err(EngineError::Bitmap {
                width,
                height,
                len: rgb.len(),
            });
        }
        // SAFETY: `rgb` holds exactly width × height × 3 bytes (checked),
        // which mtmd copies.
        let raw = unsafe { sys::mtmd_bitmap_init(width, height, rgb.as_ptr()) };
        NonNull::new(raw)
            .map(|raw| Self { raw })
            .ok_or(EngineError::Bitmap {
                width,
                height,
                len: rgb.len(),
            })
    }

    /// Decodes an encoded image with mtmd's own loader, stb_image (JPEG,
    /// PNG, BMP, GIF, PSD, TGA, HDR, PNM: what llama-mtmd-cli reads), to RGB;
    /// `None` when it cannot. Unlike mtmd's helper, it never falls back to
    /// decoding the bytes as audio or video (which would start ffmpeg).
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let len = c_int::try_from(bytes.len()).ok().filter(|&n| n > 0)?;
        let (mut width, mut height, mut channels) = (0, 0, 0);
        // SAFETY: `bytes` is readable for `len` bytes; stb writes the three
        // sizes and returns null or a malloc'ed RGB buffer (3 channels
        // asked for) of width × height × 3 bytes, freed below.
        let pixels = unsafe {
            stbi_load_from_memory(
                bytes.as_ptr(),
                len,
                &raw mut width,
                &raw mut height,
                &raw mut channels,
                3,
            )
        };
        if pixels.is_null() {
            return None;
        }
        let bitmap = match (u32::try_from(width), u32::try_from(height)) {
            (Ok(w), Ok(h)) if w > 0 && h > 0 => {
                let len = (w as usize) * (h as usize) * 3;
                // SAFETY: stb's buffer holds width × height × 3 bytes.
                let rgb = unsafe { std::slice::from_raw_parts(pixels, len) };
                Self::from_rgb(w, h, rgb).ok()
            }
            _ => None,
        };
        // SAFETY: returned by `stbi_load_from_memory`, freed once, after its
        // last use (`from_rgb` copied it).
        unsafe { stbi_image_free(pixels.cast()) };
        bitmap
    }

    /// Width in pixels.
    #[must_use]
    pub fn width(&self) -> u32 {
        // SAFETY: a live bitmap; a plain query.
        unsafe { sys::mtmd_bitmap_get_nx(self.raw.as_ptr()) }
    }

    /// Height in pixels.
    #[must_use]
    pub fn height(&self) -> u32 {
        // SAFETY: a live bitmap; a plain query.
        unsafe { sys::mtmd_bitmap_get_ny(self.raw.as_ptr()) }
    }

    /// The pixels, RGB row by row.
    #[must_use]
    pub fn data(&self) -> &[u8] {
        // SAFETY: a live bitmap owns `n_bytes` bytes at `data`, unchanged
        // while it lives (borrowed by the slice).
        unsafe {
            let data = sys::mtmd_bitmap_get_data(self.raw.as_ptr());
            let len = sys::mtmd_bitmap_get_n_bytes(self.raw.as_ptr());
            if data.is_null() || len == 0 {
                return &[];
            }
            std::slice::from_raw_parts(data, len)
        }
    }
}

/// A tokenized prompt: text and image chunks, in order.
pub struct Chunks {
    raw: NonNull<sys::mtmd_input_chunks>,
}

// SAFETY: owned, with no thread affinity; read through const pointers only.
unsafe impl Send for Chunks {}

impl std::fmt::Debug for Chunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|c| c.kind()))
            .finish()
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        // SAFETY: made by `mtmd_input_chunks_init`, freed once, here, with
        // the chunks it owns.
        unsafe { sys::mtmd_input_chunks_free(self.raw.as_ptr()) };
    }
}

impl Chunks {
    /// How many chunks.
    #[must_use]
    pub fn len(&self) -> usize {
        // SAFETY: a live list; a plain query.
        unsafe { sys::mtmd_input_chunks_size(self.raw.as_ptr()) }
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunk at `index`.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<Chunk<'_>> {
        if index >= self.len() {
            return None;
        }
        // SAFETY: a live list and an index below its size; the chunk is
        // owned by the list, which the returned borrow keeps alive.
        let raw = unsafe { sys::mtmd_input_chunks_get(self.raw.as_ptr(), index) };
        NonNull::new(raw.cast_mut()).map(|raw| Chunk {
            raw,
            _chunks: PhantomData,
        })
    }

    /// The chunks in order.
    pub fn iter(&self) -> impl Iterator<Item = Chunk<'_>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Positions all chunks take in the KV cache.
    #[must_use]
    pub fn n_pos(&self) -> i32 {
        // SAFETY: a live list; a plain query.
        unsafe { sys::mtmd_helper_get_n_pos(self.raw.as_ptr()) }
    }
}

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkKind {
    /// Text tokens.
    Text,
    /// One image (for idefics3: one tile, or the overview).
    Image,
    /// Audio.
    Audio,
}

/// One chunk of a tokenized prompt, borrowed from its [`Chunks`].
#[derive(Clone, Copy)]
pub struct Chunk<'a> {
    raw: NonNull<sys::mtmd_input_chunk>,
    _chunks: PhantomData<&'a Chunks>,
}

impl std::fmt::Debug for Chunk<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("kind", &self.kind())
            .field("n_tokens", &self.n_tokens())
            .finish()
    }
}

impl Chunk<'_> {
    /// What it holds.
    #[must_use]
    pub fn kind(&self) -> ChunkKind {
        // SAFETY: a live chunk; a plain query.
        match unsafe { sys::mtmd_input_chunk_get_type(self.raw.as_ptr()) } {
            sys::MTMD_INPUT_CHUNK_TYPE_TEXT => ChunkKind::Text,
            sys::MTMD_INPUT_CHUNK_TYPE_IMAGE => ChunkKind::Image,
            _ => ChunkKind::Audio,
        }
    }

    /// Tokens: text tokens, or image embeddings.
    #[must_use]
    pub fn n_tokens(&self) -> usize {
        // SAFETY: a live chunk; a plain query.
        unsafe { sys::mtmd_input_chunk_get_n_tokens(self.raw.as_ptr()) }
    }

    /// Positions it takes in the KV cache.
    #[must_use]
    pub fn n_pos(&self) -> i32 {
        // SAFETY: a live chunk; a plain query.
        unsafe { sys::mtmd_input_chunk_get_n_pos(self.raw.as_ptr()) }
    }

    /// A text chunk's tokens (empty for other chunks).
    #[must_use]
    pub fn text_tokens(&self) -> &[Token] {
        if self.kind() != ChunkKind::Text {
            return &[];
        }
        let mut n = 0usize;
        // SAFETY: a live text chunk; mtmd returns its token array and length,
        // owned by the chunk, which the returned borrow keeps alive.
        // `Token` is `repr(transparent)` over `llama_token`.
        unsafe {
            let tokens = sys::mtmd_input_chunk_get_tokens_text(self.raw.as_ptr(), &raw mut n);
            if tokens.is_null() || n == 0 {
                return &[];
            }
            std::slice::from_raw_parts(tokens.cast::<Token>(), n)
        }
    }
}
