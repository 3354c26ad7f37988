"""ReferFormer's deformable transformer with early vision-language fusion, and SOC's variant.

ReferFormer (Wu et al., CVPR 2022; released ``models/referformer.py`` and
``models/deformable_transformer.py``) runs a Deformable-DETR encoder/decoder over every frame of
a clip, the frames batched as ``B * T`` images:

1. each backbone level is projected to ``d_model`` (1x1 conv + GroupNorm); extra coarser levels
   come from 3x3 stride-2 convolutions (the first on the last backbone level, the next on the
   previous extra level);
2. **early fusion** at every level: ``v <- v * MHA(q=v, k=text + pos, v=text)``, one attention
   shared by all levels, the text keys with a 1D sine position (``fusion="multiplicative"``).
   SOC replaces it with its bidirectional fusion, where the text also attends to the visual
   tokens (``fusion="bidirectional"``,
   :class:`~rvoslib.models.fusion.mmf.BidirectionalMultimodalFusion`);
3. a :class:`~rvoslib.models.transformer.DeformableEncoder` over all levels of each frame
   (2D sine positions plus the encoder's level embeddings);
4. a :class:`~rvoslib.models.transformer.DeformableDecoder` with ``N`` queries per frame: query
   ``n`` has the same learned position in every frame, so it is one object track; its content
   is the sentence embedding (ReferFormer, ``query_content="sentence"``) or zeros (SOC,
   ``query_content="zero"``); its first reference point is ``sigmoid(Linear(position))``;
   boxes are refined layer by layer (one 3-layer MLP per decoder layer).

Registered as ``TRANSFORMERS`` ``"deformable_referformer"`` (ReferFormer's defaults) and
``"deformable_soc"`` (SOC's: 3/3 layers, 20 zero-content queries, bidirectional fusion).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.models.fusion import mmf
from rvoslib.models.fusion.mmf import BidirectionalMultimodalFusion, check_text_positions
from rvoslib.models.registry import TRANSFORMERS
from rvoslib.models.text import TextFeatures
from rvoslib.models.transformer.deformable_transformer import DeformableDecoder, DeformableEncoder
from rvoslib.models.transformer.levels import flatten_levels, inverse_sigmoid, split_levels

__all__ = ["MLP", "ReferFormerTransformer", "SOCTransformer"]

FUSIONS = ("multiplicative", "bidirectional", "none")
QUERY_CONTENTS = ("sentence", "zero")


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (DETR's box MLP). Example:
    >>> MLP(8, 16, 4, num_layers=3)(torch.randn(2, 8)).shape
    torch.Size([2, 4])
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        widths = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_dim)`` -> ``(..., out_dim)``."""
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def _projection(in_channels: int, dim: int, kernel_size: int = 1, stride: int = 1) -> nn.Module:
    conv = nn.Conv2d(in_channels, dim, kernel_size, stride=stride, padding=kernel_size // 2)
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.GroupNorm(math.gcd(32, dim), dim))


@TRANSFORMERS.register("deformable_referformer")
class ReferFormerTransformer(nn.Module):
    """Early fusion + deformable encoder + deformable decoder with box refinement.

    Args:
        visual_channels: Channels of the backbone levels it takes, fine to coarse (ReferFormer:
            the levels at strides 8, 16 and 32).
        text_dim: Width of the text features; projected to ``d_model`` (Linear + LayerNorm)
            when it differs.
        d_model: Width ``D`` of every token and query.
        num_queries: Queries per frame ``N`` (ReferFormer 5, SOC 20).
        num_levels: Levels of the encoder, ``>= len(visual_channels)``; the extra ones are made
            by stride-2 convolutions (ReferFormer and SOC: 4, one extra level at stride 64).
        num_encoder_layers: Deformable encoder layers (ReferFormer 4, SOC 3).
        num_decoder_layers: Deformable decoder layers ``Ly`` (ReferFormer 4, SOC 3).
        num_heads: Heads of every attention (8).
        num_points: Sampling points per head and level (4).
        ffn_dim: Hidden width of the FFNs (2048).
        dropout: Dropout of the encoder and decoder (0.1).
        fusion: ``"multiplicative"`` (ReferFormer), ``"bidirectional"`` (SOC) or ``"none"``.
        query_content: ``"sentence"`` (ReferFormer) or ``"zero"`` (SOC).
        text_level: With ``fusion="bidirectional"``, the backbone level the text attends to
            (default: the last one, SOC's stride-32 level).
        text_positions: Text key positions of the early fusion: ``"centred"`` (rvoslib's
            ``(k - 0.5) / n``) or ``"original"`` (the released code's ``k / n``).

    Attributes:
        d_model, num_queries, num_layers: ``D``, ``N`` and ``Ly``.
        box_heads: One box MLP per decoder layer (iterative refinement).

    Raises:
        ValueError: a bad option or size (named).

    Example:
        >>> transformer = ReferFormerTransformer([8, 16], text_dim=12, d_model=16, num_queries=3,
        ...     num_levels=3, num_encoder_layers=1, num_decoder_layers=2, num_heads=2,
        ...     num_points=2, ffn_dim=32)
        >>> levels = [torch.randn(1, 2, 8, 8, 8), torch.randn(1, 2, 16, 4, 4)]
        >>> text = TextFeatures(torch.randn(1, 12), torch.randn(1, 3, 12), torch.ones(1, 3).bool())
        >>> out = transformer(levels, text)
        >>> out["queries"].shape, out["boxes"].shape, [m.shape[-1] for m in out["memory"]]
        (torch.Size([2, 1, 2, 3, 16]), torch.Size([2, 1, 2, 3, 4]), [8, 4, 2])
    """

    def __init__(
        self,
        visual_channels: Sequence[int],
        text_dim: int,
        d_model: int = 256,
        num_queries: int = 5,
        num_levels: int = 4,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        fusion: str = "multiplicative",
        query_content: str = "sentence",
        text_level: int | None = None,
        text_positions: str = "centred",
    ) -> None:
        super().__init__()
        self.text_positions = check_text_positions(text_positions)
        channels = [int(c) for c in visual_channels]
        if not channels or min(channels) < 1 or text_dim < 1:
            raise ValueError(
                f"visual_channels must be positive ints (one per level) and text_dim >= 1, got "
                f"{list(visual_channels)} and {text_dim}"
            )
        if num_levels < len(channels):
            raise ValueError(
                f"num_levels ({num_levels}) must be >= the number of visual levels "
                f"({len(channels)})"
            )
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if query_content not in QUERY_CONTENTS:
            raise ValueError(
                f"query_content must be one of {QUERY_CONTENTS}, got {query_content!r}"
            )
        if num_queries < 1 or d_model % num_heads or d_model % 4:
            raise ValueError(
                f"num_queries must be >= 1 and num_heads must divide d_model (a multiple of 4), "
                f"got num_queries={num_queries}, d_model={d_model}, num_heads={num_heads}"
            )
        self.visual_channels, self.text_dim = channels, int(text_dim)
        self.d_model, self.num_queries, self.num_levels = d_model, num_queries, num_levels
        self.num_layers, self.fusion, self.query_content = num_decoder_layers, fusion, query_content
        self.input_proj = nn.ModuleList(_projection(c, d_model) for c in channels)
        extra_inputs = [channels[-1]] + [d_model] * (num_levels - len(channels) - 1)
        self.extra_proj = nn.ModuleList(
            _projection(c, d_model, 3, 2) for c in extra_inputs[: num_levels - len(channels)]
        )
        self.text_proj = (
            nn.Identity()
            if text_dim == d_model
            else nn.Sequential(nn.Linear(text_dim, d_model), nn.LayerNorm(d_model))
        )
        self.early_fusion: nn.Module | None = None
        if fusion == "multiplicative":
            self.early_fusion = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        elif fusion == "bidirectional":
            level = len(channels) - 1 if text_level is None else int(text_level)
            if not -len(channels) <= level < len(channels):
                raise ValueError(
                    f"text_level must index the {len(channels)} visual levels, got {text_level}"
                )
            self.early_fusion = BidirectionalMultimodalFusion(
                d_model, d_model, dim=d_model, num_heads=num_heads, text_levels=[level],
                text_positions=text_positions,
            )  # fmt: skip
        layer_options: dict[str, Any] = {
            "dim": d_model, "num_heads": num_heads, "num_levels": num_levels,
            "num_points": num_points, "ffn_dim": ffn_dim, "dropout": dropout,
        }  # fmt: skip
        self.encoder = DeformableEncoder(num_encoder_layers, **layer_options)
        self.decoder = DeformableDecoder(num_decoder_layers, **layer_options)
        self.query_embed = nn.Embedding(num_queries, d_model)
        self.reference_points = nn.Linear(d_model, 2)
        nn.init.xavier_uniform_(self.reference_points.weight)
        nn.init.zeros_(self.reference_points.bias)
        self.box_heads = nn.ModuleList(
            MLP(d_model, d_model, 4, 3) for _ in range(num_decoder_layers)
        )
        for head in self.box_heads:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)
        nn.init.constant_(self.box_heads[0].layers[-1].bias[2:], -2.0)  # first boxes ~0.12 wide

    def forward(self, levels: Sequence[torch.Tensor], text: TextFeatures) -> dict[str, Any]:
        """Fuse, encode and decode.

        Args:
            levels: ``len(visual_channels)`` maps ``(B, T, C_i, h_i, w_i)`` float, fine to
                coarse.
            text: :class:`TextFeatures` with ``sentence (B, text_dim)``, ``tokens (B, L,
                text_dim)`` and ``mask (B, L)`` bool (each text with at least one real token).

        Returns:
            A dict with ``queries`` ``(Ly, B, T, N, D)`` (every decoder layer), ``boxes``
            ``(Ly, B, T, N, 4)`` normalised ``(cx, cy, w, h)``, ``references`` ``(Ly, B, T, N,
            4)`` (the refined boxes after each layer, detached: the reference of the next
            layer and of the mask head), ``initial_reference`` ``(B, T, N, 2)`` (the first
            layer's reference points), ``memory`` (``num_levels`` encoded maps ``(B, T, D,
            h_i, w_i)``, the visual levels first) and ``text`` (:class:`TextFeatures` at width
            ``D``; with bidirectional fusion its tokens are the fused text, zero at padding).
        """
        if not is_compiling():
            self._check(levels, text)
        batch, frames = levels[0].shape[:2]
        projected = [
            proj(level.flatten(0, 1)) for proj, level in zip(self.input_proj, levels)
        ]  # (B*T, D, h_i, w_i)
        source = levels[-1].flatten(0, 1)
        for proj in self.extra_proj:
            source = proj(source)
            projected.append(source)
        sentence, tokens, mask = (
            self.text_proj(text.sentence),
            self.text_proj(text.tokens),
            text.mask.bool(),
        )
        fused, tokens = self._fuse(projected, tokens, mask, batch, frames)
        flat, shapes = flatten_levels(fused)  # (B*T, S, D)
        positions = torch.cat(
            [mmf._visual_positions(h, w, self.d_model, flat.device) for h, w in shapes]
        ).to(flat.dtype)
        memory = self.encoder(flat, shapes, positions[None].expand_as(flat))
        # one position per query, in every frame (repeat: FlopCounterMode rejects views)
        query_pos = self.query_embed.weight.repeat(batch * frames, 1, 1)  # (B*T, N, D)
        reference = self.reference_points(self.query_embed.weight).sigmoid()  # (N, 2)
        reference = reference.expand(batch * frames, -1, -1)
        if self.query_content == "sentence":
            content = sentence[:, None, None].expand(-1, frames, self.num_queries, -1)
            content = content.reshape(batch * frames, self.num_queries, self.d_model)
        else:
            content = torch.zeros_like(query_pos)
        decoded = self.decoder(
            content, reference, memory, shapes, query_pos=query_pos, box_heads=self.box_heads
        )

        def clips(values: torch.Tensor, dim: int) -> torch.Tensor:
            return values.unflatten(dim, (batch, frames))

        return {
            "queries": clips(decoded.hidden_states, 1),
            "boxes": clips(decoded.boxes, 1),
            "references": clips(decoded.references, 1),
            "initial_reference": clips(reference, 0),
            "memory": [clips(level, 0) for level in split_levels(memory, shapes)],
            "text": TextFeatures(sentence, tokens, mask),
        }

    def _fuse(
        self,
        projected: list[torch.Tensor],
        tokens: torch.Tensor,
        mask: torch.Tensor,
        batch: int,
        frames: int,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Early fusion of the ``(B*T, D, h, w)`` levels with the ``(B, L, D)`` text tokens."""
        if self.fusion == "none":
            return projected, tokens
        clip_levels = [level.unflatten(0, (batch, frames)) for level in projected]
        if self.fusion == "bidirectional":
            fused = self.early_fusion(clip_levels, tokens, mask)
            return [level.flatten(0, 1) for level in fused.visual], fused.text
        # v <- v * MHA(q=v, k=text + pos, v=text): all levels' tokens of a clip in one call
        visual = [
            level.permute(0, 1, 3, 4, 2).reshape(batch, -1, self.d_model) for level in clip_levels
        ]
        queries = torch.cat(visual, 1)
        keys = tokens + mmf._text_positions(mask, self.d_model, self.text_positions).to(
            tokens.dtype
        )
        attended = self.early_fusion(
            queries, keys, tokens, key_padding_mask=~mask, need_weights=False
        )[0]
        pieces = (queries * attended).split([v.shape[1] for v in visual], 1)
        fused = [
            piece.reshape(batch * frames, *level.shape[-2:], self.d_model).permute(0, 3, 1, 2)
            for piece, level in zip(pieces, projected)
        ]
        return fused, tokens

    def predict_boxes(
        self,
        queries: torch.Tensor,
        initial_reference: torch.Tensor,
        references: torch.Tensor,
    ) -> torch.Tensor:
        """Boxes of (changed) queries from the decoder's references, as the decoder predicts them.

        SOC predicts its boxes from the frame queries plus the video queries, around the
        references the decoder refined from the plain frame queries.

        Args:
            queries: ``(Ly, B, T, N, D)``.
            initial_reference: ``(B, T, N, 2)`` (``forward``'s ``initial_reference``).
            references: ``(Ly, B, T, N, 4)`` (``forward``'s ``references``).

        Returns:
            ``(Ly, B, T, N, 4)``: ``sigmoid(box_heads[l](queries[l]) + inverse_sigmoid(
            reference of layer l))``, the reference added to the first two coordinates for
            the first layer.
        """
        boxes = []
        for layer in range(queries.shape[0]):
            delta = self.box_heads[layer](queries[layer])
            if layer == 0:
                moved = delta[..., :2] + inverse_sigmoid(initial_reference)
                boxes.append(torch.cat([moved, delta[..., 2:]], -1).sigmoid())
            else:
                boxes.append((delta + inverse_sigmoid(references[layer - 1])).sigmoid())
        return torch.stack(boxes)

    def _check(self, levels: Sequence[torch.Tensor], text: TextFeatures) -> None:
        if isinstance(levels, torch.Tensor) or not isinstance(levels, Sequence):
            raise TypeError(
                f"levels must be a list of (B, T, C, h, w) tensors, got {type(levels).__name__}"
            )
        if len(levels) != len(self.visual_channels):
            raise ValueError(
                f"levels must hold {len(self.visual_channels)} maps (visual_channels="
                f"{self.visual_channels}), got {len(levels)}"
            )
        first = check_tensor(levels[0], "levels[0]", ("B", "T", "C", "h", "w"), floating=True)
        batch, frames = first.shape[:2]
        for index, (level, channels) in enumerate(zip(levels, self.visual_channels)):
            check_tensor(
                level, f"levels[{index}]", (batch, frames, channels, "h", "w"), floating=True
            )
        if not isinstance(text, TextFeatures):
            raise TypeError(f"text must be TextFeatures, got {type(text).__name__}")
        check_tensor(text.sentence, "text.sentence", (batch, self.text_dim), floating=True)
        check_tensor(text.tokens, "text.tokens", (batch, "L", self.text_dim), floating=True)
        if tuple(text.mask.shape) != tuple(text.tokens.shape[:2]):
            raise ValueError(
                f"text.mask must be (B, L) = {tuple(text.tokens.shape[:2])}, "
                f"got {format_shape(text.mask.shape)}"
            )


@TRANSFORMERS.register("deformable_soc")
class SOCTransformer(ReferFormerTransformer):
    """:class:`ReferFormerTransformer` with SOC's defaults: 3 encoder / 3 decoder layers, 20
    zero-content queries, bidirectional multimodal fusion (arguments as the base class).

    Example:
        >>> transformer = SOCTransformer([8], text_dim=16, d_model=16, num_queries=4,
        ...     num_levels=2, num_heads=2, num_points=2, ffn_dim=32)
        >>> transformer.num_layers, transformer.fusion, transformer.query_content
        (3, 'bidirectional', 'zero')
    """

    def __init__(
        self,
        visual_channels: Sequence[int],
        text_dim: int,
        d_model: int = 256,
        num_queries: int = 20,
        num_levels: int = 4,
        num_encoder_layers: int = 3,
        num_decoder_layers: int = 3,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        fusion: str = "bidirectional",
        query_content: str = "zero",
        text_level: int | None = None,
        text_positions: str = "centred",
    ) -> None:
        super().__init__(
            visual_channels, text_dim, d_model, num_queries, num_levels, num_encoder_layers,
            num_decoder_layers, num_heads, num_points, ffn_dim, dropout, fusion, query_content,
            text_level, text_positions,
        )  # fmt: skip
