"""The SDK: Client/AsyncClient over Ollama, llama-server and vLLM; requests, replies, transport, progress, images."""
