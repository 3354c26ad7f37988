"""LoSh's forward-backward visual consistency term (our design) on the referred query."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rvoslib._checks import check_tensor
from rvoslib.models.flow import flow_consistency_loss

__all__ = ["FLOW_LOSSES", "referred_flow_loss", "resize_masks"]

FLOW_LOSSES = ("l1", "dice")


def referred_flow_loss(
    logits: torch.Tensor,
    flow_forward: torch.Tensor,
    flow_backward: torch.Tensor,
    pair_valid: torch.Tensor | None = None,
    kind: str = "l1",
) -> torch.Tensor:
    """Forward-backward consistency of one mask track over consecutive frames (our design).

    For every pair of frames ``(t, t+1)``: :func:`~rvoslib.models.flow.flow_consistency_loss`
    of frame ``t``'s prediction against frame ``t+1``'s warped back along ``flow_forward``, plus
    the reverse direction along ``flow_backward``, with the forward-backward occlusion check;
    averaged over the valid pairs. The logits are upsampled (bilinear) to the flow's size.
    Invalid pairs get a flow that leaves the frame, so the occlusion check drops all their
    pixels and they add exactly 0.

    Args:
        logits: ``(B, T, h, w)`` mask logits of the track (e.g. the referred query's).
        flow_forward: ``(B, T-1, 2, H, W)`` flow from frame ``t`` to ``t+1`` in pixels.
        flow_backward: ``(B, T-1, 2, H, W)`` flow from ``t+1`` to ``t``.
        pair_valid: ``(B, T-1)`` bool, pairs to count (``None``: all).
        kind: ``"l1"`` or ``"dice"``.

    Returns:
        Scalar float32.

    Raises:
        ValueError: shapes that do not fit, or an unknown ``kind``.

    Example:
        >>> logits = torch.randn(2, 3, 8, 8)  # the same mask ...
        >>> logits[:, 1:] = logits[:, :1]
        >>> still = torch.zeros(2, 2, 2, 8, 8)  # ... and no motion
        >>> round(referred_flow_loss(logits, still, still).item(), 6)
        0.0
    """
    check_tensor(logits, "logits", ("B", "T", "h", "w"), floating=True)
    batch, frames = logits.shape[:2]
    for name, flow in (("flow_forward", flow_forward), ("flow_backward", flow_backward)):
        check_tensor(flow, name, (batch, frames - 1, 2, "H", "W"), floating=True)
    if flow_backward.shape != flow_forward.shape:
        raise ValueError(
            f"flow_backward must have the shape of flow_forward {tuple(flow_forward.shape)}, "
            f"got {tuple(flow_backward.shape)}"
        )
    if pair_valid is None:
        pair_valid = torch.ones(batch, frames - 1, dtype=torch.bool, device=logits.device)
    check_tensor(pair_valid, "pair_valid", (batch, frames - 1), floating=False)
    if kind not in FLOW_LOSSES:
        raise ValueError(f"kind must be one of {FLOW_LOSSES}, got {kind!r}")
    height, width = flow_forward.shape[-2:]
    resized = resize_masks(logits, (height, width))  # (B, T, H, W)
    earlier = resized[:, :-1].flatten(0, 1)[:, None]
    later = resized[:, 1:].flatten(0, 1)[:, None]
    valid = pair_valid.bool().flatten()[:, None, None, None]
    away = float(height + width + 1)  # a flow that leaves the frame: everything occluded
    forward = torch.where(valid, flow_forward.float().flatten(0, 1), away)
    backward = torch.where(valid, flow_backward.float().flatten(0, 1), away)
    loss = flow_consistency_loss(earlier, later, forward, backward, kind)
    loss = loss + flow_consistency_loss(later, earlier, backward, forward, kind)
    return loss * valid.numel() / valid.sum().clamp_min(1)


def resize_masks(masks: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Bilinear resize of ``(..., h, w)`` float32 logits to ``(..., *size)``."""
    masks = masks.float()
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    flat = F.interpolate(masks.flatten(0, -3)[:, None], size=size, mode="bilinear")
    return flat[:, 0].view(*masks.shape[:-2], *size)
