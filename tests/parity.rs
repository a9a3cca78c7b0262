//! Token-level parity with llama.cpp's own `llama-mtmd-cli`.
//!
//! Runs the tool built from the llama.cpp tree that our crate vendors
//! (`scripts/build-mtmd-cli.sh`) greedily on the tiny model pair, for 1 and 2
//! threads, and compares our captions of the same images. Ignored in a plain
//! `cargo test` (the binary takes 4 minutes to build); CI runs it with
//! `-- --ignored` and `SMOLVLM_MTMD_CLI` set, and it fails without the binary.
//!
//! - With [`ImageOptions::with_presize`]`(false)` the library hands mtmd the
//!   image as decoded, as `llama-mtmd-cli` does: text, prompt tokens and
//!   generated tokens must be the same for every image.
//! - By default the library resizes the image to its tile grid itself
//!   (`fast_image_resize` Lanczos3, one pass), where mtmd resizes twice
//!   (to the longest edge, then stretched to the grid) with its own
//!   Pillow-style Lanczos (`img_tool::resize` in tools/mtmd/mtmd-image.cpp).
//!   The pixels differ, so the captions may too: they must match only for
//!   images already at their planned size, where neither side resizes (the
//!   `smolvlm` binary is checked on those); for the others the test prints
//!   whether they match.
//!
//! `llama-mtmd-cli -p "Describe this image." --image I` renders
//! [`MTMD_CLI_PROMPT`] (the image marker first), so we caption with that raw
//! prompt. Its stdout is only the `LOG()` output, the rest goes to stderr:
//! `$MTMD_TEST_RESPONSE_MARKER\n` (when that variable is set), `\n` once the
//! prompt is evaluated, each generated piece, then `\n\n` at exit (plus one
//! more `\n` before it if generation stopped at an end-of-generation token).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::RgbImage;
use smolvlm::image::ImageOptions;
use smolvlm::{Caption, FinishReason, LoadOptions, Model, Prompt};
use smolvlm_testkit::images::{gradient, noise, write_png};

use crate::util::{files, greedy, load, model, TempDir, MAX_TOKENS, MTMD_CLI_PROMPT};

/// Path of the `llama-mtmd-cli` binary to compare with.
const ENV: &str = "SMOLVLM_MTMD_CLI";

/// What `llama-mtmd-cli` prints on stdout before the response when
/// `MTMD_TEST_RESPONSE_MARKER` is set (a hook it has for tests).
const MARKER: &str = "<<smolvlm-parity-response>>";

/// The reference binary. The test that needs it is ignored unless asked for
/// (`-- --ignored`), and then a missing binary fails it: a parity check that
/// did not run must not pass.
fn mtmd_cli() -> PathBuf {
    match std::env::var_os(ENV) {
        Some(path) if !path.is_empty() && Path::new(&path).is_file() => PathBuf::from(path),
        other => panic!(
            "{ENV} is {other:?}: build llama-mtmd-cli with scripts/build-mtmd-cli.sh and set \
             {ENV} to the path it prints"
        ),
    }
}

/// Plain RGB images of several sizes and aspect ratios: mtmd-cli reads files
/// with stb_image as 3 channels, so RGB PNGs reach both sides unchanged. The
/// last two are already at their planned size (256x192: a 4x3 grid of 64-px
/// tiles; 128x256: 2x4), so neither side resizes them.
fn images() -> Vec<(&'static str, RgbImage)> {
    vec![
        ("gradient-640x480", gradient(640, 480)),
        ("noise-640x480", noise(640, 480, 7)),
        ("gradient-300x900", gradient(300, 900)),
        ("noise-1000x200", noise(1000, 200, 3)),
        ("noise-256x192", noise(256, 192, 11)),
        ("gradient-128x256", gradient(128, 256)),
    ]
}

fn dump(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{:?}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What one `llama-mtmd-cli` run produced.
#[derive(Debug)]
struct Reference {
    /// Exactly the generated text.
    text: String,
    /// Prompt tokens it evaluated, image tokens included.
    prompt_tokens: usize,
    /// Tokens it decoded after the prompt: one fewer than it generated, since
    /// the last one is never fed back.
    runs: usize,
}

/// How often to run `llama-mtmd-cli` when its output comes back cut short.
///
/// Its log goes through an asynchronous worker thread that it never flushes
/// before `main` returns (the logger is leaked on purpose, `common_log_main`
/// in common/log.cpp), so about one run in ten loses the tail of its stdout
/// and stderr. Only complete runs are compared.
const ATTEMPTS: usize = 10;

/// Runs `llama-mtmd-cli` greedily on one image.
fn mtmd_cli_caption(bin: &Path, image: &Path, threads: u32) -> Reference {
    mtmd_cli_answer(bin, &[image], threads)
}

/// Runs `llama-mtmd-cli` greedily on images given by one `--image` each.
fn mtmd_cli_answer(bin: &Path, images: &[&Path], threads: u32) -> Reference {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let out = run_mtmd_cli(bin, images, threads);
        if let Some(reference) = parse(&out) {
            return reference;
        }
        eprintln!("llama-mtmd-cli output cut short, running it again");
        last = Some(out);
    }
    let out = last.unwrap();
    panic!(
        "llama-mtmd-cli output incomplete in {ATTEMPTS} runs; the last:\n{}",
        dump(&out)
    );
}

fn run_mtmd_cli(bin: &Path, images: &[&Path], threads: u32) -> Output {
    let f = files();
    let (threads, max_tokens) = (threads.to_string(), MAX_TOKENS.to_string());
    let mut args: Vec<&OsStr> = vec![
        "-m".as_ref(),
        f.model.as_os_str(),
        "--mmproj".as_ref(),
        f.mmproj.as_os_str(),
    ];
    for image in images {
        args.extend(["--image".as_ref(), image.as_os_str()]);
    }
    args.extend::<[&OsStr; 12]>([
        "-p".as_ref(),
        "Describe this image.".as_ref(),
        "-n".as_ref(),
        max_tokens.as_ref(),
        "--temp".as_ref(),
        "0".as_ref(),
        "--seed".as_ref(),
        "1".as_ref(),
        "-t".as_ref(),
        threads.as_ref(),
        // Verbosity "trace": llama.cpp's info messages, among them the
        // timings printed last, without the debug flood.
        "-lv".as_ref(),
        "4".as_ref(),
    ]);
    // No inherited LLAMA_ARG_* (read as defaults by llama.cpp's argument
    // parser), OMP_* or HF_* variables.
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .env("MTMD_TEST_RESPONSE_MARKER", MARKER)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {ENV}={}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "llama-mtmd-cli failed\n{}",
        dump(&out)
    );
    out
}

/// The generated text and counts, or `None` if the output is cut short.
///
/// The timings are the last lines the logger queues, after the response's
/// closing `\n\n`, and one thread prints stdout and stderr in queue order:
/// once they are on stderr, stdout is complete.
fn parse(out: &Output) -> Option<Reference> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let perf = |label: &str, unit: &str| -> Option<usize> {
        stderr.lines().find_map(|line| {
            let (_, rest) = line.split_once("llama_perf_context_print:")?;
            let rest = rest.trim_start().strip_prefix(label)?;
            let (_, count) = rest.trim_start().strip_prefix('=')?.split_once('/')?;
            let mut words = count.split_whitespace();
            let n = words.next()?.parse().ok()?;
            (words.next()? == unit).then_some(n)
        })
    };
    if !stderr.contains("llama_perf_context_print:    graphs reused") {
        return None;
    }
    let stdout = String::from_utf8(out.stdout.clone()).ok()?;
    // MARKER "\n", "\n" once the prompt is in, the response, "\n\n" at exit.
    let text = stdout
        .split_once(&format!("{MARKER}\n\n"))
        .and_then(|(_, rest)| rest.strip_suffix("\n\n"));
    let (Some(text), Some(prompt_tokens), Some(runs)) = (
        text,
        perf("prompt eval time", "tokens"),
        perf("eval time", "runs"),
    ) else {
        panic!("unexpected llama-mtmd-cli output\n{}", dump(out));
    };
    Some(Reference {
        text: text.to_owned(),
        prompt_tokens,
        runs,
    })
}

/// The `smolvlm` binary's caption of one image with mtmd-cli's prompt.
fn smolvlm_cli_caption(image: &Path, threads: u32) -> String {
    let f = files();
    let (threads, max_tokens) = (threads.to_string(), MAX_TOKENS.to_string());
    // The CLI turns a literal `\n` into a newline.
    let raw_prompt = MTMD_CLI_PROMPT.replace('\n', "\\n");
    let args: [&OsStr; 12] = [
        "caption".as_ref(),
        image.as_os_str(),
        "--model".as_ref(),
        f.model.as_os_str(),
        "--mmproj".as_ref(),
        f.mmproj.as_os_str(),
        "--threads".as_ref(),
        threads.as_ref(),
        "-n".as_ref(),
        max_tokens.as_ref(),
        "--raw-prompt".as_ref(),
        raw_prompt.as_ref(),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_smolvlm"))
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "smolvlm failed\n{}", dump(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    // One image: the caption, trimmed, and a newline.
    stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned()
}

fn library_caption(model: &Model, image: &RgbImage, presize: bool) -> Caption {
    let mut session = model.session().unwrap();
    session.set_image_options(ImageOptions::default().with_presize(presize));
    session
        .caption(image, Prompt::raw(MTMD_CLI_PROMPT), &greedy())
        .unwrap()
}

/// What to compare: the text, and (finish, prompt tokens, generated tokens).
type Summary = (String, (FinishReason, usize, usize));

fn ours(c: &Caption) -> Summary {
    (c.text.clone(), (c.finish, c.prompt_tokens, c.tokens.len()))
}

fn theirs(r: &Reference) -> Summary {
    // The tiny model never samples an end-of-generation token, so a complete
    // run generated one token more than it decoded.
    (
        r.text.clone(),
        (FinishReason::MaxTokens, r.prompt_tokens, r.runs + 1),
    )
}

#[test]
#[ignore = "needs llama-mtmd-cli: SMOLVLM_MTMD_CLI=$(sh scripts/build-mtmd-cli.sh | tail -n 1) cargo test --release --test tests parity -- --ignored (CI runs it)"]
fn captions_match_llama_mtmd_cli() {
    let bin = mtmd_cli();
    let dir = TempDir::new("parity");
    let one_thread = load(&LoadOptions::default().with_threads(1));
    let (mut failures, mut at_planned_sizes) = (Vec::new(), 0);
    for (name, img) in images() {
        let path = dir.path(&format!("{name}.png"));
        write_png(&img, &path).unwrap();
        let plan = model()
            .preprocessor(ImageOptions::default())
            .plan(img.width(), img.height())
            .unwrap();
        let at_planned_size = (plan.width, plan.height) == img.dimensions();
        at_planned_sizes += usize::from(at_planned_size);
        for threads in [1, 2] {
            let model = if threads == 1 { &one_thread } else { model() };
            let reference = mtmd_cli_caption(&bin, &path, threads);
            let expected = theirs(&reference);
            let case = format!("{name}, {threads} threads");
            eprintln!(
                "{case}: llama-mtmd-cli {:?}, {} prompt tokens",
                reference.text, reference.prompt_tokens
            );

            let as_decoded = library_caption(model, &img, false);
            if ours(&as_decoded) != expected {
                failures.push(format!(
                    "{case}, library without presize:\n  ours   {:?} {:?}\n  theirs {expected:?}",
                    ours(&as_decoded),
                    as_decoded.tokens
                ));
            }

            let presized = library_caption(model, &img, true);
            let same = ours(&presized) == expected;
            if at_planned_size && !same {
                failures.push(format!(
                    "{case}, library (default, image at its planned size):\n  \
                     ours   {:?} {:?}\n  theirs {expected:?}",
                    ours(&presized),
                    presized.tokens
                ));
            } else if !same {
                eprintln!(
                    "{case}: the default (presized) caption differs: {:?} {:?}",
                    presized.text, presized.tokens
                );
            }

            if at_planned_size {
                let cli = smolvlm_cli_caption(&path, threads);
                if cli != reference.text.trim() {
                    failures.push(format!(
                        "{case}, smolvlm binary (prints the text trimmed):\n  \
                         ours   {cli:?}\n  theirs {:?}",
                        reference.text.trim()
                    ));
                }
            }
        }
    }
    assert!(
        at_planned_sizes > 0,
        "no image is at its planned size: the default path went unchecked"
    );
    assert!(
        failures.is_empty(),
        "captions differ from llama-mtmd-cli's:\n{}",
        failures.join("\n")
    );
}

/// Two images in one prompt: `llama-mtmd-cli` given both `--image` flags
/// puts a marker before the prompt for each, in order; the library given
/// the same rendered prompt and images must generate the same tokens. The
/// images are at their planned sizes, so neither side resizes them.
#[test]
#[ignore = "needs llama-mtmd-cli: SMOLVLM_MTMD_CLI=$(sh scripts/build-mtmd-cli.sh | tail -n 1) cargo test --release --test tests parity -- --ignored (CI runs it)"]
fn two_images_match_llama_mtmd_cli() {
    let bin = mtmd_cli();
    let dir = TempDir::new("parity-two");
    let images = [noise(256, 192, 11), gradient(128, 256)];
    let paths: Vec<PathBuf> = images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let path = dir.path(&format!("{i}.png"));
            write_png(img, &path).unwrap();
            path
        })
        .collect();
    let prompt = MTMD_CLI_PROMPT.replace("<__media__>", "<__media__><__media__>");
    for order in [[0, 1], [1, 0]] {
        let reference = mtmd_cli_answer(&bin, &[&paths[order[0]], &paths[order[1]]], 2);
        for presize in [false, true] {
            let mut session = model().session().unwrap();
            session.set_image_options(ImageOptions::default().with_presize(presize));
            let ours_now = session
                .ask(
                    &[(&images[order[0]]).into(), (&images[order[1]]).into()],
                    Prompt::raw(prompt.clone()),
                    &greedy(),
                )
                .unwrap();
            assert_eq!(ours_now.images, 2);
            assert_eq!(
                ours(&ours_now),
                theirs(&reference),
                "order {order:?}, presize {presize}: tokens {:?}",
                ours_now.tokens
            );
        }
    }
}
