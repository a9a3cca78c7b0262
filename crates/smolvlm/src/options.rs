//! How a model pair loads and how its sessions run: threads, memory and the
//! engine settings that decide speed.

use std::num::NonZeroU32;

use smolvlm_engine as engine;

use crate::error::{Error, Result};

/// Whether the text decoder (or the vision encoder) uses flash attention:
/// `Auto` (the default: llama.cpp decides per device, on for the CPU), `On`
/// or `Off`. It changes speed and memory, not results beyond rounding.
pub use smolvlm_engine::FlashAttention;

/// The element type of the text decoder's KV cache.
///
/// A smaller type saves memory per session (the cache holds every prompt,
/// image and generated token), at a small cost in accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KvCacheType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats (the default, as in llama.cpp).
    #[default]
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit blocks (`q8_0`): half the memory of F16. Needs flash attention.
    Q8_0,
    /// 4-bit blocks (`q4_0`): a quarter of F16. Needs flash attention.
    Q4_0,
}

impl KvCacheType {
    fn to_engine(self) -> engine::KvType {
        match self {
            Self::F32 => engine::KvType::F32,
            Self::F16 => engine::KvType::F16,
            Self::Bf16 => engine::KvType::Bf16,
            Self::Q8_0 => engine::KvType::Q8_0,
            Self::Q4_0 => engine::KvType::Q4_0,
        }
    }

    fn is_quantized(self) -> bool {
        matches!(self, Self::Q8_0 | Self::Q4_0)
    }

    /// Elements per quantized block: a head's width must be a multiple.
    pub(crate) fn block_size(self) -> u32 {
        if self.is_quantized() {
            32
        } else {
            1
        }
    }
}

/// How a model pair is loaded and how each of its sessions runs.
///
/// Threads are **per session**: every [`Session`](crate::Session) has its own
/// text context and its own vision encoder, and runs on this many threads.
/// Sessions that run side by side should split the cores between them (the
/// CLI's `--parallel N` gives each `cores / N`).
///
/// ```
/// use smolvlm::{FlashAttention, KvCacheType, LoadOptions};
/// let options = LoadOptions::default()
///     .with_threads(2)
///     .with_context_size(4096)
///     .with_flash_attention(FlashAttention::On)
///     .with_kv_cache_type(KvCacheType::Q8_0);
/// assert_eq!(options.context_size(), 4096);
/// assert_eq!(options.vision_threads(), 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    threads: Option<NonZeroU32>,
    vision_threads: Option<NonZeroU32>,
    pub(crate) gpu_layers: u32,
    pub(crate) vision_gpu: bool,
    context_size: u32,
    batch_size: u32,
    ubatch_size: u32,
    flash_attention: FlashAttention,
    vision_flash_attention: FlashAttention,
    kv_cache_type: KvCacheType,
    pub(crate) mmap: bool,
    pub(crate) mlock: bool,
    warmup: bool,
    max_tiles: Option<u32>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            threads: None,
            vision_threads: None,
            // Offload everything when built with a GPU backend; ignored on CPU builds.
            gpu_layers: u32::MAX,
            vision_gpu: true,
            context_size: 4096,
            batch_size: 2048,
            ubatch_size: 512,
            flash_attention: FlashAttention::Auto,
            vision_flash_attention: FlashAttention::Auto,
            kv_cache_type: KvCacheType::F16,
            mmap: true,
            mlock: false,
            warmup: true,
            max_tiles: None,
        }
    }
}

impl LoadOptions {
    /// CPU threads of each session, for the text decoder and (unless
    /// [`with_vision_threads`](Self::with_vision_threads) says otherwise) the
    /// vision encoder. Default: all available cores.
    #[must_use]
    pub fn with_threads(mut self, threads: u32) -> Self {
        self.threads = NonZeroU32::new(threads);
        self
    }

    /// CPU threads of each session's vision encoder, when they should differ
    /// from [`with_threads`](Self::with_threads). The encoder is most of a
    /// caption's cost at real scale, so it rarely should.
    #[must_use]
    pub fn with_vision_threads(mut self, threads: u32) -> Self {
        self.vision_threads = NonZeroU32::new(threads);
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

    /// Most tokens handed to one decode call (default 2048). mtmd splits an
    /// image's embeddings by it, so any value of 1 or more works.
    #[must_use]
    pub fn with_batch_size(mut self, tokens: u32) -> Self {
        self.batch_size = tokens;
        self
    }

    /// Tokens the text decoder computes in one pass (`n_ubatch`, default 512,
    /// at most the batch size): larger passes use the cores better during
    /// prefill and need larger compute buffers.
    #[must_use]
    pub fn with_ubatch_size(mut self, tokens: u32) -> Self {
        self.ubatch_size = tokens;
        self
    }

    /// Flash attention in the text decoder (default [`FlashAttention::Auto`]).
    #[must_use]
    pub fn with_flash_attention(mut self, mode: FlashAttention) -> Self {
        self.flash_attention = mode;
        self
    }

    /// Flash attention in the vision encoder (default [`FlashAttention::Auto`],
    /// as in llama.cpp's tools, which turns it on where the backend has it,
    /// the CPU included). Off, SmolVLM's encoder was 23% slower on 2 cores,
    /// and its rounding changes the output (benches/README.md).
    #[must_use]
    pub fn with_vision_flash_attention(mut self, mode: FlashAttention) -> Self {
        self.vision_flash_attention = mode;
        self
    }

    /// The KV cache's element type (default [`KvCacheType::F16`]).
    #[must_use]
    pub fn with_kv_cache_type(mut self, kind: KvCacheType) -> Self {
        self.kv_cache_type = kind;
        self
    }

    /// Map the text model's file instead of reading it (default: yes). Mapped
    /// weights are shared with the page cache and with other processes that
    /// map the same file.
    #[must_use]
    pub fn with_mmap(mut self, on: bool) -> Self {
        self.mmap = on;
        self
    }

    /// Lock the text model's weights in memory so they are never paged out
    /// (default: no). Needs the privilege to lock that much memory.
    #[must_use]
    pub fn with_mlock(mut self, on: bool) -> Self {
        self.mlock = on;
        self
    }

    /// Warm up (default: yes), as llama.cpp's tools do: the vision encoder
    /// reserves its compute buffers when it loads (mtmd's warm-up; it runs
    /// no encode), and each new session runs one token through the text
    /// decoder before its first caption. Off, the first encode reserves
    /// the buffers instead; neither the load nor the first caption changed
    /// measurably at real scale (benches/README.md).
    #[must_use]
    pub fn with_warmup(mut self, on: bool) -> Self {
        self.warmup = on;
        self
    }

    /// The token budget: at most this many tiles per image (plus the overview
    /// idefics3 always adds). Fewer tiles mean faster captions and less
    /// detail: at real scale each tile is one vision encode, nearly all of a
    /// caption's time. `None` (default) lets the model tile at its full
    /// longest edge (up to 4×4 tiles for SmolVLM 256M/500M).
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

    /// Each session's text decoder threads.
    #[must_use]
    pub fn threads(&self) -> u32 {
        self.threads.map_or_else(available_cores, NonZeroU32::get)
    }

    /// Each session's vision encoder threads.
    #[must_use]
    pub fn vision_threads(&self) -> u32 {
        self.vision_threads
            .map_or_else(|| self.threads(), NonZeroU32::get)
    }

    /// The session context size.
    #[must_use]
    pub fn context_size(&self) -> u32 {
        self.context_size
    }

    /// The decode batch size, as used: at most the context size (a batch
    /// can never hold more tokens than the context).
    #[must_use]
    pub fn batch_size(&self) -> u32 {
        self.batch_size.min(self.context_size)
    }

    /// The text decoder's pass size (`n_ubatch`), as used: at most the batch size.
    #[must_use]
    pub fn ubatch_size(&self) -> u32 {
        self.ubatch_size.min(self.batch_size())
    }

    /// The flash attention setting.
    #[must_use]
    pub fn flash_attention(&self) -> FlashAttention {
        self.flash_attention
    }

    /// The vision encoder's flash attention setting.
    #[must_use]
    pub fn vision_flash_attention(&self) -> FlashAttention {
        self.vision_flash_attention
    }

    /// The KV cache type.
    #[must_use]
    pub fn kv_cache_type(&self) -> KvCacheType {
        self.kv_cache_type
    }

    /// Whether sessions are warmed up.
    #[must_use]
    pub fn warmup(&self) -> bool {
        self.warmup
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.context_size < 64 {
            return Err(Error::invalid("context_size", "must be at least 64 tokens"));
        }
        // llama.cpp keeps batch sizes in i32 and allocates a batch of this
        // many tokens up front.
        const MAX_BATCH: u32 = 1 << 20;
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return Err(Error::invalid(
                "batch_size",
                format!("must be between 1 and {MAX_BATCH} tokens"),
            ));
        }
        if self.ubatch_size == 0 {
            return Err(Error::invalid("ubatch_size", "must be at least 1 token"));
        }
        if self.max_tiles == Some(0) {
            return Err(Error::invalid("max_tiles", "must be at least 1"));
        }
        if i32::try_from(self.threads()).is_err() || i32::try_from(self.vision_threads()).is_err() {
            return Err(Error::invalid("threads", "is too large"));
        }
        if self.kv_cache_type.is_quantized() && self.flash_attention == FlashAttention::Off {
            return Err(Error::invalid(
                "kv_cache_type",
                format!(
                    "a {:?} cache needs flash attention on (or auto); or use an F16 cache",
                    self.kv_cache_type
                ),
            ));
        }
        Ok(())
    }

    /// The llama context parameters of one session.
    pub(crate) fn context_params(&self) -> engine::ContextParams {
        engine::ContextParams {
            n_ctx: self.context_size,
            n_batch: self.batch_size(),
            n_ubatch: self.ubatch_size(),
            threads: self.threads(),
            threads_batch: self.threads(),
            flash_attention: self.flash_attention,
            kv_type: (self.kv_cache_type != KvCacheType::F16)
                .then(|| self.kv_cache_type.to_engine()),
        }
    }

    /// How the text model loads.
    pub(crate) fn model_params(&self) -> engine::ModelParams {
        engine::ModelParams {
            gpu_layers: (self.gpu_layers != u32::MAX).then_some(self.gpu_layers),
            mmap: self.mmap,
            mlock: self.mlock,
        }
    }

    /// How each vision encoder is made, with mtmd's image token budget.
    pub(crate) fn vision_params(&self, image_max_tokens: Option<u32>) -> engine::VisionParams {
        engine::VisionParams {
            use_gpu: self.vision_gpu,
            threads: self.vision_threads(),
            flash_attention: self.vision_flash_attention,
            warmup: self.warmup,
            image_max_tokens,
        }
    }
}

/// The cores this process may use.
#[must_use]
pub(crate) fn available_cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_cache_needs_flash_attention() {
        let options = LoadOptions::default()
            .with_kv_cache_type(KvCacheType::Q8_0)
            .with_flash_attention(FlashAttention::Off);
        let err = options.validate().unwrap_err();
        assert_eq!(err.kind(), "invalid_option");
        assert!(err.to_string().contains("flash attention"), "{err}");
        assert!(LoadOptions::default()
            .with_kv_cache_type(KvCacheType::Q8_0)
            .validate()
            .is_ok());
    }

    #[test]
    fn batch_limits() {
        for bad in [0, (1 << 20) + 1, u32::MAX] {
            assert!(LoadOptions::default()
                .with_batch_size(bad)
                .validate()
                .is_err());
        }
        assert!(LoadOptions::default()
            .with_ubatch_size(0)
            .validate()
            .is_err());
        assert_eq!(
            LoadOptions::default()
                .with_batch_size(64)
                .with_ubatch_size(512)
                .ubatch_size(),
            64
        );
        let small_context = LoadOptions::default()
            .with_context_size(1024)
            .with_batch_size(2048);
        assert_eq!(
            (small_context.batch_size(), small_context.ubatch_size()),
            (1024, 512)
        );
    }

    #[test]
    fn vision_threads_default_to_threads() {
        let options = LoadOptions::default().with_threads(3);
        assert_eq!(options.vision_threads(), 3);
        assert_eq!(options.with_vision_threads(1).vision_threads(), 1);
    }
}
