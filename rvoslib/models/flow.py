"""The frozen optical-flow estimator of LoSh's forward-backward visual consistency (our design).

The consistency loss itself (:func:`~rvoslib.losses.flow.warp`,
:func:`~rvoslib.losses.flow.forward_backward_occlusion`,
:func:`~rvoslib.losses.flow.flow_consistency_loss`) lives in :mod:`rvoslib.losses.flow` and is
re-exported here. :class:`FlowEstimator` is registered in ``FLOW_ESTIMATORS`` as ``"raft"``: the
LoSh criterion builds it from its ``flow_estimator`` spec for batches without flow.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.losses.flow import (
    FlowConsistencyLoss,
    flow_consistency_loss,
    forward_backward_occlusion,
    warp,
)
from rvoslib.losses.registry import FLOW_ESTIMATORS

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


@FLOW_ESTIMATORS.register("raft")
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
