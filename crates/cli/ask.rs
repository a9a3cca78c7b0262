//! `smolvlm ask` (one answer about images, streamed) and `smolvlm chat` (an
//! interactive conversation in the terminal).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use smolvlm::{
    CancelToken, Caption, CaptionError, Conversation, Error, GenerationOptions, ImageInput,
    Message, Prompt, Session,
};

use crate::args::{AnswerArgs, AskArgs, ChatArgs};
use crate::exit::Exit;
use crate::model::ModelSettings;
use crate::records::Captioned;

/// The record `ask -o FILE` writes: the caption record's fields, with the
/// images (or the video) and the prompt instead of one path.
#[derive(Serialize)]
struct AskRecord<'a> {
    images: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video: Option<String>,
    prompt: &'a str,
    #[serde(flatten)]
    answer: serde_json::Value,
}

/// Runs `smolvlm ask`.
pub fn ask(args: &AskArgs) -> Exit {
    let (mut session, options) = match start(&args.answer, args.video.is_some()) {
        Ok(started) => started,
        Err(message) => return Exit::usage(&message),
    };
    let prompt = match &args.raw_prompt {
        Some(raw) => Prompt::raw(raw.replace("\\n", "\n")),
        None => Prompt::from(args.prompt.clone().unwrap_or_default()),
    };
    let cancel = CancelToken::new();
    let on_signal = cancel.clone();
    if let Err(e) = ctrlc::set_handler(move || on_signal.cancel()) {
        tracing::warn!("cannot handle Ctrl-C: {e}");
    }
    let options = options.with_cancel(cancel);
    let answer = match &args.video {
        Some(path) => match args.open_video(path) {
            Ok(video) => session.ask_video_observed(&video, prompt.clone(), &options, print_text()),
            Err(message) => return Exit::usage(&message),
        },
        None => {
            let images: Vec<ImageInput<'_>> =
                args.images.iter().map(|p| p.as_path().into()).collect();
            session.ask_observed(&images, prompt.clone(), &options, print_text())
        }
    };
    println!();
    match answer {
        Ok(caption) => match &args.output {
            Some(path) => match write_record(path, args, &prompt, &caption) {
                Ok(()) => Exit::Success,
                Err(message) => Exit::usage(&message),
            },
            None => Exit::Success,
        },
        Err(Error::Caption(CaptionError::Cancelled { .. })) => Exit::Interrupted,
        Err(e) => {
            eprintln!("smolvlm: {e}");
            Exit::Failures
        }
    }
}

/// Resolves and loads the model, and opens the session that answers:
/// everything `ask` and `chat` do before the first question.
///
/// # Errors
///
/// A message naming the bad flag, file or model.
fn start(args: &AnswerArgs, video: bool) -> Result<(Session, GenerationOptions), String> {
    let mut settings = ModelSettings::resolve(&args.model, 1, args.timeout, args.smart_crop)?;
    if video {
        settings.for_video(&args.model);
    }
    for warning in &settings.warnings {
        eprintln!("smolvlm: warning: {warning}");
    }
    let options = crate::settings::generation(&args.generation, &settings)?;
    // The session keeps the model alive.
    let mut session = settings.load()?.session().map_err(|e| e.to_string())?;
    session.set_image_options(settings.image.clone());
    Ok((session, options))
}

/// Prints each piece of text as it comes.
fn print_text() -> impl FnMut(smolvlm::Progress<'_>) {
    |progress| {
        if let smolvlm::Progress::Text(piece) = progress {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
    }
}

fn write_record(
    path: &Path,
    args: &AskArgs,
    prompt: &Prompt,
    caption: &Caption,
) -> Result<(), String> {
    let text = |p: &PathBuf| p.to_string_lossy().into_owned();
    let prompt = match prompt {
        Prompt::User(text) | Prompt::Raw(text) => text.as_str(),
    };
    let answer = crate::records::caption_json(&Captioned::from_caption(caption));
    let record = AskRecord {
        images: args.images.iter().map(text).collect(),
        video: args.video.as_ref().map(text),
        prompt,
        answer,
    };
    let mut line = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    line.push(b'\n');
    std::fs::write(path, line).map_err(|e| format!("cannot write '{}': {e}", path.display()))
}

/// What `chat` prints for `/help`.
const CHAT_HELP: &str = "Type a message and press Enter. Commands:
  /image FILE   attach an image to your next message (repeatable)
  /reset        start a new conversation
  /help         this text
  /quit         leave (or Ctrl-D)
Ctrl-C stops an answer; the conversation goes on without it.";

/// Runs `smolvlm chat`.
pub fn chat(args: &ChatArgs) -> Exit {
    let (mut session, options) = match start(&args.answer, false) {
        Ok(started) => started,
        Err(message) => return Exit::usage(&message),
    };
    // Ctrl-C cancels the answer in progress (the token of the moment), and
    // only that.
    let current = Arc::new(Mutex::new(CancelToken::new()));
    let on_signal = Arc::clone(&current);
    if let Err(e) = ctrlc::set_handler(move || {
        on_signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel();
    }) {
        tracing::warn!("cannot handle Ctrl-C: {e}");
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("{CHAT_HELP}");
    }
    let new_conversation = || {
        let mut chat = Conversation::new();
        if let Some(system) = &args.system {
            chat.system(system.clone());
        }
        chat
    };
    let mut chat = new_conversation();
    let mut pending: Vec<PathBuf> = args.images.clone();
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    loop {
        if interactive {
            eprint!("> ");
        }
        line.clear();
        match stdin.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("smolvlm: cannot read stdin: {e}");
                return Exit::Usage;
            }
        }
        let text = line.trim_end_matches(['\n', '\r']);
        match command(text) {
            Some(("/quit" | "/exit", _)) => break,
            Some(("/help", _)) => eprintln!("{CHAT_HELP}"),
            Some(("/reset", _)) => {
                chat = new_conversation();
                pending.clear();
                session.forget();
                eprintln!("(new conversation)");
            }
            Some(("/image", path)) if !path.is_empty() => {
                let path = PathBuf::from(path);
                if path.is_file() {
                    eprintln!("(image {} attached to your next message)", path.display());
                    pending.push(path);
                } else {
                    eprintln!("smolvlm: no such file: {}", path.display());
                }
            }
            Some((other, _)) => eprintln!("smolvlm: unknown command {other}; /help lists them"),
            None if text.trim().is_empty() => {}
            None => {
                let mut turn = Message::user();
                for image in pending.drain(..) {
                    turn = turn.image(image);
                }
                chat.push(turn.text(text));
                let token = CancelToken::new();
                *current.lock().unwrap_or_else(PoisonError::into_inner) = token.clone();
                let options = options.clone().with_cancel(token);
                let answer = session.reply_observed(&mut chat, &options, print_text());
                println!();
                if let Err(e) = answer {
                    // The turn goes, so the next message is not a second
                    // user turn in a row.
                    chat.pop();
                    match e {
                        Error::Caption(CaptionError::Cancelled { .. }) => eprintln!("(stopped)"),
                        e => eprintln!("smolvlm: {e}"),
                    }
                }
            }
        }
    }
    Exit::Success
}

/// A `/command` and its argument.
fn command(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if !line.starts_with('/') {
        return None;
    }
    Some(match line.split_once(char::is_whitespace) {
        Some((name, rest)) => (name, rest.trim()),
        None => (line, ""),
    })
}
