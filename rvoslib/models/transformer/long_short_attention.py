"""Long-short cross-attention between the query features of LoSh's two branches (our design).

LoSh (Yuan et al., CVPR 2024) describes a cross-attention between its long- and short-expression
branches that its released code does not contain. This module is rvoslib's design of it,
documented as ours. In every frame (and every decoder layer), the ``N`` object queries of the
long branch attend to the ``N`` queries of the short branch and vice versa, both directions
computed from the inputs (a simultaneous update)::

    l, s = LN_l(long), LN_s(short)
    long'  = long  + tanh(g_l) * Drop(MHA_l(q = l + e, k = s + e, v = s))
    short' = short + tanh(g_s) * Drop(MHA_s(q = s + e, k = l + e, v = l))

``e`` is a learned embedding of the query slot (query ``n`` of both branches is the same slot:
the same learned position in the decoder), so a query finds its counterpart easily but may
look at the others. The gates ``g`` are learned scalars, zero by default: the module starts as
the identity (training starts from LoSh without it) and learns how much to mix, like the gated
cross-attention of Flamingo. The long branch's appearance then borrows from the short branch's
subject-centric queries, and the short branch learns which of its candidates the action and
relation words single out.
"""

from __future__ import annotations

import torch
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib.models.registry import LONG_SHORT_ATTENTIONS

__all__ = ["LongShortCrossAttention"]


@LONG_SHORT_ATTENTIONS.register("long_short")
class LongShortCrossAttention(nn.Module):
    """Gated, pre-norm cross-attention between long- and short-branch queries, per frame.

    Args:
        dim: Query width ``D``.
        num_queries: ``N``, for the learned slot embeddings (``None``: no slot embedding).
        num_heads: Attention heads (divide ``dim``).
        dropout: Dropout of attention weights and of the attended features.
        gate_init: Initial value of both gates (``tanh(gate)`` scales the update; 0 = identity).

    Raises:
        ValueError: ``num_heads`` does not divide ``dim``, or a size below 1.

    Example:
        >>> mixer = LongShortCrossAttention(dim=8, num_queries=4, num_heads=2, gate_init=1.0)
        >>> long, short = torch.randn(3, 2, 5, 4, 8), torch.randn(3, 2, 5, 4, 8)  # (Ly, B, T, N, D)
        >>> new_long, new_short = mixer(long, short)
        >>> new_long.shape, bool((new_long != long).any())
        (torch.Size([3, 2, 5, 4, 8]), True)
    """

    def __init__(
        self,
        dim: int,
        num_queries: int | None = None,
        num_heads: int = 8,
        dropout: float = 0.0,
        gate_init: float = 0.0,
    ) -> None:
        super().__init__()
        if dim < 1 or (num_queries is not None and num_queries < 1):
            raise ValueError(f"dim and num_queries must be >= 1, got {dim} and {num_queries}")
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide dim ({dim})")
        self.dim, self.num_queries = int(dim), num_queries
        self.norm_long, self.norm_short = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.long_from_short = nn.MultiheadAttention(
            dim, num_heads, dropout=dropout, batch_first=True
        )
        self.short_from_long = nn.MultiheadAttention(
            dim, num_heads, dropout=dropout, batch_first=True
        )
        self.dropout = nn.Dropout(dropout)
        self.gates = nn.Parameter(torch.full((2,), float(gate_init)))
        self.slots = None
        if num_queries is not None:
            self.slots = nn.Parameter(torch.empty(num_queries, dim))
            nn.init.normal_(self.slots, std=0.02)

    def forward(self, long: torch.Tensor, short: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix the two branches' queries.

        Args:
            long: ``(..., N, D)`` queries of the long branch (e.g. ``(Ly, B, T, N, D)``).
            short: Same shape, short branch.

        Returns:
            The updated ``(long, short)``, each of the input shape.

        Raises:
            ValueError: the shapes differ, or ``N``/``D`` do not fit the module.
        """
        if not is_compiling():
            check_tensor(long, "long", (*["..."] * (long.ndim - 2), "N", self.dim), floating=True)
            if short.shape != long.shape:
                raise ValueError(
                    f"short must have the shape of long {format_shape(long.shape)}, got "
                    f"{format_shape(short.shape)}"
                )
            if self.num_queries is not None and long.shape[-2] != self.num_queries:
                raise ValueError(
                    f"long and short must have N={self.num_queries} queries, got "
                    f"{format_shape(long.shape)}"
                )
        shape = long.shape
        flat_long, flat_short = long.reshape(-1, *shape[-2:]), short.reshape(-1, *shape[-2:])
        normed_long, normed_short = self.norm_long(flat_long), self.norm_short(flat_short)
        slot = 0.0 if self.slots is None else self.slots.to(normed_long.dtype)
        keys_long, keys_short = normed_long + slot, normed_short + slot
        from_short = self.long_from_short(keys_long, keys_short, normed_short, need_weights=False)[
            0
        ]
        from_long = self.short_from_long(keys_short, keys_long, normed_long, need_weights=False)[0]
        gates = torch.tanh(self.gates).to(flat_long.dtype)
        new_long = flat_long + gates[0] * self.dropout(from_short)
        new_short = flat_short + gates[1] * self.dropout(from_long)
        return new_long.view(shape), new_short.view(shape)
