"""Batch dataset items: stack clips, pad time, tokenize expressions.

:func:`collator_for` builds the collator a model needs from its declared inputs
(``model.inputs``); :class:`RVOSCollator` is the collator itself.
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["INPUT_KINDS", "OPTIONAL_TENSOR_KEYS", "TENSOR_KEYS", "RVOSCollator", "collator_for"]

TENSOR_KEYS = ("frames", "masks", "valid")
#: Optional per-item tensors stacked (zero-padded like the masks) when every item has them:
#: ``first_mask (H, W)`` (VOS), ``void (T, H, W)``, ``flow_forward``/``flow_backward``
#: ``(T - 1, 2, H, W)`` (precomputed optical flow).
OPTIONAL_TENSOR_KEYS = ("first_mask", "void", "flow_forward", "flow_backward")
#: What a model takes besides the frames, and the item key that carries it.
INPUT_KINDS = {"text": "expression", "first_mask": "first_mask"}
_INPUT_HINTS = {
    "text": "a referring dataset gives it (task 'rvos')",
    "first_mask": "a VOS dataset gives it (task 'vos', e.g. SyntheticVOSDataset, "
    "FirstFrameMaskDataset, YouTubeVOSDataset)",
}


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
        input_kind: What the model takes besides the frames, ``"text"`` or ``"first_mask"``
            (see :data:`INPUT_KINDS`): every item must carry it (``expression`` or
            ``first_mask``), else a ``ValueError`` says which input the model takes. None
            checks nothing more than the tokenizer needs. :func:`collator_for` sets it.

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
        self,
        tokenizer: Any = None,
        max_length: int | None = None,
        pad_spatial: bool = False,
        *,
        input_kind: str | None = None,
    ) -> None:
        if tokenizer is not None and not (hasattr(tokenizer, "tokenize") or callable(tokenizer)):
            raise TypeError(
                "tokenizer must have tokenize(texts, max_length=None) -> dict or be such a "
                f"callable, got {type(tokenizer).__name__}"
            )
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be a positive int or None, got {max_length}")
        if input_kind is not None and input_kind not in INPUT_KINDS:
            raise ValueError(
                f"input_kind must be one of {sorted(INPUT_KINDS)} or None, got {input_kind!r}"
            )
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_spatial = pad_spatial
        self.input_kind = input_kind

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenize ``texts``: ``text_ids`` ``(B, L)`` long and ``text_mask`` ``(B, L)`` bool.

        The texts are normalised to Unicode NFC first, so that the composed and decomposed
        forms of a word (``"caf\u00e9"``, ``"cafe\u0301"``) get the same ids.

        Raises:
            ValueError: an empty expression (named by its position in the batch).
        """
        for index, text in enumerate(texts):
            if not text.strip():
                raise ValueError(f"expression {index} of the batch is empty: {text!r}")
        texts = [unicodedata.normalize("NFC", text) for text in texts]
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
            if self.input_kind is not None and item.get(INPUT_KINDS[self.input_kind]) is None:
                key = INPUT_KINDS[self.input_kind]
                raise ValueError(
                    f"item {index} lacks {key!r}, which the model takes (a {self.input_kind!r} "
                    f"model): {_INPUT_HINTS[self.input_kind]}; got keys {sorted(item)}"
                )
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


def collator_for(inputs: Any, pad_spatial: bool = False) -> RVOSCollator:
    """The collator of a model, from its declared inputs (``model.inputs``).

    The collator holds the model's tokenizer only (never the text encoder), so that it pickles
    small into every ``DataLoader`` worker, and checks that every item carries what the model
    takes: an ``expression`` for a text model, a ``first_mask`` for a first-mask (VOS) model.

    Args:
        inputs: Any object with ``kind`` (``"text"`` or ``"first_mask"``), ``tokenizer`` (a
            picklable tokenizer, see :class:`RVOSCollator`, or None), ``max_length`` (int or
            None) and ``keys`` (the batch keys the model reads), e.g.
            :class:`rvoslib.models.ModelInputs`.
        pad_spatial: See :class:`RVOSCollator`.

    Returns:
        An :class:`RVOSCollator`: for a text model with a tokenizer, batches carry
        ``text_ids``/``text_mask``; for a first-mask model, ``first_mask`` ``(B, H, W)``.

    Raises:
        ValueError: an unknown ``kind``, or a model reading ``text_ids`` without a tokenizer.
        TypeError: ``inputs`` lacks one of the attributes above.

    Example:
        >>> from types import SimpleNamespace
        >>> from rvoslib.data import SyntheticVOSDataset
        >>> inputs = SimpleNamespace(kind="first_mask", tokenizer=None, max_length=None,
        ...                          keys=("frames", "first_mask"))
        >>> batch = collator_for(inputs)([SyntheticVOSDataset(2, 3, 32)[0]])
        >>> tuple(batch["first_mask"].shape)
        (1, 32, 32)
    """
    absent = [
        name for name in ("kind", "tokenizer", "max_length", "keys") if not hasattr(inputs, name)
    ]
    if absent:
        raise TypeError(
            f"inputs must describe a model's inputs (kind, tokenizer, max_length, keys), e.g. "
            f"model.inputs; {type(inputs).__name__} lacks {absent}"
        )
    if inputs.kind not in INPUT_KINDS:
        raise ValueError(f"inputs.kind must be one of {sorted(INPUT_KINDS)}, got {inputs.kind!r}")
    tokenizer = inputs.tokenizer if inputs.kind == "text" else None
    if inputs.kind == "text" and tokenizer is None and "text_ids" in tuple(inputs.keys):
        raise ValueError(
            f"the model reads {sorted(k for k in inputs.keys if k.startswith('text_'))} but "
            "its inputs give no tokenizer (inputs.tokenizer is None)"
        )
    return RVOSCollator(
        tokenizer,
        inputs.max_length if tokenizer is not None else None,
        pad_spatial,
        input_kind=inputs.kind,
    )


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
