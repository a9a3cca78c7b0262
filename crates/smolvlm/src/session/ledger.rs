//! What a session's KV cache holds, entry by entry, so the next prompt
//! evaluates only from where it stops matching.

use sha2::{Digest, Sha256};
use smolvlm_engine::{Bitmap, Token};

/// The key of an image in the cache: a SHA-256 of its dimensions and of
/// the RGB pixels mtmd gets (so of every setting that shaped them), never
/// of a path or an address. Two images share a key only if their pixels
/// are equal, short of a SHA-256 collision.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ImageKey([u8; 32]);

impl std::fmt::Debug for ImageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…")
    }
}

impl ImageKey {
    pub(crate) fn of(bitmap: &Bitmap) -> Self {
        Self::of_pixels(bitmap.width(), bitmap.height(), bitmap.data())
    }

    /// The key of RGB pixels before they become a bitmap (a video frame):
    /// the same as the bitmap's.
    pub(crate) fn of_rgb(rgb: &image::RgbImage) -> Self {
        Self::of_pixels(rgb.width(), rgb.height(), rgb.as_raw())
    }

    fn of_pixels(width: u32, height: u32, rgb: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(width.to_le_bytes());
        hash.update(height.to_le_bytes());
        hash.update(rgb);
        Self(hash.finalize().into())
    }
}

/// One entry of what the KV cache holds: a text token, or a whole image
/// (its wrapper tokens and embeddings, as mtmd lays them out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    Token(Token),
    Image(ImageEntry),
}

impl Entry {
    fn positions(&self) -> u32 {
        match self {
            Self::Token(_) => 1,
            Self::Image(image) => image.positions,
        }
    }
}

/// An image's place in the KV cache and what it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageEntry {
    pub key: ImageKey,
    pub positions: u32,
    pub image_tokens: usize,
    pub tiles: usize,
}

/// A prompt tokenized: text tokens, images by index, and video frames by
/// video index and frame, in order.
#[derive(Debug)]
pub(crate) enum Item {
    Tokens(Vec<Token>),
    Image(usize),
    /// One frame of a video: one overview image, its text in the tokens
    /// around it.
    Frame {
        video: usize,
        frame: usize,
    },
}

/// Where a prompt stops matching what the KV cache holds: the item and the
/// offset in it, the ledger entries kept, and the position evaluation
/// starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Start {
    pub item: usize,
    pub offset: usize,
    pub entries: usize,
    pub pos: u32,
}

/// What the KV cache holds, in order. Only entries evaluated in full are
/// recorded, so the ledger never claims more than the cache has; the cache
/// may hold more (a stopped evaluation's part), which
/// [`Session`](crate::Session) removes.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    entries: Vec<Entry>,
    positions: u32,
}

impl Ledger {
    /// Positions the recorded entries take: where the next one goes.
    pub(crate) fn positions(&self) -> u32 {
        self.positions
    }

    pub(crate) fn push(&mut self, entry: Entry) {
        self.positions += entry.positions();
        self.entries.push(entry);
    }

    pub(crate) fn extend(&mut self, tokens: &[Token]) {
        self.entries.extend(tokens.iter().map(|&t| Entry::Token(t)));
        self.positions += u32::try_from(tokens.len()).unwrap_or(u32::MAX);
    }

    /// Keeps the first `entries` entries.
    pub(crate) fn truncate(&mut self, entries: usize) {
        for entry in self.entries.drain(entries.min(self.entries.len())..) {
            self.positions -= entry.positions();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.positions = 0;
    }

    /// How much of the prompt is held already, from the start: text token
    /// by token, images and frames whole by key (`key_of` gives an image or
    /// frame item's key, if known). At least the last entry is left to
    /// evaluate, for the logits the first token is sampled from. Returns the
    /// start and, for each image item found held, its entry (by item).
    pub(crate) fn matching(
        &self,
        items: &[Item],
        key_of: &dyn Fn(&Item) -> Option<ImageKey>,
    ) -> (Start, Vec<Option<ImageEntry>>) {
        let mut held = vec![None; items.len()];
        let mut at = Start::default();
        for (k, item) in items.iter().enumerate() {
            at.item = k;
            match item {
                Item::Tokens(tokens) => {
                    for (j, &token) in tokens.iter().enumerate() {
                        if self.entries.get(at.entries) != Some(&Entry::Token(token)) {
                            at.offset = j;
                            return (at, held);
                        }
                        at.entries += 1;
                        at.pos += 1;
                    }
                }
                Item::Image(_) | Item::Frame { .. } => {
                    match (self.entries.get(at.entries), key_of(item)) {
                        (Some(Entry::Image(e)), Some(key)) if key == e.key => {
                            if let Some(slot) = held.get_mut(k) {
                                *slot = Some(*e);
                            }
                            at.entries += 1;
                            at.pos += e.positions;
                        }
                        _ => return (at, held),
                    }
                }
            }
        }
        // All of it is there: evaluate its last entry again.
        let last = match (
            items.last(),
            at.entries.checked_sub(1).and_then(|i| self.entries.get(i)),
        ) {
            (Some(Item::Tokens(tokens)), Some(entry)) if !tokens.is_empty() => Start {
                item: items.len() - 1,
                offset: tokens.len() - 1,
                entries: at.entries - 1,
                pos: at.pos - entry.positions(),
            },
            (Some(Item::Image(_) | Item::Frame { .. }), Some(entry @ Entry::Image(_))) => Start {
                item: items.len() - 1,
                offset: 0,
                entries: at.entries - 1,
                pos: at.pos - entry.positions(),
            },
            _ => Start::default(),
        };
        (last, held)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(n: u8) -> ImageKey {
        ImageKey([n; 32])
    }

    fn image(n: u8, positions: u32) -> Entry {
        Entry::Image(ImageEntry {
            key: key(n),
            positions,
            image_tokens: positions as usize,
            tiles: 1,
        })
    }

    fn ledger(entries: &[Entry]) -> Ledger {
        let mut ledger = Ledger::default();
        for &entry in entries {
            ledger.push(entry);
        }
        ledger
    }

    #[test]
    fn an_image_key_is_the_sha256_of_its_size_and_pixels() {
        let pixels: Vec<u8> = (0..18).collect();
        let wide = Bitmap::from_rgb(3, 2, &pixels).unwrap();
        let tall = Bitmap::from_rgb(2, 3, &pixels).unwrap();
        let mut hash = Sha256::new();
        hash.update(3u32.to_le_bytes());
        hash.update(2u32.to_le_bytes());
        hash.update(&pixels);
        let expected: [u8; 32] = hash.finalize().into();
        assert_eq!(ImageKey::of(&wide), ImageKey(expected));
        // The same bytes in another shape are another image.
        assert_ne!(ImageKey::of(&wide), ImageKey::of(&tall));
        let mut other = pixels.clone();
        other[17] ^= 1;
        assert_ne!(
            ImageKey::of(&wide),
            ImageKey::of(&Bitmap::from_rgb(3, 2, &other).unwrap())
        );
    }

    #[test]
    fn positions_follow_pushes_and_truncation() {
        let mut held = ledger(&[
            Entry::Token(Token(1)),
            image(7, 130),
            Entry::Token(Token(2)),
        ]);
        assert_eq!(held.positions(), 132);
        held.truncate(2);
        assert_eq!(held.positions(), 131);
        held.extend(&[Token(3), Token(4)]);
        assert_eq!(held.positions(), 133);
        held.truncate(99);
        assert_eq!(held.positions(), 133);
        held.clear();
        assert_eq!(held.positions(), 0);
    }

    #[test]
    fn a_prompt_matches_up_to_its_first_difference() {
        let held = ledger(&[
            Entry::Token(Token(1)),
            image(7, 130),
            Entry::Token(Token(2)),
        ]);
        let items = [
            Item::Tokens(vec![Token(1)]),
            Item::Image(0),
            Item::Tokens(vec![Token(2), Token(3)]),
        ];
        let (start, found) = held.matching(&items, &|_| Some(key(7)));
        assert_eq!(
            start,
            Start {
                item: 2,
                offset: 1,
                entries: 3,
                pos: 132
            }
        );
        assert!(found[1].is_some());
        // Another image: everything from it on is evaluated.
        let (start, found) = held.matching(&items, &|_| Some(key(8)));
        assert_eq!((start.item, start.entries, start.pos), (1, 1, 1));
        assert!(found[1].is_none());
    }

    #[test]
    fn a_prompt_held_whole_evaluates_its_last_entry_again() {
        let held = ledger(&[Entry::Token(Token(1)), image(7, 130)]);
        let items = [Item::Tokens(vec![Token(1)]), Item::Image(0)];
        let (start, _) = held.matching(&items, &|_| Some(key(7)));
        assert_eq!(
            start,
            Start {
                item: 1,
                offset: 0,
                entries: 1,
                pos: 1
            }
        );
        let items = [Item::Tokens(vec![Token(1)])];
        let (start, _) = held.matching(&items, &|_| None);
        assert_eq!(start, Start::default());
    }
}
