"""Benchmarks of the model's forward, backward, train step and inference, per mode.

Method: every measured function runs ``warmup`` times, then ``repeats`` times, each run timed
with CUDA events on a GPU (or a synchronised ``perf_counter`` on the CPU); the median is
reported. FLOPs per train step come from ``torch.utils.flop_counter.FlopCounterMode`` (matrix
multiplications and convolutions, forward and backward), and achieved TFLOP/s is that count
divided by the median train-step time. Peak memory is ``torch.cuda.max_memory_allocated``.

Modes, all measured in the same process on the same inputs:

``reference``
    The reference recipe: eager, fp16 autocast with a ``GradScaler`` (CUDA; fp32 on the CPU),
    NCHW, ``nn.MultiheadAttention``, AdamW with the ``foreach`` implementation.
``fp32``
    Eager float32, TF32 disabled, SDPA attention, ``foreach`` AdamW.
``fast``
    The library's fast path (:func:`rvoslib.training.fast.apply_fast_path`): bf16 autocast,
    channels_last (2D) / channels_last_3d (3D), SDPA attention, fused AdamW (CUDA),
    ``torch.compile`` (CUDA, with an eager fallback), cuDNN autotuning, no host syncs.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from rvoslib.models.base import SegmentationModel
from rvoslib.models.presets import create_model

__all__ = [
    "MODES",
    "BenchmarkResult",
    "benchmark_batch",
    "benchmark_mode",
    "count_train_step_flops",
    "run_benchmarks",
]

MODES = ("reference", "fp32", "fast")


@dataclass
class BenchmarkResult:
    """One row of the benchmark table (times in milliseconds, medians)."""

    mode: str
    preset: str
    batch: int
    frames: int
    size: int
    text_length: int
    forward_ms: float
    backward_ms: float
    train_step_ms: float
    infer_ms: float
    peak_mem_mb: float
    flops_per_step: float
    tflops: float
    clips_per_s: float
    frames_per_s: float
    infer_frames_per_s: float
    device: str
    torch_version: str
    compiled: bool
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The row as a JSON-serialisable dict."""
        return asdict(self)


class _Timer:
    """Median wall time of a function, with CUDA events on a GPU."""

    def __init__(self, device: torch.device, warmup: int, repeats: int) -> None:
        self.device, self.warmup, self.repeats = device, warmup, repeats

    def __call__(self, function: Callable[[], Any]) -> float:
        for _ in range(self.warmup):
            function()
        self._sync()
        times = []
        for _ in range(self.repeats):
            if self.device.type == "cuda":
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record()
                function()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                started = time.perf_counter()
                function()
                times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def benchmark_batch(
    model: SegmentationModel, batch: int, frames: int, size: int, length: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """A random training batch for ``model``: ``frames (B, T, 3, S, S)``, ``masks``, ``valid``,
    and what ``model.inputs`` names: ``text_ids``/``text_mask`` (ids drawn from the tokenizer's
    vocabulary) or ``first_mask``."""
    generator = torch.Generator().manual_seed(0)
    masks = (torch.rand(batch, frames, size, size, generator=generator) > 0.5).float()
    tensors = {
        "frames": torch.randn(batch, frames, 3, size, size, generator=generator),
        "masks": masks,
        "valid": torch.ones(batch, frames, dtype=torch.bool),
    }
    inputs = model.inputs
    if "first_mask" in inputs.keys:
        tensors["first_mask"] = masks[:, 0]
    if "text_ids" in inputs.keys:
        vocab = inputs.tokenizer.vocab_size
        tensors["text_ids"] = torch.randint(5, vocab, (batch, length), generator=generator)
        tensors["text_mask"] = torch.ones(batch, length, dtype=torch.long)
    return {k: v.to(device) for k, v in tensors.items()}


def count_train_step_flops(model: SegmentationModel, batch: dict[str, torch.Tensor]) -> float:
    """FLOPs of one forward + backward pass of the training step (``FlopCounterMode``; the
    optimizer is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    from rvoslib.training.trainer import TrainingStep

    counter = FlopCounterMode(display=False)
    with counter:
        terms, _ = TrainingStep(model)(batch)
        sum(terms.values()).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _configure(mode: str, preset: str, device: torch.device, compile_mode: str | None):
    """Build the model, its training step and inference function, optimizer, autocast dtype and
    scaler of a mode (the fast mode through :mod:`rvoslib.training.fast`, as the Trainer)."""
    from rvoslib.training import fast
    from rvoslib.training.trainer import TrainingStep

    cuda = device.type == "cuda"
    torch.manual_seed(0)
    overrides = {"fusion": {"attention": "torch_mha"}} if mode == "reference" else {}
    model = create_model(preset, **_supported(preset, overrides)).to(device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = mode != "fp32"
    torch.backends.cudnn.benchmark = False
    dtype, scaler = None, None
    if mode == "reference" and cuda:
        dtype, scaler = torch.float16, torch.amp.GradScaler("cuda")
    elif mode == "fast" and cuda:
        dtype = torch.bfloat16
    step: torch.nn.Module = TrainingStep(model)

    def infer(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model.referred_logits(model.forward_batch(batch))

    compiled = False
    if mode == "fast":
        fast.prepare_fast_path(model, device)
        if compile_mode is not None and cuda:
            step = fast.maybe_compile(step, **fast.compile_options(compile_mode))
            infer = fast.maybe_compile(infer, **fast.compile_options(compile_mode))
            compiled = True
    fused = mode == "fast" and fast.use_fused_optimizer(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=1e-4, fused=fused or None, foreach=None if fused else True
    )
    return model, step, infer, optimizer, dtype, scaler, compiled


def _supported(preset: str, overrides: dict) -> dict:
    """The overrides that apply to the preset (the reference attention exists in fusions that
    have an ``attention`` option)."""
    from rvoslib.models.presets import get_preset_config

    config = get_preset_config(preset)

    def accepts(part: str, key: str) -> bool:
        registry = type(config).part_registry(part)
        return key in registry.accepted_keywords(getattr(config, part)["name"])

    return {
        part: spec
        for part, spec in overrides.items()
        if part in config.parts and all(accepts(part, key) for key in spec)
    }


def benchmark_mode(
    mode: str,
    preset: str = "tiny",
    batch: int = 2,
    frames: int = 4,
    size: int = 128,
    text_length: int = 20,
    device: str | torch.device = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    compile_model: bool = True,
    flops: float | None = None,
    compile_mode: str | None = None,
) -> BenchmarkResult:
    """Time one mode; see the module docstring for the method.

    Args:
        mode: One of :data:`MODES`.
        preset: Model preset.
        batch: Clips per step ``B``.
        frames: Frames per clip ``T``.
        size: Square frame size.
        text_length: Tokens per expression ``L``.
        device: ``"cpu"`` or ``"cuda"``.
        warmup: Untimed runs before measuring (compilation happens here).
        repeats: Timed runs (the median is reported).
        compile_model: Let the ``fast`` mode use ``torch.compile`` on CUDA.
        compile_mode: The fast path's compile mode (``None``: its default,
            :data:`rvoslib.training.fast.DEFAULT_COMPILE_MODE`).
        flops: FLOPs of a train step if already counted.

    Raises:
        ValueError: unknown mode.
    """
    from rvoslib.training import fast

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    with _restored_backend_flags():
        return _benchmark(mode, preset, batch, frames, size, text_length, torch.device(device),
                          warmup, repeats, (compile_mode or fast.DEFAULT_COMPILE_MODE)
                          if compile_model else None, flops)  # fmt: skip


@contextlib.contextmanager
def _restored_backend_flags():
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    )
    try:
        yield
    finally:
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark,
        ) = saved


def _benchmark(mode, preset, batch, frames, size, text_length, device, warmup, repeats,
               compile_mode, flops) -> BenchmarkResult:  # fmt: skip
    model, step, infer, optimizer, dtype, scaler, compiled = _configure(
        mode, preset, device, compile_mode
    )
    inputs = benchmark_batch(model, batch, frames, size, text_length, device)
    if mode == "fast":
        inputs["frames"] = inputs["frames"].contiguous(memory_format=torch.channels_last_3d)
    if flops is None:
        flops = count_train_step_flops(model, inputs)
    autocast = (
        (lambda: torch.autocast(device.type, dtype=dtype))
        if dtype is not None
        else contextlib.nullcontext
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timer = _Timer(device, warmup, repeats)
    model.train()
    state: dict[str, torch.Tensor] = {}
    from rvoslib.training.fast import mark_step

    def forward() -> None:
        mark_step()
        with autocast():
            terms, _ = step(inputs)
            state["loss"] = sum(terms.values())

    def backward() -> None:
        loss = state["loss"]
        (scaler.scale(loss) if scaler else loss).backward()

    def forward_backward() -> None:
        forward()
        backward()
        optimizer.zero_grad(set_to_none=True)

    def train_step() -> None:
        forward()
        backward()
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    train_ms = timer(train_step)
    forward_ms = timer(forward)
    forward_backward_ms = timer(forward_backward)
    backward_ms = max(forward_backward_ms - forward_ms, 0.0)
    state.clear()
    model.eval()

    def inference() -> None:
        mark_step()
        with torch.inference_mode(), autocast():
            infer(inputs)

    infer_ms = timer(inference)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return BenchmarkResult(
        mode=mode,
        preset=preset,
        batch=batch,
        frames=frames,
        size=size,
        text_length=text_length,
        forward_ms=forward_ms,
        backward_ms=backward_ms,
        train_step_ms=train_ms,
        infer_ms=infer_ms,
        peak_mem_mb=peak,
        flops_per_step=flops,
        tflops=flops / (train_ms / 1000) / 1e12,
        clips_per_s=batch / (train_ms / 1000),
        frames_per_s=batch * frames / (train_ms / 1000),
        infer_frames_per_s=batch * frames / (infer_ms / 1000),
        device=f"{device.type}: {name}",
        torch_version=torch.__version__,
        compiled=compiled,
    )


def run_benchmarks(modes: tuple[str, ...] = MODES, **kwargs: Any) -> list[BenchmarkResult]:
    """Benchmark several modes on the same inputs (FLOPs counted once)."""
    results: list[BenchmarkResult] = []
    flops = None
    for mode in modes:
        result = benchmark_mode(mode, flops=flops, **kwargs)
        flops = result.flops_per_step
        results.append(result)
    return results
