"""Every error gemma3-pack raises, under one base.

    Gemma3PackError                      base; ``str(err)`` is one actionable line
    ├── UsageError(ValueError)           an argument is wrong: unknown variant or quant, a value
    │                                    that cannot be quoted in a Modelfile, conflicting options
    ├── InputError                       an input file or folder cannot be used as given
    │   ├── InputNotFound(FileNotFoundError)
    │   ├── NotGGUF(ValueError)          empty, random, truncated or corrupt GGUF
    │   ├── NotGemma3(ValueError)        a valid model, but not Gemma 3 (names what it is)
    │   ├── CheckpointError(ValueError)  a Hugging Face checkpoint we refuse (pickle-only, bnb/GPTQ/AWQ,
    │   │                                corrupt safetensors, unsafe index paths, attention softcap, ...)
    │   └── ModelfileError(ValueError)   a Modelfile that Ollama's parser would reject
    ├── OutputError(OSError)             the output cannot be written (missing folder, exists, read-only)
    │   └── InsufficientDisk             the preflight says the outputs will not fit
    ├── MissingDependency(ImportError)   an optional extra is needed; names the pip command
    ├── QuantizeError(RuntimeError)      llama.cpp's quantizer failed
    └── ServerError                      talking to a model server (Ollama, llama-server, vLLM) failed
        ├── ServerNotRunning(ConnectionError)  nothing answers at the host (says which, and how to start it)
        ├── ServerTimeout(TimeoutError)        the server accepted but did not answer within ``timeout``
        ├── ModelNotFound(LookupError)         the server does not have the model (Ollama: the pull command)
        ├── VisionNotSupported(ValueError)     images sent to a text-only model (names a vision variant)
        ├── NotSupportedByServer               pull/create/blobs asked of a server that is not Ollama
        └── ServerResponseError                any other error status or an unreadable reply; keeps
            └── ContextOverflow                ``status_code`` and ``error``; the prompt exceeds the context

    The Ollama-era names stay as aliases: ``OllamaError`` = ``ServerError``, ``OllamaNotRunning`` =
    ``ServerNotRunning``, ``OllamaResponseError`` = ``ServerResponseError``.

Foreign errors (OSError, ollama.ResponseError, openai.APIError, httpx errors, safetensors/gguf parse errors) are
translated where they are caught, never passed through raw. The CLI prints ``error: <message>``
and exits with code 2; ``GEMMA3_PACK_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ContextOverflow",
    "Gemma3PackError",
    "InputError",
    "InputNotFound",
    "InsufficientDisk",
    "MissingDependency",
    "ModelNotFound",
    "ModelfileError",
    "NotGGUF",
    "NotGemma3",
    "NotSupportedByServer",
    "OllamaError",
    "OllamaNotRunning",
    "OllamaResponseError",
    "OutputError",
    "QuantizeError",
    "ServerError",
    "ServerNotRunning",
    "ServerResponseError",
    "ServerTimeout",
    "UsageError",
    "VisionNotSupported",
]


class Gemma3PackError(Exception):
    """Base of every gemma3-pack error. The message is one line saying what and how to fix it."""


class UsageError(Gemma3PackError, ValueError):
    """An argument is wrong (unknown variant or quant type, an unquotable value, conflicting options)."""


class InputError(Gemma3PackError):
    """An input file or folder cannot be used as given."""


class InputNotFound(InputError, FileNotFoundError):
    """The input path does not exist."""


class NotGGUF(InputError, ValueError):
    """The file is not a readable GGUF (empty, random bytes, truncated, corrupt)."""


class NotGemma3(InputError, ValueError):
    """The model is valid but is not Gemma 3; the message names what it is."""


class CheckpointError(InputError, ValueError):
    """A Hugging Face checkpoint that cannot be exported safely or correctly."""


class ModelfileError(InputError, ValueError):
    """A Modelfile that Ollama's parser would reject (the message carries the line number)."""


class OutputError(Gemma3PackError, OSError):
    """The output cannot be written where asked."""


class InsufficientDisk(OutputError):
    """The disk preflight found less free space than the outputs need."""


class MissingDependency(Gemma3PackError, ImportError):
    """An optional dependency is not installed; the message gives the install command."""


class QuantizeError(Gemma3PackError, RuntimeError):
    """llama.cpp's quantizer returned an error."""


_START = {
    "ollama": "start it with `ollama serve` (or set OLLAMA_HOST to where it runs)",
    "openai": "start the server (`llama-server -m MODEL.gguf --jinja` or `vllm serve MODEL`) "
    "or pass the URL it listens on",
}


class ServerError(Gemma3PackError):
    """Talking to a model server (Ollama, llama-server, vLLM, any OpenAI-compatible one) failed."""


class ServerNotRunning(ServerError, ConnectionError):
    """Nothing answers at the host."""

    def __init__(self, host: str, backend: str = "ollama") -> None:
        self.host = host
        self.backend = backend
        what = "Ollama" if backend == "ollama" else "an OpenAI-compatible server"
        super().__init__(f"cannot reach {what} at {host}: {_START.get(backend, _START['openai'])}")


class ServerTimeout(ServerError, TimeoutError):
    """The server took the connection but sent nothing within the timeout."""

    def __init__(
        self,
        host: str,
        timeout: float | None,
        what: str = "did not answer",
        why: str = "if the model is still loading",
    ) -> None:
        self.host = host
        self.timeout = timeout
        within = f" within {timeout:g} s" if timeout else ""
        super().__init__(f"{host} {what}{within}: raise the timeout (timeout= / --timeout) {why}")


class ModelNotFound(ServerError, LookupError):
    """The server does not have the model."""

    def __init__(self, model: str, backend: str = "ollama", served: str | None = None) -> None:
        self.model = model
        self.backend = backend
        if backend == "ollama":
            message = (
                f"model {model!r} is not installed: run `ollama pull {model}` "
                f"(or `gemma3-pack pull {model}`)"
            )
        else:
            message = f"model {model!r} is not served there: " + (
                f"this server serves {served}; pass model={served.split(', ')[0]!r}"
                if served
                else "start the server with that model, or pass the name GET /v1/models lists"
            )
        super().__init__(message)


class VisionNotSupported(ServerError, ValueError):
    """Images were given for a model without the vision capability."""

    def __init__(self, model: str, suggestion: str = "gemma3:4b") -> None:
        self.model = model
        self.suggestion = suggestion
        super().__init__(
            f"model {model!r} cannot see images (no 'vision' capability): "
            f"use a vision variant such as {suggestion}"
        )


class NotSupportedByServer(ServerError, UsageError):
    """An Ollama-only operation (pull, create, blobs) was asked of another kind of server."""

    def __init__(self, what: str, host: str) -> None:
        self.what = what
        self.host = host
        super().__init__(
            f"{what} needs an Ollama server, but {host} speaks the OpenAI API: llama-server and "
            "vLLM load their model at start (`llama-server -m MODEL.gguf`, `vllm serve MODEL`)"
        )


class ServerResponseError(ServerError):
    """Any other error the server returned, or a reply that is not what the protocol says."""

    def __init__(self, error: str, status_code: int = -1, server: str = "ollama") -> None:
        self.error = error
        self.status_code = status_code
        self.server = server
        status = f" (status code: {status_code})" if status_code != -1 else ""
        super().__init__(f"{server}: {error}{status}")


class ContextOverflow(ServerResponseError):
    """The prompt does not fit the model's context window."""


# The names from before there was more than one backend.
OllamaError = ServerError
OllamaNotRunning = ServerNotRunning
OllamaResponseError = ServerResponseError
