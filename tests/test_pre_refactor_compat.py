"""Models and checkpoints of rvoslib before the one-model-contract refactor still hold.

The fixtures in ``tests/data/pre_refactor`` were written by its ``make_fixtures.py`` on the tree
before the refactor: the hash of every tensor of every preset's seeded initial weights, and
for each tiny preset a saved folder (weights rebuilt here from ``weights.json``), its outputs,
predictions and loss terms on fixed inputs.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rvoslib import create_model
from rvoslib.models.base import SegmentationModel

FIXTURES = Path(__file__).parent / "data" / "pre_refactor"
_spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)
HASHES = json.loads((FIXTURES / "init_hashes.json").read_text())
CHECKPOINTS = sorted(p.name for p in FIXTURES.iterdir() if (p / "config.json").is_file())


def test_fixtures_cover_every_architecture():
    assert len(CHECKPOINTS) == 9 and len(HASHES) >= 17


@pytest.mark.parametrize("name", sorted(HASHES))
def test_seeded_initial_weights_are_bit_identical(name):
    torch.manual_seed(0)
    state = create_model(name).state_dict()
    actual = {key: make_fixtures.tensor_hash(value) for key, value in state.items()}
    assert sorted(actual) == sorted(HASHES[name])
    changed = [key for key in actual if actual[key] != HASHES[name][key]]
    assert not changed, f"{name}: {len(changed)} tensors differ, e.g. {changed[:3]}"


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.float(), expected.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_checkpoint_saved_before_loads_with_identical_outputs(name, tmp_path):
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    layout = json.loads((folder / "weights.json").read_text())
    save_file(make_fixtures.synthetic_state(layout), str(folder / "model.safetensors"))
    expected = load_file(str(folder / "expected.safetensors"))
    model = SegmentationModel.from_pretrained(folder).eval()
    batch = {k[6:]: v for k, v in expected.items() if k.startswith("input.")}
    with torch.no_grad():
        outputs = model.forward_batch(batch)
        for key in (k[7:] for k in expected if k.startswith("output.")):
            _close(outputs[key], expected[f"output.{key}"])
        _close(model.predict(batch, clip_len=2), expected["predict"])
        target = {k[7:]: v for k, v in expected.items() if k.startswith("target.")}
        losses = model.losses(outputs, {**batch, **target})
    expected_losses = {k[5:]: v for k, v in expected.items() if k.startswith("loss.")}
    assert sorted(losses) == sorted(expected_losses)
    for key, value in expected_losses.items():
        _close(losses[key], value)
