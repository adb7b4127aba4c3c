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
    └── OllamaError                      talking to the Ollama daemon failed
        ├── OllamaNotRunning(ConnectionError)  nothing answers at the host (says which, and `ollama serve`)
        ├── ModelNotFound(LookupError)         the daemon does not have the model (names the pull command)
        ├── VisionNotSupported(ValueError)     images sent to a text-only model (names a vision variant)
        └── OllamaResponseError                any other error status; keeps ``status_code`` and ``error``

Foreign errors (OSError, ollama.ResponseError, httpx errors, safetensors/gguf parse errors) are
translated where they are caught, never passed through raw. The CLI prints ``error: <message>``
and exits with code 2; ``GEMMA3_PACK_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "Gemma3PackError",
    "InputError",
    "InputNotFound",
    "InsufficientDisk",
    "MissingDependency",
    "ModelNotFound",
    "ModelfileError",
    "NotGGUF",
    "NotGemma3",
    "OllamaError",
    "OllamaNotRunning",
    "OllamaResponseError",
    "OutputError",
    "QuantizeError",
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


class OllamaError(Gemma3PackError):
    """Talking to the Ollama daemon failed."""


class OllamaNotRunning(OllamaError, ConnectionError):
    """Nothing answers at the Ollama host."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(
            f"cannot reach Ollama at {host}: start it with `ollama serve` "
            "(or set OLLAMA_HOST to where it runs)"
        )


class ModelNotFound(OllamaError, LookupError):
    """The daemon does not have the model."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"model {model!r} is not installed: run `ollama pull {model}` "
            f"(or `gemma3-pack pull {model}`)"
        )


class VisionNotSupported(OllamaError, ValueError):
    """Images were given for a model without the vision capability."""

    def __init__(self, model: str, suggestion: str = "gemma3:4b") -> None:
        self.model = model
        self.suggestion = suggestion
        super().__init__(
            f"model {model!r} cannot see images (no 'vision' capability): "
            f"use a vision variant such as {suggestion}"
        )


class OllamaResponseError(OllamaError):
    """Any other error the daemon returned; keeps its status code and message."""

    def __init__(self, error: str, status_code: int = -1) -> None:
        self.error = error
        self.status_code = status_code
        super().__init__(f"ollama: {error} (status code: {status_code})")
