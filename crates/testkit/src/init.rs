//! Seeded random weight initialisation.
//!
//! Every tensor is drawn from one generator in file order, so a spec always
//! gives the same bytes. The standard deviations follow `TINY_MODEL.md` §4.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

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

    /// `n` values from N(mean, std²).
    pub(crate) fn normal(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| mean + std * self.rng.sample::<f32, _>(StandardNormal))
            .collect()
    }

    /// A linear or conv weight with `n` elements and `fan_in` inputs per output:
    /// std 1/sqrt(fan_in) keeps activations at unit scale through the layers.
    pub(crate) fn linear(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        self.normal(n, 0.0, 1.0 / (fan_in as f32).sqrt())
    }

    /// A norm weight near 1, perturbed so that the norm is not an identity.
    pub(crate) fn norm(&mut self, n: usize) -> Vec<f32> {
        self.normal(n, 1.0, 0.1)
    }

    /// A bias (or LayerNorm shift): small, so it nudges rather than dominates.
    pub(crate) fn bias(&mut self, n: usize) -> Vec<f32> {
        self.normal(n, 0.0, 0.1)
    }
}
