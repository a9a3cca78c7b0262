//! The long help texts (`--help`): the CLI's reference, kept beside the
//! arguments it explains. `-h` shows only the one-line summaries.

/// After `smolvlm --help`.
pub const MAIN: &str = "\
Examples:
  smolvlm caption photo.jpg                   print one caption
  smolvlm caption photos/ -o captions.jsonl   a folder, resumable
  smolvlm caption --plan photos/              tiles, tokens and time, before a run
  smolvlm ask -i a.jpg -i b.jpg -p 'What changed?'   one answer about images
  smolvlm chat -i photo.jpg                   ask, then follow up, in the terminal
  smolvlm info                                what the model is, and a self-test
  smolvlm fetch SmolVLM-500M-Instruct         download into the cache

Models: --model takes a preset (SmolVLM-256M-Instruct, the default;
SmolVLM-500M-Instruct; SmolVLM-Instruct; SmolVLM2-2.2B-Instruct;
SmolVLM2-256M-Video-Instruct; SmolVLM2-500M-Video-Instruct), a Hub repo
(OWNER/NAME[@REVISION][:QUANT]), or a local model.gguf with --mmproj. A
preset or repo is downloaded once into the Hugging Face cache, verified
(size and SHA-256), and used from there, offline too. The library's rustdoc
(`cargo doc --open`, module smolvlm::guide::models) tells how a repo's pair
is picked.

Environment: HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE
are read as huggingface_hub reads them. RUST_LOG overrides -v. The download
bar is drawn on stderr, and only when stderr is a terminal.

Exit codes: 0 every image captioned; 1 at least one image has an error
record; 2 bad usage, config or model, or records cannot be written; 130
interrupted (re-run to resume). `smolvlm caption --help` tells more.";

/// After `smolvlm caption --help`.
pub const CAPTION: &str = "\
INPUTS
  Each PATH is one of:
  - a file: always captioned, whatever it holds. A file that is not an image,
    or does not exist, gets an error record.
  - a directory: walked recursively in sorted order, following symbolic
    links. Hidden entries (.cache/, macOS's ._photo.jpg) are skipped. A file
    is taken if its extension is an image one (jpg, jpeg, png, gif, webp,
    bmp, tif, tiff, ...) or its first bytes are a JPEG, PNG, GIF, WebP, BMP
    or TIFF signature: an image without an extension is found, and a .jpg
    that holds garbage gets an error record. Anything else is skipped and
    counted; .txt, .json, .jsonl and .csv files (sidecars, record files) are
    never taken from a directory.
  - a glob pattern such as 'photos/**/*.jpg' (quoted, so the shell leaves
    it alone): its matches, filtered like a directory's files.
  - '-': paths read from stdin, one per line (files or directories):
      find /data -newer stamp | smolvlm caption - -o new.jsonl
  A path named twice (dir and dir/a.png, or ./a.png and a.png) is captioned
  once.
  Videos (mp4, m4v, webm, mov, mkv, avi) found in a directory or by a glob
  are skipped and counted unless --video is given; with it each is one
  record, its frames sampled as SmolVLM2's processor samples them (1 per
  second, at most 64; --sample-fps, --max-frames) and each frame shown as
  one overview image, and GIFs are videos too (all their frames, not the
  first). A video file named directly is always a video. MP4 and the other
  containers are read through ffmpeg and ffprobe, which must be on PATH
  (apt-get install ffmpeg); without them each such video gets an error
  record. Without -p a video is asked \"Describe this video.\", and the
  context grows to 8192 tokens unless --ctx-size is given.

RECORDS
  The format: --format if given; else, with --output, the extension (.csv is
  CSV, .txt is text, anything else JSONL); else, on stdout, text when stdout
  is a terminal or the only PATH is one image file, and JSONL otherwise. So
  `smolvlm caption photo.jpg` prints just the caption, and
  `smolvlm caption dir/ | jq` gets JSON. With --sidecar and no --output there
  is no record stream; failures are printed on stderr.

  JSONL (one object per image, one line each):
    {\"path\":\"photos/cat.png\",\"key\":\"cat.png\",\"sha256\":\"5881...\",
     \"prompt\":\"Describe this image.\",\"model\":\"ggml-org/SmolVLM-256M-Instruct-GGUF@...\",
     \"asked\":\"3f9c0a1b2c3d4e5f\",\"caption\":\"...\",
     \"generated_tokens\":12,\"prompt_tokens\":93,\"image_tokens\":52,\"tiles\":12,
     \"finish\":\"max_tokens\",\"ms\":{\"decode\":0.238,\"resize\":0.346,\"tokenize\":1.2,
     \"encode\":15.719,\"prefill\":0.646,\"generate\":0.797,\"total\":18.612}}
    {\"path\":\"photos/broken.png\",\"key\":\"broken.png\",\"sha256\":\"9aac...\",
     \"error\":{\"kind\":\"image_truncated\",\"message\":\"image 'photos/broken.png' is
     truncated: it ends before the image data does\"}}
  - path: the path as found (the directory or glob you gave joined with the
    file's path below it); non-UTF-8 bytes are replaced.
  - key: the path relative to its root: the directory it was found in, a
    glob's literal prefix, or, for a file named directly, its own directory
    (so the key is its file name). It does not change with the working
    directory or the mount point; resume and --shard go by it.
  - sha256: of the file's bytes; null when the file cannot be read.
  - generated_tokens counts the caption's tokens; prompt_tokens includes the
    image_tokens; tiles excludes the overview.
  - frames and seconds (videos only, JSONL only): the frames shown and the
    video's length. frames_sampled appears when the sampling rule chose
    more frames than fit the context (the frames were cut to fit).
  - finish: end_of_text, max_tokens, stop or context_full.
  - ms: per-stage times in milliseconds. decode and resize are measured on
    the prep thread; total is the caption call (tokenize, encode, prefill
    and generation).
  - error (instead of the caption fields): kind and message. The kinds are
    the library's (image_read, image_no_data, image_format, image_truncated,
    image_decode, image_too_large, deadline_exceeded, prompt_too_long, ...)
    and the CLI's sidecar_write and sidecar_conflict. Transient kinds are
    deadline_exceeded, cancelled, session (out of memory), eval, image_read
    and sidecar_write; every other kind is final.
  - Captions are trimmed of surrounding whitespace.
  - prompt, model, asked: what produced the record. prompt is the prompt as
    given (a --raw-prompt's text); model is REPO@COMMIT:MODEL+MMPROJ for a
    Hub model, or sha256:M+P (the first 16 hex digits of each file's
    SHA-256) for local files; asked is a fingerprint (16 hex digits of a
    SHA-256) of the model, the prompt and every option that changes the
    text: --max-tokens, the sampling flags, --seed, --stop, the grammar or
    schema file's content, --max-tiles, --smart-crop, the config's
    stretch_to, and for a video --sample-fps and --max-frames. Threads, the
    context size, the KV type and flash attention are left out. Resume
    compares asked (see RESUME).
  - Several -p: each image is asked every prompt, in order, and encoded
    once (the session keeps it for the next prompt): one record per image
    and prompt, its prompt field saying which. Resume goes by key and
    prompt, so a lost record is asked again alone, and adding a prompt asks
    only the new one. Several -p need JSONL or CSV records (txt holds no
    prompt) and no --sidecar (one file per image).
  - duplicate_of: the path of an earlier image of this run with the same
    pixels once decoded and resized (copies of one photo under other names,
    say), whose caption this record copies: it was not encoded or
    generated again, and its ms are 0. --no-dedupe captions every copy.

  CSV: a header row, then the same fields in this order: path, sha256,
  caption, generated_tokens, prompt_tokens, image_tokens, tiles, finish,
  decode_ms, resize_ms, tokenize_ms, encode_ms, prefill_ms, generate_ms,
  total_ms, error_kind, error_message, key, prompt, model, asked,
  duplicate_of. A row fills either the caption columns or the two error
  columns. New columns come last so that the others keep their places: a
  file written before key existed keeps its 17 columns when resumed (its
  rows matched by path), one written before prompt, model and asked keeps
  its 18, one before duplicate_of its 21. Quoting follows
  RFC 4180. (frames and seconds of videos are in JSONL only.)

  txt: one line per image, `PATH: caption` or `PATH: error [kind]: message`,
  line breaks folded into spaces. On stdout the error lines go to stderr,
  and a single image prints its caption alone. txt holds no hashes, so it
  cannot be resumed.

  --sidecar writes each caption to photo.txt beside photo.jpg, the name
  dataset tools (kohya_ss and others) look for. It is written to a temporary
  name, synced, renamed, and the directory synced: it is whole or absent,
  and once its image is recorded a power cut does not take it back. a.jpg
  and a.png would share a.txt: the first in sorted order gets it, the other
  a sidecar_conflict error record.

RESUME, OVERWRITE, INTERRUPTS
  - Records are written as they complete, each in one write call, so a run
    killed at any moment (SIGKILL included) leaves a file whose every line
    parses. The file is fsync'ed at the end of the run.
  - Re-running the same command resumes. When --output exists its records
    are read first, and an image is skipped only when the last record for
    its key (and prompt) holds a caption of the same bytes (SHA-256) asked
    the same way (the asked fingerprint: model, prompt, options). Anything
    else is captioned again and its new record appended, so the last record
    of a key is always the current one: a file changed and changed back,
    another prompt, another model or another --max-tokens all caption
    again. A folder resumes from another working directory or mount point;
    path stays as given each time. Two roots holding the same relative path
    with the same bytes count as one image. Records from before records
    had a key are matched by path, so such a file resumes when the paths
    are given the same way; records from before records held prompt and
    asked are taken as the current settings' (for the first -p), so an
    older file resumes without captioning everything again. --resume states
    this default; it refuses txt and a missing --output.
  - With --sidecar, an image whose sidecar is missing or empty is captioned
    again, even if a record says it was. With --sidecar and no --output, an
    image whose sidecar holds a caption is skipped.
  - Final errors stay: an image whose last record is a final error (a bad
    image, or prompt_too_long) is skipped on resume, and still counts as
    failed, so the exit code stays 1 until it is fixed. Transient errors are
    retried on every resume, without asking (smolvlm::Error::is_transient is
    the rule). --retry-errors retries the final ones too (a
    file since replaced, a larger context); each retry appends a record.
  - A torn last record (no final newline, or a last line that does not
    parse, as a power cut or a full disk leaves) is cut off with a warning
    and its image captioned again. A bad record anywhere else stops the run
    (exit 2): the file is not ours to rewrite.
  - --overwrite starts over: it empties --output and rewrites sidecars.
  - The first SIGINT (Ctrl-C), SIGTERM or SIGHUP stops the run: no new image
    is taken; the captions in flight are cancelled at the next token or
    prefill batch and get no record, so the next run captions them; the
    records are flushed, a summary names what is left, and the exit code is
    130. A second signal exits at once. Every record written is whole.
  - One writer per file: nothing locks --output, and two processes
    appending to it would caption the same images. Give each shard its own.
  - Resume reads and hashes every input again, so a resumed pass over a
    large dataset costs a full read of it, even with nothing left to do.

EXIT CODES
    0  every image has a caption, from this run or an earlier one
    1  at least one image has an error record (this run or an earlier one);
       every other image was captioned
    2  bad usage or config; the model could not be resolved or loaded; the
       output cannot be resumed or written
  130  interrupted by SIGINT, SIGTERM or SIGHUP before every image was done;
       re-run the same command to resume

PROGRESS
  On a terminal, stderr shows a bar: images done of the total, images per
  second, the ETA, failures and skips. Images skipped on resume shorten the
  bar, so the rate and ETA count only real work. Otherwise (a log file, CI,
  a Slurm job) a line is printed every 10 seconds:
    smolvlm: 120/5000 images, 2.10 images/s, ETA 2324 s, 3 failed, 40 skipped
  At the end, a summary with the mean time of each stage:
    smolvlm: done: 1 captioned, 1 failed, 0 skipped (recorded earlier) of 2 images in 0.0 s (51.58 images/s)
    smolvlm: mean per caption: decode 0.2 ms, resize 0.3 ms, tokenize 1.2 ms, encode 15.7 ms, ...
    smolvlm: records in 'out.jsonl'
  --quiet prints neither; a single image captioned to stdout prints no
  summary either.

THROUGHPUT: --prep-threads, --parallel AND COPIES
  paths -> prep threads (read, SHA-256, resume check, decode, resize,
           copy check) -> bounded queue (N slots) -> N sessions, each on
           its own thread, sharing one model -> records, sidecars,
           progress (main thread)
  This is the library's batch engine (smolvlm::batch), the same that
  Python's caption_many and the C ABI's smolvlm_caption_files run.
  - The next images are read, hashed, decoded and resized on --prep-threads
    threads while the sessions encode and generate. The queue holds N
    prepared images (N = --parallel), and at most 4N + prep threads images
    are between the walk and their records, so memory stays flat however
    large the dataset. --prep-threads 0 prepares each image on its caption
    thread: the sequential baseline.
  - An image whose pixels, once decoded and resized, equal an earlier
    one's (SHA-256) is not captioned again: its records copy that one's
    captions and say duplicate_of. A copy that comes while its original
    is being captioned waits for it. The cost: one SHA-256 of the resized
    pixels per image on a prep thread, and the captions of the last 4096
    distinct images in memory; a copy further apart is captioned again.
  - --parallel N opens N sessions sharing one loaded model's text weights;
    each has its own KV cache (--ctx-size tokens) and its own vision
    encoder, so N images are encoded at once and nothing waits on a lock.
    Each session gets cores/N threads unless --threads says otherwise.
  - --parallel auto runs one session per core, at most 4. On 2 cores two
    one-thread sessions caption 1.05x (256M) to 1.23x (500M) as many images
    as one two-thread session. Each extra session costs one more copy of the
    mmproj's weights and a KV cache (about 230 MB for the 256M model, 300 MB
    for the 500M). Past 4 sessions memory grows and the gain was not
    measured.
  - Pick N so that N x threads <= cores: ggml's threads spin at every
    barrier, and on an oversubscribed or busy machine they slow to a crawl.

MANY MACHINES: --shard I/N
  --shard I/N keeps the images whose key hashes to I modulo N (0-based). The
  key is the path relative to the directory or glob prefix it was found
  under (a/b.jpg for /mnt/data/a/b.jpg given as /mnt/data; a file named
  directly: its file name). The hash is 64-bit FNV-1a then the SplitMix64
  finalizer, pinned by a test: every build on every machine computes the
  same split wherever the dataset is mounted, and each image lands in
  exactly one shard. Give every worker the same PATHs and its own output
  file. A Slurm array (its indices must count from 0):

    #!/bin/sh
    #SBATCH --array=0-7 --cpus-per-task=8
    smolvlm caption /data/photos --offline \\
      --shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\" \\
      -o \"captions/part-$SLURM_ARRAY_TASK_ID.jsonl\"

  A Kubernetes Indexed Job (completionMode: Indexed, completions: 8,
  parallelism: 8) runs the same command with
  --shard \"$JOB_COMPLETION_INDEX/8\". A preempted or failed worker is run
  again and resumes its own file. `cat captions/part-*.jsonl` is the whole
  dataset, one record per image (after --retry-errors, keep the last record
  of each path).

THE OLD CONFIGURATION: --config FILE
  The old Python wrapper's configuration loads unchanged, as JSON or as TOML
  with the same keys. The format comes from the extension (.json, .toml),
  else from the content (JSON starts with '{'). Every key is optional, and
  flags override the file:
    { \"smolvlm_version\": \"ggml-org/SmolVLM-500M-Instruct-GGUF\", \"port\": 8080,
      \"timeout\": 60, \"manage_server\": true,
      \"image_processing\": { \"smart_crop\": true, \"size\": [1024, 1024],
        \"min_size\": 512, \"preserve_aspect_ratio\": true, \"format\": \"JPEG\",
        \"jpeg_quality\": 95, \"optimize\": true } }
  - smolvlm_version: the model (a Hub repo or a preset), unless --model.
  - timeout: the per-image deadline in seconds, unless --timeout.
  - image_processing.smart_crop: --smart-crop.
  - image_processing.size with preserve_aspect_ratio = false: every image is
    planned and resized as if it had that aspect ratio.
  - image_processing.size (aspect ratio kept), min_size: accepted, no
    effect, one warning (mtmd's tile grid decides the size).
  - image_processing.format, jpeg_quality, optimize: accepted, ignored, one
    warning (there is no JPEG round-trip).
  - port, manage_server: accepted, ignored, one warning (there is no server).
  Any other key, nested ones included, is an error (exit 2) that names it
  and the keys expected; so is a value of the wrong type. The file above
  with smart_crop misspelled:
    smolvlm: config 'old.json': unknown key 'image_processing.smart_crp' at
    line 3 column 35: remove it or fix its spelling (expected one of
    `smart_crop`, `size`, `preserve_aspect_ratio`, `min_size`, `format`,
    `jpeg_quality`, `optimize`) --print-config
  prints the effective settings (the file, then the flags) as JSON with the
  warnings, without loading the model or reading an image. `info` reads
  --config too.

WHAT WILL IT COST? --plan
    $ smolvlm caption --plan photos/
    image             size       grid  tiles  image_tokens
    photos/beach.jpg  2048x1536  4x3   12     832
    photos/scan.bmp   2048x1536  4x3   12     832
    total  2 images  24 tiles + 2 overviews  26 encodes  1664 image tokens (64 per tile)
    estimate  one tile encode 2.48 s on 2 threads; 26 encodes x 2.48 s / 1 session
              = 1m04s of vision encoding (text decoding adds a few percent)
    $ smolvlm caption --plan --max-tiles 4 photos/
    image             size      grid  tiles  image_tokens
    photos/beach.jpg  1024x512  2x1   2      192
    photos/scan.bmp   1024x512  2x1   2      192
    total  2 images  4 tiles + 2 overviews  6 encodes  384 image tokens (64 per tile)
    estimate  one tile encode 2.38 s on 2 threads; 6 encodes x 2.38 s / 1 session
              = 14.3 s of vision encoding (text decoding adds a few percent)
  (The 256M model on a 2-core machine; the columns are tab-separated; size is
  what the image is resized to.) It reads only each image's header (size and
  EXIF orientation), plans its tiles as captioning will, and times one tile
  encode with the run's threads; it decodes no image and encodes nothing
  else. With --smart-crop the borders are not known
  yet, so the plan is an upper bound. An image whose header cannot be read
  gets an `error:` row and is counted on an `unreadable` line, and the exit
  code is 1.";

/// After `smolvlm info --help`.
pub const INFO: &str = "\
It prints the files, architecture, parameter count and context length; the
vocabulary and embedding sizes; the projector, tile size, longest edge,
tokens per tile and tile budget; whether the GGUF has a chat template; the
backend devices, GPU offload and threads; the config's smart crop and
timeout; and the load time.

Then it runs a self-test: it captions a generated 640x480 gradient (8
tokens) and reports ok with the latency, tiles, image tokens and the encode
and generate times:
  self-test:        ok, 29 ms (12 tiles, 52 image tokens, 8 tokens generated; encode 20 ms, generate 1 ms)
A failure prints `FAILED after N ms [kind]: message` and exits 1. --no-self-test skips
it. Without a failure the exit code is 0; a model that cannot be resolved or
loaded is 2.";

/// After `smolvlm ask --help`.
pub const ASK: &str = "\
Examples:
  smolvlm ask -i photo.jpg -p 'What is on the table?'
  smolvlm ask -i before.jpg -i after.jpg -p 'What changed?' -o answer.json
  smolvlm ask -i receipt.jpg -p 'The total, as JSON.' --json-schema total.json
  smolvlm ask -p 'Write a haiku about tea.'

The answer streams to stdout as it is generated, then a newline. The
images go first, in the order given, then the prompt, as the reference
SmolVLM processor renders one user turn; --raw-prompt takes the whole
rendered text instead, with one <__media__> per image. -o FILE writes one
JSON object: \"images\", \"prompt\", and the fields of a caption record
(caption, generated_tokens, prompt_tokens, image_tokens, tiles, finish, ms,
and json under --json-schema).

The model and generation flags are caption's. Ctrl-C stops the answer
(exit 130).";

/// After `smolvlm chat --help`.
pub const CHAT: &str = "\
Example:
  $ smolvlm chat -i photo.jpg
  > Describe this image.
  A wooden table with a cup of coffee...
  > What colour is the cup?
  White.
  > /image other.jpg
  > And in this one?

Each line you type is a message; the answer streams as it is generated.
The images of the conversation stay in the session's KV cache, so a
follow-up evaluates only its own turn: it starts answering in a fraction of
a second where the first message spent seconds encoding the image.

Commands: /image FILE attaches an image to the next message (repeatable),
/reset starts over, /help lists them, /quit or Ctrl-D leaves. Ctrl-C stops
the answer in progress; the conversation goes on without that turn. A
failed answer (an unreadable image, say) is reported and the conversation
goes on. When stdin is not a terminal, lines are read as they come, with no
prompt: `printf 'Describe it.\\nAnd the colours?\\n' | smolvlm chat -i a.jpg`.";
