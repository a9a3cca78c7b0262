"""Python's caption_many against the CLI on the same images, in one run.

Both load the model and caption the same folder with one session, the same
prompt, length, tile budget and threads; the ratio of their wall times
(load included, each in a fresh process) is the figure. By default the
model is the testkit's shape-identical SmolVLM-256M-Instruct (random
weights, the published shapes), written by `cargo test --release --workspace`
under target/smolvlm-testkit/.

With --baseline-cli and --baseline-python (a smolvlm binary and a folder
holding an installed `smolvlm` package, both from an earlier commit), each
side runs the baseline then the current build, in one run: the before/after
figures of a change. --dedupe adds a folder of 6 copies of one photo and 2
others (copies apart in the walk), captioned by the CLI with and without
--no-dedupe.

usage (from the repository root, with the package installed):
    python benches/python_throughput.py [--images 20] [--max-tiles 1] [--threads 2]
        [--baseline-cli PATH --baseline-python DIR] [--rounds N] [--dedupe]
"""

import argparse
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL = ROOT / "target" / "smolvlm-testkit" / "real-v1-smolvlm-256m-instruct"

PYTHON_RUN = """
import sys, time
t0 = time.perf_counter()
import smolvlm
model = smolvlm.Model(sys.argv[1], sys.argv[2], threads=int(sys.argv[4]), max_tiles=int(sys.argv[5]))
t1 = time.perf_counter()
import pathlib
paths = sorted(str(p) for p in pathlib.Path(sys.argv[3]).glob("*.jpg"))
results = model.caption_many(paths, max_tokens=16)
t2 = time.perf_counter()
assert all(isinstance(r, smolvlm.Caption) for r in results), results
print(t1 - t0, t2 - t1)
"""


def photos(folder: pathlib.Path, n: int) -> None:
    """n 1600x1200 JPEGs: smooth gradients with noise, like photos to the encoder."""
    from PIL import Image

    rng = random.Random(7)
    for i in range(n):
        small = Image.new("RGB", (16, 12))
        small.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(16 * 12)])
        img = small.resize((1600, 1200), Image.BICUBIC)
        img.save(folder / f"photo-{i:02}.jpg", quality=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--max-tiles", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=str(REAL / "model.gguf"))
    ap.add_argument("--mmproj", default=str(REAL / "mmproj-q8_0.gguf"))
    ap.add_argument("--baseline-cli", help="an earlier build's smolvlm binary")
    ap.add_argument("--baseline-python", help="a folder holding an earlier build's smolvlm package")
    ap.add_argument("--dedupe", action="store_true", help="also time 6 copies of one photo and 2 others")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of every side, alternating which goes first")
    args = ap.parse_args()
    cli = ROOT / "target" / "release" / "smolvlm"
    for path in (args.model, args.mmproj, cli):
        if not pathlib.Path(path).is_file():
            sys.exit(f"{path} is missing: run `cargo test --release --workspace` first")

    sides = [("current", str(cli), None)]
    if args.baseline_cli or args.baseline_python:
        if not (args.baseline_cli and args.baseline_python):
            sys.exit("--baseline-cli and --baseline-python go together")
        sides.insert(0, ("baseline", args.baseline_cli, args.baseline_python))

    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "images"
        folder.mkdir()
        photos(folder, args.images)
        out = pathlib.Path(tmp) / "cli.jsonl"

        def run_cli(binary, images, extra=()):
            out.unlink(missing_ok=True)
            t = time.perf_counter()
            subprocess.run(
                [binary, "caption", str(images), "-m", args.model, "--mmproj", args.mmproj,
                 "--max-tiles", str(args.max_tiles), "-n", "16", "--threads", str(args.threads),
                 "--parallel", "1", "-o", str(out), "--quiet", *extra],
                check=True,
            )
            seconds = time.perf_counter() - t
            records = [json.loads(l) for l in out.read_text().splitlines()]
            assert all("caption" in r for r in records), records
            return seconds, records

        def run_python(pythonpath):
            env = dict(os.environ)
            if pythonpath:
                env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
            t = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", PYTHON_RUN, args.model, args.mmproj, str(folder),
                 str(args.threads), str(args.max_tiles)],
                check=True, capture_output=True, text=True, env=env,
            )
            seconds = time.perf_counter() - t
            load_s, caption_s = (float(x) for x in done.stdout.split())
            return seconds, load_s, caption_s

        # Rounds alternate which side goes first, so a machine that gets
        # busier during the run does not favour one side; medians reported.
        runs = {name: [] for name, _, _ in sides}
        for r in range(args.rounds):
            for name, binary, pythonpath in (sides if r % 2 == 0 else sides[::-1]):
                cli_s, records = run_cli(binary, folder)
                assert len(records) == args.images
                engine_s = sum(rec["ms"][k] for rec in records for k in ("encode", "prefill", "generate")) / 1e3
                py_s, load_s, caption_s = run_python(pythonpath)
                runs[name].append((cli_s, py_s, load_s, caption_s, engine_s))

        median = statistics.median
        results = {name: tuple(median([run[i] for run in rs]) for i in range(5)) for name, rs in runs.items()}
        print(f"{args.images} images, 1600x1200 JPEG, --max-tiles {args.max_tiles}, 16 tokens, "
              f"{args.threads} threads, one session; model {pathlib.Path(args.model).parent.name}; "
              f"medians of {args.rounds} rounds")
        for name, (cli_s, py_s, load_s, caption_s, engine_s) in results.items():
            print(f"[{name}] CLI    (process, load included): {cli_s:7.1f} s  {args.images / cli_s * 60:6.2f} images/min"
                  f"  (engine: encode + prefill + generate {engine_s:.1f} s; the rest {cli_s - engine_s:.1f} s)")
            print(f"[{name}] Python (process, load included): {py_s:7.1f} s  {args.images / py_s * 60:6.2f} images/min"
                  f"  (load {load_s:.1f} s, caption_many {caption_s:.1f} s)")
            print(f"[{name}] Python / CLI throughput: {cli_s / py_s:.3f}x")
        for name, rs in runs.items():
            print(f"[{name}] every round, CLI / Python s: " + ", ".join(f"{r[0]:.1f} / {r[1]:.1f}" for r in rs))
        if args.dedupe:
            copies = pathlib.Path(tmp) / "copies"
            copies.mkdir()
            names = sorted(folder.glob("*.jpg"))
            # a, c, d, f, g, h are one photo; b and e others: copies apart and together.
            for letter in "abcdefgh":
                source = names[1] if letter == "b" else names[2] if letter == "e" else names[0]
                (copies / f"{letter}.jpg").write_bytes(source.read_bytes())
            with_s, records = run_cli(str(cli), copies)
            assert sum(1 for r in records if "duplicate_of" in r) == 5, records
            without_s, records = run_cli(str(cli), copies, ["--no-dedupe"])
            encoded = sum(1 for r in records if r["ms"]["encode"] > 0)
            print(f"8 images (6 copies of one photo, 2 others): CLI {with_s:.1f} s with the copies "
                  f"answered once (3 images encoded), {without_s:.1f} s with --no-dedupe "
                  f"({encoded} encoded): {without_s / with_s:.2f}x")


if __name__ == "__main__":
    main()
