//! `smolvlm caption` around the library's batch engine
//! ([`smolvlm::batch`]): the jobs are its inputs, the ledger its resume
//! check (run on its prep threads, after each file is read and hashed), and
//! each result becomes records, sidecars and progress on the calling thread.
//!
//! A stop (a signal, or a record that cannot be written) cancels the run:
//! the captions in flight end with no record and are captioned on the next
//! run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use smolvlm::batch::{Batch, Done, Input};
use smolvlm::image::ImageOptions;
use smolvlm::video::Video;
use smolvlm::{CancelToken, CaptionError, GenerationOptions, Model, Prompt};

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
    pub ledger: Arc<Ledger>,
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
    /// Distinct images whose captions are kept for identical copies (0: off).
    pub dedupe: usize,
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
    pub fn provenance(&self, job: &Job) -> &Provenance {
        if job.video {
            &self.video
        } else {
            &self.image
        }
    }
}

/// Runs the plan to its end or until stopped, reporting to `observer` on this thread.
pub fn run(plan: Plan<'_>, observer: &mut dyn Observer) {
    let Plan {
        model,
        jobs,
        ledger,
        image,
        video,
        prompts,
        generation,
        parallel,
        prep_threads,
        retry_errors,
        dedupe,
        skip_existing_sidecars,
        stop,
        cancel,
    } = plan;
    let prompts = Arc::new(prompts);
    let select = {
        let (ledger, prompts) = (Arc::clone(&ledger), Arc::clone(&prompts));
        move |job: &Job, sha256: Option<&str>| pending(&ledger, &prompts, retry_errors, job, sha256)
    };
    let inputs = jobs.into_iter().map(move |job| {
        // A caption in its sidecar: nothing to ask, and nothing to read.
        let skip = skip_existing_sidecars && job.sidecar.as_deref().is_some_and(sidecar_done);
        let input = if job.video {
            let video = video.apply(Video::file(&job.path));
            Input::video(job.clone(), video)
        } else {
            Input::image(job.clone(), job.path.clone())
        };
        if skip {
            input.with_prompts(Vec::new())
        } else {
            input
        }
    });
    let started = Batch::new(model)
        .with_prompts(prompts.iter().map(|a| a.prompt.clone()))
        .with_video_prompts(prompts.iter().map(|a| a.video_prompt.clone()))
        .with_generation(generation.with_cancel(cancel.clone()))
        .with_image_options(image)
        .with_sessions(parallel)
        .with_prep_threads(prep_threads)
        .with_dedupe(dedupe)
        .with_select(select)
        .run(inputs);
    let mut run = match started {
        Ok(run) => run,
        Err(e) => {
            observer.on_event(Event::Fatal(format!("cannot start the run: {e}")));
            return;
        }
    };
    let context = Context {
        ledger: &ledger,
        prompts: &prompts,
        stop,
        skip_existing_sidecars,
    };
    loop {
        let event = match run.next_event_timeout(Duration::from_millis(250)) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                observer.on_tick();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let going = match event {
            smolvlm::batch::Event::Done(done) => context
                .events(*done)
                .into_iter()
                .all(|event| observer.on_event(event)),
            smolvlm::batch::Event::Encoding {
                session, fraction, ..
            } => observer.on_event(Event::Moved {
                slot: session,
                fraction,
            }),
            smolvlm::batch::Event::Idle { session } => observer.on_event(Event::Moved {
                slot: session,
                fraction: 0.0,
            }),
            _ => true,
        };
        if !going {
            stop.store(true, Ordering::SeqCst);
            cancel.cancel();
            run.cancel();
        }
    }
}

/// What turning results into records needs.
struct Context<'a> {
    ledger: &'a Ledger,
    prompts: &'a [Asked],
    stop: &'a AtomicBool,
    skip_existing_sidecars: bool,
}

impl Context<'_> {
    /// One input's records (a record per prompt asked) and skips (one per
    /// prompt an earlier run answered).
    fn events(&self, done: Done<Job>) -> Vec<Event> {
        let job = &done.key;
        let label = job.path.to_string_lossy().into_owned();
        let mut events = Vec::new();
        let sidecar_skip = done.skipped()
            && self.skip_existing_sidecars
            && job.sidecar.as_deref().is_some_and(sidecar_done);
        if sidecar_skip {
            return vec![Event::Skipped(Prior::Captioned)];
        }
        for (i, asked) in self.prompts.iter().enumerate() {
            if done.asked.contains(&i) {
                continue;
            }
            let asking = asking(asked, job, i);
            let prior = self
                .ledger
                .prior(&job.key, &label, done.sha256.as_deref(), Some(asking));
            events.push(Event::Skipped(prior.cloned().unwrap_or(Prior::Captioned)));
        }
        let record = |i: usize, outcome: Outcome| {
            event(Record {
                path: label.clone(),
                key: job.key.clone(),
                sha256: done.sha256.clone(),
                asked: Some(self.prompts[i].provenance(job).clone()),
                outcome,
            })
        };
        let failed = |e: &smolvlm::Error| Outcome::Failed {
            kind: e.kind().to_owned(),
            message: e.to_string(),
        };
        let answers = match &done.outcome {
            Ok(answers) => answers,
            Err(e) => {
                events.extend(done.asked.iter().map(|&i| record(i, failed(e))));
                return events;
            }
        };
        let duplicate_of = done
            .duplicate_of
            .as_ref()
            .map(|original| original.path.to_string_lossy().into_owned());
        for answer in answers {
            let outcome = match &answer.result {
                // Abandoned: no record, so the next run captions it.
                Err(smolvlm::Error::Caption(CaptionError::Cancelled { .. }))
                    if self.stop.load(Ordering::SeqCst) =>
                {
                    continue
                }
                Err(e) => failed(e),
                Ok(caption) => {
                    let mut captioned = Captioned::from_caption(caption);
                    if answer.copied {
                        captioned.duplicate_of.clone_from(&duplicate_of);
                    }
                    match &job.sidecar {
                        Some(path) => match write_sidecar(path, &captioned.text) {
                            Ok(()) => Outcome::Captioned(Box::new(captioned)),
                            Err(e) => Outcome::Failed {
                                kind: SIDECAR_WRITE.to_owned(),
                                message: format!(
                                    "cannot write the sidecar '{}': {e}",
                                    path.display()
                                ),
                            },
                        },
                        None => Outcome::Captioned(Box::new(captioned)),
                    }
                }
            };
            events.push(record(answer.prompt, outcome));
        }
        events
    }
}

fn event(record: Record) -> Event {
    Event::Record(Box::new(record))
}

fn asking<'a>(asked: &'a Asked, job: &Job, i: usize) -> Asking<'a> {
    let provenance = asked.provenance(job);
    Asking {
        prompt: &provenance.prompt,
        fingerprint: &provenance.fingerprint,
        first: i == 0,
    }
}

/// The prompts to ask about this content: those no earlier run answered
/// for it, or answered with a transient error (a final one too with
/// `--retry-errors`), or whose sidecar, if one is asked for, lacks the
/// caption.
fn pending(
    ledger: &Ledger,
    prompts: &[Asked],
    retry_errors: bool,
    job: &Job,
    sha256: Option<&str>,
) -> Vec<usize> {
    let label = job.path.to_string_lossy();
    let mut pending = Vec::new();
    for (i, asked) in prompts.iter().enumerate() {
        let prior = ledger.prior(&job.key, &label, sha256, Some(asking(asked, job, i)));
        let again = match prior {
            None => true,
            Some(Prior::Failed(kind)) => retry_errors || ledger::is_transient(kind),
            Some(Prior::Captioned) => job.sidecar.as_deref().is_some_and(|s| !sidecar_done(s)),
        };
        if again {
            pending.push(i);
        }
    }
    pending
}
