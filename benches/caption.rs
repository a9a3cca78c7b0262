//! Per-image latency of a warm caption, by stage, against llama.cpp's own
//! image path, in one process and one run.
//!
//! `cargo bench --bench caption` (add `-- --quick` for a short run). The tiny
//! test model runs by default; see `benches/util/mod.rs` for naming a real one.
//!
//! Two sessions of one model caption the same image files with the same
//! prompt, greedily, `MAX_TOKENS` tokens:
//!
//! - **ours**: the library's default path: our decoder (EXIF orientation,
//!   reduced-scale JPEG decoding), one SIMD Lanczos3 resize to the tile grid,
//!   so mtmd's own resize has nothing left to do;
//! - **llama-mtmd-cli's path**: `ImageOptions::with_mtmd_loader(true)`, which
//!   hands the file's bytes to mtmd (`mtmd_helper_bitmap_init_from_buf`:
//!   stb_image decode) and lets mtmd's scalar resize tile it, exactly what
//!   `llama-mtmd-cli --image FILE` does.
//!
//! Both get the same tiles (checked). Criterion times the whole caption of
//! each. Encode, prefill and generation cannot be run on their own through
//! the public API, so the stage table printed after them takes the medians
//! of the library's own [`smolvlm::Timings`] over captions of both sessions,
//! interleaved so that a busy machine slows both alike. The same samples give
//! the overhead budget: the share of per-image time spent outside image
//! encode, prefill and generation.

// Bench code: a failure is a failed run.
#![allow(clippy::expect_used)]

#[allow(dead_code)]
mod util;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use image::ImageFormat;
use smolvlm::image::ImageOptions;
use smolvlm::Session;

use util::{
    greedy, interleaved, ms, stage_table, BenchModel, ImageFile, Stage, MAX_TOKENS, PROMPT,
};

fn bench(c: &mut Criterion) {
    let Some(bench_model) = BenchModel::from_env() else {
        return;
    };
    let model = bench_model.load();
    println!("{}", bench_model.describe());
    let options = greedy(MAX_TOKENS);
    let mut ours = model.session().expect("session");
    let mut mtmd = model.session().expect("session");
    mtmd.set_image_options(ImageOptions::default().with_mtmd_loader(true));
    let mut from_prepared = model.session().expect("session");
    let mut prep = model.preprocessor(ImageOptions::default());

    let images = [
        ImageFile::photo(640, 480, ImageFormat::Png),
        ImageFile::photo(4000, 3000, ImageFormat::Jpeg),
    ];
    let mut report = String::new();
    for image in &images {
        // A whole caption each time: forget the last one, or the session
        // would answer from its cached image.
        let caption = |s: &mut Session| {
            s.forget();
            s.caption(black_box(image.path.as_path()), PROMPT, &options)
                .expect("caption")
        };
        let (a, b) = (caption(&mut ours), caption(&mut mtmd));
        assert_eq!(
            (a.tiles, a.image_tokens, a.prompt_tokens),
            (b.tiles, b.image_tokens, b.prompt_tokens),
            "both paths must tile {} alike",
            image.name
        );

        let mut g = c.benchmark_group(format!("caption/{}", image.name));
        g.sample_size(10).measurement_time(Duration::from_secs(8));
        g.bench_function("ours: warm caption", |b| b.iter(|| caption(&mut ours)));
        g.bench_function("llama-mtmd-cli path: warm caption", |b| {
            b.iter(|| caption(&mut mtmd))
        });
        g.finish();

        // A prepared image is what a pipelined batch hands the session: the
        // decode and resize ran on another thread.
        let prepared = prep
            .prepare(image.bytes.as_slice().into())
            .expect("prepare");
        let n = bench_model.samples();
        let [ours_s, mtmd_s, prepared_s] = interleaved(
            n,
            &mut [
                &mut || caption(&mut ours),
                &mut || caption(&mut mtmd),
                &mut || {
                    from_prepared.forget();
                    from_prepared
                        .caption(black_box(&prepared), PROMPT, &options)
                        .expect("caption")
                },
            ],
        );
        report += &stage_table(
            &format!(
                "{}: {} tiles + overview, {} image tokens, {} prompt tokens, {MAX_TOKENS} generated",
                image.name, a.tiles, a.image_tokens, a.prompt_tokens
            ),
            ("ours", &ours_s),
            ("llama-mtmd-cli path", &mtmd_s),
        );
        report += &format!(
            "| generate, per token | {} | {} | |\n",
            ms(ours_s.median(Stage::Generate) / MAX_TOKENS),
            ms(mtmd_s.median(Stage::Generate) / MAX_TOKENS)
        );
        report += &format!(
            "\noverhead outside encode, prefill and generate (goal ≤ 3 %): \
             ours from the file {:.1} %, ours from a prepared image {:.1} %, \
             llama-mtmd-cli path {:.1} %\n",
            ours_s.overhead() * 100.0,
            prepared_s.overhead() * 100.0,
            mtmd_s.overhead() * 100.0
        );
    }
    println!("\n{}{report}", bench_model.describe());
}

criterion_group!(benches, bench);
criterion_main!(benches);
