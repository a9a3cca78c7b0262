//! A non-blocking worker: sessions on background threads, jobs with events,
//! a blocking wait, a `Future`, and cancel.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::conversation::Conversation;
use crate::error::{CaptionError, Error, Result, Stage};
use crate::generation::{CancelToken, GenerationOptions};
use crate::image::{ImageInput, ImageOptions};
use crate::model::Model;
use crate::prompt::Prompt;
use crate::session::{Caption, EncodeProgress, Progress, Session};
use crate::video::Video;

/// An image a job owns: it travels to a worker thread.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JobImage {
    /// An image file, read on the worker thread.
    Path(PathBuf),
    /// An encoded image (PNG, JPEG, GIF, BMP, WebP, TIFF).
    Bytes(Vec<u8>),
    /// Decoded RGB pixels.
    Rgb(image::RgbImage),
    /// A decoded image of any colour type.
    Dynamic(image::DynamicImage),
}

impl JobImage {
    pub(crate) fn input(&self) -> ImageInput<'_> {
        match self {
            Self::Path(path) => ImageInput::Path(path),
            Self::Bytes(bytes) => ImageInput::Bytes(bytes),
            Self::Rgb(rgb) => ImageInput::Rgb(rgb),
            Self::Dynamic(image) => ImageInput::Dynamic(image),
        }
    }
}

impl From<PathBuf> for JobImage {
    fn from(path: PathBuf) -> Self {
        Self::Path(path)
    }
}

impl From<&std::path::Path> for JobImage {
    fn from(path: &std::path::Path) -> Self {
        Self::Path(path.to_path_buf())
    }
}

impl From<Vec<u8>> for JobImage {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(bytes)
    }
}

impl From<image::RgbImage> for JobImage {
    fn from(rgb: image::RgbImage) -> Self {
        Self::Rgb(rgb)
    }
}

impl From<image::DynamicImage> for JobImage {
    fn from(image: image::DynamicImage) -> Self {
        Self::Dynamic(image)
    }
}

/// What to caption, how: an image and a prompt, or a conversation to
/// answer; and options.
///
/// ```
/// use smolvlm::{Conversation, GenerationOptions, Request};
/// let request = Request::new(std::path::PathBuf::from("photo.jpg"), "Describe this image.")
///     .with_options(GenerationOptions::default().with_max_tokens(64));
/// // A follow-up: the app keeps the conversation and appends each answer.
/// let mut chat = Conversation::new();
/// chat.user([std::path::PathBuf::from("photo.jpg")], "Describe this image.");
/// chat.assistant("A cup of coffee on a table.");
/// chat.user_text("What colour is the cup?");
/// let follow_up = Request::reply(chat.clone());
/// ```
pub struct Request {
    input: Input,
    options: GenerationOptions,
    image_options: Option<ImageOptions>,
    notify: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("input", &self.input)
            .field("options", &self.options)
            .field("image_options", &self.image_options)
            .field("notify", &self.notify.is_some())
            .finish_non_exhaustive()
    }
}

impl Request {
    /// A request with default generation options.
    pub fn new(image: impl Into<JobImage>, prompt: impl Into<Prompt>) -> Self {
        Self::with_input(Input::Caption(image.into(), prompt.into()))
    }

    /// A request to answer the conversation's last user turn, as
    /// [`Session::reply`] does; the job's caption is the answer. The app
    /// keeps its conversation and appends the answer (`caption.text`) when
    /// the job finishes. A follow-up evaluates only its own turn when it
    /// reaches the session that answered the turn before: with one session,
    /// always.
    pub fn reply(conversation: Conversation) -> Self {
        Self::with_input(Input::Reply(Box::new(conversation)))
    }

    /// A request to answer `prompt` about a video, as
    /// [`Session::ask_video`] does; each frame's encode is an
    /// [`Event::Encoding`].
    pub fn video(video: Video, prompt: impl Into<Prompt>) -> Self {
        Self::with_input(Input::Video(Box::new(video), prompt.into()))
    }

    fn with_input(input: Input) -> Self {
        Self {
            input,
            options: GenerationOptions::default(),
            image_options: None,
            notify: None,
        }
    }

    /// Generation options. A cancel token set here is honoured as well as
    /// the job's own [`Job::cancel`].
    #[must_use]
    pub fn with_options(mut self, options: GenerationOptions) -> Self {
        self.options = options;
        self
    }

    /// How the image is decoded and shaped (default: [`ImageOptions::default`]).
    #[must_use]
    pub fn with_image_options(mut self, options: ImageOptions) -> Self {
        self.image_options = Some(options);
        self
    }

    /// Called on the worker thread after each event is sent, so a UI can
    /// wake up (an egui `request_repaint`, a `Waker`, a channel send). It
    /// must be quick and must not block; a panic in it is caught and
    /// logged, and the job goes on.
    #[must_use]
    pub fn with_notify(mut self, notify: impl Fn() + Send + Sync + 'static) -> Self {
        self.notify = Some(Arc::new(notify));
        self
    }
}

/// What a job does.
#[derive(Debug)]
enum Input {
    Caption(JobImage, Prompt),
    Reply(Box<Conversation>),
    Video(Box<Video>, Prompt),
    /// Panics in the session thread: the unit tests' stand-in for a bug.
    #[cfg(test)]
    Panic,
}

/// What happened to a job, in order. The last event is `Finished` or `Failed`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Accepted; `ahead` jobs were waiting before it.
    Queued {
        /// Jobs submitted earlier and not yet started.
        ahead: usize,
    },
    /// A session took the job: the image is being read and prepared.
    Started {
        /// Which of the worker's sessions (0-based).
        session: usize,
    },
    /// The image is prepared and tokenized; the vision encode starts.
    Tokenized {
        /// Tokens in the prompt, image tokens included.
        prompt_tokens: usize,
        /// Image embedding tokens.
        image_tokens: usize,
        /// Grid tiles (the overview not counted).
        tiles: usize,
    },
    /// The vision encoder moved: an encode of a tile (or the overview)
    /// began, or finished a layer. A 4:3 photo at SmolVLM's full grid is 13
    /// encodes of 12 layers, each layer about 0.15 s on 2 cores: enough
    /// events for a progress bar that moves smoothly.
    Encoding(EncodeProgress),
    /// The prompt, image included, is evaluated; generation starts.
    Prefilled {
        /// Time in the vision encoder.
        encode: Duration,
    },
    /// A piece of text; the pieces concatenate to the caption's text.
    Text(String),
    /// Done: the caption.
    Finished(Caption),
    /// Failed: the typed error (a cancel is [`CaptionError::Cancelled`]).
    Failed(Error),
}

impl Event {
    /// Whether this is the job's last event.
    #[must_use]
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Finished(_) | Self::Failed(_))
    }
}

/// Why [`Worker::submit`] refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue holds `capacity` jobs not yet started: try again later.
    #[error("the worker's queue is full ({capacity} jobs waiting)")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
        /// The refused request, to submit again.
        request: Box<Request>,
    },
    /// Every session of the worker has stopped: one panicked (a bug in
    /// smolvlm; please report it), so nothing would ever run the request.
    /// Open a new worker.
    #[error("the worker has no session left: they stopped after a panic (a bug in smolvlm)")]
    Stopped {
        /// The refused request, to submit to another worker.
        request: Box<Request>,
    },
}

/// The sending half of a job's events, with its wake-ups.
struct Events {
    tx: mpsc::Sender<Event>,
    waker: Arc<Mutex<Option<Waker>>>,
    notify: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Events {
    /// Sends an event; a job nobody listens to any more is not an error. A
    /// panic in the app's notify callback is caught here: it must not take
    /// the session down with it (the event is in the channel all the same).
    fn send(&self, event: Event) {
        let _ = self.tx.send(event);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
        if let Some(notify) = &self.notify {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| notify())).is_err() {
                tracing::warn!("a job's notify callback panicked; the job goes on");
            }
        }
    }
}

/// A job on its way to a session.
struct Task {
    request: Request,
    cancel: CancelToken,
    events: Events,
}

/// The state the handle and its threads share.
struct Shared {
    queue: Mutex<Receiver<Task>>,
    waiting: AtomicUsize,
    // Set when the worker is dropped: what is still queued is cancelled.
    closing: AtomicBool,
    // Session threads still serving; when the last one stops after a panic,
    // what is queued fails and `submit` refuses.
    alive: AtomicUsize,
}

impl Shared {
    /// Fails every queued job: no session is left to run it.
    fn fail_queued(&self) {
        let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        while let Ok(task) = queue.try_recv() {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            task.events.send(Event::Failed(stopped_error()));
        }
    }
}

fn stopped_error() -> Error {
    Error::Internal(
        "the worker's sessions stopped after a panic before this job could run".to_owned(),
    )
}

/// Sessions on background threads, fed from a bounded queue: captions
/// without blocking the caller's thread. The worker prints nothing and
/// holds no global state; dropping it cancels the running jobs, fails the
/// queued ones with [`CaptionError::Cancelled`] and joins its threads.
///
/// A job always ends with `Finished` or `Failed`. A panic in a job's
/// [`with_notify`](Request::with_notify) callback is caught (the job goes
/// on); a panic inside a session (a bug) fails that job with
/// [`Error::Internal`] and retires the session, and when no session is
/// left the queued jobs fail the same way and [`submit`](Self::submit)
/// refuses with [`SubmitError::Stopped`]: nothing waits forever.
///
/// ```no_run
/// use smolvlm::{Event, Model, Request, Worker};
///
/// let model = Model::from_pretrained("SmolVLM-256M-Instruct")?;
/// let worker = Worker::new(&model, 1, 16)?;
/// let mut job = worker.submit(Request::new(std::path::PathBuf::from("photo.jpg"), "Describe this image."))?;
/// // A UI polls `job.try_event()` each frame; a thread may block instead:
/// for event in job.events() {
///     if let Event::Text(piece) = event {
///         print!("{piece}");
///     }
/// }
/// // Or: `job.wait()`, `job.await`, and `job.cancel()` from anywhere.
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Worker {
    tx: Option<SyncSender<Task>>,
    shared: Arc<Shared>,
    capacity: usize,
    running: Arc<Mutex<Vec<CancelToken>>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("sessions", &self.threads.len())
            .field("capacity", &self.capacity)
            .field("waiting", &self.shared.waiting.load(Ordering::Relaxed))
            .finish()
    }
}

impl Worker {
    /// Opens `sessions` sessions of `model` (at least 1), each on a thread of
    /// its own, and a queue of `capacity` jobs not yet started (at least 1).
    /// Each session runs on [`LoadOptions::threads`](crate::LoadOptions::threads)
    /// cores: load the model with `cores / sessions` threads.
    ///
    /// # Errors
    ///
    /// As [`Model::session`]; [`Error::InvalidOption`] for a zero count.
    pub fn new(model: &Model, sessions: usize, capacity: usize) -> Result<Self> {
        if sessions == 0 {
            return Err(Error::invalid("sessions", "must be at least 1"));
        }
        if capacity == 0 {
            return Err(Error::invalid("capacity", "must be at least 1"));
        }
        let opened = (0..sessions)
            .map(|_| model.session())
            .collect::<Result<Vec<_>>>()?;
        let (tx, rx) = mpsc::sync_channel(capacity);
        let shared = Arc::new(Shared {
            queue: Mutex::new(rx),
            waiting: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            alive: AtomicUsize::new(sessions),
        });
        let running = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::with_capacity(sessions);
        for (index, session) in opened.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let running = Arc::clone(&running);
            let thread = std::thread::Builder::new()
                .name(format!("smolvlm-worker-{index}"))
                .spawn(move || serve(index, session, &shared, &running))
                .map_err(|e| Error::Internal(format!("cannot start a worker thread: {e}")))?;
            threads.push(thread);
        }
        Ok(Self {
            tx: Some(tx),
            shared,
            capacity,
            running,
            threads,
        })
    }

    /// Queues a request and returns its job at once.
    ///
    /// # Errors
    ///
    /// [`SubmitError::QueueFull`] when `capacity` jobs are waiting, and
    /// [`SubmitError::Stopped`] when no session is left (they panicked); the
    /// request comes back in the error.
    pub fn submit(&self, request: Request) -> std::result::Result<Job, SubmitError> {
        if self.shared.alive.load(Ordering::SeqCst) == 0 {
            return Err(SubmitError::Stopped {
                request: Box::new(request),
            });
        }
        let (events_tx, events_rx) = mpsc::channel();
        let waker = Arc::new(Mutex::new(None));
        let cancel = CancelToken::new();
        let events = Events {
            tx: events_tx,
            waker: Arc::clone(&waker),
            notify: request.notify.clone(),
        };
        let ahead = self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        events.send(Event::Queued { ahead });
        let task = Task {
            request,
            cancel: cancel.clone(),
            events,
        };
        let refused = match &self.tx {
            Some(tx) => match tx.try_send(task) {
                Ok(()) => None,
                Err(TrySendError::Full(task) | TrySendError::Disconnected(task)) => Some(task),
            },
            None => Some(task),
        };
        if let Some(task) = refused {
            self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::QueueFull {
                capacity: self.capacity,
                request: Box::new(task.request),
            });
        }
        // The last session may have stopped since the check above, after
        // failing what was queued then: fail this job too, not leave it.
        if self.shared.alive.load(Ordering::SeqCst) == 0 {
            self.shared.fail_queued();
        }
        Ok(Job {
            events: events_rx,
            waker,
            cancel,
            done: false,
        })
    }

    /// Jobs submitted and not yet started.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::SeqCst)
    }

    /// The number of sessions.
    #[must_use]
    pub fn sessions(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // No new jobs; the threads drain what is queued as cancelled.
        self.shared.closing.store(true, Ordering::SeqCst);
        self.tx = None;
        for token in self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            token.cancel();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One thread's loop: take a task, caption it, send its events. When the
/// last thread stops after a panic, what is still queued fails.
fn serve(index: usize, session: Session, shared: &Shared, running: &Mutex<Vec<CancelToken>>) {
    let panicked = serve_until_stopped(index, session, shared, running);
    let last = shared.alive.fetch_sub(1, Ordering::SeqCst) == 1;
    if panicked && last {
        shared.fail_queued();
    }
}

/// Serves tasks until the queue closes (`false`) or a caption panics (`true`).
fn serve_until_stopped(
    index: usize,
    mut session: Session,
    shared: &Shared,
    running: &Mutex<Vec<CancelToken>>,
) -> bool {
    loop {
        let task = {
            let queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.recv()
        };
        let Ok(task) = task else {
            return false; // The worker was dropped and the queue is empty.
        };
        shared.waiting.fetch_sub(1, Ordering::SeqCst);
        let Task {
            request,
            cancel,
            events,
        } = task;
        // Registered before the closing check: a worker dropped from now on
        // either sees this token and cancels it, or is seen closing here.
        running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cancel.clone());
        // A job dropped or cancelled while queued, or a worker being dropped.
        if cancel.is_cancelled()
            || request.options.is_cancelled()
            || shared.closing.load(Ordering::SeqCst)
        {
            unregister(running, &cancel);
            events.send(Event::Failed(
                CaptionError::Cancelled {
                    stage: Stage::Queued,
                }
                .into(),
            ));
            continue;
        }
        events.send(Event::Started { session: index });
        session.set_image_options(request.image_options.clone().unwrap_or_default());
        let options = request.options.clone().with_also_cancel(cancel.clone());
        let observer = |progress: Progress<'_>| match progress {
            Progress::Tokenized {
                prompt_tokens,
                image_tokens,
                tiles,
            } => events.send(Event::Tokenized {
                prompt_tokens,
                image_tokens,
                tiles,
            }),
            Progress::Encoding(at) => events.send(Event::Encoding(at)),
            Progress::Prefilled { encode, .. } => {
                events.send(Event::Prefilled { encode });
            }
            Progress::Text(piece) => events.send(Event::Text(piece.to_owned())),
        };
        let mut input = request.input;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &mut input {
            Input::Caption(image, prompt) => {
                session.caption_observed(image.input(), prompt.clone(), &options, observer)
            }
            Input::Reply(conversation) => session.reply_observed(conversation, &options, observer),
            Input::Video(video, prompt) => {
                session.ask_video_observed(video, prompt.clone(), &options, observer)
            }
            #[cfg(test)]
            Input::Panic => panic!("a test's panicking job"),
        }));
        unregister(running, &cancel);
        match outcome {
            Ok(Ok(caption)) => events.send(Event::Finished(caption)),
            Ok(Err(error)) => events.send(Event::Failed(error)),
            Err(_) => {
                events.send(Event::Failed(Error::Internal(
                    "a worker thread panicked while captioning".to_owned(),
                )));
                // The session's state is unknown after a panic: stop serving.
                return true;
            }
        }
    }
}

fn unregister(running: &Mutex<Vec<CancelToken>>, cancel: &CancelToken) {
    running
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|token| !token.same_as(cancel));
}

/// A submitted caption: its events, its result, and its cancel.
///
/// Read the events ([`try_event`](Self::try_event) from a UI loop,
/// [`events`](Self::events) or [`next_event`](Self::next_event) from a
/// thread), or just the result ([`wait`](Self::wait), or `.await`: a `Job`
/// is a [`Future`] that any async runtime can poll; the worker wakes it).
/// Dropping a job cancels it.
#[derive(Debug)]
pub struct Job {
    events: Receiver<Event>,
    waker: Arc<Mutex<Option<Waker>>>,
    cancel: CancelToken,
    done: bool,
}

impl Job {
    /// Asks the job to stop: a queued job never starts, a running one stops
    /// at its next check (between the stages of an image and between
    /// generated tokens) and fails with [`CaptionError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A token that cancels this job from any thread.
    #[must_use]
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// The next event if one is ready; never blocks. `None` also after the
    /// final event.
    pub fn try_event(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        match self.events.try_recv() {
            Ok(event) => Some(self.seen(event)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(self.lost()),
        }
    }

    /// The next event, waiting for it; `None` after the final event.
    pub fn next_event(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        Some(match self.events.recv() {
            Ok(event) => self.seen(event),
            Err(_) => self.lost(),
        })
    }

    /// The events as they come, ending with the final one.
    pub fn events(&mut self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(move || self.next_event())
    }

    /// Waits for the result, skipping the other events.
    ///
    /// # Errors
    ///
    /// The caption's error, as [`Session::caption`] gives it.
    pub fn wait(mut self) -> Result<Caption> {
        loop {
            match self.next_event() {
                Some(Event::Finished(caption)) => return Ok(caption),
                Some(Event::Failed(error)) => return Err(error),
                Some(_) => {}
                None => return Err(lost_error()),
            }
        }
    }

    fn seen(&mut self, event: Event) -> Event {
        self.done = event.is_final();
        event
    }

    /// The worker thread ended without a final event (it cannot, short of a
    /// bug): report it as a failure rather than hang.
    fn lost(&mut self) -> Event {
        self.done = true;
        Event::Failed(lost_error())
    }
}

fn lost_error() -> Error {
    Error::Internal("the worker stopped before the job finished".to_owned())
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.done {
            self.cancel.cancel();
        }
    }
}

impl Future for Job {
    type Output = Result<Caption>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let job = self.get_mut();
        loop {
            // Register first, then look: an event sent in between wakes us.
            *job.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            match job.try_event() {
                Some(Event::Finished(caption)) => return Poll::Ready(Ok(caption)),
                Some(Event::Failed(error)) => return Poll::Ready(Err(error)),
                Some(_) => {}
                None if job.done => return Poll::Ready(Err(lost_error())),
                None => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::{LoadOptions, ModelFiles};

    fn model() -> Model {
        let pair = smolvlm_testkit::tiny_model();
        let files = ModelFiles::new(pair.model, pair.mmproj);
        Model::load(&files, &LoadOptions::default().with_threads(1)).unwrap()
    }

    fn caption() -> Request {
        let image = image::RgbImage::from_pixel(32, 32, image::Rgb([10, 20, 30]));
        Request::new(JobImage::Rgb(image), "Describe this image.")
            .with_options(GenerationOptions::default().with_max_tokens(2))
    }

    /// Waits for `job` on another thread, so a hang fails the test.
    fn result(job: Job) -> Result<Caption> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(job.wait());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the job never ended")
    }

    #[test]
    fn when_the_last_session_panics_queued_jobs_and_new_submits_fail() {
        let model = model();
        let worker = Worker::new(&model, 1, 8).unwrap();
        let panicking = worker.submit(Request::with_input(Input::Panic)).unwrap();
        let queued: Vec<Job> = (0..3).map(|_| worker.submit(caption()).unwrap()).collect();
        let err = result(panicking).unwrap_err();
        assert_eq!(err.kind(), "internal", "{err}");
        for job in queued {
            let err = result(job).unwrap_err();
            assert_eq!(err.kind(), "internal", "{err}");
        }
        match worker.submit(caption()) {
            Err(SubmitError::Stopped { .. }) => {}
            other => panic!("a submit to a dead worker: {other:?}"),
        }
        assert_eq!(worker.waiting(), 0);
    }

    #[test]
    fn a_session_that_panics_leaves_the_others_serving() {
        let model = model();
        let worker = Worker::new(&model, 2, 8).unwrap();
        let panicking = worker.submit(Request::with_input(Input::Panic)).unwrap();
        assert_eq!(result(panicking).unwrap_err().kind(), "internal");
        for _ in 0..3 {
            let job = worker.submit(caption()).unwrap();
            assert_eq!(result(job).unwrap().tokens.len(), 2);
        }
    }
}
