"""Named model presets (:data:`PRESETS`) and the ``create_model`` factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rvoslib.models.architectures.fusion import FusionConfig
from rvoslib.models.architectures.motion_fusion import MotionFusionConfig
from rvoslib.models.architectures.seq2seq import Seq2SeqConfig
from rvoslib.models.architectures.video_fusion import VideoFusionConfig
from rvoslib.models.base import SegmentationModel
from rvoslib.models.config import ArchitectureConfig
from rvoslib.models.presets_common import TINY_TEXT_CONFIG, tiny_text_encoder
from rvoslib.models.presets_query_deformable import (
    REFERFORMER_PRESETS,
    SOC_PRESETS,
)
from rvoslib.models.presets_query_mttr import PRESET_DESCRIPTIONS as MTTR_DESCRIPTIONS
from rvoslib.models.presets_query_mttr import (
    losh_mttr_swin_t,
    losh_mttr_swin_t_rvoslib,
    losh_tiny,
    mttr_swin_t,
    mttr_swin_t_rvoslib,
    mttr_tiny,
)
from rvoslib.registry import Registry

__all__ = [
    "PRESETS",
    "TINY_TEXT_CONFIG",
    "create_model",
    "get_preset_config",
    "list_presets",
    "register_preset",
]

#: Preset name -> a function returning its architecture config (descriptions:
#: ``PRESETS.describe(name)``).
PRESETS = Registry("preset")


def _tiny() -> FusionConfig:
    return FusionConfig(
        backbone={
            "name": "tinycnn",
            "out_strides": [4, 8, 16],
            "channels": [32, 64, 128, 128],
            "refine_last": False,
        },
        text_encoder=tiny_text_encoder(),
        fusion={
            "name": "cross_attention",
            "hidden_dim": 64,
            "num_heads": 4,
            "dropout": 0.0,
            "mode": "tokens",
            "positions": True,
        },
        temporal={"name": "conv3d", "expansion": 1},
        head={"name": "fpn", "hidden_channels": 32, "dropout": 0.0},
    )


_TINY_PARTS = ("backbone", "text_encoder", "fusion", "head", "criterion")


def _tiny_video() -> VideoFusionConfig:
    tiny = _tiny()
    return VideoFusionConfig(
        **{f: getattr(tiny, f) for f in _TINY_PARTS}, temporal={"name": "conv3d", "expansion": 1}
    )


def _tiny_motion() -> MotionFusionConfig:
    tiny = _tiny()
    return MotionFusionConfig(
        **{f: getattr(tiny, f) for f in _TINY_PARTS},
        # no temporal module on the stride-16 map: the motion part carries the frame order, and
        # the 3x3x3 convolutions there cost a quarter of a step for no measured gain
        temporal={"name": "identity"},
        motion={"name": "correlation", "radius": 2, "key_channels": 32},
        motion_stage=0,
    )


def _tiny_film() -> MotionFusionConfig:
    return _tiny_motion().replace(motion={"name": "identity"})


def _seed(backbone: str) -> Callable[[], FusionConfig]:
    def build() -> FusionConfig:
        return FusionConfig(
            backbone={"name": backbone, "out_strides": [32]},
            text_encoder={
                "name": "huggingface",
                "model_name_or_path": "bert-base-uncased",
                "pooling": "cls",
                "out_dim": 256,
            },
            fusion={"name": "cross_attention", "hidden_dim": 256, "num_heads": 8},
            temporal={"name": "conv3d", "expansion": 2},
            head={"name": "simple", "hidden_channels": 256, "dropout": 0.3},
        )

    return build


def _rvos_r50() -> FusionConfig:
    return FusionConfig(
        backbone={"name": "resnet50", "out_strides": [4, 8, 16, 32]},
        text_encoder={
            "name": "huggingface",
            "model_name_or_path": "bert-base-uncased",
            "pooling": "mean",
            "out_dim": 256,
        },
        fusion={
            "name": "cross_attention",
            "hidden_dim": 256,
            "num_heads": 8,
            "mode": "tokens",
            "positions": True,
        },
        temporal={"name": "conv3d", "expansion": 2},
        head={"name": "fpn", "hidden_channels": 128, "dropout": 0.1},
    )


def _s2s_tiny() -> Seq2SeqConfig:
    tiny_vgg = {"name": "tinyvgg", "out_strides": [4], "channels": [16, 32, 32, 32, 32]}
    return Seq2SeqConfig(
        initializer={**tiny_vgg, "in_channels": 4},
        encoder=dict(tiny_vgg),
        temporal={"name": "convlstm"},
        state_channels=32,
        decoder={"name": "seq2seq", "channels": [32, 16], "kernel_size": 3},
        criterion={"name": "first_frame_mask", "dice_weight": 0.5},
    )


def _s2s_vgg16() -> Seq2SeqConfig:
    return Seq2SeqConfig()


_BUILT_IN: dict[str, tuple[Callable[[], ArchitectureConfig], str]] = {
    "tiny": (_tiny, "tinycnn + 2-layer BERT with a built-in tokenizer; token fusion, FPN head. "
             "Fast on CPU, needs no downloaded file."),
    "tiny-video": (_tiny_video, "tiny with the temporal module before the fusion "
                   "(motion-aware visual tokens meet the expression)."),
    "tiny-motion": (_tiny_motion, "tiny with motion (correlation of neighbouring frames at "
                    "stride 4) and the sentence (FiLM) inside the backbone. The quickstart "
                    "job's model."),
    "tiny-film": (_tiny_film, "tiny-motion without its motion part: the sentence modulates "
                  "every backbone stage (FiLM); nothing mixes frames."),
    "seed-r18": (_seed("resnet18"), "Reference design: ResNet-18 + bert-base-uncased (cls), "
                 "sentence fusion, x32 head."),
    "seed-r50": (_seed("resnet50"), "Reference design: ResNet-50 + bert-base-uncased (cls), "
                 "sentence fusion, x32 head."),
    "rvos-r50": (_rvos_r50, "ResNet-50 + bert-base-uncased (mean), token fusion, FPN head "
                 "with FiLM."),
    "s2s-vgg16": (_s2s_vgg16, "Sequence-to-sequence VOS model: VGG-16 initializer and "
                  "encoder, ConvLSTM, 5-block decoder; input 256x448; the first frame's mask, "
                  "no sentence."),
    "s2s-tiny": (_s2s_tiny, "A tiny seq2seq VOS model (tiny VGG at stride 4, 2 decoder "
                 "blocks) for the CPU."),
    "mttr-swin-t": (mttr_swin_t, MTTR_DESCRIPTIONS["mttr-swin-t"]),
    "mttr-swin-t-rvoslib": (mttr_swin_t_rvoslib, MTTR_DESCRIPTIONS["mttr-swin-t-rvoslib"]),
    "mttr-tiny": (mttr_tiny, MTTR_DESCRIPTIONS["mttr-tiny"]),
    "losh-mttr-swin-t": (losh_mttr_swin_t, MTTR_DESCRIPTIONS["losh-mttr-swin-t"]),
    "losh-mttr-swin-t-rvoslib": (losh_mttr_swin_t_rvoslib,
                                 MTTR_DESCRIPTIONS["losh-mttr-swin-t-rvoslib"]),
    "losh-tiny": (losh_tiny, MTTR_DESCRIPTIONS["losh-tiny"]),
    **REFERFORMER_PRESETS,
    **SOC_PRESETS,
}  # fmt: skip


def register_preset(
    name: str, build: Callable[[], ArchitectureConfig], description: str = ""
) -> None:
    """Add a preset; ``build()`` returns its architecture config.

    Raises:
        ValueError: the name is taken.

    Example:
        >>> register_preset("doc-tiny", lambda: get_preset_config("tiny"), "tiny again")
        >>> list_presets("doc-*"), PRESETS.describe("doc-tiny")
        (['doc-tiny'], 'tiny again')
        >>> PRESETS.unregister("doc-tiny")
    """
    if name in PRESETS:
        raise ValueError(f"preset {name!r} already exists")
    PRESETS.register(name, build, description=description)


for _name, (_build, _description) in _BUILT_IN.items():
    register_preset(_name, _build, _description)


def list_presets(pattern: str | None = None) -> list[str]:
    """Names accepted by :func:`create_model`, sorted; only those matching the shell-style
    ``pattern`` if given (``list_presets("mttr*")``)."""
    return PRESETS.list(pattern)


def get_preset_config(name: str, **overrides: Any) -> ArchitectureConfig:
    """The config of a preset with fields overridden (see :meth:`ArchitectureConfig.replace`).

    Raises:
        KeyError: unknown preset (lists the valid names).
        ValueError: an override is not a config field (lists the valid fields).
    """
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; valid presets: {', '.join(list_presets())}")
    config = PRESETS.get(name)()
    return config.replace(**overrides) if overrides else config


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> SegmentationModel:
    """Build a preset model.

    Args:
        name: A name from :func:`list_presets`, or a saved model: a local folder, a Hugging
            Face Hub repo id (``"org/name"``) or ``"hf-hub:org/name"`` (loaded with
            :meth:`SegmentationModel.from_pretrained`).
        pretrained: Load the pretrained weights of the parts that have them (the backbone's
            ImageNet weights, the language model; downloads when not cached). ``False`` builds
            random weights offline.
        **overrides: Config fields to change. A part spec with a ``"name"`` replaces the part
            (``temporal={"name": "my_gru", "layers": 2}``); one without changes the keywords
            it lists (``fusion={"num_heads": 2}``).

    Raises:
        KeyError: unknown preset or part name (the message lists the valid ones).
        ValueError: an override is not a field, or a part does not accept a keyword.

    Example:
        >>> model = create_model("tiny", fusion={"num_heads": 2})
        >>> model.config.fusion["num_heads"], model.architecture
        (2, 'fusion')
    """
    if name not in PRESETS and _is_model_folder_name(name):
        if overrides or pretrained:
            raise ValueError(
                f"create_model({name!r}) loads a saved model as it is: pass no overrides and no "
                "pretrained=True with a folder or Hub name"
            )
        return SegmentationModel.from_pretrained(name)
    config = get_preset_config(name, **overrides)
    return SegmentationModel.from_config(config, pretrained=pretrained)


def _is_model_folder_name(name: str) -> bool:
    """Whether ``name`` is a local model folder or a Hub name (``org/name``, ``hf-hub:...``)."""
    import os

    from rvoslib.hub import is_hub_name

    return os.path.isdir(name) or is_hub_name(name)
