"""Export: ONNX round trip against onnxruntime with dynamic dims, torch.export, TorchScript."""

from __future__ import annotations

import warnings

import pytest
import torch

import rvoslib
import rvoslib.export
from rvoslib.cli import main
from rvoslib.export import (
    ExportableRVOS,
    ExportUnsupportedError,
    check_exportable,
    check_onnx,
    example_inputs,
    export_model,
    export_onnx,
    export_program,
    export_torchscript,
    second_shape_inputs,
)
from rvoslib.models.inputs import ModelInputs
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

    with pytest.raises(TypeError, match="Seq2SeqModel takes 'first_mask'"):
        ExportableRVOS(create_model("s2s-tiny"))


# --- issue 24: dynamic shapes checked at a second size, refusals, nothing written on failure ---


class _ToyRVOS(torch.nn.Module):
    """A text model that exports in seconds. ``bake="width"``: ``int(W)`` (a constraint error);
    ``"level"``: ``int`` of a stride-8 size, as level sizes kept as ints (a failing guard)."""

    inputs = ModelInputs("text", ("frames", "text_ids", "text_mask"))

    def __init__(self, bake: str | None = None) -> None:
        super().__init__()
        self.bake = bake
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.embed = torch.nn.Embedding(128, 4)
        self.out = torch.nn.Conv2d(4, 1, 1)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        length = max(len(text) for text in texts)
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids[row, : len(text)] = torch.tensor([ord(c) % 128 for c in text])
        return {"input_ids": ids, "attention_mask": (ids > 0).long()}

    def forward(self, frames, text_ids, text_mask):
        batch, num_frames, _, height, width = frames.shape
        text = (self.embed(text_ids) * text_mask[..., None]).sum(1) / text_mask.sum(1, True)
        features = self.conv(frames.flatten(0, 1)).unflatten(0, (batch, num_frames))
        features = features * text[:, None, :, None, None]
        if self.bake == "width":
            features = features + torch.arange(int(width)).float() / 100
        elif self.bake == "level":
            coarse = int((height + 7) // 8)
            features = features + torch.zeros(coarse).repeat_interleave(8)[:height, None]
        return self.out(features.flatten(0, 1)).unflatten(0, (batch, num_frames))


def _toy_inputs(model):
    return example_inputs(model, batch=2, num_frames=3, height=16, width=24)


def test_onnx_export_is_checked_at_a_second_shape_and_runs_there(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _ToyRVOS().eval()
    inputs = _toy_inputs(model)
    path = export_onnx(model, tmp_path / "toy.onnx", inputs=inputs, check=True)
    second = second_shape_inputs(model, inputs)
    assert second[0].shape[:2] != inputs[0].shape[:2]
    assert second[0].shape[3:] != inputs[0].shape[3:]
    for shape in [(1, 5, 40, 31), (3, 1, 9, 70)]:
        other = example_inputs(
            model, batch=shape[0], num_frames=shape[1], height=shape[2], width=shape[3], seed=4
        )
        assert check_onnx(model, path, inputs=other) <= 1e-5
    assert [p.name for p in tmp_path.iterdir()] == ["toy.onnx"]


_FIXES_W = (
    r"_ToyRVOS cannot be exported with dynamic frames, height and width: its code fixes "
    r"W \(frames.size\(\)\[4\]\) to 24 of the example input \(2, 3, 3, 16, 24\)"
)
_FAILS_AT_H = r"fails at frames \(2, 4, 3, 32, 48\): Guard failed.*frames.size\(\)\[3\] is H"


@pytest.mark.parametrize(("bake", "message"), [("width", _FIXES_W), ("level", _FAILS_AT_H)])
@pytest.mark.parametrize("format", ["onnx", "export"])
def test_a_model_that_bakes_a_size_into_the_trace_is_refused_and_nothing_written(
    tmp_path, bake, message, format
) -> None:
    pytest.importorskip("onnxscript")
    model = _ToyRVOS(bake).eval()
    with pytest.raises(ExportUnsupportedError, match=message):
        export_model(model, tmp_path / "toy.out", format, inputs=_toy_inputs(model))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_check_leaves_no_file_and_names_difference_and_shape(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model, other = _ToyRVOS().eval(), _ToyRVOS().eval()  # other weights: the check must fail
    real_onnx_bytes = rvoslib.export._onnx_bytes
    monkeypatch.setattr(
        rvoslib.export, "_onnx_bytes", lambda m, inputs, opset=18: real_onnx_bytes(other, inputs)
    )
    target = tmp_path / "toy.onnx"
    target.write_bytes(b"an older export")
    with pytest.raises(
        ValueError,
        match=r"differs from PyTorch by [0-9.e+-]+ \(largest abs difference of the logits\) at "
        r"frames \(2, 4, 3, 32, 48\).*more than atol=0.001",
    ):
        export_onnx(model, target, inputs=_toy_inputs(model), check=True)
    assert target.read_bytes() == b"an older export"
    assert [p.name for p in tmp_path.iterdir()] == ["toy.onnx"]


def test_second_shape_differs_in_frames_height_and_width() -> None:
    model = _ToyRVOS()
    inputs = _toy_inputs(model)
    second = second_shape_inputs(model, inputs)
    assert second[0].shape == (2, 4, 3, 32, 48)
    assert second[1].shape[0] == 2


@pytest.mark.parametrize(
    ("preset", "format", "message"),
    [
        ("s2s-tiny", "onnx", r"export covers text-referred \(RVOS\) models only.*Seq2SeqModel "
         r"takes 'first_mask'.*VOS models is not supported"),
        ("s2s-tiny", "torchscript", r"Seq2SeqModel takes 'first_mask'"),
        ("soc-tiny", "onnx", r"SOCModel cannot be exported to 'onnx' with dynamic frames, height "
         r"and width: its backbone shifts channels between frames \(temporal_shift_stages=\(0, "
         r"1\)\)"),
        ("soc-tiny", "export", r"SOCModel cannot be exported to 'export'.*T is read as a Python "
         r"int.*cannot be dynamic"),
    ],
)  # fmt: skip
def test_models_that_cannot_be_exported_are_refused_before_any_work(
    tmp_path, monkeypatch, preset, format, message
) -> None:
    model = rvoslib.create_model(preset)

    def no_work(*args, **kwargs):
        raise AssertionError("traced or tokenized before the refusal")

    monkeypatch.setattr(rvoslib.export, "example_inputs", no_work)
    monkeypatch.setattr(rvoslib.export, "_trace_program", no_work)
    with pytest.raises(ExportUnsupportedError, match=message):
        export_model(model, tmp_path / "model.out", format)
    assert list(tmp_path.iterdir()) == []


def test_check_exportable_lets_torchscript_fix_the_frame_count_of_a_temporal_shift() -> None:
    check_exportable(rvoslib.create_model("soc-tiny"), "torchscript")  # no error
    with pytest.raises(ValueError, match=r"format must be one of .*got 'tflite'"):
        check_exportable(rvoslib.create_model("tiny"), "tflite")


@pytest.fixture
def toy_checkpoint(monkeypatch):
    """``rvos export --checkpoint toy`` loads a :class:`_ToyRVOS` (seed 0)."""
    from rvoslib.models import SegmentationModel

    torch.manual_seed(0)
    toy = _ToyRVOS().eval()
    monkeypatch.setattr(SegmentationModel, "from_pretrained", staticmethod(lambda path: toy))
    return toy


_TOY_CLI = ["--checkpoint", "toy", "--frames", "3", "--height", "16", "--width", "24"]


def test_cli_check_reports_the_difference_at_the_second_shape(tmp_path, toy_checkpoint, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "toy.onnx"
    assert main(["export", *_TOY_CLI, "--out", str(out), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime vs PyTorch at frames (2, 4, 3, 32, 48): max abs difference" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["toy.onnx"]


def test_cli_failed_check_leaves_nothing_at_out(tmp_path, toy_checkpoint, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(1)
    other = _ToyRVOS().eval()
    real_onnx_bytes = rvoslib.export._onnx_bytes
    monkeypatch.setattr(
        rvoslib.export, "_onnx_bytes", lambda m, inputs, opset=18: real_onnx_bytes(other, inputs)
    )
    out = tmp_path / "toy.onnx"
    assert main(["export", *_TOY_CLI, "--out", str(out), "--check"]) == 2
    error = capsys.readouterr().err
    assert "rvos export: error: the exported ONNX model differs from PyTorch by" in error
    assert "at frames (2, 4, 3, 32, 48)" in error
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_vos_checkpoint_before_tokenizing(tmp_path, capsys) -> None:
    folder = tmp_path / "s2s"
    rvoslib.create_model("s2s-tiny").save_pretrained(folder)
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(folder), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "export covers text-referred (RVOS) models only" in error
    assert "Seq2SeqModel takes 'first_mask'" in error
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--frames", "0"], "--frames must be >= 1, got 0"),
        (["--width", "-3"], "--width must be >= 1, got -3"),
        (["--atol", "-1"], "--atol must be >= 0, got -1.0"),
        (["--format", "torchscript", "--check"], "--check compares ONNX with onnxruntime"),
    ],
)
def test_cli_bad_arguments(tmp_path, toy_checkpoint, capsys, argv, message) -> None:
    assert main(["export", *_TOY_CLI, "--out", str(tmp_path / "m.onnx"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_out_that_is_a_folder(tmp_path, toy_checkpoint, capsys) -> None:
    assert main(["export", *_TOY_CLI, "--out", str(tmp_path)]) == 2
    assert f"--out must be a file, got the folder {str(tmp_path)!r}" in capsys.readouterr().err


@pytest.fixture(scope="module")
def toy_onnx(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _ToyRVOS().eval()
    path = export_onnx(
        model, tmp_path_factory.mktemp("toy") / "toy.onnx", inputs=_toy_inputs(model)
    )
    return model, path


def test_check_onnx_names_the_shape_where_onnxruntime_fails(toy_onnx) -> None:
    model, path = toy_onnx
    _, ids, mask = _toy_inputs(model)
    with pytest.raises(
        ValueError,
        match=r"ONNX model '.*toy.onnx' fails in onnxruntime at frames \(2, 3, 4, 16, 24\)",
    ):
        check_onnx(model, path, inputs=(torch.randn(2, 3, 4, 16, 24), ids, mask))


def test_check_onnx_reports_logits_of_another_shape(toy_onnx) -> None:
    model, path = toy_onnx
    wider = _ToyRVOS().eval()
    wider.out = torch.nn.Conv2d(4, 2, 1)  # two output channels: (B, T, 2, H, W)
    with pytest.raises(ValueError, match=r"returns logits \(2, 3, 1, 16, 24\) at frames .*"
                       r"PyTorch \(2, 3, 2, 16, 24\)"):  # fmt: skip
        check_onnx(wider, path, inputs=_toy_inputs(model))


def test_an_unparsed_constraint_error_is_quoted() -> None:
    from rvoslib.export import _specialised

    assert _specialised("Constraints violated (s3)!\nmore") == (
        "a dimension (Constraints violated (s3)!)"
    )
    message = "L['text_ids'].size()[1] as dynamic but your code specialized it to be a constant (7)"
    assert _specialised(message) == "B or L (text_ids.size()[1]) to 7"


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["referformer-tiny", "losh-tiny"])
def test_query_presets_export_with_dynamic_sizes(preset, tmp_path) -> None:
    """Issue 24: ``referformer-tiny`` exported with exit 0 a file that failed at any other frame
    size (its level sizes were Python ints); ``losh-tiny`` broke onnxscript's constant folding.
    Both now pass the check at the second shape, and again at a third."""
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = rvoslib.create_model(preset).eval()
    out = tmp_path / "model.onnx"
    export_onnx(model, out, check=True)
    inputs = example_inputs(model, batch=1, num_frames=2, height=96, width=64, seed=5)
    assert check_onnx(model, out, inputs=inputs) <= 1e-3


def test_cli_names_a_missing_onnx_package_before_loading(tmp_path, monkeypatch, capsys) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else
        real_find_spec(name, *a)
    )  # fmt: skip
    out = tmp_path / "m.onnx"
    argv = ["export", "--checkpoint", str(tmp_path / "absent"), "--out", str(out), "--check"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    expected = "--format onnx --check: onnxruntime not installed: pip install 'rvoslib[export]'"
    assert expected in error
    assert list(tmp_path.iterdir()) == []
