"""A Gemma 3 SDK for Ollama and OpenAI-compatible servers (llama-server, vLLM, Ollama's ``/v1``).

The shape follows httpx's ``BaseClient`` + ``Client``/``AsyncClient``, taken one step further: every
method is written once, as a *plan* (a generator in :class:`_Base` or in a backend, see
:mod:`gemma3_pack._sdk._backend`) that yields the I/O it needs and receives the results. The two public
classes only drive plans: :meth:`Client._drive` calls each step, :meth:`AsyncClient._drive` awaits
it. So request building, option merging, message normalisation, response mapping, error translation
and shipping logic exist once, and the two clients cannot drift. The public arguments of ``chat`` and
``generate`` become one :class:`~gemma3_pack._sdk._types.ChatRequest` / ``GenerateRequest`` here,
once, and that object is what every layer below takes.

What the SDK adds over the raw clients is what Gemma users keep getting wrong by hand:

* the Gemma team's sampling settings under the caller's options, in each server's spelling;
* messages normalised so Google's template never raises (:mod:`gemma3_pack._sdk._messages`);
* images from paths, bytes, PIL images or ``data:`` URLs, and a vision check *before* the request;
* one error seam per backend, also inside stream iterators (:mod:`gemma3_pack._errors`);
* timeouts, a reply-size cap and no cross-origin redirects (:mod:`gemma3_pack._sdk._transport`);
* shipping an export folder into Ollama: blobs uploaded once (HEAD first, streamed body, sha256
  from the manifest), then ``create`` from the same spec that writes the Modelfile.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    TypedDict,
    TypeVar,
    overload,
)

import ollama
import pydantic
from ollama import ChatResponse, GenerateResponse, ProgressResponse, ShowResponse

from .. import _quants
from .._chat import _functiongemma, _tools
from .._chat._tools import ToolLike
from .._errors import (
    Gemma3PackError,
    InputNotFound,
    ModelNotFound,
    ServerResponseError,
    UsageError,
    VisionNotSupported,
)
from .._export._manifest import (
    ExportFile,
    ExportManifest,
    choose_packaging,
    pick_model,
    read_export,
)
from .._files import sha256_file
from ._backend import Backend, BackendName, make_backend
from ._images import ImageLike, encode_images
from ._messages import Messages, build_messages, has_images, normalise
from ._progress import ProgressPrinter, ProgressReader, afile_chunks, finish, upload_bar
from ._types import (
    Blocking,
    Call,
    ChatRequest,
    Each,
    GemmaModel,
    GenerateRequest,
    OptionsLike,
    Stream,
    merge_options,
    parse_format,
)

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Unpack

__all__ = [
    "AsyncClient",
    "AsyncConversation",
    "ChatReply",
    "Client",
    "Conversation",
    "ExportFile",
    "ExportManifest",
    "GemmaModel",
    "choose_packaging",
    "merge_options",
    "read_export",
]

Packaging = Literal["auto", "pair", "fused"]
R = TypeVar("R")
P = ParamSpec("P")
Plan = Generator[Any, Any, R]
# What `ollama create --quantize` accepts (>= v0.7.0; the quant table's Ollama column), and the
# source types it quantizes from.
OLLAMA_QUANTIZE = _quants.OLLAMA_QUANTIZE
QUANTIZABLE_FROM = ("F16", "BF16", "F32")


class _Args(TypedDict, total=False):
    model: str | None
    images: ImageLike | Iterable[ImageLike] | None
    system: str | None
    options: OptionsLike
    format: str | dict[str, Any] | type[pydantic.BaseModel] | None
    keep_alive: float | str | None


class ChatArgs(_Args, total=False):
    """The keyword arguments of ``chat`` besides ``stream`` (see :meth:`Client.chat`)."""

    tools: Iterable[ToolLike] | None
    run_tools: bool
    max_tool_rounds: int


class GenerateArgs(_Args, total=False):
    """The keyword arguments of ``generate`` besides ``stream`` (see :meth:`Client.generate`)."""

    raw: bool


def _check_keys(method: str, kw: Mapping[str, Any], args: Any) -> None:
    """``kw`` has only the keys of the TypedDict ``args`` (as a signature would check)."""
    for key in kw:
        if key not in args.__optional_keys__:
            raise TypeError(f"{method}() got an unexpected keyword argument {key!r}")


class ChatReply(ChatResponse):
    """An ``ollama.ChatResponse`` that also carries the reply parsed by ``format=``."""

    parsed: Any = None


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


def is_functiongemma(model: str) -> bool:
    """Whether ``model`` is FunctionGemma, by its name (``functiongemma:270m``,
    ``hf.co/unsloth/functiongemma-270m-it-GGUF``, ``my-functiongemma``...): the SDK then uses
    FunctionGemma's prompt and reply format for tools instead of Gemma 3's."""
    return "functiongemma" in model.lower()


def _modelfile() -> Any:
    from .. import _modelfile  # loaded only when shipping

    return _modelfile


def _finish(
    reply: ChatResponse, names: list[str], validate: Callable[[str], Any] | None, host: str
) -> ChatResponse:
    """The reply with Gemma's call list parsed into ``tool_calls`` and ``format=`` parsed."""
    if not names and validate is None:
        return reply
    text = reply.message.content or ""
    data = reply.model_dump(exclude={"message"})
    message = reply.message.model_copy()
    if names:
        rest, calls = _tools.parse_calls(text, names)
        if calls:
            message = message.model_copy(
                update={
                    "content": rest,
                    "tool_calls": [ollama.Message.ToolCall.model_validate(c) for c in calls],
                }
            )
            return ChatReply(**data, message=message)
    parsed = None
    if validate is not None:
        try:
            parsed = validate(text)
        except (ValueError, RecursionError, pydantic.ValidationError) as err:
            why = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise ServerResponseError(
                f"the reply from {host} is not JSON of the requested format ({why}): {text[:80]!r}",
                server="format",
            ) from None
    return ChatReply(**data, message=message, parsed=parsed)


def _finishing(
    stream: Stream, names: list[str], validate: Callable[[str], Any] | None, host: str
) -> Stream:
    """``stream`` whose last chunk (``done``) carries the tool calls / parsed value of the whole."""
    parts: list[str] = []

    def finish_chunk(raw: Any) -> Any:
        chunk = stream.map(raw)
        parts.append(chunk.message.content or "")
        if not chunk.done:
            return chunk
        whole = chunk.model_copy(
            update={"message": chunk.message.model_copy(update={"content": "".join(parts)})}
        )
        done = _finish(whole, names, validate, host)
        tail = done.message.model_copy(update={"content": chunk.message.content})
        return ChatReply(**done.model_dump(exclude={"message"}), message=tail)

    return Stream(stream.raw, finish_chunk, stream.model, stream.on_end)


def _same_size(path: Path, recorded: int | None) -> bool:
    """Whether ``path`` still has the size export.json recorded (no record: trusted)."""
    try:
        return recorded is None or path.stat().st_size == recorded
    except OSError:
        return False  # upload_blob reports the missing file


def _check_ended(last: Any, host: str) -> None:
    """A chat/generate stream must end with its ``done`` chunk; one that stops before it (a proxy
    or a crashed server closing cleanly) is a cut-short reply, not a complete one."""
    if getattr(last, "done", True) is False:
        raise ServerResponseError(
            f"the stream from {host} ended before its final chunk (done: true): the reply is "
            "cut short; retry, and check the server's log",
            server="stream",
        )


def _run_tool(fn: Callable[..., Any], arguments: dict[str, Any]) -> str:
    """A tool's result as the text sent back: strings as they are, anything else as JSON; an
    exception becomes ``error: Type: message`` so the model can correct its call."""
    try:
        result = _tools.run_call(fn, arguments)
    except Exception as err:  # the model's arguments or the tool failed: the model is told
        return f"error: {type(err).__name__}: {err}"
    if isinstance(result, str):
        return result
    if isinstance(result, pydantic.BaseModel):
        return result.model_dump_json()
    return json.dumps(result, ensure_ascii=False, default=str)


def _resolve(lib: Any, path: str) -> Any:
    return functools.reduce(getattr, path.split("."), lib)


class _api(Generic[P, R]):
    """A plan exposed as a method: ``client.x(...)`` returns the result on :class:`Client` and an
    awaitable of it on :class:`AsyncClient` (the plan is written once, in :class:`_Base`)."""

    def __init__(self, plan: Callable[Concatenate[Any, P], Plan[R]]) -> None:
        self.plan = plan
        functools.update_wrapper(self, plan)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type) -> _api[P, R]: ...
    @overload
    def __get__(self, obj: AsyncClient, owner: type) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __get__(self, obj: Client, owner: type) -> Callable[P, R]: ...
    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        plan = self.plan

        @functools.wraps(plan)
        def bound(*args: Any, **kwargs: Any) -> Any:
            return obj._drive(plan(obj, *args, **kwargs))

        return bound


# --------------------------------------------------------------------------- shared logic


class _Base:
    """Everything :class:`Client` and :class:`AsyncClient` do, as plans over one backend."""

    _backend: Backend

    def __init__(
        self,
        host: str | None = None,
        *,
        model: str | None = None,
        backend: BackendName = "auto",
        **kwargs: Any,
    ) -> None:
        is_async = isinstance(self, AsyncClient)
        self._backend = make_backend(host, backend, is_async=is_async, **kwargs)
        self.host = self._backend.host
        self.backend = self._backend.name
        self.model: str | None = model or self._backend.DEFAULT_MODEL
        self._vision: dict[str, bool | None] = {}

    @property
    def ollama(self) -> Any:
        """The wrapped official ``ollama`` client, for anything this SDK does not cover."""
        if self._backend.name != "ollama":
            raise UsageError(f"{self.host} is an OpenAI-compatible server: use .openai")
        return self._backend.lib

    @property
    def openai(self) -> Any:
        """The wrapped official ``openai`` client (OpenAI-compatible servers only)."""
        if self._backend.name != "openai":
            raise UsageError(f"{self.host} is an Ollama server: use .ollama")
        return self._backend.lib

    @contextlib.contextmanager
    def _seam(self, model: str | None) -> Iterator[None]:
        """The one place foreign errors become :mod:`gemma3_pack._errors` (per backend)."""
        try:
            yield
        except Gemma3PackError:
            raise
        except Exception as err:
            mapped = self._backend.translate(err, model)
            if mapped is None:
                raise
            raise mapped from None

    def _settle(self, result: Any, drive_stream: Callable[[Stream], Any]) -> Any:
        return drive_stream(result) if isinstance(result, Stream) else result

    # -- plans ------------------------------------------------------------------------------

    def _model(self, model: str | None) -> Plan[str]:
        if model:
            return model
        if self.model is None:
            self.model = yield from self._backend.resolve_model(None)
        assert self.model is not None
        return self.model

    @_api
    def show(self, model: str | None = None) -> Plan[ShowResponse]:
        """What the server knows about ``model`` (Ollama: ``POST /api/show``; OpenAI servers: its
        ``/v1/models`` entry and llama-server's ``/props``); ``ModelNotFound`` when it lacks it."""
        model = yield from self._model(model)
        return (yield from self._backend.show(model))

    def _vision_of(self, model: str) -> Plan[bool | None]:
        if model not in self._vision:
            self._vision[model] = yield from self._backend.vision(model)
        return self._vision[model]

    @_api
    def has_vision(self, model: str | None = None) -> Plan[bool]:
        """Whether ``model`` takes images (cached per client). An OpenAI server that cannot say
        (vLLM) counts as yes: the server then decides."""
        model = yield from self._model(model)
        return (yield from self._vision_of(model)) is not False

    def _require_vision(self, model: str) -> Plan[None]:
        if (yield from self._vision_of(model)) is False:
            raise VisionNotSupported(model, self._backend.vision_hint(model))

    def _chat(self, prompt_or_messages: Messages, stream: bool, kw: Mapping[str, Any]) -> Plan[Any]:
        """``chat(prompt_or_messages, stream=stream, **kw)``: its :class:`ChatRequest` is built
        here, once (bad arguments are refused before any request), then sent."""
        _check_keys("chat", kw, ChatArgs)
        messages = build_messages(
            prompt_or_messages, system=kw.get("system"), images=kw.get("images")
        )
        run_tools = kw.get("run_tools", False)
        max_rounds = kw.get("max_tool_rounds", 5)
        if run_tools:
            if stream:
                raise UsageError("run_tools=True returns the final reply: it cannot stream")
            if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
                raise UsageError(f"max_tool_rounds must be a whole number >= 1, not {max_rounds!r}")
        tools = list(kw.get("tools") or ())
        schemas = _tools.schemas(tools)
        options = merge_options(kw.get("options"))
        schema, parse = parse_format(kw.get("format"))
        req = ChatRequest(
            model=kw.get("model"),
            stream=stream,
            options=options,
            format=schema,
            parse=parse,
            keep_alive=kw.get("keep_alive"),
            messages=tuple(messages),
            tools=tuple(schemas),
        )
        if run_tools:
            return (yield from self._tool_loop(req, tools, max_rounds))
        return (yield from self._ask(req))

    def _ask(self, req: ChatRequest) -> Plan[Any]:
        """One chat request: the tools written into Gemma's first turn (FunctionGemma: its own
        format), images only to a model that takes them, the reply's calls and format parsed."""
        tool_turns = any(m.get("role") == "tool" or m.get("tool_calls") for m in req.messages)
        messages = req.messages
        if req.tools or tool_turns:
            messages = tuple(normalise(_tools.apply(list(messages), list(req.tools))))
        model = yield from self._model(req.model)
        if (req.tools or tool_turns) and is_functiongemma(model):
            return (yield from self._functiongemma_chat(dataclasses.replace(req, model=model)))
        req = dataclasses.replace(req, model=model, messages=messages)
        if has_images(req.messages):
            yield from self._require_vision(model)
        reply = yield from self._backend.chat(req)
        names = [t["name"] for t in req.tools]
        if isinstance(reply, Stream):
            if names or req.parse:
                return _finishing(reply, names, req.parse, self.host)
            return reply
        return _finish(reply, names, req.parse, self.host)

    def _functiongemma_chat(self, req: ChatRequest) -> Plan[ChatResponse]:
        """FunctionGemma's own format instead of Gemma 3's (the backend's ``functiongemma``)."""
        if req.stream or req.format is not None or has_images(req.messages):
            raise UsageError(
                f"{req.model} is FunctionGemma: with tools it answers with one call list, so "
                "stream=True, format= and images are not available"
            )
        options = dict(req.options)
        options.setdefault("stop", list(_functiongemma.STOPS))
        reply = yield from self._backend.functiongemma(dataclasses.replace(req, options=options))
        return ChatReply(**reply.model_dump(exclude={"message"}), message=reply.message)

    def _tool_loop(self, req: ChatRequest, tools: list[ToolLike], max_rounds: int) -> Plan[Any]:
        """``chat(..., run_tools=True)``: while the reply calls tools (at most ``max_rounds``
        times), call the Python functions and send their results back; the last reply is
        returned (its ``tool_calls``, if any, were not run: the bound was reached)."""
        functions = {
            s["name"]: t
            for s, t in zip(req.tools, tools, strict=True)
            if not isinstance(t, Mapping)
        }
        missing = [s["name"] for s in req.tools if s["name"] not in functions]
        if not req.tools or missing:
            raise UsageError(
                "run_tools=True calls Python functions: pass them as tools"
                + (f" (no function for {', '.join(missing)})" if missing else "")
            )
        history = list(req.messages)
        for round_ in range(max_rounds + 1):
            reply = yield from self._ask(dataclasses.replace(req, messages=tuple(history)))
            calls = reply.message.tool_calls or []
            if not calls or round_ == max_rounds:
                return reply
            history.append(Conversation._turn(reply.message))
            for call in calls:
                fn = functions[call.function.name]
                args = dict(call.function.arguments or {})
                result = yield Blocking(functools.partial(_run_tool, fn, args))
                history.append({"role": "tool", "content": result})
        raise AssertionError("unreachable")  # pragma: no cover

    def _generate(self, prompt: str, stream: bool, kw: Mapping[str, Any]) -> Plan[Any]:
        """``generate(prompt, stream=stream, **kw)``: its :class:`GenerateRequest`, sent."""
        _check_keys("generate", kw, GenerateArgs)
        model = yield from self._model(kw.get("model"))
        encoded = encode_images(kw.get("images"))
        if encoded:
            yield from self._require_vision(model)
        schema, _ = parse_format(kw.get("format"))
        req = GenerateRequest(
            model=model,
            stream=stream,
            options=merge_options(kw.get("options")),
            format=schema,
            keep_alive=kw.get("keep_alive"),
            prompt=prompt,
            system=kw.get("system"),
            images=tuple(encoded),
            raw=kw.get("raw", False),
        )
        return (yield from self._backend.generate(req))

    @_api
    def version(self) -> Plan[str]:
        """The server's version string (Ollama: ``GET /api/version``; vLLM ``/version``;
        llama-server's ``build_info``)."""
        return (yield from self._backend.version())

    def _progress(
        self, what: str, kwargs: dict[str, Any], progress: bool
    ) -> Plan[ProgressResponse]:
        self._backend.require_ollama(what)
        show = ProgressPrinter(progress)
        try:
            last = yield from self._backend.progress(what, kwargs, show)
        finally:
            show.close()
        self._vision.pop(str(kwargs.get("model")), None)
        return finish(last, f"{what} {kwargs.get('model')}")

    @_api
    def pull(self, model: str | None = None, *, progress: bool = True) -> Plan[ProgressResponse]:
        """Pull ``model`` with a byte progress bar per layer; returns the final ``success``."""
        self._backend.require_ollama("pull")
        model = yield from self._model(model)
        return (yield from self._progress("pull", {"model": model}, progress))

    @_api
    def ensure(self, model: str | None = None, *, progress: bool = True) -> Plan[bool]:
        """Pull ``model`` only if the server lacks it; True when a pull happened."""
        model = yield from self._model(model)
        try:
            yield from self._backend.show(model)
            return False
        except ModelNotFound:
            self._backend.require_ollama("pull")
            yield from self._progress("pull", {"model": model}, progress)
            return True

    @_api
    def list_gemma(self) -> Plan[list[GemmaModel]]:
        """Installed Gemma 3 models with size, quant and capabilities (Ollama: one ``show``
        each); on an OpenAI server, what ``/v1/models`` lists."""
        return (yield from self._backend.list_gemma())

    @_api
    def has_blob(self, digest: str) -> Plan[bool]:
        """``HEAD /api/blobs/<digest>``: whether the daemon already has this blob (Ollama only)."""
        return (yield from self._backend.has_blob(digest))

    @_api
    def upload_blob(
        self, path: str | os.PathLike[str], *, sha256: str | None = None, progress: bool = True
    ) -> Plan[str]:
        """Upload a file as a blob unless the daemon has it; returns ``"sha256:<hex>"``.

        The body is streamed from the open file (never read whole), so memory stays flat.
        """
        self._backend.require_ollama("blob upload")
        path = Path(path)
        if not path.is_file():
            raise InputNotFound(f"{path} does not exist")
        if sha256 is None:
            sha256 = yield Blocking(lambda: sha256_file(path, progress=progress))
        digest = f"sha256:{sha256}"
        if (yield from self._backend.has_blob(digest)):
            return digest
        with upload_bar(path, progress) as bar:
            yield from self._backend.post_blob(digest, path, bar)
        return digest

    @_api
    def create_from_gguf(
        self,
        gguf_path: str | os.PathLike[str],
        name: str,
        *,
        mmproj: str | os.PathLike[str] | None = None,
        system: str | None = None,
        num_ctx: int | str | None = None,
        memory: str | int | None = None,
        gpu: str | int | Sequence[str | int] | None = None,
        quantize: str | None = None,
        sha256: Mapping[str, str] | None = None,
        progress: bool = True,
        tools: bool = False,
    ) -> Plan[ProgressResponse]:
        """Upload a GGUF (and optional mmproj) and create ``name`` with Gemma 3's template,
        stop token, sampling settings and license, from the spec that writes the Modelfile.
        ``num_ctx="auto"`` with ``memory="16GB"`` or ``gpu="rtx4090"``: the largest context that
        fits (as ``modelfile --num-ctx auto``). ``tools=True``: the TEMPLATE with tool calling, so
        plain Ollama clients get ``tool_calls`` (see docs/tools.md)."""
        self._backend.require_ollama("create")
        mf = _modelfile()
        paths = [Path(gguf_path)] + ([Path(mmproj)] if mmproj is not None else [])
        for p in paths:
            if not p.is_file():
                raise InputNotFound(f"{p} does not exist")
        # The spec first: it checks both files are GGUFs before anything is uploaded.
        spec = mf.spec_for_gguf(
            paths[0],
            paths[1] if mmproj is not None else None,
            system=system,
            num_ctx=num_ctx,
            memory=memory,
            gpu=gpu,
            tools=tools,
        )
        yield from self._check_renderer(spec)  # before any upload
        sums = dict(sha256 or {})
        files = {}
        for p in paths:
            files[p.name] = yield from _Base.upload_blob.plan(
                self, p, sha256=sums.get(str(p)), progress=progress
            )
        kwargs = {"model": name, "quantize": quantize, **mf.create_kwargs(spec, files)}
        return (yield from self._progress("create", kwargs, progress))

    @_api
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
        num_ctx: int | str | None = None,
        memory: str | int | None = None,
        gpu: str | int | Sequence[str | int] | None = None,
        tools: bool | None = None,
        verify: bool = False,
    ) -> Plan[ProgressResponse]:
        """Ship a ``gemma3-pack export`` folder into Ollama as model ``name`` (``num_ctx="auto"``
        with ``memory``/``gpu`` and ``tools=True``: see :meth:`create_from_gguf`; ``tools=None``
        follows the export: the tool-calling TEMPLATE when it was made with ``export --tools``).

        The sha256 export.json records names the blob, so a daemon that already has that digest
        gets no upload. A file whose size differs from the record changed after the export: it
        is hashed again, as is every file with ``verify=True``, and its own digest is used.

        Vision packaging follows the daemon: ``pair`` (text GGUF + mmproj) on Ollama >= 0.30,
        ``fused`` (one GGUF) before that. ``quant`` picks one of the exported models (default:
        the first); ``quantize`` asks Ollama to quantize an F16/BF16 model itself.
        """
        self._backend.require_ollama("create")
        manifest = read_export(export_dir)
        needs_version = (manifest.mmproj or manifest.fused) and packaging == "auto"
        version = (yield from self._backend.version()) if needs_version else "0"
        how = choose_packaging(manifest, packaging, lambda: version)
        if how == "fused":
            assert manifest.fused is not None
            model, mmproj = manifest.fused, None
        else:
            model, mmproj = pick_model(manifest, quant), manifest.mmproj if how == "pair" else None
        quantize = _check_quantize(quantize, model.quant)
        sums = {
            str(f.path): f.sha256
            for f in (model, mmproj)
            if f is not None and f.sha256 and not verify and _same_size(f.path, f.size)
        }
        return (
            yield from _Base.create_from_gguf.plan(
                self,
                model.path,
                name,
                mmproj=mmproj.path if mmproj else None,
                system=system,
                num_ctx=num_ctx,
                memory=memory,
                gpu=gpu,
                quantize=quantize,
                sha256=sums,
                progress=progress,
                tools=manifest.tools if tools is None else tools,
            )
        )

    @_api
    def create_from_variant(
        self,
        variant: str,
        name: str,
        *,
        system: str | None = None,
        num_ctx: int | str | None = None,
        memory: str | int | None = None,
        gpu: str | int | Sequence[str | int] | None = None,
        progress: bool = True,
        tools: bool = False,
    ) -> Plan[ProgressResponse]:
        """Create ``name`` FROM a family variant's published model, with Gemma's settings
        (``num_ctx="auto"`` with ``memory``/``gpu`` and ``tools=True``: see
        :meth:`create_from_gguf`)."""
        self._backend.require_ollama("create")
        mf = _modelfile()
        spec = mf.spec_for_variant(
            variant, system=system, num_ctx=num_ctx, memory=memory, gpu=gpu, tools=tools
        )
        yield from self._check_renderer(spec)
        yield from _Base.ensure.plan(self, spec.from_[0], progress=progress)
        return (
            yield from self._progress("create", {"model": name, **mf.create_kwargs(spec)}, progress)
        )

    def _check_renderer(self, spec: Any) -> Plan[None]:
        """A spec with Ollama's RENDERER/PARSER (FunctionGemma) needs a daemon that has them."""
        if any(command in ("renderer", "parser") for command, _ in spec.extra):
            version = yield from self._backend.version()
            _modelfile().check_renderer_support(spec, version)


# --------------------------------------------------------------------------- the two drivers


class Client(_Base):
    """Gemma 3 on Ollama (``Client("127.0.0.1:11434")``, host parsed like ``ollama.Client``) or an
    OpenAI-compatible server (``Client("http://host:8080/v1")`` or ``backend="vllm"`` ...).

    Keyword arguments go to the wrapped official client (``headers=``, ``timeout=``,
    ``transport=`` ...). The default timeout is 10 s to connect and 300 s between reads.

    >>> client = Client()                                    # doctest: +SKIP
    >>> client.chat("Why is the sky blue?").message.content  # doctest: +SKIP
    """

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drive(self, plan: Plan[R]) -> R:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = plan.send(value) if error is None else plan.throw(error)
            except StopIteration as done:
                return self._settle(done.value, self._iterate)
            try:
                value, error = self._step(step), None
            except Gemma3PackError as err:
                value, error = None, err

    def _step(self, step: Call | Each | Blocking) -> Any:
        if isinstance(step, Blocking):
            return step.fn()
        if isinstance(step, Each):
            last = None
            for last in self._iterate(Stream(step.stream, step.map, step.model)):
                step.on_item(last)
            return last
        with self._seam(step.model):
            fn = _resolve(self._backend.lib, step.path)
            if step.upload is None:
                return fn(*step.args, **step.kwargs)
            with open(step.upload, "rb") as fh:
                return fn(*step.args, content=ProgressReader(fh, step.bar), **step.kwargs)

    def _iterate(self, stream: Stream) -> Iterator[Any]:
        with self._seam(stream.model):
            it = iter(stream.raw)
        item = None
        while True:
            with self._seam(stream.model):
                try:
                    item = stream.map(next(it))
                except StopIteration:
                    break
            yield item
        _check_ended(item, self.host)
        if stream.on_end is not None:
            stream.on_end()

    @overload
    def chat(
        self,
        prompt_or_messages: Messages,
        *,
        stream: Literal[False] = False,
        **kw: Unpack[ChatArgs],
    ) -> ChatResponse: ...
    @overload
    def chat(
        self, prompt_or_messages: Messages, *, stream: Literal[True], **kw: Unpack[ChatArgs]
    ) -> Iterator[ChatResponse]: ...
    def chat(self, prompt_or_messages: Messages, *, stream: bool = False, **kw: Any) -> Any:
        """Chat with Gemma 3: a prompt string or a message list, optional images and system.

        Messages are normalised for Gemma's template (system turns folded into one first turn,
        same-role neighbours collated); Gemma's sampling defaults go under ``options`` (caller's
        values win, ``None`` removes one); images attach to the last user message after the
        model's vision capability is confirmed (no chat request is sent otherwise).
        ``tools=[f, ...]`` (functions or schemas) puts Gemma's function-calling prompt in the first
        turn and returns the calls as ``message.tool_calls``; with ``run_tools=True`` the SDK
        calls the functions and sends the results back until the model answers (at most
        ``max_tool_rounds`` rounds, default 5).
        """
        return self._drive(self._chat(prompt_or_messages, stream, kw))

    @overload
    def generate(
        self, prompt: str, *, stream: Literal[False] = False, **kw: Unpack[GenerateArgs]
    ) -> GenerateResponse: ...
    @overload
    def generate(
        self, prompt: str, *, stream: Literal[True], **kw: Unpack[GenerateArgs]
    ) -> Iterator[GenerateResponse]: ...
    def generate(self, prompt: str, *, stream: bool = False, **kw: Any) -> Any:
        """One-shot completion through the model's template (``raw=True`` skips the template)."""
        return self._drive(self._generate(prompt, stream, kw))

    def conversation(
        self,
        system: str | None = None,
        model: str | None = None,
        options: OptionsLike = None,
        tools: Iterable[ToolLike] | None = None,
    ) -> Conversation:
        """A chat that keeps its own history (see :class:`Conversation`)."""
        return Conversation(
            self, system=system, model=model or self.model, options=options, tools=tools
        )


class AsyncClient(_Base):
    """:class:`Client` for asyncio/trio code: every method is a coroutine; streams are async
    iterators. Wraps ``ollama.AsyncClient`` / ``openai.AsyncOpenAI``."""

    async def close(self) -> None:
        await self._backend.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _drive(self, plan: Plan[R]) -> R:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = plan.send(value) if error is None else plan.throw(error)
            except StopIteration as done:
                return self._settle(done.value, self._aiterate)
            try:
                value, error = await self._astep(step), None
            except Gemma3PackError as err:
                value, error = None, err

    async def _astep(self, step: Call | Each | Blocking) -> Any:
        if isinstance(step, Blocking):
            import anyio

            return await anyio.to_thread.run_sync(step.fn)
        if isinstance(step, Each):
            last = None
            async for last in self._aiterate(Stream(step.stream, step.map, step.model)):
                step.on_item(last)
            return last
        with self._seam(step.model):
            fn = _resolve(self._backend.lib, step.path)
            if step.upload is None:
                return await fn(*step.args, **step.kwargs)
            body = afile_chunks(step.upload, step.bar)
            return await fn(*step.args, content=body, **step.kwargs)

    async def _aiterate(self, stream: Stream) -> AsyncIterator[Any]:
        with self._seam(stream.model):
            it = aiter(stream.raw)
        item = None
        while True:
            with self._seam(stream.model):
                try:
                    item = stream.map(await anext(it))
                except StopAsyncIteration:
                    break
            yield item
        _check_ended(item, self.host)
        if stream.on_end is not None:
            stream.on_end()

    @overload
    async def chat(
        self,
        prompt_or_messages: Messages,
        *,
        stream: Literal[False] = False,
        **kw: Unpack[ChatArgs],
    ) -> ChatResponse: ...
    @overload
    async def chat(
        self, prompt_or_messages: Messages, *, stream: Literal[True], **kw: Unpack[ChatArgs]
    ) -> AsyncIterator[ChatResponse]: ...
    async def chat(self, prompt_or_messages: Messages, *, stream: bool = False, **kw: Any) -> Any:
        """See :meth:`Client.chat`."""
        return await self._drive(self._chat(prompt_or_messages, stream, kw))

    @overload
    async def generate(
        self, prompt: str, *, stream: Literal[False] = False, **kw: Unpack[GenerateArgs]
    ) -> GenerateResponse: ...
    @overload
    async def generate(
        self, prompt: str, *, stream: Literal[True], **kw: Unpack[GenerateArgs]
    ) -> AsyncIterator[GenerateResponse]: ...
    async def generate(self, prompt: str, *, stream: bool = False, **kw: Any) -> Any:
        """See :meth:`Client.generate`."""
        return await self._drive(self._generate(prompt, stream, kw))

    def conversation(
        self,
        system: str | None = None,
        model: str | None = None,
        options: OptionsLike = None,
        tools: Iterable[ToolLike] | None = None,
    ) -> AsyncConversation:
        return AsyncConversation(
            self, system=system, model=model or self.model, options=options, tools=tools
        )


# --------------------------------------------------------------------------- conversations


class Conversation:
    """A chat that keeps its history: ``send`` appends the user turn and the reply.

    Streamed replies are appended once the stream is fully consumed; a failed request leaves the
    history as it was, so the same turn can be retried. The same class serves both clients:
    with an :class:`AsyncClient`, ``send`` returns an awaitable (see :class:`AsyncConversation`).
    """

    def __init__(
        self,
        client: Client | AsyncClient,
        *,
        system: str | None = None,
        model: str | None,
        options: OptionsLike = None,
        tools: Iterable[ToolLike] | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.system = system
        self.options = options
        self.tools = list(tools or [])
        self._messages: list[dict[str, Any]] = []
        self.reset()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A copy of the history (system message first when one was given)."""
        return [dict(m) for m in self._messages]

    def reset(self) -> None:
        """Forget every turn but keep the system prompt."""
        self._messages = [{"role": "system", "content": self.system}] if self.system else []

    def tool_result(self, content: str) -> None:
        """Record the result of a tool call; ``send()`` without text then sends it."""
        self._messages = [*self._messages, {"role": "tool", "content": str(content)}]

    @staticmethod
    def _turn(message: ollama.Message, content: str | None = None) -> dict[str, Any]:
        turn: dict[str, Any] = {"role": "assistant", "content": content or message.content or ""}
        if message.tool_calls:
            turn["tool_calls"] = [c.model_dump(exclude_none=True) for c in message.tool_calls]
        return turn

    def _send(self, text: str | None, images: Any, stream: bool) -> Plan[Any]:
        if text is None:
            if not self._messages or self._messages[-1]["role"] != "tool":
                raise UsageError("send() without text needs a tool_result() to send")
            history = list(self._messages)
        else:
            turn: dict[str, Any] = {"role": "user", "content": text}
            encoded = encode_images(images)
            if encoded:
                turn["images"] = encoded
            history = [*self._messages, turn]
        reply = yield from self.client._chat(
            history, stream, {"model": self.model, "options": self.options, "tools": self.tools}
        )
        if not isinstance(reply, Stream):
            self._messages = [*history, self._turn(reply.message)]
            return reply
        parts: list[str] = []
        last: list[Any] = []

        def collect(chunk: Any) -> Any:
            item = reply.map(chunk)
            parts.append(item.message.content or "")
            last[:] = [item]
            return item

        def done() -> None:
            message = last[0].message if last else ollama.Message(role="assistant")
            self._messages = [*history, self._turn(message, "".join(parts))]

        return Stream(reply.raw, collect, reply.model, on_end=done)

    def send(
        self,
        text: str | None = None,
        images: ImageLike | Iterable[ImageLike] | None = None,
        *,
        stream: bool = False,
    ) -> Any:
        """Send one user turn (or, without text, the tool results recorded since the last
        reply); returns the ``ChatResponse`` or an iterator of chunks."""
        return self.client._drive(self._send(text, images, stream))


class AsyncConversation(Conversation):
    """:class:`Conversation` for :class:`AsyncClient`; ``send`` is a coroutine."""

    client: AsyncClient

    async def send(
        self,
        text: str | None = None,
        images: ImageLike | Iterable[ImageLike] | None = None,
        *,
        stream: bool = False,
    ) -> Any:
        return await self.client._drive(self._send(text, images, stream))
