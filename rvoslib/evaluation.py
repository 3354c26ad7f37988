"""One evaluation loop for ``Trainer.validate`` and ``rvos eval``.

For every item of a dataset the model predicts whole videos (:meth:`RVOSModel.predict`, in
chunks of ``clip_len`` frames), the padding added by the evaluation transform is cropped, the
probabilities are resized to the frames' original size (``orig_size``), thresholded, and scored
with the official J and F against the original masks (``orig_masks`` when the transform kept
them). A callback receives every prediction, e.g. to write it in the official layout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from rvoslib._distributed import DistributedContext, ShardSampler, all_reduce_mean
from rvoslib.data.transforms import restore_size
from rvoslib.metrics import RVOSEvaluator

__all__ = [
    "EvaluationResult",
    "Prediction",
    "default_protocol",
    "evaluate",
    "evaluate_annotated_frames",
    "move_to_device",
]


@dataclass
class Prediction:
    """One item's prediction at the frames' original size.

    Attributes:
        item: The batch entries of the item that are not tensors (``video_id``, ``exp_id``,
            ``obj_id``, ``frame_ids``, ``expression``...).
        probabilities: ``(T, H, W)`` float32 CPU probabilities of the referred object.
        masks: ``(T, H, W)`` bool CPU masks (probabilities above the threshold).
    """

    item: dict[str, Any]
    probabilities: torch.Tensor
    masks: torch.Tensor


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured.

    Attributes:
        summary: ``J``, ``F``, ``JF`` and the other :class:`~rvoslib.metrics.RVOSEvaluator`
            summary values (means over sequences).
        per_sequence: One row per (video, expression).
        loss: Mean of the summed training loss terms over items (``None`` when the videos were
            predicted in chunks, the losses needing whole-video outputs, or when
            ``compute_loss`` was ``False``).
        evaluator: The evaluator, for CSV tables.
    """

    summary: dict[str, float]
    per_sequence: list[dict[str, object]]
    loss: float | None
    evaluator: RVOSEvaluator = field(repr=False)


def default_protocol(inputs: Any) -> str:
    """The frames :func:`evaluate` scores for a model of these ``inputs``
    (:class:`~rvoslib.models.ModelInputs`): ``"semi-supervised"`` (first and last frames left
    out, as DAVIS-2017 does) for a model given the first frame's mask, ``"all"`` otherwise.

    Example:
        >>> from rvoslib.models import ModelInputs
        >>> default_protocol(ModelInputs("first_mask", ("frames", "first_mask")))
        'semi-supervised'
    """
    return "semi-supervised" if inputs.kind == "first_mask" else "all"


def move_to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a batch moved to ``device`` (non-blocking), other entries unchanged."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: Dataset,
    *,
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]],
    device: torch.device | str = "cpu",
    clip_len: int | None = None,
    threshold: float = 0.5,
    protocol: str = "all",
    autocast_dtype: torch.dtype | None = None,
    context: DistributedContext | None = None,
    on_prediction: Callable[[Prediction], None] | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    compute_loss: bool = True,
) -> EvaluationResult:
    """Predict and score every item of ``dataset`` (one video and expression per item).

    Args:
        model: A :class:`~rvoslib.models.SegmentationModel` (unwrapped), already on
            ``device``.
        dataset: Whole-video items (``frames``, ``masks``, ``valid``, ``video_id``,
            ``exp_id``; ``orig_size``/``unpadded_size``/``orig_masks`` from an evaluation
            transform are used when present).
        collate_fn: Builds a batch of one item (``rvoslib.data.collator_for(model.inputs)``).
        device: Where the model runs.
        clip_len: Frames per forward pass (``None``: whole videos, and the loss is computed).
        threshold: Probability threshold of the masks.
        protocol: Frames scored: ``"all"`` or ``"semi-supervised"`` (first and last left out;
            :func:`default_protocol` gives the model's).
        autocast_dtype: Autocast dtype (``None``: float32).
        context: Distributed context: items are sharded over ranks and the results gathered.
        on_prediction: Called with every :class:`Prediction` (on the rank that made it).
        progress: Wraps the item iterable (e.g. a tqdm bar).
        compute_loss: Also compute the training loss of whole videos (``model.losses``; its
            terms may need training-only batch keys such as LoSh's optical flow). ``False``:
            scores only, and ``loss`` is ``None``.

    Returns:
        An :class:`EvaluationResult`.

    Raises:
        ValueError: ``threshold`` outside ``(0, 1)``.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    device = torch.device(device)
    rank, world = (context.rank, context.world_size) if context is not None else (0, 1)
    loader = DataLoader(
        dataset,
        batch_size=1,
        sampler=ShardSampler(len(dataset), rank, world, shuffle=False),
        collate_fn=collate_fn,
    )
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    evaluator = RVOSEvaluator(protocol=protocol)
    loss_total = torch.zeros(2, device=device)
    model.eval()
    for batch in progress(loader) if progress is not None else loader:
        batch = move_to_device(batch, device)
        with autocast:
            if clip_len is None:
                outputs = model.forward_batch(batch)
                logits = model.referred_logits(outputs).float()
                if compute_loss:
                    loss_total[0] += sum(model.losses(outputs, batch).values()).float()
                    loss_total[1] += 1
            else:
                logits = model.predict(batch, clip_len)
        prediction = _at_original_size(logits.float().sigmoid()[0, :, 0], batch, threshold)
        ground_truth = _original_masks(batch)
        evaluator.update(
            prediction.item["video_id"],
            str(prediction.item["exp_id"]),
            prediction.masks,
            ground_truth,
            valid=batch["valid"][0].cpu(),
        )
        if on_prediction is not None:
            on_prediction(prediction)
    if context is not None:
        evaluator.all_gather()
        loss_total = all_reduce_mean(loss_total, context)
    counted = float(loss_total[1])
    return EvaluationResult(
        summary=evaluator.summary(),
        per_sequence=evaluator.per_sequence(),
        loss=float(loss_total[0]) / counted if counted > 0 else None,
        evaluator=evaluator,
    )


def _at_original_size(
    probabilities: torch.Tensor, batch: Mapping[str, Any], threshold: float
) -> Prediction:
    """Crop the padding and resize ``(T, h, w)`` probabilities to the original frame size."""
    item = {k: v[0] for k, v in batch.items() if not isinstance(v, torch.Tensor)}
    height, width = probabilities.shape[-2:]
    if "orig_size" in item and "unpadded_size" in item:
        probabilities = restore_size(probabilities, item["orig_size"], item["unpadded_size"])
    elif "unpadded_size" in item:
        height, width = (int(v) for v in item["unpadded_size"])
        probabilities = probabilities[..., :height, :width]
    probabilities = probabilities.cpu()
    return Prediction(item, probabilities, probabilities > threshold)


def _original_masks(batch: Mapping[str, Any]) -> torch.Tensor:
    """``(T, H, W)`` bool ground truth at the original size (``orig_masks`` when kept)."""
    if "orig_masks" in batch:
        return torch.as_tensor(batch["orig_masks"][0]) > 0
    masks = batch["masks"][0].cpu() > 0.5
    if "unpadded_size" in batch:
        height, width = (int(v) for v in batch["unpadded_size"][0])
        masks = masks[..., :height, :width]
    return masks


@torch.no_grad()
def evaluate_annotated_frames(
    model: torch.nn.Module,
    dataset: Dataset,
    *,
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]],
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> Any:
    """The A2D-Sentences / JHMDB-Sentences protocol: one annotated frame per item.

    Every candidate mask of the model at the annotated frame is submitted with its score
    (:meth:`~rvoslib.models.SegmentationModel.candidates`: for query-based models, every query
    with its "referred" probability, as MTTR and ReferFormer do, the ``all queries`` mAP; the
    :class:`~rvoslib.metrics.A2DProtocol` also scores the top candidate alone; other models
    submit their one mask with score 1). Masks are compared with
    ``dataset.ground_truth(index)`` at the original resolution.

    Args:
        model: A :class:`~rvoslib.models.SegmentationModel` on ``device``.
        dataset: An :class:`~rvoslib.data.AnnotatedFrameDataset` (items with
            ``annotated_index``, ``image_id``; ``ground_truth(index)``).
        collate_fn: Builds a batch of one item.
        device: Where the model runs.
        autocast_dtype: Autocast dtype (``None``: float32).
        progress: Wraps the item iterable.

    Returns:
        The filled :class:`~rvoslib.metrics.A2DProtocol` (``summary()``, ``report()``).
    """
    from rvoslib.metrics import A2DProtocol

    device = torch.device(device)
    protocol = A2DProtocol()
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    model.eval()
    indices = range(len(dataset))  # type: ignore[arg-type]
    for index in progress(indices) if progress is not None else indices:
        item = dataset[index]
        batch = move_to_device(collate_fn([item]), device)
        slot = int(item["annotated_index"])
        with autocast:
            outputs = model.forward_batch(batch)
        logits, scores = model.candidates(outputs)  # (B, T, N, h, w), (B, T, N)
        logits, scores = logits[0, slot].float(), scores[0, slot]
        size = tuple(batch["frames"].shape[-2:])
        if tuple(logits.shape[-2:]) != size:
            logits = torch.nn.functional.interpolate(
                logits[None], size=size, mode="bilinear", align_corners=False
            )[0]
        probabilities = restore_size(
            logits.sigmoid(), item["orig_size"], item["unpadded_size"]
        ).cpu()
        protocol.update(
            probabilities, scores.float().cpu(), dataset.ground_truth(index), str(item["image_id"])
        )
    return protocol
