//! One model shared by several threads, each with its own session.

use smolvlm_testkit::images::{gradient, noise};

use crate::util::{greedy, model};

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

#[test]
fn model_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<smolvlm::Model>();
}
