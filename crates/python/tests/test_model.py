"""The plain API on the tiny model: every image type, streaming, batches,
typed errors, the GIL released, and parity with the CLI."""

import io
import json
import os
import pathlib
import subprocess
import threading
import time

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
    # The bytes and the array are the first picture again: copies, not encoded.
    assert results[0].duplicate_of is None
    assert results[2].duplicate_of == 0 and results[4].duplicate_of == 0
    assert results[2].images_encoded == 0 and results[2].timings["total"] == 0.0


def test_caption_many_encodes_identical_images_once_wherever_they_are(tiny_files, picture, tmp_path):
    from conftest import gradient

    others = [gradient(80, 60).rotate(90, expand=True), gradient(70, 50).transpose(0)]
    copies = []
    for i in range(6):
        path = tmp_path / f"copy-{i}.png"
        picture.save(path)
        copies.append(str(path))
    # Copies apart and together, the others between them.
    images = [copies[0], others[0], copies[1], copies[2], others[1], copies[3], copies[4], copies[5]]
    for parallel in (1, 2):
        # A model of its own: no idle session holds any of these images.
        model = smolvlm.Model(*tiny_files, threads=2)
        results = model.caption_many(images, max_tokens=MAX, parallel=parallel)
        assert all(isinstance(r, smolvlm.Caption) for r in results), results
        assert sum(r.images_encoded for r in results) == 3
        assert [r.duplicate_of for r in results] == [None, None, 0, 0, None, 0, 0, 0]
        assert len({results[i].text for i in (0, 2, 3, 5, 6, 7)}) == 1


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
    results, errors, spans = [], [], []

    def work():
        try:
            for _ in range(5):
                started = time.perf_counter()
                results.append(model.caption(picture, max_tokens=MAX).text)
                spans.append((started, time.perf_counter()))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [expected] * 20
    # With the GIL held for a whole caption, no caption could begin while
    # another ran: the spans would never overlap.
    spans.sort()
    overlaps = sum(1 for a, b in zip(spans, spans[1:]) if b[0] < a[1])
    assert overlaps >= 1, "captions on 4 threads never overlapped"


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
    # A typed media marker is text, not a second image: one image's tokens,
    # and the marker's characters as prompt tokens of their own.
    typed = model.ask([picture], "What is <__media__>?", max_tokens=MAX)
    plain = model.ask([picture], "What is ?", max_tokens=MAX)
    assert typed.image_tokens == one.image_tokens
    assert typed.prompt_tokens > plain.prompt_tokens


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


def test_errors_raised_before_the_engine_carry_their_kind_too(model, picture):
    with pytest.raises(smolvlm.SmolVLMError) as info:
        model.caption(picture, timeout=-1.0)
    assert info.value.kind == "invalid_option" and info.value.transient is False
    with pytest.raises(smolvlm.SmolVLMError) as info:
        model.caption(picture, timeout=0.0)
    assert info.value.kind == "invalid_option"
    with pytest.raises(smolvlm.ImageError) as info:
        smolvlm._native.Image.rgb(2, 2, b"123")
    assert info.value.kind == "image_buffer_size"
    with pytest.raises(smolvlm.ImageError) as info:
        smolvlm._native.Image.rgba(2, 2, bytes(12))
    assert info.value.kind == "image_buffer_size"
    with pytest.raises(smolvlm.ImageError) as info:
        model.caption(numpy.zeros((8, 8), numpy.uint8))
    assert info.value.kind == "image_buffer_size"


def test_a_pil_image_with_alpha_captions_as_its_file_does(model, tmp_path):
    from PIL import Image

    rgba = Image.new("RGBA", (96, 64))
    pixels = rgba.load()
    for y in range(64):
        for x in range(96):
            pixels[x, y] = (x * 2, 250 - y * 3, 40 + x, (x * 255) // 95)
    path = tmp_path / "alpha.png"
    rgba.save(path)
    by_file = model.caption(str(path), max_tokens=MAX)
    # Composited on white, as the file is; not with the alpha dropped.
    assert model.caption(rgba, max_tokens=MAX).text == by_file.text
    white = Image.new("RGB", rgba.size, (255, 255, 255))
    white.paste(rgba, mask=rgba.getchannel("A"))
    assert model.caption(white, max_tokens=MAX).text == by_file.text
    assert model.caption(rgba.convert("RGB"), max_tokens=MAX).text != by_file.text
    # A palette image with a transparent colour, likewise.
    palette = rgba.convert("RGB").convert("P")
    palette.info["transparency"] = 0
    palette_path = tmp_path / "palette.png"
    palette.save(palette_path, transparency=0)
    assert (
        model.caption(palette, max_tokens=MAX).text
        == model.caption(str(palette_path), max_tokens=MAX).text
    )


def test_a_chat_waits_for_its_reply_without_holding_the_gil(model, picture):
    chat = model.chat()
    chat.send("Describe this image.", images=[picture], max_tokens=4)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    ended = []

    def reply():
        chat.send("Say more.", max_tokens=600, stop=[])
        ended.append(time.perf_counter())

    ticking = threading.Thread(target=ticker)
    replying = threading.Thread(target=reply)
    ticking.start()
    replying.start()
    time.sleep(0.02)
    asked = time.perf_counter()
    history = chat.history
    answered = time.perf_counter()
    replying.join()
    stop.set()
    ticking.join()
    assert ended and asked < ended[0], "the reply ended before history was asked"
    # It waited for the reply (the reply is in it) ...
    assert len(history) == 4, history
    # ... and other Python threads ran while it waited.
    during = [t for t in ticks if asked < t < answered]
    assert len(during) >= 3, f"{len(during)} ticks in {answered - asked:.3f} s"
