"""Turn whatever a user calls "an image" into the base64 string Ollama's API carries.

Ollama wants images as base64 in a message's ``images`` list. Users have paths, ``pathlib.Path``
objects, raw bytes, PIL images and ``data:`` URLs copied from a browser. This module accepts all of
them, checks that the bytes are an image format the daemon decodes (PNG, JPEG, WebP, GIF, BMP) so a
wrong file fails here with its name instead of as an opaque server error, and never reads a file
twice. A plain string that is neither an existing file nor a ``data:`` URL is refused: silently
treating a mistyped path as base64 is how the official client turns typos into garbage requests.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import stat
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Union

from .._errors import InputError, InputNotFound, UsageError

__all__ = ["ImageLike", "encode_image", "encode_images", "sniff_format"]

ImageLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Any]

MAX_IMAGE_BYTES = 64 << 20  # 64 MiB: far above any photo Gemma's 896x896 input needs
_SPECIAL = (
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)

# Magic numbers of the formats Ollama's decoders accept (Go image/png, jpeg, gif, bmp, x/image/webp).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


def sniff_format(data: bytes) -> str | None:
    """The image format of ``data`` by its magic number, or None when it is not one we know."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def _is_pil_image(obj: Any) -> bool:
    # Duck-typed so PIL is imported only by users who pass PIL images.
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "save") and hasattr(obj, "mode")


def _pil_to_png(img: Any) -> bytes:
    buf = io.BytesIO()
    if img.mode not in ("RGB", "RGBA", "L", "LA", "P", "I;16", "1"):
        img = img.convert("RGB")  # CMYK, YCbCr, F, ... have no PNG encoding
    img.save(buf, format="PNG")
    return buf.getvalue()


def _decode_data_url(url: str) -> bytes:
    """RFC 2397: ``data:[<mediatype>][;base64],<data>``."""
    head, sep, payload = url[5:].partition(",")
    if not sep:
        raise UsageError(
            "malformed data: URL (no comma before the payload): pass a file path or "
            "a URL like data:image/png;base64,iVBOR..."
        )
    if head.endswith(";base64"):
        try:
            return base64.b64decode(payload.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise UsageError("data: URL says ;base64 but its payload is not valid base64") from None
    return urllib.parse.unquote_to_bytes(payload)


def _read_file(path: Path) -> bytes:
    """The bytes of a regular file of at most :data:`MAX_IMAGE_BYTES`.

    Opened without blocking and checked with ``fstat`` before any read, so a FIFO, a socket or a
    device (``/dev/zero``) fails at once instead of hanging or filling memory.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _SPECIAL if test(st.st_mode)), "special file")
            raise InputError(
                f"image {str(path)!r} is a {kind}, not a regular file: pass an image file"
            )
        if st.st_size > MAX_IMAGE_BYTES:
            raise InputError(
                f"image {str(path)!r} is {st.st_size / 1e6:,.0f} MB, over the "
                f"{MAX_IMAGE_BYTES >> 20} MiB limit: Gemma sees 896x896, so shrink it first"
            )
        data = fh.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:  # grew while we read it
        raise InputError(f"image {str(path)!r} is over the {MAX_IMAGE_BYTES >> 20} MiB limit")
    return data


def _read_bytes(image: ImageLike) -> tuple[bytes, str]:
    """The raw bytes of ``image`` and a label naming it in error messages."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), f"<{len(image)} bytes>"
    if isinstance(image, str) and image.startswith("data:"):
        return _decode_data_url(image), "data: URL"
    if isinstance(image, (str, os.PathLike)):
        path = Path(os.fspath(image)).expanduser()
        try:
            return _read_file(path), str(path)
        except FileNotFoundError:
            raise InputNotFound(
                f"image {str(path)!r} does not exist: pass an existing file, bytes, "
                "a PIL image or a data: URL"
            ) from None
        except IsADirectoryError:
            raise InputError(f"image {str(path)!r} is a folder: pass an image file") from None
        except OSError as err:
            raise InputError(f"cannot read image {str(path)!r}: {err.strerror or err}") from None
    if _is_pil_image(image):
        return _pil_to_png(image), "PIL image"
    raise UsageError(
        f"cannot use a {type(image).__name__} as an image: pass a path, bytes, "
        "a PIL image or a data: URL"
    )


def _already_base64(text: str) -> bool:
    """True for a base64 string that decodes to a known image (e.g. history from Ollama)."""
    if len(text) < 12 or os.sep in text or "." in text[-5:]:
        return False
    try:
        head = base64.b64decode(text[:16], validate=True)
    except (binascii.Error, ValueError):
        return False
    return sniff_format(head) is not None


def encode_image(image: ImageLike) -> str:
    """Base64 of one image after checking it is a PNG/JPEG/WebP/GIF/BMP image.

    A string that is base64 of an image already (as in message history Ollama returns) is
    passed through; a string that is neither that, a ``data:`` URL nor an existing file fails.
    """
    if isinstance(image, str) and not image.startswith("data:") and _already_base64(image):
        try:
            base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise UsageError("image string looks like base64 but does not decode") from None
        return image
    data, label = _read_bytes(image)
    if not data:
        raise InputError(f"image {label} is empty")
    if sniff_format(data) is None:
        raise InputError(
            f"image {label} is not a PNG, JPEG, WebP, GIF or BMP file "
            f"(starts with {data[:8]!r}): convert it first"
        )
    return base64.b64encode(data).decode("ascii")


def encode_images(images: ImageLike | Iterable[ImageLike] | None) -> list[str]:
    """Base64 of each image; a single image (not in a list) is accepted too."""
    if images is None:
        return []
    if isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike)) or _is_pil_image(
        images
    ):
        return [encode_image(images)]
    return [encode_image(img) for img in images]
