//! A session: one llama context (one KV cache) that captions images one after another.

use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::mtmd::{
    MtmdBitmap, MtmdContext, MtmdInputChunkType, MtmdInputChunks, MtmdInputText,
};
use llama_cpp_2::token::LlamaToken;

use crate::conversation::Conversation;
use crate::error::{CaptionError, Error, ImageError, Result, Stage};
use crate::generation::{GenerationOptions, Watchdog};
use crate::image::{ImageInput, ImageOptions, Preprocessor};
use crate::model::Model;
use crate::prompt::{render, Prompt, Segment, MEDIA_MARKER};
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
    /// Whether the prompt had images and none was encoded again: an earlier
    /// call of this session had the same images (the same pixels after
    /// preparation) after the same text, so their tokens were still in the
    /// KV cache. Then `timings.encode` is zero.
    pub reused_image: bool,
    /// Images in the prompt.
    pub images: usize,
    /// Of those, how many the vision encoder encoded in this call; the
    /// others were in the KV cache already.
    pub images_encoded: usize,
    /// Prompt tokens (positions) whose KV entries this call reused from the
    /// last one instead of evaluating them: the part of the prompt that
    /// began the same way. A follow-up in a conversation reuses all of it
    /// but its new turn.
    pub cached_tokens: usize,
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
    // What the KV cache holds, in order, for the next prompt to reuse.
    ledger: Vec<Entry>,
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

/// One entry of what the KV cache holds: a text token, or a whole image
/// (its wrapper tokens and embeddings, as mtmd lays them out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Token(LlamaToken),
    Image(ImageEntry),
}

/// An image's place in the KV cache and what it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ImageEntry {
    /// A hash of the pixels mtmd got (the settings that shaped them are in
    /// the pixels), never a path or an address.
    key: u64,
    positions: i32,
    image_tokens: usize,
    tiles: usize,
}

/// An image for a prompt.
pub(crate) struct Media<'i> {
    pub input: ImageInput<'i>,
    /// Its key, when an earlier call computed it (a conversation keeps the
    /// keys of its images, so a follow-up need not prepare them again).
    pub key: Option<u64>,
}

impl<'i> Media<'i> {
    pub(crate) fn new(input: ImageInput<'i>) -> Self {
        Self { input, key: None }
    }
}

/// A prompt tokenized: text tokens, and images by index, in order.
#[derive(Debug)]
enum Item {
    Tokens(Vec<LlamaToken>),
    Image(usize),
}

/// One image of a prompt, prepared and tokenized as far as needed.
#[derive(Default)]
struct Planned {
    key: Option<u64>,
    bitmap: Option<MtmdBitmap>,
    chunks: Option<MtmdInputChunks>,
    entry: Option<ImageEntry>,
}

/// What a prompt costs.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    positions: usize,
    image_tokens: usize,
    tiles: usize,
    images: usize,
}

/// Where a prompt stops matching what the KV cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Start {
    item: usize,
    offset: usize,
    entries: usize,
    pos: i32,
}

/// The key of an image: the pixels mtmd gets.
fn image_key(bitmap: &MtmdBitmap) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
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
            ledger: Vec::new(),
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
        self.ledger.clear();
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
        observer: impl FnMut(Progress<'_>),
    ) -> Result<Caption> {
        self.ask_observed(&[image.into()], prompt, options, observer)
    }

    /// Answers one prompt about several images (or none), as
    /// [`caption`](Self::caption) does about one: a user prompt is one user
    /// turn holding the images in order and then the text; a raw prompt must
    /// hold [`MEDIA_MARKER`](crate::MEDIA_MARKER) once per image.
    ///
    /// ```no_run
    /// # let model: smolvlm::Model = unimplemented!();
    /// use std::path::Path;
    /// let mut session = model.session()?;
    /// let images = [Path::new("before.jpg").into(), Path::new("after.jpg").into()];
    /// let answer = session.ask(&images, "What changed?", &Default::default())?;
    /// println!("{}", answer.text);
    /// # Ok::<(), smolvlm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`caption`](Self::caption); a raw prompt with the wrong number of
    /// markers is [`CaptionError::Marker`].
    pub fn ask(
        &mut self,
        images: &[ImageInput<'_>],
        prompt: impl Into<Prompt>,
        options: &GenerationOptions,
    ) -> Result<Caption> {
        self.ask_observed(images, prompt, options, |_| {})
    }

    /// Like [`ask`](Self::ask), and tells `observer` what is done as it
    /// happens, as [`caption_observed`](Self::caption_observed) does.
    ///
    /// # Errors
    ///
    /// As [`ask`](Self::ask).
    pub fn ask_observed(
        &mut self,
        images: &[ImageInput<'_>],
        prompt: impl Into<Prompt>,
        options: &GenerationOptions,
        observer: impl FnMut(Progress<'_>),
    ) -> Result<Caption> {
        let started = Instant::now();
        let segments = render(self.model.chat_template(), &prompt.into(), images.len())?;
        let mut media: Vec<Media<'_>> = images.iter().cloned().map(Media::new).collect();
        self.run(started, &segments, &mut media, options, observer)
    }

    /// Answers the conversation's last user turn, and appends the answer to
    /// it as the assistant's turn. A follow-up evaluates only what is new:
    /// the earlier turns and their images are still in this session's KV
    /// cache, unless another prompt came in between (then whatever part of
    /// the conversation is still there is reused, and the rest evaluated).
    ///
    /// ```no_run
    /// # let model: smolvlm::Model = unimplemented!();
    /// use smolvlm::{Conversation, GenerationOptions};
    /// let mut session = model.session()?;
    /// let mut chat = Conversation::new();
    /// chat.user([std::path::PathBuf::from("photo.jpg")], "Describe this image.");
    /// let first = session.reply(&mut chat, &GenerationOptions::default())?;
    /// chat.user_text("What colour is the cup?");
    /// let follow_up = session.reply(&mut chat, &GenerationOptions::default())?;
    /// assert_eq!(follow_up.images_encoded, 0);
    /// # Ok::<(), smolvlm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ask`](Self::ask), and [`Error::InvalidOption`] (`conversation`)
    /// when the conversation does not end with a user or system turn. On an
    /// error the conversation is unchanged.
    pub fn reply(
        &mut self,
        conversation: &mut Conversation,
        options: &GenerationOptions,
    ) -> Result<Caption> {
        self.reply_observed(conversation, options, |_| {})
    }

    /// Like [`reply`](Self::reply), and tells `observer` what is done as it
    /// happens, as [`caption_observed`](Self::caption_observed) does.
    ///
    /// # Errors
    ///
    /// As [`reply`](Self::reply).
    pub fn reply_observed(
        &mut self,
        conversation: &mut Conversation,
        options: &GenerationOptions,
        observer: impl FnMut(Progress<'_>),
    ) -> Result<Caption> {
        let started = Instant::now();
        if !conversation.awaits_reply() {
            return Err(Error::invalid(
                "conversation",
                "the last turn must be the user's (or the system's): there is nothing to answer",
            ));
        }
        // Keys computed under other image settings are not trusted.
        let shaping = (self.image_options.clone(), self.model.vision());
        let segments = conversation.render(self.model.chat_template())?;
        let mut media = conversation.media(&shaping);
        let caption = self.run(started, &segments, &mut media, options, observer)?;
        let keys: Vec<Option<u64>> = media.iter().map(|m| m.key).collect();
        drop(media);
        conversation.remember(&shaping, &keys);
        conversation.assistant(caption.text.trim());
        Ok(caption)
    }

    /// Empties the KV cache: the next prompt is evaluated whole. A session
    /// replaces what it holds on its own whenever a prompt begins
    /// differently; call this to time a whole caption again, or to drop a
    /// conversation's content from the session.
    pub fn forget(&mut self) {
        self.text.with_dependent_mut(|_, ctx| ctx.clear_kv_cache());
        self.ledger.clear();
    }

    /// Tokenizes, evaluates and generates: the work behind every call.
    fn run(
        &mut self,
        started: Instant,
        segments: &[Segment],
        media: &mut [Media<'_>],
        options: &GenerationOptions,
        mut observer: impl FnMut(Progress<'_>),
    ) -> Result<Caption> {
        let _span = tracing::debug_span!("caption").entered();
        options.validate()?;
        // A bad grammar or schema fails here, before the image is read.
        let sampler = options.sampler(self.model.llama())?;
        let watchdog = options.watchdog(started);
        let mut timings = Timings::default();

        let t = Instant::now();
        let (items, mut planned) = self.plan(segments, media, &watchdog, &mut timings)?;
        let start = self.matching(&items, &mut planned);
        let counts = self.count(&items, &mut planned, start, media, &mut timings)?;
        timings.tokenize = t.elapsed().saturating_sub(timings.decode + timings.resize);
        observer(Progress::Tokenized {
            prompt_tokens: counts.positions,
            image_tokens: counts.image_tokens,
            tiles: counts.tiles,
        });

        let (n_past, start, images_encoded) =
            self.prefill(&items, &mut planned, start, media, &watchdog, &mut timings)?;
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
        for (m, p) in media.iter_mut().zip(&planned) {
            m.key = p.key;
        }
        timings.total = started.elapsed();
        tracing::debug!(?timings, tokens = tokens.len(), "caption done");
        Ok(Caption {
            text,
            tokens,
            prompt_tokens: counts.positions,
            image_tokens: counts.image_tokens,
            tiles: counts.tiles,
            finish,
            timings,
            json,
            reused_image: counts.images > 0 && images_encoded == 0,
            images: counts.images,
            images_encoded,
            cached_tokens: usize::try_from(start.pos).unwrap_or(0),
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
        let segments = render(self.model.chat_template(), &prompt.into(), 1)?;
        let media = [Media::new(image.into())];
        let (items, mut planned) = self.plan(&segments, &media, &watchdog, &mut timings)?;
        let nothing = Start {
            item: 0,
            offset: 0,
            entries: 0,
            pos: 0,
        };
        let counts = self.count(&items, &mut planned, nothing, &media, &mut timings)?;
        timings.total = started.elapsed();
        timings.tokenize = timings
            .total
            .saturating_sub(timings.decode + timings.resize);
        Ok(TokenCount {
            prompt_tokens: counts.positions,
            image_tokens: counts.image_tokens,
            tiles: counts.tiles,
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
            text: MEDIA_MARKER.to_owned(),
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
                .ok()
                // stb_image can "decode" a corrupt file to no pixels at all.
                .filter(|b| b.nx() > 0 && b.ny() > 0)
                .ok_or(ImageError::MtmdLoad { origin })?;
            timings.decode += t.elapsed();
            return Ok(bitmap);
        }
        let prepared = self.preprocessor.prepare(image)?;
        timings.decode += prepared.timings().decode;
        timings.resize += prepared.timings().resize;
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

    /// Prepares the images whose keys are not known yet (a key needs the
    /// pixels) and tokenizes the text, in order.
    fn plan(
        &mut self,
        segments: &[Segment],
        media: &[Media<'_>],
        watchdog: &Watchdog<'_>,
        timings: &mut Timings,
    ) -> Result<(Vec<Item>, Vec<Planned>)> {
        let _span = tracing::debug_span!("prepare").entered();
        let mut planned: Vec<Planned> = media
            .iter()
            .map(|m| Planned {
                key: m.key,
                ..Planned::default()
            })
            .collect();
        for segment in segments {
            let Segment::Image(i) = *segment else {
                continue;
            };
            let (Some(p), Some(m)) = (planned.get_mut(i), media.get(i)) else {
                return Err(Error::Internal(format!("the prompt names image {i}")));
            };
            if p.key.is_none() {
                watchdog.check(Stage::Tokenize)?;
                let bitmap = self.bitmap(m.input, timings)?;
                p.key = Some(image_key(&bitmap));
                p.bitmap = Some(bitmap);
            }
        }
        watchdog.check(Stage::Tokenize)?;
        // Text is tokenized segment by segment, as mtmd tokenizes the text
        // between media markers: the template's with its special tokens, a
        // user's as plain text. BOS and EOS as mtmd adds them.
        let vocab = self.model.llama().vocab();
        let mut items = Vec::new();
        let mut tokens = Vec::new();
        if vocab.should_add_bos() {
            tokens.push(vocab.bos());
        }
        for segment in segments {
            match segment {
                Segment::Special(text) => {
                    vocab.tokenize_into(text.as_bytes(), &mut tokens, false, true)
                }
                Segment::Plain(text) => {
                    vocab.tokenize_into(text.as_bytes(), &mut tokens, false, false)
                }
                Segment::Image(i) => {
                    if !tokens.is_empty() {
                        items.push(Item::Tokens(std::mem::take(&mut tokens)));
                    }
                    items.push(Item::Image(*i));
                }
            }
        }
        if vocab.should_add_eos() {
            tokens.push(vocab.eos());
        }
        if !tokens.is_empty() {
            items.push(Item::Tokens(tokens));
        }
        if items.is_empty() {
            return Err(CaptionError::Tokenize("the prompt is empty".to_owned()).into());
        }
        Ok((items, planned))
    }

    /// How much of the prompt the KV cache holds already, from the start:
    /// text token by token, images whole by key. At least the last entry is
    /// left to evaluate, for the logits the first token is sampled from.
    fn matching(&self, items: &[Item], planned: &mut [Planned]) -> Start {
        let mut at = Start {
            item: 0,
            offset: 0,
            entries: 0,
            pos: 0,
        };
        for (k, item) in items.iter().enumerate() {
            at.item = k;
            match item {
                Item::Tokens(tokens) => {
                    for (j, &token) in tokens.iter().enumerate() {
                        if self.ledger.get(at.entries) != Some(&Entry::Token(token)) {
                            at.offset = j;
                            return at;
                        }
                        at.entries += 1;
                        at.pos += 1;
                    }
                }
                Item::Image(i) => match (self.ledger.get(at.entries), planned.get_mut(*i)) {
                    (Some(Entry::Image(e)), Some(p)) if p.key == Some(e.key) => {
                        p.entry = Some(*e);
                        at.entries += 1;
                        at.pos += e.positions;
                    }
                    _ => return at,
                },
            }
        }
        // All of it is there: evaluate its last entry again.
        match (items.last(), self.ledger.get(at.entries.wrapping_sub(1))) {
            (Some(Item::Tokens(tokens)), _) => Start {
                item: items.len() - 1,
                offset: tokens.len() - 1,
                entries: at.entries - 1,
                pos: at.pos - 1,
            },
            (Some(Item::Image(_)), Some(Entry::Image(e))) => Start {
                item: items.len() - 1,
                offset: 0,
                entries: at.entries - 1,
                pos: at.pos - e.positions,
            },
            _ => Start {
                item: 0,
                offset: 0,
                entries: 0,
                pos: 0,
            },
        }
    }

    /// Tokenizes the images from `start` on and counts the whole prompt;
    /// checks every limit llama.cpp would abort on.
    fn count(
        &mut self,
        items: &[Item],
        planned: &mut [Planned],
        start: Start,
        media: &[Media<'_>],
        timings: &mut Timings,
    ) -> Result<Counts> {
        let _span = tracing::debug_span!("tokenize").entered();
        let mut counts = Counts::default();
        for (k, item) in items.iter().enumerate() {
            match item {
                Item::Tokens(tokens) => counts.positions += tokens.len(),
                Item::Image(i) => {
                    let (Some(p), Some(m)) = (planned.get_mut(*i), media.get(*i)) else {
                        return Err(Error::Internal(format!("the prompt names image {i}")));
                    };
                    let entry = match p.entry {
                        Some(entry) if k < start.item => entry,
                        _ => self.tokenize_image(p, m, timings)?,
                    };
                    counts.images += 1;
                    counts.positions += usize::try_from(entry.positions).unwrap_or(0);
                    counts.image_tokens += entry.image_tokens;
                    counts.tiles += entry.tiles;
                }
            }
        }
        let n_ctx = self.ctx().n_ctx();
        // One slot must stay free for the first generated token.
        if counts.positions >= n_ctx as usize {
            return Err(CaptionError::PromptTooLong {
                tokens: counts.positions,
                image_tokens: counts.image_tokens,
                n_ctx,
            }
            .into());
        }
        Ok(counts)
    }

    /// The image as mtmd tokenizes it alone (its wrapper text and its
    /// tiles), ready to evaluate; checks what llama.cpp would abort on.
    fn tokenize_image(
        &mut self,
        planned: &mut Planned,
        media: &Media<'_>,
        timings: &mut Timings,
    ) -> Result<ImageEntry> {
        if let (Some(_), Some(entry)) = (&planned.chunks, planned.entry) {
            return Ok(entry);
        }
        let bitmap = match planned.bitmap.take() {
            Some(bitmap) => bitmap,
            None => self.bitmap(media.input, timings)?,
        };
        let key = image_key(&bitmap);
        let input = MtmdInputText {
            text: MEDIA_MARKER.to_owned(),
            add_special: false,
            parse_special: true,
        };
        let chunks = self
            .vision
            .tokenize(input, &[&bitmap])
            .map_err(|e| CaptionError::Tokenize(e.to_string()))?;
        let (mut image_tokens, mut image_chunks, mut largest) = (0, 0, 0);
        for chunk in (0..chunks.len()).filter_map(|i| chunks.get(i)) {
            if chunk.chunk_type() == MtmdInputChunkType::Image {
                image_tokens += chunk.n_tokens();
                image_chunks += 1;
                largest = largest.max(chunk.n_tokens());
            }
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
        let entry = ImageEntry {
            key,
            positions: chunks.total_positions(),
            image_tokens,
            tiles: image_chunks - overview,
        };
        planned.key = Some(key);
        planned.chunks = Some(chunks);
        planned.entry = Some(entry);
        Ok(entry)
    }

    /// Evaluates the prompt from where the KV cache stops matching it;
    /// returns the next position, where evaluation started, and how many
    /// images were encoded.
    fn prefill(
        &mut self,
        items: &[Item],
        planned: &mut [Planned],
        start: Start,
        media: &[Media<'_>],
        watchdog: &Watchdog<'_>,
        timings: &mut Timings,
    ) -> Result<(i32, Start, usize)> {
        let _span = tracing::debug_span!("prefill").entered();
        watchdog.check(Stage::Prefill)?;
        let started = Instant::now();
        let mut start = start;
        // What follows the reused part goes, with whatever a failed call
        // left behind.
        self.ledger.truncate(start.entries);
        let kept = u32::try_from(start.pos)
            .ok()
            .filter(|&pos| pos > 0)
            .map(|pos| {
                self.text
                    .with_dependent_mut(|_, ctx| ctx.clear_kv_cache_seq(Some(0), Some(pos), None))
            });
        if !matches!(kept, Some(Ok(true))) {
            self.forget();
            start = Start {
                item: 0,
                offset: 0,
                entries: 0,
                pos: 0,
            };
        }
        let mut n_past = start.pos;
        let mut encoded = 0;
        let last = items.len() - 1;
        for (k, item) in items.iter().enumerate().skip(start.item) {
            watchdog.check(Stage::Prefill)?;
            match item {
                Item::Tokens(tokens) => {
                    let from = if k == start.item { start.offset } else { 0 };
                    self.decode_prompt(&tokens[from..], &mut n_past, k == last, watchdog)?;
                }
                Item::Image(i) => {
                    let (Some(p), Some(m)) = (planned.get_mut(*i), media.get(*i)) else {
                        return Err(Error::Internal(format!("the prompt names image {i}")));
                    };
                    let entry = self.tokenize_image(p, m, timings)?;
                    let Some(chunks) = p.chunks.as_ref() else {
                        return Err(Error::Internal("an image was not tokenized".to_owned()));
                    };
                    n_past = self.eval_image(chunks, n_past, k == last, timings)?;
                    self.ledger.push(Entry::Image(entry));
                    encoded += 1;
                }
            }
        }
        timings.prefill = started.elapsed().saturating_sub(timings.encode);
        Ok((n_past, start, encoded))
    }

    /// Evaluates one image through mtmd, which encodes each tile and decodes
    /// its embeddings; returns the next position.
    fn eval_image(
        &mut self,
        chunks: &MtmdInputChunks,
        n_past: i32,
        logits_last: bool,
        timings: &mut Timings,
    ) -> Result<i32> {
        let started = Instant::now();
        // llama.cpp's decode timers (batches and single tokens) tell how
        // much of it was the text decoder; the rest is the vision encoder.
        let (vision, n_batch) = (&mut self.vision, self.n_batch);
        let next = self.text.with_dependent_mut(|_, ctx| {
            ctx.reset_timings();
            chunks.eval_chunks(
                vision,
                ctx,
                n_past,
                0,
                i32::try_from(n_batch).unwrap_or(i32::MAX),
                logits_last,
            )
        });
        let next = next.map_err(|e| CaptionError::Eval {
            stage: Stage::Prefill,
            code: eval_code(&e),
        })?;
        let elapsed = started.elapsed();
        let decoding = self.text.with_dependent_mut(|_, ctx| ctx.timings());
        let decoded =
            Duration::from_secs_f64((decoding.t_p_eval_ms() + decoding.t_eval_ms()).max(0.0) / 1e3);
        timings.encode += elapsed.saturating_sub(decoded);
        Ok(next)
    }

    /// Decodes prompt tokens from `n_past`, in batches; the last one's
    /// logits are kept when `logits_last`.
    fn decode_prompt(
        &mut self,
        tokens: &[LlamaToken],
        n_past: &mut i32,
        logits_last: bool,
        watchdog: &Watchdog<'_>,
    ) -> Result<()> {
        let n_batch = self.n_batch as usize;
        let last = tokens.len().saturating_sub(1);
        for (b, part) in tokens.chunks(n_batch).enumerate() {
            watchdog.check(Stage::Prefill)?;
            self.batch.clear();
            for (i, &token) in part.iter().enumerate() {
                let logits = logits_last && b * n_batch + i == last;
                let pos = *n_past + i32::try_from(i).unwrap_or(i32::MAX);
                self.batch
                    .add(token, pos, &[0], logits)
                    .map_err(|_| CaptionError::Eval {
                        stage: Stage::Prefill,
                        code: -1,
                    })?;
            }
            self.decode(Stage::Prefill)?;
            self.ledger.extend(part.iter().map(|&t| Entry::Token(t)));
            *n_past += i32::try_from(part.len()).unwrap_or(i32::MAX);
        }
        Ok(())
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
            self.ledger.push(Entry::Token(token));
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
