//! `mmproj.gguf`: a SigLIP-style vision tower with the `idefics3` projector.
//!
//! Keys and tensors follow `TINY_MODEL.md` §2.

use crate::gguf::GgufWriter;
use crate::init::{self, Role, TensorPlan, WeightInit};
use crate::TinyModelSpec;

/// Std of the learned position embeddings: large enough that patches at
/// different places differ even on a flat image.
const POSITION_EMBD_STD: f32 = 0.5;
/// Mixed into the spec's seed so the two files do not share a random stream.
pub(crate) const MMPROJ_SEED_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// Builds the complete tiny mmproj file for `spec`.
pub(crate) fn build(spec: &TinyModelSpec) -> GgufWriter {
    let mut gguf = GgufWriter::new();
    add_metadata(
        &mut gguf,
        spec,
        "smolvlm-testkit tiny mmproj",
        u32::from(spec.f16),
    );
    let mut init = WeightInit::new(spec.seed ^ MMPROJ_SEED_SALT);
    for plan in tensors(spec) {
        let data = init.plan_values(&plan);
        match plan.role {
            Role::Matrix | Role::Conv if spec.f16 => {
                gguf.add_tensor_f16(&plan.name, &plan.ne, &data)
            }
            _ => gguf.add_tensor_f32(&plan.name, &plan.ne, data),
        };
    }
    gguf
}

/// `file_type` is `general.file_type` (a `llama_ftype`: 0 F32, 1 F16, 7 Q8_0).
pub(crate) fn add_metadata(
    gguf: &mut GgufWriter,
    spec: &TinyModelSpec,
    name: &str,
    file_type: u32,
) {
    gguf.add_string("general.architecture", "clip")
        .add_string("general.name", name)
        .add_string(
            "general.description",
            "Random weights with SmolVLM's vision tower and idefics3 projector; for tests only",
        )
        .add_u32("general.file_type", file_type)
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

/// The tensors of the mmproj, in file order.
pub(crate) fn tensors(spec: &TinyModelSpec) -> Vec<TensorPlan> {
    let embd = spec.vision_embd as usize;
    let ff = spec.vision_ff as usize;
    let patch = spec.patch_size as usize;
    let n_patches = (spec.tile_size / spec.patch_size).pow(2) as usize;
    let merged = embd * (spec.scale_factor as usize).pow(2);
    let out = spec.mmproj_out_embd as usize;
    let matrix = |name: String, ne: [usize; 2]| TensorPlan::linear(name, &ne, Role::Matrix, ne[0]);
    let mut plans = Vec::with_capacity(6 + 16 * spec.vision_blocks as usize);

    plans.extend([
        TensorPlan::linear(
            "v.patch_embd.weight",
            &[patch, patch, 3, embd],
            Role::Conv,
            patch * patch * 3,
        ),
        TensorPlan::vector("v.patch_embd.bias", embd, init::BIAS),
        // Always F32: the graph adds it to F32 activations, and an F16 operand
        // aborts on the CPU backend.
        TensorPlan::new(
            "v.position_embd.weight",
            &[embd, n_patches],
            Role::Vector,
            (0.0, POSITION_EMBD_STD),
        ),
    ]);

    for i in 0..spec.vision_blocks {
        let name = |t: &str| format!("v.blk.{i}.{t}");
        plans.push(TensorPlan::vector(name("ln1.weight"), embd, init::NORM));
        plans.push(TensorPlan::vector(name("ln1.bias"), embd, init::BIAS));
        for t in ["attn_q", "attn_k", "attn_v", "attn_out"] {
            plans.push(matrix(name(&format!("{t}.weight")), [embd, embd]));
            plans.push(TensorPlan::vector(
                name(&format!("{t}.bias")),
                embd,
                init::BIAS,
            ));
        }
        plans.push(TensorPlan::vector(name("ln2.weight"), embd, init::NORM));
        plans.push(TensorPlan::vector(name("ln2.bias"), embd, init::BIAS));
        // ffn_down keeps ne[0] = n_ff (≠ n_embd): clip.cpp swaps up/down for
        // idefics3 when ffn_down.ne[0] == n_embd.
        plans.push(matrix(name("ffn_up.weight"), [embd, ff]));
        plans.push(TensorPlan::vector(name("ffn_up.bias"), ff, init::BIAS));
        plans.push(matrix(name("ffn_down.weight"), [ff, embd]));
        plans.push(TensorPlan::vector(name("ffn_down.bias"), embd, init::BIAS));
    }
    plans.push(TensorPlan::vector("v.post_ln.weight", embd, init::NORM));
    plans.push(TensorPlan::vector("v.post_ln.bias", embd, init::BIAS));
    // ne[1] is what mtmd compares with the text model's embedding length.
    plans.push(matrix("mm.model.fc.weight".to_owned(), [merged, out]));
    plans
}
