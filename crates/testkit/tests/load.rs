//! The generated pair loads and runs in llama.cpp through smolvlm's engine layer: keys,
//! vocab, idefics3 tiling and token layout, and a greedy decode.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{layout, load_model, load_vision, tokenize, vision_params};
use image::RgbImage;
use smolvlm_engine::{
    Batch, ChunkKind, Chunks, Context, ContextParams, Model, Sampler, Token, Vision,
};
use smolvlm_testkit::vocab::{self, Vocab};
use smolvlm_testkit::{images, tiny_model, tiny_model_with, TinyModelSpec};

/// Tokens generated per caption: enough to show the image steers the output.
const N_GENERATE: usize = 16;
const N_BATCH: u32 = 512;

/// Greedy-decodes `N_GENERATE` tokens after the prompt and `img`, each chunk
/// evaluated as llama-mtmd-cli evaluates it.
fn caption(model: &Model, vision: &mut Vision, img: &RgbImage) -> Vec<Token> {
    let chunks = tokenize(vision, img);
    let params = ContextParams {
        n_ctx: 2048,
        n_batch: N_BATCH,
        threads: 2,
        threads_batch: 2,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(model, &params).expect("context");
    let mut batch = Batch::new(N_BATCH as usize).unwrap();
    let never = || false;
    let mut n_past = 0;
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.iter().enumerate() {
        if chunk.kind() == ChunkKind::Text {
            let tokens = chunk.text_tokens();
            batch.clear();
            for (j, &token) in tokens.iter().enumerate() {
                let logits = i == last && j == tokens.len() - 1;
                batch.add(token, n_past + j as i32, logits).unwrap();
            }
            ctx.decode(&batch, &never).expect("decode prompt text");
            n_past += tokens.len() as i32;
        } else {
            let eval = vision
                .eval_chunk(&mut ctx, &chunk, n_past, N_BATCH, None, &never)
                .expect("eval image chunk");
            n_past = eval.n_past;
        }
    }

    let mut sampler = Sampler::new().greedy();
    let mut out = Vec::with_capacity(N_GENERATE);
    for pos in n_past..n_past + N_GENERATE as i32 {
        let token = sampler.sample(&mut ctx).expect("sample");
        out.push(token);
        batch.clear();
        batch.add(token, pos, true).unwrap();
        ctx.decode(&batch, &never).expect("decode");
    }
    out
}

/// Text tokens mtmd should produce around an idefics3 image of `cols × rows` tiles.
fn expected_text_tokens(cols: u32, rows: u32) -> Vec<i32> {
    let vocab = Vocab::smolvlm();
    let mut ids = vec![vocab::IM_START];
    ids.extend(vocab.tokenize("User: "));
    for r in 1..=rows {
        for c in 1..=cols {
            ids.extend([vocab::FAKE_TOKEN_AROUND_IMAGE, vocab::row_col_token(r, c)]);
        }
        if r < rows {
            ids.extend(vocab.tokenize("\n"));
        }
    }
    ids.extend([
        vocab::DOUBLE_NEWLINE,
        vocab::FAKE_TOKEN_AROUND_IMAGE,
        vocab::GLOBAL_IMG,
        vocab::FAKE_TOKEN_AROUND_IMAGE,
    ]);
    ids.extend(vocab.tokenize("Describe this image."));
    ids.push(vocab::END_OF_UTTERANCE);
    ids.extend(vocab.tokenize("\nAssistant:"));
    ids.into_iter().map(|id| id as i32).collect()
}

/// Checks totals against `TINY_MODEL.md` §3 and the exact text-token layout.
fn assert_layout(chunks: &Chunks, cols: u32, rows: u32, tokens: usize, n_chunks: usize) {
    let (text, images) = layout(chunks);
    assert!(images.iter().all(|&n| n == 4), "{images:?}");
    assert_eq!(text.len() + images.iter().sum::<usize>(), tokens);
    assert_eq!(chunks.n_pos() as usize, tokens);
    assert_eq!(chunks.len(), n_chunks);
    assert_eq!(images.len() as u32, cols * rows + 1);
    assert_eq!(text, expected_text_tokens(cols, rows));
}

#[test]
fn model_hparams_and_vocab() {
    let pair = tiny_model();
    let model = load_model(&pair);
    assert_eq!(model.n_embd(), 64);
    assert_eq!(model.vocab().n_tokens(), 509);
    assert_eq!(model.n_layer(), 2);
    assert_eq!(model.n_head(), 4);
    assert_eq!(model.n_head_kv(), 2);
    assert_eq!(model.n_ctx_train(), 8192);
    let template = model
        .chat_template()
        .expect("default pair has a chat template");
    assert_eq!(template, vocab::CHAT_TEMPLATE);

    let llama_vocab = model.vocab();
    let ids = |text: &str| -> Vec<i32> {
        let mut tokens = Vec::new();
        llama_vocab
            .tokenize_into(text, &mut tokens, false, true)
            .unwrap();
        tokens.into_iter().map(|t| t.0).collect()
    };
    assert_eq!(ids("\n\n"), vec![468]);
    // llama.cpp's BPE agrees with the testkit's own tokenizer on the prompt's text.
    let ours = Vocab::smolvlm();
    for text in [
        "User: ",
        "Describe this image.",
        "\nAssistant:",
        "a small red house",
    ] {
        let expected: Vec<i32> = ours.tokenize(text).iter().map(|&t| t as i32).collect();
        assert_eq!(ids(text), expected, "{text:?}");
    }
    assert_eq!(
        ids("<|im_start|><fake_token_around_image><row_6_col_6><global-img><end_of_utterance>"),
        vec![1, 506, 505, 469, 508]
    );
    for eog in [vocab::ENDOFTEXT, vocab::IM_END, vocab::END_OF_UTTERANCE] {
        assert!(llama_vocab.is_eog(Token(eog as i32)), "{eog} is EOG");
    }
    assert_eq!(llama_vocab.bos(), Token(vocab::IM_START as i32));
    assert_eq!(llama_vocab.eos(), Token(vocab::END_OF_UTTERANCE as i32));
}

#[test]
fn without_chat_template_has_none() {
    let model = load_model(&tiny_model_with(&TinyModelSpec::without_chat_template()));
    assert!(model.chat_template().is_none());
}

#[test]
fn landscape_image_tiles_4x3() {
    let pair = tiny_model();
    let model = load_model(&pair);
    let vision = load_vision(&pair, &model);
    let chunks = tokenize(&vision, &images::gradient(640, 480));
    assert_layout(&chunks, 4, 3, 94, 27);
}

#[test]
fn portrait_image_tiles_2x4() {
    let pair = tiny_model();
    let model = load_model(&pair);
    let vision = load_vision(&pair, &model);
    let chunks = tokenize(&vision, &images::gradient(300, 900));
    assert_layout(&chunks, 2, 4, 71, 19);
}

#[test]
fn mismatched_pair_is_refused() {
    let pair = tiny_model_with(&TinyModelSpec::mismatched());
    let model = load_model(&pair);
    let refused = Vision::load(&model, &pair.mmproj, &vision_params(), &mut |_| true);
    assert_eq!(
        refused.unwrap_err(),
        smolvlm_engine::EngineError::VisionLoad
    );
}

#[test]
fn greedy_caption_is_deterministic_and_depends_on_the_image() {
    let pair = tiny_model();
    let model = load_model(&pair);
    let mut vision = load_vision(&pair, &model);
    let gradient = images::gradient(640, 480);
    let noise = images::noise(640, 480, 7);

    let first = caption(&model, &mut vision, &gradient);
    let again = caption(&model, &mut vision, &gradient);
    let other = caption(&model, &mut vision, &noise);

    let llama_vocab = model.vocab();
    let text = |tokens: &[Token]| -> String {
        let mut bytes = Vec::new();
        for &t in tokens {
            llama_vocab
                .token_to_piece_into(t, &mut bytes, false)
                .unwrap();
        }
        String::from_utf8(bytes).expect("caption is UTF-8")
    };
    for tokens in [&first, &other] {
        assert!(
            tokens.iter().all(|&t| !llama_vocab.is_eog(t)),
            "no end-of-generation token in {tokens:?}"
        );
        let caption = text(tokens);
        assert!(
            caption
                .bytes()
                .all(|b| b == b'\n' || (0x20..0x7f).contains(&b)),
            "caption is printable ASCII: {caption:?}"
        );
    }
    assert_eq!(first, again, "same image, same greedy caption");
    assert_ne!(
        first,
        other,
        "different images give different captions: {:?} vs {:?}",
        text(&first),
        text(&other)
    );
}

#[test]
fn f16_pair_runs() {
    let spec = TinyModelSpec {
        f16: true,
        ..TinyModelSpec::default()
    };
    let pair = tiny_model_with(&spec);
    let model = load_model(&pair);
    let mut vision = load_vision(&pair, &model);
    let tokens = caption(&model, &mut vision, &images::checkerboard(200, 150, 10));
    assert_eq!(tokens.len(), N_GENERATE);
    assert!(tokens.iter().all(|&t| !model.vocab().is_eog(t)));
}
