"""Videos from Python: model.ask(video=...) shows SmolVLM2's sampled frames,
one overview each, and answers as the CLI does; bad videos raise VideoError
with a kind."""

import json
import pathlib
import subprocess

import pytest

import smolvlm

MAX = 16


def _clip(path: pathlib.Path, frames: int = 12, ms: int = 500) -> pathlib.Path:
    """An animated GIF of `frames` frames of `ms` each, another colour each."""
    from PIL import Image

    images = [
        Image.new("RGB", (48, 32), (i * 20 % 256, 255 - i * 20 % 256, 90)) for i in range(frames)
    ]
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms, loop=0)
    return path


def test_a_video_is_one_overview_per_sampled_frame(model, tmp_path):
    clip = _clip(tmp_path / "clip.gif")
    answer = model.ask(video=clip, prompt="What happens?", max_tokens=MAX)
    assert answer.text
    # 12 frames of 0.5 s: 6 s, sampled at 1 fps.
    [video] = answer.videos
    assert (video.frames, video.sampled, video.seconds) == (6, 6, 6.0)
    assert video.timestamps == [0.0, 1.0, 2.0, 3.0, 4.0, 5.5]
    per_frame = model.info()["tokens_per_tile"]
    assert (answer.frames, answer.image_tokens, answer.tiles) == (6, 6 * per_frame, 0)
    # Path, str and bytes are the same video.
    assert model.ask(video=str(clip), prompt="What happens?", max_tokens=MAX).tokens == answer.tokens
    assert model.ask(video=clip.read_bytes(), prompt="What happens?", max_tokens=MAX).tokens == answer.tokens
    # Sampling settings reach the sampler.
    fewer = model.ask(video=clip, prompt="What happens?", max_tokens=MAX, max_frames=3)
    assert fewer.videos[0].frames == 3 and fewer.image_tokens == 3 * per_frame


def test_a_folder_of_frames_needs_its_rate(model, tmp_path):
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(frames / f"{i:03}.png")
    answer = model.ask(video=frames, prompt="What happens?", max_tokens=MAX, frame_rate=2.0)
    assert answer.videos[0].frames == 3 and answer.videos[0].seconds == 3.0
    with pytest.raises(smolvlm.SmolVLMError) as info:
        model.ask(video=frames, prompt="What happens?", max_tokens=MAX)
    assert info.value.kind == "invalid_option" and "frame rate" in str(info.value)


def test_bad_videos_raise_video_error_with_a_kind(model, tmp_path):
    # Bytes no image decoder knows are handed to ffprobe, which refuses
    # them (or is missing: then the error names what to install).
    with pytest.raises(smolvlm.VideoError) as info:
        model.ask(video=b"not a video", prompt="What happens?")
    assert info.value.kind in ("video_tool_failed", "video_tool_missing")
    assert not info.value.transient
    with pytest.raises(smolvlm.VideoError) as info:
        model.ask(video=b"GIF89a truncated", prompt="What happens?")
    assert info.value.kind == "video_decode"
    with pytest.raises(smolvlm.VideoError) as info:
        model.ask(video=tmp_path / "missing.gif", prompt="What happens?")
    assert info.value.kind == "video_read"
    with pytest.raises(smolvlm.VideoError) as info:
        model.ask(video=_clip(tmp_path / "c.gif"), prompt="What happens?", sample_fps=0.0)
    assert info.value.kind == "video_sampling"
    with pytest.raises(TypeError):
        model.ask([b"x"], video=b"y")
    # The model goes on.
    assert model.ask(video=_clip(tmp_path / "d.gif"), prompt="What happens?", max_tokens=4).text


def test_a_video_answer_equals_the_cli_record(model, tiny_files, tmp_path):
    """The same video through `smolvlm ask --video` gives the same text."""
    root = pathlib.Path(__file__).resolve().parents[3]
    cli = root / "target" / "release" / "smolvlm"
    if not cli.is_file():
        pytest.fail(f"{cli} is missing: build the workspace first (cargo build --release --workspace)")
    clip = _clip(tmp_path / "clip.gif")
    record = tmp_path / "answer.json"
    context = str(model.info()["context_size"])
    subprocess.run(
        [str(cli), "ask", "--video", str(clip), "-p", "What happens?", "-m", tiny_files[0],
         "--mmproj", tiny_files[1], "-n", str(MAX), "--threads", "2", "--ctx-size", context,
         "-o", str(record)],
        check=True, capture_output=True,
    )
    cli_answer = json.loads(record.read_text())
    answer = model.ask(video=clip, prompt="What happens?", max_tokens=MAX)
    assert cli_answer["caption"] == answer.text.strip()
    assert (cli_answer["frames"], cli_answer["image_tokens"]) == (answer.frames, answer.image_tokens)
