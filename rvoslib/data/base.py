"""The base of the file-backed datasets: one record per item, and what an unreadable file does.

A subclass fills ``self.records`` (objects with a ``video_id``), implements
:meth:`RecordDataset.load_sample` (the numpy sample of one record) and may override
:meth:`RecordDataset.to_item` (numpy sample -> tensors) and
:meth:`RecordDataset.describe_item` (how warnings name an item). ``__getitem__`` checks the
index, and with ``on_error="skip"`` turns an unreadable image or video into ``None`` with a
warning naming the item and the file; :class:`~rvoslib.data.RVOSCollator` drops such items.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch.utils.data import Dataset

from rvoslib.data.io import ImageReadError
from rvoslib.data.transforms import to_tensors

__all__ = ["ON_ERROR_MODES", "RecordDataset"]

#: What an unreadable file does: raise :class:`~rvoslib.data.ImageReadError`, or skip the item.
ON_ERROR_MODES = ("raise", "skip")


class RecordDataset(Dataset):
    """Items loaded from files, one per entry of ``self.records``.

    Args:
        on_error: ``"raise"`` or ``"skip"`` (warn and return None) for unreadable files.

    Raises:
        ValueError: another ``on_error``.

    Example:
        >>> from types import SimpleNamespace
        >>> class Broken(RecordDataset):
        ...     def load_sample(self, index):
        ...         raise ImageReadError("clip/00000.jpg", "truncated")
        >>> dataset = Broken(on_error="skip")
        >>> dataset.records = [SimpleNamespace(video_id="clip")]
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     print(dataset[0], str(caught[0].message).split(":")[0])
        None skipping item 0 (video 'clip')
    """

    def __init__(self, on_error: str = "raise") -> None:
        if on_error not in ON_ERROR_MODES:
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.records: list[Any] = []

    def __len__(self) -> int:
        return len(self.records)

    def load_sample(self, index: int) -> dict[str, Any]:
        """The item of ``self.records[index]`` before tensor conversion (numpy arrays)."""
        raise NotImplementedError

    def to_item(self, sample: dict[str, Any]) -> dict[str, Any]:
        """The item from the numpy sample (default: :func:`~rvoslib.data.to_tensors`)."""
        return to_tensors(sample)

    def describe_item(self, index: int) -> str:
        """How a warning names item ``index``, e.g. ``video 'bear', expression 2``."""
        return f"video {self.records[index].video_id!r}"

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        """The item ``index``; None (with a warning naming the file) for an unreadable file
        when ``on_error="skip"``.

        Raises:
            IndexError: ``index`` out of range.
            ImageReadError: an unreadable file when ``on_error="raise"``.
        """
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        try:
            sample = self.load_sample(index)
        except ImageReadError as error:
            if self.on_error == "raise":
                raise
            warnings.warn(
                f"skipping item {index} ({self.describe_item(index)}): {error}",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        return self.to_item(sample)
