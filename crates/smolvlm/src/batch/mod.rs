//! Batch captioning: many images (and videos), prepared ahead on their own
//! threads, captioned by several sessions sharing one [`Model`], with
//! results as they finish or in input order.
//!
//! ```text
//! inputs ─► prep threads (read, hash, select, decode, resize, dedupe)
//!        ─► bounded queue ─► N sessions ─► results (and progress events)
//! ```
//!
//! ```no_run
//! use smolvlm::batch::{Batch, Input, Order};
//! # let model: smolvlm::Model = unimplemented!();
//! let paths = ["a.jpg", "b.jpg", "c.jpg"].map(std::path::PathBuf::from);
//! let run = Batch::new(&model)
//!     .with_prompts(["Describe this image.", "List the objects in it."])
//!     .with_sessions(2)
//!     .with_order(Order::Input)
//!     .run(paths.into_iter().map(Input::path))?;
//! for done in run {
//!     for answer in done.answers() {
//!         match &answer.result {
//!             Ok(caption) => println!("{} [{}]: {}", done.key.display(), answer.prompt, caption.text),
//!             Err(e) => eprintln!("{} [{}]: {e}", done.key.display(), answer.prompt),
//!         }
//!     }
//!     if let Err(e) = &done.outcome {
//!         eprintln!("{}: {e}", done.key.display());
//!     }
//! }
//! # Ok::<(), smolvlm::Error>(())
//! ```
//!
//! What it guarantees:
//! - **Every input taken gets exactly one [`Done`]**, with one [`Answer`]
//!   per prompt asked, or the error that kept it from being asked (a file
//!   that cannot be read or decoded). A bad image never stops the run.
//! - **Several prompts encode an image once**: they are asked in turn on
//!   one session, and the image stays in its KV cache between them.
//! - **Identical images are encoded once.** An image whose prepared pixels
//!   hash (SHA-256, the session cache's own key) like an earlier one's is
//!   not captioned again: its answers are copies of the first one's
//!   ([`Done::duplicate_of`] names it; a copy's [`Caption`] has zero
//!   timings and nothing encoded). A copy that comes while the first is
//!   still being captioned waits for it and is then answered by that same
//!   session. The cost: one more SHA-256 of the prepared pixels per image
//!   (the session hashes them again for its cache), on a prep thread: 9.4 MB
//!   for a 2048×1536 image, about 10 ms on a core with SHA instructions,
//!   against seconds of encoding at real scale; and the answers of the
//!   last [`with_dedupe`](Batch::with_dedupe) distinct images (4,096 by
//!   default, a few MB). A copy that comes after its original has left that
//!   window is captioned again, as any image.
//! - **Memory is bounded whatever the input size**: at most
//!   [`with_max_in_flight`](Batch::with_max_in_flight) inputs are taken
//!   from the iterator and not yet handed back (the iterator is read
//!   lazily, so a walk of a million files streams).
//! - **Cancel and deadlines**: [`Run::cancel`] (or the options' own
//!   [`CancelToken`](crate::CancelToken)) stops the encodes in flight within one encoder layer;
//!   no further input is taken, and what was taken ends as
//!   [`CaptionError::Cancelled`](crate::CaptionError::Cancelled). A
//!   deadline in the [`GenerationOptions`] applies to each caption.
//!   Dropping a [`Run`] cancels it and waits for its threads.
//!
//! Videos ([`Input::video`]) are read frame by frame by the session that
//! captions them (a video's frames are never all held), are asked the
//! [`with_video_prompts`](Batch::with_video_prompts) (the same prompts by
//! default), and are never deduplicated.

mod dedupe;
mod run;
mod work;

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::generation::GenerationOptions;
use crate::image::ImageOptions;
use crate::model::Model;
use crate::prompt::Prompt;
use crate::session::{Caption, Session};
use crate::video::Video;
use crate::worker::JobImage;

pub use self::run::Run;

/// The distinct images whose answers a run keeps for their copies, by default.
pub const DEFAULT_DEDUPE: usize = 4096;

/// In which order a [`Run`] hands its results back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Order {
    /// As they finish: a slow image holds nothing back.
    #[default]
    Completion,
    /// In the inputs' order: a result that finishes early waits (within
    /// the in-flight bound) for those before it.
    Input,
}

/// Chooses, for one input, the prompts (indices into the batch's) to ask,
/// given its key and the SHA-256 (lowercase hex) of the bytes read: the
/// file's, or the buffer's; `None` for pixels, or when the file could not
/// be read. An empty list skips the input. Called on a prep thread before
/// the image is decoded, so a resume check costs a read and a hash.
pub type Select<K> = dyn Fn(&K, Option<&str>) -> Vec<usize> + Send + Sync;

/// One input of a batch: an image or a video, with the caller's key.
#[derive(Debug)]
pub struct Input<K> {
    key: K,
    media: Media,
    prompts: Option<Vec<usize>>,
}

#[derive(Debug)]
pub(crate) enum Media {
    Image(JobImage),
    Video(Box<Video>),
}

impl<K> Input<K> {
    /// An image (a path, encoded bytes or pixels), known by `key`.
    pub fn image(key: K, image: impl Into<JobImage>) -> Self {
        Self {
            key,
            media: Media::Image(image.into()),
            prompts: None,
        }
    }

    /// A video, known by `key`: its frames are sampled as
    /// [`Session::ask_video`] samples them.
    pub fn video(key: K, video: Video) -> Self {
        Self {
            key,
            media: Media::Video(Box::new(video)),
            prompts: None,
        }
    }

    /// Asks only these of the batch's prompts (indices), in their order;
    /// an empty list skips the input. An index out of range makes the
    /// input's result an [`Error::InvalidOption`](crate::Error::InvalidOption).
    #[must_use]
    pub fn with_prompts(mut self, prompts: Vec<usize>) -> Self {
        self.prompts = Some(prompts);
        self
    }

    /// The caller's key.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl Input<PathBuf> {
    /// An image file, known by its path.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self::image(path.clone(), path)
    }
}

/// One input's results.
#[derive(Debug)]
#[non_exhaustive]
pub struct Done<K> {
    /// The caller's key.
    pub key: K,
    /// Its place among the inputs, from 0.
    pub index: usize,
    /// The SHA-256 (lowercase hex) of the bytes read: the file's or the
    /// buffer's; `None` for pixels or a file that could not be read.
    pub sha256: Option<String>,
    /// The prompts it was to be asked (indices), in order: all the batch's
    /// unless [`Input::with_prompts`] or the [`Select`] said otherwise.
    pub asked: Vec<usize>,
    /// An answer per prompt asked; or, when the input could not be used at
    /// all (unreadable, not an image, a bad prompt index), why. Then none
    /// of `asked` was asked.
    pub outcome: Result<Vec<Answer>>,
    /// The key of an earlier input with the same prepared pixels: this one's
    /// answers are copies of its answers ([`Answer::copied`]), or were asked
    /// on the session that held it (its encode reused). `None` for an image
    /// seen first (or after the dedupe window), and for videos.
    pub duplicate_of: Option<K>,
    /// The session that captioned it (from 0); `None` when nothing was
    /// captioned (skipped, failed before a session, or all copies).
    pub session: Option<usize>,
}

impl<K> Done<K> {
    /// The answers, or none when the input failed (see [`outcome`](Self::outcome)).
    #[must_use]
    pub fn answers(&self) -> &[Answer] {
        self.outcome.as_deref().unwrap_or(&[])
    }

    /// Whether it was skipped: no prompt was to be asked.
    #[must_use]
    pub fn skipped(&self) -> bool {
        self.asked.is_empty()
    }
}

/// The answer to one prompt about one input.
#[derive(Debug)]
#[non_exhaustive]
pub struct Answer {
    /// Which of the batch's prompts (an index).
    pub prompt: usize,
    /// The caption, or why there is none.
    pub result: Result<Caption>,
    /// Copied from an identical image's answer to the same prompt.
    pub copied: bool,
}

/// What a [`Run`] reports: results, and progress as it happens.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<K> {
    /// An input is finished.
    Done(Box<Done<K>>),
    /// A session's vision encoder moved on the input at `index`: `fraction`
    /// of its encodes (a video's frames) are done. Told at each encode's
    /// start and after each of its layers.
    Encoding {
        /// Which session, from 0.
        session: usize,
        /// The input's place, from 0.
        index: usize,
        /// From 0 to 1.
        fraction: f32,
    },
    /// A session finished the input it held and has none in hand.
    Idle {
        /// Which session, from 0.
        session: usize,
    },
}

/// A batch's settings: what to ask, how, and with how many sessions.
/// [`run`](Self::run) starts it over an iterator of [`Input`]s.
pub struct Batch<K> {
    model: Model,
    prompts: Vec<Prompt>,
    video_prompts: Option<Vec<Prompt>>,
    generation: GenerationOptions,
    image: ImageOptions,
    sessions: usize,
    given_sessions: Vec<Session>,
    prep_threads: usize,
    order: Order,
    dedupe: usize,
    max_in_flight: Option<usize>,
    select: Option<Arc<Select<K>>>,
}

impl<K> std::fmt::Debug for Batch<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("prompts", &self.prompts)
            .field("sessions", &self.sessions)
            .field("prep_threads", &self.prep_threads)
            .field("order", &self.order)
            .field("dedupe", &self.dedupe)
            .finish_non_exhaustive()
    }
}

impl<K: Clone + Send + 'static> Batch<K> {
    /// A batch over `model`: one session, one prep thread, the default
    /// prompt ("Describe this image."), greedy generation, results as they
    /// finish, duplicates answered once.
    #[must_use]
    pub fn new(model: &Model) -> Self {
        Self {
            model: model.clone(),
            prompts: vec![Prompt::from(crate::prompt::DEFAULT_PROMPT)],
            video_prompts: None,
            generation: GenerationOptions::default(),
            image: ImageOptions::default(),
            sessions: 1,
            given_sessions: Vec::new(),
            prep_threads: 1,
            order: Order::Completion,
            dedupe: DEFAULT_DEDUPE,
            max_in_flight: None,
            select: None,
        }
    }

    /// The prompt every input is asked.
    #[must_use]
    pub fn with_prompt(self, prompt: impl Into<Prompt>) -> Self {
        self.with_prompts([prompt])
    }

    /// The prompts every input is asked, in order; each image is encoded
    /// once for all of them. An empty list is refused by [`run`](Self::run).
    #[must_use]
    pub fn with_prompts<P: Into<Prompt>>(mut self, prompts: impl IntoIterator<Item = P>) -> Self {
        self.prompts = prompts.into_iter().map(Into::into).collect();
        self
    }

    /// What videos are asked in place of each prompt (as many as the
    /// prompts): say, "Describe this video." where the images get
    /// "Describe this image.".
    #[must_use]
    pub fn with_video_prompts<P: Into<Prompt>>(
        mut self,
        prompts: impl IntoIterator<Item = P>,
    ) -> Self {
        self.video_prompts = Some(prompts.into_iter().map(Into::into).collect());
        self
    }

    /// How captions are generated; a deadline applies to each caption, and
    /// a cancel token cancels the whole run.
    #[must_use]
    pub fn with_generation(mut self, options: GenerationOptions) -> Self {
        self.generation = options;
        self
    }

    /// How images are decoded and shaped.
    #[must_use]
    pub fn with_image_options(mut self, options: ImageOptions) -> Self {
        self.image = options;
        self
    }

    /// Sessions captioning at once (at least 1), each with its own KV
    /// cache. Each runs on the model's threads: on a small machine, load
    /// the model with `threads / sessions` each.
    #[must_use]
    pub fn with_sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions.max(1);
        self
    }

    /// Runs on these sessions (say, kept from an earlier run by
    /// [`Run::into_sessions`]) instead of opening new ones; more are
    /// opened if [`with_sessions`](Self::with_sessions) asks for more.
    #[must_use]
    pub fn with_open_sessions(mut self, sessions: Vec<Session>) -> Self {
        self.given_sessions = sessions;
        self
    }

    /// Threads reading and preparing images ahead (1 by default); 0
    /// prepares each image on the session that captions it, between its
    /// captions.
    #[must_use]
    pub fn with_prep_threads(mut self, threads: usize) -> Self {
        self.prep_threads = threads;
        self
    }

    /// In which order results come back.
    #[must_use]
    pub fn with_order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// How many distinct images' answers are kept for their copies
    /// ([`DEFAULT_DEDUPE`]); 0 turns deduplication off.
    #[must_use]
    pub fn with_dedupe(mut self, images: usize) -> Self {
        self.dedupe = images;
        self
    }

    /// The most inputs taken and not yet handed back (at least the
    /// sessions plus the prep threads). By default four per session plus
    /// one per prep thread: enough to keep every session busy, and in
    /// [`Order::Input`] to let results overtake a slow one.
    #[must_use]
    pub fn with_max_in_flight(mut self, inputs: usize) -> Self {
        self.max_in_flight = Some(inputs);
        self
    }

    /// Chooses each input's prompts once its bytes are read and hashed
    /// (see [`Select`]): a resume check against earlier results.
    #[must_use]
    pub fn with_select(
        mut self,
        select: impl Fn(&K, Option<&str>) -> Vec<usize> + Send + Sync + 'static,
    ) -> Self {
        self.select = Some(Arc::new(select));
        self
    }

    /// Starts the run over `inputs`, read lazily from the prep threads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`](crate::Error::InvalidOption) for no prompt,
    /// video prompts of another count, or generation options the model
    /// refuses; [`Error::Session`](crate::Error::Session) when a session
    /// cannot be opened. Each input's own failure is its [`Done`].
    pub fn run<I>(self, inputs: I) -> Result<Run<K>>
    where
        I: IntoIterator<Item = Input<K>>,
        I::IntoIter: Send + 'static,
    {
        run::start(self, Box::new(inputs.into_iter()))
    }
}

/// What the threads of one run share.
pub(crate) struct Settings<K> {
    pub model: Model,
    pub prompts: Vec<Prompt>,
    pub video_prompts: Vec<Prompt>,
    pub generation: GenerationOptions,
    pub image: ImageOptions,
    pub select: Option<Arc<Select<K>>>,
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
