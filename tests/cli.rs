//! The `smolvlm` binary, run as a user would.

use std::process::{Command, Output};

use smolvlm_testkit::images::{gradient, noise, write_png};

use crate::util::{files, TempDir};

fn smolvlm(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smolvlm"))
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn caption_args<'a>(
    files: &'a smolvlm::ModelFiles,
    extra: &[&'a std::ffi::OsStr],
) -> Vec<&'a std::ffi::OsStr> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "caption".as_ref(),
        "--model".as_ref(),
        files.model.as_os_str(),
        "--mmproj".as_ref(),
        files.mmproj.as_os_str(),
        "--threads".as_ref(),
        "2".as_ref(),
        "-n".as_ref(),
        "8".as_ref(),
    ];
    args.extend_from_slice(extra);
    args
}

fn dump(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn captions_one_image_deterministically() {
    let dir = TempDir::new("cli-one");
    let img = dir.path("a.png");
    write_png(&gradient(640, 480), &img).unwrap();
    let f = files();
    let out = smolvlm(&caption_args(&f, &[img.as_os_str()]));
    assert!(out.status.success(), "{}", dump(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{}", dump(&out));
    assert!(!text.trim().is_empty());
    let again = smolvlm(&caption_args(&f, &[img.as_os_str()]));
    assert_eq!(out.stdout, again.stdout);
}

#[test]
fn a_bad_image_among_good_ones_exits_1_and_the_rest_are_captioned() {
    let dir = TempDir::new("cli-mixed");
    let (a, bad, b) = (dir.path("a.png"), dir.path("bad.png"), dir.path("b.png"));
    write_png(&gradient(320, 240), &a).unwrap();
    std::fs::write(&bad, b"not an image").unwrap();
    write_png(&noise(320, 240, 1), &b).unwrap();
    let f = files();
    // Piped stdout gets JSONL records by default; txt keeps `PATH: caption`.
    let out = smolvlm(&caption_args(
        &f,
        &[
            "--format".as_ref(),
            "txt".as_ref(),
            a.as_os_str(),
            bad.as_os_str(),
            b.as_os_str(),
        ],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", dump(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{}", dump(&out));
    assert!(stdout.contains("a.png: ") && stdout.contains("b.png: "));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.png") && stderr.contains("image_format"),
        "{}",
        dump(&out)
    );
}

#[test]
fn raw_prompt_gives_the_mtmd_cli_prompt() {
    let dir = TempDir::new("cli-raw");
    let img = dir.path("a.png");
    write_png(&gradient(640, 480), &img).unwrap();
    let f = files();
    let raw = "<|im_start|>User: <__media__>Describe this image.<end_of_utterance>\\nAssistant:";
    let out = smolvlm(&caption_args(
        &f,
        &["--raw-prompt".as_ref(), raw.as_ref(), img.as_os_str()],
    ));
    assert!(out.status.success(), "{}", dump(&out));
    let plain = smolvlm(&caption_args(&f, &[img.as_os_str()]));
    assert_ne!(
        out.stdout, plain.stdout,
        "the renderings differ by one token, so do the outputs"
    );
}

#[test]
fn a_missing_model_exits_2_with_the_path() {
    let f = files();
    let args: Vec<&std::ffi::OsStr> = vec![
        "caption".as_ref(),
        "--model".as_ref(),
        "/nonexistent/m.gguf".as_ref(),
        "--mmproj".as_ref(),
        f.mmproj.as_os_str(),
        "x.png".as_ref(),
    ];
    let out = smolvlm(&args);
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/m.gguf"));
}

#[test]
fn info_prints_the_pair() {
    let f = files();
    let args: Vec<&std::ffi::OsStr> = vec![
        "info".as_ref(),
        "--model".as_ref(),
        f.model.as_os_str(),
        "--mmproj".as_ref(),
        f.mmproj.as_os_str(),
    ];
    let out = smolvlm(&args);
    assert!(out.status.success(), "{}", dump(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("idefics3") && stdout.contains("tokens per tile:  4"),
        "{}",
        dump(&out)
    );
}
