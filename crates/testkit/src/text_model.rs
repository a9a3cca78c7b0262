//! `model.gguf`: a `llama`-architecture decoder with the SmolVLM vocabulary.
//!
//! Keys and tensors follow `TINY_MODEL.md` §1. The tiny pair has no output
//! head, so llama.cpp ties it to `token_embd`, as SmolLM2 does; the real-size
//! pairs carry an untied `output.weight`, as the published GGUFs do.

use crate::gguf::GgufWriter;
use crate::init::{self, Role, TensorPlan, WeightInit, QUIET_ROW_SCALE};
use crate::vocab::{self, Vocab};
use crate::TinyModelSpec;

/// Std of `token_embd` when it is also the output head. Larger values let the
/// tied head simply echo the last prompt token, whatever the image.
const TIED_TOKEN_EMBD_STD: f32 = 0.1;
/// Std of `token_embd` beside an untied head: unit scale, like the image
/// embeddings the projector produces.
const UNTIED_TOKEN_EMBD_STD: f32 = 1.0;

/// Whether the logits come from `token_embd` or from their own `output.weight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputHead {
    Tied,
    Untied,
}

/// Special token ids written to the `tokenizer.ggml.*_token_id` keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpecialIds {
    pub(crate) bos: u32,
    pub(crate) eos: u32,
    pub(crate) unk: u32,
    pub(crate) pad: u32,
}

/// What differs between the metadata of the tiny and real-size text files.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TextKeys<'a> {
    pub(crate) name: &'a str,
    pub(crate) description: &'a str,
    /// `general.file_type`, a `llama_ftype`: 0 F32, 1 F16, 7 Q8_0.
    pub(crate) file_type: u32,
    pub(crate) vocab: &'a Vocab,
    pub(crate) ids: SpecialIds,
}

/// Builds the complete tiny text model file for `spec`.
pub(crate) fn build(spec: &TinyModelSpec) -> GgufWriter {
    let vocab = Vocab::smolvlm();
    let mut gguf = GgufWriter::new();
    let keys = TextKeys {
        name: "smolvlm-testkit tiny text model",
        description: "Random weights with SmolVLM's text architecture; for tests only",
        file_type: u32::from(spec.f16),
        vocab: &vocab,
        ids: SpecialIds {
            bos: vocab::IM_START,
            eos: vocab::END_OF_UTTERANCE,
            unk: vocab::ENDOFTEXT,
            pad: vocab::IM_END,
        },
    };
    add_metadata(&mut gguf, spec, &keys);

    let quiet = quiet_tokens(&vocab);
    let mut init = WeightInit::new(spec.seed);
    for plan in tensors(spec, vocab.tokens.len(), OutputHead::Tied) {
        let mut data = init.plan_values(&plan);
        if plan.quiet_rows {
            quiet_f32_rows(&mut data, plan.ne[0] as usize, &quiet);
        }
        // Matrices may be F16; norms stay F32 as convert_hf_to_gguf leaves them.
        match plan.role {
            Role::Matrix | Role::Conv if spec.f16 => {
                gguf.add_tensor_f16(&plan.name, &plan.ne, &data)
            }
            _ => gguf.add_tensor_f32(&plan.name, &plan.ne, data),
        };
    }
    gguf
}

/// For each token id, whether its logit row is scaled by [`QUIET_ROW_SCALE`]:
/// every token but plain text (see [`Vocab::is_plain_text`]).
pub(crate) fn quiet_tokens(vocab: &Vocab) -> Vec<bool> {
    (0..vocab.tokens.len() as u32)
        .map(|id| !vocab.is_plain_text(id))
        .collect()
}

/// Scales the rows (of `row_len` values, one per token) of quiet tokens.
fn quiet_f32_rows(data: &mut [f32], row_len: usize, quiet: &[bool]) {
    for (row, &q) in data.chunks_mut(row_len).zip(quiet) {
        if q {
            row.iter_mut().for_each(|x| *x *= QUIET_ROW_SCALE);
        }
    }
}

pub(crate) fn add_metadata(gguf: &mut GgufWriter, spec: &TinyModelSpec, keys: &TextKeys<'_>) {
    let head_dim = spec.text_embd / spec.text_heads;
    let vocab = keys.vocab;
    gguf.add_string("general.architecture", "llama")
        .add_string("general.name", keys.name)
        .add_string("general.description", keys.description)
        .add_u32("general.file_type", keys.file_type)
        .add_u32("llama.context_length", spec.context_length)
        .add_u32("llama.embedding_length", spec.text_embd)
        .add_u32("llama.block_count", spec.text_blocks)
        .add_u32("llama.feed_forward_length", spec.text_ff)
        .add_u32("llama.attention.head_count", spec.text_heads)
        .add_u32("llama.attention.head_count_kv", spec.text_kv_heads)
        .add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .add_f32("llama.rope.freq_base", 100_000.0)
        // For arch `llama` anything but the head size is rejected as "invalid n_rot".
        .add_u32("llama.rope.dimension_count", head_dim)
        .add_u32("llama.vocab_size", vocab.tokens.len() as u32)
        .add_string("tokenizer.ggml.model", "gpt2")
        .add_string("tokenizer.ggml.pre", "smollm")
        .add_string_array("tokenizer.ggml.tokens", &vocab.tokens)
        // Without types every token is NORMAL, and mtmd's `<row_r_col_c>` /
        // `<fake_token_around_image>` text no longer parses as special tokens.
        .add_i32_array("tokenizer.ggml.token_type", &vocab.token_types)
        .add_string_array("tokenizer.ggml.merges", &vocab.merges)
        .add_u32("tokenizer.ggml.bos_token_id", keys.ids.bos)
        .add_u32("tokenizer.ggml.eos_token_id", keys.ids.eos)
        .add_u32("tokenizer.ggml.unknown_token_id", keys.ids.unk)
        .add_u32("tokenizer.ggml.padding_token_id", keys.ids.pad)
        .add_bool("tokenizer.ggml.add_bos_token", false)
        .add_bool("tokenizer.ggml.add_eos_token", false);
    if spec.chat_template {
        gguf.add_string("tokenizer.chat_template", vocab::CHAT_TEMPLATE);
    }
}

/// The tensors of the text model, in file order, for a vocabulary of `n_vocab`.
pub(crate) fn tensors(spec: &TinyModelSpec, n_vocab: usize, head: OutputHead) -> Vec<TensorPlan> {
    let embd = spec.text_embd as usize;
    let ff = spec.text_ff as usize;
    let kv = (spec.text_embd / spec.text_heads * spec.text_kv_heads) as usize;
    let mut plans = Vec::with_capacity(3 + 9 * spec.text_blocks as usize);

    let token_embd = |std| {
        TensorPlan::new(
            "token_embd.weight",
            &[embd, n_vocab],
            Role::Matrix,
            (0.0, std),
        )
    };
    match head {
        OutputHead::Tied => plans.push(token_embd(TIED_TOKEN_EMBD_STD).with_quiet_rows()),
        OutputHead::Untied => plans.push(token_embd(UNTIED_TOKEN_EMBD_STD)),
    }
    plans.push(TensorPlan::vector("output_norm.weight", embd, init::NORM));
    if head == OutputHead::Untied {
        plans.push(
            TensorPlan::linear("output.weight", &[embd, n_vocab], Role::Matrix, embd)
                .with_quiet_rows(),
        );
    }

    for i in 0..spec.text_blocks {
        let name = |t: &str| format!("blk.{i}.{t}.weight");
        let matrix =
            |t: &str, ne: [usize; 2]| TensorPlan::linear(name(t), &ne, Role::Matrix, ne[0]);
        plans.extend([
            TensorPlan::vector(name("attn_norm"), embd, init::NORM),
            matrix("attn_q", [embd, embd]),
            matrix("attn_k", [embd, kv]),
            matrix("attn_v", [embd, kv]),
            matrix("attn_output", [embd, embd]),
            TensorPlan::vector(name("ffn_norm"), embd, init::NORM),
            matrix("ffn_gate", [embd, ff]),
            matrix("ffn_up", [embd, ff]),
            matrix("ffn_down", [ff, embd]),
        ]);
    }
    plans
}
