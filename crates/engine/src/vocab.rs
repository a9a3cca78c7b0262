//! The text model's vocabulary: tokenizing text and turning tokens back into bytes.

use std::marker::PhantomData;
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use crate::error::EngineError;
use crate::model::Model;

/// A token id of a model's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Token(pub i32);

/// A model's vocabulary, borrowed from the [`Model`].
#[derive(Debug, Clone, Copy)]
pub struct Vocab<'m> {
    raw: NonNull<sys::llama_vocab>,
    _model: PhantomData<&'m Model>,
}

// SAFETY: a vocabulary is read-only once the model is loaded: every call
// below takes it as `const llama_vocab *` and reads tables built at load
// (llama-vocab.cpp), so it may be used from any thread at once, for as long
// as the model it borrows lives.
unsafe impl Send for Vocab<'_> {}
// SAFETY: as for `Send`: no call mutates it.
unsafe impl Sync for Vocab<'_> {}

impl<'m> Vocab<'m> {
    /// # Safety
    ///
    /// `raw` is the vocabulary of a model that outlives `'m`.
    pub(crate) unsafe fn from_raw(raw: NonNull<sys::llama_vocab>) -> Self {
        Self {
            raw,
            _model: PhantomData,
        }
    }

    pub(crate) fn raw(&self) -> *const sys::llama_vocab {
        self.raw.as_ptr()
    }

    /// Tokens in the vocabulary.
    #[must_use]
    pub fn n_tokens(&self) -> i32 {
        // SAFETY: a live vocabulary (the borrow of its model).
        unsafe { sys::llama_vocab_n_tokens(self.raw()) }
    }

    /// The beginning-of-sequence token.
    #[must_use]
    pub fn bos(&self) -> Token {
        // SAFETY: a live vocabulary.
        Token(unsafe { sys::llama_vocab_bos(self.raw()) })
    }

    /// The end-of-sequence token.
    #[must_use]
    pub fn eos(&self) -> Token {
        // SAFETY: a live vocabulary.
        Token(unsafe { sys::llama_vocab_eos(self.raw()) })
    }

    /// Whether the model adds BOS at the start of a prompt.
    #[must_use]
    pub fn adds_bos(&self) -> bool {
        // SAFETY: a live vocabulary.
        unsafe { sys::llama_vocab_get_add_bos(self.raw()) }
    }

    /// Whether the model adds EOS at the end of a prompt.
    #[must_use]
    pub fn adds_eos(&self) -> bool {
        // SAFETY: a live vocabulary.
        unsafe { sys::llama_vocab_get_add_eos(self.raw()) }
    }

    /// Whether `token` ends generation (EOS, EOT and the like). A token
    /// outside the vocabulary does not.
    #[must_use]
    pub fn is_eog(&self, token: Token) -> bool {
        // SAFETY: a live vocabulary; the id is checked against its size,
        // since llama.cpp indexes its tables with it.
        self.contains(token) && unsafe { sys::llama_vocab_is_eog(self.raw(), token.0) }
    }

    /// Whether `token` is an id of this vocabulary.
    #[must_use]
    pub fn contains(&self, token: Token) -> bool {
        (0..self.n_tokens()).contains(&token.0)
    }

    /// Appends the tokens of `text` to `out`. `add_special` adds BOS/EOS as
    /// the model does; `parse_special` turns the text of control tokens
    /// (`<end_of_utterance>`) into those tokens, otherwise they are plain text.
    ///
    /// # Errors
    ///
    /// [`EngineError::Invalid`] for text longer than llama.cpp can take (2 GiB).
    pub fn tokenize_into(
        &self,
        text: &str,
        out: &mut Vec<Token>,
        add_special: bool,
        parse_special: bool,
    ) -> Result<(), EngineError> {
        let too_long = || EngineError::Invalid {
            name: "text",
            message: "is too long to tokenize".to_owned(),
        };
        let len = i32::try_from(text.len()).map_err(|_| too_long())?;
        // A token per byte, plus BOS and EOS, always suffices; this first
        // guess usually does.
        let mut room = text.len() / 2 + 4;
        loop {
            out.reserve(room);
            let spare = out.spare_capacity_mut();
            let capacity = i32::try_from(spare.len()).unwrap_or(i32::MAX);
            // SAFETY: `text` is valid for `len` bytes (llama.cpp reads by
            // length, not to a NUL); `spare` has room for `capacity` tokens,
            // and `Token` is `repr(transparent)` over `llama_token`.
            let n = unsafe {
                sys::llama_tokenize(
                    self.raw(),
                    text.as_ptr().cast(),
                    len,
                    spare.as_mut_ptr().cast(),
                    capacity,
                    add_special,
                    parse_special,
                )
            };
            match n {
                i32::MIN => return Err(too_long()),
                n if n < 0 => room = n.unsigned_abs() as usize,
                n => {
                    // SAFETY: llama.cpp wrote `n` tokens into the spare capacity.
                    unsafe { out.set_len(out.len() + n as usize) };
                    return Ok(());
                }
            }
        }
    }

    /// Appends the bytes `token` stands for to `out`. With `special`,
    /// control tokens are rendered as their text; otherwise as nothing.
    ///
    /// # Errors
    ///
    /// [`EngineError::Token`] for an id outside the vocabulary (llama.cpp
    /// would throw through C, which aborts).
    pub fn token_to_piece_into(
        &self,
        token: Token,
        out: &mut Vec<u8>,
        special: bool,
    ) -> Result<(), EngineError> {
        if !self.contains(token) {
            return Err(EngineError::Token {
                token: token.0,
                n_vocab: self.n_tokens(),
            });
        }
        let mut room = 16usize;
        loop {
            out.reserve(room);
            let spare = out.spare_capacity_mut();
            let capacity = i32::try_from(spare.len()).unwrap_or(i32::MAX);
            // SAFETY: a token of this vocabulary (checked above); `spare`
            // has room for `capacity` bytes.
            let n = unsafe {
                sys::llama_token_to_piece(
                    self.raw(),
                    token.0,
                    spare.as_mut_ptr().cast(),
                    capacity,
                    0,
                    special,
                )
            };
            if n < 0 {
                room = n.unsigned_abs() as usize;
                continue;
            }
            // SAFETY: llama.cpp wrote `n` bytes into the spare capacity.
            unsafe { out.set_len(out.len() + n as usize) };
            return Ok(());
        }
    }
}
