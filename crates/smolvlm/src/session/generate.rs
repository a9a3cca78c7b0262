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
        for _ in 0..options.max_tokens() {
            watchdog.check(Stage::Generate)?;
            let token = sampler
                .sample(&mut self.ctx)
                .map_err(|e| eval_error(&e, Stage::Generate))?;
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
