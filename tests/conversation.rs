//! Conversations and several images per prompt: follow-ups evaluate only
//! their own turn, and every answer equals a fresh session's given the whole
//! prompt at once.

use std::path::PathBuf;

use smolvlm::{CaptionError, Conversation, Error, ImageInput, Message, Prompt};
use smolvlm_testkit::images::{gradient, noise};

use crate::util::{greedy, model};

/// A fresh session's answer to the conversation as it stands.
fn fresh_reply(chat: &Conversation) -> smolvlm::Caption {
    let mut chat = chat.clone();
    model()
        .session()
        .unwrap()
        .reply(&mut chat, &greedy())
        .unwrap()
}

#[test]
fn a_follow_up_evaluates_only_its_turn_and_answers_as_a_fresh_session_does() {
    let mut session = model().session().unwrap();
    let mut chat = Conversation::new();
    chat.user([gradient(200, 150)], "Describe this image.");
    let asked = chat.clone();
    let first = session.reply(&mut chat, &greedy()).unwrap();
    assert_eq!((first.images, first.images_encoded), (1, 1));
    assert_eq!(first.cached_tokens, 0);
    assert_eq!(first.tokens, fresh_reply(&asked).tokens);
    // The answer became the assistant's turn.
    assert_eq!(chat.len(), 2);
    assert!(
        matches!(chat.messages()[1].parts(), [smolvlm::Part::Text(t)] if t == first.text.trim())
    );

    chat.user_text("What colour is it?");
    let asked = chat.clone();
    let second = session.reply(&mut chat, &greedy()).unwrap();
    assert_eq!((second.images, second.images_encoded), (1, 0));
    assert!(second.reused_image);
    assert_eq!(second.timings.encode, std::time::Duration::ZERO);
    // Everything before the new turn was in the KV cache: the first prompt
    // and the answer's tokens, less at most the few the rendering retokenizes.
    assert!(
        second.cached_tokens >= first.prompt_tokens,
        "{} cached of a first prompt of {}",
        second.cached_tokens,
        first.prompt_tokens
    );
    eprintln!(
        "follow-up: {} of {} prompt tokens cached; first prompt {}, answer {}",
        second.cached_tokens,
        second.prompt_tokens,
        first.prompt_tokens,
        first.tokens.len()
    );
    let fresh = fresh_reply(&asked);
    assert_eq!(fresh.cached_tokens, 0);
    assert_eq!(fresh.images_encoded, 1);
    assert_eq!(second.tokens, fresh.tokens);
    assert_eq!(second.prompt_tokens, fresh.prompt_tokens);

    // A new image in a later turn: only it is encoded.
    chat.user([noise(120, 90, 4)], "And this one?");
    let asked = chat.clone();
    let third = session.reply(&mut chat, &greedy()).unwrap();
    assert_eq!((third.images, third.images_encoded), (2, 1));
    assert_eq!(third.tokens, fresh_reply(&asked).tokens);
    assert_eq!(chat.images(), 2);
}

#[test]
fn a_session_between_turns_of_another_prompt_reuses_what_is_left() {
    let mut session = model().session().unwrap();
    let mut chat = Conversation::new();
    chat.user([gradient(160, 120)], "Describe this image.");
    session.reply(&mut chat, &greedy()).unwrap();
    // Something else in between replaces the cache...
    session
        .caption(&noise(64, 64, 1), "Describe this image.", &greedy())
        .unwrap();
    chat.user_text("Is it dark?");
    let asked = chat.clone();
    let again = session.reply(&mut chat, &greedy()).unwrap();
    // ...so the image is encoded again, and the answer is still the same.
    assert_eq!(again.images_encoded, 1);
    assert_eq!(again.tokens, fresh_reply(&asked).tokens);
    // forget() drops the cache on purpose.
    chat.user_text("Sure?");
    session.forget();
    let after = session.reply(&mut chat, &greedy()).unwrap();
    assert_eq!((after.images_encoded, after.cached_tokens), (1, 0));
}

#[test]
fn conversation_turns_take_images_anywhere_and_systems_and_examples() {
    let mut chat = Conversation::new();
    chat.system("Answer in one word.");
    chat.push(
        Message::user()
            .text("Left:")
            .image(gradient(96, 64))
            .text("Right:")
            .image(noise(64, 96, 2))
            .text("Which is noisier?"),
    );
    let mut session = model().session().unwrap();
    let answer = session.reply(&mut chat, &greedy()).unwrap();
    assert_eq!((answer.images, answer.images_encoded), (2, 2));
    let one = model()
        .session()
        .unwrap()
        .tokenize(&gradient(96, 64), "x")
        .unwrap();
    let other = model()
        .session()
        .unwrap()
        .tokenize(&noise(64, 96, 2), "x")
        .unwrap();
    assert_eq!(answer.image_tokens, one.image_tokens + other.image_tokens);
    assert_eq!(answer.tiles, one.tiles + other.tiles);
    // Popping the answer and asking again gives the same answer, from the
    // cache.
    chat.pop();
    let again = session.reply(&mut chat, &greedy()).unwrap();
    assert_eq!(again.tokens, answer.tokens);
    assert_eq!(again.images_encoded, 0);
}

#[test]
fn a_conversation_must_end_with_a_turn_to_answer() {
    let mut session = model().session().unwrap();
    let mut empty = Conversation::new();
    let err = session.reply(&mut empty, &greedy()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                name: "conversation",
                ..
            }
        ),
        "{err}"
    );
    let mut answered = Conversation::new();
    answered.user_text("Hi").assistant("Hello.");
    let err = session.reply(&mut answered, &greedy()).unwrap_err();
    assert_eq!(err.kind(), "invalid_option");
    assert_eq!(
        answered.len(),
        2,
        "a failed reply leaves the conversation as it was"
    );
    // A bad image fails the reply, typed, and leaves the conversation as it was.
    let mut bad = Conversation::new();
    bad.user(
        [PathBuf::from("/nonexistent/smolvlm.png")],
        "Describe this image.",
    );
    let err = session.reply(&mut bad, &greedy()).unwrap_err();
    assert_eq!(err.kind(), "image_read");
    assert_eq!(bad.len(), 1);
}

#[test]
fn several_images_in_one_prompt_are_each_encoded_once_in_order() {
    let (a, b, c) = (gradient(200, 150), noise(120, 90, 4), noise(90, 120, 9));
    let mut session = model().session().unwrap();
    let ab = session
        .ask(&[(&a).into(), (&b).into()], "Compare them.", &greedy())
        .unwrap();
    assert_eq!((ab.images, ab.images_encoded), (2, 2));
    // The same first image, another second one: only the second is encoded.
    let ac = session
        .ask(&[(&a).into(), (&c).into()], "Compare them.", &greedy())
        .unwrap();
    assert_eq!(ac.images_encoded, 1);
    let fresh = model()
        .session()
        .unwrap()
        .ask(&[(&a).into(), (&c).into()], "Compare them.", &greedy())
        .unwrap();
    assert_eq!(ac.tokens, fresh.tokens);
    // A raw prompt needs one marker per image.
    let raw = Prompt::raw("<|im_start|>User: <__media__>Compare.<end_of_utterance>\nAssistant:");
    let err = session
        .ask(&[(&a).into(), (&b).into()], raw, &greedy())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Caption(CaptionError::Marker {
                found: 1,
                expected: 2,
                ..
            })
        ),
        "{err}"
    );
    // No image at all is a text-only prompt.
    let none: [ImageInput<'_>; 0] = [];
    let text = session.ask(&none, "Say hi.", &greedy()).unwrap();
    assert_eq!((text.images, text.image_tokens, text.tiles), (0, 0, 0));
}

/// An image read again (the session no longer holds it) must be the image
/// the conversation was about: a file overwritten in between is refused.
#[test]
fn a_follow_up_refuses_an_image_whose_file_changed_since_the_first_turn() {
    let dir = crate::util::TempDir::new("conversation-changed");
    let path = dir.0.join("photo.png");
    smolvlm_testkit::images::write_png(&gradient(200, 150), &path).unwrap();
    let mut chat = Conversation::new();
    chat.user([path.clone()], "Describe this image.");
    let mut session = model().session().unwrap();
    session.reply(&mut chat, &greedy()).unwrap();
    chat.user_text("What colour is it?");

    // The same file, unchanged: a new session reads it again and answers.
    let mut unchanged = chat.clone();
    let again = model()
        .session()
        .unwrap()
        .reply(&mut unchanged, &greedy())
        .unwrap();
    assert_eq!(again.images_encoded, 1);

    // Overwritten with another picture: refused, the conversation kept.
    smolvlm_testkit::images::write_png(&noise(200, 150, 6), &path).unwrap();
    let turns = chat.len();
    let err = model()
        .session()
        .unwrap()
        .reply(&mut chat, &greedy())
        .unwrap_err();
    assert_eq!(err.kind(), "image_changed", "{err}");
    assert!(err.to_string().contains("photo.png"), "{err}");
    assert_eq!(chat.len(), turns);
    // The session that still holds the image answers without reading it.
    let held = session.reply(&mut chat, &greedy()).unwrap();
    assert_eq!((held.images, held.images_encoded), (1, 0));
}

/// A worker answers a clone of the app's conversation; what it learns of the
/// images (their keys) reaches the app's copy, so follow-ups neither read
/// nor prepare the images again.
#[test]
fn a_workers_replies_teach_the_apps_conversation_its_images() {
    let dir = crate::util::TempDir::new("conversation-worker");
    let path = dir.0.join("photo.png");
    smolvlm_testkit::images::write_png(&gradient(200, 150), &path).unwrap();
    let worker = smolvlm::Worker::new(model(), 1, 4).unwrap();
    let mut chat = Conversation::new();
    chat.user([path.clone()], "Describe this image.");
    let ask = |chat: &Conversation| {
        worker
            .submit(smolvlm::Request::reply(chat.clone()).with_options(greedy()))
            .unwrap()
            .wait()
    };
    let first = ask(&chat).unwrap();
    chat.assistant(first.text.trim());
    chat.user_text("What colour is it?");
    // The file is gone: a follow-up that read it again would fail.
    std::fs::remove_file(&path).unwrap();
    let second = ask(&chat).unwrap();
    assert_eq!((second.images, second.images_encoded), (1, 0));
}
