"""Export a model for deployment: ONNX, ``torch.export`` programs and TorchScript.

All formats wrap the model in :class:`ExportableRVOS`, whose ``forward(frames, text_ids,
text_mask)`` returns ``(B, T, 1, H, W)`` logits, so the exported graph includes the text encoder.

Dynamic dimensions:

* **ONNX** (:func:`export_onnx`, ``torch.onnx.export(dynamo=True)``) and **ExportedProgram**
  (:func:`export_program`): batch ``B``, frames ``T``, height ``H``, width ``W`` and token
  length ``L`` are all dynamic (``H`` and ``W`` need not be multiples of 32). Only the
  channel dimension (3) is fixed.
* **TorchScript** (:func:`export_torchscript`) is traced: every dimension is fixed to the
  example input's (``torch.jit.script`` cannot compile Hugging Face encoders). Prefer ONNX or
  ``torch.export`` when shapes vary.

The ONNX exporter translates ``repeat_interleave`` with a symbolic repeat count wrongly for
batch sizes above one; :func:`export_onnx` rewrites it into ``unsqueeze/expand/flatten`` first.
ONNX needs the ``export`` extra: ``pip install rvoslib[export]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rvoslib._io import atomic_write_bytes

__all__ = [
    "EXPORT_FORMATS",
    "ExportableRVOS",
    "check_onnx",
    "example_inputs",
    "export_model",
    "export_onnx",
    "export_program",
    "export_torchscript",
]

EXPORT_FORMATS = ("onnx", "torchscript", "export")
INPUT_NAMES = ("frames", "text_ids", "text_mask")


class ExportableRVOS(nn.Module):
    """``forward(frames, text_ids, text_mask) -> logits`` around an :class:`~rvoslib.RVOSModel`.

    Args:
        model: The model (put in eval mode).

    Raises:
        TypeError: the model does not take text (a VOS model: the message says what it takes).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        kind = getattr(getattr(model, "inputs", None), "kind", "text")
        if kind != "text":
            raise TypeError(
                f"export takes a model that reads text (frames, text_ids, text_mask); "
                f"{type(model).__name__} takes {kind!r} (model.inputs.kind)"
            )
        self.model = model.eval()

    def forward(
        self, frames: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor
    ) -> torch.Tensor:
        """``frames (B, T, 3, H, W)``, ``text_ids (B, L)`` int64, ``text_mask (B, L)`` int64
        -> ``(B, T, 1, H, W)`` logits."""
        return self.model(frames, text_ids, text_mask)


def example_inputs(
    model: nn.Module,
    *,
    batch: int = 2,
    num_frames: int = 3,
    height: int = 64,
    width: int = 96,
    texts: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random frames and tokenized expressions for tracing or checking an export.

    Returns:
        ``frames (B, T, 3, H, W)`` float32, ``text_ids (B, L)`` and ``text_mask (B, L)`` int64.
    """
    if texts is None:
        pool = ["the black swan swimming on the left", "a dog", "the red circle moving up"]
        texts = [pool[index % len(pool)] for index in range(batch)]
    if len(texts) != batch:
        raise ValueError(f"texts must hold batch={batch} expressions, got {len(texts)}")
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(batch, num_frames, 3, height, width, generator=generator)
    tokens = model.tokenize(list(texts))
    return frames, tokens["input_ids"].long(), tokens["attention_mask"].long()


def _dynamic_shapes() -> dict[str, dict[int, Any]]:
    dynamic = torch.export.Dim.DYNAMIC
    return {
        "frames": {0: dynamic, 1: dynamic, 3: dynamic, 4: dynamic},
        "text_ids": {0: dynamic, 1: dynamic},
        "text_mask": {0: dynamic, 1: dynamic},
    }


def _repeat_interleave(
    values: torch.Tensor, repeats: int, dim: int | None = None, output_size: int | None = None
) -> torch.Tensor:
    if dim is None:
        values, dim = values.flatten(), 0
    dim = dim % values.ndim
    sizes = list(values.shape)
    expanded = values.unsqueeze(dim + 1).expand(*sizes[: dim + 1], repeats, *sizes[dim + 1 :])
    return expanded.flatten(dim, dim + 1)


def _trace_program(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Any:
    wrapper = ExportableRVOS(model)
    with torch.no_grad():
        return torch.export.export(wrapper, inputs, dynamic_shapes=_dynamic_shapes(), strict=False)


def export_program(
    model: nn.Module, path: str | os.PathLike, *, inputs: tuple[torch.Tensor, ...] | None = None
) -> Path:
    """Export with ``torch.export`` (all of ``B, T, H, W, L`` dynamic) and save a ``.pt2``.

    Load it back with ``torch.export.load(path).module()``.

    Args:
        model: The model.
        path: Output file (``.pt2``).
        inputs: Example ``(frames, text_ids, text_mask)``; default :func:`example_inputs`
            (use a batch and clip length above 1, so they are not specialised).
    """
    inputs = inputs or example_inputs(model)
    program = _trace_program(model, inputs)
    path = Path(path)
    temp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        torch.export.save(program, str(temp))
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    inputs: tuple[torch.Tensor, ...] | None = None,
    opset: int = 18,
) -> Path:
    """Export to ONNX with dynamic batch, frames, height, width and token length.

    The weights are stored inside the ``.onnx`` file (no external data), written atomically.
    Inputs are named ``frames``, ``text_ids``, ``text_mask`` (int64); the output ``logits``.

    Args:
        model: The model.
        path: Output ``.onnx`` file.
        inputs: Example ``(frames, text_ids, text_mask)``; default :func:`example_inputs`.
        opset: ONNX opset version.

    Returns:
        The path written.

    Raises:
        ModuleNotFoundError: ``onnx`` / ``onnxscript`` are missing (install ``rvoslib[export]``).
    """
    _require("onnx", "onnxscript")
    inputs = inputs or example_inputs(model)
    program = _trace_program(model, inputs)
    program = program.run_decompositions(
        {torch.ops.aten.repeat_interleave.self_int: _repeat_interleave}
    )
    onnx_program = torch.onnx.export(
        program,
        inputs,
        dynamo=True,
        opset_version=opset,
        input_names=list(INPUT_NAMES),
        output_names=["logits"],
        verbose=False,
    )
    import onnx

    proto = onnx_program.model_proto
    _name_dynamic_dims(proto)
    atomic_write_bytes(path, proto.SerializeToString())
    onnx.checker.check_model(str(path))
    return Path(path)


def _name_dynamic_dims(proto: Any) -> None:
    """Rename the exporter's symbols (``s39``) to ``batch``, ``frames``, ``height``, ..."""
    names = {
        "frames": ("batch", "frames", None, "height", "width"),
        "text_ids": ("batch", "length"),
        "text_mask": ("batch", "length"),
        "logits": ("batch", "frames", None, "height", "width"),
    }
    symbols: dict[str, str] = {}
    values = [*proto.graph.input, *proto.graph.output]
    for value in values:
        for dim, name in zip(value.type.tensor_type.shape.dim, names.get(value.name, ())):
            if name and dim.dim_param:
                symbols.setdefault(dim.dim_param, name)
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.dim_param = symbols[dim.dim_param]


def export_torchscript(
    model: nn.Module, path: str | os.PathLike, *, inputs: tuple[torch.Tensor, ...] | None = None
) -> Path:
    """Trace to TorchScript and save (``torch.jit.load(path)`` restores it).

    Tracing fixes every dimension to the example input's ``(B, T, 3, H, W)`` and ``L``.

    Args:
        model: The model.
        path: Output file (``.pt``).
        inputs: Example ``(frames, text_ids, text_mask)``; default :func:`example_inputs`.
    """
    import warnings

    inputs = inputs or example_inputs(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(ExportableRVOS(model), inputs, check_trace=False, strict=False)
        path = Path(path)
        temp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        try:
            torch.jit.save(traced, str(temp))  # deprecated in favour of torch.export: silenced
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    return path


def export_model(
    model: nn.Module,
    path: str | os.PathLike,
    format: str = "onnx",
    *,
    inputs: tuple[torch.Tensor, ...] | None = None,
) -> Path:
    """Export in one of :data:`EXPORT_FORMATS` (``"onnx"``, ``"torchscript"``, ``"export"``)."""
    exporters = {"onnx": export_onnx, "torchscript": export_torchscript, "export": export_program}
    if format not in exporters:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    return exporters[format](model, path, inputs=inputs)


def check_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    inputs: tuple[torch.Tensor, ...] | None = None,
    atol: float = 1e-3,
) -> float:
    """Run an exported ONNX model with onnxruntime and compare it with PyTorch (float32).

    Args:
        model: The PyTorch model that was exported.
        path: The ``.onnx`` file.
        inputs: ``(frames, text_ids, text_mask)``; default :func:`example_inputs` with shapes
            different from the export's (``B=1, T=4, 80x112``), exercising dynamic dims.
        atol: Largest accepted absolute difference of the logits.

    Returns:
        The maximum absolute difference of the logits.

    Raises:
        ValueError: the difference exceeds ``atol`` (the message gives it).
        ModuleNotFoundError: onnxruntime is missing (install ``rvoslib[export]``).
    """
    _require("onnxruntime")
    import onnxruntime

    if inputs is None:
        inputs = example_inputs(model, batch=1, num_frames=4, height=80, width=112, seed=1)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: tensor.numpy() for name, tensor in zip(INPUT_NAMES, inputs)}
    (onnx_logits,) = session.run(["logits"], feeds)
    with torch.no_grad():
        torch_logits = ExportableRVOS(model)(*inputs).float()
    difference = float((torch.from_numpy(onnx_logits) - torch_logits).abs().max())
    if not difference <= atol:
        raise ValueError(
            f"ONNX model {str(path)!r} differs from PyTorch by {difference:.3g} "
            f"(max abs logits), more than atol={atol}"
        )
    return difference


def _require(*modules: str) -> None:
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(
            f"{', '.join(missing)} not installed: pip install 'rvoslib[export]'"
        )
