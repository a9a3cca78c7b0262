//! The engine layer against the testkit's tiny pair: what each handle does,
//! what it refuses before llama.cpp could abort, and stops from inside a
//! decode and an encode that leave everything usable.
//!
//! CI also runs this file under valgrind's memcheck (`.ci/run`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use smolvlm_engine::{
    default_marker, Batch, Bitmap, ChunkKind, Chunks, Context, ContextParams, EngineError, Model,
    ModelParams, Sampler, Token, Vision, VisionParams,
};
use smolvlm_testkit::{images, tiny_model, tiny_model_with, TinyModel, TinyModelSpec};

const N_BATCH: u32 = 64;

fn load(pair: &TinyModel) -> (Model, Vision) {
    let model = Model::load(&pair.model, &ModelParams::default(), &mut |_| true).unwrap();
    let vision = Vision::load(&model, &pair.mmproj, &vision_params(), &mut |_| true).unwrap();
    (model, vision)
}

fn vision_params() -> VisionParams {
    VisionParams {
        use_gpu: false,
        threads: 1,
        ..VisionParams::default()
    }
}

fn context(model: &Model) -> Context {
    let params = ContextParams {
        n_ctx: 512,
        n_batch: N_BATCH,
        n_ubatch: 16,
        threads: 1,
        threads_batch: 1,
        ..ContextParams::default()
    };
    Context::new(model, &params).unwrap()
}

fn never() -> bool {
    false
}

fn tokens(model: &Model, text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    model
        .vocab()
        .tokenize_into(text, &mut out, false, true)
        .unwrap();
    out
}

/// Decodes `tokens` from position 0, logits for the last.
fn decode(
    ctx: &mut Context,
    batch: &mut Batch,
    tokens: &[Token],
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<(), EngineError> {
    batch.clear();
    for (i, &t) in tokens.iter().enumerate() {
        batch.add(t, i as i32, i + 1 == tokens.len()).unwrap();
    }
    ctx.decode(batch, stop)
}

/// `n` greedy tokens after what the context holds, from position `pos`.
fn greedy(ctx: &mut Context, batch: &mut Batch, mut pos: i32, n: usize) -> Vec<Token> {
    let mut sampler = Sampler::new().greedy();
    let mut out = Vec::new();
    for _ in 0..n {
        let token = sampler.sample(ctx).unwrap();
        out.push(token);
        batch.clear();
        batch.add(token, pos, true).unwrap();
        ctx.decode(batch, &never).unwrap();
        pos += 1;
    }
    out
}

fn image_chunks(vision: &Vision, img: &image::RgbImage) -> Chunks {
    let bitmap = Bitmap::from_rgb(img.width(), img.height(), img.as_raw()).unwrap();
    vision
        .tokenize(&format!("User:{}Hi", default_marker()), &[&bitmap], true)
        .unwrap()
}

#[test]
fn a_stopped_decode_leaves_nothing_to_sample_and_the_context_usable() {
    let (model, _vision) = load(&tiny_model());
    let prompt = tokens(&model, "<|im_start|>User: a small red house, a cat on the roof and a dog by the door<end_of_utterance>\nAssistant:");
    assert!(
        prompt.len() > 16,
        "more than one pass of 16: {}",
        prompt.len()
    );
    let mut batch = Batch::new(N_BATCH as usize).unwrap();

    let mut ctx = context(&model);
    let stopped = decode(&mut ctx, &mut batch, &prompt, &|| true);
    assert_eq!(stopped, Err(EngineError::Interrupted));
    assert!(!ctx.has_logits());
    let mut sampler = Sampler::new().greedy();
    assert!(matches!(
        sampler.sample(&mut ctx),
        Err(EngineError::Sample(_))
    ));

    // Whatever the stop left is removed; the context then answers as a fresh one.
    assert!(ctx.remove_from(0));
    decode(&mut ctx, &mut batch, &prompt, &never).unwrap();
    let after = greedy(&mut ctx, &mut batch, prompt.len() as i32, 8);
    let mut fresh = context(&model);
    decode(&mut fresh, &mut batch, &prompt, &never).unwrap();
    assert_eq!(
        greedy(&mut fresh, &mut batch, prompt.len() as i32, 8),
        after
    );
}

#[test]
fn an_encode_is_observed_layer_by_layer_and_stops_where_asked() {
    let (model, mut vision) = load(&tiny_model());
    let chunks = image_chunks(&vision, &images::gradient(64, 64));
    let image = chunks
        .iter()
        .find(|c| c.kind() == ChunkKind::Image)
        .unwrap();

    let mut layers = Vec::new();
    vision
        .encode(
            &image,
            Some(&mut |l| {
                layers.push(l);
                true
            }),
        )
        .unwrap();
    assert_eq!(layers, vec![1, 2], "the tiny encoder has 2 layers");
    assert_eq!(vision.layers_seen(), 2);

    // Stopped after the first layer: no embeddings, and no second layer.
    let mut ctx = context(&model);
    layers.clear();
    let stopped = vision.eval_chunk(
        &mut ctx,
        &image,
        0,
        N_BATCH,
        Some(&mut |l| {
            layers.push(l);
            false
        }),
        &never,
    );
    assert_eq!(stopped, Err(EngineError::Interrupted));
    assert_eq!(layers, vec![1]);

    // The encoder is usable again, and its embeddings decode.
    let eval = vision
        .eval_chunk(&mut ctx, &image, 0, N_BATCH, None, &never)
        .unwrap();
    assert_eq!(eval.n_past, image.n_pos());
    assert!(!ctx.has_logits(), "an image leaves no logits to sample");
}

#[test]
fn an_observed_encode_gives_what_an_unobserved_one_gives() {
    let (model, mut vision) = load(&tiny_model());
    let chunks = image_chunks(&vision, &images::noise(200, 150, 5));
    let mut batch = Batch::new(N_BATCH as usize).unwrap();
    let mut caption = |observe: bool| {
        let mut ctx = context(&model);
        let mut n_past = 0;
        for chunk in chunks.iter() {
            if chunk.kind() == ChunkKind::Text {
                let tokens = chunk.text_tokens();
                batch.clear();
                for (j, &t) in tokens.iter().enumerate() {
                    batch.add(t, n_past + j as i32, true).unwrap();
                }
                ctx.decode(&batch, &never).unwrap();
                n_past += tokens.len() as i32;
            } else {
                let mut seen = 0;
                let mut count = |_| {
                    seen += 1;
                    true
                };
                let observer: Option<&mut dyn FnMut(u32) -> bool> =
                    if observe { Some(&mut count) } else { None };
                n_past = vision
                    .eval_chunk(&mut ctx, &chunk, n_past, N_BATCH, observer, &never)
                    .unwrap()
                    .n_past;
                assert_eq!(seen, if observe { 2 } else { 0 });
            }
        }
        greedy(&mut ctx, &mut batch, n_past, 8)
    };
    assert_eq!(caption(true), caption(false));
}

#[test]
fn a_panic_in_a_layer_observer_is_resumed_after_the_encode() {
    let (_model, mut vision) = load(&tiny_model());
    let chunks = image_chunks(&vision, &images::noise(64, 64, 1));
    let image = chunks
        .iter()
        .find(|c| c.kind() == ChunkKind::Image)
        .unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = vision.encode(&image, Some(&mut |_| panic!("observer")));
    }))
    .unwrap_err();
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"observer"));
    assert!(vision.encode(&image, None).is_ok());
    assert!(vision.encode(&image, Some(&mut |_| true)).is_ok());
}

#[test]
fn misuse_is_refused_before_it_reaches_llama_cpp() {
    let pair = tiny_model();
    let (model, mut vision) = load(&pair);
    let vocab = model.vocab();

    // Tokens outside the vocabulary.
    let mut piece = Vec::new();
    for bad in [Token(-1), Token(vocab.n_tokens())] {
        assert!(matches!(
            vocab.token_to_piece_into(bad, &mut piece, false),
            Err(EngineError::Token { .. })
        ));
        assert!(!vocab.is_eog(bad));
    }
    // Bitmaps that are not what they claim.
    assert!(matches!(
        Bitmap::from_rgb(2, 2, &[0; 11]),
        Err(EngineError::Bitmap { .. })
    ));
    assert!(matches!(
        Bitmap::from_rgb(0, 2, &[]),
        Err(EngineError::Bitmap { .. })
    ));
    assert!(Bitmap::decode(b"not an image").is_none());
    assert!(Bitmap::decode(b"").is_none());
    // A WAV header: mtmd's helper would make it audio, stb refuses it.
    assert!(Bitmap::decode(b"RIFF\x24\0\0\0WAVEfmt ").is_none());
    let mut png = Vec::new();
    images::gradient(7, 5)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let decoded = Bitmap::decode(&png).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (7, 5));
    assert_eq!(decoded.data(), images::gradient(7, 5).as_raw().as_slice());
    // Batches: full, empty, over n_batch.
    let mut batch = Batch::new(2).unwrap();
    batch.add(Token(1), 0, false).unwrap();
    batch.add(Token(2), 1, true).unwrap();
    assert_eq!(
        batch.add(Token(3), 2, true),
        Err(EngineError::BatchFull { capacity: 2 })
    );
    assert!(Batch::new(0).is_err());
    let mut ctx = context(&model);
    batch.clear();
    assert!(matches!(
        ctx.decode(&batch, &never),
        Err(EngineError::Invalid { .. })
    ));
    let mut big = Batch::new(N_BATCH as usize + 1).unwrap();
    for i in 0..=N_BATCH as i32 {
        big.add(Token(1), i, false).unwrap();
    }
    assert!(matches!(
        ctx.decode(&big, &never),
        Err(EngineError::Invalid { .. })
    ));
    // Markers and bitmaps that do not match.
    let img = images::gradient(64, 64);
    let bitmap = Bitmap::from_rgb(img.width(), img.height(), img.as_raw()).unwrap();
    assert!(matches!(
        vision.tokenize("no marker", &[&bitmap], true),
        Err(EngineError::Tokenize(_))
    ));
    assert!(matches!(
        vision.tokenize(default_marker(), &[], true),
        Err(EngineError::Tokenize(_))
    ));
    assert!(matches!(
        vision.tokenize("a\0b", &[], true),
        Err(EngineError::Nul)
    ));
    // A text chunk cannot be encoded; a context of another model is refused.
    let chunks = image_chunks(&vision, &img);
    let text = chunks.iter().find(|c| c.kind() == ChunkKind::Text).unwrap();
    let image = chunks
        .iter()
        .find(|c| c.kind() == ChunkKind::Image)
        .unwrap();
    assert!(matches!(
        vision.encode(&text, None),
        Err(EngineError::Invalid { .. })
    ));
    let (other, _) = load(&pair);
    let mut other_ctx = context(&other);
    assert_eq!(
        vision.eval_chunk(&mut other_ctx, &image, 0, N_BATCH, None, &never),
        Err(EngineError::ModelMismatch)
    );
    assert!(matches!(
        vision.eval_chunk(&mut ctx, &image, 0, 0, None, &never),
        Err(EngineError::Invalid { .. })
    ));
    // Sampling with no logits; a grammar llama.cpp refuses.
    assert!(matches!(
        Sampler::new().greedy().sample(&mut ctx),
        Err(EngineError::Sample(_))
    ));
    assert_eq!(
        Sampler::new()
            .grammar(&vocab, "root ::= undefined-rule", "root")
            .unwrap_err(),
        EngineError::Grammar
    );
    assert_eq!(
        Sampler::new()
            .grammar(&vocab, "root ::= \"a\"", "ro\0ot")
            .unwrap_err(),
        EngineError::Nul
    );
    assert!(smolvlm_engine::json_schema_to_grammar("{not json").is_err());
    assert!(
        smolvlm_engine::json_schema_to_grammar(r#"{"type": "string"}"#)
            .unwrap()
            .contains("root")
    );
}

#[test]
fn loads_report_progress_and_stop_when_asked() {
    let pair = tiny_model();
    let mut seen = Vec::new();
    let model = Model::load(&pair.model, &ModelParams::default(), &mut |p| {
        seen.push(p);
        true
    })
    .unwrap();
    assert_eq!(seen.last().copied(), Some(1.0), "{seen:?}");
    let mut calls = 0;
    let stopped = Model::load(&pair.model, &ModelParams::default(), &mut |_| {
        calls += 1;
        false
    });
    assert_eq!(stopped.unwrap_err(), EngineError::LoadStopped);
    assert_eq!(calls, 1);

    let stopped = Vision::load(&model, &pair.mmproj, &vision_params(), &mut |_| false);
    assert_eq!(stopped.unwrap_err(), EngineError::LoadStopped);
    let missing = Model::load(
        std::path::Path::new("/nonexistent.gguf"),
        &ModelParams::default(),
        &mut |_| true,
    );
    assert_eq!(missing.unwrap_err(), EngineError::ModelLoad);
    // A projector for another text model is refused by mtmd, not aborted on.
    let mismatched = tiny_model_with(&TinyModelSpec::mismatched());
    assert_eq!(
        Vision::load(&model, &mismatched.mmproj, &vision_params(), &mut |_| true).unwrap_err(),
        EngineError::VisionLoad
    );
}

#[test]
fn handles_outlive_what_they_were_made_from() {
    let pair = tiny_model();
    let (model, mut vision) = load(&pair);
    let mut ctx = context(&model);
    let chunks = image_chunks(&vision, &images::gradient(64, 64));
    // The model handle goes first: the context and encoder keep it alive.
    drop(model);
    let image = chunks
        .iter()
        .find(|c| c.kind() == ChunkKind::Image)
        .unwrap();
    let eval = vision
        .eval_chunk(&mut ctx, &image, 0, N_BATCH, None, &never)
        .unwrap();
    assert!(eval.n_past > 0);
    // Moved to another thread, they still work.
    std::thread::spawn(move || {
        let image = chunks
            .iter()
            .find(|c| c.kind() == ChunkKind::Image)
            .unwrap();
        vision
            .eval_chunk(&mut ctx, &image, eval.n_past, N_BATCH, None, &never)
            .unwrap();
    })
    .join()
    .unwrap();
}
