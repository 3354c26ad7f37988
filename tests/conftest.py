"""Shared fixtures: offline Hugging Face, determinism, the davis-mini sample."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from _davis_mini import require_davis_mini

# Tests never download: make Hugging Face fail fast instead of retrying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def davis_mini() -> Path:
    """The davis-mini sample: ``$RVOSLIB_DAVIS_MINI`` or ``<repo>/../shared/data/davis-mini``."""
    return require_davis_mini()


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
