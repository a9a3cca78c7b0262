//! Test fixtures for smolvlm, made without a network or a downloaded model.
//!
//! - [`gguf`]: a small GGUF v3 writer.
//! - [`tiny_model`] / [`generate`]: a tiny random-weights model pair with
//!   SmolVLM's real architecture (a `llama` text model with SmolVLM's special
//!   tokens and chat template, and an `idefics3` mmproj), a few hundred KB, that
//!   llama.cpp loads and runs end to end. Its text is gibberish but
//!   deterministic under greedy sampling, and depends on the image.
//! - [`real_model`] / [`generate_real`]: pairs with the exact shapes of the
//!   published SmolVLM-256M/500M-Instruct GGUFs (Q8_0 text model, Q8_0 or F16
//!   mmproj) and random weights, hundreds of MB, for benchmarks at real scale.
//! - [`images`]: deterministic synthetic images.
//!
//! The pair follows `shared/TINY_MODEL.md`, which lists every key and tensor
//! llama.cpp requires and the traps found in them.
//!
//! ```no_run
//! let pair = smolvlm_testkit::tiny_model();
//! assert!(pair.model.exists() && pair.mmproj.exists());
//! ```

// Unit tests may unwrap: a failure there is a test failure with a backtrace.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod gguf;
pub mod images;
pub mod quant;
pub mod real;
pub mod vocab;

mod cache;
mod init;
mod mmproj;
mod text_model;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use cache::{cache_dir, real_model, tiny_model, tiny_model_with, FORMAT_VERSION};
pub use real::{generate_real, ProjectorType, RealShape};

/// File name of the text model inside a generated pair's directory.
pub const MODEL_FILE: &str = "model.gguf";
/// File name of the mmproj inside a generated pair's directory.
pub const MMPROJ_FILE: &str = "mmproj.gguf";

/// Dimensions and options of a generated pair.
///
/// The default is the pair of `TINY_MODEL.md`: text embd 64, 2 blocks, 4 heads
/// (2 KV), ff 128; vision embd 32, ff 64, 2 blocks, 2 heads, 64 px tiles of 8 px
/// patches, scale factor 4 (so 4 tokens per tile), longest edge 256.
#[derive(Clone, Debug, PartialEq)]
pub struct TinyModelSpec {
    /// Text model embedding length (`llama.embedding_length`).
    pub text_embd: u32,
    /// Text decoder blocks.
    pub text_blocks: u32,
    /// Text attention heads; must divide `text_embd` into an even head size.
    pub text_heads: u32,
    /// Text KV heads (grouped-query attention); must divide `text_heads`.
    pub text_kv_heads: u32,
    /// Text feed-forward width.
    pub text_ff: u32,
    /// `llama.context_length`.
    pub context_length: u32,
    /// Output width of the projector (`ne[1]` of `mm.model.fc.weight`). Equals
    /// `text_embd` for a proper pair; anything else makes mtmd refuse the pair.
    pub mmproj_out_embd: u32,
    /// Vision embedding length.
    pub vision_embd: u32,
    /// Vision feed-forward width; must differ from `vision_embd` (clip.cpp
    /// swaps up/down for idefics3 otherwise).
    pub vision_ff: u32,
    /// Vision encoder blocks.
    pub vision_blocks: u32,
    /// Vision attention heads.
    pub vision_heads: u32,
    /// Side of a square tile in pixels (`clip.vision.image_size`).
    pub tile_size: u32,
    /// Side of a patch in pixels.
    pub patch_size: u32,
    /// Pixel-shuffle factor of the idefics3 connector; must be > 1 and divide
    /// `tile_size / patch_size`.
    pub scale_factor: u32,
    /// Longest edge the preprocessor resizes to (`clip.vision.preproc_image_size`).
    pub longest_edge: u32,
    /// `clip.vision.projection_dim` (required by clip.cpp, unused by idefics3).
    pub projection_dim: u32,
    /// Whether `model.gguf` carries `tokenizer.chat_template`.
    pub chat_template: bool,
    /// Store weight matrices as F16 instead of F32 (norms, biases and position
    /// embeddings stay F32).
    pub f16: bool,
    /// Seed of the weights; the mmproj uses a stream derived from it.
    pub seed: u64,
}

impl Default for TinyModelSpec {
    fn default() -> Self {
        Self {
            text_embd: 64,
            text_blocks: 2,
            text_heads: 4,
            text_kv_heads: 2,
            text_ff: 128,
            context_length: 8192,
            mmproj_out_embd: 64,
            vision_embd: 32,
            vision_ff: 64,
            vision_blocks: 2,
            vision_heads: 2,
            tile_size: 64,
            patch_size: 8,
            scale_factor: 4,
            longest_edge: 256,
            projection_dim: 64,
            chat_template: true,
            f16: false,
            seed: 0x5307_4c4d,
        }
    }
}

impl TinyModelSpec {
    /// A pair whose mmproj projects to 96 dims while the text model embeds 64.
    /// Both files load on their own, but `mtmd_init_from_file` refuses the pair
    /// ("mismatch between text model (n_embd = 64) and mmproj (n_embd = 96)").
    #[must_use]
    pub fn mismatched() -> Self {
        Self {
            mmproj_out_embd: 96,
            ..Self::default()
        }
    }

    /// The default pair without `tokenizer.chat_template`.
    #[must_use]
    pub fn without_chat_template() -> Self {
        Self {
            chat_template: false,
            ..Self::default()
        }
    }

    /// Image embeddings mtmd produces per tile (and for the overview):
    /// `(tile_size / patch_size / scale_factor)²`.
    #[must_use]
    pub fn tokens_per_tile(&self) -> u32 {
        (self.tile_size / self.patch_size / self.scale_factor).pow(2)
    }

    /// Checks the constraints llama.cpp puts on the dimensions, so a bad spec
    /// fails here with a reason rather than as a load error or an abort.
    fn validate(&self) -> io::Result<()> {
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid TinyModelSpec: {what} ({self:?})"),
                ))
            }
        };
        let nonzero = [
            self.text_embd,
            self.text_blocks,
            self.text_heads,
            self.text_kv_heads,
            self.text_ff,
            self.context_length,
            self.mmproj_out_embd,
            self.vision_embd,
            self.vision_ff,
            self.vision_blocks,
            self.vision_heads,
            self.tile_size,
            self.patch_size,
            self.longest_edge,
        ];
        check(nonzero.iter().all(|&d| d > 0), "every size must be > 0")?;
        check(
            self.text_embd.is_multiple_of(self.text_heads)
                && (self.text_embd / self.text_heads).is_multiple_of(2),
            "text_heads must divide text_embd into an even head size (RoPE rotates pairs)",
        )?;
        check(
            self.text_heads.is_multiple_of(self.text_kv_heads),
            "text_kv_heads must divide text_heads",
        )?;
        check(
            self.vision_embd.is_multiple_of(self.vision_heads),
            "vision_heads must divide vision_embd",
        )?;
        check(
            self.vision_ff != self.vision_embd,
            "vision_ff must differ from vision_embd (clip.cpp would swap ffn up/down)",
        )?;
        check(
            self.tile_size.is_multiple_of(self.patch_size),
            "patch_size must divide tile_size",
        )?;
        check(
            self.scale_factor > 1
                && (self.tile_size / self.patch_size).is_multiple_of(self.scale_factor),
            "scale_factor must be > 1 and divide tile_size / patch_size",
        )
    }
}

/// Paths of a generated pair.
#[derive(Clone, Debug)]
pub struct TinyModel {
    /// The text model, `model.gguf`.
    pub model: PathBuf,
    /// The vision projector, `mmproj.gguf`.
    pub mmproj: PathBuf,
}

impl TinyModel {
    /// The paths [`generate`] writes in `dir`.
    #[must_use]
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            model: dir.join(MODEL_FILE),
            mmproj: dir.join(MMPROJ_FILE),
        }
    }
}

/// Writes `model.gguf` and `mmproj.gguf` for `spec` into `dir` (created if
/// missing) and returns their paths.
///
/// Output is byte-identical for equal specs. Each file is written under a
/// temporary name and renamed into place, so a reader never sees a partial file.
///
/// # Errors
///
/// `InvalidInput` if the spec breaks a constraint of llama.cpp (see the field
/// docs), or any I/O error from creating `dir` or writing the files.
pub fn generate(spec: &TinyModelSpec, dir: &Path) -> io::Result<TinyModel> {
    spec.validate()?;
    fs::create_dir_all(dir)?;
    let pair = TinyModel::in_dir(dir);
    write_atomically(&pair.model, |tmp| {
        text_model::build(spec).write_to_path(tmp)
    })?;
    write_atomically(&pair.mmproj, |tmp| mmproj::build(spec).write_to_path(tmp))?;
    Ok(pair)
}

/// Has `write` write a unique temporary name beside `path`, then renames it
/// over `path`.
fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    // Unique per process and per call, so parallel writers never share a temp file.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("gguf");
    let tmp = path.with_file_name(format!(".{file_name}.{}.{n}.tmp", std::process::id()));
    let result = write(&tmp).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
    }
    result
}
