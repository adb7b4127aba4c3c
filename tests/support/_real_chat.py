"""The conversation and JSON schema the SDK suites send to every real server (Ollama, llama-server,
vLLM): mixed system turns, a prefilled answer, and an enum the reply must take."""

from __future__ import annotations

CONVERSATION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Hello."},
    {"role": "user", "content": "What colour is the clear daytime sky?"},
    {"role": "assistant", "content": "Blue."},
    {"role": "system", "content": "Answer with one word."},
    {"role": "user", "content": "And grass?"},
]
SCHEMA = {
    "type": "object",
    "properties": {"colour": {"type": "string", "enum": ["blue", "green", "red"]}},
    "required": ["colour"],
}
