//! Sampling the answer after the prompt, token by token, with stop strings,
//! the context's end and the watchdog.

use smolvlm_engine as engine;

use super::ledger::Entry;
use super::report::FinishReason;
use super::{eval_error, Session};
use crate::error::{Result, Stage};
use crate::generation::{GenerationOptions, Watchdog};
use crate::text::CaptionText;

impl Session {
    /// Samples up to `max_tokens` tokens after the prompt, which ends at
    /// `n_past`. Each token but the last is decoded (and recorded in the
    /// ledger) for the next one's logits.
    pub(super) fn generate(
        &mut self,
        mut n_past: u32,
        options: &GenerationOptions,
        mut sampler: engine::Sampler,
        watchdog: &Watchdog<'_>,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<(String, Vec<i32>, FinishReason)> {
        let _span = tracing::debug_span!("generate").entered();
        // A handle of its own (an Arc), so the vocabulary's borrow does not
        // hold `self` while tokens are decoded.
        let model = self.model.clone();
        let vocab = model.text().vocab();
        let mut text = CaptionText::new(options.stop());
        let mut tokens = Vec::new();
        let n_ctx = self.ctx.n_ctx();
        let mut finish = FinishReason::MaxTokens;
        // Under a grammar, every token must keep the text valid UTF-8: the
        // grammar counts a stray byte as a character, which then decodes as
        // U+FFFD (and a string's maxLength would not hold).
        let pieces = options.is_constrained().then(|| model.token_bytes());
        for _ in 0..options.max_tokens() {
            watchdog.check(Stage::Generate)?;
            let sampled = match pieces {
                Some(pieces) => {
                    let incomplete = text.incomplete();
                    let continues = |token: engine::Token| {
                        let bytes = usize::try_from(token.0)
                            .ok()
                            .and_then(|t| pieces.get(t))
                            .map_or(&[][..], Vec::as_slice);
                        continues_utf8(incomplete, bytes)
                    };
                    sampler.sample_where(&mut self.ctx, &continues)
                }
                None => sampler.sample(&mut self.ctx),
            };
            let token = sampled.map_err(|e| eval_error(&e, Stage::Generate))?;
            if vocab.is_eog(token) {
                finish = FinishReason::EndOfText;
                break;
            }
            tokens.push(token.0);
            self.piece.clear();
            vocab
                .token_to_piece_into(token, &mut self.piece, false)
                .map_err(|e| eval_error(&e, Stage::Generate))?;
            let stopped = text.push(&self.piece);
            on_text(text.take_ready());
            if stopped {
                finish = FinishReason::Stop;
                break;
            }
            if n_past >= n_ctx {
                finish = FinishReason::ContextFull;
                break;
            }
            if tokens.len() == options.max_tokens() as usize {
                break;
            }
            self.batch.clear();
            self.batch
                .add(token, i32::try_from(n_past).unwrap_or(i32::MAX), true)
                .map_err(|e| eval_error(&e, Stage::Generate))?;
            self.decode(Stage::Generate, watchdog)?;
            n_past += 1;
            self.ledger.push(Entry::Token(token));
        }
        on_text(text.finish());
        Ok((text.into_text(), tokens, finish))
    }
}

/// Whether `bytes` after `incomplete` (a character's first bytes, or none)
/// is still valid UTF-8, allowing for a character left incomplete at the
/// end. A token of no bytes (a control token, the end of text) is allowed
/// only where no character is left incomplete.
fn continues_utf8(incomplete: &[u8], bytes: &[u8]) -> bool {
    let valid = |all: &[u8]| match std::str::from_utf8(all) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    match (incomplete.is_empty(), bytes.is_empty()) {
        (true, _) => valid(bytes),
        (false, true) => false,
        (false, false) => valid(&[incomplete, bytes].concat()),
    }
}

#[cfg(test)]
mod tests {
    use super::continues_utf8;

    #[test]
    fn only_tokens_that_keep_the_text_utf8_continue_it() {
        let e_acute = "é".as_bytes(); // C3 A9
        let euro = "€".as_bytes(); // E2 82 AC
        assert!(continues_utf8(b"", b"abc"));
        assert!(continues_utf8(b"", &e_acute[..1]), "a character may begin");
        assert!(
            !continues_utf8(b"", &e_acute[1..]),
            "a stray continuation byte"
        );
        assert!(continues_utf8(&e_acute[..1], &e_acute[1..]));
        assert!(!continues_utf8(&e_acute[..1], b"a"), "a character cut off");
        assert!(continues_utf8(&euro[..1], &euro[1..2]));
        assert!(continues_utf8(&euro[..2], &[euro[2], b' ']));
        assert!(
            !continues_utf8(&euro[..2], b""),
            "no end inside a character"
        );
        assert!(continues_utf8(b"", b""));
        assert!(!continues_utf8(b"", &[0xFF]));
    }
}
