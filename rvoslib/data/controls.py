"""Control experiments: datasets that break the link between video and text."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["ShuffledTextDataset"]


class ShuffledTextDataset(Dataset):
    """Pair every clip with another clip's expression (a fixed derangement).

    A model trained on this cannot learn which object the text refers to; it bounds what a
    model that ignores the language reaches (the ``--shuffle-text`` control of ``rvos train``).

    Args:
        dataset: Items with an ``expression`` key.
        seed: Seed of the permutation.

    Raises:
        ValueError: fewer than two items.
    """

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        length = len(dataset)  # type: ignore[arg-type]
        if length < 2:
            raise ValueError(f"dataset must have at least 2 items to shuffle text, got {length}")
        self.dataset = dataset
        order = torch.randperm(length, generator=torch.Generator().manual_seed(seed)).tolist()
        # A cyclic shift of a random order: no item keeps its own expression.
        self.partner = [0] * length
        for position, index in enumerate(order):
            self.partner[index] = order[(position + 1) % length]
        self._expressions: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.partner)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        item["expression"] = self._expression(self.partner[index])
        return item

    def _expression(self, index: int) -> str:
        if index not in self._expressions:
            self._expressions[index] = self.dataset[index]["expression"]
        return self._expressions[index]
