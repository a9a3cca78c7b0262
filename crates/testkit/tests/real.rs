//! The real-size pairs: their files are as large as ggml-org's published
//! GGUFs, llama.cpp loads the text model with the real hyperparameters and
//! vocabulary, mtmd loads both mmproj types, and a 512 px tile is 64 image
//! tokens.
//!
//! The first run writes about 1.2 GB into the testkit cache (a few seconds in
//! a release build); later runs reuse it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use common::{layout, load_model, load_vision, tokenize};
use smolvlm_engine::Token;
use smolvlm_testkit::real::vocab::{self, row_col_token};
use smolvlm_testkit::{cache_dir, images, real_model, ProjectorType, RealShape, TinyModelSpec};

/// Within 3% of a published size.
fn assert_near(actual: u64, published: u64, what: &str) {
    let ratio = actual as f64 / published as f64;
    assert!(
        (0.97..=1.03).contains(&ratio),
        "{what}: {actual} bytes on disk vs {published} published ({ratio:.4})"
    );
}

/// Parameters of a `llama` text model with an untied head, counted from the
/// dimensions (what `llama_model_n_params` reports).
fn text_params(spec: &TinyModelSpec, n_vocab: u64) -> u64 {
    let embd = u64::from(spec.text_embd);
    let ff = u64::from(spec.text_ff);
    let kv = embd / u64::from(spec.text_heads) * u64::from(spec.text_kv_heads);
    let block = 2 * embd + 2 * embd * embd + 2 * embd * kv + 3 * embd * ff;
    2 * n_vocab * embd + embd + u64::from(spec.text_blocks) * block
}

#[test]
fn files_on_disk_match_the_published_sizes() {
    for shape in RealShape::ALL {
        for ty in ProjectorType::ALL {
            let pair = real_model(shape, ty);
            assert!(pair.model.starts_with(cache_dir()));
            let model = fs::metadata(&pair.model).unwrap().len();
            let mmproj = fs::metadata(&pair.mmproj).unwrap().len();
            assert_eq!(model, shape.model_file_len().unwrap(), "{shape:?} model");
            assert_eq!(
                mmproj,
                shape.mmproj_file_len(ty).unwrap(),
                "{shape:?} {ty:?}"
            );
            assert_near(model, shape.published_model_bytes(), shape.name());
            assert_near(
                mmproj,
                shape.published_mmproj_bytes(ty),
                &format!("{} {ty:?} mmproj", shape.name()),
            );
        }
        // Both projector types share one text model file.
        assert_eq!(
            real_model(shape, ProjectorType::Q8_0).model,
            real_model(shape, ProjectorType::F16).model
        );
    }

    // Cached: asking again rewrites nothing.
    let pair = real_model(RealShape::Smolvlm256M, ProjectorType::Q8_0);
    let modified = |p: &std::path::Path| fs::metadata(p).unwrap().modified().unwrap();
    let (model, mmproj) = (modified(&pair.model), modified(&pair.mmproj));
    let again = real_model(RealShape::Smolvlm256M, ProjectorType::Q8_0);
    assert_eq!(modified(&again.model), model);
    assert_eq!(modified(&again.mmproj), mmproj);
}

/// The text model has the shape's hyperparameters and the real special ids,
/// and mtmd accepts both mmproj types with it.
fn check_loads(shape: RealShape) {
    let spec = shape.spec();
    let model = load_model(&real_model(shape, ProjectorType::Q8_0));
    assert_eq!(model.n_embd(), spec.text_embd);
    assert_eq!(model.n_layer(), spec.text_blocks);
    assert_eq!(model.n_head(), spec.text_heads);
    assert_eq!(model.n_head_kv(), spec.text_kv_heads);
    assert_eq!(model.n_ctx_train(), 8192);
    assert_eq!(model.vocab().n_tokens(), vocab::VOCAB_SIZE as i32);
    assert_eq!(
        model.n_params(),
        text_params(&spec, u64::from(vocab::VOCAB_SIZE))
    );

    let llama_vocab = model.vocab();
    assert_eq!(llama_vocab.bos(), Token(vocab::IM_START as i32));
    assert_eq!(llama_vocab.eos(), Token(vocab::END_OF_UTTERANCE as i32));
    for eog in [vocab::ENDOFTEXT, vocab::IM_END, vocab::END_OF_UTTERANCE] {
        assert!(llama_vocab.is_eog(Token(eog as i32)), "{eog} is EOG");
    }
    let ids = |text: &str| -> Vec<i32> {
        let mut tokens = Vec::new();
        llama_vocab
            .tokenize_into(text, &mut tokens, false, true)
            .unwrap();
        tokens.into_iter().map(|t| t.0).collect()
    };
    assert_eq!(ids("\n\n"), vec![vocab::DOUBLE_NEWLINE as i32]);
    assert_eq!(
        ids("<|im_start|><fake_token_around_image><row_6_col_6><global-img><end_of_utterance>"),
        [
            vocab::IM_START,
            vocab::FAKE_TOKEN_AROUND_IMAGE,
            row_col_token(6, 6),
            vocab::GLOBAL_IMG,
            vocab::END_OF_UTTERANCE
        ]
        .map(|id| id as i32)
    );
    let ours = vocab::vocab();
    for text in ["User: ", "Describe this image.", "\nAssistant:"] {
        let expected: Vec<i32> = ours.tokenize(text).iter().map(|&t| t as i32).collect();
        assert_eq!(ids(text), expected, "{text:?}");
    }

    for ty in ProjectorType::ALL {
        // Loading checks the projector supports vision and fits the model.
        load_vision(&real_model(shape, ty), &model);
    }
}

#[test]
fn smolvlm_256m_loads_in_llama_cpp() {
    check_loads(RealShape::Smolvlm256M);
}

#[test]
fn smolvlm_500m_loads_in_llama_cpp() {
    check_loads(RealShape::Smolvlm500M);
}

#[test]
fn smolvlm_256m_tiles_512px_images_into_64_token_tiles() {
    let pair = real_model(RealShape::Smolvlm256M, ProjectorType::Q8_0);
    let model = load_model(&pair);
    let vision = load_vision(&pair, &model);
    let chunks = tokenize(&vision, &images::gradient(512, 512));
    let (text_tokens, image_chunks) = layout(&chunks);
    assert!(image_chunks.iter().all(|&n| n == 64), "{image_chunks:?}");
    // 512 px is upscaled to the 2048 px longest edge: 4×4 tiles and the overview.
    assert_eq!(image_chunks.len(), 17);
    assert_eq!(chunks.n_pos() as usize, text_tokens.len() + 17 * 64);

    let v = vocab::vocab();
    let mut expected = vec![vocab::IM_START];
    expected.extend(v.tokenize("User: "));
    for r in 1..=4 {
        for c in 1..=4 {
            expected.extend([vocab::FAKE_TOKEN_AROUND_IMAGE, row_col_token(r, c)]);
        }
        if r < 4 {
            expected.extend(v.tokenize("\n"));
        }
    }
    expected.extend([
        vocab::DOUBLE_NEWLINE,
        vocab::FAKE_TOKEN_AROUND_IMAGE,
        vocab::GLOBAL_IMG,
        vocab::FAKE_TOKEN_AROUND_IMAGE,
    ]);
    expected.extend(v.tokenize("Describe this image."));
    expected.push(vocab::END_OF_UTTERANCE);
    expected.extend(v.tokenize("\nAssistant:"));
    let expected: Vec<i32> = expected.into_iter().map(|id| id as i32).collect();
    assert_eq!(text_tokens, expected);
}
