"""Opt-in: the SDK against a real vLLM server (vLLM needs a GPU; none runs on the CI machine).

    vllm serve google/gemma-3-4b-it --max-model-len 8192
    GEMMA3_PACK_VLLM_URL=http://127.0.0.1:8000/v1 pytest -m vllm tests/test_client_vllm.py

What it proves that the loopback tests cannot: vLLM accepts the exact body the SDK sends (Gemma's
``top_k``/``min_p``/``repetition_penalty`` as extra fields; vLLM before 0.5 answers 400 to a field
it does not know), renders the normalised conversation with Google's template, decodes to the
JSON schema, and answers 404 for a model it does not serve.
"""

from __future__ import annotations

import os

import pytest
from _fake_ollama import PNG
from _real_chat import CONVERSATION, SCHEMA

from gemma3_pack import Client, ModelNotFound

URL = os.environ.get("GEMMA3_PACK_VLLM_URL", "")
pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        not URL, reason="opt-in: set GEMMA3_PACK_VLLM_URL to a vLLM server's /v1 URL (needs a GPU)"
    ),
]
OPTIONS = {"num_predict": 16, "seed": 1, "temperature": 0.0}


@pytest.fixture
def client():
    with Client(URL, backend="vllm", timeout=600) as c:
        yield c


def test_the_conversation_and_gemma_sampling_are_accepted(client: Client) -> None:
    reply = client.chat(CONVERSATION, options=OPTIONS)
    assert (reply.message.content or "").strip()
    assert "".join(c.message.content or "" for c in client.chat("Hi", stream=True, options=OPTIONS))


def test_json_schema_decoding(client: Client) -> None:
    reply = client.chat("Which colour is grass? Reply in JSON.", format=SCHEMA, options=OPTIONS)
    assert reply.parsed in ({"colour": "blue"}, {"colour": "green"}, {"colour": "red"})


def test_images_reach_a_vision_model(client: Client) -> None:
    reply = client.chat("What colour is this picture?", images=[PNG], options=OPTIONS)
    assert (reply.message.content or "").strip()


def test_a_model_it_does_not_serve(client: Client) -> None:
    with pytest.raises(ModelNotFound, match="is not served there: this server serves"):
        client.chat("Hi", model="not-a-served-model")
