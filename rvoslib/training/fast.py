"""The fast path, defined once for the Trainer and the benchmark.

On a CUDA device it means: bf16 autocast (the Trainer's default there), ``channels_last``
(2D) / ``channels_last_3d`` (3D) layouts, cuDNN autotuning, the fused AdamW, and
``torch.compile`` of the training step. On the CPU only the layouts apply (oneDNN
convolutions like them).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = [
    "COMPILE_MODES",
    "DEFAULT_COMPILE_MODE",
    "apply_fast_path",
    "compile_options",
    "mark_step",
    "maybe_compile",
    "prepare_fast_path",
    "use_fused_optimizer",
    "wrap_for_training",
]


#: ``torch.compile`` modes the fast path knows (``reduce-overhead`` adds CUDA graphs).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: The fast path's mode: CUDA graphs (``default`` left the step bound by the host launching
#: kernels; the measurement is in ``benchmarks/RESULTS.md``).
DEFAULT_COMPILE_MODE = "reduce-overhead"


def compile_options(mode: str = DEFAULT_COMPILE_MODE) -> dict[str, object]:
    """Keyword arguments of ``torch.compile`` for a fast-path compile ``mode``.

    Raises:
        ValueError: unknown mode (lists :data:`COMPILE_MODES`).
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    return {} if mode == "default" else {"mode": mode}


def apply_fast_path(model: nn.Module) -> nn.Module:
    """Put 2D convolutions in ``channels_last`` and 3D ones in ``channels_last_3d`` (in place).

    ``model.to(memory_format=torch.channels_last)`` fails on Conv3d weights, so each layer is
    converted by its rank.

    Returns:
        The model.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.to(memory_format=torch.channels_last)
        elif isinstance(module, nn.Conv3d):
            module.to(memory_format=torch.channels_last_3d)
    return model


def prepare_fast_path(model: nn.Module, device: torch.device) -> nn.Module:
    """Layouts for ``model`` and backend settings for ``device`` (cuDNN autotuning on CUDA)."""
    apply_fast_path(model)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return model


def use_fused_optimizer(device: torch.device) -> bool:
    """Whether the fast path uses the fused AdamW kernel on ``device`` (CUDA only)."""
    return device.type == "cuda"


def mark_step() -> None:
    """Tell CUDA-graph trees that a new training or inference iteration starts (call before
    each call of a module compiled with ``reduce-overhead``; a no-op elsewhere)."""
    marker = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
    if marker is not None:
        marker()


def maybe_compile(model: nn.Module, **kwargs: object) -> nn.Module:
    """``torch.compile(model)``, or the model unchanged (with a warning) where it is unavailable."""
    try:
        return torch.compile(model, **kwargs)
    except Exception as error:  # compile support differs by platform and version
        warnings.warn(f"torch.compile unavailable ({error}); running eagerly", stacklevel=2)
        return model


def wrap_for_training(
    step: nn.Module, model: nn.Module, config: object, context: object
) -> nn.Module:
    """Wrap the training step as ``TrainerConfig`` asks: DDP in a process group (BatchNorm
    converted to SyncBatchNorm with ``sync_batchnorm``), then ``torch.compile`` (the fast
    path's CUDA-graph mode with ``fast`` on CUDA; the default mode with ``compile``)."""
    device = context.device  # type: ignore[attr-defined]
    if context.is_distributed:  # type: ignore[attr-defined]
        if config.sync_batchnorm:  # type: ignore[attr-defined]
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [device.index] if device.type == "cuda" else None
        step = nn.parallel.DistributedDataParallel(step, device_ids=device_ids)
    if config.fast and device.type == "cuda":  # type: ignore[attr-defined]
        return maybe_compile(step, **compile_options())
    if config.compile:  # type: ignore[attr-defined]
        return maybe_compile(step)
    return step
