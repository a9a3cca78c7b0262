//! Bad inputs: each a specific error, and the session still works afterwards.

use std::time::Duration;

use smolvlm::{
    CancelToken, CaptionError, Error, FileRole, ImageError, LoadError, LoadOptions, Model,
    ModelFiles, Prompt, Stage,
};
use smolvlm_testkit::images::{gradient, noise};
use smolvlm_testkit::TinyModelSpec;

use crate::util::{
    assert_captions_like_a_fresh_session, files, files_with, greedy, model, TempDir,
};

fn load_err(files: &ModelFiles) -> LoadError {
    match Model::load(files, &LoadOptions::default().with_threads(1)) {
        Err(Error::Load(e)) => e,
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[test]
fn missing_files_are_named() {
    let good = files();
    let e = load_err(&ModelFiles::new("/nonexistent/model.gguf", &good.mmproj));
    assert!(
        matches!(
            e,
            LoadError::FileNotFound {
                role: FileRole::Model,
                ..
            }
        ),
        "{e}"
    );
    let e = load_err(&ModelFiles::new(&good.model, "/nonexistent/mmproj.gguf"));
    assert!(
        matches!(
            e,
            LoadError::FileNotFound {
                role: FileRole::Mmproj,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("/nonexistent/mmproj.gguf"));
}

#[test]
fn non_gguf_and_truncated_files_are_rejected_before_llama_cpp() {
    let dir = TempDir::new("notgguf");
    let good = files();
    let text = dir.path("notes.gguf");
    std::fs::write(&text, b"this is not a model").unwrap();
    let e = load_err(&ModelFiles::new(&text, &good.mmproj));
    assert!(
        matches!(
            e,
            LoadError::Gguf {
                role: FileRole::Model,
                source: smolvlm::gguf::GgufError::BadMagic { .. },
                ..
            }
        ),
        "{e}"
    );
    let empty = dir.path("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        load_err(&ModelFiles::new(&good.model, &empty)),
        LoadError::Gguf { .. }
    ));

    // Cut the model file short, as an interrupted download would.
    let bytes = std::fs::read(&good.model).unwrap();
    let cut = dir.path("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = load_err(&ModelFiles::new(&cut, &good.mmproj));
    assert!(
        matches!(
            e,
            LoadError::Gguf {
                source: smolvlm::gguf::GgufError::Truncated { .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn swapped_model_and_mmproj_are_named_as_such() {
    let good = files();
    let e = load_err(&ModelFiles::new(&good.mmproj, &good.model));
    assert!(
        matches!(
            e,
            LoadError::WrongKind {
                expected: FileRole::Model,
                ..
            }
        ),
        "{e}"
    );
    let e = load_err(&ModelFiles::new(&good.model, &good.model));
    assert!(
        matches!(
            e,
            LoadError::WrongKind {
                expected: FileRole::Mmproj,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_mismatched_pair_names_both_sizes() {
    let bad = files_with(&TinyModelSpec::mismatched());
    let e = load_err(&bad);
    match &e {
        LoadError::NotAPair {
            model_embd,
            mmproj_embd,
            ..
        } => assert_ne!(model_embd, mmproj_embd),
        other => panic!("expected NotAPair, got {other}"),
    }
    assert!(e.to_string().contains("not a pair"));
}

#[test]
fn a_zero_sized_image_is_rejected_and_the_session_goes_on() {
    let mut session = model().session().unwrap();
    let empty = image::RgbImage::new(0, 10);
    let err = session
        .caption(&empty, "Describe this image.", &greedy())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Image(ImageError::Empty {
                width: 0,
                height: 10
            })
        ),
        "{err}"
    );
    assert_eq!(err.kind(), "image_empty");
    assert!(session
        .caption(&gradient(64, 64), "Describe this image.", &greedy())
        .is_ok());
}

#[test]
fn undecodable_image_bytes_and_missing_image_files_are_errors() {
    let mut session = model().session().unwrap();
    let junk: &[u8] = b"\x89PNG\r\n\x1a\nnot really";
    let err = session
        .caption(junk, "Describe this image.", &greedy())
        .unwrap_err();
    assert!(
        matches!(err, Error::Image(ImageError::Decode { .. })),
        "{err}"
    );
    let missing = std::path::Path::new("/nonexistent/photo.jpg");
    let err = session
        .caption(missing, "Describe this image.", &greedy())
        .unwrap_err();
    assert!(
        matches!(err, Error::Image(ImageError::Read { .. })),
        "{err}"
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error_not_an_abort() {
    // llama.cpp rounds the context up to a multiple of 256 tokens.
    let small = Model::load(
        &files(),
        &LoadOptions::default()
            .with_threads(1)
            .with_context_size(256),
    )
    .unwrap();
    let mut session = small.session().unwrap();
    let long = "Describe this image in great detail. ".repeat(60);
    let err = session
        .caption(&gradient(640, 480), long.as_str(), &greedy())
        .unwrap_err();
    match err {
        Error::Caption(CaptionError::PromptTooLong {
            tokens,
            image_tokens,
            n_ctx,
        }) => {
            assert_eq!((image_tokens, n_ctx), (52, 256));
            assert!(tokens > 256, "{tokens}");
        }
        other => panic!("expected PromptTooLong, got {other}"),
    }
    // A short prompt still fits in the same session.
    let ok = session
        .caption(&gradient(640, 480), "Hi", &greedy().with_max_tokens(4))
        .unwrap();
    assert_eq!(ok.tokens.len(), 4);
}

#[test]
fn a_batch_smaller_than_an_image_chunk_works_for_idefics3() {
    // idefics3 is causal: mtmd splits each 4-token image chunk into passes of
    // 2 and 1 tokens, and the caption is the one the full batch gives.
    let img = gradient(640, 480);
    let full = model()
        .session()
        .unwrap()
        .caption(&img, "Describe this image.", &greedy())
        .unwrap();
    for batch in [1, 2, 3] {
        let small = Model::load(
            &files(),
            &LoadOptions::default()
                .with_threads(1)
                .with_batch_size(batch),
        )
        .unwrap();
        let caption = small
            .session()
            .unwrap()
            .caption(&img, "Describe this image.", &greedy())
            .unwrap();
        assert_eq!(
            (caption.tiles, caption.image_tokens, caption.prompt_tokens),
            (full.tiles, full.image_tokens, full.prompt_tokens),
            "batch {batch}"
        );
        assert_eq!(caption.tokens.len(), full.tokens.len(), "batch {batch}");
        assert_eq!(caption.tokens, full.tokens, "batch {batch}");
    }
}

#[test]
fn a_1ms_deadline_expires_and_the_session_goes_on() {
    let mut session = model().session().unwrap();
    let big = noise(4000, 3000, 5);
    let options = greedy().with_deadline(Duration::from_millis(1));
    let err = session
        .caption(&big, "Describe this image.", &options)
        .unwrap_err();
    assert!(
        matches!(err, Error::Caption(CaptionError::DeadlineExceeded { .. })),
        "{err}"
    );
    assert_eq!(err.kind(), "deadline_exceeded");
    assert_captions_like_a_fresh_session(&mut session, &gradient(640, 480));
}

#[test]
fn cancelling_mid_generation_stops_and_the_session_goes_on() {
    let mut session = model().session().unwrap();
    let img = gradient(640, 480);
    let token = CancelToken::new();
    let options = greedy().with_max_tokens(64).with_cancel(token.clone());
    let mut pieces = 0;
    let err = session
        .caption_streaming(&img, "Describe this image.", &options, |p| {
            if !p.is_empty() {
                pieces += 1;
                token.cancel();
            }
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Caption(CaptionError::Cancelled {
                stage: Stage::Generate
            })
        ),
        "{err}"
    );
    assert!((1..64).contains(&pieces));
    assert_captions_like_a_fresh_session(&mut session, &img);
}

#[test]
fn a_cancelled_token_stops_before_any_work() {
    let mut session = model().session().unwrap();
    let token = CancelToken::new();
    token.cancel();
    let err = session
        .caption(
            &gradient(64, 64),
            "Describe this image.",
            &greedy().with_cancel(token),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Caption(CaptionError::Cancelled {
                stage: Stage::Tokenize
            })
        ),
        "{err}"
    );
}

#[test]
fn raw_prompts_need_exactly_one_marker_and_options_are_validated() {
    let mut session = model().session().unwrap();
    let img = gradient(64, 64);
    let err = session
        .caption(&img, Prompt::raw("no marker here"), &greedy())
        .unwrap_err();
    assert!(
        matches!(err, Error::Caption(CaptionError::Marker { found: 0, .. })),
        "{err}"
    );
    for bad in [
        greedy().with_max_tokens(0),
        greedy().with_temperature(-1.0),
        greedy().with_top_p(0.0),
        greedy().with_min_p(1.0),
        greedy().with_repeat_penalty(f32::NAN),
        greedy().with_stop([""]),
    ] {
        let err = session
            .caption(&img, "Describe this image.", &bad)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidOption { .. }), "{err}");
    }
    let err = Model::load(&files(), &LoadOptions::default().with_context_size(8)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                name: "context_size",
                ..
            }
        ),
        "{err}"
    );
}
