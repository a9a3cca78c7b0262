//! Conversations: turns of text with any number of images, answered one
//! after another by a [`Session`](crate::Session) that keeps them in its KV
//! cache.

use std::sync::{Arc, Mutex, PoisonError};

use crate::error::CaptionError;
use crate::image::{ImageOptions, VisionParams};
use crate::prompt::{render_messages, RenderMessage, RenderPart, Segment};
use crate::session::{ImageKey, Media, VideoPlan};
use crate::video::Video;
use crate::worker::JobImage;

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// Instructions before the exchange.
    System,
    /// The person asking.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role's name in chat templates.
    fn name(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One piece of a turn.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Part {
    /// Text, tokenized as plain text: typed control tokens stay characters.
    Text(String),
    /// An image, read (and prepared for the model) when it is first needed.
    Image(JobImage),
    /// A video: frames sampled as SmolVLM2's processor samples them, chosen
    /// when it is first needed and kept for the follow-ups.
    Video(Video),
}

/// One turn: who speaks, and what, in order.
///
/// ```
/// use smolvlm::{Message, Role};
/// let turn = Message::user()
///     .image(std::path::PathBuf::from("left.jpg"))
///     .image(std::path::PathBuf::from("right.jpg"))
///     .text("Which one is older?");
/// assert_eq!(turn.role(), Role::User);
/// assert_eq!(turn.parts().len(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct Message {
    role: Role,
    parts: Vec<Part>,
}

impl Message {
    /// An empty turn of `role`.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            parts: Vec::new(),
        }
    }

    /// An empty user turn.
    pub fn user() -> Self {
        Self::new(Role::User)
    }

    /// An assistant turn holding `text` (an earlier answer).
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::new(Role::Assistant).text(text)
    }

    /// A system turn holding `text`.
    pub fn system(text: impl Into<String>) -> Self {
        Self::new(Role::System).text(text)
    }

    /// Adds text.
    #[must_use]
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.parts.push(Part::Text(text.into()));
        self
    }

    /// Adds an image.
    #[must_use]
    pub fn image(mut self, image: impl Into<JobImage>) -> Self {
        self.parts.push(Part::Image(image.into()));
        self
    }

    /// Adds a video.
    #[must_use]
    pub fn video(mut self, video: Video) -> Self {
        self.parts.push(Part::Video(video));
        self
    }

    /// Who speaks.
    pub fn role(&self) -> Role {
        self.role
    }

    /// What is said, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Images and videos.
    fn media(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| !matches!(p, Part::Text(_)))
            .count()
    }
}

/// How an image was shaped for a model: a key computed under other settings
/// is not trusted.
pub(crate) type Shaping = (ImageOptions, VisionParams);

/// What is known of one image or video of a conversation: the key of an
/// image's prepared pixels, or the frames a video showed and their keys,
/// under the shaping it was computed with. Shared by the conversation's
/// clones, so what one learns (a worker's copy) serves them all.
type KeySlot = Arc<Mutex<Option<(Shaping, Learned)>>>;

/// What a reply learned of one medium.
#[derive(Debug, Clone)]
enum Learned {
    Image(ImageKey),
    Video(Arc<VideoPlan>),
}

/// A multi-turn exchange about any number of images, rendered with the
/// model's chat template as the reference SmolVLM processor renders it.
///
/// [`Session::reply`](crate::Session::reply) answers its last user turn and
/// appends the answer. The session keeps the exchange in its KV cache, so a
/// follow-up evaluates only its own turn: the images are not encoded again.
/// The conversation keeps, for each image, a SHA-256 of its prepared pixels,
/// so a follow-up does not read or prepare the images again either; its
/// clones share what it learns (a clone sent to a [`Worker`](crate::Worker)
/// teaches the app's copy). An image is what it was when first read: when a
/// session no longer holds it and must read it again, the pixels are checked
/// against that hash, and an image whose file changed since is refused with
/// [`ImageError::Changed`](crate::ImageError::Changed) rather than answered
/// about as if it were the same.
///
/// ```no_run
/// # let model: smolvlm::Model = unimplemented!();
/// use smolvlm::{Conversation, GenerationOptions};
/// let mut session = model.session()?;
/// let mut chat = Conversation::new();
/// chat.user([std::path::PathBuf::from("kitchen.jpg")], "What is on the table?");
/// println!("{}", session.reply(&mut chat, &GenerationOptions::default())?.text);
/// chat.user_text("And on the wall?");
/// println!("{}", session.reply(&mut chat, &GenerationOptions::default())?.text);
/// # Ok::<(), smolvlm::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    messages: Vec<Message>,
    /// For each image, in order: its key, and the shaping it was computed
    /// under.
    keys: Vec<KeySlot>,
}

impl Conversation {
    /// An empty conversation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a turn.
    pub fn push(&mut self, message: Message) -> &mut Self {
        self.keys
            .extend((0..message.media()).map(|_| KeySlot::default()));
        self.messages.push(message);
        self
    }

    /// Appends a user turn: the images, then the text (SmolVLM's order).
    pub fn user<I: Into<JobImage>>(
        &mut self,
        images: impl IntoIterator<Item = I>,
        text: impl Into<String>,
    ) -> &mut Self {
        let mut message = Message::user();
        for image in images {
            message = message.image(image);
        }
        self.push(message.text(text))
    }

    /// Appends a user turn of text alone: a follow-up.
    pub fn user_text(&mut self, text: impl Into<String>) -> &mut Self {
        self.push(Message::user().text(text))
    }

    /// Appends an assistant turn (an answer from elsewhere, or an example).
    pub fn assistant(&mut self, text: impl Into<String>) -> &mut Self {
        self.push(Message::assistant(text))
    }

    /// Appends a system turn.
    pub fn system(&mut self, text: impl Into<String>) -> &mut Self {
        self.push(Message::system(text))
    }

    /// Removes the last turn (to ask again, say).
    pub fn pop(&mut self) -> Option<Message> {
        let message = self.messages.pop()?;
        self.keys.truncate(self.keys.len() - message.media());
        Some(message)
    }

    /// Removes every turn.
    pub fn clear(&mut self) {
        self.messages.clear();
        self.keys.clear();
    }

    /// The turns, in order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The number of turns.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether there is no turn.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The number of images in all turns.
    pub fn images(&self) -> usize {
        self.keys.len()
    }

    /// Whether the last turn is one to answer.
    pub(crate) fn awaits_reply(&self) -> bool {
        self.messages
            .last()
            .is_some_and(|m| m.role != Role::Assistant)
    }

    /// The whole exchange through the chat template, with the generation
    /// prompt; images are numbered in order.
    pub(crate) fn render(&self, template: Option<&str>) -> Result<Vec<Segment>, CaptionError> {
        let mut next = 0;
        let messages: Vec<RenderMessage<'_>> = self
            .messages
            .iter()
            .map(|m| RenderMessage {
                role: m.role.name(),
                parts: m
                    .parts
                    .iter()
                    .map(|part| match part {
                        Part::Text(text) => RenderPart::Text(text),
                        Part::Image(_) => {
                            next += 1;
                            RenderPart::Image(next - 1)
                        }
                        Part::Video(_) => {
                            next += 1;
                            RenderPart::Video(next - 1)
                        }
                    })
                    .collect(),
            })
            .collect();
        render_messages(template, &messages, true)
    }

    /// The images and videos in order, with what is known of them for
    /// `shaping`.
    pub(crate) fn media(&self, shaping: &Shaping) -> Vec<Media<'_>> {
        self.messages
            .iter()
            .flat_map(|m| &m.parts)
            .filter(|part| !matches!(part, Part::Text(_)))
            .zip(&self.keys)
            .filter_map(|(part, slot)| {
                let known = slot
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                    .filter(|(s, _)| s == shaping)
                    .map(|(_, learned)| learned.clone());
                let mut media = match part {
                    Part::Image(image) => Media::new(image.input()),
                    Part::Video(video) => Media::video(video),
                    Part::Text(_) => return None,
                };
                match known {
                    Some(Learned::Image(key)) => media.key = Some(key),
                    Some(Learned::Video(plan)) => media.plan = Some(plan),
                    None => {}
                }
                Some(media)
            })
            .collect()
    }

    /// Keeps what a reply learned of the media (an image's key, a video's
    /// frames), for this conversation and its clones.
    pub(crate) fn remember(
        &self,
        shaping: &Shaping,
        learned: &[(Option<ImageKey>, Option<Arc<VideoPlan>>)],
    ) {
        for (slot, (key, plan)) in self.keys.iter().zip(learned) {
            let learned = match (key, plan) {
                (_, Some(plan)) if !plan.keys.is_empty() => Learned::Video(Arc::clone(plan)),
                (Some(key), _) => Learned::Image(*key),
                _ => continue,
            };
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some((shaping.clone(), learned));
        }
    }
}
