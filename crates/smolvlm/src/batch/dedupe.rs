//! Identical images in one run: the first is captioned, the others get
//! copies of its answers.

use std::collections::{HashMap, VecDeque};

use super::work::Work;
use super::Answer;
use crate::session::{Caption, ImageKey, Timings};

/// What becomes of an image offered to the table.
pub(super) enum Admit<K> {
    /// Caption it (the prompts it still has to ask).
    Caption(Work<K>),
    /// Every prompt it asks is answered by copies: it is finished.
    Finished(Work<K>),
    /// An identical image is being captioned: it waits for that one.
    Parked,
}

/// The answers of the last `capacity` distinct images, by their key.
pub(super) struct Table<K> {
    entries: HashMap<ImageKey, Entry<K>>,
    /// Keys, oldest first, for eviction.
    order: VecDeque<ImageKey>,
    capacity: usize,
}

struct Entry<K> {
    /// The key of the first input with these pixels.
    original: K,
    /// Its answers that succeeded, by prompt.
    answers: HashMap<usize, Caption>,
    /// An input with these pixels is on a session now.
    busy: bool,
    /// Inputs with these pixels waiting for it.
    parked: Vec<Work<K>>,
}

impl<K: Clone> Table<K> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Decides what becomes of `work`, an image with these pixels.
    pub(super) fn admit(&mut self, key: ImageKey, mut work: Work<K>) -> Admit<K> {
        if self.capacity == 0 {
            return Admit::Caption(work);
        }
        let Some(entry) = self.entries.get_mut(&key) else {
            self.entries.insert(
                key,
                Entry {
                    original: work.key.clone(),
                    answers: HashMap::new(),
                    busy: true,
                    parked: Vec::new(),
                },
            );
            self.order.push_back(key);
            self.evict();
            work.lead = true;
            return Admit::Caption(work);
        };
        if entry.busy {
            entry.parked.push(work);
            return Admit::Parked;
        }
        copy_answers(entry, &mut work);
        if work.to_ask().is_empty() {
            Admit::Finished(work)
        } else {
            entry.busy = true;
            work.lead = true;
            Admit::Caption(work)
        }
    }

    /// Records the answers of the image captioned for `key`, and hands back
    /// the inputs that waited for it, their copies filled in: the session
    /// that holds the image asks them what is left.
    pub(super) fn finish(&mut self, key: ImageKey, answers: &[Answer]) -> Vec<Work<K>> {
        let Some(entry) = self.entries.get_mut(&key) else {
            return Vec::new();
        };
        learn(entry, answers);
        entry.busy = false;
        let mut parked = std::mem::take(&mut entry.parked);
        for work in &mut parked {
            copy_answers(entry, work);
        }
        parked
    }

    /// Records answers a waiting input got from the session (prompts the
    /// first one did not answer).
    pub(super) fn learn(&mut self, key: ImageKey, answers: &[Answer]) {
        if let Some(entry) = self.entries.get_mut(&key) {
            learn(entry, answers);
        }
    }

    /// Forgets the oldest entries beyond capacity that nothing waits on.
    fn evict(&mut self) {
        let mut kept = VecDeque::new();
        while self.entries.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            match self.entries.get(&oldest) {
                Some(entry) if entry.busy || !entry.parked.is_empty() => kept.push_back(oldest),
                _ => {
                    self.entries.remove(&oldest);
                }
            }
        }
        while let Some(key) = kept.pop_back() {
            self.order.push_front(key);
        }
    }
}

fn learn<K>(entry: &mut Entry<K>, answers: &[Answer]) {
    for answer in answers.iter().filter(|a| !a.copied) {
        if let Ok(caption) = &answer.result {
            entry
                .answers
                .entry(answer.prompt)
                .or_insert_with(|| caption.clone());
        }
    }
}

/// Fills `work`'s answers with copies of the entry's, for the prompts it
/// asks that the entry has answered.
fn copy_answers<K: Clone>(entry: &Entry<K>, work: &mut Work<K>) {
    for prompt in work.to_ask() {
        if let Some(caption) = entry.answers.get(&prompt) {
            work.answers.push(Answer {
                prompt,
                result: Ok(copy_of(caption)),
                copied: true,
            });
        }
    }
    work.duplicate_of = Some(entry.original.clone());
}

/// A caption as a copy: the same text and tokens, nothing encoded or timed.
fn copy_of(caption: &Caption) -> Caption {
    let mut copy = caption.clone();
    copy.timings = Timings::default();
    copy.reused_image = copy.images > 0;
    copy.images_encoded = 0;
    copy.frames_encoded = 0;
    copy.cached_tokens = copy.prompt_tokens;
    copy
}
