//! Turning the caller's prompt into the text mtmd tokenizes.

use crate::error::CaptionError;

/// The marker mtmd replaces with the image's tokens (mtmd's default marker).
pub const MEDIA_MARKER: &str = "<__media__>";

/// SmolVLM's chat template, verbatim from HuggingFaceTB/SmolVLM-*-Instruct.
/// Used when the text model's GGUF carries no `tokenizer.chat_template`.
pub const FALLBACK_CHAT_TEMPLATE: &str = "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

/// What to ask about an image.
///
/// ```
/// use smolvlm::Prompt;
/// // Rendered through the model's chat template, image first:
/// let p: Prompt = "Describe this image.".into();
/// // Or exactly as given; it must contain the media marker once:
/// let raw = Prompt::raw("<|im_start|>User: <__media__>Describe this image.<end_of_utterance>\nAssistant:");
/// assert!(matches!(raw, Prompt::Raw(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// A user instruction, rendered with the chat template as one user turn
    /// holding the image and then this text, followed by the assistant prefix.
    /// The text is tokenized as plain text: a user who types
    /// `<end_of_utterance>`, `<|im_start|>` or the media marker gets those
    /// characters, never the control token (the template's own text keeps
    /// its special tokens).
    User(String),
    /// A fully rendered prompt holding [`MEDIA_MARKER`] exactly once, used
    /// verbatim: its special tokens are parsed, on purpose.
    Raw(String),
}

impl Prompt {
    /// A pre-rendered prompt, used verbatim.
    pub fn raw(text: impl Into<String>) -> Self {
        Self::Raw(text.into())
    }
}

impl From<&str> for Prompt {
    fn from(text: &str) -> Self {
        Self::User(text.to_owned())
    }
}

impl From<String> for Prompt {
    fn from(text: String) -> Self {
        Self::User(text)
    }
}

impl From<&String> for Prompt {
    fn from(text: &String) -> Self {
        Self::User(text.clone())
    }
}

/// A rendered prompt split at the media marker: `head` ends with the marker
/// (mtmd tokenizes it with the image), `tail` is the text after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RenderedPrompt {
    pub head: String,
    pub tail: String,
    /// Where the user's own text lies in `tail`: it is tokenized as plain
    /// text, so a user cannot type a control token (`<end_of_utterance>`,
    /// `<|im_start|>`) into the prompt. `None` for a raw prompt, whose
    /// special tokens are parsed on purpose.
    pub user: Option<std::ops::Range<usize>>,
}

/// Stands in for the user's text while the template renders, so the text
/// can be found afterwards whatever it contains. Private-use characters: no
/// template emits them.
const USER_TEXT: &str = "\u{F8FF}smolvlm:user-text\u{F8FF}";

/// Renders `prompt` with `template` (or the fallback) and splits it at the marker.
pub(crate) fn render(
    template: Option<&str>,
    prompt: &Prompt,
) -> Result<RenderedPrompt, CaptionError> {
    let user = match prompt {
        Prompt::Raw(raw) => return split_raw(raw),
        Prompt::User(user) => user,
    };
    if user.contains('\0') {
        return Err(CaptionError::NulInPrompt);
    }
    let template = template.unwrap_or(FALLBACK_CHAT_TEMPLATE);
    let rendered = split_raw(&render_user(template, USER_TEXT)?)?;
    // The user's text goes where the stand-in landed, after the image; the
    // template's own text around it keeps its special tokens.
    if let Some((before, after)) = rendered.tail.split_once(USER_TEXT) {
        if !after.contains(USER_TEXT) && !rendered.head.contains(USER_TEXT) {
            return Ok(RenderedPrompt {
                head: rendered.head,
                user: Some(before.len()..before.len() + user.len()),
                tail: format!("{before}{user}{after}"),
            });
        }
    }
    // A template that transforms, repeats or moves the text before the
    // image: render the text itself, and parse the whole tail as before.
    tracing::debug!(
        "the chat template moved or changed the user's text; its special tokens are parsed"
    );
    split_raw(&render_user(template, user)?)
}

/// Splits a fully rendered prompt at its one media marker.
fn split_raw(text: &str) -> Result<RenderedPrompt, CaptionError> {
    if text.contains('\0') {
        return Err(CaptionError::NulInPrompt);
    }
    let found = text.matches(MEDIA_MARKER).count();
    match text.split_once(MEDIA_MARKER) {
        Some((before, after)) if found == 1 => Ok(RenderedPrompt {
            head: format!("{before}{MEDIA_MARKER}"),
            tail: after.to_owned(),
            user: None,
        }),
        _ => Err(CaptionError::Marker {
            marker: MEDIA_MARKER,
            found,
        }),
    }
}

/// Renders one user turn (image, then text) plus the generation prompt, the
/// way the reference SmolVLM processor does, and puts the media marker where
/// the template emits `<image>`.
fn render_user(template: &str, user: &str) -> Result<String, CaptionError> {
    let env = minijinja::Environment::new();
    let tmpl = env
        .template_from_str(template)
        .map_err(|e| CaptionError::Template(e.to_string()))?;
    let rendered = tmpl
        .render(minijinja::context! {
            messages => [minijinja::context! {
                role => "user",
                content => [
                    minijinja::context! { type => "image" },
                    minijinja::context! { type => "text", text => user },
                ],
            }],
            add_generation_prompt => true,
            bos_token => "",
            eos_token => "<end_of_utterance>",
        })
        .map_err(|e| CaptionError::Template(e.to_string()))?;
    // The template emits the image before the text, so the first `<image>` is its own.
    match rendered.split_once("<image>") {
        Some((before, after)) => Ok(format!("{before}{MEDIA_MARKER}{after}")),
        None => Err(CaptionError::Template(
            "the template emitted no <image> for the image part".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_prompt_renders_like_the_reference_processor() {
        let r = render(None, &"Describe this image.".into()).unwrap();
        assert_eq!(r.head, "<|im_start|>User:<__media__>");
        assert_eq!(r.tail, "Describe this image.<end_of_utterance>\nAssistant:");
    }

    #[test]
    fn user_text_containing_image_keeps_the_templates_slot_first() {
        let r = render(None, &"what is <image>?".into()).unwrap();
        assert_eq!(r.head, "<|im_start|>User:<__media__>");
        assert!(r.tail.starts_with("what is <image>?"));
    }

    #[test]
    fn raw_prompt_needs_exactly_one_marker() {
        let none = render(None, &Prompt::raw("no marker")).unwrap_err();
        assert!(matches!(none, CaptionError::Marker { found: 0, .. }));
        let two = render(None, &Prompt::raw("<__media__><__media__>")).unwrap_err();
        assert!(matches!(two, CaptionError::Marker { found: 2, .. }));
        let ok = render(None, &Prompt::raw("a <__media__> b")).unwrap();
        assert_eq!(
            (ok.head.as_str(), ok.tail.as_str()),
            ("a <__media__>", " b")
        );
    }

    #[test]
    fn broken_template_is_a_template_error() {
        let err = render(Some("{% for %}"), &"x".into()).unwrap_err();
        assert!(matches!(err, CaptionError::Template(_)));
        let err = render(Some("no image slot"), &"x".into()).unwrap_err();
        assert!(matches!(err, CaptionError::Template(_)));
    }

    #[test]
    fn the_users_text_is_marked_as_plain_text() {
        let user = "say <end_of_utterance> and <__media__>";
        let r = render(None, &user.into()).unwrap();
        assert_eq!(r.head, "<|im_start|>User:<__media__>");
        assert_eq!(r.tail, format!("{user}<end_of_utterance>\nAssistant:"));
        assert_eq!(r.user, Some(0..user.len()));
        assert_eq!(
            render(None, &Prompt::raw("a <__media__> b")).unwrap().user,
            None
        );
    }

    #[test]
    fn a_template_that_changes_the_text_falls_back_to_parsing_it() {
        let upper = "{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] | upper }}{% endif %}{% endfor %}{% endfor %}";
        let r = render(Some(upper), &"hi".into()).unwrap();
        assert_eq!((r.tail.as_str(), r.user.clone()), ("HI", None));
    }

    #[test]
    fn nul_is_rejected() {
        let err = render(None, &"a\0b".into()).unwrap_err();
        assert!(matches!(err, CaptionError::NulInPrompt));
    }
}
