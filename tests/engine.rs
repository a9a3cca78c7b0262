//! Engine settings (flash attention, KV cache type, pass size, mmap,
//! warm-up, vision threads), their validation, and sessions that each own a
//! vision encoder.

use std::time::Duration;

use smolvlm::{
    Caption, Error, FinishReason, FlashAttention, KvCacheType, LoadOptions, Model, ModelFiles,
};
use smolvlm_testkit::images::{gradient, noise};

use crate::util::{
    assert_captions_like_a_fresh_session, files, files_with, greedy, load, model, wide_heads,
};

/// Few tokens: every setting below loads a model of its own.
const TOKENS: u32 = 8;

/// One thread: the tests run side by side on small machines.
fn options() -> LoadOptions {
    LoadOptions::default().with_threads(1)
}

/// The first and second greedy captions of one image in one new session of
/// the tiny pair loaded with `options`.
fn first_two_captions(options: &LoadOptions) -> [Caption; 2] {
    first_two_captions_of(&files(), options)
}

fn first_two_captions_of(pair: &ModelFiles, options: &LoadOptions) -> [Caption; 2] {
    let model = Model::load(pair, options).unwrap();
    let mut session = model.session().unwrap();
    let img = gradient(640, 480);
    let generation = greedy().with_max_tokens(TOKENS);
    [(), ()].map(|()| {
        session
            .caption(&img, "Describe this image.", &generation)
            .unwrap()
    })
}

#[test]
fn every_engine_setting_fills_max_tokens_and_repeats_itself() {
    use FlashAttention::{Auto, Off, On};
    let (tiny, wide) = (files(), files_with(&wide_heads()));
    let kv = |kind| options().with_kv_cache_type(kind);
    let settings = [
        (
            "flash attention on",
            &tiny,
            options().with_flash_attention(On),
        ),
        (
            "flash attention off",
            &tiny,
            options().with_flash_attention(Off),
        ),
        (
            "f32 cache",
            &tiny,
            kv(KvCacheType::F32).with_flash_attention(On),
        ),
        (
            "f16 cache",
            &tiny,
            kv(KvCacheType::F16).with_flash_attention(On),
        ),
        (
            "bf16 cache",
            &tiny,
            kv(KvCacheType::Bf16).with_flash_attention(On),
        ),
        (
            "f32 cache, no flash attention",
            &tiny,
            kv(KvCacheType::F32).with_flash_attention(Off),
        ),
        // Quantized caches need 32-dim heads: the pair with wide heads.
        (
            "f16 cache, wide heads",
            &wide,
            kv(KvCacheType::F16).with_flash_attention(On),
        ),
        (
            "q8_0 cache",
            &wide,
            kv(KvCacheType::Q8_0).with_flash_attention(On),
        ),
        (
            "q4_0 cache",
            &wide,
            kv(KvCacheType::Q4_0).with_flash_attention(On),
        ),
        (
            "q8_0 cache, flash attention auto",
            &wide,
            kv(KvCacheType::Q8_0).with_flash_attention(Auto),
        ),
        // One token per pass: the 52 image embeddings go through one by one.
        ("ubatch 1", &tiny, options().with_ubatch_size(1)),
        ("ubatch 512", &tiny, options().with_ubatch_size(512)),
        ("mmap", &tiny, options().with_mmap(true)),
        ("no mmap", &tiny, options().with_mmap(false)),
        ("warm-up", &tiny, options().with_warmup(true)),
        ("no warm-up", &tiny, options().with_warmup(false)),
    ];
    for (label, pair, options) in settings {
        let [first, second] = first_two_captions_of(pair, &options);
        // The tiny model never samples an end-of-generation token.
        assert_eq!(first.tokens.len(), TOKENS as usize, "{label}");
        assert_eq!(first.finish, FinishReason::MaxTokens, "{label}");
        assert_eq!((first.tiles, first.image_tokens), (12, 52), "{label}");
        assert_eq!(first.tokens, second.tokens, "{label}");
        assert_eq!(first.text, second.text, "{label}");
    }
}

#[test]
fn warm_up_and_mmap_change_no_token() {
    // Same kernels, same weights: the first caption must be bit-identical
    // whether the session was warmed up and whether the weights were mapped.
    let [warm, warm_again] = first_two_captions(&options());
    assert!(options().warmup(), "warm-up is the default");
    let [cold, cold_again] = first_two_captions(&options().with_warmup(false));
    assert_eq!(warm.tokens, warm_again.tokens);
    assert_eq!(cold.tokens, cold_again.tokens);
    assert_eq!(
        warm.tokens, cold.tokens,
        "warm-up changed the first caption"
    );
    let [read, _] = first_two_captions(&options().with_mmap(false));
    assert_eq!(warm.tokens, read.tokens, "reading instead of mapping");
}

#[test]
fn vision_threads_are_reported_and_change_no_token() {
    let one = load(&options());
    assert_eq!((one.info().threads, one.info().vision_threads), (1, 1));
    let two = load(&options().with_vision_threads(2));
    assert_eq!((two.info().threads, two.info().vision_threads), (1, 2));
    let img = noise(300, 900, 3);
    let caption = |model: &Model| {
        model
            .session()
            .unwrap()
            .caption(&img, "Describe this image.", &greedy())
            .unwrap()
            .tokens
    };
    assert_eq!(caption(&one), caption(&two));
}

#[test]
fn invalid_engine_settings_fail_before_the_files_are_read() {
    let nowhere = smolvlm::ModelFiles::new("/nonexistent/model.gguf", "/nonexistent/mmproj.gguf");
    let bad = [
        (
            "kv_cache_type",
            options()
                .with_kv_cache_type(KvCacheType::Q8_0)
                .with_flash_attention(FlashAttention::Off),
        ),
        (
            "kv_cache_type",
            options()
                .with_kv_cache_type(KvCacheType::Q4_0)
                .with_flash_attention(FlashAttention::Off),
        ),
        ("ubatch_size", options().with_ubatch_size(0)),
        ("batch_size", options().with_batch_size(0)),
        ("batch_size", options().with_batch_size((1 << 20) + 1)),
    ];
    for (name, options) in &bad {
        for pair in [&nowhere, &files()] {
            let err = Model::load(pair, options).unwrap_err();
            assert_eq!(err.kind(), "invalid_option", "{name}: {err}");
            assert!(
                matches!(err, Error::InvalidOption { name: n, .. } if n == *name),
                "{name}: {err}"
            );
            if *name == "kv_cache_type" {
                assert!(err.to_string().contains("flash attention"), "{err}");
            }
        }
    }
    // Valid options with the same paths fail on the files: options come first.
    let err = Model::load(&nowhere, &options()).unwrap_err();
    assert_eq!(err.kind(), "file_not_found", "{err}");
}

#[test]
fn a_quantized_cache_that_cannot_divide_a_head_is_refused_at_load() {
    // The tiny pair's heads are 16 wide; q8_0 and q4_0 store blocks of 32.
    for kind in [KvCacheType::Q8_0, KvCacheType::Q4_0] {
        let err = Model::load(&files(), &options().with_kv_cache_type(kind)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidOption {
                    name: "kv_cache_type",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("heads of 16"), "{err}");
    }
}

#[test]
fn sessions_opened_in_a_row_and_side_by_side_caption_like_fresh_ones() {
    let (img, tall) = (gradient(640, 480), noise(300, 900, 5));
    // Each takes the spare encoder the one before gave back.
    for _ in 0..12 {
        let mut session = model().session().unwrap();
        assert_captions_like_a_fresh_session(&mut session, &img);
    }
    // Three at once: the model keeps one spare encoder, so at least two are new.
    let mut a = model().session().unwrap();
    let mut b = model().session().unwrap();
    let mut c = model().session().unwrap();
    assert_captions_like_a_fresh_session(&mut b, &tall);
    assert_captions_like_a_fresh_session(&mut a, &img);
    assert_captions_like_a_fresh_session(&mut c, &tall);
    // Closed out of order, one's encoder goes to the next session.
    drop(b);
    let mut d = model().session().unwrap();
    assert_captions_like_a_fresh_session(&mut d, &img);
    assert_captions_like_a_fresh_session(&mut a, &tall);
    drop(a);
    drop(c);
    assert_captions_like_a_fresh_session(&mut d, &tall);
}

#[test]
fn a_timed_tile_encode_takes_time_and_leaves_the_session_as_it_was() {
    let mut session = model().session().unwrap();
    // Before any caption, then between captions.
    let first = session.time_tile_encode().unwrap();
    assert!(first > Duration::ZERO);
    assert_captions_like_a_fresh_session(&mut session, &gradient(640, 480));
    let again = session.time_tile_encode().unwrap();
    assert!(again > Duration::ZERO);
    assert_captions_like_a_fresh_session(&mut session, &noise(300, 900, 2));
}

#[test]
fn a_load_reports_its_progress_and_a_false_from_the_callback_cancels_it() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    let model = smolvlm::Model::load_observed(&files(), &LoadOptions::default(), move |done| {
        log.lock().unwrap().push(done);
        true
    })
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "no progress reported");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(seen.last().copied(), Some(1.0), "{seen:?}");
    drop(model);

    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&calls);
    let err = smolvlm::Model::load_observed(&files(), &LoadOptions::default(), move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        false
    })
    .unwrap_err();
    assert_eq!(err.kind(), "load_cancelled", "{err}");
    assert!(err.is_transient());
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "asked again after a stop"
    );
    // Nothing is left behind: the same files load again.
    smolvlm::Model::load(&files(), &LoadOptions::default()).unwrap();
}
