//! The effective settings of a `caption` run: the config file, then the
//! flags; printed by `--print-config`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serde::Serialize;
use smolvlm::{GenerationOptions, Prompt};

use crate::args::{CaptionArgs, Format, GenerationArgs, VideoArgs};
use crate::model::ModelSettings;
use crate::pipeline::Asked;
use crate::records::Provenance;
use crate::shard::Shard;

/// Everything a `caption` run does, resolved.
#[derive(Debug)]
pub struct Settings {
    /// The model and the config's per-image settings.
    pub model: ModelSettings,
    /// The prompts: one, or several asked of every image (records then
    /// hold theirs).
    pub prompts: Vec<Asked>,
    /// How captions are generated (the deadline included).
    pub generation: GenerationOptions,
    /// Sessions captioning at once.
    pub parallel: usize,
    /// Threads preparing images ahead.
    pub prep_threads: usize,
    /// Answer identical images once.
    pub dedupe: bool,
    /// The record file, if not stdout.
    pub output: Option<PathBuf>,
    /// The record format.
    pub format: Format,
    /// txt on stdout for one named image: the caption alone.
    pub bare: bool,
    /// Write sidecars.
    pub sidecar: bool,
    /// Start over instead of resuming.
    pub overwrite: bool,
    /// Caption again images whose last record is an error.
    pub retry_errors: bool,
    /// This worker's shard.
    pub shard: Option<Shard>,
    /// How videos' frames are sampled.
    pub video: VideoArgs,
    /// The options that change the text, as records' fingerprints cover them.
    pub output_options: serde_json::Value,
    /// No progress or summary.
    pub quiet: bool,
}

impl Settings {
    /// Resolves the settings of a `caption` command.
    ///
    /// # Errors
    ///
    /// A message naming the bad file, key or flag.
    pub fn resolve(args: &CaptionArgs) -> Result<Self, String> {
        let parallel = args.parallel.sessions(crate::model::cores());
        let model = ModelSettings::resolve(&args.model, parallel, args.timeout, args.smart_crop)?;
        if args.resume && args.output.is_none() {
            return Err("--resume needs --output FILE: stdout cannot be resumed".to_owned());
        }
        if args.overwrite && args.output.is_none() && !args.sidecar {
            return Err("--overwrite needs --output FILE or --sidecar".to_owned());
        }
        let single_file =
            args.paths.len() == 1 && args.paths[0].as_os_str() != "-" && args.paths[0].is_file();
        let format = args.format.unwrap_or_else(|| match &args.output {
            Some(path) => format_of(path),
            None if single_file || std::io::stdout().is_terminal() => Format::Txt,
            None => Format::Jsonl,
        });
        if args.prompt.len() > 1 {
            if format == Format::Txt {
                return Err(
                    "several --prompt need JSONL or CSV records, which hold each record's prompt (not txt)"
                        .to_owned(),
                );
            }
            if args.sidecar {
                return Err(
                    "several --prompt cannot share one sidecar per image: use --output".to_owned(),
                );
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(twice) = args.prompt.iter().find(|p| !seen.insert(*p)) {
                return Err(format!("--prompt '{twice}' is given twice"));
            }
        }
        if args.resume && format == Format::Txt {
            return Err(
                "--resume needs --format jsonl or csv: txt records hold no content hash".to_owned(),
            );
        }
        let generation = generation(&args.generation, &model)?;
        Ok(Self {
            prompts: prompts(args, &model),
            output_options: output_options(args, &model, &generation)?,
            generation,
            parallel: parallel as usize,
            prep_threads: args.prep_threads as usize,
            dedupe: !args.no_dedupe,
            output: args.output.clone(),
            format,
            bare: single_file && args.output.is_none() && format == Format::Txt,
            sidecar: args.sidecar,
            overwrite: args.overwrite,
            retry_errors: args.retry_errors,
            shard: args.shard,
            video: args.sampling,
            quiet: args.quiet,
            model,
        })
    }

    /// The settings as JSON, for `--print-config`.
    #[must_use]
    pub fn to_json(&self, args: &CaptionArgs) -> String {
        let m = &self.model;
        let view = View {
            config: m.config.as_deref(),
            model: &m.name,
            mmproj: args.model.mmproj.as_deref(),
            offline: m.offline,
            threads: m.load.threads(),
            vision_threads: m.load.vision_threads(),
            ctx_size: m.load.context_size(),
            ubatch_size: m.load.ubatch_size(),
            flash_attn: format!("{:?}", m.load.flash_attention()).to_lowercase(),
            vision_flash_attn: format!("{:?}", m.load.vision_flash_attention()).to_lowercase(),
            kv_type: format!("{:?}", m.load.kv_cache_type()).to_lowercase(),
            warmup: m.load.warmup(),
            max_tiles: m.load.max_tiles(),
            parallel: self.parallel,
            prep_threads: self.prep_threads,
            dedupe: self.dedupe,
            prompt: args
                .prompt
                .first()
                .map(String::as_str)
                .or(args.raw_prompt.as_deref())
                .map_or_else(|| self.default_prompt(), str::to_owned),
            prompts: (args.prompt.len() > 1).then_some(&args.prompt),
            raw_prompt: args.raw_prompt.is_some(),
            max_tokens: self.generation.max_tokens(),
            temperature: args.generation.temperature,
            top_k: args.generation.top_k,
            top_p: args.generation.top_p,
            min_p: args.generation.min_p,
            repeat_penalty: args.generation.repeat_penalty,
            seed: args.generation.seed,
            stop: self.generation.stop(),
            timeout_secs: m.timeout.map(|t| t.as_secs_f64()),
            image: ImageView {
                smart_crop: m.smart_crop,
                stretch_to: m.stretch_to,
            },
            output: self.output.as_deref(),
            format: self.format,
            sidecar: self.sidecar,
            existing_output: if self.overwrite {
                "overwrite"
            } else {
                "resume"
            },
            retry_errors: self.retry_errors,
            shard: self.shard.map(|s| s.to_string()),
            warnings: &m.warnings,
        };
        serde_json::to_string_pretty(&view).unwrap_or_default()
    }

    fn default_prompt(&self) -> String {
        self.model
            .preset
            .map_or_else(|| DEFAULT_PROMPT.to_owned(), |p| p.prompt.clone())
    }
}

/// The prompt when neither the flags nor a preset give one.
const DEFAULT_PROMPT: &str = smolvlm::DEFAULT_PROMPT;

/// What a video is asked without `--prompt`: the presets' prompts speak of
/// an image.
const DEFAULT_VIDEO_PROMPT: &str = "Describe this video.";

/// What `--print-config` shows.
#[derive(Serialize)]
struct View<'a> {
    config: Option<&'a Path>,
    model: &'a str,
    mmproj: Option<&'a Path>,
    offline: bool,
    threads: u32,
    vision_threads: u32,
    ctx_size: u32,
    ubatch_size: u32,
    flash_attn: String,
    vision_flash_attn: String,
    kv_type: String,
    warmup: bool,
    max_tiles: Option<u32>,
    parallel: usize,
    prep_threads: usize,
    dedupe: bool,
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompts: Option<&'a Vec<String>>,
    raw_prompt: bool,
    max_tokens: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    seed: u32,
    stop: &'a [String],
    timeout_secs: Option<f64>,
    image: ImageView,
    output: Option<&'a Path>,
    format: Format,
    sidecar: bool,
    existing_output: &'static str,
    retry_errors: bool,
    shard: Option<String>,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct ImageView {
    smart_crop: bool,
    stretch_to: Option<(u32, u32)>,
}

/// The format an output file's extension asks for; JSONL by default.
fn format_of(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
        Some(e) if e.eq_ignore_ascii_case("txt") => Format::Txt,
        _ => Format::Jsonl,
    }
}

/// The generation flags over the preset's length, with the config's deadline.
///
/// # Errors
///
/// A message naming the bad file or flag.
pub fn generation(
    args: &GenerationArgs,
    model: &ModelSettings,
) -> Result<GenerationOptions, String> {
    let max_tokens = args
        .max_tokens
        .or(model.preset.map(|p| p.max_tokens))
        .unwrap_or(256);
    let mut options = GenerationOptions::default()
        .with_max_tokens(max_tokens)
        .with_temperature(args.temperature)
        .with_top_k(args.top_k)
        .with_top_p(args.top_p)
        .with_min_p(args.min_p)
        .with_repeat_penalty(args.repeat_penalty)
        .with_seed(args.seed)
        .with_stop(args.stop.clone());
    if let Some(deadline) = model.timeout {
        options = options.with_deadline(deadline);
    }
    let read = |flag: &str, path: &Path| {
        std::fs::read_to_string(path).map_err(|e| format!("{flag} '{}': {e}", path.display()))
    };
    if let Some(path) = &args.json_schema {
        options = options.with_json_schema(read("--json-schema", path)?);
    }
    if let Some(path) = &args.grammar {
        options = options.with_grammar(read("--grammar", path)?);
    }
    // What needs no model (a schema's conversion, ranges) fails here, exit 2.
    options.validate().map_err(|e| e.to_string())?;
    Ok(options)
}

fn prompts(args: &CaptionArgs, model: &ModelSettings) -> Vec<Asked> {
    let asked = |prompt: Prompt, video_prompt: Prompt| Asked {
        prompt,
        video_prompt,
        image: Provenance::default(),
        video: Provenance::default(),
    };
    if let Some(raw) = &args.raw_prompt {
        let raw = Prompt::raw(raw.replace("\\n", "\n"));
        return vec![asked(raw.clone(), raw)];
    }
    if args.prompt.is_empty() {
        let preset = model.preset.map(|p| p.prompt.clone());
        return vec![asked(
            Prompt::from(preset.unwrap_or_else(|| DEFAULT_PROMPT.to_owned())),
            Prompt::from(DEFAULT_VIDEO_PROMPT),
        )];
    }
    args.prompt
        .iter()
        .map(|text| asked(Prompt::from(text.as_str()), Prompt::from(text.as_str())))
        .collect()
}

/// The options that change a caption's text, for the records' fingerprint:
/// generation (the length, sampling, stop strings, grammar or schema by
/// their SHA-256) and how images are shaped. Threads, the context size, the
/// KV cache type and flash attention are left out: they change the
/// arithmetic's rounding at most, and a run that only changes them resumes.
fn output_options(
    args: &CaptionArgs,
    model: &ModelSettings,
    generation: &GenerationOptions,
) -> Result<serde_json::Value, String> {
    let g = &args.generation;
    let file_hash = |path: &Option<PathBuf>| -> Result<Option<String>, String> {
        path.as_ref()
            .map(|p| {
                std::fs::read(p)
                    .map(|bytes| short_hash(&bytes))
                    .map_err(|e| format!("'{}': {e}", p.display()))
            })
            .transpose()
    };
    Ok(serde_json::json!({
        "max_tokens": generation.max_tokens(),
        "temperature": g.temperature,
        "top_k": g.top_k,
        "top_p": g.top_p,
        "min_p": g.min_p,
        "repeat_penalty": g.repeat_penalty,
        "seed": g.seed,
        "stop": g.stop,
        "json_schema": file_hash(&g.json_schema)?,
        "grammar": file_hash(&g.grammar)?,
        "max_tiles": model.load.max_tiles(),
        "smart_crop": model.smart_crop,
        "stretch_to": model.stretch_to,
    }))
}

/// SHA-256 of `bytes`, its first 16 hex digits: enough to tell settings
/// apart, short enough to read in a record.
#[must_use]
pub fn short_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    short_hex(&sha2::Sha256::digest(bytes))
}

/// The first 16 hex digits of a digest.
#[must_use]
pub fn short_hex(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Settings {
    /// The prompts, each with what its records say produced them, for the
    /// model identified as `model` (see [`ModelSettings::identity`]).
    #[must_use]
    pub fn prompts_for(&self, model: &str) -> Vec<Asked> {
        self.prompts
            .iter()
            .map(|asked| {
                let mut asked = asked.clone();
                asked.image = self.provenance(&asked.prompt, model, false);
                asked.video = self.provenance(&asked.video_prompt, model, true);
                asked
            })
            .collect()
    }

    fn provenance(&self, prompt: &Prompt, model: &str, video: bool) -> Provenance {
        let (text, raw) = match prompt {
            Prompt::User(text) => (text.clone(), false),
            Prompt::Raw(text) => (text.clone(), true),
        };
        let mut what = serde_json::json!({
            "model": model,
            "prompt": text,
            "raw_prompt": raw,
            "options": self.output_options,
        });
        if video {
            what["video"] = serde_json::json!({
                "sample_fps": self.video.sample_fps.unwrap_or(smolvlm::video::DEFAULT_FPS),
                "max_frames": self
                    .video
                    .max_frames
                    .map_or(smolvlm::video::DEFAULT_MAX_FRAMES, std::num::NonZeroUsize::get),
            });
        }
        Provenance {
            prompt: text,
            model: model.to_owned(),
            fingerprint: short_hash(what.to_string().as_bytes()),
        }
    }
}
