"""Avocado's trainer: a Qwen3-architecture decoder in plain PyTorch.

TypeScript owns tokenisation, chat templates and loss masks; this package reads
token-id shards, trains (SFT on assistant tokens), checkpoints resumably, and
writes a Hugging Face layout (config.json + model.safetensors).
"""
