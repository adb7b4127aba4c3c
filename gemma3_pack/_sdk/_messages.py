"""Message lists as Gemma 3's template can take them, on every backend.

Google's Jinja template (what llama-server ``--jinja`` and vLLM render) raises unless the turns go
system?, user, assistant, user, ... and Ollama's Go template quietly renders anything. So the SDK
normalises before any backend sees the list:

* every ``system`` message, wherever it stands, is folded into one first system turn (joined by a
  blank line, in order): Gemma 3 has no system role; both templates put it into the first user turn;
* consecutive turns of the same role are collated the way Ollama's server does (``template.collate``:
  contents joined by ``"\\n\\n"``, images kept in order); tool results are never merged;
* images become base64 strings (what Ollama takes); :func:`to_openai` turns them into
  ``image_url`` data-URL parts for OpenAI-compatible servers.

The caller's list and dicts are never modified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ollama

from .._errors import UsageError
from ._images import ImageLike, encode_images, sniff_format

__all__ = ["Messages", "build_messages", "has_images", "normalise", "to_openai"]

Messages = str | Sequence[Mapping[str, Any] | ollama.Message]
ROLES = ("system", "user", "assistant", "tool")


def _as_dict(message: Mapping[str, Any] | ollama.Message) -> dict[str, Any]:
    if isinstance(message, ollama.Message):
        return message.model_dump(exclude_none=True)
    if isinstance(message, Mapping):
        return dict(message)
    raise UsageError(f"a message must be a dict or ollama.Message, not {type(message).__name__}")


def normalise(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fold system messages into one first turn and collate same-role neighbours (see above)."""
    systems = [str(m.get("content") or "") for m in messages if m.get("role") == "system"]
    out: list[dict[str, Any]] = (
        [{"role": "system", "content": "\n\n".join(systems)}] if systems else []
    )
    for msg in messages:
        if msg.get("role") == "system":
            continue
        last = out[-1] if out else None
        if last is not None and last["role"] == msg.get("role") and msg.get("role") != "tool":
            merged = dict(last)
            merged["content"] = "\n\n".join(
                c for c in (last.get("content") or "", msg.get("content") or "") if c
            )
            if msg.get("images"):
                merged["images"] = [*(last.get("images") or []), *msg["images"]]
            if msg.get("tool_calls"):
                merged["tool_calls"] = [*(last.get("tool_calls") or []), *msg["tool_calls"]]
            out[-1] = merged
        else:
            out.append(dict(msg))
    return out


def build_messages(
    prompt_or_messages: Messages,
    *,
    system: str | None = None,
    images: ImageLike | Iterable[ImageLike] | None = None,
) -> list[dict[str, Any]]:
    """The normalised message list for a chat request; images encoded to base64."""
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
    return normalise(messages)


def has_images(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any(m.get("images") for m in messages)


def _data_url(b64: str) -> str:
    import base64

    head = base64.b64decode(b64[:64] + "=" * (-len(b64[:64]) % 4))
    return f"data:image/{sniff_format(head) or 'png'};base64,{b64}"


def to_openai(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Normalised messages in the OpenAI chat format: images as ``image_url`` data-URL parts."""
    out = []
    for msg in messages:
        role, text = msg.get("role"), msg.get("content") or ""
        if role not in ROLES:
            raise UsageError(f"invalid role: {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(text, str):
            raise UsageError(f"invalid content: Input should be a valid string, not {text!r}")
        entry: dict[str, Any] = {"role": role}
        if msg.get("images"):
            entry["content"] = [
                *({"type": "image_url", "image_url": {"url": _data_url(i)}} for i in msg["images"]),
                *([{"type": "text", "text": text}] if text else []),
            ]
        else:
            entry["content"] = text
        for key in ("tool_call_id", "name"):
            if key in msg:
                entry[key] = msg[key]
        out.append(entry)
    return out
