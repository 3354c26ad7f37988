"""Shared fixtures: offline Hugging Face, determinism, the davis-mini sample."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests never download: make Hugging Face fail fast instead of retrying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


def davis_mini_path() -> Path | None:
    """The davis-mini sample: ``$RVOSLIB_DAVIS_MINI`` or ``<repo>/../shared/data/davis-mini``."""
    candidate = os.environ.get("RVOSLIB_DAVIS_MINI")
    path = Path(candidate) if candidate else REPO_ROOT.parent / "shared" / "data" / "davis-mini"
    return path if (path / "JPEGImages").is_dir() else None


@pytest.fixture
def davis_mini() -> Path:
    path = davis_mini_path()
    if path is None:
        pytest.skip(
            "davis-mini not found: set RVOSLIB_DAVIS_MINI or place ../shared/data/davis-mini"
        )
    return path


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
