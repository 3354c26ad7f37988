"""SOC's video object cluster (VOC): frame-level object queries -> video-level queries.

SOC (Luo et al., NeurIPS 2023; released ``models/voc.py``) decodes ``N`` object queries per
frame, then clusters them over the clip:

1. an **encoder** (self-attention + FFN layers) over all ``T x N`` frame queries of a clip at
   once, with no position encoding at all: it cannot tell frames apart, so the order of frames
   must come from the parts before it (a video backbone, a temporal module);
2. a **decoder** of ``N`` video queries, whose content is the sentence embedding (the same for
   every query) and whose positions are learned; each layer runs cross-attention to the encoded
   frame queries (keys carry a learned position per query *slot*, the same in every frame),
   self-attention, then an FFN; a final LayerNorm gives the video queries;
3. the video query ``n`` is added back to frame query ``n`` of every frame (``hs + voc``).

SOC clusters every decoder layer's frame queries in training (``(L, T, B, N, C)``, each layer on
its own, for the auxiliary losses) and only the last layer's at inference; pass
``(Ly, B, T, N, C)`` or ``(B, T, N, C)`` accordingly.

Layers are post-norm (``x = LayerNorm(x + Dropout(sublayer(x)))``) with ReLU FFNs and Xavier
initialisation, as released. SOC's optional windowed attention (``window_size > 0``) is not
reproduced: its configs use ``window_size: 0``. Where the released module reshapes its
``[L, T, B, N, C]`` input to ``[L * B, T, N, C]`` without moving ``B`` next to ``L`` (which mixes
clips and frames when ``B > 1``; harmless at its batch size 1), this one keeps clips apart.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.models.registry import VIDEO_OBJECT_CLUSTERS

__all__ = ["VideoClusterOutput", "VideoObjectCluster"]


class VideoClusterOutput(NamedTuple):
    """What :class:`VideoObjectCluster` returns (``*lead`` is ``(B,)`` or ``(Ly, B)``).

    Attributes:
        video_queries: ``(*lead, N, C)``: the video-level object queries (last decoder layer,
            after the final LayerNorm).
        frame_queries: ``(*lead, T, N, C)``: the input frame queries plus the video query of the
            same index (SOC's ``hs_voc = hs + voc``).
        layer_video_queries: ``(D, *lead, N, C)``: the normalised video queries after each of
            the ``D`` decoder layers (the last equals ``video_queries``).
    """

    video_queries: torch.Tensor
    frame_queries: torch.Tensor
    layer_video_queries: torch.Tensor


class _AttentionLayer(nn.Module):
    """``x = LayerNorm(x + Dropout(MHA(q=x + query_pos, k=memory + memory_pos, v=memory)))``."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        query_pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        queries = x if query_pos is None else x + query_pos
        keys = memory if memory_pos is None else memory + memory_pos
        attended = self.attention(queries, keys, memory, need_weights=False)[0]
        return self.norm(x + self.dropout(attended))


class _FeedForwardLayer(nn.Module):
    """``x = LayerNorm(x + Dropout(Linear(Dropout(ReLU(Linear(x))))))``."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.linear2(self.dropout(torch.relu(self.linear1(x))))
        return self.norm(x + self.dropout(hidden))


@VIDEO_OBJECT_CLUSTERS.register("voc")
class VideoObjectCluster(nn.Module):
    """SOC's video object cluster (see the module docstring for the design).

    Args:
        dim: Query width ``C``.
        num_queries: ``N``, the number of frame queries per frame, and of video queries.
        num_encoder_layers: Self-attention + FFN layers over the ``T x N`` frame queries.
        num_decoder_layers: Cross-attention + self-attention + FFN layers of the video queries.
        num_heads: Attention heads; must divide ``dim``.
        ffn_dim: Hidden width of the FFNs.
        dropout: Dropout of attention weights and residual branches.

    Raises:
        ValueError: a size is not positive, or ``num_heads`` does not divide ``dim``.

    Example:
        >>> voc = VideoObjectCluster(dim=16, num_queries=3, num_heads=2, ffn_dim=32).eval()
        >>> out = voc(torch.randn(2, 4, 3, 16), torch.randn(2, 16))
        >>> out.video_queries.shape, out.frame_queries.shape, out.layer_video_queries.shape
        (torch.Size([2, 3, 16]), torch.Size([2, 4, 3, 16]), torch.Size([3, 2, 3, 16]))
    """

    def __init__(
        self,
        dim: int = 256,
        num_queries: int = 20,
        num_encoder_layers: int = 3,
        num_decoder_layers: int = 3,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("num_queries", num_queries), ("ffn_dim", ffn_dim)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_encoder_layers < 0 or num_decoder_layers < 1:
            raise ValueError(
                "num_encoder_layers must be >= 0 and num_decoder_layers >= 1, got "
                f"{num_encoder_layers} and {num_decoder_layers}"
            )
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide dim ({dim})")
        self.dim, self.num_queries = dim, num_queries
        self.encoder_attention = nn.ModuleList(
            _AttentionLayer(dim, num_heads, dropout) for _ in range(num_encoder_layers)
        )
        self.encoder_ffn = nn.ModuleList(
            _FeedForwardLayer(dim, ffn_dim, dropout) for _ in range(num_encoder_layers)
        )
        self.decoder_cross_attention = nn.ModuleList(
            _AttentionLayer(dim, num_heads, dropout) for _ in range(num_decoder_layers)
        )
        self.decoder_self_attention = nn.ModuleList(
            _AttentionLayer(dim, num_heads, dropout) for _ in range(num_decoder_layers)
        )
        self.decoder_ffn = nn.ModuleList(
            _FeedForwardLayer(dim, ffn_dim, dropout) for _ in range(num_decoder_layers)
        )
        for layers in (
            self.encoder_attention,
            self.encoder_ffn,
            self.decoder_cross_attention,
            self.decoder_self_attention,
            self.decoder_ffn,
        ):
            _xavier_(layers)
        #: Key position of frame query slot ``n`` (SOC's ``fq_pos``), the same in every frame.
        self.slot_positions = nn.Embedding(num_queries, dim)
        #: Learned positions of the video queries (SOC's ``query_embed``).
        self.query_positions = nn.Embedding(num_queries, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, frame_queries: torch.Tensor, sentence: torch.Tensor) -> VideoClusterOutput:
        """Cluster the frame queries of each clip into video queries.

        Args:
            frame_queries: ``(B, T, N, C)`` float, one decoder layer's frame queries, or
                ``(Ly, B, T, N, C)`` for ``Ly`` decoder layers at once (each layer is clustered
                on its own, with the same sentence).
            sentence: ``(B, C)`` float sentence embedding (the content of every video query).

        Returns:
            :class:`VideoClusterOutput` with ``video_queries`` ``(*lead, N, C)``,
            ``frame_queries`` ``(*lead, T, N, C)`` and ``layer_video_queries``
            ``(D, *lead, N, C)``, where ``*lead`` is ``(B,)`` or ``(Ly, B)``.

        Raises:
            TypeError: an input is not a floating tensor.
            ValueError: wrong rank, ``N`` or ``C``, or batch sizes that differ.
        """
        if not is_compiling():
            self._check(frame_queries, sentence)
        lead = frame_queries.shape[:-3]  # (B,) or (Ly, B)
        frames, num_queries, dim = frame_queries.shape[-3:]
        clips = frame_queries.reshape(-1, frames, num_queries, dim)  # (Ly * B, T, N, C)
        sentences = sentence.expand(*lead, dim).reshape(-1, dim)
        memory = clips.reshape(clips.shape[0], frames * num_queries, dim)
        for attention, ffn in zip(self.encoder_attention, self.encoder_ffn):
            memory = ffn(attention(memory, memory))
        slot_pos = self.slot_positions.weight.repeat(frames, 1).unsqueeze(0)  # (1, T * N, C)
        query_pos = self.query_positions.weight.unsqueeze(0)  # (1, N, C)
        video = sentences.unsqueeze(1).expand(-1, num_queries, dim)
        layers = []
        for cross, self_attention, ffn in zip(
            self.decoder_cross_attention, self.decoder_self_attention, self.decoder_ffn
        ):
            video = cross(video, memory, query_pos, slot_pos)
            video = ffn(self_attention(video, video, query_pos, query_pos))
            layers.append(self.norm(video))
        layer_video = torch.stack(layers)  # (D, Ly * B, N, C)
        fused = clips + layer_video[-1].unsqueeze(1)
        return VideoClusterOutput(
            video_queries=layer_video[-1].reshape(*lead, num_queries, dim),
            frame_queries=fused.reshape(*lead, frames, num_queries, dim),
            layer_video_queries=layer_video.reshape(len(layers), *lead, num_queries, dim),
        )

    def _check(self, frame_queries: torch.Tensor, sentence: torch.Tensor) -> None:
        if not isinstance(frame_queries, torch.Tensor) or frame_queries.ndim not in (4, 5):
            shape = (
                format_shape(frame_queries.shape)
                if isinstance(frame_queries, torch.Tensor)
                else type(frame_queries).__name__
            )
            raise ValueError(
                f"frame_queries must be (B, T, {self.num_queries}, {self.dim}) or "
                f"(Ly, B, T, {self.num_queries}, {self.dim}), got {shape}"
            )
        dims: tuple[str | int, ...] = ("T", self.num_queries, self.dim)
        dims = ("B", *dims) if frame_queries.ndim == 4 else ("Ly", "B", *dims)
        check_tensor(frame_queries, "frame_queries", dims, floating=True)
        batch = frame_queries.shape[-4]
        check_tensor(sentence, "sentence", (batch, self.dim), floating=True)


def _xavier_(layers: nn.Module) -> None:
    """Xavier-uniform initialisation of every matrix (as SOC's ``_reset_parameters``)."""
    for parameter in layers.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)
