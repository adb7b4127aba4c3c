"""Memory planning: will a Gemma 3 GGUF fit (CPU, GPUs, RPC machines, vLLM), byte-exact against the engines."""
