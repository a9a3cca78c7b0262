//! Cold start: loading the model pair, opening a session, and the first
//! caption, as a program that captions one image and exits pays them.
//!
//! `cargo bench --bench cold_start`. The model files are read from the page
//! cache after the first iteration, as they are for a program run twice;
//! llama.cpp's backend is initialised once per process, as always.

// Bench code: a failure is a failed run.
#![allow(clippy::expect_used)]

#[allow(dead_code)]
mod util;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use image::ImageFormat;
use smolvlm::Model;

use util::{greedy, BenchModel, ImageFile, MAX_TOKENS, PROMPT};

fn bench(c: &mut Criterion) {
    let Some(bench_model) = BenchModel::from_env() else {
        return;
    };
    println!("{}", bench_model.describe());
    let image = ImageFile::photo(640, 480, ImageFormat::Png);
    let options = greedy(MAX_TOKENS);
    // The backend's one-time initialisation is not part of any iteration.
    drop(bench_model.load());

    let mut g = c.benchmark_group(format!("cold-start/{}", bench_model.label));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("load", |b| b.iter(|| bench_model.load()));
    let model = bench_model.load();
    g.bench_function("open a session", |b| {
        b.iter(|| model.session().expect("session"))
    });
    g.bench_function("load + session + first caption", |b| {
        b.iter(|| {
            let model: Model = bench_model.load();
            let mut session = model.session().expect("session");
            session
                .caption(black_box(image.path.as_path()), PROMPT, &options)
                .expect("caption")
        })
    });
    let mut warm = model.session().expect("session");
    g.bench_function("warm caption, for comparison", |b| {
        b.iter(|| {
            // Not the cached image of the last caption.
            warm.forget();
            warm.caption(black_box(image.path.as_path()), PROMPT, &options)
                .expect("caption")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
