//! A session: one llama context (one KV cache) and one vision encoder that
//! caption images one after another.
//!
//! The work is split by concern: [`ledger`] keeps what the KV cache holds,
//! [`prefill`] prepares, tokenizes and evaluates a prompt (the vision
//! encode included), [`generate`] samples the answer, and [`report`] holds
//! what a call tells its caller. Every call into llama.cpp goes through
//! `smolvlm_engine`.

mod generate;
mod ledger;
mod prefill;
mod report;
mod video;

use std::time::{Duration, Instant};

use smolvlm_engine as engine;

use crate::conversation::Conversation;
use crate::error::{CaptionError, Error, Result, Stage};
use crate::generation::GenerationOptions;
use crate::image::{ImageInput, ImageOptions, Preprocessor};
use crate::model::Model;
use crate::prompt::{render, render_media, Prompt, Segment, MEDIA_MARKER};
use crate::video::Video;

pub(crate) use self::ledger::ImageKey;
use self::ledger::{Item, Ledger, Start};
pub use self::report::{
    Caption, EncodeProgress, FinishReason, Progress, Timings, TokenCount, VideoReport,
};
pub(crate) use self::video::VideoPlan;

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
/// equals a fresh session's. It keeps a ledger of what its KV cache holds
/// (text token by token, each image whole), and a prompt is evaluated only
/// from where it stops matching: several prompts about one image in a row
/// encode it once ([`Caption::reused_image`]), and a conversation's
/// follow-up evaluates only its new turn. An image is recognised by a
/// SHA-256 of its dimensions and of the pixels mtmd gets (after every
/// setting that shaped them), never by a path: a different image is never
/// taken for a cached one. The cache costs no memory beyond the KV cache a
/// session has anyway.
///
/// A cancel or a deadline stops a call inside the engine, within one
/// vision encoder layer or one decode step. What the stopped call had not
/// finished (an image part-encoded, a batch part-decoded) is removed from
/// the KV cache; what it had finished stays recorded for the next call to
/// reuse, so the next call's result still equals a fresh session's.
pub struct Session {
    model: Model,
    preprocessor: Preprocessor,
    image_options: ImageOptions,
    /// Always `Some` until `drop` gives it back to the model.
    vision: Option<engine::Vision>,
    ctx: engine::Context,
    batch: engine::Batch,
    n_batch: u32,
    piece: Vec<u8>,
    ledger: Ledger,
}

// Pinned at compile time: sessions move between threads, models are shared.
const _: () = {
    const fn send<T: Send + 'static>() {}
    const fn send_sync<T: Send + Sync + 'static>() {}
    send::<Session>();
    send_sync::<Model>();
};

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("n_ctx", &self.ctx.n_ctx())
            .field("n_batch", &self.n_batch)
            .finish_non_exhaustive()
    }
}

/// An image or a video, as a prompt holds it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MediaInput<'i> {
    Image(ImageInput<'i>),
    Video(&'i Video),
}

/// A medium of a prompt.
pub(crate) struct Media<'i> {
    pub input: MediaInput<'i>,
    /// An image's key, when an earlier call computed it (a conversation
    /// keeps the keys of its images, so a follow-up need not prepare them
    /// again).
    pub key: Option<ImageKey>,
    /// A video's frames, when an earlier call chose them (a conversation
    /// keeps them, so a follow-up shows the same frames).
    pub plan: Option<std::sync::Arc<VideoPlan>>,
}

impl<'i> Media<'i> {
    pub(crate) fn new(input: ImageInput<'i>) -> Self {
        Self {
            input: MediaInput::Image(input),
            key: None,
            plan: None,
        }
    }

    pub(crate) fn video(video: &'i Video) -> Self {
        Self {
            input: MediaInput::Video(video),
            key: None,
            plan: None,
        }
    }

    fn is_video(&self) -> bool {
        matches!(self.input, MediaInput::Video(_))
    }
}

/// The output parsed as JSON and checked against its schema.
fn checked_json(
    text: String,
    finish: FinishReason,
    schema: &jsonschema::Validator,
) -> Result<serde_json::Value, CaptionError> {
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(e) => {
            return Err(CaptionError::IncompleteJson {
                text,
                finish,
                message: e.to_string(),
            })
        }
    };
    match schema.validate(&value) {
        Ok(()) => Ok(value),
        Err(e) => Err(CaptionError::SchemaMismatch {
            message: format!("{e} (at {})", e.instance_path()),
            text,
        }),
    }
}

/// An engine failure during evaluation, as the caller sees it.
fn eval_error(error: &engine::EngineError, stage: Stage) -> CaptionError {
    let code = match error {
        engine::EngineError::NoKvSlot => 1,
        engine::EngineError::Interrupted => 2,
        engine::EngineError::Decode(code) | engine::EngineError::Encode(code) => *code,
        _ => -1,
    };
    CaptionError::Eval { stage, code }
}

impl Session {
    pub(crate) fn new(model: &Model) -> Result<Self> {
        let options = model.options();
        let (n_ctx, n_batch) = (options.context_size(), options.batch_size());
        let ctx = engine::Context::new(model.text(), &options.context_params())
            .map_err(|_| Error::Session { n_ctx, n_batch })?;
        let batch =
            engine::Batch::new(n_batch as usize).map_err(|_| Error::Session { n_ctx, n_batch })?;
        let vision = model.take_vision()?;
        let mut session = Self {
            model: model.clone(),
            preprocessor: model.preprocessor(ImageOptions::default()),
            image_options: ImageOptions::default(),
            vision: Some(vision),
            ctx,
            batch,
            n_batch,
            piece: Vec::new(),
            ledger: Ledger::default(),
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
        let bos = self.model.text().vocab().bos();
        self.batch.clear();
        self.batch
            .add(bos, 0, true)
            .and_then(|()| self.ctx.decode(&self.batch, &|| false))
            .map_err(|e| eval_error(&e, Stage::Prefill))?;
        self.forget();
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
    /// [`ImageError`](crate::ImageError) for unusable images, [`CaptionError`] for prompts that
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

    /// Answers one prompt about a video, as SmolVLM2 was trained to see one:
    /// frames sampled as its processor samples them (by default one per
    /// second, at most 64, the first and last second skipped on long
    /// videos), each frame one overview image after its time (`Frame from
    /// 00:05:`), all after a line giving the frame count and the duration.
    /// No tile is encoded for a frame. If the frames and the prompt do not
    /// fit the context with room for `max_tokens`, fewer frames are sampled
    /// (the same rule, a lower maximum); [`Caption::videos`] says how many
    /// were sampled and how many shown.
    ///
    /// ```no_run
    /// # let model: smolvlm::Model = unimplemented!();
    /// use smolvlm::video::Video;
    /// let mut session = model.session()?;
    /// let answer = session.ask_video(&Video::file("clip.mp4"), "What happens?", &Default::default())?;
    /// println!("{} ({} frames)", answer.text, answer.videos[0].frames);
    /// # Ok::<(), smolvlm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ask`](Self::ask); [`VideoError`](crate::video::VideoError) for a
    /// video that cannot be read (no `ffmpeg` for an MP4, say);
    /// [`CaptionError::VideoTooLong`] when even one frame does not fit.
    pub fn ask_video(
        &mut self,
        video: &Video,
        prompt: impl Into<Prompt>,
        options: &GenerationOptions,
    ) -> Result<Caption> {
        self.ask_video_observed(video, prompt, options, |_| {})
    }

    /// Like [`ask_video`](Self::ask_video), and tells `observer` what is
    /// done as it happens: each frame is one encode of
    /// [`Progress::Encoding`].
    ///
    /// # Errors
    ///
    /// As [`ask_video`](Self::ask_video).
    pub fn ask_video_observed(
        &mut self,
        video: &Video,
        prompt: impl Into<Prompt>,
        options: &GenerationOptions,
        observer: impl FnMut(Progress<'_>),
    ) -> Result<Caption> {
        let started = Instant::now();
        let mut media = [Media::video(video)];
        let segments = render_media(self.model.chat_template(), &prompt.into(), &[true])?;
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
        let learned: Vec<(Option<ImageKey>, Option<std::sync::Arc<VideoPlan>>)> =
            media.iter().map(|m| (m.key, m.plan.clone())).collect();
        drop(media);
        conversation.remember(&shaping, &learned);
        conversation.assistant(caption.text.trim());
        Ok(caption)
    }

    /// Empties the KV cache: the next prompt is evaluated whole. A session
    /// replaces what it holds on its own whenever a prompt begins
    /// differently; call this to time a whole caption again, or to drop a
    /// conversation's content from the session.
    pub fn forget(&mut self) {
        self.ctx.clear();
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
        let sampler = options.sampler(self.model.text())?;
        let watchdog = options.watchdog(started);
        let mut timings = Timings::default();

        let t = Instant::now();
        let mut planned = self.prepare(segments, media, &watchdog, &mut timings)?;
        let items = if media.iter().any(Media::is_video) {
            let answer = options.max_tokens() as usize;
            let items = self.fit_videos(segments, &mut planned, media, answer, &mut timings)?;
            self.read_videos(&mut planned, media, &mut timings)?;
            items
        } else {
            self.tokenize_prompt(segments, &planned)?
        };
        let key_of = |item: &Item| match item {
            Item::Image(i) => planned.get(*i).and_then(|p| p.key),
            Item::Frame { video, frame } => planned
                .get(*video)
                .and_then(|p| p.video.plan.as_ref())
                .and_then(|plan| plan.keys.get(*frame).copied()),
            Item::Tokens(_) => None,
        };
        let (start, held) = self.ledger.matching(&items, &key_of);
        for (item, entry) in items.iter().zip(held) {
            if let (Item::Image(i), Some(entry)) = (item, entry) {
                if let Some(p) = planned.get_mut(*i) {
                    p.entry = Some(entry);
                }
            }
        }
        let counts = self.count(&items, &mut planned, start, media, &mut timings)?;
        timings.tokenize = t.elapsed().saturating_sub(timings.decode + timings.resize);
        observer(Progress::Tokenized {
            prompt_tokens: counts.positions,
            image_tokens: counts.image_tokens,
            tiles: counts.tiles,
        });

        let prefilled = self.prefill(
            &items,
            &mut planned,
            start,
            media,
            &watchdog,
            &mut observer,
            &mut timings,
        );
        let done = prefilled.inspect_err(|_| self.rollback())?;
        observer(Progress::Prefilled {
            encode: timings.encode,
            prefill: timings.prefill,
        });

        let t = Instant::now();
        let generated = self.generate(
            done.n_past,
            options,
            sampler,
            &watchdog,
            &mut |piece: &str| {
                if !piece.is_empty() {
                    observer(Progress::Text(piece));
                }
            },
        );
        timings.generate = t.elapsed();
        let (text, tokens, finish) = generated.inspect_err(|_| self.rollback())?;
        let json = match options.schema_validator()? {
            Some(schema) => Some(checked_json(text.clone(), finish, &schema)?),
            None => None,
        };
        let mut videos = Vec::new();
        for (m, p) in media.iter_mut().zip(&planned) {
            m.key = p.key;
            if let Some(plan) = &p.video.plan {
                videos.push(VideoReport::of(plan));
                m.plan = Some(std::sync::Arc::clone(plan));
            }
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
            reused_image: counts.images + counts.frames > 0
                && done.images_encoded + done.frames_encoded == 0,
            images: counts.images,
            images_encoded: done.images_encoded,
            cached_tokens: done.start.pos as usize,
            frames: counts.frames,
            frames_encoded: done.frames_encoded,
            videos,
        })
    }

    /// After a failed or stopped call: removes from the KV cache whatever
    /// the ledger does not record (a part-evaluated image or batch), so the
    /// two agree again. If llama.cpp cannot remove a part, all goes.
    fn rollback(&mut self) {
        if !self.ctx.remove_from(self.ledger.positions()) {
            self.forget();
        }
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
        let mut planned = self.prepare(&segments, &media, &watchdog, &mut timings)?;
        let items = self.tokenize_prompt(&segments, &planned)?;
        let counts = self.count(&items, &mut planned, Start::default(), &media, &mut timings)?;
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
        let bitmap = engine::Bitmap::from_rgb(rgb.width(), rgb.height(), rgb.as_raw())
            .map_err(|e| CaptionError::Tokenize(e.to_string()))?;
        let vision = self.vision_mut()?;
        let chunks = vision
            .tokenize(MEDIA_MARKER, &[&bitmap], true)
            .map_err(|e| CaptionError::Tokenize(e.to_string()))?;
        let chunk = chunks
            .iter()
            .find(|c| c.kind() == engine::ChunkKind::Image)
            .ok_or_else(|| CaptionError::Tokenize("mtmd made no image chunk".to_owned()))?;
        // Observed, as a caption's encodes are (one graph piece per layer).
        let elapsed = vision
            .encode(&chunk, Some(&mut |_| true))
            .map_err(|e| eval_error(&e, Stage::Encode))?;
        Ok(elapsed)
    }

    /// The vision encoder (always there until the session drops).
    fn vision_mut(&mut self) -> Result<&mut engine::Vision> {
        self.vision
            .as_mut()
            .ok_or_else(|| Error::Internal("the session has no vision encoder".to_owned()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(vision) = self.vision.take() {
            self.model.give_back_vision(vision);
        }
    }
}
