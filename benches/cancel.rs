//! A cancel inside the vision encode, at real scale, and the engine knobs
//! the engine layer brought, on the testkit's shape-identical random-weight
//! pairs (their engine costs what the published models' does).
//!
//! `SMOLVLM_BENCH_THREADS=2 cargo bench --bench cancel` (about 8 minutes on
//! 2 cores for the 256M shape).
//!
//! Environment:
//! - `SMOLVLM_BENCH_SHAPES`: `256m` (default), `500m`, or both;
//! - `SMOLVLM_BENCH_THREADS`: threads (default: all cores);
//! - `SMOLVLM_BENCH_CANCELS`: cancels measured (default 20);
//! - `SMOLVLM_BENCH_SAMPLES`: runs per configuration in tables 2–4 (default 3);
//! - `SMOLVLM_BENCH_TABLES`: `cancel,observer,flash,warmup` (default all).
//!
//! Per shape it prints:
//!
//! 1. **Cancel latency.** A [`Worker`] with one session captions a 4:3 photo
//!    (1600×1200) at the full grid: 12 tiles and the overview, 13 encodes.
//!    Each job is cancelled at a random moment of its encode (uniform over
//!    the encode time measured first), and the time from [`Job::cancel`] to
//!    its `Failed` event is measured. Beside it, what the same cancel waited
//!    before the engine layer, when the first check after an image began
//!    was at its end: the rest of that image's encode (computed from the
//!    same moments).
//! 2. **The layer observer's cost.** One tile encode with the encoder
//!    observed layer by layer (the graph computed one layer at a time, as
//!    every caption does, for the cancel) against unobserved (one piece, as
//!    `llama-mtmd-cli` computes it), interleaved.
//! 3. **Vision flash attention**: `auto` (llama.cpp's default), `on`, `off`;
//!    the encode of a one-tile caption (2 encodes).
//! 4. **Warm-up** on and off: the load, the first caption and the second.

// Bench code: a failure is a failed run.
#![allow(clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod util;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use image::ImageFormat;
use smolvlm::{
    CaptionError, Error, Event, FlashAttention, JobImage, LoadOptions, Model, ModelFiles, Request,
    Stage, Worker,
};
use smolvlm_engine as engine;
use smolvlm_testkit::RealShape;

use util::{
    bench_threads as threads, env_count, greedy, median, ms, real_mmproj_type, real_shape, skip,
    wanted, ImageFile, PROMPT,
};

/// Tokens generated per caption.
const TOKENS: u32 = 16;

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// SplitMix64 in [0, 1): the cancel moments, the same on every run.
struct Moments(u64);

impl Moments {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The photo with one pixel changed by `n`: another image to the session's
/// cache, so every job encodes in full.
fn variant(photo: &image::RgbImage, n: usize) -> JobImage {
    let mut pixels = photo.clone();
    pixels.get_pixel_mut(0, 0).0 = [(n % 256) as u8, (n / 256 % 256) as u8, 7];
    JobImage::Rgb(pixels)
}

/// Table 1: cancel latency at random moments of a full-grid encode.
fn cancel_latency(model: &Model, out: &mut String) {
    let options = greedy(TOKENS);
    let worker = Worker::new(model, 1, 2).expect("worker");
    let photo = util::camera(1600, 1200);
    // The encode time the moments are drawn from.
    let full = worker
        .submit(Request::new(variant(&photo, 0), PROMPT).with_options(options.clone()))
        .expect("submit");
    let caption = full.wait().expect("an uncancelled caption");
    let encode = caption.timings.encode;
    let layer = encode / (13 * 12);
    let mut moments = Moments(0x5EED);
    let (mut ours, mut before) = (Vec::new(), Vec::new());
    let mut stages = Vec::new();
    for n in 1..=env_count("SMOLVLM_BENCH_CANCELS", 20) {
        let mut job = worker
            .submit(Request::new(variant(&photo, n), PROMPT).with_options(options.clone()))
            .expect("submit");
        // The encode begins with its first Encoding event.
        let began = loop {
            match job.next_event().expect("events") {
                Event::Encoding(_) => break Instant::now(),
                e if e.is_final() => panic!("the job ended before its encode: {e:?}"),
                _ => {}
            }
        };
        let into = encode.mul_f64(0.02 + 0.96 * moments.next());
        std::thread::sleep(into.saturating_sub(began.elapsed()));
        let cancelled = Instant::now();
        job.cancel();
        let stopped = loop {
            match job.next_event().expect("events") {
                Event::Failed(e) => break e,
                Event::Finished(_) => panic!("the job finished despite its cancel"),
                _ => {}
            }
        };
        ours.push(cancelled.elapsed());
        before.push(encode.saturating_sub(cancelled - began));
        match stopped {
            Error::Caption(CaptionError::Cancelled { stage }) => stages.push(stage),
            other => panic!("not a cancel: {other}"),
        }
    }
    let n = ours.len();
    let in_encode = stages.iter().filter(|s| **s == Stage::Encode).count();
    let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    let (our_max, before_max) = (max(&ours), max(&before));
    let _ = writeln!(
        out,
        "\nCancel latency: a 4:3 photo (1600×1200) at the full grid (12 tiles + overview = 13 encodes, {} s of encode, {} ms per encoder layer on average), {n} cancels at random moments of the encode, from Job::cancel to the Failed event\n",
        secs(encode),
        ms(layer)
    );
    let _ = writeln!(out, "| | median (s) | max (s) |");
    let _ = writeln!(out, "|---|---:|---:|");
    let _ = writeln!(
        out,
        "| checked after every encoder layer (now) | {} | {} |",
        secs(median(&mut ours)),
        secs(our_max)
    );
    let _ = writeln!(
        out,
        "| checked after each image (before: the rest of the encode) | {} | {} |",
        secs(median(&mut before)),
        secs(before_max)
    );
    let _ = writeln!(
        out,
        "\n{in_encode} of {n} cancels stopped inside the encoder (Stage::Encode), the others in the decode of its embeddings."
    );
}

/// Table 2: one tile encode, observed layer by layer and not.
fn observer_cost(files: &ModelFiles, threads: u32, out: &mut String) {
    let text = engine::Model::load(&files.model, &engine::ModelParams::default(), &mut |_| true)
        .expect("load");
    let params = engine::VisionParams {
        use_gpu: false,
        threads,
        ..engine::VisionParams::default()
    };
    let mut vision =
        engine::Vision::load(&text, &files.mmproj, &params, &mut |_| true).expect("mmproj");
    let tile = util::camera(512, 512);
    let bitmap = engine::Bitmap::from_rgb(512, 512, tile.as_raw()).expect("bitmap");
    let chunks = vision
        .tokenize(engine::default_marker(), &[&bitmap], true)
        .expect("tokenize");
    let chunk = chunks
        .iter()
        .find(|c| c.kind() == engine::ChunkKind::Image)
        .expect("an image chunk");
    let (mut observed, mut plain) = (Vec::new(), Vec::new());
    let samples = 3 * env_count("SMOLVLM_BENCH_SAMPLES", 3);
    for _ in 0..samples {
        observed.push(
            vision
                .encode(&chunk, Some(&mut |_| true))
                .expect("observed encode"),
        );
        plain.push(vision.encode(&chunk, None).expect("plain encode"));
    }
    let (a, b) = (median(&mut observed), median(&mut plain));
    let _ = writeln!(
        out,
        "\nThe layer observer: one 512-px tile encode, {threads} threads, interleaved (median of {samples})\n"
    );
    let _ = writeln!(out, "| encode | ms |");
    let _ = writeln!(out, "|---|---:|");
    let _ = writeln!(
        out,
        "| observed after each of its 12 layers (every caption) | {} |",
        ms(a)
    );
    let _ = writeln!(
        out,
        "| unobserved, one graph (llama-mtmd-cli) | {} |",
        ms(b)
    );
    let _ = writeln!(out, "| ratio | {} |", util::ratio(a, b));
}

/// Table 3: vision flash attention, on a one-tile caption's 2 encodes.
fn flash(files: &ModelFiles, threads: u32, photo: &ImageFile, out: &mut String) {
    let modes = [
        ("auto (default)", FlashAttention::Auto),
        ("on", FlashAttention::On),
        ("off", FlashAttention::Off),
    ];
    let sessions: Vec<_> = modes
        .iter()
        .map(|(_, mode)| {
            let load = LoadOptions::default()
                .with_threads(threads)
                .with_max_tiles(Some(1))
                .with_vision_flash_attention(*mode);
            let model = Model::load(files, &load).expect("load");
            model.session().expect("session")
        })
        .collect();
    let mut sessions = sessions;
    let mut encode: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
    let mut tokens = Vec::new();
    for round in 0..env_count("SMOLVLM_BENCH_SAMPLES", 3) {
        // Each round starts with another setting, so none always goes first.
        for step in 0..sessions.len() {
            let k = (round + step) % sessions.len();
            let session = &mut sessions[k];
            session.forget();
            let c = session
                .caption(photo.path.as_path(), PROMPT, &greedy(TOKENS))
                .expect("caption");
            encode[k].push(c.timings.encode);
            tokens.push((k, c.tokens));
        }
    }
    let _ = writeln!(
        out,
        "\nVision flash attention: a one-tile caption's encode (2 encodes), {threads} threads, warm, in rotating order (median of {})\n",
        encode[0].len()
    );
    let _ = writeln!(out, "| vision flash attention | encode (ms) | vs auto |");
    let _ = writeln!(out, "|---|---:|---:|");
    let base = median(&mut encode[0].clone());
    for (k, (name, _)) in modes.iter().enumerate() {
        let m = median(&mut encode[k]);
        let _ = writeln!(out, "| {name} | {} | {} |", ms(m), util::ratio(m, base));
    }
    let same = |k: usize| {
        let first = tokens.iter().find(|(j, _)| *j == 0).map(|(_, t)| t);
        tokens
            .iter()
            .filter(|(j, _)| *j == k)
            .all(|(_, t)| Some(t) == first)
    };
    let _ = writeln!(
        out,
        "\nSame greedy tokens as auto: on {}, off {}.",
        same(1),
        same(2)
    );
}

/// One warm-up setting's times.
struct WarmupRow {
    on: bool,
    load: Vec<Duration>,
    first: Vec<Duration>,
    second: Vec<Duration>,
}

/// Table 4: warm-up on and off: load, first and second caption.
fn warmup(files: &ModelFiles, threads: u32, photo: &ImageFile, out: &mut String) {
    let row = |on| WarmupRow {
        on,
        load: Vec::new(),
        first: Vec::new(),
        second: Vec::new(),
    };
    let mut rows = [row(true), row(false)];
    for _ in 0..env_count("SMOLVLM_BENCH_SAMPLES", 3) {
        for WarmupRow {
            on,
            load: load_t,
            first: first_t,
            second: second_t,
        } in &mut rows
        {
            let options = LoadOptions::default()
                .with_threads(threads)
                .with_max_tiles(Some(1))
                .with_warmup(*on);
            let started = Instant::now();
            let model = Model::load(files, &options).expect("load");
            let mut session = model.session().expect("session");
            load_t.push(started.elapsed());
            let mut caption = || {
                session.forget();
                let started = Instant::now();
                session
                    .caption(photo.path.as_path(), PROMPT, &greedy(TOKENS))
                    .expect("caption");
                started.elapsed()
            };
            first_t.push(caption());
            second_t.push(caption());
        }
    }
    let _ = writeln!(
        out,
        "\nWarm-up (the vision encoder's warm-up encode at load, and one token through each new session): {threads} threads, one-tile captions (median of {})\n",
        rows[0].load.len()
    );
    let _ = writeln!(
        out,
        "| warm-up | load + first session (ms) | first caption (ms) | second caption (ms) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for row in &mut rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            if row.on { "on (default)" } else { "off" },
            ms(median(&mut row.load)),
            ms(median(&mut row.first)),
            ms(median(&mut row.second)),
        );
    }
}

fn bench(c: &mut Criterion) {
    let list = std::env::var("SMOLVLM_BENCH_SHAPES").unwrap_or_else(|_| "256m".to_owned());
    let shapes: Vec<RealShape> = list.split(',').filter_map(real_shape).collect();
    if shapes.is_empty() {
        skip("SMOLVLM_BENCH_SHAPES names no shape (256m, 500m)");
        return;
    }
    let threads = threads();
    let photo = ImageFile::new("cancel-photo", util::camera(1600, 1200), ImageFormat::Jpeg);
    let mut group = c.benchmark_group("cancel/tile_encode");
    group.sample_size(10);
    for shape in shapes {
        let pair = smolvlm_testkit::real_model(shape, real_mmproj_type());
        let files = ModelFiles::new(pair.model, pair.mmproj);
        let mut report = format!(
            "\n## {} shape (random weights, {:?} mmproj), {} cores, {}\n",
            shape.name(),
            real_mmproj_type(),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            util::cpu_name()
        );
        let model =
            Model::load(&files, &LoadOptions::default().with_threads(threads)).expect("load");
        if wanted("cancel") {
            cancel_latency(&model, &mut report);
        }
        if wanted("observer") {
            observer_cost(&files, threads, &mut report);
        }
        if wanted("flash") {
            flash(&files, threads, &photo, &mut report);
        }
        if wanted("warmup") {
            warmup(&files, threads, &photo, &mut report);
        }
        println!("{report}");

        // Criterion: one observed tile encode (what every caption's encodes cost).
        let mut session = model.session().expect("session");
        group.bench_function(shape.name(), |b| {
            b.iter(|| session.time_tile_encode().expect("encode"));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
