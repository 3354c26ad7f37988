"""Video Swin Transformer backbone (Liu et al., CVPR 2022) as MTTR and SOC use it.

Built from the parts of torchvision's ``SwinTransformer3d`` (``swin3d_t/s/b`` sizes, same
key layout, only the stages needed) with a temporal patch size of 1
(``patch_size=(1, 4, 4)``), so ``T`` frames give ``T`` feature maps per level. The shifted 3D
windows (default ``(8, 7, 7)``: 8 frames x 7 x 7 tokens) make every token attend to tokens of
the other frames in its window: this is where motion enters MTTR and SOC, unlike a per-frame
image backbone. When a clip is shorter than the temporal window, the window covers the whole
clip (torchvision shrinks it).

Levels are the outputs of the Swin stages *before* patch merging, at strides 4, 8, 16 and 32
(channels ``C, 2C, 4C, 8C``): MTTR drops the last stage (strides 4/8/16, channels 96/192/384
for Swin-T), SOC keeps all four. As in MTTR and SOC the levels are returned without a final
LayerNorm (``norm_outputs=True`` adds one per level). Any frame size works: torchvision pads to
multiples of the patch, of 2 before patch merging and of the window inside attention, and
crops back, so level ``i`` is ``ceil(H / s_i) x ceil(W / s_i)``.

Pretrained Kinetics-400 weights (torchvision, ``pretrained=True``) and local files in the
torchvision key layout have a ``(2, 4, 4)`` patch kernel; as in MTTR, it is summed over its
time axis to fit the ``(1, 4, 4)`` patches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
from torch import nn
from torchvision.models.swin_transformer import PatchMerging, SwinTransformerBlock
from torchvision.models.video import swin_transformer as tv_swin

from rvoslib._checks import check_tensor, is_compiling
from rvoslib._hub import torchvision_download
from rvoslib.models.backbones.trunks import load_state_dict_file
from rvoslib.models.registry import BACKBONES

__all__ = ["VideoSwinBackbone"]

#: torchvision builder -> (weights enum, embed_dim, depths, num_heads), as in torchvision.
ARCHITECTURES = {
    "swin3d_t": ("Swin3D_T_Weights", 96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "swin3d_s": ("Swin3D_S_Weights", 96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "swin3d_b": ("Swin3D_B_Weights", 128, (2, 2, 18, 2), (4, 8, 16, 32)),
}
VALID_STRIDES = (4, 8, 16, 32)
PATCH_SIZE = (1, 4, 4)
PATCH_KEY = "patch_embed.proj.weight"


@BACKBONES.register("video_swin_b", model="swin3d_b")
@BACKBONES.register("video_swin_s", model="swin3d_s")
@BACKBONES.register("video_swin_t", model="swin3d_t")
class VideoSwinBackbone(nn.Module):
    """Multi-scale per-frame features of a clip from a Video Swin Transformer.

    Args:
        model: ``"swin3d_t"``, ``"swin3d_s"`` or ``"swin3d_b"`` (torchvision's sizes).
        pretrained: Load torchvision's Kinetics-400 weights (``KINETICS400_V1``; downloads on
            first use).
        checkpoint_path: A local weights file (``.pth``, ``.pt``, ``.bin`` or ``.safetensors``)
            in torchvision's ``SwinTransformer3d`` key layout (classifier keys are ignored).
            Works offline; applied after ``pretrained``.
        out_strides: Strides of the returned levels, a subset of ``(4, 8, 16, 32)``; stages
            after the deepest one are not built (MTTR: ``(4, 8, 16)``).
        window_size: ``(t, h, w)`` attention window in tokens (MTTR and SOC: ``(8, 7, 7)``).
            Pretrained weights need the default; ``t = 1`` makes frames independent.
        drop_path_rate: Stochastic depth rate, growing linearly over the blocks (MTTR 0.1,
            SOC 0.2).
        norm_outputs: Add a LayerNorm on each returned level (MTTR and SOC do not).
        embed_dim: Override the channels of the first stage (tests, small experiments).
        depths: Override the blocks per stage (up to 4 stages).
        num_heads: Override the heads per stage.

    Attributes:
        out_channels: Channels of each returned level.
        strides: Stride of each returned level.

    Example:
        >>> backbone = VideoSwinBackbone(embed_dim=8, depths=[1, 1], num_heads=[1, 1],
        ...                              out_strides=(4, 8))
        >>> [tuple(f.shape) for f in backbone(torch.zeros(1, 2, 3, 30, 45))]
        [(1, 2, 8, 8, 12), (1, 2, 16, 4, 6)]
        >>> backbone.out_channels, backbone.strides
        ([8, 16], [4, 8])
    """

    def __init__(
        self,
        model: str = "swin3d_t",
        *,
        pretrained: bool = False,
        checkpoint_path: str | os.PathLike | None = None,
        out_strides: Sequence[int] = VALID_STRIDES,
        window_size: Sequence[int] = (8, 7, 7),
        drop_path_rate: float = 0.1,
        norm_outputs: bool = False,
        embed_dim: int | None = None,
        depths: Sequence[int] | None = None,
        num_heads: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if model not in ARCHITECTURES:
            raise KeyError(
                f"unknown Video Swin model {model!r}; expected one of {', '.join(ARCHITECTURES)}"
            )
        weights_name, default_dim, default_depths, default_heads = ARCHITECTURES[model]
        embed_dim = default_dim if embed_dim is None else int(embed_dim)
        depths = list(default_depths if depths is None else depths)
        num_heads = list(default_heads if num_heads is None else num_heads)
        if not 1 <= len(depths) <= 4 or len(num_heads) != len(depths):
            raise ValueError(
                "depths and num_heads must have the same length (1 to 4 stages), got "
                f"depths={depths}, num_heads={num_heads}"
            )
        window_size = [int(w) for w in window_size]
        if len(window_size) != 3 or min(window_size) < 1:
            raise ValueError(f"window_size must be 3 sizes >= 1 (t, h, w), got {window_size}")
        requested = sorted({int(s) for s in out_strides})
        available = list(VALID_STRIDES[: len(depths)])
        if not requested or any(s not in available for s in requested):
            raise ValueError(
                f"out_strides must be a non-empty subset of {tuple(available)} for {len(depths)} "
                f"stages, got {list(out_strides)}"
            )
        self.model_name = model
        num_stages = available.index(requested[-1]) + 1
        # torchvision's SwinTransformer3d, built up to the deepest requested stage, with its
        # key layout: patch_embed.*, features.<2i> = stage i, features.<2i+1> = patch merging
        norm_layer = partial(nn.LayerNorm, eps=1e-5)
        self.patch_embed = tv_swin.PatchEmbed3d(
            patch_size=list(PATCH_SIZE), embed_dim=embed_dim, norm_layer=norm_layer
        )
        self.features = _build_stages(
            embed_dim, depths, num_heads, window_size, drop_path_rate, num_stages, norm_layer
        )
        self.strides = requested
        self.out_channels = [embed_dim * 2 ** available.index(s) for s in requested]
        self._stage_outputs = {2 * available.index(s): i for i, s in enumerate(requested)}
        self.level_norms = (
            nn.ModuleList(nn.LayerNorm(c) for c in self.out_channels) if norm_outputs else None
        )
        if pretrained:
            weights = getattr(tv_swin, weights_name).KINETICS400_V1
            with torchvision_download(weights):
                state = weights.get_state_dict(progress=True)
            self._load_state(state, weights.url)
        if checkpoint_path is not None:
            self.load_weights(checkpoint_path)

    def load_weights(self, checkpoint_path: str | os.PathLike) -> None:
        """Load a local file in torchvision's ``SwinTransformer3d`` key layout.

        A patch kernel with a temporal size above 1 is summed over time; keys of stages that
        were not built, of the final norm and of the classifier are ignored.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: keys of this backbone are missing from the file, or have other shapes
                (e.g. another model size or window size).
        """
        self._load_state(load_state_dict_file(checkpoint_path), os.fspath(checkpoint_path))

    def _load_state(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        # strict=False: only the level_norms are not in Video Swin files
        self.load_state_dict(_fit_state(state, self, source), strict=False)

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Compute the multi-scale features of every frame.

        Args:
            frames: ``(B, T, 3, H, W)`` float, ImageNet-normalised.

        Returns:
            One map per stride in ``self.strides``, finest first:
            ``(B, T, C_i, ceil(H / s_i), ceil(W / s_i))``, channels ``self.out_channels``.
        """
        if not is_compiling():
            check_tensor(frames, "frames", ("B", "T", 3, "H", "W"), floating=True)
        tokens = self.patch_embed(frames.transpose(1, 2))  # (B, T, h, w, C)
        outputs = []
        for index, layer in enumerate(self.features):
            tokens = layer(tokens)
            level = self._stage_outputs.get(index)
            if level is not None:
                level_tokens = (
                    tokens if self.level_norms is None else self.level_norms[level](tokens)
                )
                outputs.append(level_tokens.permute(0, 1, 4, 2, 3).contiguous())
        return outputs


def _build_stages(
    embed_dim: int,
    depths: list[int],
    num_heads: list[int],
    window_size: list[int],
    drop_path_rate: float,
    num_stages: int,
    norm_layer: Callable[..., nn.Module],
) -> nn.Sequential:
    """torchvision's Swin stages and patch mergings, as ``SwinTransformer3d`` builds them.

    Stochastic depth grows linearly over the blocks of *all* ``depths`` (as in the full model),
    Linear layers get torchvision's truncated-normal initialisation.
    """
    total_blocks, block_index, layers = sum(depths), 0, []
    for stage in range(num_stages):
        dim, blocks = embed_dim * 2**stage, []
        for depth_index in range(depths[stage]):
            blocks.append(
                SwinTransformerBlock(
                    dim,
                    num_heads[stage],
                    window_size=window_size,
                    shift_size=[0 if depth_index % 2 == 0 else w // 2 for w in window_size],
                    stochastic_depth_prob=drop_path_rate * block_index / max(total_blocks - 1, 1),
                    norm_layer=norm_layer,
                    attn_layer=tv_swin.ShiftedWindowAttention3d,
                )
            )
            block_index += 1
        layers.append(nn.Sequential(*blocks))
        if stage < num_stages - 1:
            layers.append(PatchMerging(dim, norm_layer))
    features = nn.Sequential(*layers)
    for module in features.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return features


def _fit_state(
    state: Mapping[str, torch.Tensor], module: nn.Module, source: str
) -> dict[str, torch.Tensor]:
    """The entries of ``state`` that ``module`` needs, with the patch kernel summed over time.

    ``relative_position_index`` buffers are kept from ``module`` (they depend only on the
    window size). Raises ``ValueError`` for missing keys or mismatching shapes.
    """
    own = {k: v for k, v in module.state_dict().items() if not k.startswith("level_norms.")}
    state = dict(state)
    patch = state.get(PATCH_KEY)
    if patch is not None and patch.ndim == 5 and patch.shape[2] > 1:
        state[PATCH_KEY] = patch.sum(dim=2, keepdim=True)  # (C, 3, t, 4, 4) -> (C, 3, 1, 4, 4)
    wanted = [k for k in own if not k.endswith("relative_position_index")]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(
            f"checkpoint_path {source!r} does not fit this Video Swin backbone (torchvision "
            f"SwinTransformer3d key layout expected): {len(missing)} missing keys, e.g. "
            f"{missing[:3]}"
        )
    mismatched = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in wanted
        if state[k].shape != own[k].shape
    ]
    if mismatched:
        raise ValueError(
            f"checkpoint_path {source!r} has other shapes than this Video Swin backbone (another "
            f"model size or window_size?): {len(mismatched)} keys, e.g. {mismatched[:3]}"
        )
    fitted = {k: state[k] for k in wanted}
    fitted.update({k: v for k, v in own.items() if k.endswith("relative_position_index")})
    return fitted
