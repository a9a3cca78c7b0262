//! Preparing a prompt's images, tokenizing it, and evaluating it into the
//! KV cache from where the ledger stops matching: text in batches, each
//! image chunk by chunk through the vision encoder, observed and stoppable
//! layer by layer.

use std::borrow::Cow;
use std::time::Instant;

use smolvlm_engine as engine;

use super::ledger::{Entry, ImageEntry, ImageKey, Item, Start};
use super::report::{EncodeProgress, Progress, Timings};
use super::{eval_error, Media, Session};
use crate::error::{CaptionError, Error, ImageError, Result, Stage};
use crate::generation::Watchdog;
use crate::image::ImageInput;
use crate::prompt::{Segment, MEDIA_MARKER};

/// One image of a prompt, prepared and tokenized as far as needed.
#[derive(Default)]
pub(super) struct Planned {
    pub key: Option<ImageKey>,
    pub bitmap: Option<engine::Bitmap>,
    pub chunks: Option<engine::Chunks>,
    pub entry: Option<ImageEntry>,
}

/// What a prompt costs.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub positions: usize,
    pub image_tokens: usize,
    pub tiles: usize,
    pub images: usize,
}

/// Which image of the call is being evaluated, for its progress events.
#[derive(Debug, Clone, Copy)]
struct ImageTurn {
    image: usize,
    images: usize,
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

    /// Prepares the images whose keys are not known yet (a key needs the
    /// pixels) and tokenizes the text, in order.
    pub(super) fn plan(
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
                p.key = Some(ImageKey::of(&bitmap));
                p.bitmap = Some(bitmap);
            }
        }
        watchdog.check(Stage::Tokenize)?;
        // Text is tokenized segment by segment, as mtmd tokenizes the text
        // between media markers: the template's with its special tokens, a
        // user's as plain text. BOS and EOS as mtmd adds them.
        let vocab = self.model.text().vocab();
        let tokenize = |e: engine::EngineError| CaptionError::Tokenize(e.to_string());
        let mut items = Vec::new();
        let mut tokens = Vec::new();
        if vocab.adds_bos() {
            tokens.push(vocab.bos());
        }
        for segment in segments {
            match segment {
                Segment::Special(text) => vocab
                    .tokenize_into(text, &mut tokens, false, true)
                    .map_err(tokenize)?,
                Segment::Plain(text) => vocab
                    .tokenize_into(text, &mut tokens, false, false)
                    .map_err(tokenize)?,
                Segment::Image(i) => {
                    if !tokens.is_empty() {
                        items.push(Item::Tokens(std::mem::take(&mut tokens)));
                    }
                    items.push(Item::Image(*i));
                }
            }
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
        Ok((items, planned))
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
            }
        }
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
        let key = ImageKey::of(&bitmap);
        // Read again for a key an earlier call computed (a conversation's
        // image the session no longer holds): it must be the same image.
        if planned.key.is_some_and(|known| known != key) {
            return Err(ImageError::Changed {
                origin: media.input.origin(),
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

    /// Evaluates the prompt from where the KV cache stops matching it;
    /// returns the next position, where evaluation started, and how many
    /// images were encoded. On an error, the ledger records only what was
    /// evaluated in full (the caller removes the rest from the cache).
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
    ) -> Result<(u32, Start, usize)> {
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
        let mut n_past = start.pos;
        let images = items[start.item..]
            .iter()
            .filter(|item| matches!(item, Item::Image(_)))
            .count();
        let mut encoded = 0;
        let last = items.len() - 1;
        for (k, item) in items.iter().enumerate().skip(start.item) {
            watchdog.check(Stage::Prefill)?;
            match item {
                Item::Tokens(tokens) => {
                    let from = if k == start.item { start.offset } else { 0 };
                    self.decode_tokens(&tokens[from..], &mut n_past, k == last, watchdog)?;
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
                    let turn = ImageTurn {
                        image: encoded + 1,
                        images,
                    };
                    n_past = self.eval_image(
                        chunks,
                        n_past,
                        k == last,
                        turn,
                        watchdog,
                        observer,
                        timings,
                    )?;
                    self.ledger.push(Entry::Image(entry));
                    encoded += 1;
                }
            }
        }
        timings.prefill = started.elapsed().saturating_sub(timings.encode);
        Ok((n_past, start, encoded))
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
        turn: ImageTurn,
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
                    let mut at = EncodeProgress {
                        image: turn.image,
                        images: turn.images,
                        encode,
                        encodes,
                        layer: 0,
                        layers,
                    };
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
                    let vision = self.vision.as_mut().ok_or_else(|| {
                        Error::Internal("the session has no vision encoder".to_owned())
                    })?;
                    let pos = i32::try_from(n_past).unwrap_or(i32::MAX);
                    let result = vision.eval_chunk(
                        &mut self.ctx,
                        &chunk,
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
                    n_past = u32::try_from(eval.n_past).unwrap_or(n_past);
                }
            }
        }
        Ok(n_past)
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
