//! Per-image preparation: our decode + orient + resize against mtmd's own
//! loader (stb_image) and scalar resize, on the tiny test model, in one run.
//!
//! `cargo bench --bench prepare`. The images are generated here; nothing is downloaded.

// Bench code: a failure is a failed run.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use image::{ImageFormat, RgbImage};
use smolvlm::image::ImageOptions;
use smolvlm::{LoadOptions, Model, ModelFiles, Prompt};
use smolvlm_testkit::images::{gradient, noise};

const PROMPT: &str =
    "<|im_start|>User:<__media__>Describe this image.<end_of_utterance>\nAssistant:";

/// A camera-like picture: smooth gradients plus fine texture.
fn photo(w: u32, h: u32) -> RgbImage {
    let (g, n) = (gradient(w, h), noise(w, h, 3));
    RgbImage::from_fn(w, h, |x, y| {
        let (a, b) = (g.get_pixel(x, y), n.get_pixel(x, y));
        image::Rgb([0, 1, 2].map(|c| a[c] / 4 * 3 + b[c] / 4))
    })
}

fn encoded(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    match format {
        ImageFormat::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(img)
            .expect("encode jpeg"),
        _ => img.write_to(&mut out, format).expect("encode"),
    }
    out.into_inner()
}

fn bench(c: &mut Criterion) {
    let pair = smolvlm_testkit::tiny_model();
    let model = Model::load(
        &ModelFiles::new(pair.model, pair.mmproj),
        &LoadOptions::default().with_threads(2),
    )
    .expect("load the tiny model");
    let mut ours = model.session().expect("session");
    let mut mtmd = model.session().expect("session");
    mtmd.set_image_options(ImageOptions::default().with_mtmd_loader(true));
    let mut mtmd_resize = model.session().expect("session");
    mtmd_resize.set_image_options(ImageOptions::default().with_presize(false));
    let mut prep = model.preprocessor(ImageOptions::default());
    let mut full = model.preprocessor(ImageOptions::default().with_fast_jpeg(false));

    let cases = [
        ("jpeg-4000x3000", photo(4000, 3000), ImageFormat::Jpeg),
        ("png-640x480", photo(640, 480), ImageFormat::Png),
    ];
    for (name, pixels, format) in &cases {
        let bytes = encoded(pixels, *format);
        let prepared = prep.prepare(bytes.as_slice().into()).expect("prepare");
        // Same tiles either way.
        let a = ours
            .tokenize(bytes.as_slice(), Prompt::raw(PROMPT))
            .expect("tokenize");
        let b = mtmd
            .tokenize(bytes.as_slice(), Prompt::raw(PROMPT))
            .expect("tokenize");
        assert_eq!((a.tiles, a.image_tokens), (b.tiles, b.image_tokens));

        let mut g = c.benchmark_group(format!("prepare/{name}"));
        g.sample_size(20).measurement_time(Duration::from_secs(6));
        // Whole preparation up to mtmd's tokens: file bytes in, chunks out.
        g.bench_function("ours: decode+orient+resize, then mtmd tokenize", |b| {
            b.iter(|| {
                ours.tokenize(black_box(bytes.as_slice()), Prompt::raw(PROMPT))
                    .expect("tokenize")
            })
        });
        g.bench_function("mtmd: stb load+scalar resize, tokenize", |b| {
            b.iter(|| {
                mtmd.tokenize(black_box(bytes.as_slice()), Prompt::raw(PROMPT))
                    .expect("tokenize")
            })
        });
        // The stages on their own.
        g.bench_function("ours: decode+orient+resize", |b| {
            b.iter(|| {
                prep.prepare(black_box(bytes.as_slice()).into())
                    .expect("prepare")
            })
        });
        g.bench_function("ours: full-scale decode+orient+resize", |b| {
            b.iter(|| {
                full.prepare(black_box(bytes.as_slice()).into())
                    .expect("prepare")
            })
        });
        g.bench_function("ours: resize only (decoded RGB in)", |b| {
            b.iter(|| prep.prepare(black_box(pixels).into()).expect("prepare"))
        });
        g.bench_function("mtmd: resize+tokenize (decoded RGB in)", |b| {
            b.iter(|| {
                mtmd_resize
                    .tokenize(black_box(pixels), Prompt::raw(PROMPT))
                    .expect("tokenize")
            })
        });
        g.bench_function("mtmd: tokenize of a presized image", |b| {
            b.iter(|| {
                ours.tokenize(black_box(&prepared), Prompt::raw(PROMPT))
                    .expect("tokenize")
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
