//! Seeded random weight initialisation, and the plan of a file's tensors.
//!
//! The tiny pair draws every tensor from one ChaCha8 generator in file order,
//! so a spec always gives the same bytes. The real-size pairs draw each tensor
//! from its own stream of the file's seed, so the order of generation does not
//! matter; their weight matrices (hundreds of MB) come from [`BulkRng`],
//! straight into their stored form (`Q8_0` blocks, half floats), fast even in
//! an unoptimised test build. The standard deviations follow `TINY_MODEL.md` §4.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::gguf::f32_to_f16_bits;
use crate::quant::{Q8_0_BLOCK, Q8_0_BLOCK_BYTES};

/// Std of a linear or conv weight with `fan_in` inputs per output:
/// 1/sqrt(fan_in) keeps activations at unit scale through the layers.
pub(crate) fn linear_std(fan_in: usize) -> f32 {
    1.0 / (fan_in as f32).sqrt()
}

/// Mean and std of a norm weight: near 1, perturbed so the norm is not an identity.
pub(crate) const NORM: (f32, f32) = (1.0, 0.1);
/// Mean and std of a bias (or LayerNorm shift): small, so it nudges rather
/// than dominates.
pub(crate) const BIAS: (f32, f32) = (0.0, 0.1);

/// What a tensor is, which decides how each kind of pair stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A weight matrix: F16 in the tiny f16 pair, `Q8_0` or F16 in a
    /// real-size pair.
    Matrix,
    /// The patch-embedding convolution: F16 in the tiny f16 pair, F32 in a
    /// real-size pair (as ggml-org ships it).
    Conv,
    /// Norms, biases, position embeddings: always F32 (an F16 position
    /// embedding aborts llama.cpp's CPU backend).
    Vector,
}

/// One tensor of a file, before its values exist.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorPlan {
    pub(crate) name: String,
    /// Dimensions in ggml order.
    pub(crate) ne: Vec<u64>,
    pub(crate) role: Role,
    /// Mean and std of the values: normal, except the real-size pairs' bulk
    /// matrices, which are uniform (see [`BulkRng`]).
    pub(crate) mean: f32,
    pub(crate) std: f32,
    /// Rows (`ne[1]`, one per token) of tokens that are not plain text are
    /// scaled by [`QUIET_ROW_SCALE`]: this tensor gives the logits.
    pub(crate) quiet_rows: bool,
}

impl TensorPlan {
    pub(crate) fn new(
        name: impl Into<String>,
        ne: &[usize],
        role: Role,
        (mean, std): (f32, f32),
    ) -> Self {
        Self {
            name: name.into(),
            ne: ne.iter().map(|&d| d as u64).collect(),
            role,
            mean,
            std,
            quiet_rows: false,
        }
    }

    /// A weight matrix (or conv kernel) with `fan_in` inputs per output.
    pub(crate) fn linear(name: impl Into<String>, ne: &[usize], role: Role, fan_in: usize) -> Self {
        Self::new(name, ne, role, (0.0, linear_std(fan_in)))
    }

    /// A vector (F32 always) with mean and std `init`.
    pub(crate) fn vector(name: impl Into<String>, len: usize, init: (f32, f32)) -> Self {
        Self::new(name, &[len], Role::Vector, init)
    }

    pub(crate) fn with_quiet_rows(self) -> Self {
        Self {
            quiet_rows: true,
            ..self
        }
    }

    pub(crate) fn n_elements(&self) -> usize {
        self.ne.iter().product::<u64>() as usize
    }
}

/// Factor on the logit rows of control and non-ASCII byte tokens: their
/// logits stay small, so greedy decoding never stops early and always produces
/// ASCII.
pub(crate) const QUIET_ROW_SCALE: f32 = 0.02;

/// Std of a uniform random `i8` in [-127, 127] where the excluded -128 maps to
/// 0: sqrt(Σ k² / 256) over k in -127..=127.
pub(crate) const Q8_0_UNIT_STD: f32 = 73.467_68;

/// Draws tensors from a seeded ChaCha8 stream.
#[derive(Debug)]
pub(crate) struct WeightInit {
    rng: ChaCha8Rng,
}

impl WeightInit {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Stream `stream` of `seed`: independent of every other stream, so each
    /// tensor of a file can be drawn on its own.
    pub(crate) fn stream(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Self { rng }
    }

    /// `n` values from N(mean, std²).
    pub(crate) fn normal(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| mean + std * self.rng.sample::<f32, _>(StandardNormal))
            .collect()
    }

    /// The values `plan` asks for, as F32.
    pub(crate) fn plan_values(&mut self, plan: &TensorPlan) -> Vec<f32> {
        self.normal(plan.n_elements(), plan.mean, plan.std)
    }

    /// Appends `n` values from N(mean, std²) as little-endian F32.
    pub(crate) fn f32_normal(&mut self, n: usize, mean: f32, std: f32, out: &mut Vec<u8>) {
        out.reserve(n * 4);
        for _ in 0..n {
            let x = mean + std * self.rng.sample::<f32, _>(StandardNormal);
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// SplitMix64 (Steele, Lea & Flood, 2014): 64 random bits for a handful of
/// integer operations, so that writing a 437 MB file stays quick even where
/// the testkit is compiled without optimisation, as `cargo test` does. Its
/// statistical quality is far beyond what random weights need.
#[derive(Debug)]
pub(crate) struct BulkRng {
    state: u64,
}

impl BulkRng {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// Stream `stream` of `seed`: its start is a hash of both, so streams of
    /// a file do not overlap in practice.
    pub(crate) fn stream(seed: u64, stream: u64) -> Self {
        let mut mix = Self {
            state: seed ^ Self::GAMMA.wrapping_mul(stream.wrapping_add(1)),
        };
        Self {
            state: mix.next_u64(),
        }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Appends `n` values (a multiple of 32) of mean 0 and std `std` as `Q8_0`
    /// blocks: every block has the same scale and uniform random quants in
    /// [-127, 127]. Much faster than drawing normals and quantizing them, and
    /// just as good for weights nobody reads.
    pub(crate) fn q8_0_blocks(&mut self, n: usize, std: f32, out: &mut Vec<u8>) {
        let d = f32_to_f16_bits(std / Q8_0_UNIT_STD).to_le_bytes();
        out.reserve(n / Q8_0_BLOCK * Q8_0_BLOCK_BYTES);
        for _ in 0..n / Q8_0_BLOCK {
            out.extend_from_slice(&d);
            for _ in 0..Q8_0_BLOCK / 8 {
                out.extend_from_slice(&without_minus_128(self.next_u64()).to_le_bytes());
            }
        }
    }

    /// Appends `n` half floats of mean 0 and std `std`, uniform over 65536
    /// evenly spaced levels in [-std·√3, std·√3] (same scale as a normal,
    /// and one table lookup per value).
    pub(crate) fn f16_uniform(&mut self, n: usize, std: f32, out: &mut Vec<u8>) {
        let half_width = std * 3f32.sqrt();
        let levels: Vec<[u8; 2]> = (0..1u32 << 16)
            .map(|i| {
                let x = (i as f32 + 0.5) / 32768.0 - 1.0;
                f32_to_f16_bits(x * half_width).to_le_bytes()
            })
            .collect();
        out.reserve(n * 2);
        let mut left = n;
        while left > 0 {
            let word = self.next_u64();
            for k in 0..left.min(4) {
                out.extend_from_slice(&levels[(word >> (16 * k)) as usize & 0xffff]);
            }
            left -= left.min(4);
        }
    }
}

/// `word` with every byte equal to 0x80 (-128 as an `i8`) replaced by 0:
/// ggml's quantizer never writes -128, and this keeps the quants symmetric.
pub(crate) fn without_minus_128(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes that were 0x80 are now 0; find them exactly (no carries between
    // bytes), then clear them.
    let y = word ^ HIGH;
    let nonzero = ((y & LOW7).wrapping_add(LOW7) | y) & HIGH;
    let zero_bytes = ((!nonzero & HIGH) >> 7).wrapping_mul(0xff);
    word & !zero_bytes
}
