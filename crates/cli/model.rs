//! Which model to load and how, from the flags over the config file; the
//! Hub download bar.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use smolvlm::image::ImageOptions;
use smolvlm::{DownloadEvent, HubOptions, LoadOptions, Model, ModelFiles, ModelSource, Preset};

use crate::args::ModelArgs;
use crate::config::LegacyConfig;

/// The model, how it loads, and the config's per-image settings.
#[derive(Debug)]
pub struct ModelSettings {
    /// Where the pair comes from.
    pub source: ModelSource,
    /// The model as named (flag, config or default), for messages.
    pub name: String,
    /// The preset it names, for the recommended prompt and length.
    pub preset: Option<&'static Preset>,
    /// How it loads.
    pub load: LoadOptions,
    /// Use only the cache.
    pub offline: bool,
    /// How images are shaped (the config's `image_processing`, then flags).
    pub image: ImageOptions,
    /// Whether uniform borders are trimmed.
    pub smart_crop: bool,
    /// The aspect ratio every image is stretched to, if any.
    pub stretch_to: Option<(u32, u32)>,
    /// The per-image deadline (`--timeout`, else the config's `timeout`).
    pub timeout: Option<Duration>,
    /// The config file read, if any.
    pub config: Option<PathBuf>,
    /// One line per group of config keys that change nothing.
    pub warnings: Vec<String>,
}

impl ModelSettings {
    /// These settings for a run that reads videos: the larger default
    /// context, unless --ctx-size says otherwise.
    pub fn for_video(&mut self, args: &ModelArgs) {
        if args.ctx_size.is_none() {
            self.load = self.load.clone().with_context_size(VIDEO_CONTEXT_SIZE);
        }
    }

    /// Reads the config (if any) and applies the flags over it. `sessions`
    /// is how many sessions will share the cores; `timeout` and
    /// `smart_crop` are the caption flags of the same names.
    ///
    /// # Errors
    ///
    /// A message naming the bad file, key or flag.
    pub fn resolve(
        args: &ModelArgs,
        sessions: u32,
        timeout: Option<f64>,
        smart_crop: Option<bool>,
    ) -> Result<Self, String> {
        let config = match &args.config {
            Some(path) => LegacyConfig::load(path).map_err(|e| e.to_string())?,
            None => LegacyConfig::default(),
        };
        let name = match (&args.model, &config.smolvlm_version) {
            (Some(flag), _) => flag.to_string_lossy().into_owned(),
            (None, Some(version)) => version.clone(),
            (None, None) => smolvlm::DEFAULT_PRESET.to_owned(),
        };
        let source = source(&name, args)?;
        let preset = match &source {
            ModelSource::Preset(name) => Preset::find(name),
            ModelSource::Hub(repo) => Preset::find(repo.repo()),
            _ => None,
        };
        let timeout = match (timeout, config.timeout) {
            (Some(secs), _) => Some(seconds(secs, "--timeout")?),
            (None, Some(secs)) => Some(seconds(secs, "the config's timeout")?),
            (None, None) => None,
        };
        let mut image = config.apply_image(ImageOptions::default());
        if let Some(on) = smart_crop {
            image = image.with_smart_crop(on);
        }
        Ok(Self {
            load: load_options(args, sessions),
            source,
            name,
            preset,
            offline: args.offline,
            smart_crop: image.smart_crop(),
            stretch_to: config.stretch_to(),
            image,
            timeout,
            config: args.config.clone(),
            warnings: config
                .warnings()
                .into_iter()
                .map(|w| match &args.config {
                    Some(path) => format!("config '{}': {w}", path.display()),
                    None => w,
                })
                .collect(),
        })
    }

    /// Resolves (downloading if needed) and loads the pair.
    ///
    /// # Errors
    ///
    /// The library's error, as a message.
    pub fn load(&self) -> Result<Model, String> {
        let resolved = self
            .source
            .resolve(&hub_options(self.offline))
            .map_err(|e| e.to_string())?;
        self.load_resolved(&resolved)
    }

    /// Loads the model, and says which pair it is, for records:
    /// `REPO@COMMIT:MODEL_FILE+MMPROJ_FILE` for a Hub model; for local
    /// files, with `hash` the SHA-256 of each (16 hex digits; they are read
    /// once more, about a second per GB), else their paths (for records
    /// that hold no provenance: txt).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load), or a file that cannot be read.
    pub fn load_identified(&self, hash: bool) -> Result<(Model, String), String> {
        let resolved = self
            .source
            .resolve(&hub_options(self.offline))
            .map_err(|e| e.to_string())?;
        let identity = match &resolved.hub {
            Some(hub) => format!(
                "{}@{}:{}+{}",
                hub.repo, hub.commit, hub.model_file, hub.mmproj_file
            ),
            None if !hash => format!(
                "{}+{}",
                resolved.files.model.display(),
                resolved.files.mmproj.display()
            ),
            None => {
                let hash = |path: &std::path::Path| -> Result<String, String> {
                    use sha2::Digest;
                    let mut file = std::fs::File::open(path)
                        .map_err(|e| format!("'{}': {e}", path.display()))?;
                    let mut hasher = sha2::Sha256::new();
                    std::io::copy(&mut file, &mut hasher)
                        .map_err(|e| format!("'{}': {e}", path.display()))?;
                    Ok(crate::settings::short_hex(&hasher.finalize()))
                };
                format!(
                    "sha256:{}+{}",
                    hash(&resolved.files.model)?,
                    hash(&resolved.files.mmproj)?
                )
            }
        };
        Ok((self.load_resolved(&resolved)?, identity))
    }

    fn load_resolved(&self, resolved: &smolvlm::ResolvedModel) -> Result<Model, String> {
        // A bar on a terminal, from the library's load progress.
        let bar = std::io::stderr().is_terminal().then(|| {
            let style =
                ProgressStyle::with_template("loading the model [{wide_bar}] {percent:>3}%")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::with_draw_target(Some(1000), indicatif::ProgressDrawTarget::stderr())
                .with_style(style)
        });
        let shown = bar.clone();
        let model = Model::load_observed(&resolved.files, &self.load, move |done| {
            if let Some(bar) = &shown {
                bar.set_position((done.clamp(0.0, 1.0) * 1000.0) as u64);
            }
            true
        });
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        model.map_err(|e| e.to_string())
    }
}

/// A local pair when --mmproj is given or the model is a file or `.gguf`;
/// otherwise a preset or a Hub repo.
fn source(name: &str, args: &ModelArgs) -> Result<ModelSource, String> {
    let path = PathBuf::from(name);
    let local =
        args.mmproj.is_some() || path.is_file() || name.to_ascii_lowercase().ends_with(".gguf");
    if !local {
        return ModelSource::parse(name).map_err(|e| e.to_string());
    }
    let mmproj = args.mmproj.as_ref().ok_or_else(|| {
        format!("--model '{name}' is a local file: pass its vision projector with --mmproj")
    })?;
    Ok(ModelSource::Files(ModelFiles::new(path, mmproj)))
}

/// The cores this process may use.
#[must_use]
pub fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

/// The context size without --ctx-size.
const CONTEXT_SIZE: u32 = 4096;

/// The context size without --ctx-size when videos are asked about:
/// SmolVLM2's training context, where its 64 frames of 64 tokens (and
/// their text) fit with room for the answer.
const VIDEO_CONTEXT_SIZE: u32 = 8192;

fn load_options(args: &ModelArgs, sessions: u32) -> LoadOptions {
    // Sessions run side by side: by default they split the cores between them.
    let threads = args.threads.map_or(
        (cores() / sessions.max(1)).max(1),
        std::num::NonZeroU32::get,
    );
    let mut options = LoadOptions::default()
        .with_threads(threads)
        .with_context_size(args.ctx_size.unwrap_or(CONTEXT_SIZE))
        .with_ubatch_size(args.ubatch_size)
        .with_flash_attention(args.flash_attn.into())
        .with_vision_flash_attention(args.vision_flash_attn.into())
        .with_kv_cache_type(args.kv_type.into())
        .with_mmap(!args.no_mmap)
        .with_mlock(args.mlock)
        .with_warmup(!args.no_warmup)
        .with_vision_gpu(!args.no_vision_gpu)
        .with_max_tiles(args.max_tiles.map(std::num::NonZeroU32::get));
    if let Some(vision) = args.vision_threads {
        options = options.with_vision_threads(vision.get());
    }
    if let Some(layers) = args.gpu_layers {
        options = options.with_gpu_layers(layers);
    }
    options
}

fn seconds(secs: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{what} {secs}: must be a non-negative number of seconds"))
}

/// Hub settings from the environment, `--offline` on top, and a download bar.
#[must_use]
pub fn hub_options(offline: bool) -> HubOptions {
    let options = HubOptions::from_env();
    let options = if offline {
        options.with_offline(true)
    } else {
        options
    };
    let bar: Mutex<Option<ProgressBar>> = Mutex::new(None);
    options.with_progress(move |event| draw_download(&bar, event))
}

/// One bar per file on stderr; indicatif draws nothing when stderr is not a terminal.
fn draw_download(bar: &Mutex<Option<ProgressBar>>, event: &DownloadEvent<'_>) {
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
