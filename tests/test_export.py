"""Export: ONNX round trip against onnxruntime with dynamic dims, torch.export, TorchScript."""

from __future__ import annotations

import warnings

import pytest
import torch

import rvoslib
from rvoslib.export import (
    check_onnx,
    example_inputs,
    export_model,
    export_onnx,
    export_program,
    export_torchscript,
)
from rvoslib.models.presets_common import TINY_TEXT_CONFIG


def _small(text_config: dict) -> dict:
    return {
        "backbone": {"out_strides": [8, 16]},
        "text_encoder": {"config": text_config, "out_dim": 32},
        "fusion": {"hidden_dim": 32},
        "head": {"hidden_channels": 16},
    }


@pytest.fixture(scope="module")
def small_model():
    """The tiny preset made smaller still, so that the (slow) ONNX export takes seconds."""
    torch.manual_seed(0)
    text = {**TINY_TEXT_CONFIG, "num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64}
    model = rvoslib.create_model("tiny", **_small(text))
    return model.eval()


@pytest.fixture(scope="module")
def onnx_file(small_model, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    return export_onnx(small_model, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("batch", "num_frames", "height", "width"), [(1, 4, 80, 112), (3, 1, 97, 131), (2, 5, 32, 64)]
)
def test_onnx_round_trip_with_dynamic_dims(
    small_model, onnx_file, batch, num_frames, height, width
):
    inputs = example_inputs(
        small_model, batch=batch, num_frames=num_frames, height=height, width=width, seed=3
    )
    difference = check_onnx(small_model, onnx_file, inputs=inputs)
    assert difference <= 1e-3


def test_onnx_graph_names_dynamic_dims(onnx_file):
    import onnx

    graph = onnx.load(str(onnx_file)).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*graph.input, *graph.output]}  # fmt: skip
    assert dims["frames"] == ["batch", "frames", 3, "height", "width"]
    assert dims["text_ids"] == ["batch", "length"]
    assert dims["logits"] == ["batch", "frames", 1, "height", "width"]


def test_check_onnx_reports_a_mismatch(small_model, onnx_file):
    torch.manual_seed(1)  # other weights than the exported model's
    text = {**TINY_TEXT_CONFIG, "num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64}
    other = rvoslib.create_model("tiny", **_small(text)).eval()
    with pytest.raises(ValueError, match="differs from PyTorch by"):
        check_onnx(other, onnx_file)


def test_torchscript_round_trip(small_model, tmp_path):
    inputs = example_inputs(small_model)
    path = export_torchscript(small_model, tmp_path / "model.pt", inputs=inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream
        loaded = torch.jit.load(str(path))
    with torch.no_grad():
        assert torch.allclose(loaded(*inputs), small_model(*inputs), atol=1e-5)


def test_unknown_format(small_model, tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        export_model(small_model, tmp_path / "x", "tflite")


@pytest.mark.slow
def test_exported_program_round_trip(small_model, tmp_path):
    path = export_program(small_model, tmp_path / "model.pt2")
    module = torch.export.load(str(path)).module()
    inputs = example_inputs(small_model, batch=1, num_frames=4, height=80, width=112)
    with torch.no_grad():
        assert torch.allclose(module(*inputs), small_model(*inputs), atol=1e-5)


def test_a_model_that_does_not_take_text_is_refused_with_what_it_takes() -> None:
    from rvoslib import create_model
    from rvoslib.export import ExportableRVOS

    with pytest.raises(TypeError, match="Seq2SeqModel takes 'first_mask'"):
        ExportableRVOS(create_model("s2s-tiny"))
