//! Against the old architecture: the Python wrapper that sent every image to
//! a `llama-server` process as a base64 JPEG over HTTP.
//!
//! `SMOLVLM_BENCH_LLAMA_SERVER=/path/to/llama-server cargo bench --bench server`
//!
//! The bench starts that server on 127.0.0.1 (a free port) with the same
//! model pair, threads, context and batch sizes as the library, waits for
//! `/health`, and measures in one run, interleaved, the same image file and
//! prompt through:
//!
//! - **ours**: a warm in-process caption of the file (`Session::caption`);
//! - **the old path**, end to end as the old client did it: read and decode
//!   the file, resize it to fit the old configuration's 1024×1024 (never
//!   below its `min_size` of 512 on the longest side), encode it as a JPEG
//!   of quality 95 with optimised Huffman tables (PIL's `quality=95,
//!   optimize=True`), base64 it into a data URI, POST it to
//!   `/v1/chat/completions`, and parse the answer. The server then decodes
//!   the JPEG with stb_image and lets mtmd resize and tile it.
//!
//! Both generate greedily, `MAX_TOKENS` tokens at most. Requests set
//! `cache_prompt: false`, so the server encodes every image afresh as we do.
//! The old client's resize uses `fast_image_resize` (Lanczos3), faster than
//! PIL: the comparison does not flatter us.
//!
//! Without `SMOLVLM_BENCH_LLAMA_SERVER` the bench says it skipped the server
//! and still times our caption and the old client's own share (resize, JPEG,
//! base64). Extra server arguments (a GPU build's `-ngl 99`, say) go in
//! `SMOLVLM_BENCH_LLAMA_SERVER_ARGS`, split on whitespace. The server's log
//! is written to `target/bench-images/llama-server.log`.
//!
//! Goals on the tiny model: ours ≤ 0.8× the old path's time for the small
//! image, ≤ 0.4× for the 12-MP photo.

// Bench code: a failure is a failed run.
#![allow(clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod util;

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::ImageFormat;
use serde_json::{json, Value};

use util::{greedy, median, ms, ratio, skip, BenchModel, ImageFile, MAX_TOKENS, PROMPT};

/// The `llama-server` binary to compare with.
const SERVER_ENV: &str = "SMOLVLM_BENCH_LLAMA_SERVER";
/// Extra arguments for it.
const SERVER_ARGS_ENV: &str = "SMOLVLM_BENCH_LLAMA_SERVER_ARGS";

/// The old configuration's `image_processing`: `size`, `min_size`, `jpeg_quality`.
const OLD_SIZE: u32 = 1024;
const OLD_MIN_SIZE: u32 = 512;
const OLD_JPEG_QUALITY: u8 = 95;

/// The old client's per-image work before the request: what the Python
/// wrapper did with PIL.
#[derive(Default)]
struct OldClient {
    resizer: Resizer,
}

impl OldClient {
    /// The file as the data URI the old client sent.
    fn data_uri(&mut self, path: &Path) -> String {
        let bytes = std::fs::read(path).expect("read the image");
        let rgb = image::load_from_memory(&bytes)
            .expect("decode the image")
            .into_rgb8();
        let (w, h) = rgb.dimensions();
        let (tw, th) = old_size(w, h);
        let resized = if (tw, th) == (w, h) {
            rgb.into_raw()
        } else {
            let src = ImageRef::new(w, h, rgb.as_raw(), PixelType::U8x3).expect("image view");
            let mut dst = Image::new(tw, th, PixelType::U8x3);
            let options =
                ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
            self.resizer
                .resize(&src, &mut dst, &options)
                .expect("resize");
            dst.into_vec()
        };
        let mut jpeg = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, OLD_JPEG_QUALITY);
        encoder.set_optimized_huffman_tables(true);
        let side = |v: u32| u16::try_from(v).expect("a JPEG side fits in u16");
        encoder
            .encode(&resized, side(tw), side(th), jpeg_encoder::ColorType::Rgb)
            .expect("encode the JPEG");
        let mut uri = String::from("data:image/jpeg;base64,");
        base64::engine::general_purpose::STANDARD.encode_string(&jpeg, &mut uri);
        uri
    }
}

/// The old resize: fit in `OLD_SIZE`², aspect ratio kept; small images
/// enlarged to `OLD_MIN_SIZE` on their longest side.
fn old_size(w: u32, h: u32) -> (u32, u32) {
    let longest = w.max(h);
    let target = longest.clamp(OLD_MIN_SIZE, OLD_SIZE);
    if target == longest {
        return (w, h);
    }
    let scale = |v: u32| {
        ((u64::from(v) * u64::from(target) + u64::from(longest) / 2) / u64::from(longest)).max(1)
            as u32
    };
    (scale(w), scale(h))
}

/// A `llama-server` child process, killed when dropped.
struct LlamaServer {
    child: Child,
    url: String,
    log: PathBuf,
    agent: ureq::Agent,
}

/// What the server said about one request.
#[derive(Debug, Clone, Copy, Default)]
struct ServerReply {
    prompt_tokens: u64,
    completion_tokens: u64,
    prompt_ms: f64,
    predicted_ms: f64,
}

impl LlamaServer {
    /// Starts `bin` with the bench's model pair and waits until it is ready.
    fn start(bin: &Path, bench: &BenchModel) -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?
            .port();
        let log = bench_log_path();
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let options = bench.load_options();
        let threads = bench.threads.to_string();
        let mut command = Command::new(bin);
        command
            .arg("--model")
            .arg(&bench.files.model)
            .arg("--mmproj")
            .arg(&bench.files.mmproj)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--threads", &threads, "--threads-batch", &threads])
            .args(["--ctx-size", &options.context_size().to_string()])
            .args(["--batch-size", &options.batch_size().to_string()])
            .args(["--ubatch-size", &options.batch_size().min(512).to_string()])
            // One slot, as the old wrapper sent one image at a time.
            .args(["--parallel", "1"])
            .args(
                std::env::var(SERVER_ARGS_ENV)
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2))
            .timeout(Duration::from_secs(600))
            .build();
        let mut server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            agent,
        };
        server.wait_ready(Duration::from_secs(180))?;
        Ok(server)
    }

    /// Polls `/health` until it answers 200 (it says 503 while loading).
    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "llama-server exited with {status}{}",
                    self.log_tail()
                ));
            }
            let health = self
                .agent
                .get(&format!("{}/health", self.url))
                .timeout(Duration::from_secs(2))
                .call();
            if matches!(health, Ok(ref r) if r.status() == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "llama-server was not ready within {limit:?}{}",
            self.log_tail()
        ))
    }

    /// The last lines of the server's log, to explain a failure.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = log.lines().rev().take(15).collect();
        let tail: Vec<_> = lines.into_iter().rev().collect();
        format!(" (log {}):\n{}", self.log.display(), tail.join("\n"))
    }

    /// One chat completion for an image data URI, as the old client sent it.
    fn caption(&self, data_uri: &str) -> ServerReply {
        let body = json!({
            "messages": [{
                "role": "user",
                "content": [
                    { "type": "image_url", "image_url": { "url": data_uri } },
                    { "type": "text", "text": PROMPT },
                ],
            }],
            "max_tokens": MAX_TOKENS,
            "temperature": 0.0,
            "seed": 0,
            "stream": false,
            // Every image is encoded afresh, as in the library.
            "cache_prompt": false,
        });
        let reply = self
            .agent
            .post(&format!("{}/v1/chat/completions", self.url))
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        let text = match reply {
            Ok(r) => r.into_string().expect("read the server's reply"),
            Err(ureq::Error::Status(code, r)) => panic!(
                "llama-server answered {code}: {}{}",
                r.into_string().unwrap_or_default(),
                self.log_tail()
            ),
            Err(e) => panic!("llama-server request failed: {e}{}", self.log_tail()),
        };
        let v: Value = serde_json::from_str(&text).expect("the reply is JSON");
        let num = |v: &Value| v.as_f64().unwrap_or(0.0);
        ServerReply {
            prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
            prompt_ms: num(&v["timings"]["prompt_ms"]),
            predicted_ms: num(&v["timings"]["predicted_ms"]),
        }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench_log_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    let dir = target.join("bench-images");
    let _ = std::fs::create_dir_all(&dir);
    dir.join("llama-server.log")
}

fn server_from_env(bench: &BenchModel) -> Option<LlamaServer> {
    let Some(bin) = std::env::var_os(SERVER_ENV).filter(|v| !v.is_empty()) else {
        skip(&format!(
            "the old architecture (llama-server over HTTP): {SERVER_ENV} is not set; \
             build llama.cpp's llama-server and set it to the binary (see the README)"
        ));
        return None;
    };
    match LlamaServer::start(Path::new(&bin), bench) {
        Ok(server) => Some(server),
        Err(e) => {
            skip(&format!("the old architecture: {e}"));
            None
        }
    }
}

fn bench(c: &mut Criterion) {
    let Some(bench_model) = BenchModel::from_env() else {
        return;
    };
    println!("{}", bench_model.describe());
    let model = bench_model.load();
    let server = server_from_env(&bench_model);
    let options = greedy(MAX_TOKENS);
    let mut session = model.session().expect("session");
    let mut client = OldClient::default();

    let images = [
        ("small image", ImageFile::camera(400, 300), Some(0.8)),
        (
            "12-MP camera photo",
            ImageFile::camera(4000, 3000),
            Some(0.4),
        ),
        (
            "12-MP high-entropy photo, a worst case for JPEG decoding",
            ImageFile::photo(4000, 3000, ImageFormat::Jpeg),
            None,
        ),
    ];
    let mut report = String::new();
    for (what, image, goal) in &images {
        let path = image.path.as_path();
        let mut ours = || {
            session
                .caption(black_box(path), PROMPT, &options)
                .expect("caption")
        };
        let ours_first = ours();

        let mut g = c.benchmark_group(format!("server/{}", image.name));
        g.sample_size(10).measurement_time(Duration::from_secs(8));
        g.bench_function("ours: warm in-process caption", |b| b.iter(&mut ours));
        g.bench_function(
            "old client's share: decode, resize, JPEG q95, base64",
            |b| b.iter(|| client.data_uri(black_box(path))),
        );
        let mut old = |server: &LlamaServer| server.caption(&client.data_uri(black_box(path)));
        if let Some(server) = &server {
            g.bench_function("old path: client + HTTP + llama-server", |b| {
                b.iter(|| old(server))
            });
        }
        g.finish();

        let Some(server) = &server else {
            continue;
        };
        // Interleaved, after a warm-up of each.
        let first = old(server);
        let n = bench_model.samples();
        let (mut ours_wall, mut old_wall) = (Vec::new(), Vec::new());
        let mut replies = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            black_box(ours());
            ours_wall.push(t.elapsed());
            let t = Instant::now();
            replies.push(old(server));
            old_wall.push(t.elapsed());
        }
        let (a, b) = (median(&mut ours_wall), median(&mut old_wall));
        let r = a.as_secs_f64() / b.as_secs_f64();
        let server_ms = |f: fn(&ServerReply) -> f64| {
            let mut v: Vec<_> = replies
                .iter()
                .map(|r| Duration::from_secs_f64(f(r) / 1e3))
                .collect();
            median(&mut v)
        };
        let (prompt, predicted) = (server_ms(|r| r.prompt_ms), server_ms(|r| r.predicted_ms));
        let _ = write!(
            report,
            "\n{what} ({}, {} bytes): median of {n}, ms\n\n\
             | path | per image | prompt tokens | generated |\n|---|---:|---:|---:|\n\
             | ours, in-process | {} | {} | {} |\n\
             | old: client + HTTP + llama-server | {} | {} | {} |\n\
             | of which the server's prompt eval + generation | {} + {} | | |\n\n\
             ours / old = {}{}\n",
            image.name,
            image.bytes.len(),
            ms(a),
            ours_first.prompt_tokens,
            ours_first.tokens.len(),
            ms(b),
            first.prompt_tokens,
            first.completion_tokens,
            ms(prompt),
            ms(predicted),
            ratio(a, b),
            goal.map_or_else(String::new, |goal| format!(
                " (goal ≤ {goal}×: {})",
                if r <= goal { "met" } else { "missed" }
            )),
        );
    }
    if !report.is_empty() {
        println!("\n{}{report}", bench_model.describe());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
