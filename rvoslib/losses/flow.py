"""Forward-backward visual consistency along optical flow (LoSh's term, our design).

LoSh (Yuan et al., CVPR 2024) describes a forward-backward visual consistency loss that its
released code does not contain. rvoslib's version, documented as ours:

1. :class:`~rvoslib.models.flow.FlowEstimator` computes optical flow between an annotated
   frame ``t`` and a neighbour ``s`` in both directions with a frozen ``torchvision`` RAFT
   (``raft_small``), or the dataset provides precomputed flow.
2. :func:`warp` pulls the neighbour's mask probabilities onto frame ``t`` along the flow
   ``t -> s`` (backward warping with ``grid_sample``).
3. :func:`forward_backward_occlusion` flags pixels where the two flows disagree (occluded or
   badly estimated) or whose match leaves the frame.
4. :func:`flow_consistency_loss` is the masked L1 (or Dice) between the warped neighbour
   prediction and the prediction of frame ``t``.

Flow convention: ``flow[:, 0]`` is the horizontal displacement ``dx`` and ``flow[:, 1]`` the
vertical ``dy``, in pixels; the flow ``t -> s`` at pixel ``p`` of frame ``t`` points to its match
``p + flow(p)`` in frame ``s`` (RAFT's convention). Pixel ``(y, x)`` sits at integer coordinates
``(y, x)`` (its centre).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling

__all__ = [
    "FLOW_LOSSES",
    "FlowConsistencyLoss",
    "flow_consistency_loss",
    "forward_backward_occlusion",
    "referred_flow_loss",
    "resize_masks",
    "warp",
]

#: The kinds of consistency loss: masked L1 or Dice.
LOSS_KINDS = ("l1", "dice")
FLOW_LOSSES = LOSS_KINDS


def _check_flow(flow: object, name: str, like: torch.Tensor, like_name: str) -> None:
    check_tensor(flow, name, ("N", 2, "H", "W"), floating=True)
    expected = (like.shape[0], 2, *like.shape[-2:])
    if tuple(flow.shape) != expected:  # type: ignore[union-attr]
        raise ValueError(
            f"{name} must be {format_shape(expected)} to match {like_name} "
            f"{format_shape(like.shape)}, got {format_shape(flow.shape)}"  # type: ignore[union-attr]
        )


def _sample_coordinates(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each pixel's flow points: ``x + dx`` and ``y + dy``, each ``(N, H, W)``."""
    height, width = flow.shape[-2:]
    xs = torch.arange(width, device=flow.device, dtype=flow.dtype)
    ys = torch.arange(height, device=flow.device, dtype=flow.dtype)
    return xs.view(1, 1, width) + flow[:, 0], ys.view(1, height, 1) + flow[:, 1]


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warping: ``output(p) = x(p + flow(p))``, bilinear, zero outside the frame.

    Pixel ``(y, x)`` is at coordinates ``(y, x)``; the coordinates are normalised for
    ``grid_sample(align_corners=False)`` as ``(2x + 1) / W - 1``, which maps them back to the
    same pixel centres, so an integer flow moves pixels whole (up to the rounding of that
    normalisation: ~1e-7 relative in float32). Computed in float32 (float64 stays float64) and
    returned in ``x``'s dtype.

    Args:
        x: ``(N, C, H, W)`` float, e.g. the neighbour frame's mask probabilities.
        flow: ``(N, 2, H, W)`` float, ``(dx, dy)`` in pixels from the output frame to ``x``'s.

    Returns:
        ``(N, C, H, W)``: ``x`` sampled at ``p + flow(p)``.

    Raises:
        TypeError: ``x`` or ``flow`` is not a floating tensor.
        ValueError: wrong ranks, or ``flow`` is not ``(N, 2, H, W)`` with ``x``'s ``N, H, W``.

    Example:
        >>> x = torch.arange(12.0).view(1, 1, 3, 4)
        >>> flow = torch.zeros(1, 2, 3, 4)
        >>> flow[:, 0] = 1.0  # each pixel takes the value of its right neighbour
        >>> warp(x, flow)[0, 0].round(decimals=4)
        tensor([[ 1.,  2.,  3.,  0.],
                [ 5.,  6.,  7.,  0.],
                [ 9., 10., 11.,  0.]])
    """
    if not is_compiling():
        check_tensor(x, "x", ("N", "C", "H", "W"), floating=True)
        _check_flow(flow, "flow", x, "x")
    dtype = torch.promote_types(x.dtype, torch.float32)
    height, width = x.shape[-2:]
    sample_x, sample_y = _sample_coordinates(flow.to(dtype))
    grid = torch.stack([(2 * sample_x + 1) / width - 1, (2 * sample_y + 1) / height - 1], -1)
    warped = F.grid_sample(
        x.to(dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return warped.to(x.dtype)


def forward_backward_occlusion(
    flow_fw: torch.Tensor, flow_bw: torch.Tensor, alpha1: float = 0.01, alpha2: float = 0.5
) -> torch.Tensor:
    """Pixels whose forward and backward flows disagree, or whose match leaves the frame.

    With ``b(p) = flow_bw(p + flow_fw(p))`` (:func:`warp`), pixel ``p`` is occluded when
    ``|flow_fw + b|^2 > alpha1 (|flow_fw|^2 + |b|^2) + alpha2`` (the check of Sundaram et al.
    2010, used by UnFlow and most unsupervised-flow work), or when ``p + flow_fw(p)`` lies
    outside ``[0, W - 1] x [0, H - 1]``.

    Args:
        flow_fw: ``(N, 2, H, W)`` float, flow ``t -> s`` in pixels.
        flow_bw: ``(N, 2, H, W)`` float, flow ``s -> t``.
        alpha1: Tolerance relative to the flow magnitude.
        alpha2: Absolute tolerance in squared pixels.

    Returns:
        ``(N, 1, H, W)`` bool, true where frame ``t``'s pixel has no reliable match in ``s``.

    Raises:
        TypeError: a flow is not a floating tensor.
        ValueError: a flow is not ``(N, 2, H, W)`` or the shapes differ.

    Example:
        >>> fw = torch.zeros(1, 2, 2, 4)
        >>> fw[:, 0] = 1.0  # everything moves one pixel right ...
        >>> forward_backward_occlusion(fw, -fw)[0, 0]  # ... so the last column leaves
        tensor([[False, False, False,  True],
                [False, False, False,  True]])
    """
    if not is_compiling():
        check_tensor(flow_fw, "flow_fw", ("N", 2, "H", "W"), floating=True)
        _check_flow(flow_bw, "flow_bw", flow_fw, "flow_fw")
    dtype = torch.promote_types(flow_fw.dtype, torch.float32)
    forward = flow_fw.to(dtype)
    backward = warp(flow_bw.to(dtype), forward)
    mismatch = (forward + backward).square().sum(1)
    magnitude = forward.square().sum(1) + backward.square().sum(1)
    inconsistent = mismatch > alpha1 * magnitude + alpha2
    height, width = forward.shape[-2:]
    target_x, target_y = _sample_coordinates(forward)
    outside = (target_x < 0) | (target_x > width - 1) | (target_y < 0) | (target_y > height - 1)
    return (inconsistent | outside).unsqueeze(1)


def flow_consistency_loss(
    pred_t: torch.Tensor,
    pred_s: torch.Tensor,
    flow_t_to_s: torch.Tensor,
    flow_s_to_t: torch.Tensor,
    kind: str = "l1",
    alpha1: float = 0.01,
    alpha2: float = 0.5,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Masked L1 or Dice between frame ``t``'s prediction and its neighbour's, warped onto ``t``.

    ``P_t = sigmoid(pred_t)``, ``W = warp(sigmoid(pred_s), flow_t_to_s)`` and ``V`` = the pixels
    that :func:`forward_backward_occlusion` does not flag. Per pair ``i``:

    * ``"l1"``: ``sum(V |W - P_t|) / max(sum(V), 1)``;
    * ``"dice"``: ``1 - (2 sum(V W P_t) + smooth) / (sum(V W^2) + sum(V P_t^2) + smooth)``
      (the squared-denominator Dice of V-Net, so that equal soft predictions give exactly 0);

    averaged over the ``N`` pairs. Computed in float32; gradients reach both predictions.

    Args:
        pred_t: ``(N, 1, H, W)`` mask logits of the frame ``t``.
        pred_s: ``(N, 1, H, W)`` mask logits of its neighbour ``s``.
        flow_t_to_s: ``(N, 2, H, W)`` flow from ``t`` to ``s`` in pixels.
        flow_s_to_t: ``(N, 2, H, W)`` flow from ``s`` to ``t``.
        kind: ``"l1"`` or ``"dice"``.
        alpha1: Relative tolerance of the forward-backward check.
        alpha2: Absolute tolerance of the forward-backward check.
        smooth: Dice smoothing term.

    Returns:
        Scalar float32 loss, 0 when the warped neighbour prediction equals frame ``t``'s on
        every pixel that is not occluded.

    Raises:
        TypeError: an argument is not a floating tensor.
        ValueError: unknown ``kind``, or shapes that do not match.

    Example:
        >>> logits = torch.randn(2, 1, 8, 8)
        >>> still = torch.zeros(2, 2, 8, 8)
        >>> round(float(flow_consistency_loss(logits, logits, still, still)), 6)
        0.0
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"kind must be one of {LOSS_KINDS}, got {kind!r}")
    if not is_compiling():
        check_tensor(pred_t, "pred_t", ("N", 1, "H", "W"), floating=True)
        check_tensor(pred_s, "pred_s", ("N", 1, "H", "W"), floating=True)
        if pred_s.shape != pred_t.shape:
            raise ValueError(
                f"pred_s must have pred_t's shape {format_shape(pred_t.shape)}, "
                f"got {format_shape(pred_s.shape)}"
            )
        _check_flow(flow_t_to_s, "flow_t_to_s", pred_t, "pred_t")
        _check_flow(flow_s_to_t, "flow_s_to_t", pred_t, "pred_t")
    with torch.no_grad():
        occluded = forward_backward_occlusion(
            flow_t_to_s.detach().float(), flow_s_to_t.detach().float(), alpha1, alpha2
        )
    valid = (~occluded).float()
    probs_t = pred_t.float().sigmoid()
    warped = warp(pred_s.float().sigmoid(), flow_t_to_s.float())
    dims = (1, 2, 3)
    if kind == "l1":
        per_pair = (valid * (warped - probs_t).abs()).sum(dims) / valid.sum(dims).clamp_min(1.0)
    else:
        overlap = (valid * warped * probs_t).sum(dims)
        total = (valid * warped.square()).sum(dims) + (valid * probs_t.square()).sum(dims)
        per_pair = 1.0 - (2.0 * overlap + smooth) / (total + smooth)
    return per_pair.mean()


class FlowConsistencyLoss(nn.Module):
    """Module form of :func:`flow_consistency_loss` (same arguments, fixed at construction).

    Example:
        >>> loss = FlowConsistencyLoss(kind="dice")
        >>> logits, still = torch.randn(1, 1, 4, 4), torch.zeros(1, 2, 4, 4)
        >>> round(float(loss(logits, logits, still, still)), 6)
        0.0
    """

    def __init__(
        self, kind: str = "l1", alpha1: float = 0.01, alpha2: float = 0.5, smooth: float = 1.0
    ) -> None:
        super().__init__()
        if kind not in LOSS_KINDS:
            raise ValueError(f"kind must be one of {LOSS_KINDS}, got {kind!r}")
        self.kind, self.alpha1, self.alpha2, self.smooth = kind, alpha1, alpha2, smooth

    def forward(
        self,
        pred_t: torch.Tensor,
        pred_s: torch.Tensor,
        flow_t_to_s: torch.Tensor,
        flow_s_to_t: torch.Tensor,
    ) -> torch.Tensor:
        """See :func:`flow_consistency_loss`."""
        return flow_consistency_loss(
            pred_t,
            pred_s,
            flow_t_to_s,
            flow_s_to_t,
            self.kind,
            self.alpha1,
            self.alpha2,
            self.smooth,
        )


def referred_flow_loss(
    logits: torch.Tensor,
    flow_forward: torch.Tensor,
    flow_backward: torch.Tensor,
    pair_valid: torch.Tensor | None = None,
    kind: str = "l1",
) -> torch.Tensor:
    """Forward-backward consistency of one mask track over consecutive frames (our design).

    For every pair of frames ``(t, t+1)``: :func:`flow_consistency_loss`
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
