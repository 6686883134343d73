"""Tiny random-init causal LMs for checks, benchmarks and tests (no download, builds in milliseconds)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(vocab_size: int, hidden: int = 64, layers: int = 2, seed: int = 0) -> LlamaForCausalLM:
    """A random-init Llama with tied embeddings over `vocab_size` tokens, in eval mode."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()
