//! What the benches share: which model pair to run, the images, and a
//! stage-by-stage comparison printed as a Markdown table.
//!
//! The model is the testkit's tiny generated pair unless the environment
//! names another:
//!
//! - `SMOLVLM_BENCH_MODEL` + `SMOLVLM_BENCH_MMPROJ`: two local GGUF files;
//! - `SMOLVLM_BENCH_MODEL` alone: a preset or Hub repo (`SmolVLM-256M-Instruct`,
//!   `ggml-org/SmolVLM-500M-Instruct-GGUF:f16`), resolved from the Hugging
//!   Face cache only (offline): a bench never downloads. If it is not cached,
//!   the bench says so and measures nothing.
//! - `SMOLVLM_BENCH_MODEL=real-256m` or `real-500m`: the testkit's
//!   shape-identical random-weight pair of SmolVLM-256M/500M-Instruct
//!   (generated once into `target/smolvlm-testkit`), with its Q8_0 mmproj, or
//!   its F16 one with `SMOLVLM_BENCH_MMPROJ_TYPE=f16`. Every performance
//!   figure in the README comes from these.
//! - `SMOLVLM_BENCH_THREADS`: threads (default: all cores).
//! - `SMOLVLM_BENCH_SAMPLES`: captions per configuration in the comparison
//!   tables (default 40 on the tiny model, 10 on a named one).

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::{ImageFormat, RgbImage};
use smolvlm::{
    Caption, GenerationOptions, HubOptions, LoadOptions, Model, ModelFiles, ModelSource, Timings,
};
use smolvlm_testkit::images::{gradient, noise};

/// The instruction every bench captions with, rendered by the model's chat template.
pub const PROMPT: &str = "Describe this image.";

/// Tokens generated per caption, unless a bench says otherwise.
pub const MAX_TOKENS: u32 = 16;

/// The model pair a bench runs, and how.
#[derive(Debug, Clone)]
pub struct BenchModel {
    /// The pair.
    pub files: ModelFiles,
    /// What to call it in reports: `tiny` or the model file's name.
    pub label: String,
    /// Threads for decoding and encoding.
    pub threads: u32,
    /// Whether this is the generated tiny pair.
    pub tiny: bool,
}

impl BenchModel {
    /// The pair the environment names (see the module docs), or `None`, with
    /// a line on stderr, when it names one that is not on this machine.
    pub fn from_env() -> Option<Self> {
        let threads = bench_threads();
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (files, tiny) = match (var("SMOLVLM_BENCH_MODEL"), var("SMOLVLM_BENCH_MMPROJ")) {
            (None, None) => {
                let pair = smolvlm_testkit::tiny_model();
                (ModelFiles::new(pair.model, pair.mmproj), true)
            }
            (Some(model), Some(mmproj)) => (ModelFiles::new(model, mmproj), false),
            (None, Some(_)) => {
                skip("SMOLVLM_BENCH_MMPROJ is set without SMOLVLM_BENCH_MODEL");
                return None;
            }
            (Some(name), None) if real_shape(&name).is_some() => {
                let shape = real_shape(&name)?;
                let pair = smolvlm_testkit::real_model(shape, real_mmproj_type());
                (ModelFiles::new(pair.model, pair.mmproj), false)
            }
            (Some(name), None) => {
                let hub = HubOptions::from_env().with_offline(true);
                match ModelSource::parse(&name).map_err(smolvlm::Error::from) {
                    Ok(source) => match source.resolve(&hub) {
                        Ok(resolved) => (resolved.files, false),
                        Err(e) => {
                            skip(&format!(
                                "SMOLVLM_BENCH_MODEL={name} is not usable from the Hugging Face cache: {e}"
                            ));
                            return None;
                        }
                    },
                    Err(e) => {
                        skip(&format!("SMOLVLM_BENCH_MODEL={name}: {e}"));
                        return None;
                    }
                }
            }
        };
        for path in [&files.model, &files.mmproj] {
            if !path.is_file() {
                skip(&format!("{} does not exist", path.display()));
                return None;
            }
        }
        let label = if tiny {
            "tiny".to_owned()
        } else if let Some(shape) = std::env::var("SMOLVLM_BENCH_MODEL")
            .ok()
            .as_deref()
            .and_then(real_shape)
        {
            format!(
                "{} shape, random weights, {:?} mmproj",
                shape.name(),
                real_mmproj_type()
            )
        } else {
            file_name(&files.model)
        };
        Some(Self {
            files,
            label,
            threads,
            tiny,
        })
    }

    /// The load options every bench uses for this pair.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions::default().with_threads(self.threads)
    }

    /// Loads the pair.
    pub fn load(&self) -> Model {
        Model::load(&self.files, &self.load_options()).expect("load the bench model pair")
    }

    /// Captions per configuration in the comparison tables.
    pub fn samples(&self) -> usize {
        std::env::var("SMOLVLM_BENCH_SAMPLES")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(if self.tiny { 40 } else { 10 })
    }

    /// One line saying what runs where, printed before a report.
    pub fn describe(&self) -> String {
        format!(
            "model: {} ({} + {}), {} threads, {} cores, {}",
            self.label,
            file_name(&self.files.model),
            file_name(&self.files.mmproj),
            self.threads,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_name()
        )
    }
}

/// Whether `SMOLVLM_BENCH_TABLES` (a comma-separated list of a bench's
/// table names) asks for this table; all when unset.
pub fn wanted(table: &str) -> bool {
    std::env::var("SMOLVLM_BENCH_TABLES")
        .map_or(true, |list| list.split(',').any(|t| t.trim() == table))
}

/// `SMOLVLM_BENCH_THREADS`, or all cores.
pub fn bench_threads() -> u32 {
    std::env::var("SMOLVLM_BENCH_THREADS")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| LoadOptions::default().threads())
}

/// A positive count from the environment variable `name`, or `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Tells why a bench measures nothing.
pub fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// The CPU's model name, from /proc/cpuinfo where there is one.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

/// Greedy generation of `max_tokens` tokens.
pub fn greedy(max_tokens: u32) -> GenerationOptions {
    GenerationOptions::default().with_max_tokens(max_tokens)
}

/// A camera-like picture: smooth gradients plus fine texture, so that JPEG
/// and PNG sizes and decode times are those of a photo, not of flat colour.
pub fn photo(w: u32, h: u32) -> RgbImage {
    let (g, n) = (gradient(w, h), noise(w, h, 3));
    RgbImage::from_fn(w, h, |x, y| {
        let (a, b) = (g.get_pixel(x, y), n.get_pixel(x, y));
        image::Rgb([0, 1, 2].map(|c| a[c] / 4 * 3 + b[c] / 4))
    })
}

/// A phone-camera-like scene: sky and ground with rolling hills, a few
/// hard-edged objects, foliage-like texture and mild sensor noise (±10
/// levels). At 4000×3000 its quality-90 JPEG is about 4 MB, like a 12-MP
/// phone photo; [`photo`]'s is 11.7 MB, a worst case for entropy decoding.
pub fn camera(w: u32, h: u32) -> RgbImage {
    let (fw, fh) = (w as f32, h as f32);
    RgbImage::from_fn(w, h, |x, y| {
        let (u, v) = (x as f32 / fw, y as f32 / fh);
        let hills = (u * 9.0).sin() * 0.08 + (u * 23.0 + v * 5.0).sin() * 0.04;
        let ground = v > 0.55 + hills;
        let mut c = if ground {
            [0.25 + 0.2 * v, 0.45 - 0.1 * v, 0.15]
        } else {
            [0.45 + 0.2 * v, 0.6 + 0.2 * v, 0.95 - 0.2 * v]
        };
        let texture = (x as f32 * 0.37).sin() * (y as f32 * 0.23).cos();
        let texture = texture * if ground { 0.08 } else { 0.01 };
        let (dx, dy) = (u - 0.3, v - 0.4);
        if dx * dx * 1.8 + dy * dy < 0.02 {
            c = [0.8, 0.2, 0.15];
        }
        if (0.6..0.8).contains(&u) && (0.3..0.7).contains(&v) {
            c = [0.55 + 0.1 * ((y / 40) % 2) as f32, 0.5, 0.45];
        }
        let n = splitmix(u64::from(y) << 32 | u64::from(x));
        image::Rgb([0, 1, 2].map(|i| {
            let noise = ((n >> (i * 16)) & 0xFFFF) as i32 % 21 - 10;
            (((c[i] + texture) * 255.0) as i32 + noise).clamp(0, 255) as u8
        }))
    })
}

fn splitmix(z: u64) -> u64 {
    let z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `img` encoded as `format`; JPEGs at quality 90, as cameras and phones save them.
pub fn encoded(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    match format {
        ImageFormat::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(img)
            .expect("encode jpeg"),
        _ => img.write_to(&mut out, format).expect("encode"),
    }
    out.into_inner()
}

/// A test image written to a file, as a caller would hand it over.
#[derive(Debug)]
pub struct ImageFile {
    /// Short name for reports, e.g. `png-640x480`.
    pub name: String,
    /// The decoded pixels.
    pub pixels: RgbImage,
    /// The encoded file's bytes.
    pub bytes: Vec<u8>,
    /// Where the file is.
    pub path: PathBuf,
}

impl ImageFile {
    /// A `w`×`h` [`photo`] encoded as `format`, written under `target/bench-images/`.
    pub fn photo(w: u32, h: u32, format: ImageFormat) -> Self {
        Self::new("", photo(w, h), format)
    }

    /// A `w`×`h` [`camera`] picture as a JPEG, written under `target/bench-images/`.
    pub fn camera(w: u32, h: u32) -> Self {
        Self::new("camera-", camera(w, h), ImageFormat::Jpeg)
    }

    /// `pixels` encoded as `format`, named `{prefix}{ext}-{w}x{h}`.
    pub fn new(prefix: &str, pixels: RgbImage, format: ImageFormat) -> Self {
        let ext = format.extensions_str()[0];
        let (w, h) = pixels.dimensions();
        let name = format!("{prefix}{ext}-{w}x{h}");
        let bytes = encoded(&pixels, format);
        let dir = bench_dir();
        std::fs::create_dir_all(&dir).expect("create the bench image directory");
        let path = dir.join(format!("{name}.{ext}"));
        std::fs::write(&path, &bytes).expect("write a bench image");
        Self {
            name,
            pixels,
            bytes,
            path,
        }
    }
}

/// Where benches write their files: `target/bench-images` (or under `CARGO_TARGET_DIR`).
fn bench_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target.join("bench-images")
}

/// One caption stage, as [`Timings`] reports it.
/// The testkit shape a `real-256m` / `real-500m` name asks for.
pub fn real_shape(name: &str) -> Option<smolvlm_testkit::RealShape> {
    match name.trim().to_ascii_lowercase().as_str() {
        "real-256m" | "256m" => Some(smolvlm_testkit::RealShape::Smolvlm256M),
        "real-500m" | "500m" => Some(smolvlm_testkit::RealShape::Smolvlm500M),
        _ => None,
    }
}

/// The mmproj type of real-shape pairs: `SMOLVLM_BENCH_MMPROJ_TYPE` (`q8_0`
/// by default, or `f16`).
pub fn real_mmproj_type() -> smolvlm_testkit::ProjectorType {
    match std::env::var("SMOLVLM_BENCH_MMPROJ_TYPE") {
        Ok(t) if t.trim().eq_ignore_ascii_case("f16") => smolvlm_testkit::ProjectorType::F16,
        _ => smolvlm_testkit::ProjectorType::Q8_0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Decode + resize + mtmd preprocess/tokenize: everything before the encoder.
    Prepare,
    /// The vision encoder over every tile.
    Encode,
    /// Evaluating prompt tokens and image embeddings.
    Prefill,
    /// Sampling and evaluating the generated tokens.
    Generate,
    /// The whole call.
    Total,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Self; 5] = [
        Self::Prepare,
        Self::Encode,
        Self::Prefill,
        Self::Generate,
        Self::Total,
    ];

    /// The stage's duration in `t`.
    pub fn of(self, t: &Timings) -> Duration {
        match self {
            Self::Prepare => t.decode + t.resize + t.tokenize,
            Self::Encode => t.encode,
            Self::Prefill => t.prefill,
            Self::Generate => t.generate,
            Self::Total => t.total,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Prepare => "prepare (decode, resize, tokenize)",
            Self::Encode => "image encode",
            Self::Prefill => "prefill",
            Self::Generate => "generate",
            Self::Total => "whole caption",
        }
    }
}

/// Criterion's `iter_custom` body that times one stage of `caption` as the
/// library's own [`Timings`] report it: each iteration runs a whole caption.
pub fn stage_time(iters: u64, stage: Stage, mut caption: impl FnMut() -> Caption) -> Duration {
    (0..iters).map(|_| stage.of(&caption().timings)).sum()
}

/// The median of `values`.
pub fn median(values: &mut [Duration]) -> Duration {
    values.sort_unstable();
    match values.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2,
    }
}

/// Timings of repeated captions, per configuration.
#[derive(Debug, Default)]
pub struct Samples {
    timings: Vec<Timings>,
    wall: Vec<Duration>,
}

impl Samples {
    /// Adds one caption's timings, and the wall time the caller measured around it.
    pub fn push(&mut self, timings: Timings, wall: Duration) {
        self.timings.push(timings);
        self.wall.push(wall);
    }

    /// The median of one stage.
    pub fn median(&self, stage: Stage) -> Duration {
        self.median_of(|t| stage.of(t))
    }

    /// The median of any figure drawn from the timings.
    pub fn median_of(&self, f: impl Fn(&Timings) -> Duration) -> Duration {
        let mut v: Vec<_> = self.timings.iter().map(f).collect();
        median(&mut v)
    }

    /// The median wall time.
    pub fn median_wall(&self) -> Duration {
        median(&mut self.wall.clone())
    }

    /// The median, over the captions, of the share of a caption's time spent
    /// outside image encode, prefill and generation:
    /// `(total − encode − prefill − generate) / total`. A median, because on a
    /// shared machine one stalled encode would swing a sum.
    pub fn overhead(&self) -> f64 {
        let mut shares: Vec<f64> = self
            .timings
            .iter()
            .map(|t| {
                let engine = t.encode + t.prefill + t.generate;
                t.total.saturating_sub(engine).as_secs_f64()
                    / t.total.as_secs_f64().max(f64::MIN_POSITIVE)
            })
            .collect();
        shares.sort_unstable_by(f64::total_cmp);
        match shares.len() {
            0 => 0.0,
            n if n % 2 == 1 => shares[n / 2],
            n => (shares[n / 2 - 1] + shares[n / 2]) / 2.0,
        }
    }

    /// How many captions were timed.
    pub fn len(&self) -> usize {
        self.timings.len()
    }
}

/// Runs each configuration `n` times, interleaved (A B A B …) so that
/// drift on a shared machine hits them alike, after one warm-up call each.
pub fn interleaved<const K: usize>(
    n: usize,
    runs: &mut [&mut dyn FnMut() -> Caption; K],
) -> [Samples; K] {
    for run in runs.iter_mut() {
        run();
    }
    let mut samples: [Samples; K] = std::array::from_fn(|_| Samples::default());
    for _ in 0..n {
        for (run, samples) in runs.iter_mut().zip(samples.iter_mut()) {
            let t = Instant::now();
            let caption = run();
            samples.push(caption.timings, t.elapsed());
        }
    }
    samples
}

/// Milliseconds with a precision that suits their size.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// A Markdown table of median stage times for `ours` against `theirs`, with
/// the ratio ours/theirs per stage.
pub fn stage_table(title: &str, ours: (&str, &Samples), theirs: (&str, &Samples)) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{title} (median of {} captions each, ms)\n",
        ours.1.len()
    );
    let _ = writeln!(out, "| stage | {} | {} | ratio |", ours.0, theirs.0);
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for stage in Stage::ALL {
        let (a, b) = (ours.1.median(stage), theirs.1.median(stage));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            stage.name(),
            ms(a),
            ms(b),
            ratio(a, b)
        );
    }
    out
}

/// `a / b` as `0.42×`, or `-` when `b` is zero.
pub fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        "-".to_owned()
    } else {
        format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
    }
}
