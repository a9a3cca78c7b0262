//! The library's batch engine (`smolvlm::batch`): results equal a plain
//! session's, in either order; several prompts encode an image once;
//! identical images are encoded once; bad inputs are their own results;
//! select, cancel, the in-flight bound, progress and session reuse.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use image::RgbImage;
use sha2::{Digest, Sha256};
use smolvlm::batch::{Batch, Done, Event, Input, Order};
use smolvlm::{CaptionError, Error};
use smolvlm_testkit::images::{checkerboard, gradient, noise, write_png};

use crate::util::{greedy, model, TempDir};

const PROMPTS: [&str; 2] = ["Describe this image.", "What is in it?"];

fn pictures(n: u64) -> Vec<RgbImage> {
    (0..n).map(|i| noise(64 + 8 * i as u32, 48, i)).collect()
}

/// What a plain session answers for each picture and prompt.
fn plain(pictures: &[RgbImage], prompts: &[&str]) -> Vec<Vec<String>> {
    let mut session = model().session().unwrap();
    pictures
        .iter()
        .map(|p| {
            prompts
                .iter()
                .map(|q| session.caption(p, *q, &greedy()).unwrap().text)
                .collect()
        })
        .collect()
}

fn texts(done: &Done<usize>) -> Vec<String> {
    done.answers()
        .iter()
        .map(|a| a.result.as_ref().unwrap().text.clone())
        .collect()
}

fn encodes<K>(done: &[Done<K>]) -> usize {
    done.iter()
        .flat_map(|d| d.answers())
        .filter_map(|a| a.result.as_ref().ok())
        .map(|c| c.images_encoded)
        .sum()
}

fn batch<K: Clone + Send + 'static>() -> Batch<K> {
    Batch::new(model())
        .with_prompts(PROMPTS)
        .with_generation(greedy())
}

#[test]
fn ordered_and_unordered_runs_give_a_plain_sessions_answers_encoding_each_image_once() {
    let pictures = pictures(7);
    let expected = plain(&pictures, &PROMPTS);
    let inputs = || {
        pictures
            .clone()
            .into_iter()
            .enumerate()
            .map(|(i, p)| Input::image(i, p))
    };
    let ordered: Vec<Done<usize>> = batch()
        .with_sessions(2)
        .with_order(Order::Input)
        .run(inputs())
        .unwrap()
        .collect();
    assert_eq!(
        ordered.iter().map(|d| d.index).collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
    let unordered: Vec<Done<usize>> = batch()
        .with_sessions(2)
        .with_prep_threads(2)
        .run(inputs())
        .unwrap()
        .collect();
    for run in [&ordered, &unordered] {
        assert_eq!(run.len(), 7);
        let by_key: BTreeMap<usize, Vec<String>> = run.iter().map(|d| (d.key, texts(d))).collect();
        assert_eq!(by_key.into_values().collect::<Vec<_>>(), expected);
        for done in run {
            assert_eq!(done.asked, vec![0, 1]);
            let encoded: Vec<usize> = done
                .answers()
                .iter()
                .map(|a| a.result.as_ref().unwrap().images_encoded)
                .collect();
            // The second prompt finds the image in the session's cache.
            assert_eq!(encoded, vec![1, 0], "input {}", done.index);
            assert!(done.session.is_some() && done.duplicate_of.is_none());
        }
    }
}

/// 6 copies of one photo (as files, never neighbours) and 2 others.
fn folder_with_copies(dir: &TempDir) -> Vec<PathBuf> {
    let photo = gradient(90, 60);
    let others = [checkerboard(80, 60, 5), noise(70, 50, 9)];
    let mut paths = Vec::new();
    for i in 0..6 {
        let path = dir.path(&format!("copy-{i}.png"));
        write_png(&photo, &path).unwrap();
        paths.push(path);
    }
    for (i, other) in others.iter().enumerate() {
        let path = dir.path(&format!("other-{i}.png"));
        write_png(other, &path).unwrap();
        paths.push(path);
    }
    // copy-0, other-0, copy-1, copy-2 ... : walk orders in which copies
    // are and are not neighbours.
    vec![
        paths[0].clone(),
        paths[6].clone(),
        paths[1].clone(),
        paths[7].clone(),
        paths[2].clone(),
        paths[3].clone(),
        paths[4].clone(),
        paths[5].clone(),
    ]
}

#[test]
fn identical_images_are_encoded_once_in_any_order_and_say_whose_answers_they_copy() {
    let dir = TempDir::new("batch-api-copies");
    let paths = folder_with_copies(&dir);
    for (sessions, prep, order) in [
        (1, 1, Order::Completion),
        (2, 0, Order::Input),
        (2, 2, Order::Completion),
    ] {
        let mut walks = vec![paths.clone()];
        walks.push(paths.iter().rev().cloned().collect());
        for walk in walks {
            let done: Vec<Done<PathBuf>> = batch()
                .with_sessions(sessions)
                .with_prep_threads(prep)
                .with_order(order)
                .run(walk.into_iter().map(Input::path))
                .unwrap()
                .collect();
            assert_eq!(done.len(), 8);
            assert_eq!(
                encodes(&done),
                3,
                "{sessions} sessions, {prep} prep threads"
            );
            let copies: Vec<&Done<PathBuf>> =
                done.iter().filter(|d| d.duplicate_of.is_some()).collect();
            assert_eq!(copies.len(), 5);
            for copy in copies {
                let original = copy.duplicate_of.as_ref().unwrap();
                let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
                assert!(name(&copy.key).starts_with("copy-"), "{}", name(&copy.key));
                assert!(name(original).starts_with("copy-"));
                let first = done.iter().find(|d| &d.key == original).unwrap();
                assert!(first.duplicate_of.is_none());
                let text = |d: &Done<PathBuf>| {
                    d.answers()
                        .iter()
                        .map(|a| a.result.as_ref().unwrap().text.clone())
                        .collect::<Vec<_>>()
                };
                assert_eq!(text(copy), text(first));
            }
            // Copies say so, and cost nothing.
            let copied: Vec<_> = done
                .iter()
                .flat_map(|d| d.answers())
                .filter(|a| a.copied)
                .collect();
            assert!(copied
                .iter()
                .all(|a| a.result.as_ref().unwrap().timings.total == Duration::ZERO));
        }
    }
    // Off, a copy is encoded again unless it follows its original on the
    // same session (whose cache still holds it).
    let done: Vec<Done<PathBuf>> = batch()
        .with_dedupe(0)
        .run(paths.into_iter().map(Input::path))
        .unwrap()
        .collect();
    let neighbours = 3; // copy-3, -4 and -5 each follow a copy.
    assert_eq!(encodes(&done), 8 - neighbours);
    assert!(done.iter().all(|d| d.duplicate_of.is_none()));
}

#[test]
fn a_bad_input_is_its_own_result_and_the_rest_go_on() {
    let dir = TempDir::new("batch-api-bad");
    let good = dir.path("good.png");
    write_png(&gradient(64, 48), &good).unwrap();
    let inputs = vec![
        Input::image("missing", dir.path("missing.png")),
        Input::image("corrupt", b"not an image".to_vec()),
        Input::image("bad prompt", good.clone()).with_prompts(vec![0, 5]),
        Input::image("good", good),
    ];
    let done: BTreeMap<&str, Done<&str>> =
        batch().run(inputs).unwrap().map(|d| (d.key, d)).collect();
    let kind = |key: &str| done[key].outcome.as_ref().err().map(Error::kind);
    assert_eq!(kind("missing"), Some("image_read"));
    assert_eq!(kind("corrupt"), Some("image_format"));
    assert_eq!(kind("bad prompt"), Some("invalid_option"));
    assert_eq!(kind("good"), None);
    assert_eq!(done["good"].answers().len(), 2);
    assert_eq!(done["missing"].asked, vec![0, 1]);
}

#[test]
fn select_sees_the_files_hash_and_skips_or_narrows_the_prompts() {
    let dir = TempDir::new("batch-api-select");
    let mut paths = Vec::new();
    for (i, picture) in pictures(3).iter().enumerate() {
        let path = dir.path(&format!("{i}.png"));
        write_png(picture, &path).unwrap();
        paths.push(path);
    }
    let seen = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let record = Arc::clone(&seen);
    let done: BTreeMap<PathBuf, Done<PathBuf>> = batch()
        .with_select(move |path: &PathBuf, sha256| {
            record
                .lock()
                .unwrap()
                .insert(path.clone(), sha256.map(str::to_owned));
            match path.file_name().unwrap().to_str().unwrap() {
                "0.png" => vec![],
                "1.png" => vec![1],
                _ => vec![0, 1],
            }
        })
        .run(paths.clone().into_iter().map(Input::path))
        .unwrap()
        .map(|d| (d.key.clone(), d))
        .collect();
    for path in &paths {
        let sha = format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()));
        assert_eq!(seen.lock().unwrap()[path].as_deref(), Some(sha.as_str()));
        assert_eq!(done[path].sha256.as_deref(), Some(sha.as_str()));
    }
    assert!(done[&paths[0]].skipped() && done[&paths[0]].answers().is_empty());
    let narrowed = &done[&paths[1]];
    assert_eq!(narrowed.asked, vec![1]);
    assert_eq!(narrowed.answers().len(), 1);
    assert_eq!(narrowed.answers()[0].prompt, 1);
    assert_eq!(done[&paths[2]].answers().len(), 2);
}

#[test]
fn the_run_takes_no_more_inputs_than_its_bound_and_a_cancel_hands_back_every_one_taken() {
    let taken = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&taken);
    // An endless stream of images: only the bound keeps the run from
    // reading it all.
    let inputs = (0u64..).map(move |i| {
        counter.fetch_add(1, Ordering::SeqCst);
        Input::image(i as usize, noise(64, 48, i))
    });
    let mut run = batch().with_max_in_flight(4).run(inputs).unwrap();
    let mut handed = 0;
    for _ in 0..3 {
        let done = run.next().unwrap();
        assert!(done.outcome.is_ok());
        handed += 1;
        std::thread::sleep(Duration::from_millis(50));
        assert!(taken.load(Ordering::SeqCst) <= handed + 4);
    }
    run.cancel();
    let rest: Vec<Done<usize>> = run.by_ref().collect();
    let taken = taken.load(Ordering::SeqCst);
    assert_eq!(
        handed + rest.len(),
        taken,
        "every input taken is handed back"
    );
    assert!(rest.len() <= 4);
    // What was not finished when the cancel came says so.
    for done in &rest {
        for answer in done.answers() {
            if let Err(e) = &answer.result {
                assert!(
                    matches!(e, Error::Caption(CaptionError::Cancelled { .. })),
                    "{e}"
                );
            }
        }
    }
}

#[test]
fn a_deadline_applies_to_each_caption() {
    let done: Vec<Done<usize>> = Batch::new(model())
        .with_generation(greedy().with_deadline(Duration::from_nanos(1)))
        .run(
            pictures(2)
                .into_iter()
                .enumerate()
                .map(|(i, p)| Input::image(i, p)),
        )
        .unwrap()
        .collect();
    assert_eq!(done.len(), 2);
    for d in &done {
        let kinds: Vec<&str> = d
            .answers()
            .iter()
            .map(|a| a.result.as_ref().unwrap_err().kind())
            .collect();
        assert_eq!(kinds, vec!["deadline_exceeded"]);
    }
}

#[test]
fn progress_moves_within_each_image_and_sessions_can_serve_a_second_run() {
    let pictures = vec![gradient(96, 64), checkerboard(120, 90, 7)];
    let mut run = Batch::new(model())
        .with_generation(greedy())
        .with_order(Order::Input)
        .run(
            pictures
                .clone()
                .into_iter()
                .enumerate()
                .map(|(i, p)| Input::image(i, p)),
        )
        .unwrap();
    let mut fractions: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
    let (mut idle, mut done) = (0, 0);
    while let Some(event) = run.next_event() {
        match event {
            Event::Encoding {
                session,
                index,
                fraction,
            } => {
                assert_eq!(session, 0);
                fractions.entry(index).or_default().push(fraction);
            }
            Event::Idle { .. } => idle += 1,
            Event::Done(d) => {
                // An image's encode is reported before it is done.
                assert!(fractions.contains_key(&d.index));
                done += 1;
            }
            _ => {}
        }
    }
    assert_eq!((idle, done), (2, 2));
    for steps in fractions.values() {
        assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
        assert!(steps.last().is_some_and(|f| (*f - 1.0).abs() < 1e-6));
    }
    // The session kept: its cache still holds the last image.
    let sessions = run.into_sessions();
    assert_eq!(sessions.len(), 1);
    let again: Vec<Done<usize>> = Batch::new(model())
        .with_generation(greedy())
        .with_open_sessions(sessions)
        .run([Input::image(0, pictures[1].clone())])
        .unwrap()
        .collect();
    let caption = again[0].answers()[0].result.as_ref().unwrap();
    assert_eq!(caption.images_encoded, 0);
}

#[test]
fn a_batch_with_no_prompt_or_mismatched_video_prompts_is_refused() {
    let no_prompt = Batch::<usize>::new(model())
        .with_prompts(Vec::<String>::new())
        .run(Vec::new());
    assert_eq!(no_prompt.unwrap_err().kind(), "invalid_option");
    let mismatched = Batch::<usize>::new(model())
        .with_video_prompts(["a", "b"])
        .run(Vec::new());
    assert_eq!(mismatched.unwrap_err().kind(), "invalid_option");
}
