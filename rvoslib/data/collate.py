"""Batch RVOS items: stack clips, pad time, tokenize expressions."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["OPTIONAL_TENSOR_KEYS", "TENSOR_KEYS", "RVOSCollator"]

TENSOR_KEYS = ("frames", "masks", "valid")
#: Optional per-item tensors stacked (zero-padded like the masks) when every item has them:
#: ``first_mask (H, W)`` (VOS), ``void (T, H, W)``, ``flow_forward``/``flow_backward``
#: ``(T - 1, 2, H, W)`` (precomputed optical flow).
OPTIONAL_TENSOR_KEYS = ("first_mask", "void", "flow_forward", "flow_backward")


class RVOSCollator:
    """Collate dataset items into a batch for ``torch.utils.data.DataLoader(collate_fn=...)``.

    The batch holds ``frames`` ``(B, T, 3, H, W)`` float32, ``masks`` ``(B, T, H, W)``
    float32, ``valid`` ``(B, T)`` bool, ``text_ids`` ``(B, L)`` long, ``text_mask``
    ``(B, L)`` bool, and lists ``expression``, ``video_id``, ``frame_ids``, ``obj_id``,
    ``exp_id`` (and any other item key, e.g. ``orig_size``, as a list).

    Clips shorter than the longest in the batch are padded at the end with zero frames and
    masks and ``valid`` False; their ``frame_ids`` lists keep their own length. Items of
    different spatial size raise ``ValueError`` unless ``pad_spatial=True``, which pads them
    at the bottom/right to the largest height and width (zeros, i.e. the mean colour, and
    ``valid`` unchanged: check ``unpadded_size`` to know the real extent). ``None`` items
    (unreadable frames with ``on_error="skip"``) are dropped with a warning.

    Args:
        tokenizer: An object with ``tokenize(texts, max_length=None) -> dict`` or a callable
            with that signature, returning ``input_ids`` ``(B, L)`` long and
            ``attention_mask`` ``(B, L)`` bool/int; a Hugging Face tokenizer also works. None
            leaves out ``text_ids``/``text_mask`` (for models that take raw text).
        max_length: Passed to the tokenizer (truncation length).
        pad_spatial: Pad items of different height/width instead of raising.

    Example:
        >>> from rvoslib.data import SyntheticRVOSDataset
        >>> def tokenize(texts, max_length=None):
        ...     ids = torch.ones(len(texts), 4, dtype=torch.long)
        ...     return {"input_ids": ids, "attention_mask": ids.bool()}
        >>> dataset = SyntheticRVOSDataset(num_videos=2, num_frames=3, size=32)
        >>> batch = RVOSCollator(tokenize)([dataset[0], dataset[1]])
        >>> tuple(batch["frames"].shape), tuple(batch["text_ids"].shape)
        ((2, 3, 3, 32, 32), (2, 4))
    """

    def __init__(
        self, tokenizer: Any = None, max_length: int | None = None, pad_spatial: bool = False
    ) -> None:
        if tokenizer is not None and not (hasattr(tokenizer, "tokenize") or callable(tokenizer)):
            raise TypeError(
                "tokenizer must have tokenize(texts, max_length=None) -> dict or be such a "
                f"callable, got {type(tokenizer).__name__}"
            )
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be a positive int or None, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_spatial = pad_spatial

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenize ``texts``: ``text_ids`` ``(B, L)`` long and ``text_mask`` ``(B, L)`` bool."""
        tokenizer = self.tokenizer
        if _is_hf_tokenizer(tokenizer):
            out = tokenizer(
                texts, padding=True, truncation=self.max_length is not None,
                max_length=self.max_length, return_tensors="pt",
            )  # fmt: skip
        elif hasattr(tokenizer, "tokenize"):
            out = tokenizer.tokenize(texts, max_length=self.max_length)
        else:
            out = tokenizer(texts, max_length=self.max_length)
        if not isinstance(out, Mapping) or "input_ids" not in out or "attention_mask" not in out:
            raise TypeError(
                "tokenizer must return a dict with 'input_ids' and 'attention_mask', got "
                f"{type(out).__name__}"
                + (f" with keys {sorted(out)}" if isinstance(out, Mapping) else "")
            )
        ids, mask = torch.as_tensor(out["input_ids"]), torch.as_tensor(out["attention_mask"])
        if ids.ndim != 2 or ids.shape[0] != len(texts) or mask.shape != ids.shape:
            raise ValueError(
                f"tokenizer must return input_ids and attention_mask of shape (B={len(texts)}, L), "
                f"got {tuple(ids.shape)} and {tuple(mask.shape)}"
            )
        return {"text_ids": ids.long(), "text_mask": mask.bool()}

    def __call__(self, items: Sequence[Mapping[str, Any] | None]) -> dict[str, Any]:
        kept = [item for item in items if item is not None]
        if len(kept) < len(items):
            warnings.warn(
                f"dropped {len(items) - len(kept)} unreadable item(s) from the batch",
                RuntimeWarning,
                stacklevel=2,
            )
        if not kept:
            raise ValueError("cannot collate an empty batch (every item was None or none given)")
        required = (*TENSOR_KEYS, "expression") if self.tokenizer is not None else TENSOR_KEYS
        for index, item in enumerate(kept):
            missing = [key for key in required if key not in item]
            if missing:
                raise ValueError(f"item {index} lacks keys {missing}; got keys {sorted(item)}")
        sizes = {tuple(item["frames"].shape[-2:]) for item in kept}
        if len(sizes) > 1 and not self.pad_spatial:
            raise ValueError(
                f"items have different frame sizes {sorted(sizes)}; give the dataset a transform "
                "that resizes/pads to one size (rvoslib.data.train_transform or eval_transform), "
                "use batch_size=1, or RVOSCollator(pad_spatial=True)"
            )
        height = max(size[0] for size in sizes)
        width = max(size[1] for size in sizes)
        length = max(item["frames"].shape[0] for item in kept)
        batch: dict[str, Any] = {}
        for key in TENSOR_KEYS:
            batch[key] = torch.stack([_pad(item[key], length, height, width) for item in kept])
        batch["valid"] = batch["valid"].bool()
        stacked = [k for k in OPTIONAL_TENSOR_KEYS if all(item.get(k) is not None for item in kept)]
        for key in stacked:
            values = [torch.as_tensor(item[key]) for item in kept]
            size = max(v.shape[0] for v in values) if values[0].ndim >= 3 else 0
            batch[key] = torch.stack([_pad_spatial(v, size, height, width) for v in values])
        done = {*TENSOR_KEYS, *stacked}
        others = dict.fromkeys(key for item in kept for key in item if key not in done)
        for key in others:
            batch[key] = [item.get(key) for item in kept]
        if self.tokenizer is not None:
            batch.update(self.tokenize([str(text) for text in batch["expression"]]))
            if all(isinstance(t, str) for t in batch.get("short_expression") or [None]):
                short = self.tokenize(batch["short_expression"])
                batch["short_text_ids"], batch["short_text_mask"] = (
                    short["text_ids"],
                    short["text_mask"],
                )
        return batch


def _pad(tensor: torch.Tensor, length: int, height: int, width: int) -> torch.Tensor:
    """Zero-pad dim 0 to ``length`` and (for ndim >= 3) the last two dims to (height, width)."""
    tensor = torch.as_tensor(tensor)
    pads = [0, 0] * tensor.ndim
    if tensor.ndim >= 3:
        pads[1] = width - tensor.shape[-1]
        pads[3] = height - tensor.shape[-2]
    pads[-1] = length - tensor.shape[0]
    if not any(pads):
        return tensor
    if tensor.dtype == torch.bool:
        return F.pad(tensor.to(torch.uint8), pads).bool()
    return F.pad(tensor, pads)


def _pad_spatial(tensor: torch.Tensor, length: int, height: int, width: int) -> torch.Tensor:
    """Zero-pad the last two dims to (height, width) and, for ndim >= 3, dim 0 to ``length``."""
    if tensor.ndim == 2:
        pads = [0, width - tensor.shape[-1], 0, height - tensor.shape[-2]]
        if not any(pads):
            return tensor
        if tensor.dtype == torch.bool:
            return F.pad(tensor.to(torch.uint8), pads).bool()
        return F.pad(tensor, pads)
    return _pad(tensor, length, height, width)


def _is_hf_tokenizer(tokenizer: Any) -> bool:
    return any(cls.__name__ == "PreTrainedTokenizerBase" for cls in type(tokenizer).__mro__)
