//! The threads of a run: prep threads turn inputs into work, sessions
//! caption it.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use super::dedupe::{Admit, Table};
use super::{hex, Answer, Done, Event, Input, Media, Settings};
use crate::error::{Error, ImageError, Result};
use crate::image::{ImageInput, PreparedImage, Preprocessor};
use crate::session::{ImageKey, Progress, Session};
use crate::video::{Video, VideoError, VideoSource};
use crate::worker::JobImage;

/// An input ready for a session.
pub(super) struct Work<K> {
    pub index: usize,
    pub key: K,
    pub sha256: Option<String>,
    pub asked: Vec<usize>,
    pub media: Ready,
    /// Answers so far: copies from an identical image, then the session's.
    pub answers: Vec<Answer>,
    pub duplicate_of: Option<K>,
    /// The dedupe table counts on this one to answer its waiting copies.
    pub lead: bool,
}

pub(super) enum Ready {
    Image {
        image: Box<PreparedImage>,
        key: ImageKey,
    },
    Video(Box<Video>),
}

impl<K> Work<K> {
    /// The prompts it asks that have no answer yet, in order.
    pub(super) fn to_ask(&self) -> Vec<usize> {
        self.asked
            .iter()
            .copied()
            .filter(|p| !self.answers.iter().any(|a| a.prompt == *p))
            .collect()
    }

    fn into_done(mut self, session: Option<usize>) -> Done<K> {
        let asked = &self.asked;
        self.answers
            .sort_by_key(|a| asked.iter().position(|p| *p == a.prompt));
        Done {
            key: self.key,
            index: self.index,
            sha256: self.sha256,
            asked: self.asked,
            outcome: Ok(self.answers),
            duplicate_of: self.duplicate_of,
            session,
        }
    }
}

/// What the prep stage makes of one input.
pub(super) enum Step<K> {
    /// Finished already: skipped, failed, or all copies.
    Done(Done<K>),
    /// For a session.
    Caption(Work<K>),
    /// Waits for an identical image a session is captioning.
    Parked,
}

/// How many inputs may be taken and not yet handed back, and whether the
/// run still takes any.
pub(super) struct Control {
    free: Mutex<(usize, bool)>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Control {
    pub(super) fn new(max_in_flight: usize) -> Self {
        Self {
            free: Mutex::new((max_in_flight, false)),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    /// Waits for room for one more input; `false` once the run is stopped.
    fn acquire(&self) -> bool {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if free.1 {
                return false;
            }
            if free.0 > 0 {
                free.0 -= 1;
                return true;
            }
            free = self
                .changed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// One input was handed back (or never taken).
    pub(super) fn release(&self) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        free.0 += 1;
        self.changed.notify_one();
    }

    /// Takes no further input.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.free.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

type Inputs<K> = Box<dyn Iterator<Item = Input<K>> + Send>;

/// What every thread of a run shares.
pub(super) struct Shared<K> {
    pub settings: Settings<K>,
    pub inputs: Mutex<(Inputs<K>, usize)>,
    pub table: Mutex<Table<K>>,
    pub control: Arc<Control>,
    pub events: Sender<Event<K>>,
}

impl<K: Clone + Send + 'static> Shared<K> {
    /// The next input and its index, once there is room for it.
    fn take(&self) -> Option<(usize, Input<K>)> {
        if self.stopped() || !self.control.acquire() {
            return None;
        }
        let mut inputs = self.inputs.lock().unwrap_or_else(PoisonError::into_inner);
        let next = if self.stopped() {
            None
        } else {
            inputs.0.next()
        };
        let Some(input) = next else {
            drop(inputs);
            self.control.release();
            return None;
        };
        let index = inputs.1;
        inputs.1 += 1;
        Some((index, input))
    }

    fn stopped(&self) -> bool {
        self.control.stopped() || self.settings.generation.is_cancelled()
    }

    fn send(&self, event: Event<K>) {
        // The run was dropped: nobody reads results any more.
        let _ = self.events.send(event);
    }

    fn finished(&self, done: Done<K>) {
        self.send(Event::Done(Box::new(done)));
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table<K>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A prep thread: inputs in, work for the sessions out.
pub(super) fn prep_thread<K: Clone + Send + 'static>(
    shared: &Shared<K>,
    queue: &SyncSender<Work<K>>,
) {
    let mut prep = shared
        .settings
        .model
        .preprocessor(shared.settings.image.clone());
    while let Some((index, input)) = shared.take() {
        match prepare(shared, &mut prep, index, input) {
            Step::Done(done) => shared.finished(done),
            Step::Parked => {}
            Step::Caption(work) => {
                if let Err(unsent) = queue.send(work) {
                    // Every session has ended (a bug retired them).
                    let mut done = unsent.0.into_done(None);
                    done.outcome = Err(Error::Internal(
                        "no session is left to caption it".to_owned(),
                    ));
                    shared.finished(done);
                    return;
                }
            }
        }
    }
}

/// Where a session takes its work from.
pub(super) enum Source<K> {
    /// The prep threads' queue.
    Queue(Arc<Mutex<Receiver<Work<K>>>>),
    /// No prep thread: the session prepares its inputs itself.
    Inline(Box<Preprocessor>),
}

/// A session's thread: captions work until there is none; hands its
/// session back, unless a bug (a panic) retired it.
pub(super) fn session_thread<K: Clone + Send + 'static>(
    shared: &Shared<K>,
    slot: usize,
    mut session: Session,
    mut source: Source<K>,
) -> Option<Session> {
    loop {
        let work = match &mut source {
            Source::Queue(queue) => {
                let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                match next {
                    Ok(work) => work,
                    Err(_) => return Some(session),
                }
            }
            Source::Inline(prep) => {
                let Some((index, input)) = shared.take() else {
                    return Some(session);
                };
                match prepare(shared, prep, index, input) {
                    Step::Done(done) => {
                        shared.finished(done);
                        continue;
                    }
                    Step::Parked => continue,
                    Step::Caption(work) => work,
                }
            }
        };
        let alive = caption(shared, slot, &mut session, work);
        shared.send(Event::Idle { session: slot });
        if !alive {
            return None;
        }
    }
}

/// Captions `work`, then the copies that waited for it; `false` when the
/// session panicked and must not be used again.
fn caption<K: Clone + Send + 'static>(
    shared: &Shared<K>,
    slot: usize,
    session: &mut Session,
    mut work: Work<K>,
) -> bool {
    let mut alive = ask(shared, slot, session, &mut work);
    let waiting = match (&work.media, work.lead) {
        (Ready::Image { key, .. }, true) => {
            Some((*key, shared.table().finish(*key, &work.answers)))
        }
        _ => None,
    };
    shared.finished(work.into_done(Some(slot)));
    let Some((key, waiting)) = waiting else {
        return alive;
    };
    // The session holds the image: what is left of each copy is asked here.
    for mut copy in waiting {
        let captioned = alive && !copy.to_ask().is_empty();
        if captioned {
            alive = ask(shared, slot, session, &mut copy);
            shared.table().learn(key, &copy.answers);
        } else {
            retired(&mut copy);
        }
        shared.finished(copy.into_done(captioned.then_some(slot)));
    }
    alive
}

/// Answers what is left of `work` with the error of a retired session.
fn retired<K>(work: &mut Work<K>) {
    for prompt in work.to_ask() {
        work.answers.push(Answer {
            prompt,
            result: Err(Error::Internal(
                "a session panicked: it is retired".to_owned(),
            )),
            copied: false,
        });
    }
}

/// Asks `work`'s unanswered prompts in turn; `false` if the session panicked.
fn ask<K: Clone + Send + 'static>(
    shared: &Shared<K>,
    slot: usize,
    session: &mut Session,
    work: &mut Work<K>,
) -> bool {
    let settings = &shared.settings;
    let index = work.index;
    for prompt in work.to_ask() {
        let moved = |progress: Progress<'_>| {
            if let Progress::Encoding(at) = progress {
                let done = at.image.saturating_sub(1) as f32 + at.image_fraction();
                let fraction = done / at.images.max(1) as f32;
                shared.send(Event::Encoding {
                    session: slot,
                    index,
                    fraction,
                });
            }
        };
        let asked = catch_unwind(AssertUnwindSafe(|| match &work.media {
            Ready::Image { image, .. } => session.caption_observed(
                ImageInput::Prepared(image),
                settings.prompts[prompt].clone(),
                &settings.generation,
                moved,
            ),
            Ready::Video(video) => session.ask_video_observed(
                video,
                settings.video_prompts[prompt].clone(),
                &settings.generation,
                moved,
            ),
        }));
        let Ok(result) = asked else {
            retired(work);
            return false;
        };
        work.answers.push(Answer {
            prompt,
            result,
            copied: false,
        });
    }
    true
}

/// Reads, hashes, selects, decodes and resizes one input, and offers an
/// image to the dedupe table.
pub(super) fn prepare<K: Clone + Send + 'static>(
    shared: &Shared<K>,
    prep: &mut Preprocessor,
    index: usize,
    input: Input<K>,
) -> Step<K> {
    let settings = &shared.settings;
    let Input {
        key,
        media,
        prompts,
    } = input;
    let count = settings.prompts.len();
    let asked = prompts.unwrap_or_else(|| (0..count).collect());
    let done = |key: K, sha256: Option<String>, asked: Vec<usize>, outcome: Result<Vec<Answer>>| {
        Step::Done(Done {
            key,
            index,
            sha256,
            asked,
            outcome,
            duplicate_of: None,
            session: None,
        })
    };
    if let Some(bad) = asked.iter().find(|p| **p >= count) {
        let error = Error::InvalidOption {
            name: "prompts",
            message: format!("prompt {bad} asked of a batch of {count}"),
        };
        return done(key, None, asked, Err(error));
    }
    if asked.is_empty() {
        // Nothing to ask: nothing to read either.
        return done(key, None, asked, Ok(Vec::new()));
    }
    let choose = |key: &K, sha256: Option<&str>, asked: Vec<usize>| match &settings.select {
        Some(select) => {
            let chosen = select(key, sha256);
            asked.into_iter().filter(|p| chosen.contains(p)).collect()
        }
        None => asked,
    };
    let work = |media: Ready, sha256: Option<String>, key: K, asked: Vec<usize>| Work {
        index,
        key,
        sha256,
        asked,
        media,
        answers: Vec::new(),
        duplicate_of: None,
        lead: false,
    };
    match media {
        Media::Video(video) => {
            let (hashed, sha256) = hash_video(&video);
            let asked = choose(&key, sha256.as_deref(), asked);
            match hashed {
                _ if asked.is_empty() => done(key, sha256, asked, Ok(Vec::new())),
                Err(error) => done(key, sha256, asked, Err(error)),
                Ok(()) => Step::Caption(work(Ready::Video(video), sha256, key, asked)),
            }
        }
        Media::Image(image) => {
            let (read, sha256) = read_image(&image);
            let asked = choose(&key, sha256.as_deref(), asked);
            let prepared = match read {
                _ if asked.is_empty() => return done(key, sha256, asked, Ok(Vec::new())),
                Err(error) => return done(key, sha256, asked, Err(error)),
                Ok(Some(bytes)) => match &image {
                    JobImage::Path(path) => prep.prepare_file_bytes(path, &bytes),
                    _ => prep.prepare(ImageInput::Bytes(&bytes)),
                },
                Ok(None) => prep.prepare(image.input()),
            };
            drop(image);
            let prepared = match prepared {
                Ok(prepared) => prepared,
                Err(e) => return done(key, sha256, asked, Err(e.into())),
            };
            let image_key = ImageKey::of_rgb(prepared.image());
            let ready = Ready::Image {
                image: Box::new(prepared),
                key: image_key,
            };
            match shared
                .table()
                .admit(image_key, work(ready, sha256, key, asked))
            {
                Admit::Caption(work) => Step::Caption(work),
                Admit::Finished(work) => Step::Done(work.into_done(None)),
                Admit::Parked => Step::Parked,
            }
        }
    }
}

/// An image's bytes as read: none for pixels.
type Bytes<'a> = Result<Option<Cow<'a, [u8]>>>;

/// An image's bytes and their SHA-256.
fn read_image(image: &JobImage) -> (Bytes<'_>, Option<String>) {
    let bytes: Cow<'_, [u8]> = match image {
        JobImage::Path(path) => match std::fs::read(path) {
            Ok(bytes) => Cow::Owned(bytes),
            Err(source) => {
                let error = ImageError::Read {
                    path: path.clone(),
                    source,
                };
                return (Err(error.into()), None);
            }
        },
        JobImage::Bytes(bytes) => Cow::Borrowed(bytes),
        _ => return (Ok(None), None),
    };
    let sha256 = hex(&Sha256::digest(&bytes));
    (Ok(Some(bytes)), Some(sha256))
}

/// A video's SHA-256: of its file, streamed (it may be large), or of its
/// bytes; none for a folder of frames. Its frames are read by the session.
fn hash_video(video: &Video) -> (Result<()>, Option<String>) {
    match video.source() {
        VideoSource::File(path) => {
            let hashed = std::fs::File::open(path).and_then(|mut file| {
                let mut hasher = Sha256::new();
                std::io::copy(&mut file, &mut hasher)?;
                Ok(hex(&hasher.finalize()))
            });
            match hashed {
                Ok(sha256) => (Ok(()), Some(sha256)),
                Err(source) => {
                    let error = VideoError::Read {
                        path: path.clone(),
                        source,
                    };
                    (Err(error.into()), None)
                }
            }
        }
        VideoSource::Bytes(bytes) => (Ok(()), Some(hex(&Sha256::digest(bytes)))),
        _ => (Ok(()), None),
    }
}
