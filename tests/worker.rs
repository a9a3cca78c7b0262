//! The non-blocking worker: events in order, the UI-style use (many jobs
//! from one thread, some cancelled), a full queue, a Future polled without
//! a runtime, and dropping jobs and the worker.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use image::RgbImage;
use smolvlm::{CaptionError, Error, Event, Job, Request, Stage, SubmitError, Worker};
use smolvlm_testkit::images::{checkerboard, gradient, noise};

use crate::util::{greedy, model};

fn pictures() -> Vec<RgbImage> {
    vec![gradient(96, 64), noise(70, 50, 3), checkerboard(120, 90, 7)]
}

/// What a plain session says for each picture.
fn plain_texts(pictures: &[RgbImage]) -> Vec<String> {
    let mut session = model().session().unwrap();
    pictures
        .iter()
        .map(|p| {
            session
                .caption(p, "Describe this image.", &greedy())
                .unwrap()
                .text
        })
        .collect()
}

fn request(picture: &RgbImage) -> Request {
    Request::new(picture.clone(), "Describe this image.").with_options(greedy())
}

fn is_cancelled(error: &Error) -> bool {
    matches!(error, Error::Caption(CaptionError::Cancelled { .. }))
}

#[test]
fn a_job_tells_its_events_in_order_and_its_text_pieces_make_the_caption() {
    let pictures = pictures();
    let expected = plain_texts(&pictures);
    let worker = Worker::new(model(), 1, 4).unwrap();
    let mut job = worker.submit(request(&pictures[0])).unwrap();
    let events: Vec<Event> = job.events().collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::Queued { .. } => "queued",
            Event::Started { .. } => "started",
            Event::Tokenized { .. } => "tokenized",
            Event::Encoding(_) => "encoding",
            Event::Prefilled { .. } => "prefilled",
            Event::Text(_) => "text",
            Event::Finished(_) => "finished",
            Event::Failed(_) => "failed",
            _ => "other",
        })
        .collect();
    let mut collapsed = names.clone();
    collapsed.dedup();
    assert_eq!(
        collapsed,
        [
            "queued",
            "started",
            "tokenized",
            "encoding",
            "prefilled",
            "text",
            "finished"
        ],
        "{names:?}"
    );
    let streamed: String = events
        .iter()
        .filter_map(|e| match e {
            Event::Text(piece) => Some(piece.as_str()),
            _ => None,
        })
        .collect();
    let Some(Event::Finished(caption)) = events.last() else {
        panic!("no caption: {events:?}")
    };
    assert_eq!(caption.text, expected[0]);
    assert_eq!(streamed, caption.text);
    let Some(Event::Tokenized {
        tiles,
        image_tokens,
        ..
    }) = events.iter().find(|e| matches!(e, Event::Tokenized { .. }))
    else {
        unreachable!()
    };
    assert_eq!(
        (*tiles, *image_tokens),
        (caption.tiles, caption.image_tokens)
    );
    assert!(job.next_event().is_none(), "events after the final one");
    assert!(job.try_event().is_none());
}

/// The UI-style use: 20 jobs submitted from one thread to 2 sessions, 5 of
/// them cancelled at random moments (queued, at an event, mid-text); every
/// other job finishes with the text a plain session gives.
#[test]
fn twenty_jobs_with_five_cancelled_at_random_moments_and_the_rest_match_a_plain_session() {
    let pictures = pictures();
    let expected = plain_texts(&pictures);
    let worker = Worker::new(model(), 2, 32).unwrap();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut chosen = Vec::new();
    while chosen.len() < 5 {
        let i = next(20);
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    let mut jobs: Vec<(usize, Job, Option<usize>)> = (0..20)
        .map(|i| {
            let job = worker.submit(request(&pictures[i % 3])).unwrap();
            // Cancel after this many events (0: at once, while queued).
            let at = chosen.contains(&i).then(|| next(8));
            (i, job, at)
        })
        .collect();
    let (mut finished, mut cancelled, mut late) = (0, 0, 0);
    for (i, job, at) in &mut jobs {
        let mut seen = 0;
        if *at == Some(0) {
            job.cancel();
        }
        let outcome = loop {
            match job.next_event().unwrap() {
                Event::Finished(caption) => break Ok(caption),
                Event::Failed(error) => break Err(error),
                _ => {
                    seen += 1;
                    if *at == Some(seen) {
                        job.cancel();
                    }
                }
            }
        };
        match (outcome, at) {
            (Ok(caption), at) => {
                // A cancel may come too late; the text is still right.
                assert_eq!(caption.text, expected[*i % 3], "job {i}");
                if at.is_some() {
                    late += 1;
                } else {
                    finished += 1;
                }
            }
            (Err(error), Some(_)) if is_cancelled(&error) => cancelled += 1,
            (Err(error), _) => panic!("job {i} failed: {error}"),
        }
    }
    // Every job not chosen finishes; each chosen one either stops as
    // cancelled or, cancelled too late, finishes with the right text.
    assert_eq!(finished, 15, "jobs never cancelled that finished");
    assert_eq!(cancelled + late, 5);
    assert!(cancelled >= 1, "no cancel took effect");
    eprintln!("worker: 20 jobs, {finished} + {late} finished, {cancelled} cancelled");
}

#[test]
fn a_full_queue_says_so_and_gives_the_request_back() {
    let picture = gradient(64, 48);
    let worker = Worker::new(model(), 1, 1).unwrap();
    // The first job holds the only session until released (its notify blocks).
    let (release, hold) = mpsc::channel::<()>();
    let hold = Arc::new(Mutex::new(hold));
    let held = Arc::clone(&hold);
    let started = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&started);
    let blocking = request(&picture).with_notify(move || {
        if seen.fetch_add(1, Ordering::SeqCst) == 1 {
            // The second notify is `Started`: on the worker thread.
            let _ = held.lock().unwrap().recv();
        }
    });
    let first = worker.submit(blocking).unwrap();
    while started.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let second = worker.submit(request(&picture)).unwrap();
    assert_eq!(worker.waiting(), 1);
    match worker.submit(request(&picture)) {
        Err(SubmitError::QueueFull { capacity, request }) => {
            assert_eq!(capacity, 1);
            assert!(format!("{request:?}").contains("Describe this image."));
        }
        other => panic!("expected a full queue, got {other:?}"),
    }
    release.send(()).unwrap();
    let (a, b) = (first.wait().unwrap(), second.wait().unwrap());
    assert_eq!(a.text, b.text);
}

/// Wakes by unparking the polling thread: the smallest executor.
struct Unpark(std::thread::Thread, AtomicUsize);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.unpark();
    }
}

#[test]
fn a_job_is_a_future_that_the_worker_wakes() {
    let pictures = pictures();
    let expected = plain_texts(&pictures);
    let worker = Worker::new(model(), 1, 4).unwrap();
    let mut job = worker.submit(request(&pictures[1])).unwrap();
    // The executor parks with no timeout: a lost wake-up hangs it, and the
    // test, waiting on it with one, fails.
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let unpark = Arc::new(Unpark(std::thread::current(), AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&unpark));
        let mut cx = Context::from_waker(&waker);
        let mut pending = 0;
        let caption = loop {
            match std::pin::Pin::new(&mut job).poll(&mut cx) {
                Poll::Ready(result) => break result.unwrap(),
                Poll::Pending => {
                    pending += 1;
                    std::thread::park();
                }
            }
        };
        let _ = done.send((caption, pending, unpark.1.load(Ordering::SeqCst)));
    });
    let (caption, pending, wakes) = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("the future was never woken to finish");
    assert_eq!(caption.text, expected[1]);
    assert!(pending >= 1, "the job was done before its first poll");
    assert!(wakes >= 1, "never woken");
    drop(worker);
}

#[test]
fn a_notify_callback_that_panics_stops_neither_its_job_nor_the_worker() {
    let pictures = pictures();
    let expected = plain_texts(&pictures);
    let worker = Worker::new(model(), 1, 4).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let panicking = request(&pictures[0]).with_notify(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        panic!("the app's notify is broken");
    });
    let first = worker.submit(panicking).unwrap();
    let second = worker.submit(request(&pictures[2])).unwrap();
    // Waited for on other threads: before the fix the session died and
    // both waits hung.
    let wait = |job: Job| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(job.wait());
        });
        rx.recv_timeout(Duration::from_secs(120))
            .expect("the job never ended")
    };
    assert_eq!(wait(first).unwrap().text, expected[0]);
    assert_eq!(wait(second).unwrap().text, expected[2]);
    assert!(calls.load(Ordering::SeqCst) >= 4, "every event notified");
    assert_eq!(
        worker
            .submit(request(&pictures[1]))
            .unwrap()
            .wait()
            .unwrap()
            .text,
        expected[1]
    );
}

#[test]
fn dropping_a_queued_job_or_the_worker_cancels_what_has_not_run() {
    let picture = gradient(64, 48);
    let worker = Worker::new(model(), 1, 8).unwrap();
    let (release, hold) = mpsc::channel::<()>();
    let hold = Arc::new(Mutex::new(hold));
    let held = Arc::clone(&hold);
    let notified = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&notified);
    let first = worker
        .submit(request(&picture).with_notify(move || {
            if seen.fetch_add(1, Ordering::SeqCst) == 1 {
                let _ = held.lock().unwrap().recv();
            }
        }))
        .unwrap();
    while notified.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Dropped while queued: it never starts.
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    drop(
        worker
            .submit(request(&picture).with_notify(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap(),
    );
    let queued = worker.submit(request(&picture)).unwrap();
    // Dropping the worker cancels the running job and fails the queued one.
    let dropper = std::thread::spawn(move || drop(worker));
    std::thread::sleep(Duration::from_millis(50));
    release.send(()).unwrap();
    dropper.join().unwrap();
    // It was running (held in its notify) when the worker was dropped: the
    // drop cancelled it, so it cannot finish.
    match first.wait() {
        Err(error) if is_cancelled(&error) => {}
        other => panic!("the running job: {other:?}"),
    }
    match queued.wait() {
        Err(Error::Caption(CaptionError::Cancelled {
            stage: Stage::Queued,
        })) => {}
        other => panic!("the queued job: {other:?}"),
    }
    // Queued, then failed as cancelled without starting: two events.
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn zero_sessions_or_capacity_are_invalid() {
    assert!(matches!(
        Worker::new(model(), 0, 1),
        Err(Error::InvalidOption { .. })
    ));
    assert!(matches!(
        Worker::new(model(), 1, 0),
        Err(Error::InvalidOption { .. })
    ));
}

/// A desktop app's follow-up: the app keeps the conversation, submits it,
/// and appends each answer; with one session the image is not encoded again.
#[test]
fn a_conversation_request_answers_follow_ups_without_encoding_again() {
    let worker = Worker::new(model(), 1, 4).unwrap();
    let mut chat = smolvlm::Conversation::new();
    chat.user([gradient(96, 64)], "Describe this image.");
    let mut expected_chat = chat.clone();
    let mut plain = model().session().unwrap();
    for follow_up in ["What colour is it?", "Is it a photo?"] {
        let caption = worker
            .submit(Request::reply(chat.clone()).with_options(greedy()))
            .unwrap()
            .wait()
            .unwrap();
        let expected = plain.reply(&mut expected_chat, &greedy()).unwrap();
        assert_eq!(caption.tokens, expected.tokens);
        assert_eq!(caption.images_encoded, expected.images_encoded);
        chat.assistant(caption.text.trim());
        chat.user_text(follow_up);
        expected_chat.user_text(follow_up);
    }
    let last = worker
        .submit(Request::reply(chat.clone()).with_options(greedy()))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!((last.images, last.images_encoded), (1, 0));
    // A conversation with nothing to answer fails as the session would.
    chat.assistant("Done.");
    let err = worker
        .submit(Request::reply(chat).with_options(greedy()))
        .unwrap()
        .wait()
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_option");
}
