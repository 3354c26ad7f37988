"""Optical flow for LoSh's forward-backward visual consistency (our design).

LoSh (Yuan et al., CVPR 2024) describes a forward-backward visual consistency loss that its
released code does not contain. rvoslib's version, documented as ours:

1. :class:`FlowEstimator` computes optical flow between an annotated frame ``t`` and a
   neighbour ``s`` in both directions with a frozen ``torchvision`` RAFT (``raft_small``), or the
   dataset provides precomputed flow.
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

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling

__all__ = [
    "FlowConsistencyLoss",
    "FlowEstimator",
    "flow_consistency_loss",
    "forward_backward_occlusion",
    "warp",
]

#: ImageNet statistics of rvoslib's frames (a copy: models never import from ``data``).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
#: RAFT's correlation pyramid needs feature maps of at least 16 x 16 (images of 128 x 128).
RAFT_MIN_SIZE = 128
LOSS_KINDS = ("l1", "dice")


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


class FlowEstimator(nn.Module):
    """Frozen RAFT (``torchvision.models.optical_flow.raft_small``) on rvoslib's frames.

    Always in eval mode and without gradients. Frames come ImageNet-normalised (as rvoslib's
    datasets give them) and are mapped to RAFT's ``[-1, 1]`` range; their size is padded
    (replicating the border) to a multiple of 8 and at least :data:`RAFT_MIN_SIZE`, and the flow
    is cropped back. Runs in float32 even under autocast.

    Args:
        pretrained: Load torchvision's ``Raft_Small_Weights.DEFAULT`` (downloads once into the
            torch hub cache). ``False`` (default) keeps random weights.
        checkpoint_path: A local ``raft_small`` state dict (a plain ``state_dict``, or a dict
            with it under ``"state_dict"`` or ``"model"``; a ``"raft."`` key prefix is
            removed). Takes precedence over ``pretrained``; never downloads.
        num_flow_updates: RAFT's recurrent refinement steps (torchvision's default: 12).

    Raises:
        FileNotFoundError: ``checkpoint_path`` does not exist.
        ValueError: the file is not a ``raft_small`` state dict, or ``num_flow_updates < 1``.

    Example:
        >>> estimator = FlowEstimator(num_flow_updates=1)
        >>> frames = torch.randn(1, 3, 20, 28)
        >>> estimator(frames, frames).shape
        torch.Size([1, 2, 20, 28])
    """

    def __init__(
        self,
        pretrained: bool = False,
        checkpoint_path: str | Path | None = None,
        num_flow_updates: int = 12,
    ) -> None:
        super().__init__()
        from torchvision.models.optical_flow import Raft_Small_Weights, raft_small

        if num_flow_updates < 1:
            raise ValueError(f"num_flow_updates must be >= 1, got {num_flow_updates}")
        self.num_flow_updates = num_flow_updates
        use_hub = pretrained and checkpoint_path is None
        self.raft = raft_small(weights=Raft_Small_Weights.DEFAULT if use_hub else None)
        if checkpoint_path is not None:
            self._load_checkpoint(Path(checkpoint_path))
        self.raft.requires_grad_(False)
        self.raft.eval()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), False)

    def _load_checkpoint(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint_path {str(path)!r} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict):
            raise ValueError(
                f"checkpoint_path {str(path)!r} must hold a raft_small state dict, "
                f"got {type(state).__name__}"
            )
        if state and all(str(key).startswith("raft.") for key in state):
            state = {key[len("raft.") :]: value for key, value in state.items()}
        try:
            self.raft.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"checkpoint_path {str(path)!r} is not a raft_small state dict: {error}"
            ) from error

    def train(self, mode: bool = True) -> FlowEstimator:
        """Set the mode of the module; RAFT itself stays in eval mode (it is frozen)."""
        super().train(mode)
        self.raft.eval()
        return self

    def forward(self, frames: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Flow from ``frames`` to ``targets``.

        Args:
            frames: ``(N, 3, H, W)`` float, ImageNet-normalised source frames.
            targets: ``(N, 3, H, W)`` float, the frames the flow points into.

        Returns:
            ``(N, 2, H, W)`` float32 flow ``(dx, dy)`` in pixels, without gradient.

        Raises:
            TypeError: an input is not a floating tensor.
            ValueError: an input is not ``(N, 3, H, W)`` or the shapes differ.
        """
        if not is_compiling():
            check_tensor(frames, "frames", ("N", 3, "H", "W"), floating=True)
            check_tensor(targets, "targets", ("N", 3, "H", "W"), floating=True)
            if targets.shape != frames.shape:
                raise ValueError(
                    f"targets must have frames' shape {format_shape(frames.shape)}, "
                    f"got {format_shape(targets.shape)}"
                )
        height, width = frames.shape[-2:]
        padded_height = max(-(-height // 8) * 8, RAFT_MIN_SIZE)
        padded_width = max(-(-width // 8) * 8, RAFT_MIN_SIZE)
        padding = (0, padded_width - width, 0, padded_height - height)
        with torch.no_grad(), torch.autocast(frames.device.type, enabled=False):
            images = torch.cat([frames, targets]).float() * self.std + self.mean
            images = F.pad(images * 2.0 - 1.0, padding, mode="replicate")
            source, target = images.chunk(2)
            flow = self.raft(source, target, num_flow_updates=self.num_flow_updates)[-1]
        return flow[:, :, :height, :width]
