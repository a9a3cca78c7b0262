//! ggml's `Q8_0` block format, and half floats read back.
//!
//! A `Q8_0` tensor stores its values in blocks of [`Q8_0_BLOCK`] consecutive
//! elements along `ne[0]`, each block being `{ ggml_half d; int8_t qs[32]; }`
//! ([`Q8_0_BLOCK_BYTES`] bytes) and standing for `d * qs[i]`. So `ne[0]` must
//! be a multiple of 32.
//!
//! ```
//! use smolvlm_testkit::quant::{dequantize_q8_0, quantize_q8_0};
//!
//! let values: Vec<f32> = (0..32).map(|i| i as f32 / 8.0 - 2.0).collect();
//! let blocks = quantize_q8_0(&values);
//! assert_eq!(blocks.len(), 34);
//! for (x, y) in values.iter().zip(dequantize_q8_0(&blocks)) {
//!     assert!((x - y).abs() < 0.01);
//! }
//! ```

use crate::gguf::f32_to_f16_bits;

/// Elements per `Q8_0` block.
pub const Q8_0_BLOCK: usize = 32;
/// Bytes per `Q8_0` block: a half-float scale and 32 signed bytes.
pub const Q8_0_BLOCK_BYTES: usize = 2 + Q8_0_BLOCK;

/// Quantizes `values` to `Q8_0` blocks the way ggml's `quantize_row_q8_0_ref`
/// does: per block, `d = max|x| / 127` and `q = round(x / d)`.
///
/// A trailing partial block is padded with zeros; tensors written to a GGUF
/// file never have one, since their `ne[0]` is a multiple of 32.
#[must_use]
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len().div_ceil(Q8_0_BLOCK) * Q8_0_BLOCK_BYTES);
    for block in values.chunks(Q8_0_BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&f32_to_f16_bits(d).to_le_bytes());
        let mut qs = [0u8; Q8_0_BLOCK];
        for (q, &x) in qs.iter_mut().zip(block) {
            // |x * inv| <= 127, so the cast never saturates (nor gives -128).
            *q = (x * inv).round() as i8 as u8;
        }
        out.extend_from_slice(&qs);
    }
    out
}

/// The values `Q8_0` blocks stand for: `d * q` for each of their elements.
///
/// A trailing partial block (fewer than [`Q8_0_BLOCK_BYTES`] bytes) is ignored.
#[must_use]
pub fn dequantize_q8_0(blocks: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(blocks.len() / Q8_0_BLOCK_BYTES * Q8_0_BLOCK);
    for block in blocks.chunks_exact(Q8_0_BLOCK_BYTES) {
        let d = f16_bits_to_f32(u16::from_le_bytes([block[0], block[1]]));
        out.extend(block[2..].iter().map(|&q| d * f32::from(q.cast_signed())));
    }
    out
}

/// Converts IEEE 754 half-precision bits to an `f32` (exactly: every half is
/// an `f32`).
#[must_use]
pub fn f16_bits_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits & 0x8000) << 16;
    let exp = u32::from((bits >> 10) & 0x1f);
    let mant = u32::from(bits & 0x03ff);
    let magnitude = match (exp, mant) {
        (0, 0) => 0,
        // Subnormal half: mant * 2^-24, a normal f32.
        (0, _) => (mant as f32 * f32::from_bits(0x3380_0000)).to_bits(),
        (0x1f, _) => 0x7f80_0000 | (mant << 13),
        _ => ((exp + 127 - 15) << 23) | (mant << 13),
    };
    f32::from_bits(sign | magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trips() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            -2.0,
            0.5,
            65504.0,
            0.099_975_586,
            5.960_464_5e-8,
        ] {
            assert_eq!(f16_bits_to_f32(f32_to_f16_bits(x)).to_bits(), x.to_bits());
        }
        assert_eq!(f16_bits_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_bits_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_bits_to_f32(0x7e00).is_nan());
        // Every finite half converts back to the same bits.
        for bits in (0..=0xffffu16).filter(|b| b & 0x7c00 != 0x7c00) {
            assert_eq!(f32_to_f16_bits(f16_bits_to_f32(bits)), bits, "{bits:#06x}");
        }
    }

    #[test]
    fn q8_0_layout_and_round_trip() {
        let values: Vec<f32> = (0..96)
            .map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let blocks = quantize_q8_0(&values);
        assert_eq!(blocks.len(), 3 * Q8_0_BLOCK_BYTES);
        for (b, chunk) in blocks.chunks(Q8_0_BLOCK_BYTES).zip(values.chunks(32)) {
            let amax = chunk.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let d = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
            assert!((d - amax / 127.0).abs() <= amax / 127.0 / 1000.0);
            // The largest magnitude maps to ±127; -128 is never used.
            let qs: Vec<i8> = b[2..].iter().map(|q| q.cast_signed()).collect();
            assert_eq!(qs.iter().map(|q| q.unsigned_abs()).max(), Some(127));
            assert!(!qs.contains(&i8::MIN));
        }
        let back = dequantize_q8_0(&blocks);
        assert_eq!(back.len(), values.len());
        for (x, y) in values.iter().zip(&back) {
            // Half a quantization step, plus the rounding of d to a half float.
            assert!((x - y).abs() <= 5.0 / 127.0 * 0.51, "{x} vs {y}");
        }
    }

    #[test]
    fn q8_0_zero_block() {
        let blocks = quantize_q8_0(&[0.0; 32]);
        assert!(blocks.iter().all(|&b| b == 0));
        assert_eq!(dequantize_q8_0(&blocks), vec![0.0; 32]);
    }
}
