//! A sampler chain, and llama.cpp's JSON-schema-to-grammar conversion.

use std::ffi::{c_char, CStr, CString};
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use crate::context::Context;
use crate::error::EngineError;
use crate::vocab::{Token, Vocab};

/// A chain of samplers, applied in the order they were added, that picks
/// each next token from a context's logits.
pub struct Sampler {
    raw: NonNull<sys::llama_sampler>,
    /// The candidates handed to the chain, reused between tokens.
    candidates: Vec<sys::llama_token_data>,
}

// SAFETY: the chain (and the samplers it owns) has no thread affinity and is
// used only through `&mut self`; it holds no pointer to anything but its own
// state (a grammar sampler copies what it needs from the vocabulary).
unsafe impl Send for Sampler {}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: a live chain; a plain query.
        let n = unsafe { sys::llama_sampler_chain_n(self.raw.as_ptr()) };
        f.debug_struct("Sampler").field("stages", &n).finish()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // SAFETY: made by `llama_sampler_chain_init`, freed once, here; it
        // frees the samplers it owns.
        unsafe { sys::llama_sampler_free(self.raw.as_ptr()) };
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    /// An empty chain. Add at least one stage that selects a token
    /// ([`greedy`](Self::greedy) or [`dist`](Self::dist)) last.
    #[must_use]
    pub fn new() -> Self {
        // SAFETY: returns a struct by value; no preconditions.
        let mut params = unsafe { sys::llama_sampler_chain_default_params() };
        params.no_perf = true;
        // SAFETY: valid parameters; llama.cpp allocates with `new` (an
        // allocation failure would abort, as every Rust allocation does).
        let raw = unsafe { sys::llama_sampler_chain_init(params) };
        match NonNull::new(raw) {
            Some(raw) => Self {
                raw,
                candidates: Vec::new(),
            },
            None => std::alloc::handle_alloc_error(std::alloc::Layout::new::<usize>()),
        }
    }

    /// Adds a sampler the chain takes ownership of.
    fn push(&mut self, stage: *mut sys::llama_sampler) -> Result<(), EngineError> {
        if stage.is_null() {
            return Err(EngineError::Sample("llama.cpp could not make a sampler"));
        }
        // SAFETY: a live chain and a new sampler, which the chain now owns
        // and frees.
        unsafe { sys::llama_sampler_chain_add(self.raw.as_ptr(), stage) };
        Ok(())
    }

    /// Picks the most likely token.
    #[must_use]
    pub fn greedy(mut self) -> Self {
        // SAFETY: no preconditions; the result is owned by the chain.
        let _ = self.push(unsafe { sys::llama_sampler_init_greedy() });
        self
    }

    /// Picks a token at random by probability, with this seed.
    #[must_use]
    pub fn dist(mut self, seed: u32) -> Self {
        // SAFETY: no preconditions; the result is owned by the chain.
        let _ = self.push(unsafe { sys::llama_sampler_init_dist(seed) });
        self
    }

    /// Scales the logits by `1 / temperature`.
    #[must_use]
    pub fn temp(mut self, temperature: f32) -> Self {
        // SAFETY: no preconditions; the result is owned by the chain.
        let _ = self.push(unsafe { sys::llama_sampler_init_temp(temperature) });
        self
    }

    /// Keeps the `k` most likely tokens.
    #[must_use]
    pub fn top_k(mut self, k: i32) -> Self {
        // SAFETY: no preconditions; the result is owned by the chain.
        let _ = self.push(unsafe { sys::llama_sampler_init_top_k(k) });
        self
    }

    /// Keeps the most likely tokens whose probabilities add up to `p`.
    #[must_use]
    pub fn top_p(mut self, p: f32, min_keep: usize) -> Self {
        // SAFETY: no preconditions; the result is owned by the chain.
        let _ = self.push(unsafe { sys::llama_sampler_init_top_p(p, min_keep) });
        self
    }

    /// Drops tokens less likely than `p` times the most likely one.
    #[must_use]
    pub fn min_p(mut self, p: f32, min_keep: usize) -> Self {
        // SAFETY: no preconditions; the result is owned by the chain.
        let _ = self.push(unsafe { sys::llama_sampler_init_min_p(p, min_keep) });
        self
    }

    /// Penalises the last `last_n` tokens of a vocabulary of `n_vocab`.
    #[must_use]
    pub fn penalties(
        mut self,
        n_vocab: i32,
        last_n: i32,
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Self {
        // SAFETY: no preconditions; the result is owned by the chain.
        let stage = unsafe {
            sys::llama_sampler_init_penalties(n_vocab, last_n, repeat, frequency, presence)
        };
        let _ = self.push(stage);
        self
    }

    /// Constrains the output to a GBNF grammar whose root rule is `root`.
    ///
    /// # Errors
    ///
    /// [`EngineError::Nul`] for text with a NUL byte, and
    /// [`EngineError::Grammar`] when llama.cpp refuses the grammar.
    pub fn grammar(
        mut self,
        vocab: &Vocab<'_>,
        gbnf: &str,
        root: &str,
    ) -> Result<Self, EngineError> {
        let gbnf = CString::new(gbnf).map_err(|_| EngineError::Nul)?;
        let root = CString::new(root).map_err(|_| EngineError::Nul)?;
        // SAFETY: a live vocabulary and NUL-terminated strings; the shim
        // catches llama.cpp's exceptions and returns null for a bad grammar.
        let stage = unsafe {
            sys::llama_rs_sampler_init_grammar(vocab.raw(), gbnf.as_ptr(), root.as_ptr())
        };
        if stage.is_null() {
            return Err(EngineError::Grammar);
        }
        self.push(stage)?;
        Ok(self)
    }

    /// Samples the token after the context's last decoded one, and records
    /// it in the chain's state (penalties, grammar).
    ///
    /// # Errors
    ///
    /// [`EngineError::Sample`] when the last decode left no logits, the
    /// chain selected nothing, or a grammar refused the token.
    pub fn sample(&mut self, ctx: &mut Context) -> Result<Token, EngineError> {
        self.sample_among(ctx, None)
    }

    /// Like [`sample`](Self::sample), among the tokens `allowed` accepts
    /// only: the others are masked out before the chain sees them.
    ///
    /// # Errors
    ///
    /// As [`sample`](Self::sample), and [`EngineError::Sample`] when no
    /// allowed token is left to pick.
    pub fn sample_where(
        &mut self,
        ctx: &mut Context,
        allowed: &dyn Fn(Token) -> bool,
    ) -> Result<Token, EngineError> {
        self.sample_among(ctx, Some(allowed))
    }

    fn sample_among(
        &mut self,
        ctx: &mut Context,
        allowed: Option<&dyn Fn(Token) -> bool>,
    ) -> Result<Token, EngineError> {
        let logits = ctx.last_logits()?;
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(id, &logit)| {
                let id = i32::try_from(id).unwrap_or(i32::MAX);
                let masked = allowed.is_some_and(|allowed| !allowed(Token(id)));
                sys::llama_token_data {
                    id,
                    logit: if masked { f32::NEG_INFINITY } else { logit },
                    p: 0.0,
                }
            }));
        let mut array = sys::llama_token_data_array {
            data: self.candidates.as_mut_ptr(),
            size: self.candidates.len(),
            selected: -1,
            sorted: false,
        };
        // SAFETY: a live chain, and an array over our own buffer of `size`
        // candidates, which the samplers may reorder and shrink in place.
        unsafe { sys::llama_sampler_apply(self.raw.as_ptr(), &raw mut array) };
        let selected = usize::try_from(array.selected)
            .ok()
            .filter(|&i| i < array.size && array.size <= self.candidates.len())
            .ok_or(EngineError::Sample("the sampler chain selected no token"))?;
        // SAFETY: `selected < size <= candidates.len()`: within our buffer
        // (the samplers work in place; `data` still points into it).
        let token = unsafe { (*array.data.add(selected)).id };
        if allowed.is_some_and(|allowed| !allowed(Token(token))) {
            return Err(EngineError::Sample("no allowed token was left to pick"));
        }
        // SAFETY: a live chain; the shim catches the exception a grammar
        // throws for a token it cannot accept.
        let status = unsafe { sys::llama_rs_sampler_accept(self.raw.as_ptr(), token) };
        if status != sys::LLAMA_RS_STATUS_OK {
            return Err(EngineError::Sample(
                "the grammar cannot accept the sampled token",
            ));
        }
        Ok(Token(token))
    }
}

/// Converts a JSON schema (as text) to a GBNF grammar with llama.cpp's own
/// converter, the one its server uses.
///
/// # Errors
///
/// [`EngineError::Nul`] and [`EngineError::JsonSchema`].
pub fn json_schema_to_grammar(schema: &str) -> Result<String, EngineError> {
    let schema = CString::new(schema).map_err(|_| EngineError::Nul)?;
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: a NUL-terminated schema and a place for the result; the shim
    // catches the converter's exceptions and returns a status.
    let status =
        unsafe { sys::llama_rs_json_schema_to_grammar(schema.as_ptr(), false, &raw mut out) };
    if status != sys::LLAMA_RS_STATUS_OK || out.is_null() {
        return Err(EngineError::JsonSchema(status));
    }
    // SAFETY: on success `out` is a NUL-terminated string malloc'ed by the
    // shim; it is copied, then freed once with the shim's own free.
    let grammar = unsafe { CStr::from_ptr(out) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: see above.
    unsafe { sys::llama_rs_string_free(out) };
    Ok(grammar)
}
