//! Assembling generated token bytes into text: UTF-8 safe pieces for
//! streaming, and stop strings that may span several tokens.

/// Accumulates token bytes into a caption.
///
/// A token can end in the middle of a UTF-8 character, and a stop string can
/// span tokens, so text is handed out only once it is complete and cannot
/// turn out to be the start of a stop string.
#[derive(Debug)]
pub(crate) struct CaptionText<'s> {
    pending: Vec<u8>,
    text: String,
    emitted: usize,
    stops: &'s [String],
    stopped: bool,
}

impl<'s> CaptionText<'s> {
    pub(crate) fn new(stops: &'s [String]) -> Self {
        Self {
            pending: Vec::new(),
            text: String::new(),
            emitted: 0,
            stops,
            stopped: false,
        }
    }

    /// Adds one token's bytes. Returns `true` once a stop string was seen;
    /// the text is then cut where the stop string began.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> bool {
        let before = self.text.len();
        self.pending.extend_from_slice(bytes);
        self.decode_pending(false);
        self.find_stop(before)
    }

    /// The text that became safe to show since the last call.
    pub(crate) fn take_ready(&mut self) -> &str {
        let ready = if self.stopped {
            self.text.len()
        } else {
            self.text.len() - self.held_back()
        };
        let piece = &self.text[self.emitted..ready];
        self.emitted = ready;
        piece
    }

    /// Ends the caption: incomplete bytes become U+FFFD, nothing is held back.
    pub(crate) fn finish(&mut self) -> &str {
        self.decode_pending(true);
        self.stopped = true;
        self.take_ready()
    }

    /// The bytes of a character not yet complete (at most 3): what the next
    /// token must continue for the text to stay valid UTF-8.
    pub(crate) fn incomplete(&self) -> &[u8] {
        &self.pending
    }

    pub(crate) fn into_text(self) -> String {
        self.text
    }

    fn decode_pending(&mut self, at_end: bool) {
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    self.text.push_str(s);
                    self.pending.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.text
                        .push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            self.text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None if at_end => {
                            self.text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.clear();
                            return;
                        }
                        None => {
                            self.pending.drain(..valid);
                            return;
                        }
                    }
                }
            }
        }
    }

    fn find_stop(&mut self, appended_at: usize) -> bool {
        if self.stopped {
            return true;
        }
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut from = appended_at.saturating_sub(longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i))
            .min();
        if let Some(at) = hit {
            self.text.truncate(at);
            self.emitted = self.emitted.min(at);
            self.stopped = true;
        }
        self.stopped
    }

    /// Bytes at the end of the text that could still begin a stop string.
    fn held_back(&self) -> usize {
        self.stops
            .iter()
            .flat_map(|stop| {
                (1..stop.len())
                    .rev()
                    .filter(|&n| stop.is_char_boundary(n))
                    .find(|&n| self.text.ends_with(&stop[..n]))
            })
            .max()
            .unwrap_or(0)
            .min(self.text.len() - self.emitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(tokens: &[&[u8]], stops: &[String]) -> (Vec<String>, String) {
        let mut t = CaptionText::new(stops);
        let mut pieces = Vec::new();
        for bytes in tokens {
            let stop = t.push(bytes);
            pieces.push(t.take_ready().to_owned());
            if stop {
                break;
            }
        }
        pieces.push(t.finish().to_owned());
        let pieces: Vec<String> = pieces.into_iter().filter(|p| !p.is_empty()).collect();
        (pieces, t.into_text())
    }

    #[test]
    fn split_multibyte_character_is_emitted_whole() {
        let euro = "€".as_bytes();
        let (pieces, text) = stream(&[b"a", &euro[..1], &euro[1..], b"b"], &[]);
        assert_eq!(pieces, ["a", "€", "b"]);
        assert_eq!(text, "a€b");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (_, text) = stream(&[b"a\xff", b"b", &"€".as_bytes()[..2]], &[]);
        assert_eq!(text, "a\u{fffd}b\u{fffd}");
    }

    #[test]
    fn stop_string_across_tokens_is_cut_and_never_shown() {
        let stops = vec!["END".to_owned()];
        let (pieces, text) = stream(&[b"hello E", b"N", b"D more"], &stops);
        assert_eq!(text, "hello ");
        assert_eq!(pieces.concat(), "hello ");
    }

    #[test]
    fn held_back_prefix_is_released_when_it_is_not_a_stop() {
        let stops = vec!["END".to_owned()];
        let (pieces, text) = stream(&[b"an E", b"lephant"], &stops);
        assert_eq!(text, "an Elephant");
        assert_eq!(pieces, ["an ", "Elephant"]);
    }

    #[test]
    fn streamed_pieces_always_concatenate_to_the_text() {
        let stops = vec!["\n\n".to_owned(), "xyz".to_owned()];
        let tokens: [&[u8]; 6] = [b"a x", b"y", b"b\n", b"c", "é".as_bytes(), b"\n\nzz"];
        let (pieces, text) = stream(&tokens, &stops);
        assert_eq!(pieces.concat(), text);
        assert_eq!(text, "a xyb\ncé");
    }
}
