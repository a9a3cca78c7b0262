//! Preparing a prompt's media, tokenizing it, and evaluating it into the
//! KV cache from where the ledger stops matching: text in batches, each
//! image chunk by chunk through the vision encoder, a video frame by frame
//! (each frame one overview image), observed and stoppable layer by layer.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use smolvlm_engine as engine;

use super::ledger::{Entry, ImageEntry, ImageKey, Item, Start};
use super::report::{EncodeProgress, Progress, Timings};
use super::video::{PlannedVideo, VideoPlan};
use super::{eval_error, Media, MediaInput, Session};
use crate::error::{CaptionError, Error, ImageError, Result, Stage};
use crate::generation::Watchdog;
use crate::image::ImageInput;
use crate::prompt::{expand_videos, Segment, MEDIA_MARKER};

/// One medium of a prompt, prepared and tokenized as far as needed: an
/// image (its key, pixels, chunks) or a video (its plan and frames).
#[derive(Default)]
pub(super) struct Planned {
    pub key: Option<ImageKey>,
    pub bitmap: Option<engine::Bitmap>,
    pub chunks: Option<engine::Chunks>,
    pub entry: Option<ImageEntry>,
    pub video: PlannedVideo,
}

/// What a prompt costs.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub positions: usize,
    pub image_tokens: usize,
    pub tiles: usize,
    pub images: usize,
    pub frames: usize,
}

/// What a prefill did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Prefilled {
    /// The next position.
    pub n_past: u32,
    /// Where evaluation started.
    pub start: Start,
    pub images_encoded: usize,
    pub frames_encoded: usize,
}

/// Which medium of the call is being evaluated, for its progress events.
#[derive(Debug, Clone, Copy)]
struct Turn {
    image: usize,
    images: usize,
}

/// Numbers the media a prefill evaluates, in order: each image, and each
/// video once (whatever its frames).
struct MediaTurns {
    order: Vec<usize>,
}

impl MediaTurns {
    fn new(items: &[Item]) -> Self {
        let mut order = Vec::new();
        for item in items {
            let medium = match item {
                Item::Image(i) => *i,
                Item::Frame { video, .. } => *video,
                Item::Tokens(_) => continue,
            };
            if !order.contains(&medium) {
                order.push(medium);
            }
        }
        Self { order }
    }

    fn next(&mut self, medium: usize) -> Turn {
        let image = self
            .order
            .iter()
            .position(|&m| m == medium)
            .map_or(0, |p| p + 1);
        Turn {
            image,
            images: self.order.len(),
        }
    }
}

impl Session {
    /// The image as an mtmd bitmap: prepared here, or (with
    /// [`ImageOptions::with_mtmd_loader`](crate::image::ImageOptions::with_mtmd_loader))
    /// loaded by mtmd itself.
    pub(super) fn bitmap(
        &mut self,
        image: ImageInput<'_>,
        timings: &mut Timings,
    ) -> Result<engine::Bitmap> {
        if self.image_options.mtmd_loader() {
            let t = Instant::now();
            let (bytes, origin) = match image {
                ImageInput::Path(path) => (
                    Cow::Owned(std::fs::read(path).map_err(|source| ImageError::Read {
                        path: path.to_path_buf(),
                        source,
                    })?),
                    format!("'{}'", path.display()),
                ),
                ImageInput::Bytes(bytes) => (Cow::Borrowed(bytes), "from memory".to_owned()),
                _ => {
                    return Err(Error::invalid(
                        "mtmd_loader",
                        "mtmd's loader takes only paths and encoded bytes",
                    ))
                }
            };
            let bitmap = engine::Bitmap::decode(&bytes).ok_or(ImageError::MtmdLoad { origin })?;
            timings.decode += t.elapsed();
            return Ok(bitmap);
        }
        let prepared = self.preprocessor.prepare(image)?;
        timings.decode += prepared.timings().decode;
        timings.resize += prepared.timings().resize;
        let rgb = prepared.image();
        Ok(
            engine::Bitmap::from_rgb(rgb.width(), rgb.height(), rgb.as_raw()).map_err(|_| {
                ImageError::BufferSize {
                    width: rgb.width(),
                    height: rgb.height(),
                    expected: rgb.width() as usize * rgb.height() as usize * 3,
                    actual: rgb.as_raw().len(),
                }
            })?,
        )
    }

    /// Prepares the media whose keys are not known yet (a key needs the
    /// pixels) and plans the videos (which frames, by SmolVLM2's sampling
    /// rule, unless a conversation remembers them).
    pub(super) fn prepare(
        &mut self,
        segments: &[Segment],
        media: &[Media<'_>],
        watchdog: &Watchdog<'_>,
        timings: &mut Timings,
    ) -> Result<Vec<Planned>> {
        let _span = tracing::debug_span!("prepare").entered();
        let mut planned: Vec<Planned> = media
            .iter()
            .map(|m| Planned {
                key: m.key,
                video: PlannedVideo {
                    plan: m.plan.clone(),
                    frames: None,
                },
                ..Planned::default()
            })
            .collect();
        for segment in segments {
            let (Segment::Image(i) | Segment::Video(i)) = *segment else {
                continue;
            };
            let (Some(p), Some(m)) = (planned.get_mut(i), media.get(i)) else {
                return Err(Error::Internal(format!("the prompt names medium {i}")));
            };
            watchdog.check(Stage::Tokenize)?;
            match m.input {
                MediaInput::Image(image) if p.key.is_none() => {
                    let bitmap = self.bitmap(image, timings)?;
                    p.key = Some(ImageKey::of(&bitmap));
                    p.bitmap = Some(bitmap);
                }
                MediaInput::Video(video) if p.video.plan.is_none() => {
                    let t = Instant::now();
                    let meta = video.probe()?;
                    p.video.plan =
                        Some(Arc::new(VideoPlan::sample(video, meta, video.max_frames())));
                    timings.decode += t.elapsed();
                }
                _ => {}
            }
        }
        Ok(planned)
    }

    /// Tokenizes the prompt: text segment by segment, as mtmd tokenizes the
    /// text between media markers (the template's with its special tokens,
    /// a user's as plain text; BOS and EOS as mtmd adds them), images and
    /// video frames by index, each video's text around its frames.
    pub(super) fn tokenize_prompt(
        &self,
        segments: &[Segment],
        planned: &[Planned],
    ) -> Result<Vec<Item>> {
        let pieces = |i: usize| {
            planned
                .get(i)
                .and_then(|p| p.video.plan.as_ref())
                .map(|plan| plan.pieces())
                .unwrap_or_default()
        };
        let segments = expand_videos(segments, &pieces);
        let vocab = self.model.text().vocab();
        let tokenize = |e: engine::EngineError| CaptionError::Tokenize(e.to_string());
        let mut items = Vec::new();
        let mut tokens = Vec::new();
        if vocab.adds_bos() {
            tokens.push(vocab.bos());
        }
        for segment in &segments {
            let media = match segment {
                Segment::Special(text) => {
                    vocab
                        .tokenize_into(text, &mut tokens, false, true)
                        .map_err(tokenize)?;
                    continue;
                }
                Segment::Plain(text) => {
                    vocab
                        .tokenize_into(text, &mut tokens, false, false)
                        .map_err(tokenize)?;
                    continue;
                }
                Segment::Image(i) => Item::Image(*i),
                Segment::Frame { video, frame } => Item::Frame {
                    video: *video,
                    frame: *frame,
                },
                Segment::Video(i) => {
                    return Err(Error::Internal(format!("video {i} was not expanded")))
                }
            };
            if !tokens.is_empty() {
                items.push(Item::Tokens(std::mem::take(&mut tokens)));
            }
            items.push(media);
        }
        if vocab.adds_eos() {
            tokens.push(vocab.eos());
        }
        if !tokens.is_empty() {
            items.push(Item::Tokens(tokens));
        }
        if items.is_empty() {
            return Err(CaptionError::Tokenize("the prompt is empty".to_owned()).into());
        }
        Ok(items)
    }

    /// Cuts the videos' frames until the prompt fits the context with room
    /// for `answer` tokens: SmolVLM2's own sampling rule first (at most its
    /// frame limit), then this, always taking frames from the longest video
    /// and sampling it again with fewer. Returns the tokenized prompt.
    ///
    /// # Errors
    ///
    /// [`CaptionError::VideoTooLong`] when one frame per video does not fit.
    pub(super) fn fit_videos(
        &mut self,
        segments: &[Segment],
        planned: &mut [Planned],
        media: &[Media<'_>],
        answer: usize,
        timings: &mut Timings,
    ) -> Result<Vec<Item>> {
        let n_ctx = self.ctx.n_ctx() as usize;
        loop {
            let items = self.tokenize_prompt(segments, planned)?;
            if !items.iter().any(|i| matches!(i, Item::Frame { .. })) {
                return Ok(items);
            }
            let counts = self.tally(&items, planned, Start::default(), media, timings)?;
            let needed = counts.positions + answer;
            if needed <= n_ctx {
                return Ok(items);
            }
            // The longest video gives up frames: as many as the excess
            // takes, at what one of its frames costs (its image tokens and
            // its text), and is sampled again.
            let longest = planned
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.video.plan.as_ref().map(|plan| (i, plan.frames())))
                .max_by_key(|&(_, frames)| frames);
            let Some((i, frames)) = longest.filter(|&(_, frames)| frames > 1) else {
                return Err(CaptionError::VideoTooLong {
                    tokens: needed,
                    answer,
                    n_ctx: n_ctx as u32,
                }
                .into());
            };
            let per_frame = counts.positions.div_ceil(counts.frames.max(1));
            let fewer = frames
                .saturating_sub((needed - n_ctx).div_ceil(per_frame.max(1)))
                .clamp(1, frames - 1);
            let (Some(p), Some(MediaInput::Video(video))) =
                (planned.get_mut(i), media.get(i).map(|m| m.input))
            else {
                return Err(Error::Internal(format!("medium {i} is not a video")));
            };
            let Some(plan) = p.video.plan.as_ref() else {
                return Err(Error::Internal(format!("video {i} has no plan")));
            };
            let mut cut = VideoPlan::sample(video, plan.meta, fewer);
            cut.sampled = plan.sampled;
            tracing::debug!(
                video = i,
                from = frames,
                to = cut.frames(),
                "frames cut to fit the context"
            );
            p.video = PlannedVideo {
                plan: Some(Arc::new(cut)),
                frames: None,
            };
        }
    }

    /// Reads the frames of every video whose keys are not known yet: the
    /// ledger matches frames by key.
    pub(super) fn read_videos(
        &mut self,
        planned: &mut [Planned],
        media: &[Media<'_>],
        timings: &mut Timings,
    ) -> Result<()> {
        let tile = self.model.vision().tile_size;
        for (p, m) in planned.iter_mut().zip(media) {
            let MediaInput::Video(video) = m.input else {
                continue;
            };
            if p.video
                .plan
                .as_ref()
                .is_some_and(|plan| plan.keys.is_empty())
            {
                let t = Instant::now();
                p.video.read(video, tile)?;
                timings.decode += t.elapsed();
            }
        }
        Ok(())
    }

    /// Tokenizes the images from `start` on and counts the whole prompt;
    /// checks every limit llama.cpp would abort on.
    pub(super) fn count(
        &mut self,
        items: &[Item],
        planned: &mut [Planned],
        start: Start,
        media: &[Media<'_>],
        timings: &mut Timings,
    ) -> Result<Counts> {
        let counts = self.tally(items, planned, start, media, timings)?;
        let n_ctx = self.ctx.n_ctx();
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

    /// What the prompt costs, tokenizing its images from `start` on.
    fn tally(
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
                    counts.positions += entry.positions as usize;
                    counts.image_tokens += entry.image_tokens;
                    counts.tiles += entry.tiles;
                }
                // A frame is one overview image: a tile's tokens.
                Item::Frame { .. } => {
                    let tokens = self.model.vision().tokens_per_tile as usize;
                    counts.frames += 1;
                    counts.positions += tokens;
                    counts.image_tokens += tokens;
                }
            }
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
        let MediaInput::Image(image) = media.input else {
            return Err(Error::Internal(
                "a video was tokenized as an image".to_owned(),
            ));
        };
        let bitmap = match planned.bitmap.take() {
            Some(bitmap) => bitmap,
            None => self.bitmap(image, timings)?,
        };
        let key = ImageKey::of(&bitmap);
        // Read again for a key an earlier call computed (a conversation's
        // image the session no longer holds): it must be the same image.
        if planned.key.is_some_and(|known| known != key) {
            return Err(ImageError::Changed {
                origin: image.origin(),
            }
            .into());
        }
        let chunks = self
            .vision_mut()?
            .tokenize(MEDIA_MARKER, &[&bitmap], true)
            .map_err(|e| CaptionError::Tokenize(e.to_string()))?;
        let (mut image_tokens, mut image_chunks, mut largest) = (0, 0, 0);
        for chunk in chunks
            .iter()
            .filter(|c| c.kind() == engine::ChunkKind::Image)
        {
            image_tokens += chunk.n_tokens();
            image_chunks += 1;
            largest = largest.max(chunk.n_tokens());
        }
        // mtmd splits an image chunk by n_batch, which a causal projector
        // (idefics3, SmolVLM's) takes in any split. A non-causal one must
        // see its whole image in one pass: say so before any encode (the
        // engine refuses it too, rather than let llama.cpp abort).
        let one_pass = self.n_batch.min(self.ctx.n_ubatch());
        if self.needs_one_pass(&chunks) && largest > one_pass as usize {
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
            positions: u32::try_from(chunks.n_pos()).unwrap_or(0),
            image_tokens,
            tiles: image_chunks - overview,
        };
        planned.key = Some(key);
        planned.chunks = Some(chunks);
        planned.entry = Some(entry);
        Ok(entry)
    }

    /// Whether this projector must decode an image in one pass (never
    /// SmolVLM's idefics3, which is causal).
    fn needs_one_pass(&self, chunks: &engine::Chunks) -> bool {
        let vision = self.vision.as_ref();
        chunks.iter().any(|c| {
            c.kind() == engine::ChunkKind::Image && vision.is_some_and(|v| v.needs_one_pass(&c))
        })
    }

    /// Evaluates the prompt from where the KV cache stops matching it. On
    /// an error, the ledger records only what was evaluated in full (the
    /// caller removes the rest from the cache).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn prefill(
        &mut self,
        items: &[Item],
        planned: &mut [Planned],
        start: Start,
        media: &[Media<'_>],
        watchdog: &Watchdog<'_>,
        observer: &mut dyn FnMut(Progress<'_>),
        timings: &mut Timings,
    ) -> Result<Prefilled> {
        let _span = tracing::debug_span!("prefill").entered();
        watchdog.check(Stage::Prefill)?;
        let started = Instant::now();
        let mut start = start;
        // What follows the reused part goes, with whatever a failed call
        // left behind.
        self.ledger.truncate(start.entries);
        if !self.ctx.remove_from(start.pos) {
            self.forget();
            start = Start::default();
        }
        let mut done = Prefilled {
            n_past: start.pos,
            start,
            images_encoded: 0,
            frames_encoded: 0,
        };
        // Progress counts media: each image, and each video (its frames
        // are its encodes).
        let mut turns = MediaTurns::new(&items[start.item..]);
        let last = items.len() - 1;
        for (k, item) in items.iter().enumerate().skip(start.item) {
            watchdog.check(Stage::Prefill)?;
            match item {
                Item::Tokens(tokens) => {
                    let from = if k == start.item { start.offset } else { 0 };
                    self.decode_tokens(&tokens[from..], &mut done.n_past, k == last, watchdog)?;
                    self.ledger.extend(&tokens[from..]);
                }
                Item::Image(i) => {
                    let (Some(p), Some(m)) = (planned.get_mut(*i), media.get(*i)) else {
                        return Err(Error::Internal(format!("the prompt names image {i}")));
                    };
                    let entry = self.tokenize_image(p, m, timings)?;
                    let Some(chunks) = p.chunks.as_ref() else {
                        return Err(Error::Internal("an image was not tokenized".to_owned()));
                    };
                    let turn = turns.next(*i);
                    done.n_past = self.eval_image(
                        chunks,
                        done.n_past,
                        k == last,
                        turn,
                        watchdog,
                        observer,
                        timings,
                    )?;
                    self.ledger.push(Entry::Image(entry));
                    done.images_encoded += 1;
                }
                Item::Frame { video, frame } => {
                    let turn = turns.next(*video);
                    let (Some(p), Some(m)) = (planned.get_mut(*video), media.get(*video)) else {
                        return Err(Error::Internal(format!("the prompt names video {video}")));
                    };
                    let entry = self.eval_frame(
                        p,
                        m,
                        *frame,
                        &mut done.n_past,
                        turn,
                        watchdog,
                        observer,
                        timings,
                    )?;
                    self.ledger.push(Entry::Image(entry));
                    done.frames_encoded += 1;
                }
            }
        }
        timings.prefill = started.elapsed().saturating_sub(timings.encode);
        Ok(done)
    }

    /// Evaluates one frame of a video as one overview image: mtmd tokenizes
    /// the frame as an image, and only its overview chunk (the whole frame
    /// at tile size, what SmolVLM2 was trained on for video) is encoded and
    /// decoded; the frame's wrapper text is the prompt's own. Reads the
    /// video's frames first if they are not in hand (a conversation's video
    /// the session no longer holds), checking they are the same.
    #[allow(clippy::too_many_arguments)]
    fn eval_frame(
        &mut self,
        planned: &mut Planned,
        media: &Media<'_>,
        frame: usize,
        n_past: &mut u32,
        turn: Turn,
        watchdog: &Watchdog<'_>,
        observer: &mut dyn FnMut(Progress<'_>),
        timings: &mut Timings,
    ) -> Result<ImageEntry> {
        let MediaInput::Video(video) = media.input else {
            return Err(Error::Internal(
                "an image was evaluated as a video".to_owned(),
            ));
        };
        let t = Instant::now();
        let tile = self.model.vision().tile_size;
        planned.video.read(video, tile)?;
        timings.decode += t.elapsed();
        let (Some(plan), Some(frames)) =
            (planned.video.plan.as_ref(), planned.video.frames.as_ref())
        else {
            return Err(Error::Internal("a video frame was not read".to_owned()));
        };
        let (Some(rgb), Some(&key)) = (frames.get(frame), plan.keys.get(frame)) else {
            return Err(Error::Internal(format!("the prompt names frame {frame}")));
        };
        let encodes = plan.frames();
        let t = Instant::now();
        let bitmap = engine::Bitmap::from_rgb(rgb.width(), rgb.height(), rgb.as_raw())
            .map_err(|e| CaptionError::Tokenize(e.to_string()))?;
        let chunks = self
            .vision_mut()?
            .tokenize(MEDIA_MARKER, &[&bitmap], true)
            .map_err(|e| CaptionError::Tokenize(e.to_string()))?;
        timings.tokenize += t.elapsed();
        // idefics3 lays an image out as its tiles, then the overview.
        let Some(overview) = chunks
            .iter()
            .filter(|c| c.kind() == engine::ChunkKind::Image)
            .last()
        else {
            return Err(
                CaptionError::Tokenize("mtmd made no image chunk for a frame".to_owned()).into(),
            );
        };
        let at = EncodeProgress {
            image: turn.image,
            images: turn.images,
            encode: frame + 1,
            encodes,
            layer: 0,
            layers: self.model.vision_layers() as usize,
        };
        *n_past = self.encode_chunk(&overview, *n_past, at, watchdog, observer, timings)?;
        Ok(ImageEntry {
            key,
            positions: u32::try_from(overview.n_pos()).unwrap_or(0),
            image_tokens: overview.n_tokens(),
            tiles: 0,
        })
    }

    /// Evaluates one image, chunk by chunk: its wrapper text through the
    /// text decoder, each tile and the overview through the vision encoder
    /// (observed and stoppable after every layer) and then the decoder.
    /// Returns the next position.
    #[allow(clippy::too_many_arguments)]
    fn eval_image(
        &mut self,
        chunks: &engine::Chunks,
        n_past: u32,
        logits_last: bool,
        turn: Turn,
        watchdog: &Watchdog<'_>,
        observer: &mut dyn FnMut(Progress<'_>),
        timings: &mut Timings,
    ) -> Result<u32> {
        let encodes = chunks
            .iter()
            .filter(|c| c.kind() == engine::ChunkKind::Image)
            .count();
        let layers = self.model.vision_layers() as usize;
        let mut n_past = n_past;
        let mut encode = 0;
        let last = chunks.len().saturating_sub(1);
        for (c, chunk) in chunks.iter().enumerate() {
            match chunk.kind() {
                engine::ChunkKind::Text => {
                    self.decode_tokens(
                        chunk.text_tokens(),
                        &mut n_past,
                        logits_last && c == last,
                        watchdog,
                    )?;
                }
                _ => {
                    encode += 1;
                    let at = EncodeProgress {
                        image: turn.image,
                        images: turn.images,
                        encode,
                        encodes,
                        layer: 0,
                        layers,
                    };
                    n_past = self.encode_chunk(&chunk, n_past, at, watchdog, observer, timings)?;
                }
            }
        }
        Ok(n_past)
    }

    /// Encodes one image chunk and decodes its embeddings from `n_past`,
    /// telling `observer` as the encode begins and after each layer, and
    /// stoppable there and between the decoder's compute steps. Returns the
    /// next position.
    fn encode_chunk(
        &mut self,
        chunk: &engine::Chunk<'_>,
        n_past: u32,
        mut at: EncodeProgress,
        watchdog: &Watchdog<'_>,
        observer: &mut dyn FnMut(Progress<'_>),
        timings: &mut Timings,
    ) -> Result<u32> {
        observer(Progress::Encoding(at));
        watchdog.check(Stage::Encode)?;
        let mut stopped = None;
        let mut on_layer = |layer: u32| {
            at.layer = layer as usize;
            observer(Progress::Encoding(at));
            match watchdog.check(Stage::Encode) {
                Ok(()) => true,
                Err(e) => {
                    stopped = Some(e);
                    false
                }
            }
        };
        let stop = || watchdog.check(Stage::Prefill).is_err();
        let n_batch = self.n_batch;
        let vision = self
            .vision
            .as_mut()
            .ok_or_else(|| Error::Internal("the session has no vision encoder".to_owned()))?;
        let pos = i32::try_from(n_past).unwrap_or(i32::MAX);
        let result = vision.eval_chunk(
            &mut self.ctx,
            chunk,
            pos,
            n_batch,
            Some(&mut on_layer),
            &stop,
        );
        let eval = match result {
            Ok(eval) => eval,
            Err(engine::EngineError::Interrupted) => {
                let stage = if stopped.is_some() {
                    Stage::Encode
                } else {
                    Stage::Prefill
                };
                let error = stopped
                    .or_else(|| watchdog.check(stage).err())
                    .unwrap_or(CaptionError::Cancelled { stage });
                return Err(error.into());
            }
            Err(e) => {
                let stage = if matches!(e, engine::EngineError::Encode(_)) {
                    Stage::Encode
                } else {
                    Stage::Prefill
                };
                return Err(eval_error(&e, stage).into());
            }
        };
        timings.encode += eval.encode;
        Ok(u32::try_from(eval.n_past).unwrap_or(n_past))
    }

    /// Decodes prompt tokens from `n_past`, in batches; the last one's
    /// logits are kept when `logits_last`. Stoppable between the decoder's
    /// compute steps.
    pub(super) fn decode_tokens(
        &mut self,
        tokens: &[engine::Token],
        n_past: &mut u32,
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
                let pos = i32::try_from(*n_past as usize + i).unwrap_or(i32::MAX);
                self.batch
                    .add(token, pos, logits)
                    .map_err(|e| eval_error(&e, Stage::Prefill))?;
            }
            self.decode(Stage::Prefill, watchdog)?;
            *n_past += u32::try_from(part.len()).unwrap_or(u32::MAX);
        }
        Ok(())
    }

    /// Decodes the batch, stoppable by the watchdog.
    pub(super) fn decode(&mut self, stage: Stage, watchdog: &Watchdog<'_>) -> Result<()> {
        let stop = || watchdog.check(stage).is_err();
        match self.ctx.decode(&self.batch, &stop) {
            Ok(()) => Ok(()),
            Err(engine::EngineError::Interrupted) => Err(watchdog
                .check(stage)
                .err()
                .unwrap_or(CaptionError::Cancelled { stage })
                .into()),
            Err(e) => Err(eval_error(&e, stage).into()),
        }
    }
}
