"""The public API surface: names exist, are documented, and importing has no side effects."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

MODULES = [
    "rvoslib",
    "rvoslib.models",
    "rvoslib.losses",
    "rvoslib.metrics",
    "rvoslib.data",
    "rvoslib.training",
    "rvoslib.inference",
    "rvoslib.video_io",
    "rvoslib.viz",
    "rvoslib.export",
    "rvoslib.benchmark",
]

EXPECTED_TOP_LEVEL = {
    "RVOSModel", "VOSModel", "SegmentationModel", "create_model", "list_presets",
    "VisualBackbone", "TextEncoder", "CrossModalFusion", "TemporalModule", "SegmentationHead",
    "RVOSLoss", "Trainer", "TrainerConfig", "RVOSEvaluator", "VideoPredictor",
    "SyntheticRVOSDataset", "RefDAVISDataset",
}  # fmt: skip


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_exists_and_is_documented(module_name) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__, f"{module_name} has no docstring"
    for name in module.__all__:
        value = getattr(module, name)  # AttributeError if a public name disappeared
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{module_name}.{name} has no docstring"


def test_top_level_names() -> None:
    import rvoslib

    assert EXPECTED_TOP_LEVEL <= set(rvoslib.__all__)
    assert "RVOSConfig" not in rvoslib.__all__ and not hasattr(rvoslib, "RVOSConfig")


def test_shims_of_0_1_are_gone() -> None:
    import rvoslib.inference
    import rvoslib.training

    with pytest.raises(AttributeError):
        rvoslib.training.predict_in_chunks  # noqa: B018
    with pytest.raises(AttributeError):
        rvoslib.training.ShuffledTextDataset  # noqa: B018
    assert not hasattr(rvoslib.inference, "predict_in_chunks")
    assert not hasattr(rvoslib.models, "RVOSConfig")


def test_evaluation_does_not_import_training() -> None:
    import ast

    import rvoslib.evaluation

    tree = ast.parse(inspect.getsource(rvoslib.evaluation))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if m and m.startswith(("rvoslib.training", "rvoslib.cli"))]
    assert not [m for m in imported if m and m.startswith("rvoslib.models.architectures")]


def test_import_has_no_side_effects() -> None:
    code = (
        "import sys, rvoslib, torch;"
        "assert not torch.cuda.is_initialized();"
        "assert 'albumentations' not in sys.modules and 'transformers' not in sys.modules;"
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
