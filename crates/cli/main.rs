//! `smolvlm`: caption images with SmolVLM in-process.
//!
//! Exit codes: 0 all images captioned; 1 at least one image failed (the
//! others were still captioned); 2 bad usage or the model could not load.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use smolvlm::{GenerationOptions, LoadOptions, Model, ModelFiles, Prompt};

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
}

#[derive(Debug, Args)]
struct ModelArgs {
    /// The text model GGUF.
    #[arg(short, long, value_name = "MODEL.gguf")]
    model: PathBuf,
    /// The vision projector GGUF (mmproj).
    #[arg(long, value_name = "MMPROJ.gguf")]
    mmproj: PathBuf,
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
struct CaptionArgs {
    /// Images to caption.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// The instruction, rendered with the model's chat template (image first).
    #[arg(short, long, default_value = "Describe this image.")]
    prompt: String,
    /// A fully rendered prompt used verbatim; must contain <__media__> once.
    #[arg(long, conflicts_with = "prompt")]
    raw_prompt: Option<String>,
    /// Most tokens to generate per image.
    #[arg(short = 'n', long, default_value_t = 256)]
    max_tokens: u32,
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

impl ModelArgs {
    fn load(&self) -> Result<Model, smolvlm::Error> {
        let mut options = LoadOptions::default()
            .with_context_size(self.ctx_size)
            .with_vision_gpu(!self.no_vision_gpu);
        if let Some(threads) = self.threads {
            options = options.with_threads(threads);
        }
        if let Some(layers) = self.gpu_layers {
            options = options.with_gpu_layers(layers);
        }
        Model::load(&ModelFiles::new(&self.model, &self.mmproj), &options)
    }
}

impl CaptionArgs {
    fn generation(&self) -> Result<GenerationOptions, String> {
        let mut options = GenerationOptions::default()
            .with_max_tokens(self.max_tokens)
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
            None => Prompt::from(&self.prompt),
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
        Err(e) => return fail(&e.to_string()),
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
        Err(e) => return fail(&e.to_string()),
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
    }
}
