"""The DAVIS / PASCAL VOC colour map, shared by the readers, writers and visualisation."""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["voc_palette"]


@functools.lru_cache(maxsize=1)
def _palette() -> np.ndarray:
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (red, green, blue)
    palette.setflags(write=False)
    return palette


def voc_palette() -> np.ndarray:
    """``(256, 3)`` uint8 RGB colours; row ``i`` is object id ``i`` (0 black, 1 ``(128, 0, 0)``)."""
    return _palette().copy()
