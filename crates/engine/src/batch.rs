//! A batch of tokens for one decode call, all in sequence 0.

use llama_cpp_sys_2 as sys;

use crate::error::EngineError;
use crate::vocab::Token;

/// Tokens to decode in one call, each with its position and whether its
/// logits are wanted. Allocated once, reused by [`clear`](Self::clear).
pub struct Batch {
    raw: sys::llama_batch,
    capacity: usize,
}

// SAFETY: the batch owns its arrays (allocated by `llama_batch_init`, freed
// once in `Drop`); nothing else points into them, and llama.cpp only reads
// them during a decode call that borrows the batch.
unsafe impl Send for Batch {}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Batch {
    /// A batch with room for `capacity` tokens.
    ///
    /// # Errors
    ///
    /// [`EngineError::Invalid`] for a capacity of 0 or above `i32::MAX`.
    pub fn new(capacity: usize) -> Result<Self, EngineError> {
        let n = i32::try_from(capacity)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| EngineError::Invalid {
                name: "batch capacity",
                message: format!("{capacity} is not between 1 and {}", i32::MAX),
            })?;
        // SAFETY: a positive size, token mode (embd = 0), one sequence per
        // token. llama.cpp allocates `n` entries of each array.
        let raw = unsafe { sys::llama_batch_init(n, 0, 1) };
        Ok(Self { raw, capacity })
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    /// Tokens in the batch.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::try_from(self.raw.n_tokens).unwrap_or(0)
    }

    /// Whether the batch is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the last token added asked for logits.
    pub(crate) fn last_has_logits(&self) -> bool {
        match self.len().checked_sub(1) {
            // SAFETY: `i` is below `n_tokens`, within the allocation.
            Some(i) => unsafe { *self.raw.logits.add(i) != 0 },
            None => false,
        }
    }

    /// Adds `token` at position `pos` of sequence 0; `logits` asks for its
    /// logits after the decode.
    ///
    /// # Errors
    ///
    /// [`EngineError::BatchFull`] when the batch holds `capacity` tokens.
    pub fn add(&mut self, token: Token, pos: i32, logits: bool) -> Result<(), EngineError> {
        let i = self.len();
        if i >= self.capacity {
            return Err(EngineError::BatchFull {
                capacity: self.capacity,
            });
        }
        // SAFETY: `i < capacity`, the size of every array `llama_batch_init`
        // allocated, and each `seq_id[i]` has room for one sequence id.
        unsafe {
            *self.raw.token.add(i) = token.0;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = 1;
            *(*self.raw.seq_id.add(i)) = 0;
            *self.raw.logits.add(i) = i8::from(logits);
        }
        self.raw.n_tokens += 1;
        Ok(())
    }

    /// The batch as llama.cpp takes it (by value; it points at our arrays).
    pub(crate) fn raw(&self) -> sys::llama_batch {
        self.raw
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by `llama_batch_init`, freed once, here.
        unsafe { sys::llama_batch_free(self.raw) };
    }
}
