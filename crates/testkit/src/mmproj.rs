//! `mmproj.gguf`: a SigLIP-style vision tower with the `idefics3` projector.
//!
//! Keys and tensors follow `TINY_MODEL.md` §2.

use crate::gguf::GgufWriter;
use crate::init::WeightInit;
use crate::TinyModelSpec;

/// Std of the learned position embeddings: large enough that patches at
/// different places differ even on a flat image.
const POSITION_EMBD_STD: f32 = 0.5;
/// Mixed into the spec's seed so the two files do not share a random stream.
const MMPROJ_SEED_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// Builds the complete mmproj file for `spec`.
pub(crate) fn build(spec: &TinyModelSpec) -> GgufWriter {
    let mut gguf = GgufWriter::new();
    add_metadata(&mut gguf, spec);
    add_tensors(&mut gguf, spec);
    gguf
}

fn add_metadata(gguf: &mut GgufWriter, spec: &TinyModelSpec) {
    gguf.add_string("general.architecture", "clip")
        .add_string("general.name", "smolvlm-testkit tiny mmproj")
        .add_string(
            "general.description",
            "Random weights with SmolVLM's vision tower and idefics3 projector; for tests only",
        )
        .add_u32("general.file_type", u32::from(spec.f16))
        .add_bool("clip.has_vision_encoder", true)
        .add_string("clip.projector_type", "idefics3")
        // SigLIP's gelu is the tanh approximation; without this key clip.cpp
        // silently uses gelu_quick.
        .add_bool("clip.use_gelu", true)
        .add_u32("clip.vision.image_size", spec.tile_size)
        .add_u32("clip.vision.patch_size", spec.patch_size)
        .add_u32("clip.vision.embedding_length", spec.vision_embd)
        .add_u32("clip.vision.feed_forward_length", spec.vision_ff)
        .add_u32("clip.vision.block_count", spec.vision_blocks)
        .add_u32("clip.vision.attention.head_count", spec.vision_heads)
        .add_f32("clip.vision.attention.layer_norm_epsilon", 1e-6)
        .add_u32("clip.vision.projection_dim", spec.projection_dim)
        .add_f32_array("clip.vision.image_mean", &[0.5; 3])
        .add_f32_array("clip.vision.image_std", &[0.5; 3])
        // The default (1) trips `GGML_ASSERT(scale_factor > 1)` in the pixel shuffle.
        .add_u32("clip.vision.projector.scale_factor", spec.scale_factor)
        // idefics3's longest-edge resize target; without it mtmd takes another path.
        .add_u32("clip.vision.preproc_image_size", spec.longest_edge);
}

fn add_tensors(gguf: &mut GgufWriter, spec: &TinyModelSpec) {
    let mut init = WeightInit::new(spec.seed ^ MMPROJ_SEED_SALT);
    let embd = spec.vision_embd as usize;
    let ff = spec.vision_ff as usize;
    let patch = spec.patch_size as usize;
    let n_patches = (spec.tile_size / spec.patch_size).pow(2) as usize;
    let merged = embd * (spec.scale_factor as usize).pow(2);
    let out = spec.mmproj_out_embd as usize;
    let matrix = |gguf: &mut GgufWriter, name: &str, ne: &[usize], data: Vec<f32>| {
        let ne: Vec<u64> = ne.iter().map(|&d| d as u64).collect();
        if spec.f16 {
            gguf.add_tensor_f16(name, &ne, &data);
        } else {
            gguf.add_tensor_f32(name, &ne, data);
        }
    };
    let vector = |gguf: &mut GgufWriter, name: &str, data: Vec<f32>| {
        gguf.add_tensor_f32(name, &[data.len() as u64], data);
    };

    let conv_fan_in = patch * patch * 3;
    matrix(
        gguf,
        "v.patch_embd.weight",
        &[patch, patch, 3, embd],
        init.linear(conv_fan_in * embd, conv_fan_in),
    );
    vector(gguf, "v.patch_embd.bias", init.bias(embd));
    // Always F32: the graph adds it to F32 activations, and an F16 operand
    // aborts on the CPU backend.
    gguf.add_tensor_f32(
        "v.position_embd.weight",
        &[embd as u64, n_patches as u64],
        init.normal(embd * n_patches, 0.0, POSITION_EMBD_STD),
    );

    for i in 0..spec.vision_blocks {
        let name = |t: &str| format!("v.blk.{i}.{t}");
        vector(gguf, &name("ln1.weight"), init.norm(embd));
        vector(gguf, &name("ln1.bias"), init.bias(embd));
        for t in ["attn_q", "attn_k", "attn_v", "attn_out"] {
            let weight = init.linear(embd * embd, embd);
            matrix(gguf, &name(&format!("{t}.weight")), &[embd, embd], weight);
            vector(gguf, &name(&format!("{t}.bias")), init.bias(embd));
        }
        vector(gguf, &name("ln2.weight"), init.norm(embd));
        vector(gguf, &name("ln2.bias"), init.bias(embd));
        // ffn_down keeps ne[0] = n_ff (≠ n_embd): clip.cpp swaps up/down for
        // idefics3 when ffn_down.ne[0] == n_embd.
        matrix(
            gguf,
            &name("ffn_up.weight"),
            &[embd, ff],
            init.linear(embd * ff, embd),
        );
        vector(gguf, &name("ffn_up.bias"), init.bias(ff));
        matrix(
            gguf,
            &name("ffn_down.weight"),
            &[ff, embd],
            init.linear(ff * embd, ff),
        );
        vector(gguf, &name("ffn_down.bias"), init.bias(embd));
    }
    vector(gguf, "v.post_ln.weight", init.norm(embd));
    vector(gguf, "v.post_ln.bias", init.bias(embd));
    // ne[1] is what mtmd compares with the text model's embedding length.
    matrix(
        gguf,
        "mm.model.fc.weight",
        &[merged, out],
        init.linear(merged * out, merged),
    );
}
