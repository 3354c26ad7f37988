"""Segmentation heads: from fused features to mask logits at the input resolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, is_compiling
from rvoslib.models.fusion import _pixel_centres

__all__ = ["DynamicMaskKernels", "MultiScaleSegmentationHead", "SegmentationHead", "TopDownNeck"]


def _conv_bn_gelu(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.GELU(),
    )


class TopDownNeck(nn.Module):
    """Merge the coarsest level into the next finer one (one FPN top-down step).

    Fusing text at the merged level keeps the coarse level's large receptive field (shape) at
    twice the resolution, so that neighbouring objects fall into different cells.

    Args:
        fine_channels: Channels of the finer level (e.g. stride 8).
        coarse_channels: Channels of the coarsest level (e.g. stride 16).
        out_channels: Channels of the merged map.

    Example:
        >>> neck = TopDownNeck(8, 16, 12)
        >>> neck(torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)).shape
        torch.Size([2, 12, 8, 8])
    """

    def __init__(self, fine_channels: int, coarse_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fine_channels, self.coarse_channels = fine_channels, coarse_channels
        self.out_channels = out_channels
        self.fine = nn.Conv2d(fine_channels, out_channels, kernel_size=1)
        self.coarse = nn.Conv2d(coarse_channels, out_channels, kernel_size=1)
        self.smooth = _conv_bn_gelu(out_channels, out_channels)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """``fine (N, C_f, h, w)``, ``coarse (N, C_c, h', w')`` -> ``(N, out_channels, h, w)``."""
        if not is_compiling():
            check_tensor(fine, "fine", ("N", self.fine_channels, "h", "w"), floating=True)
            check_tensor(coarse, "coarse", (fine.shape[0], self.coarse_channels, "h", "w"))
        upsampled = F.interpolate(
            self.coarse(coarse), size=fine.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.smooth(self.fine(fine) + upsampled)


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
        ys = _pixel_centres(height, coarse.device, weights.dtype)
        xs = _pixel_centres(width, coarse.device, weights.dtype)
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
        fine_ys = _pixel_centres(fine_h, coarse.device, pixels.dtype)
        fine_xs = _pixel_centres(fine_w, coarse.device, pixels.dtype)
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


def _film(features: torch.Tensor, parameters: torch.Tensor) -> torch.Tensor:
    """``features * (1 + scale) + shift`` with ``(N, 2C)`` parameters split per channel."""
    scale, shift = parameters[..., None, None].chunk(2, dim=1)
    return features * (1 + scale) + shift


class SegmentationHead(nn.Module):
    """The reference head: ``3x3 conv -> BatchNorm -> GELU -> Dropout -> 1x1 conv``, upsampled.

    Logits are upsampled bilinearly to exactly ``output_size``, so inputs whose sides are not
    multiples of the stride (e.g. 97x131) come back at their own size.

    Args:
        in_channels: Channels of the fused features.
        hidden_channels: Width of the 3x3 convolution.
        dropout: Dropout before the classifier.

    Example:
        >>> head = SegmentationHead(16, hidden_channels=8)
        >>> head(torch.randn(2, 16, 4, 5), output_size=(97, 131)).shape
        torch.Size([2, 1, 97, 131])
    """

    uses_skips = False
    uses_images = False

    def __init__(self, in_channels: int, hidden_channels: int = 256, dropout: float = 0.3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.block = _conv_bn_gelu(in_channels, hidden_channels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(hidden_channels, 1, kernel_size=1)

    def forward(
        self,
        fused: torch.Tensor,
        skips: Sequence[torch.Tensor] = (),
        output_size: tuple[int, int] | None = None,
        text: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict mask logits.

        Args:
            fused: ``(N, C, h, w)`` fused features.
            skips: Unused (for interface compatibility with the multi-scale head).
            output_size: ``(H, W)`` of the logits; defaults to the feature size.
            text: Unused.
            images: Unused.

        Returns:
            ``(N, 1, H, W)`` logits.
        """
        if not is_compiling():
            check_tensor(fused, "fused", ("N", self.in_channels, "h", "w"), floating=True)
        logits = self.classifier(self.dropout(self.block(fused)))
        if output_size is not None and tuple(logits.shape[-2:]) != tuple(output_size):
            logits = F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
        return logits


class MultiScaleSegmentationHead(nn.Module):
    """FPN-style head that refines the fused map with the backbone's finer levels.

    Starting from the fused (coarse) map, each step upsamples, adds a 1x1 lateral projection of
    the next finer backbone level (e.g. strides 16, 8, 4) and smooths with a 3x3 conv. When
    ``text_dim`` is set, the sentence feature modulates the top map and every lateral (FiLM:
    per-channel scale and shift), so that features computed after the fusion (motion from the
    temporal module) and the fine levels are matched against the expression. Logits are predicted
    at the finest level and upsampled to ``output_size``.

    Args:
        in_channels: Channels of the fused features.
        skip_channels: Channels of the finer backbone levels, coarse to fine.
        hidden_channels: Width of the pyramid.
        dropout: Dropout before the classifier.
        text_dim: Width of the sentence feature for FiLM modulation, or ``None``.
        upsample: ``"bilinear"`` upsamples one logit map from the finest level;
            ``"pixel_shuffle"`` predicts ``upsample_factor**2`` sub-pixel logits per cell and
            rearranges them to full resolution (learned, sharper boundaries, nearly free).
        upsample_factor: Stride of the finest level (for ``"pixel_shuffle"``).
        image_channels: When > 0, a light full-resolution branch (``3x3 conv`` on the input
            frames) is merged with the upsampled pyramid before the classifier, which sharpens
            mask boundaries; ``forward`` then needs ``images``.

    Example:
        >>> head = MultiScaleSegmentationHead(16, [12, 8], hidden_channels=8)
        >>> skips = [torch.randn(2, 12, 8, 8), torch.randn(2, 8, 16, 16)]
        >>> head(torch.randn(2, 16, 4, 4), skips, output_size=(64, 64)).shape
        torch.Size([2, 1, 64, 64])
    """

    uses_skips = True

    def __init__(
        self,
        in_channels: int,
        skip_channels: Sequence[int],
        hidden_channels: int = 128,
        dropout: float = 0.1,
        text_dim: int | None = None,
        image_channels: int = 0,
        upsample: str = "bilinear",
        upsample_factor: int = 4,
        dynamic_width: int = 0,
    ) -> None:
        super().__init__()
        if upsample not in ("bilinear", "pixel_shuffle"):
            raise ValueError(f"upsample must be 'bilinear' or 'pixel_shuffle', got {upsample!r}")
        if dynamic_width > 0 and (text_dim is None or upsample != "bilinear"):
            raise ValueError(
                "dynamic_width > 0 needs text_dim and upsample='bilinear', got "
                f"text_dim={text_dim} and upsample={upsample!r}"
            )
        if upsample == "pixel_shuffle" and image_channels > 0:
            raise ValueError("upsample='pixel_shuffle' and image_channels > 0 cannot be combined")
        self.upsample = upsample
        self.upsample_factor = upsample_factor if upsample == "pixel_shuffle" else 1
        self.in_channels = in_channels
        self.image_channels = image_channels
        self.skip_channels = list(skip_channels)
        self.top = _conv_bn_gelu(in_channels, hidden_channels, 1)
        self.laterals = nn.ModuleList(
            nn.Conv2d(c, hidden_channels, kernel_size=1) for c in self.skip_channels
        )
        self.smooth = nn.ModuleList(
            _conv_bn_gelu(hidden_channels, hidden_channels) for _ in self.skip_channels
        )
        self.film = None
        if text_dim is not None:  # one FiLM for the top (fused) map, one per lateral
            self.film = nn.ModuleList(
                nn.Linear(text_dim, 2 * hidden_channels) for _ in range(len(self.skip_channels) + 1)
            )
        self.image_branch = None
        if image_channels > 0:
            self.image_branch = _conv_bn_gelu(3, image_channels)
            self.image_merge = _conv_bn_gelu(hidden_channels + image_channels, hidden_channels)
        self.dynamic = None
        if dynamic_width > 0:
            self.dynamic = DynamicMaskKernels(
                in_channels, hidden_channels, text_dim, width=dynamic_width
            )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(hidden_channels, self.upsample_factor**2, kernel_size=1)

    @property
    def uses_images(self) -> bool:
        """Whether ``forward`` needs the input frames."""
        return self.image_branch is not None

    def forward(
        self,
        fused: torch.Tensor,
        skips: Sequence[torch.Tensor] = (),
        output_size: tuple[int, int] | None = None,
        text: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict mask logits.

        Args:
            fused: ``(N, C, h, w)`` fused (coarsest) features.
            skips: Finer backbone levels, coarse to fine, ``(N, C_i, h_i, w_i)``.
            output_size: ``(H, W)`` of the logits; defaults to the finest level's size.
            text: ``(N, text_dim)`` sentence features (required when ``text_dim`` was set).
            images: ``(N, 3, H, W)`` input frames (required when ``image_channels > 0``).

        Returns:
            ``(N, 1, H, W)`` logits.
        """
        if not is_compiling():
            check_tensor(fused, "fused", ("N", self.in_channels, "h", "w"), floating=True)
            if len(skips) != len(self.skip_channels):
                raise ValueError(
                    f"skips must hold {len(self.skip_channels)} maps with channels "
                    f"{self.skip_channels}, got {len(skips)}"
                )
            for i, (skip, channels) in enumerate(zip(skips, self.skip_channels)):
                check_tensor(skip, f"skips[{i}]", (fused.shape[0], channels, "h", "w"))
            if self.film is not None and text is None:
                raise ValueError("text (N, text_dim) is required: the head was built with text_dim")
            if self.image_branch is not None:
                check_tensor(images, "images", (fused.shape[0], 3, "H", "W"), floating=True)
        hidden = self.top(fused)
        if self.film is not None:
            hidden = _film(hidden, self.film[0](text))
        for i, skip in enumerate(skips):
            lateral = self.laterals[i](skip)
            if self.film is not None:
                lateral = _film(lateral, self.film[i + 1](text))
            hidden = F.interpolate(
                hidden, size=skip.shape[-2:], mode="bilinear", align_corners=False
            )
            hidden = self.smooth[i](hidden + lateral)
        if self.image_branch is not None:
            hidden = F.interpolate(
                hidden, size=images.shape[-2:], mode="bilinear", align_corners=False
            )
            hidden = self.image_merge(torch.cat([hidden, self.image_branch(images)], dim=1))
        logits = self.classifier(self.dropout(hidden))
        if self.dynamic is not None:
            logits = logits + self.dynamic(fused, hidden, text)
        if self.upsample_factor > 1:
            logits = F.pixel_shuffle(logits, self.upsample_factor)
            height, width = output_size if output_size is not None else logits.shape[-2:]
            if logits.shape[-2] >= height and logits.shape[-1] >= width:
                return logits[..., :height, :width]  # strided convs align cells top-left
        if output_size is not None and tuple(logits.shape[-2:]) != tuple(output_size):
            logits = F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
        return logits
