//! A started batch: its threads, and the results as the caller takes them.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::dedupe::Table;
use super::work::{prep_thread, session_thread, Control, Shared, Source, Work};
use super::{Batch, Done, Event, Input, Order, Settings};
use crate::error::{Error, Result};
use crate::generation::CancelToken;
use crate::session::Session;

/// A batch under way: iterate it for the [`Done`] inputs, or use
/// [`next_event`](Self::next_event) for progress too. Dropping it cancels
/// what is left and waits for its threads.
pub struct Run<K> {
    events: Receiver<Event<K>>,
    order: Order,
    /// In [`Order::Input`]: the next index to hand back, and the results
    /// that came before their turn.
    next: usize,
    held: BTreeMap<usize, Done<K>>,
    control: Arc<Control>,
    cancel: CancelToken,
    sessions: Vec<JoinHandle<Option<Session>>>,
    preps: Vec<JoinHandle<()>>,
}

impl<K> std::fmt::Debug for Run<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("order", &self.order)
            .field("sessions", &self.sessions.len())
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

pub(super) fn start<K: Clone + Send + 'static>(
    batch: Batch<K>,
    inputs: Box<dyn Iterator<Item = Input<K>> + Send>,
) -> Result<Run<K>> {
    let Batch {
        model,
        prompts,
        video_prompts,
        generation,
        image,
        sessions: wanted,
        given_sessions,
        prep_threads,
        order,
        dedupe,
        max_in_flight,
        select,
    } = batch;
    if prompts.is_empty() {
        return Err(Error::InvalidOption {
            name: "prompts",
            message: "a batch needs at least one prompt".to_owned(),
        });
    }
    let video_prompts = video_prompts.unwrap_or_else(|| prompts.clone());
    if video_prompts.len() != prompts.len() {
        return Err(Error::InvalidOption {
            name: "video_prompts",
            message: format!(
                "{} video prompts for {} prompts: give one per prompt",
                video_prompts.len(),
                prompts.len()
            ),
        });
    }
    model.check_generation(&generation)?;
    let mut sessions = given_sessions;
    while sessions.len() < wanted {
        sessions.push(model.session()?);
    }
    for session in &mut sessions {
        session.set_image_options(image.clone());
    }
    let cancel = CancelToken::new();
    let floor = sessions.len() + prep_threads;
    let max_in_flight = max_in_flight
        .unwrap_or(4 * sessions.len() + prep_threads)
        .max(floor);
    let control = Arc::new(Control::new(max_in_flight));
    let (events_tx, events) = mpsc::channel();
    let shared = Arc::new(Shared {
        settings: Settings {
            generation: generation.with_also_cancel(cancel.clone()),
            model,
            prompts,
            video_prompts,
            image,
            select,
        },
        inputs: Mutex::new((inputs, 0)),
        table: Mutex::new(Table::new(dedupe)),
        control: Arc::clone(&control),
        events: events_tx,
    });
    let mut run = Run {
        events,
        order,
        next: 0,
        held: BTreeMap::new(),
        control,
        cancel,
        sessions: Vec::new(),
        preps: Vec::new(),
    };
    let (queue_tx, receiver) = if prep_threads > 0 {
        let (tx, rx) = mpsc::sync_channel::<Work<K>>(sessions.len());
        (Some(tx), Some(Arc::new(Mutex::new(rx))))
    } else {
        (None, None)
    };
    for (slot, session) in sessions.into_iter().enumerate() {
        let source = match &receiver {
            Some(rx) => Source::Queue(Arc::clone(rx)),
            None => Source::Inline(Box::new(
                shared
                    .settings
                    .model
                    .preprocessor(shared.settings.image.clone()),
            )),
        };
        let shared = Arc::clone(&shared);
        let handle = spawn(format!("smolvlm-batch-session-{slot}"), move || {
            session_thread(&shared, slot, session, source)
        })?;
        run.sessions.push(handle);
    }
    if let Some(tx) = queue_tx {
        for n in 0..prep_threads {
            let (shared, tx) = (Arc::clone(&shared), tx.clone());
            let handle = spawn(format!("smolvlm-batch-prep-{n}"), move || {
                prep_thread(&shared, &tx);
            })?;
            run.preps.push(handle);
        }
    }
    Ok(run)
}

/// Starts a named thread; a failure to start one fails the run (which
/// stops the threads already started as it drops).
fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(|e| Error::Internal(format!("cannot start a batch thread: {e}")))
}

impl<K> Run<K> {
    /// The next event: a finished input (in the run's [`Order`]) or
    /// progress; `None` once every input taken is handed back and the
    /// threads are done.
    pub fn next_event(&mut self) -> Option<Event<K>> {
        self.next_until(None).ok()
    }

    /// Like [`next_event`](Self::next_event), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] when nothing came in time;
    /// [`RecvTimeoutError::Disconnected`] when the run is over.
    pub fn next_event_timeout(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<Event<K>, RecvTimeoutError> {
        self.next_until(Some(Instant::now() + timeout))
    }

    fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> std::result::Result<Event<K>, RecvTimeoutError> {
        loop {
            if let Some(done) = self.held.remove(&self.next) {
                return Ok(self.hand_back(done));
            }
            let event = match deadline {
                None => self
                    .events
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => self
                    .events
                    .recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match event {
                Ok(Event::Done(done)) if self.order == Order::Input && done.index != self.next => {
                    self.held.insert(done.index, *done);
                }
                Ok(Event::Done(done)) => return Ok(self.hand_back(*done)),
                Ok(progress) => return Ok(progress),
                Err(RecvTimeoutError::Disconnected) => {
                    // Every thread has ended: what is held goes, in order
                    // (an index is missing only if a thread died).
                    let (_, done) = self
                        .held
                        .pop_first()
                        .ok_or(RecvTimeoutError::Disconnected)?;
                    return Ok(self.hand_back(done));
                }
                Err(timeout) => return Err(timeout),
            }
        }
    }

    fn hand_back(&mut self, done: Done<K>) -> Event<K> {
        self.next = done.index + 1;
        self.control.release();
        Event::Done(Box::new(done))
    }

    /// Stops the run: no further input is taken, and the captions in
    /// flight stop within an encoder layer. Every input already taken is
    /// still handed back (cancelled, or finished if it was done).
    pub fn cancel(&self) {
        self.control.stop();
        self.cancel.cancel();
    }

    /// A token that cancels the run from another thread, as
    /// [`cancel`](Self::cancel) does.
    #[must_use]
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Stops the run (as dropping it does) and hands back its sessions,
    /// to start another run on them ([`Batch::with_open_sessions`]) with
    /// what their KV caches hold.
    #[must_use]
    pub fn into_sessions(mut self) -> Vec<Session> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Vec<Session> {
        self.cancel();
        for prep in self.preps.drain(..) {
            let _ = prep.join();
        }
        self.sessions
            .drain(..)
            .filter_map(|session| session.join().ok().flatten())
            .collect()
    }
}

impl<K> Iterator for Run<K> {
    type Item = Done<K>;

    /// The next finished input, skipping progress events.
    fn next(&mut self) -> Option<Done<K>> {
        loop {
            match self.next_event()? {
                Event::Done(done) => return Some(*done),
                Event::Encoding { .. } | Event::Idle { .. } => {}
            }
        }
    }
}

impl<K> Drop for Run<K> {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
