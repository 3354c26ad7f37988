"""Export a model for deployment: ONNX, ``torch.export`` programs and TorchScript.

All formats wrap the model in :class:`ExportableRVOS` (``forward(frames, text_ids, text_mask)
-> (B, T, 1, H, W)`` logits; the text encoder is in the graph). ONNX (:func:`export_onnx`) and
``torch.export`` (:func:`export_program`) keep ``B, T, H, W`` and the token length ``L``
dynamic; TorchScript (:func:`export_torchscript`) is traced, every dimension fixed.

:func:`check_exportable` refuses, before any work, a VOS model and (for the dynamic formats) a
temporal-shift backbone. Any other model is traced, then run at :func:`second_shape_inputs`; a
model whose code turned a size into a constant is refused (:class:`ExportUnsupportedError`)
and nothing is written. ``repeat_interleave`` is rewritten before ONNX (the exporter gets a
symbolic repeat count wrong above batch 1). ONNX needs ``pip install rvoslib[export]``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rvoslib._io import atomic_write_bytes

__all__ = [
    "EXPORT_FORMATS", "ExportUnsupportedError", "ExportableRVOS", "check_exportable",
    "check_onnx", "example_inputs", "export_model", "export_onnx", "export_program",
    "export_torchscript", "second_shape_inputs",
]  # fmt: skip

EXPORT_FORMATS = ("onnx", "torchscript", "export")
INPUT_NAMES = ("frames", "text_ids", "text_mask")
DYNAMIC_FORMATS = ("onnx", "export")
_DIM_NAMES = {"size()[0]": "B", "size()[1]": "T", "size()[3]": "H", "size()[4]": "W"}
_LEGEND = ", ".join(f"frames.{key} is {name}" for key, name in _DIM_NAMES.items())


def _not_text(model: nn.Module) -> str:
    """Why ``model`` is not a text-referred model, or ``""``."""
    kind = getattr(getattr(model, "inputs", None), "kind", "text")
    return "" if kind == "text" else (
        f"export covers text-referred (RVOS) models only, whose inputs are frames, text_ids "
        f"and text_mask; {type(model).__name__} takes {kind!r} (model.inputs.kind)"
    )  # fmt: skip


def _static_dimension_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot keep ``T`` dynamic, or ``None``."""
    for name, module in model.named_modules():
        stages = getattr(module, "temporal_shift_stages", None)
        if stages:
            return (
                f"its {name or 'model'} shifts channels between frames (temporal_shift_stages="
                f"{tuple(stages)}): T is read as a Python int (T = 1 apart), it cannot be "
                f"dynamic; use --format torchscript (every dimension fixed)"
            )
    return None


class ExportUnsupportedError(ValueError):
    """The model cannot be exported in the requested format; the message says why."""


def check_exportable(model: nn.Module, format: str = "onnx") -> None:
    """Refuse, before any work, a model that cannot be exported in ``format``.

    Raises:
        ValueError: ``format`` is not one of :data:`EXPORT_FORMATS`.
        ExportUnsupportedError: a VOS model (export covers text-referred RVOS models only), or
            a temporal-shift backbone for a format that keeps ``T`` dynamic.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    name = type(model).__name__
    if _not_text(model):
        raise ExportUnsupportedError(f"{_not_text(model)}: exporting VOS models is not supported")
    reason = _static_dimension_reason(model) if format in DYNAMIC_FORMATS else None
    if reason:
        raise ExportUnsupportedError(
            f"{name} cannot be exported to {format!r} with dynamic frames, height and width: "
            f"{reason}"
        )


class ExportableRVOS(nn.Module):
    """``forward(frames, text_ids, text_mask) -> logits`` around an :class:`~rvoslib.RVOSModel`.

    Args:
        model: The model (put in eval mode).

    Raises:
        TypeError: the model does not take text (a VOS model: the message says what it takes).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if _not_text(model):
            raise TypeError(_not_text(model))
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
    """Random ``frames (B, T, 3, H, W)`` float32 and tokenized expressions, ``text_ids`` and
    ``text_mask (B, L)`` int64, for tracing or checking an export."""
    if texts is None:
        pool = ["the black swan swimming on the left", "a dog", "the red circle moving up"]
        texts = [pool[index % len(pool)] for index in range(batch)]
    if len(texts) != batch:
        raise ValueError(f"texts must hold batch={batch} expressions, got {len(texts)}")
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(batch, num_frames, 3, height, width, generator=generator)
    tokens = model.tokenize(list(texts))
    return frames, tokens["input_ids"].long(), tokens["attention_mask"].long()


def second_shape_inputs(
    model: nn.Module, inputs: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`example_inputs` at ``T + 1``, ``H + 16``, ``W + 24`` of ``inputs``' (same ``B``):
    where an export is checked, so that the example's sizes cannot be baked in."""
    batch, frames, _, height, width = inputs[0].shape
    return example_inputs(
        model, batch=batch, num_frames=frames + 1, height=height + 16, width=width + 24, seed=1,
    )  # fmt: skip


def _dynamic_shapes() -> dict[str, dict[int, Any]]:
    dynamic, text = (
        torch.export.Dim.DYNAMIC,
        {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC},
    )
    return {"frames": dict.fromkeys((0, 1, 3, 4), dynamic), "text_ids": text, "text_mask": text}


def _repeat_interleave(
    values: torch.Tensor, repeats: int, dim: int | None = None, output_size: int | None = None
) -> torch.Tensor:
    if dim is None:
        values, dim = values.flatten(), 0
    dim = dim % values.ndim
    sizes = list(values.shape)
    expanded = values.unsqueeze(dim + 1).expand(*sizes[: dim + 1], repeats, *sizes[dim + 1 :])
    return expanded.flatten(dim, dim + 1)


def _specialised(message: str) -> str:
    """``"W (frames.size()[4]) to 24"`` from torch.export's constraint error."""
    import re

    found = re.findall(r"L\['(\w+)'\]\.(size\(\)\[\d\]) as dynamic.*?constant \((\d+)\)", message)
    parts = [
        f"{_DIM_NAMES.get(key, key) if tensor == 'frames' else 'B or L'} ({tensor}.{key}) "
        f"to {value}"
        for tensor, key, value in found
    ]
    return ", ".join(parts) or f"a dimension ({message.strip().splitlines()[0]})"


def _trace_program(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Any:
    """``torch.export`` with dynamic ``B, T, H, W, L``, then run at :func:`second_shape_inputs`;
    :class:`ExportUnsupportedError` when the code fixed a size (a constraint error or a guard
    that fails at the second shape)."""
    wrapper, name = ExportableRVOS(model), type(model).__name__
    with torch.no_grad():
        try:
            program = torch.export.export(
                wrapper, inputs, dynamic_shapes=_dynamic_shapes(), strict=False
            )
        except torch._dynamo.exc.UserError as error:  # Constraints violated
            raise ExportUnsupportedError(
                f"{name} cannot be exported with dynamic frames, height and width: its code "
                f"fixes {_specialised(str(error))} of the example input "
                f"{tuple(inputs[0].shape)} (a Python int taken from a tensor shape)"
            ) from None
        second = second_shape_inputs(model, inputs)
        try:
            program.module()(*second)
        except AssertionError as error:  # "Guard failed: ..." of a specialised size
            raise ExportUnsupportedError(
                f"{name} cannot be exported with dynamic frames, height and width: its code "
                f"fixes a size of the example input {tuple(inputs[0].shape)} (a Python int "
                f"taken from a tensor shape), so the traced program fails at frames "
                f"{tuple(second[0].shape)}: {error} ({_LEGEND})"
            ) from None
    return program


def _saved_bytes(save: Any, obj: Any) -> bytes:
    """What ``save(obj, file)`` writes, in memory (for :func:`atomic_write_bytes`)."""
    buffer = io.BytesIO()
    save(obj, buffer)
    return buffer.getvalue()


def export_program(
    model: nn.Module, path: str | os.PathLike, *, inputs: tuple[torch.Tensor, ...] | None = None
) -> Path:
    """Export with ``torch.export`` (``B, T, H, W, L`` dynamic) and save a ``.pt2``
    (``torch.export.load(path).module()`` runs it); ``inputs`` and errors as in
    :func:`export_onnx`."""
    check_exportable(model, "export")
    inputs = inputs or example_inputs(model)
    program = _trace_program(model, inputs)
    return atomic_write_bytes(path, _saved_bytes(torch.export.save, program))


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    inputs: tuple[torch.Tensor, ...] | None = None,
    opset: int = 18,
    check: bool = False,
    atol: float = 1e-3,
) -> Path:
    """Export to ONNX (weights embedded; returns ``path``), ``B, T, H, W, L`` dynamic.

    Inputs ``frames``, ``text_ids``, ``text_mask`` (int64), output ``logits``. With ``check``
    onnxruntime is compared with PyTorch at :func:`second_shape_inputs` before anything is
    written; the file goes through a temporary file in the same folder and a rename.

    Args:
        model: The model.
        path: Output ``.onnx`` file.
        inputs: Example ``(frames, text_ids, text_mask)``; default :func:`example_inputs`
            (use a batch and clip length above 1, so they are not specialised).
        opset: ONNX opset version.
        check: Run :func:`check_onnx` at the second shape before writing.
        atol: Largest accepted absolute difference of the logits for ``check``.

    Raises:
        ExportUnsupportedError: see :func:`check_exportable` (before any work); a model whose
            code fixes a dynamic size (named).
        ValueError: ``check`` failed (the message gives the difference and the shape).
        ModuleNotFoundError: ``onnx``, ``onnxscript`` or ``onnxruntime`` are missing.
    """
    check_exportable(model, "onnx")
    _require("onnx", "onnxscript", *(["onnxruntime"] if check else []))
    inputs = inputs or example_inputs(model)
    data = _onnx_bytes(model, inputs, opset)
    if check:
        check_onnx(model, data, inputs=second_shape_inputs(model, inputs), atol=atol)
    return atomic_write_bytes(path, data)


def _onnx_bytes(model: nn.Module, inputs: tuple[torch.Tensor, ...], opset: int = 18) -> bytes:
    """The serialised ONNX model (checked by ``onnx.checker``), nothing written."""
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
        optimize=False,
    )
    import onnx

    proto = onnx_program.model_proto  # a copy: optimize() works in place
    try:  # onnxscript's constant folding fails on some graphs (LoSH's SplitToSequence)
        onnx_program.optimize()
        proto = onnx_program.model_proto
    except Exception:  # onnx_ir's PassError: keep the unoptimised graph, it computes the same
        pass
    _name_dynamic_dims(proto)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


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
    """Trace to TorchScript (every dimension fixed to ``inputs``') and save a ``.pt``
    (``torch.jit.load(path)``); ``inputs`` as in :func:`export_onnx`."""
    import warnings

    check_exportable(model, "torchscript")
    inputs = inputs or example_inputs(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(ExportableRVOS(model), inputs, check_trace=False, strict=False)
        data = _saved_bytes(torch.jit.save, traced)  # deprecated for torch.export: silenced
    return atomic_write_bytes(path, data)


def export_model(
    model: nn.Module,
    path: str | os.PathLike,
    format: str = "onnx",
    *,
    inputs: tuple[torch.Tensor, ...] | None = None,
) -> Path:
    """Export in one of :data:`EXPORT_FORMATS` (``"onnx"``, ``"torchscript"``, ``"export"``)."""
    check_exportable(model, format)
    exporters = {"onnx": export_onnx, "torchscript": export_torchscript, "export": export_program}
    return exporters[format](model, path, inputs=inputs)


def check_onnx(
    model: nn.Module,
    path: str | os.PathLike | bytes,
    *,
    inputs: tuple[torch.Tensor, ...] | None = None,
    atol: float = 1e-3,
) -> float:
    """Run an ONNX model (a ``.onnx`` file or its bytes) with onnxruntime; return the largest
    absolute difference of its logits from PyTorch's (float32). ``inputs`` default to
    :func:`example_inputs` at ``B=1, T=4, 80x112``.

    Raises:
        ValueError: onnxruntime fails, the logits' shape differs or the difference exceeds
            ``atol``; the message gives the difference and the shape it was checked at.
        ModuleNotFoundError: onnxruntime is missing (install ``rvoslib[export]``).
    """
    _require("onnxruntime")
    import onnxruntime

    if inputs is None:
        inputs = example_inputs(model, batch=1, num_frames=4, height=80, width=112, seed=1)
    what = "the exported ONNX model" if isinstance(path, bytes) else f"ONNX model {str(path)!r}"
    shape = f"frames {tuple(inputs[0].shape)} and {tuple(inputs[1].shape[1:])} tokens"
    source = path if isinstance(path, bytes) else str(path)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    feeds = {name: tensor.numpy() for name, tensor in zip(INPUT_NAMES, inputs)}
    try:
        (onnx_logits,) = session.run(["logits"], feeds)
    except Exception as error:  # onnxruntime's own exception types
        raise ValueError(
            f"{what} fails in onnxruntime at {shape} (a size of the export's example may be "
            f"baked in): {str(error).strip()}"
        ) from None
    with torch.no_grad():
        torch_logits = ExportableRVOS(model)(*inputs).float()
    onnx_logits = torch.from_numpy(onnx_logits)
    if onnx_logits.shape != torch_logits.shape:
        got, expected = tuple(onnx_logits.shape), tuple(torch_logits.shape)
        raise ValueError(f"{what} returns logits {got} at {shape}, PyTorch {expected}")
    difference = float((onnx_logits - torch_logits).abs().max())
    if not difference <= atol:
        raise ValueError(
            f"{what} differs from PyTorch by {difference:.3g} (largest abs difference of the "
            f"logits) at {shape}, more than atol={atol}"
        )
    return difference


def _require(*modules: str) -> None:
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(
            f"{', '.join(missing)} not installed: pip install 'rvoslib[export]'"
        )
