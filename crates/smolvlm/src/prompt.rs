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
    User(String),
    /// A fully rendered prompt holding [`MEDIA_MARKER`] exactly once, used verbatim.
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
}

/// Renders `prompt` with `template` (or the fallback) and splits it at the marker.
pub(crate) fn render(
    template: Option<&str>,
    prompt: &Prompt,
) -> Result<RenderedPrompt, CaptionError> {
    let text = match prompt {
        Prompt::Raw(raw) => raw.clone(),
        Prompt::User(user) => render_user(template.unwrap_or(FALLBACK_CHAT_TEMPLATE), user)?,
    };
    if text.contains('\0') {
        return Err(CaptionError::NulInPrompt);
    }
    let found = text.matches(MEDIA_MARKER).count();
    match text.split_once(MEDIA_MARKER) {
        Some((before, after)) if found == 1 => Ok(RenderedPrompt {
            head: format!("{before}{MEDIA_MARKER}"),
            tail: after.to_owned(),
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
    fn nul_is_rejected() {
        let err = render(None, &"a\0b".into()).unwrap_err();
        assert!(matches!(err, CaptionError::NulInPrompt));
    }
}
