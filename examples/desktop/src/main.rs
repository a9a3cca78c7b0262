//! A desktop app that captions images without ever blocking its UI thread:
//! open an image (type a path, or drop a file on the window), watch the
//! caption stream in, cancel it, ask follow-up questions about it.
//!
//! ```sh
//! cargo run --release -p smolvlm-desktop -- [--model NAME|model.gguf --mmproj mmproj.gguf] [IMAGE]
//! ```
//!
//! The model loads on a background thread (with a progress bar); captions
//! run on a [`smolvlm::Worker`], whose job events wake the UI through
//! `request_repaint`. The image and its answers form a
//! [`smolvlm::Conversation`]: a follow-up goes to the worker's one session,
//! which still holds the image, so it is answered without encoding it again.
//! `--screenshot FILE` saves the window once the caption (and the
//! `--ask TEXT` follow-up, if given) has finished, then quits
//! (`scripts/desktop-screenshot.sh` runs it under Xvfb).

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;

use eframe::egui;
use smolvlm::{Conversation, Event, Job, Model, ModelFiles, ModelSource, Request, Worker};

/// Command-line settings.
#[derive(Debug, Default)]
struct Args {
    model: Option<String>,
    mmproj: Option<String>,
    image: Option<PathBuf>,
    screenshot: Option<PathBuf>,
    ask: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--model" | "-m" => args.model = Some(value("--model")?),
            "--mmproj" => args.mmproj = Some(value("--mmproj")?),
            "--screenshot" => args.screenshot = Some(PathBuf::from(value("--screenshot")?)),
            "--ask" => args.ask = Some(value("--ask")?),
            "--help" | "-h" => {
                return Err("usage: smolvlm-desktop [--model NAME|FILE --mmproj FILE] [--screenshot OUT.png [--ask FOLLOW-UP]] [IMAGE]".to_owned())
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}")),
            _ => args.image = Some(PathBuf::from(arg)),
        }
    }
    Ok(args)
}

/// Loads the model on a thread of its own, reporting progress.
fn load_in_background(args: &Args, ctx: egui::Context) -> Receiver<Loading> {
    let (tx, rx) = mpsc::channel();
    let (model, mmproj) = (args.model.clone(), args.mmproj.clone());
    std::thread::spawn(move || {
        let files = match (model, mmproj) {
            (Some(model), Some(mmproj)) => Ok(ModelFiles::new(model, mmproj)),
            (name, _) => name
                .as_deref()
                .map_or_else(|| Ok(ModelSource::default()), ModelSource::parse)
                .map_err(smolvlm::Error::from)
                .and_then(|source| source.resolve(&smolvlm::HubOptions::from_env()))
                .map(|resolved| resolved.files),
        };
        let result = files.and_then(|files| {
            let (progress, repaint) = (tx.clone(), ctx.clone());
            Model::load_observed(&files, &smolvlm::LoadOptions::default(), move |done| {
                let _ = progress.send(Loading::Progress(done));
                repaint.request_repaint();
                true
            })
        });
        let _ = tx.send(Loading::Done(result.map_err(|e| e.to_string())));
        ctx.request_repaint();
    });
    rx
}

enum Loading {
    Progress(f32),
    Done(Result<Model, String>),
}

/// The app's state: everything the UI shows, nothing it waits for.
struct App {
    loading: Option<Receiver<Loading>>,
    progress: f32,
    worker: Option<Worker>,
    error: Option<String>,
    path: String,
    picture: Option<egui::TextureHandle>,
    job: Option<Job>,
    /// The image, the questions and the answers so far.
    chat: Conversation,
    /// Earlier questions and answers, shown above the current answer.
    history: Vec<(String, String)>,
    /// The question being answered, and its answer as it streams.
    question: String,
    caption: String,
    follow_up: String,
    status: String,
    /// How far the vision encoder is through the current image, while it runs.
    encoding: Option<f32>,
    screenshot: Option<PathBuf>,
    /// A follow-up to ask once the caption is done (for the screenshot).
    auto_ask: Option<String>,
    shot_requested: bool,
}

impl App {
    fn new(cc: &eframe::CreationContext<'_>, args: Args) -> Self {
        let loading = Some(load_in_background(&args, cc.egui_ctx.clone()));
        Self {
            loading,
            progress: 0.0,
            worker: None,
            error: None,
            path: args
                .image
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            picture: None,
            job: None,
            chat: Conversation::new(),
            history: Vec::new(),
            question: String::new(),
            caption: String::new(),
            follow_up: String::new(),
            status: "loading the model".to_owned(),
            encoding: None,
            screenshot: args.screenshot,
            auto_ask: args.ask,
            shot_requested: false,
        }
    }

    /// Takes what the loader has sent; never waits.
    fn poll_loading(&mut self, ctx: &egui::Context) {
        let Some(rx) = &self.loading else { return };
        while let Ok(message) = rx.try_recv() {
            match message {
                Loading::Progress(done) => self.progress = done,
                Loading::Done(Ok(model)) => {
                    match Worker::new(&model, 1, 4) {
                        Ok(worker) => self.worker = Some(worker),
                        Err(e) => self.error = Some(e.to_string()),
                    }
                    self.loading = None;
                    self.status = "ready".to_owned();
                    if !self.path.is_empty() {
                        self.open(ctx);
                    }
                    return;
                }
                Loading::Done(Err(e)) => {
                    self.error = Some(format!("cannot load the model: {e}"));
                    self.loading = None;
                    return;
                }
            }
        }
    }

    /// Shows the image at `self.path` and starts its caption.
    fn open(&mut self, ctx: &egui::Context) {
        let path = PathBuf::from(self.path.trim());
        match image::open(&path) {
            Ok(img) => {
                let rgb = img.to_rgb8();
                let size = [rgb.width() as usize, rgb.height() as usize];
                let pixels = egui::ColorImage::from_rgb(size, rgb.as_raw());
                self.picture = Some(ctx.load_texture("picture", pixels, Default::default()));
            }
            Err(e) => {
                self.status = format!("cannot show {}: {e}", path.display());
                self.picture = None;
            }
        }
        // A new image starts a new conversation.
        self.chat = Conversation::new();
        self.history.clear();
        self.chat.user([path], "Describe this image.");
        self.question.clear();
        self.submit(ctx);
    }

    /// Asks the follow-up typed below the answer.
    fn ask(&mut self, ctx: &egui::Context, question: String) {
        if question.trim().is_empty() || self.chat.is_empty() || self.job.is_some() {
            return;
        }
        self.history
            .push((std::mem::take(&mut self.question), self.caption.clone()));
        self.chat.user_text(question.trim());
        self.question = question.trim().to_owned();
        self.submit(ctx);
    }

    /// Sends the conversation to the worker: its last turn is answered.
    fn submit(&mut self, ctx: &egui::Context) {
        let Some(worker) = &self.worker else { return };
        let repaint = ctx.clone();
        let request = Request::reply(self.chat.clone())
            .with_options(smolvlm::GenerationOptions::default().with_max_tokens(128))
            .with_notify(move || repaint.request_repaint());
        self.caption.clear();
        match worker.submit(request) {
            // A job still running is dropped, which cancels it.
            Ok(job) => self.job = Some(job),
            Err(e) => self.status = e.to_string(),
        }
    }

    /// Takes the job's events that are ready; never waits.
    fn poll_job(&mut self) {
        let Some(job) = &mut self.job else { return };
        while let Some(event) = job.try_event() {
            match event {
                Event::Queued { .. } => self.status = "queued".to_owned(),
                Event::Started { .. } => self.status = "reading the image".to_owned(),
                Event::Tokenized { tiles, .. } => {
                    self.status = format!("encoding {} tile(s) and the overview", tiles);
                }
                Event::Encoding(at) => {
                    self.status = format!(
                        "encoding image {} of {}: tile {} of {} (the last is the overview), layer {} of {}",
                        at.image, at.images, at.encode, at.encodes, at.layer, at.layers
                    );
                    self.encoding = Some(at.image_fraction());
                }
                Event::Prefilled { encode } => {
                    self.encoding = None;
                    self.status =
                        format!("writing (image encoded in {:.1} s)", encode.as_secs_f64());
                }
                Event::Text(piece) => self.caption.push_str(&piece),
                Event::Finished(caption) => {
                    self.status = format!(
                        "done: {} tokens in {:.1} s{}",
                        caption.tokens.len(),
                        caption.timings.total.as_secs_f64(),
                        if caption.images > 0 && caption.images_encoded == 0 {
                            " (the image was still in the session: not encoded again)"
                        } else {
                            ""
                        }
                    );
                    self.caption = caption.text.trim().to_owned();
                    self.chat.assistant(self.caption.clone());
                }
                Event::Failed(e) => {
                    self.status = format!("failed [{}]: {e}", e.kind());
                    // The unanswered question goes, so the next is not a
                    // second user turn in a row.
                    self.chat.pop();
                }
                _ => {}
            }
            if self.status.starts_with("done") || self.status.starts_with("failed") {
                self.encoding = None;
                self.job = None;
                return;
            }
        }
    }

    /// With --screenshot: once a caption is done, save the window and quit.
    fn maybe_screenshot(&mut self, ctx: &egui::Context) {
        let Some(path) = self.screenshot.clone() else {
            return;
        };
        if self.shot_requested || !(self.status.starts_with("done") || self.error.is_some()) {
            return;
        }
        if let Some(question) = self.auto_ask.take() {
            if self.error.is_none() {
                self.ask(ctx, question);
                return;
            }
        }
        self.shot_requested = true;
        let quit = ctx.clone();
        ctx.request_screenshot(move |shot: Arc<egui::ColorImage>| {
            let [w, h] = shot.size;
            let rgba: Vec<u8> = shot.pixels.iter().flat_map(|c| c.to_array()).collect();
            match image::RgbaImage::from_raw(w as u32, h as u32, rgba).map(|img| img.save(&path)) {
                Some(Ok(())) => eprintln!("screenshot saved to {}", path.display()),
                Some(Err(e)) => eprintln!("cannot save {}: {e}", path.display()),
                None => eprintln!("the screenshot has no pixels"),
            }
            quit.send_viewport_cmd(egui::ViewportCommand::Close);
            quit.request_repaint();
        });
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.poll_loading(&ctx);
        self.poll_job();
        // A file dropped on the window opens like a typed path.
        let dropped = ctx.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(path) = dropped {
            self.path = path.display().to_string();
            self.open(&ctx);
        }

        egui::CentralPanel::default().show(ui, |ui| {
            ui.heading("smolvlm: caption an image");
            if let Some(error) = &self.error {
                ui.colored_label(egui::Color32::RED, error);
            }
            if self.loading.is_some() {
                ui.add(egui::ProgressBar::new(self.progress).text("loading the model"));
            }
            ui.horizontal(|ui| {
                ui.label("Image:");
                let field = ui.text_edit_singleline(&mut self.path);
                let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                let ready = self.worker.is_some();
                if (ui
                    .add_enabled(ready, egui::Button::new("Caption"))
                    .clicked()
                    || enter)
                    && ready
                {
                    self.open(&ctx);
                }
                if ui
                    .add_enabled(self.job.is_some(), egui::Button::new("Cancel"))
                    .clicked()
                {
                    if let Some(job) = &self.job {
                        job.cancel();
                    }
                }
            });
            ui.label("…or drop an image file on this window.");
            ui.separator();
            for (question, answer) in &self.history {
                if !question.is_empty() {
                    ui.label(egui::RichText::new(format!("> {question}")).italics());
                }
                ui.label(answer);
            }
            if !self.question.is_empty() {
                ui.label(egui::RichText::new(format!("> {}", self.question)).italics());
            }
            ui.label(egui::RichText::new(&self.caption).size(18.0));
            if let Some(done) = self.encoding {
                ui.add(egui::ProgressBar::new(done).text("encoding the image"));
            }
            ui.small(&self.status);
            ui.horizontal(|ui| {
                ui.label("Follow-up:");
                let field = ui.text_edit_singleline(&mut self.follow_up);
                let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                let can_ask = self.job.is_none() && !self.chat.is_empty();
                if (ui.add_enabled(can_ask, egui::Button::new("Ask")).clicked() || enter) && can_ask
                {
                    let question = std::mem::take(&mut self.follow_up);
                    self.ask(&ctx, question);
                }
            });
            if let Some(picture) = &self.picture {
                ui.add(egui::Image::new(picture).max_size(egui::vec2(560.0, 360.0)));
            }
        });
        self.maybe_screenshot(&ctx);
    }
}

fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([640.0, 560.0]),
        ..Default::default()
    };
    let result = eframe::run_native(
        "smolvlm",
        options,
        Box::new(move |cc| Ok(Box::new(App::new(cc, args)))),
    );
    if let Err(e) = result {
        eprintln!("cannot open a window: {e}");
        std::process::exit(1);
    }
}
