//! Real-size pairs: the exact tensor shapes and types of the published
//! SmolVLM-256M/500M-Instruct GGUFs (ggml-org), with random weights.
//!
//! They cost what the real models cost to load, encode and decode, so
//! benchmarks can measure at real scale without a download. The text is
//! gibberish, but greedy decoding never ends early: the logit rows of control
//! tokens (every end-of-generation token among them) and of non-ASCII bytes
//! are damped, so a caption always runs to its token limit and is ASCII.
//!
//! What is real: every key, tensor name, shape and storage type; a 49280-token
//! vocabulary with the real ids of SmolVLM's special tokens (see [`vocab`]);
//! 64 image tokens per 512 px tile; the longest edge of 2048 px. What is not:
//! the weights, and most of the vocabulary (fillers past the tiny pair's 469
//! tokens), so prompts take as many tokens as with the tiny pair, not as with
//! the real tokenizer.
//!
//! In a release build, generating a 256M pair takes about half a second and a
//! 500M pair about two (mostly disk writes); an unoptimised (test) build is
//! about ten times slower.
//!
//! ```no_run
//! use smolvlm_testkit::{real_model, ProjectorType, RealShape};
//!
//! let pair = real_model(RealShape::Smolvlm256M, ProjectorType::Q8_0);
//! assert!(pair.model.exists() && pair.mmproj.exists());
//! ```

pub mod vocab;

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::Path;

use crate::gguf::{GgufWriter, TensorInfo, TensorType};
use crate::init::{BulkRng, Role, TensorPlan, WeightInit, QUIET_ROW_SCALE};
use crate::mmproj::{self, MMPROJ_SEED_SALT};
use crate::text_model::{self, OutputHead, SpecialIds, TextKeys};
use crate::{write_atomically, TinyModel, TinyModelSpec, MODEL_FILE};

/// `general.file_type` (`llama_ftype`) of a mostly-`Q8_0` file.
const FTYPE_MOSTLY_Q8_0: u32 = 7;
/// `general.file_type` of a mostly-F16 file.
const FTYPE_MOSTLY_F16: u32 = 1;
/// Seed of the weights (the text model's; the mmproj's is derived from it).
const SEED: u64 = 0x5307_4c4d;

/// A published SmolVLM model whose shapes a real-size pair copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RealShape {
    /// SmolVLM-256M-Instruct: text embd 576, 30 blocks, 9 heads (3 KV), ff 1536.
    Smolvlm256M,
    /// SmolVLM-500M-Instruct: text embd 960, 32 blocks, 15 heads (5 KV), ff 2560.
    Smolvlm500M,
}

impl RealShape {
    /// Every shape, smallest first.
    pub const ALL: [RealShape; 2] = [RealShape::Smolvlm256M, RealShape::Smolvlm500M];

    /// The Hugging Face model name, e.g. `SmolVLM-256M-Instruct`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            RealShape::Smolvlm256M => "SmolVLM-256M-Instruct",
            RealShape::Smolvlm500M => "SmolVLM-500M-Instruct",
        }
    }

    /// The dimensions of this shape. Both share the vision tower, SigLIP-B/16
    /// at 512 px (embd 768, ff 3072, 12 blocks, 12 heads, 16 px patches, scale
    /// factor 4, so [`TinyModelSpec::tokens_per_tile`] is 64) and a longest
    /// edge of 2048 px.
    ///
    /// The `f16` field plays no part: a real-size text model is always `Q8_0`,
    /// and its mmproj's type is a [`ProjectorType`].
    #[must_use]
    pub fn spec(self) -> TinyModelSpec {
        let (embd, blocks, heads, kv_heads, ff) = match self {
            RealShape::Smolvlm256M => (576, 30, 9, 3, 1536),
            RealShape::Smolvlm500M => (960, 32, 15, 5, 2560),
        };
        TinyModelSpec {
            text_embd: embd,
            text_blocks: blocks,
            text_heads: heads,
            text_kv_heads: kv_heads,
            text_ff: ff,
            context_length: 8192,
            mmproj_out_embd: embd,
            vision_embd: 768,
            vision_ff: 3072,
            vision_blocks: 12,
            vision_heads: 12,
            tile_size: 512,
            patch_size: 16,
            scale_factor: 4,
            longest_edge: 2048,
            projection_dim: embd,
            chat_template: true,
            f16: false,
            seed: SEED,
        }
    }

    /// Size in bytes (10^6 per MB) of ggml-org's published text model,
    /// `SmolVLM-*-Instruct-Q8_0.gguf`, rounded to the MB.
    #[must_use]
    pub fn published_model_bytes(self) -> u64 {
        match self {
            RealShape::Smolvlm256M => 175_000_000,
            RealShape::Smolvlm500M => 437_000_000,
        }
    }

    /// Size in bytes of ggml-org's published mmproj of type `ty`,
    /// `mmproj-SmolVLM-*-Instruct-{Q8_0,f16}.gguf`, rounded to the MB.
    #[must_use]
    pub fn published_mmproj_bytes(self, ty: ProjectorType) -> u64 {
        match (self, ty) {
            (RealShape::Smolvlm256M, ProjectorType::Q8_0) => 104_000_000,
            (RealShape::Smolvlm256M, ProjectorType::F16) => 190_000_000,
            (RealShape::Smolvlm500M, ProjectorType::Q8_0) => 109_000_000,
            (RealShape::Smolvlm500M, ProjectorType::F16) => 199_000_000,
        }
    }

    /// The size of the text model [`generate_real`] writes, computed without
    /// writing it.
    ///
    /// # Errors
    ///
    /// None in practice: the plan is checked as `generate_real` checks it.
    pub fn model_file_len(self) -> io::Result<u64> {
        let (gguf, plans, _) = text_file(self);
        gguf.file_len(&infos(&plans, TensorType::Q8_0))
    }

    /// The size of the mmproj of type `ty` [`generate_real`] writes, computed
    /// without writing it.
    ///
    /// # Errors
    ///
    /// None in practice: the plan is checked as `generate_real` checks it.
    pub fn mmproj_file_len(self, ty: ProjectorType) -> io::Result<u64> {
        let (gguf, plans) = mmproj_file(self, ty);
        gguf.file_len(&infos(&plans, ty.tensor_type()))
    }

    /// Directory name of this shape's files in the cache: versioned, so that
    /// a change to generation never reuses stale files.
    pub(crate) fn cache_key(self) -> String {
        format!(
            "real-v{}-{}",
            REAL_FORMAT_VERSION,
            self.name().to_ascii_lowercase()
        )
    }
}

/// Bumped whenever real-size generation changes (independent of the tiny
/// pair's [`crate::FORMAT_VERSION`]).
const REAL_FORMAT_VERSION: u32 = 1;

/// How the mmproj stores its weight matrices (attention, FFN and
/// `mm.model.fc`). The patch embedding, position embedding, norms and biases
/// are F32 in both, as in ggml-org's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProjectorType {
    /// `mmproj-*-Q8_0.gguf`.
    Q8_0,
    /// `mmproj-*-f16.gguf`.
    F16,
}

impl ProjectorType {
    /// Both types.
    pub const ALL: [ProjectorType; 2] = [ProjectorType::Q8_0, ProjectorType::F16];

    /// File name of this type's mmproj in a real-size pair's directory.
    #[must_use]
    pub fn file_name(self) -> &'static str {
        match self {
            ProjectorType::Q8_0 => "mmproj-q8_0.gguf",
            ProjectorType::F16 => "mmproj-f16.gguf",
        }
    }

    fn tensor_type(self) -> TensorType {
        match self {
            ProjectorType::Q8_0 => TensorType::Q8_0,
            ProjectorType::F16 => TensorType::F16,
        }
    }

    fn file_type(self) -> u32 {
        match self {
            ProjectorType::Q8_0 => FTYPE_MOSTLY_Q8_0,
            ProjectorType::F16 => FTYPE_MOSTLY_F16,
        }
    }
}

/// The paths of `shape`'s pair with an mmproj of type `mmproj` in `dir`:
/// `model.gguf` (shared by both types) and [`ProjectorType::file_name`].
pub(crate) fn real_pair_in(dir: &Path, mmproj: ProjectorType) -> TinyModel {
    TinyModel {
        model: dir.join(MODEL_FILE),
        mmproj: dir.join(mmproj.file_name()),
    }
}

/// Writes the text model and the mmproj of type `mmproj` for `shape` into
/// `dir` (created if missing) and returns their paths: `model.gguf` (the same
/// for both types) and [`ProjectorType::file_name`].
///
/// Output is byte-identical run to run. Each file is written under a
/// temporary name and renamed into place, so a reader never sees a partial
/// file. The text model is 175 MB (256M) or 437 MB (500M); it is streamed to
/// disk one tensor at a time.
///
/// # Errors
///
/// Any I/O error from creating `dir` or writing the files.
pub fn generate_real(shape: RealShape, mmproj: ProjectorType, dir: &Path) -> io::Result<TinyModel> {
    fs::create_dir_all(dir)?;
    let pair = real_pair_in(dir, mmproj);
    write_model(shape, &pair.model)?;
    write_mmproj(shape, mmproj, &pair.mmproj)?;
    Ok(pair)
}

/// Writes `shape`'s text model to `path` (atomically).
pub(crate) fn write_model(shape: RealShape, path: &Path) -> io::Result<()> {
    let (gguf, plans, quiet) = text_file(shape);
    write_streamed(&gguf, &plans, TensorType::Q8_0, SEED, &quiet, path)
}

/// Writes `shape`'s mmproj of type `ty` to `path` (atomically).
pub(crate) fn write_mmproj(shape: RealShape, ty: ProjectorType, path: &Path) -> io::Result<()> {
    let (gguf, plans) = mmproj_file(shape, ty);
    write_streamed(
        &gguf,
        &plans,
        ty.tensor_type(),
        SEED ^ MMPROJ_SEED_SALT,
        &[],
        path,
    )
}

/// The text model's metadata, tensor plan and quiet (damped) logit rows.
fn text_file(shape: RealShape) -> (GgufWriter, Vec<TensorPlan>, Vec<bool>) {
    let spec = shape.spec();
    let vocab = vocab::vocab();
    let name = format!("smolvlm-testkit {} text model", shape.name());
    let description = format!(
        "Random weights with the shapes of {}'s Q8_0 text model; for benchmarks only",
        shape.name()
    );
    let keys = TextKeys {
        name: &name,
        description: &description,
        file_type: FTYPE_MOSTLY_Q8_0,
        vocab: &vocab,
        ids: SpecialIds {
            bos: vocab::IM_START,
            eos: vocab::END_OF_UTTERANCE,
            unk: vocab::ENDOFTEXT,
            pad: vocab::IM_END,
        },
    };
    let mut gguf = GgufWriter::new();
    text_model::add_metadata(&mut gguf, &spec, &keys);
    let plans = text_model::tensors(&spec, vocab.tokens.len(), OutputHead::Untied);
    (gguf, plans, text_model::quiet_tokens(&vocab))
}

/// The mmproj's metadata and tensor plan.
fn mmproj_file(shape: RealShape, ty: ProjectorType) -> (GgufWriter, Vec<TensorPlan>) {
    let spec = shape.spec();
    let mut gguf = GgufWriter::new();
    let name = format!("smolvlm-testkit {} mmproj", shape.name());
    mmproj::add_metadata(&mut gguf, &spec, &name, ty.file_type());
    (gguf, mmproj::tensors(&spec))
}

/// How a real-size file stores each tensor: matrices as `matrix_type`,
/// everything else (the patch-embedding conv included) as F32.
fn storage(role: Role, matrix_type: TensorType) -> TensorType {
    match role {
        Role::Matrix => matrix_type,
        Role::Conv | Role::Vector => TensorType::F32,
    }
}

/// The header entries of `plans`, matrices stored as `matrix_type`.
fn infos(plans: &[TensorPlan], matrix_type: TensorType) -> Vec<TensorInfo> {
    plans
        .iter()
        .map(|p| TensorInfo::new(&p.name, &p.ne, storage(p.role, matrix_type)))
        .collect()
}

/// Writes the file atomically, drawing tensor `i` from stream `i` of `seed`.
fn write_streamed(
    gguf: &GgufWriter,
    plans: &[TensorPlan],
    matrix_type: TensorType,
    seed: u64,
    quiet: &[bool],
    path: &Path,
) -> io::Result<()> {
    let infos = infos(plans, matrix_type);
    write_atomically(path, |tmp| {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
        gguf.write_streamed(&infos, &mut out, |i, info, buf| {
            fill(&plans[i], info.ty, (seed, i as u64), quiet, buf);
            Ok(())
        })?;
        out.into_inner()
            .map_err(io::IntoInnerError::into_error)?
            .sync_all()
    })
}

/// Appends `plan`'s values, stored as `ty` and drawn from stream `stream.1`
/// of seed `stream.0`, to `buf`. With `quiet_rows`, rows of tokens that
/// `quiet` marks are drawn at [`QUIET_ROW_SCALE`] times the scale.
fn fill(
    plan: &TensorPlan,
    ty: TensorType,
    (seed, stream): (u64, u64),
    quiet: &[bool],
    buf: &mut Vec<u8>,
) {
    let n = plan.n_elements();
    let row_len = plan.ne[0] as usize;
    // Matrices (mean 0) are the bulk of the file and come from the fast
    // generator; F32 tensors are small.
    let mut bulk = BulkRng::stream(seed, stream);
    let mut normal = WeightInit::stream(seed, stream);
    let mut draw = |n: usize, scale: f32, buf: &mut Vec<u8>| {
        let (mean, std) = (plan.mean * scale, plan.std * scale);
        match ty {
            TensorType::Q8_0 => bulk.q8_0_blocks(n, std, buf),
            TensorType::F16 => bulk.f16_uniform(n, std, buf),
            TensorType::F32 => normal.f32_normal(n, mean, std, buf),
        }
    };
    if plan.quiet_rows {
        for row in 0..n / row_len {
            let q = quiet.get(row).copied().unwrap_or(false);
            draw(row_len, if q { QUIET_ROW_SCALE } else { 1.0 }, buf);
        }
    } else {
        draw(n, 1.0, buf);
    }
}

#[cfg(test)]
mod tests;
