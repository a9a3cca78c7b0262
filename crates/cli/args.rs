//! What each subcommand accepts on the command line.

use std::num::NonZeroU32;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::shard::Shard;

/// Caption images with SmolVLM, in-process through llama.cpp's mtmd.
#[derive(Debug, Parser)]
#[command(name = "smolvlm", version, about, after_long_help = crate::help::MAIN)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug with stage timings, -vvv
    /// trace), llama.cpp's included; RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Caption images, folders and datasets: one record per image, resumable.
    ///
    /// Captions every image found under PATH... and writes one record per
    /// image (JSONL, CSV or text) to stdout or --output. Re-running the same
    /// command resumes: images already recorded are skipped. Sections below:
    /// inputs, records, resume, exit codes, progress, throughput, shards, the
    /// old configuration, and --plan.
    #[command(after_long_help = crate::help::CAPTION)]
    Caption(Box<CaptionArgs>),
    /// Show what a model pair is and how it would run, then caption a test image.
    ///
    /// The in-process successor of the old server's info and health
    /// endpoints: it loads the model and prints what the pair is.
    #[command(after_long_help = crate::help::INFO)]
    Info(InfoArgs),
    /// Ask one question about images (or none) and stream the answer to stdout.
    ///
    /// The images go first, in order, then the prompt, in one user turn of
    /// the model's chat template. Exit codes: 0 answered, 1 the answer
    /// failed (an unreadable image, say), 2 bad usage or model, 130
    /// interrupted.
    #[command(after_long_help = crate::help::ASK)]
    Ask(Box<AskArgs>),
    /// Chat about images in the terminal: streaming answers, follow-ups
    /// that do not encode the images again, /image FILE, /reset.
    ///
    /// Reads one message per line from stdin; each answer streams to
    /// stdout. Ctrl-C stops the answer, not the program; Ctrl-D or /quit
    /// leaves.
    #[command(after_long_help = crate::help::CHAT)]
    Chat(Box<ChatArgs>),
    /// Download a model into the Hugging Face cache and print where its files are.
    ///
    /// Prints the preset, the repo, the revision and its commit, whether the
    /// files were downloaded or already cached, and the two paths. Run it
    /// while online before using a model with --offline. Without MODEL it
    /// fetches the default preset.
    Fetch(FetchArgs),
}

/// Where the model comes from and how it loads (shared by `caption` and `info`).
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A preset name, a Hub repo (OWNER/NAME[@REVISION][:QUANT]), or a local
    /// text model GGUF (then --mmproj too) [default: the config's
    /// smolvlm_version, else SmolVLM-256M-Instruct].
    #[arg(short, long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// The vision projector GGUF (mmproj), for a local --model file.
    #[arg(long, value_name = "MMPROJ.gguf")]
    pub mmproj: Option<PathBuf>,
    /// The old Python configuration (JSON, or TOML with the same keys); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Use only the Hugging Face cache, never the network (as HF_HUB_OFFLINE=1 does).
    #[arg(long)]
    pub offline: bool,
    /// CPU threads per session [default: all cores, divided among --parallel sessions].
    #[arg(short, long)]
    pub threads: Option<NonZeroU32>,
    /// CPU threads of each session's vision encoder [default: --threads].
    #[arg(long, value_name = "N")]
    pub vision_threads: Option<NonZeroU32>,
    /// Flash attention in the text decoder.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = FlashAttn::Auto)]
    pub flash_attn: FlashAttn,
    /// Flash attention in the vision encoder (auto: on for the CPU, as in
    /// llama.cpp's tools; off is about 23% slower).
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = FlashAttn::Auto)]
    pub vision_flash_attn: FlashAttn,
    /// Element type of the KV cache (q8_0 and q4_0 need flash attention).
    ///
    /// q8_0 halves each session's KV memory (94 -> 50 MB at 4096 tokens for
    /// the 256M model) for no measured cost: use it with many sessions.
    #[arg(long, value_enum, value_name = "TYPE", default_value_t = KvType::F16)]
    pub kv_type: KvType,
    /// Tokens the text decoder computes per pass (n_ubatch).
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub ubatch_size: u32,
    /// Read the text model into memory instead of mapping it.
    #[arg(long)]
    pub no_mmap: bool,
    /// Lock the text model's weights in memory.
    #[arg(long)]
    pub mlock: bool,
    /// Skip the warm-ups: the vision encoder's compute-buffer reservation
    /// at load (the first encode does it instead), and each new session's
    /// one token. Neither costs measurably.
    #[arg(long)]
    pub no_warmup: bool,
    /// Context size in tokens (prompt + images or video frames + answer)
    /// [default: 4096; with a video 8192, SmolVLM2's own, where its 64
    /// frames fit].
    #[arg(long, value_name = "TOKENS")]
    pub ctx_size: Option<u32>,
    /// The token budget: at most this many image tiles (plus the overview) per image.
    ///
    /// The speed dial: at real scale a caption is almost all vision
    /// encoding, one encode per tile plus the overview. On a 4:3 photo,
    /// --max-tiles 1 captions about 6x faster than the full 4x3 grid, and
    /// sees it at about a quarter of the linear detail (small text goes
    /// first). --plan prints the tiles per image before a run.
    #[arg(long, value_name = "N")]
    pub max_tiles: Option<NonZeroU32>,
    /// Text-model layers to offload to a GPU build's device.
    #[arg(long)]
    pub gpu_layers: Option<u32>,
    /// Run the vision encoder on the CPU even in a GPU build.
    #[arg(long)]
    pub no_vision_gpu: bool,
}

/// `smolvlm info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Skip the one-image self-test.
    #[arg(long)]
    pub no_self_test: bool,
}

/// `smolvlm ask`.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// An image to ask about (repeatable, in order); none asks about text alone.
    #[arg(
        short = 'i',
        long = "image",
        value_name = "FILE",
        conflicts_with = "video"
    )]
    pub images: Vec<PathBuf>,
    /// A video to ask about, as SmolVLM2 sees one: frames sampled as its
    /// processor samples them, each one overview image after its time.
    ///
    /// An animated GIF, WebP or APNG; an MP4, WebM, MOV, MKV or AVI (needs
    /// ffmpeg and ffprobe on PATH); or a folder of frames, sorted by file
    /// name, with --frame-rate.
    #[arg(long, value_name = "PATH")]
    pub video: Option<PathBuf>,
    /// How the video's frames are sampled.
    #[command(flatten)]
    pub sampling: VideoArgs,
    /// The frame rate of a folder of frames given as --video (required for
    /// a folder; a video file says its own).
    #[arg(long, value_name = "FPS", value_parser = rate, requires = "video")]
    pub frame_rate: Option<f64>,
    /// The model and how answers are generated.
    #[command(flatten)]
    pub answer: AnswerArgs,
    /// The question, rendered with the model's chat template after the images.
    #[arg(short, long, required_unless_present = "raw_prompt")]
    pub prompt: Option<String>,
    /// A fully rendered prompt used verbatim: one <__media__> per image, in order.
    ///
    /// A literal \n in it becomes a newline.
    #[arg(long, conflicts_with = "prompt")]
    pub raw_prompt: Option<String>,
    /// Also write the answer as one JSON record to FILE (the fields of a
    /// caption record, with "images" and "prompt" instead of a path).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `smolvlm chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// An image for the first message (repeatable); /image FILE adds more later.
    #[arg(short = 'i', long = "image", value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// The model and how answers are generated.
    #[command(flatten)]
    pub answer: AnswerArgs,
    /// A system turn before the conversation (instructions).
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
}

/// How a video's frames are sampled (shared by `ask` and `caption`).
#[derive(Debug, Args, Clone, Copy)]
pub struct VideoArgs {
    /// Frames sampled per second of video [default: 1, SmolVLM2's].
    #[arg(long, value_name = "FPS", value_parser = rate)]
    pub sample_fps: Option<f64>,
    /// At most this many frames per video [default: 64, SmolVLM2's];
    /// fewer are sampled when they would not fit the context.
    #[arg(long, value_name = "N")]
    pub max_frames: Option<std::num::NonZeroUsize>,
}

/// A frame rate: a finite number of frames per second above 0.
fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(fps) if fps.is_finite() && fps > 0.0 => Ok(fps),
        _ => Err(format!(
            "'{text}' is not a frame rate: give frames per second above 0"
        )),
    }
}

impl AskArgs {
    /// The video at `path` with the sampling flags: a folder of frames
    /// needs --frame-rate.
    pub fn open_video(&self, path: &std::path::Path) -> Result<smolvlm::video::Video, String> {
        if path.is_dir() {
            let fps = self.frame_rate.ok_or_else(|| {
                format!(
                    "'{}' is a folder of frames: give its frame rate with --frame-rate",
                    path.display()
                )
            })?;
            Ok(self
                .sampling
                .apply(smolvlm::video::Video::frames_in(path, fps)))
        } else {
            Ok(self.sampling.apply(smolvlm::video::Video::file(path)))
        }
    }
}

impl VideoArgs {
    /// `video` with these sampling settings.
    #[must_use]
    pub fn apply(&self, mut video: smolvlm::video::Video) -> smolvlm::video::Video {
        if let Some(fps) = self.sample_fps {
            video = video.with_fps(fps);
        }
        if let Some(n) = self.max_frames {
            video = video.with_max_frames(n.get());
        }
        video
    }
}

/// The model and how answers are generated (shared by `ask` and `chat`).
#[derive(Debug, Args)]
pub struct AnswerArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// How answers are generated.
    #[command(flatten)]
    pub generation: GenerationArgs,
    /// Deadline per answer in seconds [default: the config's timeout, else none].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Trim uniform borders before tiling [default: the config's smart_crop, else false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub smart_crop: Option<bool>,
}

/// `smolvlm fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// A preset name or a Hub repo (OWNER/NAME[@REVISION][:QUANT]).
    #[arg(value_name = "MODEL", default_value = smolvlm::DEFAULT_PRESET)]
    pub model: String,
    /// Use only the Hugging Face cache, never the network (as HF_HUB_OFFLINE=1 does).
    #[arg(long)]
    pub offline: bool,
}

/// How text is generated (shared by `caption`, `ask` and `chat`).
#[derive(Debug, Args)]
pub struct GenerationArgs {
    /// Most tokens to generate per answer [default: the preset's, else 256].
    #[arg(short = 'n', long)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature; 0 is greedy (deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Top-k sampling (0 disables).
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// Top-p (nucleus) sampling (1 disables).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Min-p sampling (0 disables).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Repeat penalty (1 disables).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Stop generating at this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Constrain each answer to JSON following the JSON Schema in FILE.
    ///
    /// Each JSONL record then holds the parsed value under "json" (the
    /// caption field keeps the text; CSV and txt records hold the text). A
    /// bad schema stops the run before any image is read (exit 2). The
    /// value is checked against the schema (a keyword llama.cpp's grammar
    /// cannot express gives an error record of kind schema_mismatch, never
    /// an invalid value), and every token keeps the text valid UTF-8, so a
    /// string's maxLength counts characters. Output cut short by
    /// --max-tokens is an error record of kind incomplete_json: give it room.
    #[arg(long, value_name = "FILE", conflicts_with = "grammar")]
    pub json_schema: Option<PathBuf>,
    /// Constrain each answer to the GBNF grammar in FILE (llama.cpp's
    /// grammar format; the root rule is `root`).
    ///
    /// A grammar llama.cpp refuses stops the run before any image is read
    /// (exit 2).
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<PathBuf>,
}

/// `--flash-attn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlashAttn {
    /// llama.cpp decides per device (on for the CPU).
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

impl From<FlashAttn> for smolvlm::FlashAttention {
    fn from(value: FlashAttn) -> Self {
        match value {
            FlashAttn::Auto => Self::Auto,
            FlashAttn::On => Self::On,
            FlashAttn::Off => Self::Off,
        }
    }
}

/// `--kv-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KvType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit blocks: half the memory of f16.
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit blocks: a quarter of f16.
    #[value(name = "q4_0")]
    Q4_0,
}

impl From<KvType> for smolvlm::KvCacheType {
    fn from(value: KvType) -> Self {
        match value {
            KvType::F32 => Self::F32,
            KvType::F16 => Self::F16,
            KvType::Bf16 => Self::Bf16,
            KvType::Q8_0 => Self::Q8_0,
            KvType::Q4_0 => Self::Q4_0,
        }
    }
}

/// `--parallel`: a number of sessions, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallel {
    /// Chosen from the cores: see [`Parallel::sessions`].
    Auto,
    /// This many sessions.
    Sessions(NonZeroU32),
}

impl std::str::FromStr for Parallel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        s.parse::<NonZeroU32>()
            .map(Self::Sessions)
            .map_err(|_| format!("'{s}' is neither 'auto' nor a number of sessions (1 or more)"))
    }
}

impl Parallel {
    /// Most sessions `auto` opens. Measured on real shapes, 2 cores: two
    /// one-thread sessions caption 1.05× (256M) and 1.23× (500M) as many
    /// images as one two-thread session, each extra session costing one more
    /// mmproj and KV cache (about 230 MB and 300 MB). Past 4 sessions the
    /// memory grows and the gain was not measured.
    pub const MAX_AUTO_SESSIONS: u32 = 4;

    /// How many sessions to run on `cores` cores: `auto` is one per core, at
    /// most [`MAX_AUTO_SESSIONS`](Self::MAX_AUTO_SESSIONS).
    #[must_use]
    pub fn sessions(self, cores: u32) -> u32 {
        match self {
            Self::Auto => cores.clamp(1, Self::MAX_AUTO_SESSIONS),
            Self::Sessions(n) => n.get(),
        }
    }
}

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// A header, then one row per image.
    Csv,
    /// `PATH: caption` per line; a single image's caption alone.
    Txt,
}

/// `smolvlm caption`.
#[derive(Debug, Args)]
pub struct CaptionArgs {
    /// Images, directories (walked recursively), glob patterns ('photos/**/*.jpg'),
    /// or '-' to read paths from stdin, one per line.
    #[arg(value_name = "PATH", required_unless_present = "print_config")]
    pub paths: Vec<PathBuf>,
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The instruction, rendered with the model's chat template (image first)
    /// [default: the preset's, else "Describe this image."].
    ///
    /// Repeatable: every image is asked each prompt and encoded once (the
    /// session keeps it for the next prompt); one JSONL record per image and
    /// prompt, with a "prompt" field, resumed per prompt.
    #[arg(short, long)]
    pub prompt: Vec<String>,
    /// A fully rendered prompt used verbatim; must contain <__media__> once.
    ///
    /// A literal \n in it becomes a newline. llama-mtmd-cli's rendering of
    /// -p TEXT puts a space after "User:" (one more token than the chat
    /// template's); pass it here to caption exactly as that tool does.
    #[arg(long, conflicts_with = "prompt")]
    pub raw_prompt: Option<String>,
    /// How text is generated.
    #[command(flatten)]
    pub generation: GenerationArgs,
    /// Also caption the videos found in folders and globs (MP4, M4V, WebM,
    /// MOV, MKV, AVI; the first four need ffmpeg and ffprobe on PATH), and
    /// caption GIFs as videos, not as their first frame.
    ///
    /// One record per video, with "frames" (shown) and "seconds". Without
    /// it a folder's videos are skipped and counted, so photo folders
    /// caption as before; a video file named on the command line is
    /// captioned as a video either way. The context grows to 8192 tokens
    /// unless --ctx-size is given.
    #[arg(long)]
    pub video: bool,
    /// How each video's frames are sampled.
    #[command(flatten)]
    pub sampling: VideoArgs,
    /// Per-image deadline in seconds [default: the config's timeout, else none].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Trim uniform borders before tiling [default: the config's smart_crop, else false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub smart_crop: Option<bool>,
    /// Caption N images at once: N sessions sharing one model's weights, each
    /// with its own vision encoder and cores/N threads; 'auto' runs one
    /// session per core, at most 4.
    #[arg(long, value_name = "N|auto", default_value = "1")]
    pub parallel: Parallel,
    /// Threads that decode and resize upcoming images while the model works;
    /// 0 prepares each image on its captioning thread, in turn.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub prep_threads: u32,
    /// Caption identical images again. By default an image whose decoded
    /// pixels equal an earlier one's in this run is encoded once, and its
    /// records copy that one's captions (they say "duplicate_of").
    #[arg(long)]
    pub no_dedupe: bool,
    /// Write records to FILE (appending and resuming if it exists) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Record format [default: from the --output extension (.csv, .txt), else
    /// jsonl; on stdout txt for one image file or a terminal, else jsonl].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Also write each caption beside its image: photo.jpg -> photo.txt.
    #[arg(long)]
    pub sidecar: bool,
    /// Start over: truncate --output and rewrite existing sidecars.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Skip images already recorded (same key and content) in --output; the default.
    #[arg(long)]
    pub resume: bool,
    /// On resume, caption again the images whose last record is a final error
    /// (a bad image); transient ones (a deadline, out of memory) are retried anyway.
    #[arg(long)]
    pub retry_errors: bool,
    /// Caption only shard I of N (0-based): a stable split by the path relative
    /// to its folder (a named file's: its name).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// No progress bar, progress lines or summary.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print what captioning PATH... would cost and exit: tiles and image
    /// tokens per image (from headers only) and the estimated time, from one
    /// tile encode timed on this machine.
    #[arg(long)]
    pub plan: bool,
    /// Print the effective settings (config file, then flags) as JSON and exit.
    #[arg(long)]
    pub print_config: bool,
}
