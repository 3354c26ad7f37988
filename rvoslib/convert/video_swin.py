"""Video-Swin weights of the published systems -> rvoslib's :class:`VideoSwinBackbone`.

MTTR, ReferFormer and SOC wrap the ``SwinTransformer3D`` of Video-Swin-Transformer (Liu et al.)
with a ``(1, 4, 4)`` patch embedding; MTTR keeps three stages, ReferFormer and SOC four. Their
keys (under a prefix such as ``backbone.`` or ``backbone.0.body.``)::

    patch_embed.proj.{weight,bias}  patch_embed.norm.{weight,bias}
    layers.<i>.blocks.<j>.{norm1,norm2}.*  .attn.{qkv,proj}.*  .mlp.{fc1,fc2}.*
    layers.<i>.blocks.<j>.attn.relative_position_bias_table   ((2Wd-1)(2Wh-1)(2Ww-1), heads)
    layers.<i>.blocks.<j>.attn.relative_position_index        (Wd*Wh*Ww, Wd*Wh*Ww) buffer
    downsamples.<i>.{reduction,norm}.*   (the wrappers; a plain SwinTransformer3D has
                                          layers.<i>.downsample.*)

rvoslib's backbone has torchvision's ``SwinTransformer3d`` layout (``features.<2i>.<j>`` =
block ``j`` of stage ``i``, ``features.<2i+1>`` = the patch merging after stage ``i``,
``mlp.0``/``mlp.3`` = ``fc1``/``fc2``). The computations are the same (window attention with
the relative position bias sliced to the window volume, shifted windows masked with -100,
windows shrunk to clips shorter than them, patch merging of the same four sub-grids in the
same order); :func:`convert_video_swin` renames and checks that every relative position
index equals the one rvoslib computes for the detected window.

Example:
    >>> renamed, used, variant = convert_video_swin(state, "backbone.", "out.")  # doctest: +SKIP
    >>> variant["spec"]  # doctest: +SKIP
    {'name': 'video_swin_t', 'out_strides': [4, 8, 16], 'window_size': [8, 7, 7], ...}
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "VIDEO_SWIN_SIZES",
    "convert_video_swin",
    "detect_window_size",
    "relative_position_index",
]

#: Published Video-Swin sizes: rvoslib backbone name -> (embed_dim, depths, heads).
VIDEO_SWIN_SIZES: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    "video_swin_t": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "video_swin_s": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "video_swin_b": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
}
#: Depth assumed for a fourth stage that a checkpoint does not hold (MTTR drops it): 2 in every
#: published size. It only sets the stochastic-depth schedule of training.
LAST_STAGE_DEPTH = 2
_STRIDES = (4, 8, 16, 32)
#: Original -> rvoslib (torchvision) names of a block's weights and biases.
_BLOCK_RENAMES = {
    "norm1": "norm1",
    "attn.qkv": "attn.qkv",
    "attn.proj": "attn.proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.0",
    "mlp.fc2": "mlp.3",
}


def relative_position_index(window_size: tuple[int, int, int]) -> torch.Tensor:
    """The relative position index of a 3D window (Video-Swin's and torchvision's).

    Token ``a`` at ``(d, h, w)`` and token ``b`` of the same window map to the bias-table row
    ``(da + Wd - 1) (2Wh - 1)(2Ww - 1) + (dh + Wh - 1)(2Ww - 1) + (dw + Ww - 1)`` with
    ``(da, dh, dw)`` the difference of their coordinates.

    Args:
        window_size: ``(Wd, Wh, Ww)``.

    Returns:
        ``(Wd*Wh*Ww, Wd*Wh*Ww)`` int64.

    Example:
        >>> relative_position_index((1, 1, 2)).tolist()
        [[1, 0], [2, 1]]
    """
    wd, wh, ww = window_size
    grid = torch.stack(
        torch.meshgrid(torch.arange(wd), torch.arange(wh), torch.arange(ww), indexing="ij")
    ).flatten(1)  # (3, V)
    diff = grid[:, :, None] - grid[:, None, :]  # (3, V, V)
    return (
        (diff[0] + wd - 1) * (2 * wh - 1) * (2 * ww - 1)
        + (diff[1] + wh - 1) * (2 * ww - 1)
        + (diff[2] + ww - 1)
    )


def detect_window_size(
    table: torch.Tensor, index: torch.Tensor | None, name: str
) -> tuple[int, int, int]:
    """The ``(Wd, Wh, Ww)`` window of a block from its bias table and (if given) index.

    Every window whose table has ``table.shape[0]`` rows and whose volume is the index's side
    is tried; the index values must then equal :func:`relative_position_index`. Without the
    index, square spatial windows (``Wh == Ww``) larger than ``1 x 1`` are assumed.

    Args:
        table: ``relative_position_bias_table``, ``((2Wd-1)(2Wh-1)(2Ww-1), heads)``.
        index: ``relative_position_index``, ``(V, V)``, or ``None``.
        name: The table's key, for messages.

    Returns:
        The window size.

    Raises:
        ValueError: no window or more than one fits (names the tensor and its shape), or the
            index differs from the standard one.

    Example:
        >>> detect_window_size(torch.zeros(3 * 13 * 13, 2), None, "t")
        (2, 7, 7)
    """
    rows = int(table.shape[0]) if table.ndim == 2 else -1
    if rows < 1:
        raise ValueError(
            f"{name} must be a ((2Wd-1)(2Wh-1)(2Ww-1), heads) table, got shape {tuple(table.shape)}"
        )
    volume = int(index.shape[0]) if index is not None else None
    candidates = []
    odd = [k for k in range(1, rows + 1, 2) if rows % k == 0]
    for a, b in itertools.product(odd, odd):
        if rows % (a * b) or (rows // (a * b)) % 2 == 0:
            continue
        window = ((a + 1) // 2, (b + 1) // 2, (rows // (a * b) + 1) // 2)
        size = window[0] * window[1] * window[2]
        if volume is None and window[1] != window[2]:
            continue
        if volume is not None and size != volume:
            continue
        if index is not None and not torch.equal(index.long(), relative_position_index(window)):
            continue
        candidates.append(window)
    if index is None and len(candidates) > 1:  # 1x1 spatial windows are no Swin's
        candidates = [window for window in candidates if window[1] > 1]
    if len(candidates) != 1:
        found = f"candidates {candidates}" if candidates else "no window"
        index_shape = "absent" if index is None else tuple(index.shape)
        raise ValueError(
            f"cannot detect the Video-Swin window size from {name} of shape "
            f"{tuple(table.shape)} (relative_position_index {index_shape}): {found} fits"
        )
    return candidates[0]


def _stage_indices(keys: list[str], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"layers\.(\d+)\.blocks\.(\d+)\.")
    stages = sorted({int(m.group(1)) for k in keys if (m := pattern.match(k))})
    if not stages:
        raise ValueError(
            f"no Video-Swin stage found: no key starts with {prefix!r}layers.0.blocks."
        )
    if stages != list(range(len(stages))) or len(stages) > 4:
        raise ValueError(f"Video-Swin stages under {prefix!r}layers. must be 0..3, got {stages}")
    return stages


def _block_count(keys: list[str], prefix: str, stage: int) -> int:
    pattern = re.compile(re.escape(f"{prefix}layers.{stage}.blocks.") + r"(\d+)\.")
    return max(int(m.group(1)) for k in keys if (m := pattern.match(k))) + 1


def _require(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise KeyError(f"the Video-Swin weights lack {key!r}")
    return state[key]


def _spec(
    embed_dim: int, depths: list[int], heads: list[int], window: tuple[int, int, int]
) -> tuple[dict[str, Any], str]:
    """The backbone spec and the size's name (``"video-swin-t"`` or ``"custom"``)."""
    stages = len(depths)
    spec: dict[str, Any] = {"name": "video_swin_t"}
    label = "custom"
    for name, (dim, full_depths, full_heads) in VIDEO_SWIN_SIZES.items():
        if (embed_dim, tuple(depths), tuple(heads)) == (
            dim,
            full_depths[:stages],
            full_heads[:stages],
        ):
            spec, label = {"name": name}, name.replace("_", "-")
            break
    if label == "custom":
        missing = 4 - stages
        spec["embed_dim"] = embed_dim
        spec["depths"] = list(depths) + [LAST_STAGE_DEPTH] * missing
        spec["num_heads"] = list(heads) + [heads[-1] * 2 ** (k + 1) for k in range(missing)]
    spec.update(out_strides=list(_STRIDES[:stages]), window_size=list(window))
    return spec, label


def convert_video_swin(
    state: Mapping[str, torch.Tensor], prefix_in: str, prefix_out: str
) -> tuple[dict[str, torch.Tensor], set[str], dict[str, Any]]:
    """Rename an original Video-Swin's weights to rvoslib's :class:`VideoSwinBackbone` keys.

    Args:
        state: The original checkpoint's state dict (other keys are ignored).
        prefix_in: Prefix of the Video-Swin keys in ``state`` (``"backbone."``,
            ``"backbone.0.body."``).
        prefix_out: Prefix of the backbone in rvoslib's model (``"backbone."``).

    Returns:
        ``renamed`` (rvoslib key -> tensor), ``used_keys`` (the original keys renamed) and
        ``variant``: ``{"spec": backbone spec for BACKBONES (name, out_strides, window_size, and
        embed_dim/depths/num_heads when not a published size), "size": "video-swin-t" / "-s" /
        "-b" / "custom", "embed_dim", "depths" (of the stages present), "num_heads",
        "window_size", "patch_size", "num_stages"}``. A missing fourth stage gets depth
        :data:`LAST_STAGE_DEPTH` and twice the heads in a custom spec (it is never built).

    Raises:
        KeyError: a key of a detected stage or block is missing (named).
        ValueError: a patch size other than ``(1, 4, 4)``, widths that do not double, or a
            window that cannot be detected (each names the tensor and its shape).
    """
    keys = list(state)
    patch = _require(state, f"{prefix_in}patch_embed.proj.weight")
    if patch.ndim != 5 or tuple(patch.shape[1:]) != (3, 1, 4, 4):
        raise ValueError(
            f"{prefix_in}patch_embed.proj.weight has shape {tuple(patch.shape)}; rvoslib's Video "
            "Swin takes (1, 4, 4) patches: (embed_dim, 3, 1, 4, 4) expected"
        )
    embed_dim = int(patch.shape[0])
    renamed: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str) -> None:
        renamed[prefix_out + dst] = _require(state, prefix_in + src)
        used.add(prefix_in + src)

    for part in ("proj.weight", "proj.bias", "norm.weight", "norm.bias"):
        take(f"patch_embed.{part}", f"patch_embed.{part}")
    stages = _stage_indices(keys, prefix_in)
    depths, heads, window = [], [], None
    for stage in stages:
        dim = embed_dim * 2**stage
        depth = _block_count(keys, prefix_in, stage)
        depths.append(depth)
        stage_heads = None
        for block in range(depth):
            src = f"layers.{stage}.blocks.{block}."
            table_key = f"{prefix_in}{src}attn.relative_position_bias_table"
            table = _require(state, table_key)
            index = state.get(f"{prefix_in}{src}attn.relative_position_index")
            block_window = detect_window_size(table, index, table_key)
            if window is None:
                window = block_window
            elif block_window != window:
                raise ValueError(
                    f"{table_key} of shape {tuple(table.shape)} gives window {block_window}, "
                    f"other blocks {window}"
                )
            stage_heads = int(table.shape[1]) if stage_heads is None else stage_heads
            qkv = _require(state, f"{prefix_in}{src}attn.qkv.weight")
            if tuple(qkv.shape) != (3 * dim, dim):
                raise ValueError(
                    f"{prefix_in}{src}attn.qkv.weight has shape {tuple(qkv.shape)}, expected "
                    f"{(3 * dim, dim)} for stage {stage} of a Video-Swin with embed_dim {embed_dim}"
                )
            out = f"features.{2 * stage}.{block}."
            for old, new in _BLOCK_RENAMES.items():
                for kind in ("weight", "bias"):
                    take(f"{src}{old}.{kind}", f"{out}{new}.{kind}")
            take(
                f"{src}attn.relative_position_bias_table", f"{out}attn.relative_position_bias_table"
            )
            if index is None:  # not saved: rvoslib's buffer is computed for the window
                renamed[f"{prefix_out}{out}attn.relative_position_index"] = relative_position_index(
                    window
                )
            else:  # equal to relative_position_index(window): checked by detect_window_size
                take(f"{src}attn.relative_position_index", f"{out}attn.relative_position_index")
        heads.append(int(stage_heads or 1))
        if stage < stages[-1]:
            merge = f"downsamples.{stage}."
            if f"{prefix_in}{merge}reduction.weight" not in state:
                merge = f"layers.{stage}.downsample."
            for leaf in ("reduction.weight", "norm.weight", "norm.bias"):
                take(merge + leaf, f"features.{2 * stage + 1}.{leaf}")
    assert window is not None  # at least one block
    spec, label = _spec(embed_dim, depths, heads, window)
    variant = {
        "spec": spec,
        "size": label,
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": heads,
        "window_size": list(window),
        "patch_size": [1, 4, 4],
        "num_stages": len(stages),
    }
    return renamed, used, variant
