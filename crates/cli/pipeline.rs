//! The batch pipeline: prepare ahead, caption in parallel, record in order of completion.
//!
//! ```text
//! jobs ─► prep threads (read, hash, resume check, decode, resize)
//!      ─► bounded queue (--parallel slots: memory stays flat)
//!      ─► N caption threads, one Session each, sharing the Model
//!      ─► events ─► the calling thread: records, sidecars, progress
//! ```
//!
//! With `--prep-threads 0` each caption thread prepares its own images in
//! turn (the sequential baseline). A stop (a signal, or a record that cannot
//! be written) cancels the captions in flight through the shared
//! [`CancelToken`]: they end with no record and are captioned on the next run.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use smolvlm::image::{ImageOptions, PreparedImage, Preprocessor};
use smolvlm::video::{Video, VideoError};
use smolvlm::{CancelToken, CaptionError, GenerationOptions, ImageError, Model, Prompt};

use crate::args::VideoArgs;

use crate::ledger::{self, Asking, Ledger, Prior};
use crate::output::{sidecar_done, write_sidecar};
use crate::records::{Captioned, Outcome, Provenance, Record, SIDECAR_WRITE};

/// One image to caption.
#[derive(Debug, Clone)]
pub struct Job {
    /// The file.
    pub path: PathBuf,
    /// Its path relative to its root, which resume matches on.
    pub key: String,
    /// Where its caption goes beside it, with `--sidecar`.
    pub sidecar: Option<PathBuf>,
    /// A video: its frames are sampled and shown, not one image.
    pub video: bool,
}

/// Everything the pipeline needs.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The loaded model, shared by every session.
    pub model: &'a Model,
    /// The images, in order.
    pub jobs: Vec<Job>,
    /// What earlier runs recorded.
    pub ledger: &'a Ledger,
    /// How images are decoded and shaped.
    pub image: ImageOptions,
    /// How videos' frames are sampled.
    pub video: VideoArgs,
    /// The prompts: every image is asked each, in order, and encoded once.
    pub prompts: Vec<Asked>,
    /// How captions are generated, without the cancel token.
    pub generation: GenerationOptions,
    /// Sessions captioning at once.
    pub parallel: usize,
    /// Threads preparing images ahead; 0 prepares on the caption threads.
    pub prep_threads: usize,
    /// Caption again the images whose last record is a final error (a
    /// transient one is always tried again).
    pub retry_errors: bool,
    /// Skip images whose sidecar holds a caption (sidecars without a record file).
    pub skip_existing_sidecars: bool,
    /// Set by a signal: take no new image.
    pub stop: &'a AtomicBool,
    /// Cancelled with `stop`: abandons the captions in flight.
    pub cancel: CancelToken,
}

/// What the pipeline reports to the calling thread.
#[derive(Debug)]
pub enum Event {
    /// An image was captioned or failed in this run.
    Record(Box<Record>),
    /// An image was recorded by an earlier run (or has its sidecar).
    Skipped(Prior),
    /// The run cannot go on (no session could be opened).
    Fatal(String),
    /// The vision encoder of caption thread `slot` moved: the image it
    /// captions is this far encoded (0 when it has none in hand).
    Moved {
        /// Which caption thread.
        slot: usize,
        /// From 0 to 1.
        fraction: f32,
    },
}

/// The calling thread's side: it writes records and draws progress.
pub trait Observer {
    /// Handles one event; `false` stops the run (say, the output cannot be written).
    fn on_event(&mut self, event: Event) -> bool;
    /// Called about every quarter second while the run goes on.
    fn on_tick(&mut self);
}

/// One prompt of a run.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The prompt.
    pub prompt: Prompt,
    /// What a video is asked: the prompt, unless none was given (the
    /// default prompt speaks of an image).
    pub video_prompt: Prompt,
    /// What an image's records say produced them (resume compares it).
    pub image: Provenance,
    /// What a video's records say produced them.
    pub video: Provenance,
}

impl Asked {
    /// What `job`'s records say produced them.
    fn provenance(&self, job: &Job) -> &Provenance {
        if job.video {
            &self.video
        } else {
            &self.image
        }
    }
}

/// An image as the prep stage hands it on: what is already decided (skips,
/// failures), and the prompts left to ask about the prepared image.
struct Prepared {
    events: Vec<Event>,
    ready: Option<Ready>,
}

struct Ready {
    job: Job,
    label: String,
    sha256: String,
    media: Media,
    /// Indices into the plan's prompts.
    pending: Vec<usize>,
}

/// What a job shows the model.
enum Media {
    /// An image, decoded and resized.
    Image(Box<PreparedImage>),
    /// A video, read frame by frame by the session as it captions.
    Video(Box<Video>),
}

impl Prepared {
    fn done(events: Vec<Event>) -> Self {
        Self {
            events,
            ready: None,
        }
    }
}

/// Runs the plan to its end or until stopped, reporting to `observer` on this thread.
pub fn run(plan: Plan<'_>, observer: &mut dyn Observer) {
    let generation = plan.generation.clone().with_cancel(plan.cancel.clone());
    let jobs = Mutex::new(plan.jobs.iter().cloned().collect::<VecDeque<Job>>());
    let (events_tx, events_rx) = mpsc::channel::<Event>();
    let plan = &plan;
    std::thread::scope(|scope| {
        let queue = if plan.prep_threads == 0 {
            None
        } else {
            let (tx, rx) = mpsc::sync_channel::<Prepared>(plan.parallel);
            for _ in 0..plan.prep_threads {
                let (tx, jobs) = (tx.clone(), &jobs);
                scope.spawn(move || prep_worker(plan, jobs, &tx));
            }
            Some(std::sync::Arc::new(Mutex::new(rx)))
        };
        for slot in 0..plan.parallel {
            let source = match &queue {
                Some(rx) => Source::Queue(rx.clone()),
                None => Source::Inline(&jobs),
            };
            let (events, generation) = (events_tx.clone(), &generation);
            scope.spawn(move || caption_worker(plan, slot, source, generation, &events));
        }
        // Only the workers hold the queue and the event senders now, so
        // both close when the workers end.
        drop(queue);
        drop(events_tx);
        observe(plan, &events_rx, observer);
    });
}

fn observe(plan: &Plan<'_>, events: &Receiver<Event>, observer: &mut dyn Observer) {
    loop {
        match events.recv_timeout(Duration::from_millis(250)) {
            Ok(event) => {
                if !observer.on_event(event) {
                    stop(plan);
                }
            }
            Err(RecvTimeoutError::Timeout) => observer.on_tick(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

fn stop(plan: &Plan<'_>) {
    plan.stop.store(true, Ordering::SeqCst);
    plan.cancel.cancel();
}

fn stopped(plan: &Plan<'_>) -> bool {
    plan.stop.load(Ordering::SeqCst)
}

fn next_job(jobs: &Mutex<VecDeque<Job>>) -> Option<Job> {
    jobs.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop_front()
}

fn prep_worker(plan: &Plan<'_>, jobs: &Mutex<VecDeque<Job>>, queue: &SyncSender<Prepared>) {
    let mut prep = plan.model.preprocessor(plan.image.clone());
    while !stopped(plan) {
        let Some(job) = next_job(jobs) else { break };
        // A closed queue means the caption threads have stopped.
        if queue.send(prepare(plan, &mut prep, job)).is_err() {
            break;
        }
    }
}

/// Where a caption thread takes its next image from.
enum Source<'a> {
    Queue(std::sync::Arc<Mutex<Receiver<Prepared>>>),
    Inline(&'a Mutex<VecDeque<Job>>),
}

fn caption_worker(
    plan: &Plan<'_>,
    slot: usize,
    source: Source<'_>,
    generation: &GenerationOptions,
    events: &Sender<Event>,
) {
    let mut session = match plan.model.session() {
        Ok(s) => s,
        Err(e) => {
            let _ = events.send(Event::Fatal(format!("cannot open a session: {e}")));
            return;
        }
    };
    session.set_image_options(plan.image.clone());
    let mut inline_prep = match source {
        Source::Inline(_) => Some(plan.model.preprocessor(plan.image.clone())),
        Source::Queue(_) => None,
    };
    while !stopped(plan) {
        let next = match (&source, inline_prep.as_mut()) {
            (Source::Queue(rx), _) => rx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recv()
                .ok(),
            (Source::Inline(jobs), Some(prep)) => {
                next_job(jobs).map(|job| prepare(plan, prep, job))
            }
            (Source::Inline(_), None) => None,
        };
        let Some(Prepared {
            events: decided,
            ready,
        }) = next
        else {
            break;
        };
        for event in decided {
            if events.send(event).is_err() {
                return;
            }
        }
        let Some(ready) = ready else { continue };
        // The encoder's layers move the progress bar within the image (a
        // video's frames are its images).
        let moved = |progress: smolvlm::Progress<'_>| {
            if let smolvlm::Progress::Encoding(at) = progress {
                let done = at.image.saturating_sub(1) as f32 + at.image_fraction();
                let fraction = done / at.images.max(1) as f32;
                let _ = events.send(Event::Moved { slot, fraction });
            }
        };
        for &i in &ready.pending {
            let asked = &plan.prompts[i];
            let caption = match &ready.media {
                Media::Image(image) => {
                    session.caption_observed(&**image, asked.prompt.clone(), generation, moved)
                }
                Media::Video(video) => {
                    session.ask_video_observed(video, asked.video_prompt.clone(), generation, moved)
                }
            };
            let _ = events.send(Event::Moved {
                slot,
                fraction: 0.0,
            });
            let event = match caption {
                // Abandoned: no record, so the next run captions it.
                Err(smolvlm::Error::Caption(CaptionError::Cancelled { .. })) if stopped(plan) => {
                    return
                }
                Ok(caption) => {
                    let captioned = Captioned::from_caption(&caption);
                    event(captioned_record(&ready, asked, captioned))
                }
                Err(e) => event(failed(
                    &ready.job,
                    ready.label.clone(),
                    Some(ready.sha256.clone()),
                    asked,
                    e.kind(),
                    &e,
                )),
            };
            if events.send(event).is_err() {
                return;
            }
        }
    }
}

fn event(record: Record) -> Event {
    Event::Record(Box::new(record))
}

/// The record of a caption, after its sidecar (if any) is on the disk.
fn captioned_record(ready: &Ready, asked: &Asked, captioned: Captioned) -> Record {
    let job = &ready.job;
    let (label, sha256) = (ready.label.clone(), Some(ready.sha256.clone()));
    if let Some(path) = &job.sidecar {
        if let Err(e) = write_sidecar(path, &captioned.text) {
            let message = format!("cannot write the sidecar '{}': {e}", path.display());
            return failed(job, label, sha256, asked, SIDECAR_WRITE, &message);
        }
    }
    Record {
        path: label,
        key: job.key.clone(),
        sha256,
        asked: Some(asked.provenance(job).clone()),
        outcome: Outcome::Captioned(captioned),
    }
}

fn failed(
    job: &Job,
    path: String,
    sha256: Option<String>,
    asked: &Asked,
    kind: &str,
    message: &dyn std::fmt::Display,
) -> Record {
    Record {
        path,
        key: job.key.clone(),
        sha256,
        asked: Some(asked.provenance(job).clone()),
        outcome: Outcome::Failed {
            kind: kind.to_owned(),
            message: message.to_string(),
        },
    }
}

/// Reads, hashes and checks one image against the ledger (per prompt), then
/// decodes and resizes it for the prompts left to ask.
fn prepare(plan: &Plan<'_>, prep: &mut Preprocessor, job: Job) -> Prepared {
    let label = job.path.to_string_lossy().into_owned();
    if plan.skip_existing_sidecars && job.sidecar.as_deref().is_some_and(sidecar_done) {
        return Prepared::done(vec![Event::Skipped(Prior::Captioned)]);
    }
    // Every prompt gets its record: a skip, or an error for all left to ask.
    let fail_all = |events: &mut Vec<Event>,
                    pending: &[usize],
                    sha256: Option<&str>,
                    error: &smolvlm::Error| {
        for &i in pending {
            let record = failed(
                &job,
                label.clone(),
                sha256.map(str::to_owned),
                &plan.prompts[i],
                error.kind(),
                error,
            );
            events.push(event(record));
        }
    };
    let mut events = Vec::new();
    if job.video {
        return prepare_video(plan, job, label, events);
    }
    let bytes = match std::fs::read(&job.path) {
        Ok(bytes) => bytes,
        Err(source) => {
            let pending = pending(plan, &job, &label, None, &mut events);
            let error = smolvlm::Error::from(ImageError::Read {
                path: job.path.clone(),
                source,
            });
            fail_all(&mut events, &pending, None, &error);
            return Prepared::done(events);
        }
    };
    let sha256 = hex(&Sha256::digest(&bytes));
    let pending = pending(plan, &job, &label, Some(&sha256), &mut events);
    if pending.is_empty() {
        return Prepared::done(events);
    }
    match prep.prepare_file_bytes(&job.path, &bytes) {
        Ok(image) => Prepared {
            events,
            ready: Some(Ready {
                job,
                label,
                sha256,
                media: Media::Image(Box::new(image)),
                pending,
            }),
        },
        Err(e) => {
            let error = smolvlm::Error::from(e);
            fail_all(&mut events, &pending, Some(&sha256), &error);
            Prepared::done(events)
        }
    }
}

/// Hashes a video file (streamed: it may be large) and checks it against
/// the ledger. Its frames are read by the session that captions it, as they
/// are sampled: decoding a whole video ahead would hold all its frames.
fn prepare_video(plan: &Plan<'_>, job: Job, label: String, mut events: Vec<Event>) -> Prepared {
    let hashed = std::fs::File::open(&job.path).and_then(|mut file| {
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(hex(&hasher.finalize()))
    });
    let sha256 = match hashed {
        Ok(sha256) => sha256,
        Err(source) => {
            let pending = pending(plan, &job, &label, None, &mut events);
            let error = smolvlm::Error::from(VideoError::Read {
                path: job.path.clone(),
                source,
            });
            for &i in &pending {
                let record = failed(
                    &job,
                    label.clone(),
                    None,
                    &plan.prompts[i],
                    error.kind(),
                    &error,
                );
                events.push(event(record));
            }
            return Prepared::done(events);
        }
    };
    let pending = pending(plan, &job, &label, Some(&sha256), &mut events);
    if pending.is_empty() {
        return Prepared::done(events);
    }
    let video = plan.video.apply(Video::file(&job.path));
    Prepared {
        events,
        ready: Some(Ready {
            job,
            label,
            sha256,
            media: Media::Video(Box::new(video)),
            pending,
        }),
    }
}

/// The prompts to ask about this content; a skip event for each of the
/// others: an earlier run recorded it, and it is not to be done again (a
/// caption whose sidecar, if one is asked for, holds it, or a final error
/// unless `--retry-errors`).
fn pending(
    plan: &Plan<'_>,
    job: &Job,
    label: &str,
    sha256: Option<&str>,
    events: &mut Vec<Event>,
) -> Vec<usize> {
    let mut pending = Vec::new();
    for (i, asked) in plan.prompts.iter().enumerate() {
        let provenance = asked.provenance(job);
        let asking = Asking {
            prompt: &provenance.prompt,
            fingerprint: &provenance.fingerprint,
            first: i == 0,
        };
        let prior = plan.ledger.prior(&job.key, label, sha256, Some(asking));
        match prior {
            None => pending.push(i),
            Some(Prior::Failed(kind)) if plan.retry_errors || ledger::is_transient(kind) => {
                pending.push(i);
            }
            Some(Prior::Captioned) if job.sidecar.as_deref().is_some_and(|s| !sidecar_done(s)) => {
                pending.push(i);
            }
            Some(prior) => events.push(Event::Skipped(prior.clone())),
        }
    }
    pending
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
