"""Checkpoint readers: safetensors (float), LoRA adapters, compressed-tensors int4, as one Checkpoint protocol."""
