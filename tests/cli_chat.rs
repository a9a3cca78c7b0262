//! `smolvlm ask` and `smolvlm chat`, run as a user would, against the
//! library's answers to the same prompts.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use smolvlm::{Conversation, JobImage};
use smolvlm_testkit::images::{gradient, noise, write_png};

use crate::util::{dump, files, greedy, model, TempDir, MAX_TOKENS};

fn run(args: &[&std::ffi::OsStr], stdin: &str) -> Output {
    let f = files();
    let tokens = MAX_TOKENS.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_smolvlm"))
        .args(&args[..1])
        .args(["--model".as_ref(), f.model.as_os_str()])
        .args(["--mmproj".as_ref(), f.mmproj.as_os_str()])
        .args(["--threads", "2", "-n", &tokens])
        .args(&args[1..])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn images(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let (a, b) = (dir.path("a.png"), dir.path("b.png"));
    write_png(&gradient(200, 150), &a).unwrap();
    write_png(&noise(120, 90, 4), &b).unwrap();
    (a, b)
}

#[test]
fn ask_streams_one_answer_about_several_images_and_writes_its_record() {
    let dir = TempDir::new("cli-ask");
    let (a, b) = images(&dir);
    let record = dir.path("answer.json");
    let out = run(
        &[
            "ask".as_ref(),
            "-i".as_ref(),
            a.as_os_str(),
            "--image".as_ref(),
            b.as_os_str(),
            "-p".as_ref(),
            "What changed?".as_ref(),
            "-o".as_ref(),
            record.as_os_str(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", dump(&out));
    let expected = model()
        .session()
        .unwrap()
        .ask(
            &[a.as_path().into(), b.as_path().into()],
            "What changed?",
            &greedy(),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", expected.text)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(json["images"][1], b.to_str().unwrap());
    assert_eq!(json["prompt"], "What changed?");
    assert_eq!(json["caption"], expected.text.trim());
    assert_eq!(json["image_tokens"], expected.image_tokens);
    assert_eq!(json["generated_tokens"], MAX_TOKENS);
}

#[test]
fn ask_failures_have_their_exit_codes() {
    let dir = TempDir::new("cli-ask-errors");
    let (a, _) = images(&dir);
    let missing = dir.path("missing.png");
    let out = run(
        &[
            "ask".as_ref(),
            "-i".as_ref(),
            missing.as_os_str(),
            "-p".as_ref(),
            "x".as_ref(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", dump(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.png"));
    // A raw prompt needs a marker per image.
    let out = run(
        &[
            "ask".as_ref(),
            "-i".as_ref(),
            a.as_os_str(),
            "--raw-prompt".as_ref(),
            "no marker".as_ref(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", dump(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<__media__>"));
    // A bad schema is a usage error, before any image is read.
    let schema = dir.path("bad.json");
    std::fs::write(&schema, "{\"type\": 12}").unwrap();
    let out = run(
        &[
            "ask".as_ref(),
            "-i".as_ref(),
            missing.as_os_str(),
            "-p".as_ref(),
            "x".as_ref(),
            "--json-schema".as_ref(),
            schema.as_os_str(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    // No prompt at all.
    let out = run(&["ask".as_ref(), "-i".as_ref(), a.as_os_str()], "");
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
}

#[test]
fn chat_answers_follow_ups_and_commands_as_the_library_does() {
    let dir = TempDir::new("cli-chat");
    let (a, b) = images(&dir);
    let junk = dir.path("junk.png");
    std::fs::write(&junk, b"not an image").unwrap();
    let script = format!(
        "Describe this image.\n\
         What colour is it?\n\
         /image {}\n\
         Broken?\n\
         /image {}\n\
         And this one?\n\
         /frobnicate\n\
         /reset\n\
         \n\
         Describe this image.\n\
         /quit\n\
         Never read.\n",
        junk.display(),
        b.display()
    );
    let out = run(&["chat".as_ref(), "-i".as_ref(), a.as_os_str()], &script);
    assert!(out.status.success(), "{}", dump(&out));

    // The same exchange through the library: the failed turn is dropped.
    let mut session = model().session().unwrap();
    let mut chat = Conversation::new();
    let mut expected = String::new();
    let mut say = |chat: &mut Conversation, images: Vec<&Path>, text: &str| {
        chat.user(images.into_iter().map(JobImage::from), text);
        let answer = session.reply(chat, &greedy()).unwrap();
        format!("{}\n", answer.text)
    };
    expected += &say(&mut chat, vec![a.as_path()], "Describe this image.");
    expected += &say(&mut chat, vec![], "What colour is it?");
    expected.push('\n'); // the failed answer's line
    expected += &say(&mut chat, vec![b.as_path()], "And this one?");
    let mut fresh = Conversation::new();
    expected += &say(&mut fresh, vec![], "Describe this image.");
    assert_eq!(
        String::from_utf8(out.stdout.clone()).unwrap(),
        expected,
        "{}",
        dump(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("attached"), "{stderr}");
    assert!(stderr.contains("junk.png"), "{stderr}");
    assert!(stderr.contains("unknown command /frobnicate"), "{stderr}");
    assert!(stderr.contains("(new conversation)"), "{stderr}");
}

#[test]
fn caption_asks_every_image_each_prompt_encodes_it_once_and_resumes_per_prompt() {
    let dir = TempDir::new("cli-prompts");
    let (a, b) = images(&dir);
    let records = dir.path("out.jsonl");
    let prompts = ["Describe this image.", "List three tags."];
    let args = |extra: &[&std::ffi::OsStr]| -> Output {
        let mut all: Vec<&std::ffi::OsStr> = vec![
            "caption".as_ref(),
            a.as_os_str(),
            b.as_os_str(),
            "-p".as_ref(),
            prompts[0].as_ref(),
            "--prompt".as_ref(),
            prompts[1].as_ref(),
            "--quiet".as_ref(),
        ];
        all.extend_from_slice(extra);
        run(&all, "")
    };
    let out = args(&["-o".as_ref(), records.as_os_str()]);
    assert!(out.status.success(), "{}", dump(&out));
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&records)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let lines = read();
    assert_eq!(lines.len(), 4);
    for image in [&a, &b] {
        for (i, prompt) in prompts.iter().enumerate() {
            let record = lines
                .iter()
                .find(|r| r["path"] == image.to_str().unwrap() && r["prompt"] == *prompt)
                .unwrap_or_else(|| panic!("no record for {} / {prompt}", image.display()));
            let expected = model()
                .session()
                .unwrap()
                .caption(image.as_path(), *prompt, &greedy())
                .unwrap();
            assert_eq!(record["caption"], expected.text.trim(), "{prompt}");
            // The second prompt found the image in the session's cache.
            let encode = record["ms"]["encode"].as_f64().unwrap();
            assert_eq!(encode == 0.0, i == 1, "{record}");
        }
    }
    // Resumed: nothing to do.
    let again = args(&["-o".as_ref(), records.as_os_str()]);
    assert!(again.status.success(), "{}", dump(&again));
    assert_eq!(read().len(), 4);
    // One record lost: only that image and prompt is asked again.
    let text = std::fs::read_to_string(&records).unwrap();
    let kept: Vec<&str> = text.lines().take(3).collect();
    let lost: serde_json::Value = serde_json::from_str(text.lines().nth(3).unwrap()).unwrap();
    std::fs::write(&records, format!("{}\n", kept.join("\n"))).unwrap();
    let resumed = args(&["-o".as_ref(), records.as_os_str()]);
    assert!(resumed.status.success(), "{}", dump(&resumed));
    let lines = read();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        (&lines[3]["path"], &lines[3]["prompt"], &lines[3]["caption"]),
        (&lost["path"], &lost["prompt"], &lost["caption"])
    );
    // CSV rows hold their prompt too.
    let csv = dir.path("out.csv");
    let out = args(&["-o".as_ref(), csv.as_os_str()]);
    assert!(out.status.success(), "{}", dump(&out));
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let column = reader.headers().unwrap().iter().position(|h| h == "prompt");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    for prompt in prompts {
        assert_eq!(
            rows.iter()
                .filter(|r| r.get(column.unwrap()) == Some(prompt))
                .count(),
            2
        );
    }
    // Records that cannot hold the prompt, and a prompt given twice.
    let txt = dir.path("out.txt");
    let out = args(&["-o".as_ref(), txt.as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    let out = args(&["--sidecar".as_ref()]);
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    let out = args(&[
        "-p".as_ref(),
        prompts[0].as_ref(),
        "-o".as_ref(),
        records.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
}
