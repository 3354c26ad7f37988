"""ReferFormer's mask side: the CondInst dynamic mask head (and, re-exported, the cross-modal
FPN pixel decoder of :mod:`rvoslib.models.heads.cross_modal_fpn`).

* :class:`~rvoslib.models.heads.cross_modal_fpn.CrossModalFPNDecoder` (``PIXEL_DECODERS``
  ``"cross_modal_fpn"``, ReferFormer's ``CrossModalFPNDecoder``).
* :class:`CondInstMaskHead` (``MASK_HEADS`` ``"condinst"``): a controller MLP turns each query
  into the weights of a small per-query network of ``1x1`` convolutions (CondInst, Tian et al.
  ECCV 2020) that runs on the pixel features concatenated with two channels of coordinates
  relative to the query's reference point in its frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, is_compiling
from rvoslib.models.heads.cross_modal_fpn import CrossModalFPNDecoder, VisionLanguageBlock
from rvoslib.models.positions import pixel_centres
from rvoslib.models.registry import MASK_HEADS
from rvoslib.models.transformer.referformer import MLP

__all__ = [
    "COORDINATE_UNITS",
    "CondInstMaskHead",
    "CrossModalFPNDecoder",
    "VisionLanguageBlock",
    "relative_coordinates",
]


#: Units of CondInst's relative coordinates: ``"image"`` (rvoslib's: fractions of the image,
#: ``x_ref - (j + 0.5) / w``) or ``"pixels"`` (ReferFormer's and SOC's released code: input
#: pixels, ``x_ref * W - (stride * j + stride // 2)``).
COORDINATE_UNITS = ("image", "pixels")


def relative_coordinates(
    reference_points: torch.Tensor,
    size: tuple[int, int],
    units: str = "image",
    image_size: tuple[int, int] | None = None,
    stride: int = 4,
) -> torch.Tensor:
    """Each pixel's offset from a reference point, in units of the image or in input pixels.

    ``units="image"``: channel 0 is ``x_ref - (j + 0.5) / w``, channel 1 ``y_ref - (i + 0.5) /
    h`` (the sign of ReferFormer's ``reference - location``). ``units="pixels"`` (the released
    code): channel 0 is ``x_ref * W - (stride * j + stride // 2)``, channel 1 likewise with
    ``H``, where ``(H, W)`` is the input image's size.

    Args:
        reference_points: ``(..., 2)`` float points ``(x, y)`` in ``[0, 1]``.
        size: ``(h, w)`` of the map.
        units: One of :data:`COORDINATE_UNITS`.
        image_size: ``(H, W)`` of the input images (``units="pixels"``; default ``(stride * h,
            stride * w)``).
        stride: Input pixels per map pixel (``units="pixels"``).

    Returns:
        ``(..., 2, h, w)``.

    Raises:
        ValueError: ``units`` is not one of :data:`COORDINATE_UNITS`.

    Example:
        >>> relative_coordinates(torch.tensor([0.5, 0.5]), (1, 2)).tolist()
        [[[0.25, -0.25]], [[0.0, 0.0]]]
        >>> relative_coordinates(torch.tensor([0.5, 0.5]), (1, 2), "pixels").tolist()
        [[[2.0, -2.0]], [[0.0, 0.0]]]
    """
    if units not in COORDINATE_UNITS:
        raise ValueError(f"units must be one of {COORDINATE_UNITS}, got {units!r}")
    height, width = size
    device, dtype = reference_points.device, reference_points.dtype
    ref_x, ref_y = reference_points[..., 0, None], reference_points[..., 1, None]
    if units == "pixels":
        image_h, image_w = (height * stride, width * stride) if image_size is None else image_size
        xs = torch.arange(width, device=device, dtype=dtype) * stride + stride // 2
        ys = torch.arange(height, device=device, dtype=dtype) * stride + stride // 2
        ref_x, ref_y = ref_x * image_w, ref_y * image_h
    else:
        xs, ys = pixel_centres(width, device, dtype), pixel_centres(height, device, dtype)
    shape = (*reference_points.shape[:-1], height, width)
    rel_x = (ref_x - xs)[..., None, :].expand(shape)
    rel_y = (ref_y - ys)[..., :, None].expand(shape)
    return torch.stack([rel_x, rel_y], -3)


@MASK_HEADS.register("condinst")
class CondInstMaskHead(nn.Module):
    """Dynamic ``1x1`` convolutions predicted per query (ReferFormer's and SOC's mask head).

    Layer widths ``(P + 2) -> hidden -> ... -> hidden -> 1`` (``num_layers`` convolutions, ReLU
    between them; ReferFormer and SOC: 3 layers, ``hidden_channels`` 8). The controller is a
    ``controller_layers``-layer MLP from the query (Xavier weights, zero biases, as released);
    its output holds all weights, then all biases.

    Args:
        query_dim: Width ``D`` of the queries.
        pixel_channels: Channels ``P`` of the pixel features.
        hidden_channels: Width of the dynamic layers.
        num_layers: Number of dynamic convolutions.
        controller_layers: Layers of the controller MLP.
        relative_coordinates: Add the 2 relative-coordinate channels.
        coordinates: Their units, one of :data:`COORDINATE_UNITS` (``"image"``: rvoslib's;
            ``"pixels"``: input pixels, as ReferFormer's and SOC's released code).
        stride: Input pixels per pixel-feature pixel (``coordinates="pixels"``; ReferFormer 4).

    Raises:
        ValueError: a size below 1 or an unknown ``coordinates`` (named).

    Example:
        >>> head = CondInstMaskHead(query_dim=16, pixel_channels=4)
        >>> queries, pixels = torch.randn(2, 1, 3, 5, 16), torch.randn(1, 3, 4, 8, 8)
        >>> head(queries, pixels, reference_points=torch.rand(2, 1, 3, 5, 2)).shape
        torch.Size([2, 1, 3, 5, 8, 8])
    """

    def __init__(
        self,
        query_dim: int,
        pixel_channels: int,
        hidden_channels: int = 8,
        num_layers: int = 3,
        controller_layers: int = 3,
        relative_coordinates: bool = True,
        coordinates: str = "image",
        stride: int = 4,
    ) -> None:
        super().__init__()
        if coordinates not in COORDINATE_UNITS:
            raise ValueError(f"coordinates must be one of {COORDINATE_UNITS}, got {coordinates!r}")
        if min(query_dim, pixel_channels, hidden_channels, num_layers, controller_layers) < 1:
            raise ValueError(
                "query_dim, pixel_channels, hidden_channels, num_layers and controller_layers "
                f"must be >= 1, got {query_dim}, {pixel_channels}, {hidden_channels}, "
                f"{num_layers}, {controller_layers}"
            )
        self.query_dim, self.pixel_channels = query_dim, pixel_channels
        self.use_coordinates = relative_coordinates
        self.coordinates, self.stride = coordinates, int(stride)
        inputs = pixel_channels + (2 if relative_coordinates else 0)
        widths = [inputs] + [hidden_channels] * (num_layers - 1) + [1]
        self.layer_shapes = list(zip(widths[1:], widths[:-1]))  # (out, in) per layer
        self.weight_sizes = [out * inp for out, inp in self.layer_shapes]
        self.bias_sizes = [out for out, _ in self.layer_shapes]
        self.num_params = sum(self.weight_sizes) + sum(self.bias_sizes)
        self.controller = MLP(query_dim, query_dim, self.num_params, controller_layers)
        for layer in self.controller.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        queries: torch.Tensor,
        pixels: torch.Tensor,
        reference_points: torch.Tensor | None = None,
        image_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Mask logits of every query in its frame.

        Args:
            queries: ``(Ly, B, T, N, D)`` float.
            pixels: ``(B, T, P, h, w)`` float pixel features.
            reference_points: ``(Ly, B, T, N, 2)`` points ``(x, y)`` in ``[0, 1]`` (ReferFormer:
                the centre of the box refined by decoder layer ``l``); ``None``: the image
                centre for every query.
            image_size: ``(H, W)`` of the input frames, for ``coordinates="pixels"``
                (default: ``stride`` times the pixel features' size).

        Returns:
            ``(Ly, B, T, N, h, w)`` logits.
        """
        if not is_compiling():
            self._check(queries, pixels, reference_points)
        channels, (height, width) = self.pixel_channels, pixels.shape[-2:]
        params = self.controller(queries).to(pixels.dtype)  # (Ly, B, T, N, num_params)
        pieces = params.split(self.weight_sizes + self.bias_sizes, dim=-1)
        weights = [w.unflatten(-1, shape) for w, shape in zip(pieces, self.layer_shapes)]
        biases = pieces[len(self.layer_shapes) :]
        first = weights[0]
        # layer 0 on [pixels, coordinates] without building the concatenation per query
        hidden = torch.einsum("lbtnoc,btck->lbtnok", first[..., :channels], pixels.flatten(3))
        if self.use_coordinates:
            if reference_points is None:
                reference_points = queries.new_full((*queries.shape[:4], 2), 0.5)
            coords = relative_coordinates(
                reference_points.to(pixels.dtype), (height, width), self.coordinates, image_size,
                self.stride,
            )  # fmt: skip
            hidden = hidden + torch.einsum(
                "lbtnoc,lbtnck->lbtnok", first[..., channels:], coords.flatten(-2)
            )
        hidden = hidden + biases[0][..., None]
        for weight, bias in zip(weights[1:], biases[1:]):
            hidden = torch.einsum("lbtnoi,lbtnik->lbtnok", weight, F.relu(hidden)) + bias[..., None]
        return hidden[..., 0, :].unflatten(-1, (height, width))

    def _check(
        self, queries: torch.Tensor, pixels: torch.Tensor, reference_points: torch.Tensor | None
    ) -> None:
        queries = check_tensor(
            queries, "queries", ("Ly", "B", "T", "N", self.query_dim), floating=True
        )
        batch, frames = queries.shape[1:3]
        check_tensor(
            pixels, "pixels", (batch, frames, self.pixel_channels, "h", "w"), floating=True
        )
        if reference_points is not None:
            check_tensor(
                reference_points, "reference_points", (*queries.shape[:4], 2), floating=True
            )
