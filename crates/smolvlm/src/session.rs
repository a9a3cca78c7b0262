//! A session: one llama context (one KV cache) that captions images one after another.

use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::mtmd::{
    MtmdBitmap, MtmdContext, MtmdInputChunkType, MtmdInputChunks, MtmdInputText,
};
use llama_cpp_2::token::LlamaToken;

use crate::error::{CaptionError, Error, ImageError, Result, Stage};
use crate::generation::{GenerationOptions, Watchdog};
use crate::image::{ImageInput, ImageOptions, Preprocessor};
use crate::model::Model;
use crate::prompt::{render, Prompt, RenderedPrompt};
use crate::text::CaptionText;

/// What a caption has done so far, told as it happens by
/// [`Session::caption_observed`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// The image is prepared and the prompt tokenized: what it will cost.
    /// The vision encode comes next, one encode per tile plus the overview:
    /// nearly all of a caption's time at real scale.
    Tokenized {
        /// Tokens in the prompt, image tokens included.
        prompt_tokens: usize,
        /// Image embedding tokens.
        image_tokens: usize,
        /// Grid tiles (the overview not counted).
        tiles: usize,
    },
    /// The prompt, image included, is evaluated; generation starts.
    Prefilled {
        /// Time in the vision encoder.
        encode: Duration,
        /// Time evaluating the prompt in the text decoder.
        prefill: Duration,
    },
    /// A piece of generated text, as [`Session::caption_streaming`] gives it
    /// (never empty).
    Text(&'a str),
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    EndOfText,
    /// `max_tokens` were generated.
    MaxTokens,
    /// A stop string was produced (and cut from the text).
    Stop,
    /// The context filled up.
    ContextFull,
}

/// Time spent in each stage of one caption.
///
/// For an input that was already a
/// [`PreparedImage`](crate::image::PreparedImage), `decode` and `resize` are
/// the times its preparation took, wherever it ran (a batch prepares images on
/// another thread), and `total`, the time of this call, does not include
/// them. For every other input the stages add up to at most `total`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Timings {
    /// Reading and decoding the image.
    pub decode: Duration,
    /// Resizing it to the planned tile grid (and turning it upright).
    pub resize: Duration,
    /// Rendering the prompt; mtmd's image preprocessing and tokenization.
    pub tokenize: Duration,
    /// The vision encoder alone, over every tile and the overview. Each
    /// session has its own encoder, so no caption waits for another's.
    pub encode: Duration,
    /// The text decoder's prompt evaluation: text tokens and the image
    /// embeddings the encoder produced.
    pub prefill: Duration,
    /// Sampling and evaluating the generated tokens.
    pub generate: Duration,
    /// The whole call.
    pub total: Duration,
}

/// One image's caption and what it cost.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Caption {
    /// The generated text (stop string excluded).
    pub text: String,
    /// The generated token ids, in order.
    pub tokens: Vec<i32>,
    /// Tokens in the prompt, image tokens included.
    pub prompt_tokens: usize,
    /// Image embedding tokens in the prompt.
    pub image_tokens: usize,
    /// Image tiles encoded, not counting the downscaled overview that
    /// idefics3 (SmolVLM) adds to every image.
    pub tiles: usize,
    /// Why generation ended.
    pub finish: FinishReason,
    /// Time per stage.
    pub timings: Timings,
    /// The output parsed as JSON, with
    /// [`GenerationOptions::with_json_schema`]; `None` otherwise.
    pub json: Option<serde_json::Value>,
    /// Whether the image was not encoded again: the previous caption of this
    /// session had the same image (the same pixels after preparation) and
    /// the same text before it, so its tokens were still in the KV cache.
    /// Then `timings.encode` is zero.
    pub reused_image: bool,
}

/// What an image and prompt cost in tokens, from [`Session::tokenize`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TokenCount {
    /// Tokens in the prompt, image tokens included.
    pub prompt_tokens: usize,
    /// Image embedding tokens.
    pub image_tokens: usize,
    /// Grid tiles (the overview not counted).
    pub tiles: usize,
    /// Time per stage (decode, resize, tokenize, total; the rest are zero).
    pub timings: Timings,
}

/// One worker's engine state: a llama context (its KV cache) and a vision
/// encoder of its own, with a handle to its [`Model`] (a cheap clone), so it
/// has no lifetime: keep it in an app's state, next to the model or without
/// it, or move it to a worker thread. Open one per thread that captions at
/// once; they share the model's weights.
///
/// A session is `Send` (it may move between threads) but not `Sync` (one
/// thread uses it at a time, through `&mut`); a [`Model`] is both. The
/// compiler checks both:
///
/// ```
/// fn send<T: Send + 'static>() {}
/// send::<smolvlm::Session>();
/// ```
///
/// ```compile_fail
/// fn sync<T: Sync>() {}
/// sync::<smolvlm::Session>();
/// ```
///
/// Sessions that run at once never wait on one another, and each runs on
/// [`LoadOptions::threads`](crate::LoadOptions::threads) cores: split the
/// cores between them.
///
/// A session captions any number of images in a row, and every result
/// equals a fresh session's. Several prompts about one image in a row encode
/// it once: the session keeps the last caption's image (its tokens, and the
/// text before them) in its KV cache, keyed by a hash of that text and of
/// the prepared pixels, never by a path. The next caption with the same key
/// evaluates only its own text ([`Caption::reused_image`]); any other image
/// replaces it. So the cache holds one image per session and costs no
/// memory beyond the KV cache a session has anyway.
pub struct Session {
    model: Model,
    preprocessor: Preprocessor,
    image_options: ImageOptions,
    // Given back to the model on drop; it is never used after that.
    vision: ManuallyDrop<MtmdContext>,
    text: TextContext,
    batch: LlamaBatch<'static>,
    n_batch: u32,
    piece: Vec<u8>,
    // What the KV cache holds from the last caption, if it can be reused.
    cached_head: Option<CachedHead>,
}

// Pinned at compile time: sessions move between threads, models are shared.
const _: () = {
    const fn send<T: Send + 'static>() {}
    const fn send_sync<T: Send + Sync + 'static>() {}
    send::<Session>();
    send_sync::<Model>();
};

self_cell::self_cell!(
    /// The text decoder's context (its KV cache), with the model it borrows:
    /// a session owns both, so it has no lifetime and can live anywhere.
    struct TextContext {
        owner: Model,
        #[covariant]
        dependent: LlamaContext,
    }
);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("n_ctx", &self.ctx().n_ctx())
            .field("n_batch", &self.n_batch)
            .finish_non_exhaustive()
    }
}

/// What tokenizing one prompt and image produced.
struct Tokenized {
    chunks: MtmdInputChunks,
    tail: Vec<LlamaToken>,
    image_tokens: usize,
    tiles: usize,
    /// A hash of what the head's KV entries depend on: the text before the
    /// image and the image's pixels as mtmd sees them.
    head_key: u64,
}

/// The head (the text before the image, and the image) of the last caption,
/// left in the KV cache for the next caption of the same image.
#[derive(Debug, Clone, Copy)]
struct CachedHead {
    key: u64,
    n_past: i32,
}

/// The key of a head: its text and the pixels mtmd gets (the settings that
/// shaped them are in the pixels), never a path or an address.
fn head_key(head: &str, bitmap: &MtmdBitmap) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    head.hash(&mut hasher);
    (bitmap.nx(), bitmap.ny()).hash(&mut hasher);
    bitmap.data().hash(&mut hasher);
    hasher.finish()
}

impl Session {
    pub(crate) fn new(model: &Model) -> Result<Self> {
        let options = model.options();
        let (n_ctx, n_batch) = (options.context_size(), options.batch_size());
        let backend = crate::model::backend()?;
        let text = {
            let _guard = model.context_lock();
            TextContext::try_new(model.clone(), |model| {
                model
                    .llama()
                    .new_context(backend, options.context_params())
                    .map_err(|_| Error::Session { n_ctx, n_batch })
            })?
        };
        let vision = model.take_vision()?;
        let mut session = Self {
            model: model.clone(),
            preprocessor: model.preprocessor(ImageOptions::default()),
            image_options: ImageOptions::default(),
            vision: ManuallyDrop::new(vision),
            text,
            batch: LlamaBatch::new(n_batch as usize, 1),
            n_batch,
            piece: Vec::new(),
            cached_head: None,
        };
        if options.warmup() {
            session.warm_up()?;
        }
        Ok(session)
    }

    /// Runs one token through the text decoder, as llama.cpp's tools do
    /// after loading, so the first caption does not pay for first-use costs.
    fn warm_up(&mut self) -> Result<()> {
        let _span = tracing::debug_span!("warmup").entered();
        let started = Instant::now();
        let vocab = self.model.llama().vocab();
        let token = vocab.bos();
        self.batch.clear();
        self.batch
            .add(token, 0, &[0], true)
            .map_err(|_| CaptionError::Eval {
                stage: Stage::Prefill,
                code: -1,
            })?;
        self.decode(Stage::Prefill)?;
        self.text.with_dependent_mut(|_, ctx| {
            ctx.clear_kv_cache();
            ctx.reset_timings();
        });
        self.cached_head = None;
        tracing::debug!(elapsed = ?started.elapsed(), "session warmed up");
        Ok(())
    }

    /// Sets how this session decodes and shapes input images.
    pub fn set_image_options(&mut self, options: ImageOptions) {
        self.preprocessor = self.model.preprocessor(options.clone());
        self.image_options = options;
    }

    /// Captions one image.
    ///
    /// `prompt` is usually the user's instruction (`"Describe this image."`),
    /// rendered with the model's chat template as SmolVLM expects: image
    /// first, then the text. Use [`Prompt::raw`] to pass a fully rendered
    /// prompt holding the media marker.
    ///
    /// # Errors
    ///
    /// [`ImageError`] for unusable images, [`CaptionError`] for prompts that
    /// do not fit, cancellation, deadlines and engine failures,
    /// [`Error::InvalidOption`] for bad options. The session stays usable.
    pub fn caption<'i>(
        &mut self,
        image: impl Into<ImageInput<'i>>,
        prompt: impl Into<Prompt>,
        options: &GenerationOptions,
    ) -> Result<Caption> {
        self.caption_streaming(image, prompt, options, |_| {})
    }

    /// Like [`caption`](Self::caption), and calls `on_text` with each piece of
    /// text as soon as it is complete UTF-8 and cannot be part of a stop
    /// string. The pieces concatenate to the returned caption's text.
    ///
    /// # Errors
    ///
    /// As [`caption`](Self::caption).
    pub fn caption_streaming<'i>(
        &mut self,
        image: impl Into<ImageInput<'i>>,
        prompt: impl Into<Prompt>,
        options: &GenerationOptions,
        mut on_text: impl FnMut(&str),
    ) -> Result<Caption> {
        self.caption_observed(image, prompt, options, |progress| {
            if let Progress::Text(piece) = progress {
                on_text(piece);
            }
        })
    }

    /// Like [`caption`](Self::caption), and tells `observer` what is done
    /// as it happens: what the image costs once it is tokenized, when the
    /// prompt is evaluated, and each piece of text (as
    /// [`caption_streaming`](Self::caption_streaming) gives them). A
    /// [`Worker`](crate::Worker) turns these into its jobs' events.
    ///
    /// ```no_run
    /// # let model: smolvlm::Model = unimplemented!();
    /// use smolvlm::{GenerationOptions, Progress};
    /// let mut session = model.session()?;
    /// session.caption_observed(std::path::Path::new("photo.jpg"), "Describe this image.", &GenerationOptions::default(), |p| match p {
    ///     Progress::Tokenized { tiles, .. } => eprintln!("{tiles} tiles to encode"),
    ///     Progress::Text(piece) => print!("{piece}"),
    ///     _ => {}
    /// })?;
    /// # Ok::<(), smolvlm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`caption`](Self::caption).
    pub fn caption_observed<'i>(
        &mut self,
        image: impl Into<ImageInput<'i>>,
        prompt: impl Into<Prompt>,
        options: &GenerationOptions,
        mut observer: impl FnMut(Progress<'_>),
    ) -> Result<Caption> {
        let started = Instant::now();
        let _span = tracing::debug_span!("caption").entered();
        options.validate()?;
        // A bad grammar or schema fails here, before the image is read.
        let sampler = options.sampler(self.model.llama())?;
        let watchdog = options.watchdog(started);
        let mut timings = Timings::default();

        let tokenized =
            self.tokenize_input(image.into(), prompt.into(), &watchdog, &mut timings)?;
        let prompt_tokens = tokenized.chunks.total_tokens() + tokenized.tail.len();
        observer(Progress::Tokenized {
            prompt_tokens,
            image_tokens: tokenized.image_tokens,
            tiles: tokenized.tiles,
        });

        let reused_image = self.reuse_head(&tokenized);
        let n_past = self.prefill(&tokenized, reused_image, &watchdog, &mut timings)?;
        observer(Progress::Prefilled {
            encode: timings.encode,
            prefill: timings.prefill,
        });

        let t = Instant::now();
        let generated = self.generate(n_past, options, sampler, &watchdog, &mut |piece: &str| {
            if !piece.is_empty() {
                observer(Progress::Text(piece));
            }
        });
        timings.generate = t.elapsed();
        let (text, tokens, finish) = generated?;
        let json = if options.wants_json() {
            match serde_json::from_str(&text) {
                Ok(value) => Some(value),
                Err(e) => {
                    return Err(CaptionError::IncompleteJson {
                        text,
                        finish,
                        message: e.to_string(),
                    }
                    .into())
                }
            }
        } else {
            None
        };
        timings.total = started.elapsed();
        tracing::debug!(?timings, tokens = tokens.len(), "caption done");
        Ok(Caption {
            text,
            tokens,
            prompt_tokens,
            image_tokens: tokenized.image_tokens,
            tiles: tokenized.tiles,
            finish,
            timings,
            json,
            reused_image: reused_image.is_some(),
        })
    }

    /// Counts what an image and prompt cost, without encoding the image:
    /// decodes and resizes the image, and runs mtmd's preprocessing and
    /// tokenization. Use it to check a prompt fits, or to measure those stages.
    ///
    /// # Errors
    ///
    /// As [`caption`](Self::caption), short of encoding and generation.
    pub fn tokenize<'i>(
        &mut self,
        image: impl Into<ImageInput<'i>>,
        prompt: impl Into<Prompt>,
    ) -> Result<TokenCount> {
        let started = Instant::now();
        let options = GenerationOptions::default();
        let watchdog = options.watchdog(started);
        let mut timings = Timings::default();
        let tokenized =
            self.tokenize_input(image.into(), prompt.into(), &watchdog, &mut timings)?;
        timings.total = started.elapsed();
        Ok(TokenCount {
            prompt_tokens: tokenized.chunks.total_tokens() + tokenized.tail.len(),
            image_tokens: tokenized.image_tokens,
            tiles: tokenized.tiles,
            timings,
        })
    }

    /// Times one vision encode of one tile on this session's encoder, with
    /// its threads: what each tile of an image, and its overview, costs on
    /// this machine. An image of `n` tiles costs about `(n + 1) ×` this in
    /// the encoder, which is nearly all of a caption at real scale. The
    /// synthetic image is prepared and tokenized first, untimed; only the
    /// one encode is timed.
    ///
    /// # Errors
    ///
    /// [`CaptionError`] if mtmd cannot tokenize or encode the tile.
    pub fn time_tile_encode(&mut self) -> Result<Duration> {
        let side = self.model.vision().tile_size;
        let tile = image::RgbImage::from_pixel(side, side, image::Rgb([127, 127, 127]));
        let prepared = self
            .model
            .preprocessor(ImageOptions::default())
            .prepare(ImageInput::Rgb(&tile))?;
        let rgb = prepared.image();
        let bitmap = MtmdBitmap::from_image_data(rgb.width(), rgb.height(), rgb.as_raw())
            .map_err(|e| CaptionError::Tokenize(e.to_string()))?;
        let input = MtmdInputText {
            text: crate::prompt::MEDIA_MARKER.to_owned(),
            add_special: false,
            parse_special: true,
        };
        let chunks = self
            .vision
            .tokenize(input, &[&bitmap])
            .map_err(|e| CaptionError::Tokenize(e.to_string()))?;
        let chunk = (0..chunks.len())
            .filter_map(|i| chunks.get(i))
            .find(|c| c.chunk_type() == MtmdInputChunkType::Image)
            .ok_or_else(|| CaptionError::Tokenize("mtmd made no image chunk".to_owned()))?;
        let started = Instant::now();
        self.vision
            .encode_chunk(&chunk)
            .map_err(|e| CaptionError::Eval {
                stage: Stage::Prefill,
                code: match e {
                    llama_cpp_2::mtmd::MtmdEncodeError::EncodeFailure(code) => code,
                    #[allow(unreachable_patterns)]
                    _ => -1,
                },
            })?;
        Ok(started.elapsed())
    }

    /// Prepares the image, renders the prompt and tokenizes both.
    fn tokenize_input(
        &mut self,
        image: ImageInput<'_>,
        prompt: Prompt,
        watchdog: &Watchdog<'_>,
        timings: &mut Timings,
    ) -> Result<Tokenized> {
        let bitmap = {
            let _span = tracing::debug_span!("prepare").entered();
            self.bitmap(image, timings)?
        };
        watchdog.check(Stage::Tokenize)?;
        let t = Instant::now();
        let prompt = render(self.model.chat_template(), &prompt)?;
        let mut tokenized = self.tokenize_chunks(&prompt, &bitmap)?;
        tokenized.head_key = head_key(&prompt.head, &bitmap);
        timings.tokenize = t.elapsed();
        Ok(tokenized)
    }

    /// The image as an mtmd bitmap: prepared here, or (with
    /// [`ImageOptions::with_mtmd_loader`]) loaded by mtmd itself.
    fn bitmap(&mut self, image: ImageInput<'_>, timings: &mut Timings) -> Result<MtmdBitmap> {
        if self.image_options.mtmd_loader() {
            let t = Instant::now();
            let (bytes, origin) = match image {
                ImageInput::Path(path) => (
                    std::borrow::Cow::Owned(std::fs::read(path).map_err(|source| {
                        ImageError::Read {
                            path: path.to_path_buf(),
                            source,
                        }
                    })?),
                    format!("'{}'", path.display()),
                ),
                ImageInput::Bytes(bytes) => {
                    (std::borrow::Cow::Borrowed(bytes), "from memory".to_owned())
                }
                _ => {
                    return Err(Error::invalid(
                        "mtmd_loader",
                        "mtmd's loader takes only paths and encoded bytes",
                    ))
                }
            };
            let bitmap = MtmdBitmap::from_buffer(&self.vision, &bytes, false)
                .map_err(|_| ImageError::MtmdLoad { origin })?;
            timings.decode = t.elapsed();
            return Ok(bitmap);
        }
        let prepared = self.preprocessor.prepare(image)?;
        timings.decode = prepared.timings().decode;
        timings.resize = prepared.timings().resize;
        let rgb = prepared.image();
        Ok(
            MtmdBitmap::from_image_data(rgb.width(), rgb.height(), rgb.as_raw()).map_err(|_| {
                ImageError::BufferSize {
                    width: rgb.width(),
                    height: rgb.height(),
                    expected: rgb.width() as usize * rgb.height() as usize * 3,
                    actual: rgb.as_raw().len(),
                }
            })?,
        )
    }

    /// Tokenizes text and image, and checks every limit llama.cpp would abort on.
    fn tokenize_chunks(&self, prompt: &RenderedPrompt, bitmap: &MtmdBitmap) -> Result<Tokenized> {
        let _span = tracing::debug_span!("tokenize").entered();
        let input = MtmdInputText {
            text: prompt.head.clone(),
            add_special: true,
            parse_special: true,
        };
        let chunks = self
            .vision
            .tokenize(input, &[bitmap])
            .map_err(|e| CaptionError::Tokenize(e.to_string()))?;
        let vocab = self.model.llama().vocab();
        let tail = match &prompt.user {
            // The user's text as plain text, the template's around it with
            // its special tokens.
            Some(user) => {
                let (before, rest) = prompt.tail.split_at(user.start);
                let (text, after) = rest.split_at(user.end - user.start);
                let mut tokens = vocab.tokenize(before.as_bytes(), false, true);
                tokens.extend(vocab.tokenize(text.as_bytes(), false, false));
                tokens.extend(vocab.tokenize(after.as_bytes(), false, true));
                tokens
            }
            None => vocab.tokenize(prompt.tail.as_bytes(), false, true),
        };

        let (mut image_tokens, mut image_chunks, mut largest) = (0, 0, 0);
        for chunk in (0..chunks.len()).filter_map(|i| chunks.get(i)) {
            if chunk.chunk_type() == MtmdInputChunkType::Image {
                image_tokens += chunk.n_tokens();
                image_chunks += 1;
                largest = largest.max(chunk.n_tokens());
            }
        }
        let tokens = chunks.total_tokens() + tail.len();
        let n_ctx = self.ctx().n_ctx();
        // One slot must stay free for the first generated token.
        if tokens >= n_ctx as usize {
            return Err(CaptionError::PromptTooLong {
                tokens,
                image_tokens,
                n_ctx,
            }
            .into());
        }
        // mtmd splits an image chunk by n_batch, which a causal projector
        // (idefics3, SmolVLM's) takes in any split. A non-causal one must
        // see its whole image in one pass: llama.cpp asserts (aborts the
        // process) unless the chunk fits one ubatch.
        let one_pass = self.n_batch.min(self.ctx().n_ubatch());
        if self.vision.decode_use_non_causal() && largest > one_pass as usize {
            return Err(CaptionError::BatchTooSmall {
                tokens: largest,
                n_batch: one_pass,
            }
            .into());
        }
        // idefics3 adds one overview image after the grid tiles.
        let overview = usize::from(self.model.is_tiled() && image_chunks > 0);
        Ok(Tokenized {
            chunks,
            tail,
            image_tokens,
            tiles: image_chunks - overview,
            head_key: 0,
        })
    }

    /// Evaluates the prompt; returns the next position.
    fn prefill(
        &mut self,
        tokenized: &Tokenized,
        reused: Option<i32>,
        watchdog: &Watchdog<'_>,
        timings: &mut Timings,
    ) -> Result<i32> {
        let _span = tracing::debug_span!("prefill").entered();
        watchdog.check(Stage::Prefill)?;
        let started = Instant::now();
        let n_past = match reused {
            // The head's KV entries are there already: no encode.
            Some(n_past) => n_past,
            None => self.prefill_head(tokenized, timings)?,
        };
        self.prefill_tail(tokenized, n_past, started, watchdog, timings)
    }

    /// Whether the KV cache holds this caption's head from the last one (the
    /// same text before the same pixels), and the position after it; then
    /// everything after the head is removed. Otherwise the cache is cleared.
    fn reuse_head(&mut self, tokenized: &Tokenized) -> Option<i32> {
        let cached = self.cached_head.take();
        // With no text after the image, the head's last logits are needed:
        // they are not kept, so the head is evaluated again.
        let reusable = cached.filter(|c| c.key == tokenized.head_key && !tokenized.tail.is_empty());
        let reused = reusable.and_then(|c| {
            let from = u32::try_from(c.n_past).ok()?;
            let removed = self
                .text
                .with_dependent_mut(|_, ctx| ctx.clear_kv_cache_seq(Some(0), Some(from), None));
            matches!(removed, Ok(true)).then_some(c)
        });
        match reused {
            Some(c) => {
                self.cached_head = Some(c);
                Some(c.n_past)
            }
            None => {
                // Whatever a previous (possibly failed) caption left behind goes now.
                self.text.with_dependent_mut(|_, ctx| ctx.clear_kv_cache());
                None
            }
        }
    }

    /// Evaluates the head (text up to and including the image); returns the
    /// next position, and keeps the head for the next caption.
    fn prefill_head(&mut self, tokenized: &Tokenized, timings: &mut Timings) -> Result<i32> {
        let started = Instant::now();
        // The head (text up to and including the image) goes through mtmd,
        // which encodes each tile and decodes its embeddings. llama.cpp's
        // decode timers (batches and single tokens) tell how much of that
        // was the text decoder; the rest is the vision encoder.
        let (vision, n_batch) = (&mut self.vision, self.n_batch);
        let n_past = self.text.with_dependent_mut(|_, ctx| {
            ctx.reset_timings();
            tokenized.chunks.eval_chunks(
                vision,
                ctx,
                0,
                0,
                i32::try_from(n_batch).unwrap_or(i32::MAX),
                tokenized.tail.is_empty(),
            )
        });
        let n_past = n_past.map_err(|e| CaptionError::Eval {
            stage: Stage::Prefill,
            code: eval_code(&e),
        })?;
        let head = started.elapsed();
        let decoding = self.text.with_dependent_mut(|_, ctx| ctx.timings());
        let decoded =
            Duration::from_secs_f64((decoding.t_p_eval_ms() + decoding.t_eval_ms()).max(0.0) / 1e3);
        timings.encode = head.saturating_sub(decoded);
        self.cached_head = Some(CachedHead {
            key: tokenized.head_key,
            n_past,
        });
        Ok(n_past)
    }

    /// Evaluates the text after the image from `n_past`; returns the next position.
    fn prefill_tail(
        &mut self,
        tokenized: &Tokenized,
        n_past: i32,
        started: Instant,
        watchdog: &Watchdog<'_>,
        timings: &mut Timings,
    ) -> Result<i32> {
        let mut n_past = n_past;
        let n_batch = self.n_batch as usize;
        let last = tokenized.tail.len().saturating_sub(1);
        for (b, part) in tokenized.tail.chunks(n_batch).enumerate() {
            watchdog.check(Stage::Prefill)?;
            self.batch.clear();
            for (i, &token) in part.iter().enumerate() {
                let logits = b * n_batch + i == last;
                self.batch
                    .add(token, n_past, &[0], logits)
                    .map_err(|_| CaptionError::Eval {
                        stage: Stage::Prefill,
                        code: -1,
                    })?;
                n_past += 1;
            }
            self.decode(Stage::Prefill)?;
        }
        timings.prefill = started.elapsed().saturating_sub(timings.encode);
        Ok(n_past)
    }

    /// Samples up to `max_tokens` tokens after the prompt.
    fn generate(
        &mut self,
        mut n_past: i32,
        options: &GenerationOptions,
        mut sampler: llama_cpp_2::sampling::LlamaSampler,
        watchdog: &Watchdog<'_>,
        on_text: &mut impl FnMut(&str),
    ) -> Result<(String, Vec<i32>, FinishReason)> {
        let _span = tracing::debug_span!("generate").entered();
        // A handle of its own (an Arc), so the vocabulary's borrow does not
        // hold `self` while tokens are decoded.
        let model = self.model.clone();
        let vocab = model.llama().vocab();
        let mut text = CaptionText::new(options.stop());
        let mut tokens = Vec::new();
        let n_ctx = i32::try_from(self.ctx().n_ctx()).unwrap_or(i32::MAX);
        let mut finish = FinishReason::MaxTokens;
        for _ in 0..options.max_tokens() {
            watchdog.check(Stage::Generate)?;
            let token = sampler.sample(self.text.borrow_dependent(), -1);
            if vocab.is_eog(token) {
                finish = FinishReason::EndOfText;
                break;
            }
            tokens.push(token.0);
            self.piece.clear();
            vocab.token_to_piece_into(token, &mut self.piece, false, None);
            let stopped = text.push(&self.piece);
            on_text(text.take_ready());
            if stopped {
                finish = FinishReason::Stop;
                break;
            }
            if n_past >= n_ctx {
                finish = FinishReason::ContextFull;
                break;
            }
            if tokens.len() == options.max_tokens() as usize {
                break;
            }
            self.batch.clear();
            self.batch
                .add(token, n_past, &[0], true)
                .map_err(|_| CaptionError::Eval {
                    stage: Stage::Generate,
                    code: -1,
                })?;
            n_past += 1;
            self.decode(Stage::Generate)?;
        }
        on_text(text.finish());
        Ok((text.into_text(), tokens, finish))
    }

    fn decode(&mut self, stage: Stage) -> Result<(), CaptionError> {
        let batch = &mut self.batch;
        self.text
            .with_dependent_mut(|_, ctx| ctx.decode(batch))
            .map_err(|e| CaptionError::Eval {
                stage,
                code: decode_code(&e),
            })
    }

    /// The text decoder's context.
    fn ctx(&self) -> &LlamaContext<'_> {
        self.text.borrow_dependent()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: `vision` is taken exactly once, here, and the session is
        // never used again after `drop`.
        let vision = unsafe { ManuallyDrop::take(&mut self.vision) };
        self.model.give_back_vision(vision);
    }
}

fn eval_code(e: &llama_cpp_2::mtmd::MtmdEvalError) -> i32 {
    match e {
        llama_cpp_2::mtmd::MtmdEvalError::EvalFailure(code) => *code,
        #[allow(unreachable_patterns)]
        _ => -1,
    }
}

fn decode_code(e: &llama_cpp_2::DecodeError) -> i32 {
    match e {
        llama_cpp_2::DecodeError::NoKvCacheSlot => 1,
        llama_cpp_2::DecodeError::NTokensZero => -1,
        llama_cpp_2::DecodeError::Unknown(code) => *code,
        #[allow(unreachable_patterns)]
        _ => -1,
    }
}
