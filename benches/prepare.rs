//! Per-image preparation: our decode + orient + resize against mtmd's own
//! loader (stb_image) and scalar resize, in one run.
//!
//! `cargo bench --bench prepare`. The images are generated here; nothing is
//! downloaded. The tiny test model runs by default; see `benches/util/mod.rs`
//! for naming a real one (only its tiling parameters matter here).

// Bench code: a failure is a failed run.
#![allow(clippy::expect_used)]

#[allow(dead_code)]
mod util;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use image::ImageFormat;
use smolvlm::image::ImageOptions;

use util::{BenchModel, ImageFile, PROMPT};

fn bench(c: &mut Criterion) {
    let Some(bench_model) = BenchModel::from_env() else {
        return;
    };
    println!("{}", bench_model.describe());
    let model = bench_model.load();
    let mut ours = model.session().expect("session");
    let mut mtmd = model.session().expect("session");
    mtmd.set_image_options(ImageOptions::default().with_mtmd_loader(true));
    let mut mtmd_resize = model.session().expect("session");
    mtmd_resize.set_image_options(ImageOptions::default().with_presize(false));
    let mut prep = model.preprocessor(ImageOptions::default());
    let mut full = model.preprocessor(ImageOptions::default().with_fast_jpeg(false));

    let images = [
        ImageFile::photo(4000, 3000, ImageFormat::Jpeg),
        ImageFile::photo(640, 480, ImageFormat::Png),
    ];
    for image in &images {
        let (pixels, bytes) = (&image.pixels, image.bytes.as_slice());
        let prepared = prep.prepare(bytes.into()).expect("prepare");
        // Same tiles either way.
        let a = ours.tokenize(bytes, PROMPT).expect("tokenize");
        let b = mtmd.tokenize(bytes, PROMPT).expect("tokenize");
        assert_eq!((a.tiles, a.image_tokens), (b.tiles, b.image_tokens));

        let mut g = c.benchmark_group(format!("prepare/{}", image.name));
        g.sample_size(20).measurement_time(Duration::from_secs(6));
        // Whole preparation up to mtmd's tokens: file bytes in, chunks out.
        g.bench_function("ours: decode+orient+resize, then mtmd tokenize", |b| {
            b.iter(|| ours.tokenize(black_box(bytes), PROMPT).expect("tokenize"))
        });
        g.bench_function("mtmd: stb load+scalar resize, tokenize", |b| {
            b.iter(|| mtmd.tokenize(black_box(bytes), PROMPT).expect("tokenize"))
        });
        // The stages on their own.
        g.bench_function("ours: decode+orient+resize", |b| {
            b.iter(|| prep.prepare(black_box(bytes).into()).expect("prepare"))
        });
        g.bench_function("ours: full-scale decode+orient+resize", |b| {
            b.iter(|| full.prepare(black_box(bytes).into()).expect("prepare"))
        });
        g.bench_function("ours: resize only (decoded RGB in)", |b| {
            b.iter(|| prep.prepare(black_box(pixels).into()).expect("prepare"))
        });
        g.bench_function("mtmd: resize+tokenize (decoded RGB in)", |b| {
            b.iter(|| {
                mtmd_resize
                    .tokenize(black_box(pixels), PROMPT)
                    .expect("tokenize")
            })
        });
        g.bench_function("mtmd: tokenize of a presized image", |b| {
            b.iter(|| {
                ours.tokenize(black_box(&prepared), PROMPT)
                    .expect("tokenize")
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
