"""A word-level tokenizer that needs no vocabulary file: :class:`HashTokenizer`.

Text is normalised to Unicode NFC (so that ``"caf\u00e9"`` and ``"cafe\u0301"`` give the same
ids), lower-cased and split into words and punctuation; each piece is hashed to an id.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
import zlib
from pathlib import Path
from typing import Any

import torch

__all__ = ["HASH_TOKENIZER_FILE", "HashTokenizer"]

HASH_TOKENIZER_FILE = "rvos_hash_tokenizer.json"
_WORD_PATTERN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


class HashTokenizer:
    """A word-level tokenizer that needs no vocabulary file and handles any sentence.

    Text is lower-cased and split into words and punctuation; each piece maps to
    ``4 + crc32(piece) % (vocab_size - 4)``. Ids 0-3 are ``[PAD]``, ``[CLS]``, ``[SEP]`` and
    ``[UNK]``. The mapping is deterministic across processes and machines.

    Args:
        vocab_size: Number of ids, special tokens included.
        max_length: Default maximum sequence length, ``[CLS]`` and ``[SEP]`` included.

    Example:
        >>> tokens = HashTokenizer(vocab_size=1000)(["the red circle"])
        >>> tokens["input_ids"].shape, tokens["attention_mask"].tolist()
        (torch.Size([1, 5]), [[1, 1, 1, 1, 1]])
    """

    pad_token_id, cls_token_id, sep_token_id, unk_token_id = 0, 1, 2, 3

    def __init__(self, vocab_size: int = 8192, max_length: int = 32) -> None:
        if vocab_size < 16:
            raise ValueError(f"vocab_size must be >= 16, got {vocab_size}")
        self.vocab_size = int(vocab_size)
        self.max_length = int(max_length)

    def word_ids(self, text: str) -> list[int]:
        """Ids of the words of ``text`` (no special tokens; the text is NFC-normalised)."""
        pieces = _WORD_PATTERN.findall(unicodedata.normalize("NFC", text).lower())
        return [4 + zlib.crc32(p.encode("utf-8")) % (self.vocab_size - 4) for p in pieces]

    def __call__(
        self, texts: list[str] | str, max_length: int | None = None, **_: Any
    ) -> dict[str, torch.Tensor]:
        """Tokenize a batch: ``{"input_ids": (B, L) long, "attention_mask": (B, L) long}``."""
        if isinstance(texts, str):
            texts = [texts]
        limit = max(2, int(max_length or self.max_length))
        rows = [
            [self.cls_token_id, *self.word_ids(t)[: limit - 2], self.sep_token_id] for t in texts
        ]
        length = max((len(r) for r in rows), default=2)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the tokenizer's settings to ``directory/rvos_hash_tokenizer.json``."""
        path = Path(directory) / HASH_TOKENIZER_FILE
        settings = {"vocab_size": self.vocab_size, "max_length": self.max_length}
        path.write_text(json.dumps(settings, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> HashTokenizer:
        """Read a tokenizer written by :meth:`save_pretrained`."""
        path = Path(directory) / HASH_TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no hash tokenizer at {str(path)!r}")
        return cls(**json.loads(path.read_text()))
