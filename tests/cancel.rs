//! Stopping inside the engine: a cancel or a deadline taken from the vision
//! encoder's layer callback stops the encode at that layer, leaves the KV
//! cache as the ledger says, and the session's next caption equals a fresh
//! session's. And progress within an image: every encode, every layer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use smolvlm::{
    CancelToken, CaptionError, EncodeProgress, Error, Event, JobImage, Progress, Request, Stage,
    Worker,
};
use smolvlm_testkit::images::{gradient, noise};

use crate::util::{assert_captions_like_a_fresh_session, greedy, model};

const PROMPT: &str = "Describe this image.";

/// The tiny mmproj's encoder layers (`clip.vision.block_count`).
const LAYERS: usize = 2;

/// Where to stop: this layer of this encode of the (only) image.
const STOP_ENCODE: usize = 5;
const STOP_LAYER: usize = 1;

fn at(progress: &EncodeProgress) -> (usize, usize) {
    (progress.encode, progress.layer)
}

fn assert_cancelled_in_the_encoder(err: &Error) {
    assert!(
        matches!(
            err,
            Error::Caption(CaptionError::Cancelled {
                stage: Stage::Encode
            })
        ),
        "{err:?}"
    );
}

#[test]
fn every_encode_of_an_image_reports_each_layer_in_order() {
    let mut session = model().session().unwrap();
    let img = gradient(640, 480);
    let mut seen = Vec::new();
    let caption = session
        .caption_observed(&img, PROMPT, &greedy(), |p| {
            if let Progress::Encoding(e) = p {
                seen.push(e);
            }
        })
        .unwrap();
    // 12 tiles and the overview, each announced and then layer by layer.
    let encodes = caption.tiles + 1;
    assert_eq!(encodes, 13);
    let expected: Vec<(usize, usize)> = (1..=encodes)
        .flat_map(|encode| (0..=LAYERS).map(move |layer| (encode, layer)))
        .collect();
    assert_eq!(seen.iter().map(at).collect::<Vec<_>>(), expected);
    assert!(seen
        .iter()
        .all(|e| (e.image, e.images, e.encodes, e.layers) == (1, 1, encodes, LAYERS)));
    let fractions: Vec<f32> = seen.iter().map(EncodeProgress::image_fraction).collect();
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    assert_eq!(fractions.last().copied(), Some(1.0));

    // The same image again is in the cache: nothing is encoded, nothing told.
    seen.clear();
    let again = session
        .caption_observed(&img, PROMPT, &greedy(), |p| {
            if let Progress::Encoding(e) = p {
                seen.push(e);
            }
        })
        .unwrap();
    assert_eq!((again.images_encoded, seen.len()), (0, 0));
    assert_eq!(again.tokens, caption.tokens);
}

/// Captions `img` and stops from the progress callback at
/// [`STOP_ENCODE`]/[`STOP_LAYER`] with `stop`; returns the error and the
/// encoder positions seen.
fn stop_inside_the_encode(
    session: &mut smolvlm::Session,
    img: &image::RgbImage,
    options: &smolvlm::GenerationOptions,
    stop: impl Fn(),
) -> (Error, Vec<(usize, usize)>) {
    let mut seen = Vec::new();
    let err = session
        .caption_observed(img, PROMPT, options, |p| {
            if let Progress::Encoding(e) = p {
                seen.push(at(&e));
                if at(&e) == (STOP_ENCODE, STOP_LAYER) {
                    stop();
                }
            }
        })
        .unwrap_err();
    (err, seen)
}

#[test]
fn a_cancel_from_inside_an_encode_stops_at_that_layer() {
    let mut session = model().session().unwrap();
    let img = gradient(640, 480);
    let token = CancelToken::new();
    let options = greedy().with_cancel(token.clone());
    let (err, seen) = stop_inside_the_encode(&mut session, &img, &options, || token.cancel());
    assert_cancelled_in_the_encoder(&err);
    // The encode stopped where it was cancelled: not its last layer, and
    // no later encode began.
    assert_eq!(seen.last(), Some(&(STOP_ENCODE, STOP_LAYER)));
    assert!(!seen.contains(&(STOP_ENCODE, LAYERS)));
    assert!(seen.iter().all(|&(encode, _)| encode <= STOP_ENCODE));

    // Nothing of the stopped image is reused; the next captions equal a
    // fresh session's, for this image and another.
    let next = session.caption(&img, PROMPT, &greedy()).unwrap();
    assert_eq!(next.images_encoded, 1);
    assert_captions_like_a_fresh_session(&mut session, &img);
    assert_captions_like_a_fresh_session(&mut session, &noise(300, 900, 4));
}

#[test]
fn a_deadline_passing_inside_an_encode_stops_at_that_layer() {
    let mut session = model().session().unwrap();
    let img = noise(640, 480, 9);
    // The tiny model's whole caption takes milliseconds: the deadline
    // passes only because the callback sleeps past it.
    let deadline = Duration::from_secs(2);
    let options = greedy().with_deadline(deadline);
    let (err, seen) = stop_inside_the_encode(&mut session, &img, &options, || {
        std::thread::sleep(deadline + Duration::from_millis(500));
    });
    match err {
        Error::Caption(CaptionError::DeadlineExceeded {
            deadline: d,
            stage: Stage::Encode,
        }) => assert_eq!(d, deadline),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.last(), Some(&(STOP_ENCODE, STOP_LAYER)));
    assert_captions_like_a_fresh_session(&mut session, &img);
}

#[test]
fn a_stop_in_the_second_image_keeps_the_first_for_the_next_call() {
    let mut session = model().session().unwrap();
    let images = [gradient(640, 480), noise(300, 900, 3)];
    let inputs: Vec<smolvlm::ImageInput<'_>> = images.iter().map(Into::into).collect();
    let token = CancelToken::new();
    let options = greedy().with_cancel(token.clone());
    let err = session
        .ask_observed(&inputs, "What changed?", &options, |p| {
            if let Progress::Encoding(e) = p {
                if e.image == 2 && e.encode == 2 && e.layer == 1 {
                    token.cancel();
                }
            }
        })
        .unwrap_err();
    assert_eq!(err.kind(), "cancelled", "{err}");
    // The first image was evaluated in full and stays; only the second is
    // encoded again, and the answer is a fresh session's.
    let answer = session.ask(&inputs, "What changed?", &greedy()).unwrap();
    assert_eq!((answer.images, answer.images_encoded), (2, 1));
    let fresh = model()
        .session()
        .unwrap()
        .ask(&inputs, "What changed?", &greedy())
        .unwrap();
    assert_eq!(answer.tokens, fresh.tokens);
}

#[test]
fn a_panic_in_the_progress_callback_reaches_the_caller_and_spares_the_session() {
    let mut session = model().session().unwrap();
    let img = gradient(640, 480);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        session.caption_observed(&img, PROMPT, &greedy(), |p| {
            if let Progress::Encoding(e) = p {
                if at(&e) == (3, 1) {
                    panic!("the observer broke");
                }
            }
        })
    }));
    let panic = outcome.expect_err("the panic is the caller's again");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"the observer broke"));
    assert_captions_like_a_fresh_session(&mut session, &img);
}

#[test]
fn a_worker_job_reports_encoding_and_a_cancel_stops_its_encode() {
    let worker = Worker::new(model(), 1, 4).unwrap();
    // The worker notifies after each event, on its session's thread, before
    // the encoder goes on: cancelling from the notification that follows
    // the event for (STOP_ENCODE, STOP_LAYER) is deterministic. Events
    // before it: Queued, Started, Tokenized, then (encode, 0..=LAYERS).
    let nth = 3 + (STOP_ENCODE - 1) * (LAYERS + 1) + STOP_LAYER + 1;
    let token = CancelToken::new();
    let remote = token.clone();
    let calls = Arc::new(Mutex::new(0usize));
    let counted = Arc::clone(&calls);
    let request = Request::new(JobImage::Rgb(gradient(640, 480)), PROMPT)
        .with_options(greedy().with_cancel(token))
        .with_notify(move || {
            let mut calls = counted.lock().unwrap();
            *calls += 1;
            if *calls == nth {
                remote.cancel();
            }
        });
    let mut job = worker.submit(request).unwrap();
    let mut seen = Vec::new();
    let mut failed = None;
    for event in job.events() {
        match event {
            Event::Encoding(e) => seen.push(at(&e)),
            Event::Failed(e) => failed = Some(e),
            Event::Finished(_) => panic!("the cancel did not stop the encode"),
            _ => {}
        }
    }
    let err = failed.expect("a failed event");
    assert_cancelled_in_the_encoder(&err);
    assert_eq!(seen.first(), Some(&(1, 0)));
    assert_eq!(seen.last(), Some(&(STOP_ENCODE, STOP_LAYER)), "{seen:?}");
}
