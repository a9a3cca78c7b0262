//! One model shared by several threads, each with its own session.

use smolvlm_testkit::images::{gradient, noise};

use std::sync::Barrier;

use smolvlm::LoadOptions;

use crate::util::{greedy, load, model};

#[test]
fn four_threads_with_own_sessions_match_the_single_threaded_outputs() {
    let images = [
        gradient(640, 480),
        noise(300, 900, 2),
        gradient(64, 64),
        noise(500, 500, 4),
        noise(90, 60, 8),
    ];
    let mut session = model().session().unwrap();
    let expected: Vec<Vec<i32>> = images
        .iter()
        .map(|img| {
            session
                .caption(img, "Describe this image.", &greedy())
                .unwrap()
                .tokens
        })
        .collect();
    drop(session);

    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let (images, expected) = (&images, &expected);
                // Each thread gets its own clone of the model handle.
                let model = model().clone();
                scope.spawn(move || {
                    let mut session = model.session().unwrap();
                    for i in 0..25 {
                        let k = (worker + i) % images.len();
                        let c = session
                            .caption(&images[k], "Describe this image.", &greedy())
                            .unwrap();
                        assert_eq!(c.tokens, expected[k], "thread {worker}, caption {i}");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    });
}

/// Each round of a worker: the image it captioned and the tokens, or the error.
type Rounds = Vec<(usize, Result<Vec<i32>, String>)>;

#[test]
fn two_threads_encoding_at_once_match_the_sequential_captions() {
    // One thread per session on a small machine; the model is borrowed, not cloned.
    let model = load(&LoadOptions::default().with_threads(1));
    let images = [gradient(640, 480), noise(300, 900, 6), noise(500, 500, 7)];
    let mut session = model.session().unwrap();
    let expected: Vec<Vec<i32>> = images
        .iter()
        .map(|img| {
            session
                .caption(img, "Describe this image.", &greedy())
                .unwrap()
                .tokens
        })
        .collect();
    drop(session);

    const ROUNDS: usize = 6;
    let start = Barrier::new(2);
    let results: Vec<Rounds> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                let (model, images, start) = (&model, &images, &start);
                scope.spawn(move || {
                    let mut session = model.session().map_err(|e| e.to_string());
                    // Both threads start each caption together, so their vision
                    // encodes overlap. Nothing panics before the last barrier:
                    // a panic would leave the other thread waiting forever.
                    (0..ROUNDS)
                        .map(|round| {
                            start.wait();
                            let k = (worker + round) % images.len();
                            let tokens = match &mut session {
                                Ok(session) => session
                                    .caption(&images[k], "Describe this image.", &greedy())
                                    .map(|c| c.tokens)
                                    .map_err(|e| e.to_string()),
                                Err(e) => Err(e.clone()),
                            };
                            (k, tokens)
                        })
                        .collect()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (worker, captions) in results.iter().enumerate() {
        assert_eq!(captions.len(), ROUNDS);
        for (round, (k, tokens)) in captions.iter().enumerate() {
            assert_eq!(
                tokens.as_ref(),
                Ok(&expected[*k]),
                "thread {worker}, round {round}"
            );
        }
    }
}

#[test]
fn model_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<smolvlm::Model>();
}
