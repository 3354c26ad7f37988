"""One evaluation loop for ``Trainer.validate`` and ``rvos eval``.

For every item of a dataset the model predicts whole videos (:meth:`RVOSModel.predict`, in
chunks of ``clip_len`` frames), the padding added by the evaluation transform is cropped, the
probabilities are resized to the frames' original size (``orig_size``), thresholded, and scored
with the official J and F against the original masks (``orig_masks`` when the transform kept
them). A callback receives every prediction, e.g. to write it in the official layout.

With ``inference`` naming a published system's protocol
(:mod:`rvoslib.inference_protocols`: ``"mttr"``, ``"referformer-ytvos"``, ...) every video is
predicted as that system's inference script does (its resize rule from the original frames,
one query per video or clip, its upsampling and threshold): the dataset must then give the
frames at their original size (no ``size``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from rvoslib._distributed import DistributedContext, ShardSampler, all_reduce_mean
from rvoslib._protocol_predict import protocol_frames
from rvoslib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, restore_size
from rvoslib.inference_protocols import InferenceProtocol, resolve_protocol
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
    inference: str | InferenceProtocol | None = None,
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
        inference: An inference protocol (or its registered name) other than ``"rvoslib"``:
            predict as that published system does (``clip_len``, ``threshold`` and the loss
            are then the protocol's / not computed). ``None``: rvoslib's (``"rvoslib"``).

    Returns:
        An :class:`EvaluationResult`.

    Raises:
        ValueError: ``threshold`` outside ``(0, 1)``; under a protocol, frames the dataset
            resized (the message names both sizes).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    chosen = resolve_protocol(inference or "rvoslib")
    if chosen.query != "model":
        threshold, compute_loss = chosen.threshold, False
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
        if chosen.query != "model":
            prediction = _protocol_prediction(model, batch, chosen, device, autocast_dtype)
        else:
            with autocast:
                logits = _logits(model, batch, clip_len, compute_loss, loss_total)
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


def _logits(
    model: torch.nn.Module,
    batch: Mapping[str, Any],
    clip_len: int | None,
    compute_loss: bool,
    loss_total: torch.Tensor,
) -> torch.Tensor:
    """rvoslib's prediction of a batch: ``(B, T, 1, h, w)`` logits (and the loss summed)."""
    if clip_len is not None:
        return model.predict(batch, clip_len)
    outputs = model.forward_batch(batch)
    if compute_loss:
        loss_total[0] += sum(model.losses(outputs, batch).values()).float()
        loss_total[1] += 1
    return model.referred_logits(outputs).float()


def _protocol_prediction(
    model: Any,
    batch: Mapping[str, Any],
    protocol: InferenceProtocol,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
) -> Prediction:
    """Predict the batch's one video under ``protocol`` from its frames, which must be at their
    original size (they are turned back into the uint8 frames they were normalised from)."""
    item = {k: v[0] for k, v in batch.items() if not isinstance(v, torch.Tensor)}
    frames = batch["frames"][0]  # (T, 3, H, W) normalised
    size = tuple(int(v) for v in frames.shape[-2:])
    for key in ("orig_size", "unpadded_size"):
        if key in item and tuple(int(v) for v in item[key]) != size:
            raise ValueError(
                f"inference protocol {protocol.name!r} resizes the original frames itself, but "
                f"the dataset gave them at {size} ({key} {tuple(item[key])}): evaluate with "
                "no size (rvos eval without --size), or with --inference-protocol rvoslib"
            )
    shape = (1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(shape)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(shape)
    pixels = ((frames.float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
    text = model.encode_text(batch["text_ids"], batch.get("text_mask"))

    def autocast() -> contextlib.AbstractContextManager:
        if autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=autocast_dtype)

    results = list(
        protocol_frames(
            model, lambda: iter(pixels), size, text, protocol, device=device, autocast=autocast,
            name=str(item.get("video_id", "video")),
        )
    )  # fmt: skip
    probabilities = torch.stack([probs[0] for _, probs, _, _ in results]).cpu()
    masks = torch.stack([mask[0] for _, _, mask, _ in results]).cpu()
    return Prediction(item, probabilities, masks)


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
