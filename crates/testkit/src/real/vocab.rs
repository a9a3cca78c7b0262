//! The real-size vocabulary: 49280 tokens, with SmolVLM's special tokens at
//! their published ids.
//!
//! | ids | tokens | type |
//! |---|---|---|
//! | 0..=468 | the tiny vocabulary's first tokens, unchanged: `<\|endoftext\|>`, `<\|im_start\|>`, `<\|im_end\|>`, the 256 bytes, the merge results (468 is `"\n\n"`) | control, then normal |
//! | 469..=49151 | `filler469` … `filler49151` | normal |
//! | 49152 | `<global-img>` | control |
//! | 49153..=49188 | `<row_r_col_c>` for r, c in 1..=6 (see [`row_col_token`]) | control |
//! | 49189, 49190 | `<fake_token_around_image>`, `<image>` | control |
//! | 49191..=49278 | `<reserved_49191>` … `<reserved_49278>` | control |
//! | 49279 | `<end_of_utterance>` | control |
//!
//! The merges are the tiny vocabulary's, so prompts tokenize exactly as with
//! the tiny pair ([`Vocab::tokenize`] agrees with llama.cpp). No merge spells
//! a filler (the merges have no digits), so the tokenizer never produces one,
//! but the model may generate them; their text is plain ASCII.

use crate::vocab::{self as tiny, Vocab, TOKEN_TYPE_CONTROL, TOKEN_TYPE_NORMAL};

/// `<|endoftext|>`: unknown token, and end of generation.
pub const ENDOFTEXT: u32 = tiny::ENDOFTEXT;
/// `<|im_start|>`: BOS.
pub const IM_START: u32 = tiny::IM_START;
/// `<|im_end|>`: padding, and end of generation.
pub const IM_END: u32 = tiny::IM_END;
/// `"\n\n"`, which mtmd looks up by text before the overview image.
pub const DOUBLE_NEWLINE: u32 = tiny::DOUBLE_NEWLINE;
/// The first filler token, `filler469`.
pub const FIRST_FILLER: u32 = tiny::GLOBAL_IMG;
/// `<global-img>`, which introduces the overview tile.
pub const GLOBAL_IMG: u32 = 49152;
/// `<row_1_col_1>`; see [`row_col_token`].
pub const FIRST_ROW_COL: u32 = GLOBAL_IMG + 1;
/// `<fake_token_around_image>`.
pub const FAKE_TOKEN_AROUND_IMAGE: u32 = FIRST_ROW_COL + tiny::MAX_GRID * tiny::MAX_GRID;
/// `<image>`.
pub const IMAGE: u32 = FAKE_TOKEN_AROUND_IMAGE + 1;
/// `<end_of_utterance>`: EOS, and end of generation.
pub const END_OF_UTTERANCE: u32 = VOCAB_SIZE - 1;
/// Number of tokens in the vocabulary.
pub const VOCAB_SIZE: u32 = 49280;

/// Id of `<row_{row}_col_{col}>` (both 1-based, at most 6).
#[must_use]
pub fn row_col_token(row: u32, col: u32) -> u32 {
    FIRST_ROW_COL + (row - 1) * tiny::MAX_GRID + (col - 1)
}

/// Builds the 49280-token vocabulary described in the module docs.
#[must_use]
pub fn vocab() -> Vocab {
    let tiny = Vocab::smolvlm();
    let kept = FIRST_FILLER as usize;
    let mut tokens = Vec::with_capacity(VOCAB_SIZE as usize);
    let mut token_types = Vec::with_capacity(VOCAB_SIZE as usize);
    let mut push = |token: String, ty: i32| {
        tokens.push(token);
        token_types.push(ty);
    };

    for (token, &ty) in tiny.tokens.iter().zip(&tiny.token_types).take(kept) {
        push(token.clone(), ty);
    }
    for id in FIRST_FILLER..GLOBAL_IMG {
        push(format!("filler{id}"), TOKEN_TYPE_NORMAL);
    }
    // The tiny vocabulary has the image tokens in the same order, from its
    // own `<global-img>` to `<image>`.
    for token in &tiny.tokens[tiny::GLOBAL_IMG as usize..=tiny::IMAGE as usize] {
        push(token.clone(), TOKEN_TYPE_CONTROL);
    }
    for id in IMAGE + 1..END_OF_UTTERANCE {
        push(format!("<reserved_{id}>"), TOKEN_TYPE_CONTROL);
    }
    push(
        tiny.tokens[tiny::END_OF_UTTERANCE as usize].clone(),
        TOKEN_TYPE_CONTROL,
    );

    Vocab {
        tokens,
        token_types,
        merges: tiny.merges,
    }
}
