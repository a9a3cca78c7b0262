"""Caption images with SmolVLM in-process, through llama.cpp's mtmd.

No server, no port, no HTTP: the model is loaded into this process once, and
images go to it as pixels. The engine runs with the GIL released, so Python
threads caption in parallel (each gets a session of its own).

    import smolvlm
    model = smolvlm.Model.from_pretrained("SmolVLM-256M-Instruct")
    print(model.caption("photo.jpg").text)

An image is a path (``str`` or ``os.PathLike``), encoded ``bytes``, a
``PIL.Image.Image`` or a numpy ``HxWx3 uint8`` array.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Union

from . import _native
from ._native import (
    Cancelled,
    Caption,
    CaptionError,
    ConfigError,
    HubError,
    ImageError,
    LoadError,
    SmolVLMError,
    Stream,
    VideoError,
)

__all__ = [
    "Model",
    "Chat",
    "Caption",
    "Stream",
    "SmolVLMError",
    "LoadError",
    "HubError",
    "ImageError",
    "VideoError",
    "CaptionError",
    "Cancelled",
    "ConfigError",
    "DEFAULT_PROMPT",
]

__version__ = _native.__version__

#: The prompt used when none is given.
DEFAULT_PROMPT = _native.DEFAULT_PROMPT

ImageLike = Any  # str | os.PathLike | bytes | PIL.Image.Image | numpy.ndarray


def _image(image: ImageLike) -> "_native.Image":
    """Turns what users hold into the native image type."""
    if isinstance(image, _native.Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        return _native.Image.path(os.fspath(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _native.Image.encoded(bytes(image))
    # PIL, without importing it: anything with .convert() and .tobytes().
    # Alpha goes to the library, which composites it onto the background
    # (white) as it does for a file: the same picture gives the same caption.
    if hasattr(image, "convert") and hasattr(image, "tobytes") and hasattr(image, "size"):
        mode = getattr(image, "mode", "RGB")
        info = getattr(image, "info", {}) or {}
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in info:
            rgba = image.convert("RGBA")
            width, height = rgba.size
            return _native.Image.rgba(width, height, rgba.tobytes())
        rgb = image.convert("RGB")
        width, height = rgb.size
        return _native.Image.rgb(width, height, rgb.tobytes())
    # numpy, likewise: an HxWx3 uint8 array.
    shape = getattr(image, "shape", None)
    dtype = getattr(image, "dtype", None)
    if shape is not None and dtype is not None:
        if len(shape) != 3 or shape[2] != 3 or str(dtype) != "uint8":
            error = ImageError(
                f"a numpy image must be HxWx3 uint8, got shape {tuple(shape)} dtype {dtype}"
            )
            error.kind, error.transient = "image_buffer_size", False
            raise error
        import numpy  # only reached with a numpy array in hand

        pixels = numpy.ascontiguousarray(image)
        return _native.Image.rgb(int(shape[1]), int(shape[0]), pixels.tobytes())
    raise TypeError(
        "an image is a path, bytes, a PIL.Image.Image or an HxWx3 uint8 numpy array; "
        f"got {type(image).__name__}"
    )


class Model:
    """A loaded SmolVLM model pair (text model and vision projector).

    ``Model(model_path, mmproj_path)`` loads local GGUF files;
    ``Model.from_pretrained(name_or_repo)`` loads a preset or a Hugging Face
    Hub repo, downloading it into the Hugging Face cache on first use.
    ``threads`` is per session (default: every core); ``max_tiles`` caps the
    tiles per image, the main speed dial.
    """

    def __init__(
        self,
        model_path: Union[str, os.PathLike],
        mmproj_path: Union[str, os.PathLike],
        threads: Optional[int] = None,
        max_tiles: Optional[int] = None,
    ) -> None:
        self._native = _native.Model(
            os.fspath(model_path), os.fspath(mmproj_path), threads, max_tiles
        )

    @classmethod
    def from_pretrained(
        cls,
        name_or_repo: Optional[str] = None,
        offline: bool = False,
        threads: Optional[int] = None,
        max_tiles: Optional[int] = None,
    ) -> "Model":
        """A preset (``"SmolVLM-256M-Instruct"``, the default) or a Hub repo
        (``"owner/name[@revision][:quantization]"``). ``offline=True`` uses
        the cache only. ``HF_HOME``, ``HF_ENDPOINT`` and ``HF_TOKEN`` apply."""
        model = cls.__new__(cls)
        model._native = _native.Model.from_pretrained(name_or_repo, offline, threads, max_tiles)
        return model

    def info(self) -> dict:
        """What the model is: files, architecture, sizes, tiles, threads."""
        return self._native.info()

    def caption(
        self,
        image: ImageLike,
        prompt: str = DEFAULT_PROMPT,
        max_tokens: Optional[int] = None,
        temperature: float = 0.0,
        seed: int = 0,
        stop: Sequence[str] = (),
        timeout: Optional[float] = None,
    ) -> Caption:
        """Captions one image. Greedy by default: the same inputs give the
        same text. ``timeout`` is seconds for the whole caption (then a
        ``CaptionError`` of kind ``deadline_exceeded``). Raises ``ImageError``
        or ``CaptionError``; every error has ``.kind``, a stable name."""
        return self._native.caption(
            _image(image), prompt, max_tokens, temperature, seed, list(stop), timeout
        )

    def ask(
        self,
        images: Iterable[ImageLike] = (),
        prompt: str = DEFAULT_PROMPT,
        max_tokens: Optional[int] = None,
        temperature: float = 0.0,
        seed: int = 0,
        stop: Sequence[str] = (),
        timeout: Optional[float] = None,
        video: Union[str, os.PathLike, bytes, None] = None,
        sample_fps: Optional[float] = None,
        max_frames: Optional[int] = None,
        frame_rate: Optional[float] = None,
    ) -> Caption:
        """One answer about several images (or none), given in order, then
        the prompt, in one user turn. Each image is encoded once.

        With ``video`` (a path to an animated GIF, WebP or APNG, to an MP4,
        WebM, MOV or MKV (needs ffmpeg on PATH), or to a folder of frames
        at ``frame_rate`` frames per second; or encoded bytes), the answer
        is about the video instead, seen as SmolVLM2 was trained to see one:
        frames sampled at ``sample_fps`` (default 1), at most ``max_frames``
        (default 64, fewer when they would not fit), each one overview
        image. ``caption.videos`` tells what was shown."""
        if video is not None:
            if list(images):
                raise TypeError("ask takes images or a video, not both")
            source = bytes(video) if isinstance(video, (bytes, bytearray, memoryview)) else os.fspath(video)
            return self._native.ask_video(
                source, prompt, max_tokens, temperature, seed, list(stop), timeout,
                sample_fps, max_frames, frame_rate,
            )
        return self._native.ask(
            [_image(i) for i in images], prompt, max_tokens, temperature, seed, list(stop), timeout
        )

    def chat(self, system: Optional[str] = None) -> "Chat":
        """A conversation with a session of its own, so that follow-ups
        evaluate only their own turn and do not encode its images again::

            chat = model.chat()
            chat.send("Describe this image.", images=["photo.jpg"])
            print(chat.send("What colour is the cup?").text)
        """
        return Chat(self._native.chat(system))

    def stream(
        self,
        image: ImageLike,
        prompt: str = DEFAULT_PROMPT,
        max_tokens: Optional[int] = None,
        temperature: float = 0.0,
        seed: int = 0,
        stop: Sequence[str] = (),
        timeout: Optional[float] = None,
    ) -> Stream:
        """Like ``caption``, yielding the text in pieces as it is generated.
        After the loop, ``stream.caption`` holds the whole result;
        ``stream.cancel()`` stops it early."""
        return self._native.stream(
            _image(image), prompt, max_tokens, temperature, seed, list(stop), timeout
        )

    def caption_many(
        self,
        images: Iterable[ImageLike],
        prompt: str = DEFAULT_PROMPT,
        max_tokens: Optional[int] = None,
        temperature: float = 0.0,
        seed: int = 0,
        stop: Sequence[str] = (),
        timeout: Optional[float] = None,
        parallel: int = 1,
    ) -> List[Union[Caption, SmolVLMError]]:
        """Captions many images, in order, on the library's batch engine
        (``smolvlm::batch``, as the CLI's ``caption``): the next images are
        decoded and resized on another thread while the current one is
        captioned, and ``parallel`` sessions caption at once. A failed image
        is its error (an exception instance, not raised), so one bad file
        loses nothing. An image whose pixels (once prepared) equal an
        earlier one's is not encoded again: its ``Caption`` is a copy, and
        its ``duplicate_of`` is that image's index."""
        native = []
        for item in images:
            try:
                native.append(_image(item))
            except (TypeError, SmolVLMError) as e:
                native.append(e)
        keys = [i for i, img in enumerate(native) if isinstance(img, _native.Image)]
        ok = [native[i] for i in keys]
        results = iter(
            self._native.caption_many(
                ok, prompt, max_tokens, temperature, seed, list(stop), timeout, parallel, keys
            )
        )
        return [next(results) if isinstance(img, _native.Image) else img for img in native]


class Chat:
    """A conversation about images, from ``Model.chat()``.

    It holds a session of its own, which keeps the conversation in its KV
    cache: a follow-up evaluates only its own turn (``Caption.images_encoded``
    is 0 and ``Caption.cached_tokens`` counts what was reused). Answers
    equal what a fresh session gives for the whole conversation.
    """

    def __init__(self, native: "_native.Chat") -> None:
        self._native = native

    def send(
        self,
        text: str,
        images: Iterable[ImageLike] = (),
        max_tokens: Optional[int] = None,
        temperature: float = 0.0,
        seed: int = 0,
        stop: Sequence[str] = (),
        timeout: Optional[float] = None,
    ) -> Caption:
        """Sends a message (its images first, then the text) and returns the
        answer, which joins the conversation. On an error the message is
        dropped, and the conversation goes on as it was."""
        return self._native.send(
            text, [_image(i) for i in images], max_tokens, temperature, seed, list(stop), timeout
        )

    def reset(self) -> None:
        """Starts over; a system message given to ``Model.chat`` stays."""
        self._native.reset()

    @property
    def history(self) -> List[tuple]:
        """The turns so far, as ``(role, text, number_of_images)``."""
        return self._native.history()
