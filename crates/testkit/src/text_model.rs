//! `model.gguf`: a `llama`-architecture decoder with the SmolVLM vocabulary.
//!
//! Keys and tensors follow `TINY_MODEL.md` §1. The output head is absent, so
//! llama.cpp ties it to `token_embd`, as SmolLM2 does.

use crate::gguf::GgufWriter;
use crate::init::WeightInit;
use crate::vocab::{self, Vocab};
use crate::TinyModelSpec;

/// Std of `token_embd`. Larger values let the tied head simply echo the last
/// prompt token, whatever the image.
const TOKEN_EMBD_STD: f32 = 0.1;
/// Factor on the embedding rows of control and non-ASCII byte tokens: with a
/// tied head their logits stay small, so greedy decoding never stops early and
/// always produces ASCII.
const QUIET_ROW_SCALE: f32 = 0.02;

/// Builds the complete text model file for `spec`.
pub(crate) fn build(spec: &TinyModelSpec) -> GgufWriter {
    let vocab = Vocab::smolvlm();
    let mut gguf = GgufWriter::new();
    add_metadata(&mut gguf, spec, &vocab);
    add_tensors(&mut gguf, spec, &vocab);
    gguf
}

fn add_metadata(gguf: &mut GgufWriter, spec: &TinyModelSpec, vocab: &Vocab) {
    let head_dim = spec.text_embd / spec.text_heads;
    gguf.add_string("general.architecture", "llama")
        .add_string("general.name", "smolvlm-testkit tiny text model")
        .add_string(
            "general.description",
            "Random weights with SmolVLM's text architecture; for tests only",
        )
        .add_u32("general.file_type", u32::from(spec.f16))
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
        .add_u32("llama.vocab_size", vocab::VOCAB_SIZE)
        .add_string("tokenizer.ggml.model", "gpt2")
        .add_string("tokenizer.ggml.pre", "smollm")
        .add_string_array("tokenizer.ggml.tokens", &vocab.tokens)
        // Without types every token is NORMAL, and mtmd's `<row_r_col_c>` /
        // `<fake_token_around_image>` text no longer parses as special tokens.
        .add_i32_array("tokenizer.ggml.token_type", &vocab.token_types)
        .add_string_array("tokenizer.ggml.merges", &vocab.merges)
        .add_u32("tokenizer.ggml.bos_token_id", vocab::IM_START)
        .add_u32("tokenizer.ggml.eos_token_id", vocab::END_OF_UTTERANCE)
        .add_u32("tokenizer.ggml.unknown_token_id", vocab::ENDOFTEXT)
        .add_u32("tokenizer.ggml.padding_token_id", vocab::IM_END)
        .add_bool("tokenizer.ggml.add_bos_token", false)
        .add_bool("tokenizer.ggml.add_eos_token", false);
    if spec.chat_template {
        gguf.add_string("tokenizer.chat_template", vocab::CHAT_TEMPLATE);
    }
}

fn add_tensors(gguf: &mut GgufWriter, spec: &TinyModelSpec, vocab: &Vocab) {
    let mut init = WeightInit::new(spec.seed);
    let embd = spec.text_embd as usize;
    let ff = spec.text_ff as usize;
    let kv = (spec.text_embd / spec.text_heads * spec.text_kv_heads) as usize;
    let n_vocab = vocab.tokens.len();
    // Matrices may be F16; norms stay F32 as convert_hf_to_gguf leaves them.
    let matrix = |gguf: &mut GgufWriter, name: &str, ne: [usize; 2], data: Vec<f32>| {
        let ne = ne.map(|d| d as u64);
        if spec.f16 {
            gguf.add_tensor_f16(name, &ne, &data);
        } else {
            gguf.add_tensor_f32(name, &ne, data);
        }
    };

    let mut token_embd = init.normal(embd * n_vocab, 0.0, TOKEN_EMBD_STD);
    for (id, row) in token_embd.chunks_mut(embd).enumerate() {
        if !vocab.is_plain_text(id as u32) {
            row.iter_mut().for_each(|x| *x *= QUIET_ROW_SCALE);
        }
    }
    matrix(gguf, "token_embd.weight", [embd, n_vocab], token_embd);
    gguf.add_tensor_f32("output_norm.weight", &[embd as u64], init.norm(embd));

    for i in 0..spec.text_blocks {
        let name = |t: &str| format!("blk.{i}.{t}.weight");
        gguf.add_tensor_f32(&name("attn_norm"), &[embd as u64], init.norm(embd));
        matrix(
            gguf,
            &name("attn_q"),
            [embd, embd],
            init.linear(embd * embd, embd),
        );
        matrix(
            gguf,
            &name("attn_k"),
            [embd, kv],
            init.linear(embd * kv, embd),
        );
        matrix(
            gguf,
            &name("attn_v"),
            [embd, kv],
            init.linear(embd * kv, embd),
        );
        matrix(
            gguf,
            &name("attn_output"),
            [embd, embd],
            init.linear(embd * embd, embd),
        );
        gguf.add_tensor_f32(&name("ffn_norm"), &[embd as u64], init.norm(embd));
        matrix(
            gguf,
            &name("ffn_gate"),
            [embd, ff],
            init.linear(embd * ff, embd),
        );
        matrix(
            gguf,
            &name("ffn_up"),
            [embd, ff],
            init.linear(embd * ff, embd),
        );
        matrix(
            gguf,
            &name("ffn_down"),
            [ff, embd],
            init.linear(ff * embd, ff),
        );
    }
}
