"""Specs shared by the presets of several architectures (imports nothing from rvoslib, so that
every preset module can use them without an import cycle)."""

from __future__ import annotations

from typing import Any

__all__ = ["TINY_TEXT_CONFIG", "tiny_text_encoder"]

#: The 2-layer BERT of the tiny presets (random weights, built-in hash tokenizer).
TINY_TEXT_CONFIG: dict[str, Any] = {
    "model_type": "bert",
    "vocab_size": 4096,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def tiny_text_encoder() -> dict[str, Any]:
    """The text encoder spec of the tiny presets: :data:`TINY_TEXT_CONFIG` with the hash
    tokenizer, mean pooling, 16 tokens, projected to 64 (a new dict on every call).

    Example:
        >>> tiny_text_encoder()["tokenizer"], tiny_text_encoder()["out_dim"]
        ('hash', 64)
    """
    return {
        "name": "huggingface",
        "model_name_or_path": "tiny",
        "config": dict(TINY_TEXT_CONFIG),
        "tokenizer": "hash",
        "pooling": "mean",
        "max_length": 16,
        "out_dim": 64,
    }
