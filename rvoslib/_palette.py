"""The DAVIS palette (the PASCAL VOC colour map), shared by the readers, writers and viz."""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["davis_palette", "voc_palette"]


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


def davis_palette() -> np.ndarray:
    """The palette of DAVIS / YouTube-VOS annotation PNGs: id 0 black, 1 red, 2 green, ...

    The one palette of rvoslib (readers, writers, visualisation). Pass ``palette.tobytes()``
    or ``palette.ravel().tolist()`` to ``PIL.Image.putpalette``.

    Returns:
        (256, 3) uint8 RGB colours, row i for object id i (a fresh, writable copy).

    Example:
        >>> davis_palette()[:3].tolist()
        [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    """
    return _palette().copy()


# The former name of the same function (rvoslib.viz still uses it).
voc_palette = davis_palette
