//! `smolvlm`: caption images with SmolVLM in-process.
//!
//! Exit codes: 0 all images captioned; 1 at least one image failed (the
//! others were still captioned); 2 bad usage or the model could not load.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use smolvlm::{
    DownloadEvent, GenerationOptions, HubOptions, LoadOptions, Model, ModelFiles, ModelSource,
    Preset, Prompt, ResolvedModel,
};

/// Caption images with SmolVLM, in-process through llama.cpp's mtmd.
#[derive(Debug, Parser)]
#[command(name = "smolvlm", version, about)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Caption one or more images: one caption per image on stdout.
    Caption(CaptionArgs),
    /// Show what a model pair is and how it would run.
    Info(ModelArgs),
    /// Download a model into the Hugging Face cache and print where its files are.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
struct ModelArgs {
    /// A preset name, a Hub repo (OWNER/NAME[@REVISION][:QUANT]), or a local
    /// text model GGUF (then --mmproj too).
    #[arg(short, long, value_name = "MODEL", default_value = smolvlm::DEFAULT_PRESET)]
    model: PathBuf,
    /// The vision projector GGUF (mmproj), for a local --model file.
    #[arg(long, value_name = "MMPROJ.gguf")]
    mmproj: Option<PathBuf>,
    #[command(flatten)]
    hub: HubArgs,
    /// CPU threads (default: all cores).
    #[arg(short, long)]
    threads: Option<u32>,
    /// Context size in tokens (prompt + image + caption).
    #[arg(long, default_value_t = 4096)]
    ctx_size: u32,
    /// Text-model layers to offload to a GPU build's device.
    #[arg(long)]
    gpu_layers: Option<u32>,
    /// Run the vision encoder on the CPU even in a GPU build.
    #[arg(long)]
    no_vision_gpu: bool,
}

#[derive(Debug, Args)]
struct HubArgs {
    /// Use only the Hugging Face cache, never the network (as HF_HUB_OFFLINE=1 does).
    #[arg(long)]
    offline: bool,
}

#[derive(Debug, Args)]
struct FetchArgs {
    /// A preset name or a Hub repo (OWNER/NAME[@REVISION][:QUANT]).
    #[arg(value_name = "MODEL", default_value = smolvlm::DEFAULT_PRESET)]
    model: String,
    #[command(flatten)]
    hub: HubArgs,
}

#[derive(Debug, Args)]
struct CaptionArgs {
    /// Images to caption.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// The instruction, rendered with the model's chat template (image first)
    /// [default: the preset's, else "Describe this image."].
    #[arg(short, long)]
    prompt: Option<String>,
    /// A fully rendered prompt used verbatim; must contain <__media__> once.
    #[arg(long, conflicts_with = "prompt")]
    raw_prompt: Option<String>,
    /// Most tokens to generate per image [default: the preset's, else 256].
    #[arg(short = 'n', long)]
    max_tokens: Option<u32>,
    /// Sampling temperature; 0 is greedy (deterministic).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Top-k sampling (0 disables).
    #[arg(long, default_value_t = 0)]
    top_k: u32,
    /// Top-p (nucleus) sampling (1 disables).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Min-p sampling (0 disables).
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Repeat penalty (1 disables).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// Stop generating at this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Per-image deadline in seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
}

impl HubArgs {
    /// Hub settings from the environment, the flags on top, and a progress bar.
    fn options(&self) -> HubOptions {
        let options = HubOptions::from_env();
        let options = if self.offline {
            options.with_offline(true)
        } else {
            options
        };
        let bar: Mutex<Option<ProgressBar>> = Mutex::new(None);
        options.with_progress(move |event| draw_progress(&bar, event))
    }
}

/// One bar per file on stderr; indicatif draws nothing when stderr is not a terminal.
fn draw_progress(bar: &Mutex<Option<ProgressBar>>, event: &DownloadEvent<'_>) {
    let mut bar = bar
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match *event {
        DownloadEvent::Started { file, total, .. } => {
            let style = ProgressStyle::with_template(
                "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let new = ProgressBar::new(total).with_style(style);
            new.set_message(file.to_owned());
            *bar = Some(new);
        }
        DownloadEvent::Progress { downloaded, .. } => {
            if let Some(bar) = bar.as_ref() {
                bar.set_position(downloaded);
            }
        }
        DownloadEvent::Finished { .. } => {
            if let Some(bar) = bar.take() {
                bar.finish();
            }
        }
        _ => {}
    }
}

impl ModelArgs {
    /// A local pair when --mmproj is given or --model is a file; otherwise a preset or repo.
    fn source(&self) -> Result<ModelSource, String> {
        let text = self.model.to_str();
        let local = self.mmproj.is_some()
            || self.model.is_file()
            || text.is_none_or(|t| t.to_ascii_lowercase().ends_with(".gguf"));
        if !local {
            if let Some(text) = text {
                return ModelSource::parse(text).map_err(|e| e.to_string());
            }
        }
        let mmproj = self.mmproj.as_ref().ok_or_else(|| {
            format!(
                "--model '{}' is a local file: pass its vision projector with --mmproj",
                self.model.display()
            )
        })?;
        Ok(ModelSource::Files(ModelFiles::new(&self.model, mmproj)))
    }

    /// The preset the model names, for its recommended prompt and length.
    fn preset(&self) -> Option<&'static Preset> {
        match self.source().ok()? {
            ModelSource::Preset(name) => Preset::find(&name),
            ModelSource::Hub(repo) => Preset::find(repo.repo()),
            _ => None,
        }
    }

    fn load(&self) -> Result<Model, String> {
        let source = self.source()?;
        let mut options = LoadOptions::default()
            .with_context_size(self.ctx_size)
            .with_vision_gpu(!self.no_vision_gpu);
        if let Some(threads) = self.threads {
            options = options.with_threads(threads);
        }
        if let Some(layers) = self.gpu_layers {
            options = options.with_gpu_layers(layers);
        }
        Model::from_source(&source, &self.hub.options(), &options).map_err(|e| e.to_string())
    }
}

impl CaptionArgs {
    fn generation(&self) -> Result<GenerationOptions, String> {
        let preset = self.model.preset();
        let max_tokens = self
            .max_tokens
            .or(preset.map(|p| p.max_tokens))
            .unwrap_or(256);
        let mut options = GenerationOptions::default()
            .with_max_tokens(max_tokens)
            .with_temperature(self.temperature)
            .with_top_k(self.top_k)
            .with_top_p(self.top_p)
            .with_min_p(self.min_p)
            .with_repeat_penalty(self.repeat_penalty)
            .with_seed(self.seed)
            .with_stop(self.stop.clone());
        if let Some(secs) = self.timeout {
            let deadline = Duration::try_from_secs_f64(secs).map_err(|_| {
                format!("--timeout {secs}: must be a non-negative number of seconds")
            })?;
            options = options.with_deadline(deadline);
        }
        Ok(options)
    }

    fn prompt(&self) -> Prompt {
        match &self.raw_prompt {
            Some(raw) => Prompt::raw(raw.replace("\\n", "\n")),
            None => Prompt::from(
                self.prompt
                    .clone()
                    .or_else(|| self.model.preset().map(|p| p.prompt.clone()))
                    .unwrap_or_else(|| "Describe this image.".to_owned()),
            ),
        }
    }
}

fn caption(args: &CaptionArgs) -> ExitCode {
    let options = match args.generation() {
        Ok(o) => o,
        Err(message) => return fail(&message),
    };
    let model = match args.model.load() {
        Ok(m) => m,
        Err(message) => return fail(&message),
    };
    let mut session = match model.session() {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    let prompt = args.prompt();
    let many = args.images.len() > 1;
    let mut failed = 0usize;
    for path in &args.images {
        match session.caption(path, prompt.clone(), &options) {
            Ok(c) if many => println!("{}: {}", path.display(), c.text.trim()),
            Ok(c) => println!("{}", c.text.trim()),
            Err(e) => {
                failed += 1;
                eprintln!("{}: error [{}]: {e}", path.display(), e.kind());
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} images failed", args.images.len());
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn info(args: &ModelArgs) -> ExitCode {
    let model = match args.load() {
        Ok(m) => m,
        Err(message) => return fail(&message),
    };
    let i = model.info();
    let edge = i.longest_edge.map_or("unset".to_owned(), |e| e.to_string());
    println!("model:            {}", i.files.model.display());
    println!("mmproj:           {}", i.files.mmproj.display());
    println!("architecture:     {}", i.architecture);
    println!("parameters:       {}", i.parameters);
    println!(
        "context length:   {} (session {})",
        i.context_length, i.context_size
    );
    println!("vocabulary:       {}", i.vocab_size);
    println!("embedding:        {}", i.embedding_size);
    println!("projector:        {}", i.projector);
    println!("tile size:        {} px", i.tile_size);
    println!("longest edge:     {edge}");
    println!("tokens per tile:  {}", i.tokens_per_tile);
    println!(
        "chat template:    {}",
        if i.has_chat_template {
            "yes"
        } else {
            "no (built-in SmolVLM template)"
        }
    );
    println!("backend:          {}", i.backend.join(", "));
    println!("threads:          {}", i.threads);
    ExitCode::SUCCESS
}

fn fetch(args: &FetchArgs) -> ExitCode {
    let resolved = ModelSource::parse(&args.model)
        .map_err(smolvlm::Error::from)
        .and_then(|source| source.resolve(&args.hub.options()));
    match resolved {
        Ok(resolved) => {
            print_resolved(&resolved);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn print_resolved(r: &ResolvedModel) {
    if let Some(preset) = r.preset {
        println!("preset:    {}", preset.name);
    }
    if let Some(hub) = &r.hub {
        println!("repo:      {}", hub.repo);
        println!("revision:  {} (commit {})", hub.revision, hub.commit);
        println!(
            "status:    {}",
            if hub.downloaded {
                "downloaded"
            } else {
                "already cached"
            }
        );
    }
    println!("model:     {}", r.files.model.display());
    println!("mmproj:    {}", r.files.mmproj.display());
}

fn fail(message: &str) -> ExitCode {
    eprintln!("smolvlm: {message}");
    ExitCode::from(2)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match &cli.command {
        Command::Caption(args) => caption(args),
        Command::Info(args) => info(args),
        Command::Fetch(args) => fetch(args),
    }
}
