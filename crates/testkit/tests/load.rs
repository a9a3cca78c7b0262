//! The generated pair loads and runs in llama.cpp through llama-cpp-2: keys,
//! vocab, idefics3 tiling and token layout, and a greedy decode.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::CString;
use std::num::NonZeroU32;

use common::backend;
use image::RgbImage;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::{
    mtmd_default_marker, MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputChunkType,
    MtmdInputChunks, MtmdInputText,
};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use smolvlm_testkit::vocab::{self, Vocab};
use smolvlm_testkit::{images, tiny_model, tiny_model_with, TinyModel, TinyModelSpec};

/// Tokens generated per caption: enough to show the image steers the output.
const N_GENERATE: usize = 16;
const N_BATCH: u32 = 512;

fn load_model(pair: &TinyModel) -> LlamaModel {
    LlamaModel::load_from_file(backend(), &pair.model, &LlamaModelParams::default())
        .expect("tiny model.gguf loads")
}

fn mtmd_params() -> MtmdContextParams {
    MtmdContextParams {
        use_gpu: false,
        print_timings: false,
        n_threads: 2,
        media_marker: CString::new(mtmd_default_marker()).unwrap(),
        image_min_tokens: -1,
        image_max_tokens: -1,
    }
}

fn load_mtmd(pair: &TinyModel, model: &LlamaModel) -> MtmdContext {
    MtmdContext::init_from_file(pair.mmproj.to_str().unwrap(), model, &mtmd_params())
        .expect("tiny mmproj.gguf loads")
}

/// The prompt llama-mtmd-cli renders for `-p "Describe this image."` and one image.
fn prompt() -> String {
    format!(
        "<|im_start|>User: {}Describe this image.<end_of_utterance>\nAssistant:",
        mtmd_default_marker()
    )
}

fn tokenize(mtmd: &MtmdContext, img: &RgbImage) -> MtmdInputChunks {
    let bitmap = MtmdBitmap::from_image_data(img.width(), img.height(), img.as_raw()).unwrap();
    let text = MtmdInputText {
        text: prompt(),
        add_special: false,
        parse_special: true,
    };
    mtmd.tokenize(text, &[&bitmap]).expect("mtmd tokenize")
}

/// Greedy-decodes `N_GENERATE` tokens after the prompt and `img`.
fn caption(model: &LlamaModel, mtmd: &mut MtmdContext, img: &RgbImage) -> Vec<LlamaToken> {
    let chunks = tokenize(mtmd, img);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(2048))
        .with_n_batch(N_BATCH)
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut ctx = model.new_context(backend(), params).expect("context");
    let n_prompt = chunks
        .eval_chunks(mtmd, &mut ctx, 0, 0, N_BATCH as i32, true)
        .expect("eval prompt chunks");

    let mut sampler = LlamaSampler::greedy();
    let mut batch = LlamaBatch::new(1, 1);
    let mut out = Vec::with_capacity(N_GENERATE);
    for pos in n_prompt..n_prompt + N_GENERATE as i32 {
        let token = sampler.sample(&ctx, -1);
        out.push(token);
        batch.clear();
        batch.add(token, pos, &[0], true).unwrap();
        ctx.decode(&mut batch).expect("decode");
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
fn assert_layout(chunks: &MtmdInputChunks, cols: u32, rows: u32, tokens: usize, n_chunks: usize) {
    let mut text = Vec::new();
    let mut image_chunks = 0;
    for i in 0..chunks.len() {
        let chunk = chunks.get(i).unwrap();
        match chunk.chunk_type() {
            MtmdInputChunkType::Text => {
                text.extend(chunk.text_tokens().unwrap().iter().map(|t| t.0));
            }
            MtmdInputChunkType::Image => {
                image_chunks += 1;
                assert_eq!(chunk.n_tokens(), 4, "image chunk {i}");
            }
            MtmdInputChunkType::Audio => panic!("unexpected audio chunk"),
        }
    }
    assert_eq!(chunks.total_tokens(), tokens);
    assert_eq!(chunks.len(), n_chunks);
    assert_eq!(image_chunks as u32, cols * rows + 1);
    assert_eq!(text, expected_text_tokens(cols, rows));
}

#[test]
fn model_hparams_and_vocab() {
    let pair = tiny_model();
    let model = load_model(&pair);
    assert_eq!(model.n_embd(), 64);
    assert_eq!(model.n_vocab(), 509);
    assert_eq!(model.n_layer(), 2);
    assert_eq!(model.n_head(), 4);
    assert_eq!(model.n_head_kv(), 2);
    assert_eq!(model.n_ctx_train(), 8192);
    let template = model
        .chat_template(None)
        .expect("default pair has a chat template");
    assert_eq!(template.to_str().unwrap(), vocab::CHAT_TEMPLATE);

    let llama_vocab = model.vocab();
    let ids = |text: &str| -> Vec<i32> {
        llama_vocab
            .tokenize(text.as_bytes(), false, true)
            .into_iter()
            .map(|t| t.0)
            .collect()
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
        assert!(llama_vocab.is_eog(LlamaToken(eog as i32)), "{eog} is EOG");
    }
    assert_eq!(llama_vocab.bos(), LlamaToken(vocab::IM_START as i32));
    assert_eq!(
        llama_vocab.eos(),
        LlamaToken(vocab::END_OF_UTTERANCE as i32)
    );
}

#[test]
fn without_chat_template_has_none() {
    let model = load_model(&tiny_model_with(&TinyModelSpec::without_chat_template()));
    assert!(model.chat_template(None).is_err());
}

#[test]
fn landscape_image_tiles_4x3() {
    let pair = tiny_model();
    let model = load_model(&pair);
    let mtmd = load_mtmd(&pair, &model);
    assert!(mtmd.support_vision());
    let chunks = tokenize(&mtmd, &images::gradient(640, 480));
    assert_layout(&chunks, 4, 3, 94, 27);
}

#[test]
fn portrait_image_tiles_2x4() {
    let pair = tiny_model();
    let model = load_model(&pair);
    let mtmd = load_mtmd(&pair, &model);
    let chunks = tokenize(&mtmd, &images::gradient(300, 900));
    assert_layout(&chunks, 2, 4, 71, 19);
}

#[test]
fn mismatched_pair_is_refused() {
    let pair = tiny_model_with(&TinyModelSpec::mismatched());
    let model = load_model(&pair);
    assert!(
        MtmdContext::init_from_file(pair.mmproj.to_str().unwrap(), &model, &mtmd_params()).is_err()
    );
}

#[test]
fn greedy_caption_is_deterministic_and_depends_on_the_image() {
    let pair = tiny_model();
    let model = load_model(&pair);
    let mut mtmd = load_mtmd(&pair, &model);
    let gradient = images::gradient(640, 480);
    let noise = images::noise(640, 480, 7);

    let first = caption(&model, &mut mtmd, &gradient);
    let again = caption(&model, &mut mtmd, &gradient);
    let other = caption(&model, &mut mtmd, &noise);

    let llama_vocab = model.vocab();
    let text = |tokens: &[LlamaToken]| -> String {
        let bytes: Vec<u8> = tokens
            .iter()
            .flat_map(|&t| llama_vocab.token_to_piece(t, false, None))
            .collect();
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
    let mut mtmd = load_mtmd(&pair, &model);
    let tokens = caption(&model, &mut mtmd, &images::checkerboard(200, 150, 10));
    assert_eq!(tokens.len(), N_GENERATE);
    assert!(tokens.iter().all(|&t| !model.vocab().is_eog(t)));
}
