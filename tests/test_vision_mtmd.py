"""llama.cpp's multimodal runtime (mtmd, through llama-cpp-python) runs our mmproj.

Three checks:

* a chat turn with an image through ``MTMDChatHandler`` on the real 270M text GGUF (640 wide, like
  the fixture's projector): the image becomes exactly 256 tokens, there is one BOS, and a reply
  comes back;
* the image embedding clip.cpp computes from our file equals a numpy forward pass of the same
  SigLIP tower + Gemma 3 projector (transformers' Gemma3 math: patch conv, pre-LN encoder with
  tanh-GELU, post-LN, 4x4 average pool, RMSNorm with (1 + w), projection) — so names, layouts,
  transposes, the +1 and storage types are right, not merely loadable;
* the fused Ollama file, translated the way Ollama >= 0.30 translates it for llama.cpp's clip
  loader, gives that same embedding.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _assets_vision import hf_checkpoint_vision
from _vision_ref import assert_matches_reference as _assert_matches_reference
from _vision_ref import clip_embedding as _clip_embedding
from _vision_ref import image as _image

from gemma3_pack._chat import OFFICIAL_TEMPLATE
from gemma3_pack._export._mmproj import mmproj_filename, write_mmproj

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is in the [test] extra")
pytestmark = [pytest.mark.llama, pytest.mark.slow]


@pytest.fixture(scope="module")
def mmproj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mtmd") / mmproj_filename("tiny-vision")
    return write_mmproj(hf_checkpoint_vision("tf5", text=False), out)


def _handler_class() -> Any:
    from llama_cpp.llama_chat_format import MTMDChatHandler

    class GemmaMTMD(MTMDChatHandler):  # type: ignore[misc]
        """MTMDChatHandler without the double BOS: mtmd_tokenize adds BOS itself."""

        def _postprocess_template_text(
            self, text: str, image_urls: list[str], media_marker: str
        ) -> str:
            text = super()._postprocess_template_text(text, image_urls, media_marker)
            return text.removeprefix("<bos>")

    return GemmaMTMD


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The whole pipeline on the layout llama.cpp's converter silently breaks (model.*)."""
    from gemma3_pack._export import export

    out = tmp_path_factory.mktemp("export") / "out"
    return export(
        hf_checkpoint_vision("new"),
        output_dir=out,
        quants="Q8_0",
        ollama_format="pair",
        progress=False,
    )


def test_export_lists_the_projector(exported: Any, mmproj: Path) -> None:
    import json

    from gemma3_pack._export._mmproj import MMPROJ_PATTERN

    manifest = json.loads((exported.output_dir / "export.json").read_text())
    name = manifest["mmproj"]["path"]
    assert name == "mmproj-vision-v1-new-text-F16.gguf" and MMPROJ_PATTERN.search(name)
    assert manifest["fused"] is None
    # the projector exported from the model.* layout carries the tensors made from the tf5 one
    from _oracle import compare_gguf

    diff = compare_gguf(exported.output_dir / name, mmproj)
    assert diff["tensors_differ"] == {} and diff["tensors_only_a"] == diff["tensors_only_b"] == []
    assert diff["keys_only_a"] == ["general.basename", "general.name"]
    froms = [
        line
        for line in (exported.output_dir / "Modelfile").read_text().splitlines()
        if line.startswith("FROM ")
    ]
    assert froms == [f"FROM ./{manifest['models'][0]['path']}", f"FROM ./{name}"]


def test_chat_turn_with_an_image(exported: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from llama_cpp import mtmd_cpp
    from PIL import Image

    image_chunks: list[int] = []
    real = mtmd_cpp.mtmd_input_chunk_get_n_tokens

    def count(chunk: Any) -> int:
        n = int(real(chunk))
        if mtmd_cpp.mtmd_input_chunk_get_type(chunk) == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE:
            image_chunks.append(n)
        return n

    monkeypatch.setattr(mtmd_cpp, "mtmd_input_chunk_get_n_tokens", count)
    buf = io.BytesIO()
    Image.fromarray(_image()).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    handler = _handler_class()(clip_model_path=str(exported.mmproj.path), verbose=False)
    llm = llama_cpp.Llama(
        str(exported.models[0].path),
        chat_handler=handler,
        n_ctx=1024,
        n_batch=512,
        n_ubatch=512,
        n_threads=2,
        verbose=False,
        seed=1,
    )
    try:
        reply = llm.create_chat_completion(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": "What is in this picture?"},
                    ],
                }
            ],
            max_tokens=8,
            temperature=0.0,
        )
        prompt = llm.input_ids[: reply["usage"]["prompt_tokens"]].tolist()
    finally:
        llm.close()
    assert image_chunks == [256]  # 64x64 patches pooled 4x4
    assert reply["usage"]["prompt_tokens"] >= 256 + 10
    assert reply["usage"]["completion_tokens"] > 0
    assert isinstance(reply["choices"][0]["message"]["content"], str)
    # <bos> <start_of_turn> "user" "\n" <start_of_image>: one BOS (the generic handler gives two)
    assert prompt[:5] == [2, 105, 2364, 107, 255999]
    assert llm.metadata["tokenizer.chat_template"] == OFFICIAL_TEMPLATE  # the export embeds it


def test_clip_cpp_embedding_equals_reference_forward(gguf_270m: Path, mmproj: Path) -> None:
    rgb = _image()
    _assert_matches_reference(_clip_embedding(gguf_270m, mmproj, rgb), rgb)


# Ollama >= 0.30 hands a fused Gemma 3 file to llama.cpp's clip loader as --mmproj and translates
# it there (ollama/ollama llama/compat/llama-ollama-compat.cpp, handle_gemma3_clip): keys copied
# from gemma3.vision.* to clip.vision.*, projection_dim from gemma3.embedding_length, mean/std 0.5,
# gelu, projector gemma3, tensor renames by substring (kGemma3ClipRenames, note fc1 -> ffn_down:
# clip.cpp swaps the pair back for gemma3 when ffn_down's ne[0] is the tower width), and the
# patch/position embeddings promoted from F16 to F32.
_SHIM_RENAMES = (
    ("v.patch_embedding", "v.patch_embd"),
    ("v.position_embedding", "v.position_embd"),
    ("v.post_layernorm", "v.post_ln"),
    (".layer_norm1", ".ln1"),
    (".layer_norm2", ".ln2"),
    (".attn_output", ".attn_out"),
    (".mlp.fc1", ".ffn_down"),
    (".mlp.fc2", ".ffn_up"),
    ("mm.mm_input_projection", "mm.input_projection"),
    ("mm.mm_soft_emb_norm", "mm.soft_emb_norm"),
)


def _ollama_shim_mmproj(fused: Path, out: Path) -> Path:
    import gguf

    from gemma3_pack._gguf._reader import open_gguf

    w = gguf.GGUFWriter(out, arch="clip")
    with open_gguf(fused) as h:
        g = h.get
        w.add_uint32("clip.vision.block_count", g("gemma3.vision.block_count"))
        w.add_uint32("clip.vision.embedding_length", g("gemma3.vision.embedding_length"))
        w.add_uint32("clip.vision.feed_forward_length", g("gemma3.vision.feed_forward_length"))
        w.add_uint32("clip.vision.image_size", g("gemma3.vision.image_size"))
        w.add_uint32("clip.vision.patch_size", g("gemma3.vision.patch_size"))
        w.add_uint32("clip.vision.attention.head_count", g("gemma3.vision.attention.head_count"))
        w.add_float32(
            "clip.vision.attention.layer_norm_epsilon",
            g("gemma3.vision.attention.layer_norm_epsilon"),
        )
        w.add_uint32("clip.vision.projection_dim", g("gemma3.embedding_length"))
        w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
        w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
        w.add_bool("clip.has_vision_encoder", True)
        w.add_bool("clip.use_gelu", True)
        w.add_string("clip.projector_type", "gemma3")
        for t in h.tensors:
            if not t.name.startswith(("v.", "mm.")):
                continue
            name = t.name
            for old, new in _SHIM_RENAMES:
                name = name.replace(old, new, 1)
            dtype = np.float32 if t.type_name == "F32" else np.float16
            at = h.data_start + t.offset
            data = (
                np.frombuffer(h.buf, dtype=dtype, count=int(np.prod(t.shape)), offset=at)
                .reshape(tuple(reversed(t.shape)))
                .copy()
            )
            if name in ("v.patch_embd.weight", "v.position_embd.weight"):
                data = data.astype(np.float32)
            w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def test_fused_file_through_ollama_compat_shim(gguf_270m: Path, tmp_path: Path) -> None:
    """What Ollama >= 0.30 does with our fused file gives the right image embedding."""
    from gemma3_pack._export._fused import write_fused

    fused = write_fused(gguf_270m, hf_checkpoint_vision("new", text=False), tmp_path / "f.gguf")
    shim = _ollama_shim_mmproj(fused, tmp_path / "shim-mmproj.gguf")
    rgb = _image()
    _assert_matches_reference(_clip_embedding(gguf_270m, shim, rgb), rgb)
