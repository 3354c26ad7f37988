"""A tiny stand-in converter for the tests of the conversion front end.

``test-tiny`` converts a state dict of the ``tiny`` preset whose keys carry an ``orig.``
prefix (and an ``orig.position_ids`` buffer, dropped, as the originals' RoBERTa buffers are).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import torch

import rvoslib
from rvoslib.convert import CONVERTERS, Conversion
from rvoslib.convert.base import unexpected_keys_error

NAME = "test-tiny"
PREFIX = "orig."
DROPPED = "orig.position_ids"


def convert_tiny(state: Mapping[str, torch.Tensor]) -> Conversion:
    """The ``test-tiny`` converter."""
    unknown = [key for key in state if not key.startswith(PREFIX)]
    if unknown:
        raise unexpected_keys_error(NAME, unknown)
    return Conversion(
        config=rvoslib.get_preset_config("tiny"),
        state_dict={k[len(PREFIX) :]: v for k, v in state.items() if k != DROPPED},
        dropped=[DROPPED] if DROPPED in state else [],
        source=NAME,
        variant={"size": "tiny"},
        notes=["converted by the test converter"],
    )


def original_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict under the stand-in original names."""
    state = {PREFIX + k: v.clone() for k, v in model.state_dict().items()}
    state[DROPPED] = torch.arange(4)
    return state


@pytest.fixture
def tiny_converter() -> Iterator[str]:
    """Register ``test-tiny`` for one test."""
    CONVERTERS.register(NAME, convert_tiny)
    yield NAME
    CONVERTERS.unregister(NAME)


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return rvoslib.create_model("tiny").eval()


@pytest.fixture(scope="module")
def original_file(tiny_model, tmp_path_factory) -> Path:
    """An MTTR-style checkpoint file of ``tiny_model`` with optimizer and epoch entries."""
    path = tmp_path_factory.mktemp("original") / "checkpoint.pth"
    torch.save(
        {
            "epoch": 3,
            "model_state_dict": original_state(tiny_model),
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-4}]},
        },
        path,
    )
    return path
