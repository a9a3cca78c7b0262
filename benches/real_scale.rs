//! Real-scale figures: the testkit's shape-identical, random-weight
//! SmolVLM-256M and -500M pairs, whose engine costs what the published
//! models' does (random weights change the text, not the arithmetic).
//!
//! `SMOLVLM_MTMD_CLI=$(sh scripts/build-mtmd-cli.sh | tail -n 1) cargo bench --bench real_scale`
//!
//! Environment:
//! - `SMOLVLM_BENCH_SHAPES`: `256m`, `500m` or `256m,500m` (default `256m`);
//! - `SMOLVLM_BENCH_MMPROJ_TYPE`: `q8_0` (default) or `f16`;
//! - `SMOLVLM_BENCH_THREADS`: threads (default: all cores);
//! - `SMOLVLM_BENCH_TABLES`: the tables to print, comma-separated
//!   (`per_image,stages,throughput,tiles,engine,follow_up,video`; default all);
//! - `SMOLVLM_BENCH_SAMPLES`: runs per configuration in the tables (default 3);
//! - `SMOLVLM_BENCH_ENGINE=1`: also table 5, each engine setting against
//!   the defaults;
//! - `SMOLVLM_MTMD_CLI`: llama.cpp's `llama-mtmd-cli`, built by
//!   `scripts/build-mtmd-cli.sh` against the static libraries of the
//!   library's own llama.cpp build (the same objects, so the same kernels).
//!   Without it the comparison rows say they were skipped.
//!
//! Per shape it prints, every figure measured in this run, interleaved so a
//! busy machine slows both sides alike:
//!
//! 1. **Per image, a batch of 3 at one tile**: one `smolvlm caption` process
//!    over 3 JPEGs (1600×1200, `--max-tiles 1`, 16 tokens) against
//!    `llama-mtmd-cli` run once per image (`--image-max-tokens 64`), whole
//!    processes, wall time per image, and each side's peak RSS.
//! 2. **Where a warm caption's time goes**: the library's stage timings
//!    (encode = the vision encoder alone, prefill, generate) and the share
//!    left outside the engine.
//! 3. **Batch throughput**: `smolvlm caption --parallel 1`, `2` and `auto`
//!    over 4 images at one tile: images per minute and peak RSS (the cost of
//!    an extra session).
//! 4. **The token budget as the speed dial**: a 4:3 photo at `--max-tiles`
//!    1, 2, 4, 6 and 12: seconds per image and image tokens.
//!
//! 6. **A follow-up**: a conversation about a 4:3 photo at the full grid;
//!    the follow-up's time against the first turn's, and a fresh session
//!    given the whole conversation.
//!
//! 7. **A video**: 16 frames of 640×360 at 2 fps (8 s), asked about with
//!    `smolvlm ask --video` (SmolVLM2's sampling: 8 frames, each one
//!    overview encode) against the same 8 frames given to llama-mtmd-cli
//!    as images, at one tile (`--image-max-tokens 64`, its cheapest) and
//!    as given (tiled as a photo is, run once): seconds per frame (whole
//!    processes, and the vision encoder alone) and image tokens per frame.
//!
//! Criterion itself times one warm one-tile caption per shape
//! (`real_scale/caption_1_tile/<shape>`).

// Bench code: a failure is a failed run.
#![allow(clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod util;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use image::ImageFormat;
use smolvlm::{LoadOptions, Model, ModelFiles};
use smolvlm_testkit::RealShape;

use util::{
    bench_threads as threads, env_count, greedy, median, ms, ratio, real_mmproj_type, real_shape,
    skip, wanted, ImageFile, Samples, Stage, PROMPT,
};

/// Tokens generated per caption.
const TOKENS: u32 = 16;

fn shapes() -> Vec<RealShape> {
    let list = std::env::var("SMOLVLM_BENCH_SHAPES").unwrap_or_else(|_| "256m".to_owned());
    list.split(',').filter_map(real_shape).collect()
}

fn samples() -> usize {
    env_count("SMOLVLM_BENCH_SAMPLES", 3)
}

fn mtmd_cli() -> Option<PathBuf> {
    std::env::var_os("SMOLVLM_MTMD_CLI")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
}

/// Distinct 4:3 camera-like JPEGs.
fn photos(n: usize) -> Vec<ImageFile> {
    (0..n)
        .map(|i| {
            let mut pixels = util::camera(1600, 1200);
            // Make each image different, so no layer could reuse another's work.
            for (k, px) in pixels.pixels_mut().enumerate().skip(i).step_by(97) {
                px.0[k % 3] = px.0[k % 3].wrapping_add(40 * (i as u8 + 1));
            }
            ImageFile::new(&format!("real-{i}"), pixels, ImageFormat::Jpeg)
        })
        .collect()
}

/// A finished child process: wall time and peak resident memory.
struct Run {
    wall: Duration,
    peak_rss_kb: u64,
}

/// Runs `cmd` to completion, quietly, and measures it. `wait4` gives this
/// child's own peak RSS, which `std::process` does not expose.
// `wait4` reaps the child; clippy cannot see that.
#[allow(clippy::zombie_processes)]
fn run(cmd: &mut Command) -> Run {
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unwaited child; `status` and `usage` are valid
    // for writes for the duration of the call.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(waited, pid, "wait4 failed for {cmd:?}");
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr {
            use std::io::Read as _;
            let _ = err.read_to_string(&mut stderr);
        }
        panic!("{cmd:?} failed (status {status}):\n{stderr}");
    }
    Run {
        wall,
        peak_rss_kb: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    }
}

fn smolvlm(files: &ModelFiles, threads: u32) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smolvlm"));
    cmd.arg("caption")
        .arg("--model")
        .arg(&files.model)
        .arg("--mmproj")
        .arg(&files.mmproj)
        .args(["-n", &TOKENS.to_string(), "-p", PROMPT, "--quiet"])
        .args(["--format", "jsonl", "--threads", &threads.to_string()]);
    cmd
}

fn mtmd(cli: &Path, files: &ModelFiles, threads: u32, image: &Path, max_tokens: u32) -> Command {
    let mut cmd = Command::new(cli);
    cmd.arg("-m")
        .arg(&files.model)
        .arg("--mmproj")
        .arg(&files.mmproj)
        .arg("--image")
        .arg(image)
        .args(["-p", PROMPT, "-n", &TOKENS.to_string(), "--temp", "0"])
        .args(["--seed", "1", "-t", &threads.to_string()])
        .args(["--image-max-tokens", &max_tokens.to_string()])
        // Our sessions' context size (mtmd-cli's default is the model's 8192).
        .args(["-c", "4096"]);
    cmd
}

/// The median of peak RSS figures, in KB: one figure varies by a few MB
/// from run to run (page cache, transparent huge pages).
fn median_kb(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn mb(kb: u64) -> String {
    format!("{:.0}", kb as f64 / 1024.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

/// `smolvlm caption` as table 1 runs it: one session with all the threads,
/// as llama-mtmd-cli runs (the CLI's `auto` would run one session per
/// core), one tile, the output file next.
const ONE_SESSION_ONE_TILE: [&str; 6] = [
    "--parallel",
    "1",
    "--max-tiles",
    "1",
    "--overwrite",
    "--output",
];

/// Table 1: a batch of 3 at one tile, against llama-mtmd-cli once per image.
fn per_image(files: &ModelFiles, threads: u32, out: &mut String) {
    let images = photos(3);
    let paths: Vec<&Path> = images.iter().map(|i| i.path.as_path()).collect();
    let cli = mtmd_cli();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut our_rss, mut their_rss) = (Vec::new(), Vec::new());
    let (mut one, mut one_rss) = (Vec::new(), Vec::new());
    for _ in 0..samples() {
        let run_ours = run(smolvlm(files, threads)
            .args(ONE_SESSION_ONE_TILE)
            .arg(std::env::temp_dir().join("smolvlm-real-scale.jsonl"))
            .args(&paths));
        ours.push(run_ours.wall / 3);
        our_rss.push(run_ours.peak_rss_kb);
        let single = run(smolvlm(files, threads)
            .args(ONE_SESSION_ONE_TILE)
            .arg(std::env::temp_dir().join("smolvlm-real-scale-1.jsonl"))
            .arg(paths[0]));
        one.push(single.wall);
        one_rss.push(single.peak_rss_kb);
        if let Some(cli) = &cli {
            let mut wall = Duration::ZERO;
            for path in &paths {
                let r = run(&mut mtmd(cli, files, threads, path, 64));
                wall += r.wall;
                their_rss.push(r.peak_rss_kb);
            }
            theirs.push(wall / 3);
        }
    }
    let (a, b) = (median(&mut ours), median(&mut theirs));
    let _ = writeln!(
        out,
        "\nPer image, a batch of 3 JPEGs (1600×1200) at --max-tiles 1, {TOKENS} tokens, {threads} threads, whole processes (medians of {} runs)\n",
        ours.len()
    );
    let _ = writeln!(out, "| | s per image | peak RSS (MB) |");
    let _ = writeln!(out, "|---|---:|---:|");
    let _ = writeln!(
        out,
        "| smolvlm caption (loads once) | {} | {} |",
        secs(a),
        mb(median_kb(&mut our_rss))
    );
    let _ = writeln!(
        out,
        "| smolvlm caption, one image | {} | {} |",
        secs(median(&mut one)),
        mb(median_kb(&mut one_rss))
    );
    if cli.is_some() {
        let _ = writeln!(
            out,
            "| llama-mtmd-cli, once per image | {} | {} |",
            secs(b),
            mb(median_kb(&mut their_rss))
        );
        let _ = writeln!(out, "| ratio | {} | |", ratio(a, b));
    } else {
        let _ = writeln!(out, "| llama-mtmd-cli | skipped: set SMOLVLM_MTMD_CLI | |");
    }
}

/// Table 2: a warm caption's stages, from the library's own timings.
fn stages(model: &Model, out: &mut String) {
    let images = photos(3);
    let mut session = model.session().expect("session");
    let options = greedy(TOKENS);
    session
        .caption(images[0].path.as_path(), PROMPT, &options)
        .expect("warm-up caption");
    let mut captions = Samples::default();
    for _ in 0..samples() {
        for image in &images {
            let started = Instant::now();
            let caption = session
                .caption(image.path.as_path(), PROMPT, &options)
                .expect("caption");
            captions.push(caption.timings, started.elapsed());
        }
    }
    let _ = writeln!(
        out,
        "\nA warm caption at --max-tiles 1 (library timings, median of {} captions, ms)\n",
        captions.len()
    );
    let _ = writeln!(out, "| stage | ms |");
    let _ = writeln!(out, "|---|---:|");
    for (name, d) in [
        (
            "decode + resize",
            captions.median_of(|t| t.decode + t.resize),
        ),
        ("tokenize", captions.median_of(|t| t.tokenize)),
        (
            "vision encode (2 tiles: 1 + overview)",
            captions.median(Stage::Encode),
        ),
        (
            "prefill (text + image embeddings)",
            captions.median(Stage::Prefill),
        ),
        ("generate", captions.median(Stage::Generate)),
        ("whole caption", captions.median(Stage::Total)),
    ] {
        let _ = writeln!(out, "| {name} | {} |", ms(d));
    }
    let _ = writeln!(
        out,
        "\nEngine (encode + prefill + generate): {} ms; time outside it: {:.2}% of a caption.",
        ms(captions.median_of(|t| t.encode + t.prefill + t.generate)),
        captions.overhead() * 100.0
    );
}

/// Table 7: a clip of 16 frames at 2 fps, through `smolvlm ask --video`
/// (the 8 frames SmolVLM2's rule samples, one overview encode each) and
/// through llama-mtmd-cli given the same 8 frames as images, the only way
/// to show it frames today (each frame tiled as a photo is).
fn video(files: &ModelFiles, threads: u32, out: &mut String) {
    const FRAMES: u32 = 16;
    const RATE: f64 = 2.0;
    const ASK: &str = "What happens in this video?";
    let dir = std::env::temp_dir().join("smolvlm-real-scale-video");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("frame folder");
    let frames: Vec<PathBuf> = (0..FRAMES)
        .map(|i| {
            let mut pixels = util::camera(640, 360);
            // The scene drifts a little each frame.
            for (k, px) in pixels.pixels_mut().enumerate().skip(i as usize).step_by(89) {
                px.0[k % 3] = px.0[k % 3].wrapping_add(9 * (i as u8 + 1));
            }
            let path = dir.join(format!("frame-{i:03}.png"));
            pixels.save(&path).expect("frame");
            path
        })
        .collect();
    let picked =
        smolvlm::video::sample_indices(u64::from(FRAMES), RATE, f64::from(FRAMES) / RATE, 1.0, 64);
    let shown: Vec<&Path> = picked
        .iter()
        .map(|&i| frames[i as usize].as_path())
        .collect();
    let n = shown.len() as u32;
    let record = std::env::temp_dir().join("smolvlm-real-scale-video.json");
    let cli = mtmd_cli();
    let mut ours = (Vec::new(), Vec::new());
    let mut one_tile = (Vec::new(), Vec::new());
    let mut ours_tokens = 0;
    for _ in 0..samples() {
        let r = run(Command::new(env!("CARGO_BIN_EXE_smolvlm"))
            .arg("ask")
            .arg("--model")
            .arg(&files.model)
            .arg("--mmproj")
            .arg(&files.mmproj)
            .arg("--video")
            .arg(&dir)
            .args(["--frame-rate", &RATE.to_string(), "-p", ASK])
            .args(["-n", &TOKENS.to_string(), "--threads", &threads.to_string()])
            .arg("-o")
            .arg(&record));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).expect("record")).expect("JSON");
        assert_eq!(json["frames"], n, "{json}");
        ours_tokens = json["image_tokens"].as_u64().unwrap_or(0);
        ours.0.push(r.wall / n);
        let encode_ms = json["ms"]["encode"].as_f64().unwrap_or(0.0);
        ours.1.push(Duration::from_secs_f64(encode_ms / 1e3) / n);
        if let Some(cli) = &cli {
            let (wall, encode) = mtmd_frames(cli, files, threads, &shown, ASK, Some(64));
            one_tile.0.push(wall / n);
            one_tile.1.push(encode / n);
        }
    }
    // The frames as a user would give them: each tiled as a photo is. Run
    // once: at about 13 encodes a frame it is far from the others.
    let full = cli
        .as_ref()
        .map(|cli| mtmd_frames(cli, files, threads, &shown, ASK, None));
    // What the frame costs as an image, at the full grid and at one tile.
    let tokens_at = |max_tiles: Option<u32>| {
        let options = LoadOptions::default()
            .with_threads(threads)
            .with_max_tiles(max_tiles);
        Model::load(files, &options)
            .expect("load")
            .session()
            .expect("session")
            .tokenize(shown[0], PROMPT)
            .expect("tokenize")
    };
    let (grid, single) = (tokens_at(None), tokens_at(Some(1)));
    let per_frame = ours_tokens / u64::from(n);
    let _ = writeln!(
        out,
        "\nA video: {FRAMES} frames of 640×360 at {RATE} fps, {n} sampled, {TOKENS} tokens, {threads} threads, whole processes (medians of {} runs)\n",
        ours.0.len()
    );
    let _ = writeln!(
        out,
        "| | s per frame | vision encode, s per frame | image tokens per frame |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let (a, ae) = (median(&mut ours.0), median(&mut ours.1));
    let _ = writeln!(
        out,
        "| smolvlm ask --video (one overview per frame) | {} | {} | {per_frame} |",
        secs(a),
        secs(ae)
    );
    let Some((full_wall, full_encode)) = full else {
        let _ = writeln!(
            out,
            "| llama-mtmd-cli | skipped: set SMOLVLM_MTMD_CLI | | |"
        );
        return;
    };
    let (b, be) = (median(&mut one_tile.0), median(&mut one_tile.1));
    let _ = writeln!(
        out,
        "| llama-mtmd-cli, the frames as images at one tile (`--image-max-tokens 64`: {} tile + overview) | {} | {} | {} |",
        single.tiles,
        secs(b),
        secs(be),
        single.image_tokens
    );
    let _ = writeln!(
        out,
        "| ratio | {} | {} | {:.2} |",
        ratio(a, b),
        ratio(ae, be),
        per_frame as f64 / single.image_tokens.max(1) as f64
    );
    let (c, ce) = (full_wall / n, full_encode / n);
    let _ = writeln!(
        out,
        "| llama-mtmd-cli, the frames as images as given ({} tiles + overview; 1 run) | {} | {} | {} |",
        grid.tiles,
        secs(c),
        secs(ce),
        grid.image_tokens
    );
    let _ = writeln!(
        out,
        "| ratio | {} | {} | {:.2} |",
        ratio(a, c),
        ratio(ae, ce),
        per_frame as f64 / grid.image_tokens.max(1) as f64
    );
}

/// llama-mtmd-cli given `frames` as images, in one process: its wall time
/// and the vision encoder's time from its log.
fn mtmd_frames(
    cli: &Path,
    files: &ModelFiles,
    threads: u32,
    frames: &[&Path],
    prompt: &str,
    max_tokens: Option<u32>,
) -> (Duration, Duration) {
    let log = std::env::temp_dir().join("smolvlm-real-scale-mtmd.log");
    let mut cmd = Command::new(cli);
    cmd.arg("-m")
        .arg(&files.model)
        .arg("--mmproj")
        .arg(&files.mmproj);
    for frame in frames {
        cmd.arg("--image").arg(frame);
    }
    if let Some(max) = max_tokens {
        cmd.args(["--image-max-tokens", &max.to_string()]);
    }
    cmd.args(["-p", prompt, "-n", &TOKENS.to_string(), "--temp", "0"])
        .args(["--seed", "1", "-t", &threads.to_string(), "-c", "8192"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let started = Instant::now();
    let status = cmd.status().expect("llama-mtmd-cli");
    let wall = started.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "llama-mtmd-cli failed:\n{text}");
    // Each encode is logged: "mtmd batch encoding done in N ms" (or, by
    // older helpers, "... slice encoded in N ms").
    let encode_ms: u64 = text
        .lines()
        .filter_map(|l| {
            l.split("encoding done in ")
                .nth(1)
                .or_else(|| l.split("slice encoded in ").nth(1))
        })
        .filter_map(|rest| rest.trim_end_matches(" ms").trim().parse::<u64>().ok())
        .sum();
    (wall, Duration::from_millis(encode_ms))
}

/// Table 6: a conversation about a 4:3 photo at the full grid (12 tiles +
/// the overview): the first turn encodes the photo, a follow-up evaluates
/// only its own turn. Each row is one session; a fresh session given the
/// whole conversation at once is the baseline a follow-up replaces.
fn follow_up(files: &ModelFiles, threads: u32, out: &mut String) {
    let model = Model::load(files, &LoadOptions::default().with_threads(threads)).expect("load");
    let image = &photos(1)[0];
    let options = greedy(TOKENS);
    let mut first = Samples::default();
    let mut next = Samples::default();
    let mut whole = Samples::default();
    let mut cached = Vec::new();
    for _ in 0..samples() {
        let mut session = model.session().expect("session");
        let mut chat = smolvlm::Conversation::new();
        chat.user([image.path.clone()], PROMPT);
        let started = Instant::now();
        let a = session.reply(&mut chat, &options).expect("first turn");
        first.push(a.timings, started.elapsed());
        chat.user_text("What colours are in it?");
        let asked = chat.clone();
        let started = Instant::now();
        let b = session.reply(&mut chat, &options).expect("follow-up");
        next.push(b.timings, started.elapsed());
        assert_eq!(b.images_encoded, 0, "a follow-up encoded the photo again");
        cached.push((b.cached_tokens, b.prompt_tokens));
        let mut fresh = model.session().expect("session");
        let mut asked = asked;
        let started = Instant::now();
        let c = fresh
            .reply(&mut asked, &options)
            .expect("whole conversation");
        whole.push(c.timings, started.elapsed());
        assert_eq!(b.tokens, c.tokens, "a follow-up answered differently");
    }
    let (t_first, t_next, t_whole) = (
        first.median(Stage::Total),
        next.median(Stage::Total),
        whole.median(Stage::Total),
    );
    let _ = writeln!(
        out,
        "\nA follow-up about a 1600×1200 photo at the full grid ({} tokens each turn, median of {}):\n",
        TOKENS,
        next.len()
    );
    let _ = writeln!(out, "| turn | ms | of the first turn |");
    let _ = writeln!(out, "|---|---:|---:|");
    let _ = writeln!(
        out,
        "| first turn (encodes the photo) | {} | 100% |",
        ms(t_first)
    );
    let _ = writeln!(
        out,
        "| follow-up, same session | {} | {:.2}% |",
        ms(t_next),
        100.0 * t_next.as_secs_f64() / t_first.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| the same question, fresh session given the whole conversation | {} | {:.0}% |",
        ms(t_whole),
        100.0 * t_whole.as_secs_f64() / t_first.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "\nThe follow-up reused {:?} (cached of prompt tokens) from the KV cache; its answer equals the fresh session's.",
        cached
    );
}

/// Table 3: batch throughput by --parallel.
fn throughput(files: &ModelFiles, out: &mut String) {
    let images = photos(4);
    let paths: Vec<&Path> = images.iter().map(|i| i.path.as_path()).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let configs = ["1", "2", "auto"];
    let mut walls: Vec<Vec<Duration>> = vec![Vec::new(); configs.len()];
    let mut rss: Vec<Vec<u64>> = vec![Vec::new(); configs.len()];
    for _ in 0..samples() {
        for (k, parallel) in configs.iter().enumerate() {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_smolvlm"));
            cmd.arg("caption")
                .arg("--model")
                .arg(&files.model)
                .arg("--mmproj")
                .arg(&files.mmproj)
                .args(["-n", &TOKENS.to_string(), "-p", PROMPT, "--quiet"])
                .args(["--max-tiles", "1", "--parallel", parallel, "--overwrite"])
                .arg("--output")
                .arg(std::env::temp_dir().join("smolvlm-real-scale-tp.jsonl"))
                .args(&paths);
            let r = run(&mut cmd);
            walls[k].push(r.wall);
            rss[k].push(r.peak_rss_kb);
        }
    }
    let _ = writeln!(
        out,
        "\nBatch throughput: 4 JPEGs at --max-tiles 1, {TOKENS} tokens, {cores} cores, threads split between sessions (median of {} runs)\n",
        walls[0].len()
    );
    let _ = writeln!(
        out,
        "| --parallel | wall (s) | images/min | vs --parallel 1 | peak RSS (MB) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    let base = median(&mut walls[0].clone());
    for (k, parallel) in configs.iter().enumerate() {
        let wall = median(&mut walls[k]);
        let _ = writeln!(
            out,
            "| {parallel} | {} | {:.1} | {} | {} |",
            secs(wall),
            4.0 * 60.0 / wall.as_secs_f64(),
            ratio(base, wall).replace('×', "× throughput"),
            mb(median_kb(&mut rss[k]))
        );
    }
}

/// Table 5: the engine settings, each against the defaults, at --max-tiles 4
/// (a 4:3 photo gets a 2×1 grid: 3 encodes, about 210 prompt tokens).
fn engine_settings(files: &ModelFiles, threads: u32, out: &mut String) {
    use smolvlm::{FlashAttention, KvCacheType};
    let photo = &photos(1)[0];
    let options = greedy(TOKENS);
    let base = LoadOptions::default()
        .with_threads(threads)
        .with_max_tiles(Some(4));
    let variants: Vec<(&str, LoadOptions)> = vec![
        (
            "defaults (flash attention auto = on, n_ubatch 512, F16 KV)",
            base.clone(),
        ),
        (
            "flash attention off",
            base.clone().with_flash_attention(FlashAttention::Off),
        ),
        ("n_ubatch 128", base.clone().with_ubatch_size(128)),
        ("n_ubatch 2048", base.clone().with_ubatch_size(2048)),
        (
            "KV cache q8_0",
            base.clone().with_kv_cache_type(KvCacheType::Q8_0),
        ),
        ("no mmap", base.clone().with_mmap(false)),
        (
            "vision 2 threads, text 1 (on 2 cores)",
            base.clone().with_threads(1).with_vision_threads(threads),
        ),
    ];
    let _ = writeln!(
        out,
        "\nEngine settings: one 4:3 photo at --max-tiles 4 (a 2×1 grid + overview), {threads} threads, warm (median of {} captions, ms)\n",
        samples()
    );
    let _ = writeln!(
        out,
        "| setting | encode | prefill | generate | whole caption | first caption of a new session |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for (name, load) in variants {
        let model = Model::load(files, &load).expect("load");
        let mut session = model.session().expect("session");
        let first = session
            .caption(photo.path.as_path(), PROMPT, &options)
            .expect("caption")
            .timings
            .total;
        let mut captions = Samples::default();
        for _ in 0..samples() {
            // A whole caption: not the cached image of the last one.
            session.forget();
            let started = Instant::now();
            let caption = session
                .caption(photo.path.as_path(), PROMPT, &options)
                .expect("caption");
            captions.push(caption.timings, started.elapsed());
        }
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} |",
            ms(captions.median(Stage::Encode)),
            ms(captions.median(Stage::Prefill)),
            ms(captions.median(Stage::Generate)),
            ms(captions.median(Stage::Total)),
            ms(first),
        );
    }
    // Warm-up: the first caption of a session without it.
    let model = Model::load(files, &base.clone().with_warmup(false)).expect("load");
    let mut session = model.session().expect("session");
    let first = session
        .caption(photo.path.as_path(), PROMPT, &options)
        .expect("caption")
        .timings
        .total;
    let _ = writeln!(out, "| no warm-up | | | | | {} |", ms(first));
}

/// Table 4: seconds and image tokens per 4:3 photo by tile budget.
fn tiles(files: &ModelFiles, threads: u32, out: &mut String) {
    let photo = &photos(1)[0];
    let options = greedy(TOKENS);
    let _ = writeln!(
        out,
        "\nThe token budget: one 4:3 photo (1600×1200) by --max-tiles, warm, {threads} threads (median of {} captions)\n",
        samples()
    );
    let _ = writeln!(
        out,
        "| --max-tiles | grid | image tokens | s per image | vision encode (s) |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for budget in [Some(1), Some(2), Some(4), Some(6), Some(12), None] {
        let load = LoadOptions::default()
            .with_threads(threads)
            .with_max_tiles(budget);
        let model = Model::load(files, &load).expect("load");
        let mut session = model.session().expect("session");
        let plan = model
            .preprocessor(smolvlm::image::ImageOptions::default())
            .plan_file(&photo.path)
            .expect("plan");
        let (mut total, mut encode) = (Vec::new(), Vec::new());
        for _ in 0..samples() {
            session.forget();
            let c = session
                .caption(photo.path.as_path(), PROMPT, &options)
                .expect("caption");
            total.push(c.timings.total);
            encode.push(c.timings.encode);
        }
        let _ = writeln!(
            out,
            "| {} | {}×{} + overview | {} | {} | {} |",
            budget.map_or_else(|| "none".to_owned(), |b| b.to_string()),
            plan.cols,
            plan.rows,
            plan.image_tokens,
            secs(median(&mut total)),
            secs(median(&mut encode)),
        );
    }
}

fn bench(c: &mut Criterion) {
    let shapes = shapes();
    if shapes.is_empty() {
        skip("SMOLVLM_BENCH_SHAPES names no shape (256m, 500m)");
        return;
    }
    let threads = threads();
    let mut group = c.benchmark_group("real_scale/caption_1_tile");
    group.sample_size(10);
    for &shape in &shapes {
        let pair = smolvlm_testkit::real_model(shape, real_mmproj_type());
        let files = ModelFiles::new(pair.model, pair.mmproj);
        let mut report = format!(
            "\n## {} shape (random weights, {:?} mmproj), {} cores, {}\n",
            shape.name(),
            real_mmproj_type(),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            util::cpu_name()
        );
        if wanted("per_image") {
            per_image(&files, threads, &mut report);
        }
        let model = Model::load(
            &files,
            &LoadOptions::default()
                .with_threads(threads)
                .with_max_tiles(Some(1)),
        )
        .expect("load");
        if wanted("stages") {
            stages(&model, &mut report);
        }
        if wanted("throughput") {
            throughput(&files, &mut report);
        }
        if wanted("tiles") {
            tiles(&files, threads, &mut report);
        }
        if wanted("follow_up") {
            follow_up(&files, threads, &mut report);
        }
        if wanted("video") {
            video(&files, threads, &mut report);
        }
        if std::env::var_os("SMOLVLM_BENCH_ENGINE").is_some() && wanted("engine") {
            engine_settings(&files, threads, &mut report);
        }
        println!("{report}");

        let image = &photos(1)[0];
        let mut session = model.session().expect("session");
        let options = greedy(TOKENS);
        group.bench_function(shape.name(), |b| {
            b.iter(|| {
                // A whole caption each time: not the cached image of the last.
                session.forget();
                session
                    .caption(image.path.as_path(), PROMPT, &options)
                    .expect("caption")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
