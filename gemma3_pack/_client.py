"""A thin Gemma 3 SDK over the official ``ollama`` client.

``Client`` holds an ``ollama.Client`` and forwards to it, so host parsing (``OLLAMA_HOST``), headers,
timeouts and ``transport=`` behave exactly like Ollama's own client and the response types stay
``ollama.ChatResponse`` & co. What it adds is what Gemma users keep getting wrong by hand:

* the Gemma team's sampling settings sent under the caller's options, as a plain dict (an
  ``ollama.Options`` object silently drops ``min_p``);
* images from paths, bytes, PIL images or ``data:`` URLs, and a vision check *before* the chat
  request, so a text-only model fails with a message naming a vision variant instead of answering
  about a picture it never saw;
* one error seam (:func:`_translate`) that turns ``ollama.ResponseError``, the builtin
  ``ConnectionError`` and raw httpx errors (which the official client lets escape from streams) into
  the :mod:`gemma3_pack._errors` tree, also inside stream iterators;
* shipping an export folder into the daemon: blobs uploaded once (HEAD first, streamed body, sha256
  from the manifest), then ``create`` from the same spec that writes the Modelfile.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import httpx
import ollama
import pydantic
from ollama import ChatResponse, GenerateResponse, ProgressResponse, ShowResponse

from ._errors import (
    Gemma3PackError,
    InputError,
    InputNotFound,
    ModelNotFound,
    OllamaNotRunning,
    OllamaResponseError,
    UsageError,
    VisionNotSupported,
)
from ._family import SAMPLING, VARIANTS, get_variant
from ._files import sha256_file
from ._images import ImageLike, encode_images

__all__ = [
    "AsyncClient",
    "AsyncConversation",
    "Client",
    "Conversation",
    "GemmaModel",
    "choose_packaging",
    "read_export",
]

DEFAULT_MODEL = "gemma3:4b"
CHUNK = 1 << 20  # 1 MiB: hashing and upload chunk size
PAIR_MIN_VERSION = (0, 30, 0)  # llama-server era: text GGUF + mmproj work as two files
Packaging = Literal["auto", "pair", "fused"]
Messages = str | Sequence[Mapping[str, Any] | ollama.Message]
OptionsLike = Mapping[str, Any] | ollama.Options | None
# What `ollama create --quantize` accepts (>= v0.7.0), and the source types it quantizes from.
OLLAMA_QUANTIZE = ("q4_K_M", "q4_K_S", "q8_0", "f16", "f32", "bf16")
QUANTIZABLE_FROM = ("F16", "BF16", "F32")


# --------------------------------------------------------------------------- errors


def _model_from_error(message: str) -> str | None:
    match = re.search(r"model ['\"]?([^'\"\s]+)['\"]? not found", message)
    return match.group(1) if match else None


@contextlib.contextmanager
def _translate(host: str, model: str | None = None) -> Iterator[None]:
    """Turn everything the ollama client or httpx can raise into our error tree (the one seam)."""
    try:
        yield
    except Gemma3PackError:
        raise
    except ollama.ResponseError as err:
        text = str(err.error)
        if err.status_code == 404 and "not found" in text and ("model" in text or model):
            raise ModelNotFound(model or _model_from_error(text) or "?") from None
        raise OllamaResponseError(text, err.status_code) from None
    except (httpx.ConnectError, httpx.ConnectTimeout, ConnectionRefusedError):
        raise OllamaNotRunning(host) from None
    except ConnectionError as err:
        # ollama raises the builtin ConnectionError for httpx.ConnectError; other subclasses
        # (reset, broken pipe) mean the daemon went away mid-request.
        if type(err) is ConnectionError:
            raise OllamaNotRunning(host) from None
        raise OllamaResponseError(f"connection to Ollama at {host} dropped: {err}") from None
    except httpx.TransportError as err:  # RemoteProtocolError, ReadError, ReadTimeout ...
        raise OllamaResponseError(
            f"connection to Ollama at {host} failed mid-request ({type(err).__name__}: {err})"
        ) from None
    except json.JSONDecodeError as err:
        raise OllamaResponseError(f"Ollama at {host} sent a malformed line: {err.msg}") from None
    except pydantic.ValidationError as err:  # the ollama client's request models (e.g. model="")
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise UsageError(f"invalid {where}: {first.get('msg', err)}") from None


def _translated(it: Iterator[Any], host: str, model: str | None) -> Iterator[Any]:
    """Iterate a stream from the ollama client, translating errors raised between chunks."""
    while True:
        with _translate(host, model):
            try:
                item = next(it)
            except StopIteration:
                return
        yield item


async def _atranslated(it: AsyncIterator[Any], host: str, model: str | None) -> AsyncIterator[Any]:
    while True:
        with _translate(host, model):
            try:
                item = await it.__anext__()
            except StopAsyncIteration:
                return
        yield item


# --------------------------------------------------------------------------- request building


def merge_options(options: OptionsLike) -> dict[str, Any]:
    """Gemma defaults under the caller's options, key by key, as a plain dict.

    An ``ollama.Options`` is converted with ``exclude_unset`` so only what the caller set
    overrides a default; a ``None`` value in a mapping removes that key (the server default wins).
    """
    merged: dict[str, Any] = dict(SAMPLING)
    if options is None:
        return merged
    if isinstance(options, ollama.Options):
        given: Mapping[str, Any] = options.model_dump(exclude_unset=True)
    elif isinstance(options, Mapping):
        given = options
    else:
        raise UsageError(f"options must be a dict or ollama.Options, not {type(options).__name__}")
    for key, value in given.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _as_dict(message: Mapping[str, Any] | ollama.Message) -> dict[str, Any]:
    if isinstance(message, ollama.Message):
        return message.model_dump(exclude_none=True)
    if isinstance(message, Mapping):
        return dict(message)
    raise UsageError(f"a message must be a dict or ollama.Message, not {type(message).__name__}")


def build_messages(
    prompt_or_messages: Messages,
    *,
    system: str | None = None,
    images: ImageLike | Iterable[ImageLike] | None = None,
) -> list[dict[str, Any]]:
    """The ``messages`` list for /api/chat; the caller's list and dicts are never modified."""
    messages: list[dict[str, Any]]
    if isinstance(prompt_or_messages, str):
        messages = [{"role": "user", "content": prompt_or_messages}]
    else:
        messages = [_as_dict(m) for m in prompt_or_messages]  # copies: safe to edit below
    if not messages:
        raise UsageError("no messages to send: pass a prompt string or a non-empty message list")
    if system is not None:
        if messages[0].get("role") == "system":
            raise UsageError("both system= and a leading system message were given: keep one")
        messages.insert(0, {"role": "system", "content": system})
    for msg in messages:
        if msg.get("images"):
            msg["images"] = encode_images(msg["images"])
    encoded = encode_images(images)
    if encoded:
        for msg in reversed(messages):
            if msg.get("role") == "user":
                msg["images"] = [*(msg.get("images") or []), *encoded]
                break
        else:
            raise UsageError("images= needs a user message to attach to")
    return messages


def _has_images(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any(m.get("images") for m in messages)


def _vision_suggestion(model: str) -> str:
    """A vision-capable tag of the same kind as ``model`` (QAT stays QAT)."""
    try:
        kind = get_variant(model).kind
    except UsageError:
        kind = "it-qat" if "qat" in model else "it"
    tag = VARIANTS[f"gemma3-4b-{kind}"].ollama_tag
    return tag or "gemma3:4b"


def _has_vision(show: ShowResponse) -> bool:
    if show.capabilities is not None:
        return "vision" in show.capabilities
    # Daemons before capabilities existed (< 0.6.4): a vision tower shows up in model_info.
    return any(".vision." in key for key in (show.modelinfo or {}))


@dataclass(frozen=True)
class GemmaModel:
    """One installed Gemma 3 model, as ``list_gemma()`` reports it."""

    name: str
    size: int  # bytes on disk
    parameter_size: str
    quant: str
    capabilities: tuple[str, ...] = field(default_factory=tuple)

    @property
    def vision(self) -> bool:
        return "vision" in self.capabilities

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "parameter_size": self.parameter_size,
            "quant": self.quant,
            "capabilities": list(self.capabilities),
        }


def _is_gemma3(entry: Any) -> bool:
    details = entry.details
    families = set((details.families or []) if details else []) | {
        details.family if details else None
    }
    return "gemma3" in families or (entry.model or "").startswith("gemma3")


def _parse_version(text: str) -> tuple[int, int, int]:
    nums = [int(n) for n in re.findall(r"\d+", text)[:3]]
    return tuple([*nums, 0, 0, 0][:3])  # type: ignore[return-value]


# --------------------------------------------------------------------------- export folders


@dataclass(frozen=True)
class ExportFile:
    path: Path
    size: int | None
    sha256: str | None
    quant: str | None = None


@dataclass(frozen=True)
class ExportManifest:
    """The parts of ``export.json`` (written by ``gemma3-pack export``) that shipping needs."""

    folder: Path
    name: str
    models: tuple[ExportFile, ...]
    mmproj: ExportFile | None
    fused: ExportFile | None


def _export_file(folder: Path, entry: Any, what: str) -> ExportFile:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
        raise InputError(
            f'{folder / "export.json"}: {what} entry has no "path"; re-export the folder'
        )
    rel = Path(entry["path"])
    # normpath, not resolve(): a symlink inside the folder to a big file elsewhere is fine,
    # a path that climbs out of the folder is not.
    path = Path(os.path.normpath(folder.absolute() / rel))
    if rel.is_absolute() or not path.is_relative_to(folder.absolute()):
        raise InputError(
            f"{folder / 'export.json'}: {what} path {entry['path']!r} points outside "
            "the export folder"
        )
    if not path.is_file():
        raise InputNotFound(
            f"{path} (listed in export.json as {what}) does not exist: re-export "
            "or copy the whole folder"
        )
    sha = entry.get("sha256")
    if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", str(sha)):
        raise InputError(f"{folder / 'export.json'}: {what} sha256 {sha!r} is not 64 hex digits")
    return ExportFile(path, entry.get("size"), sha, entry.get("quant"))


def read_export(export_dir: str | os.PathLike[str]) -> ExportManifest:
    """Read and check an export folder's ``export.json`` (format 1)."""
    folder = Path(export_dir).expanduser()
    manifest_path = folder / "export.json"
    if not folder.is_dir():
        raise InputNotFound(f"export folder {str(folder)!r} does not exist")
    if not manifest_path.is_file():
        raise InputNotFound(
            f"{manifest_path} not found: point --from at a folder written by `gemma3-pack export`"
        )
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(
            f"{manifest_path} is not valid JSON ({err}); re-export the folder"
        ) from None
    if not isinstance(data, dict) or data.get("format") != 1:
        raise InputError(
            f"{manifest_path}: unsupported format {data.get('format') if isinstance(data, dict) else None!r} "
            "(expected 1); upgrade gemma3-pack or re-export"
        )
    models = data.get("models") or []
    if not models:
        raise InputError(f"{manifest_path} lists no models; re-export the folder")
    return ExportManifest(
        folder=folder,
        name=str(data.get("name") or folder.name),
        models=tuple(_export_file(folder, m, "model") for m in models),
        mmproj=_export_file(folder, data["mmproj"], "mmproj") if data.get("mmproj") else None,
        fused=_export_file(folder, data["fused"], "fused") if data.get("fused") else None,
    )


def choose_packaging(
    manifest: ExportManifest, packaging: str, version: Callable[[], str]
) -> Literal["text", "pair", "fused"]:
    """How to ship vision: a text GGUF + mmproj pair (Ollama >= 0.30) or one fused GGUF (older)."""
    if packaging not in ("auto", "pair", "fused"):
        raise UsageError(f"packaging must be auto, pair or fused, not {packaging!r}")
    if manifest.mmproj is None and manifest.fused is None:
        if packaging != "auto":
            raise UsageError(
                f"--packaging {packaging} needs a vision export, but {manifest.folder} "
                "has no projector (a text-only model)"
            )
        return "text"
    chosen = packaging
    if packaging == "auto":
        chosen = "pair" if _parse_version(version()) >= PAIR_MIN_VERSION else "fused"
        if chosen == "pair" and manifest.mmproj is None:
            chosen = "fused"  # >= 0.30 still loads old fused files (llama/compat shim)
    if chosen == "pair" and manifest.mmproj is None:
        raise UsageError(
            f"{manifest.folder} has no mmproj file for pair packaging: re-export with "
            "--ollama-format pair (or use --packaging fused)"
        )
    if chosen == "fused" and manifest.fused is None:
        why = (
            "this Ollama is older than 0.30 and needs one fused GGUF for vision"
            if packaging == "auto"
            else "--packaging fused needs a fused GGUF"
        )
        raise UsageError(
            f"{why}, but {manifest.folder} has none: re-export with "
            "--ollama-format fused (or upgrade Ollama to 0.30+)"
        )
    return chosen  # type: ignore[return-value]


def _pick_model(manifest: ExportManifest, quant: str | None) -> ExportFile:
    if quant is None:
        return manifest.models[0]
    for m in manifest.models:
        if (m.quant or "").upper() == quant.upper():
            return m
    have = ", ".join(str(m.quant) for m in manifest.models)
    raise UsageError(f"{manifest.folder} has no {quant} model (it has {have})")


def _check_quantize(quantize: str | None, source_quant: str | None) -> str | None:
    if quantize is None:
        return None
    for q in OLLAMA_QUANTIZE:
        if q.lower() == quantize.lower():
            break
    else:
        raise UsageError(
            f"Ollama can quantize only to {', '.join(OLLAMA_QUANTIZE)}, not {quantize!r}: "
            "make other types with `gemma3-pack export -q TYPE`"
        )
    if source_quant is not None and source_quant.upper() not in QUANTIZABLE_FROM:
        raise UsageError(
            f"Ollama quantizes only F16/BF16/F32 GGUFs, this one is {source_quant}: "
            "export with --keep-bf16 or pick a quant from the export instead"
        )
    return q


class _ProgressReader:
    """A read-only file that ticks a progress bar.

    httpx sees ``read`` and ``fileno`` and so sends a ``Content-Length`` body, read in its own
    64 KiB chunks: streamed (flat memory) and measurably faster than a chunked generator body.
    """

    def __init__(self, fh: Any, bar: Any) -> None:
        self._fh = fh
        self._bar = bar

    def fileno(self) -> int:
        return int(self._fh.fileno())

    def tell(self) -> int:
        return int(self._fh.tell())

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._fh.read(size)
        self._bar.update(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk


async def _afile_chunks(path: Path, bar: Any) -> AsyncIterator[bytes]:
    import anyio

    async with await anyio.open_file(path, "rb") as fh:
        while chunk := await fh.read(CHUNK):
            bar.update(len(chunk))
            yield chunk


def _upload_bar(path: Path, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=path.stat().st_size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=f"upload {path.name}",
        file=sys.stderr,
        disable=None if progress else True,
    )


class _ProgressPrinter:
    """Renders an ollama pull/create stream: one byte bar per digest, status lines otherwise."""

    def __init__(self, progress: bool) -> None:
        self.enabled = progress
        self.bar: Any = None
        self.digest: str | None = None

    def __call__(self, part: ProgressResponse) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if part.digest and part.total:
            if part.digest != self.digest:
                self.close()
                self.digest = part.digest
                self.bar = tqdm(
                    total=part.total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=(part.status or part.digest)[:40],
                    file=sys.stderr,
                    disable=None,
                )
            if part.completed is not None and self.bar is not None:
                self.bar.update(part.completed - self.bar.n)
        elif part.status:
            self.close()
            if sys.stderr.isatty():
                print(part.status, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None
        self.digest = None


def _finish(last: ProgressResponse | None, what: str) -> ProgressResponse:
    if last is None or last.status != "success":
        status = last.status if last is not None else "no reply"
        raise OllamaResponseError(f"{what} ended without success (last status: {status!r})")
    return last


def _modelfile() -> Any:
    from . import _modelfile  # written by the Modelfile part; loaded only when shipping

    return _modelfile


# --------------------------------------------------------------------------- sync client


class Client:
    """Gemma 3 on an Ollama daemon; wraps ``ollama.Client`` (same host/kwargs semantics).

    >>> client = Client()                                    # doctest: +SKIP
    >>> client.chat("Why is the sky blue?").message.content  # doctest: +SKIP
    """

    def __init__(
        self, host: str | None = None, *, model: str = DEFAULT_MODEL, **kwargs: Any
    ) -> None:
        self._ollama = ollama.Client(host, **kwargs)
        self.host = str(self._ollama._client.base_url).rstrip("/")
        self.model = model
        self._vision: dict[str, bool] = {}

    @property
    def ollama(self) -> ollama.Client:
        """The wrapped official client, for anything this SDK does not cover."""
        return self._ollama

    @property
    def _api(self) -> Any:
        # ollama's overloads take only Literal stream values; ours forwards a bool.
        return self._ollama

    def close(self) -> None:
        self._ollama._client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _t(self, model: str | None = None) -> contextlib.AbstractContextManager[None]:
        return _translate(self.host, model)

    # -- capability check -------------------------------------------------------------------

    def show(self, model: str | None = None) -> ShowResponse:
        """``POST /api/show`` for ``model``; ``ModelNotFound`` when the daemon lacks it."""
        model = model or self.model
        with self._t(model):
            return self._ollama.show(model)

    def has_vision(self, model: str | None = None) -> bool:
        """Whether ``model`` takes images (``show().capabilities``; cached per client)."""
        model = model or self.model
        if model not in self._vision:
            self._vision[model] = _has_vision(self.show(model))
        return self._vision[model]

    def _require_vision(self, model: str) -> None:
        if not self.has_vision(model):
            raise VisionNotSupported(model, _vision_suggestion(model))

    # -- chat / generate --------------------------------------------------------------------

    @overload
    def chat(
        self,
        prompt_or_messages: Messages,
        *,
        model: str | None = ...,
        images: ImageLike | Iterable[ImageLike] | None = ...,
        system: str | None = ...,
        stream: Literal[False] = False,
        options: OptionsLike = ...,
        format: str | dict[str, Any] | None = ...,
        keep_alive: float | str | None = ...,
    ) -> ChatResponse: ...

    @overload
    def chat(
        self,
        prompt_or_messages: Messages,
        *,
        model: str | None = ...,
        images: ImageLike | Iterable[ImageLike] | None = ...,
        system: str | None = ...,
        stream: Literal[True],
        options: OptionsLike = ...,
        format: str | dict[str, Any] | None = ...,
        keep_alive: float | str | None = ...,
    ) -> Iterator[ChatResponse]: ...

    def chat(
        self,
        prompt_or_messages: Messages,
        *,
        model: str | None = None,
        images: ImageLike | Iterable[ImageLike] | None = None,
        system: str | None = None,
        stream: bool = False,
        options: OptionsLike = None,
        format: str | dict[str, Any] | None = None,
        keep_alive: float | str | None = None,
    ) -> ChatResponse | Iterator[ChatResponse]:
        """Chat with Gemma 3: a prompt string or a message list, optional images and system.

        Gemma's sampling defaults go under ``options``; images attach to the last user message
        after the model's vision capability is confirmed (no chat request is sent otherwise).
        """
        model = model or self.model
        messages = build_messages(prompt_or_messages, system=system, images=images)
        if _has_images(messages):
            self._require_vision(model)
        with self._t(model):
            result = self._api.chat(
                model=model,
                messages=messages,
                stream=stream,
                options=merge_options(options),
                format=format,
                keep_alive=keep_alive,
            )
        if stream:
            return _translated(result, self.host, model)
        return result

    @overload
    def generate(
        self,
        prompt: str,
        *,
        model: str | None = ...,
        images: ImageLike | Iterable[ImageLike] | None = ...,
        system: str | None = ...,
        stream: Literal[False] = False,
        options: OptionsLike = ...,
        format: str | dict[str, Any] | None = ...,
        keep_alive: float | str | None = ...,
        raw: bool = ...,
    ) -> GenerateResponse: ...

    @overload
    def generate(
        self,
        prompt: str,
        *,
        model: str | None = ...,
        images: ImageLike | Iterable[ImageLike] | None = ...,
        system: str | None = ...,
        stream: Literal[True],
        options: OptionsLike = ...,
        format: str | dict[str, Any] | None = ...,
        keep_alive: float | str | None = ...,
        raw: bool = ...,
    ) -> Iterator[GenerateResponse]: ...

    def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        images: ImageLike | Iterable[ImageLike] | None = None,
        system: str | None = None,
        stream: bool = False,
        options: OptionsLike = None,
        format: str | dict[str, Any] | None = None,
        keep_alive: float | str | None = None,
        raw: bool = False,
    ) -> GenerateResponse | Iterator[GenerateResponse]:
        """One-shot completion through the model's template (``raw=True`` skips the template)."""
        model = model or self.model
        encoded = encode_images(images)
        if encoded:
            self._require_vision(model)
        with self._t(model):
            result = self._api.generate(
                model=model,
                prompt=prompt,
                system=system,
                images=encoded or None,
                stream=stream,
                options=merge_options(options),
                format=format,
                keep_alive=keep_alive,
                raw=raw or None,
            )
        if stream:
            return _translated(result, self.host, model)
        return result

    def conversation(
        self, system: str | None = None, model: str | None = None, options: OptionsLike = None
    ) -> Conversation:
        """A chat that keeps its own history (see :class:`Conversation`)."""
        return Conversation(self, system=system, model=model or self.model, options=options)

    # -- model management -------------------------------------------------------------------

    def version(self) -> str:
        """The daemon's version string (``GET /api/version``)."""
        with self._t():
            return str(self._ollama._request_raw("GET", "/api/version").json()["version"])

    def pull(self, model: str | None = None, *, progress: bool = True) -> ProgressResponse:
        """Pull ``model`` with a byte progress bar per layer; returns the final ``success``."""
        model = model or self.model
        show = _ProgressPrinter(progress)
        last = None
        try:
            with self._t(model):
                stream = self._ollama.pull(model, stream=True)
            for last in _translated(stream, self.host, model):
                show(last)
        finally:
            show.close()
        self._vision.pop(model, None)
        return _finish(last, f"pull {model}")

    def ensure(self, model: str | None = None, *, progress: bool = True) -> bool:
        """Pull ``model`` only if the daemon lacks it; True when a pull happened."""
        model = model or self.model
        try:
            self.show(model)
            return False
        except ModelNotFound:
            self.pull(model, progress=progress)
            return True

    def list_gemma(self) -> list[GemmaModel]:
        """Installed Gemma 3 models with size, quant and capabilities (one ``show`` each)."""
        with self._t():
            listing = self._ollama.list()
        out = []
        for entry in listing.models:
            if not _is_gemma3(entry):
                continue
            caps = self.show(entry.model).capabilities or []
            details = entry.details
            out.append(
                GemmaModel(
                    str(entry.model),
                    int(entry.size or 0),
                    str(details.parameter_size if details else ""),
                    str(details.quantization_level if details else ""),
                    tuple(caps),
                )
            )
        return out

    # -- blobs and create -------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        """``HEAD /api/blobs/<digest>``: whether the daemon already has this blob."""
        try:
            with self._t():
                self._ollama._request_raw("HEAD", f"/api/blobs/{digest}")
            return True
        except OllamaResponseError as err:
            if err.status_code == 404:
                return False
            raise

    def upload_blob(
        self, path: str | os.PathLike[str], *, sha256: str | None = None, progress: bool = True
    ) -> str:
        """Upload a file as a blob unless the daemon has it; returns ``"sha256:<hex>"``.

        The body is streamed from the open file (never read whole), so memory stays flat.
        """
        path = Path(path)
        if not path.is_file():
            raise InputNotFound(f"{path} does not exist")
        digest = f"sha256:{sha256 or sha256_file(path, progress=progress)}"
        if self.has_blob(digest):
            return digest
        with _upload_bar(path, progress) as bar, open(path, "rb") as fh, self._t():
            self._ollama._request_raw(
                "POST", f"/api/blobs/{digest}", content=_ProgressReader(fh, bar)
            )
        return digest

    def _create(
        self, name: str, kwargs: dict[str, Any], quantize: str | None, progress: bool
    ) -> ProgressResponse:
        show = _ProgressPrinter(progress)
        last = None
        try:
            with self._t():
                stream = self._ollama.create(name, quantize=quantize, stream=True, **kwargs)
            for last in _translated(stream, self.host, None):
                show(last)
        finally:
            show.close()
        self._vision.pop(name, None)
        return _finish(last, f"create {name}")

    def create_from_gguf(
        self,
        gguf_path: str | os.PathLike[str],
        name: str,
        *,
        mmproj: str | os.PathLike[str] | None = None,
        system: str | None = None,
        num_ctx: int | None = None,
        quantize: str | None = None,
        sha256: Mapping[str, str] | None = None,
        progress: bool = True,
    ) -> ProgressResponse:
        """Upload a GGUF (and optional mmproj) and create ``name`` with Gemma 3's template,
        stop token, sampling settings and license, from the spec that writes the Modelfile."""
        mf = _modelfile()
        paths = [Path(gguf_path)] + ([Path(mmproj)] if mmproj is not None else [])
        for p in paths:
            if not p.is_file():
                raise InputNotFound(f"{p} does not exist")
        # The spec first: it checks both files are GGUFs before anything is uploaded.
        spec = mf.spec_for_gguf(
            paths[0], paths[1] if mmproj is not None else None, system=system, num_ctx=num_ctx
        )
        sums = dict(sha256 or {})
        files = {
            p.name: self.upload_blob(p, sha256=sums.get(str(p)), progress=progress) for p in paths
        }
        return self._create(name, mf.create_kwargs(spec, files), quantize, progress)

    def create_from_export(
        self,
        export_dir: str | os.PathLike[str],
        name: str,
        *,
        quantize: str | None = None,
        progress: bool = True,
        packaging: Packaging = "auto",
        quant: str | None = None,
        system: str | None = None,
        num_ctx: int | None = None,
    ) -> ProgressResponse:
        """Ship a ``gemma3-pack export`` folder into Ollama as model ``name``.

        Vision packaging follows the daemon: ``pair`` (text GGUF + mmproj) on Ollama >= 0.30,
        ``fused`` (one GGUF) before that. ``quant`` picks one of the exported models (default:
        the first); ``quantize`` asks Ollama to quantize an F16/BF16 model itself.
        """
        manifest = read_export(export_dir)
        how = choose_packaging(manifest, packaging, self.version)
        if how == "fused":
            assert manifest.fused is not None
            model, mmproj = manifest.fused, None
        else:
            model, mmproj = _pick_model(manifest, quant), manifest.mmproj if how == "pair" else None
        quantize = _check_quantize(quantize, model.quant)
        sums = {str(f.path): f.sha256 for f in (model, mmproj) if f is not None and f.sha256}
        return self.create_from_gguf(
            model.path,
            name,
            mmproj=mmproj.path if mmproj else None,
            system=system,
            num_ctx=num_ctx,
            quantize=quantize,
            sha256=sums,
            progress=progress,
        )

    def create_from_variant(
        self,
        variant: str,
        name: str,
        *,
        system: str | None = None,
        num_ctx: int | None = None,
        progress: bool = True,
    ) -> ProgressResponse:
        """Create ``name`` FROM a family variant's published model, with Gemma's settings."""
        mf = _modelfile()
        spec = mf.spec_for_variant(variant, system=system, num_ctx=num_ctx)
        base = spec.from_[0]
        self.ensure(base, progress=progress)
        return self._create(name, mf.create_kwargs(spec), None, progress)


# --------------------------------------------------------------------------- conversations


class Conversation:
    """A chat that keeps its history: ``send`` appends the user turn and the reply.

    Streamed replies are appended once the stream is fully consumed; a failed request leaves the
    history as it was, so the same turn can be retried.
    """

    def __init__(
        self, client: Client, *, system: str | None = None, model: str, options: OptionsLike = None
    ) -> None:
        self.client = client
        self.model = model
        self.system = system
        self.options = options
        self._messages: list[dict[str, Any]] = []
        self.reset()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A copy of the history (system message first when one was given)."""
        return [dict(m) for m in self._messages]

    def reset(self) -> None:
        """Forget every turn but keep the system prompt."""
        self._messages = [{"role": "system", "content": self.system}] if self.system else []

    def _user_turn(self, text: str, images: Any) -> dict[str, Any]:
        turn: dict[str, Any] = {"role": "user", "content": text}
        encoded = encode_images(images)
        if encoded:
            turn["images"] = encoded
        return turn

    def send(
        self,
        text: str,
        images: ImageLike | Iterable[ImageLike] | None = None,
        *,
        stream: bool = False,
    ) -> Any:
        """Send one user turn; returns the ``ChatResponse`` or an iterator of chunks."""
        turn = self._user_turn(text, images)
        history = [*self._messages, turn]
        if not stream:
            reply = self.client.chat(history, model=self.model, options=self.options)
            self._messages = [*history, {"role": "assistant", "content": reply.message.content}]
            return reply
        chunks = self.client.chat(history, model=self.model, options=self.options, stream=True)
        return self._collect(chunks, history)

    def _collect(
        self, chunks: Iterator[ChatResponse], history: list[dict[str, Any]]
    ) -> Iterator[ChatResponse]:
        parts: list[str] = []
        for chunk in chunks:
            parts.append(chunk.message.content or "")
            yield chunk
        self._messages = [*history, {"role": "assistant", "content": "".join(parts)}]


class AsyncConversation(Conversation):
    """:class:`Conversation` for :class:`AsyncClient`; ``send`` is a coroutine."""

    client: AsyncClient  # type: ignore[assignment]

    async def send(
        self,
        text: str,
        images: ImageLike | Iterable[ImageLike] | None = None,
        *,
        stream: bool = False,
    ) -> Any:
        turn = self._user_turn(text, images)
        history = [*self._messages, turn]
        if not stream:
            reply = await self.client.chat(history, model=self.model, options=self.options)
            self._messages = [*history, {"role": "assistant", "content": reply.message.content}]
            return reply
        chunks = await self.client.chat(
            history, model=self.model, options=self.options, stream=True
        )
        return self._acollect(chunks, history)

    async def _acollect(
        self, chunks: AsyncIterator[ChatResponse], history: list[dict[str, Any]]
    ) -> AsyncIterator[ChatResponse]:
        parts: list[str] = []
        async for chunk in chunks:
            parts.append(chunk.message.content or "")
            yield chunk
        self._messages = [*history, {"role": "assistant", "content": "".join(parts)}]


# --------------------------------------------------------------------------- async client


class AsyncClient:
    """:class:`Client` for asyncio/trio code: every method is a coroutine; streams are async
    iterators. Wraps ``ollama.AsyncClient``."""

    def __init__(
        self, host: str | None = None, *, model: str = DEFAULT_MODEL, **kwargs: Any
    ) -> None:
        self._ollama = ollama.AsyncClient(host, **kwargs)
        self.host = str(self._ollama._client.base_url).rstrip("/")
        self.model = model
        self._vision: dict[str, bool] = {}

    @property
    def ollama(self) -> ollama.AsyncClient:
        return self._ollama

    @property
    def _api(self) -> Any:
        return self._ollama

    async def close(self) -> None:
        await self._ollama._client.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _t(self, model: str | None = None) -> contextlib.AbstractContextManager[None]:
        return _translate(self.host, model)

    async def show(self, model: str | None = None) -> ShowResponse:
        model = model or self.model
        with self._t(model):
            return await self._ollama.show(model)

    async def has_vision(self, model: str | None = None) -> bool:
        model = model or self.model
        if model not in self._vision:
            self._vision[model] = _has_vision(await self.show(model))
        return self._vision[model]

    async def _require_vision(self, model: str) -> None:
        if not await self.has_vision(model):
            raise VisionNotSupported(model, _vision_suggestion(model))

    @overload
    async def chat(
        self,
        prompt_or_messages: Messages,
        *,
        model: str | None = ...,
        images: ImageLike | Iterable[ImageLike] | None = ...,
        system: str | None = ...,
        stream: Literal[False] = False,
        options: OptionsLike = ...,
        format: str | dict[str, Any] | None = ...,
        keep_alive: float | str | None = ...,
    ) -> ChatResponse: ...

    @overload
    async def chat(
        self,
        prompt_or_messages: Messages,
        *,
        model: str | None = ...,
        images: ImageLike | Iterable[ImageLike] | None = ...,
        system: str | None = ...,
        stream: Literal[True],
        options: OptionsLike = ...,
        format: str | dict[str, Any] | None = ...,
        keep_alive: float | str | None = ...,
    ) -> AsyncIterator[ChatResponse]: ...

    async def chat(
        self,
        prompt_or_messages: Messages,
        *,
        model: str | None = None,
        images: ImageLike | Iterable[ImageLike] | None = None,
        system: str | None = None,
        stream: bool = False,
        options: OptionsLike = None,
        format: str | dict[str, Any] | None = None,
        keep_alive: float | str | None = None,
    ) -> ChatResponse | AsyncIterator[ChatResponse]:
        """See :meth:`Client.chat`."""
        model = model or self.model
        messages = build_messages(prompt_or_messages, system=system, images=images)
        if _has_images(messages):
            await self._require_vision(model)
        with self._t(model):
            result = await self._api.chat(
                model=model,
                messages=messages,
                stream=stream,
                options=merge_options(options),
                format=format,
                keep_alive=keep_alive,
            )
        if stream:
            return _atranslated(result, self.host, model)
        return result

    @overload
    async def generate(
        self,
        prompt: str,
        *,
        model: str | None = ...,
        images: ImageLike | Iterable[ImageLike] | None = ...,
        system: str | None = ...,
        stream: Literal[False] = False,
        options: OptionsLike = ...,
        format: str | dict[str, Any] | None = ...,
        keep_alive: float | str | None = ...,
        raw: bool = ...,
    ) -> GenerateResponse: ...

    @overload
    async def generate(
        self,
        prompt: str,
        *,
        model: str | None = ...,
        images: ImageLike | Iterable[ImageLike] | None = ...,
        system: str | None = ...,
        stream: Literal[True],
        options: OptionsLike = ...,
        format: str | dict[str, Any] | None = ...,
        keep_alive: float | str | None = ...,
        raw: bool = ...,
    ) -> AsyncIterator[GenerateResponse]: ...

    async def generate(
        self,
        prompt: str,
        *,
        model: str | None = None,
        images: ImageLike | Iterable[ImageLike] | None = None,
        system: str | None = None,
        stream: bool = False,
        options: OptionsLike = None,
        format: str | dict[str, Any] | None = None,
        keep_alive: float | str | None = None,
        raw: bool = False,
    ) -> GenerateResponse | AsyncIterator[GenerateResponse]:
        """See :meth:`Client.generate`."""
        model = model or self.model
        encoded = encode_images(images)
        if encoded:
            await self._require_vision(model)
        with self._t(model):
            result = await self._api.generate(
                model=model,
                prompt=prompt,
                system=system,
                images=encoded or None,
                stream=stream,
                options=merge_options(options),
                format=format,
                keep_alive=keep_alive,
                raw=raw or None,
            )
        if stream:
            return _atranslated(result, self.host, model)
        return result

    def conversation(
        self, system: str | None = None, model: str | None = None, options: OptionsLike = None
    ) -> AsyncConversation:
        return AsyncConversation(
            self,  # type: ignore[arg-type]
            system=system,
            model=model or self.model,
            options=options,
        )

    async def version(self) -> str:
        with self._t():
            response = await self._ollama._request_raw("GET", "/api/version")
            return str(response.json()["version"])

    async def pull(self, model: str | None = None, *, progress: bool = True) -> ProgressResponse:
        model = model or self.model
        show = _ProgressPrinter(progress)
        last = None
        try:
            with self._t(model):
                stream = await self._ollama.pull(model, stream=True)
            async for last in _atranslated(stream, self.host, model):
                show(last)
        finally:
            show.close()
        self._vision.pop(model, None)
        return _finish(last, f"pull {model}")

    async def ensure(self, model: str | None = None, *, progress: bool = True) -> bool:
        model = model or self.model
        try:
            await self.show(model)
            return False
        except ModelNotFound:
            await self.pull(model, progress=progress)
            return True

    async def list_gemma(self) -> list[GemmaModel]:
        with self._t():
            listing = await self._ollama.list()
        out = []
        for entry in listing.models:
            if not _is_gemma3(entry):
                continue
            caps = (await self.show(entry.model)).capabilities or []
            details = entry.details
            out.append(
                GemmaModel(
                    str(entry.model),
                    int(entry.size or 0),
                    str(details.parameter_size if details else ""),
                    str(details.quantization_level if details else ""),
                    tuple(caps),
                )
            )
        return out

    async def has_blob(self, digest: str) -> bool:
        try:
            with self._t():
                await self._ollama._request_raw("HEAD", f"/api/blobs/{digest}")
            return True
        except OllamaResponseError as err:
            if err.status_code == 404:
                return False
            raise

    async def upload_blob(
        self, path: str | os.PathLike[str], *, sha256: str | None = None, progress: bool = True
    ) -> str:
        import anyio

        path = Path(path)
        if not path.is_file():
            raise InputNotFound(f"{path} does not exist")
        if sha256 is None:
            sha256 = await anyio.to_thread.run_sync(lambda: sha256_file(path, progress=progress))
        digest = f"sha256:{sha256}"
        if await self.has_blob(digest):
            return digest
        with _upload_bar(path, progress) as bar, self._t():
            await self._ollama._request_raw(
                "POST", f"/api/blobs/{digest}", content=_afile_chunks(path, bar)
            )
        return digest

    async def _create(
        self, name: str, kwargs: dict[str, Any], quantize: str | None, progress: bool
    ) -> ProgressResponse:
        show = _ProgressPrinter(progress)
        last = None
        try:
            with self._t():
                stream = await self._ollama.create(name, quantize=quantize, stream=True, **kwargs)
            async for last in _atranslated(stream, self.host, None):
                show(last)
        finally:
            show.close()
        self._vision.pop(name, None)
        return _finish(last, f"create {name}")

    async def create_from_gguf(
        self,
        gguf_path: str | os.PathLike[str],
        name: str,
        *,
        mmproj: str | os.PathLike[str] | None = None,
        system: str | None = None,
        num_ctx: int | None = None,
        quantize: str | None = None,
        sha256: Mapping[str, str] | None = None,
        progress: bool = True,
    ) -> ProgressResponse:
        """See :meth:`Client.create_from_gguf`."""
        mf = _modelfile()
        paths = [Path(gguf_path)] + ([Path(mmproj)] if mmproj is not None else [])
        for p in paths:
            if not p.is_file():
                raise InputNotFound(f"{p} does not exist")
        spec = mf.spec_for_gguf(
            paths[0], paths[1] if mmproj is not None else None, system=system, num_ctx=num_ctx
        )
        sums = dict(sha256 or {})
        files = {}
        for p in paths:
            files[p.name] = await self.upload_blob(p, sha256=sums.get(str(p)), progress=progress)
        return await self._create(name, mf.create_kwargs(spec, files), quantize, progress)

    async def create_from_export(
        self,
        export_dir: str | os.PathLike[str],
        name: str,
        *,
        quantize: str | None = None,
        progress: bool = True,
        packaging: Packaging = "auto",
        quant: str | None = None,
        system: str | None = None,
        num_ctx: int | None = None,
    ) -> ProgressResponse:
        """See :meth:`Client.create_from_export`."""
        manifest = read_export(export_dir)
        version = (
            await self.version()
            if (manifest.mmproj or manifest.fused) and packaging == "auto"
            else "0"
        )
        how = choose_packaging(manifest, packaging, lambda: version)
        if how == "fused":
            assert manifest.fused is not None
            model, mmproj = manifest.fused, None
        else:
            model, mmproj = _pick_model(manifest, quant), manifest.mmproj if how == "pair" else None
        quantize = _check_quantize(quantize, model.quant)
        sums = {str(f.path): f.sha256 for f in (model, mmproj) if f is not None and f.sha256}
        return await self.create_from_gguf(
            model.path,
            name,
            mmproj=mmproj.path if mmproj else None,
            system=system,
            num_ctx=num_ctx,
            quantize=quantize,
            sha256=sums,
            progress=progress,
        )

    async def create_from_variant(
        self,
        variant: str,
        name: str,
        *,
        system: str | None = None,
        num_ctx: int | None = None,
        progress: bool = True,
    ) -> ProgressResponse:
        """See :meth:`Client.create_from_variant`."""
        mf = _modelfile()
        spec = mf.spec_for_variant(variant, system=system, num_ctx=num_ctx)
        await self.ensure(spec.from_[0], progress=progress)
        return await self._create(name, mf.create_kwargs(spec), None, progress)
