"""Text-conditioned dynamic mask kernels (CondInst / ReferFormer style) and the FPN head that
adds them to its logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, is_compiling
from rvoslib.models.heads.fpn import MultiScaleSegmentationHead, _resize
from rvoslib.models.positions import pixel_centres
from rvoslib.models.registry import HEADS
from rvoslib.models.text import TextFeatures

__all__ = ["DynamicMaskHead", "DynamicMaskKernels"]


class DynamicMaskKernels(nn.Module):
    """Text-conditioned dynamic mask kernels over fine features and relative coordinates.

    A query made from the sentence attends over the positions of the coarse (fused) map of each
    frame. The attention gives the referred object's expected location and a pooled feature,
    from which the weights of a small per-frame MLP (``1x1`` convolutions, as in CondInst and
    ReferFormer) are predicted. The MLP runs on the fine pixel features concatenated with every
    pixel's coordinates relative to that location, so it can keep the pixels of the one object
    the expression points at even when distractors look the same up close.

    Args:
        coarse_channels: Channels ``C`` of the coarse map.
        pixel_channels: Channels ``P`` of the fine pixel features.
        text_dim: Width ``D`` of the sentence feature.
        width: Width of the dynamic MLP's hidden layers.
        num_layers: Number of dynamic ``1x1`` convolutions (the last outputs one logit).

    Example:
        >>> kernels = DynamicMaskKernels(16, 8, 12, width=4)
        >>> kernels(torch.randn(2, 16, 4, 4), torch.randn(2, 8, 16, 16), torch.randn(2, 12)).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        coarse_channels: int,
        pixel_channels: int,
        text_dim: int,
        width: int = 8,
        num_layers: int = 3,
    ) -> None:
        super().__init__()
        if num_layers < 1 or width < 1:
            raise ValueError(f"num_layers and width must be >= 1, got {num_layers} and {width}")
        self.coarse_channels, self.pixel_channels = coarse_channels, pixel_channels
        self.query = nn.Linear(text_dim, coarse_channels)
        self.key = nn.Conv2d(coarse_channels, coarse_channels, kernel_size=1)
        self.value = nn.Conv2d(coarse_channels, coarse_channels, kernel_size=1)
        widths = [pixel_channels + 2] + [width] * (num_layers - 1) + [1]
        self.layer_shapes = list(zip(widths[1:], widths[:-1]))  # (out, in) per layer
        num_params = sum(out * (inp + 1) for out, inp in self.layer_shapes)
        self.controller = nn.Linear(coarse_channels + text_dim, num_params)

    def locate(self, coarse: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where the expression points in each frame, and the feature pooled there.

        Args:
            coarse: ``(N, C, h, w)`` coarse map.
            text: ``(N, D)`` sentence features.

        Returns:
            ``location (N, 2)``: the attention-weighted (y, x) in ``[0, 1]`` (pixel centres at
            ``(i + 0.5) / h``), and ``pooled (N, C)``: the attention-weighted values.
        """
        batch, channels, height, width = coarse.shape
        keys = self.key(coarse).flatten(2)  # (N, C, hw)
        scores = torch.einsum("nc,ncp->np", self.query(text), keys) * channels**-0.5
        weights = scores.softmax(dim=-1).view(batch, height, width)
        pooled = torch.einsum("np,ncp->nc", weights.flatten(1), self.value(coarse).flatten(2))
        ys = pixel_centres(height, coarse.device, weights.dtype)
        xs = pixel_centres(width, coarse.device, weights.dtype)
        location = torch.stack([(weights.sum(2) * ys).sum(1), (weights.sum(1) * xs).sum(1)], 1)
        return location, pooled

    def forward(
        self, coarse: torch.Tensor, pixels: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        """Predict one logit map per frame.

        Args:
            coarse: ``(N, C, h, w)`` coarse map (one frame per row).
            pixels: ``(N, P, H, W)`` fine pixel features.
            text: ``(N, D)`` sentence features.

        Returns:
            ``(N, 1, H, W)`` logits at the fine resolution.
        """
        if not is_compiling():
            check_tensor(coarse, "coarse", ("N", self.coarse_channels, "h", "w"), floating=True)
            check_tensor(pixels, "pixels", (coarse.shape[0], self.pixel_channels, "H", "W"))
            check_tensor(text, "text", (coarse.shape[0], self.query.in_features))
        batch = coarse.shape[0]
        location, pooled = self.locate(coarse, text)
        fine_h, fine_w = pixels.shape[-2:]
        fine_ys = pixel_centres(fine_h, coarse.device, pixels.dtype)
        fine_xs = pixel_centres(fine_w, coarse.device, pixels.dtype)
        rel_y = fine_ys[None, :, None] - location[:, 0, None, None].to(pixels.dtype)
        rel_x = fine_xs[None, None, :] - location[:, 1, None, None].to(pixels.dtype)
        hidden = torch.cat(
            [pixels, torch.stack([rel_y.expand(-1, -1, fine_w), rel_x.expand(-1, fine_h, -1)], 1)],
            dim=1,
        ).flatten(2)  # (N, P + 2, H*W)
        params = self.controller(torch.cat([pooled, text], dim=1)).to(pixels.dtype)
        offset = 0
        for index, (out_ch, in_ch) in enumerate(self.layer_shapes):
            weight = params[:, offset : offset + out_ch * in_ch].view(batch, out_ch, in_ch)
            offset += out_ch * in_ch
            bias = params[:, offset : offset + out_ch, None]
            offset += out_ch
            hidden = torch.baddbmm(bias, weight, hidden)
            if index < len(self.layer_shapes) - 1:
                hidden = F.relu(hidden)
        return hidden.view(batch, 1, fine_h, fine_w)


@HEADS.register("fpn_dynamic")
class DynamicMaskHead(MultiScaleSegmentationHead):
    """:class:`MultiScaleSegmentationHead` whose logits get those of
    :class:`DynamicMaskKernels` added (kernels predicted from the sentence and the fused map,
    run on the finest pyramid map with relative coordinates).

    Args:
        in_channels: Channels of the fused features.
        skip_channels: Channels of the finer levels, coarse to fine.
        text_dim: Width of the sentence feature.
        hidden_channels: Width of the pyramid.
        dropout: Dropout before the classifier.
        film: Modulate the pyramid by the sentence.
        dynamic_width: Width of the dynamic MLP's hidden layers.

    Example:
        >>> head = DynamicMaskHead(16, [8], text_dim=4, hidden_channels=8, dynamic_width=4)
        >>> text = TextFeatures(torch.randn(1, 4), torch.randn(1, 2, 4), torch.ones(1, 2).bool())
        >>> fused, skips = torch.randn(1, 2, 16, 4, 4), [torch.randn(1, 2, 8, 8, 8)]
        >>> head(fused, skips=skips, text=text, output_size=(32, 32)).shape
        torch.Size([1, 2, 1, 32, 32])
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: Sequence[int],
        text_dim: int,
        hidden_channels: int = 128,
        dropout: float = 0.1,
        film: bool = True,
        dynamic_width: int = 8,
    ) -> None:
        super().__init__(in_channels, skip_channels, text_dim, hidden_channels, dropout, film)
        self.dynamic = DynamicMaskKernels(
            in_channels, hidden_channels, text_dim, width=dynamic_width
        )

    def forward(
        self,
        fused: torch.Tensor,
        *,
        skips: Sequence[torch.Tensor],
        text: TextFeatures,
        output_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Like :meth:`MultiScaleSegmentationHead.forward` (same shapes)."""
        if not is_compiling():
            self._check(fused, skips, text)
        hidden = self.pyramid(fused, skips, text)
        sentence = text.sentence.repeat_interleave(fused.shape[1], dim=0)
        logits = self.classifier(self.dropout(hidden))
        logits = logits + self.dynamic(fused.flatten(0, 1), hidden, sentence)
        return _resize(logits, output_size).unflatten(0, fused.shape[:2])
