//! Opt-in checks on the testkit's shape-identical SmolVLM-256M pair: the
//! real engine at real scale, where one caption costs seconds.
//!
//! `cargo test --release --test tests real_scale -- --ignored`
//!
//! They are ignored in the ordinary suite (the tiny pair covers behaviour;
//! these add about 30 s on 2 cores) and assert what only real shapes show:
//! 64 tokens per 512-px tile, greedy runs that fill `max_tokens`, identical
//! results from sessions running side by side with their own encoders, and
//! a timed tile encode that predicts the encoder's share of a caption.

use smolvlm::{GenerationOptions, LoadOptions, Model, ModelFiles};
use smolvlm_testkit::{real_model, ProjectorType, RealShape};

use crate::util::TempDir;

fn pair() -> ModelFiles {
    let pair = real_model(RealShape::Smolvlm256M, ProjectorType::Q8_0);
    ModelFiles::new(pair.model, pair.mmproj)
}

fn photo() -> image::RgbImage {
    image::RgbImage::from_fn(1600, 1200, |x, y| {
        image::Rgb([(x / 7) as u8, (y / 5) as u8, ((x ^ y) & 0xff) as u8])
    })
}

#[test]
#[ignore = "real-scale: about 30 s; run with --ignored"]
fn a_real_shape_captions_deterministically_and_sessions_side_by_side_agree() {
    let threads = 1;
    let model = Model::load(
        &pair(),
        &LoadOptions::default()
            .with_threads(threads)
            .with_max_tiles(Some(1)),
    )
    .unwrap();
    let options = GenerationOptions::default().with_max_tokens(8);
    let img = photo();
    let mut session = model.session().unwrap();
    let first = session
        .caption(&img, "Describe this image.", &options)
        .unwrap();
    assert_eq!(first.tokens.len(), 8, "{first:?}");
    assert_eq!((first.tiles, first.image_tokens), (1, 128), "{first:?}");
    let again = session
        .caption(&img, "Describe this image.", &options)
        .unwrap();
    assert_eq!(first.tokens, again.tokens);

    // Two sessions, each with its own vision encoder, at once.
    let (a, b) = std::thread::scope(|s| {
        let run = || {
            let mut session = model.session().unwrap();
            session
                .caption(&img, "Describe this image.", &options)
                .unwrap()
                .tokens
        };
        let a = s.spawn(run);
        let b = s.spawn(run);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a, first.tokens);
    assert_eq!(b, first.tokens);

    // The encoder is nearly all of a caption, and one timed tile predicts it:
    // the caption's encode (tile + overview) is about two tile encodes.
    let tile = session.time_tile_encode().unwrap();
    let ratio = again.timings.encode.as_secs_f64() / tile.as_secs_f64();
    assert!(
        (1.0..4.0).contains(&ratio),
        "encode {:?} vs one tile {tile:?}",
        again.timings.encode
    );
    assert!(
        again.timings.encode > again.timings.prefill + again.timings.generate,
        "{:?}",
        again.timings
    );
}

#[test]
#[ignore = "real-scale: about 20 s; run with --ignored"]
fn the_cli_plans_and_captions_a_real_shape_alike() {
    let dir = TempDir::new("real-scale-cli");
    let path = dir.path("photo.png");
    photo().save(&path).unwrap();
    let files = pair();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_smolvlm"))
            .args(["caption", "--max-tiles", "1", "-n", "4", "-t", "2"])
            .arg("--model")
            .arg(&files.model)
            .arg("--mmproj")
            .arg(&files.mmproj)
            .args(extra)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let plan = run(&["--plan"]);
    let row = plan.lines().nth(1).unwrap();
    assert!(row.ends_with("\t1x1\t1\t128"), "{plan}");
    assert!(plan.contains("estimate\tone tile encode"), "{plan}");
    let record: serde_json::Value =
        serde_json::from_str(run(&["--format", "jsonl"]).trim()).unwrap();
    assert_eq!(record["tiles"], 1, "{record}");
    assert_eq!(record["image_tokens"], 128, "{record}");
    assert_eq!(record["generated_tokens"], 4, "{record}");
}
