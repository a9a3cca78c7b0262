//! How a caption is generated: length, sampling, stop strings, deadline and cancellation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smolvlm_engine as engine;

use crate::error::{CaptionError, Error, Result, Stage};

/// A handle to stop a caption in progress from another thread.
///
/// It is checked as the engine works: after each layer of each vision
/// encode, between the text decoder's compute steps, and between generated
/// tokens, so a cancel takes effect within one encoder layer (about 0.2 s
/// for SmolVLM's SigLIP on 2 cores). The caption then returns
/// [`CaptionError::Cancelled`] and the session stays usable.
/// Once cancelled it stays cancelled: use a new token for the next caption.
///
/// ```
/// let token = smolvlm::CancelToken::new();
/// let remote = token.clone();
/// remote.cancel();
/// assert!(token.is_cancelled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every caption holding this token (or a clone) to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether `other` is this token or a clone of it.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Whether [`cancel`](Self::cancel) was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// How to generate a caption. Greedy (deterministic) by default.
///
/// ```
/// use std::time::Duration;
/// let options = smolvlm::GenerationOptions::default()
///     .with_max_tokens(64)
///     .with_temperature(0.7)
///     .with_seed(42)
///     .with_stop(["\n"])
///     .with_deadline(Duration::from_secs(60));
/// assert_eq!(options.max_tokens(), 64);
/// ```
#[derive(Debug, Clone)]
pub struct GenerationOptions {
    max_tokens: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    repeat_last_n: u32,
    seed: u32,
    stop: Vec<String>,
    deadline: Option<Duration>,
    cancel: Option<CancelToken>,
    // A second token, honoured as well: a worker's job cancel beside the
    // caller's own token.
    also_cancel: Option<CancelToken>,
    constraint: Option<Constraint>,
}

/// What the output must follow.
#[derive(Debug, Clone, PartialEq)]
enum Constraint {
    /// A GBNF grammar, its root rule `root`.
    Grammar(String),
    /// A JSON schema, as text.
    JsonSchema(String),
}

impl Default for GenerationOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
            stop: Vec::new(),
            deadline: None,
            cancel: None,
            also_cancel: None,
            constraint: None,
        }
    }
}

impl GenerationOptions {
    /// Constrains the output to a GBNF grammar (llama.cpp's grammar format;
    /// the root rule is `root`). An invalid grammar is
    /// [`Error::InvalidOption`] (`grammar`) before any image is read.
    ///
    /// ```
    /// let yes_no = smolvlm::GenerationOptions::default().with_grammar(r#"root ::= "yes" | "no""#);
    /// # let _ = yes_no;
    /// ```
    #[must_use]
    pub fn with_grammar(mut self, gbnf: impl Into<String>) -> Self {
        self.constraint = Some(Constraint::Grammar(gbnf.into()));
        self
    }

    /// Constrains the output to JSON that follows `schema` (a JSON Schema, as
    /// text), through llama.cpp's schema-to-grammar conversion. The caption
    /// then carries the parsed value in [`Caption::json`](crate::Caption::json),
    /// checked against the schema: a value that does not follow it (a
    /// keyword the grammar cannot express) is
    /// [`CaptionError::SchemaMismatch`], never returned as valid. Each token
    /// must also keep the text valid UTF-8, so a string's `maxLength` counts
    /// characters, not stray bytes. An invalid schema is
    /// [`Error::InvalidOption`] (`json_schema`) before any image is read;
    /// output cut short by `max_tokens` is [`CaptionError::IncompleteJson`].
    /// Give it room: `max_tokens` is not raised for you.
    ///
    /// ```
    /// let tags = smolvlm::GenerationOptions::default().with_max_tokens(128).with_json_schema(
    ///     r#"{"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}, "required": ["tags"]}"#,
    /// );
    /// # let _ = tags;
    /// ```
    #[must_use]
    pub fn with_json_schema(mut self, schema: impl Into<String>) -> Self {
        self.constraint = Some(Constraint::JsonSchema(schema.into()));
        self
    }

    /// Whether the output must be JSON (a schema was given).
    #[must_use]
    pub fn wants_json(&self) -> bool {
        matches!(self.constraint, Some(Constraint::JsonSchema(_)))
    }

    /// Whether a grammar or a schema constrains the output: then every
    /// token must also keep the text valid UTF-8.
    pub(crate) fn is_constrained(&self) -> bool {
        self.constraint.is_some()
    }

    /// The schema's validator, checked: an output is valid only if it
    /// passes it.
    pub(crate) fn schema_validator(&self) -> Result<Option<jsonschema::Validator>> {
        let Some(Constraint::JsonSchema(schema)) = &self.constraint else {
            return Ok(None);
        };
        let parsed: serde_json::Value = serde_json::from_str(schema)
            .map_err(|e| Error::invalid("json_schema", format!("not JSON: {e}")))?;
        jsonschema::validator_for(&parsed)
            .map(Some)
            .map_err(|e| Error::invalid("json_schema", format!("not a valid JSON Schema: {e}")))
    }

    /// The grammar these options constrain the output to, if any, checked:
    /// a schema is converted to its grammar here.
    pub(crate) fn grammar(&self) -> Result<Option<String>> {
        match &self.constraint {
            None => Ok(None),
            Some(Constraint::Grammar(gbnf)) => {
                if gbnf.contains('\0') {
                    return Err(Error::invalid("grammar", "contains a NUL byte"));
                }
                Ok(Some(gbnf.clone()))
            }
            Some(Constraint::JsonSchema(schema)) => {
                let parsed: serde_json::Value = serde_json::from_str(schema)
                    .map_err(|e| Error::invalid("json_schema", format!("not JSON: {e}")))?;
                if !parsed.is_object() && !parsed.is_boolean() {
                    return Err(Error::invalid("json_schema", "a schema is a JSON object"));
                }
                engine::json_schema_to_grammar(schema)
                    .map(Some)
                    .map_err(|e| {
                        Error::invalid(
                            "json_schema",
                            format!("cannot be converted to a grammar: {e}"),
                        )
                    })
            }
        }
    }

    /// Most tokens to generate (default 256).
    #[must_use]
    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = n;
        self
    }

    /// Sampling temperature; `0` (the default) means greedy decoding.
    #[must_use]
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }

    /// Keep only the `k` most likely tokens; `0` (default) disables.
    #[must_use]
    pub fn with_top_k(mut self, k: u32) -> Self {
        self.top_k = k;
        self
    }

    /// Nucleus sampling threshold in `(0, 1]`; `1` (default) disables.
    #[must_use]
    pub fn with_top_p(mut self, p: f32) -> Self {
        self.top_p = p;
        self
    }

    /// Drop tokens less likely than `p` × the best one, `p` in `[0, 1)`; `0` (default) disables.
    #[must_use]
    pub fn with_min_p(mut self, p: f32) -> Self {
        self.min_p = p;
        self
    }

    /// Penalty for repeating recent tokens; `1` (default) disables.
    #[must_use]
    pub fn with_repeat_penalty(mut self, penalty: f32) -> Self {
        self.repeat_penalty = penalty;
        self
    }

    /// How many recent tokens the repeat penalty looks at (default 64).
    #[must_use]
    pub fn with_repeat_last_n(mut self, n: u32) -> Self {
        self.repeat_last_n = n;
        self
    }

    /// Seed for sampling when the temperature is above zero (default 0).
    #[must_use]
    pub fn with_seed(mut self, seed: u32) -> Self {
        self.seed = seed;
        self
    }

    /// Strings that end the caption; the caption excludes them.
    #[must_use]
    pub fn with_stop<I, S>(mut self, stop: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.stop = stop.into_iter().map(Into::into).collect();
        self
    }

    /// Longest time one caption may take, from the call to its end (the old
    /// configuration's `timeout`). Past it the caption returns
    /// [`CaptionError::DeadlineExceeded`].
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// A token another thread can use to stop the caption.
    #[must_use]
    pub fn with_cancel(mut self, token: CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Most tokens to generate.
    #[must_use]
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// The stop strings.
    #[must_use]
    pub fn stop(&self) -> &[String] {
        &self.stop
    }

    /// Whether decoding is greedy.
    #[must_use]
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks the options that need no model: ranges, stop strings, and a
    /// JSON schema's conversion to a grammar. A grammar's syntax is checked
    /// against a model's vocabulary by [`Model::check_generation`](crate::Model::check_generation).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the option.
    pub fn validate(&self) -> Result<()> {
        self.grammar()?;
        self.schema_validator()?;
        if self.max_tokens == 0 {
            return Err(Error::invalid("max_tokens", "must be at least 1"));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::invalid(
                "temperature",
                "must be a finite number >= 0",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid("top_p", "must be in (0, 1]"));
        }
        if !(self.min_p >= 0.0 && self.min_p < 1.0) {
            return Err(Error::invalid("min_p", "must be in [0, 1)"));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(Error::invalid(
                "repeat_penalty",
                "must be a finite number > 0",
            ));
        }
        if i32::try_from(self.top_k).is_err() || i32::try_from(self.repeat_last_n).is_err() {
            return Err(Error::invalid("top_k/repeat_last_n", "is too large"));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(Error::invalid("stop", "stop strings must not be empty"));
        }
        Ok(())
    }

    /// The llama.cpp sampler chain these options describe for `model`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] for a grammar or schema llama.cpp refuses.
    pub(crate) fn sampler(&self, model: &engine::Model) -> Result<engine::Sampler> {
        let mut chain = engine::Sampler::new();
        if let Some(gbnf) = self.grammar()? {
            let name = if self.wants_json() {
                "json_schema"
            } else {
                "grammar"
            };
            chain = chain.grammar(&model.vocab(), &gbnf, "root").map_err(|e| {
                Error::invalid(name, format!("{e} (its log, at debug level, says where)"))
            })?;
        }
        if self.repeat_penalty != 1.0 {
            let last_n = i32::try_from(self.repeat_last_n).unwrap_or(i32::MAX);
            let n_vocab = model.vocab().n_tokens();
            chain = chain.penalties(n_vocab, last_n, self.repeat_penalty, 0.0, 0.0);
        }
        if self.is_greedy() {
            return Ok(chain.greedy());
        }
        if self.top_k > 0 {
            chain = chain.top_k(i32::try_from(self.top_k).unwrap_or(i32::MAX));
        }
        if self.top_p < 1.0 {
            chain = chain.top_p(self.top_p, 1);
        }
        if self.min_p > 0.0 {
            chain = chain.min_p(self.min_p, 1);
        }
        Ok(chain.temp(self.temperature).dist(self.seed))
    }

    /// A checker for the deadline and cancel token of a caption started at `started`.
    pub(crate) fn watchdog(&self, started: Instant) -> Watchdog<'_> {
        Watchdog {
            started,
            deadline: self.deadline,
            cancel: self.cancel.as_ref(),
            also_cancel: self.also_cancel.as_ref(),
        }
    }

    /// These options, also stopped by `token`.
    pub(crate) fn with_also_cancel(mut self, token: CancelToken) -> Self {
        self.also_cancel = Some(token);
        self
    }

    /// Whether a cancel token of these options is cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        [&self.cancel, &self.also_cancel]
            .into_iter()
            .flatten()
            .any(CancelToken::is_cancelled)
    }
}

/// Checks, at safe points of a caption, whether it must stop.
pub(crate) struct Watchdog<'a> {
    started: Instant,
    deadline: Option<Duration>,
    cancel: Option<&'a CancelToken>,
    also_cancel: Option<&'a CancelToken>,
}

impl Watchdog<'_> {
    pub(crate) fn check(&self, stage: Stage) -> Result<(), CaptionError> {
        if [self.cancel, self.also_cancel]
            .into_iter()
            .flatten()
            .any(CancelToken::is_cancelled)
        {
            return Err(CaptionError::Cancelled { stage });
        }
        match self.deadline {
            Some(deadline) if self.started.elapsed() > deadline => {
                Err(CaptionError::DeadlineExceeded { deadline, stage })
            }
            _ => Ok(()),
        }
    }
}
