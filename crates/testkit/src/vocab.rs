//! The tiny model's byte-level BPE vocabulary, its merges and chat template.
//!
//! Layout (509 tokens), as `shared/TINY_MODEL.md` specifies:
//!
//! | ids | tokens |
//! |---|---|
//! | 0, 1, 2 | `<\|endoftext\|>`, `<\|im_start\|>`, `<\|im_end\|>` (control) |
//! | 3..=258 | the 256 byte tokens in GPT-2 `bytes_to_unicode` form |
//! | 259..=468 | merge results in merge order; 468 is `"\n\n"` |
//! | 469 | `<global-img>` |
//! | 470..=505 | `<row_r_col_c>` for r, c in 1..=6 |
//! | 506, 507, 508 | `<fake_token_around_image>`, `<image>`, `<end_of_utterance>` |
//!
//! The merges are learned, deterministically, on [`CORPUS`], so that the words
//! of the standard prompt (`User`, `Describe`, ` this`, ` image`, `Assistant`)
//! are single tokens, as they are in the real SmolVLM vocabulary; token counts
//! of a prompt then match what a test computes by hand.

use std::collections::BTreeMap;

/// The chat template of HuggingFaceTB/SmolVLM-*-Instruct, verbatim.
pub const CHAT_TEMPLATE: &str = "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

/// `tokenizer.ggml.token_type` value of an ordinary token.
pub const TOKEN_TYPE_NORMAL: i32 = 1;
/// `tokenizer.ggml.token_type` value of a control (special) token.
pub const TOKEN_TYPE_CONTROL: i32 = 3;

/// `<|endoftext|>`: unknown token, and end of generation.
pub const ENDOFTEXT: u32 = 0;
/// `<|im_start|>`: BOS.
pub const IM_START: u32 = 1;
/// `<|im_end|>`: padding, and end of generation.
pub const IM_END: u32 = 2;
/// Id of the byte token for byte 0; byte `b` is `FIRST_BYTE + b`.
pub const FIRST_BYTE: u32 = 3;
/// Id of the first merge result.
pub const FIRST_MERGE: u32 = FIRST_BYTE + 256;
/// Number of BPE merges; the last one is `Ċ Ċ` (`"\n\n"`).
pub const N_MERGES: usize = 210;
/// `"\n\n"`, which mtmd looks up by text before the overview image.
pub const DOUBLE_NEWLINE: u32 = FIRST_MERGE + N_MERGES as u32 - 1;
/// `<global-img>`, which introduces the overview tile.
pub const GLOBAL_IMG: u32 = DOUBLE_NEWLINE + 1;
/// `<row_1_col_1>`; see [`row_col_token`].
pub const FIRST_ROW_COL: u32 = GLOBAL_IMG + 1;
/// Largest row or column number with a `<row_r_col_c>` token.
pub const MAX_GRID: u32 = 6;
/// `<fake_token_around_image>`.
pub const FAKE_TOKEN_AROUND_IMAGE: u32 = FIRST_ROW_COL + MAX_GRID * MAX_GRID;
/// `<image>`.
pub const IMAGE: u32 = FAKE_TOKEN_AROUND_IMAGE + 1;
/// `<end_of_utterance>`: EOS, and end of generation.
pub const END_OF_UTTERANCE: u32 = IMAGE + 1;
/// Number of tokens in the vocabulary.
pub const VOCAB_SIZE: u32 = END_OF_UTTERANCE + 1;

/// Id of `<row_{row}_col_{col}>` (both 1-based, at most [`MAX_GRID`]).
#[must_use]
pub fn row_col_token(row: u32, col: u32) -> u32 {
    FIRST_ROW_COL + (row - 1) * MAX_GRID + (col - 1)
}

/// English text the merges are learned on: chat turns about images, so that the
/// prompt's words become whole tokens. Plain ASCII without digits or
/// apostrophes, where the approximate pre-tokenizer below is exact.
pub const CORPUS: &str = "\
User: Describe this image.
Assistant: The image shows a small red house with a blue door and a green garden.
User: Describe this image in detail.
Assistant: This image shows a cat sitting on a wooden table next to a window.
User: What is in this image?
Assistant: There is a dog in the image, and the dog is running on the grass.
User: Describe this image.
Assistant: The image is a photo of a street in the city at night, with cars and lights.
User: Can you describe this picture?
Assistant: This is a picture of a mountain lake with trees and a clear blue sky.
User: Describe this image briefly.
Assistant: A person is riding a bicycle along the river in the morning.
User: What color is the car in this image?
Assistant: The car in the image is red, and it is parked in front of a house.
User: Describe this image.
Assistant: The image shows a bowl of fruit on a kitchen table.
User: How many people are in this image?
Assistant: There are three people in the image, standing on the beach.
User: Describe this image.
Assistant: This image shows a train station with people waiting for the train.
";

/// The tokens, types and merges of the tiny vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    /// Token texts, indexed by id (byte tokens in `bytes_to_unicode` form).
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type` for each token.
    pub token_types: Vec<i32>,
    /// Merges as `"left right"`, in rank order.
    pub merges: Vec<String>,
}

impl Vocab {
    /// Builds the 509-token SmolVLM-style vocabulary described in the module docs.
    #[must_use]
    pub fn smolvlm() -> Self {
        let byte_chars = bytes_to_unicode();
        let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
            .map(String::from)
            .to_vec();
        tokens.extend(byte_chars.iter().map(char::to_string));

        let mut merges = learn_merges(CORPUS, N_MERGES - 1);
        // "\n\n" is forced in last: mtmd looks it up by text, and training skips
        // whitespace-only words, so it cannot appear among the learned merges.
        let newline = byte_chars[usize::from(b'\n')].to_string();
        merges.push((newline.clone(), newline));
        tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));

        tokens.push("<global-img>".to_owned());
        for row in 1..=MAX_GRID {
            for col in 1..=MAX_GRID {
                tokens.push(format!("<row_{row}_col_{col}>"));
            }
        }
        tokens.extend(
            ["<fake_token_around_image>", "<image>", "<end_of_utterance>"].map(String::from),
        );

        let token_types = (0..tokens.len() as u32)
            .map(|id| {
                if (FIRST_BYTE..GLOBAL_IMG).contains(&id) {
                    TOKEN_TYPE_NORMAL
                } else {
                    TOKEN_TYPE_CONTROL
                }
            })
            .collect();
        let merges = merges
            .into_iter()
            .map(|(a, b)| format!("{a} {b}"))
            .collect();
        Self {
            tokens,
            token_types,
            merges,
        }
    }

    /// The bytes a token stands for, or `None` for a control token.
    #[must_use]
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let i = usize::try_from(id).ok()?;
        if self.token_types.get(i) != Some(&TOKEN_TYPE_NORMAL) {
            return None;
        }
        let byte_chars = bytes_to_unicode();
        self.tokens[i]
            .chars()
            .map(|c| byte_chars.iter().position(|&b| b == c).map(|b| b as u8))
            .collect()
    }

    /// Whether a token is ordinary text made only of printable ASCII and `\n`.
    ///
    /// The weight init keeps these at full scale and shrinks every other row of
    /// the (tied) embedding, so greedy decoding emits readable ASCII and never
    /// an end-of-generation token.
    #[must_use]
    pub fn is_plain_text(&self, id: u32) -> bool {
        self.token_bytes(id).is_some_and(|bytes| {
            bytes
                .iter()
                .all(|&b| b == b'\n' || (0x20..0x7f).contains(&b))
        })
    }

    /// Tokenizes text without special tokens, the way llama.cpp's `smollm` BPE
    /// does for ASCII text without apostrophes (see [`pre_tokenize`]).
    #[must_use]
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let byte_chars = bytes_to_unicode();
        let ranks: BTreeMap<(&str, &str), usize> = self
            .merges
            .iter()
            .enumerate()
            .filter_map(|(rank, m)| m.split_once(' ').map(|pair| (pair, rank)))
            .collect();
        let ids: BTreeMap<&str, u32> = self
            .tokens
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.token_types[i] == TOKEN_TYPE_NORMAL)
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();

        let mut out = Vec::new();
        for word in pre_tokenize(text) {
            let mut symbols: Vec<String> = word
                .bytes()
                .map(|b| byte_chars[usize::from(b)].to_string())
                .collect();
            // Merge the lowest-ranked adjacent pair (leftmost on ties) until none applies.
            while let Some((pos, _)) = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| ranks.get(&(w[0].as_str(), w[1].as_str())).map(|r| (i, *r)))
                .min_by_key(|&(i, r)| (r, i))
            {
                let right = symbols.remove(pos + 1);
                symbols[pos].push_str(&right);
            }
            out.extend(symbols.iter().filter_map(|s| ids.get(s.as_str()).copied()));
        }
        out
    }
}

/// GPT-2's `bytes_to_unicode`: printable bytes map to themselves, the rest to
/// code points from U+0100 up, so that every byte is a visible character
/// (`\n` is `Ċ`, space is `Ġ`).
#[must_use]
pub fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    let mut table = ['\0'; 256];
    let mut next_extra = 256u32;
    for b in 0..=255u8 {
        table[usize::from(b)] = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next_extra).unwrap_or('\u{fffd}');
            next_extra += 1;
            c
        };
    }
    table
}

/// Splits text into pre-tokens like llama.cpp's `smollm` pre-tokenizer:
/// each digit alone, then
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
///
/// A hand-written matcher rather than a regex dependency: the corpus and the
/// tests are ASCII, where this is exact.
#[must_use]
pub fn pre_tokenize(text: &str) -> Vec<&str> {
    // The first smollm regex isolates digits; the second runs on the spans between.
    let mut out = Vec::new();
    let mut span_start = 0;
    for (i, c) in text.char_indices() {
        if c.is_numeric() {
            split_span(&text[span_start..i], &mut out);
            out.push(&text[i..i + c.len_utf8()]);
            span_start = i + c.len_utf8();
        }
    }
    split_span(&text[span_start..], &mut out);
    out
}

fn split_span<'a>(span: &'a str, out: &mut Vec<&'a str>) {
    #[derive(PartialEq)]
    enum Class {
        Letter,
        Space,
        Other,
    }
    let class = |c: char| {
        if c.is_alphabetic() {
            Class::Letter
        } else if c.is_whitespace() {
            Class::Space
        } else {
            Class::Other
        }
    };
    let chars: Vec<(usize, char)> = span.char_indices().collect();
    let end_of = |k: usize| chars.get(k).map_or(span.len(), |&(i, _)| i);
    let run_from = |mut k: usize, cls: Class| {
        while k < chars.len() && class(chars[k].1) == cls {
            k += 1;
        }
        k
    };

    let mut k = 0;
    while k < chars.len() {
        let c = chars[k].1;
        let next = chars.get(k + 1).map(|&(_, c)| c);
        let end = if c == '\'' && contraction_len(&span[chars[k].0..]) > 0 {
            k + contraction_len(&span[chars[k].0..])
        } else if class(c) == Class::Letter {
            run_from(k, Class::Letter)
        } else if c == ' ' && next.is_some_and(char::is_alphabetic) {
            run_from(k + 1, Class::Letter)
        } else if class(c) == Class::Other {
            run_from(k, Class::Other)
        } else if c == ' ' && next.is_some_and(|n| class(n) == Class::Other) {
            run_from(k + 1, Class::Other)
        } else {
            let run_end = run_from(k, Class::Space);
            // `\s+(?!\S)` leaves the last space of a run for the next word.
            if run_end < chars.len() && run_end - k > 1 {
                run_end - 1
            } else {
                run_end
            }
        };
        out.push(&span[chars[k].0..end_of(end)]);
        k = end;
    }
}

/// Length in chars of an English contraction suffix at the start of `s`, or 0.
fn contraction_len(s: &str) -> usize {
    ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
        .iter()
        .find(|c| s.starts_with(*c))
        .map_or(0, |c| c.len())
}

/// Learns `n` byte-level BPE merges on `corpus`, skipping whitespace-only
/// words. Ties between equally frequent pairs go to the smaller pair, so the
/// result is the same on every run.
fn learn_merges(corpus: &str, n: usize) -> Vec<(String, String)> {
    let byte_chars = bytes_to_unicode();
    let mut words: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    for word in pre_tokenize(corpus) {
        if word.chars().all(char::is_whitespace) {
            continue;
        }
        let symbols = word
            .bytes()
            .map(|b| byte_chars[usize::from(b)].to_string())
            .collect();
        *words.entry(symbols).or_default() += 1;
    }

    let mut merges = Vec::with_capacity(n);
    while merges.len() < n {
        let mut pairs: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (symbols, count) in &words {
            for w in symbols.windows(2) {
                *pairs.entry((w[0].as_str(), w[1].as_str())).or_default() += count;
            }
        }
        // `max_by_key` returns the last of equal maxima; iterating the (sorted)
        // map in reverse makes that the smallest pair.
        let Some(((a, b), _)) = pairs.iter().rev().max_by_key(|(_, &count)| count) else {
            break;
        };
        let (a, b) = (a.to_string(), b.to_string());
        words = words
            .into_iter()
            .map(|(symbols, count)| (merge_pair(symbols, &a, &b), count))
            .collect();
        // Two different pairs can spell the same token ("ab c", "a bc"); the
        // `layout` test checks that the corpus never makes that happen, so ids
        // stay one per merge.
        merges.push((a, b));
    }
    merges
}

fn merge_pair(symbols: Vec<String>, a: &str, b: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(symbols.len());
    let mut iter = symbols.into_iter().peekable();
    while let Some(s) = iter.next() {
        if s == a && iter.peek().is_some_and(|next| next == b) {
            iter.next();
            out.push(format!("{a}{b}"));
        } else {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let vocab = Vocab::smolvlm();
        assert_eq!(vocab.tokens.len(), VOCAB_SIZE as usize);
        assert_eq!(VOCAB_SIZE, 509);
        assert_eq!(vocab.merges.len(), N_MERGES);
        assert_eq!(vocab.tokens[13], "Ċ");
        assert_eq!(vocab.tokens[35], "Ġ");
        assert_eq!(vocab.tokens[DOUBLE_NEWLINE as usize], "ĊĊ");
        assert_eq!(DOUBLE_NEWLINE, 468);
        assert_eq!(vocab.tokens[GLOBAL_IMG as usize], "<global-img>");
        assert_eq!(vocab.tokens[row_col_token(1, 1) as usize], "<row_1_col_1>");
        assert_eq!(vocab.tokens[row_col_token(6, 6) as usize], "<row_6_col_6>");
        assert_eq!(FAKE_TOKEN_AROUND_IMAGE, 506);
        assert_eq!(END_OF_UTTERANCE, 508);
        let mut sorted = vocab.tokens.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            vocab.tokens.len(),
            "token texts must be unique"
        );
    }

    #[test]
    fn prompt_words_are_single_tokens() {
        let vocab = Vocab::smolvlm();
        for word in ["User", "Describe", " this", " image", "Assistant"] {
            let ids = vocab.tokenize(word);
            assert_eq!(ids.len(), 1, "{word:?} -> {ids:?}");
        }
        assert_eq!(vocab.tokenize("\n\n"), vec![DOUBLE_NEWLINE]);
        assert_eq!(vocab.tokenize("User: ").len(), 3);
        assert_eq!(vocab.tokenize("Describe this image.").len(), 4);
        assert_eq!(vocab.tokenize("\nAssistant:").len(), 3);
    }

    #[test]
    fn pre_tokenizer_matches_smollm_regex() {
        assert_eq!(
            pre_tokenize("Hello world!!  ok\n\nit's 42"),
            vec!["Hello", " world", "!!", " ", " ok", "\n", "\n", "it", "'s", " ", "4", "2"]
        );
        // A whitespace run is one pre-token only where no word follows it.
        assert_eq!(pre_tokenize("ok\n\n"), vec!["ok", "\n\n"]);
        assert_eq!(pre_tokenize("a\nb"), vec!["a", "\n", "b"]);
        assert_eq!(pre_tokenize("end  "), vec!["end", "  "]);
    }

    #[test]
    fn plain_text_tokens() {
        let vocab = Vocab::smolvlm();
        assert!(vocab.is_plain_text(FIRST_BYTE + u32::from(b'a')));
        assert!(vocab.is_plain_text(FIRST_BYTE + u32::from(b'\n')));
        assert!(!vocab.is_plain_text(FIRST_BYTE + 0x80));
        assert!(!vocab.is_plain_text(FIRST_BYTE + u32::from(b'\t')));
        assert!(!vocab.is_plain_text(END_OF_UTTERANCE));
        assert!(vocab.is_plain_text(DOUBLE_NEWLINE));
    }
}
