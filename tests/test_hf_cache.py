"""``gemma3-pack export org/name`` through huggingface_hub's real ``snapshot_download``.

The repo id path downloads into the Hugging Face cache, where every file of a snapshot is a
symlink into ``../../blobs``. A loopback Hub (``tests/support/_hf_hub.py``, ``HF_ENDPOINT`` pointed at it)
serves a tiny Gemma 3 checkpoint the way the Hub API does, so the cache layout is the one the real
client makes, not a hand-made folder: sharded (with ``model.safetensors.index.json``, the layout
of every 4B/12B/27B repo) and unsharded. Before the fix the sharded case failed with
"model.safetensors.index.json points outside the checkpoint folder".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
from _hf_hub import COMMIT, LoopbackHub
from _tiny_ckpt import make_ckpt, tiny_tensors
from conftest import run_cli
from safetensors.numpy import save_file

pytestmark = pytest.mark.slow


def _shard(folder: Path) -> None:
    """Re-save ``folder``'s model.safetensors as two shards plus the index transformers writes."""
    tensors = tiny_tensors()
    names = sorted(tensors)
    halves = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    (folder / "model.safetensors").unlink()
    weight_map = {}
    for file, part in halves.items():
        save_file({n: tensors[n] for n in part}, str(folder / file))
        weight_map.update(dict.fromkeys(part, file))
    total = sum(t.nbytes for t in tensors.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )


@pytest.mark.parametrize("layout", ["sharded", "unsharded"])
def test_export_repo_id_from_the_real_hf_cache(
    layout: str,
    tokenizer_dir: Path,
    tmp_path: Path,
) -> None:
    repo = make_ckpt(tmp_path / "repo", tokenizer_dir)
    if layout == "sharded":
        _shard(repo)
    hf_home = tmp_path / "hf-home"
    out = tmp_path / "out"
    with LoopbackHub("org/name", repo) as hub:
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(hf_home),
            "HF_HUB_OFFLINE": "0",  # conftest forbids the network; this server is loopback
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
        res = run_cli("export", "org/name", "-o", str(out), "-q", "F32", "--quiet", env=env)
    assert res.code == 0, res.stderr
    # the real client did the work: repo info, then every file resolved at the commit
    paths = {p for _, p in hub.requests}
    assert any(p.startswith("/api/models/org/name/revision/") for p in paths), paths
    served = {p.rsplit("/", 1)[-1] for p in paths if p.startswith("/org/name/resolve/")}
    assert {p.name for p in repo.iterdir()} <= served

    # the cache has the layout huggingface_hub makes: snapshot files are symlinks into ../../blobs
    snapshot = hf_home / "hub" / "models--org--name" / "snapshots" / COMMIT
    weights = sorted(snapshot.glob("*.safetensors"))
    assert len(weights) == (2 if layout == "sharded" else 1)
    for f in [*weights, snapshot / "config.json"]:
        assert f.is_symlink(), f
        target = os.readlink(f)
        assert target.startswith("../../blobs/"), target
        assert f.resolve().parent == snapshot.parent.parent / "blobs"
    if layout == "sharded":
        assert (snapshot / "model.safetensors.index.json").is_symlink()

    # and the export read the weights through those links, exactly
    (model,) = sorted(out.glob("*.gguf"))
    r = gguf.GGUFReader(model)
    q = next(t for t in r.tensors if t.name == "blk.1.attn_q.weight")
    assert np.array_equal(
        np.asarray(q.data), tiny_tensors()["model.layers.1.self_attn.q_proj.weight"]
    )
