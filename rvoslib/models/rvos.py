"""The RVOS meta-architecture: backbone -> fusion with text -> temporal -> head."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rvoslib._checks import check_tensor, format_shape, is_compiling
from rvoslib._io import atomic_directory
from rvoslib.models.backbone import VisualBackbone
from rvoslib.models.fusion import CrossModalFusion
from rvoslib.models.head import MultiScaleSegmentationHead, SegmentationHead, TopDownNeck
from rvoslib.models.temporal import TemporalModule
from rvoslib.models.text import TextEncoder, TextFeatures

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "RVOSConfig", "RVOSModel"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HEAD_KINDS = ("simple", "multiscale")
_TOKENIZER_FILES = ("tokenizer_config.json", "rvos_hash_tokenizer.json")


@dataclass
class RVOSConfig:
    """Everything needed to build an :class:`RVOSModel` (saved as ``config.json``).

    Attributes:
        backbone: Backbone name (see :class:`~rvoslib.models.VisualBackbone`).
        out_strides: Backbone levels to compute; the last is fused with text, the others feed
            the multi-scale head.
        backbone_kwargs: Extra :class:`VisualBackbone` arguments (``channels``,
            ``freeze_stages``, ``frozen_bn``, ``refine_last``, timm arguments).
        text_model: Hugging Face hub name or local folder of the language model.
        text_config: Architecture of a randomly initialised language model (overrides the
            name's architecture; filled in by ``save_pretrained`` so loading needs no download).
        tokenizer: ``None`` (the language model's own), ``"hash"``, a hub name or a folder.
        pooling: ``"cls"`` or ``"mean"``.
        freeze_text: Freeze the language model.
        max_text_length: Maximum number of tokens.
        hidden_dim: Width of fusion, temporal module and text projection.
        num_heads: Attention heads of the fusion.
        fusion_dropout: Dropout of the fusion attention and residual.
        fusion_mode: ``"sentence"`` or ``"tokens"``.
        attention: ``"sdpa"`` or ``"torch_mha"``.
        fusion_positions: Add a 2D sine position encoding in the fusion.
        fusion_gating: Gate the fused features channel-wise by the sentence.
        fusion_pooled_levels: Also feed the fusion every finer backbone level, average-pooled to
            the coarsest level's size and concatenated: deep levels of a small backbone drop
            what the expression may name (colour), and the fusion then still sees it.
        temporal: Use the 3D-convolution temporal module.
        temporal_expansion: Width multiplier of the temporal module's inner convolutions (2 in
            the reference design; 1 costs 38 % of its FLOPs).
        head: ``"simple"`` (the reference x32 head) or ``"multiscale"`` (FPN-style).
        head_hidden: Width of the head.
        head_dropout: Dropout before the classifier.
        head_text_film: Let the sentence modulate the multi-scale head's laterals.
        head_upsample: ``"bilinear"`` or ``"pixel_shuffle"`` (multi-scale head).
        neck: Merge the two coarsest backbone levels (:class:`TopDownNeck`) and fuse at the
            finer one's stride.
        head_image_channels: Width of the multi-scale head's full-resolution image branch
            (0 disables it).
        head_dynamic_width: Width of the multi-scale head's text-conditioned dynamic mask
            kernels (:class:`~rvoslib.models.head.DynamicMaskKernels`; 0 disables them).
    """

    backbone: str = "resnet50"
    out_strides: tuple[int, ...] = (32,)
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    text_model: str = "bert-base-uncased"
    text_config: dict[str, Any] | None = None
    tokenizer: str | None = None
    pooling: str = "cls"
    freeze_text: bool = False
    max_text_length: int = 32
    hidden_dim: int = 256
    num_heads: int = 8
    fusion_dropout: float = 0.1
    fusion_mode: str = "sentence"
    attention: str = "sdpa"
    fusion_positions: bool = False
    fusion_gating: bool = False
    fusion_pooled_levels: bool = False
    temporal: bool = True
    temporal_expansion: int = 2
    head: str = "simple"
    head_hidden: int = 256
    head_dropout: float = 0.3
    head_text_film: bool = False
    head_upsample: str = "bilinear"
    neck: bool = False
    head_image_channels: int = 0
    head_dynamic_width: int = 0

    def __post_init__(self) -> None:
        self.out_strides = tuple(int(s) for s in self.out_strides)
        if self.head not in HEAD_KINDS:
            raise ValueError(f"head must be one of {HEAD_KINDS}, got {self.head!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields."""
        data = dataclasses.asdict(self)
        data["out_strides"] = list(self.out_strides)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RVOSConfig:
        """Build from a dict, rejecting unknown keys.

        Raises:
            ValueError: ``data`` has keys that are not fields (lists them and the valid ones).
        """
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"unknown RVOSConfig keys {unknown}; valid keys: {valid}")
        return cls(**data)

    def replace(self, **changes: Any) -> RVOSConfig:
        """A copy with some fields changed (unknown names raise ``ValueError``)."""
        return RVOSConfig.from_dict({**self.to_dict(), **changes})


class RVOSModel(nn.Module):
    """Referring video object segmentation model composed of injected parts.

    ``forward`` runs the backbone on every frame, encodes the expression, lets the coarsest
    visual level attend to the text, mixes frames with the temporal module and predicts mask
    logits at the input resolution (the multi-scale head also uses the finer levels).

    Args:
        backbone: A :class:`VisualBackbone` (or any module with ``out_channels`` returning a
            list of ``(N, C_i, h_i, w_i)`` maps, coarsest last).
        text_encoder: A :class:`TextEncoder`.
        fusion: A :class:`CrossModalFusion` whose ``visual_dim`` is the last level's channels.
        temporal: A :class:`TemporalModule`, or ``None`` to skip temporal mixing.
        head: A :class:`SegmentationHead` or :class:`MultiScaleSegmentationHead`.
        neck: An optional :class:`~rvoslib.models.head.TopDownNeck` that merges the two
            coarsest backbone levels; the fusion then works at the finer one's stride.
        pooled_levels: Concatenate the finer levels, average-pooled to the coarsest level's
            size, to the fusion's input (its ``visual_dim`` is then the sum of all channels).
        config: The :class:`RVOSConfig` it was built from (needed by ``save_pretrained``).

    Example:
        >>> from rvoslib import create_model
        >>> model = create_model("tiny").eval()
        >>> tokens = model.tokenize(["the red circle"])
        >>> frames = torch.randn(1, 2, 3, 64, 64)
        >>> model(frames, tokens["input_ids"], tokens["attention_mask"]).shape
        torch.Size([1, 2, 1, 64, 64])
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        text_encoder: TextEncoder,
        fusion: CrossModalFusion,
        temporal: nn.Module | None,
        head: nn.Module,
        neck: nn.Module | None = None,
        pooled_levels: bool = False,
        config: RVOSConfig | None = None,
    ) -> None:
        super().__init__()
        levels = list(backbone.out_channels)
        if neck is not None:
            levels = [*levels[:-2], neck.out_channels]
        top_channels = sum(levels) if pooled_levels else levels[-1]
        if fusion.visual_dim != top_channels:
            what = "the sum of the backbone's" if pooled_levels else "the backbone's last"
            raise ValueError(
                f"fusion.visual_dim ({fusion.visual_dim}) must equal {what} out_channels "
                f"({top_channels})"
            )
        if fusion.text_dim != text_encoder.out_dim:
            raise ValueError(
                f"fusion.text_dim ({fusion.text_dim}) must equal text_encoder.out_dim "
                f"({text_encoder.out_dim})"
            )
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.fusion = fusion
        self.temporal = temporal
        self.head = head
        self.neck = neck
        self.pooled_levels = pooled_levels
        self.config = config

    @classmethod
    def from_config(cls, config: RVOSConfig, *, pretrained: bool = False) -> RVOSModel:
        """Build the parts described by ``config`` and wire their channels.

        Args:
            config: The architecture.
            pretrained: Load ImageNet backbone weights and the pretrained language model
                (downloads when they are not cached).
        """
        backbone = VisualBackbone(
            config.backbone,
            pretrained=pretrained,
            out_strides=config.out_strides,
            **config.backbone_kwargs,
        )
        text_encoder = TextEncoder(
            config.text_model,
            pretrained=pretrained and config.text_config is None,
            out_dim=config.hidden_dim,
            pooling=config.pooling,
            freeze=config.freeze_text,
            config=config.text_config,
            tokenizer=config.tokenizer,
            max_length=config.max_text_length,
        )
        levels = list(backbone.out_channels)
        neck = None
        if config.neck:
            if len(levels) < 2:
                raise ValueError(
                    f"neck=True needs at least 2 out_strides, got {config.out_strides}"
                )
            neck = TopDownNeck(levels[-2], levels[-1], config.hidden_dim)
            levels = [*levels[:-2], neck.out_channels]
        fusion = CrossModalFusion(
            sum(levels) if config.fusion_pooled_levels else levels[-1],
            text_encoder.out_dim,
            hidden_dim=config.hidden_dim,
            num_heads=config.num_heads,
            dropout=config.fusion_dropout,
            mode=config.fusion_mode,
            attention=config.attention,
            positions=config.fusion_positions,
            gating=config.fusion_gating,
        )
        temporal = (
            TemporalModule(config.hidden_dim, expansion=config.temporal_expansion)
            if config.temporal
            else None
        )
        if config.head == "simple":
            head: nn.Module = SegmentationHead(
                config.hidden_dim, config.head_hidden, config.head_dropout
            )
        else:
            head = MultiScaleSegmentationHead(
                config.hidden_dim,
                skip_channels=levels[-2::-1],
                hidden_channels=config.head_hidden,
                dropout=config.head_dropout,
                text_dim=config.hidden_dim if config.head_text_film else None,
                image_channels=config.head_image_channels,
                upsample=config.head_upsample,
                upsample_factor=backbone.strides[0],
                dynamic_width=config.head_dynamic_width,
            )
        return cls(
            backbone=backbone,
            text_encoder=text_encoder,
            fusion=fusion,
            temporal=temporal,
            head=head,
            neck=neck,
            pooled_levels=config.fusion_pooled_levels,
            config=config,
        )

    def tokenize(
        self, texts: list[str] | str, max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Tokenize expressions with the text encoder's tokenizer (:meth:`TextEncoder.tokenize`)."""
        return self.text_encoder.tokenize(texts, max_length)

    def encode_text(
        self, text_ids: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> TextFeatures:
        """Encode expressions once, e.g. to reuse them for many clips of one video."""
        return self.text_encoder(text_ids, text_mask)

    def forward(
        self,
        frames: torch.Tensor,
        text_ids: torch.Tensor,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Segment the referred object in every frame.

        Args:
            frames: ``(B, T, 3, H, W)`` normalised float frames.
            text_ids: ``(B, L)`` token ids.
            text_mask: ``(B, L)`` attention mask (1/True for real tokens).

        Returns:
            ``(B, T, 1, H, W)`` mask logits.
        """
        if not is_compiling():
            check_tensor(frames, "frames", ("B", "T", 3, "H", "W"), floating=True)
            check_tensor(text_ids, "text_ids", ("B", "L"), floating=False)
            if text_ids.shape[0] != frames.shape[0]:
                raise ValueError(
                    f"frames and text_ids must have the same batch size B, got frames "
                    f"{format_shape(frames.shape)} and text_ids {format_shape(text_ids.shape)}"
                )
        return self.forward_with_text(frames, self.encode_text(text_ids, text_mask))

    def forward_with_text(self, frames: torch.Tensor, text: TextFeatures) -> torch.Tensor:
        """Like :meth:`forward` with precomputed :class:`TextFeatures` (batch ``B``)."""
        if not is_compiling():
            check_tensor(frames, "frames", ("B", "T", 3, "H", "W"), floating=True)
            if text.sentence.shape[0] != frames.shape[0]:
                raise ValueError(
                    f"text features must have batch size {frames.shape[0]} (frames "
                    f"{format_shape(frames.shape)}), got {text.sentence.shape[0]}"
                )
        batch, num_frames, _, height, width = frames.shape
        features = [level.flatten(0, 1) for level in self.backbone(frames)]
        if self.neck is not None:
            features = [*features[:-2], self.neck(features[-2], features[-1])]
        top = features[-1]
        if self.pooled_levels:
            size = top.shape[-2:]
            top = torch.cat([*(F.adaptive_avg_pool2d(f, size) for f in features[:-1]), top], 1)
        fused = self.fusion(top.unflatten(0, (batch, num_frames)), text)
        if self.temporal is not None:
            fused = self.temporal(fused)
        skips = features[-2::-1] if getattr(self.head, "uses_skips", False) else ()
        sentence = text.sentence.repeat_interleave(num_frames, dim=0)
        images = frames.flatten(0, 1) if getattr(self.head, "uses_images", False) else None
        logits = self.head(fused.flatten(0, 1), skips, (height, width), sentence, images)
        return logits.unflatten(0, (batch, num_frames))

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json``, ``model.safetensors`` and tokenizer files (atomically).

        The saved config records the language model's architecture, so
        :meth:`from_pretrained` never needs a download.

        Returns:
            The folder.
        """
        from safetensors.torch import save_file

        if self.config is None:
            raise ValueError("save_pretrained needs a model built with a config (from_config)")
        config = self.config.replace(text_config=_language_model_config(self.text_encoder))
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_directory(directory) as temp_dir:
            self.text_encoder.save_tokenizer(temp_dir)
            saved = config.to_dict()
            if any((temp_dir / name).exists() for name in _TOKENIZER_FILES):
                saved["tokenizer"] = None
            (temp_dir / CONFIG_FILE).write_text(json.dumps(saved, indent=2))
            save_file(state, str(temp_dir / WEIGHTS_FILE))
        return Path(directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> RVOSModel:
        """Restore a model written by :meth:`save_pretrained` (offline).

        Raises:
            FileNotFoundError: ``config.json`` or ``model.safetensors`` is missing (named).
        """
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{str(directory / name)!r} not found: a model folder needs {CONFIG_FILE} "
                    f"and {WEIGHTS_FILE} (written by RVOSModel.save_pretrained)"
                )
        config = RVOSConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
        if any((directory / name).exists() for name in _TOKENIZER_FILES):
            config = config.replace(tokenizer=str(directory))
        model = cls.from_config(config, pretrained=False)
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE), device=str(map_location)))
        return model


def _language_model_config(text_encoder: TextEncoder) -> dict[str, Any]:
    hf_config = text_encoder.language_model.config.to_dict()
    keep = {
        k: v
        for k, v in hf_config.items()
        if not k.startswith("_") and k not in ("transformers_version", "architectures")
    }
    keep["model_type"] = hf_config["model_type"]
    return keep
