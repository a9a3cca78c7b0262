//! `smolvlm caption`: settings, inputs, output, model, pipeline, summary.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use smolvlm::CancelToken;

use crate::args::CaptionArgs;
use crate::exit::Exit;
use crate::inputs::{self, Inputs};
use crate::ledger::{Ledger, Prior};
use crate::output::{sidecar_path, Sink};
use crate::pipeline::{self, Event, Job, Observer, Plan};
use crate::progress::Progress;
use crate::records::{Outcome, Record, SIDECAR_CONFLICT};
use crate::settings::Settings;

/// Set by the first SIGINT/SIGTERM/SIGHUP: take no new image.
static STOP: AtomicBool = AtomicBool::new(false);

/// Runs `smolvlm caption`.
pub fn caption(args: &CaptionArgs) -> Exit {
    let mut settings = match Settings::resolve(args) {
        Ok(s) => s,
        Err(message) => return Exit::usage(&message),
    };
    for warning in &settings.model.warnings {
        eprintln!("smolvlm: warning: {warning}");
    }
    if args.print_config {
        println!("{}", settings.to_json(args));
        return Exit::Success;
    }
    let stdin = std::io::stdin().lock();
    let inputs = match inputs::collect(&args.paths, stdin, settings.shard, args.video) {
        Ok(inputs) => inputs,
        Err(e) => return Exit::usage(&e.to_string()),
    };
    if inputs.images.iter().any(|i| i.video) {
        settings.model.for_video(&args.model);
    }
    let quiet = settings.quiet || settings.bare;
    if !quiet {
        for warning in &inputs.warnings {
            eprintln!("smolvlm: warning: {warning}");
        }
    }
    if args.plan {
        return crate::plan::run(&settings, &inputs);
    }
    let (mut sink, ledger) = match open_sink(&settings) {
        Ok(opened) => opened,
        Err(message) => return Exit::usage(&message),
    };
    if let Some(repaired) = &ledger.repaired {
        eprintln!("smolvlm: warning: {repaired}");
    }
    let (jobs, conflicts) = plan_jobs(&inputs, &settings, &ledger);
    if !quiet {
        eprintln!("smolvlm: {}", describe_plan(&inputs, &settings, &ledger));
    }

    let cancel = CancelToken::new();
    install_signal_handler(cancel.clone());
    // A record per image and prompt.
    let records = jobs.len() * settings.prompts.len() + conflicts.len();
    let mut progress = Progress::new(records as u64, quiet);
    let mut recorder = Recorder {
        sink: &mut sink,
        progress: &mut progress,
        broken: None,
    };
    for record in conflicts {
        recorder.on_event(Event::Record(Box::new(record)));
    }
    let ledger = std::sync::Arc::new(ledger);
    if let Err(message) = caption_jobs(&settings, ledger, jobs, cancel, &mut recorder) {
        return Exit::usage(&message);
    }
    let broken = recorder.broken.take();
    conclude(&mut sink, &mut progress, broken)
}

/// Loads the model and runs the pipeline, unless there is nothing to do or
/// a signal came first.
///
/// # Errors
///
/// The model could not be resolved or loaded.
fn caption_jobs(
    settings: &Settings,
    ledger: std::sync::Arc<Ledger>,
    jobs: Vec<Job>,
    cancel: CancelToken,
    recorder: &mut Recorder<'_>,
) -> Result<(), String> {
    if jobs.is_empty() || STOP.load(Ordering::SeqCst) {
        return Ok(());
    }
    // txt records hold no provenance: local files need not be hashed.
    let hash = settings.format != crate::args::Format::Txt;
    let (model, identity) = settings.model.load_identified(hash)?;
    // A grammar the model's vocabulary refuses stops the run: every image
    // would fail the same way.
    model
        .check_generation(&settings.generation)
        .map_err(|e| e.to_string())?;
    // A signal during the load stops the run before it starts.
    if STOP.load(Ordering::SeqCst) {
        return Ok(());
    }
    let plan = Plan {
        model: &model,
        jobs,
        ledger,
        image: settings.model.image.clone(),
        video: settings.video,
        prompts: settings.prompts_for(&identity),
        generation: settings.generation.clone(),
        parallel: settings.parallel,
        prep_threads: settings.prep_threads,
        retry_errors: settings.retry_errors,
        dedupe: if settings.dedupe {
            smolvlm::batch::DEFAULT_DEDUPE
        } else {
            0
        },
        skip_existing_sidecars: settings.sidecar
            && settings.output.is_none()
            && !settings.overwrite,
        stop: &STOP,
        cancel,
    };
    pipeline::run(plan, recorder);
    Ok(())
}

/// Syncs the records, prints the summary and picks the exit code.
fn conclude(sink: &mut Sink, progress: &mut Progress, broken: Option<String>) -> Exit {
    // A signal after the last image changes nothing.
    let interrupted = STOP.load(Ordering::SeqCst) && broken.is_none() && progress.left() > 0;
    if let Err(e) = sink.finish() {
        eprintln!("smolvlm: warning: cannot sync the records to disk: {e}");
    }
    let records = sink.path().map(|p| format!("'{}'", p.display()));
    progress.finish(interrupted, records.as_deref());
    let counts = progress.counts();
    if let Some(message) = broken {
        return Exit::usage(&message);
    }
    if interrupted {
        Exit::Interrupted
    } else if counts.failed + counts.failed_before > 0 {
        Exit::Failures
    } else {
        Exit::Success
    }
}

/// The record stream the settings ask for, with what it already holds.
fn open_sink(settings: &Settings) -> Result<(Sink, Ledger), String> {
    match &settings.output {
        Some(path) => {
            Sink::file(path, settings.format, settings.overwrite).map_err(|e| e.to_string())
        }
        None if settings.sidecar => Ok((Sink::nowhere(), Ledger::default())),
        None => Ok((
            Sink::stdout(settings.format, settings.bare),
            Ledger::default(),
        )),
    }
}

/// The jobs, and an error record for each image whose sidecar would
/// overwrite another image's sidecar or an input image (`a.jpg` and `a.png`
/// both want `a.txt`): the first image keeps it.
fn plan_jobs(inputs: &Inputs, settings: &Settings, ledger: &Ledger) -> (Vec<Job>, Vec<Record>) {
    let mut jobs = Vec::with_capacity(inputs.images.len());
    let mut conflicts = Vec::new();
    let images: HashSet<&PathBuf> = inputs.images.iter().map(|i| &i.path).collect();
    let mut claimed = HashSet::new();
    for input in &inputs.images {
        let sidecar = settings.sidecar.then(|| sidecar_path(&input.path));
        if let Some(sidecar) = &sidecar {
            if images.contains(sidecar) || !claimed.insert(sidecar.clone()) {
                let path = input.path.to_string_lossy().into_owned();
                // Recorded once: a later run skips it like any error.
                let final_error = matches!(
                    ledger.prior(&input.key, &path, None, None),
                    Some(Prior::Failed(kind)) if !crate::ledger::is_transient(kind)
                );
                if final_error && !settings.retry_errors {
                    continue;
                }
                conflicts.push(Record {
                    path,
                    key: input.key.clone(),
                    sha256: None,
                    asked: None,
                    outcome: Outcome::Failed {
                        kind: SIDECAR_CONFLICT.to_owned(),
                        message: format!(
                            "its sidecar '{}' belongs to another image: rename one of them",
                            sidecar.display()
                        ),
                    },
                });
                continue;
            }
        }
        jobs.push(Job {
            path: input.path.clone(),
            key: input.key.clone(),
            sidecar,
            video: input.video,
        });
    }
    (jobs, conflicts)
}

fn describe_plan(inputs: &Inputs, settings: &Settings, ledger: &Ledger) -> String {
    let mut line = format!(
        "{} image{}; {} session{} of {} thread{}, {} prep thread{}",
        inputs.images.len(),
        plural(inputs.images.len()),
        settings.parallel,
        plural(settings.parallel),
        settings.model.load.threads(),
        plural(settings.model.load.threads() as usize),
        settings.prep_threads,
        plural(settings.prep_threads),
    );
    let videos = inputs.images.iter().filter(|i| i.video).count();
    if videos > 0 {
        line += &format!(" ({videos} of them video{})", plural(videos));
    }
    if inputs.videos_skipped > 0 {
        line += &format!(
            "; {} video{} skipped (--video captions them)",
            inputs.videos_skipped,
            plural(inputs.videos_skipped)
        );
    }
    if inputs.not_images > 0 {
        line += &format!(
            "; {} non-image file{} skipped",
            inputs.not_images,
            plural(inputs.not_images)
        );
    }
    if let Some(shard) = settings.shard {
        line += &format!(
            "; shard {shard}, {} images left to other shards",
            inputs.other_shards
        );
    }
    if ledger.records > 0 {
        line += &format!("; resuming after {} records", ledger.records);
    }
    line
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The first signal stops the run: no new image is taken and the captions in
/// flight are cancelled; what is recorded stays recorded. A second signal
/// exits at once.
fn install_signal_handler(cancel: CancelToken) {
    let result = ctrlc::set_handler(move || {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(Exit::Interrupted.code());
        }
        cancel.cancel();
    });
    if let Err(e) = result {
        eprintln!(
            "smolvlm: warning: cannot handle Ctrl-C ({e}): an interrupt will end the run abruptly"
        );
    }
}

/// Writes each record as it comes and keeps the progress display.
struct Recorder<'a> {
    sink: &'a mut Sink,
    progress: &'a mut Progress,
    /// Why the run could not go on.
    broken: Option<String>,
}

impl Observer for Recorder<'_> {
    fn on_event(&mut self, event: Event) -> bool {
        if self.broken.is_some() {
            return false;
        }
        match event {
            Event::Record(record) => {
                if let Err(e) = self.sink.write(&record) {
                    let to = self
                        .sink
                        .path()
                        .map_or_else(|| "stdout".to_owned(), |p| format!("'{}'", p.display()));
                    self.broken = Some(format!("cannot write records to {to}: {e}"));
                    return false;
                }
                match &record.outcome {
                    Outcome::Captioned(c) => self.progress.captioned(&c.timings),
                    Outcome::Failed { kind, message } => {
                        self.progress.failed();
                        tracing::info!(path = %record.path, kind, message, "image failed");
                    }
                }
                true
            }
            Event::Skipped(prior) => {
                self.progress.skipped(matches!(prior, Prior::Failed(_)));
                true
            }
            Event::Fatal(message) => {
                self.broken = Some(message);
                false
            }
            Event::Moved { slot, fraction } => {
                self.progress.moved(slot, fraction);
                true
            }
        }
    }

    fn on_tick(&mut self) {
        self.progress.tick();
    }
}
