"""The vision reference: a deterministic 896x896 test card, Gemma 3's image features computed in
numpy (float64) from the vision fixture's weights, and clip.cpp's (mtmd's) embedding of the same
image through llama-cpp-python, with the agreement both vision suites assert."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
from _assets_vision import VISION_CONFIG, vision_tensors

SIZE = 896


def image() -> np.ndarray:
    """A deterministic 896x896 RGB test card (no resize happens in clip.cpp at this size)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    rgb = np.stack([(x * 255) // SIZE, (y * 255) // SIZE, ((x // 64 + y // 64) % 2) * 255], -1)
    return rgb.astype(np.uint8)


def reference_embedding(rgb: np.ndarray) -> np.ndarray:
    """Gemma3ForConditionalGeneration.get_image_features in numpy, float64."""
    w = {k: v.astype(np.float64) for k, v in vision_tensors().items()}
    t = "vision_tower.vision_model."
    h, heads = VISION_CONFIG["hidden_size"], VISION_CONFIG["num_attention_heads"]
    p, eps = VISION_CONFIG["patch_size"], VISION_CONFIG["layer_norm_eps"]
    n = SIZE // p
    px = (rgb.astype(np.float64) / 255.0 - 0.5) / 0.5  # mean/std 0.5
    patches = px.reshape(n, p, n, p, 3).transpose(0, 2, 4, 1, 3).reshape(n * n, 3 * p * p)
    x = patches @ w[t + "embeddings.patch_embedding.weight"].reshape(h, -1).T
    x = x + w[t + "embeddings.patch_embedding.bias"] + w[t + "embeddings.position_embedding.weight"]

    def ln(v: np.ndarray, name: str) -> np.ndarray:
        mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    def lin(v: np.ndarray, name: str) -> np.ndarray:
        return v @ w[name + ".weight"].T + w[name + ".bias"]

    for i in range(VISION_CONFIG["num_hidden_layers"]):
        layer = f"{t}encoder.layers.{i}."
        y = ln(x, layer + "layer_norm1")
        q, k, v = (
            lin(y, f"{layer}self_attn.{a}_proj").reshape(-1, heads, h // heads).transpose(1, 0, 2)
            for a in "qkv"
        )
        s = q @ k.transpose(0, 2, 1) / np.sqrt(h // heads)
        s = np.exp(s - s.max(-1, keepdims=True))
        att = (s / s.sum(-1, keepdims=True)) @ v
        x = x + lin(att.transpose(1, 0, 2).reshape(-1, h), layer + "self_attn.out_proj")
        y = lin(ln(x, layer + "layer_norm2"), layer + "mlp.fc1")
        y = 0.5 * y * (1 + np.tanh(np.sqrt(2 / np.pi) * (y + 0.044715 * y**3)))
        x = x + lin(y, layer + "mlp.fc2")
    x = ln(x, t + "post_layernorm")
    pooled = x.reshape(16, 4, 16, 4, h).mean(axis=(1, 3)).reshape(256, h)
    normed = pooled / np.sqrt((pooled**2).mean(-1, keepdims=True) + eps)
    normed = normed * (1.0 + w["multi_modal_projector.mm_soft_emb_norm.weight"])
    return normed @ w["multi_modal_projector.mm_input_projection_weight"]


def clip_embedding(text_gguf: Path, mmproj: Path, rgb: np.ndarray) -> np.ndarray:
    """The 256 x 640 image embedding clip.cpp (mtmd) computes for ``rgb`` with ``mmproj``."""
    import llama_cpp
    from llama_cpp import mtmd_cpp

    llm = llama_cpp.Llama(str(text_gguf), n_ctx=512, n_threads=2, verbose=False)
    params = mtmd_cpp.mtmd_context_params_default()
    params.use_gpu = False
    params.n_threads = 2
    ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj).encode(), llm.model, params)
    assert ctx is not None, "clip.cpp refused the mmproj"
    bitmap = mtmd_cpp.mtmd_bitmap_init(
        SIZE, SIZE, (ctypes.c_uint8 * rgb.size).from_buffer(bytearray(rgb.tobytes()))
    )
    chunks = mtmd_cpp.mtmd_input_chunks_init()
    try:
        assert mtmd_cpp.mtmd_support_vision(ctx)
        text = mtmd_cpp.mtmd_input_text()
        marker = mtmd_cpp.mtmd_default_marker()
        text.text, text.text_len = marker, len(marker)
        text.add_special, text.parse_special = False, True
        arr = (mtmd_cpp.mtmd_bitmap_p_ctypes * 1)(bitmap)
        assert mtmd_cpp.mtmd_tokenize(ctx, chunks, ctypes.byref(text), arr, 1) == 0
        image = next(
            c
            for c in (
                mtmd_cpp.mtmd_input_chunks_get(chunks, i)
                for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks))
            )
            if mtmd_cpp.mtmd_input_chunk_get_type(c) == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE
        )
        assert mtmd_cpp.mtmd_input_chunk_get_n_tokens(image) == 256
        assert mtmd_cpp.mtmd_decode_use_non_causal(ctx, image)  # Gemma 3: bidirectional images
        assert mtmd_cpp.mtmd_encode_chunk(ctx, image) == 0
        ptr = mtmd_cpp.mtmd_get_output_embd(ctx)
        got = np.ctypeslib.as_array(ptr, shape=(256 * 640,)).reshape(256, 640).copy()
    finally:
        mtmd_cpp.mtmd_input_chunks_free(chunks)
        mtmd_cpp.mtmd_bitmap_free(bitmap)
        mtmd_cpp.mtmd_free(ctx)
        llm.close()
    return got


def assert_matches_reference(got: np.ndarray, rgb: np.ndarray) -> None:
    want = reference_embedding(rgb)
    cos = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
    assert cos.min() > 0.999, cos.min()
    np.testing.assert_allclose(got, want, rtol=0, atol=0.02 * np.abs(want).max())
