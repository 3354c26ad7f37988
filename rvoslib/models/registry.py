"""Registries of model parts and architectures, and building parts from specs.

Every kind of part has a :class:`Registry`. A *spec* names a registered part and its keyword
arguments, ``{"name": "conv3d", "expansion": 2}``; :meth:`Registry.build` turns it into a module,
adding the keyword arguments that come from the neighbouring parts (a temporal module receives
``channels`` from the fusion before it). What each kind receives, and what it must provide:

========================  ===========================  ==========================================
registry                  receives from the builder    provides
========================  ===========================  ==========================================
``BACKBONES``             ``pretrained``               ``out_channels``, ``strides`` (lists, fine
                                                       to coarse); ``forward(frames (B, T, 3, H,
                                                       W)) -> [(B, T, C_i, H/s_i, W/s_i)]``
``TEXT_ENCODERS``         ``pretrained``               ``out_dim``, ``max_length``,
                                                       ``tokenize(texts)``; ``forward(text_ids,
                                                       text_mask) -> TextFeatures``
``FUSIONS``               ``visual_channels``,         ``out_channels``; ``forward(visual (B, T,
                          ``text_dim``                 C, h, w), text) -> (B, T, C', h, w)``
``TEMPORAL_MODULES``      ``channels``                 ``forward(features (B, T, C, h, w)) ->
                                                       (B, T, C, h, w)``
``HEADS``                 ``in_channels``,             ``forward(fused (B, T, C, h, w), *,
                          ``skip_channels`` (coarse    skips, text, output_size) -> (B, T, 1,
                          to fine), ``text_dim``,      H, W)`` logits
                          ``skip_strides``
``TRANSFORMERS``          ``visual_channels`` (of      ``d_model``, ``num_queries``;
                          the levels it takes, fine    ``forward(levels [(B, T, C_i, h_i, w_i)],
                          to coarse), ``text_dim``     text) -> dict`` with ``"queries" (Ly, B,
                                                       T, N, D)``, ``"memory"`` (the fused levels
                                                       ``[(B, T, D, h_i, w_i)]``) and optionally
                                                       ``"boxes" (Ly, B, T, N, 4)``,
                                                       ``"text"`` (fused TextFeatures)
``PIXEL_DECODERS``        ``in_channels`` (fine to     ``out_channels``; ``forward(levels, text)
                          coarse), ``text_dim``        -> (B, T, P, h_0, w_0)`` (finest stride)
``MASK_HEADS``            ``query_dim``,               ``forward(queries (Ly, B, T, N, D),
                          ``pixel_channels``           pixels (B, T, P, h, w), **extras) ->
                                                       (Ly, B, T, N, h, w)`` mask logits
``DECODERS``              ``in_channels``              ``forward(hidden (N, C, h, w),
                                                       output_size) -> (N, 1, H, W)`` logits
                                                       (seq2seq's decoder)
``ADAPTERS``              ``in_channels``,             ``forward(x (N, C_in, h, w)) -> (N,
                          ``out_channels``             C_out, h, w)``: a small map between
                                                       parts (seq2seq's 4 -> 3 input adapter,
                                                       its initial-state and projection convs)
``TEXT_PROJECTIONS``      ``in_dim``, ``out_dim``      ``forward(features (B, L, in_dim)) ->
                                                       (B, L, out_dim)`` (the text encoder's
                                                       projection of the language model)
``VIDEO_OBJECT_CLUSTERS``  ``dim``, ``num_queries``     ``forward(frame_queries (Ly, B, T, N,
                          (the transformer's)          D), sentence (B, D))`` -> ``.frame_queries
                                                       (Ly, B, T, N, D)``, ``.video_queries (Ly,
                                                       B, N, D)`` (SOC's video object cluster)
``LONG_SHORT_ATTENTIONS``  ``dim``, ``num_queries``    ``forward(long, short)`` queries ``(Ly, B,
                          (the transformer's)          T, N, D)`` each -> the same pair (LoSh)
``ARCHITECTURES``         (parts, built by             an :class:`~rvoslib.models.RVOSModel`
                          ``from_config``)             subclass
========================  ===========================  ==========================================

A part receives only the builder's keywords that its ``__init__`` names. Registering a class
also records, on every instance, the arguments it was built with, so that a model whose parts
were built by hand or swapped later still saves the right specs (:meth:`Registry.spec_of`).

Example:
    >>> from torch import nn
    >>> @TEMPORAL_MODULES.register("doc_example_gru")
    ... class FrameGRU(nn.Module):
    ...     def __init__(self, channels: int, layers: int = 1) -> None:
    ...         super().__init__()
    ...         self.gru = nn.GRU(channels, channels, layers, batch_first=True)
    >>> part = TEMPORAL_MODULES.build({"name": "doc_example_gru", "layers": 2}, channels=8)
    >>> TEMPORAL_MODULES.spec_of(part)
    {'name': 'doc_example_gru', 'layers': 2}
    >>> TEMPORAL_MODULES.unregister("doc_example_gru")
"""

from __future__ import annotations

from rvoslib.registry import BUILD_ONLY_ARGUMENTS, Registry, normalize_spec

__all__ = [
    "ADAPTERS",
    "ARCHITECTURES",
    "BACKBONES",
    "BUILD_ONLY_ARGUMENTS",
    "CRITERIA",
    "DECODERS",
    "FLOW_ESTIMATORS",
    "FUSIONS",
    "HEADS",
    "LONG_SHORT_ATTENTIONS",
    "MASK_HEADS",
    "PIXEL_DECODERS",
    "TEMPORAL_MODULES",
    "TEXT_ENCODERS",
    "TEXT_PROJECTIONS",
    "TRANSFORMERS",
    "VIDEO_OBJECT_CLUSTERS",
    "Registry",
    "normalize_spec",
]

BACKBONES = Registry("backbone", injected=("pretrained",))
TEXT_ENCODERS = Registry("text encoder", injected=("pretrained",))
FUSIONS = Registry("fusion", injected=("visual_channels", "text_dim"))
TEMPORAL_MODULES = Registry("temporal module", injected=("channels",))
HEADS = Registry("head", injected=("in_channels", "skip_channels", "skip_strides", "text_dim"))
TRANSFORMERS = Registry("transformer", injected=("visual_channels", "text_dim"))
PIXEL_DECODERS = Registry("pixel decoder", injected=("in_channels", "text_dim"))
MASK_HEADS = Registry("mask head", injected=("query_dim", "pixel_channels"))
DECODERS = Registry("decoder", injected=("in_channels",))
ADAPTERS = Registry("adapter", injected=("in_channels", "out_channels"))
TEXT_PROJECTIONS = Registry("text projection", injected=("in_dim", "out_dim"))
ARCHITECTURES = Registry("architecture")
VIDEO_OBJECT_CLUSTERS = Registry("video object cluster", injected=("dim", "num_queries"))
LONG_SHORT_ATTENTIONS = Registry("long-short attention", injected=("dim", "num_queries"))
from rvoslib.losses.registry import CRITERIA, FLOW_ESTIMATORS  # noqa: E402  (re-exported)
