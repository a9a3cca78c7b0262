"""The plain API on the tiny model: every image type, streaming, batches,
typed errors, the GIL released, and parity with the CLI."""

import io
import json
import os
import pathlib
import subprocess
import threading

import numpy
import pytest

import smolvlm

MAX = 16


def test_every_image_type_gives_the_same_caption(model, picture, png_bytes, tmp_path):
    path = tmp_path / "gradient.png"
    path.write_bytes(png_bytes)
    by_path = model.caption(str(path), max_tokens=MAX)
    assert by_path.text and len(by_path.tokens) <= MAX
    assert by_path.image_tokens > 0 and by_path.prompt_tokens > by_path.image_tokens
    assert model.caption(path, max_tokens=MAX).text == by_path.text  # os.PathLike
    assert model.caption(png_bytes, max_tokens=MAX).text == by_path.text
    assert model.caption(bytearray(png_bytes), max_tokens=MAX).text == by_path.text
    assert model.caption(picture, max_tokens=MAX).text == by_path.text  # PIL
    array = numpy.asarray(picture)
    assert array.shape == (64, 96, 3) and array.dtype == numpy.uint8
    assert model.caption(array, max_tokens=MAX).text == by_path.text
    assert set(by_path.timings) == {"decode", "resize", "tokenize", "encode", "prefill", "generate", "total"}
    assert by_path.finish in ("max_tokens", "end_of_text", "stop")
    assert "Caption(" in repr(by_path)


def test_captions_are_deterministic_and_seeded_sampling_is_reproducible(model, picture):
    a = model.caption(picture, max_tokens=MAX)
    b = model.caption(picture, max_tokens=MAX)
    assert a.tokens == b.tokens
    s1 = model.caption(picture, max_tokens=MAX, temperature=1.0, seed=7)
    s2 = model.caption(picture, max_tokens=MAX, temperature=1.0, seed=7)
    assert s1.tokens == s2.tokens


def test_stream_yields_pieces_that_make_the_caption(model, picture):
    whole = model.caption(picture, max_tokens=MAX)
    stream = model.stream(picture, max_tokens=MAX)
    pieces = list(stream)
    assert len(pieces) >= 1 and all(pieces)
    assert "".join(pieces) == whole.text
    assert stream.caption is not None and stream.caption.text == whole.text


def test_a_cancelled_stream_raises_cancelled(model, picture):
    stream = model.stream(picture, max_tokens=200)
    first = next(iter(stream))
    assert first
    stream.cancel()
    with pytest.raises(smolvlm.Cancelled) as info:
        for _ in stream:
            pass
    assert info.value.kind == "cancelled"
    assert info.value.transient is True


def test_caption_many_keeps_order_and_returns_failures_as_values(model, picture, png_bytes, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    images = [picture, str(bad), png_bytes, str(tmp_path / "missing.png"), numpy.asarray(picture), 42]
    results = model.caption_many(images, max_tokens=MAX, parallel=2)
    assert len(results) == len(images)
    expected = model.caption(picture, max_tokens=MAX).text
    assert isinstance(results[0], smolvlm.Caption) and results[0].text == expected
    assert isinstance(results[1], smolvlm.ImageError) and results[1].kind == "image_decode"
    assert results[2].text == expected
    assert isinstance(results[3], smolvlm.ImageError) and results[3].kind == "image_read"
    assert results[4].text == expected
    assert isinstance(results[5], TypeError)


def test_errors_are_typed_and_carry_their_kind(model, tiny_files, tmp_path):
    with pytest.raises(smolvlm.ImageError) as info:
        model.caption(b"not an image")
    assert info.value.kind in ("image_format", "image_decode")
    assert isinstance(info.value, smolvlm.SmolVLMError)
    with pytest.raises(smolvlm.LoadError) as info:
        smolvlm.Model(str(tmp_path / "nope.gguf"), tiny_files[1])
    assert info.value.kind == "file_not_found"
    with pytest.raises(smolvlm.CaptionError) as info:
        model.caption(numpy.zeros((8, 8, 3), numpy.uint8), prompt="x" * 100_000)
    assert info.value.kind == "prompt_too_long"
    with pytest.raises(smolvlm.SmolVLMError) as info:
        model.caption(numpy.zeros((8, 8, 3), numpy.uint8), max_tokens=0)
    assert info.value.kind == "invalid_option"
    with pytest.raises(smolvlm.ImageError):
        model.caption(numpy.zeros((8, 8), numpy.uint8))
    with pytest.raises(TypeError):
        model.caption(3.5)
    with pytest.raises(smolvlm.HubError) as info:
        smolvlm.Model.from_pretrained("not a repo!!")
    assert info.value.kind.startswith("hub_")


def test_info_describes_the_pair(model, tiny_files):
    info = model.info()
    assert info["model_path"] == tiny_files[0]
    assert info["projector"] == "idefics3"
    assert info["tokens_per_tile"] > 0 and info["threads"] == 2


def test_threads_caption_in_parallel_with_the_gil_released(model, picture):
    expected = model.caption(picture, max_tokens=MAX).text
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(model.caption(picture, max_tokens=MAX).text)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [expected] * 20


def test_a_caption_equals_the_cli_record(model, tiny_files, png_bytes, tmp_path):
    """The same image through the CLI gives the same text (one engine)."""
    root = pathlib.Path(__file__).resolve().parents[3]
    cli = root / "target" / "release" / "smolvlm"
    if not cli.is_file():
        pytest.fail(f"{cli} is missing: build the workspace first (cargo build --release --workspace)")
    image = tmp_path / "g.png"
    image.write_bytes(png_bytes)
    out = tmp_path / "out.jsonl"
    subprocess.run(
        [str(cli), "caption", str(image), "-m", tiny_files[0], "--mmproj", tiny_files[1],
         "-n", str(MAX), "-p", smolvlm.DEFAULT_PROMPT, "-o", str(out), "--threads", "2"],
        check=True, capture_output=True,
    )
    record = json.loads(out.read_text().splitlines()[0])
    assert record["caption"] == model.caption(str(image), max_tokens=MAX).text


def test_ask_takes_several_images_in_order(model, picture, png_bytes):
    both = model.ask([picture, png_bytes], "Compare them.", max_tokens=MAX)
    assert both.images == 2
    # The pooled session still holds both: asked again, it encodes neither.
    again = model.ask([picture, png_bytes], "Compare them.", max_tokens=MAX)
    assert (again.images_encoded, again.tokens) == (0, both.tokens)
    one = model.caption(picture, max_tokens=MAX)
    assert both.image_tokens == 2 * one.image_tokens
    none = model.ask([], "Say hi.", max_tokens=MAX)
    assert (none.images, none.image_tokens) == (0, 0)
    # A typed media marker is text, not a second image.
    typed = model.ask([picture], "What is <__media__>?", max_tokens=MAX)
    assert typed.images == 1


def test_a_chat_answers_follow_ups_without_encoding_again(model, picture, tmp_path):
    chat = model.chat(system="Answer briefly.")
    first = chat.send("Describe this image.", images=[picture], max_tokens=MAX)
    assert first.images_encoded == 1
    second = chat.send("What colour is it?", max_tokens=MAX)
    assert (second.images, second.images_encoded) == (1, 0)
    assert second.cached_tokens >= first.prompt_tokens
    assert [t[0] for t in chat.history] == ["system", "user", "assistant", "user", "assistant"]
    # A failed message is dropped; the conversation goes on.
    with pytest.raises(smolvlm.ImageError):
        chat.send("And this?", images=[str(tmp_path / "missing.png")], max_tokens=MAX)
    assert len(chat.history) == 5
    chat.reset()
    assert chat.history == [("system", "Answer briefly.", 0)]
    again = chat.send("Describe this image.", images=[picture], max_tokens=MAX)
    assert again.tokens == first.tokens
    assert again.images_encoded == 1
