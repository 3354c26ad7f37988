"""Fast building blocks of the DAVIS metrics, on ``(N, H, W)`` bool tensors (CPU or CUDA).

Private: the public, checked entry points are in :mod:`rvoslib.metrics.davis`. Boundaries are
sparse (about 1% of the pixels), so the F-measure works on the sorted flat indices of boundary
pixels rather than on dense dilated maps; the results are identical to dilating with the disk.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from rvoslib._checks import is_compiling

__all__ = [
    "boundary_indices",
    "count_near",
    "count_true",
    "cpu_threads",
    "disk_half_widths",
    "frame_chunks",
    "seg2bmap_flat",
    "sparse_nonzero",
]

# Frames are processed in chunks of about this many pixels (see frame_chunks).
_CHUNK_PIXELS = 1 << 22
_CHUNK_PIXELS_ACCELERATOR = 1 << 26


@contextlib.contextmanager
def cpu_threads(device: torch.device, num_threads: int | None) -> Iterator[None]:
    """Run the body with at most ``num_threads`` torch CPU threads when ``device`` is the CPU.

    The metric kernels are short, memory-bound passes over masks: on CPU, several intra-op
    threads gain little on an idle machine and lose a lot on a busy one (threads that wait
    for each other while other processes hold the cores). ``None`` keeps torch's setting.
    The previous thread count is restored on exit.
    """
    if num_threads is not None and (isinstance(num_threads, bool) or num_threads < 1):
        raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
    previous = torch.get_num_threads()
    if num_threads is None or device.type != "cpu" or previous <= num_threads or is_compiling():
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def frame_chunks(masks: torch.Tensor) -> list[slice]:
    """Slices of about ``_CHUNK_PIXELS`` pixels over the frames of ``masks: (N, H, W)``.

    Working chunk by chunk bounds the memory of the temporaries and, on CPU, keeps them in
    cache and reuses their memory instead of faulting in fresh pages for every operation.
    """
    num_frames, height, width = masks.shape
    chunk_pixels = _CHUNK_PIXELS if masks.device.type == "cpu" else _CHUNK_PIXELS_ACCELERATOR
    step = max(1, chunk_pixels // max(1, height * width))
    return [slice(start, start + step) for start in range(0, num_frames, step)]


def count_true(mask: torch.Tensor) -> torch.Tensor:
    """Number of True pixels per frame of ``mask: (N, H, W) bool``, as (N,) int64.

    torch's bool reductions are slow on CPU, so the bytes are summed eight at a time: the
    mask is read as int64 words and summed over groups of 255 words, which leaves each byte
    lane of the sums at most 255 (no carry between lanes); the lanes are then added up.
    """
    num_frames = mask.shape[0]
    if mask.numel() == 0:
        return torch.zeros(num_frames, dtype=torch.int64, device=mask.device)
    flat = mask.reshape(num_frames, -1).view(torch.uint8)
    group = 8 * 255
    padded_length = -(-flat.shape[1] // group) * group
    words = torch.zeros((num_frames, padded_length), dtype=torch.uint8, device=mask.device)
    words[:, : flat.shape[1]] = flat
    lanes = words.view(torch.int64).view(num_frames, -1, 255).sum(dim=-1)
    return lanes.view(torch.uint8).view(num_frames, -1).sum(dim=-1, dtype=torch.int64)


def seg2bmap_flat(seg: torch.Tensor) -> torch.Tensor:
    """Boundary map of ``seg: (N, H, W) bool``: differs from right, bottom or bottom-right.

    The image's last row and column have no such neighbours and compare only with those that
    exist, exactly as in the official code. The comparisons run on the flattened masks, where
    the right, bottom and bottom-right neighbours are 1, W and W + 1 elements ahead (fast
    contiguous slices); the pairs that wrap around a row or a frame are then cleared.
    """
    num_frames, height, width = seg.shape
    # uint8 views: torch's bool kernels are much slower on unaligned slices.
    flat = seg.reshape(-1).view(torch.uint8)
    size = flat.numel()
    if size == 0:
        return seg.clone()
    if num_frames * height == 1:  # a single row: compare along the row only
        bmap = torch.zeros_like(flat)
        if size > 1:
            torch.bitwise_xor(flat[:-1], flat[1:], out=bmap[:-1])
        bmap.view(num_frames, height, width)[..., -1] = 0
        return bmap.view(torch.bool).view(seg.shape)
    bmap = torch.empty_like(flat)
    torch.bitwise_xor(flat[:-1], flat[1:], out=bmap[:-1])
    bmap[-1] = 0
    below = torch.empty_like(flat)
    torch.bitwise_xor(flat[: -width - 1], flat[width + 1 :], out=below[: size - width - 1])
    below[size - width - 1 :] = 0
    # Last column: no right or bottom-right neighbour.
    bmap.view(num_frames, height, width)[..., -1] = 0
    below.view(num_frames, height, width)[..., -1] = 0
    below[: size - width] |= flat[:-width] ^ flat[width:]
    # Last row: no bottom or bottom-right neighbour.
    below.view(num_frames, height, width)[:, -1] = 0
    bmap |= below
    return bmap.view(torch.bool).view(seg.shape)


def disk_half_widths(radius: int) -> list[int]:
    """Half width of each row ``dy = -radius .. radius`` of the disk footprint."""
    return [math.isqrt(radius * radius - dy * dy) for dy in range(-radius, radius + 1)]


def count_near(
    points: torch.Tensor, targets: torch.Tensor, shape: tuple[int, int, int], radius: int
) -> torch.Tensor:
    """Per frame, how many ``points`` lie in the disk dilation of ``targets``.

    Equals ``(P & binary_dilation(T, disk_footprint(radius))).sum((-2, -1))`` for the
    ``(N, H, W)`` maps ``P`` and ``T`` given by their sorted flat indices ``points`` and
    ``targets``, without building the dilation: the disk is a stack of horizontal segments (row
    ``dy`` spans ``|dx| <= w(dy)``), and a binary search in ``targets`` tells whether the
    segment around a point holds a target pixel. Boundaries are sparse, so this touches only
    ``2 * radius + 1`` segments per boundary pixel.

    Args:
        points: (P,) int64 sorted flat indices into ``shape``.
        targets: (Q,) int64 sorted flat indices into ``shape``.
        shape: (N, H, W).
        radius: Disk radius in pixels.

    Returns:
        (N,) int64 counts.
    """
    num_frames, height, width = shape
    if targets.numel() == 0:
        return torch.zeros(num_frames, dtype=torch.int64, device=points.device)
    rows = zip(range(-radius, radius + 1), disk_half_widths(radius))
    offsets = sorted(rows, key=lambda row: abs(row[0]))
    pending = points
    found = []
    # Most points have a target in the widest, central segments: look there first and carry
    # only the points still unmatched to the next rows of the disk.
    for dy, half_width in offsets:
        if pending.numel() == 0:
            break
        row = torch.div(pending, width, rounding_mode="floor")
        column = pending - row * width
        row_in_frame = row % height
        row_start = (row + dy) * width
        first = row_start + (column - half_width).clamp(min=0)
        last = row_start + (column + half_width).clamp(max=width - 1)
        # The first target at or after the segment's start must not lie beyond its end.
        following = targets[torch.searchsorted(targets, first).clamp(max=targets.numel() - 1)]
        inside = (row_in_frame + dy >= 0) & (row_in_frame + dy < height)
        hit = inside & (following >= first) & (following <= last)
        found.append(pending[hit])
        pending = pending[~hit]
    matched = torch.cat(found) if found else points[:0]
    return torch.bincount(matched // (height * width), minlength=num_frames)


def sparse_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Sorted flat indices of the True pixels of a sparse, freshly allocated bool ``mask``.

    Scans eight pixels at a time as int64 words, then looks only inside the nonzero words:
    several times faster than ``nonzero`` on CPU when few pixels are set (boundaries).
    """
    flat = mask.reshape(-1).view(torch.uint8)
    padding = -flat.numel() % 8
    if padding or flat.storage_offset() % 8:
        flat = torch.cat([flat, flat.new_zeros(padding)])
    words = flat.view(torch.int64).nonzero().squeeze(1)
    candidates = (words[:, None] * 8 + torch.arange(8, device=flat.device)).reshape(-1)
    return candidates[flat[candidates] != 0]


def boundary_indices(masks: torch.Tensor, void: torch.Tensor | None) -> torch.Tensor:
    """Sorted flat indices of the boundary pixels of ``masks: (N, H, W) bool`` minus ``void``."""
    indices = []
    for frames in frame_chunks(masks):
        chunk = masks[frames] if void is None else masks[frames] & ~void[frames]
        offset = (frames.start * masks.shape[1]) * masks.shape[2]
        indices.append(sparse_nonzero(seg2bmap_flat(chunk)) + offset)
    return torch.cat(indices) if indices else torch.zeros(0, dtype=torch.int64, device=masks.device)
